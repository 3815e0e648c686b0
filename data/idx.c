/* data/idx.c -- the MNIST IDX loader (gzip or plain, through zlib). */
#include "data_internal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <zlib.h>

/* ---- IDX (LeCun & Cortes, "THE MNIST DATABASE", file formats section) ------------------
 * Header: a big-endian magic 0x0000TTNN (TT = element type, 08 = uint8; NN = number of
 * dimensions), then NN big-endian uint32 sizes, then the elements in row-major order. */

#define IDX_MAGIC_IMAGES 0x00000803u /* uint8, 3 dims: N, rows, cols */
#define IDX_MAGIC_LABELS 0x00000801u /* uint8, 1 dim: N */
#define IDX_BLOCK ((size_t)1 << 18)  /* pixel bytes per read: 256 KiB stays in L2 */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads up to len bytes; *got is what arrived before end of file. gzread counts in int, so
 * large blocks go in 1 GiB chunks. A gzip stream cut short reads as end of file (zlib
 * reports Z_BUF_ERROR for it) so that the caller can say how much was missing. */
static int gz_read_all(gzFile f, void *buf, size_t len, size_t *got, const char *path, pst_err *err)
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
            return pst_err_set(err, zerr == Z_MEM_ERROR ? PST_ERR_NOMEM : PST_ERR_DATA, "%s: %s",
                               path, msg);
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

/* Reads the n labels of fl into lab (n bytes) and checks them against nclasses (0 = any);
 * *maxlab is the largest label. */
static int idx_read_labels(gzFile fl, const char *path, uint32_t n, int nclasses, uint8_t *lab,
                           int *maxlab, pst_err *err)
{
    size_t got;
    int rc = gz_read_all(fl, lab, n, &got, path, err);
    if (rc)
        return rc;
    if (got < n)
        return pst_err_set(err, PST_ERR_DATA, "%s: truncated: expected %u bytes of labels, got %zu",
                           path, n, got);
    *maxlab = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (nclasses > 0 && lab[i] >= nclasses)
            return pst_err_set(err, PST_ERR_DATA, "%s: record %u: label %d out of range [0, %d)",
                               path, i, lab[i], nclasses);
        *maxlab = lab[i] > *maxlab ? lab[i] : *maxlab;
    }
    return PST_OK;
}

/* Reads npix pixel bytes of fi into x as floats. Through a small reusable byte buffer: each
 * block is one gzread (zlib inflates straight into it) and one vectorised conversion while it
 * is still in cache, with no per-byte calls and no second full-size buffer to fault in. */
static int idx_read_pixels(gzFile fi, const char *path, size_t npix, float *x, pst_err *err)
{
    size_t block = npix < IDX_BLOCK ? npix : IDX_BLOCK;
    uint8_t *pix = malloc(block);
    if (!pix)
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
    int rc = PST_OK;
    for (size_t off = 0; off < npix; off += block) {
        size_t want = npix - off < block ? npix - off : block, got;
        if ((rc = gz_read_all(fi, pix, want, &got, path, err)))
            break;
        if (got < want) {
            rc = pst_err_set(err, PST_ERR_DATA,
                             "%s: truncated: expected %zu bytes of pixels, got %zu", path, npix,
                             off + got);
            break;
        }
        u8_to_float(x + off, pix, want);
    }
    free(pix);
    return rc;
}

void ds_image_fit(float *dst, int oh, int ow, const float *src, int ih, int iw, ds_fit fit)
{
    if (fit == DS_FIT_PAD) {
        /* Offsets of the source in the canvas (negative: the source is cropped). */
        int dy = oh >= ih ? (oh - ih) / 2 : -((ih - oh) / 2);
        int dx = ow >= iw ? (ow - iw) / 2 : -((iw - ow) / 2);
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                int sy = y - dy, sx = x - dx;
                dst[(size_t)y * ow + x] =
                    sy >= 0 && sy < ih && sx >= 0 && sx < iw ? src[(size_t)sy * iw + sx] : 0.0f;
            }
        return;
    }
    double ry = (double)ih / oh, rx = (double)iw / ow;
    for (int y = 0; y < oh; y++) {
        double fy = ((double)y + 0.5) * ry - 0.5;
        if (fy < 0)
            fy = 0;
        int y0 = (int)fy, y1 = y0 + 1 < ih ? y0 + 1 : ih - 1;
        double wy = fy - y0;
        for (int x = 0; x < ow; x++) {
            double fx = ((double)x + 0.5) * rx - 0.5;
            if (fx < 0)
                fx = 0;
            int x0 = (int)fx, x1 = x0 + 1 < iw ? x0 + 1 : iw - 1;
            double wx = fx - x0;
            const float *r0 = src + (size_t)y0 * iw, *r1 = src + (size_t)y1 * iw;
            double top = r0[x0] + (r0[x1] - r0[x0]) * wx, bot = r1[x0] + (r1[x1] - r1[x0]) * wx;
            dst[(size_t)y * ow + x] = (float)(top + (bot - top) * wy);
        }
    }
}

/* ds's (N, ih * iw) images as (N, oh * ow) in a new dataset (labels and range kept). */
static ds_dataset *fit_all(const ds_dataset *ds, int ih, int iw, int oh, int ow, ds_fit fit,
                           pst_err *err)
{
    ds_dataset *out = ds_create(ds->n, oh * ow, ds->task, ds->nclasses, 0, err);
    if (!out)
        return NULL;
    for (int64_t i = 0; i < ds->n; i++) {
        ds_image_fit(out->x + (size_t)i * oh * ow, oh, ow, ds->x + (size_t)i * ih * iw, ih, iw,
                     fit);
        out->label[i] = ds->label[i];
    }
    out->has_range = ds->has_range;
    out->raw_lo = ds->raw_lo;
    out->raw_hi = ds->raw_hi;
    return out;
}

ds_dataset *ds_load_idx(const char *images_path, const char *labels_path, int nclasses,
                        pst_err *err)
{
    return ds_load_idx_fit(images_path, labels_path, nclasses, 0, 0, DS_FIT_PAD, err);
}

ds_dataset *ds_load_idx_fit(const char *images_path, const char *labels_path, int nclasses,
                            int height, int width, ds_fit fit, pst_err *err)
{
    gzFile fi = NULL, fl = NULL;
    uint8_t *lab = NULL;
    ds_dataset *ds = NULL;
    uint32_t idims[3] = {0}, ldims[1] = {0};
    int ok = 0;

    if (!images_path || !labels_path || nclasses < 0 || height < 0 || width < 0 ||
        (height > 0) != (width > 0) || (int64_t)height * width > (1 << 24)) {
        pst_err_set(err, PST_ERR_ARG,
                    "ds_load_idx: need two paths, nclasses >= 0 and a size "
                    "(%d x %d) of at most 2^24 pixels",
                    height, width);
        return NULL;
    }
    /* Both headers first, so a mismatched pair fails before 47 MB are decompressed. */
    uint64_t iroom = 0, lroom = 0;
    if (idx_open(images_path, IDX_MAGIC_IMAGES, "uint8 images, 3 dims", 3, idims, &iroom, &fi,
                 err) ||
        idx_open(labels_path, IDX_MAGIC_LABELS, "uint8 labels, 1 dim", 1, ldims, &lroom, &fl, err))
        goto cleanup;
    uint32_t n = idims[0];
    uint64_t d = (uint64_t)idims[1] * idims[2];
    if (d > INT_MAX) {
        pst_err_set(err, PST_ERR_DATA, "%s: images of %u x %u pixels are too large", images_path,
                    idims[1], idims[2]);
        goto cleanup;
    }
    if (ldims[0] != n) {
        pst_err_set(err, PST_ERR_DATA, "%s: %u labels, but %s has %u images", labels_path, ldims[0],
                    images_path, n);
        goto cleanup;
    }
    size_t npix;
    if (ds_size_mul3(n, d, sizeof(float), &npix) || ds_size_mul3(n, d, 1, &npix)) {
        pst_err_set(err, PST_ERR_NOMEM, "%s: %u images of %llu pixels overflow size_t", images_path,
                    n, (unsigned long long)d);
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
    int maxlab;
    if (idx_read_labels(fl, labels_path, n, nclasses, lab, &maxlab, err))
        goto cleanup;
    ds = ds_create(n, (int)d, DS_TASK_CLASSIFY, nclasses > 0 ? nclasses : maxlab + 1, 0, err);
    if (!ds || idx_read_pixels(fi, images_path, npix, ds->x, err))
        goto cleanup;
    for (uint32_t i = 0; i < n; i++)
        ds->label[i] = lab[i];
    ds->has_range = 1;
    ds->raw_lo = 0.0f;
    ds->raw_hi = 255.0f;
    if (height > 0 && ((uint32_t)height != idims[1] || (uint32_t)width != idims[2])) {
        ds_dataset *fitted = fit_all(ds, (int)idims[1], (int)idims[2], height, width, fit, err);
        if (!fitted)
            goto cleanup;
        ds_destroy(ds);
        ds = fitted;
    }
    /* The images' shape (1, H, W) after any fit, as conv layers see it. */
    ds->image[0] = 1;
    ds->image[1] = height > 0 ? height : (int)idims[1];
    ds->image[2] = width > 0 ? width : (int)idims[2];
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
    return ds;
}
