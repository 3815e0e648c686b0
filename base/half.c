/* base/half.c -- the array forms of base/half.h's conversions: plain loops over the inline
 * scalar ones, which gcc vectorises (they are branch-free). */
#include "base/half.h"

void pst_f32_to_f16_n(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = pst_f32_to_f16(src[i]);
}

void pst_f16_to_f32_n(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = pst_f16_to_f32(src[i]);
}

void pst_f32_to_bf16_n(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = pst_f32_to_bf16(src[i]);
}

void pst_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = pst_bf16_to_f32(src[i]);
}
