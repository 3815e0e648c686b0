/* ps/shard.c -- see shard.h. The server's update rule lives here: srv_shard_push. */
#include "shard.h"

#include "async.h"
#include "state.h"
#include "proto/dlv.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int live;      /* still training */
    dlv_stream rx; /* its pushes, in the order of the delivery contract (proto/dlv.h):
                          rx.unit = its clock (steps pushed completely), rx.taken = floats
                          of that step received so far, rx.next = where its next chunk
                          starts (shard coordinates) once taken > 0; before, the shard's
                          first trainable float */
    int skip;      /* nonfinite skip: this step had a NaN/Inf chunk (bsp: leaves the mean) */
    /* ssp/asp corrections (ps/async.h): the updates the shard had applied when the worker
     * last read its weights (-1: not since the shard started, restored or it rejoined --
     * no correction then), and the staleness tau of the step being received. */
    int64_t read_updates;
    int64_t tau;
} worker_state;

struct srv_shard {
    uint64_t base, len;
    opt_config opt;
    opt_state *st;
    cfg_consistency cons;
    int64_t staleness; /* INT64_MAX for asp */
    int nworkers, nlive;
    cfg_nonfinite nonfinite;
    srv_update_fn update; /* NULL: the optimizer (srv_shard_set_update) */
    void *update_ctx;
    worker_state *wk;
    float *w;      /* (len) weights */
    float *agg;    /* (len) bsp with several workers: sum of the gradients of the clock
                          being assembled; NULL for one worker (it is never needed) */
    int agg_count; /* bsp: gradients summed into agg */
    int agg_steps; /* bsp: whole steps of the clock received, skipped ones (NaN/Inf
                          under nonfinite skip) included */
    /* bsp with 2+ workers: worker k's gradient of the clock, kept apart and added to agg in
     * rank order when the clock is applied, so the float sum is the same whatever order the
     * pushes arrive in, and a worker lost halfway through a step leaves nothing of it in
     * the sum. Costs one shard-sized buffer per worker; makes bsp runs bit-reproducible. */
    float **stage;          /* (W) allocated on a worker's first push */
    unsigned char *contrib; /* (W) worker completed the clock being assembled */
    int64_t agg_clock;      /* bsp: the clock agg belongs to */
    /* bsp with 2+ workers: the weights before the last update, i.e. those of clock
     * prev_clock = agg_clock - 1 (-1: none). A worker killed between its pushes to two
     * shards has its step of that clock whole here but not on the other shard, which still
     * waits for it: its restarted incarnation computes the step again, and must do so from
     * the weights of that clock, which this shard has already updated. One shard-sized
     * copy per clock; makes such a restart bit-identical to a run without it. */
    float *prev; /* (len) */
    int64_t prev_clock;
    int agg_dirty; /* bsp: agg holds part of a sum (it is zero otherwise) */
    int direct;    /* bsp: the clock being assembled is applied chunk by chunk as it
                          arrives (see srv_shard_push) */
    uint64_t init_floats;
    srv_shard_stats stats;
    /* Update groups in shard coordinates (srv_shard_set_groups): the layers' lr multipliers,
     * 0 = frozen. None: every float at multiplier 1. */
    opt_group *groups;
    int ngroups;
    unsigned char *gstate; /* (ngroups) 1: a state group, pushed as values (ps/state.h) */
    srv_state *state;      /* the state groups' ranges; NULL: none in the shard */
    int recovering;        /* restarted: worker clocks being learnt (rclock) */
    int64_t *rclock;       /* (W) recovering: the largest clock each worker's requests carried,
                           -1: none yet */
    uint64_t trainable;    /* floats a worker's step pushes: len less the frozen ones */
    uint64_t first;        /* the first trainable float (len when none is) */
    /* ssp/asp corrections (srv_shard_set_async, formulas in ps/async.h). */
    int staleness_lr; /* lr / (1 + tau) */
    float dc_lambda;  /* > 0: delay compensation with this lambda0 */
    float **bak;      /* (W, len) delay compensation: the weights each worker read */
    float *ms;        /* (len) delay compensation: mean square of the gradients */
    float *gdc;       /* (len) delay compensation: the corrected gradient */
    /* model.keep_zeros (srv_shard_set_keep_zeros): the pruning mask, the shard positions
     * whose initial weight (INIT or a restore) was exactly 0, ascending; set back to 0
     * after every update of a range holding them. */
    int keep_zeros;
    uint64_t *zeros; /* (nzeros) */
    uint64_t nzeros;
};

static float *alloc_floats(uint64_t n)
{
    size_t bytes = ((size_t)n * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p)
        memset(p, 0, bytes ? bytes : 64);
    return p;
}

srv_shard *srv_shard_create(uint64_t base, uint64_t len, const opt_config *opt,
                            cfg_consistency cons, int staleness, int nworkers, pst_err *err)
{
    /* len 0: a server of a sparse model with fewer dense floats than servers (the shard
     * map gives it [base, base)); its clock still follows the workers' empty pushes. */
    if (nworkers < 1 || len > ((uint64_t)1 << 40)) {
        pst_err_set(err, PST_ERR_ARG, "shard: bad size %llu or %d workers", (unsigned long long)len,
                    nworkers);
        return NULL;
    }
    srv_shard *sh = calloc(1, sizeof *sh);
    if (!sh)
        goto nomem;
    sh->base = base;
    sh->len = len;
    sh->opt = *opt;
    sh->cons = cons;
    sh->staleness = cons == CFG_CONS_BSP ? 0 : cons == CFG_CONS_SSP ? staleness : INT64_MAX;
    sh->nworkers = sh->nlive = nworkers;
    sh->trainable = len;
    sh->first = 0;
    sh->wk = calloc((size_t)nworkers, sizeof *sh->wk);
    sh->w = alloc_floats(len);
    sh->st = opt_state_create(opt, (size_t)len, err);
    if (!sh->wk || !sh->w || !sh->st)
        goto nomem;
    if (cons == CFG_CONS_BSP && nworkers > 1 &&
        (!(sh->stage = calloc((size_t)nworkers, sizeof *sh->stage)) ||
         !(sh->contrib = calloc((size_t)nworkers, 1))))
        goto nomem;
    if (cons == CFG_CONS_BSP && nworkers > 1 &&
        (!(sh->agg = alloc_floats(len)) || !(sh->prev = alloc_floats(len))))
        goto nomem;
    sh->prev_clock = -1;
    for (int i = 0; i < nworkers; i++)
        sh->wk[i] = (worker_state){.live = 1, .read_updates = -1};
    return sh;
nomem:
    if (!err || err->code == PST_OK)
        pst_err_set(err, PST_ERR_NOMEM, "shard: out of memory for %llu parameters",
                    (unsigned long long)len);
    srv_shard_destroy(sh);
    return NULL;
}

void srv_shard_destroy(srv_shard *sh)
{
    if (!sh)
        return;
    opt_state_destroy(sh->st);
    free(sh->groups);
    free(sh->gstate);
    srv_state_destroy(sh->state);
    free(sh->wk);
    free(sh->w);
    free(sh->agg);
    free(sh->prev);
    if (sh->stage)
        for (int k = 0; k < sh->nworkers; k++)
            free(sh->stage[k]);
    free(sh->stage);
    free(sh->contrib);
    free(sh->rclock);
    if (sh->bak)
        for (int k = 0; k < sh->nworkers; k++)
            free(sh->bak[k]);
    free(sh->bak);
    free(sh->ms);
    free(sh->gdc);
    free(sh->zeros);
    free(sh);
}

uint64_t srv_shard_base(const srv_shard *sh) { return sh->base; }
uint64_t srv_shard_len(const srv_shard *sh) { return sh->len; }
int srv_shard_initialized(const srv_shard *sh) { return sh->init_floats == sh->len; }

int srv_shard_check_range(const srv_shard *sh, uint64_t off, uint64_t len, pst_err *err)
{
    /* An empty range is a message of an empty shard only (a clock without dense floats). */
    if ((len == 0 && sh->len != 0) || off < sh->base || off - sh->base > sh->len ||
        len > sh->len - (off - sh->base))
        return pst_err_set(err, PST_ERR_PEER,
                           "range [%llu, %llu) is outside this server's shard [%llu, %llu)",
                           (unsigned long long)off, (unsigned long long)(off + len),
                           (unsigned long long)sh->base, (unsigned long long)(sh->base + sh->len));
    return PST_OK;
}

/* Index of the first NaN or Inf in x[0..n), or n. Blocks are checked without an early exit
 * (so gcc vectorises the loop: an exponent of all ones is Inf or NaN), and only a block
 * that has one is searched again. */
static uint64_t first_nonfinite(const float *x, uint64_t n)
{
    for (uint64_t lo = 0; lo < n; lo += 4096) {
        uint64_t hi = n - lo < 4096 ? n : lo + 4096;
        uint32_t bad = 0;
        for (uint64_t i = lo; i < hi; i++) {
            uint32_t u;
            memcpy(&u, &x[i], sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad)
            for (uint64_t i = lo; i < hi; i++)
                if (!isfinite(x[i]))
                    return i;
    }
    return n;
}

void srv_shard_set_nonfinite(srv_shard *sh, cfg_nonfinite policy) { sh->nonfinite = policy; }

void srv_shard_set_update(srv_shard *sh, srv_update_fn fn, void *ctx)
{
    sh->update = fn;
    sh->update_ctx = ctx;
}

/* w (the weights from shard position lo, n of them) with the masked ones set back to 0. */
static void hold_zeros(const srv_shard *sh, float *w, uint64_t lo, uint64_t n)
{
    uint64_t a = 0, b = sh->nzeros; /* the first mask entry >= lo, by bisection */
    while (a < b) {
        uint64_t mid = a + (b - a) / 2;
        if (sh->zeros[mid] < lo)
            a = mid + 1;
        else
            b = mid;
    }
    for (uint64_t k = a; k < sh->nzeros && sh->zeros[k] < lo + n; k++)
        w[sh->zeros[k] - lo] = 0.0f;
}

/* The update of [lo, lo + n) (shard coordinates; w and g point at lo) at update t: the
 * optimizer, or the user's rule on each part outside frozen groups (flat coordinates);
 * then the pruning mask's weights back to 0 (so momentum or Adam's state cannot revive
 * them, and no worker's stale gradient either). */
static void apply(srv_shard *sh, float *w, const float *g, uint64_t lo, uint64_t n, int64_t t,
                  float lr)
{
    if (!sh->update) {
        opt_apply_groups(&sh->opt, sh->st, w, g, (size_t)lo, (size_t)n, sh->groups, sh->ngroups,
                         lr);
        if (sh->nzeros)
            hold_zeros(sh, w, lo, n);
        return;
    }
    if (sh->ngroups == 0) {
        sh->update(sh->update_ctx, w, g, sh->base + lo, n, t, lr);
        if (sh->nzeros)
            hold_zeros(sh, w, lo, n);
        return;
    }
    for (int i = 0; i < sh->ngroups; i++) {
        const opt_group *gr = &sh->groups[i];
        uint64_t a = gr->offset > lo ? gr->offset : lo, b = gr->offset + gr->len;
        b = b < lo + n ? b : lo + n;
        if (gr->lr_mult > 0.0f && a < b)
            sh->update(sh->update_ctx, w + (a - lo), g + (a - lo), sh->base + a, b - a, t, lr);
    }
    if (sh->nzeros)
        hold_zeros(sh, w, lo, n);
}

void srv_shard_set_keep_zeros(srv_shard *sh, int on) { sh->keep_zeros = on != 0; }

uint64_t srv_shard_mask_count(const srv_shard *sh) { return sh->nzeros; }

/* Once the weights are whole (the last INIT range, or a restore): the mask is their zeros.
 * A restore finds the pruned weights still 0 (they were held there), so a resumed run keeps
 * the mask it had. */
static int build_mask(srv_shard *sh, pst_err *err)
{
    free(sh->zeros);
    sh->zeros = NULL;
    sh->nzeros = 0;
    if (!sh->keep_zeros)
        return PST_OK;
    uint64_t n = 0;
    for (uint64_t i = 0; i < sh->len; i++)
        n += sh->w[i] == 0.0f;
    if (!(sh->zeros = malloc((size_t)(n ? n : 1) * sizeof *sh->zeros)))
        return pst_err_set(err, PST_ERR_NOMEM, "shard: out of memory for the pruning mask");
    for (uint64_t i = 0; i < sh->len; i++)
        if (sh->w[i] == 0.0f)
            sh->zeros[sh->nzeros++] = i;
    return PST_OK;
}

int srv_shard_init_range(srv_shard *sh, uint64_t off, const float *w, uint64_t len,
                         srv_outcome *out, pst_err *err)
{
    *out = SRV_EARLY;
    int rc = srv_shard_check_range(sh, off, len, err);
    if (rc)
        return rc;
    /* Worker 0 sends the ranges in order over one connection and sends again those not
     * acknowledged: one stream of one unit (proto/dlv.h), whose floats set so far are
     * [base, base + init_floats). A range before that point is a repeat, one after it
     * follows a lost one. Counting only the range that continues the prefix keeps a
     * repeat from counting for one never sent. */
    dlv_stream init = {.unit = 0, .taken = sh->init_floats, .next = sh->init_floats};
    dlv_verdict v = dlv_stream_check(&init, 0, off - sh->base, 0);
    if (v == DLV_REPEAT)
        *out = SRV_REPEAT;
    if (v != DLV_TAKE)
        return PST_OK;
    uint64_t bad = first_nonfinite(w, len);
    if (bad < len)
        return pst_err_set(err, PST_ERR_PEER, "INIT: weight %llu is not finite",
                           (unsigned long long)(off + bad));
    memcpy(sh->w + (off - sh->base), w, (size_t)len * sizeof(float));
    sh->init_floats += len;
    if (sh->init_floats == sh->len && (rc = build_mask(sh, err)))
        return rc;
    *out = SRV_APPLIED;
    return PST_OK;
}

static int64_t min_live_clock(const srv_shard *sh)
{
    int64_t m = INT64_MAX;
    for (int i = 0; i < sh->nworkers; i++)
        if (sh->wk[i].live && sh->wk[i].rx.unit < m)
            m = sh->wk[i].rx.unit;
    return m;
}

/* bsp: once every live worker has pushed agg_clock, apply the mean of the gradients:
 *   w <- update(w, (1/K) sum_k g_k),  K = gradients summed (a worker that finished after
 *   pushing this clock still counts; one that finished before does not). */
static void bsp_maybe_apply(srv_shard *sh)
{
    if (sh->cons != CFG_CONS_BSP || sh->agg_steps == 0)
        return;
    if (sh->nlive > 0 && min_live_clock(sh) <= sh->agg_clock)
        return; /* a live worker still owes this clock's gradient */
    if (sh->agg_count == 0) {
        /* Every step of the clock was skipped: the clock passes without an update. */
        sh->agg_steps = 0;
        sh->agg_dirty = 0; /* agg is all zeros: gradients are staged, summed at apply */
        sh->agg_clock++;
        return;
    }
    if (sh->stage)
        for (int k = 0; k < sh->nworkers; k++) {
            if (!sh->contrib[k])
                continue;
            const float *restrict g = sh->stage[k];
            float *restrict a = sh->agg;
            for (uint64_t i = 0; i < sh->len; i++)
                a[i] += g[i];
            sh->contrib[k] = 0;
        }
    if (sh->prev) {
        memcpy(sh->prev, sh->w, (size_t)sh->len * sizeof(float));
        sh->prev_clock = sh->agg_clock;
    }
    float inv = 1.0f / (float)sh->agg_count;
    if (sh->agg_count > 1)
        for (uint64_t i = 0; i < sh->len; i++)
            sh->agg[i] *= inv;
    opt_tick(sh->st);
    int64_t t = opt_state_step(sh->st) - 1;
    apply(sh, sh->w, sh->agg, 0, sh->len, t, opt_lr_at(&sh->opt, t));
    if (sh->state) /* the state groups' mean values (ps/state.h) */
        srv_state_set(sh->state, sh->w, sh->agg, 0, sh->len);
    memset(sh->agg, 0, (size_t)sh->len * sizeof(float));
    sh->agg_dirty = 0;
    sh->agg_count = 0;
    sh->agg_steps = 0;
    sh->agg_clock++;
    sh->stats.updates++;
}

/* ---- Update groups (fine-tuning) --------------------------------------------------- */

/* Whether group i is frozen: never updated, never pushed (state groups are pushed). */
static int group_frozen(const srv_shard *sh, int i)
{
    return !(sh->groups[i].lr_mult > 0.0f) && !sh->gstate[i];
}

/* pos, or the end of the frozen ranges that start at it (shard coordinates). */
static uint64_t skip_frozen(const srv_shard *sh, uint64_t pos)
{
    for (int i = 0; i < sh->ngroups; i++) {
        const opt_group *g = &sh->groups[i];
        if (g->offset + g->len <= pos)
            continue;
        if (g->offset > pos || !group_frozen(sh, i))
            break;
        pos = g->offset + g->len;
    }
    return pos;
}

/* Whether [lo, lo + n) (shard coordinates) holds a frozen float. */
static int frozen_within(const srv_shard *sh, uint64_t lo, uint64_t n)
{
    for (int i = 0; i < sh->ngroups; i++) {
        const opt_group *g = &sh->groups[i];
        if (group_frozen(sh, i) && g->offset < lo + n && lo < g->offset + g->len)
            return 1;
    }
    return 0;
}

int srv_shard_set_groups(srv_shard *sh, const uint64_t *offsets, const float *mults,
                         const unsigned char *state, int n, pst_err *err)
{
    if (sh->stats.pushes > 0)
        return pst_err_set(err, PST_ERR_STATE, "shard: update groups after the first push");
    if (n < 0 || (n > 0 && (offsets[0] > sh->base || offsets[n] < sh->base + sh->len)))
        return pst_err_set(err, PST_ERR_ARG,
                           "shard: %d update groups do not cover the shard "
                           "[%llu, %llu)",
                           n, (unsigned long long)sh->base,
                           (unsigned long long)(sh->base + sh->len));
    opt_group *gs = NULL;
    unsigned char *gst = NULL;
    if (n > 0 && (!(gs = malloc(sizeof *gs * (size_t)n)) || !(gst = calloc((size_t)n, 1)))) {
        free(gs);
        return pst_err_set(err, PST_ERR_NOMEM, "shard: out of memory");
    }
    int k = 0;
    uint64_t trainable = 0, end = sh->base + sh->len;
    for (int i = 0; i < n; i++) {
        int st = state && state[i];
        if (offsets[i + 1] <= offsets[i] || !(mults[i] >= 0.0f) || (st && mults[i] != 0.0f)) {
            free(gs);
            free(gst);
            return pst_err_set(err, PST_ERR_ARG,
                               "shard: update group %d is empty or has "
                               "multiplier %g%s",
                               i, (double)mults[i], st ? " (a state group's is 0)" : "");
        }
        uint64_t lo = offsets[i] > sh->base ? offsets[i] : sh->base;
        uint64_t hi = offsets[i + 1] < end ? offsets[i + 1] : end;
        if (lo >= hi)
            continue;
        gst[k] = (unsigned char)st;
        gs[k++] = (opt_group){(size_t)(lo - sh->base), (size_t)(hi - lo), mults[i]};
        /* A step pushes the trainable floats and the state's values. */
        if (mults[i] > 0.0f || st)
            trainable += hi - lo;
    }
    free(sh->groups);
    free(sh->gstate);
    sh->groups = gs;
    sh->gstate = gst;
    sh->ngroups = k;
    sh->trainable = n > 0 ? trainable : sh->len;
    sh->first = skip_frozen(sh, 0);
    srv_state_destroy(sh->state);
    return srv_state_create(&sh->state, sh->groups, sh->gstate, k, sh->nworkers, err);
}

uint64_t srv_shard_trainable(const srv_shard *sh) { return sh->trainable; }

/* A taken chunk's floats: staged (bsp, several workers), summed (bsp, one) or applied at
 * once (ssp/asp, bsp direct); a NaN/Inf chunk under policy skip adds nothing. */
static int add_chunk(srv_shard *sh, int worker, uint64_t lo, const float *g, uint64_t len, int skip,
                     pst_err *err)
{
    /* bsp with one live worker (direct): applied as it arrives, as ssp/asp do, instead of
     * summed into agg and applied at the end: no agg pass, no memset, no update pass after
     * the last chunk, and the same floats as (0 + g) applied once. Only while agg holds no
     * partial sum; a worker rejoining midway starts at the next clock (worker_rejoin).
     * Pulls of the next clock still wait for the whole push (pull_ready). */
    if (skip) {
        /* nonfinite skip: taken (the step goes on) but not applied; with chunks applied
         * as they arrive, only this chunk is left out. */
    } else if (sh->cons == CFG_CONS_BSP && !sh->direct && sh->stage) {
        if (!sh->stage[worker] && !(sh->stage[worker] = alloc_floats(sh->len)))
            return pst_err_set(err, PST_ERR_NOMEM, "push from worker %d: out of memory", worker);
        sh->agg_dirty = 1;
        memcpy(sh->stage[worker] + lo, g, (size_t)len * sizeof(float));
    } else if (sh->cons == CFG_CONS_BSP && !sh->direct) {
        assert(sh->agg);
        sh->agg_dirty = 1;
        float *restrict a = sh->agg + lo;
        for (uint64_t i = 0; i < len; i++)
            a[i] += g[i];
    } else {
        /* ssp/asp (or bsp applied directly, where tau is 0 and nothing is corrected). */
        const worker_state *ws = &sh->wk[worker];
        int64_t t = opt_state_step(sh->st) - 1;
        float lr = opt_lr_at(&sh->opt, t);
        const float *v = g; /* the state's values, whatever correction g gets */
        if (sh->staleness_lr)
            lr = srv_async_lr(lr, ws->tau);
        if (sh->dc_lambda > 0.0f && ws->read_updates >= 0) {
            srv_async_dc(sh->gdc + lo, g, sh->w + lo, sh->bak[worker] + lo, sh->ms + lo,
                         (size_t)len, sh->dc_lambda);
            g = sh->gdc + lo;
        }
        apply(sh, sh->w + lo, g, (uint64_t)lo, (uint64_t)len, t, lr);
        /* State: bsp's lone worker's values are the clock's mean; ssp/asp average the
         * workers' latest (ps/state.h). */
        if (sh->state && sh->cons == CFG_CONS_BSP)
            srv_state_set(sh->state, sh->w + lo, v, lo, len);
        else if (sh->state)
            return srv_state_report(sh->state, worker, sh->w, v, lo, len, err);
    }
    return PST_OK;
}

/* The worker's step is whole here (its stream moved to the next clock). */
static void step_complete(srv_shard *sh, int worker)
{
    worker_state *ws = &sh->wk[worker];
    if (sh->cons == CFG_CONS_BSP && sh->direct)
        sh->agg_clock++; /* applied already */
    else if (sh->cons == CFG_CONS_BSP) {
        /* A skipped step (NaN/Inf) leaves the mean: K counts the others. */
        sh->agg_steps++;
        if (!ws->skip) {
            if (sh->contrib)
                sh->contrib[worker] = 1;
            sh->agg_count++;
        }
        bsp_maybe_apply(sh);
    }
}

int srv_shard_push(srv_shard *sh, int worker, int64_t clock, uint64_t off, const float *g,
                   uint64_t len, srv_outcome *out, pst_err *err)
{
    *out = SRV_EARLY;
    if (worker < 0 || worker >= sh->nworkers)
        return pst_err_set(err, PST_ERR_PEER, "push from unknown worker %d", worker);
    int rc = srv_shard_check_range(sh, off, len, err);
    if (rc)
        return rc;
    worker_state *ws = &sh->wk[worker];
    /* A worker that left sending again a step taken whole (the copy sent again crossed its
     * ACK, and was held up behind DONE): a repeat, not a refusal the worker would die of.
     * Nothing is taken, so this is safe for a lost worker too (the server refuses those
     * before they get here). */
    if (!ws->live && clock < ws->rx.unit) {
        *out = SRV_REPEAT;
        sh->stats.repeats++;
        return PST_OK;
    }
    if (!ws->live)
        return pst_err_set(err, PST_ERR_PEER,
                           "push from worker %d, which is no longer in the "
                           "job (finished, or lost and not rejoined)",
                           worker);
    if (!srv_shard_initialized(sh))
        return pst_err_set(err, PST_ERR_PEER, "push before the weights were initialised");
    if (frozen_within(sh, off - sh->base, len))
        return pst_err_set(err, PST_ERR_PEER,
                           "push of [%llu, %llu) from worker %d covers frozen parameters",
                           (unsigned long long)off, (unsigned long long)(off + len), worker);
    /* Chunks of one step leave in order over one connection and skip only frozen ranges,
     * so each starts where the previous one ended (past any frozen range there): the
     * worker's pushes are one ordered stream (proto/dlv.h), a step one unit. What was
     * taken already -- an earlier clock, or before that point -- is a repeat; a chunk
     * after a gap, or of a later clock, waits for what is missing to come again. The
     * count of trainable floats tells when the step is complete. */
    dlv_verdict v = dlv_stream_check(&ws->rx, clock, off - sh->base, sh->first);
    if (v == DLV_REPEAT) {
        *out = SRV_REPEAT;
        sh->stats.repeats++;
        return PST_OK;
    }
    /* bsp workers pull clock c (which waits for everyone's c - 1) before pushing it, so a
     * push ahead of the clock being assembled can only be a rejoined worker that took the
     * clock of a server further on: it waits here until this one catches up. */
    if (v == DLV_GAP || (sh->cons == CFG_CONS_BSP && clock != sh->agg_clock)) {
        sh->stats.early++;
        return PST_OK;
    }
    uint64_t bad = first_nonfinite(g, len);
    int skip = bad < len;
    if (skip) {
        sh->stats.rejected_nonfinite++;
        if (sh->nonfinite == CFG_NONFINITE_REJECT)
            return pst_err_set(err, PST_ERR_PEER,
                               "push from worker %d: gradient %llu is %g (rejected; "
                               "cluster.nonfinite: skip drops such steps instead)",
                               worker, (unsigned long long)(off + bad), (double)g[bad]);
    }
    uint64_t lo = off - sh->base;
    if (ws->rx.taken == 0)
        ws->skip = 0;
    ws->skip |= skip;
    /* bsp: the mean of one gradient is that gradient, so a lone live worker's clock is
     * applied as it arrives (see below). Decided at a clock's first chunk. */
    if (sh->cons == CFG_CONS_BSP && ws->rx.taken == 0)
        sh->direct = sh->nlive == 1 && !sh->agg_dirty;
    int applied_now = sh->cons != CFG_CONS_BSP || sh->direct;
    /* ssp/asp (and bsp applied directly): one optimizer step per worker step, taken with
     * its first chunk, skipped or not, so the step count and schedule stay those of the
     * steps taken. */
    if (applied_now && ws->rx.taken == 0) {
        ws->tau = ws->read_updates >= 0 ? (int64_t)sh->stats.updates - ws->read_updates : 0;
        sh->prev_clock = -1; /* the weights change chunk by chunk: no copy of them */
        opt_tick(sh->st);
        sh->stats.updates++;
    }
    if ((rc = add_chunk(sh, worker, lo, g, len, skip, err)))
        return rc;
    sh->stats.pushes++;
    *out = SRV_APPLIED;
    if (dlv_stream_took(&ws->rx, len, skip_frozen(sh, lo + len), sh->trainable))
        step_complete(sh, worker);
    return PST_OK;
}

int srv_shard_pull_ready(const srv_shard *sh, int worker, int64_t clock, int final)
{
    (void)worker;
    if (!srv_shard_initialized(sh))
        return 0;
    if (final)
        return sh->nlive == 0;
    if (sh->nlive == 0)
        return 1;
    /* bsp (s = 0): min_clock >= c means every live worker pushed c - 1, and the push that
     * completed it applied the mean; the partial sum of clock c lives in agg, not w. */
    int64_t m = min_live_clock(sh);
    return clock - m <= sh->staleness;
}

int64_t srv_shard_clock_gap(const srv_shard *sh, int worker)
{
    if (sh->nlive == 0 || worker < 0 || worker >= sh->nworkers)
        return 0;
    int64_t gap = sh->wk[worker].rx.unit - min_live_clock(sh);
    return gap > 0 ? gap : 0;
}

void srv_shard_note_served(srv_shard *sh, int worker)
{
    int64_t gap = srv_shard_clock_gap(sh, worker);
    if (gap > sh->stats.max_clock_gap)
        sh->stats.max_clock_gap = gap;
}

int srv_shard_set_async(srv_shard *sh, int staleness_lr, float dc_lambda, pst_err *err)
{
    if (sh->cons == CFG_CONS_BSP)
        return PST_OK; /* no gradient is stale */
    if (!(dc_lambda >= 0.0f) || !isfinite(dc_lambda))
        return pst_err_set(err, PST_ERR_ARG, "delay compensation: lambda0 %g", (double)dc_lambda);
    sh->staleness_lr = staleness_lr;
    if (dc_lambda > 0.0f && !sh->bak) {
        if (!(sh->bak = calloc((size_t)sh->nworkers, sizeof *sh->bak)) ||
            !(sh->ms = alloc_floats(sh->len)) || !(sh->gdc = alloc_floats(sh->len)))
            goto nomem;
        for (int k = 0; k < sh->nworkers; k++)
            if (!(sh->bak[k] = alloc_floats(sh->len)))
                goto nomem;
    }
    sh->dc_lambda = dc_lambda;
    return PST_OK;
nomem:
    return pst_err_set(err, PST_ERR_NOMEM,
                       "delay compensation: out of memory for %d + 2 copies of %llu weights",
                       sh->nworkers, (unsigned long long)sh->len);
}

void srv_shard_note_read(srv_shard *sh, int worker, uint64_t off, uint64_t len)
{
    if (sh->cons == CFG_CONS_BSP || worker < 0 || worker >= sh->nworkers)
        return;
    assert(off >= sh->base && off - sh->base + len <= sh->len);
    sh->wk[worker].read_updates = (int64_t)sh->stats.updates;
    if (sh->bak)
        memcpy(sh->bak[worker] + (off - sh->base), sh->w + (off - sh->base),
               (size_t)len * sizeof(float));
}

const float *srv_shard_weights(const srv_shard *sh, uint64_t off)
{
    assert(off >= sh->base && (off - sh->base < sh->len || (sh->len == 0 && off == sh->base)));
    return sh->w + (off - sh->base);
}

const float *srv_shard_weights_of(const srv_shard *sh, int64_t clock, uint64_t off)
{
    assert(off >= sh->base && (off - sh->base < sh->len || (sh->len == 0 && off == sh->base)));
    if (sh->prev && sh->prev_clock >= 0 && clock == sh->prev_clock &&
        sh->prev_clock == sh->agg_clock - 1)
        return sh->prev + (off - sh->base);
    return sh->w + (off - sh->base);
}

void srv_shard_worker_done(srv_shard *sh, int worker)
{
    if (worker < 0 || worker >= sh->nworkers || !sh->wk[worker].live)
        return;
    sh->wk[worker].live = 0;
    sh->nlive--;
    /* Workers send DONE after their last complete push, so nothing of theirs is pending;
     * bsp may now apply a clock that waited only for them. */
    bsp_maybe_apply(sh);
}

void srv_shard_worker_lost(srv_shard *sh, int worker)
{
    if (worker < 0 || worker >= sh->nworkers || !sh->wk[worker].live)
        return;
    worker_state *ws = &sh->wk[worker];
    /* Part of a step in stage[worker] is simply not added (contrib is set only for a whole
     * step); ssp/asp applied each chunk as it came, which asynchronous training tolerates. */
    /* A lone worker's clock applied chunk by chunk cannot be taken back: the part in the
     * weights stands as that clock's update, and the clock passes. */
    if (sh->cons == CFG_CONS_BSP && sh->direct && ws->rx.taken > 0 &&
        ws->rx.unit == sh->agg_clock) {
        ws->rx.unit++;
        sh->agg_clock++;
    }
    ws->live = 0;
    ws->rx.taken = 0;
    sh->nlive--;
    sh->stats.lost_workers++;
    bsp_maybe_apply(sh);
}

int64_t srv_shard_worker_rejoin(srv_shard *sh, int worker)
{
    assert(worker >= 0 && worker < sh->nworkers);
    worker_state *ws = &sh->wk[worker];
    int64_t clock;
    if (sh->cons == CFG_CONS_BSP) {
        /* A lone worker's clock applied chunk by chunk (direct) cannot take a second
         * gradient: the newcomer starts at the next one. */
        int midway = 0;
        for (int i = 0; i < sh->nworkers; i++)
            midway |= i != worker && sh->wk[i].live && sh->wk[i].rx.taken > 0;
        clock = sh->agg_clock + (sh->direct && midway ? 1 : 0);
        /* Its previous incarnation's whole step of this clock stays in the mean. */
        if (sh->contrib && sh->contrib[worker])
            clock = sh->agg_clock + 1;
    } else {
        int64_t m = INT64_MAX;
        for (int i = 0; i < sh->nworkers; i++)
            if (i != worker && sh->wk[i].live && sh->wk[i].rx.unit < m)
                m = sh->wk[i].rx.unit;
        /* Never behind its previous incarnation: those steps are in the weights. */
        clock = m == INT64_MAX || m < ws->rx.unit ? ws->rx.unit : m;
    }
    if (!ws->live)
        sh->nlive++;
    *ws = (worker_state){.live = 1, .rx = {.unit = clock}, .read_updates = -1};
    sh->stats.rejoins++;
    return clock;
}

int srv_shard_live_workers(const srv_shard *sh) { return sh->nlive; }
int srv_shard_worker_live(const srv_shard *sh, int worker)
{
    return worker >= 0 && worker < sh->nworkers && sh->wk[worker].live;
}
int srv_shard_all_done(const srv_shard *sh) { return sh->nlive == 0; }

int64_t srv_shard_worker_clock(const srv_shard *sh, int worker)
{
    assert(worker >= 0 && worker < sh->nworkers);
    return sh->wk[worker].rx.unit;
}

void srv_shard_get_stats(const srv_shard *sh, srv_shard_stats *st) { *st = sh->stats; }

/* ---- Checkpoints ------------------------------------------------------------------------- */

opt_state *srv_shard_opt(srv_shard *sh) { return sh->st; }

int srv_shard_applied(const srv_shard *sh, int worker, int64_t clock)
{
    assert(worker >= 0 && worker < sh->nworkers);
    if (sh->cons == CFG_CONS_BSP)
        return sh->agg_clock >= clock;
    return sh->wk[worker].rx.unit >= clock && sh->wk[worker].rx.taken == 0;
}

int64_t srv_shard_clock(const srv_shard *sh)
{
    if (sh->cons == CFG_CONS_BSP)
        return sh->agg_clock;
    int64_t m = 0;
    for (int i = 0; i < sh->nworkers; i++)
        if (sh->wk[i].rx.unit > m)
            m = sh->wk[i].rx.unit;
    return m;
}

int srv_shard_restore(srv_shard *sh, const float *w, int64_t clock, pst_err *err)
{
    if (sh->init_floats != 0)
        return pst_err_set(err, PST_ERR_STATE, "shard: restore after the weights were set");
    if (clock < 0)
        return pst_err_set(err, PST_ERR_ARG, "shard: restore to clock %lld", (long long)clock);
    uint64_t bad = first_nonfinite(w, sh->len);
    if (bad < sh->len)
        return pst_err_set(err, PST_ERR_DATA, "shard: restored weight %llu is not finite",
                           (unsigned long long)(sh->base + bad));
    memcpy(sh->w, w, (size_t)sh->len * sizeof(float));
    sh->init_floats = sh->len;
    if (sh->state)
        srv_state_reset(sh->state);
    int rc = build_mask(sh, err);
    if (rc)
        return rc;
    /* Every worker restarts at the clock (one already done says DONE at once); bsp
     * assembles that clock next, from a clean sum. */
    for (int i = 0; i < sh->nworkers; i++)
        sh->wk[i] = (worker_state){.live = 1, .rx = {.unit = clock}, .read_updates = -1};
    sh->nlive = sh->nworkers;
    sh->agg_clock = clock;
    sh->agg_count = 0;
    sh->agg_steps = 0;
    if (sh->contrib)
        memset(sh->contrib, 0, (size_t)sh->nworkers);
    sh->agg_dirty = 0;
    sh->direct = 0;
    sh->prev_clock = -1;
    return PST_OK;
}

/* ---- Recovery -------------------------------------------------------------------------- */

void srv_shard_begin_recovery(srv_shard *sh)
{
    if (!sh->rclock && !(sh->rclock = malloc(sizeof *sh->rclock * (size_t)sh->nworkers)))
        return; /* without memory, no recovery: the workers' clocks stay the checkpoint's */
    for (int k = 0; k < sh->nworkers; k++)
        sh->rclock[k] = -1;
    sh->recovering = 1;
}

int srv_shard_recovering(const srv_shard *sh) { return sh->recovering; }

int srv_shard_note_clock(srv_shard *sh, int worker, int64_t clock)
{
    if (!sh->recovering)
        return 0;
    if (worker >= 0 && worker < sh->nworkers && clock > sh->rclock[worker])
        sh->rclock[worker] = clock;
    for (int k = 0; k < sh->nworkers; k++)
        if (sh->wk[k].live && sh->rclock[k] < 0)
            return 0;
    return 1;
}

int64_t srv_shard_end_recovery(srv_shard *sh, int64_t *lost)
{
    if (lost)
        memset(lost, 0, sizeof *lost * (size_t)sh->nworkers);
    if (!sh->recovering)
        return 0;
    int64_t steps = 0;
    /* A worker that has not said where it is takes the slowest known clock. */
    int64_t lo = INT64_MAX, before = srv_shard_clock(sh);
    for (int k = 0; k < sh->nworkers; k++)
        if (sh->wk[k].live && sh->rclock[k] >= 0 && sh->rclock[k] < lo)
            lo = sh->rclock[k];
    if (lo == INT64_MAX)
        lo = before;
    for (int k = 0; k < sh->nworkers; k++) {
        worker_state *ws = &sh->wk[k];
        if (!ws->live)
            continue;
        int64_t c = sh->rclock[k] >= 0 ? sh->rclock[k] : lo;
        if (c > ws->rx.unit) {
            /* ssp/asp: each of the worker's steps was an update of its own */
            steps += c - ws->rx.unit;
            if (lost)
                lost[k] = c - ws->rx.unit;
        }
        *ws = (worker_state){.live = 1, .rx = {.unit = c > ws->rx.unit ? c : ws->rx.unit}};
    }
    if (sh->cons == CFG_CONS_BSP) {
        sh->agg_clock = min_live_clock(sh) == INT64_MAX ? before : min_live_clock(sh);
        sh->agg_count = sh->agg_steps = 0;
        sh->agg_dirty = 0;
        sh->direct = 0;
        if (sh->contrib)
            memset(sh->contrib, 0, (size_t)sh->nworkers);
        if (sh->agg)
            memset(sh->agg, 0, (size_t)sh->len * sizeof(float));
        sh->prev_clock = -1;
    }
    sh->recovering = 0;
    if (sh->cons != CFG_CONS_BSP)
        return steps;
    /* bsp: one update per clock, the mean of every worker's step */
    int64_t after = srv_shard_clock(sh);
    return after > before ? after - before : 0;
}
