/* cli/predict.c -- a checkpoint's model applied to raw feature rows: what `pstrain predict`
 * computes for each row, shared by `pstrain eval`/`predict` and `pstrain plot` (cli.h). */
#include <string.h>

#include "cli/cli.h"
#include "ckpt/ckpt.h"

int cli_predict_rows(ckpt_model *ck, const float *x, int64_t n, int max_batch, float *y,
                     pst_err *err)
{
    ml_model *net = ckpt_model_net(ck);
    int D = ml_model_in_dim(net), out = ml_model_out_dim(net);
    /* The rows as a dataset, so the scaler is applied exactly as to a data file. */
    ds_dataset *ds = ds_create(n, D, DS_TASK_REGRESS, 0, 1, err);
    if (!ds)
        return err->code;
    memcpy(ds_x(ds), x, (size_t)n * (size_t)D * sizeof *x);
    int rc = ds_scaler_apply(ckpt_model_scaler(ck), ds, err);
    const float *xs = ds_x_const(ds);
    for (int64_t lo = 0; lo < n && !rc; lo += max_batch) {
        int b = (int)(n - lo < max_batch ? n - lo : max_batch);
        const float *yb = ml_model_forward(net, xs + (size_t)lo * D, b);
        memcpy(y + (size_t)lo * out, yb, (size_t)b * (size_t)out * sizeof *y);
    }
    ds_destroy(ds);
    return rc;
}
