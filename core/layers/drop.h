/* core/layers/drop.h -- the dropout mask, shared by the `dropout` layer and attention's
 * probability dropout (one mask generator, so every dropout in a model draws alike).
 *
 *   y[j] = x[j] * m / (1 - rate), m = [u(first + j) >= rate]   for j in [0, len)
 *   u(i) = top 32 bits of mix(key + golden * i) / 2^32, key = mix(seed ^ mix(golden *
 *          (index + 1)))  (seed, index: the layer's, set by ml_model_set_mode)
 * The counter is absolute (first + j), so a layer that masks its activations in pieces
 * (attention: one (T, T) block per sample and head) and regenerates them in backward
 * gets the forward's mask, independently of how it is cut. Outside training, or with
 * rate <= 0, y = x. y may be x (in place). */
#ifndef PSTRAIN_CORE_LAYERS_DROP_H
#define PSTRAIN_CORE_LAYERS_DROP_H

#include <stddef.h>

#include "core/layer.h"

void ml_drop_mask(const ml_layer *l, double rate, float *y, const float *x, size_t first,
                  size_t len);

#endif
