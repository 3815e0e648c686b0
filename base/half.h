/* base/half.h -- the one definition of pstrain's 16-bit floats, to and from float32:
 *
 *   F16   IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 fraction bits; largest finite
 *         65504, smallest normal 2^-14 ~ 6.1e-5, subnormals down to 2^-24 ~ 6.0e-8
 *   BF16  bfloat16: the top 16 bits of a float32 (8 exponent, 7 fraction bits)
 *
 * Users: the wire's F16/BF16 frames (proto/wire_enc.c), Hugging Face and exported model
 * files (ckpt/dtype.c, ckpt/quant.c). Conversion to 16 bits rounds to nearest, ties to even
 * (numpy's float16, PyTorch's .half() and .bfloat16()), so a normal result is within half
 * an ulp: |h - x| <= 2^-11 |x| for F16, 2^-8 |x| for BF16. It keeps the sign of zeros and
 * infinities, handles binary16 subnormals exactly, and turns a NaN into a quiet NaN (the
 * payload is not kept). A finite float that rounds past the largest finite value becomes
 * +-Inf (F16 from 65520 on, BF16 from 2^128 (1 - 2^-9) on): callers that must not make a
 * finite value infinite clamp first (wire_enc_halves saturates at +-65504). Conversion
 * back to float32 is exact.
 *
 * Branch-free (selects instead of branches, after F. Giesen's float_to_half_fast3_rtne and
 * half_to_float) so that the array loops vectorise; portable C, F16C not assumed. The F16
 * subnormal path relies on the FPU's default rounding (to nearest even), which pstrain never
 * changes. */
#ifndef PSTRAIN_BASE_HALF_H
#define PSTRAIN_BASE_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PST_HALF_MAX 65504.0f

static inline uint32_t pst_bits_of_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float pst_f32_of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* a where c, else b: a mask, not a branch. */
static inline uint32_t pst_half_pick(int c, uint32_t a, uint32_t b)
{
    uint32_t m = 0u - (uint32_t)(c != 0);
    return (a & m) | (b & ~m);
}

/* Normals: the exponent is rebased (127 -> 15) and the 13 dropped mantissa bits rounded by
 * adding 0xfff plus the kept lsb (ties to even); a carry runs into the exponent, up to
 * 0x7c00 (inf) from 65520 on. Below 2^-14 the float addition of 0.5 lines the value up with
 * binary16's subnormal ulp 2^-24 (0.5's ulp) and the FPU's own round-to-nearest-even does
 * the rounding; the bits above 0.5's are the result. From 65536 on: inf, or a quiet NaN. */
static inline uint16_t pst_f32_to_f16(float f)
{
    const uint32_t f32_inf = 255u << 23, f16_max = (127u + 16) << 23; /* 65536.0f */
    const uint32_t half_magic = 126u << 23;                           /* 0.5f */
    uint32_t u = pst_bits_of_f32(f);
    uint32_t x = u & 0x7fffffffu;
    uint32_t norm = (x + ((uint32_t)(15 - 127) << 23) + 0xfffu + ((x >> 13) & 1)) >> 13;
    uint32_t sub = pst_bits_of_f32(pst_f32_of_bits(x) + pst_f32_of_bits(half_magic)) - half_magic;
    uint32_t big = pst_half_pick(x > f32_inf, 0x7e00u, 0x7c00u);
    uint32_t o = pst_half_pick(x >= f16_max, big, pst_half_pick(x < (113u << 23), sub, norm));
    return (uint16_t)(o | ((u >> 16) & 0x8000u));
}

/* The exponent is rebased (15 -> 127); inf/NaN (exponent 31) get the rest of the way to
 * 255; a subnormal m * 2^-24 is normalised by the float subtraction of 2^-14. */
static inline float pst_f16_to_f32(uint16_t h)
{
    const uint32_t shifted_exp = 0x7c00u << 13, magic = 113u << 23; /* 2^-14 */
    uint32_t o = (uint32_t)(h & 0x7fff) << 13;
    uint32_t e = shifted_exp & o;
    uint32_t norm = o + ((uint32_t)(127 - 15) << 23);
    uint32_t infnan = norm + ((uint32_t)(128 - 16) << 23);
    uint32_t sub = pst_bits_of_f32(pst_f32_of_bits(norm + (1u << 23)) - pst_f32_of_bits(magic));
    uint32_t r = pst_half_pick(e == shifted_exp, infnan, pst_half_pick(e == 0, sub, norm));
    return pst_f32_of_bits(r | (uint32_t)(h & 0x8000) << 16);
}

/* The top 16 bits, rounded to nearest even by adding 0x7fff plus the kept lsb (a carry
 * into the exponent rounds the largest finite up to inf, as it should); a NaN gets the
 * quiet bit so that no payload truncates to inf. */
static inline uint16_t pst_f32_to_bf16(float f)
{
    uint32_t x = pst_bits_of_f32(f);
    uint32_t q = (x >> 16) | 0x40u, r = (x + 0x7fffu + ((x >> 16) & 1)) >> 16;
    return (uint16_t)pst_half_pick((x & 0x7fffffffu) > 0x7f800000u, q, r);
}

static inline float pst_bf16_to_f32(uint16_t h) { return pst_f32_of_bits((uint32_t)h << 16); }

/* Arrays of n values (base/half.c); src and dst must not overlap. */
void pst_f32_to_f16_n(uint16_t *dst, const float *src, size_t n);
void pst_f16_to_f32_n(float *dst, const uint16_t *src, size_t n);
void pst_f32_to_bf16_n(uint16_t *dst, const float *src, size_t n);
void pst_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n);

#endif
