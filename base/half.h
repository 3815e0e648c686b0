/* base/half.h -- IEEE 754 binary16 ("half", safetensors' F16) to and from float.
 *
 * binary16: 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits; largest finite value
 * 65504, smallest normal 2^-14 ~ 6.1e-5, subnormals down to 2^-24 ~ 6.0e-8. Conversion to
 * half rounds to nearest, ties to even (what numpy's float16 and PyTorch's .half() do), so
 * for a normal result |h - x| <= 2^-11 |x| (half an ulp); values past 65504 (after
 * rounding) become +-Inf and NaN stays NaN. Conversion back is exact.
 *
 * Shared, plain functions with no state: model export (ckpt/quant.c) uses them, and so can
 * any wire encoding of weights or gradients. */
#ifndef PSTRAIN_BASE_HALF_H
#define PSTRAIN_BASE_HALF_H

#include <stddef.h>
#include <stdint.h>

#define PST_HALF_MAX 65504.0f

uint16_t pst_f32_to_f16(float x);
float pst_f16_to_f32(uint16_t h);
/* Arrays of n values; src and dst must not overlap. */
void pst_f32_to_f16_n(uint16_t *dst, const float *src, size_t n);
void pst_f16_to_f32_n(float *dst, const uint16_t *src, size_t n);

#endif
