/* worker/compress.c -- see compress.h. */
#include "compress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire_enc.h"

struct wk_comp {
    wire_enc enc;
    double ratio;
    uint64_t nparams;
    int n;
    uint64_t *off, *len; /* (n) the pieces */
    uint64_t *k;         /* (n) TOPK: entries per piece */
    uint64_t *kstart;    /* (n) TOPK: where piece i's entries start in idx/val */
    uint16_t *half[2];   /* (nparams) F16/BF16: the encoded vector, by slot */
    uint32_t *idx[2];    /* (sum k) TOPK: indices into their piece, by slot */
    float *val[2];       /* (sum k) TOPK: values, by slot */
    float *res;          /* (nparams) TOPK: the residual r */
    float *mag;          /* (max len) TOPK: magnitudes, reordered by the selection */
};

wk_comp *wk_comp_create(wire_enc enc, double ratio, uint64_t nparams, const uint64_t *off,
                        const uint64_t *len, int npieces, pst_err *err)
{
    if (enc != WIRE_ENC_F16 && enc != WIRE_ENC_BF16 && enc != WIRE_ENC_TOPK) {
        pst_err_set(err, PST_ERR_ARG, "compress: encoding %s is not a compression",
                    wire_enc_name(enc));
        return NULL;
    }
    if (enc == WIRE_ENC_TOPK && !(ratio > 0.0 && ratio <= 1.0)) {
        pst_err_set(err, PST_ERR_ARG, "compress: top-k ratio %g not in (0, 1]", ratio);
        return NULL;
    }
    wk_comp *c = calloc(1, sizeof *c);
    size_t n = (size_t)(npieces > 0 ? npieces : 1);
    if (!c || !(c->off = malloc(n * sizeof *c->off)) || !(c->len = malloc(n * sizeof *c->len)) ||
        !(c->k = calloc(n, sizeof *c->k)) || !(c->kstart = calloc(n, sizeof *c->kstart)))
        goto nomem;
    c->enc = enc;
    c->ratio = ratio;
    c->nparams = nparams;
    c->n = npieces;
    uint64_t total = 0, maxlen = 1;
    for (int i = 0; i < npieces; i++) {
        c->off[i] = off[i];
        c->len[i] = len[i];
        uint64_t k = (uint64_t)ceil(ratio * (double)len[i]);
        c->k[i] = k < 1 ? 1 : k > len[i] ? len[i] : k;
        c->kstart[i] = total;
        total += c->k[i];
        maxlen = len[i] > maxlen ? len[i] : maxlen;
    }
    size_t np = (size_t)(nparams ? nparams : 1);
    for (int s = 0; s < 2; s++) {
        if (enc != WIRE_ENC_TOPK && !(c->half[s] = malloc(np * sizeof(uint16_t))))
            goto nomem;
        if (enc == WIRE_ENC_TOPK && (!(c->idx[s] = malloc((total + 1) * sizeof(uint32_t))) ||
                                     !(c->val[s] = malloc((total + 1) * sizeof(float)))))
            goto nomem;
    }
    if (enc == WIRE_ENC_TOPK &&
        (!(c->res = calloc(np, sizeof(float))) || !(c->mag = malloc(maxlen * sizeof(float)))))
        goto nomem;
    return c;
nomem:
    wk_comp_destroy(c);
    pst_err_set(err, PST_ERR_NOMEM, "compress: out of memory");
    return NULL;
}

void wk_comp_destroy(wk_comp *c)
{
    if (!c)
        return;
    free(c->off);
    free(c->len);
    free(c->k);
    free(c->kstart);
    for (int s = 0; s < 2; s++) {
        free(c->half[s]);
        free(c->idx[s]);
        free(c->val[s]);
    }
    free(c->res);
    free(c->mag);
    free(c);
}

wire_enc wk_comp_enc(const wk_comp *c) { return c->enc; }

const float *wk_comp_residual(const wk_comp *c) { return c->res; }

static inline void swapf(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

/* The value that would be m[k] if m[0..n) were sorted in decreasing order (0 <= k < n),
 * by quickselect (Hoare's FIND) with a median-of-three pivot and a three-way partition
 * (runs of equal values, such as the exact zeros of inputs that are always 0, cost one
 * pass); reorders m so that m[0..k) >= m[k] >= m(k..n). O(n) expected. */
static float kth_largest(float *m, size_t n, size_t k)
{
    size_t lo = 0, hi = n; /* the answer is in m[lo..hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2, last = hi - 1;
        float a = m[lo], b = m[mid], z = m[last];
        float p = (a > b) == (b > z) ? b : (b > a) == (a > z) ? a : z; /* median of three */
        /* m[lo..gt) > p, m[gt..i) == p, m[i..lt) unseen, m[lt..hi) < p */
        size_t gt = lo, i = lo, lt = hi;
        while (i < lt) {
            if (m[i] > p)
                swapf(&m[gt++], &m[i++]);
            else if (m[i] < p)
                swapf(&m[i], &m[--lt]);
            else
                i++;
        }
        if (k < gt)
            hi = gt;
        else if (k < lt)
            return p;
        else
            lo = lt;
    }
    return m[lo];
}

/* Piece i of a = r + g into slot's entries: the k largest |a| (NaN as infinite), in index
 * order; r keeps the rest. */
static void topk_piece(wk_comp *c, int slot, int i, const float *g)
{
    const uint64_t off = c->off[i], len = c->len[i], k = c->k[i];
    float *r = c->res + off;
    const float *gp = g + off;
    for (uint64_t j = 0; j < len; j++) {
        r[j] += gp[j];
        float m = fabsf(r[j]);
        c->mag[j] = m == m ? m : INFINITY;
    }
    float t = kth_largest(c->mag, (size_t)len, (size_t)(k - 1));
    uint64_t above = 0;
    for (uint64_t j = 0; j < k; j++) /* mag[0..k) >= t after the selection */
        above += c->mag[j] > t;
    uint64_t ties = k - above, got = 0;
    uint32_t *idx = c->idx[slot] + c->kstart[i];
    float *val = c->val[slot] + c->kstart[i];
    for (uint64_t j = 0; j < len && got < k; j++) {
        float m = fabsf(r[j]);
        m = m == m ? m : INFINITY;
        if (m > t || (m == t && ties > 0)) {
            ties -= m == t;
            idx[got] = (uint32_t)j;
            val[got++] = r[j];
            r[j] = 0.0f;
        }
    }
}

void wk_comp_encode_piece(wk_comp *c, int slot, int i, const float *g)
{
    if (c->enc == WIRE_ENC_TOPK)
        topk_piece(c, slot, i, g);
    else
        wire_enc_halves(c->enc, c->half[slot] + c->off[i], g + c->off[i], (size_t)c->len[i]);
}

void wk_comp_encode(wk_comp *c, int slot, const float *g)
{
    for (int i = 0; i < c->n; i++)
        wk_comp_encode_piece(c, slot, i, g);
}

void wk_comp_frames(const wk_comp *c, int slot, int i, const void **data, size_t *bytes, int *nf,
                    uint64_t *nnz)
{
    if (c->enc == WIRE_ENC_TOPK) {
        data[0] = c->idx[slot] + c->kstart[i];
        data[1] = c->val[slot] + c->kstart[i];
        bytes[0] = (size_t)c->k[i] * sizeof(uint32_t);
        bytes[1] = (size_t)c->k[i] * sizeof(float);
        *nf = 2;
        *nnz = c->k[i];
        return;
    }
    data[0] = c->half[slot] + c->off[i];
    bytes[0] = (size_t)c->len[i] * sizeof(uint16_t);
    *nf = 1;
    *nnz = 0;
}

wire_enc wk_comp_encoding(cfg_compression c)
{
    switch (c) {
    case CFG_COMP_NONE: break;
    case CFG_COMP_FP16: return WIRE_ENC_F16;
    case CFG_COMP_BF16: return WIRE_ENC_BF16;
    case CFG_COMP_TOPK: return WIRE_ENC_TOPK;
    }
    return WIRE_ENC_F32;
}
