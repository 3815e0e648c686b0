/* tests/test_coord.c -- the coordinator (ps/coord.h) run in a thread of the test, talked to
 * by fake servers and workers (DEALERs over loopback TCP): the HELLO/WELCOME rendezvous
 * (a repeated HELLO before and after WELCOME, the shard map), STATUS, DONE acknowledged
 * (again when repeated), SHUTDOWN and BYE; a HELLO of another job refused and the job
 * aborted; a worker that stops heartbeating declared lost in the membership, its old
 * incarnation refused, and a restarted one welcomed as incarnation 2. Each case runs in
 * milliseconds except the lost worker, which waits out the 1 s heartbeat timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>

#include "job/job.h"
#include "net/net.h"
#include "proto/msg.h"
#include "ps/coord.h"

#define WAIT_MS 3000
#define NPARAMS 100

typedef struct {
    cfg_job *job;
    coord_options o;
    volatile sig_atomic_t stop;
    pthread_t th;
    int rc;
    pst_err err;
    log_ctx lg;
    char dir[64], endpoint[256];
    net_ctx *ctx;
    net_msg *m;
    msg_in *in;
} fixture;

/* A peer: its main connection and its heartbeat connection. */
typedef struct {
    net_sock *main, *hb;
    const char *role;
    int rank, pid;
    uint64_t gen;
} peer;

static void *coord_thread(void *arg)
{
    fixture *fx = arg;
    fx->rc = coord_run(&fx->o, &fx->err);
    return NULL;
}

static fixture *start(int workers, int hb_timeout_s)
{
    fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/test_coord_XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "name: t\n"
             "data: {train: unused, train_labels: unused}\n"
             "model: {layers: [{units: 4, activation: relu}, {units: 2, activation: softmax}]}\n"
             "cluster: {servers: 1, workers: %d, timeout_s: 5, heartbeat_ms: 20, "
             "heartbeat_timeout_s: %d}\n"
             "output: {dir: %s}\n",
             workers, hb_timeout_s, fx->dir);
    pst_err err = {0};
    if (cfg_job_load_string(&fx->job, yaml, strlen(yaml), "test", &err))
        fail_msg("job: %s", err.msg);
    log_init(&fx->lg, "coordinator", -1, stderr);
    fx->lg.level = LOG_ERROR;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fx->o = (coord_options){.bind = "tcp://127.0.0.1:0",
                            .ready_fd = fds[1],
                            .job = fx->job,
                            .lg = &fx->lg,
                            .stop = &fx->stop};
    assert_int_equal(pthread_create(&fx->th, NULL, coord_thread, fx), 0);
    ssize_t n = read(fds[0], fx->endpoint, sizeof fx->endpoint - 1);
    close(fds[0]);
    assert_true(n > 0);
    fx->endpoint[n - 1] = '\0'; /* the newline */
    fx->ctx = net_ctx_create(1, &err);
    fx->m = net_msg_create(&err);
    fx->in = malloc(sizeof *fx->in);
    return fx;
}

static int join(fixture *fx)
{
    pthread_join(fx->th, NULL);
    return fx->rc;
}

static void finish(fixture *fx, peer *peers, int n)
{
    for (int i = 0; i < n; i++) {
        net_sock_destroy(peers[i].main);
        net_sock_destroy(peers[i].hb);
    }
    free(fx->in);
    net_msg_destroy(fx->m);
    net_ctx_destroy(fx->ctx);
    cfg_job_free(fx->job);
    rmdir(fx->dir);
    free(fx);
}

static net_sock *connect_as(fixture *fx, const char *id)
{
    pst_err err = {0};
    net_opts o = {.identity = id, .linger_ms = 0};
    net_sock *s = net_sock_create(fx->ctx, NET_DEALER, &o, &err);
    assert_non_null(s);
    assert_int_equal(net_sock_connect(s, fx->endpoint, &err), PST_OK);
    return s;
}

static peer make_peer(fixture *fx, const char *role, int rank, int pid)
{
    char id[64];
    peer p = {.role = role, .rank = rank, .pid = pid, .gen = 1};
    snprintf(id, sizeof id, "%s-%d-%d", role, rank, pid);
    p.main = connect_as(fx, id);
    snprintf(id, sizeof id, "%s-%d-%d-hb", role, rank, pid);
    p.hb = connect_as(fx, id);
    return p;
}

static void send_on(net_sock *s, wire_env *h, const wire_body *b)
{
    pst_err err = {0};
    assert_int_equal(msg_send(s, NULL, 0, h, b, NULL, 0, 1000, &err), PST_OK);
}

static void hello(fixture *fx, const peer *p, uint64_t job_hash)
{
    wire_env e;
    wire_env_init(&e, WIRE_MSG_HELLO, p->role, p->rank);
    wire_hello h = {.job_hash = job_hash, .pid = p->pid};
    if (strcmp(p->role, "server") == 0)
        snprintf(h.endpoint, sizeof h.endpoint, "tcp://127.0.0.1:9");
    else {
        h.nparams = NPARAMS;
        h.steps = 10;
    }
    send_on(p->main, &e, &(wire_body){.hello = &h});
    (void)fx;
}

static void simple(const peer *p, net_sock *s, wire_type type)
{
    wire_env h;
    wire_env_init(&h, type, p->role, p->rank);
    h.generation = p->gen;
    h.request_id = 5;
    send_on(s, &h, NULL);
}

/* The next message on s (skipping those of other types); fails after WAIT_MS. */
static const msg_in *expect(fixture *fx, net_sock *s, wire_type type)
{
    int64_t deadline = net_now_ms() + WAIT_MS;
    for (;;) {
        int left = (int)(deadline - net_now_ms());
        pst_err err = {0};
        if (left <= 0 || msg_recv(s, fx->m, 0, fx->in, left, &err) == PST_ERR_TIMEOUT)
            fail_msg("no %s", wire_type_name(type));
        if (fx->in->h.type == type)
            return fx->in;
    }
}

static void expect_none(fixture *fx, net_sock *s, int ms)
{
    pst_err err = {0};
    if (msg_recv(s, fx->m, 0, fx->in, ms, &err) != PST_ERR_TIMEOUT)
        fail_msg("unexpected %s", wire_type_name(fx->in->h.type));
}

/* Polls STATUS until the coordinator has registered the process with that pid: HELLOs
 * from different connections reach its ROUTER in no fixed order, so a test that needs one
 * handled before another waits here. */
static void wait_joined(fixture *fx, int pid)
{
    net_sock *tool = connect_as(fx, "status-wait");
    peer t = {.role = "cli", .rank = 0};
    char want[32];
    snprintf(want, sizeof want, "\"pid\":%d", pid);
    int64_t deadline = net_now_ms() + WAIT_MS;
    for (;;) {
        simple(&t, tool, WIRE_MSG_STATUS);
        expect(fx, tool, WIRE_MSG_STATUS);
        char doc[4096];
        size_t len =
            fx->in->payload_len[0] < sizeof doc - 1 ? fx->in->payload_len[0] : sizeof doc - 1;
        memcpy(doc, fx->in->payload[0], len);
        doc[len] = '\0';
        if (strstr(doc, want))
            break;
        if (net_now_ms() > deadline)
            fail_msg("pid %d never joined: %s", pid, doc);
    }
    net_sock_destroy(tool);
}

static void test_rendezvous_done_shutdown(void **state)
{
    (void)state;
    fixture *fx = start(2, 5);
    uint64_t hash = cfg_job_hash(fx->job);
    peer p[3] = {make_peer(fx, "server", 0, 100), make_peer(fx, "worker", 0, 200),
                 make_peer(fx, "worker", 1, 201)};
    hello(fx, &p[0], hash);
    hello(fx, &p[1], hash);
    hello(fx, &p[1], hash); /* again (an answer lost?): no second registration */
    expect_none(fx, p[1].main, 50);
    /* STATUS while gathering. */
    net_sock *tool = connect_as(fx, "status-tool");
    peer t = {.role = "cli", .rank = 0};
    simple(&t, tool, WIRE_MSG_STATUS);
    expect(fx, tool, WIRE_MSG_STATUS);
    assert_int_equal(fx->in->npayload, 1);
    char doc[4096];
    size_t len = fx->in->payload_len[0] < sizeof doc - 1 ? fx->in->payload_len[0] : sizeof doc - 1;
    memcpy(doc, fx->in->payload[0], len);
    doc[len] = '\0';
    assert_non_null(strstr(doc, "\"phase\":\"gathering\""));
    net_sock_destroy(tool);
    hello(fx, &p[2], hash);
    for (int i = 0; i < 3; i++) {
        const msg_in *w = expect(fx, p[i].main, WIRE_MSG_WELCOME);
        assert_int_equal(w->b.welcome->num_servers, 1);
        assert_int_equal(w->b.welcome->num_workers, 2);
        assert_int_equal(w->b.welcome->nparams, NPARAMS);
        assert_int_equal(w->b.welcome->shard_offsets[0], 0);
        assert_int_equal(w->b.welcome->shard_offsets[1], NPARAMS);
        assert_string_equal(w->b.welcome->server_endpoints[0], "tcp://127.0.0.1:9");
        assert_int_equal(w->b.welcome->generation, 1);
        assert_false(w->b.welcome->rejoin);
    }
    /* A repeated HELLO after WELCOME (same process): WELCOME again. */
    hello(fx, &p[2], hash);
    expect(fx, p[2].main, WIRE_MSG_WELCOME);
    /* Heartbeats are answered with the membership. */
    simple(&p[1], p[1].hb, WIRE_MSG_HEARTBEAT);
    const msg_in *m = expect(fx, p[1].hb, WIRE_MSG_HEARTBEAT);
    assert_int_equal(m->b.membership->nworkers, 2);
    assert_int_equal(m->b.membership->gen[1], 1);
    /* DONE: acknowledged, and again when repeated. */
    simple(&p[1], p[1].main, WIRE_MSG_DONE);
    assert_int_equal(expect(fx, p[1].main, WIRE_MSG_ACK)->h.request_id, 5);
    simple(&p[1], p[1].main, WIRE_MSG_DONE);
    expect(fx, p[1].main, WIRE_MSG_ACK);
    simple(&p[2], p[2].main, WIRE_MSG_DONE);
    expect(fx, p[2].main, WIRE_MSG_ACK);
    /* Every worker done: SHUTDOWN to the server, which says BYE. */
    expect(fx, p[0].main, WIRE_MSG_SHUTDOWN);
    simple(&p[0], p[0].main, WIRE_MSG_BYE);
    expect(fx, p[0].main, WIRE_MSG_ACK);
    assert_int_equal(join(fx), PST_OK);
    finish(fx, p, 3);
}

static void test_other_job_refused(void **state)
{
    (void)state;
    fixture *fx = start(1, 5);
    uint64_t hash = cfg_job_hash(fx->job);
    peer p[2] = {make_peer(fx, "server", 0, 100), make_peer(fx, "worker", 0, 200)};
    hello(fx, &p[0], hash);
    wait_joined(fx, 100); /* the server first, so it is among those told of the abort */
    hello(fx, &p[1], hash ^ 1);
    const msg_in *e = expect(fx, p[1].main, WIRE_MSG_ERROR);
    assert_non_null(strstr(e->b.error->text, "different job"));
    /* The server that joined is told the job is aborted. */
    e = expect(fx, p[0].main, WIRE_MSG_ERROR);
    assert_non_null(strstr(e->b.error->text, "aborted"));
    assert_int_equal(join(fx), PST_ERR_CONFIG);
    assert_non_null(strstr(fx->err.msg, "different job"));
    finish(fx, p, 2);
}

/* A HELLO of another wire version (issue 19, item 13) is answered with an ERROR naming
 * both versions; the coordinator goes on waiting for the job's processes. */
static void test_wrong_version_answered(void **state)
{
    (void)state;
    fixture *fx = start(1, 5);
    peer p[1] = {make_peer(fx, "worker", 0, 200)};
    wire_env e;
    wire_env_init(&e, WIRE_MSG_HELLO, "worker", 0);
    e.version = WIRE_VERSION + 1;
    wire_hello h = {.job_hash = cfg_job_hash(fx->job), .pid = 200, .nparams = NPARAMS, .steps = 10};
    send_on(p[0].main, &e, &(wire_body){.hello = &h});
    /* The reply has this build's version; the peer of another build shows its text. */
    const msg_in *r = expect(fx, p[0].main, WIRE_MSG_ERROR);
    char v1[32], v2[32];
    snprintf(v1, sizeof v1, "wire version %u", WIRE_VERSION + 1);
    snprintf(v2, sizeof v2, "wire version %u", WIRE_VERSION);
    assert_non_null(strstr(r->b.error->text, v1));
    assert_non_null(strstr(r->b.error->text, v2));
    assert_int_equal(r->h.request_id, 0);
    fx->stop = 1;
    assert_int_equal(join(fx), PST_OK);
    finish(fx, p, 1);
}

/* Heartbeats from the peers (the last one a worker) every ~50 ms until the answers to that
 * worker say worker `lost_rank` is lost, or WAIT_MS pass. */
static const msg_in *beat_until(fixture *fx, peer *beating, int n, int lost_rank)
{
    int64_t deadline = net_now_ms() + WAIT_MS;
    while (net_now_ms() < deadline) {
        for (int i = 0; i < n; i++)
            simple(&beating[i], beating[i].hb, WIRE_MSG_HEARTBEAT);
        /* The worker's answer (the last peer beating is worker 0). */
        pst_err err = {0};
        int64_t t = net_now_ms() + 50;
        for (int left; (left = (int)(t - net_now_ms())) > 0;)
            if (msg_recv(beating[n - 1].hb, fx->m, 0, fx->in, left, &err) == PST_OK &&
                fx->in->h.type == WIRE_MSG_HEARTBEAT && fx->in->b.membership &&
                fx->in->b.membership->lost[lost_rank] == 1)
                return fx->in;
        for (int i = 0; i < n - 1; i++) /* drain the others' answers */
            while (msg_recv(beating[i].hb, fx->m, 0, fx->in, 0, &err) == PST_OK) {
            }
    }
    fail_msg("worker[%d] not declared lost", lost_rank);
    return NULL;
}

/* The coordinator's STATUS document, into doc. */
static void status_doc(fixture *fx, char *doc, size_t cap)
{
    net_sock *tool = connect_as(fx, "status-doc");
    peer t = {.role = "cli", .rank = 0};
    simple(&t, tool, WIRE_MSG_STATUS);
    expect(fx, tool, WIRE_MSG_STATUS);
    size_t len = fx->in->payload_len[0] < cap - 1 ? fx->in->payload_len[0] : cap - 1;
    memcpy(doc, fx->in->payload[0], len);
    doc[len] = '\0';
    net_sock_destroy(tool);
}

static void test_lost_worker_rejoins(void **state)
{
    (void)state;
    fixture *fx = start(2, 1);
    uint64_t hash = cfg_job_hash(fx->job);
    peer p[4] = {make_peer(fx, "server", 0, 100), make_peer(fx, "worker", 0, 200),
                 make_peer(fx, "worker", 1, 201)};
    for (int i = 0; i < 3; i++)
        hello(fx, &p[i], hash);
    for (int i = 0; i < 3; i++)
        expect(fx, p[i].main, WIRE_MSG_WELCOME);
    /* Worker 1 beats once, at clock 7 (epoch 1, step 7), then goes silent. */
    wire_env hb;
    wire_env_init(&hb, WIRE_MSG_HEARTBEAT, "worker", 1);
    hb.generation = 1;
    hb.clock = 7;
    wire_progress pr = {.epoch = 1, .step = 7, .loss = 0.25};
    send_on(p[2].hb, &hb, &(wire_body){.progress = &pr});
    expect(fx, p[2].hb, WIRE_MSG_HEARTBEAT);
    peer beating[2] = {p[0], p[1]};
    int64_t t0 = net_now_ms();
    const msg_in *m = beat_until(fx, beating, 2, 1);
    int64_t took = net_now_ms() - t0;
    assert_true(took >=
                800); /* not before the 1 s heartbeat timeout (beat_until bounds it above) */
    assert_int_equal(m->b.membership->gen[1], 1);
    /* The old incarnation's heartbeat: refused. */
    simple(&p[2], p[2].hb, WIRE_MSG_HEARTBEAT);
    const msg_in *e = expect(fx, p[2].hb, WIRE_MSG_ERROR);
    assert_non_null(strstr(e->b.error->text, "declared lost"));
    /* A restarted process (another pid, another connection) takes over rank 1. */
    p[3] = make_peer(fx, "worker", 1, 301);
    hello(fx, &p[3], hash);
    const msg_in *w = expect(fx, p[3].main, WIRE_MSG_WELCOME);
    assert_int_equal(w->b.welcome->generation, 2);
    assert_true(w->b.welcome->rejoin);
    p[3].gen = 2;
    simple(&p[3], p[3].hb, WIRE_MSG_HEARTBEAT);
    m = expect(fx, p[3].hb, WIRE_MSG_HEARTBEAT);
    assert_int_equal(m->b.membership->gen[1], 2);
    assert_int_equal(m->b.membership->lost[1], 0);
    /* Its beats before its first step carry no progress (issue 19, item 11): the rank
     * still shows where the servers had it, not epoch 0 step 0. */
    char doc[4096];
    status_doc(fx, doc, sizeof doc);
    const char *w1 = strstr(doc, "\"role\":\"worker\",\"rank\":1,");
    assert_non_null(w1);
    assert_non_null(strstr(w1, "\"epoch\":1,\"step_in_epoch\":7,\"clock\":7"));
    fx->stop = 1;
    assert_int_equal(join(fx), PST_OK);
    finish(fx, p, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rendezvous_done_shutdown),
        cmocka_unit_test(test_other_job_refused),
        cmocka_unit_test(test_wrong_version_answered),
        cmocka_unit_test(test_lost_worker_rejoins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
