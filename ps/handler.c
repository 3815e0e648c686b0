/* ps/handler.c -- see handler.h. The update and consistency rules are in shard.c, the
 * delivery contract in proto/dlv.h. */
#include "handler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/loglimit.h"
#include "proto/dlv.h"
#include "proto/wire_enc.h"

#define ROLE "server"

/* A pull that has to wait for other workers' clocks. */
typedef struct {
    char route[64];
    size_t route_len;
    int worker;
    uint64_t request_id, off, len;
    int64_t clock;
    int final;
    wire_enc enc; /* the reply's encoding, as the pull asked */
} pending_pull;

/* A sparse pull that has to wait (its keys copied: the message's frames go). */
typedef struct {
    char route[64];
    size_t route_len;
    int worker, train;
    uint64_t request_id;
    uint32_t table;
    int64_t clock;
    uint64_t *keys; /* (n) */
    size_t n;
} pending_spull;

struct srv_handler {
    srv_handler_options o;
    char (*routes)[64]; /* (W) routing id of each worker, learned from its first message */
    size_t *route_lens;
    char (*sroutes)[64]; /* (W) the same for its sparse connection (SPUSH, SPULL) */
    size_t *sroute_lens;
    /* Membership (from the coordinator's heartbeat answers): each worker's incarnation and
     * whether it is lost. A new incarnation's connection replaces the old one's. */
    uint64_t *gen;                          /* (W) */
    uint8_t *lost;                          /* (W) */
    int64_t recover_start_ms, recover_from; /* a restarted server recovering its shard */
    pending_pull *pend;
    size_t npend, cap_pend;
    float *scratch; /* aligned copies of small float frames */
    size_t scratch_len;
    float *dec; /* a compressed chunk decoded (cluster.compression) */
    size_t dec_len;
    uint64_t *kscratch; /* aligned copies of small key frames */
    size_t kscratch_len;
    pending_spull *spend;
    size_t nspend, cap_spend;
    srv_handler_stats st;
    log_limit *warn; /* refusal warnings, limited per peer */
};

srv_handler *srv_handler_create(const srv_handler_options *o, pst_err *err)
{
    srv_handler *h = calloc(1, sizeof *h);
    if (!h)
        goto nomem;
    h->o = *o;
    size_t w = (size_t)o->nworkers;
    if (!(h->routes = calloc(w, sizeof *h->routes)) ||
        !(h->route_lens = calloc(w, sizeof *h->route_lens)) ||
        !(h->sroutes = calloc(w, sizeof *h->sroutes)) ||
        !(h->sroute_lens = calloc(w, sizeof *h->sroute_lens)) ||
        !(h->gen = calloc(w, sizeof *h->gen)) || !(h->lost = calloc(w, 1)))
        goto nomem;
    for (size_t k = 0; k < w; k++)
        h->gen[k] = 1; /* every worker's first incarnation */
    if (!(h->warn = log_limit_create(o->lg, LOG_LIMIT_BURST, LOG_LIMIT_WINDOW_MS, LOG_LIMIT_PEERS,
                                     err))) {
        srv_handler_destroy(h);
        return NULL;
    }
    return h;
nomem:
    srv_handler_destroy(h);
    pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    return NULL;
}

void srv_handler_destroy(srv_handler *h)
{
    if (!h)
        return;
    free(h->routes);
    free(h->route_lens);
    free(h->sroutes);
    free(h->sroute_lens);
    free(h->gen);
    free(h->lost);
    free(h->pend);
    free(h->scratch);
    free(h->dec);
    free(h->kscratch);
    for (size_t i = 0; i < h->nspend; i++)
        free(h->spend[i].keys);
    free(h->spend);
    log_limit_destroy(h->warn, pst_mono_ms());
    free(h);
}

void srv_handler_get_stats(const srv_handler *h, srv_handler_stats *st)
{
    *st = h->st;
    st->parked = h->npend;
}

/* Release callback of zero-copy replies: the bytes belong to the shard. */
static void keep_bytes(void *data, void *hint)
{
    (void)data;
    (void)hint;
}

static void free_bytes(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Sends weights [off, off + len) to a worker. bsp sends them zero-copy: the shard's weights
 * change only when every live worker has pushed its next step, which each does only after
 * reading this reply, so the bytes are stable until ZeroMQ is done with them. ssp/asp
 * apply pushes at any time, so the reply is a copy. */
static int send_weights(srv_handler *s, const char *route, size_t route_len, int worker,
                        uint64_t request_id, uint64_t off, uint64_t len, int64_t clock, int final,
                        wire_enc enc, pst_err *err)
{
    wire_env h;
    wire_env_init(&h, WIRE_MSG_PULL_REPLY, ROLE, s->o.rank);
    h.request_id = request_id;
    wire_range r = {
        .offset = off, .len = len, .clock_gap = srv_shard_clock_gap(s->o.shard, worker)};
    /* The requester's clock here: a rejoining worker starts from it. */
    h.clock = srv_shard_worker_clock(s->o.shard, worker);
    obs_observe(s->o.gap, (double)r.clock_gap);
    srv_shard_note_served(s->o.shard, worker);
    /* bsp: the weights of the clock asked for, which a restarted worker may need from
     * before the last update (srv_shard_weights_of); they too stay until its next push. */
    net_frame f = {.data = final ? srv_shard_weights(s->o.shard, off)
                                 : srv_shard_weights_of(s->o.shard, clock, off),
                   .len = (size_t)len * sizeof(float)};
    if (!final)
        srv_shard_note_read(s->o.shard, worker, off, len);
    if (s->o.job->cluster.consistency == CFG_CONS_BSP)
        f.release = keep_bytes;
    if (enc != WIRE_ENC_F32) {
        /* F16/BF16 (the pull asked): an encoded copy, which ZeroMQ frees once sent. */
        uint16_t *half = malloc((size_t)len * sizeof *half);
        if (!half)
            return pst_err_set(err, PST_ERR_NOMEM, "out of memory for a pull reply");
        wire_enc_halves(enc, half, f.data, (size_t)len);
        f = (net_frame){.data = half, .len = (size_t)len * sizeof *half, .release = free_bytes};
        r.enc = enc;
    }
    s->st.pulls++;
    s->st.bytes_out += f.len;
    return msg_send(s->o.sock, route, route_len, &h, &(wire_body){.range = &r}, &f, 1, 0, err);
}

/* Answers every parked pull the clocks now allow, in arrival order. */
static int serve_pending(srv_handler *s, pst_err *err)
{
    size_t keep = 0;
    for (size_t i = 0; i < s->npend; i++) {
        pending_pull *p = &s->pend[i];
        if (srv_shard_pull_ready(s->o.shard, p->worker, p->clock, p->final)) {
            int rc = send_weights(s, p->route, p->route_len, p->worker, p->request_id, p->off,
                                  p->len, p->clock, p->final, p->enc, err);
            if (rc == PST_ERR_PEER)
                log_warn(s->o.lg, "worker[%d] is gone; dropped its pull", p->worker);
            else if (rc)
                return rc;
        } else
            s->pend[keep++] = *p;
    }
    s->npend = keep;
    return PST_OK;
}

static int park_pull(srv_handler *s, const msg_in *in, const wire_range *r, pst_err *err)
{
    /* A pull sent again (its answer may have been lost... or not yet due) is parked once. */
    for (size_t i = 0; i < s->npend; i++)
        if (s->pend[i].worker == in->h.rank && s->pend[i].request_id == in->h.request_id)
            return PST_OK;
    /* The protocol bounds this: a worker has at most one step's pulls outstanding. */
    size_t limit = (size_t)s->o.nworkers * (srv_shard_len(s->o.shard) / WIRE_CHUNK_FLOATS + 2) * 2;
    if (s->npend == limit)
        return pst_err_set(err, PST_ERR_PEER, "too many waiting pulls (%zu)", s->npend);
    if (s->npend == s->cap_pend) {
        size_t cap = s->cap_pend ? s->cap_pend * 2 : 16;
        pending_pull *p = realloc(s->pend, cap * sizeof *p);
        if (!p)
            return pst_err_set(err, PST_ERR_NOMEM, "out of memory for waiting pulls");
        s->pend = p;
        s->cap_pend = cap;
    }
    pending_pull *p = &s->pend[s->npend++];
    memcpy(p->route, in->route, in->route_len);
    p->route_len = in->route_len;
    p->worker = in->h.rank;
    p->request_id = in->h.request_id;
    p->off = r->offset;
    p->len = r->len;
    p->clock = in->h.clock;
    p->final = r->final;
    p->enc = r->enc;
    return PST_OK;
}

/* Checks that a request comes from a worker we know, of its current incarnation
 * (dlv_incarnation_check), under a consistent routing id. *later: of an incarnation the
 * coordinator has not told us about yet (a worker that just rejoined): ignored, it asks
 * again. */
static int check_sender(srv_handler *s, const msg_in *in, int *later, pst_err *err)
{
    int r = in->h.rank;
    *later = 0;
    if (strcmp(in->h.role, "worker") != 0 || r >= s->o.nworkers)
        return pst_err_set(err, PST_ERR_PEER, "%s from unknown peer %s[%d]",
                           wire_type_name(in->h.type), in->h.role, r);
    if (in->route_len == 0 || in->route_len > sizeof s->routes[0])
        return pst_err_set(err, PST_ERR_PEER, "bad routing id of %zu bytes", in->route_len);
    switch (dlv_incarnation_check(s->gen[r], in->h.generation)) {
    case DLV_INC_STALE: /* PST_ERR_NET: the sender may not go on, a restart may rejoin */
        return pst_err_set(err, PST_ERR_NET,
                           "%s from incarnation %llu of worker[%d], which "
                           "was replaced by incarnation %llu (a paused or restarted process)",
                           wire_type_name(in->h.type), (unsigned long long)in->h.generation, r,
                           (unsigned long long)s->gen[r]);
    case DLV_INC_NEWER: *later = 1; return PST_OK;
    case DLV_INC_CURRENT: break;
    }
    if (s->lost[r])
        return pst_err_set(err, PST_ERR_NET,
                           "%s from worker[%d], which the coordinator "
                           "declared lost (silent past the heartbeat timeout); restart it to "
                           "rejoin",
                           wire_type_name(in->h.type), r);
    /* A worker's sparse requests travel on a connection of their own (worker/sparse_kv.c). */
    int sparse = in->h.type == WIRE_MSG_SPUSH || in->h.type == WIRE_MSG_SPULL;
    char *route = sparse ? s->sroutes[r] : s->routes[r];
    size_t *route_len = sparse ? &s->sroute_lens[r] : &s->route_lens[r];
    if (*route_len == 0) {
        memcpy(route, in->route, in->route_len);
        *route_len = in->route_len;
    } else if (*route_len != in->route_len || memcmp(route, in->route, in->route_len) != 0)
        return pst_err_set(err, PST_ERR_PEER, "%s claims to be worker[%d] from another connection",
                           wire_type_name(in->h.type), r);
    return PST_OK;
}

/* Float payloads must be 4-byte aligned to be read in place. ZeroMQ allocates large frames
 * (aligned); a small one may sit at any offset of its receive buffer, so copy it. */
static const float *aligned_floats(srv_handler *s, const void *p, size_t bytes, pst_err *err)
{
    static const float none[1]; /* an empty range's floats (its frame's data may be NULL) */
    if (bytes == 0)
        return none;
    if (((uintptr_t)p & (sizeof(float) - 1)) == 0)
        return p;
    if (s->scratch_len < bytes) {
        float *n = realloc(s->scratch, bytes);
        if (!n) {
            pst_err_set(err, PST_ERR_NOMEM, "out of memory");
            return NULL;
        }
        s->scratch = n;
        s->scratch_len = bytes;
    }
    memcpy(s->scratch, p, bytes);
    return s->scratch;
}

/* Key frames must be 8-byte aligned to be read in place (see aligned_floats). */
static const uint64_t *aligned_keys(srv_handler *s, const void *p, size_t bytes, pst_err *err)
{
    if (((uintptr_t)p & (sizeof(uint64_t) - 1)) == 0 || bytes == 0)
        return p;
    if (s->kscratch_len < bytes) {
        uint64_t *n = realloc(s->kscratch, bytes);
        if (!n) {
            pst_err_set(err, PST_ERR_NOMEM, "out of memory");
            return NULL;
        }
        s->kscratch = n;
        s->kscratch_len = bytes;
    }
    memcpy(s->kscratch, p, bytes);
    return s->kscratch;
}

/* A compressed PUSH chunk (cluster.compression) decoded onto floats, which the shard then
 * takes as any other; NULL with perr set for a malformed top-k table (the message's
 * fault), or with err set when out of memory. */
static const float *decode_chunk(srv_handler *s, const msg_in *in, const wire_range *r,
                                 pst_err *perr, pst_err *err)
{
    size_t n = (size_t)r->len;
    if (s->dec_len < n) {
        float *d = realloc(s->dec, n * sizeof *d);
        if (!d) {
            pst_err_set(err, PST_ERR_NOMEM, "out of memory");
            return NULL;
        }
        s->dec = d;
        s->dec_len = n;
    }
    if (r->enc != WIRE_ENC_TOPK)
        wire_dec_halves(r->enc, s->dec, in->payload[0], n);
    else if (wire_dec_topk(s->dec, r->len, in->payload[0], in->payload[1], r->nnz, perr)) {
        perr->code = PST_ERR_PEER;
        return NULL;
    }
    return s->dec;
}

/* Recovery ends when every live worker has been heard, or after the heartbeat timeout
 * (those not heard take the slowest clock). */
static void maybe_end_recovery(srv_handler *s, int all_heard)
{
    if (!srv_shard_recovering(s->o.shard))
        return;
    int64_t waited = net_now_ms() - s->recover_start_ms;
    if (!all_heard && waited < 1000LL * s->o.job->cluster.heartbeat_timeout_s)
        return;
    int64_t *per = calloc((size_t)s->o.nworkers, sizeof *per);
    int64_t lost = srv_shard_end_recovery(s->o.shard, per);
    if (s->o.ckpt)
        srv_ckpt_note_lost(s->o.ckpt, lost);
    /* ssp/asp: every worker's step was an update, so the loss is counted per worker:
     * "(worker[0] 7, worker[1] 6)". bsp's clocks each averaged all workers' steps. */
    char detail[256] = "";
    if (per && s->o.job->cluster.consistency != CFG_CONS_BSP) {
        size_t n = 0;
        for (int k = 0; k < s->o.nworkers && n < sizeof detail; k++)
            n += (size_t)snprintf(detail + n, sizeof detail - n, "%sworker[%d] %lld",
                                  k ? ", " : " (", k, (long long)per[k]);
        if (n < sizeof detail)
            snprintf(detail + n, sizeof detail - n, ")");
    }
    free(per);
    log_warn(s->o.lg,
             "recovered in %.2f s at clock %lld: the updates of %lld step(s) since the "
             "checkpoint of clock %lld are lost on this shard%s",
             waited / 1000.0, (long long)srv_shard_clock(s->o.shard), (long long)lost,
             (long long)s->recover_from, detail);
}

/* Acknowledges request h of a worker (INIT, PUSH, DONE; a parked PULL whose pushes did
 * not all arrive). */
static void send_ack(srv_handler *s, const msg_in *in)
{
    wire_env h;
    wire_env_init(&h, WIRE_MSG_ACK, ROLE, s->o.rank);
    h.request_id = in->h.request_id;
    /* A pull's: the worker's clock here (its pushes before it that were taken whole). */
    h.clock =
        in->h.type == WIRE_MSG_PULL ? srv_shard_worker_clock(s->o.shard, in->h.rank) : in->h.clock;
    pst_err e = {0};
    if (msg_send(s->o.sock, in->route, in->route_len, &h, NULL, NULL, 0, 0, &e))
        log_debug(s->o.lg, "ACK to worker[%d]: %s", in->h.rank, e.msg);
}

/* INIT or PUSH: the chunk goes to the shard, which takes it in stream order; taken and
 * repeated chunks are acknowledged, one after a gap is not (dlv.h). perr: the message's
 * fault; err: the server's (out of memory). */
static int handle_chunk(srv_handler *s, const msg_in *in, const wire_range *r, pst_err *perr,
                        pst_err *err)
{
    const wire_env *h = &in->h;
    const float *g = r->enc == WIRE_ENC_F32
                         ? aligned_floats(s, in->payload[0], in->payload_len[0], err)
                         : decode_chunk(s, in, r, perr, err);
    if (!g)
        return perr->code ? perr->code : pst_err_set(perr, PST_ERR_NOMEM, "%s", err->msg);
    for (int k = 0; k < in->npayload; k++)
        s->st.bytes_in += in->payload_len[k];
    srv_outcome out = SRV_EARLY;
    int rc;
    if (h->type == WIRE_MSG_INIT)
        rc = h->rank == 0 ? srv_shard_init_range(s->o.shard, r->offset, g, r->len, &out, perr)
                          : pst_err_set(perr, PST_ERR_PEER, "INIT from worker[%d]", h->rank);
    else {
        double t0 = s->o.apply ? obs_mono() : 0;
        rc = srv_shard_push(s->o.shard, h->rank, h->clock, r->offset, g, r->len, &out, perr);
        if (rc == PST_OK && out == SRV_APPLIED)
            obs_observe(s->o.apply, obs_mono() - t0);
    }
    if (rc)
        return rc;
    if (out == SRV_APPLIED && h->type == WIRE_MSG_PUSH && r->checkpoint && s->o.ckpt &&
        s->o.job->checkpoint.enabled)
        srv_ckpt_want(s->o.ckpt, h->rank, h->clock + 1);
    if (out != SRV_EARLY)
        send_ack(s, in);
    else
        log_debug(s->o.lg,
                  "%s [%llu, +%llu) clock %lld from worker[%d] came before a "
                  "missing one: not taken",
                  wire_type_name(h->type), (unsigned long long)r->offset,
                  (unsigned long long)r->len, (long long)h->clock, h->rank);
    return PST_OK;
}

/* PULL: answered now when the consistency rule allows, else parked. A failed reply to a
 * worker that is gone is not the server's problem; other send failures are (err). */
static int handle_pull(srv_handler *s, const msg_in *in, const wire_range *r, pst_err *perr,
                       pst_err *err, int *fatal)
{
    const wire_env *h = &in->h;
    int rc = srv_shard_check_range(s->o.shard, r->offset, r->len, perr);
    if (rc)
        return rc;
    if (srv_shard_pull_ready(s->o.shard, h->rank, h->clock, r->final)) {
        rc = send_weights(s, in->route, in->route_len, h->rank, h->request_id, r->offset, r->len,
                          h->clock, r->final, r->enc, err);
        if (rc && rc != PST_ERR_PEER)
            *fatal = rc;
        return PST_OK;
    }
    rc = park_pull(s, in, r, perr);
    /* Parked (dlv.h, 4): an ACK now, with the worker's clock here, so that its retry timer
     * does not take the wait for the slowest worker for a loss; and when its own step
     * before this pull is not whole here (its pushes travel first on its connection, so a
     * chunk was lost), that clock tells it to resend the push now. */
    if (rc == PST_OK && !r->final)
        send_ack(s, in);
    return rc;
}

/* Sends the rows of keys[0..n) of a table (SPULL_REPLY): gathered into a buffer that
 * ZeroMQ then sends without another copy and frees. */
static int send_rows(srv_handler *s, const char *route, size_t route_len, int worker,
                     uint64_t request_id, uint32_t table, const uint64_t *keys, size_t n, int train,
                     int64_t clock, pst_err *perr, pst_err *err)
{
    srv_sparse *sp = s->o.sparse;
    int d = spt_dim(srv_sparse_table(sp, (int)table));
    size_t bytes = n * (size_t)d * sizeof(float);
    float *rows = malloc(bytes ? bytes : 1);
    if (!rows)
        return pst_err_set(perr, PST_ERR_NOMEM, "out of memory for %zu rows", n);
    int rc = srv_sparse_pull(sp, table, keys, n, train, rows, perr);
    if (rc) {
        free(rows);
        return rc;
    }
    wire_env h;
    wire_env_init(&h, WIRE_MSG_SPULL_REPLY, ROLE, s->o.rank);
    h.request_id = request_id;
    h.clock = clock;
    (void)worker;
    wire_sparse b = {.table = table, .nkeys = n, .dim = (uint32_t)d, .train = train};
    net_frame f = {.data = rows, .len = bytes, .release = free_bytes};
    s->st.spulls++;
    s->st.sparse_bytes_out += bytes;
    rc = msg_send(s->o.sock, route, route_len, &h, &(wire_body){.sparse = &b}, &f, 1, 0, err);
    return rc;
}

/* Answers every parked sparse pull the tables' clocks now allow, in arrival order. */
static int serve_pending_sparse(srv_handler *s, pst_err *err)
{
    size_t keep = 0;
    for (size_t i = 0; i < s->nspend; i++) {
        pending_spull *p = &s->spend[i];
        if (!srv_sparse_pull_ready(s->o.sparse, p->table, p->clock)) {
            s->spend[keep++] = *p;
            continue;
        }
        pst_err perr = {0};
        int rc = send_rows(s, p->route, p->route_len, p->worker, p->request_id, p->table, p->keys,
                           p->n, p->train, p->clock, &perr, err);
        free(p->keys);
        if (rc == PST_ERR_PEER)
            log_warn(s->o.lg, "worker[%d] is gone; dropped its sparse pull", p->worker);
        else if (rc == PST_ERR_NOMEM)
            return pst_err_set(err, rc, "%s", perr.msg[0] ? perr.msg : err->msg);
        else if (rc)
            return rc;
    }
    s->nspend = keep;
    return PST_OK;
}

static int park_spull(srv_handler *s, const msg_in *in, const uint64_t *keys, size_t n,
                      pst_err *err)
{
    const wire_sparse *b = in->b.sparse;
    for (size_t i = 0; i < s->nspend; i++)
        if (s->spend[i].worker == in->h.rank && s->spend[i].request_id == in->h.request_id)
            return PST_OK;
    /* A worker has at most one step's pulls outstanding: one per table. */
    size_t limit = (size_t)s->o.nworkers * (size_t)srv_sparse_ntables(s->o.sparse) * 2;
    if (s->nspend >= limit)
        return pst_err_set(err, PST_ERR_PEER, "too many waiting sparse pulls (%zu)", s->nspend);
    if (s->nspend == s->cap_spend) {
        size_t cap = s->cap_spend ? s->cap_spend * 2 : 16;
        pending_spull *p = realloc(s->spend, cap * sizeof *p);
        if (!p)
            return pst_err_set(err, PST_ERR_NOMEM, "out of memory for waiting pulls");
        s->spend = p;
        s->cap_spend = cap;
    }
    pending_spull *p = &s->spend[s->nspend];
    if (!(p->keys = malloc(n ? n * sizeof *keys : 1)))
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory for waiting pulls");
    memcpy(p->keys, keys, n * sizeof *keys);
    memcpy(p->route, in->route, in->route_len);
    p->route_len = in->route_len;
    p->worker = in->h.rank;
    p->request_id = in->h.request_id;
    p->table = b->table;
    p->clock = in->h.clock;
    p->train = b->train;
    p->n = n;
    s->nspend++;
    return PST_OK;
}

/* SPUSH or SPULL: checked against the tables (known table, its dim, keys this server owns),
 * then a push is taken in its table's clock order and acknowledged unless early, a pull
 * answered now or parked (with an ACK, as a dense pull). */
static int handle_sparse(srv_handler *s, const msg_in *in, pst_err *perr, pst_err *err, int *fatal)
{
    const wire_env *h = &in->h;
    const wire_sparse *b = in->b.sparse;
    if (!s->o.sparse)
        return pst_err_set(perr, PST_ERR_PEER,
                           "%s of sparse table %u: this job has no sparse "
                           "tables",
                           wire_type_name(h->type), b->table);
    const uint64_t *keys = aligned_keys(s, in->payload[0], in->payload_len[0], err);
    if (!keys)
        return pst_err_set(perr, PST_ERR_NOMEM, "%s", err->msg);
    size_t n = (size_t)b->nkeys;
    int rc = srv_sparse_check(s->o.sparse, b->table, b->dim, keys, n, perr);
    if (rc)
        return rc;
    s->st.sparse_bytes_in += in->payload_len[0];
    if (h->type == WIRE_MSG_SPULL) {
        if (srv_sparse_pull_ready(s->o.sparse, b->table, h->clock)) {
            rc = send_rows(s, in->route, in->route_len, h->rank, h->request_id, b->table, keys, n,
                           b->train, h->clock, perr, err);
            if (rc == PST_ERR_NOMEM || (rc && rc != PST_ERR_PEER))
                *fatal = rc;
            return PST_OK;
        }
        rc = park_spull(s, in, keys, n, perr);
        if (rc == PST_OK)
            send_ack(s, in);
        return rc;
    }
    const float *g = aligned_floats(s, in->payload[1], in->payload_len[1], err);
    if (!g)
        return pst_err_set(perr, PST_ERR_NOMEM, "%s", err->msg);
    s->st.sparse_bytes_in += in->payload_len[1];
    srv_outcome out = SRV_EARLY;
    double t0 = s->o.apply ? obs_mono() : 0;
    if ((rc = srv_sparse_push(s->o.sparse, h->rank, h->clock, b->table, keys, n, g, &out, perr)))
        return rc;
    if (out == SRV_APPLIED)
        obs_observe(s->o.apply, obs_mono() - t0);
    if (out != SRV_EARLY)
        send_ack(s, in);
    else
        log_debug(s->o.lg, "SPUSH of table %u clock %lld from worker[%d] came early: not taken",
                  b->table, (long long)h->clock, h->rank);
    return PST_OK;
}

int srv_handle(srv_handler *s, const msg_in *in, pst_err *err)
{
    pst_err perr = {0};
    int later = 0, fatal = PST_OK;
    int rc = check_sender(s, in, &later, &perr);
    if (rc == PST_OK && later) {
        log_debug(s->o.lg, "%s from worker[%d] incarnation %llu, not yet announced: ignored",
                  wire_type_name(in->h.type), in->h.rank, (unsigned long long)in->h.generation);
        return PST_OK;
    }
    /* Recovering: a request says where its worker stands and goes unanswered (it comes
     * again), until every live worker has been heard. */
    if (rc == PST_OK && srv_shard_recovering(s->o.shard) &&
        (in->h.type == WIRE_MSG_PUSH || in->h.type == WIRE_MSG_PULL)) {
        if (!in->b.range->final)
            maybe_end_recovery(s, srv_shard_note_clock(s->o.shard, in->h.rank, in->h.clock));
        if (srv_shard_recovering(s->o.shard))
            return PST_OK;
    }
    if (rc == PST_OK) {
        switch (in->h.type) {
        case WIRE_MSG_INIT:
        case WIRE_MSG_PUSH: rc = handle_chunk(s, in, in->b.range, &perr, err); break;
        case WIRE_MSG_PULL:
            rc = handle_pull(s, in, in->b.range, &perr, err, &fatal);
            if (fatal)
                return fatal;
            break;
        case WIRE_MSG_SPUSH:
        case WIRE_MSG_SPULL:
            rc = handle_sparse(s, in, &perr, err, &fatal);
            if (fatal)
                return pst_err_set(err, fatal, "%s", perr.msg[0] ? perr.msg : err->msg);
            break;
        case WIRE_MSG_DONE:
            log_debug(s->o.lg, "worker[%d] is done at clock %lld", in->h.rank,
                      (long long)srv_shard_worker_clock(s->o.shard, in->h.rank));
            srv_shard_worker_done(s->o.shard, in->h.rank);
            if (s->o.sparse)
                srv_sparse_worker_done(s->o.sparse, in->h.rank);
            send_ack(s, in);
            maybe_end_recovery(s, srv_shard_note_clock(s->o.shard, -1, -1));
            break;
        default: rc = pst_err_set(&perr, PST_ERR_PEER, "unexpected %s", wire_type_name(in->h.type));
        }
    }
    if (rc) {
        obs_add(s->o.refused, 1);
        obs_add(s->o.rejected, 1);
        s->st.rejected++;
        char key[MSG_PEER], peer[MSG_PEER];
        msg_peer(in, 1, key, peer);
        log_limit_warn(s->warn, key, peer, pst_mono_ms(), "refused %s from %s[%d]: %s",
                       wire_type_name(in->h.type), in->h.role, in->h.rank, perr.msg);
        pst_err e2 = {0};
        if (msg_send_error(s->o.sock, in->route, in->route_len, ROLE, s->o.rank, in->h.request_id,
                           rc, perr.msg, &e2))
            log_warn(s->o.lg, "could not send the error: %s", e2.msg);
        if (rc == PST_ERR_NOMEM)
            return pst_err_set(err, rc, "%s", perr.msg);
    }
    /* Before the pulls it unblocks are answered: a worker that has the weights of a
     * checkpointed clock knows every server wrote that checkpoint. */
    if (s->o.ckpt && (rc = srv_ckpt_maybe(s->o.ckpt, s->o.shard, err)))
        return rc;
    if ((rc = serve_pending(s, err)))
        return rc;
    return s->o.sparse ? serve_pending_sparse(s, err) : PST_OK;
}

void srv_handle_refused(srv_handler *s, const msg_in *in, const pst_err *why)
{
    obs_add(s->o.malformed, 1);
    s->st.malformed++;
    char key[MSG_PEER], peer[MSG_PEER];
    msg_peer(in, 1, key, peer);
    int64_t now = pst_mono_ms();
    if (msg_refuse_version(s->o.sock, in, ROLE, s->o.rank)) {
        obs_add(s->o.refused, 1);
        log_limit_warn(s->warn, key, peer, now,
                       "dropped a malformed message: %s; answered with an ERROR naming "
                       "both versions",
                       why->msg);
    } else
        log_limit_warn(s->warn, key, peer, now, "dropped a malformed message: %s", why->msg);
}

void srv_handler_flush_log(srv_handler *s) { log_limit_tick(s->warn, pst_mono_ms(), 1); }

int srv_handler_tick(srv_handler *s, pst_err *err)
{
    log_limit_tick(s->warn, pst_mono_ms(), 0);
    maybe_end_recovery(s, srv_shard_note_clock(s->o.shard, -1, -1));
    int rc = s->o.ckpt ? srv_ckpt_maybe(s->o.ckpt, s->o.shard, err) : PST_OK;
    if (!rc)
        rc = serve_pending(s, err);
    return rc || !s->o.sparse ? rc : serve_pending_sparse(s, err);
}

void srv_handler_membership(srv_handler *s, const uint64_t *gen, const uint8_t *lost,
                            const uint8_t *done)
{
    for (int k = 0; k < s->o.nworkers; k++) {
        if (gen[k] > s->gen[k]) {
            s->gen[k] = gen[k];
            s->lost[k] = 0;
            s->route_lens[k] = 0; /* the new process connects anew */
            s->sroute_lens[k] = 0;
            int64_t clock = srv_shard_worker_rejoin(s->o.shard, k);
            log_info(s->o.lg, "worker[%d] rejoined (incarnation %llu) at clock %lld", k,
                     (unsigned long long)s->gen[k], (long long)clock);
        }
        if (done[k] && gen[k] == s->gen[k] && srv_shard_worker_live(s->o.shard, k)) {
            /* It finished (its DONE to this server may have gone to a previous incarnation
             * of this server). */
            srv_shard_worker_done(s->o.shard, k);
            if (s->o.sparse)
                srv_sparse_worker_done(s->o.sparse, k);
            continue;
        }
        if (lost[k] && !s->lost[k] && gen[k] == s->gen[k]) {
            s->lost[k] = 1;
            log_warn(s->o.lg, "worker[%d] is lost (at clock %lld): going on without it", k,
                     (long long)srv_shard_worker_clock(s->o.shard, k));
            srv_shard_worker_lost(s->o.shard, k);
            size_t keep = 0;
            for (size_t i = 0; i < s->npend; i++)
                if (s->pend[i].worker != k)
                    s->pend[keep++] = s->pend[i];
            s->npend = keep;
            if (s->o.sparse)
                srv_sparse_worker_done(s->o.sparse, k);
            keep = 0;
            for (size_t i = 0; i < s->nspend; i++) {
                if (s->spend[i].worker != k)
                    s->spend[keep++] = s->spend[i];
                else
                    free(s->spend[i].keys);
            }
            s->nspend = keep;
        }
    }
}

void srv_handler_recover(srv_handler *s, const wire_membership *m, int64_t from_clock)
{
    for (int k = 0; k < s->o.nworkers && k < m->nworkers; k++) {
        s->gen[k] = m->gen[k] ? m->gen[k] : 1;
        if (m->done[k])
            srv_shard_worker_done(s->o.shard, k);
        else if (m->lost[k]) {
            s->lost[k] = 1;
            srv_shard_worker_lost(s->o.shard, k);
        }
    }
    srv_shard_begin_recovery(s->o.shard);
    s->recover_start_ms = net_now_ms();
    s->recover_from = from_clock;
}
