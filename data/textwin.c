/* data/textwin.c -- text files as windows of token ids (see textwin.h): reading, the
 * token cache, cutting windows, split and partition. */
#include "textwin.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/fs.h"
#include "base/rng.h"
#include "tok/tok.h"

struct ds_windows {
    int64_t n;       /* N */
    int t;           /* T */
    int vocab;       /* V */
    int64_t stream;  /* L */
    int32_t *tokens; /* (N, T + 1) */
};

#define CACHE_MAGIC "PSTTOK1\n"
#define CACHE_HEADER 48

/* ---- files -------------------------------------------------------------------------- */

int ds_tokenizer_files(const char *dir, char *vocab, char *merges, size_t cap, pst_err *err)
{
    static const char *const pairs[][2] = {{"encoder.json", "vocab.bpe"},
                                           {"vocab.json", "merges.txt"}};
    for (int i = 0; i < 2; i++) {
        if ((size_t)snprintf(vocab, cap, "%s/%s", dir, pairs[i][0]) >= cap ||
            (size_t)snprintf(merges, cap, "%s/%s", dir, pairs[i][1]) >= cap)
            return pst_err_set(err, PST_ERR_CONFIG, "%s: tokenizer path too long", dir);
        if (access(vocab, F_OK) == 0 && access(merges, F_OK) == 0)
            return PST_OK;
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        return pst_err_set(err, PST_ERR_CONFIG, "%s: tokenizer folder: %s", dir, strerror(errno));
    return pst_err_set(err, PST_ERR_CONFIG,
                       "%s: no tokenizer files (encoder.json + vocab.bpe, or vocab.json + "
                       "merges.txt)",
                       dir);
}

/* XXH3 of the tokenizer: of both files' bytes, or of the name of the byte-level one. */
static int tokenizer_hash(const char *vocab, const char *merges, uint64_t *h, pst_err *err)
{
    if (!vocab) {
        *h = XXH3_64bits("pstrain byte-level tokenizer", 28);
        return PST_OK;
    }
    const char *paths[2] = {vocab, merges};
    uint64_t acc = 0;
    for (int i = 0; i < 2; i++) {
        char *b;
        size_t n;
        int rc = fs_read_all(paths[i], &b, &n, err);
        if (rc)
            return rc;
        acc = XXH3_64bits_withSeed(b, n, acc ^ (uint64_t)i);
        free(b);
    }
    *h = acc;
    return PST_OK;
}

/* ---- the cache ---------------------------------------------------------------------- */

/* CACHE/<basename>-<8 hex of the path>.tokens: one file per text, two texts of one name
 * in different folders apart. */
static int cache_path(const char *dir, const char *text_path, char *out, size_t cap, pst_err *err)
{
    const char *base = strrchr(text_path, '/');
    base = base ? base + 1 : text_path;
    uint32_t ph = (uint32_t)XXH3_64bits(text_path, strlen(text_path));
    if ((size_t)snprintf(out, cap, "%s/%s-%08x.tokens", dir, base, ph) >= cap)
        return pst_err_set(err, PST_ERR_CONFIG, "%s: cache path too long", dir);
    return PST_OK;
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* The checksum field: XXH3 of the header before it (bytes 0..39) and of the ids. */
static uint64_t cache_sum(const unsigned char *file, size_t id_bytes)
{
    return XXH3_64bits_withSeed(file + CACHE_HEADER, id_bytes, XXH3_64bits(file, 40));
}

/* Reads the ids when the cache file matches (DS_CACHE_HIT); else says why not in why. */
static ds_cache_result cache_read(const char *path, uint64_t text_h, uint64_t tok_h, tok_ids *ids,
                                  int *vocab, char *why, size_t whycap)
{
    char *b = NULL;
    size_t n = 0;
    pst_err e = {0};
    ds_cache_result res = DS_CACHE_DAMAGED;
    if (access(path, F_OK) != 0)
        return DS_CACHE_MISS;
    if (fs_read_all(path, &b, &n, &e)) {
        snprintf(why, whycap, "%s", e.msg);
        return DS_CACHE_DAMAGED;
    }
    const unsigned char *u = (const unsigned char *)b;
    if (n < CACHE_HEADER || memcmp(b, CACHE_MAGIC, 8) != 0) {
        snprintf(why, whycap, "not a token cache (%zu bytes, no header)", n);
        goto done;
    }
    uint64_t len = get_u64(u + 24), sum = get_u64(u + 40);
    int32_t v = (int32_t)(uint32_t)get_u64(u + 32);
    if (get_u64(u + 8) != text_h || get_u64(u + 16) != tok_h) {
        snprintf(why, whycap, "stale: the %s changed",
                 get_u64(u + 8) != text_h ? "text" : "tokenizer");
        res = DS_CACHE_STALE;
        goto done;
    }
    if (len > (n - CACHE_HEADER) / 4 || n != CACHE_HEADER + 4 * len) {
        snprintf(why, whycap, "%zu bytes, expected %llu for %llu ids", n,
                 (unsigned long long)(CACHE_HEADER + 4 * len), (unsigned long long)len);
        goto done;
    }
    if (cache_sum(u, 4 * len) != sum) {
        snprintf(why, whycap, "checksum does not match");
        goto done;
    }
    if (v < 1) {
        snprintf(why, whycap, "vocabulary size %d", v);
        goto done;
    }
    ids->n = 0;
    if (tok_ids_reserve(ids, len)) {
        snprintf(why, whycap, "out of memory for %llu ids", (unsigned long long)len);
        goto done;
    }
    for (uint64_t i = 0; i < len; i++) {
        const unsigned char *q = u + CACHE_HEADER + 4 * i;
        int32_t id = (int32_t)((uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                               (uint32_t)q[3] << 24);
        if (id < 0 || id >= v) {
            snprintf(why, whycap, "id %d at %llu outside the vocabulary of %d", id,
                     (unsigned long long)i, v);
            ids->n = 0;
            goto done;
        }
        ids->ids[ids->n++] = id;
    }
    *vocab = v;
    res = DS_CACHE_HIT;
done:
    free(b);
    return res;
}

static int cache_write(const char *dir, const char *path, uint64_t text_h, uint64_t tok_h,
                       const tok_ids *ids, int vocab, pst_err *err)
{
    int rc = fs_mkdirs(dir, err);
    if (rc)
        return rc;
    size_t bytes = 4 * ids->n;
    unsigned char *buf = malloc(CACHE_HEADER + bytes);
    if (!buf)
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
    memcpy(buf, CACHE_MAGIC, 8);
    for (size_t i = 0; i < ids->n; i++) {
        uint32_t v = (uint32_t)ids->ids[i];
        unsigned char *q = buf + CACHE_HEADER + 4 * i;
        q[0] = (unsigned char)v;
        q[1] = (unsigned char)(v >> 8);
        q[2] = (unsigned char)(v >> 16);
        q[3] = (unsigned char)(v >> 24);
    }
    put_u64(buf + 8, text_h);
    put_u64(buf + 16, tok_h);
    put_u64(buf + 24, ids->n);
    put_u64(buf + 32, (uint32_t)vocab);
    put_u64(buf + 40, cache_sum(buf, bytes));
    fs_atomic a;
    if (!(rc = fs_atomic_open(&a, path, 0644, err))) {
        if (fwrite(buf, 1, CACHE_HEADER + bytes, a.f) != CACHE_HEADER + bytes) {
            rc = pst_err_set(err, PST_ERR_IO, "%s: write failed: %s", path, strerror(errno));
            fs_atomic_abort(&a);
        } else {
            rc = fs_atomic_commit(&a, FS_REPLACE, err);
        }
    }
    free(buf);
    return rc;
}

/* ---- tokens of a file ---------------------------------------------------------------- */

/* The ids of path's text (from the cache when it matches). */
static int text_ids(const char *path, const ds_textwin_options *o, tok_ids *ids, int *vocab,
                    ds_cache_result *cache, pst_err *err)
{
    char vpath[4096], mpath[4096], cpath[4096], why[600] = "";
    const char *vp = NULL, *mp = NULL;
    char *text = NULL;
    size_t len = 0;
    tok_bpe *t = NULL;
    uint64_t text_h = 0, tok_h = 0;
    int rc;
    *cache = DS_CACHE_OFF;
    if (o->tokenizer && o->tokenizer[0]) {
        if ((rc = ds_tokenizer_files(o->tokenizer, vpath, mpath, sizeof vpath, err)))
            return rc;
        vp = vpath;
        mp = mpath;
    }
    if ((rc = fs_read_all(path, &text, &len, err)))
        return rc;
    if (len == 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: empty file (no text to tokenize)", path);
        goto cleanup;
    }
    if (o->cache_dir) {
        text_h = XXH3_64bits(text, len);
        if ((rc = tokenizer_hash(vp, mp, &tok_h, err)) ||
            (rc = cache_path(o->cache_dir, path, cpath, sizeof cpath, err)))
            goto cleanup;
        *cache = cache_read(cpath, text_h, tok_h, ids, vocab, why, sizeof why);
        if (*cache == DS_CACHE_HIT) {
            if (o->log)
                log_debug(o->log, "%s: %zu token ids from the cache %s", path, ids->n, cpath);
            goto cleanup;
        }
        if (*cache != DS_CACHE_MISS && o->log)
            log_warn(o->log, "token cache %s: %s; tokenizing %s again", cpath, why, path);
    }
    if ((rc = tok_bpe_create(&t, vp, mp, err)))
        goto cleanup;
    ids->n = 0;
    if ((rc = tok_encode(t, text, len, ids, err))) {
        pst_err_prefix(err, "%s", path);
        goto cleanup;
    }
    *vocab = tok_vocab_size(t);
    if (o->cache_dir) {
        pst_err werr = {0};
        if (cache_write(o->cache_dir, cpath, text_h, tok_h, ids, *vocab, &werr) && o->log)
            log_warn(o->log, "token cache not written (the run goes on): %s", werr.msg);
        else if (o->log)
            log_info(o->log, "%s: %zu bytes -> %zu tokens, cached in %s", path, len, ids->n, cpath);
    }
cleanup:
    tok_bpe_destroy(t);
    free(text);
    return rc;
}

/* ---- windows ------------------------------------------------------------------------ */

static ds_windows *windows_alloc(int64_t n, int t, int vocab, int64_t stream, pst_err *err)
{
    ds_windows *w = calloc(1, sizeof *w);
    size_t cells = (size_t)n * ((size_t)t + 1);
    if (w && (size_t)n > SIZE_MAX / 4 / ((size_t)t + 1)) {
        free(w);
        w = NULL;
    }
    if (w && !(w->tokens = malloc(cells ? cells * sizeof *w->tokens : 1))) {
        free(w);
        w = NULL;
    }
    if (!w) {
        pst_err_set(err, PST_ERR_NOMEM, "text windows: out of memory for %lld windows",
                    (long long)n);
        return NULL;
    }
    w->n = n;
    w->t = t;
    w->vocab = vocab;
    w->stream = stream;
    return w;
}

ds_windows *ds_textwin_load(const char *path, const ds_textwin_options *o, ds_cache_result *cache,
                            pst_err *err)
{
    ds_cache_result scratch;
    if (!cache)
        cache = &scratch;
    *cache = DS_CACHE_OFF;
    if (!path || !o || o->context < 1) {
        pst_err_set(err, PST_ERR_ARG, "ds_textwin_load: needs a path and a context >= 1");
        return NULL;
    }
    tok_ids ids = {0};
    int vocab = 0;
    ds_windows *w = NULL;
    if (text_ids(path, o, &ids, &vocab, cache, err))
        goto cleanup;
    size_t T = (size_t)o->context;
    if (ids.n < T + 1) {
        pst_err_set(err, PST_ERR_DATA,
                    "%s: %zu tokens, shorter than one window of %zu (context %zu + 1)", path, ids.n,
                    T + 1, T);
        goto cleanup;
    }
    int64_t n = (int64_t)((ids.n - 1) / T);
    if (!(w = windows_alloc(n, o->context, vocab, (int64_t)ids.n, err)))
        goto cleanup;
    for (int64_t i = 0; i < n; i++)
        memcpy(w->tokens + (size_t)i * (T + 1), ids.ids + (size_t)i * T, (T + 1) * sizeof(int32_t));
cleanup:
    tok_ids_fini(&ids);
    return w;
}

void ds_windows_destroy(ds_windows *w)
{
    if (!w)
        return;
    free(w->tokens);
    free(w);
}

int64_t ds_windows_count(const ds_windows *w) { return w->n; }
int ds_windows_context(const ds_windows *w) { return w->t; }
int ds_windows_vocab(const ds_windows *w) { return w->vocab; }
int64_t ds_windows_stream(const ds_windows *w) { return w->stream; }
const int32_t *ds_windows_tokens(const ds_windows *w) { return w->tokens; }

/* ---- split and partition ------------------------------------------------------------ */

/* The permutation ds_split and ds_partition use (data/split.c): 0..n-1 shuffled by
 * rng_shuffle_u32 from seed, so windows and samples are chosen by the same rule. */
static uint32_t *shuffled(int64_t n, uint64_t seed, pst_err *err)
{
    if (n > (int64_t)UINT32_MAX) {
        pst_err_set(err, PST_ERR_ARG, "cannot shuffle %lld windows (at most 2^32 - 1)",
                    (long long)n);
        return NULL;
    }
    uint32_t *p = malloc((n ? (size_t)n : 1) * sizeof *p);
    if (!p) {
        pst_err_set(err, PST_ERR_NOMEM, "shuffle of %lld windows: out of memory", (long long)n);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        p[i] = (uint32_t)i;
    rng_state r;
    rng_seed(&r, seed);
    rng_shuffle_u32(&r, p, (size_t)n);
    return p;
}

static ds_windows *gather(const ds_windows *w, const uint32_t *rows, int64_t n, pst_err *err)
{
    ds_windows *out = windows_alloc(n, w->t, w->vocab, w->stream, err);
    if (!out)
        return NULL;
    size_t row = (size_t)w->t + 1;
    for (int64_t i = 0; i < n; i++)
        memcpy(out->tokens + (size_t)i * row, w->tokens + (size_t)rows[i] * row,
               row * sizeof *out->tokens);
    return out;
}

int ds_windows_split(const ds_windows *w, double frac, uint64_t seed, ds_windows **train,
                     ds_windows **val, pst_err *err)
{
    *train = *val = NULL;
    if (!(frac >= 0.0 && frac < 1.0))
        return pst_err_set(err, PST_ERR_ARG, "ds_windows_split: fraction %g not in [0, 1)", frac);
    uint32_t *perm = shuffled(w->n, seed, err);
    if (!perm)
        return err ? err->code : PST_ERR_NOMEM;
    int64_t nval = (int64_t)llround(frac * (double)w->n);
    int rc = PST_OK;
    if (!(*val = gather(w, perm, nval, err)) ||
        !(*train = gather(w, perm + nval, w->n - nval, err))) {
        rc = PST_ERR_NOMEM;
        ds_windows_destroy(*val);
        *val = NULL;
    }
    free(perm);
    return rc;
}

ds_windows *ds_windows_partition(const ds_windows *w, int nparts, int k, uint64_t seed,
                                 pst_err *err)
{
    if (nparts < 1 || k < 0 || k >= nparts) {
        pst_err_set(err, PST_ERR_ARG, "ds_windows_partition: part %d of %d", k, nparts);
        return NULL;
    }
    uint32_t *perm = shuffled(w->n, seed, err);
    if (!perm)
        return NULL;
    int64_t lo = (int64_t)k * w->n / nparts, hi = ((int64_t)k + 1) * w->n / nparts;
    ds_windows *out = gather(w, perm + lo, hi - lo, err);
    free(perm);
    return out;
}
