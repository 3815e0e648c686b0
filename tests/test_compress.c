/* tests/test_compress.c -- a worker's gradient encodings (worker/compress.h): top-k picks
 * the largest magnitudes of gradient + residual (against a sort), error feedback loses
 * nothing (over many steps, what was sent plus the residual is the sum of the gradients,
 * in double precision), ties, NaN and all-zero pieces; F16/BF16 frames hold the gradient's
 * codes. */
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
#include "proto/wire_enc.h"
#include "worker/compress.h"

#define P 1000
static const uint64_t OFF[3] = {0, 300, 950}, LEN[3] = {300, 650, 50};

/* The decoded sum of one slot's frames into out (P floats, added to). */
static void add_sent(const wk_comp *c, int slot, double *out)
{
    for (int i = 0; i < 3; i++) {
        const void *data[2];
        size_t bytes[2];
        int nf;
        uint64_t nnz;
        wk_comp_frames(c, slot, i, data, bytes, &nf, &nnz);
        assert_int_equal(nf, 2);
        assert_int_equal(bytes[0], nnz * 4);
        float dense[650];
        pst_err err = {0};
        assert_int_equal(wire_dec_topk(dense, LEN[i], data[0], data[1], nnz, &err), PST_OK);
        for (uint64_t j = 0; j < LEN[i]; j++)
            out[OFF[i] + j] += dense[j];
    }
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void test_error_feedback(void **state)
{
    (void)state;
    pst_err err = {0};
    wk_comp *c = wk_comp_create(WIRE_ENC_TOPK, 0.05, P, OFF, LEN, 3, &err);
    assert_non_null(c);
    rng_state r;
    rng_seed(&r, 3);
    static float g[P], acc[P], mag[650];
    static double sum_g[P], sum_sent[P];
    memset(sum_g, 0, sizeof sum_g);
    memset(sum_sent, 0, sizeof sum_sent);
    for (int step = 0; step < 60; step++) {
        for (int j = 0; j < P; j++) {
            g[j] = rng_normal(&r) * (j % 7 == 0 ? 3.0f : 1.0f);
            sum_g[j] += g[j];
            acc[j] = wk_comp_residual(c)[j] + g[j]; /* what the selection sees */
        }
        wk_comp_encode(c, step & 1, g);
        /* The k largest |acc| of each piece: the k-th largest sent equals a sort's. */
        for (int i = 0; i < 3; i++) {
            const void *data[2];
            size_t bytes[2];
            int nf;
            uint64_t nnz;
            wk_comp_frames(c, step & 1, i, data, bytes, &nf, &nnz);
            assert_int_equal(nnz, (uint64_t)ceil(0.05 * (double)LEN[i]));
            for (uint64_t j = 0; j < LEN[i]; j++)
                mag[j] = fabsf(acc[OFF[i] + j]);
            qsort(mag, LEN[i], sizeof *mag, cmp_desc);
            const uint32_t *idx = data[0];
            const float *val = data[1];
            float smallest = INFINITY;
            for (uint64_t k = 0; k < nnz; k++) {
                assert_true(k == 0 || idx[k] > idx[k - 1]);
                assert_true(val[k] == acc[OFF[i] + idx[k]]);
                smallest = fminf(smallest, fabsf(val[k]));
            }
            assert_true(smallest == mag[nnz - 1]);
        }
        add_sent(c, step & 1, sum_sent);
    }
    const float *res = wk_comp_residual(c);
    for (int j = 0; j < P; j++)
        if (fabs(sum_sent[j] + res[j] - sum_g[j]) > 1e-4 * (1 + fabs(sum_g[j])))
            fail_msg("entry %d: sent %g + residual %g != gradients %g", j, sum_sent[j],
                     (double)res[j], sum_g[j]);
    wk_comp_destroy(c);
}

/* Ties go to the lowest indices; an all-zero piece still sends k (zero) entries; NaN is
 * taken first so that the server sees it. */
static void test_ties_zeros_nan(void **state)
{
    (void)state;
    pst_err err = {0};
    const uint64_t off[1] = {0}, len[1] = {10};
    wk_comp *c = wk_comp_create(WIRE_ENC_TOPK, 0.3, 10, off, len, 1, &err);
    assert_non_null(c);
    float g[10] = {1, 2, 2, 2, 2, 0, 0, 0, 0, 0};
    wk_comp_encode(c, 0, g);
    const void *data[2];
    size_t bytes[2];
    int nf;
    uint64_t nnz;
    wk_comp_frames(c, 0, 0, data, bytes, &nf, &nnz);
    const uint32_t *idx = data[0];
    assert_int_equal(nnz, 3);
    assert_true(idx[0] == 1 && idx[1] == 2 && idx[2] == 3);
    assert_true(wk_comp_residual(c)[4] == 2.0f && wk_comp_residual(c)[0] == 1.0f);
    float z[10] = {0};
    wk_comp_encode(c, 1, z); /* residual 1, 0, 0, 0, 2, 0... : 4, 0, then the first 0 */
    wk_comp_frames(c, 1, 0, data, bytes, &nf, &nnz);
    idx = data[0];
    assert_true(idx[0] == 0 && idx[1] == 1 && idx[2] == 4);
    wk_comp_encode(c, 0, z); /* all zeros now */
    wk_comp_frames(c, 0, 0, data, bytes, &nf, &nnz);
    assert_int_equal(nnz, 3);
    z[7] = NAN;
    wk_comp_encode(c, 1, z);
    wk_comp_frames(c, 1, 0, data, bytes, &nf, &nnz);
    idx = data[0];
    assert_true(idx[0] == 0 && idx[1] == 1 && idx[2] == 7);
    assert_true(isnan(((const float *)data[1])[2]));
    wk_comp_destroy(c);
    assert_null(wk_comp_create(WIRE_ENC_TOPK, 0.0, 10, off, len, 1, &err));
    assert_null(wk_comp_create(WIRE_ENC_F32, 0.0, 10, off, len, 1, &err));
}

static void test_halves(void **state)
{
    (void)state;
    pst_err err = {0};
    for (int e = 0; e < 2; e++) {
        wire_enc enc = e ? WIRE_ENC_BF16 : WIRE_ENC_F16;
        wk_comp *c = wk_comp_create(enc, 0.0, P, OFF, LEN, 3, &err);
        assert_non_null(c);
        float g[P];
        for (int j = 0; j < P; j++)
            g[j] = (float)j / 7 - 50;
        wk_comp_encode(c, 1, g);
        for (int i = 0; i < 3; i++) {
            const void *data[2];
            size_t bytes[2];
            int nf;
            uint64_t nnz;
            wk_comp_frames(c, 1, i, data, bytes, &nf, &nnz);
            assert_int_equal(nf, 1);
            assert_int_equal(bytes[0], LEN[i] * 2);
            const uint16_t *h = data[0];
            for (uint64_t j = 0; j < LEN[i]; j++)
                assert_int_equal(h[j], e ? pst_f32_to_bf16(g[OFF[i] + j])
                                         : pst_f32_to_f16(g[OFF[i] + j]));
        }
        assert_null(wk_comp_residual(c));
        wk_comp_destroy(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_feedback),
        cmocka_unit_test(test_ties_zeros_nan),
        cmocka_unit_test(test_halves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
