/* ps/async.h -- corrections that make asynchronous SGD (ssp/asp) converge like synchronous
 * SGD, applied by the shard (ps/shard.c) to each worker's gradient before the update rule.
 *
 * A gradient g of worker k was computed at the weights w_bak that k read when the shard had
 * applied r_k updates; it arrives when the shard has applied u. Its staleness is
 *   tau = u - r_k          (0: no other update came between; W workers in turn: ~W - 1)
 *
 * staleness-aware learning rate (Zhang, Gupta, Lian & Liu, "Staleness-aware Async-SGD for
 * distributed deep learning", IJCAI 2016):
 *   lr' = lr / (1 + tau)
 * delay compensation, DC-ASGD-a (Zheng et al., "Asynchronous stochastic gradient descent
 * with delay compensation", ICML 2017): a first-order Taylor correction of g towards the
 * gradient at the current weights, with the Hessian approximated by lambda * g (.) g and the
 * adaptive lambda_t = lambda0 / sqrt(ms), per coordinate:
 *   ms <- m ms + (1 - m) g^2                            m = 0.95, ms starts at 0
 *   g' = g + lambda0 / sqrt(ms + eps) * g * g * (w - w_bak)          eps = 1e-7
 * momentum accounting (Mitliagkas, Zhang, Hadjis & Re, "Asynchrony begets momentum", 2016):
 * W asynchronous workers behave like momentum 1 - 1/W; an explicit mu_e on top gives about
 * 1 - (1 - mu_e) / W in total, so
 *   mu_e = max(0, 1 - W (1 - mu))
 * keeps the total at the job's mu (momentum and nesterov; other rules are left as they are).
 *
 * Pure functions: no shard, no state beyond the buffers passed in. Shapes: n floats. */
#ifndef PSTRAIN_PS_ASYNC_H
#define PSTRAIN_PS_ASYNC_H

#include <stddef.h>
#include <stdint.h>

#define SRV_DC_DECAY 0.95f /* m, the mean square's decay (Zheng et al.'s setting) */
#define SRV_DC_EPS 1e-7f

/* lr / (1 + tau); tau < 0 counts as 0. */
float srv_async_lr(float lr, int64_t tau);

/* Writes g' (n) from g, the weights w now, those the worker read (bak), updating ms (n) in
 * place. out may not alias g; lambda0 > 0. */
void srv_async_dc(float *restrict out, const float *restrict g, const float *restrict w,
                  const float *restrict bak, float *restrict ms, size_t n, float lambda0);

/* The explicit momentum that, with the implicit momentum of nworkers asynchronous workers,
 * sums to mu. */
float srv_async_momentum(float mu, int nworkers);

#endif
