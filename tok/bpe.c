/* tok/bpe.c -- the BPE merges of one word, the word cache, encode and decode.
 *
 * The reference merges, while the word has a pair that is a merge: the lowest-ranked
 * such pair B, at every place it occurs, left to right (an occurrence overlapping one
 * just merged is skipped), then looks again. Done literally that is O(n^2) in the word's
 * length n; here the word's pairs wait in a heap ordered by (rank, position), so the
 * occurrences of B come out in order, and the pairs that merging B creates are held back
 * until B's pass is over (they may rank below B, and the reference sees them only on its
 * next look). A queued pair is checked when it comes out: its left symbol still exists
 * and both symbols still are the tokens queued (a symbol only grows, so an id match
 * means the same symbol). O(n log n) per word; most words come from the cache anyway. */
#include "tok_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ---- growable arrays ---------------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * size);
    if (!np)
        return -1;
    *p = np;
    *cap = nc;
    return 0;
}

int tok_ids_push(tok_ids *v, const int32_t *ids, size_t n)
{
    if (grow((void **)&v->ids, &v->cap, v->n + n, sizeof *v->ids))
        return PST_ERR_NOMEM;
    memcpy(v->ids + v->n, ids, n * sizeof *ids);
    v->n += n;
    return PST_OK;
}

int tok_ids_reserve(tok_ids *v, size_t n)
{
    return grow((void **)&v->ids, &v->cap, v->n + n, sizeof *v->ids) ? PST_ERR_NOMEM : PST_OK;
}

void tok_ids_fini(tok_ids *v)
{
    if (!v)
        return;
    free(v->ids);
    memset(v, 0, sizeof *v);
}

/* ---- the candidate heap: min by (rank, pos) ------------------------------------------ */

static int cand_less(const tok_cand *x, const tok_cand *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(tok_cand *h, size_t *n, tok_cand c)
{
    size_t i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static tok_cand heap_pop(tok_cand *h, size_t *n)
{
    tok_cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c]))
            c++;
        if (!cand_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

/* Queues the pair starting at symbol p (if p has a right neighbour and the pair is a
 * merge) into q (the heap, or the held-back list when q_is_heap is 0). */
static void queue_pair(tok_bpe *t, int32_t p, tok_cand *q, size_t *nq, int q_is_heap)
{
    int32_t r = p >= 0 ? t->sym[p].next : -1, rank, id;
    if (r < 0 || !tok_pair_find(t, t->sym[p].id, t->sym[r].id, &rank, &id))
        return;
    tok_cand c = {rank, p, t->sym[p].id, t->sym[r].id};
    if (q_is_heap)
        heap_push(q, nq, c);
    else
        q[(*nq)++] = c;
}

int tok_bpe_word(tok_bpe *t, const uint8_t *w, size_t n, tok_ids *out)
{
    assert(n >= 1 && n < INT32_MAX);
    /* A word of n symbols has n - 1 pairs at a time, and each merge adds at most 2. */
    if (grow((void **)&t->sym, &t->sym_cap, n, sizeof *t->sym) ||
        grow((void **)&t->heap, &t->heap_cap, 3 * n, sizeof *t->heap) ||
        grow((void **)&t->pend, &t->pend_cap, 3 * n, sizeof *t->pend))
        return PST_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        t->sym[i].id = t->byte_id[w[i]];
        t->sym[i].prev = (int32_t)i - 1;
        t->sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    size_t nh = 0, np = 0;
    for (size_t i = 0; i + 1 < n; i++)
        queue_pair(t, (int32_t)i, t->heap, &nh, 1);
    int32_t pass_rank = -1;
    for (;;) {
        if (np && (nh == 0 || t->heap[0].rank != pass_rank)) {
            /* B's pass is over: the pairs it created join the others. */
            for (size_t i = 0; i < np; i++)
                heap_push(t->heap, &nh, t->pend[i]);
            np = 0;
        }
        if (nh == 0)
            break;
        tok_cand c = heap_pop(t->heap, &nh);
        tok_sym *s = t->sym;
        int32_t p = c.pos, r = s[p].next;
        if (s[p].id != c.a || r < 0 || s[r].id != c.b)
            continue; /* stale: p was merged into its left neighbour, or grew */
        int32_t rank, id;
        int found = tok_pair_find(t, c.a, c.b, &rank, &id);
        assert(found);
        (void)found;
        pass_rank = c.rank;
        s[p].id = id;
        s[r].id = -1; /* r is gone */
        s[p].next = s[r].next;
        if (s[r].next >= 0)
            s[s[r].next].prev = p;
        queue_pair(t, s[p].prev, t->pend, &np, 0);
        queue_pair(t, p, t->pend, &np, 0);
    }
    size_t start = out->n;
    if (grow((void **)&out->ids, &out->cap, out->n + n, sizeof *out->ids))
        return PST_ERR_NOMEM;
    for (int32_t p = 0; p >= 0; p = t->sym[p].next)
        out->ids[out->n++] = t->sym[p].id;
    assert(out->n > start);
    return PST_OK;
}

/* ---- the word cache ----------------------------------------------------------------- */

/* Bounds of the cache: a word longer than this is not kept, and the whole cache is
 * dropped (and starts again) when it would pass the entry or byte bounds. A corpus of
 * natural language has far fewer distinct words (10 MB of English: ~60k). */
#define CACHE_WORD_MAX 256
#define CACHE_ENTRIES_MAX (1u << 21)
#define CACHE_BYTES_MAX (64u << 20)

void tok_cache_fini(tok_wcache *c)
{
    free(c->slot);
    free(c->bytes);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

static const tok_wentry *cache_find(const tok_wcache *c, const uint8_t *w, size_t n, uint64_t h)
{
    if (!c->cap)
        return NULL;
    for (size_t i = h & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        const tok_wentry *e = &c->slot[i];
        if (!e->h)
            return NULL;
        if (e->h == h && e->blen == n && memcmp(c->bytes + e->boff, w, n) == 0)
            return e;
    }
}

static void cache_clear(tok_wcache *c)
{
    memset(c->slot, 0, c->cap * sizeof *c->slot);
    c->used = c->nbytes = c->nids = 0;
}

/* Keeps w -> ids; a failure to grow only means the word is not kept. */
static void cache_add(tok_wcache *c, const uint8_t *w, size_t n, uint64_t h, const int32_t *ids,
                      size_t ni)
{
    if (n > CACHE_WORD_MAX)
        return;
    if (c->used + 1 > CACHE_ENTRIES_MAX || c->nbytes + n > CACHE_BYTES_MAX)
        cache_clear(c);
    if (2 * (c->used + 1) > c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 4096;
        tok_wentry *ns = calloc(nc, sizeof *ns);
        if (!ns)
            return;
        for (size_t i = 0; i < c->cap; i++) {
            if (!c->slot[i].h)
                continue;
            size_t j = c->slot[i].h & (nc - 1);
            while (ns[j].h)
                j = (j + 1) & (nc - 1);
            ns[j] = c->slot[i];
        }
        free(c->slot);
        c->slot = ns;
        c->cap = nc;
    }
    if (grow((void **)&c->bytes, &c->bytes_cap, c->nbytes + n, 1) ||
        grow((void **)&c->ids, &c->ids_cap, c->nids + ni, sizeof *c->ids))
        return;
    size_t i = h & (c->cap - 1);
    while (c->slot[i].h)
        i = (i + 1) & (c->cap - 1);
    c->slot[i] = (tok_wentry){h, (uint32_t)c->nbytes, (uint32_t)n, (uint32_t)c->nids, (uint32_t)ni};
    memcpy(c->bytes + c->nbytes, w, n);
    memcpy(c->ids + c->nids, ids, ni * sizeof *ids);
    c->nbytes += n;
    c->nids += ni;
    c->used++;
}

/* ---- encode / decode ---------------------------------------------------------------- */

typedef struct {
    tok_bpe *t;
    const uint8_t *text;
    tok_ids *out;
} encode_ctx;

static int encode_piece(void *ctx, size_t off, size_t n)
{
    encode_ctx *e = ctx;
    tok_bpe *t = e->t;
    const uint8_t *w = e->text + off;
    uint64_t h = tok_hash_bytes(w, n);
    t->stats.pieces++;
    const tok_wentry *hit = cache_find(&t->cache, w, n, h);
    if (hit) {
        t->stats.hits++;
        return tok_ids_push(e->out, t->cache.ids + hit->ioff, hit->ni);
    }
    size_t start = e->out->n;
    int rc = tok_bpe_word(t, w, n, e->out);
    if (!rc)
        cache_add(&t->cache, w, n, h, e->out->ids + start, e->out->n - start);
    return rc;
}

int tok_encode(tok_bpe *t, const char *text, size_t len, tok_ids *out, pst_err *err)
{
    assert(t && out && (text || len == 0));
    size_t before = out->n;
    int rc = PST_OK;
    if (t->bytes_only) {
        if (grow((void **)&out->ids, &out->cap, out->n + len, sizeof *out->ids))
            return pst_err_set(err, PST_ERR_NOMEM, "tokenizer: out of memory for %zu ids", len);
        for (size_t i = 0; i < len; i++)
            out->ids[out->n++] = (unsigned char)text[i];
        return PST_OK;
    }
    encode_ctx e = {t, (const uint8_t *)text, out};
    rc = tok_pretokenize(t, text, len, encode_piece, &e, err);
    if (rc == PST_ERR_NOMEM)
        pst_err_set(err, rc, "tokenizer: out of memory after %zu ids", out->n - before);
    if (rc)
        out->n = before;
    return rc;
}

int tok_decode(const tok_bpe *t, const int32_t *ids, size_t n, char **out, size_t *len,
               pst_err *err)
{
    *out = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->V)
            return pst_err_set(err, PST_ERR_DATA, "token %zu: id %d is not in [0, %d)", i, ids[i],
                               t->V);
        total += t->off[ids[i] + 1] - t->off[ids[i]];
    }
    char *buf = malloc(total + 1);
    if (!buf)
        return pst_err_set(err, PST_ERR_NOMEM, "decode: out of memory for %zu bytes", total);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t a = t->off[ids[i]], b = t->off[ids[i] + 1];
        memcpy(buf + k, t->blob + a, b - a);
        k += b - a;
    }
    buf[k] = '\0';
    *out = buf;
    *len = k;
    return PST_OK;
}

/* ---- create / destroy / getters ----------------------------------------------------- */

int tok_bpe_create(tok_bpe **out, const char *vocab_path, const char *merges_path, pst_err *err)
{
    *out = NULL;
    if (!vocab_path != !merges_path)
        return pst_err_set(err, PST_ERR_ARG,
                           "tokenizer: a vocabulary and a merges file go together (%s given "
                           "alone)",
                           vocab_path ? vocab_path : merges_path);
    tok_bpe *t = calloc(1, sizeof *t);
    if (!t)
        return pst_err_set(err, PST_ERR_NOMEM, "tokenizer: out of memory");
    int rc;
    if (!vocab_path) {
        t->bytes_only = 1;
        t->V = 256;
        t->blob = malloc(256);
        t->off = malloc(257 * sizeof *t->off);
        if (!t->blob || !t->off) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "tokenizer: out of memory");
            goto fail;
        }
        for (int b = 0; b < 256; b++) {
            t->blob[b] = (uint8_t)b;
            t->off[b] = (uint32_t)b;
            t->byte_id[b] = b;
        }
        t->off[256] = 256;
    } else if ((rc = tok_load_files(t, vocab_path, merges_path, err))) {
        goto fail;
    }
    if ((rc = tok_regex_init(t, err)))
        goto fail;
    *out = t;
    return PST_OK;
fail:
    tok_bpe_destroy(t);
    return rc;
}

void tok_bpe_destroy(tok_bpe *t)
{
    if (!t)
        return;
    tok_regex_fini(t);
    tok_cache_fini(&t->cache);
    free(t->blob);
    free(t->off);
    free(t->pairs);
    free(t->sym);
    free(t->heap);
    free(t->pend);
    free(t);
}

int tok_vocab_size(const tok_bpe *t) { return t->V; }
int tok_merge_count(const tok_bpe *t) { return t->nmerges; }
int tok_is_bytes(const tok_bpe *t) { return t->bytes_only; }

const uint8_t *tok_token_bytes(const tok_bpe *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->V)
        return NULL;
    *len = t->off[id + 1] - t->off[id];
    return t->blob + t->off[id];
}

void tok_get_stats(const tok_bpe *t, tok_stats *s)
{
    *s = t->stats;
    s->entries = t->cache.used;
}
