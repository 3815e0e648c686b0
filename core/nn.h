/* core/nn.h -- the dense kernels and the losses: forward/backward pairs, outputs first.
 * (Activations: the table in core/layers/activation.c, see core/layer.h.)
 *
 * Dimensions: N = batch rows, IN = input features, OUT = output features, C = classes.
 * All tensors are row-major float32.
 *
 * Backward kernels *overwrite* their gradient outputs unless they take an `accumulate`
 * flag and it is set: a training step writes each gradient once, so the step needs no
 * separate zero_grad pass over the parameter gradients. */
#ifndef PSTRAIN_CORE_NN_H
#define PSTRAIN_CORE_NN_H

#include <stdint.h>

/* y = x W^T + b      x: (N, IN)  w: (OUT, IN)  b: (OUT)  y: (N, OUT) */
void ml_dense_forward(float *y, const float *x, const float *w, const float *b, int n, int in,
                      int out);

/* Given dy = dL/dy (N, OUT):
 *   dw = dy^T x   (OUT, IN)        db = sum over rows of dy   (OUT)
 *   dx = dy W     (N, IN)          skipped when dx is NULL (first layer)
 * dw and db are added to when accumulate != 0, else overwritten; dx is overwritten.
 * dw and db NULL (together): only dx, for a frozen layer that passes gradients through. */
void ml_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                       const float *w, int n, int in, int out, int accumulate);

/* Per-token linear map in GPT-2's Conv1D layout (weight stored (in, out)):
 *   y = x W + b      x: (M, IN)  w: (IN, OUT)  b: (OUT)  y: (M, OUT),  M = N*T tokens */
void ml_linear_forward(float *y, const float *x, const float *w, const float *b, int m, int in,
                       int out);
/* dw = x^T dy (IN, OUT), db = sum of dy's rows (OUT), both overwritten (NULL together:
 * a frozen layer); dx = dy W^T (M, IN) overwritten, skipped when NULL. */
void ml_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int m, int in, int out);

/* ---- Losses: mean over the N rows. Each returns the loss and writes dL/d(input) --- */

/* Categorical cross-entropy fused with softmax, from logits z: (N, C) and labels (N):
 *   p = softmax(z),  L = -1/N sum_i log p[i, label_i],  dz = (p - onehot) / N.
 * Stable: log p = z - max - log(sum exp(z - max)). Writes p into prob (may be NULL) and dz
 * into dz (may be NULL for evaluation only). */
double ml_softmax_xent(float *dz, float *prob, const float *z, const int32_t *label, int n, int c);

/* Categorical cross-entropy on probabilities p (N, C) (the output of a softmax layer that
 * is not fused): L = -1/N sum log max(p[i, y_i], eps); dp = -1/(N p[i, y_i]) at the label. */
double ml_xent(float *dp, const float *p, const int32_t *label, int n, int c);

/* Binary cross-entropy fused with sigmoid, from logits z: (N, K) and targets t in [0,1]:
 *   L = 1/(N K) sum softplus(z) - t z  (= -t log s - (1-t) log(1-s), stable for any z),
 *   dz = (sigmoid(z) - t) / (N K). Writes sigmoid(z) into prob if not NULL. */
double ml_sigmoid_bce(float *dz, float *prob, const float *z, const float *t, int n, int k);

/* Binary cross-entropy on probabilities p (N, K) with p clamped to [eps, 1-eps]. */
double ml_bce(float *dp, const float *p, const float *t, int n, int k);

/* Mean squared error: L = 1/(N K) sum (y - t)^2,  dy = 2 (y - t) / (N K). */
double ml_mse(float *dy, const float *y, const float *t, int n, int k);

#endif
