/* tests/spec_helpers.h -- model specs written in code for the unit tests.
 *
 * DENSE(units, act) and ACT(act) are ml_layer_spec values of the built-in types (keys in
 * the order of core/layers/dense.c and activation.c: units, activation); ACT_* name
 * entries of the activation table. */
#ifndef PSTRAIN_TESTS_SPEC_HELPERS_H
#define PSTRAIN_TESTS_SPEC_HELPERS_H

#include "core/layer.h"

#define ACT_LINEAR ml_activation_find("linear")
#define ACT_RELU ml_activation_find("relu")
#define ACT_SIGMOID ml_activation_find("sigmoid")
#define ACT_TANH ml_activation_find("tanh")
#define ACT_SOFTMAX ml_activation_find("softmax")

#define LAYER_OF(o, u, a, nm)                                                                      \
    ((ml_layer_spec){.ops = (o),                                                                   \
                     .name = (nm),                                                                 \
                     .trainable = 1,                                                               \
                     .lr_mult = 1.0f,                                                              \
                     .val = {{.i = (u)}, {.i = (a)}}})
#define DENSE(u, a) LAYER_OF(&ml_layer_dense, (u), (a), NULL)
#define DENSE_N(u, a, nm) LAYER_OF(&ml_layer_dense, (u), (a), (nm))
#define ACT(a) LAYER_OF(&ml_layer_activation, 0, (a), NULL)

#endif
