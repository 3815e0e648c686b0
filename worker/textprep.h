/* worker/textprep.h -- from a `data.format: text` job to this worker's token windows.
 *
 * The language-model counterpart of dataprep.h: the training text becomes windows of
 * data.context + 1 ids (data/textwin.h), tokenized once and cached in
 * <output.dir>/token-cache; the validation split is held out with the job's seed, and the
 * rest is partitioned across the nparts workers (nparts 1: all windows, shuffled) by the
 * same seeded rules as samples. The test text, when set, is loaded whole. */
#ifndef PSTRAIN_WORKER_TEXTPREP_H
#define PSTRAIN_WORKER_TEXTPREP_H

#include "base/err.h"
#include "base/log.h"
#include "data/textwin.h"
#include "job/job.h"
#include "worker/dataprep.h"

typedef struct {
    ds_windows *train; /* always set: this worker's partition, in its shuffled order */
    ds_windows *val;   /* NULL when validation_split is 0 */
    ds_windows *test;  /* NULL when the job names no test file */
} wk_text;

/* Fills *d; on failure everything is freed and err names the file and problem. log (may
 * be NULL) gets the cache's lines. */
int wk_text_load(const cfg_job *job, int nparts, int part, const log_ctx *log, wk_text *d,
                 pst_err *err);
void wk_text_fini(wk_text *d);

/* The windows as a dataset the trainer takes: x (N, T) the input ids as floats, targets
 * (N, T) the next-token ids as floats (task regress, tdim T); the trainer of a
 * sequence_crossentropy model reads the targets as labels. */
ds_dataset *wk_windows_dataset(const ds_windows *w, pst_err *err);
/* wk_text_load, as wk_data: what wk_data_load_log does for a format text job (no scaler:
 * kind none). */
int wk_text_data_load(const cfg_job *job, int nparts, int part, const log_ctx *log, wk_data *d,
                      pst_err *err);

#endif
