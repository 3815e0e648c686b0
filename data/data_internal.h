/* data/data_internal.h -- what the files of data/ share; included by data/ alone.
 *
 * Legend: N = samples, D = features, T = target dim, K = classes; x is (N, D) row-major.
 * Every size product is overflow-checked before it reaches an allocator, and every loader
 * error names the file and the line (text formats, 1-based) or record (IDX, 0-based sample
 * index) where it was found. */
#ifndef PSTRAIN_DATA_DATA_INTERNAL_H
#define PSTRAIN_DATA_DATA_INTERNAL_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "data.h"

struct ds_dataset {
    int64_t n; /* N */
    int d;     /* D */
    ds_task task;
    int nclasses;       /* K, 0 for regression */
    int tdim;           /* T, 0 for classification */
    float *x;           /* (N, D) */
    int32_t *label;     /* (N) or NULL */
    float *target;      /* (N, T) or NULL */
    char **class_names; /* (K) owned, entries may be NULL; NULL when labels were not strings */
    int has_range;      /* features are still the format's raw values in [raw_lo, raw_hi] */
    float raw_lo, raw_hi;
};

/* ---- Sizes and small helpers (dataset.c) ----------------------------------------------- */

/* *out = a * b * c, or -1 when the product does not fit in size_t. */
int ds_size_mul3(uint64_t a, uint64_t b, uint64_t c, size_t *out);
/* realloc to rows * row_bytes (at least one byte, so an empty buffer is still a valid
 * pointer); NULL on overflow or failure, p untouched. */
void *ds_realloc_rows(void *p, size_t rows, size_t row_bytes);
/* Frees names[0..k) and names; NULL names is a no-op. */
void ds_names_free(char **names, int k);
/* Wraps buffers the caller allocated for exactly this shape; on success the dataset owns
 * x, label and target, on failure the caller still does. */
ds_dataset *ds_adopt(int64_t n, int d, ds_task task, int nclasses, int tdim, float *x,
                     int32_t *label, float *target, pst_err *err);

/* ---- Text files (gzfile.c), for the CSV and libsvm loaders ------------------------------ */

/* The file at path for reading, decompressed when it is gzip (any other file reads as it
 * is); close with fclose. A truncated gzip stream is a read error with errno EBADMSG.
 * NULL with err set (PST_ERR_IO) when it cannot be opened. */
FILE *ds_fopen_text(const char *path, pst_err *err);

/* ---- Numbers in text (text.c), shared by the CSV and libsvm loaders -------------------- */

typedef enum { NUM_OK = 0, NUM_EMPTY, NUM_BAD, NUM_NONFINITE } num_status;

static inline int is_space_tab(char c) { return c == ' ' || c == '\t'; }

/* The whole of s, less surrounding blanks, must be one finite float. strtof (not strtod and
 * a cast) so that the value is correctly rounded once; overflow (ERANGE, +-HUGE_VALF) is
 * reported as not finite, underflow to a subnormal or zero is accepted. */
num_status ds_parse_float(const char *s, float *out);
/* As ds_parse_float, in double, and the value must be an integer that fits in int32 ("3",
 * "3.0", "+1" and "-1" all pass: files written by numpy often carry "1.0" class ids). */
num_status ds_parse_int(const char *s, int32_t *out);

#endif
