/* worker/dataprep.h -- from a job's data section to ready-to-train datasets.
 *
 * Loads the training file (and the test file if the job names one) in the job's format,
 * holds out the validation split, keeps the classes of data.classes (renumbered 0..k-1 in
 * every set) and a seeded, stratified random subset of data.limit training samples, fits
 * the scaler on what remains of the training data and applies that same fitted transform
 * to validation and test data.
 *
 * Integer class ids are indices into the model's outputs (as in PyTorch and Keras): K is
 * data.num_classes, else the largest id of the training and test files + 1, and a class
 * with no training sample -- the lowest or the highest alike -- is a warning, as is
 * training data of a single class. */
#ifndef PSTRAIN_WORKER_DATAPREP_H
#define PSTRAIN_WORKER_DATAPREP_H

#include "job/job.h"
#include "data/data.h"
#include "base/err.h"
#include "base/log.h"

typedef struct {
    ds_dataset *train; /* always set: this worker's partition */
    ds_dataset *val;   /* NULL when validation_split is 0 */
    ds_dataset *test;  /* NULL when the job names no test file */
    ds_scaler scaler;  /* fitted on train */
} wk_data;

/* Fills *d; on failure everything is freed and err names the file and problem. Warnings
 * about the data go to lg (NULL: none). */
int wk_data_load_log(const cfg_job *job, int nparts, int part, const log_ctx *lg, wk_data *d,
                     pst_err *err);
/* The same, warning as worker[part] on stderr when part is 0 (every worker draws the same
 * data, so one says it). */
int wk_data_load(const cfg_job *job, int nparts, int part, wk_data *d, pst_err *err);
void wk_data_fini(wk_data *d);

/* Loads one file pair in the job's format (used for train, test, and by eval tools). */
ds_dataset *wk_data_load_file(const cfg_data *dc, const char *path, const char *labels_path,
                              pst_err *err);

#endif
