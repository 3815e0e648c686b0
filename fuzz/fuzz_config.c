/* fuzz/fuzz_config.c -- the YAML job parser, cfg_job_load_string (libcyaml + pstrain's
 * checks), with the input as the job text.
 *
 * An accepted job must also do what the header promises: cfg_job_print writes YAML that
 * loads again to a job printing the same text, with the same cfg_job_hash (the servers and
 * workers of a job compare that hash, so it must not depend on how the file was spelled). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job/job.h"
#include "fuzz/fuzz_common.h"

static char *print_job(const cfg_job *job, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    pst_err err = {0};
    if (!f || cfg_job_print(job, f, &err) != PST_OK) {
        fprintf(stderr, "fuzz_config: cfg_job_print failed: %s\n", err.msg);
        abort();
    }
    fclose(f);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfg_job *job = NULL;
    pst_err err = {0};
    int rc = cfg_job_load_string(&job, (const char *)data, size, "fuzz.yaml", &err);
    if (rc != PST_OK) {
        fuzz_check_msg(err.msg);
        if (job) {
            fprintf(stderr, "fuzz_config: failure left a job behind\n");
            abort();
        }
        return 0;
    }
    size_t len1 = 0, len2 = 0;
    char *t1 = print_job(job, &len1);
    cfg_job *again = NULL;
    if (cfg_job_load_string(&again, t1, len1, "printed", &err) != PST_OK) {
        fprintf(stderr, "fuzz_config: the printed job does not load: %s\n---\n%s", err.msg, t1);
        abort();
    }
    char *t2 = print_job(again, &len2);
    if (len1 != len2 || memcmp(t1, t2, len1) != 0 || cfg_job_hash(job) != cfg_job_hash(again)) {
        fprintf(stderr, "fuzz_config: print/load/print differs\n---\n%s---\n%s", t1, t2);
        abort();
    }
    free(t1);
    free(t2);
    cfg_job_free(again);
    cfg_job_free(job);
    return 0;
}
