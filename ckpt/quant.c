/* ckpt/quant.c -- fp16/int8 exports of model checkpoints, their widening on load, and
 * magnitude pruning (ckpt/quant.h). */
#include "ckpt/quant.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "ckpt_internal.h"

#define SCALE_SUFFIX ".scale"

/* ---- The kernels --------------------------------------------------------------------- */

int ckpt_q8_rows(int8_t *q, float *scale, const float *w, int64_t rows, int64_t cols, pst_err *err)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *wr = w + r * cols;
        float m = 0.0f;
        for (int64_t c = 0; c < cols; c++) {
            if (!isfinite(wr[c]))
                return pst_err_set(err, PST_ERR_DATA,
                                   "element [%" PRId64 ", %" PRId64 "] is %s: cannot quantise", r,
                                   c, isnan(wr[c]) ? "NaN" : "infinite");
            m = fmaxf(m, fabsf(wr[c]));
        }
        scale[r] = m / 127.0f;
        /* In double, as 127 * w / m: exact enough, and safe when m / 127 underflows. */
        for (int64_t c = 0; c < cols; c++) {
            double v = m > 0.0f ? nearbyint(127.0 * (double)wr[c] / (double)m) : 0.0;
            q[r * cols + c] = (int8_t)(v > 127.0 ? 127 : v < -127.0 ? -127 : v);
        }
    }
    return PST_OK;
}

void ckpt_q8_dequant(float *w, const int8_t *q, const float *scale, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            w[r * cols + c] = (float)q[r * cols + c] * scale[r];
}

/* (|w|, index) pairs, ordered by magnitude then position: the smallest k are pruned. */
typedef struct {
    float mag;
    uint32_t idx;
} mag_idx;

static int cmp_mag_idx(const void *a, const void *b)
{
    const mag_idx *x = a, *y = b;
    if (x->mag != y->mag)
        return x->mag < y->mag ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int ckpt_prune_tensor(float *w, size_t n, double s, pst_err *err)
{
    if (!(s >= 0.0 && s < 1.0))
        return pst_err_set(err, PST_ERR_ARG, "sparsity %g is not in [0, 1)", s);
    if (n > UINT32_MAX)
        return pst_err_set(err, PST_ERR_ARG, "tensor of %zu values is too large to prune", n);
    size_t k = (size_t)floor(s * (double)n);
    if (k == 0)
        return PST_OK;
    mag_idx *v = malloc(n * sizeof *v);
    if (!v)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        v[i] = (mag_idx){fabsf(w[i]), (uint32_t)i};
    qsort(v, n, sizeof *v, cmp_mag_idx);
    for (size_t i = 0; i < k; i++)
        w[v[i].idx] = 0.0f;
    free(v);
    return PST_OK;
}

/* ---- Widening on load ----------------------------------------------------------------- */

static int64_t tensor_elems(const st_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

/* The F32 "<name>.scale" of the I8 tensor t, checked: shape (R) for t (R, C), values >= 0. */
static int find_scale(st_file *f, const st_tensor *t, st_tensor **out, pst_err *err)
{
    char sname[256];
    if (t->ndim != 2)
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': I8 but %d-D, not (rows, cols)",
                           f->path, t->name, t->ndim);
    snprintf(sname, sizeof sname, "%s" SCALE_SUFFIX, t->name);
    st_tensor *s = ckpt_st_find_tensor(f, sname);
    if (!s || s->dtype != CKPT_F32 || s->ndim != 1 || s->shape[0] != t->shape[0])
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: tensor '%s': I8 needs an F32 tensor '%s' shaped [%" PRId64 "]",
                           f->path, t->name, sname, t->shape[0]);
    for (int64_t r = 0; r < s->shape[0]; r++) {
        float v;
        memcpy(&v, f->data + s->begin + 4 * r, 4);
        if (!(v >= 0.0f))
            return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': element [%" PRId64 "] < 0",
                               f->path, sname, r);
    }
    *out = s;
    return PST_OK;
}

/* 1 when t is the scale tensor of an I8 tensor of f. */
static int is_scale_of_i8(st_file *f, const st_tensor *t)
{
    size_t n = strlen(t->name), sl = strlen(SCALE_SUFFIX);
    if (t->dtype != CKPT_F32 || n <= sl || strcmp(t->name + n - sl, SCALE_SUFFIX) != 0)
        return 0;
    char base[256];
    if (n - sl >= sizeof base)
        return 0;
    memcpy(base, t->name, n - sl);
    base[n - sl] = '\0';
    const st_tensor *w = ckpt_st_find_tensor(f, base);
    return w && w->dtype == CKPT_I8;
}

/* Widens tensor t into dst (n floats) and checks the values are finite. */
static int widen_one(st_file *f, const st_tensor *t, float *dst, pst_err *err)
{
    int64_t n = tensor_elems(t);
    const unsigned char *p = f->data + t->begin;
    if (t->dtype == CKPT_F32) {
        memcpy(dst, p, (size_t)n * 4);
        return PST_OK;
    }
    if (t->dtype == CKPT_F16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            if (!isfinite(dst[i] = pst_f16_to_f32(h)))
                return pst_err_set(err, PST_ERR_DATA,
                                   "%s: tensor '%s': element %" PRId64 " is not finite", f->path,
                                   t->name, i);
        }
        return PST_OK;
    }
    st_tensor *s;
    int rc = find_scale(f, t, &s, err);
    if (rc)
        return rc;
    int64_t rows = t->shape[0], cols = t->shape[1];
    for (int64_t r = 0; r < rows; r++) {
        float sc;
        memcpy(&sc, f->data + s->begin + 4 * r, 4);
        for (int64_t c = 0; c < cols; c++)
            dst[r * cols + c] = (float)(int8_t)p[r * cols + c] * sc;
    }
    return PST_OK;
}

int ckpt_st_widen(st_file *f, pst_err *err)
{
    for (int i = 0; i < f->nt; i++)
        if (f->t[i].dtype != CKPT_F32 && f->t[i].dtype != CKPT_F16 && f->t[i].dtype != CKPT_I8)
            return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': dtype %s in a model file",
                               f->path, f->t[i].name, ckpt_dtype_name(f->t[i].dtype));
    uint64_t total = 0;
    for (int i = 0; i < f->nt; i++)
        if (!is_scale_of_i8(f, &f->t[i]))
            total += (uint64_t)tensor_elems(&f->t[i]);
    if (total > SIZE_MAX / 8)
        return pst_err_set(err, PST_ERR_DATA, "%s: too many values", f->path);
    unsigned char *wide = malloc(total ? total * 4 : 1);
    st_tensor *keep = calloc((size_t)(f->nt ? f->nt : 1), sizeof *keep);
    int rc = PST_OK, nk = 0;
    if (!wide || !keep) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
        goto fail;
    }
    uint64_t at = 0;
    for (int i = 0; i < f->nt; i++) {
        const st_tensor *t = &f->t[i];
        if (is_scale_of_i8(f, t))
            continue;
        int64_t n = tensor_elems(t);
        if ((rc = widen_one(f, t, (float *)(void *)(wide + at), err)))
            goto fail;
        keep[nk] = *t;
        keep[nk].dtype = CKPT_F32;
        keep[nk].begin = at;
        keep[nk].end = at + (uint64_t)n * 4;
        at = keep[nk++].end;
    }
    free(f->t);
    f->t = keep;
    f->nt = nk;
    f->wide = wide;
    f->data = wide;
    f->data_len = (size_t)at;
    return PST_OK;
fail:
    free(wide);
    free(keep);
    return rc;
}

/* ---- Writing an exported or pruned copy ------------------------------------------------ */

/* The metadata of f to carry over beside the ones ckpt_st_header_json writes itself: every
 * key but format, producer, pstrain.{version,model,data,quant} and the checksums. */
static int carry_meta(const st_file *f, meta_pair *extra, int cap, int *n)
{
    *n = 0;
    for (const cJSON *k = f->meta ? f->meta->child : NULL; k; k = k->next) {
        const char *key = k->string;
        if (!strcmp(key, "format") || !strcmp(key, "producer") || !strncmp(key, "pstrain.", 8) ||
            !strncmp(key, "crc32.", 6))
            continue;
        if (*n == cap)
            return -1;
        extra[(*n)++] = (meta_pair){key, k->valuestring};
    }
    return 0;
}

/* Writes ts[0..nt) with f's metadata (and pstrain.quant = quant when not NULL) to out. */
static int write_like(const st_file *f, const char *out, const out_tensor *ts, int nt,
                      const char *quant, pst_err *err)
{
    meta_pair extra[65];
    int n = 0;
    if (carry_meta(f, extra, 64, &n) != 0)
        return pst_err_set(err, PST_ERR_DATA, "%s: over 64 metadata keys", f->path);
    if (quant)
        extra[n++] = (meta_pair){"pstrain.quant", quant};
    char *json = ckpt_st_header_json(ts, nt, ckpt_st_meta_str(f, "pstrain.model"),
                                     ckpt_st_meta_str(f, "pstrain.data"), extra, n);
    if (!json)
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", out);
    int rc = ckpt_st_write(out, json, ts, nt, err);
    cJSON_free(json);
    return rc;
}

/* Opens in, which must be an fp32 model file (not an export), with its data area in a
 * buffer of its own (f->wide): float-aligned whatever the header length, and writable. */
static int open_fp32(st_file *f, const char *in, pst_err *err)
{
    int rc = ckpt_st_open(f, in, err);
    if (rc)
        return rc;
    if (f->quant)
        rc = pst_err_set(err, PST_ERR_ARG,
                         "%s: already an %s export; start from the fp32 checkpoint", in,
                         ckpt_st_meta_str(f, "pstrain.quant"));
    else if (!(f->wide = malloc(f->data_len ? f->data_len : 1)))
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", in);
    if (rc) {
        ckpt_st_fini(f);
        return rc;
    }
    memcpy(f->wide, f->data, f->data_len);
    f->data = f->wide;
    return PST_OK;
}

static int is_prep(const st_tensor *t)
{
    return strcmp(t->name, PREP_SHIFT) == 0 || strcmp(t->name, PREP_MUL) == 0;
}

static void tensor_shape(const st_tensor *t, out_tensor *o)
{
    o->name = t->name;
    o->ndim = t->ndim;
    for (int d = 0; d < t->ndim && d < 2; d++)
        o->shape[d] = (double)t->shape[d];
}

/* Fills o (and, for int8 weights, o[1] with the scales, named sname) for tensor t; *buf and
 * *sbuf receive the narrowed bytes, owned by the caller. Returns how many entries it
 * filled, or minus a pst_status. */
static int narrow_one(const st_file *f, const st_tensor *t, ckpt_export_kind kind, out_tensor *o,
                      void **buf, void **sbuf, char *sname, size_t sname_cap,
                      ckpt_export_report *rep, pst_err *err)
{
    const float *w = (const float *)(const void *)(f->data + t->begin);
    int64_t n = tensor_elems(t);
    tensor_shape(t, o);
    o->n = (size_t)n;
    o->p = w;
    o->dtype = CKPT_F32;
    int fp16 = kind == CKPT_EXPORT_FP16 && !is_prep(t);
    int int8 = kind == CKPT_EXPORT_INT8 && t->ndim == 2 && !is_prep(t);
    if (!fp16 && !int8) {
        rep->kept++;
        return 1;
    }
    if (fp16) {
        uint16_t *h = malloc((size_t)(n ? n : 1) * 2);
        if (!(*buf = h))
            return -pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < n; i++) {
            if (fabsf(w[i]) > PST_HALF_MAX)
                return -pst_err_set(err, PST_ERR_DATA,
                                    "%s: tensor '%s': element %" PRId64 " = %g is beyond fp16's "
                                    "range (+-65504)",
                                    f->path, t->name, i, (double)w[i]);
            h[i] = pst_f32_to_f16(w[i]);
            double e = fabs((double)pst_f16_to_f32(h[i]) - (double)w[i]);
            rep->max_err = e > rep->max_err ? e : rep->max_err;
        }
        o->p = h;
        o->dtype = CKPT_F16;
        rep->narrowed++;
        return 1;
    }
    int64_t rows = t->shape[0], cols = t->shape[1];
    int8_t *q = malloc((size_t)(n ? n : 1));
    float *sc = malloc((size_t)(rows ? rows : 1) * 4);
    *buf = q;
    *sbuf = sc;
    if (!q || !sc)
        return -pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    int rc = ckpt_q8_rows(q, sc, w, rows, cols, err);
    if (rc)
        return -pst_err_prefix(err, "%s: tensor '%s'", f->path, t->name);
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)q[i] * sc[i / cols] - (double)w[i]);
        rep->max_err = e > rep->max_err ? e : rep->max_err;
    }
    o->p = q;
    o->dtype = CKPT_I8;
    if ((size_t)snprintf(sname, sname_cap, "%s" SCALE_SUFFIX, t->name) >= sname_cap)
        return -pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': name too long", f->path, t->name);
    o[1] =
        (out_tensor){.name = sname, .ndim = 1, .shape = {(double)rows}, .p = sc, .n = (size_t)rows};
    rep->narrowed++;
    return 2;
}

int ckpt_export(const char *in, const char *out, ckpt_export_kind kind, ckpt_export_report *rep,
                pst_err *err)
{
    memset(rep, 0, sizeof *rep);
    st_file f;
    int rc = open_fp32(&f, in, err);
    if (rc)
        return ckpt_one_line(err, rc);
    size_t cap = (size_t)(f.nt ? f.nt : 1);
    out_tensor *ts = calloc(2 * cap, sizeof *ts);
    void **bufs = calloc(2 * cap, sizeof *bufs);
    char(*names)[256] = calloc(cap, sizeof *names);
    int nt = 0;
    if (!ts || !bufs || !names) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", in);
        goto cleanup;
    }
    for (int i = 0; i < f.nt; i++) {
        if (f.t[i].ndim > 2) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s' is %d-D", in, f.t[i].name,
                             f.t[i].ndim);
            goto cleanup;
        }
        rep->params += (uint64_t)tensor_elems(&f.t[i]);
        int k = narrow_one(&f, &f.t[i], kind, &ts[nt], &bufs[2 * i], &bufs[2 * i + 1], names[i],
                           sizeof names[i], rep, err);
        if (k < 0) {
            rc = -k;
            goto cleanup;
        }
        nt += k;
    }
    rc = write_like(&f, out, ts, nt, kind == CKPT_EXPORT_FP16 ? "fp16" : "int8", err);
cleanup:
    for (size_t i = 0; bufs && i < 2 * cap; i++)
        free(bufs[i]);
    free(bufs);
    free(ts);
    free(names);
    ckpt_st_fini(&f);
    if (rc)
        memset(rep, 0, sizeof *rep);
    return ckpt_one_line(err, rc);
}

int ckpt_prune_file(const char *in, const char *out, double s, ckpt_prune_report *rep, pst_err *err)
{
    memset(rep, 0, sizeof *rep);
    if (!(s >= 0.0 && s < 1.0))
        return pst_err_set(err, PST_ERR_ARG, "sparsity %g is not in [0, 1)", s);
    st_file f;
    int rc = open_fp32(&f, in, err);
    if (rc)
        return ckpt_one_line(err, rc);
    out_tensor *ts = calloc((size_t)(f.nt ? f.nt : 1), sizeof *ts);
    if (!ts) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", in);
        goto cleanup;
    }
    /* f's data area is a buffer of its own (open_fp32): pruned in place. */
    for (int i = 0; i < f.nt; i++) {
        st_tensor *t = &f.t[i];
        float *w = (float *)(void *)(f.wide + t->begin);
        tensor_shape(t, &ts[i]);
        ts[i].p = w;
        ts[i].n = (size_t)tensor_elems(t);
        if (t->ndim != 2 || is_prep(t))
            continue;
        if ((rc = ckpt_prune_tensor(w, ts[i].n, s, err)))
            goto cleanup;
        for (size_t j = 0; j < ts[i].n; j++)
            rep->pruned += w[j] == 0.0f;
        rep->total += ts[i].n;
        rep->tensors++;
    }
    rc = write_like(&f, out, ts, f.nt, NULL, err);
cleanup:
    free(ts);
    ckpt_st_fini(&f);
    if (rc)
        memset(rep, 0, sizeof *rep);
    return ckpt_one_line(err, rc);
}
