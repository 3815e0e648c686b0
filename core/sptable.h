/* core/sptable.h -- a sparse parameter table: uint64 keys -> rows of dim floats with
 * per-row optimizer state, updated lazily. The one definition of the sparse update rule:
 * the single-process trainer and every parameter server hold their embedding rows here.
 *
 * Legend: d = dim (floats per row), R = rows held, n = keys in one call.
 *
 *   spt_table *t = spt_create(&cfg, &err);
 *   per step:  spt_pull(t, keys, n, rows, &err);         rows: (n, d), zeros for keys
 *                                                        without a row
 *              ... forward/backward on rows ...
 *              spt_push(t, keys, n, grads, lr, &err);    grads: (n, d), summed per key
 *              spt_tick(t);                              the step is over
 *
 * Keys in one pull or push must be unique (the worker de-duplicates and sums). A table
 * is not thread-safe: its owner serialises calls.
 *
 * Rows appear on first touch (a pull), initialised from (seed, key) alone: the d values of
 * key k are d draws (rng_uniform or rng_normal of base/rng.h) from xoshiro256** seeded by
 * rng_seed(spt_row_seed(seed, k)), uniform in (-scale, scale), normal (0, scale^2) or
 * zeros. So every server and every rerun agrees, whatever the order keys arrive in.
 * State starts at zero.
 *
 * The update (spt_push) is core/optim.h's rule (sgd, adagrad, adam, ftrl) applied to the
 * pushed rows only, with their own state: rows not in the batch keep row and state
 * untouched (lazy, as torch.optim.SparseAdam). Adam's bias correction uses the table's
 * global step: the update of a push is number t = spt_step + 1, as SparseAdam counts
 * steps per parameter tensor. Weight decay, when set, is applied to pushed rows only.
 *
 * Bounded memory:
 *   admission  with admit_after = N > 1, a key becomes a row at its N-th occurrence
 *              (a pull containing it), counted in a count-min sketch of filter_cells
 *              one-byte saturating counters (4 rows, conservative update; halved every
 *              admit_decay_steps ticks when set). Before that the key reads as zeros and
 *              its gradient is dropped. The sketch may only over-count (hash collisions):
 *              a key may be admitted early, never late. Sharing a sketch among more keys
 *              (one process instead of several servers) changes those collisions, so
 *              admission is exactly reproducible only for admit_after <= 1.
 *   expiry     with expire_steps = T > 0, a row last touched (pulled or pushed) at step
 *              s is gone from step s + T on: a pull then finds a new key (admission, fresh
 *              row), a push drops its gradient, an export leaves it out. This is exact,
 *              decided by the row's stamp; the memory is reclaimed by a sweep spread over
 *              the ticks (every row is visited once per T ticks) or at once when the
 *              budget is reached.
 *   budget     max_rows: a new key while R = max_rows (after reclaiming expired rows) is
 *              refused -- it reads as zeros and counts in stats.refused; never a failure.
 *
 * Memory layout (for 10^8 rows over a few servers): rows live in chunks of 65536 records,
 * one allocation each; a record is the key (8 B), the stamp (4 B), the row and its state
 * buffers ((1 + nbuf) * d * 4 B), so one cache line serves a lookup's key check, the stamp
 * and the row's start. Freed records are reused through a free list. The key index is
 * open addressing with linear probing over 4-byte slots (28 bits of row id, 4 bits of the
 * key's hash that spare most probes a look at another row) at load <= 0.8 (4 / 0.8 ..
 * 4 / 0.53 = 5 .. 7.5 B/row; grown by 1.5x, never past max_rows / 0.8). So the overhead
 * beyond key + row + state is the stamp and the index, ~9 .. 11.5 B/row, and at most
 * 2^28 - 1 rows a table. */
#ifndef PSTRAIN_CORE_SPTABLE_H
#define PSTRAIN_CORE_SPTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "core/optim.h"

#define SPT_MAX_DIM 4096
#define SPT_MAX_ROWS 268435455ULL /* row ids are 28 bits (the index keeps 4 hash bits) */
#define SPT_MAX_ADMIT 255         /* the sketch's counters are one byte */
#define SPT_DEFAULT_FILTER_CELLS ((uint64_t)1 << 22)

typedef enum {
    SPT_INIT_ZEROS = 0,
    SPT_INIT_UNIFORM, /* uniform(-scale, scale) */
    SPT_INIT_NORMAL   /* normal(0, scale^2) */
} spt_init_kind;

typedef struct {
    int dim;       /* d, 1 .. SPT_MAX_DIM */
    uint64_t seed; /* of every row's initial values */
    spt_init_kind init;
    float init_scale;
    opt_config opt;            /* kind sgd, adagrad, adam or ftrl; lr is spt_push's argument */
    uint32_t admit_after;      /* 0 or 1: a row at first touch; N: at the N-th occurrence */
    uint64_t filter_cells;     /* sketch size in bytes when admit_after > 1; 0 = default */
    int64_t admit_decay_steps; /* > 0: halve every count each this many ticks; 0 = never */
    int64_t expire_steps;      /* T > 0: rows untouched for T ticks are dropped; 0 = never */
    uint64_t max_rows;         /* budget; 0 = SPT_MAX_ROWS */
} spt_config;

/* dim d, seed 0, uniform(-0.05, 0.05) init (Keras's Embedding default), adam with
 * optim.h's defaults, admission at first touch, no expiry, no budget. */
void spt_config_default(spt_config *c, int dim);
/* Checks every field; a failure names it ("dim: must be in [1, 4096], got 0"). */
int spt_config_check(const spt_config *c, pst_err *err);

typedef struct spt_table spt_table;

/* A table for c (checked: PST_ERR_CONFIG naming the field); owned by the caller. */
spt_table *spt_create(const spt_config *c, pst_err *err);
void spt_destroy(spt_table *t);
const spt_config *spt_config_of(const spt_table *t);
int spt_dim(const spt_table *t);
/* Float buffers of state per row (0 sgd, 1 adagrad, 2 adam and ftrl). */
int spt_nbuf(const spt_table *t);
/* Ticks taken. */
int64_t spt_step(const spt_table *t);

/* rows_out (n, d) receives the rows of keys[0..n) (unique); a key without a row goes
 * through admission and the budget, and reads as zeros when it gets none. Every row read
 * is stamped with the current step. PST_ERR_NOMEM when the table cannot grow (the rows of
 * the keys not yet served read as zeros). */
int spt_pull(spt_table *t, const uint64_t *keys, size_t n, float *rows_out, pst_err *err);
/* Reads without touching (evaluation, prediction): rows_out (n, d) receives each key's row,
 * or for a key without one the row a first touch would create -- its initial values from
 * (seed, key), or zeros under admission (admit_after > 1), as a pull of a key not yet
 * admitted reads. Creates, stamps and counts nothing; keys need not be unique. */
void spt_peek(const spt_table *t, const uint64_t *keys, size_t n, float *rows_out);
/* Applies the rule with learning rate lr to the rows of keys[0..n) (unique) from
 * grads (n, d); keys without a row are dropped (stats.dropped). A non-finite gradient is
 * PST_ERR_NUMERIC naming key and column, and nothing is applied. */
int spt_push(spt_table *t, const uint64_t *keys, size_t n, const float *grads, float lr,
             pst_err *err);
/* Ends a step: the step count grows by one, the expiry sweep and the sketch's decay run. */
void spt_tick(spt_table *t);

typedef struct {
    uint64_t rows;         /* rows held now (expired ones not yet reclaimed included) */
    uint64_t admitted;     /* rows created, ever */
    uint64_t pending;      /* pulls of keys not yet admitted (read as zeros) */
    uint64_t refused;      /* pulls of new keys refused over the budget (read as zeros) */
    uint64_t evicted;      /* rows dropped by expiry */
    uint64_t dropped;      /* pushed keys without a row: their gradient was dropped */
    uint64_t filter_bytes; /* the admission sketch */
    uint64_t bytes;        /* everything the table holds allocated */
    int64_t step;
} spt_stats;

void spt_stats_get(const spt_table *t, spt_stats *s);

/* The seed of key's row stream (see the top of this file). */
uint64_t spt_row_seed(uint64_t seed, uint64_t key);

/* Which of nservers servers owns key: jump consistent hash (Lamping & Veach 2014) of a
 * mixed key. Depends on the key and nservers only, so it is the same across restarts and
 * independent of the dense range map; going from S to S + 1 servers moves ~1/(S+1) of
 * the keys, all of them to the new server. nservers >= 1. */
uint32_t spt_owner(uint64_t key, uint32_t nservers);

/* ---- Export and restore (checkpoints) ------------------------------------------------ */

/* A table's contents, rows in ascending key order (deterministic files). */
typedef struct {
    size_t n; /* R */
    int dim;
    int nbuf;
    int64_t step;
    uint64_t *keys;    /* (R), strictly ascending */
    float *rows;       /* (R, d) */
    float *state[2];   /* (R, d) each, nbuf of them; NULL past nbuf */
    uint32_t *touched; /* (R) step of each row's last touch (<= step) */
    uint8_t *filter;   /* (filter_cells) admission counts; NULL when the table has none */
    uint64_t filter_cells;
} spt_dump;

/* Fills d (its arrays allocated here; spt_dump_fini frees them) with t's live rows. */
int spt_dump_fill(const spt_table *t, spt_dump *d, pst_err *err);
void spt_dump_fini(spt_dump *d);
/* Replaces t's contents by d's (borrowed): rows, state, stamps, step, and the sketch when
 * it has t's size (else t's sketch starts empty). d must match t (dim, nbuf), have
 * strictly ascending keys, finite values, stamps <= step, and at most max_rows rows:
 * otherwise PST_ERR_DATA naming what differs, and t is unchanged (also on
 * PST_ERR_NOMEM). */
int spt_restore(spt_table *t, const spt_dump *d, pst_err *err);
/* spt_restore's checks alone (PST_ERR_DATA naming what differs), for a caller restoring
 * several tables that checks them all before changing any. */
int spt_dump_check(const spt_table *t, const spt_dump *d, pst_err *err);

#endif
