/* proto/wire_enc.h -- the float encodings of INIT/PUSH/PULL/PULL_REPLY frames (wire_enc).
 *
 *   F32   one frame of len little-endian float32 (the zero-copy path; nothing converted)
 *   F16   one frame of len IEEE 754 binary16 (uint16): 1 sign, 5 exponent, 10 mantissa bits
 *   BF16  one frame of len bfloat16 (uint16): the top half of a float32
 *   TOPK  (PUSH only) two frames of nnz entries: uint32 indices into the range, strictly
 *         increasing, then their float32 values; every other float of the range is 0
 *
 * The conversions are base/half.h's (round to nearest, ties to even, binary16 subnormals
 * exact, NaN stays a quiet NaN; branch-free, so these loops vectorise). The F16 encoder
 * here saturates a finite float beyond binary16's range (|x| > 65504) to +-65504 instead
 * of making it infinite, so a large finite gradient is not taken for a non-finite one;
 * infinities and NaN stay what they are (the server's non-finite check sees them). */
#ifndef PSTRAIN_PROTO_WIRE_ENC_H
#define PSTRAIN_PROTO_WIRE_ENC_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "proto/wire.h"

/* dst (n uint16) = src (n floats) in enc (F16, saturating, or BF16). */
void wire_enc_halves(wire_enc enc, uint16_t *dst, const float *src, size_t n);
/* dst (n floats) = src (n uint16 of enc F16 or BF16, any alignment: frames of a received
 * message may sit at odd offsets). */
void wire_dec_halves(wire_enc enc, float *dst, const void *src, size_t n);

/* A TOPK frame pair into dst (len floats, zeroed first): idx (nnz uint32) and val (nnz
 * floats), any alignment. Indices that are not strictly increasing or not below len are
 * PST_ERR_DATA naming the first bad one (dst then holds garbage). */
int wire_dec_topk(float *dst, uint64_t len, const void *idx, const void *val, uint64_t nnz,
                  pst_err *err);

#endif
