/* core/layers/seq.h -- what the transformer layer types share (internal to core/layers).
 *
 * A sample of a sequence layer is T tokens x C channels, row-major: (N, T*C). There is no
 * shape system; each type has a `tokens` key (T) and takes C from its input width, which
 * must then be a multiple of T. GPT-2 weights start N(0, 0.02) (Radford et al. 2019, as
 * in llm.c's and Hugging Face's init), whatever init scheme the model picked. */
#ifndef PSTRAIN_CORE_LAYERS_SEQ_H
#define PSTRAIN_CORE_LAYERS_SEQ_H

#include <stddef.h>

#include "base/err.h"
#include "base/rng.h"
#include "core/layer.h"

#define ML_SEQ_INIT_SD 0.02f

/* C = in / T for a layer of T tokens; the message names the widths when they disagree. */
static inline int ml_seq_channels(int in, int t, int *c, pst_err *err)
{
    if (t < 1)
        return pst_err_set(err, PST_ERR_CONFIG, "tokens: must be >= 1, got %d", t);
    if (in < t || in % t != 0)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "tokens: an input of width %d is not %d tokens x C channels (IN must "
                           "be T*C)",
                           in, t);
    *c = in / t;
    return PST_OK;
}

static inline void ml_seq_normal(float *w, size_t len, float sd, rng_state *r)
{
    for (size_t k = 0; k < len; k++)
        w[k] = sd * rng_normal(r);
}

#endif
