/* ps/state.h -- a shard's state ranges: non-gradient tensors such as batchnorm's running
 * mean and variance (update groups flagged state, proto/wire.h wire_groups), which workers
 * push as values, not gradients. No optimizer touches them; the shard (ps/shard.c) sets them
 * to the workers' mean:
 *   bsp      the mean of the values of the clock's pushes, the same mean as a gradient's
 *            (srv_state_set from the mean the shard assembles; a lone live worker's are
 *            its own);
 *   ssp/asp  the mean over the job's W workers of each one's latest report,
 *              w[i] = (1/W) sum_k v_k[i]
 *            where a worker yet to report counts the value the shard held when the first
 *            report came (INIT's or a checkpoint's): srv_state_report.
 * Ranges are in shard coordinates. S = state floats of the shard. */
#ifndef PSTRAIN_PS_STATE_H
#define PSTRAIN_PS_STATE_H

#include <stdint.h>

#include "base/err.h"
#include "core/optim.h"

typedef struct srv_state srv_state;

/* *out: the state groups among n update groups (shard coordinates; state[i] 1 for a state
 * group; ranges copied), for nworkers workers; NULL when there are none. */
int srv_state_create(srv_state **out, const opt_group *groups, const unsigned char *state, int n,
                     int nworkers, pst_err *err);
void srv_state_destroy(srv_state *st);

/* Whether [lo, lo + n) holds a state float. */
int srv_state_within(const srv_state *st, uint64_t lo, uint64_t n);

/* w[i] = v[i] for the state positions i of [lo, lo + n); w and v point at position lo. */
void srv_state_set(const srv_state *st, float *w, const float *v, uint64_t lo, uint64_t n);

/* ssp/asp: worker's latest values are v (pointing at position lo) for the state positions of
 * [lo, lo + n); each of them in w (the shard's weights, pointing at position 0) becomes the
 * mean over the workers. The first report seeds every worker's row from w (W x S floats). */
int srv_state_report(srv_state *st, int worker, float *w, const float *v, uint64_t lo, uint64_t n,
                     pst_err *err);

/* The weights were replaced (a checkpoint restored): the next report seeds the rows again. */
void srv_state_reset(srv_state *st);

#endif
