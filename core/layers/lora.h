/* core/layers/lora.h -- low-rank adapters on a projection (internal to core/layers).
 *
 * LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
 * arXiv:2106.09685): a frozen projection W (IN, OUT) learns through
 *   y = x W + b + s (x A) B,   s = alpha / r,   A (IN, r), B (r, OUT)
 * with B = 0 at the start (the model is the base model until B moves) and A drawn as
 * the authors' loralib draws it (Kaiming-uniform, a = sqrt(5): U(-1/sqrt(IN), 1/sqrt(IN));
 * the paper says Gaussian -- any full-rank A works, as B = 0 makes the start exact).
 * core/model.c initialises adapters (core/layer.h adapter_mask); the types that carry
 * them (token_dense, attention) call these kernels after their own projection.
 *
 * The two keys a type with adapters adds, and the tensors they make (rank 0: none). */
#ifndef PSTRAIN_CORE_LAYERS_LORA_H
#define PSTRAIN_CORE_LAYERS_LORA_H

#include <stddef.h>

#include "base/err.h"
#include "core/layer.h"

#define ML_LORA_KEYS(rank_idx, alpha_idx)                                                          \
    [rank_idx] = {.name = "lora_rank",                                                             \
                  .kind = ML_KEY_INT,                                                              \
                  .def = 0,                                                                        \
                  .min = 0,                                                                        \
                  .max = 1 << 16,                                                                  \
                  .doc = "LoRA adapters of rank r on the projections (0: none; model.lora)",       \
                  .flags = ML_KEY_OMIT_DEFAULT},                                                   \
    [alpha_idx] = {.name = "lora_alpha",                                                           \
                   .kind = ML_KEY_FLOAT,                                                           \
                   .def = 1,                                                                       \
                   .min = 1e-30,                                                                   \
                   .max = -1,                                                                      \
                   .doc = "LoRA scale: the adapter adds (alpha / r) x A B",                        \
                   .flags = ML_KEY_OMIT_DEFAULT}

/* Adds adapter tensors A (in, r) and B (r, out) named "<what>_lora_a/_b" to l (at
 * l->tensor[l->ntensors]) and marks them in adapter_mask. Refuses r > min(in, out)
 * ("lora_rank: ..."). what must be a literal (the tensor keeps the pointer). */
int ml_lora_shape(ml_layer *l, const char *name_a, const char *name_b, int in, int out, int r,
                  pst_err *err);

/* y (M, OUT) += s (x A) B; xa (M, r) is scratch kept for backward. */
void ml_lora_forward(float *y, float *xa, const float *x, const float *a, const float *b, int m,
                     int in, int r, int out, float s);
/* From dy (M, OUT) and the forward's x and xa: dA, dB overwritten (NULL: not needed),
 * dx (M, IN) ADDED into (NULL: not needed); dxa (M, r) is scratch. */
void ml_lora_backward(float *dx, float *da, float *db, float *dxa, const float *dy, const float *x,
                      const float *xa, const float *a, const float *b, int m, int in, int r,
                      int out, float s);
/* W (in, out) += s A B: the merged projection. */
void ml_lora_merge(float *w, const float *a, const float *b, int in, int r, int out, float s);

#endif
