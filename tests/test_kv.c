/* tests/test_kv.c -- the worker's kv client (worker/kv.h) against two scripted fake
 * servers on inproc:// ROUTERs of the same context, run by a thread: INIT, push, pull and
 * DONE round trips; a lost request sent again with the same id; repeated answers ignored;
 * replies of a step arriving out of order; a parked pull's ACK (the push it follows was
 * not whole at the server) making the push go again at once; parked pulls not sent again
 * while they wait; a refusal; a restarted
 * server (a new endpoint) getting everything unanswered at once. Milliseconds each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "net/net.h"
#include "proto/msg.h"
#include "worker/kv.h"

#define P 64    /* model floats: server 0 holds [0, 32), server 1 [32, 64) */
#define NSOCK 3 /* server 0, server 1, server 0's next incarnation */
static const char *EP[NSOCK] = {"inproc://kv-s0", "inproc://kv-s1", "inproc://kv-s0b"};

/* What the fake servers do (set before the thread starts). */
typedef struct {
    int lose[WIRE_MSG_BYE + 1]; /* drop the first n requests of a type (a request lost) */
    int lose_ack_push0;         /* server 0 takes its first PUSH but its ACK is lost */
    int park_ack0;              /* server 0 answers its first PULL with an ACK {clock - 1}
                                   and holds it until that push comes again */
    int dup;                    /* every answer sent twice */
    int reorder;                /* server 0 answers a pull only after server 1 did */
    int refuse_pull;            /* pulls answered with ERROR PST_ERR_NET */
    int dead;                   /* 1 + index of a socket that answers nothing; 0: none */
    int park_ms;                /* both servers park every pull (ACK {clock}, the push
                                   whole) and answer it park_ms later: a slow worker */
} script;

typedef struct {
    script sc;
    net_sock *sock[NSOCK];
    atomic_int stop;
    /* Counts, per socket and type, of requests received; read after the thread ends. */
    int seen[NSOCK][WIRE_MSG_BYE + 1];
    int repeats[NSOCK]; /* requests whose id was seen before on that socket */
    uint64_t ids[NSOCK][256];
    int nids[NSOCK];
    float w[P]; /* the weights the servers hold */
    /* Held replies */
    msg_in held; /* server 0's parked or reordered pull */
    char held_route[64];
    int holding;
    uint64_t parked_push_id;
    /* park_ms: each server's parked pull and when it is answered (0: none) */
    msg_in parked[2];
    char parked_route[2][64];
    int64_t parked_until[2];
} fake;

static void reply(fake *f, int s, const msg_in *in, wire_type type, int64_t clock)
{
    wire_env h;
    wire_env_init(&h, type, "server", s == 2 ? 0 : s);
    h.request_id = in->h.request_id;
    h.clock = clock;
    pst_err err = {0};
    for (int i = 0; i < (f->sc.dup ? 2 : 1); i++) {
        if (type == WIRE_MSG_PULL_REPLY) {
            const wire_range *q = in->b.range;
            wire_range r = {.offset = q->offset, .len = q->len};
            net_frame fr = {.data = f->w + q->offset, .len = q->len * sizeof(float)};
            msg_send(f->sock[s], in->route, in->route_len, &h, &(wire_body){.range = &r}, &fr, 1, 0,
                     &err);
        } else if (type == WIRE_MSG_ERROR)
            msg_send_error(f->sock[s], in->route, in->route_len, "server", s, in->h.request_id,
                           PST_ERR_NET, "given up", &err);
        else
            msg_send(f->sock[s], in->route, in->route_len, &h, NULL, NULL, 0, 0, &err);
    }
}

static void release_held(fake *f)
{
    if (!f->holding)
        return;
    f->holding = 0;
    f->held.route = f->held_route;
    reply(f, 0, &f->held, WIRE_MSG_PULL_REPLY, f->held.h.clock);
}

static void hold(fake *f, const msg_in *in)
{
    f->held = *in;
    f->held.b = (wire_body){.range = &f->held.store.range}; /* the copy's own store */
    memcpy(f->held_route, in->route, in->route_len);
    f->holding = 1;
}

static void take(fake *f, int s, const msg_in *in)
{
    wire_type t = in->h.type;
    f->seen[s][t]++;
    int rep = 0;
    for (int i = 0; i < f->nids[s]; i++)
        rep |= f->ids[s][i] == in->h.request_id;
    if (rep)
        f->repeats[s]++;
    else if (f->nids[s] < 256)
        f->ids[s][f->nids[s]++] = in->h.request_id;
    if (s + 1 == f->sc.dead)
        return;
    if (f->sc.lose[t] > 0) {
        f->sc.lose[t]--;
        return;
    }
    switch (t) {
    case WIRE_MSG_INIT:
        memcpy(f->w + in->b.range->offset, in->payload[0], in->payload_len[0]);
        reply(f, s, in, WIRE_MSG_ACK, in->h.clock);
        break;
    case WIRE_MSG_PUSH:
        if (s == 0 && f->sc.lose_ack_push0) {
            f->sc.lose_ack_push0 = 0;
            f->parked_push_id = in->h.request_id;
            break;
        }
        reply(f, s, in, WIRE_MSG_ACK, in->h.clock);
        if (s == 0 && f->holding && in->h.request_id == f->parked_push_id)
            release_held(f); /* the push came again: the parked pull can go */
        break;
    case WIRE_MSG_PULL:
        if (f->sc.park_ms && s < 2) {
            reply(f, s, in, WIRE_MSG_ACK, in->h.clock); /* parked, a repeat acked again */
            if (!f->parked_until[s]) {
                f->parked[s] = *in;
                f->parked[s].b = (wire_body){.range = &f->parked[s].store.range};
                memcpy(f->parked_route[s], in->route, in->route_len);
                f->parked_until[s] = net_now_ms() + f->sc.park_ms;
            }
        } else if (f->sc.refuse_pull) {
            reply(f, s, in, WIRE_MSG_ERROR, 0);
        } else if (s == 0 && f->sc.park_ack0) {
            f->sc.park_ack0 = 0;
            reply(f, s, in, WIRE_MSG_ACK, in->h.clock - 1);
            hold(f, in);
        } else if (s == 0 && f->sc.reorder && !f->holding && !f->seen[1][WIRE_MSG_PULL]) {
            hold(f, in); /* until server 1 has answered */
        } else if (s == 0 && f->holding) {
            /* a repeat of the held pull: still held */
        } else {
            reply(f, s, in, WIRE_MSG_PULL_REPLY, in->h.clock);
            if (s == 1 && f->sc.reorder)
                release_held(f);
        }
        break;
    case WIRE_MSG_DONE: reply(f, s, in, WIRE_MSG_ACK, 0); break;
    default: break;
    }
}

static void *fake_run(void *arg)
{
    fake *f = arg;
    pst_err err = {0};
    net_msg *m = net_msg_create(&err);
    msg_in *in = malloc(sizeof *in);
    while (!atomic_load(&f->stop)) {
        uint64_t ready = 0;
        if (net_poll(f->sock, NSOCK, 10, &ready, &err) != PST_OK)
            ready = 0; /* nothing came: parked pulls may still be due */
        for (int s = 0; s < NSOCK; s++)
            while ((ready >> s & 1) && msg_recv(f->sock[s], m, 1, in, 0, &err) == PST_OK)
                take(f, s, in);
        for (int s = 0; s < 2; s++)
            if (f->parked_until[s] && net_now_ms() >= f->parked_until[s]) {
                f->parked_until[s] = 0;
                f->parked[s].route = f->parked_route[s];
                reply(f, s, &f->parked[s], WIRE_MSG_PULL_REPLY, f->parked[s].h.clock);
            }
    }
    free(in);
    net_msg_destroy(m); /* releases the last zero-copy frame it held */
    return NULL;
}

typedef struct {
    net_ctx *ctx;
    fake f;
    pthread_t th;
    wk_kv *kv;
    log_ctx lg;
    wire_welcome *welcome;
} fixture;

static volatile sig_atomic_t no_stop = 0;

static fixture *start(const script *sc)
{
    fixture *fx = calloc(1, sizeof *fx);
    pst_err err = {0};
    fx->ctx = net_ctx_create(1, &err);
    fx->f.sc = *sc;
    for (int s = 0; s < NSOCK; s++) {
        net_opts o = {.hwm = -1, .linger_ms = 0};
        fx->f.sock[s] = net_sock_create(fx->ctx, NET_ROUTER, &o, &err);
        assert_int_equal(net_sock_bind(fx->f.sock[s], EP[s], NULL, 0, &err), PST_OK);
    }
    for (int i = 0; i < P; i++)
        fx->f.w[i] = (float)i;
    assert_int_equal(pthread_create(&fx->th, NULL, fake_run, &fx->f), 0);
    fx->welcome = calloc(1, sizeof *fx->welcome);
    fx->welcome->generation = 1;
    fx->welcome->num_servers = 2;
    fx->welcome->num_workers = 1;
    fx->welcome->nparams = P;
    fx->welcome->shard_offsets[0] = 0;
    fx->welcome->shard_offsets[1] = P / 2;
    fx->welcome->shard_offsets[2] = P;
    snprintf(fx->welcome->server_endpoints[0], WIRE_ENDPOINT_MAX, "%s", EP[0]);
    snprintf(fx->welcome->server_endpoints[1], WIRE_ENDPOINT_MAX, "%s", EP[1]);
    log_init(&fx->lg, "worker", 0, stderr);
    fx->lg.level = LOG_ERROR;
    fx->kv = wk_kv_create(fx->ctx, 0, fx->welcome, 2000, &fx->lg, &no_stop, &err);
    if (!fx->kv)
        fail_msg("wk_kv_create: %s", err.msg);
    return fx;
}

/* Ends the fake servers' thread; its counts are then safe to read. */
static void stop(fixture *fx)
{
    atomic_store(&fx->f.stop, 1);
    pthread_join(fx->th, NULL);
}

static void finish(fixture *fx)
{
    wk_kv_close(fx->kv);
    for (int s = 0; s < NSOCK; s++)
        net_sock_destroy(fx->f.sock[s]);
    net_ctx_destroy(fx->ctx);
    wk_kv_destroy(fx->kv);
    free(fx->welcome);
    free(fx);
}

static float G[P];

/* One step: push g of `clock`, pull clock + 1 into w, wait for both. */
static int step(fixture *fx, int64_t clock, float *w, pst_err *err)
{
    int rc;
    if ((rc = wk_kv_push(fx->kv, G, clock, err)) ||
        (rc = wk_kv_pull_start(fx->kv, clock + 1, 0, err)) ||
        (rc = wk_kv_pull_wait(fx->kv, w, NULL, err)))
        return rc;
    return wk_kv_push_released(fx->kv, clock, err);
}

static void assert_weights(const float *w)
{
    for (int i = 0; i < P; i++)
        assert_true(w[i] == (float)i);
}

static void test_round_trips(void **state)
{
    (void)state;
    script sc = {0};
    fixture *fx = start(&sc);
    float w[P], init[P];
    for (int i = 0; i < P; i++)
        init[i] = (float)i;
    pst_err err = {0};
    assert_int_equal(wk_kv_init(fx->kv, init, &err), PST_OK);
    assert_int_equal(wk_kv_pull_start_full(fx->kv, 0, &err), PST_OK);
    assert_int_equal(wk_kv_pull_outstanding(fx->kv), 2);
    assert_int_equal(wk_kv_pull_wait(fx->kv, w, NULL, &err), PST_OK);
    assert_weights(w);
    for (int64_t c = 0; c < 3; c++)
        assert_int_equal(step(fx, c, w, &err), PST_OK);
    assert_int_equal(wk_kv_done(fx->kv, &err), PST_OK);
    wk_kv_stats st;
    wk_kv_get_stats(fx->kv, &st);
    assert_int_equal(st.bytes_pushed, 3 * P * sizeof(float) + P * sizeof(float));
    assert_int_equal(st.resent, 0);
    stop(fx);
    for (int s = 0; s < 2; s++) {
        assert_int_equal(fx->f.seen[s][WIRE_MSG_PUSH], 3);
        assert_int_equal(fx->f.seen[s][WIRE_MSG_PULL], 4);
        assert_int_equal(fx->f.seen[s][WIRE_MSG_DONE], 1);
        assert_int_equal(fx->f.repeats[s], 0);
    }
    finish(fx);
}

/* A lost PUSH and a lost PULL: each goes again, with the same request id, at the retry
 * timeout; repeated answers (every answer twice) are ignored. */
static void test_losses_and_repeats(void **state)
{
    (void)state;
    script sc = {.dup = 1};
    sc.lose[WIRE_MSG_PUSH] = 1;
    sc.lose[WIRE_MSG_PULL] = 1;
    sc.lose[WIRE_MSG_DONE] = 1;
    fixture *fx = start(&sc);
    float w[P];
    pst_err err = {0};
    int64_t t0 = net_now_ms();
    assert_int_equal(step(fx, 0, w, &err), PST_OK);
    assert_weights(w);
    assert_int_equal(step(fx, 1, w, &err), PST_OK);
    assert_int_equal(wk_kv_done(fx->kv, &err), PST_OK);
    assert_true(net_now_ms() - t0 < 1500);
    wk_kv_stats st;
    wk_kv_get_stats(fx->kv, &st);
    assert_true(st.resent >= 2);
    stop(fx);
    assert_true(fx->f.repeats[0] + fx->f.repeats[1] >= 2);
    finish(fx);
}

/* Server 0's reply comes after server 1's: the pull completes either way. */
static void test_reordered_replies(void **state)
{
    (void)state;
    script sc = {.reorder = 1};
    fixture *fx = start(&sc);
    float w[P];
    pst_err err = {0};
    assert_int_equal(wk_kv_pull_start_full(fx->kv, 0, &err), PST_OK);
    assert_int_equal(wk_kv_pull_wait(fx->kv, w, NULL, &err), PST_OK);
    assert_weights(w);
    stop(fx);
    finish(fx);
}

/* The ACK of server 0's push is lost and server 0 parks the pull behind it with an ACK
 * saying its clock for us is 0: the push goes to server 0 again at once (not at the retry
 * timeout), and the pull is answered then. */
static void test_parked_pull_ack(void **state)
{
    (void)state;
    script sc = {.lose_ack_push0 = 1, .park_ack0 = 1};
    fixture *fx = start(&sc);
    float w[P];
    pst_err err = {0};
    assert_int_equal(step(fx, 0, w, &err), PST_OK);
    assert_weights(w);
    wk_kv_stats st;
    wk_kv_get_stats(fx->kv, &st);
    assert_true(st.resent >= 1);
    stop(fx);
    /* Once, then again (more repeats are allowed by the contract: a slow machine's timer
     * may fire before the answer). */
    assert_true(fx->f.seen[0][WIRE_MSG_PUSH] >= 2);
    assert_int_equal(fx->f.seen[1][WIRE_MSG_PUSH], 1);
    finish(fx);
}

/* bsp: every pull waits 100 ms at both servers for a slow worker, parked and acknowledged
 * at once (dlv.h, 4): the wait is no loss, so the pulls are not sent again at the retry
 * timeout (10 ms here: the pushes are answered at once), as they were before the ACK. */
static void test_parked_pull_waits(void **state)
{
    (void)state;
    script sc = {.park_ms = 100};
    fixture *fx = start(&sc);
    float w[P];
    pst_err err = {0};
    for (int64_t c = 0; c < 3; c++)
        assert_int_equal(step(fx, c, w, &err), PST_OK);
    assert_weights(w);
    stop(fx);
    /* Each pull once (6). Repeats are allowed when the ACK itself comes late (a loaded
     * machine may hold the fake servers' thread past the retry timeout); the retry timer
     * alone sends each pull about 6 times over such a wait (36). */
    int pulls = fx->f.seen[0][WIRE_MSG_PULL] + fx->f.seen[1][WIRE_MSG_PULL];
    assert_in_range(pulls, 6, 18);
    finish(fx);
}

static void test_refusal(void **state)
{
    (void)state;
    script sc = {.refuse_pull = 1};
    fixture *fx = start(&sc);
    float w[P];
    pst_err err = {0};
    assert_int_equal(wk_kv_pull_start_full(fx->kv, 0, &err), PST_OK);
    assert_int_equal(wk_kv_pull_wait(fx->kv, w, NULL, &err), PST_ERR_NET);
    assert_non_null(strstr(err.msg, "given up"));
    stop(fx);
    finish(fx);
}

/* Server 0 is gone (answers nothing); its next incarnation listens elsewhere: after
 * wk_kv_reconnect the unanswered push and pull go there at once. */
static void test_restarted_server(void **state)
{
    (void)state;
    script sc = {.dead = 1};
    fixture *fx = start(&sc);
    float w[P];
    pst_err err = {0};
    assert_int_equal(wk_kv_push(fx->kv, G, 0, &err), PST_OK);
    assert_int_equal(wk_kv_pull_start(fx->kv, 1, 0, &err), PST_OK);
    assert_int_equal(wk_kv_reconnect(fx->kv, 0, EP[2], &err), PST_OK);
    int64_t t0 = net_now_ms();
    assert_int_equal(wk_kv_pull_wait(fx->kv, w, NULL, &err), PST_OK);
    assert_int_equal(wk_kv_push_released(fx->kv, 0, &err), PST_OK);
    assert_true(net_now_ms() - t0 < 1000);
    assert_weights(w);
    stop(fx);
    assert_true(fx->f.seen[2][WIRE_MSG_PUSH] >= 1); /* a repeat is allowed (slow machine) */
    assert_true(fx->f.seen[2][WIRE_MSG_PULL] >= 1);
    finish(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),       cmocka_unit_test(test_losses_and_repeats),
        cmocka_unit_test(test_reordered_replies), cmocka_unit_test(test_parked_pull_ack),
        cmocka_unit_test(test_parked_pull_waits), cmocka_unit_test(test_refusal),
        cmocka_unit_test(test_restarted_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
