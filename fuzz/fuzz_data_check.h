/* fuzz/fuzz_data_check.h -- what every loaded dataset must satisfy, whatever the file said:
 * shapes and labels the trainer can index with, finite features. */
#ifndef PSTRAIN_FUZZ_DATA_CHECK_H
#define PSTRAIN_FUZZ_DATA_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "data/data.h"
#include "fuzz/fuzz_common.h"

static inline void fuzz_data_check(const ds_dataset *ds, ds_dataset *load_result, int rc_ok,
                                   const pst_err *err)
{
    (void)ds;
    if (!load_result) {
        (void)rc_ok;
        fuzz_check_msg(err->msg);
        if (err->code != PST_ERR_DATA && err->code != PST_ERR_NOMEM &&
            err->code != PST_ERR_NUMERIC && err->code != PST_ERR_IO && err->code != PST_ERR_ARG) {
            fprintf(stderr, "fuzz: unexpected status %d: %s\n", err->code, err->msg);
            abort();
        }
        return;
    }
    int64_t n = ds_count(load_result);
    int d = ds_dim(load_result);
    if (n < 0 || d < 0) {
        fprintf(stderr, "fuzz: dataset of %lld x %d\n", (long long)n, d);
        abort();
    }
    /* Every feature, up to 4M of them: a libsvm file may densify into far more (see
     * fuzz_libsvm.flags), and reading all of it would fault in gigabytes of zeros. */
    const float *x = ds_x_const(load_result);
    int64_t nx = n * d < ((int64_t)1 << 22) ? n * d : (int64_t)1 << 22;
    for (int64_t i = 0; i < nx; i++)
        if (!isfinite(x[i])) {
            fprintf(stderr, "fuzz: feature %lld is not finite\n", (long long)i);
            abort();
        }
    if (ds_task_of(load_result) == DS_TASK_CLASSIFY) {
        const int32_t *lab = ds_labels_const(load_result);
        int k = ds_nclasses(load_result);
        for (int64_t i = 0; i < n; i++)
            if (lab[i] < 0 || lab[i] >= k) {
                fprintf(stderr, "fuzz: label %d of row %lld outside [0, %d)\n", lab[i],
                        (long long)i, k);
                abort();
            }
    } else {
        const float *t = ds_targets_const(load_result);
        int td = ds_target_dim(load_result);
        for (int64_t i = 0; i < n * td; i++)
            if (!isfinite(t[i])) {
                fprintf(stderr, "fuzz: target %lld is not finite\n", (long long)i);
                abort();
            }
    }
    ds_destroy(load_result);
}

#endif
