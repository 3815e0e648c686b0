/* core/data.c -- datasets, their loaders (IDX through zlib, CSV, libsvm) and preprocessing.
 *
 * Legend: N = samples, D = features, T = target dim, K = classes; x is (N, D) row-major.
 * Every size product is overflow-checked before it reaches an allocator, and every loader
 * error names the file and the line (text formats, 1-based) or record (IDX, 0-based sample
 * index) where it was found. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* getline, strdup; the build also passes it */
#endif
#include "data.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <zlib.h>

#include "base/rng.h"

struct ds_dataset {
    int64_t n;          /* N */
    int d;              /* D */
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

/* ---- Sizes and small helpers -------------------------------------------------------- */

/* *out = a * b * c, or -1 when the product does not fit in size_t. */
static int size_mul3(uint64_t a, uint64_t b, uint64_t c, size_t *out)
{
    if (a > SIZE_MAX || b > SIZE_MAX || c > SIZE_MAX)
        return -1;
    size_t ab = (size_t)a * (size_t)b;
    if (b != 0 && (size_t)a > SIZE_MAX / (size_t)b)
        return -1;
    if (c != 0 && ab > SIZE_MAX / (size_t)c)
        return -1;
    *out = ab * (size_t)c;
    return 0;
}

/* realloc to rows * row_bytes (at least one byte, so an empty buffer is still a valid
 * pointer); NULL on overflow or failure, p untouched. */
static void *realloc_rows(void *p, size_t rows, size_t row_bytes)
{
    size_t bytes;
    if (size_mul3(rows, row_bytes, 1, &bytes))
        return NULL;
    return realloc(p, bytes ? bytes : 1);
}

static void names_free(char **names, int k)
{
    if (!names)
        return;
    for (int c = 0; c < k; c++)
        free(names[c]);
    free(names);
}

/* *dst = copies of src[pick[c]] (src[c] when pick is NULL) for c < k; NULL entries stay
 * NULL, and a NULL src gives a NULL *dst. */
static int names_copy(char ***dst, char *const *src, const int *pick, int k)
{
    *dst = NULL;
    if (!src)
        return PST_OK;
    char **out = calloc((size_t)k, sizeof *out);
    if (!out)
        return PST_ERR_NOMEM;
    for (int c = 0; c < k; c++) {
        const char *s = src[pick ? pick[c] : c];
        if (s && !(out[c] = strdup(s))) {
            names_free(out, k);
            return PST_ERR_NOMEM;
        }
    }
    *dst = out;
    return PST_OK;
}

/* ---- The dataset object --------------------------------------------------------------- */

static int check_shape(int64_t n, int d, ds_task task, int nclasses, int tdim, pst_err *err)
{
    if (n < 0 || d < 1)
        return pst_err_set(err, PST_ERR_ARG, "dataset shape (%lld, %d): need n >= 0, d >= 1",
                           (long long)n, d);
    if (task == DS_TASK_CLASSIFY) {
        if (nclasses < 1)
            return pst_err_set(err, PST_ERR_ARG, "classification dataset with %d classes",
                               nclasses);
    } else if (task == DS_TASK_REGRESS) {
        if (tdim < 1)
            return pst_err_set(err, PST_ERR_ARG, "regression dataset with target dim %d", tdim);
    } else {
        return pst_err_set(err, PST_ERR_ARG, "unknown dataset task %d", (int)task);
    }
    size_t bytes;
    if (size_mul3((uint64_t)n, (uint64_t)d, sizeof(float), &bytes) ||
        size_mul3((uint64_t)n, task == DS_TASK_REGRESS ? (uint64_t)tdim : 1, sizeof(float),
                  &bytes))
        return pst_err_set(err, PST_ERR_NOMEM, "dataset of %lld x %d floats overflows size_t",
                           (long long)n, d);
    return PST_OK;
}

/* Wraps buffers the caller allocated for exactly this shape; on success the dataset owns
 * x, label and target, on failure the caller still does. */
static ds_dataset *ds_adopt(int64_t n, int d, ds_task task, int nclasses, int tdim, float *x,
                            int32_t *label, float *target, pst_err *err)
{
    ds_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        pst_err_set(err, PST_ERR_NOMEM, "dataset: out of memory");
        return NULL;
    }
    ds->n = n;
    ds->d = d;
    ds->task = task;
    ds->nclasses = task == DS_TASK_CLASSIFY ? nclasses : 0;
    ds->tdim = task == DS_TASK_REGRESS ? tdim : 0;
    ds->x = x;
    ds->label = label;
    ds->target = target;
    return ds;
}

ds_dataset *ds_create(int64_t n, int d, ds_task task, int nclasses, int tdim, pst_err *err)
{
    if (check_shape(n, d, task, nclasses, tdim, err))
        return NULL;
    /* Sizes are checked above; calloc of at least one element keeps pointers non-NULL. */
    size_t nx = (size_t)n * (size_t)d;
    float *x = calloc(nx ? nx : 1, sizeof *x);
    int32_t *label = NULL;
    float *target = NULL;
    if (task == DS_TASK_CLASSIFY)
        label = calloc(n ? (size_t)n : 1, sizeof *label);
    else
        target = calloc(n ? (size_t)n * (size_t)tdim : 1, sizeof *target);
    ds_dataset *ds = NULL;
    if (!x || (!label && !target)) {
        pst_err_set(err, PST_ERR_NOMEM, "dataset of %lld x %d floats: out of memory",
                    (long long)n, d);
        goto cleanup;
    }
    ds = ds_adopt(n, d, task, nclasses, tdim, x, label, target, err);
cleanup:
    if (!ds) {
        free(x);
        free(label);
        free(target);
    }
    return ds;
}

void ds_destroy(ds_dataset *ds)
{
    if (!ds)
        return;
    free(ds->x);
    free(ds->label);
    free(ds->target);
    names_free(ds->class_names, ds->nclasses);
    free(ds);
}

int64_t ds_count(const ds_dataset *ds) { return ds->n; }
int ds_dim(const ds_dataset *ds) { return ds->d; }
ds_task ds_task_of(const ds_dataset *ds) { return ds->task; }
int ds_nclasses(const ds_dataset *ds) { return ds->nclasses; }
int ds_target_dim(const ds_dataset *ds) { return ds->tdim; }
float *ds_x(ds_dataset *ds) { return ds->x; }
const float *ds_x_const(const ds_dataset *ds) { return ds->x; }
int32_t *ds_labels(ds_dataset *ds) { return ds->label; }
const int32_t *ds_labels_const(const ds_dataset *ds) { return ds->label; }
float *ds_targets(ds_dataset *ds) { return ds->target; }
const float *ds_targets_const(const ds_dataset *ds) { return ds->target; }

const char *ds_class_name(const ds_dataset *ds, int c)
{
    if (!ds || !ds->class_names || c < 0 || c >= ds->nclasses)
        return NULL;
    return ds->class_names[c];
}

int ds_raw_range(const ds_dataset *ds, float *lo, float *hi)
{
    if (!ds || !ds->has_range)
        return -1;
    if (lo)
        *lo = ds->raw_lo;
    if (hi)
        *hi = ds->raw_hi;
    return 0;
}

/* ---- IDX (LeCun & Cortes, "THE MNIST DATABASE", file formats section) ------------------
 * Header: a big-endian magic 0x0000TTNN (TT = element type, 08 = uint8; NN = number of
 * dimensions), then NN big-endian uint32 sizes, then the elements in row-major order. */

#define IDX_MAGIC_IMAGES 0x00000803u /* uint8, 3 dims: N, rows, cols */
#define IDX_MAGIC_LABELS 0x00000801u /* uint8, 1 dim: N */
#define IDX_BLOCK ((size_t)1 << 18)   /* pixel bytes per read: 256 KiB stays in L2 */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads up to len bytes; *got is what arrived before end of file. gzread counts in int, so
 * large blocks go in 1 GiB chunks. A gzip stream cut short reads as end of file (zlib
 * reports Z_BUF_ERROR for it) so that the caller can say how much was missing. */
static int gz_read_all(gzFile f, void *buf, size_t len, size_t *got, const char *path,
                       pst_err *err)
{
    unsigned char *p = buf;
    size_t done = 0;
    while (done < len) {
        size_t want = len - done;
        if (want > (size_t)1 << 30)
            want = (size_t)1 << 30;
        int r = gzread(f, p + done, (unsigned)want);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (zerr == Z_BUF_ERROR)
                break;
            *got = done;
            if (zerr == Z_ERRNO)
                return pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno));
            return pst_err_set(err, zerr == Z_MEM_ERROR ? PST_ERR_NOMEM : PST_ERR_DATA,
                               "%s: %s", path, msg);
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *got = done;
    return PST_OK;
}

/* Deflate expands at most 1032:1 (zlib's FAQ), so a gzip file of S bytes holds at most
 * 1032 * S bytes; a header announcing more is damaged, whatever the rest of the file says. */
#define IDX_MAX_INFLATE 1032u

/* Opens an IDX file (gzip or plain: gzopen reads both) and checks its magic and its ndim
 * sizes, which must all be non-zero. *room is the most data bytes the file can hold after
 * its header, so that a damaged header is refused before its sizes are allocated. */
static int idx_open(const char *path, uint32_t magic, const char *what, int ndim, uint32_t *dims,
                    uint64_t *room, gzFile *out, pst_err *err)
{
    *out = NULL;
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        if (errno)
            return pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno));
        return pst_err_set(err, PST_ERR_NOMEM, "%s: cannot open: out of memory", path);
    }
    /* A larger input buffer than zlib's 8 KiB default: fewer read(2) calls on 26 MB files. */
    gzbuffer(f, 1u << 17);
    unsigned char hdr[4 + 4 * 3];
    size_t want = 4 + 4 * (size_t)ndim, got;
    assert(want <= sizeof hdr);
    int rc = gz_read_all(f, hdr, want, &got, path, err);
    if (rc)
        goto cleanup;
    if (got == 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: empty file", path);
        goto cleanup;
    }
    if (got >= 4 && be32(hdr) != magic) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: bad magic 0x%08x, expected 0x%08x (IDX %s)", path,
                         be32(hdr), magic, what);
        goto cleanup;
    }
    if (got < want) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: truncated header: %zu of %zu bytes", path, got,
                         want);
        goto cleanup;
    }
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(hdr + 4 + 4 * i);
        if (dims[i] == 0) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: dimension %d of the header is 0", path, i);
            goto cleanup;
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        rc = pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno));
        goto cleanup;
    }
    uint64_t size = (uint64_t)sb.st_size;
    *room = gzdirect(f) ? size - want : size * IDX_MAX_INFLATE;
    *out = f;
    return PST_OK;
cleanup:
    gzclose(f);
    return rc;
}

/* x[i] = src[i]: a plain loop gcc vectorises (zero-extend, convert, store). */
static void u8_to_float(float *restrict dst, const uint8_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)src[i];
}

ds_dataset *ds_load_idx(const char *images_path, const char *labels_path, int nclasses,
                        pst_err *err)
{
    gzFile fi = NULL, fl = NULL;
    uint8_t *lab = NULL, *pix = NULL;
    ds_dataset *ds = NULL;
    uint32_t idims[3] = {0}, ldims[1] = {0};
    size_t got;
    int ok = 0;

    if (!images_path || !labels_path || nclasses < 0) {
        pst_err_set(err, PST_ERR_ARG, "ds_load_idx: need two paths and nclasses >= 0");
        return NULL;
    }
    /* Both headers first, so a mismatched pair fails before 47 MB are decompressed. */
    uint64_t iroom = 0, lroom = 0;
    if (idx_open(images_path, IDX_MAGIC_IMAGES, "uint8 images, 3 dims", 3, idims, &iroom, &fi,
                 err) ||
        idx_open(labels_path, IDX_MAGIC_LABELS, "uint8 labels, 1 dim", 1, ldims, &lroom, &fl,
                 err))
        goto cleanup;
    uint32_t n = idims[0];
    uint64_t d = (uint64_t)idims[1] * idims[2];
    if (d > INT_MAX) {
        pst_err_set(err, PST_ERR_DATA, "%s: images of %u x %u pixels are too large", images_path,
                    idims[1], idims[2]);
        goto cleanup;
    }
    if (ldims[0] != n) {
        pst_err_set(err, PST_ERR_DATA, "%s: %u labels, but %s has %u images", labels_path,
                    ldims[0], images_path, n);
        goto cleanup;
    }
    size_t npix;
    if (size_mul3(n, d, sizeof(float), &npix) || size_mul3(n, d, 1, &npix)) {
        pst_err_set(err, PST_ERR_NOMEM, "%s: %u images of %llu pixels overflow size_t",
                    images_path, n, (unsigned long long)d);
        goto cleanup;
    }

    if (n > lroom) {
        pst_err_set(err, PST_ERR_DATA, "%s: truncated: expected %u bytes of labels, %s %llu",
                    labels_path, n, gzdirect(fl) ? "got" : "the file holds at most",
                    (unsigned long long)lroom);
        goto cleanup;
    }
    if (npix > iroom) {
        pst_err_set(err, PST_ERR_DATA, "%s: truncated: expected %zu bytes of pixels, %s %llu",
                    images_path, npix, gzdirect(fi) ? "got" : "the file holds at most",
                    (unsigned long long)iroom);
        goto cleanup;
    }
    if (!(lab = malloc(n))) {
        pst_err_set(err, PST_ERR_NOMEM, "%s: %u labels: out of memory", labels_path, n);
        goto cleanup;
    }
    if (gz_read_all(fl, lab, n, &got, labels_path, err))
        goto cleanup;
    if (got < n) {
        pst_err_set(err, PST_ERR_DATA, "%s: truncated: expected %u bytes of labels, got %zu",
                    labels_path, n, got);
        goto cleanup;
    }
    int maxlab = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (nclasses > 0 && lab[i] >= nclasses) {
            pst_err_set(err, PST_ERR_DATA, "%s: record %u: label %d out of range [0, %d)",
                        labels_path, i, lab[i], nclasses);
            goto cleanup;
        }
        maxlab = lab[i] > maxlab ? lab[i] : maxlab;
    }

    ds = ds_create(n, (int)d, DS_TASK_CLASSIFY, nclasses > 0 ? nclasses : maxlab + 1, 0, err);
    if (!ds)
        goto cleanup;
    /* Pixels through a small reusable byte buffer: each block is one gzread (zlib inflates
     * straight into it) and one vectorised conversion while it is still in cache, with no
     * per-byte calls and no second full-size buffer to fault in. */
    size_t block = npix < IDX_BLOCK ? npix : IDX_BLOCK;
    if (!(pix = malloc(block))) {
        pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", images_path);
        goto cleanup;
    }
    for (size_t off = 0; off < npix; off += block) {
        size_t want = npix - off < block ? npix - off : block;
        if (gz_read_all(fi, pix, want, &got, images_path, err))
            goto cleanup;
        if (got < want) {
            pst_err_set(err, PST_ERR_DATA, "%s: truncated: expected %zu bytes of pixels, got %zu",
                        images_path, npix, off + got);
            goto cleanup;
        }
        u8_to_float(ds->x + off, pix, want);
    }
    for (uint32_t i = 0; i < n; i++)
        ds->label[i] = lab[i];
    ds->has_range = 1;
    ds->raw_lo = 0.0f;
    ds->raw_hi = 255.0f;
    ok = 1;
cleanup:
    if (!ok) {
        ds_destroy(ds);
        ds = NULL;
    }
    if (fi)
        gzclose(fi);
    if (fl)
        gzclose(fl);
    free(lab);
    free(pix);
    return ds;
}

/* ---- Numbers in text ------------------------------------------------------------------ */

typedef enum { NUM_OK = 0, NUM_EMPTY, NUM_BAD, NUM_NONFINITE } num_status;

static int is_space_tab(char c) { return c == ' ' || c == '\t'; }

/* The whole of s, less surrounding blanks, must be one finite float. strtof (not strtod and
 * a cast) so that the value is correctly rounded once; overflow (ERANGE, +-HUGE_VALF) is
 * reported as not finite, underflow to a subnormal or zero is accepted. */
static num_status parse_float(const char *s, float *out)
{
    while (is_space_tab(*s))
        s++;
    if (*s == '\0')
        return NUM_EMPTY;
    char *end;
    float v = strtof(s, &end);
    if (end == s)
        return NUM_BAD;
    while (is_space_tab(*end))
        end++;
    if (*end != '\0')
        return NUM_BAD;
    if (!isfinite(v))
        return NUM_NONFINITE;
    *out = v;
    return NUM_OK;
}

/* As parse_float, in double, and the value must be an integer that fits in int32 ("3",
 * "3.0", "+1" and "-1" all pass: files written by numpy often carry "1.0" class ids). */
static num_status parse_int(const char *s, int32_t *out)
{
    while (is_space_tab(*s))
        s++;
    if (*s == '\0')
        return NUM_EMPTY;
    char *end;
    double v = strtod(s, &end);
    if (end == s)
        return NUM_BAD;
    while (is_space_tab(*end))
        end++;
    if (*end != '\0')
        return NUM_BAD;
    if (!isfinite(v))
        return NUM_NONFINITE;
    if (v != floor(v) || v < INT32_MIN || v > INT32_MAX)
        return NUM_BAD;
    *out = (int32_t)v;
    return NUM_OK;
}

/* ---- String class names -> class ids (open addressing, FNV-1a) ---------------------------- */

typedef struct {
    char **names;  /* (count) in order of first appearance */
    int count, cap;
    int32_t *slot; /* (nslot) class id + 1, 0 = empty; kept at most half full */
    size_t nslot;  /* power of two */
} class_map;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static int class_map_rehash(class_map *m, size_t nslot)
{
    int32_t *slot = calloc(nslot, sizeof *slot);
    if (!slot)
        return -1;
    for (int c = 0; c < m->count; c++) {
        size_t i = (size_t)fnv1a(m->names[c]) & (nslot - 1);
        while (slot[i])
            i = (i + 1) & (nslot - 1);
        slot[i] = c + 1;
    }
    free(m->slot);
    m->slot = slot;
    m->nslot = nslot;
    return 0;
}

/* Returns the class of name, adding it when new; -1 when out of memory. */
static int class_map_get(class_map *m, const char *name)
{
    if ((size_t)m->count + 1 > m->nslot / 2) {
        if (m->nslot > SIZE_MAX / 4 || class_map_rehash(m, m->nslot ? m->nslot * 2 : 16))
            return -1;
    }
    size_t mask = m->nslot - 1, i = (size_t)fnv1a(name) & mask;
    for (; m->slot[i]; i = (i + 1) & mask) {
        if (strcmp(m->names[m->slot[i] - 1], name) == 0)
            return m->slot[i] - 1;
    }
    if (m->count == m->cap) {
        if (m->cap > INT_MAX / 2)
            return -1;
        int cap = m->cap ? m->cap * 2 : 8;
        char **names = realloc(m->names, (size_t)cap * sizeof *names);
        if (!names)
            return -1;
        m->names = names;
        m->cap = cap;
    }
    if (!(m->names[m->count] = strdup(name)))
        return -1;
    m->slot[i] = m->count + 1;
    return m->count++;
}

static void class_map_fini(class_map *m)
{
    names_free(m->names, m->count);
    free(m->slot);
    memset(m, 0, sizeof *m);
}

/* ---- CSV ------------------------------------------------------------------------------- */

typedef struct {
    char **v; /* field starts, pointing into the line buffer */
    size_t n, cap;
} csv_fields;

static int is_blank(char c, char delim) { return is_space_tab(c) && c != delim; }

/* Splits line in place at delim. A field may be double-quoted (RFC 4180: the delimiter may
 * appear inside, "" stands for one quote); blanks around a field are dropped. Returns 0,
 * PST_ERR_NOMEM, or PST_ERR_DATA with *why saying what is malformed. Quoted fields do not
 * span lines: one line is one record. */
static int csv_split(char *line, char delim, csv_fields *f, const char **why)
{
    f->n = 0;
    char *p = line;
    for (;;) {
        if (f->n == f->cap) {
            if (f->cap >= INT_MAX / 2) {
                *why = "too many fields";
                return PST_ERR_DATA;
            }
            size_t cap = f->cap ? f->cap * 2 : 16;
            char **v = realloc(f->v, cap * sizeof *v);
            if (!v)
                return PST_ERR_NOMEM;
            f->v = v;
            f->cap = cap;
        }
        while (is_blank(*p, delim))
            p++;
        char *start = p, *end;
        if (*p == '"') {
            char *w = p++; /* unescape in place: the write point trails the read point */
            for (;;) {
                if (*p == '\0') {
                    *why = "unterminated quoted field";
                    return PST_ERR_DATA;
                }
                if (*p == '"') {
                    if (p[1] != '"') {
                        p++;
                        break;
                    }
                    p++;
                }
                *w++ = *p++;
            }
            while (is_blank(*p, delim))
                p++;
            if (*p != '\0' && *p != delim) {
                *why = "text after a closing quote";
                return PST_ERR_DATA;
            }
            end = w;
        } else {
            while (*p != '\0' && *p != delim)
                p++;
            end = p;
            while (end > start && is_blank(end[-1], delim))
                end--;
        }
        f->v[f->n++] = start;
        char sep = *p;
        *end = '\0'; /* end <= p: may overwrite the delimiter, which sep remembers */
        if (sep == '\0')
            return PST_OK;
        p++;
    }
}

typedef struct {
    const char *path;
    const ds_csv_options *opt;
    char delim;
    csv_fields fields;
    char **names;     /* (ncols) header names, or NULL without a header */
    int ncols;        /* fields per line, fixed by the first line */
    int label_col;
    int d;            /* ncols - 1 */
    int64_t n;        /* rows so far */
    size_t cap;       /* rows allocated */
    float *x;         /* (cap, D) */
    int32_t *label;   /* (cap) classification */
    float *target;    /* (cap) regression */
    int label_mode;   /* classification: 0 undecided, 1 integer ids, 2 strings */
    int32_t max_label;
    class_map classes;
} csv_state;

enum { CSV_LABEL_UNDECIDED = 0, CSV_LABEL_INT, CSV_LABEL_STRING };

/* "column 3 ('petal_width')", 1-based like the line numbers. */
static void csv_col_desc(const csv_state *st, int col, char *buf, size_t cap)
{
    if (st->names)
        snprintf(buf, cap, "column %d ('%.64s')", col + 1, st->names[col]);
    else
        snprintf(buf, cap, "column %d", col + 1);
}

static int csv_field_error(const csv_state *st, long long line, int col, const char *field,
                           num_status ns, pst_err *err)
{
    char where[96];
    csv_col_desc(st, col, where, sizeof where);
    if (ns == NUM_EMPTY)
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: %s: empty field", st->path, line, where);
    if (ns == NUM_NONFINITE)
        return pst_err_set(err, PST_ERR_NUMERIC, "%s:%lld: %s: '%.64s' is not a finite number",
                           st->path, line, where, field);
    return pst_err_set(err, PST_ERR_DATA, "%s:%lld: %s: '%.64s' is not a number", st->path,
                       line, where, field);
}

/* The first non-blank line fixes the column count, decides whether it is a header (for
 * header = -1: yes when a field that must be numeric is not; a label name needs a header)
 * and resolves the label column. Returns with st->names set when the line was a header. */
static int csv_first_line(csv_state *st, long long line, pst_err *err)
{
    const ds_csv_options *opt = st->opt;
    int nf = (int)st->fields.n;
    int unlabelled = !opt->label_name && opt->label_index == DS_CSV_NO_LABEL;
    if (nf < 2 && !unlabelled)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%lld: 1 field; need at least one feature and a label column",
                           st->path, line);
    st->ncols = nf;
    st->d = unlabelled ? nf : nf - 1;
    int lc = -1;
    if (!opt->label_name && !unlabelled) {
        lc = opt->label_index == -1 ? nf - 1 : opt->label_index;
        if (lc < 0 || lc >= nf)
            return pst_err_set(err, PST_ERR_ARG,
                               "%s:%lld: label_index %d out of range for %d columns", st->path,
                               line, opt->label_index, nf);
    }
    int header = opt->label_name ? 1 : opt->header;
    if (header == -1) {
        header = 0;
        for (int c = 0; c < nf && !header; c++) {
            /* A class column may hold strings; in regression every column is numeric. */
            if (c == lc && opt->task == DS_TASK_CLASSIFY)
                continue;
            float v;
            header = parse_float(st->fields.v[c], &v) == NUM_BAD;
        }
    }
    if (header) {
        if (!(st->names = calloc((size_t)nf, sizeof *st->names)))
            return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", st->path);
        for (int c = 0; c < nf; c++) {
            if (!(st->names[c] = strdup(st->fields.v[c])))
                return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", st->path);
        }
        if (opt->label_name) {
            for (int c = 0; c < nf && lc < 0; c++) {
                if (strcmp(st->names[c], opt->label_name) == 0)
                    lc = c;
            }
            if (lc < 0)
                return pst_err_set(err, PST_ERR_ARG,
                                   "%s:%lld: no column named '%.64s' in the header", st->path,
                                   line, opt->label_name);
        }
    }
    st->label_col = lc;
    return PST_OK;
}

static int csv_label(csv_state *st, long long line, const char *field, pst_err *err)
{
    const ds_csv_options *opt = st->opt;
    int col = st->label_col;
    if (opt->task == DS_TASK_REGRESS) {
        num_status ns = parse_float(field, &st->target[st->n]);
        return ns ? csv_field_error(st, line, col, field, ns, err) : PST_OK;
    }
    char where[96];
    int32_t v;
    num_status ns = parse_int(field, &v);
    if (ns == NUM_EMPTY) {
        csv_col_desc(st, col, where, sizeof where);
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: %s: empty label", st->path, line, where);
    }
    /* The first data row decides: a numeric label means class ids, anything else names. */
    if (st->label_mode == CSV_LABEL_UNDECIDED) {
        float f;
        st->label_mode = parse_float(field, &f) == NUM_OK ? CSV_LABEL_INT : CSV_LABEL_STRING;
    }
    if (st->label_mode == CSV_LABEL_STRING) {
        int c = class_map_get(&st->classes, field);
        if (c < 0)
            return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", st->path, line);
        if (opt->nclasses > 0 && c >= opt->nclasses)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s:%lld: label '%.64s' would be class %d, but nclasses is %d",
                               st->path, line, field, c, opt->nclasses);
        st->label[st->n] = c;
        return PST_OK;
    }
    if (ns != NUM_OK) {
        csv_col_desc(st, col, where, sizeof where);
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: %s: label '%.64s' is not an integer "
                           "class id%s", st->path, line, where, field,
                           st->n > 0 ? " (the first data row had a numeric label)" : "");
    }
    if (v < 0 || (opt->nclasses > 0 && v >= opt->nclasses) || v == INT32_MAX) {
        if (opt->nclasses > 0)
            return pst_err_set(err, PST_ERR_DATA, "%s:%lld: label %d out of range [0, %d)",
                               st->path, line, (int)v, opt->nclasses);
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: label %d out of range [0, %d)", st->path,
                           line, (int)v, INT32_MAX);
    }
    st->max_label = v > st->max_label ? v : st->max_label;
    st->label[st->n] = v;
    return PST_OK;
}

static int csv_row(csv_state *st, long long line, pst_err *err)
{
    if ((size_t)st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 256;
        float *x = realloc_rows(st->x, cap, (size_t)st->d * sizeof *x);
        if (!x)
            return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", st->path, line);
        st->x = x;
        if (st->opt->task == DS_TASK_CLASSIFY) {
            int32_t *l = realloc_rows(st->label, cap, sizeof *l);
            if (!l)
                return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", st->path, line);
            st->label = l;
        } else {
            float *t = realloc_rows(st->target, cap, sizeof *t);
            if (!t)
                return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", st->path, line);
            st->target = t;
        }
        st->cap = cap;
    }
    float *xr = st->x + (size_t)st->n * (size_t)st->d;
    if (st->label_col < 0) { /* no label column: a placeholder the caller ignores */
        if (st->label)
            st->label[st->n] = 0;
        else
            st->target[st->n] = 0.0f;
    }
    for (int c = 0, j = 0; c < st->ncols; c++) {
        const char *field = st->fields.v[c];
        if (c == st->label_col) {
            int rc = csv_label(st, line, field, err);
            if (rc)
                return rc;
            continue;
        }
        num_status ns = parse_float(field, &xr[j++]);
        if (ns)
            return csv_field_error(st, line, c, field, ns, err);
    }
    st->n++;
    return PST_OK;
}

ds_dataset *ds_load_csv(const char *path, const ds_csv_options *opt, pst_err *err)
{
    csv_state st = {0};
    FILE *f = NULL;
    char *buf = NULL;
    size_t bufcap = 0;
    ds_dataset *ds = NULL;
    int rc = PST_OK;

    if (!path || !opt) {
        pst_err_set(err, PST_ERR_ARG, "ds_load_csv: NULL path or options");
        return NULL;
    }
    st.path = path;
    st.opt = opt;
    st.delim = opt->delimiter ? opt->delimiter : ',';
    if (st.delim == '"' || st.delim == '\n' || st.delim == '\r' || opt->header < -1 ||
        opt->header > 1 || (opt->task != DS_TASK_CLASSIFY && opt->task != DS_TASK_REGRESS) ||
        (!opt->label_name && opt->label_index < DS_CSV_NO_LABEL) || opt->nclasses < 0) {
        pst_err_set(err, PST_ERR_ARG, "%s: bad CSV options (delimiter, header, task, label or "
                    "nclasses)", path);
        return NULL;
    }
    if (opt->label_name && opt->header == 0) {
        pst_err_set(err, PST_ERR_ARG, "%s: label column '%.64s' by name needs a header line", path,
                    opt->label_name);
        return NULL;
    }
    if (!(f = fopen(path, "r"))) {
        pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }

    long long line = 0;
    int seen_first = 0;
    for (;;) {
        errno = 0;
        ssize_t len = getline(&buf, &bufcap, f);
        if (len < 0) {
            if (ferror(f)) {
                rc = pst_err_set(err, errno == ENOMEM ? PST_ERR_NOMEM : PST_ERR_IO,
                                 "%s:%lld: %s", path, line + 1, strerror(errno));
                goto cleanup;
            }
            break;
        }
        line++;
        if (memchr(buf, '\0', (size_t)len)) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s:%lld: NUL byte (not a text file?)", path, line);
            goto cleanup;
        }
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        char *s = buf;
        if (line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
            s += 3; /* UTF-8 byte order mark, as spreadsheet programs write it */
        const char *p = s;
        while (is_space_tab(*p))
            p++;
        if (*p == '\0')
            continue;
        const char *why = NULL;
        if ((rc = csv_split(s, st.delim, &st.fields, &why))) {
            if (rc == PST_ERR_NOMEM)
                pst_err_set(err, rc, "%s:%lld: out of memory", path, line);
            else
                pst_err_set(err, rc, "%s:%lld: %s", path, line, why);
            goto cleanup;
        }
        if (!seen_first) {
            seen_first = 1;
            if ((rc = csv_first_line(&st, line, err)))
                goto cleanup;
            if (st.names)
                continue;
        }
        if (st.fields.n != (size_t)st.ncols) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s:%lld: %zu fields, expected %d", path, line,
                             st.fields.n, st.ncols);
            goto cleanup;
        }
        if ((rc = csv_row(&st, line, err)))
            goto cleanup;
    }
    if (!seen_first) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: empty file", path);
        goto cleanup;
    }
    if (st.n == 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: no data rows", path);
        goto cleanup;
    }

    int k = 0, tdim = 0;
    if (opt->task == DS_TASK_CLASSIFY) {
        if (st.label_mode == CSV_LABEL_STRING)
            k = opt->nclasses > 0 ? opt->nclasses : st.classes.count;
        else
            k = opt->nclasses > 0 ? opt->nclasses : st.max_label + 1;
        if (k < 1)
            k = 1; /* no label column: every placeholder label is 0 */
    } else {
        tdim = 1;
    }
    /* Give back the doubling slack; a failed shrink just keeps the larger block. */
    float *x = realloc_rows(st.x, (size_t)st.n, (size_t)st.d * sizeof *x);
    st.x = x ? x : st.x;
    if (!(ds = ds_adopt(st.n, st.d, opt->task, k, tdim, st.x, st.label, st.target, err))) {
        rc = PST_ERR_NOMEM;
        goto cleanup;
    }
    st.x = NULL;
    st.label = NULL;
    st.target = NULL;
    if (st.label_mode == CSV_LABEL_STRING) {
        /* Names for classes 0..k-1; classes beyond those seen (nclasses given) stay NULL. */
        char **names = realloc(st.classes.names, (size_t)k * sizeof *names);
        if (!names) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
            goto cleanup;
        }
        for (int c = st.classes.count; c < k; c++)
            names[c] = NULL;
        ds->class_names = names;
        st.classes.names = NULL;
        st.classes.count = 0;
    }
cleanup:
    if (rc && ds) {
        ds_destroy(ds);
        ds = NULL;
    }
    if (f)
        fclose(f);
    free(buf);
    free(st.fields.v);
    names_free(st.names, st.ncols);
    free(st.x);
    free(st.label);
    free(st.target);
    class_map_fini(&st.classes);
    return ds;
}

/* ---- libsvm / svmlight ------------------------------------------------------------------ */

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

ds_dataset *ds_load_libsvm(const char *path, int dim, ds_task task, int nclasses, pst_err *err)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t bufcap = 0;
    /* Sparse rows as read: row i holds entries [rowend[i-1], rowend[i]). */
    int32_t *col = NULL;  /* (nnz) 0-based */
    float *val = NULL;    /* (nnz) */
    size_t *rowend = NULL; /* (n) */
    int32_t *ilab = NULL; /* (n) classification labels as written */
    float *flab = NULL;   /* (n) regression targets */
    size_t nnz = 0, nnz_cap = 0, cap = 0;
    int64_t n = 0;
    int32_t maxidx = 0, maxlab = 0;
    long long line_m1 = 0, line_other = 0; /* first lines with label -1 and with not +-1 */
    int32_t other = 0;
    ds_dataset *ds = NULL;

    if (!path || dim < 0 || nclasses < 0 ||
        (task != DS_TASK_CLASSIFY && task != DS_TASK_REGRESS)) {
        pst_err_set(err, PST_ERR_ARG, "ds_load_libsvm: bad arguments (dim %d, nclasses %d)", dim,
                    nclasses);
        return NULL;
    }
    if (!(f = fopen(path, "r"))) {
        pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    long long line = 0;
    for (;;) {
        errno = 0;
        ssize_t len = getline(&buf, &bufcap, f);
        if (len < 0) {
            if (ferror(f)) {
                pst_err_set(err, errno == ENOMEM ? PST_ERR_NOMEM : PST_ERR_IO, "%s:%lld: %s", path,
                            line + 1, strerror(errno));
                goto cleanup;
            }
            break;
        }
        line++;
        if (memchr(buf, '\0', (size_t)len)) {
            pst_err_set(err, PST_ERR_DATA, "%s:%lld: NUL byte (not a text file?)", path, line);
            goto cleanup;
        }
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        char *p = buf;
        while (is_ws(*p))
            p++;
        if (*p == '\0')
            continue;

        if ((size_t)n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            size_t *re = realloc_rows(rowend, ncap, sizeof *re);
            if (re)
                rowend = re;
            void *l = task == DS_TASK_CLASSIFY ? realloc_rows(ilab, ncap, sizeof *ilab)
                                               : realloc_rows(flab, ncap, sizeof *flab);
            if (l && task == DS_TASK_CLASSIFY)
                ilab = l;
            else if (l)
                flab = l;
            if (!re || !l) {
                pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", path, line);
                goto cleanup;
            }
            cap = ncap;
        }

        char *tok = p;
        while (*p && !is_ws(*p))
            p++;
        if (*p)
            *p++ = '\0';
        if (task == DS_TASK_REGRESS) {
            num_status ns = parse_float(tok, &flab[n]);
            if (ns) {
                pst_err_set(err, ns == NUM_NONFINITE ? PST_ERR_NUMERIC : PST_ERR_DATA,
                            "%s:%lld: label '%.64s' is not a %snumber", path, line, tok,
                            ns == NUM_NONFINITE ? "finite " : "");
                goto cleanup;
            }
        } else {
            int32_t v;
            num_status ns = parse_int(tok, &v);
            if (ns) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: label '%.64s' is not an integer", path,
                            line, tok);
                goto cleanup;
            }
            /* -1 is only valid as half of the svmlight {-1, +1} pair; decided at the end. */
            if (v < -1 || (nclasses > 0 && v >= nclasses) || v == INT32_MAX) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: label %d out of range [0, %d)", path,
                            line, (int)v, nclasses > 0 ? nclasses : INT32_MAX);
                goto cleanup;
            }
            if (v == -1 && !line_m1)
                line_m1 = line;
            if (v != -1 && v != 1 && !line_other) {
                line_other = line;
                other = v;
            }
            maxlab = v > maxlab ? v : maxlab;
            ilab[n] = v;
        }

        int32_t prev = 0;
        for (;;) {
            while (is_ws(*p))
                p++;
            if (*p == '\0')
                break;
            tok = p;
            while (*p && !is_ws(*p))
                p++;
            if (*p)
                *p++ = '\0';
            if (strncmp(tok, "qid:", 4) == 0)
                continue; /* svmlight ranking query id: groups rows, is not a feature */
            char *colon = strchr(tok, ':');
            if (!colon) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: '%.64s' is not index:value", path, line,
                            tok);
                goto cleanup;
            }
            *colon = '\0';
            char *end;
            errno = 0;
            long idx = strtol(tok, &end, 10);
            if (end == tok || *end != '\0') {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: bad feature index '%.64s'", path, line,
                            tok);
                goto cleanup;
            }
            if (idx < 1) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: feature index %ld (indices start at 1)",
                            path, line, idx);
                goto cleanup;
            }
            if (errno == ERANGE || idx > INT_MAX) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: feature index %.64s is too large", path,
                            line, tok);
                goto cleanup;
            }
            if (idx <= prev) {
                pst_err_set(err, PST_ERR_DATA,
                            "%s:%lld: feature index %ld after %d (indices must increase)", path,
                            line, idx, (int)prev);
                goto cleanup;
            }
            if (dim > 0 && idx > dim) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: feature index %ld exceeds dim %d", path,
                            line, idx, dim);
                goto cleanup;
            }
            float v;
            num_status ns = parse_float(colon + 1, &v);
            if (ns) {
                pst_err_set(err, ns == NUM_NONFINITE ? PST_ERR_NUMERIC : PST_ERR_DATA,
                            "%s:%lld: feature %ld: '%.64s' is not a %snumber", path, line, idx,
                            colon + 1, ns == NUM_NONFINITE ? "finite " : "");
                goto cleanup;
            }
            if (nnz == nnz_cap) {
                size_t ncap = nnz_cap ? nnz_cap * 2 : 1024;
                int32_t *c2 = realloc_rows(col, ncap, sizeof *c2);
                if (c2)
                    col = c2;
                float *v2 = realloc_rows(val, ncap, sizeof *v2);
                if (v2)
                    val = v2;
                if (!c2 || !v2) {
                    pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", path, line);
                    goto cleanup;
                }
                nnz_cap = ncap;
            }
            col[nnz] = (int32_t)idx - 1;
            val[nnz] = v;
            nnz++;
            prev = (int32_t)idx;
        }
        maxidx = prev > maxidx ? prev : maxidx;
        rowend[n++] = nnz;
    }
    if (n == 0) {
        pst_err_set(err, PST_ERR_DATA, "%s: no data rows", path);
        goto cleanup;
    }
    int d = dim > 0 ? dim : maxidx;
    if (d == 0) {
        pst_err_set(err, PST_ERR_DATA, "%s: no features in any row (pass dim)", path);
        goto cleanup;
    }
    int k = 0;
    int pm1 = 0; /* labels are the svmlight {-1, +1} pair */
    if (task == DS_TASK_CLASSIFY) {
        if (line_m1 && line_other) {
            pst_err_set(err, PST_ERR_DATA,
                        "%s:%lld: label -1 out of range (allowed only with +1 labels, but line "
                        "%lld has label %d)", path, line_m1, line_other, (int)other);
            goto cleanup;
        }
        pm1 = line_m1 != 0;
        if (pm1 && nclasses == 1) {
            pst_err_set(err, PST_ERR_DATA, "%s: -1/+1 labels need nclasses >= 2", path);
            goto cleanup;
        }
        k = nclasses > 0 ? nclasses : pm1 ? 2 : maxlab + 1;
    }
    if (!(ds = ds_create(n, d, task, k, 1, err)))
        goto cleanup;
    for (int64_t i = 0; i < n; i++) {
        float *xr = ds->x + (size_t)i * (size_t)d;
        for (size_t e = i ? rowend[i - 1] : 0; e < rowend[i]; e++)
            xr[col[e]] = val[e];
        if (task == DS_TASK_CLASSIFY)
            ds->label[i] = pm1 ? (ilab[i] + 1) / 2 : ilab[i];
        else
            ds->target[i] = flab[i];
    }
cleanup:
    if (f)
        fclose(f);
    free(buf);
    free(col);
    free(val);
    free(rowend);
    free(ilab);
    free(flab);
    return ds;
}

/* ---- Scaling ----------------------------------------------------------------------------- */

/* s is output storage, like an _init: whatever it held is overwritten, not freed (call
 * ds_scaler_fini before refitting). On failure s is left empty (NULL arrays). */
int ds_scaler_fit(ds_scaler *s, ds_scale_kind kind, const ds_dataset *ds, pst_err *err)
{
    float *shift = NULL, *mul = NULL;
    double *acc = NULL, *acc2 = NULL;
    float *lo = NULL, *hi = NULL;
    int rc = PST_OK;

    if (!s)
        return pst_err_set(err, PST_ERR_ARG, "ds_scaler_fit: NULL scaler");
    memset(s, 0, sizeof *s);
    if (!ds || (kind != DS_SCALE_NONE && kind != DS_SCALE_MINMAX && kind != DS_SCALE_STANDARDIZE))
        return pst_err_set(err, PST_ERR_ARG, "ds_scaler_fit: NULL dataset or unknown kind %d",
                           (int)kind);
    int d = ds->d;
    int64_t n = ds->n;
    int per_feature = kind == DS_SCALE_STANDARDIZE || (kind == DS_SCALE_MINMAX && !ds->has_range);
    if (per_feature && n == 0)
        return pst_err_set(err, PST_ERR_ARG, "scaler: cannot fit on an empty dataset");
    shift = malloc((size_t)d * sizeof *shift);
    mul = malloc((size_t)d * sizeof *mul);
    acc = calloc((size_t)d, sizeof *acc);
    acc2 = calloc((size_t)d, sizeof *acc2);
    lo = malloc((size_t)d * sizeof *lo);
    hi = malloc((size_t)d * sizeof *hi);
    if (!shift || !mul || !acc || !acc2 || !lo || !hi) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "scaler of %d features: out of memory", d);
        goto cleanup;
    }
    const float *x = ds->x;

    if (kind == DS_SCALE_NONE) {
        for (int j = 0; j < d; j++) {
            shift[j] = 0.0f;
            mul[j] = 1.0f;
        }
    } else if (kind == DS_SCALE_MINMAX && ds->has_range) {
        /* The format's fixed range (IDX: 0..255), so that every split scales alike. */
        float m = (float)(1.0 / ((double)ds->raw_hi - ds->raw_lo));
        for (int j = 0; j < d; j++) {
            shift[j] = ds->raw_lo;
            mul[j] = m;
        }
    } else if (kind == DS_SCALE_MINMAX) {
        /* x' = (x - min) / (max - min); the double sums only detect NaN/Inf, which the
         * comparisons would skip silently. */
        memcpy(lo, x, (size_t)d * sizeof *lo);
        memcpy(hi, x, (size_t)d * sizeof *hi);
        for (int64_t i = 0; i < n; i++) {
            const float *restrict row = x + (size_t)i * (size_t)d;
            float *restrict l = lo, *restrict h = hi;
            double *restrict a = acc;
            for (int j = 0; j < d; j++) {
                l[j] = row[j] < l[j] ? row[j] : l[j];
                h[j] = row[j] > h[j] ? row[j] : h[j];
                a[j] += row[j];
            }
        }
        for (int j = 0; j < d; j++) {
            if (!isfinite(acc[j])) {
                rc = pst_err_set(err, PST_ERR_NUMERIC, "scaler: feature %d has non-finite values",
                                 j);
                goto cleanup;
            }
            double range = (double)hi[j] - lo[j];
            shift[j] = lo[j];
            mul[j] = range > 0 ? (float)(1.0 / range) : 0.0f; /* constant feature -> 0 */
            if (!isfinite(mul[j])) {
                rc = pst_err_set(err, PST_ERR_NUMERIC, "scaler: feature %d: range %g too small to "
                                 "scale", j, range);
                goto cleanup;
            }
        }
    } else {
        /* Two-pass mean and population variance in double (ddof = 0, as sklearn's
         * StandardScaler): var = sum (x - mean)^2 / N. Exact for constant features, whose
         * std 0 gets mul 1. */
        for (int64_t i = 0; i < n; i++) {
            const float *restrict row = x + (size_t)i * (size_t)d;
            double *restrict a = acc;
            for (int j = 0; j < d; j++)
                a[j] += row[j];
        }
        for (int j = 0; j < d; j++)
            acc[j] /= (double)n;
        for (int64_t i = 0; i < n; i++) {
            const float *restrict row = x + (size_t)i * (size_t)d;
            const double *restrict mean = acc;
            double *restrict a2 = acc2;
            for (int j = 0; j < d; j++) {
                double dv = row[j] - mean[j];
                a2[j] += dv * dv;
            }
        }
        for (int j = 0; j < d; j++) {
            double sd = sqrt(acc2[j] / (double)n);
            shift[j] = (float)acc[j];
            mul[j] = sd > 0 ? (float)(1.0 / sd) : 1.0f;
            if (!isfinite(acc[j]) || !isfinite(sd) || !isfinite(mul[j])) {
                rc = pst_err_set(err, PST_ERR_NUMERIC,
                                 "scaler: feature %d: mean %g, std %g cannot be scaled", j, acc[j],
                                 sd);
                goto cleanup;
            }
        }
    }
    s->d = d;
    s->kind = kind;
    s->shift = shift;
    s->mul = mul;
    shift = mul = NULL;
cleanup:
    free(shift);
    free(mul);
    free(acc);
    free(acc2);
    free(lo);
    free(hi);
    return rc;
}

/* x'[i, j] = (x[i, j] - shift[j]) * mul[j]; restrict lets gcc vectorise the inner loop. */
static void scale_rows(float *restrict x, const float *restrict shift, const float *restrict mul,
                       int64_t n, int d)
{
    for (int64_t i = 0; i < n; i++) {
        float *restrict row = x + (size_t)i * (size_t)d;
        for (int j = 0; j < d; j++)
            row[j] = (row[j] - shift[j]) * mul[j];
    }
}

int ds_scaler_apply(const ds_scaler *s, ds_dataset *ds, pst_err *err)
{
    if (!s || !ds)
        return pst_err_set(err, PST_ERR_ARG, "ds_scaler_apply: NULL scaler or dataset");
    if (!s->shift || !s->mul)
        return pst_err_set(err, PST_ERR_STATE, "ds_scaler_apply: scaler is not fitted");
    if (s->d != ds->d)
        return pst_err_set(err, PST_ERR_ARG, "scaler fitted on %d features, dataset has %d",
                           s->d, ds->d);
    scale_rows(ds->x, s->shift, s->mul, ds->n, ds->d);
    /* The features are no longer raw, so a later min-max fit must look at the data. */
    if (s->kind != DS_SCALE_NONE)
        ds->has_range = 0;
    return PST_OK;
}

void ds_scaler_fini(ds_scaler *s)
{
    if (!s)
        return;
    free(s->shift);
    free(s->mul);
    s->shift = s->mul = NULL;
    s->d = 0;
}

/* ---- Row selection -------------------------------------------------------------------- */

/* New dataset of rows r64[i] (or r32[i] when r64 is NULL), i < n, already range-checked;
 * class names and the raw range carry over. */
static ds_dataset *gather(const ds_dataset *ds, const int64_t *r64, const uint32_t *r32,
                          int64_t n, pst_err *err)
{
    ds_dataset *out = ds_create(n, ds->d, ds->task, ds->nclasses, ds->tdim, err);
    if (!out)
        return NULL;
    size_t d = (size_t)ds->d, t = (size_t)ds->tdim;
    for (int64_t i = 0; i < n; i++) {
        size_t r = r64 ? (size_t)r64[i] : (size_t)r32[i];
        memcpy(out->x + (size_t)i * d, ds->x + r * d, d * sizeof *out->x);
        if (ds->label)
            out->label[i] = ds->label[r];
        else
            memcpy(out->target + (size_t)i * t, ds->target + r * t, t * sizeof *out->target);
    }
    if (names_copy(&out->class_names, ds->class_names, NULL, ds->nclasses)) {
        ds_destroy(out);
        pst_err_set(err, PST_ERR_NOMEM, "dataset: out of memory copying class names");
        return NULL;
    }
    out->has_range = ds->has_range;
    out->raw_lo = ds->raw_lo;
    out->raw_hi = ds->raw_hi;
    return out;
}

ds_dataset *ds_subset(const ds_dataset *ds, const int64_t *rows, int64_t n, pst_err *err)
{
    if (!ds || n < 0 || (n > 0 && !rows)) {
        pst_err_set(err, PST_ERR_ARG, "ds_subset: bad arguments");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= ds->n) {
            pst_err_set(err, PST_ERR_ARG, "ds_subset: rows[%lld] = %lld out of range [0, %lld)",
                        (long long)i, (long long)rows[i], (long long)ds->n);
            return NULL;
        }
    }
    return gather(ds, rows, NULL, n, err);
}

/* *perm = the seeded permutation of 0..n-1 that ds_split and ds_partition share: it
 * depends only on n and seed, so every worker computes the same one. */
static int shuffled_rows(int64_t n, uint64_t seed, uint32_t **perm, pst_err *err)
{
    *perm = NULL;
    if (n > (int64_t)UINT32_MAX)
        return pst_err_set(err, PST_ERR_ARG, "cannot shuffle %lld rows (at most 2^32 - 1)",
                           (long long)n);
    uint32_t *p = malloc((n ? (size_t)n : 1) * sizeof *p);
    if (!p)
        return pst_err_set(err, PST_ERR_NOMEM, "shuffle of %lld rows: out of memory",
                           (long long)n);
    for (int64_t i = 0; i < n; i++)
        p[i] = (uint32_t)i;
    rng_state r;
    rng_seed(&r, seed);
    rng_shuffle_u32(&r, p, (size_t)n);
    *perm = p;
    return PST_OK;
}

int ds_split(const ds_dataset *ds, double frac, uint64_t seed, ds_dataset **train,
             ds_dataset **val, pst_err *err)
{
    if (train)
        *train = NULL;
    if (val)
        *val = NULL;
    if (!ds || !train || !val)
        return pst_err_set(err, PST_ERR_ARG, "ds_split: NULL argument");
    if (!(frac >= 0.0 && frac < 1.0))
        return pst_err_set(err, PST_ERR_ARG, "ds_split: validation fraction %g not in [0, 1)",
                           frac);
    uint32_t *perm;
    int rc = shuffled_rows(ds->n, seed, &perm, err);
    if (rc)
        return rc;
    int64_t nval = (int64_t)llround(frac * (double)ds->n);
    /* perm[0, nval) is the validation set, perm[nval, n) the training set; gather fails
     * only for want of memory. */
    if (!(*val = gather(ds, NULL, perm, nval, err)) ||
        !(*train = gather(ds, NULL, perm + nval, ds->n - nval, err))) {
        rc = PST_ERR_NOMEM;
        ds_destroy(*val);
        *val = NULL;
    }
    free(perm);
    return rc;
}

ds_dataset *ds_partition(const ds_dataset *ds, int nparts, int k, uint64_t seed, pst_err *err)
{
    if (!ds || nparts < 1 || k < 0 || k >= nparts) {
        pst_err_set(err, PST_ERR_ARG, "ds_partition: part %d of %d", k, nparts);
        return NULL;
    }
    uint32_t *perm;
    if (shuffled_rows(ds->n, seed, &perm, err))
        return NULL;
    /* k * N < 2^31 * 2^32: no overflow in int64. */
    int64_t lo = (int64_t)k * ds->n / nparts, hi = ((int64_t)k + 1) * ds->n / nparts;
    ds_dataset *out = gather(ds, NULL, perm + lo, hi - lo, err);
    free(perm);
    return out;
}

/* Moves row perm[j] to row j for every j, following the permutation's cycles with one
 * spare row, so the data is never held twice. */
static void permute_rows(void *base, size_t rowb, const uint32_t *perm, int64_t n,
                         unsigned char *seen, void *tmp)
{
    char *b = base;
    for (int64_t i = 0; i < n; i++) {
        if (seen[i])
            continue;
        memcpy(tmp, b + (size_t)i * rowb, rowb);
        int64_t j = i;
        for (;;) {
            seen[j] = 1;
            int64_t src = perm[j];
            if (src == i) {
                memcpy(b + (size_t)j * rowb, tmp, rowb);
                break;
            }
            memcpy(b + (size_t)j * rowb, b + (size_t)src * rowb, rowb);
            j = src;
        }
    }
}

int ds_shuffle_inplace(ds_dataset *ds, uint64_t seed, pst_err *err)
{
    uint32_t *perm = NULL;
    unsigned char *seen = NULL;
    void *tmp = NULL;
    int rc = shuffled_rows(ds->n, seed, &perm, err);
    if (rc)
        return rc;
    size_t xrow = (size_t)ds->d * sizeof(float);
    size_t trow = ds->target ? (size_t)ds->tdim * sizeof(float) : 0;
    size_t nseen = ds->n > 0 ? (size_t)ds->n : 1; /* n >= 0, checked by shuffled_rows */
    seen = malloc(nseen);
    tmp = malloc(xrow > trow ? xrow : trow);
    if (!seen || !tmp) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "shuffle of %lld rows: out of memory",
                         (long long)ds->n);
        goto cleanup;
    }
    memset(seen, 0, nseen);
    permute_rows(ds->x, xrow, perm, ds->n, seen, tmp);
    if (ds->label) {
        memset(seen, 0, nseen);
        permute_rows(ds->label, sizeof(int32_t), perm, ds->n, seen, tmp);
    }
    if (ds->target) {
        memset(seen, 0, nseen);
        permute_rows(ds->target, trow, perm, ds->n, seen, tmp);
    }
cleanup:
    free(perm);
    free(seen);
    free(tmp);
    return rc;
}

ds_dataset *ds_filter_classes(const ds_dataset *ds, const int *keep, int nkeep, pst_err *err)
{
    int *map = NULL;
    int64_t *rows = NULL;
    ds_dataset *out = NULL;
    if (!ds || !keep || nkeep < 1) {
        pst_err_set(err, PST_ERR_ARG, "ds_filter_classes: need a dataset and nkeep >= 1");
        return NULL;
    }
    if (ds->task != DS_TASK_CLASSIFY) {
        pst_err_set(err, PST_ERR_ARG, "ds_filter_classes: dataset has no class labels");
        return NULL;
    }
    int k = ds->nclasses;
    map = malloc((size_t)k * sizeof *map); /* old class -> new class, or -1 */
    rows = calloc(ds->n ? (size_t)ds->n : 1, sizeof *rows);
    if (!map || !rows) {
        pst_err_set(err, PST_ERR_NOMEM, "ds_filter_classes: out of memory");
        goto cleanup;
    }
    for (int c = 0; c < k; c++)
        map[c] = -1;
    for (int i = 0; i < nkeep; i++) {
        if (keep[i] < 0 || keep[i] >= k) {
            pst_err_set(err, PST_ERR_ARG, "ds_filter_classes: keep[%d] = %d out of range [0, %d)",
                        i, keep[i], k);
            goto cleanup;
        }
        if (map[keep[i]] >= 0) {
            pst_err_set(err, PST_ERR_ARG, "ds_filter_classes: class %d listed twice", keep[i]);
            goto cleanup;
        }
        map[keep[i]] = i;
    }
    int64_t m = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        int32_t c = ds->label[i];
        if (c < 0 || c >= k) {
            pst_err_set(err, PST_ERR_DATA, "ds_filter_classes: row %lld: label %d out of range "
                        "[0, %d)", (long long)i, (int)c, k);
            goto cleanup;
        }
        if (map[c] >= 0)
            rows[m++] = i;
    }
    if (!(out = gather(ds, rows, NULL, m, err)))
        goto cleanup;
    for (int64_t i = 0; i < m; i++)
        out->label[i] = map[out->label[i]];
    char **names;
    if (names_copy(&names, ds->class_names, keep, nkeep)) {
        pst_err_set(err, PST_ERR_NOMEM, "ds_filter_classes: out of memory");
        ds_destroy(out);
        out = NULL;
        goto cleanup;
    }
    names_free(out->class_names, out->nclasses);
    out->class_names = names;
    out->nclasses = nkeep;
cleanup:
    free(map);
    free(rows);
    return out;
}

int ds_align_classes(ds_dataset *ds, const ds_dataset *ref, const char *what, pst_err *err)
{
    if (ds->task != DS_TASK_CLASSIFY || ref->task != DS_TASK_CLASSIFY)
        return PST_OK;
    if (!ds->class_names && !ref->class_names)
        return PST_OK;
    if (!ds->class_names || !ref->class_names)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: class labels are %s, but the training data's are %s", what,
                           ds->class_names ? "names" : "numbers",
                           ref->class_names ? "names" : "numbers");
    int *map = malloc(sizeof(int) * (size_t)(ds->nclasses ? ds->nclasses : 1));
    char **names = NULL;
    int rc = PST_OK;
    if (!map)
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", what);
    for (int c = 0; c < ds->nclasses; c++) {
        map[c] = -1;
        for (int r = 0; r < ref->nclasses && map[c] < 0; r++)
            if (ds->class_names[c] && ref->class_names[r] &&
                strcmp(ds->class_names[c], ref->class_names[r]) == 0)
                map[c] = r;
        if (map[c] < 0) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: class '%s' does not occur in the training data",
                             what, ds->class_names[c] ? ds->class_names[c] : "?");
            goto cleanup;
        }
    }
    if (names_copy(&names, ref->class_names, NULL, ref->nclasses)) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", what);
        goto cleanup;
    }
    for (int64_t i = 0; i < ds->n; i++)
        ds->label[i] = map[ds->label[i]];
    names_free(ds->class_names, ds->nclasses);
    ds->class_names = names;
    ds->nclasses = ref->nclasses;
cleanup:
    free(map);
    return rc;
}
