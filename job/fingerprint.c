/* job/fingerprint.c -- cfg_job_hash: FNV-1a over the printed job, less what may differ
 * between processes of one job. */
#include "job_internal.h"

#include <stdlib.h>
#include <string.h>

uint64_t cfg_job_hash(const cfg_job *job)
{
    char *text = NULL;
    size_t len = 0;
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a offset basis */
    /* What processes must agree on: the model, optimizer, cluster and training settings.
     * Data paths and output folders may legitimately be spelled differently per host. */
    cfg_job same = *job;
    memset(&same.data, 0, sizeof same.data);
    same.data.task = job->data.task;
    same.data.num_classes = job->data.num_classes;
    /* Which samples train does matter; where the pretrained weights lie is a path. */
    same.data.classes = job->data.classes;
    same.data.classes_count = job->data.classes_count;
    same.data.limit = job->data.limit;
    /* The keys that make feature ids and classes of sparse data and token windows: all
     * processes must hash alike. Left out of the text at their defaults (cfg_field_fp_rule). */
    const cfg_data *d = &job->data;
    same.data.sparse = d->sparse;
    same.data.categorical = d->categorical;
    same.data.categorical_count = d->categorical_count;
    same.data.crosses = d->crosses;
    same.data.crosses_count = d->crosses_count;
    same.data.hash_bits = d->hash_bits;
    same.data.hash_seed = d->hash_seed;
    same.data.ngrams = d->ngrams;
    same.data.text_value = d->text_value;
    same.data.text_headers = d->text_headers;
    same.data.text_suffix = d->text_suffix;
    same.data.text_classes = d->text_classes;
    same.data.text_classes_count = d->text_classes_count;
    same.data.context = d->context;    /* the tokenizer is a path */
    same.data.image = job->data.image; /* the model's input */
    same.model.init_from = NULL;
    same.output.dir = NULL;
    same.train.threads = 1;
    /* Where and how often checkpoints are written, and whether this run resumes, change
     * nothing that is computed: a resumed run is the same job. */
    memset(&same.checkpoint, 0, sizeof same.checkpoint);
    /* Key files are paths too; peers whose keys do not match cannot talk at all. */
    memset(&same.security, 0, sizeof same.security);
    /* Failure detection and restarts are each process's (or launcher's) own business. */
    same.cluster.heartbeat_ms = 0;
    same.cluster.heartbeat_timeout_s = 0;
    same.cluster.max_restarts = 0;
    /* Where metrics are served is no part of what is computed either. */
    same.cluster.metrics_port = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return 0;
    int rc = cfg_job_print_fp(&same, f, 1, NULL);
    fclose(f);
    if (rc == PST_OK)
        for (size_t i = 0; i < len; i++)
            h = (h ^ (unsigned char)text[i]) * 0x100000001b3ULL;
    free(text);
    return rc == PST_OK ? h : 0;
}
