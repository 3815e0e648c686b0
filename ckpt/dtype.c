/* ckpt/dtype.c -- the container's element types: names, sizes, and F16 / BF16 values read as
 * floats (Hugging Face files keep weights in them). */
#include "ckpt_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {[CKPT_F32] = {"F32", 4},  [CKPT_U64] = {"U64", 8}, [CKPT_U32] = {"U32", 4},
              [CKPT_U8] = {"U8", 1},    [CKPT_F16] = {"F16", 2}, [CKPT_BF16] = {"BF16", 2},
              [CKPT_BOOL] = {"BOOL", 1}};

/* IEEE 754 binary16 -> binary32, exactly (every half is a float). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0x1f)
        bits = sign | 0x7f800000u | (m << 13); /* Inf, NaN */
    else if (e != 0)
        bits = sign | ((e + 127 - 15) << 23) | (m << 13);
    else if (m == 0)
        bits = sign; /* +-0 */
    else {           /* subnormal: m * 2^-24, normalised */
        int shift = 0;
        while (!(m & 0x400)) {
            m <<= 1;
            shift++;
        }
        bits = sign | ((uint32_t)(127 - 15 + 1 - shift) << 23) | ((m & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Element j of an F32, F16 or BF16 tensor's bytes p (which may be unaligned). bfloat16 is
 * the top half of a float32. */
float ckpt_float_at(ckpt_dtype t, const unsigned char *p, size_t j)
{
    float f;
    uint16_t h;
    if (t == CKPT_F32) {
        memcpy(&f, p + 4 * j, 4);
        return f;
    }
    memcpy(&h, p + 2 * j, 2);
    if (t == CKPT_F16)
        return half_to_float(h);
    uint32_t bits = (uint32_t)h << 16;
    memcpy(&f, &bits, 4);
    return f;
}

void ckpt_st_read_floats(const st_file *f, const st_tensor *t, float *dst, size_t n)
{
    assert(t->dtype == CKPT_F32 || t->dtype == CKPT_F16 || t->dtype == CKPT_BF16);
    const unsigned char *p = f->data + t->begin;
    if (t->dtype == CKPT_F32) {
        memcpy(dst, p, n * sizeof *dst);
        return;
    }
    for (size_t j = 0; j < n; j++)
        dst[j] = ckpt_float_at(t->dtype, p, j);
}

/* "F32 only", "F32, U64, U32 and U8 only": the dtypes of mask, for a refusal. */
void ckpt_dtype_list(unsigned mask, char *buf, size_t n)
{
    int total = 0, k = 0;
    for (int i = 0; i < NELEM(dtypes); i++)
        total += (mask & CKPT_DTYPE_BIT(i)) != 0;
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < NELEM(dtypes) && at < n; i++)
        if (mask & CKPT_DTYPE_BIT(i)) {
            k++;
            at += (size_t)snprintf(buf + at, n - at, "%s%s",
                                   k == 1       ? ""
                                   : k == total ? " and "
                                                : ", ",
                                   dtypes[i].name);
        }
    if (at < n)
        snprintf(buf + at, n - at, " only");
}

const char *ckpt_dtype_name(ckpt_dtype t) { return dtypes[t].name; }
size_t ckpt_dtype_size(ckpt_dtype t) { return dtypes[t].size; }

int ckpt_dtype_find(const char *name, unsigned mask)
{
    for (int k = 0; k < NELEM(dtypes); k++)
        if ((mask & CKPT_DTYPE_BIT(k)) && strcmp(name, dtypes[k].name) == 0)
            return k;
    return -1;
}
