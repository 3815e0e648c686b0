/* worker/kv.c -- see kv.h. */
#include "kv.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/msg.h"

#define ROLE "worker"

/* One message's range: [off, off + len) of the flat vector, inside server `server`'s shard
 * and at most WIRE_CHUNK_FLOATS long. */
typedef struct {
    uint64_t off, len;
    int server;
} kv_piece;

struct wk_kv {
    int rank, S, timeout_ms;
    const log_ctx *lg;
    const volatile sig_atomic_t *stop;
    uint64_t nparams;
    uint64_t off[WIRE_MAX_SERVERS + 1];
    char endpoint[WIRE_MAX_SERVERS][WIRE_ENDPOINT_MAX];
    net_sock *sock[WIRE_MAX_SERVERS];
    net_msg *m;
    msg_in *in;
    uint64_t next_id;
    int outstanding;          /* pull replies still to come */
    uint64_t pull_id_lo;      /* request ids of the current pull: [lo, next_id) */
    unsigned char *got;       /* (max of nall, ntrain) reply of request pull_id_lo + i arrived */
    /* The vector in messages, server by server in order: `all` covers every float (INIT, the
     * first pull); `train` only the trainable ones (PUSH, PULL): frozen ranges (update
     * groups of multiplier 0, see WELCOME) never travel after the first pull. */
    kv_piece *all, *train;
    int nall, ntrain;
    const kv_piece *pulling;  /* the pieces of the outstanding pull: request i is piece i */
    int npulling;
    /* Zero-copy frames ZeroMQ still holds: pushes by clock parity (a pipelined worker
     * alternates two gradient buffers), and INIT in slot 2. ZeroMQ's I/O thread
     * decrements the counts. */
    pthread_mutex_t mu;
    pthread_cond_t released;
    int unreleased[3];
    /* Push latency, under mu: a push of slot i is open from push_t0[i] until its frames are
     * all released (rel_s[i], set by the I/O thread); settle_push records it. */
    double push_t0[2], rel_s[2];
    int push_open[2];
    double pull_t0;           /* when the outstanding pull started */
    struct release_hint {
        wk_kv *kv;
        int slot;
    } hint[3];
    int sync_ready;           /* mu and released are initialised */
    int final;                /* the outstanding pull is a final one */
    int ckpt_next;            /* the next push asks for a checkpoint */
    wk_kv_idle_fn idle;
    void *idle_ctx;
    wk_kv_stats stats;
};

/* Seconds on a monotonic clock: waits of a small model's step are well under a
 * millisecond, too short for net_now_ms. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void on_release(void *data, void *hint)
{
    (void)data;
    struct release_hint *rh = hint;
    wk_kv *kv = rh->kv;
    pthread_mutex_lock(&kv->mu);
    if (--kv->unreleased[rh->slot] == 0) {
        if (rh->slot < 2)
            kv->rel_s[rh->slot] = now_s();
        pthread_cond_signal(&kv->released);
    }
    pthread_mutex_unlock(&kv->mu);
}

/* Records the latency of slot's push once all its frames are released. Caller holds mu;
 * runs on the caller's thread only, so the histogram needs no lock of its own. */
static void settle_push(wk_kv *kv, int slot)
{
    if (kv->push_open[slot] && kv->unreleased[slot] == 0) {
        met_hist_add(&kv->stats.push_lat, kv->rel_s[slot] - kv->push_t0[slot]);
        kv->push_open[slot] = 0;
    }
}

/* Cuts what is sent -- the whole vector, or (trainable_only) the runs of update groups with
 * a multiplier > 0 -- at shard boundaries and into chunks: *out in sending order, server by
 * server. Two passes: count, then fill. Returns -1 when out of memory. */
static int make_pieces(const wk_kv *kv, const wire_header *welcome, int trainable_only,
                       kv_piece **out, int *n)
{
    const int ng = trainable_only ? welcome->ngroups : 0;
    for (int pass = 0; pass < 2; pass++) {
        int k = 0;
        for (int s = 0; s < kv->S; s++) {
            for (int g = 0; g < (ng ? ng : 1); g++) {
                if (ng && !(welcome->group_mults[g] > 0.0f))
                    continue;
                uint64_t a = ng ? welcome->group_offsets[g] : 0;
                /* A run: this group and the trainable groups right after it. */
                while (ng && g + 1 < ng && welcome->group_mults[g + 1] > 0.0f)
                    g++;
                uint64_t b = ng ? welcome->group_offsets[g + 1] : kv->nparams;
                uint64_t lo = a > kv->off[s] ? a : kv->off[s];
                uint64_t hi = b < kv->off[s + 1] ? b : kv->off[s + 1];
                for (; lo < hi; lo += WIRE_CHUNK_FLOATS, k++)
                    if (pass == 1)
                        (*out)[k] = (kv_piece){
                            lo, hi - lo < WIRE_CHUNK_FLOATS ? hi - lo : WIRE_CHUNK_FLOATS, s};
            }
        }
        if (pass == 0 && !(*out = malloc(sizeof **out * (size_t)(k ? k : 1))))
            return -1;
        *n = k;
    }
    return 0;
}

wk_kv *wk_kv_create(net_ctx *ctx, int rank, const wire_header *welcome, int timeout_ms,
                    const log_ctx *lg, const volatile sig_atomic_t *stop, pst_err *err)
{
    wk_kv *kv = calloc(1, sizeof *kv);
    if (!kv || !(kv->in = malloc(sizeof *kv->in)) || !(kv->m = net_msg_create(err))) {
        pst_err_set(err, PST_ERR_NOMEM, "kv: out of memory");
        goto fail;
    }
    kv->rank = rank;
    kv->S = welcome->num_servers;
    kv->timeout_ms = timeout_ms;
    kv->lg = lg;
    kv->stop = stop;
    kv->nparams = welcome->nparams;
    pthread_mutex_init(&kv->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&kv->released, &ca);
    pthread_condattr_destroy(&ca);
    kv->sync_ready = 1;
    for (int i = 0; i < 3; i++)
        kv->hint[i] = (struct release_hint){kv, i};
    memcpy(kv->off, welcome->shard_offsets, sizeof(uint64_t) * (size_t)(kv->S + 1));
    if (make_pieces(kv, welcome, 0, &kv->all, &kv->nall) ||
        make_pieces(kv, welcome, 1, &kv->train, &kv->ntrain) ||
        !(kv->got = calloc((size_t)(kv->nall > kv->ntrain ? kv->nall : kv->ntrain) + 1, 1))) {
        pst_err_set(err, PST_ERR_NOMEM, "kv: out of memory");
        goto fail;
    }
    char id[32];
    snprintf(id, sizeof id, "worker-%d", rank);
    net_opts o = {.identity = id, .max_msg_bytes = (int64_t)(WIRE_CHUNK_FLOATS * sizeof(float)) + 4096};
    for (int s = 0; s < kv->S; s++) {
        snprintf(kv->endpoint[s], WIRE_ENDPOINT_MAX, "%s", welcome->server_endpoints[s]);
        if (!(kv->sock[s] = net_sock_create(ctx, NET_DEALER, &o, err)) ||
            net_sock_connect(kv->sock[s], kv->endpoint[s], err)) {
            pst_err_prefix(err, "server[%d]", s);
            goto fail;
        }
    }
    return kv;
fail:
    wk_kv_destroy(kv);
    return NULL;
}

void wk_kv_close(wk_kv *kv)
{
    if (!kv)
        return;
    for (int s = 0; s < kv->S; s++) {
        net_sock_destroy(kv->sock[s]);
        kv->sock[s] = NULL;
    }
    net_msg_destroy(kv->m);
    kv->m = NULL;
}

void wk_kv_destroy(wk_kv *kv)
{
    if (!kv)
        return;
    wk_kv_close(kv);
    free(kv->in);
    free(kv->got);
    free(kv->all);
    free(kv->train);
    if (kv->sync_ready) {
        pthread_mutex_destroy(&kv->mu);
        pthread_cond_destroy(&kv->released);
    }
    free(kv);
}

/* Sends one message per piece. With g: a float frame per piece, zero-copy (a 4 GB model is
 * not duplicated into message buffers). */
static int send_chunks(wk_kv *kv, wire_type type, const float *g, int64_t clock, int final,
                       const kv_piece *pieces, int npieces, pst_err *err)
{
    for (int i = 0; i < npieces; i++) {
        const int s = pieces[i].server;
        const uint64_t lo = pieces[i].off, len = pieces[i].len;
        wire_header h;
        wire_header_init(&h, type, ROLE, kv->rank);
        h.request_id = kv->next_id++;
        h.offset = lo;
        h.len = len;
        h.clock = clock;
        h.final = final;
        h.checkpoint = type == WIRE_MSG_PUSH && kv->ckpt_next;
        net_frame f = {0};
        int nf = 0;
        if (g) {
            f.data = g + lo;
            f.len = (size_t)len * sizeof(float);
            int slot = type == WIRE_MSG_INIT ? 2 : (int)(clock & 1);
            f.release = on_release;
            f.hint = &kv->hint[slot];
            pthread_mutex_lock(&kv->mu);
            kv->unreleased[slot]++;
            pthread_mutex_unlock(&kv->mu);
            nf = 1;
            kv->stats.bytes_pushed += f.len;
        }
        int rc = msg_send(kv->sock[s], NULL, 0, &h, &f, nf, kv->timeout_ms, err);
        if (rc)
            return pst_err_prefix(err, "%s to server[%d] %s", wire_type_name(type), s,
                                  kv->endpoint[s]);
    }
    return PST_OK;
}

static int wait_released(wk_kv *kv, int slot, pst_err *err);

int wk_kv_init(wk_kv *kv, const float *w, pst_err *err)
{
    int rc = send_chunks(kv, WIRE_MSG_INIT, w, 0, 0, kv->all, kv->nall, err);
    /* The caller overwrites w with pulled weights next: let ZeroMQ finish with it first. */
    return rc ? rc : wait_released(kv, 2, err);
}

int wk_kv_push(wk_kv *kv, const float *g, int64_t clock, pst_err *err)
{
    if (kv->ntrain > 0) {
        int slot = (int)(clock & 1);
        pthread_mutex_lock(&kv->mu);
        kv->push_t0[slot] = now_s();
        kv->push_open[slot] = 1;
        pthread_mutex_unlock(&kv->mu);
    }
    int rc = send_chunks(kv, WIRE_MSG_PUSH, g, clock, 0, kv->train, kv->ntrain, err);
    kv->ckpt_next = 0;
    return rc;
}

void wk_kv_request_checkpoint(wk_kv *kv) { kv->ckpt_next = 1; }

int wk_kv_push_released(wk_kv *kv, int64_t clock, pst_err *err)
{
    return wait_released(kv, (int)(clock & 1), err);
}

static int wait_released(wk_kv *kv, int slot, pst_err *err)
{
    /* ZeroMQ calls on_release from its I/O thread once the frame is written out; in the
     * normal flow that happened before any reply to a later request arrived, so this does
     * not wait. Otherwise the bytes are still queued: wait for the I/O thread's signal. */
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += kv->timeout_ms / 1000;
    int rc = 0;
    pthread_mutex_lock(&kv->mu);
    while (kv->unreleased[slot] > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&kv->released, &kv->mu, &deadline);
    int left = kv->unreleased[slot];
    if (slot < 2)
        settle_push(kv, slot);
    pthread_mutex_unlock(&kv->mu);
    if (left > 0)
        return pst_err_set(err, PST_ERR_TIMEOUT,
                           "%d chunk(s) of floats not sent after %d s (servers unreachable?)",
                           left, kv->timeout_ms / 1000);
    return PST_OK;
}

static int pull_start(wk_kv *kv, int64_t clock, int final, const kv_piece *pieces, int n,
                      pst_err *err)
{
    if (kv->outstanding)
        return pst_err_set(err, PST_ERR_STATE, "kv: a pull is already outstanding");
    kv->pull_id_lo = kv->next_id;
    kv->final = final;
    kv->pull_t0 = now_s();
    kv->pulling = pieces;
    kv->npulling = n;
    memset(kv->got, 0, (size_t)n);
    int rc = send_chunks(kv, WIRE_MSG_PULL, NULL, clock, final, pieces, n, err);
    kv->outstanding = (int)(kv->next_id - kv->pull_id_lo);
    return rc;
}

int wk_kv_pull_start(wk_kv *kv, int64_t clock, int final, pst_err *err)
{
    return pull_start(kv, clock, final, kv->train, kv->ntrain, err);
}

int wk_kv_pull_start_full(wk_kv *kv, int64_t clock, pst_err *err)
{
    return pull_start(kv, clock, 0, kv->all, kv->nall, err);
}

int wk_kv_pull_outstanding(const wk_kv *kv) { return kv->outstanding; }

int wk_kv_pull_wait(wk_kv *kv, float *w, int64_t *gap, pst_err *err)
{
    double start_s = now_s();
    int64_t last = net_now_ms();
    int64_t maxgap = 0;
    while (kv->outstanding > 0) {
        if (*kv->stop)
            return pst_err_set(err, PST_ERR_STATE, "stopped while waiting for weights");
        net_sock *socks[WIRE_MAX_SERVERS];
        for (int s = 0; s < kv->S; s++)
            socks[s] = kv->sock[s];
        uint64_t ready = 0;
        int rc = net_poll(socks, kv->S, 500, &ready, err);
        if (rc == PST_ERR_TIMEOUT) {
            if (kv->idle && (rc = kv->idle(kv->idle_ctx, err)))
                return rc;
            if (!kv->final && net_now_ms() - last > kv->timeout_ms)
                return pst_err_set(err, PST_ERR_TIMEOUT,
                                   "waited %d s for %d chunk(s) of weights from the servers "
                                   "(first endpoint %s); a server or another worker is stuck "
                                   "or gone",
                                   kv->timeout_ms / 1000, kv->outstanding, kv->endpoint[0]);
            continue;
        }
        if (rc)
            return rc;
        for (int s = 0; s < kv->S; s++) {
            if (!(ready & ((uint64_t)1 << s)))
                continue;
            rc = msg_recv(kv->sock[s], kv->m, 0, kv->in, 0, err);
            if (rc == PST_ERR_TIMEOUT)
                continue;
            if (rc)
                return pst_err_prefix(err, "from server[%d] %s", s, kv->endpoint[s]);
            const wire_header *h = &kv->in->h;
            if (h->type == WIRE_MSG_ERROR)
                return pst_err_set(err, PST_ERR_PEER, "server[%d] refused request %llu: %s", s,
                                   (unsigned long long)h->request_id, h->error_text);
            /* A reply answers request pull_id_lo + i, i.e. piece i, with exactly its range. */
            const kv_piece *want =
                h->request_id >= kv->pull_id_lo &&
                        h->request_id - kv->pull_id_lo < (uint64_t)kv->npulling
                    ? &kv->pulling[h->request_id - kv->pull_id_lo]
                    : NULL;
            if (h->type != WIRE_MSG_PULL_REPLY || !want || want->server != s ||
                h->offset != want->off || h->len != want->len)
                return pst_err_set(err, PST_ERR_PEER,
                                   "server[%d] sent an unexpected %s (request %llu, range "
                                   "[%llu, +%llu))",
                                   s, wire_type_name(h->type), (unsigned long long)h->request_id,
                                   (unsigned long long)h->offset, (unsigned long long)h->len);
            if (kv->got[h->request_id - kv->pull_id_lo]++) {
                log_warn(kv->lg, "ignoring a second reply to request %llu from server[%d]",
                         (unsigned long long)h->request_id, s);
                continue;
            }
            memcpy(w + h->offset, kv->in->payload[0], kv->in->payload_len[0]);
            kv->stats.bytes_pulled += kv->in->payload_len[0];
            if (h->clock_gap > maxgap)
                maxgap = h->clock_gap;
            kv->outstanding--;
            last = net_now_ms();
        }
    }
    double end_s = now_s();
    kv->stats.wait_s += end_s - start_s;
    if (!kv->final)
        met_hist_add(&kv->stats.pull_lat, end_s - kv->pull_t0);
    if (gap)
        *gap = maxgap;
    return PST_OK;
}

int wk_kv_done(wk_kv *kv, pst_err *err)
{
    for (int s = 0; s < kv->S; s++) {
        wire_header h;
        wire_header_init(&h, WIRE_MSG_DONE, ROLE, kv->rank);
        h.request_id = kv->next_id++;
        int rc = msg_send(kv->sock[s], NULL, 0, &h, NULL, 0, kv->timeout_ms, err);
        if (rc)
            return pst_err_prefix(err, "DONE to server[%d] %s", s, kv->endpoint[s]);
    }
    return PST_OK;
}

void wk_kv_get_stats(wk_kv *kv, wk_kv_stats *st)
{
    pthread_mutex_lock(&kv->mu);
    settle_push(kv, 0);
    settle_push(kv, 1);
    pthread_mutex_unlock(&kv->mu);
    *st = kv->stats;
}

void wk_kv_set_idle(wk_kv *kv, wk_kv_idle_fn fn, void *ctx)
{
    kv->idle = fn;
    kv->idle_ctx = ctx;
}
