/* tests/test_hb.c -- the heartbeat thread (proto/hb.h) against a fake coordinator on an
 * inproc:// ROUTER of the same context: heartbeats carry the progress set and the
 * incarnation; answers bring the membership (the version moves only when it changes) and
 * the servers' endpoints; an ERROR answer is a refusal (PST_ERR_NET), silence past the
 * timeout PST_ERR_TIMEOUT; hb_stop returns promptly. Intervals of 10-20 ms: milliseconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/net.h"
#include "proto/hb.h"
#include "proto/msg.h"

#define WAIT_MS 3000

typedef struct {
    net_ctx *ctx;
    net_sock *coord;
    net_msg *m;
    msg_in *in;
    wire_membership *out; /* the fake coordinator's answer */
    hb_client *hb;
    log_ctx lg;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    pst_err err = {0};
    fx->ctx = net_ctx_create(1, &err);
    net_opts o = {.hwm = -1, .linger_ms = 0};
    fx->coord = net_sock_create(fx->ctx, NET_ROUTER, &o, &err);
    assert_int_equal(net_sock_bind(fx->coord, "inproc://hb-coord", NULL, 0, &err), PST_OK);
    fx->m = net_msg_create(&err);
    fx->in = malloc(sizeof *fx->in);
    fx->out = malloc(sizeof *fx->out);
    log_init(&fx->lg, "worker", 1, stderr);
    fx->lg.level = LOG_ERROR;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    hb_stop(fx->hb);
    free(fx->in);
    free(fx->out);
    net_msg_destroy(fx->m);
    net_sock_destroy(fx->coord);
    net_ctx_destroy(fx->ctx);
    free(fx);
    return 0;
}

static void start(fixture *fx, int interval_ms, int timeout_ms)
{
    hb_options o = {.ctx = fx->ctx,
                    .coordinator = "inproc://hb-coord",
                    .role = "worker",
                    .rank = 1,
                    .generation = 3,
                    .interval_ms = interval_ms,
                    .timeout_ms = timeout_ms,
                    .lg = &fx->lg};
    pst_err err = {0};
    fx->hb = hb_start(&o, &err);
    assert_non_null(fx->hb);
}

/* The next heartbeat at the fake coordinator. */
static void next_heartbeat(fixture *fx)
{
    pst_err err = {0};
    assert_int_equal(msg_recv(fx->coord, fx->m, 1, fx->in, WAIT_MS, &err), PST_OK);
    assert_int_equal(fx->in->h.type, WIRE_MSG_HEARTBEAT);
}

/* Answers the heartbeat just received with a membership of 2 workers, 1 server. */
static void answer(fixture *fx, uint64_t gen1, int lost1, const char *server_ep)
{
    wire_env h;
    wire_env_init(&h, WIRE_MSG_HEARTBEAT, "coordinator", 0);
    h.request_id = fx->in->h.request_id;
    wire_membership *m = fx->out;
    memset(m, 0, sizeof *m);
    m->nworkers = 2;
    m->gen[0] = 1;
    m->gen[1] = gen1;
    m->lost[1] = (uint8_t)lost1;
    m->nservers = 1;
    m->server_gen[0] = 1;
    snprintf(m->server_ep[0], WIRE_ENDPOINT_MAX, "%s", server_ep);
    pst_err err = {0};
    wire_body b = {.membership = m};
    assert_int_equal(
        msg_send(fx->coord, fx->in->route, fx->in->route_len, &h, &b, NULL, 0, 0, &err), PST_OK);
}

/* Waits until hb_membership's version reaches v. */
static void wait_version(fixture *fx, uint64_t v)
{
    int64_t deadline = net_now_ms() + WAIT_MS;
    uint64_t gen[4], version = 0;
    uint8_t lost[4];
    while (net_now_ms() < deadline) {
        hb_membership(fx->hb, 4, gen, lost, NULL, &version);
        if (version >= v)
            return;
        pst_err err = {0};
        msg_recv(fx->coord, fx->m, 1, fx->in, 2, &err); /* a short wait on the socket */
    }
    fail_msg("membership version %llu, wanted %llu", (unsigned long long)version,
             (unsigned long long)v);
}

static void test_progress_and_membership(void **state)
{
    fixture *fx = *state;
    start(fx, 10, 2000);
    /* Before any progress is set a beat carries none (issue 19, item 11: a restarted
     * worker's first beats said "epoch 0 step 0" over what its rank had reached). */
    next_heartbeat(fx);
    assert_null(fx->in->b.progress);
    hb_set_clock(fx->hb, 40);
    hb_set_progress(fx->hb, 2, 17, 0.5);
    /* A beat may predate the progress: read until one carries it. */
    for (int i = 0;; i++) {
        next_heartbeat(fx);
        if (fx->in->b.progress && fx->in->b.progress->step == 17)
            break;
        assert_true(i < 50);
    }
    assert_string_equal(fx->in->h.role, "worker");
    assert_int_equal(fx->in->h.rank, 1);
    assert_int_equal(fx->in->h.generation, 3);
    assert_int_equal(fx->in->b.progress->epoch, 2);
    assert_true(fx->in->b.progress->loss == 0.5);
    assert_int_equal(fx->in->h.clock, 40); /* the steps pushed: the servers' clock */
    uint64_t gen[4] = {0}, version = 9;
    uint8_t lost[4], done[4];
    assert_int_equal(hb_membership(fx->hb, 4, gen, lost, done, &version), 0); /* none yet */
    answer(fx, 2, 0, "tcp://h:1");
    wait_version(fx, 1);
    assert_int_equal(hb_membership(fx->hb, 4, gen, lost, done, &version), 2);
    assert_int_equal(gen[1], 2);
    assert_int_equal(lost[1], 0);
    /* The same membership again: the version stays; a change moves it. */
    next_heartbeat(fx);
    answer(fx, 2, 0, "tcp://h:1");
    next_heartbeat(fx);
    answer(fx, 2, 1, "tcp://h:2");
    wait_version(fx, 2);
    hb_membership(fx->hb, 4, gen, lost, done, &version);
    assert_int_equal(version, 2);
    assert_int_equal(lost[1], 1);
    char eps[WIRE_MAX_SERVERS][WIRE_ENDPOINT_MAX];
    uint64_t sgen[WIRE_MAX_SERVERS];
    assert_int_equal(hb_servers(fx->hb, WIRE_MAX_SERVERS, sgen, eps, NULL), 1);
    assert_string_equal(eps[0], "tcp://h:2");
    pst_err err = {0};
    assert_int_equal(hb_check(fx->hb, &err), PST_OK);
}

static void test_refusal(void **state)
{
    fixture *fx = *state;
    start(fx, 10, 2000);
    next_heartbeat(fx);
    pst_err err = {0};
    msg_send_error(fx->coord, fx->in->route, fx->in->route_len, "coordinator", 0,
                   fx->in->h.request_id, PST_ERR_PEER, "worker[1] incarnation 3 was replaced",
                   &err);
    int64_t deadline = net_now_ms() + WAIT_MS;
    int rc;
    while ((rc = hb_check(fx->hb, &err)) == PST_OK && net_now_ms() < deadline) {
        pst_err e = {0};
        msg_recv(fx->coord, fx->m, 1, fx->in, 2, &e);
    }
    assert_int_equal(rc, PST_ERR_NET);
    assert_non_null(strstr(err.msg, "was replaced"));
    assert_non_null(strstr(err.msg, "inproc://hb-coord"));
}

static void test_silent_coordinator(void **state)
{
    fixture *fx = *state;
    start(fx, 10, 150);
    int64_t t0 = net_now_ms();
    pst_err err = {0};
    int rc;
    /* Heartbeats keep coming, unanswered; hb_check fails after the timeout. */
    while ((rc = hb_check(fx->hb, &err)) == PST_OK && net_now_ms() - t0 < WAIT_MS) {
        pst_err e = {0};
        msg_recv(fx->coord, fx->m, 1, fx->in, 5, &e);
    }
    assert_int_equal(rc, PST_ERR_TIMEOUT);
    int64_t took = net_now_ms() - t0;
    assert_true(took >= 150 && took < 1500);
    assert_non_null(strstr(err.msg, "has not answered heartbeats"));
    /* Stops at once (the thread waits at most 100 ms a turn). */
    int64_t s0 = net_now_ms();
    hb_stop(fx->hb);
    fx->hb = NULL;
    assert_true(net_now_ms() - s0 < 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_progress_and_membership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_coordinator, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
