/* ps/state.c -- see state.h. */
#include "state.h"

#include <stdlib.h>
#include <string.h>

struct srv_state {
    int n, nworkers;
    uint64_t *off, *len; /* (n) the ranges, shard coordinates */
    uint64_t *idx;       /* (n) index of range i's first float among the S state floats */
    uint64_t nfloats;    /* S */
    float *last;         /* (W, S) each worker's latest values; NULL until the first report */
};

int srv_state_create(srv_state **out, const opt_group *groups, const unsigned char *state, int n,
                     int nworkers, pst_err *err)
{
    *out = NULL;
    int ns = 0;
    for (int i = 0; i < n; i++)
        ns += state[i] != 0;
    if (ns == 0)
        return PST_OK;
    srv_state *st = calloc(1, sizeof *st);
    if (!st || !(st->off = malloc(sizeof *st->off * (size_t)ns)) ||
        !(st->len = malloc(sizeof *st->len * (size_t)ns)) ||
        !(st->idx = malloc(sizeof *st->idx * (size_t)ns))) {
        srv_state_destroy(st);
        return pst_err_set(err, PST_ERR_NOMEM, "shard: out of memory for %d state ranges", ns);
    }
    st->nworkers = nworkers;
    for (int i = 0; i < n; i++)
        if (state[i]) {
            st->off[st->n] = groups[i].offset;
            st->len[st->n] = groups[i].len;
            st->idx[st->n++] = st->nfloats;
            st->nfloats += groups[i].len;
        }
    *out = st;
    return PST_OK;
}

void srv_state_destroy(srv_state *st)
{
    if (!st)
        return;
    free(st->off);
    free(st->len);
    free(st->idx);
    free(st->last);
    free(st);
}

/* The part [*a, *b) of range i inside [lo, lo + n); 0 when empty. */
static int overlap(const srv_state *st, int i, uint64_t lo, uint64_t n, uint64_t *a, uint64_t *b)
{
    *a = st->off[i] > lo ? st->off[i] : lo;
    *b = st->off[i] + st->len[i] < lo + n ? st->off[i] + st->len[i] : lo + n;
    return *a < *b;
}

int srv_state_within(const srv_state *st, uint64_t lo, uint64_t n)
{
    uint64_t a, b;
    for (int i = 0; i < st->n; i++)
        if (overlap(st, i, lo, n, &a, &b))
            return 1;
    return 0;
}

void srv_state_set(const srv_state *st, float *w, const float *v, uint64_t lo, uint64_t n)
{
    uint64_t a, b;
    for (int i = 0; i < st->n; i++)
        if (overlap(st, i, lo, n, &a, &b))
            memcpy(w + (a - lo), v + (a - lo), (size_t)(b - a) * sizeof(float));
}

int srv_state_report(srv_state *st, int worker, float *w, const float *v, uint64_t lo, uint64_t n,
                     pst_err *err)
{
    const uint64_t S = st->nfloats;
    const int W = st->nworkers;
    if (!st->last) {
        if (!(st->last = malloc(sizeof *st->last * (size_t)(S ? S : 1) * (size_t)W)))
            return pst_err_set(err, PST_ERR_NOMEM,
                               "shard: out of memory for %d x %llu state values", W,
                               (unsigned long long)S);
        for (int i = 0; i < st->n; i++)
            for (int k = 0; k < W; k++)
                memcpy(st->last + (size_t)k * S + st->idx[i], w + st->off[i],
                       (size_t)st->len[i] * sizeof(float));
    }
    uint64_t a, b;
    const float inv = 1.0f / (float)W;
    for (int i = 0; i < st->n; i++) {
        if (!overlap(st, i, lo, n, &a, &b))
            continue;
        uint64_t j0 = st->idx[i] + (a - st->off[i]);
        memcpy(st->last + (size_t)worker * S + j0, v + (a - lo), (size_t)(b - a) * sizeof(float));
        /* The sum in rank order: the same float whatever order the reports came in. */
        for (uint64_t p = a, j = j0; p < b; p++, j++) {
            float s = 0.0f;
            for (int k = 0; k < W; k++)
                s += st->last[(size_t)k * S + j];
            w[p] = s * inv;
        }
    }
    return PST_OK;
}

void srv_state_reset(srv_state *st)
{
    free(st->last);
    st->last = NULL;
}
