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
#include "sparse.h"

/* CSR rows of (field, id, value) entries; see sparse.h for the legend. Standalone (loaded by
 * ds_sparse_load_libsvm) it carries its own labels or targets; as the sparse part of a
 * dataset (ds_dataset.sp) it has none (with_labels 0): the dataset's labels cover both. */
struct ds_sparse {
    int64_t n, nnz;
    ds_task task;
    int nclasses;
    uint32_t nfields; /* max field + 1; 0: no fields */
    int64_t *row_ptr; /* (N + 1) */
    uint64_t *ids;    /* (NNZ) */
    float *vals;      /* (NNZ) */
    uint32_t *fields; /* (NNZ) or NULL */
    int32_t *labels;  /* (N) or NULL */
    float *targets;   /* (N) or NULL */
    size_t row_cap, nnz_cap;
    int with_labels; /* grow labels/targets with the rows */
    int with_fields; /* grow fields with the entries */
};

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
    ds_sparse *sp; /* sparse features of the same N rows (with_labels 0), or NULL */
    int image[3];  /* (C, H, W) with C H W = D when the rows are images (IDX), else zeros */
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

/* ds_create with D >= dmin (0: a dataset whose features are all sparse). */
ds_dataset *ds_create_d0(int64_t n, int d, int dmin, ds_task task, int nclasses, int tdim,
                         pst_err *err);
/* Like ds_adopt, but D may be 0 (a dataset whose features are all in its sparse part). */
ds_dataset *ds_adopt_d0(int64_t n, int d, ds_task task, int nclasses, int tdim, float *x,
                        int32_t *label, float *target, pst_err *err);

/* ---- Building CSR rows (sparse.c) ------------------------------------------------------ */

/* An empty CSR (row_ptr[0] = 0) for a dataset's sparse part: no labels; fields when
 * with_fields. NULL without memory. */
ds_sparse *ds_sparse_part_new(int with_fields);
/* Appends one entry to the row being built; -1 without memory. field < UINT32_MAX. */
int ds_sparse_push(ds_sparse *s, uint64_t id, float val, uint32_t field);
/* Ends the row being built (it holds the entries pushed since the last end); -1 without
 * memory. */
int ds_sparse_end_row(ds_sparse *s);
/* Sorts the entries of the row being built by (field, id) and sums the values of equal
 * (field, id) pairs into one entry (repeated words, hashed features that collide); -1
 * without memory. */
int ds_sparse_merge_row(ds_sparse *s);
/* A new sparse part of rows r64[i] (or r32[i] when r64 is NULL), i < n, already
 * range-checked; NULL without memory. */
ds_sparse *ds_sparse_take(const ds_sparse *s, const int64_t *r64, const uint32_t *r32, int64_t n);
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
