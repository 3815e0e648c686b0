/* core/sptable.c -- the sparse table: chunked rows, an open-addressing key index, the
 * admission sketch, exact expiry with a spread-out sweep; see sptable.h for the contract. */
#include "sptable.h"

#include "base/rng.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_SHIFT 16
#define CHUNK ((uint32_t)1 << CHUNK_SHIFT) /* rows per chunk */
#define NONE UINT32_MAX                    /* empty index slot; no row; end of the free list */
#define ROW_BITS 28                        /* a slot: 4 fingerprint bits | 28 bits of row id */
#define ROW_MASK (((uint32_t)1 << ROW_BITS) - 1)
#define REC_KEY 0             /* a record: key (8 bytes, 4-aligned: read with memcpy) */
#define REC_STAMP 8           /* stamp (4) */
#define REC_DATA 12           /* row then state buffers (floats) */
#define FREE_STAMP UINT32_MAX /* stamp of a row on the free list */
#define SKETCH_DEPTH 4
#define MAX_LOAD 0.8

/* One allocation per chunk of CHUNK records of rec_bytes: key, stamp, row, state -- so a
 * lookup's key check, the stamp and the start of the row share a cache line. A free
 * row's key field holds the next free row id. */
typedef struct {
    unsigned char *rec;
} chunk;

struct spt_table {
    spt_config cfg;
    int nbuf;
    size_t stride;    /* floats per row: d * (1 + nbuf) */
    size_t rec_bytes; /* REC_DATA + 4 * stride */
    chunk *chunks;    /* (nchunks) */
    uint32_t nchunks, chunk_cap;
    uint32_t top;       /* row ids [0, top) have been handed out */
    uint32_t free_head; /* NONE when empty */
    uint64_t nrows;     /* rows held */
    uint32_t *slots;    /* (cap) fingerprint | row id, or NONE */
    uint64_t cap;
    uint8_t *sketch; /* (SKETCH_DEPTH, width) counters, NULL when admit_after <= 1 */
    uint64_t width;
    int64_t step;
    uint32_t sweep_at;    /* next row id the expiry sweep visits */
    int64_t reclaimed_at; /* step of the last full reclaim, -1 none */
    spt_stats st;         /* counters (rows, bytes, step filled on read) */
};

/* ---- hashing --------------------------------------------------------------------------- */

/* Distinct salts so that the index slot, the owner and the sketch cells of a key are
 * uncorrelated (keys one server owns do not cluster in its index). */
#define SALT_INDEX 0x243F6A8885A308D3ULL
#define SALT_OWNER 0x13198A2E03707344ULL
#define SALT_SKETCH 0xA4093822299F31D0ULL
#define SALT_ROW 0x9E3779B97F4A7C15ULL

uint64_t spt_row_seed(uint64_t seed, uint64_t key)
{
    return rng_mix64(key ^ rng_mix64(seed + SALT_ROW));
}

/* x mapped onto [0, n) by the high half of a 128-bit product (Lemire's fast range). */
static uint64_t fast_range(uint64_t x, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)x * n) >> 64);
}

uint32_t spt_owner(uint64_t key, uint32_t nservers)
{
    assert(nservers >= 1);
    /* Lamping & Veach 2014, "A Fast, Minimal Memory, Consistent Hash Algorithm", Fig. 1. */
    uint64_t k = rng_mix64(key ^ SALT_OWNER);
    int64_t b = -1, j = 0;
    while (j < (int64_t)nservers) {
        b = j;
        k = k * 2862933555777941757ULL + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1LL << 31) / (double)((k >> 33) + 1)));
    }
    return (uint32_t)b;
}

/* ---- config ---------------------------------------------------------------------------- */

void spt_config_default(spt_config *c, int dim)
{
    memset(c, 0, sizeof *c);
    c->dim = dim;
    c->init = SPT_INIT_UNIFORM;
    c->init_scale = 0.05f;
    opt_config_default(&c->opt, OPT_ADAM);
    c->admit_after = 0;
}

int spt_config_check(const spt_config *c, pst_err *err)
{
    const int code = PST_ERR_CONFIG;
    if (c->dim < 1 || c->dim > SPT_MAX_DIM)
        return pst_err_set(err, code, "dim: must be in [1, %d], got %d", SPT_MAX_DIM, c->dim);
    if ((int)c->init < (int)SPT_INIT_ZEROS || (int)c->init > (int)SPT_INIT_NORMAL)
        return pst_err_set(err, code, "init: unknown initialisation %d", (int)c->init);
    if (!(c->init_scale >= 0.0f) || !isfinite(c->init_scale))
        return pst_err_set(err, code, "init_scale: must be finite and >= 0, got %g",
                           (double)c->init_scale);
    opt_kind k = c->opt.kind;
    if (k != OPT_SGD && k != OPT_ADAGRAD && k != OPT_ADAM && k != OPT_FTRL)
        return pst_err_set(err, code,
                           "optimizer.name: a sparse table takes sgd, adagrad, adam or ftrl, "
                           "got %s",
                           opt_kind_name(k));
    int rc = opt_config_check(&c->opt, err);
    if (rc)
        return rc;
    if (c->admit_after > SPT_MAX_ADMIT)
        return pst_err_set(err, code, "admit_after: must be in [0, %d], got %" PRIu32,
                           SPT_MAX_ADMIT, c->admit_after);
    if (c->filter_cells != 0 && (c->filter_cells < 64 || c->filter_cells > ((uint64_t)1 << 34)))
        return pst_err_set(err, code,
                           "filter_cells: must be 0 (default) or in [64, 2^34], got %" PRIu64,
                           c->filter_cells);
    if (c->admit_decay_steps < 0)
        return pst_err_set(err, code, "admit_decay_steps: must be >= 0 (0 = never), got %" PRId64,
                           c->admit_decay_steps);
    if (c->expire_steps < 0 || c->expire_steps >= ((int64_t)1 << 31))
        return pst_err_set(err, code,
                           "expire_steps: must be in [0, 2^31) (0 = never), got %" PRId64,
                           c->expire_steps);
    if (c->max_rows > SPT_MAX_ROWS)
        return pst_err_set(err, code, "max_rows: must be at most %llu (0 = that), got %" PRIu64,
                           (unsigned long long)SPT_MAX_ROWS, c->max_rows);
    return PST_OK;
}

/* ---- rows ------------------------------------------------------------------------------ */

static unsigned char *rec_at(const spt_table *t, uint32_t r)
{
    return t->chunks[r >> CHUNK_SHIFT].rec + (size_t)(r & (CHUNK - 1)) * t->rec_bytes;
}

static uint64_t get_key(const spt_table *t, uint32_t r)
{
    uint64_t k;
    memcpy(&k, rec_at(t, r) + REC_KEY, sizeof k);
    return k;
}

static void set_key(const spt_table *t, uint32_t r, uint64_t k)
{
    memcpy(rec_at(t, r) + REC_KEY, &k, sizeof k);
}

static uint32_t *stamp_at(const spt_table *t, uint32_t r)
{
    return (uint32_t *)(void *)(rec_at(t, r) + REC_STAMP);
}

static float *row_at(const spt_table *t, uint32_t r)
{
    return (float *)(void *)(rec_at(t, r) + REC_DATA);
}

static size_t chunk_bytes(const spt_table *t) { return (size_t)CHUNK * t->rec_bytes; }

/* malloc, not calloc: every field of a row is written when the row is handed out, and
 * pages of a chunk's unused tail are never touched (no RSS for them). */
static int add_chunk(spt_table *t)
{
    if (t->nchunks == t->chunk_cap) {
        uint32_t cap = t->chunk_cap ? t->chunk_cap * 2 : 16;
        chunk *c = realloc(t->chunks, (size_t)cap * sizeof *c);
        if (!c)
            return -1;
        t->chunks = c;
        t->chunk_cap = cap;
    }
    unsigned char *p = malloc(chunk_bytes(t));
    if (!p)
        return -1;
    t->chunks[t->nchunks++].rec = p;
    return 0;
}

/* A row id for a new row, or NONE when out of memory. */
static uint32_t alloc_row(spt_table *t)
{
    if (t->free_head != NONE) {
        uint32_t r = t->free_head;
        t->free_head = (uint32_t)get_key(t, r);
        return r;
    }
    if ((t->top >> CHUNK_SHIFT) >= t->nchunks && add_chunk(t) != 0)
        return NONE;
    return t->top++;
}

/* The initial values of key's row (sptable.h) and zero state. */
/* The d initial values of key's row (the top of sptable.h). */
static void init_values(const spt_table *t, uint64_t key, float *row)
{
    const int d = t->cfg.dim;
    const float s = t->cfg.init_scale;
    rng_state rs;
    switch (t->cfg.init) {
    case SPT_INIT_ZEROS: memset(row, 0, (size_t)d * sizeof *row); break;
    case SPT_INIT_UNIFORM:
        rng_seed(&rs, spt_row_seed(t->cfg.seed, key));
        for (int i = 0; i < d; i++)
            row[i] = s * (2.0f * rng_uniform(&rs) - 1.0f);
        break;
    case SPT_INIT_NORMAL:
        rng_seed(&rs, spt_row_seed(t->cfg.seed, key));
        for (int i = 0; i < d; i++)
            row[i] = s * rng_normal(&rs);
        break;
    }
}

/* A new record's row and state: the initial values, zero state. */
static void init_row(const spt_table *t, uint64_t key, float *row)
{
    init_values(t, key, row);
    memset(row + t->cfg.dim, 0, (size_t)t->nbuf * (size_t)t->cfg.dim * sizeof *row);
}

/* ---- the key index: linear probing, backward-shift deletion ---------------------------- */

static uint64_t hash_of(uint64_t key) { return rng_mix64(key ^ SALT_INDEX); }
static uint64_t home_of(const spt_table *t, uint64_t h) { return fast_range(h, t->cap); }
static uint32_t slot_of(uint64_t h, uint32_t r) { return (uint32_t)(h & 15) << ROW_BITS | r; }

/* The slot holding key, or the empty slot where it would go; *row: its row or NONE. A
 * slot's fingerprint (4 hash bits) spares most probes the load of another row's key. */
static uint64_t find_slot(const spt_table *t, uint64_t key, uint32_t *row)
{
    const uint64_t h = hash_of(key);
    const uint32_t fp = (uint32_t)(h & 15);
    uint64_t i = home_of(t, h);
    for (;;) {
        uint32_t s = t->slots[i];
        if (s == NONE) {
            *row = NONE;
            return i;
        }
        if (s >> ROW_BITS == fp && get_key(t, s & ROW_MASK) == key) {
            *row = s & ROW_MASK;
            return i;
        }
        i = i + 1 == t->cap ? 0 : i + 1;
    }
}

/* Starts loading what a lookup of key will read: its home slot (far ahead), then the row
 * that slot names (nearer, once the slot is in cache). */
static void prefetch_slot(const spt_table *t, uint64_t key)
{
    __builtin_prefetch(&t->slots[home_of(t, hash_of(key))]);
}

static void prefetch_row(const spt_table *t, uint64_t key, int lines)
{
    const uint64_t h = hash_of(key);
    uint32_t s = t->slots[home_of(t, h)];
    if (s == NONE || s >> ROW_BITS != (uint32_t)(h & 15))
        return;
    const unsigned char *p = rec_at(t, s & ROW_MASK);
    for (int l = 0; l < lines; l++)
        __builtin_prefetch(p + 64 * l, 1);
}

static void delete_slot(spt_table *t, uint64_t i)
{
    uint64_t j = i;
    for (;;) {
        j = j + 1 == t->cap ? 0 : j + 1;
        uint32_t s = t->slots[j];
        if (s == NONE)
            break;
        uint64_t k = home_of(t, hash_of(get_key(t, s & ROW_MASK)));
        /* s stays when its home lies cyclically in (i, j]: the gap at i is not on its path */
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays)
            continue;
        t->slots[i] = s;
        i = j;
    }
    t->slots[i] = NONE;
}

/* Rebuilds the index with cap slots (every held row reinserted). */
static int rehash(spt_table *t, uint64_t cap)
{
    uint32_t *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return -1;
    memset(slots, 0xFF, cap * sizeof *slots);
    uint32_t *old = t->slots;
    t->slots = slots;
    t->cap = cap;
    for (uint32_t r = 0; r < t->top; r++) {
        if (*stamp_at(t, r) == FREE_STAMP)
            continue;
        uint32_t had;
        uint64_t k = get_key(t, r);
        uint64_t i = find_slot(t, k, &had);
        t->slots[i] = slot_of(hash_of(k), r);
    }
    free(old);
    return 0;
}

/* Room in the index for one more row: grow by 1.5x at load MAX_LOAD, never past what
 * max_rows needs. */
static int reserve_slot(spt_table *t)
{
    if ((double)(t->nrows + 1) <= MAX_LOAD * (double)t->cap)
        return 0;
    uint64_t cap = t->cap + t->cap / 2;
    uint64_t most = (uint64_t)((double)t->cfg.max_rows / MAX_LOAD) + 64;
    if (cap > most)
        cap = most;
    if ((double)(t->nrows + 1) > MAX_LOAD * (double)cap)
        cap = (uint64_t)((double)(t->nrows + 1) / MAX_LOAD) + 64;
    return rehash(t, cap);
}

/* Drops the row in slot i (row r) onto the free list. */
static void drop_row(spt_table *t, uint64_t i, uint32_t r)
{
    delete_slot(t, i);
    *stamp_at(t, r) = FREE_STAMP;
    set_key(t, r, t->free_head);
    t->free_head = r;
    t->nrows--;
}

static int expired(const spt_table *t, uint32_t stamp)
{
    return t->cfg.expire_steps > 0 && t->step - (int64_t)stamp >= t->cfg.expire_steps;
}

/* Frees the expired rows among ids [from, from + count) (wrapping at top). */
static void sweep(spt_table *t, uint32_t count)
{
    if (t->top == 0)
        return;
    for (uint32_t v = 0; v < count && v < t->top; v++) {
        uint32_t r = t->sweep_at;
        t->sweep_at = r + 1 >= t->top ? 0 : r + 1;
        uint32_t s = *stamp_at(t, r);
        if (s == FREE_STAMP || !expired(t, s))
            continue;
        uint32_t had;
        uint64_t i = find_slot(t, get_key(t, r), &had);
        assert(had == r);
        drop_row(t, i, r);
        t->st.evicted++;
    }
}

/* ---- admission sketch ------------------------------------------------------------------ */

/* Counts one more occurrence of key (conservative update: only the counters at the
 * minimum grow) and returns the new estimate. */
static uint32_t sketch_count(spt_table *t, uint64_t key)
{
    uint64_t h = rng_mix64(key ^ SALT_SKETCH), h2 = rng_mix64(h) | 1;
    uint64_t at[SKETCH_DEPTH];
    uint32_t est = 255;
    for (int j = 0; j < SKETCH_DEPTH; j++) {
        at[j] = (uint64_t)j * t->width + fast_range(h + (uint64_t)j * h2, t->width);
        if (t->sketch[at[j]] < est)
            est = t->sketch[at[j]];
    }
    if (est < 255)
        est++;
    for (int j = 0; j < SKETCH_DEPTH; j++)
        if (t->sketch[at[j]] < est)
            t->sketch[at[j]] = (uint8_t)est;
    return est;
}

/* ---- create / destroy ------------------------------------------------------------------ */

spt_table *spt_create(const spt_config *c, pst_err *err)
{
    if (spt_config_check(c, err))
        return NULL;
    spt_table *t = calloc(1, sizeof *t);
    if (!t)
        goto nomem;
    t->cfg = *c;
    if (t->cfg.max_rows == 0)
        t->cfg.max_rows = SPT_MAX_ROWS;
    t->nbuf = opt_kind_nbuf(c->opt.kind);
    t->stride = (size_t)c->dim * (size_t)(1 + t->nbuf);
    t->rec_bytes = REC_DATA + t->stride * sizeof(float);
    t->free_head = NONE;
    t->reclaimed_at = -1;
    t->cap = 1024;
    if (!(t->slots = malloc(t->cap * sizeof *t->slots)))
        goto nomem;
    memset(t->slots, 0xFF, t->cap * sizeof *t->slots);
    if (c->admit_after > 1) {
        uint64_t cells = c->filter_cells ? c->filter_cells : SPT_DEFAULT_FILTER_CELLS;
        t->width = cells / SKETCH_DEPTH;
        if (!(t->sketch = calloc(t->width * SKETCH_DEPTH, 1)))
            goto nomem;
    }
    return t;

nomem:
    spt_destroy(t);
    pst_err_set(err, PST_ERR_NOMEM, "sparse table: out of memory");
    return NULL;
}

static void free_storage(spt_table *t)
{
    for (uint32_t i = 0; i < t->nchunks; i++)
        free(t->chunks[i].rec);
    free(t->chunks);
    free(t->slots);
}

void spt_destroy(spt_table *t)
{
    if (!t)
        return;
    free_storage(t);
    free(t->sketch);
    free(t);
}

const spt_config *spt_config_of(const spt_table *t) { return &t->cfg; }
int spt_dim(const spt_table *t) { return t->cfg.dim; }
int spt_nbuf(const spt_table *t) { return t->nbuf; }
int64_t spt_step(const spt_table *t) { return t->step; }

void spt_stats_get(const spt_table *t, spt_stats *s)
{
    *s = t->st;
    s->rows = t->nrows;
    s->filter_bytes = t->sketch ? t->width * SKETCH_DEPTH : 0;
    s->bytes = sizeof *t + (uint64_t)t->chunk_cap * sizeof(chunk) +
               (uint64_t)t->nchunks * chunk_bytes(t) + t->cap * sizeof(uint32_t) + s->filter_bytes;
    s->step = t->step;
}

/* ---- pull / push / tick ---------------------------------------------------------------- */

/* A new row for key (not in the index) if admission and the budget allow: its row id, or
 * NONE (the key reads as zeros); *oom set when out of memory. */
static uint32_t admit(spt_table *t, uint64_t key, int *oom)
{
    if (t->sketch && sketch_count(t, key) < t->cfg.admit_after) {
        t->st.pending++;
        return NONE;
    }
    if (t->nrows >= t->cfg.max_rows && t->cfg.expire_steps > 0 && t->reclaimed_at != t->step) {
        /* Exact budget: expired rows do not count against it. Once per step at most. */
        t->reclaimed_at = t->step;
        sweep(t, t->top);
    }
    if (t->nrows >= t->cfg.max_rows) {
        t->st.refused++;
        return NONE;
    }
    if (reserve_slot(t) != 0) {
        *oom = 1;
        return NONE;
    }
    uint32_t had;
    uint64_t i = find_slot(t, key, &had); /* after reserve_slot: it may rebuild the index */
    uint32_t r = alloc_row(t);
    if (r == NONE) {
        *oom = 1;
        return NONE;
    }
    set_key(t, r, key);
    *stamp_at(t, r) = (uint32_t)t->step;
    init_row(t, key, row_at(t, r));
    t->slots[i] = slot_of(hash_of(key), r);
    t->nrows++;
    t->st.admitted++;
    return r;
}

int spt_pull(spt_table *t, const uint64_t *keys, size_t n, float *rows_out, pst_err *err)
{
    const size_t d = (size_t)t->cfg.dim;
    int oom = 0;
    for (size_t k = 0; k < n; k++) {
        float *out = rows_out + k * d;
        if (k + 16 < n)
            prefetch_slot(t, keys[k + 16]);
        if (k + 8 < n)
            prefetch_row(t, keys[k + 8], 1);
        uint32_t r;
        uint64_t i = find_slot(t, keys[k], &r);
        if (r != NONE && expired(t, *stamp_at(t, r))) {
            drop_row(t, i, r); /* the key is new again */
            t->st.evicted++;
            r = NONE;
        }
        if (r == NONE && !oom)
            r = admit(t, keys[k], &oom);
        if (r == NONE) {
            memset(out, 0, d * sizeof *out);
            continue;
        }
        *stamp_at(t, r) = (uint32_t)t->step;
        memcpy(out, row_at(t, r), d * sizeof *out);
    }
    if (oom)
        return pst_err_set(err, PST_ERR_NOMEM, "sparse table: out of memory at %" PRIu64 " rows",
                           t->nrows);
    return PST_OK;
}

void spt_peek(const spt_table *t, const uint64_t *keys, size_t n, float *rows_out)
{
    const size_t d = (size_t)t->cfg.dim;
    for (size_t k = 0; k < n; k++) {
        float *out = rows_out + k * d;
        uint32_t r;
        (void)find_slot(t, keys[k], &r);
        if (r != NONE && !expired(t, *stamp_at(t, r)))
            memcpy(out, row_at(t, r), d * sizeof *out);
        else if (t->cfg.admit_after <= 1)
            init_values(t, keys[k], out); /* the row a first touch would create */
        else
            memset(out, 0, d * sizeof *out); /* what a key not yet admitted reads */
    }
}

int spt_push(spt_table *t, const uint64_t *keys, size_t n, const float *grads, float lr,
             pst_err *err)
{
    const size_t d = (size_t)t->cfg.dim;
    for (size_t k = 0; k < n; k++)
        for (size_t c = 0; c < d; c++)
            if (!isfinite(grads[k * d + c]))
                return pst_err_set(err, PST_ERR_NUMERIC,
                                   "sparse push: gradient of key %" PRIu64 " column %zu is %g",
                                   keys[k], c, (double)grads[k * d + c]);
    opt_rule rule;
    opt_rule_init(&rule, &t->cfg.opt, t->step + 1, lr);
    const int lines = (int)((t->rec_bytes + 63) / 64);
    for (size_t k = 0; k < n; k++) {
        if (k + 16 < n)
            prefetch_slot(t, keys[k + 16]);
        if (k + 8 < n)
            prefetch_row(t, keys[k + 8], lines);
        uint32_t r;
        find_slot(t, keys[k], &r);
        if (r == NONE || expired(t, *stamp_at(t, r))) {
            t->st.dropped++;
            continue;
        }
        float *w = row_at(t, r);
        opt_rule_apply(&rule, w, grads + k * d, t->nbuf > 0 ? w + d : NULL,
                       t->nbuf > 1 ? w + 2 * d : NULL, d);
        *stamp_at(t, r) = (uint32_t)t->step;
    }
    return PST_OK;
}

void spt_tick(spt_table *t)
{
    t->step++;
    assert(t->step < (int64_t)FREE_STAMP); /* stamps are uint32 */
    if (t->cfg.expire_steps > 0) {
        /* top / T + 1 ids per tick: every row is visited at least once per T ticks, so an
         * expired row holds memory for less than T more ticks. */
        uint64_t per = (uint64_t)t->top / (uint64_t)t->cfg.expire_steps + 1;
        sweep(t, (uint32_t)(per < t->top ? per : t->top));
    }
    if (t->sketch && t->cfg.admit_decay_steps > 0 && t->step % t->cfg.admit_decay_steps == 0)
        for (uint64_t i = 0; i < t->width * SKETCH_DEPTH; i++)
            t->sketch[i] >>= 1;
}

/* ---- dump / restore -------------------------------------------------------------------- */

/* Sorts keys ascending carrying ids along: LSD radix sort, 16 bits a pass, skipping passes
 * whose digit is the same for every key. tk, ti: scratch of n. */
static void radix_sort(uint64_t *keys, uint32_t *ids, uint64_t *tk, uint32_t *ti, size_t n,
                       size_t *count)
{
    for (int shift = 0; shift < 64; shift += 16) {
        memset(count, 0, 65537 * sizeof *count);
        for (size_t i = 0; i < n; i++)
            count[((keys[i] >> shift) & 0xFFFF) + 1]++;
        if (count[((keys[0] >> shift) & 0xFFFF) + 1] == n)
            continue;
        for (int b = 0; b < 65536; b++)
            count[b + 1] += count[b];
        for (size_t i = 0; i < n; i++) {
            size_t at = count[(keys[i] >> shift) & 0xFFFF]++;
            tk[at] = keys[i];
            ti[at] = ids[i];
        }
        memcpy(keys, tk, n * sizeof *keys);
        memcpy(ids, ti, n * sizeof *ids);
    }
}

void spt_dump_fini(spt_dump *d)
{
    free(d->keys);
    free(d->rows);
    free(d->state[0]);
    free(d->state[1]);
    free(d->touched);
    free(d->filter);
    memset(d, 0, sizeof *d);
}

/* The live rows' keys and ids, sorted by key; *n of them. */
static int sorted_live(const spt_table *t, uint64_t **keys, uint32_t **ids, size_t *n)
{
    size_t cnt = 0, m = t->nrows ? t->nrows : 1;
    uint64_t *k = malloc(m * sizeof *k), *tk = malloc(m * sizeof *tk);
    uint32_t *id = malloc(m * sizeof *id), *ti = malloc(m * sizeof *ti);
    size_t *count = malloc(65537 * sizeof *count);
    int rc = -1;
    if (!k || !tk || !id || !ti || !count)
        goto cleanup;
    for (uint32_t r = 0; r < t->top; r++) {
        uint32_t s = *stamp_at(t, r);
        if (s == FREE_STAMP || expired(t, s))
            continue;
        k[cnt] = get_key(t, r);
        id[cnt++] = r;
    }
    if (cnt)
        radix_sort(k, id, tk, ti, cnt, count);
    *keys = k;
    *ids = id;
    *n = cnt;
    k = NULL;
    id = NULL;
    rc = 0;
cleanup:
    free(k), free(tk), free(id), free(ti), free(count);
    return rc;
}

int spt_dump_fill(const spt_table *t, spt_dump *d, pst_err *err)
{
    memset(d, 0, sizeof *d);
    uint32_t *ids = NULL;
    size_t n = 0;
    if (sorted_live(t, &d->keys, &ids, &n) != 0)
        goto nomem;
    const size_t dim = (size_t)t->cfg.dim, m = n ? n : 1;
    d->n = n;
    d->dim = t->cfg.dim;
    d->nbuf = t->nbuf;
    d->step = t->step;
    if (!(d->rows = malloc(m * dim * sizeof(float))) ||
        !(d->touched = malloc(m * sizeof *d->touched)))
        goto nomem;
    for (int b = 0; b < t->nbuf; b++)
        if (!(d->state[b] = malloc(m * dim * sizeof(float))))
            goto nomem;
    for (size_t i = 0; i < n; i++) {
        const float *w = row_at(t, ids[i]);
        memcpy(d->rows + i * dim, w, dim * sizeof(float));
        for (int b = 0; b < t->nbuf; b++)
            memcpy(d->state[b] + i * dim, w + (size_t)(b + 1) * dim, dim * sizeof(float));
        d->touched[i] = *stamp_at(t, ids[i]);
    }
    if (t->sketch) {
        d->filter_cells = t->width * SKETCH_DEPTH;
        if (!(d->filter = malloc(d->filter_cells)))
            goto nomem;
        memcpy(d->filter, t->sketch, d->filter_cells);
    }
    free(ids);
    return PST_OK;

nomem:
    free(ids);
    spt_dump_fini(d);
    return pst_err_set(err, PST_ERR_NOMEM, "sparse table: out of memory for a dump");
}

/* What makes d unfit for t, or PST_OK. */
int spt_dump_check(const spt_table *t, const spt_dump *d, pst_err *err)
{
    const int code = PST_ERR_DATA;
    if (d->dim != t->cfg.dim)
        return pst_err_set(err, code, "rows of dim %d, but the table has dim %d", d->dim,
                           t->cfg.dim);
    if (d->nbuf != t->nbuf)
        return pst_err_set(err, code, "%d state buffers per row, but %s keeps %d", d->nbuf,
                           opt_kind_name(t->cfg.opt.kind), t->nbuf);
    if (d->n > t->cfg.max_rows)
        return pst_err_set(err, code, "%zu rows, over the table's max_rows %" PRIu64, d->n,
                           t->cfg.max_rows);
    if (d->step < 0 || d->step >= (int64_t)FREE_STAMP)
        return pst_err_set(err, code, "step %" PRId64 " out of range", d->step);
    const size_t dim = (size_t)d->dim;
    for (size_t i = 0; i < d->n; i++) {
        if (i > 0 && d->keys[i] <= d->keys[i - 1])
            return pst_err_set(
                err, code, "keys not strictly ascending at row %zu (%" PRIu64 " after %" PRIu64 ")",
                i, d->keys[i], d->keys[i - 1]);
        if ((int64_t)d->touched[i] > d->step)
            return pst_err_set(err, code,
                               "row %zu touched at step %" PRIu32 ", after step %" PRId64, i,
                               d->touched[i], d->step);
        for (int b = -1; b < d->nbuf; b++) {
            const float *p = (b < 0 ? d->rows : d->state[b]) + i * dim;
            for (size_t c = 0; c < dim; c++)
                if (!isfinite(p[c]))
                    return pst_err_set(err, code, "%s of key %" PRIu64 " column %zu is not finite",
                                       b < 0 ? "row" : "state", d->keys[i], c);
        }
    }
    return PST_OK;
}

int spt_restore(spt_table *t, const spt_dump *d, pst_err *err)
{
    int rc = spt_dump_check(t, d, err);
    if (rc)
        return rc;
    /* Built aside in a fresh table of the same config, then swapped in: t is unchanged
     * until nothing can fail. */
    spt_config c = t->cfg;
    c.admit_after = 0; /* no sketch in the scratch table */
    spt_table *n = spt_create(&c, err);
    if (!n)
        return err ? err->code : PST_ERR_NOMEM;
    n->cfg.expire_steps = 0; /* every row of the dump is live */
    const size_t dim = (size_t)d->dim;
    for (size_t i = 0; i < d->n; i++) {
        int oom = 0;
        uint32_t r = admit(n, d->keys[i], &oom);
        if (r == NONE) {
            spt_destroy(n);
            return pst_err_set(err, PST_ERR_NOMEM, "sparse table: out of memory restoring");
        }
        float *w = row_at(n, r);
        memcpy(w, d->rows + i * dim, dim * sizeof(float));
        for (int b = 0; b < d->nbuf; b++)
            memcpy(w + (size_t)(b + 1) * dim, d->state[b] + i * dim, dim * sizeof(float));
        *stamp_at(n, r) = d->touched[i];
    }
    free_storage(t);
    t->chunks = n->chunks;
    t->nchunks = n->nchunks;
    t->chunk_cap = n->chunk_cap;
    t->top = n->top;
    t->free_head = n->free_head;
    t->nrows = n->nrows;
    t->slots = n->slots;
    t->cap = n->cap;
    t->step = d->step;
    t->sweep_at = 0;
    t->reclaimed_at = -1;
    if (t->sketch) {
        if (d->filter && d->filter_cells == t->width * SKETCH_DEPTH)
            memcpy(t->sketch, d->filter, d->filter_cells);
        else
            memset(t->sketch, 0, t->width * SKETCH_DEPTH);
    }
    n->chunks = NULL;
    n->slots = NULL;
    n->nchunks = 0;
    spt_destroy(n);
    return PST_OK;
}
