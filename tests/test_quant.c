/* tests/test_quant.c -- fp16 conversion (base/half.h), int8 per-channel quantisation and
 * magnitude pruning (ckpt/quant.h): round-trip error bounds, zero rows, extremes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/half.h"
#include "base/rng.h"
#include "ckpt/quant.h"

static void test_half_exact_values(void **state)
{
    (void)state;
    /* Values binary16 holds exactly come back bit for bit; known encodings. */
    const struct {
        float x;
        uint16_t h;
    } k[] = {{0.0f, 0x0000},           {-0.0f, 0x8000},
             {1.0f, 0x3c00},           {-2.0f, 0xc000},
             {0.5f, 0x3800},           {65504.0f, 0x7bff},
             {-65504.0f, 0xfbff},      {6.103515625e-05f, 0x0400},
             {5.9604645e-08f, 0x0001}, {0.333251953125f, 0x3555}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        assert_int_equal(pst_f32_to_f16(k[i].x), k[i].h);
        assert_true(pst_f16_to_f32(k[i].h) == k[i].x);
    }
    assert_true(signbit(pst_f16_to_f32(0x8000)));
}

static void test_half_rounding_and_extremes(void **state)
{
    (void)state;
    /* Past the largest finite half (after rounding): Inf; NaN stays NaN. */
    assert_int_equal(pst_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(pst_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(pst_f32_to_f16(-1e9f), 0xfc00);
    assert_int_equal(pst_f32_to_f16(INFINITY), 0x7c00);
    assert_true(isnan(pst_f16_to_f32(pst_f32_to_f16(NAN))));
    assert_true(isinf(pst_f16_to_f32(0x7c00)));
    /* Ties to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10. */
    assert_int_equal(pst_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(pst_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    /* Below half the smallest subnormal: zero; exactly half: to even (zero). */
    assert_int_equal(pst_f32_to_f16(0x1p-26f), 0x0000);
    assert_int_equal(pst_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(pst_f32_to_f16(0x1.8p-25f), 0x0001);
    /* The largest subnormal rounding up into the smallest normal. */
    assert_int_equal(pst_f32_to_f16(0x1.ffep-15f), 0x0400);
}

static void test_half_relative_error(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 1);
    for (int i = 0; i < 100000; i++) {
        float x = (rng_uniform(&r) * 2 - 1) * powf(2.0f, (float)(rng_below(&r, 30)) - 14.0f);
        float y = pst_f16_to_f32(pst_f32_to_f16(x));
        /* half an ulp: 2^-11 relative for normals, 2^-25 absolute for subnormals */
        assert_true(fabsf(y - x) <= fmaxf(fabsf(x) * 0x1p-11f, 0x1p-25f));
    }
}

static void test_q8_round_trip(void **state)
{
    (void)state;
    enum { R = 7, C = 33 };
    float w[R * C], back[R * C], scale[R];
    int8_t q[R * C];
    rng_state r;
    rng_seed(&r, 2);
    for (int i = 0; i < R * C; i++)
        w[i] = rng_normal(&r) * (float)(1 + i / C) * 0.1f;
    for (int c = 0; c < C; c++)
        w[2 * C + c] = 0.0f; /* a zero row */
    w[3 * C + 5] = -1e30f;   /* an extreme row: one huge weight */
    w[4 * C] = 1e-39f;       /* a row of tiny (subnormal) weights, the rest zero */
    for (int c = 1; c < C; c++)
        w[4 * C + c] = c % 2 ? -1e-40f : 0.0f;
    assert_int_equal(ckpt_q8_rows(q, scale, w, R, C, NULL), PST_OK);
    ckpt_q8_dequant(back, q, scale, R, C);
    for (int rr = 0; rr < R; rr++) {
        float m = 0;
        for (int c = 0; c < C; c++)
            m = fmaxf(m, fabsf(w[rr * C + c]));
        assert_true(scale[rr] == m / 127.0f);
        int hit = 0;
        for (int c = 0; c < C; c++) {
            int v = q[rr * C + c];
            assert_true(v >= -127 && v <= 127);
            hit |= v == 127 || v == -127;
            if (scale[rr] > 0)
                assert_true(fabsf(back[rr * C + c] - w[rr * C + c]) <= 0.5001f * scale[rr]);
        }
        assert_int_equal(hit, m > 0); /* the largest weight maps to +-127 */
    }
    for (int c = 0; c < C; c++) {
        assert_int_equal(q[2 * C + c], 0);
        assert_true(back[2 * C + c] == 0.0f);
    }
    assert_int_equal(q[3 * C + 5], -127);
    assert_int_equal(q[4 * C], 127);
}

static void test_q8_refuses_nonfinite(void **state)
{
    (void)state;
    float w[6] = {1, 2, 3, 4, NAN, 6};
    float s[2];
    int8_t q[6];
    pst_err err = {0};
    assert_int_equal(ckpt_q8_rows(q, s, w, 2, 3, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "[1, 1] is NaN"));
    w[4] = -INFINITY;
    assert_int_equal(ckpt_q8_rows(q, s, w, 2, 3, &err), PST_ERR_DATA);
}

static void test_prune_tensor(void **state)
{
    (void)state;
    float w[10] = {0.5f, -0.1f, 0.3f, -0.9f, 0.2f, 0.2f, -0.05f, 0.7f, 0.0f, 1.0f};
    assert_int_equal(ckpt_prune_tensor(w, 10, 0.5, NULL), PST_OK);
    /* the 5 smallest |w|: 0.0, -0.05, -0.1, 0.2 (first), 0.2 (second) */
    const float want[10] = {0.5f, 0, 0.3f, -0.9f, 0, 0, 0, 0.7f, 0, 1.0f};
    assert_memory_equal(w, want, sizeof w);
    pst_err err = {0};
    assert_int_equal(ckpt_prune_tensor(w, 10, 1.0, &err), PST_ERR_ARG);
    assert_int_equal(ckpt_prune_tensor(w, 10, -0.1, &err), PST_ERR_ARG);
    assert_int_equal(ckpt_prune_tensor(w, 10, NAN, &err), PST_ERR_ARG);
    assert_int_equal(ckpt_prune_tensor(w, 10, 0.0, &err), PST_OK);
    assert_memory_equal(w, want, sizeof w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_exact_values),
        cmocka_unit_test(test_half_rounding_and_extremes),
        cmocka_unit_test(test_half_relative_error),
        cmocka_unit_test(test_q8_round_trip),
        cmocka_unit_test(test_q8_refuses_nonfinite),
        cmocka_unit_test(test_prune_tensor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
