/* ps/sparse.c -- see sparse.h. The sparse update and consistency rules of a server. */
#include "sparse.h"

#include "core/tables.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One worker's push of one table, kept until its clock is applied (bsp) or merged at once
 * (ssp/asp). */
typedef struct {
    uint64_t *keys; /* (n) */
    float *grads;   /* (n, d) */
    size_t n, cap;
    int taken; /* bsp: its step of the clock being assembled was taken (not skipped) */
} stage_buf;

typedef struct {
    char name[32];
    spt_table *t;
    int dim;
    float lr;         /* the rule's learning rate; 0: frozen (ticks, no updates) */
    int64_t applied;  /* bsp: clocks applied */
    int64_t *wclock;  /* (W) steps of each worker taken for this table */
    stage_buf *stage; /* (W) */
    int steps;        /* bsp: workers' steps of the clock received (skipped ones included) */
} table_state;

/* A gradient row in the merge: sorted by key, then source (rank), then position. */
typedef struct {
    uint64_t key;
    uint32_t src;
    uint32_t row;
} entry;

struct srv_sparse {
    int ntables;
    table_state *tab;
    uint32_t rank, nservers;
    cfg_consistency cons;
    int64_t staleness;
    int nworkers, nlive;
    unsigned char *live;    /* (W) */
    const stage_buf **bufs; /* (W) bsp: the pushes of a clock being merged */
    cfg_nonfinite nonfinite;
    srv_sparse_stats st;
    /* Merge scratch, grown as needed. */
    entry *ent;
    size_t cap_ent;
    uint64_t *ukeys;
    float *sum;
    size_t cap_u, cap_sum;
};

srv_sparse *srv_sparse_create(const char *const *names, const spt_config *cfgs, int ntables,
                              uint32_t rank, uint32_t nservers, cfg_consistency cons, int staleness,
                              int nworkers, pst_err *err)
{
    if (ntables < 0 || nworkers < 1 || nservers < 1 || rank >= nservers) {
        pst_err_set(err, PST_ERR_ARG, "sparse: %d tables, %d workers, server %u of %u", ntables,
                    nworkers, rank, nservers);
        return NULL;
    }
    srv_sparse *sp = calloc(1, sizeof *sp);
    if (!sp)
        goto nomem;
    sp->ntables = ntables;
    sp->rank = rank;
    sp->nservers = nservers;
    sp->cons = cons;
    sp->staleness = cons == CFG_CONS_BSP   ? 0
                    : cons == CFG_CONS_SSP ? (int64_t)staleness
                                           : INT64_MAX;
    sp->nworkers = sp->nlive = nworkers;
    if (!(sp->live = malloc((size_t)nworkers)) ||
        !(sp->bufs = calloc((size_t)nworkers, sizeof *sp->bufs)) ||
        !(sp->tab = calloc((size_t)(ntables ? ntables : 1), sizeof *sp->tab)))
        goto nomem;
    memset(sp->live, 1, (size_t)nworkers);
    for (int i = 0; i < ntables; i++) {
        table_state *ts = &sp->tab[i];
        if (snprintf(ts->name, sizeof ts->name, "%s", names[i]) >= (int)sizeof ts->name) {
            pst_err_set(err, PST_ERR_ARG, "sparse: table name '%s' is too long", names[i]);
            goto fail;
        }
        if (!(ts->t = spt_create(&cfgs[i], err))) {
            pst_err_prefix(err, "table '%s': ", names[i]);
            goto fail;
        }
        ts->dim = cfgs[i].dim;
        ts->lr = cfgs[i].opt.lr;
        if (!(ts->wclock = calloc((size_t)nworkers, sizeof *ts->wclock)) ||
            !(ts->stage = calloc((size_t)nworkers, sizeof *ts->stage)))
            goto nomem;
    }
    return sp;
nomem:
    pst_err_set(err, PST_ERR_NOMEM, "sparse: out of memory");
fail:
    srv_sparse_destroy(sp);
    return NULL;
}

void srv_sparse_destroy(srv_sparse *sp)
{
    if (!sp)
        return;
    for (int i = 0; sp->tab && i < sp->ntables; i++) {
        table_state *ts = &sp->tab[i];
        spt_destroy(ts->t);
        for (int k = 0; ts->stage && k < sp->nworkers; k++) {
            free(ts->stage[k].keys);
            free(ts->stage[k].grads);
        }
        free(ts->stage);
        free(ts->wclock);
    }
    free(sp->tab);
    free(sp->live);
    free(sp->bufs);
    free(sp->ent);
    free(sp->ukeys);
    free(sp->sum);
    free(sp);
}

void srv_sparse_set_nonfinite(srv_sparse *sp, cfg_nonfinite policy) { sp->nonfinite = policy; }
int srv_sparse_ntables(const srv_sparse *sp) { return sp->ntables; }
const char *srv_sparse_name(const srv_sparse *sp, int table) { return sp->tab[table].name; }
spt_table *srv_sparse_table(srv_sparse *sp, int table) { return sp->tab[table].t; }

int srv_sparse_check(const srv_sparse *sp, uint32_t table, uint32_t dim, const uint64_t *keys,
                     size_t n, pst_err *err)
{
    if (table >= (uint32_t)sp->ntables)
        return pst_err_set(
            err, PST_ERR_PEER, "unknown sparse table %u (the model has %d table(s)%s%s)", table,
            sp->ntables, sp->ntables ? ", the first " : "", sp->ntables ? sp->tab[0].name : "");
    const table_state *ts = &sp->tab[table];
    if ((int)dim != ts->dim)
        return pst_err_set(err, PST_ERR_PEER, "table '%s' has dim %d, the message says %u",
                           ts->name, ts->dim, dim);
    for (size_t i = 0; i < n; i++) {
        uint32_t o = spt_owner(keys[i], sp->nservers);
        if (o != sp->rank)
            return pst_err_set(err, PST_ERR_PEER,
                               "table '%s': key %llu belongs to server %u, not this one (%u)",
                               ts->name, (unsigned long long)keys[i], o, sp->rank);
    }
    return PST_OK;
}

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->src != y->src)
        return x->src < y->src ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return PST_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return PST_ERR_NOMEM;
    *p = q;
    *cap = c;
    return PST_OK;
}

/* Sums the rows of bufs[0..nb) (in that order: rank order) per key, scales by `scale` and
 * applies the result to the table with one spt_push; ties of a key are summed in source
 * order, then position, so the result does not depend on arrival order. */
static int merge_apply(srv_sparse *sp, table_state *ts, const stage_buf *const *bufs, int nb,
                       float scale, pst_err *err)
{
    size_t total = 0;
    for (int b = 0; b < nb; b++)
        total += bufs[b]->n;
    size_t d = (size_t)ts->dim, nu = 0;
    if (total > 0) {
        if (grow((void **)&sp->ent, &sp->cap_ent, total, sizeof *sp->ent) ||
            grow((void **)&sp->ukeys, &sp->cap_u, total, sizeof *sp->ukeys) ||
            grow((void **)&sp->sum, &sp->cap_sum, total * d, sizeof *sp->sum))
            return pst_err_set(err, PST_ERR_NOMEM, "sparse: out of memory merging %zu rows", total);
        size_t e = 0;
        for (int b = 0; b < nb; b++)
            for (size_t i = 0; i < bufs[b]->n; i++)
                sp->ent[e++] = (entry){bufs[b]->keys[i], (uint32_t)b, (uint32_t)i};
        qsort(sp->ent, total, sizeof *sp->ent, cmp_entry);
        for (size_t i = 0; i < total; i++) {
            const entry *x = &sp->ent[i];
            const float *g = bufs[x->src]->grads + (size_t)x->row * d;
            if (nu == 0 || sp->ukeys[nu - 1] != x->key) {
                sp->ukeys[nu] = x->key;
                memcpy(sp->sum + nu * d, g, d * sizeof(float));
                nu++;
            } else {
                float *s = sp->sum + (nu - 1) * d;
                for (size_t j = 0; j < d; j++)
                    s[j] += g[j];
            }
        }
        if (scale != 1.0f)
            for (size_t i = 0; i < nu * d; i++)
                sp->sum[i] *= scale;
    }
    /* As a single process (worker/sparse.c): the table's constant lr, no push when frozen. */
    int rc = nu && ts->lr > 0.0f ? spt_push(ts->t, sp->ukeys, nu, sp->sum, ts->lr, err) : PST_OK;
    if (rc)
        return pst_err_prefix(err, "table '%s': ", ts->name), rc;
    spt_tick(ts->t);
    return PST_OK;
}

static int64_t min_live(const srv_sparse *sp, const table_state *ts)
{
    int64_t m = INT64_MAX;
    for (int k = 0; k < sp->nworkers; k++)
        if (sp->live[k] && ts->wclock[k] < m)
            m = ts->wclock[k];
    return m;
}

/* bsp: once every live worker has pushed the clock being assembled, its mean is applied. */
static int bsp_maybe_apply(srv_sparse *sp, table_state *ts, pst_err *err)
{
    if (sp->cons != CFG_CONS_BSP || ts->steps == 0)
        return PST_OK;
    if (sp->nlive > 0 && min_live(sp, ts) <= ts->applied)
        return PST_OK;
    const stage_buf **bufs = sp->bufs;
    int nb = 0;
    for (int k = 0; k < sp->nworkers; k++)
        if (ts->stage[k].taken)
            bufs[nb++] = &ts->stage[k];
    int rc = PST_OK;
    /* Every step skipped (NaN/Inf): the clock passes without an update, as in the shard. */
    if (nb > 0)
        rc = merge_apply(sp, ts, bufs, nb, nb > 1 ? 1.0f / (float)nb : 1.0f, err);
    for (int k = 0; k < sp->nworkers; k++) {
        ts->stage[k].taken = 0;
        ts->stage[k].n = 0;
    }
    ts->steps = 0;
    ts->applied++;
    return rc;
}

static size_t first_nonfinite(const float *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(g[i]))
            return i;
    return n;
}

int srv_sparse_push(srv_sparse *sp, int worker, int64_t clock, uint32_t table, const uint64_t *keys,
                    size_t n, const float *grads, srv_outcome *out, pst_err *err)
{
    *out = SRV_EARLY;
    if (worker < 0 || worker >= sp->nworkers)
        return pst_err_set(err, PST_ERR_PEER, "sparse push from unknown worker %d", worker);
    if (table >= (uint32_t)sp->ntables)
        return pst_err_set(err, PST_ERR_PEER, "unknown sparse table %u", table);
    table_state *ts = &sp->tab[table];
    if (clock < ts->wclock[worker]) {
        *out = SRV_REPEAT;
        sp->st.repeats++;
        return PST_OK;
    }
    if (!sp->live[worker])
        return pst_err_set(err, PST_ERR_PEER,
                           "sparse push from worker %d, which is no longer in the job", worker);
    if (clock > ts->wclock[worker] || (sp->cons == CFG_CONS_BSP && clock != ts->applied)) {
        sp->st.early++;
        return PST_OK;
    }
    size_t d = (size_t)ts->dim;
    size_t bad = first_nonfinite(grads, n * d);
    int skip = bad < n * d;
    if (skip) {
        sp->st.rejected_nonfinite++;
        if (sp->nonfinite == CFG_NONFINITE_REJECT)
            return pst_err_set(err, PST_ERR_PEER,
                               "sparse push from worker %d: table '%s' key %llu column %zu is "
                               "%g (rejected; cluster.nonfinite: skip drops such steps instead)",
                               worker, ts->name, (unsigned long long)keys[bad / d], bad % d,
                               (double)grads[bad]);
    }
    int rc = PST_OK;
    stage_buf *sb = &ts->stage[worker];
    if (sp->cons == CFG_CONS_BSP) {
        if (!skip && n > 0) {
            if (grow((void **)&sb->keys, &sb->cap, n, sizeof *sb->keys))
                return pst_err_set(err, PST_ERR_NOMEM, "sparse: out of memory staging %zu rows", n);
            float *g = realloc(sb->grads, sb->cap * d * sizeof *g);
            if (!g)
                return pst_err_set(err, PST_ERR_NOMEM, "sparse: out of memory staging %zu rows", n);
            sb->grads = g;
            memcpy(sb->keys, keys, n * sizeof *keys);
            memcpy(sb->grads, grads, n * d * sizeof *grads);
        }
        sb->n = skip ? 0 : n;
        sb->taken = !skip;
        ts->steps++;
        ts->wclock[worker]++;
        rc = bsp_maybe_apply(sp, ts, err);
    } else {
        /* ssp/asp: each push is an update of its own (a skipped one changes nothing). */
        ts->wclock[worker]++;
        if (!skip) {
            stage_buf one = {.keys = (uint64_t *)keys, .grads = (float *)grads, .n = n};
            const stage_buf *bufs[1] = {&one};
            rc = merge_apply(sp, ts, bufs, 1, 1.0f, err);
        }
    }
    if (rc)
        return rc;
    sp->st.pushes++;
    sp->st.keys_in += n;
    *out = SRV_APPLIED;
    return PST_OK;
}

int srv_sparse_pull_ready(const srv_sparse *sp, uint32_t table, int64_t clock)
{
    if (table >= (uint32_t)sp->ntables || sp->nlive == 0)
        return 1;
    const table_state *ts = &sp->tab[table];
    /* bsp: every live worker pushed clock - 1 and its mean is applied (applied >= clock). */
    if (sp->cons == CFG_CONS_BSP)
        return ts->applied >= clock;
    return clock - min_live(sp, ts) <= sp->staleness;
}

int srv_sparse_pull(srv_sparse *sp, uint32_t table, const uint64_t *keys, size_t n, int train,
                    float *rows, pst_err *err)
{
    table_state *ts = &sp->tab[table];
    if (!train)
        spt_peek(ts->t, keys, n, rows); /* evaluation: creates, stamps and counts nothing */
    else {
        int rc = spt_pull(ts->t, keys, n, rows, err);
        if (rc)
            return pst_err_prefix(err, "table '%s': ", ts->name), rc;
    }
    sp->st.keys_out += n;
    return PST_OK;
}

void srv_sparse_worker_done(srv_sparse *sp, int worker)
{
    if (worker < 0 || worker >= sp->nworkers || !sp->live[worker])
        return;
    sp->live[worker] = 0;
    sp->nlive--;
    for (int i = 0; i < sp->ntables; i++) {
        pst_err e = {0};
        /* Out of memory here leaves the clock unapplied; the next push tries again. */
        (void)bsp_maybe_apply(sp, &sp->tab[i], &e);
    }
}

int64_t srv_sparse_worker_clock(const srv_sparse *sp, int worker, uint32_t table)
{
    return sp->tab[table].wclock[worker];
}

int64_t srv_sparse_clock(const srv_sparse *sp, uint32_t table)
{
    const table_state *ts = &sp->tab[table];
    if (sp->cons == CFG_CONS_BSP)
        return ts->applied;
    int64_t m = 0;
    for (int k = 0; k < sp->nworkers; k++)
        if (ts->wclock[k] > m)
            m = ts->wclock[k];
    return m;
}

void srv_sparse_restore_clock(srv_sparse *sp, int64_t clock)
{
    memset(sp->live, 1, (size_t)sp->nworkers);
    sp->nlive = sp->nworkers;
    for (int i = 0; i < sp->ntables; i++) {
        table_state *ts = &sp->tab[i];
        ts->applied = clock;
        ts->steps = 0;
        for (int k = 0; k < sp->nworkers; k++) {
            ts->wclock[k] = clock;
            ts->stage[k].n = 0;
            ts->stage[k].taken = 0;
        }
    }
}

void srv_sparse_get_stats(const srv_sparse *sp, srv_sparse_stats *st)
{
    *st = sp->st;
    memset(&st->tables, 0, sizeof st->tables);
    for (int i = 0; i < sp->ntables; i++) {
        spt_stats s;
        spt_stats_get(sp->tab[i].t, &s);
        st->tables.rows += s.rows;
        st->tables.admitted += s.admitted;
        st->tables.pending += s.pending;
        st->tables.refused += s.refused;
        st->tables.evicted += s.evicted;
        st->tables.dropped += s.dropped;
        st->tables.bytes += s.bytes;
        st->tables.filter_bytes += s.filter_bytes;
        if (s.step > st->tables.step)
            st->tables.step = s.step;
    }
}

/* Table i's learning rate as a single process takes it (worker/sparse.c): the sparse
 * rule's lr times the lr multiplier of the first layer reading it; 0 for a frozen one. */
static void table_lrs(const cfg_job *job, const ml_tables *tabs, float *lr, pst_err *err)
{
    const ml_model_spec *spec = &job->model.spec;
    int n = ml_tables_count(tabs);
    for (int i = 0; i < n; i++)
        lr[i] = -1.0f;
    for (unsigned l = 0; l < spec->nlayers; l++) {
        const ml_layer_spec *L = &spec->layers[l];
        ml_layer y = {.spec = L, .nin = 1};
        if (!L->ops->sparse || L->ops->shape(&y, err))
            continue;
        char base[ML_NAME_MAX + 1];
        ml_layer_spec_name(spec, l, base, sizeof base);
        const char *name = y.table && y.table[0] ? y.table : base;
        for (int i = 0; i < n; i++)
            if (lr[i] < 0 && strcmp(ml_tables_name(tabs, i), name) == 0)
                lr[i] = L->trainable ? job->sparse.opt.lr * L->lr_mult : 0.0f;
    }
}

int srv_sparse_create_for_job(srv_sparse **out, const cfg_job *job, uint32_t rank,
                              uint32_t nservers, int nworkers, pst_err *err)
{
    *out = NULL;
    ml_tables *tabs = ml_tables_create(err);
    if (!tabs)
        return err->code;
    const char **names = NULL;
    spt_config *cfgs = NULL;
    float *lrs = NULL;
    int rc = ml_tables_of_spec(tabs, &job->model.spec, err);
    int n = rc ? 0 : ml_tables_count(tabs);
    if (rc || n == 0)
        goto cleanup;
    names = calloc((size_t)n, sizeof *names);
    cfgs = calloc((size_t)n, sizeof *cfgs);
    lrs = calloc((size_t)n, sizeof *lrs);
    if (!names || !cfgs || !lrs) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "sparse: out of memory");
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        names[i] = ml_tables_name(tabs, i);
        cfg_sparse_table(job, names[i], ml_tables_dim(tabs, i), ml_tables_init_scale(tabs, i),
                         &cfgs[i]);
    }
    table_lrs(job, tabs, lrs, err);
    if (!(*out = srv_sparse_create(names, cfgs, n, rank, nservers, job->cluster.consistency,
                                   job->cluster.staleness, nworkers, err)))
        rc = err->code;
    else {
        srv_sparse_set_nonfinite(*out, job->cluster.nonfinite);
        for (int i = 0; i < n; i++)
            (*out)->tab[i].lr = lrs[i];
    }
cleanup:
    free(lrs);
    free(names);
    free(cfgs);
    ml_tables_destroy(tabs);
    return rc;
}
