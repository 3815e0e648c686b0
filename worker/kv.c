/* worker/kv.c -- see kv.h. */
#include "kv.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/ident.h"
#include "base/clock.h"

#include "proto/dlv.h"
#include "proto/msg.h"
#include "proto/wire_enc.h"

#include "compress.h"

#define ROLE "worker"

/* One message's range: [off, off + len) of the flat vector, inside server `server`'s shard
 * and at most WIRE_CHUNK_FLOATS long. state: inside a state group (batchnorm's running
 * statistics, wire_groups): its pushes carry values, so they and its pulls stay exact F32
 * whatever cluster.compression says. */
typedef struct {
    uint64_t off, len;
    int server;
    int state;
} kv_piece;

/* An acknowledged operation (INIT and PUSH chunks, DONE): its requests (proto/dlv.h: ids
 * [lo, lo + n), request lo + i being piece i, each answered once) are sent again, with the
 * same ids, until answered (servers recognise repeats). */
typedef struct {
    dlv_batch b;
    const kv_piece *pieces; /* NULL for DONE (request i goes to server i) */
    const float *buf;       /* the floats sent (zero-copy), for sending again */
    int64_t clock;
    int slot;       /* release slot of buf's frames */
    int checkpoint; /* PUSH: the first transmission asked for a checkpoint */
    wire_type type;
    uint64_t fast; /* servers (bit s) this PUSH went to again on a pull reply */
} kv_op;

struct wk_kv {
    net_ctx *ctx;
    int rank, S, timeout_ms;
    uint64_t generation;
    const log_ctx *lg;
    const volatile sig_atomic_t *stop;
    /* A stop's drain (wk_kv_flush): no signal ends a wait, and none lasts past this time
     * (net_now_ms); 0: not draining. */
    int64_t drain_until_ms;
    uint64_t nparams;
    uint64_t off[WIRE_MAX_SERVERS + 1];
    char endpoint[WIRE_MAX_SERVERS][WIRE_ENDPOINT_MAX];
    net_sock *sock[WIRE_MAX_SERVERS];
    net_msg *m;
    msg_in *in;
    dlv_ids ids;    /* request ids of every message to the servers */
    dlv_batch pull; /* the outstanding pull: request i is piece i of `pulling` */
    /* The vector in messages, server by server in order: `all` covers every float (INIT, the
     * first pull); `train` only the trainable ones and the state groups (PUSH, PULL): frozen
     * ranges (other update groups of multiplier 0, see WELCOME) never travel after the
     * first pull. */
    kv_piece *all, *train;
    int nall, ntrain;
    const kv_piece *pulling; /* the pieces of the outstanding pull: request i is piece i */
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
    double pull_t0; /* when the outstanding pull started */
    struct release_hint {
        wk_kv *kv;
        int slot;
    } hint[3];
    int sync_ready; /* mu and released are initialised */
    int final;      /* the outstanding pull is a final one */
    int ckpt_next;  /* the next push asks for a checkpoint */
    wk_kv_idle_fn idle;
    void *idle_ctx;
    wk_kv_stats stats;
    /* Retries: pushes by clock parity (2 at most in flight), INIT, DONE. */
    kv_op push_op[2], init_op, done_op;
    int64_t pull_clock;  /* clock of the outstanding pull */
    int64_t reply_clock; /* smallest worker clock the servers reported in replies */
    dlv_rto rto;         /* the retry timer (DLV_RTO_KV): when unanswered requests
                                 go again */
    int hurry;           /* a pull reply came, others are missing: dlv_rto_hurry after
                                 the answers re-armed the timer */
    int64_t last_idle_ms;
    float *pull_dst; /* where the outstanding pull's replies go */
    /* (max(nall, ntrain)) piece i of the outstanding pull is parked at its server (an ACK
     * of it came): not sent again before this time (net_now_ms); 0: not parked. */
    int64_t *parked_until;
    /* cluster.compression (wk_kv_set_compression): pushes encoded by comp (NULL: float32,
     * zero-copy from the caller's buffer); pulls of the trainable ranges ask for pull_enc
     * (the first, full pull and final pulls stay exact). */
    wk_comp *comp;
    wire_enc pull_enc, pulling_enc;
};

/* A parked pull waits for the slowest worker; only a reply lost costs this long (a sibling
 * server's reply hurries it, as any pull's). */
#define KV_PARKED_MS 250

/* Seconds on a monotonic clock: waits of a small model's step are well under a
 * millisecond, too short for net_now_ms. */

static void on_release(void *data, void *hint)
{
    (void)data;
    struct release_hint *rh = hint;
    wk_kv *kv = rh->kv;
    pthread_mutex_lock(&kv->mu);
    if (--kv->unreleased[rh->slot] == 0) {
        if (rh->slot < 2)
            kv->rel_s[rh->slot] = pst_mono_s();
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
 * a multiplier > 0 and those of state groups, apart -- at shard boundaries and into chunks:
 * *out in sending order, server by server. Two passes: count, then fill. Returns -1 when
 * out of memory. */
static int make_pieces(const wk_kv *kv, const wire_welcome *welcome, int trainable_only,
                       kv_piece **out, int *n)
{
    const wire_groups *gr = &welcome->groups;
    const int ng = trainable_only ? gr->n : 0;
    for (int pass = 0; pass < 2; pass++) {
        int k = 0;
        for (int s = 0; s < kv->S; s++) {
            /* A server with an empty dense range (a sparse model with fewer dense floats
             * than servers) still gets one empty PUSH and PULL a step: they carry the
             * worker's clock, which paces its shard, bsp's barrier and its checkpoints. */
            if (trainable_only && kv->off[s] == kv->off[s + 1]) {
                if (pass == 1)
                    (*out)[k] = (kv_piece){kv->off[s], 0, s, 0};
                k++;
                continue;
            }
            for (int g = 0; g < (ng ? ng : 1); g++) {
                if (ng && !(gr->mults[g] > 0.0f) && !gr->state[g])
                    continue;
                uint64_t a = ng ? gr->offsets[g] : 0;
                int st = ng && gr->state[g];
                /* A run: this group and the groups of its kind (trainable, state) after it. */
                while (ng && g + 1 < ng && (st ? gr->state[g + 1] : gr->mults[g + 1] > 0.0f))
                    g++;
                uint64_t b = ng ? gr->offsets[g + 1] : kv->nparams;
                uint64_t lo = a > kv->off[s] ? a : kv->off[s];
                uint64_t hi = b < kv->off[s + 1] ? b : kv->off[s + 1];
                for (; lo < hi; lo += WIRE_CHUNK_FLOATS, k++)
                    if (pass == 1)
                        (*out)[k] = (kv_piece){
                            lo, hi - lo < WIRE_CHUNK_FLOATS ? hi - lo : WIRE_CHUNK_FLOATS, s, st};
            }
        }
        if (pass == 0 && !(*out = malloc(sizeof **out * (size_t)(k ? k : 1))))
            return -1;
        *n = k;
    }
    return 0;
}

wk_kv *wk_kv_create(net_ctx *ctx, int rank, const wire_welcome *welcome, int timeout_ms,
                    const log_ctx *lg, const volatile sig_atomic_t *stop, pst_err *err)
{
    wk_kv *kv = calloc(1, sizeof *kv);
    if (!kv || !(kv->in = malloc(sizeof *kv->in)) || !(kv->m = net_msg_create(err))) {
        pst_err_set(err, PST_ERR_NOMEM, "kv: out of memory");
        goto fail;
    }
    kv->rank = rank;
    kv->ctx = ctx;
    kv->generation = welcome->generation ? welcome->generation : 1;
    dlv_rto_init(&kv->rto, &DLV_RTO_KV);
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
        make_pieces(kv, welcome, 1, &kv->train, &kv->ntrain)) {
        pst_err_set(err, PST_ERR_NOMEM, "kv: out of memory");
        goto fail;
    }
    int npull = kv->nall > kv->ntrain ? kv->nall : kv->ntrain;
    if (!(kv->parked_until = calloc((size_t)(npull > 0 ? npull : 1), sizeof(int64_t)))) {
        pst_err_set(err, PST_ERR_NOMEM, "kv: out of memory");
        goto fail;
    }
    if (dlv_batch_init(&kv->pull, npull, err) ||
        dlv_batch_init(&kv->push_op[0].b, kv->ntrain, err) ||
        dlv_batch_init(&kv->push_op[1].b, kv->ntrain, err) ||
        dlv_batch_init(&kv->init_op.b, kv->nall, err) || dlv_batch_init(&kv->done_op.b, kv->S, err))
        goto fail;
    char id[PST_TAG_MAX];
    pst_process_tag(id, sizeof id, "worker", rank, NULL);
    net_opts o = {.identity = id,
                  .max_msg_bytes = (int64_t)(WIRE_CHUNK_FLOATS * sizeof(float)) + 4096};
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
    /* Everything a worker must deliver was acknowledged before it closes (wk_kv_done);
     * what is still queued (a stop mid-step, a dead server) would only delay the exit. */
    for (int s = 0; s < kv->S; s++) {
        net_sock_discard(kv->sock[s]);
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
    dlv_batch_fini(&kv->pull);
    dlv_batch_fini(&kv->push_op[0].b);
    dlv_batch_fini(&kv->push_op[1].b);
    dlv_batch_fini(&kv->init_op.b);
    dlv_batch_fini(&kv->done_op.b);
    free(kv->all);
    free(kv->train);
    free(kv->parked_until);
    wk_comp_destroy(kv->comp);
    if (kv->sync_ready) {
        pthread_mutex_destroy(&kv->mu);
        pthread_cond_destroy(&kv->released);
    }
    free(kv);
}

/* Sends piece i of an operation: request id lo + i. With floats, zero-copy from buf (a 4 GB
 * model is not duplicated into message buffers); the release slot counts the frame. */
static int send_piece(wk_kv *kv, wire_type type, uint64_t id, const kv_piece *pc, const float *buf,
                      int slot, int64_t clock, int final, int checkpoint, pst_err *err)
{
    wire_env h;
    wire_env_init(&h, type, ROLE, kv->rank);
    h.generation = kv->generation;
    h.request_id = id;
    h.clock = clock;
    wire_range r = {.offset = pc->off, .len = pc->len, .final = final, .checkpoint = checkpoint};
    net_frame f[2] = {{0}};
    int nf = 0;
    if (buf && pc->len == 0) {
        /* An empty range: one empty frame, copied (nothing for ZeroMQ to hold). */
        f[0] = (net_frame){.data = buf, .len = 0};
        nf = 1;
    } else if (buf && type == WIRE_MSG_PUSH && kv->comp && !pc->state) {
        /* The encoded frames of this piece (wk_comp_encode filled the slot at the push). */
        const void *data[2];
        size_t bytes[2];
        wk_comp_frames(kv->comp, slot, (int)(pc - kv->train), data, bytes, &nf, &r.nnz);
        r.enc = wk_comp_enc(kv->comp);
        for (int k = 0; k < nf; k++)
            f[k] = (net_frame){.data = data[k], .len = bytes[k]};
    } else if (buf) {
        f[0] = (net_frame){.data = buf + pc->off, .len = (size_t)pc->len * sizeof(float)};
        nf = 1;
    } else if (type == WIRE_MSG_PULL)
        r.enc = pc->state || pc->len == 0 ? WIRE_ENC_F32 : kv->pulling_enc;
    for (int k = 0; k < nf && pc->len > 0; k++) {
        f[k].release = on_release;
        f[k].hint = &kv->hint[slot];
        kv->stats.bytes_pushed += f[k].len;
    }
    if (nf && pc->len > 0) {
        pthread_mutex_lock(&kv->mu);
        kv->unreleased[slot] += nf;
        pthread_mutex_unlock(&kv->mu);
    }
    int rc = msg_send(kv->sock[pc->server], NULL, 0, &h, &(wire_body){.range = &r}, f, nf,
                      kv->timeout_ms, err);
    if (rc)
        return pst_err_prefix(err, "%s to server[%d] %s", wire_type_name(type), pc->server,
                              kv->endpoint[pc->server]);
    return PST_OK;
}

static int send_done_to(wk_kv *kv, int s, uint64_t id, pst_err *err)
{
    wire_env h;
    wire_env_init(&h, WIRE_MSG_DONE, ROLE, kv->rank);
    h.generation = kv->generation;
    h.request_id = id;
    int rc = msg_send(kv->sock[s], NULL, 0, &h, NULL, NULL, 0, kv->timeout_ms, err);
    return rc ? pst_err_prefix(err, "DONE to server[%d] %s", s, kv->endpoint[s]) : PST_OK;
}

/* Bytes of floats still unanswered: what the retry timer allows transfer time for before
 * it has a sample (dlv_rto_arm_bytes). Pushes and INIT carry theirs, a pull's replies
 * bring them back; the first ACK of a 400 MB INIT comes only after its first chunk and the
 * server's allocation of its shard. */
static uint64_t inflight_bytes(const wk_kv *kv)
{
    const kv_op *ops[3] = {&kv->push_op[0], &kv->push_op[1], &kv->init_op};
    uint64_t floats = 0;
    for (int k = 0; k < 3; k++)
        for (int i = 0; ops[k]->pieces && i < ops[k]->b.n && ops[k]->b.unanswered > 0; i++)
            if (!dlv_batch_answered(&ops[k]->b, i))
                floats += ops[k]->pieces[i].len;
    for (int i = 0; i < kv->npulling && kv->pull.unanswered > 0; i++)
        if (!dlv_batch_answered(&kv->pull, i))
            floats += kv->pulling[i].len;
    return floats * sizeof(float);
}

/* Starts an acknowledged operation: every piece sent once. */
static int op_start(wk_kv *kv, kv_op *op, wire_type type, const kv_piece *pieces, int n,
                    const float *buf, int slot, int64_t clock, int checkpoint, pst_err *err)
{
    op->type = type;
    op->pieces = pieces;
    op->buf = buf;
    op->slot = slot;
    op->clock = clock;
    op->checkpoint = checkpoint;
    op->fast = 0;
    dlv_batch_start(&op->b, &kv->ids, n, 1e3 * pst_mono_s());
    dlv_rto_arm_bytes(&kv->rto, net_now_ms(), inflight_bytes(kv));
    for (int i = 0; i < n; i++) {
        /* Compressed: each piece encoded just before it goes, so that ZeroMQ's I/O thread
         * sends one while the next is encoded (resends reuse the encoded frames). */
        if (type == WIRE_MSG_PUSH && kv->comp && !pieces[i].state && pieces[i].len > 0)
            wk_comp_encode_piece(kv->comp, slot, i, buf);
        int rc = pieces ? send_piece(kv, type, op->b.lo + (uint64_t)i, &pieces[i], buf, slot, clock,
                                     0, checkpoint, err)
                        : send_done_to(kv, i, op->b.lo + (uint64_t)i, err);
        if (rc)
            return rc;
    }
    return PST_OK;
}

/* Sends again what an operation still waits for, in order. */
static int op_resend(wk_kv *kv, kv_op *op, pst_err *err)
{
    if (op->b.unanswered > 0)
        op->b.resent = 1;
    for (int i = 0; i < op->b.n && op->b.unanswered > 0; i++) {
        if (dlv_batch_answered(&op->b, i))
            continue;
        kv->stats.resent++;
        int rc = op->pieces ? send_piece(kv, op->type, op->b.lo + (uint64_t)i, &op->pieces[i],
                                         op->buf, op->slot, op->clock, 0, op->checkpoint, err)
                            : send_done_to(kv, i, op->b.lo + (uint64_t)i, err);
        if (rc)
            return rc;
    }
    return PST_OK;
}

/* An ACK: marks the request of whichever operation it answers (a late repeat of one
 * already marked is ignored). */
static void take_ack(wk_kv *kv, uint64_t id)
{
    kv_op *ops[4] = {&kv->push_op[0], &kv->push_op[1], &kv->init_op, &kv->done_op};
    for (int k = 0; k < 4; k++) {
        double rtt;
        if (ops[k]->b.unanswered > 0 &&
            dlv_batch_answer(&ops[k]->b, id, 1e3 * pst_mono_s(), &rtt)) {
            /* An operation answered without a repeat: its round trip tunes the retry
             * timer (dlv_rto_sample). */
            if (rtt >= 0)
                dlv_rto_sample(&kv->rto, rtt);
            return;
        }
    }
}

/* A reply to a pull started after a push, saying server s has not taken that push's step
 * whole (its clock `clock` <= the push's): the pull went behind the push's chunks on the
 * same connection, so a chunk (or a chunk before it) was lost. Sends the chunks for s
 * again now, older clock first, instead of at the retry interval -- once per push and
 * server; the interval covers a second loss. Under bsp no such reply comes (the pull
 * waits for our push), under ssp and asp it is the common case of a lost push. */
static int fast_resend(wk_kv *kv, int s, int64_t clock, pst_err *err)
{
    kv_op *ops[2] = {&kv->push_op[0], &kv->push_op[1]};
    if (ops[1]->clock < ops[0]->clock) {
        ops[0] = &kv->push_op[1];
        ops[1] = &kv->push_op[0];
    }
    for (int k = 0; k < 2; k++) {
        kv_op *op = ops[k];
        if (op->b.unanswered == 0 || op->clock < clock || (op->fast >> s & 1) ||
            kv->pull.lo < op->b.lo + (uint64_t)op->b.n)
            continue;
        op->fast |= (uint64_t)1 << s;
        op->b.resent = 1;
        for (int i = 0; i < op->b.n; i++) {
            if (dlv_batch_answered(&op->b, i) || op->pieces[i].server != s)
                continue;
            kv->stats.resent++;
            int rc = send_piece(kv, op->type, op->b.lo + (uint64_t)i, &op->pieces[i], op->buf,
                                op->slot, op->clock, 0, op->checkpoint, err);
            if (rc)
                return rc;
        }
        log_debug(kv->lg,
                  "push of clock %lld sent again to server[%d] at once: its reply "
                  "to a later pull shows clock %lld",
                  (long long)op->clock, s, (long long)clock);
    }
    return PST_OK;
}

/* A pull's reply or ACK says how many of our steps server s has taken whole (clock): the
 * chunks of earlier steps arrived, even if their ACKs did not. */
static void taken_whole(wk_kv *kv, int s, int64_t clock)
{
    for (int k = 0; k < 2; k++) {
        kv_op *op = &kv->push_op[k];
        if (op->b.unanswered == 0 || op->clock >= clock)
            continue;
        for (int i = 0; i < op->b.n; i++)
            if (op->pieces[i].server == s)
                dlv_batch_answer(&op->b, op->b.lo + (uint64_t)i, 0, NULL);
    }
}

/* Handles one message from server s. */
static int take_message(wk_kv *kv, int s, int64_t *maxgap, int *progress, pst_err *err)
{
    const wire_env *h = &kv->in->h;
    /* The server's code says whether a restarted process could do better (PST_ERR_NET:
     * this incarnation was given up) or not (a refused gradient). */
    if (h->type == WIRE_MSG_ERROR) {
        const wire_error *x = kv->in->b.error;
        return pst_err_set(err, x->code == PST_ERR_NET ? PST_ERR_NET : PST_ERR_PEER,
                           "server[%d] refused request %llu: %s", s,
                           (unsigned long long)h->request_id, x->text);
    }
    if (h->type == WIRE_MSG_ACK) {
        int i = kv->pull.unanswered > 0 ? dlv_batch_index(&kv->pull, h->request_id) : -1;
        if (i < 0) {
            *progress = 1;
            take_ack(kv, h->request_id);
            return PST_OK;
        }
        /* The ACK of a parked pull (dlv.h, 4): no repeat before KV_PARKED_MS; its clock
         * may show our push before it not whole there (send that again now). Only the
         * first is news: the ACKs of repeats keep it parked but do not count as answers. */
        if (!kv->parked_until[i])
            *progress = 1;
        kv->parked_until[i] = net_now_ms() + KV_PARKED_MS;
        taken_whole(kv, s, h->clock);
        return fast_resend(kv, s, h->clock, err);
    }
    /* A reply answers request pull.lo + i, i.e. piece i, with exactly its range; one
     * to an earlier pull (a request sent twice is answered twice) is dropped. */
    int piece = kv->pull.unanswered > 0 ? dlv_batch_index(&kv->pull, h->request_id) : -1;
    const kv_piece *want = piece >= 0 ? &kv->pulling[piece] : NULL;
    if (h->type == WIRE_MSG_PULL_REPLY && !want && h->request_id < kv->ids.next) {
        log_debug(kv->lg, "dropping a late reply to request %llu from server[%d]",
                  (unsigned long long)h->request_id, s);
        return PST_OK;
    }
    const wire_range *r = kv->in->b.range; /* NULL: not a range type */
    uint64_t off = r ? r->offset : 0, len = r ? r->len : 0;
    if (h->type != WIRE_MSG_PULL_REPLY || !want || want->server != s || off != want->off ||
        len != want->len)
        return pst_err_set(err, PST_ERR_PEER,
                           "server[%d] sent an unexpected %s (request %llu, range "
                           "[%llu, +%llu))",
                           s, wire_type_name(h->type), (unsigned long long)h->request_id,
                           (unsigned long long)off, (unsigned long long)len);
    if (!dlv_batch_answer(&kv->pull, h->request_id, 0, NULL)) {
        log_debug(kv->lg, "ignoring a second reply to request %llu from server[%d]",
                  (unsigned long long)h->request_id, s);
        return PST_OK;
    }
    if (r->enc == WIRE_ENC_F32 && r->len > 0) /* the frame's size matches (wire_unpack) */
        memcpy(kv->pull_dst + r->offset, kv->in->payload[0], kv->in->payload_len[0]);
    else if (r->enc != WIRE_ENC_F32)
        wire_dec_halves(r->enc, kv->pull_dst + r->offset, kv->in->payload[0], (size_t)r->len);
    kv->stats.bytes_pulled += kv->in->payload_len[0];
    if (r->clock_gap > *maxgap)
        *maxgap = r->clock_gap;
    if (h->clock < kv->reply_clock)
        kv->reply_clock = h->clock;
    taken_whole(kv, s, h->clock);
    *progress = 1;
    /* The servers answer one step's pulls at about the same moment (bsp: once the last
     * push of the clock is in everywhere): one still missing two round trips after the
     * first is likely lost, request or reply. Ask again then, not at the retry interval.
     * Only with one piece per server: a server's several chunks come one after another. */
    if (kv->pull.unanswered > 0 && kv->npulling <= kv->S) {
        kv->hurry = 1;
        memset(kv->parked_until, 0, sizeof(int64_t) * (size_t)kv->npulling);
    }
    return fast_resend(kv, s, h->clock, err);
}

/* When the only requests unanswered are pulls their servers hold parked, the timer is
 * not due before the first of them may go again. */
static void defer_parked(wk_kv *kv)
{
    if (kv->pull.unanswered == 0 || kv->push_op[0].b.unanswered || kv->push_op[1].b.unanswered ||
        kv->init_op.b.unanswered || kv->done_op.b.unanswered)
        return;
    int64_t first = INT64_MAX;
    for (int i = 0; i < kv->npulling; i++) {
        if (dlv_batch_answered(&kv->pull, i))
            continue;
        if (!kv->parked_until[i])
            return;
        first = kv->parked_until[i] < first ? kv->parked_until[i] : first;
    }
    if (first != INT64_MAX)
        dlv_rto_defer(&kv->rto, first);
}

/* Reads what the servers sent within wait_ms, then sends again what is overdue. The one
 * loop behind every wait of this file. *progress: something was answered. */
static int pump(wk_kv *kv, int wait_ms, int64_t *maxgap, int *progress, pst_err *err)
{
    net_sock *socks[WIRE_MAX_SERVERS];
    for (int s = 0; s < kv->S; s++)
        socks[s] = kv->sock[s];
    int64_t now = net_now_ms();
    int until_retry = dlv_rto_wait_ms(&kv->rto, now);
    if (wait_ms > until_retry)
        wait_ms = until_retry;
    uint64_t ready = 0;
    int rc = net_poll(socks, kv->S, wait_ms, &ready, err);
    if (rc && rc != PST_ERR_TIMEOUT)
        return rc;
    for (int s = 0; s < kv->S && rc == PST_OK; s++) {
        if (!(ready & ((uint64_t)1 << s)))
            continue;
        /* Everything queued on this connection, not just one message. */
        for (;;) {
            int r = msg_recv(kv->sock[s], kv->m, 0, kv->in, 0, err);
            if (r == PST_ERR_TIMEOUT)
                break;
            if (r)
                return pst_err_prefix(err, "from server[%d] %s", s, kv->endpoint[s]);
            if ((r = take_message(kv, s, maxgap, progress, err)))
                return r;
        }
    }
    now = net_now_ms();
    if (*progress) {
        /* An answer came: the timer runs from now (it fires after rto without any answer,
         * as TCP restarts it on every ACK of new data), so the many chunks of a large
         * operation are not sent again while their answers are still coming. */
        dlv_rto_progress(&kv->rto);
        dlv_rto_arm_bytes(&kv->rto, now, inflight_bytes(kv));
        if (kv->hurry)
            dlv_rto_hurry(&kv->rto, now, 2.0);
    }
    kv->hurry = 0;
    if (dlv_rto_due(&kv->rto, now)) {
        int any = kv->push_op[0].b.unanswered + kv->push_op[1].b.unanswered +
                  kv->init_op.b.unanswered + kv->done_op.b.unanswered + kv->pull.unanswered;
        if (any) {
            kv_op *ops[4] = {&kv->init_op, &kv->push_op[0], &kv->push_op[1], &kv->done_op};
            /* Pushes of the older clock first: servers take a worker's steps in order. */
            if (kv->push_op[1].b.unanswered && kv->push_op[0].b.unanswered &&
                kv->push_op[1].clock < kv->push_op[0].clock) {
                ops[1] = &kv->push_op[1];
                ops[2] = &kv->push_op[0];
            }
            uint64_t before = kv->stats.resent;
            for (int k = 0; k < 4; k++)
                if ((rc = op_resend(kv, ops[k], err)))
                    return rc;
            uint64_t acked_kinds = kv->stats.resent - before;
            for (int i = 0; i < kv->npulling && kv->pull.unanswered > 0; i++) {
                if (dlv_batch_answered(&kv->pull, i) || kv->parked_until[i] > now)
                    continue;
                kv->stats.resent++;
                if ((rc = send_piece(kv, WIRE_MSG_PULL, kv->pull.lo + (uint64_t)i, &kv->pulling[i],
                                     NULL, 0, kv->pull_clock, kv->final, 0, err)))
                    return rc;
            }
            if (kv->stats.resent == before) { /* only parked pulls are unanswered */
                dlv_rto_arm_bytes(&kv->rto, now, inflight_bytes(kv));
                defer_parked(kv);
                return PST_OK;
            }
            log_debug(kv->lg,
                      "sent again after %d ms: %llu INIT/PUSH/DONE, %llu PULL "
                      "(smoothed round trip %.1f ms)",
                      kv->rto.rto_ms, (unsigned long long)acked_kinds,
                      (unsigned long long)(kv->stats.resent - before - acked_kinds),
                      kv->rto.srtt_ms);
            /* Back off (double) when requests that are answered at once went unanswered, or
             * pulls did several times running (DLV_RTO_KV's patience). A pull alone may
             * wait for the slowest worker (bsp, ssp) rather than be lost: asking again
             * costs a small message, and backing off at once would make a reply that is
             * really lost cost two, four, eight intervals. */
            dlv_rto_expired(&kv->rto, acked_kinds == 0);
        }
        dlv_rto_arm_bytes(&kv->rto, now, inflight_bytes(kv));
    }
    defer_parked(kv);
    return PST_OK;
}

/* Waits until done(kv, arg) holds, pumping; fails after timeout_ms without an answer
 * (never for a final pull: it waits for the slowest worker, which the coordinator
 * watches). `what` names the wait in errors. */
static int wait_until(wk_kv *kv, int (*done)(wk_kv *, const void *), const void *arg, int bounded,
                      const char *what, int64_t *gap, pst_err *err)
{
    int64_t last = net_now_ms(), maxgap = 0;
    double start_s = pst_mono_s();
    uint64_t resent0 = kv->stats.resent;
    while (!done(kv, arg)) {
        if (!kv->drain_until_ms && *kv->stop)
            return pst_err_set(err, PST_ERR_STATE, "stopped while waiting for %s", what);
        if (kv->drain_until_ms && net_now_ms() > kv->drain_until_ms)
            return pst_err_set(err, PST_ERR_TIMEOUT,
                               "no %s from the servers (first endpoint %s) within the stop's "
                               "deadline",
                               what, kv->endpoint[0]);
        int progress = 0;
        int rc = pump(kv, 100, &maxgap, &progress, err);
        if (rc)
            return rc;
        int64_t now = net_now_ms();
        if (progress)
            last = now;
        if (now - kv->last_idle_ms >= 500) {
            kv->last_idle_ms = now;
            if (kv->idle && (rc = kv->idle(kv->idle_ctx, err)))
                return rc;
        }
        if (bounded && now - last > kv->timeout_ms)
            return pst_err_set(err, PST_ERR_TIMEOUT,
                               "waited %d s for %s from the servers (first endpoint %s); a "
                               "server or another worker is stuck or gone",
                               kv->timeout_ms / 1000, what, kv->endpoint[0]);
    }
    double waited_s = pst_mono_s() - start_s;
    kv->stats.wait_s += waited_s;
    /* What losses cost (PSTRAIN_LOG=debug): the waits that needed requests sent again. */
    if (kv->stats.resent > resent0)
        log_debug(kv->lg, "waited %.1f ms for %s, %llu request(s) sent again", 1e3 * waited_s, what,
                  (unsigned long long)(kv->stats.resent - resent0));
    if (gap)
        *gap = maxgap;
    return PST_OK;
}

static int op_acked(wk_kv *kv, const void *op)
{
    (void)kv;
    return dlv_batch_done(&((const kv_op *)op)->b);
}

static int pull_answered(wk_kv *kv, const void *arg)
{
    (void)arg;
    return dlv_batch_done(&kv->pull);
}

static int wait_released(wk_kv *kv, int slot, pst_err *err);

int wk_kv_init(wk_kv *kv, const float *w, pst_err *err)
{
    int rc = op_start(kv, &kv->init_op, WIRE_MSG_INIT, kv->all, kv->nall, w, 2, 0, 0, err);
    if (!rc)
        rc = wait_until(kv, op_acked, &kv->init_op, 1, "acknowledgements of the initial weights",
                        NULL, err);
    /* The caller overwrites w with pulled weights next: let ZeroMQ finish with it first. */
    return rc ? rc : wait_released(kv, 2, err);
}

int wk_kv_push(wk_kv *kv, const float *g, int64_t clock, pst_err *err)
{
    kv_op *op = &kv->push_op[clock & 1];
    if (!dlv_batch_done(&op->b))
        return pst_err_set(err, PST_ERR_STATE,
                           "kv: push of clock %lld before clock %lld was "
                           "acknowledged",
                           (long long)clock, (long long)op->clock);
    if (kv->ntrain > 0) {
        int slot = (int)(clock & 1);
        /* The slot's encoded frames of two steps ago: acknowledged (above), and in the
         * normal flow long released by ZeroMQ too. */
        int rc = kv->comp ? wait_released(kv, slot, err) : PST_OK;
        if (rc)
            return rc;
        pthread_mutex_lock(&kv->mu);
        kv->push_t0[slot] = pst_mono_s();
        kv->push_open[slot] = 1;
        pthread_mutex_unlock(&kv->mu);
    }
    int rc = op_start(kv, op, WIRE_MSG_PUSH, kv->train, kv->ntrain, g, (int)(clock & 1), clock,
                      kv->ckpt_next, err);
    kv->ckpt_next = 0;
    return rc;
}

void wk_kv_request_checkpoint(wk_kv *kv) { kv->ckpt_next = 1; }

int wk_kv_push_released(wk_kv *kv, int64_t clock, pst_err *err)
{
    /* The buffer may be overwritten once every server acknowledged its chunks (they are
     * not needed for sending again) and ZeroMQ let go of it. */
    kv_op *op = &kv->push_op[clock & 1];
    int rc = wait_until(kv, op_acked, op, 1, "acknowledgements of pushed gradients", NULL, err);
    return rc ? rc : wait_released(kv, (int)(clock & 1), err);
}

static int wait_released(wk_kv *kv, int slot, pst_err *err)
{
    /* ZeroMQ calls on_release from its I/O thread once the frame is written out; in the
     * normal flow that happened before any reply to a later request arrived, so this does
     * not wait. Otherwise the bytes are still queued: wait for the I/O thread's signal. */
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    double t0 = pst_mono_s();
    deadline.tv_sec += kv->timeout_ms / 1000;
    int rc = 0;
    pthread_mutex_lock(&kv->mu);
    while (kv->unreleased[slot] > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&kv->released, &kv->mu, &deadline);
    int left = kv->unreleased[slot];
    if (slot < 2)
        settle_push(kv, slot);
    pthread_mutex_unlock(&kv->mu);
    kv->stats.wait_s += pst_mono_s() - t0; /* blocked on the transport: waiting, not computing */
    if (left > 0)
        return pst_err_set(err, PST_ERR_TIMEOUT,
                           "%d chunk(s) of floats not sent after %d s (servers unreachable?)", left,
                           kv->timeout_ms / 1000);
    return PST_OK;
}

static int pull_start(wk_kv *kv, int64_t clock, int final, const kv_piece *pieces, int n,
                      pst_err *err)
{
    if (!dlv_batch_done(&kv->pull))
        return pst_err_set(err, PST_ERR_STATE, "kv: a pull is already outstanding");
    kv->final = final;
    kv->pull_t0 = pst_mono_s();
    kv->pulling = pieces;
    kv->npulling = n;
    kv->pull_clock = clock;
    kv->pulling_enc = final || pieces == kv->all ? WIRE_ENC_F32 : kv->pull_enc;
    kv->reply_clock = INT64_MAX;
    memset(kv->parked_until, 0, sizeof(int64_t) * (size_t)n);
    dlv_batch_start(&kv->pull, &kv->ids, n, 1e3 * kv->pull_t0);
    /* Timed from now, like any request: a timer armed long ago (at the last push, before a
     * long computation) would send the pull again at once. */
    dlv_rto_arm_bytes(&kv->rto, net_now_ms(), inflight_bytes(kv));
    for (int i = 0; i < n; i++) {
        int rc = send_piece(kv, WIRE_MSG_PULL, kv->pull.lo + (uint64_t)i, &pieces[i], NULL, 0,
                            clock, final, 0, err);
        if (rc)
            return rc;
    }
    return PST_OK;
}

int wk_kv_pull_start(wk_kv *kv, int64_t clock, int final, pst_err *err)
{
    return pull_start(kv, clock, final, kv->train, kv->ntrain, err);
}

int wk_kv_pull_start_full(wk_kv *kv, int64_t clock, pst_err *err)
{
    return pull_start(kv, clock, 0, kv->all, kv->nall, err);
}

int wk_kv_pull_outstanding(const wk_kv *kv) { return kv->pull.unanswered; }

int wk_kv_pull_wait(wk_kv *kv, float *w, int64_t *gap, pst_err *err)
{
    kv->pull_dst = w;
    int rc = wait_until(kv, pull_answered, NULL, !kv->final, "chunk(s) of weights", gap, err);
    if (rc == PST_OK && !kv->final)
        met_hist_add(&kv->stats.pull_lat, pst_mono_s() - kv->pull_t0);
    return rc;
}

int64_t wk_kv_reply_clock(const wk_kv *kv) { return kv->reply_clock; }

int wk_kv_reconnect(wk_kv *kv, int s, const char *endpoint, pst_err *err)
{
    char id[PST_TAG_MAX];
    pst_process_tag(id, sizeof id, "worker", kv->rank, NULL);
    /* Linger 1 ms: what the old connection still queues is for a dead process. Its
     * zero-copy frames are released when it closes; they are sent again below. */
    net_opts o = {.identity = id,
                  .linger_ms = 1,
                  .max_msg_bytes = (int64_t)(WIRE_CHUNK_FLOATS * sizeof(float)) + 4096};
    net_sock *fresh = net_sock_create(kv->ctx, NET_DEALER, &o, err);
    if (!fresh || net_sock_connect(fresh, endpoint, err)) {
        net_sock_destroy(fresh);
        return pst_err_prefix(err, "server[%d] %s", s, endpoint);
    }
    /* The old connection's queue is for a dead process: dropped now, which releases its
     * zero-copy frames at once (with ZeroMQ's linger they were held ~2 s, and every
     * worker stalled that long in wk_kv_push_released). */
    net_sock_discard(kv->sock[s]);
    kv->sock[s] = fresh;
    snprintf(kv->endpoint[s], WIRE_ENDPOINT_MAX, "%s", endpoint);
    dlv_rto_reset(&kv->rto); /* send again now */
    log_info(kv->lg, "server[%d] restarted: reconnected to %s", s, endpoint);
    return PST_OK;
}

static int pushes_acked(wk_kv *kv, const void *arg)
{
    (void)arg;
    return dlv_batch_done(&kv->push_op[0].b) && dlv_batch_done(&kv->push_op[1].b);
}

int wk_kv_done(wk_kv *kv, pst_err *err)
{
    /* The last pushes first: a lost one sent again after DONE would come from a worker the
     * server no longer counts, and its gradient would be missing from the step. */
    int rc = wait_until(kv, pushes_acked, NULL, 1,
                        "acknowledgements of the last pushed "
                        "gradients",
                        NULL, err);
    if (!rc)
        rc = op_start(kv, &kv->done_op, WIRE_MSG_DONE, NULL, kv->S, NULL, 0, 0, 0, err);
    return rc ? rc
              : wait_until(kv, op_acked, &kv->done_op, 1, "acknowledgements of DONE", NULL, err);
}

int wk_kv_flush(wk_kv *kv, int timeout_ms, pst_err *err)
{
    kv->drain_until_ms = net_now_ms() + (timeout_ms > 0 ? timeout_ms : 1);
    int rc = wait_until(kv, pushes_acked, NULL, 1, "acknowledgements of the pushed gradients", NULL,
                        err);
    kv->drain_until_ms = 0;
    return rc;
}

void wk_kv_get_stats(wk_kv *kv, wk_kv_stats *st)
{
    pthread_mutex_lock(&kv->mu);
    settle_push(kv, 0);
    settle_push(kv, 1);
    pthread_mutex_unlock(&kv->mu);
    *st = kv->stats;
}

int wk_kv_set_compression(wk_kv *kv, wire_enc enc, double topk_ratio, pst_err *err)
{
    wk_comp_destroy(kv->comp);
    kv->comp = NULL;
    kv->pull_enc = enc == WIRE_ENC_TOPK ? WIRE_ENC_F32 : enc;
    if (enc == WIRE_ENC_F32 || kv->ntrain == 0)
        return PST_OK;
    uint64_t *off = malloc(sizeof *off * (size_t)kv->ntrain),
             *len = malloc(sizeof *len * (size_t)kv->ntrain);
    if (off && len)
        for (int i = 0; i < kv->ntrain; i++) {
            off[i] = kv->train[i].off;
            len[i] = kv->train[i].len;
        }
    if (off && len)
        kv->comp = wk_comp_create(enc, topk_ratio, kv->nparams, off, len, kv->ntrain, err);
    else
        pst_err_set(err, PST_ERR_NOMEM, "kv: out of memory");
    free(off);
    free(len);
    return kv->comp ? PST_OK : err->code;
}

void wk_kv_set_idle(wk_kv *kv, wk_kv_idle_fn fn, void *ctx)
{
    kv->idle = fn;
    kv->idle_ctx = ctx;
}
