/* worker/mask.h -- pruning masks: the weights a pruned model holds at exactly zero stay
 * zero while it is fine-tuned (job key model.keep_zeros, docs/compression.md).
 *
 * The mask is the zero pattern of the weight matrices (2-D segments) right after
 * model.init_from loaded a pruned checkpoint (pstrain prune): no extra file, nothing on the
 * wire. After every update the masked weights are set back to 0, so momentum or Adam's
 * state cannot revive them. */
#ifndef PSTRAIN_WORKER_MASK_H
#define PSTRAIN_WORKER_MASK_H

#include <stddef.h>

#include "base/err.h"
#include "core/model.h"

typedef struct wk_mask wk_mask;

/* The mask of m's current zero weights; NULL with err set when out of memory. */
wk_mask *wk_mask_create(ml_model *m, pst_err *err);
void wk_mask_destroy(wk_mask *k);
/* Sets the masked entries of params (the model's P floats) to 0. */
void wk_mask_apply(const wk_mask *k, float *params);
/* How many weights the mask holds at zero. */
size_t wk_mask_count(const wk_mask *k);

#endif
