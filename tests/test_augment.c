/* tests/test_augment.c -- data/augment.c: each transform on small known images (shift,
 * flip, rotation, noise), the batch driver's seeding (same seed, same output; another
 * rank, epoch or row, another one; a row's draws independent of its batch) and the
 * parameter checks' messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"

/* A (C, H, W) image whose every pixel is distinct and non-zero: 1 + its flat index. */
static void ramp(float *img, int c, int h, int w)
{
    for (int i = 0; i < c * h * w; i++)
        img[i] = (float)(i + 1);
}

/* dst(i, j) = src(i - dy, j - dx) exactly, 0 where that falls outside. */
static void test_shift_exact(void **state)
{
    (void)state;
    enum { C = 2, H = 4, W = 5 };
    float src[C * H * W], dst[C * H * W];
    ramp(src, C, H, W);
    const int moves[][2] = {{1, -2}, {-3, 4}, {0, 0}, {3, 0}, {0, -4}, {4, 0}, {0, 5}};
    for (size_t m = 0; m < sizeof moves / sizeof moves[0]; m++) {
        int dy = moves[m][0], dx = moves[m][1];
        memset(dst, 0xff, sizeof dst); /* NaN: every value must be written */
        ds_aug_shift(dst, src, C, H, W, dy, dx);
        for (int k = 0; k < C; k++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < W; j++) {
                    int si = i - dy, sj = j - dx;
                    float want =
                        si >= 0 && si < H && sj >= 0 && sj < W ? src[(k * H + si) * W + sj] : 0.0f;
                    assert_true(dst[(k * H + i) * W + j] == want);
                }
    }
}

/* A mirror: column j becomes W-1-j in every row and channel (odd width keeps the middle);
 * twice is the identity. */
static void test_flip(void **state)
{
    (void)state;
    enum { C = 3, H = 2, W = 5 };
    float img[C * H * W], orig[C * H * W];
    ramp(orig, C, H, W);
    memcpy(img, orig, sizeof img);
    ds_aug_flip(img, C, H, W);
    for (int p = 0; p < C * H; p++)
        for (int j = 0; j < W; j++)
            assert_true(img[p * W + j] == orig[p * W + W - 1 - j]);
    ds_aug_flip(img, C, H, W);
    assert_memory_equal(img, orig, sizeof img);
    float even[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8};
    ds_aug_flip(even, 1, 2, 4);
    const float want[8] = {4, 3, 2, 1, 8, 7, 6, 5};
    assert_memory_equal(even, want, sizeof want);
}

/* 0 degrees copies bit for bit; 90 degrees of a square image is the exact permutation
 * dst(i, j) = src(j, W-1-i) (counter-clockwise as shown, rows down: the top row ends on the
 * left column, read upwards), up to cos(90) in float; 4 x 90 returns the image. */
static void test_rotate_exact_angles(void **state)
{
    (void)state;
    enum { C = 2, N = 5 };
    float src[C * N * N], dst[C * N * N], tmp[C * N * N];
    ramp(src, C, N, N);
    ds_aug_rotate(dst, src, C, N, N, 0.0f);
    assert_memory_equal(dst, src, sizeof src);
    ds_aug_rotate(dst, src, C, N, N, 90.0f);
    for (int k = 0; k < C; k++)
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                assert_float_equal(dst[(k * N + i) * N + j], src[(k * N + j) * N + N - 1 - i],
                                   1e-4);
    /* The top-left pixel (0, 0) goes to the bottom-left (N-1, 0). */
    assert_float_equal(dst[(N - 1) * N], src[0], 1e-4);
    memcpy(tmp, dst, sizeof tmp);
    for (int r = 0; r < 3; r++) {
        ds_aug_rotate(dst, tmp, C, N, N, 90.0f);
        memcpy(tmp, dst, sizeof tmp);
    }
    for (int i = 0; i < C * N * N; i++)
        assert_float_equal(tmp[i], src[i], 1e-3);
    /* -90 undoes 90. */
    ds_aug_rotate(tmp, src, C, N, N, 90.0f);
    ds_aug_rotate(dst, tmp, C, N, N, -90.0f);
    for (int i = 0; i < C * N * N; i++)
        assert_float_equal(dst[i], src[i], 1e-3);
}

/* A small angle moves a centred blob without losing or making mass (bilinear weights sum
 * to 1 and nothing reaches the border), and moves it: the image changes. */
static void test_rotate_small_keeps_mass(void **state)
{
    (void)state;
    enum { H = 28, W = 28 };
    float src[H * W], dst[H * W];
    double mass = 0.0, out = 0.0, diff = 0.0;
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            /* an off-centre bar: rotation has something to move */
            float v = (i >= 8 && i < 20 && j >= 11 && j < 15) ? 1.0f : 0.0f;
            src[i * W + j] = v;
            mass += v;
        }
    for (float deg = -15.0f; deg <= 15.0f; deg += 7.5f) {
        ds_aug_rotate(dst, src, 1, H, W, deg);
        out = diff = 0.0;
        for (int i = 0; i < H * W; i++) {
            assert_true(dst[i] >= -1e-6f && dst[i] <= 1.0f + 1e-6f); /* a convex mix */
            out += dst[i];
            diff += fabs(dst[i] - src[i]);
        }
        assert_true(fabs(out - mass) < 0.03 * mass);
        if (deg != 0.0f)
            assert_true(diff > 1.0);
    }
}

/* noise: mean 0 and the asked standard deviation over many values; the draws are r's. */
static void test_noise_moments(void **state)
{
    (void)state;
    enum { N = 200000 };
    float *x = calloc(N, sizeof *x), *y = calloc(N, sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    rng_state r;
    rng_seed(&r, 5);
    ds_aug_noise(x, N, 0.25f, &r);
    double s = 0.0, s2 = 0.0;
    for (int i = 0; i < N; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    double mean = s / N, sd = sqrt(s2 / N - mean * mean);
    assert_true(fabs(mean) < 0.005); /* 5 sigma of 0.25 / sqrt(N) is 0.0028 */
    assert_true(fabs(sd - 0.25) < 0.25 * 0.01);
    rng_seed(&r, 5);
    ds_aug_noise(y, N, 0.25f, &r);
    assert_memory_equal(x, y, N * sizeof *x);
    free(x);
    free(y);
}

enum { BC = 1, BH = 8, BW = 8, BD = BC * BH * BW, BB = 16 };

/* A batch of BB ramps (row r's values offset by 100 r) put through ds_aug_batch. */
static void aug_batch(float *x, const ds_aug_config *a, const uint32_t *rows, uint64_t seed)
{
    static const int chw[3] = {BC, BH, BW};
    float scratch[BD];
    for (int b = 0; b < BB; b++) {
        ramp(x + b * BD, BC, BH, BW);
        for (int i = 0; i < BD; i++)
            x[b * BD + i] += 100.0f * (float)rows[b];
    }
    ds_aug_batch(a, x, rows, BB, chw, seed, scratch);
}

/* The same (seed, rank, epoch, row) gives the same output; another rank, epoch or job seed
 * another one; a row is transformed alike wherever it sits in a batch. */
static void test_batch_seeding(void **state)
{
    (void)state;
    const ds_aug_config a = {.shift = 2, .flip = 0.5f, .rotate = 10.0f, .noise = 0.1f};
    uint32_t rows[BB], rev[BB];
    for (int b = 0; b < BB; b++) {
        rows[b] = (uint32_t)b;
        rev[b] = (uint32_t)(BB - 1 - b);
    }
    static float x1[BB * BD], x2[BB * BD], x3[BB * BD];
    aug_batch(x1, &a, rows, ds_aug_epoch_seed(42, 0, 1));
    aug_batch(x2, &a, rows, ds_aug_epoch_seed(42, 0, 1));
    assert_memory_equal(x1, x2, sizeof x1);
    const uint64_t others[] = {ds_aug_epoch_seed(42, 1, 1), ds_aug_epoch_seed(42, 0, 2),
                               ds_aug_epoch_seed(43, 0, 1)};
    for (size_t k = 0; k < 3; k++) {
        aug_batch(x2, &a, rows, others[k]);
        for (int b = 0; b < BB; b++) /* every sample's draws differ */
            assert_true(memcmp(x1 + b * BD, x2 + b * BD, sizeof(float) * BD) != 0);
    }
    aug_batch(x3, &a, rev, ds_aug_epoch_seed(42, 0, 1));
    for (int b = 0; b < BB; b++)
        assert_memory_equal(x1 + b * BD, x3 + (BB - 1 - b) * BD, sizeof(float) * BD);
    /* Nothing on: the batch is untouched. */
    const ds_aug_config off = {0};
    assert_false(ds_aug_active(&off));
    assert_true(ds_aug_active(&a));
    aug_batch(x2, &off, rows, ds_aug_epoch_seed(42, 0, 1));
    for (int b = 0; b < BB; b++)
        for (int i = 0; i < BD; i++)
            assert_true(x2[b * BD + i] == (float)(i + 1) + 100.0f * (float)b);
}

/* shift s: a lone pixel lands on each of the (2s + 1)^2 offsets, about equally often;
 * flip p: about p of the samples are mirrored, all of them at p = 1. */
static void test_batch_distributions(void **state)
{
    (void)state;
    enum { H = 9, W = 9, N = 5000 };
    static const int chw[3] = {1, H, W};
    float scratch[H * W], img[H * W];
    int hits[H * W] = {0};
    const ds_aug_config sh = {.shift = 2};
    uint64_t seed = ds_aug_epoch_seed(1, 0, 1);
    for (uint32_t r = 0; r < N; r++) {
        memset(img, 0, sizeof img);
        img[4 * W + 4] = 1.0f;
        ds_aug_batch(&sh, img, &r, 1, chw, seed, scratch);
        int at = -1, n = 0;
        for (int i = 0; i < H * W; i++)
            if (img[i] != 0.0f) {
                assert_true(img[i] == 1.0f); /* moved, not blurred */
                at = i;
                n++;
            }
        assert_int_equal(n, 1);
        hits[at]++;
    }
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            int inside = abs(i - 4) <= 2 && abs(j - 4) <= 2;
            if (inside) /* N / 25 = 200 each; 5 sigma is about 70 */
                assert_true(hits[i * W + j] > 130 && hits[i * W + j] < 270);
            else
                assert_int_equal(hits[i * W + j], 0);
        }
    for (int pass = 0; pass < 2; pass++) {
        const ds_aug_config fl = {.flip = pass ? 1.0f : 0.3f};
        int flipped = 0;
        for (uint32_t r = 0; r < N; r++) {
            ramp(img, 1, H, W);
            ds_aug_batch(&fl, img, &r, 1, chw, seed, scratch);
            flipped += img[0] == (float)W;
        }
        if (pass)
            assert_int_equal(flipped, N);
        else /* 1500 expected; 5 sigma is about 160 */
            assert_true(flipped > 1340 && flipped < 1660);
    }
}

/* Out-of-range parameters: one message naming the key. */
static void test_check(void **state)
{
    (void)state;
    pst_err err = {0};
    const int chw[3] = {1, 28, 28};
    const struct {
        ds_aug_config a;
        const char *key;
    } bad[] = {
        {{.shift = -1}, "data.augment.shift: must be >= 0"},
        {{.flip = -0.5f}, "data.augment.flip: must be a probability in [0, 1], got -0.5"},
        {{.flip = 1.5f}, "data.augment.flip:"},
        {{.flip = NAN}, "data.augment.flip:"},
        {{.rotate = 90.0f}, "data.augment.rotate: must be in [0, 45] degrees"},
        {{.rotate = -5.0f}, "data.augment.rotate:"},
        {{.noise = -0.1f}, "data.augment.noise:"},
        {{.noise = INFINITY}, "data.augment.noise:"},
        {{.shift = 28}, "data.augment.shift: 28 pixels is not smaller than the 28 x 28 images"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(ds_aug_check(&bad[i].a, chw, &err), PST_ERR_CONFIG);
        if (!strstr(err.msg, bad[i].key))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].key);
    }
    const ds_aug_config ok = {.shift = 27, .flip = 1.0f, .rotate = 45.0f, .noise = 0.0f};
    assert_int_equal(ds_aug_check(&ok, chw, &err), PST_OK);
    const ds_aug_config big = {.shift = 100};
    assert_int_equal(ds_aug_check(&big, NULL, &err), PST_OK); /* ranges alone */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shift_exact),         cmocka_unit_test(test_flip),
        cmocka_unit_test(test_rotate_exact_angles), cmocka_unit_test(test_rotate_small_keeps_mass),
        cmocka_unit_test(test_noise_moments),       cmocka_unit_test(test_batch_seeding),
        cmocka_unit_test(test_batch_distributions), cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
