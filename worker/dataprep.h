/* worker/dataprep.h -- from a job's data section to ready-to-train datasets.
 *
 * Loads the training file (and the test file if the job names one) in the job's format,
 * holds out the validation split, keeps the classes of data.classes (renumbered 0..k-1 in
 * every set) and the first data.limit training samples, fits the scaler on what remains of
 * the training data and applies that same fitted transform to validation and test data. */
#ifndef PSTRAIN_WORKER_DATAPREP_H
#define PSTRAIN_WORKER_DATAPREP_H

#include "job/job.h"
#include "data/data.h"
#include "base/err.h"

typedef struct {
    ds_dataset *train; /* always set: this worker's partition */
    ds_dataset *val;   /* NULL when validation_split is 0 */
    ds_dataset *test;  /* NULL when the job names no test file */
    ds_scaler scaler;  /* fitted on train */
} wk_data;

/* Fills *d; on failure everything is freed and err names the file and problem. */
int wk_data_load(const cfg_job *job, int nparts, int part, wk_data *d, pst_err *err);
void wk_data_fini(wk_data *d);

/* Loads one file pair in the job's format (used for train, test, and by eval tools). */
ds_dataset *wk_data_load_file(const cfg_data *dc, const char *path, const char *labels_path,
                              pst_err *err);

#endif
