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

/* Giesen's float_to_half_fast3_rtne. Normals: the exponent is rebased (127 -> 15) and the
 * 13 dropped mantissa bits rounded by adding 0xfff plus the kept lsb (ties to even); a
 * carry runs into the exponent, up to 0x7c00 (inf) from 65520 on. Below 2^-14 the float
 * addition of 0.5 (magic 2^-1) lines the value up with binary16's subnormal ulp 2^-24 and
 * the FPU's own round-to-nearest-even does the rounding. */
uint16_t wire_f32_to_f16(float f)
{
    const uint32_t f32_inf = 255u << 23, f16_max = (127u + 16) << 23; /* 65536.0f */
    const uint32_t denorm_magic = ((127u - 15) + (23 - 10) + 1) << 23;
    uint32_t x = bits_of(f);
    uint32_t sign = x & 0x80000000u;
    x ^= sign;
    uint32_t o;
    if (x >= f16_max) {
        o = x > f32_inf ? 0x7e00u : 0x7c00u; /* NaN stays a quiet NaN; inf and overflow */
    } else if (x < (113u << 23)) {           /* below 2^-14: subnormal or zero */
        o = bits_of(float_of(x) + float_of(denorm_magic)) - denorm_magic;
    } else {
        uint32_t mant_odd = (x >> 13) & 1;
        x += ((uint32_t)(15 - 127) << 23) + 0xfffu;
        x += mant_odd;
        o = x >> 13;
    }
    return (uint16_t)(o | (sign >> 16));
}

/* The exponent is rebased (15 -> 127); inf/NaN (exponent 31) get the rest of the way to
 * 255; a subnormal m * 2^-24 is normalised by the float subtraction of 2^-14. */
float wire_f16_to_f32(uint16_t h)
{
    const uint32_t shifted_exp = 0x7c00u << 13;
    uint32_t o = (uint32_t)(h & 0x7fff) << 13;
    uint32_t e = shifted_exp & o;
    o += (uint32_t)(127 - 15) << 23;
    if (e == shifted_exp)
        o += (uint32_t)(128 - 16) << 23;
    else if (e == 0) {
        o += 1u << 23;
        o = bits_of(float_of(o) - float_of(113u << 23));
    }
    return float_of(o | (uint32_t)(h & 0x8000) << 16);
}

/* The top 16 bits, rounded to nearest even by adding 0x7fff plus the kept lsb (a carry
 * into the exponent rounds the largest finite up to inf, as it should); a NaN gets the
 * quiet bit so that no payload truncates to inf. */
uint16_t wire_f32_to_bf16(float f)
{
    uint32_t x = bits_of(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

float wire_bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

void wire_enc_halves(wire_enc enc, void *dst, const float *src, size_t n)
{
    uint8_t *d = dst;
    if (enc == WIRE_ENC_F16) {
        for (size_t i = 0; i < n; i++) {
            float x = src[i];
            /* Saturate finite floats beyond 65504 (inf and NaN pass: the comparisons). */
            x = x > 65504.0f && x <= 3.4028235e38f ? 65504.0f : x;
            x = x < -65504.0f && x >= -3.4028235e38f ? -65504.0f : x;
            uint16_t h = wire_f32_to_f16(x);
            memcpy(d + 2 * i, &h, 2);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = wire_f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
    }
}

void wire_dec_halves(wire_enc enc, float *dst, const void *src, size_t n)
{
    const uint8_t *s = src;
    if (enc == WIRE_ENC_F16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = wire_f16_to_f32(h);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = wire_bf16_to_f32(h);
        }
    }
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
