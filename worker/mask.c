/* worker/mask.c -- pruning masks kept through fine-tuning (worker/mask.h). */
#include "worker/mask.h"

#include <stdint.h>
#include <stdlib.h>

struct wk_mask {
    uint32_t *idx; /* (n) parameter indices held at zero, ascending */
    size_t n;
};

wk_mask *wk_mask_create(ml_model *m, pst_err *err)
{
    wk_mask *k = calloc(1, sizeof *k);
    const float *p = ml_model_params(m);
    size_t n = 0;
    for (int pass = 0; k && pass < 2; pass++) {
        for (int i = 0; i < ml_model_nsegments(m); i++) {
            const ml_segment *sg = ml_model_segment(m, i);
            if (sg->cols == 1) /* biases and norms are not pruned */
                continue;
            for (size_t j = sg->offset; j < sg->offset + sg->len; j++)
                if (p[j] == 0.0f) {
                    if (pass)
                        k->idx[k->n++] = (uint32_t)j;
                    else
                        n++;
                }
        }
        if (!pass && !(k->idx = malloc((n ? n : 1) * sizeof *k->idx))) {
            free(k);
            k = NULL;
        }
    }
    if (!k)
        pst_err_set(err, PST_ERR_NOMEM, "pruning mask: out of memory");
    return k;
}

void wk_mask_destroy(wk_mask *k)
{
    if (!k)
        return;
    free(k->idx);
    free(k);
}

void wk_mask_apply(const wk_mask *k, float *params)
{
    for (size_t i = 0; i < k->n; i++)
        params[k->idx[i]] = 0.0f;
}

size_t wk_mask_count(const wk_mask *k) { return k->n; }
