/* worker/sparse.h -- the sparse side of a trainer: a batch's sparse features, the rows of
 * the model's embedding tables for it, and -- in a single process -- the tables themselves.
 *
 * A step of a model with tables (core/model.h "Sparse layers"):
 *   wk_sparse_batch     the batch's CSR rows (ds_sparse_gather), the model's unique keys
 *                       per table (ml_model_gather) and their rows (K, d) from the source:
 *                       this process's own tables (core/sptable.h), or, for a distributed
 *                       worker, its servers (wk_rows_source)
 *   ... forward, loss, backward: ml_model_table_grads holds each key's gradient ...
 *   wk_sparse_apply_local  a single process: the step's row gradients into its tables
 *                       (lazily: only the batch's rows change) and one tick of each
 *
 * The tables' rule and bounds are the job's sparse: section, one spt_config per table from
 * cfg_sparse_table (job/job.h), so every process of a job makes the same rows. Owned by the
 * trainer (worker/trainer.c); internal to worker/. */
#ifndef PSTRAIN_WORKER_SPARSE_H
#define PSTRAIN_WORKER_SPARSE_H

#include <stdint.h>

#include "core/model.h"
#include "core/sptable.h"
#include "data/data.h"
#include "job/job.h"
#include "worker/trainer.h"

typedef struct wk_sparse wk_sparse;

/* For model m (with ml_model_ntables(m) > 0) of job, batches of at most `batch` rows of
 * datasets like `like` (which must have a sparse part): buffers for the largest batch,
 * and this process's own tables. */
wk_sparse *wk_sparse_create(const cfg_job *job, ml_model *m, const ds_dataset *like, int batch,
                            pst_err *err);
void wk_sparse_destroy(wk_sparse *s);

/* Rows come from src from now on; the process's own tables are dropped. */
void wk_sparse_set_source(wk_sparse *s, const wk_rows_source *src);

/* Rows idx[0..n) of ds (its sparse part) as the model's sparse batch, gathered per table
 * and filled from the source; train 0: an evaluation's (read only). The batch stays valid
 * (wk_sparse_batch_of) until the next call. */
int wk_sparse_batch(wk_sparse *s, ml_model *m, const ds_dataset *ds, const uint32_t *idx, int n,
                    int train, pst_err *err);
const ml_sparse_batch *wk_sparse_batch_of(const wk_sparse *s);

/* The squared L2 norm of the step's row gradients, and their scaling by f: global-norm
 * clipping covers them with the dense gradient. */
double wk_sparse_grad_sumsq(ml_model *m);
void wk_sparse_grad_scale(ml_model *m, float f);

/* A single process: the step's row gradients into its own tables at learning rate lr (the
 * sparse: section's, times the layer's lr_mult; frozen tables are not updated), then one
 * tick of every table. */
int wk_sparse_apply_local(wk_sparse *s, ml_model *m, pst_err *err);

/* The process's own tables to and from one file (ckpt/sparse.h); nothing with a source. */
int wk_sparse_save(const wk_sparse *s, const char *path, pst_err *err);
int wk_sparse_load(wk_sparse *s, const char *path, pst_err *err);
/* A log line's worth: "table 'emb' (dim 8): 1234 rows, 56 refused over the budget; ...". */
void wk_sparse_describe(const wk_sparse *s, char *buf, size_t n);

#endif
