/* ckpt/dtype.c -- the container's element types: names, sizes, and F16 / BF16 values read as
 * floats (Hugging Face files keep weights in them; exported model files F16 and I8). */
#include "ckpt_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "base/half.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {[CKPT_F32] = {"F32", 4},   [CKPT_U64] = {"U64", 8}, [CKPT_U32] = {"U32", 4},
              [CKPT_U8] = {"U8", 1},     [CKPT_F16] = {"F16", 2}, [CKPT_BF16] = {"BF16", 2},
              [CKPT_BOOL] = {"BOOL", 1}, [CKPT_I8] = {"I8", 1}};

/* Element j of an F32, F16 or BF16 tensor's bytes p (which may be unaligned); the 16-bit
 * forms are base/half.h's. */
float ckpt_float_at(ckpt_dtype t, const unsigned char *p, size_t j)
{
    float f;
    uint16_t h;
    if (t == CKPT_F32) {
        memcpy(&f, p + 4 * j, 4);
        return f;
    }
    memcpy(&h, p + 2 * j, 2);
    return t == CKPT_F16 ? pst_f16_to_f32(h) : pst_bf16_to_f32(h);
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
