/* tests/test_importance.c -- permutation feature importance (core/explain.h).
 *
 * A model built by hand where only column 0 decides the class (logit difference 4*x0;
 * the noise columns carry weights of 0.01): shuffling column 0 must cost about half the
 * accuracy (labels are sign(x0), so a shuffled x0 guesses right half the time) and rank
 * first, and the noise columns must cost about nothing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "base/rng.h"
#include "core/explain.h"
#include "spec_helpers.h"

enum { N = 2000, D = 4 };

static void test_one_column_matters(void **state)
{
    (void)state;
    ml_layer_spec layers[] = {DENSE(2, ACT_SOFTMAX)};
    ml_model_spec spec = {.layers = layers, .nlayers = 1, .loss = ML_LOSS_CCE};
    pst_err err = {0};
    ml_model *m = ml_model_create(&spec, D, 128, &err);
    if (!m)
        fail_msg("create: %s", err.msg);
    /* dense weight (2, D) then bias (2): class 1 when 2*x0 > -2*x0, small noise weights */
    float *p = ml_model_params(m);
    const float w[2][D] = {{-2.0f, 0.01f, -0.01f, 0.01f}, {2.0f, -0.01f, 0.01f, -0.01f}};
    for (int o = 0; o < 2; o++)
        for (int j = 0; j < D; j++)
            p[o * D + j] = w[o][j];
    p[2 * D] = p[2 * D + 1] = 0.0f;
    float *x = malloc(sizeof(float) * N * D);
    int32_t *label = malloc(sizeof(int32_t) * N);
    rng_state r;
    rng_seed(&r, 7);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++)
            x[i * D + j] = rng_uniform(&r) * 2.0f - 1.0f;
        label[i] = x[i * D] > 0.0f;
    }
    double base, drop[D], again[D];
    assert_int_equal(ml_permutation_importance(m, x, label, N, 3, 11, &base, drop, &err), PST_OK);
    assert_true(base > 0.99);
    assert_true(drop[0] > 0.4 && drop[0] < 0.6);
    for (int j = 1; j < D; j++) {
        assert_true(drop[j] < drop[0]);
        assert_true(fabs(drop[j]) < 0.02);
    }
    /* seeded: the same figures again */
    assert_int_equal(ml_permutation_importance(m, x, label, N, 3, 11, &base, again, &err), PST_OK);
    for (int j = 0; j < D; j++)
        assert_true(drop[j] == again[j]);
    assert_int_equal(ml_permutation_importance(m, x, label, 0, 3, 11, &base, drop, &err),
                     PST_ERR_ARG);
    free(x);
    free(label);
    ml_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_one_column_matters)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
