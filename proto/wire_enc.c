/* proto/wire_enc.c -- see wire_enc.h. */
#include "wire_enc.h"

#include <string.h>

static inline uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* a where c, else b: a mask, not a branch (gcc then vectorises the loops). */
static inline uint32_t pick(int c, uint32_t a, uint32_t b)
{
    uint32_t m = 0u - (uint32_t)(c != 0);
    return (a & m) | (b & ~m);
}

/* Giesen's float_to_half_fast3_rtne, with its branches turned into selects so that the
 * array loops vectorise. Normals: the exponent is rebased (127 -> 15) and the 13 dropped
 * mantissa bits rounded by adding 0xfff plus the kept lsb (ties to even); a carry runs
 * into the exponent, up to 0x7c00 (inf) from 65520 on. Below 2^-14 the float addition of
 * 0.5 lines the value up with binary16's subnormal ulp 2^-24 (0.5's ulp) and the FPU's
 * own round-to-nearest-even does the rounding; the bits above 0.5's are the result. From
 * 65536 on: inf, or a quiet NaN. */
static inline uint16_t f32_to_f16(float f)
{
    const uint32_t f32_inf = 255u << 23, f16_max = (127u + 16) << 23; /* 65536.0f */
    const uint32_t half_magic = 126u << 23;                           /* 0.5f */
    uint32_t u = bits_of(f);
    uint32_t x = u & 0x7fffffffu;
    uint32_t norm = (x + ((uint32_t)(15 - 127) << 23) + 0xfffu + ((x >> 13) & 1)) >> 13;
    uint32_t sub = bits_of(float_of(x) + float_of(half_magic)) - half_magic;
    uint32_t big = pick(x > f32_inf, 0x7e00u, 0x7c00u);
    uint32_t o = pick(x >= f16_max, big, pick(x < (113u << 23), sub, norm));
    return (uint16_t)(o | ((u >> 16) & 0x8000u));
}

/* The exponent is rebased (15 -> 127); inf/NaN (exponent 31) get the rest of the way to
 * 255; a subnormal m * 2^-24 is normalised by the float subtraction of 2^-14. Selects,
 * as above. */
static inline float f16_to_f32(uint16_t h)
{
    const uint32_t shifted_exp = 0x7c00u << 13, magic = 113u << 23; /* 2^-14 */
    uint32_t o = (uint32_t)(h & 0x7fff) << 13;
    uint32_t e = shifted_exp & o;
    uint32_t norm = o + ((uint32_t)(127 - 15) << 23);
    uint32_t infnan = norm + ((uint32_t)(128 - 16) << 23);
    uint32_t sub = bits_of(float_of(norm + (1u << 23)) - float_of(magic));
    uint32_t r = pick(e == shifted_exp, infnan, pick(e == 0, sub, norm));
    return float_of(r | (uint32_t)(h & 0x8000) << 16);
}

uint16_t wire_f32_to_f16(float f) { return f32_to_f16(f); }

float wire_f16_to_f32(uint16_t h) { return f16_to_f32(h); }

/* The top 16 bits, rounded to nearest even by adding 0x7fff plus the kept lsb (a carry
 * into the exponent rounds the largest finite up to inf, as it should); a NaN gets the
 * quiet bit so that no payload truncates to inf. */
static inline uint16_t f32_to_bf16(float f)
{
    uint32_t x = bits_of(f);
    uint32_t q = (x >> 16) | 0x40u, r = (x + 0x7fffu + ((x >> 16) & 1)) >> 16;
    return (uint16_t)pick((x & 0x7fffffffu) > 0x7f800000u, q, r);
}

uint16_t wire_f32_to_bf16(float f) { return f32_to_bf16(f); }

float wire_bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

void wire_enc_halves(wire_enc enc, uint16_t *dst, const float *src, size_t n)
{
    if (enc == WIRE_ENC_F16) {
        for (size_t i = 0; i < n; i++) {
            /* Finite magnitudes beyond 65504 (0x477fe000) saturate; inf and NaN (from
             * 0x7f800000) pass. */
            uint32_t u = bits_of(src[i]), a = u & 0x7fffffffu;
            u = pick(a > 0x477fe000u && a < 0x7f800000u, (u & 0x80000000u) | 0x477fe000u, u);
            dst[i] = f32_to_f16(float_of(u));
        }
    } else {
        for (size_t i = 0; i < n; i++)
            dst[i] = f32_to_bf16(src[i]);
    }
}

/* An odd address (a small frame inside ZeroMQ's receive buffer) is read through memcpy. */
void wire_dec_halves(wire_enc enc, float *dst, const void *src, size_t n)
{
    if ((uintptr_t)src & 1) {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = enc == WIRE_ENC_F16 ? f16_to_f32(h) : float_of((uint32_t)h << 16);
        }
        return;
    }
    const uint16_t *s = src;
    if (enc == WIRE_ENC_F16)
        for (size_t i = 0; i < n; i++)
            dst[i] = f16_to_f32(s[i]);
    else
        for (size_t i = 0; i < n; i++)
            dst[i] = float_of((uint32_t)s[i] << 16);
}

int wire_dec_topk(float *dst, uint64_t len, const void *idx, const void *val, uint64_t nnz,
                  pst_err *err)
{
    memset(dst, 0, (size_t)len * sizeof *dst);
    const uint8_t *ip = idx, *vp = val;
    uint64_t next = 0; /* the smallest index allowed next */
    for (uint64_t k = 0; k < nnz; k++) {
        uint32_t i;
        float v;
        memcpy(&i, ip + 4 * k, 4);
        memcpy(&v, vp + 4 * k, 4);
        if (i < next || i >= len)
            return pst_err_set(err, PST_ERR_DATA,
                               "wire: top-k entry %llu has index %u (must increase, below %llu)",
                               (unsigned long long)k, i, (unsigned long long)len);
        dst[i] = v;
        next = (uint64_t)i + 1;
    }
    return PST_OK;
}
