/* tests/test_gpt_dropout.c -- dropout in the GPT-2 blocks (core/gpt2.h, model.gpt2.dropout):
 * attention's probability dropout against central finite differences with the mask held
 * fixed (a fixed seed regenerates it), a whole tiny GPT-2 with dropout likewise, the
 * layers dropout adds (and none at 0), and that evaluation is deterministic: with dropout
 * set, an evaluation forward equals the same weights' forward without dropout, bit for bit.
 *
 * Legend: N batch, T tokens, C channels, H heads, V vocabulary. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/rng.h"
#include "core/gpt2.h"
#include "core/model.h"

#include "gpt_harness.h"

/* Attention with dropout `rate` in training (seed fixed: the mask is fixed) against
 * finite differences: dx and every tensor's gradient. */
static void check_attention(int n, int t, int c, int h, double rate, uint64_t seed)
{
    ml_layer_spec L;
    ml_layer_spec_init(&L, &ml_layer_attention);
    gh_setk(&L, "tokens", t);
    gh_setk(&L, "heads", h);
    gh_setk(&L, "dropout", rate);
    gh_layer_case lc;
    gh_layer_make(
        &lc,
        &(ml_layer){.spec = &L, .nin = 1, .in = {t * c}, .training = 1, .seed = seed, .index = 3},
        n, 0, seed);
    gh_layer_check(&lc, "attention+dropout");
    /* the mask does something: evaluation gives another output, and rate 0 that one */
    const float *cx[1] = {lc.x};
    const float *const *ct = (const float *const *)lc.t;
    float *ye = malloc(lc.yl * sizeof *ye);
    lc.l.training = 0;
    L.ops->forward(&lc.l, ye, cx, ct, n);
    lc.l.training = 1;
    L.ops->forward(&lc.l, lc.y, cx, ct, n);
    assert_memory_not_equal(lc.y, ye, lc.yl * sizeof *ye);
    free(ye);
    gh_layer_free(&lc);
}

static void test_attention_dropout_gradients(void **state)
{
    (void)state;
    check_attention(1, 4, 5, 1, 0.3, 11); /* batch 1, odd C */
    check_attention(2, 3, 6, 3, 0.5, 12);
    check_attention(3, 5, 8, 2, 0.1, 13);
}

static ml_model *gpt(double dropout, int n, ml_gpt2_config *c)
{
    *c = (ml_gpt2_config){.n_layer = 2,
                          .n_head = 2,
                          .n_embd = 6,
                          .n_positions = 5,
                          .vocab_size = 7,
                          .context = 4,
                          .dropout = dropout};
    ml_model_spec s;
    gh_gpt_spec(&s, c);
    ml_model *m = gh_model_create(&s, 4, n, 5);
    rng_state r;
    rng_seed(&r, 6);
    gh_perturb(m, &r);
    return m;
}

/* A whole GPT-2 with dropout 0.2, training mode, seed fixed: gradients against finite
 * differences of the loss. */
static void test_gpt2_dropout_gradients(void **state)
{
    (void)state;
    const int n = 2, t = 4;
    ml_gpt2_config c;
    ml_model *m = gpt(0.2, n, &c);
    ml_model_set_mode(m, 1, 99);
    float ids[2 * 4] = {1, 2, 3, 4, 6, 5, 0, 2};
    int32_t lab[2 * 4] = {2, 3, 4, 5, 5, 0, 2, 1};
    ml_model_forward(m, ids, n);
    ml_model_loss(m, lab, NULL, n);
    ml_model_backward(m, ids, n);
    size_t np = ml_model_nparams(m);
    float *g = malloc(sizeof *g * np), *fd = malloc(sizeof *fd * np);
    memcpy(g, ml_model_grads(m), sizeof *g * np);
    gh_model_fd(fd, m, ids, lab, n);
    gh_assert_grad(g, fd, np, "gpt2+dropout");
    (void)t;
    free(g), free(fd);
    ml_model_destroy(m);
}

/* Layers: dropout 0 adds none (the model of before, layer for layer); dropout p adds
 * `drop` and two per block, and ml_gpt2_config_of reads p back. */
static void test_gpt2_dropout_layers(void **state)
{
    (void)state;
    ml_gpt2_config c = {.n_layer = 3, .n_head = 2, .n_embd = 8, .n_positions = 6, .vocab_size = 9},
                   back;
    ml_model_spec s;
    pst_err err = {0};
    assert_int_equal(ml_gpt2_spec(&s, &c, &err), PST_OK);
    assert_int_equal(s.nlayers, 2 + 7 * 3 + 2);
    assert_int_equal(ml_gpt2_config_of(&s, &back, &err), PST_OK);
    assert_true(back.dropout == 0.0);
    ml_model_spec_fini(&s);
    c.dropout = 0.1;
    assert_int_equal(ml_gpt2_spec(&s, &c, &err), PST_OK);
    assert_int_equal(s.nlayers, 3 + 9 * 3 + 2);
    assert_string_equal(s.layers[2].name, "drop");
    assert_string_equal(s.layers[5].name, "h0_attn_drop");
    assert_int_equal(ml_gpt2_config_of(&s, &back, &err), PST_OK);
    assert_int_equal(back.n_layer, 3);
    assert_float_equal(back.dropout, 0.1, 1e-12);
    ml_model_spec_fini(&s);
    c.dropout = 0.99;
    assert_int_equal(ml_gpt2_spec(&s, &c, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "dropout"));
}

/* Evaluation (and so eval and generate, which run the model in evaluation) is
 * deterministic with dropout set: the same output twice, equal bit for bit to the same
 * weights without dropout; training with two seeds gives two outputs. */
static void test_gpt2_dropout_eval_deterministic(void **state)
{
    (void)state;
    const int n = 2;
    ml_gpt2_config c;
    ml_model *d = gpt(0.3, n, &c), *z = gpt(0.0, n, &c);
    assert_int_equal(ml_model_nparams(d), ml_model_nparams(z));
    memcpy(ml_model_params(z), ml_model_params(d), sizeof(float) * ml_model_nparams(d));
    float ids[2 * 4] = {1, 2, 3, 4, 6, 5, 0, 2};
    size_t len = (size_t)n * 4 * 7;
    float *a = malloc(sizeof *a * len), *b = malloc(sizeof *b * len);
    ml_model_set_mode(d, 0, 0);
    memcpy(a, ml_model_forward(d, ids, n), sizeof *a * len);
    memcpy(b, ml_model_forward(d, ids, n), sizeof *b * len);
    assert_memory_equal(a, b, sizeof *a * len);
    assert_memory_equal(a, ml_model_forward(z, ids, n), sizeof *a * len);
    ml_model_set_mode(d, 1, 1);
    memcpy(a, ml_model_forward(d, ids, n), sizeof *a * len);
    ml_model_set_mode(d, 1, 2);
    memcpy(b, ml_model_forward(d, ids, n), sizeof *b * len);
    assert_memory_not_equal(a, b, sizeof *a * len);
    ml_model_set_mode(d, 1, 1);
    assert_memory_equal(a, ml_model_forward(d, ids, n), sizeof *a * len); /* seeded */
    free(a), free(b);
    ml_model_destroy(d);
    ml_model_destroy(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_dropout_gradients),
        cmocka_unit_test(test_gpt2_dropout_gradients),
        cmocka_unit_test(test_gpt2_dropout_layers),
        cmocka_unit_test(test_gpt2_dropout_eval_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
