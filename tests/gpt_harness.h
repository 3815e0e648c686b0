/* tests/gpt_harness.h -- what the transformer unit tests (test_gpt, test_lora,
 * test_gpt_dropout) share: random fills, one layer's backward against central finite
 * differences, and tiny GPT-2 models on random weights with their loss's finite
 * differences. Failures are cmocka failures (include <cmocka.h> first).
 *
 * The finite differences: fd[i] = (f(p + h e_i) - f(p - h e_i)) / 2h, h = 3e-3, in
 * double; a gradient g matches when |g - fd| <= 2e-2 max(|g|, |fd|) + 2e-3. For one layer
 * f = sum dy * y, y = forward(x, t); for a model f = its loss.
 *
 * Legend: N batch, T tokens, C channels, V vocabulary. */
#ifndef PSTRAIN_TESTS_GPT_HARNESS_H
#define PSTRAIN_TESTS_GPT_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "base/rng.h"
#include "core/gpt2.h"
#include "core/model.h"

/* Sets key of s to v (a float key as a float, any other as a whole number). */
void gh_setk(ml_layer_spec *s, const char *key, double v);
/* x[0..n) uniform in [-scale, scale). */
void gh_fill(float *x, size_t n, rng_state *r, float scale);
/* Fails naming what[i] where got[i] and fd[i] do not match (the tolerance above). */
void gh_assert_grad(const float *got, const float *fd, size_t len, const char *what);

/* ---- One layer ------------------------------------------------------------------------
 * A layer of input width in, shaped, with random tensors t (0.5 scale), input x (1.0
 * scale; ids < the first tensor's rows when ids), dy (1.0), all drawn in that order
 * from seed; every buffer is the layer's own. */
typedef struct {
    ml_layer l;
    int n, ids;
    size_t xl, yl;               /* N * in, N * out */
    float *x, *dx, *y, *dy, *fd; /* fd: room for the largest of x and every tensor */
    float *t[ML_MAX_TENSORS], *dt[ML_MAX_TENSORS];
    size_t tl[ML_MAX_TENSORS];
} gh_layer_case;
/* proto: the layer before its shape (spec, nin, in, and training, seed, index if wanted). */
void gh_layer_make(gh_layer_case *c, const ml_layer *proto, int n, int ids, uint64_t seed);
/* Forward, then backward into dx (none when ids) and dt. */
void gh_layer_run(gh_layer_case *c);
/* gh_layer_run, then dx (unless ids) and every dt against finite differences; failures
 * name "NAME dx", "NAME d<tensor>". */
void gh_layer_check(gh_layer_case *c, const char *name);
void gh_layer_free(gh_layer_case *c);

/* ---- A tiny GPT-2 --------------------------------------------------------------------- */
/* ml_gpt2_spec of c into *s, asserted to succeed. */
void gh_gpt_spec(ml_model_spec *s, const ml_gpt2_config *c);
/* The model of s for T tokens and batch n, initialised with seed; s is finied. */
ml_model *gh_model_create(ml_model_spec *s, int tokens, int n, uint64_t seed);
/* Adds uniform [-0.2, 0.2) to every parameter: GPT-2 starts the layernorm weights at 1
 * and the biases at 0, so their gradients mean something only then, and the weights'
 * 0.02 scale leaves the attention near uniform. */
void gh_perturb(ml_model *m, rng_state *r);
/* fd (nparams): finite differences of the loss of ids (N, T) with labels lab (N, T). */
void gh_model_fd(float *fd, ml_model *m, const float *ids, const int32_t *lab, int n);

/* The dump tests/ref/gpt_ref.py's check_dump reads (test_gpt --dump, test_lora --dump),
 * of model m (configuration c) after forward, loss and backward on one batch of n windows
 * of t tokens: params.f32, grads.f32 (the flat vectors), logits.f32 (n, t, V), ids.f32,
 * labels.i32 (n, t) and case.json -- c, t, n, the loss, the JSON members `extra` (e.g.
 * "\"lora\": {...}, "; "" for none) and every segment with the Hugging Face name hf gives
 * it (0: named). Returns 0 when everything was written. */
int gh_dump(const char *dir, ml_model *m, const ml_gpt2_config *c, const float *ids,
            const int32_t *labels, const float *logits, int n, int t, double loss,
            const char *extra, int (*hf)(const ml_segment *sg, char *buf, size_t cap));

#endif
