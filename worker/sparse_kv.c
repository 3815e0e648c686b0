/* worker/sparse_kv.c -- see sparse_kv.h. */
#include "sparse_kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/ident.h"
#include "core/sptable.h"
#include "proto/dlv.h"
#include "proto/msg.h"

#define ROLE "worker"
#define SKV_PARKED_MS 250 /* a parked SPULL (acknowledged) is not sent again before this */

struct wk_skv {
    int rank, S, ntables, timeout_ms;
    uint64_t generation;
    int *dims; /* (T) */
    const log_ctx *lg;
    const volatile sig_atomic_t *stop;
    net_sock *sock[WIRE_MAX_SERVERS];
    net_msg *m;
    msg_in *in;
    dlv_ids ids;
    /* Grouping by owner, grown as needed: start[s] .. start[s+1] are server s's entries of
     * ord (the caller's indices), gk (their keys) and gv (their rows or gradients). */
    size_t start[WIRE_MAX_SERVERS + 1];
    size_t *ord;
    uint64_t *gk;
    float *gv;
    size_t cap, capv;
    uint64_t req[WIRE_MAX_SERVERS]; /* request id sent to each server (0: none) */
    wk_skv_stats st;
};

wk_skv *wk_skv_create(net_ctx *ctx, int rank, const wire_welcome *welcome, int ntables,
                      const int *dims, int timeout_ms, const log_ctx *lg,
                      const volatile sig_atomic_t *stop, pst_err *err)
{
    wk_skv *kv = calloc(1, sizeof *kv);
    if (!kv || !(kv->in = malloc(sizeof *kv->in)) || !(kv->m = net_msg_create(err)) ||
        !(kv->dims = malloc(sizeof *kv->dims * (size_t)(ntables > 0 ? ntables : 1)))) {
        pst_err_set(err, PST_ERR_NOMEM, "sparse kv: out of memory");
        goto fail;
    }
    kv->rank = rank;
    kv->S = welcome->num_servers;
    kv->ntables = ntables;
    kv->timeout_ms = timeout_ms;
    kv->generation = welcome->generation ? welcome->generation : 1;
    kv->lg = lg;
    kv->stop = stop;
    memcpy(kv->dims, dims, sizeof *dims * (size_t)ntables);
    kv->ids.next = 1; /* id 0 marks a server not asked */
    /* Request ids of their own: the servers track them per connection. */
    char id[PST_TAG_MAX];
    pst_process_tag(id, sizeof id, "worker", rank, "sparse");
    net_opts o = {.identity = id,
                  .max_msg_bytes = (int64_t)(WIRE_CHUNK_FLOATS * sizeof(float)) + 4096};
    for (int s = 0; s < kv->S; s++)
        if (!(kv->sock[s] = net_sock_create(ctx, NET_DEALER, &o, err)) ||
            net_sock_connect(kv->sock[s], welcome->server_endpoints[s], err)) {
            pst_err_prefix(err, "server[%d] (sparse)", s);
            goto fail;
        }
    return kv;
fail:
    wk_skv_destroy(kv);
    return NULL;
}

void wk_skv_destroy(wk_skv *kv)
{
    if (!kv)
        return;
    for (int s = 0; s < kv->S; s++)
        net_sock_destroy(kv->sock[s]);
    net_msg_destroy(kv->m);
    free(kv->in);
    free(kv->dims);
    free(kv->ord);
    free(kv->gk);
    free(kv->gv);
    free(kv);
}

void wk_skv_get_stats(const wk_skv *kv, wk_skv_stats *st) { *st = kv->st; }

/* Groups keys[0..n) by owner (stable within a server): fills start, ord, gk. */
static int group(wk_skv *kv, const uint64_t *keys, size_t n, size_t d, pst_err *err)
{
    if (n > kv->cap || n * d > kv->capv) {
        size_t c = n > kv->cap ? n : kv->cap, cv = n * d > kv->capv ? n * d : kv->capv;
        size_t *o = realloc(kv->ord, c * sizeof *o);
        if (o)
            kv->ord = o;
        uint64_t *k = realloc(kv->gk, c * sizeof *k);
        if (k)
            kv->gk = k;
        float *v = realloc(kv->gv, cv * sizeof *v);
        if (v)
            kv->gv = v;
        if (!o || !k || !v)
            return pst_err_set(err, PST_ERR_NOMEM, "sparse kv: out of memory for %zu keys", n);
        kv->cap = c;
        kv->capv = cv;
    }
    size_t cnt[WIRE_MAX_SERVERS + 1] = {0};
    for (size_t i = 0; i < n; i++)
        cnt[spt_owner(keys[i], (uint32_t)kv->S) + 1]++;
    kv->start[0] = 0;
    for (int s = 0; s < kv->S; s++)
        kv->start[s + 1] = kv->start[s] + cnt[s + 1];
    size_t pos[WIRE_MAX_SERVERS];
    memcpy(pos, kv->start, sizeof pos[0] * (size_t)kv->S);
    for (size_t i = 0; i < n; i++) {
        size_t j = pos[spt_owner(keys[i], (uint32_t)kv->S)]++;
        kv->ord[j] = i;
        kv->gk[j] = keys[i];
    }
    return PST_OK;
}

static int send_req(wk_skv *kv, int s, wire_type type, int table, int64_t clock, int train,
                    pst_err *err)
{
    size_t a = kv->start[s], n = kv->start[s + 1] - a, d = (size_t)kv->dims[table];
    wire_env h;
    wire_env_init(&h, type, ROLE, kv->rank);
    h.generation = kv->generation;
    h.request_id = kv->req[s];
    h.clock = clock;
    wire_sparse b = {.table = (uint32_t)table, .nkeys = n, .dim = (uint32_t)d, .train = train};
    net_frame f[2] = {{.data = kv->gk + a, .len = n * sizeof(uint64_t)},
                      {.data = kv->gv + a * d, .len = n * d * sizeof(float)}};
    int nf = type == WIRE_MSG_SPUSH ? 2 : 1;
    kv->st.messages++;
    kv->st.bytes_pushed += f[0].len + (nf == 2 ? f[1].len : 0);
    return msg_send(kv->sock[s], NULL, 0, &h, &(wire_body){.sparse = &b}, f, nf, kv->timeout_ms,
                    err);
}

/* Waits for server s's answer (type want) to request kv->req[s], sending it again under
 * the retry timer; an SPULL acknowledged (parked) waits SKV_PARKED_MS before a resend. */
static int wait_answer(wk_skv *kv, int s, wire_type want, int table, int64_t clock, int train,
                       pst_err *err)
{
    int64_t deadline = net_now_ms() + kv->timeout_ms;
    dlv_rto rto;
    dlv_rto_init(&rto, &DLV_RTO_CALL);
    dlv_rto_arm(&rto, net_now_ms());
    for (;;) {
        if (kv->stop && *kv->stop)
            return pst_err_set(err, PST_ERR_STATE, "stopped");
        int64_t now = net_now_ms();
        if (now >= deadline)
            return pst_err_set(err, PST_ERR_TIMEOUT,
                               "server[%d]: no %s of table %d clock %lld "
                               "within %d s",
                               s, wire_type_name(want), table, (long long)clock,
                               kv->timeout_ms / 1000);
        if (dlv_rto_due(&rto, now)) {
            int rc = send_req(kv, s, want == WIRE_MSG_ACK ? WIRE_MSG_SPUSH : WIRE_MSG_SPULL, table,
                              clock, train, err);
            if (rc)
                return pst_err_prefix(err, "server[%d]", s), rc;
            kv->st.resent++;
            dlv_rto_expired(&rto, 0);
            dlv_rto_arm(&rto, now);
        }
        int wait = dlv_rto_wait_ms(&rto, now);
        int rc = msg_recv(kv->sock[s], kv->m, 0, kv->in, wait, err);
        if (rc == PST_ERR_TIMEOUT)
            continue;
        if (rc)
            return pst_err_prefix(err, "server[%d]", s), rc;
        const wire_env *h = &kv->in->h;
        if (h->request_id != kv->req[s])
            continue; /* an answer to an earlier copy of an earlier request */
        if (h->type == WIRE_MSG_ERROR)
            return pst_err_set(err, PST_ERR_PEER, "server[%d]: %s", s, kv->in->b.error->text);
        if (h->type == want)
            return PST_OK;
        if (h->type == WIRE_MSG_ACK && want == WIRE_MSG_SPULL_REPLY)
            dlv_rto_defer(&rto, net_now_ms() + SKV_PARKED_MS);
    }
}

int wk_skv_pull(wk_skv *kv, int table, const uint64_t *keys, size_t n, float *rows, int train,
                int64_t clock, pst_err *err)
{
    if (table < 0 || table >= kv->ntables)
        return pst_err_set(err, PST_ERR_ARG, "sparse kv: table %d of %d", table, kv->ntables);
    size_t d = (size_t)kv->dims[table];
    int rc = group(kv, keys, n, d, err);
    if (rc)
        return rc;
    /* Every owner asked first, then the answers taken: the servers work at once. */
    for (int s = 0; s < kv->S; s++) {
        kv->req[s] = 0;
        if (kv->start[s + 1] == kv->start[s])
            continue;
        kv->req[s] = dlv_ids_take(&kv->ids, 1);
        if ((rc = send_req(kv, s, WIRE_MSG_SPULL, table, clock, train, err)))
            return pst_err_prefix(err, "server[%d]", s), rc;
    }
    for (int s = 0; s < kv->S; s++) {
        if (!kv->req[s])
            continue;
        if ((rc = wait_answer(kv, s, WIRE_MSG_SPULL_REPLY, table, clock, train, err)))
            return rc;
        size_t a = kv->start[s], k = kv->start[s + 1] - a;
        const wire_sparse *b = kv->in->b.sparse;
        if (b->nkeys != k || b->dim != d)
            return pst_err_set(err, PST_ERR_PEER,
                               "server[%d]: %llu rows of dim %u for %zu keys of dim %zu", s,
                               (unsigned long long)b->nkeys, b->dim, k, d);
        const float *r = kv->in->payload[0];
        kv->st.bytes_pulled += kv->in->payload_len[0];
        for (size_t j = 0; j < k; j++)
            memcpy(rows + kv->ord[a + j] * d, r + j * d, d * sizeof(float));
    }
    return PST_OK;
}

int wk_skv_push(wk_skv *kv, int table, const uint64_t *keys, size_t n, const float *grads,
                int64_t clock, pst_err *err)
{
    if (table < 0 || table >= kv->ntables)
        return pst_err_set(err, PST_ERR_ARG, "sparse kv: table %d of %d", table, kv->ntables);
    size_t d = (size_t)kv->dims[table];
    int rc = group(kv, keys, n, d, err);
    if (rc)
        return rc;
    for (size_t j = 0; j < n; j++)
        memcpy(kv->gv + j * d, grads + kv->ord[j] * d, d * sizeof(float));
    /* Every server, keys or not: the push counts toward this worker's clock there. */
    for (int s = 0; s < kv->S; s++) {
        kv->req[s] = dlv_ids_take(&kv->ids, 1);
        if ((rc = send_req(kv, s, WIRE_MSG_SPUSH, table, clock, 0, err)))
            return pst_err_prefix(err, "server[%d]", s), rc;
    }
    for (int s = 0; s < kv->S; s++)
        if ((rc = wait_answer(kv, s, WIRE_MSG_ACK, table, clock, 0, err)))
            return rc;
    return PST_OK;
}
