/* tests/test_wire_enc.c -- the wire's float encodings (proto/wire_enc.h): base/half.h's binary16 and
 * bfloat16 conversions against a reference that finds the nearest representable value by
 * search in double precision (ties to even, overflow, subnormals, signed zeros, inf, NaN),
 * the saturating array encoder, the top-k decoder's checks, and the envelope's encoding
 * field checked against the frames (proto/wire.c). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/half.h"
#include "base/rng.h"
#include "proto/wire.h"
#include "proto/wire_enc.h"

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The value of a non-negative half h in [0, 0x7c00]; 0x7c00 (inf) stands for 2^16, the next
 * binade's start, so that rounding to it is overflow. */
static double half_value(uint32_t h)
{
    uint32_t e = h >> 10, m = h & 0x3ff;
    return e == 0 ? ldexp((double)m, -24) : ldexp(1024.0 + m, (int)e - 25);
}

/* A non-negative bfloat16 h in [0, 0x7f80]; 0x7f80 stands for 2^128. */
static double bf_value(uint32_t h)
{
    return h == 0x7f80 ? ldexp(1.0, 128) : (double)float_of(h << 16);
}

/* The nearest of the ordered codes [0, top] of value(), ties to the even code. */
static uint16_t nearest(double a, double (*value)(uint32_t), uint32_t top)
{
    uint32_t lo = 0, hi = top; /* largest h with value(h) <= a, by bisection */
    if (a >= value(top))
        return (uint16_t)top;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (value(mid) <= a)
            lo = mid;
        else
            hi = mid;
    }
    double dlo = a - value(lo), dhi = value(lo + 1) - a;
    if (dlo < dhi)
        return (uint16_t)lo;
    if (dhi < dlo)
        return (uint16_t)(lo + 1);
    return (uint16_t)((lo & 1) ? lo + 1 : lo);
}

static uint16_t ref_f16(float x)
{
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    return (uint16_t)(sign | nearest(fabs((double)x), half_value, 0x7c00));
}

static uint16_t ref_bf16(float x)
{
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    return (uint16_t)(sign | nearest(fabs((double)x), bf_value, 0x7f80));
}

static int f16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }
static int bf16_is_nan(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f); }

static void check_f16(float x)
{
    uint16_t got = pst_f32_to_f16(x);
    if (isnan(x)) {
        assert_true(f16_is_nan(got));
        assert_int_equal(got & 0x8000, signbit(x) ? 0x8000 : 0);
        return;
    }
    if (got != ref_f16(x))
        fail_msg("f16(%a) = 0x%04x, reference 0x%04x", (double)x, got, ref_f16(x));
}

static void check_bf16(float x)
{
    uint16_t got = pst_f32_to_bf16(x);
    if (isnan(x)) {
        assert_true(bf16_is_nan(got));
        assert_int_equal(got & 0x8000, signbit(x) ? 0x8000 : 0);
        return;
    }
    if (got != ref_bf16(x))
        fail_msg("bf16(%a) = 0x%04x, reference 0x%04x", (double)x, got, ref_bf16(x));
}

/* Every half widens exactly (its value in double) and narrows back to itself. */
static void test_f16_every_code(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = pst_f16_to_f32((uint16_t)h);
        uint32_t a = h & 0x7fff;
        if (a > 0x7c00) {
            assert_true(isnan(f));
            assert_true(f16_is_nan(pst_f32_to_f16(f)));
            continue;
        }
        double want = a == 0x7c00 ? INFINITY : half_value(a);
        if (h & 0x8000)
            want = -want;
        if ((double)f != want || (signbit(f) != 0) != ((h & 0x8000) != 0))
            fail_msg("half 0x%04x widened to %a, want %a", h, (double)f, want);
        assert_int_equal(pst_f32_to_f16(f), h);
    }
}

static void test_bf16_every_code(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = pst_bf16_to_f32((uint16_t)h);
        assert_int_equal(bits_of(f), h << 16);
        if (isnan(f))
            assert_true(bf16_is_nan(pst_f32_to_bf16(f)));
        else
            assert_int_equal(pst_f32_to_bf16(f), h);
    }
}

/* The midpoint of every two neighbouring codes (exact in float) rounds to the even one;
 * a float ulp either side rounds to the nearer. Then specials and random floats. */
static void test_f16_rounding(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float mid = (float)((half_value(h) + half_value(h + 1)) / 2);
        assert_true((double)mid == (half_value(h) + half_value(h + 1)) / 2);
        assert_int_equal(pst_f32_to_f16(mid), (h & 1) ? h + 1 : h);
        assert_int_equal(pst_f32_to_f16(-mid), 0x8000 | ((h & 1) ? h + 1 : h));
        check_f16(mid);
        check_f16(nextafterf(mid, 0.0f));
        check_f16(nextafterf(mid, INFINITY));
    }
    const float special[] = {0.0f,
                             -0.0f,
                             65504.0f,
                             65519.99f,
                             65520.0f,
                             -65520.0f,
                             1e9f,
                             INFINITY,
                             -INFINITY,
                             NAN,
                             -NAN,
                             6.1035156e-5f /* 2^-14 */,
                             5.9604645e-8f /* 2^-24 */,
                             2.9802322e-8f /* 2^-25: a tie, to 0 */,
                             2.9802326e-8f,
                             1e-45f /* float subnormal */,
                             1.0f,
                             -1.0f / 3};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        check_f16(special[i]);
    assert_int_equal(pst_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(pst_f32_to_f16(2.9802322e-8f), 0);
    assert_int_equal(pst_f32_to_f16(-0.0f), 0x8000);
    rng_state r;
    rng_seed(&r, 14);
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)rng_next(&r);
        check_f16(float_of(u));
        /* and float exponents 102..143 (2^-25 .. 2^16): binary16's range and its edges */
        uint32_t e = 102 + ((u >> 23) & 0xff) % 42;
        check_f16(float_of((u & 0x807fffffu) | e << 23));
    }
}

static void test_bf16_rounding(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x7f80; h += 7) {
        double lo = bf_value(h), hi = bf_value(h + 1);
        if (h + 1 == 0x7f80)
            break;
        float mid = (float)((lo + hi) / 2);
        assert_int_equal(pst_f32_to_bf16(mid), (h & 1) ? h + 1 : h);
        check_bf16(nextafterf(mid, 0.0f));
        check_bf16(nextafterf(mid, INFINITY));
    }
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 3.4028235e38f, 1e-45f};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        check_bf16(special[i]);
    assert_int_equal(pst_f32_to_bf16(3.4028235e38f), 0x7f80);         /* rounds up to inf */
    assert_true(bf16_is_nan(pst_f32_to_bf16(float_of(0x7f800001u)))); /* payload low only */
    rng_state r;
    rng_seed(&r, 15);
    for (int i = 0; i < 200000; i++)
        check_bf16(float_of((uint32_t)rng_next(&r)));
}

/* The array forms: the same codes, F16 saturating finite values beyond 65504, decoded
 * from odd addresses too. */
static void test_arrays(void **state)
{
    (void)state;
    float src[9] = {1.5f, -2.25f, 70000.0f, -1e30f, INFINITY, -INFINITY, NAN, 1e-7f, 0.1f};
    uint8_t buf[1 + 2 * 9];
    float back[9];
    uint16_t half[9];
    wire_enc_halves(WIRE_ENC_F16, half, src, 9);
    memcpy(buf + 1, half, sizeof half); /* a frame at an odd offset */
    wire_dec_halves(WIRE_ENC_F16, back, buf + 1, 9);
    assert_true(back[0] == 1.5f && back[1] == -2.25f);
    assert_true(back[2] == 65504.0f && back[3] == -65504.0f);
    assert_true(isinf(back[4]) && back[4] > 0 && isinf(back[5]) && back[5] < 0);
    assert_true(isnan(back[6]));
    assert_true(back[7] == pst_f16_to_f32(pst_f32_to_f16(1e-7f)));
    assert_true(back[8] == pst_f16_to_f32(pst_f32_to_f16(0.1f)));
    wire_enc_halves(WIRE_ENC_BF16, half, src, 9);
    memcpy(buf + 1, half, sizeof half);
    wire_dec_halves(WIRE_ENC_BF16, back, buf + 1, 9);
    float aligned[9];
    wire_dec_halves(WIRE_ENC_BF16, aligned, half, 9);
    assert_memory_equal(aligned, back, sizeof back);
    for (int i = 0; i < 9; i++)
        if (!isnan(src[i]))
            assert_true(back[i] == pst_bf16_to_f32(pst_f32_to_bf16(src[i])));
    assert_true(isnan(back[6]));
}

static void test_topk_decode(void **state)
{
    (void)state;
    uint32_t idx[3] = {1, 4, 9};
    float val[3] = {0.5f, -1.0f, 2.0f}, dst[10];
    pst_err err = {0};
    assert_int_equal(wire_dec_topk(dst, 10, idx, val, 3, &err), PST_OK);
    for (int i = 0; i < 10; i++)
        assert_true(dst[i] == (i == 1 ? 0.5f : i == 4 ? -1.0f : i == 9 ? 2.0f : 0.0f));
    assert_int_equal(wire_dec_topk(dst, 10, idx, val, 0, &err), PST_OK);
    idx[2] = 10; /* past the range */
    assert_int_equal(wire_dec_topk(dst, 10, idx, val, 3, &err), PST_ERR_DATA);
    idx[2] = 4; /* a repeat */
    assert_int_equal(wire_dec_topk(dst, 10, idx, val, 3, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "top-k entry 2"));
}

/* A range message of encoding enc, len floats, nnz entries and frames f[0..nf). */
static int unpack_range_msg(wire_type t, wire_enc enc, uint64_t len, uint64_t nnz, int nf,
                            uint64_t f0, uint64_t f1, wire_range *out)
{
    static wire_env e, g;
    static wire_body gb;
    static wire_store gs;
    static uint8_t buf[WIRE_MAX_META];
    wire_env_init(&e, t, "worker", 0);
    e.nframes = nf;
    e.frame_bytes[0] = f0;
    e.frame_bytes[1] = f1;
    wire_range r = {.offset = 8, .len = len, .enc = enc, .nnz = nnz};
    size_t n = 0;
    pst_err err = {0};
    assert_int_equal(wire_pack(&e, &(wire_body){.range = &r}, buf, sizeof buf, &n, &err), PST_OK);
    int rc = wire_unpack(&g, &gb, &gs, buf, n, &err);
    if (rc == PST_OK && out)
        *out = *gb.range;
    return rc;
}

static void test_envelope_encoding(void **state)
{
    (void)state;
    wire_range r;
    assert_int_equal(unpack_range_msg(WIRE_MSG_PUSH, WIRE_ENC_F16, 10, 0, 1, 20, 0, &r), PST_OK);
    assert_int_equal(r.enc, WIRE_ENC_F16);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PUSH, WIRE_ENC_BF16, 10, 0, 1, 20, 0, &r), PST_OK);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PULL_REPLY, WIRE_ENC_F16, 10, 0, 1, 20, 0, &r),
                     PST_OK);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PULL, WIRE_ENC_BF16, 10, 0, 0, 0, 0, &r), PST_OK);
    assert_int_equal(r.enc, WIRE_ENC_BF16);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PUSH, WIRE_ENC_TOPK, 10, 3, 2, 12, 12, &r), PST_OK);
    assert_int_equal(r.nnz, 3);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PUSH, WIRE_ENC_TOPK, 10, 0, 2, 0, 0, &r), PST_OK);
    /* Frames that disagree with the declared encoding, or encodings a type may not use. */
    assert_int_equal(unpack_range_msg(WIRE_MSG_PUSH, WIRE_ENC_F16, 10, 0, 1, 40, 0, NULL),
                     PST_ERR_DATA);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PUSH, WIRE_ENC_F32, 10, 0, 1, 20, 0, NULL),
                     PST_ERR_DATA);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PUSH, WIRE_ENC_TOPK, 10, 3, 2, 12, 8, NULL),
                     PST_ERR_DATA);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PUSH, WIRE_ENC_TOPK, 10, 3, 1, 12, 0, NULL),
                     PST_ERR_DATA);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PUSH, WIRE_ENC_TOPK, 10, 11, 2, 44, 44, NULL),
                     PST_ERR_DATA);
    assert_int_equal(
        unpack_range_msg(WIRE_MSG_PUSH, WIRE_ENC_TOPK, WIRE_CHUNK_FLOATS + 1, 0, 2, 0, 0, NULL),
        PST_ERR_DATA);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PUSH, WIRE_ENC_F16, 10, 2, 1, 20, 0, NULL),
                     PST_ERR_DATA);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PUSH, (wire_enc)4, 10, 0, 1, 20, 0, NULL),
                     PST_ERR_DATA);
    assert_int_equal(unpack_range_msg(WIRE_MSG_INIT, WIRE_ENC_F16, 10, 0, 1, 20, 0, NULL),
                     PST_ERR_DATA);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PULL, WIRE_ENC_TOPK, 10, 0, 0, 0, 0, NULL),
                     PST_ERR_DATA);
    assert_int_equal(unpack_range_msg(WIRE_MSG_PULL_REPLY, WIRE_ENC_TOPK, 10, 1, 2, 4, 4, NULL),
                     PST_ERR_DATA);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_every_code),
        cmocka_unit_test(test_bf16_every_code),
        cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_topk_decode),
        cmocka_unit_test(test_envelope_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
