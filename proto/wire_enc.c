/* proto/wire_enc.c -- see wire_enc.h. The conversions themselves are base/half.h's. */
#include "wire_enc.h"

#include <string.h>

#include "base/half.h"

void wire_enc_halves(wire_enc enc, uint16_t *dst, const float *src, size_t n)
{
    if (enc == WIRE_ENC_F16) {
        for (size_t i = 0; i < n; i++) {
            /* Finite magnitudes beyond 65504 (0x477fe000) saturate; inf and NaN (from
             * 0x7f800000) pass. */
            uint32_t u = pst_bits_of_f32(src[i]), a = u & 0x7fffffffu;
            u = pst_half_pick(a > 0x477fe000u && a < 0x7f800000u, (u & 0x80000000u) | 0x477fe000u,
                              u);
            dst[i] = pst_f32_to_f16(pst_f32_of_bits(u));
        }
    } else {
        for (size_t i = 0; i < n; i++)
            dst[i] = pst_f32_to_bf16(src[i]);
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
            dst[i] = enc == WIRE_ENC_F16 ? pst_f16_to_f32(h) : pst_bf16_to_f32(h);
        }
        return;
    }
    const uint16_t *s = src;
    if (enc == WIRE_ENC_F16)
        for (size_t i = 0; i < n; i++)
            dst[i] = pst_f16_to_f32(s[i]);
    else
        for (size_t i = 0; i < n; i++)
            dst[i] = pst_bf16_to_f32(s[i]);
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
