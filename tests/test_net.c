/* tests/test_net.c -- the transport and wire messages over real sockets on loopback:
 * a ROUTER bound to an ephemeral port and DEALERs connected to it. Checks multipart round
 * trips, the zero-copy release contract (exactly once, also on failure), receive timeouts,
 * and that malformed input (too many frames, a garbage envelope, frames that disagree with
 * the envelope, frames over ZMQ_MAXMSGSIZE) is refused without harm to the socket.
 *
 * Malformed messages are sent through a raw libzmq DEALER, since net/ and proto/ only
 * send well-formed ones.
 *
 * CURVE: a client with a listed key talks; a client with an unlisted key and a plaintext
 * client get nothing through, and both refusals are counted and logged; bad key files are
 * refused naming the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "net/net.h"
#include "proto/msg.h"

#define WAIT_MS 5000 /* upper bound of every wait for something that must happen */

typedef struct {
    net_ctx *ctx;
    net_sock *router, *dealer;
    net_msg *m;
    char endpoint[256];
    void *zctx, *raw; /* raw libzmq DEALER for malformed messages */
} fixture;

static int setup_opts(void **state, int64_t max_msg_bytes)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    pst_err err = {0};
    fx->ctx = net_ctx_create(1, &err);
    assert_non_null(fx->ctx);
    net_opts ro = {.hwm = -1, .max_msg_bytes = max_msg_bytes, .linger_ms = 100};
    fx->router = net_sock_create(fx->ctx, NET_ROUTER, &ro, &err);
    assert_non_null(fx->router);
    if (net_sock_bind(fx->router, "tcp://127.0.0.1:0", fx->endpoint, sizeof fx->endpoint, &err))
        fail_msg("bind: %s", err.msg);
    assert_non_null(strstr(fx->endpoint, "tcp://127.0.0.1:"));
    assert_null(strstr(fx->endpoint, ":*"));
    net_opts dopt = {.identity = "dealer-1", .linger_ms = 100};
    fx->dealer = net_sock_create(fx->ctx, NET_DEALER, &dopt, &err);
    assert_non_null(fx->dealer);
    if (net_sock_connect(fx->dealer, fx->endpoint, &err))
        fail_msg("connect: %s", err.msg);
    fx->m = net_msg_create(&err);
    assert_non_null(fx->m);
    fx->zctx = zmq_ctx_new();
    fx->raw = zmq_socket(fx->zctx, ZMQ_DEALER);
    int linger = 100;
    zmq_setsockopt(fx->raw, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(fx->raw, ZMQ_ROUTING_ID, "raw-1", 5);
    assert_int_equal(zmq_connect(fx->raw, fx->endpoint), 0);
    *state = fx;
    return 0;
}

static int setup(void **state) { return setup_opts(state, 0); }

static int teardown(void **state)
{
    fixture *fx = *state;
    zmq_close(fx->raw);
    zmq_ctx_term(fx->zctx);
    net_msg_destroy(fx->m);
    net_sock_destroy(fx->dealer);
    net_sock_destroy(fx->router);
    net_ctx_destroy(fx->ctx);
    free(fx);
    return 0;
}

/* Sends frames [0, n) from the raw DEALER as one message. */
static void raw_send(fixture *fx, const void *const *data, const size_t *len, int n)
{
    for (int i = 0; i < n; i++)
        if (zmq_send(fx->raw, data[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0) != (int)len[i])
            fail_msg("zmq_send frame %d: %s", i, zmq_strerror(zmq_errno()));
}

static size_t pack(const wire_env *h, const wire_body *b, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    pst_err err = {0};
    if (wire_pack(h, b, buf, cap, &len, &err))
        fail_msg("wire_pack: %s", err.msg);
    return len;
}

/* After a refused message the ROUTER must still deliver the next good one, in order. */
static void expect_good_message_next(fixture *fx)
{
    wire_env h;
    wire_env_init(&h, WIRE_MSG_DONE, "worker", 1);
    h.request_id = 77;
    pst_err err = {0};
    assert_int_equal(msg_send(fx->dealer, NULL, 0, &h, NULL, NULL, 0, WAIT_MS, &err), PST_OK);
    static msg_in in;
    if (msg_recv(fx->router, fx->m, 1, &in, WAIT_MS, &err))
        fail_msg("good message after a refused one: %s", err.msg);
    assert_int_equal(in.h.type, WIRE_MSG_DONE);
    assert_int_equal(in.h.request_id, 77);
    assert_int_equal(in.route_len, 8);
    assert_memory_equal(in.route, "dealer-1", 8);
}

/* ---- zero-copy release --------------------------------------------------------------- */

typedef struct {
    atomic_int calls;
    const void *data; /* the pointer the callback must get back */
    atomic_int wrong;
} release_count;

static void count_release(void *data, void *hint)
{
    release_count *rc = hint;
    if (data != rc->data)
        atomic_fetch_add(&rc->wrong, 1);
    atomic_fetch_add(&rc->calls, 1);
}

static void wait_calls(release_count *rc, int want)
{
    int64_t deadline = net_now_ms() + WAIT_MS;
    while (atomic_load(&rc->calls) < want && net_now_ms() < deadline) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(&rc->calls), want);
}

static void test_round_trip_zero_copy(void **state)
{
    fixture *fx = *state;
    static float grad[100]; /* lives until the release callback, and beyond */
    for (int i = 0; i < 100; i++)
        grad[i] = (float)i * 0.25f - 3;
    release_count rel = {.data = grad};
    atomic_init(&rel.calls, 0);
    atomic_init(&rel.wrong, 0);

    wire_env h;
    wire_env_init(&h, WIRE_MSG_PUSH, "worker", 1);
    h.request_id = 5;
    h.clock = 12;
    wire_range pr = {.offset = 1000, .len = 100};
    net_frame f = {.data = grad, .len = sizeof grad, .release = count_release, .hint = &rel};
    pst_err err = {0};
    if (msg_send(fx->dealer, NULL, 0, &h, &(wire_body){.range = &pr}, &f, 1, WAIT_MS, &err))
        fail_msg("msg_send: %s", err.msg);
    /* msg_send filled the frame count and length from the payload. */
    assert_int_equal(h.nframes, 1);
    assert_int_equal(h.frame_bytes[0], 400);

    static msg_in in;
    if (msg_recv(fx->router, fx->m, 1, &in, WAIT_MS, &err))
        fail_msg("msg_recv: %s", err.msg);
    assert_int_equal(net_msg_count(fx->m), 3); /* routing id, envelope, floats */
    assert_int_equal(in.route_len, 8);
    assert_memory_equal(in.route, "dealer-1", 8);
    assert_int_equal(in.h.type, WIRE_MSG_PUSH);
    assert_string_equal(in.h.role, "worker");
    assert_int_equal(in.h.rank, 1);
    assert_int_equal(in.h.request_id, 5);
    assert_int_equal(in.b.range->offset, 1000);
    assert_int_equal(in.b.range->len, 100);
    assert_int_equal(in.h.clock, 12);
    assert_int_equal(in.npayload, 1);
    assert_int_equal(in.payload_len[0], 400);
    assert_memory_equal(in.payload[0], grad, 400);
    wait_calls(&rel, 1);

    /* The reply goes back through the routing id, its payload copied (no release). */
    wire_env r;
    wire_env_init(&r, WIRE_MSG_PULL_REPLY, "server", 0);
    r.request_id = 6;
    wire_range rr = {.offset = 1000, .len = 2, .clock_gap = 3};
    char route[64];
    memcpy(route, in.route, in.route_len);
    const float w[2] = {1.5f, -2};
    net_frame wf = {.data = w, .len = sizeof w};
    if (msg_send(fx->router, route, in.route_len, &r, &(wire_body){.range = &rr}, &wf, 1, 0, &err))
        fail_msg("reply: %s", err.msg);
    if (msg_recv(fx->dealer, fx->m, 0, &in, WAIT_MS, &err))
        fail_msg("reply recv: %s", err.msg);
    assert_null(in.route);
    assert_int_equal(in.h.type, WIRE_MSG_PULL_REPLY);
    assert_int_equal(in.h.request_id, 6);
    assert_int_equal(in.b.range->clock_gap, 3);
    assert_int_equal(in.payload_len[0], sizeof w);
    assert_memory_equal(in.payload[0], w, sizeof w);

    /* Closing everything must not release the first frame a second time. */
    teardown(state);
    assert_int_equal(atomic_load(&rel.calls), 1);
    assert_int_equal(atomic_load(&rel.wrong), 0);
    setup(state);
}

static void test_release_on_failed_send(void **state)
{
    fixture *fx = *state;
    static float buf[4];
    release_count rel = {.data = buf};
    atomic_init(&rel.calls, 0);
    atomic_init(&rel.wrong, 0);
    pst_err err = {0};

    /* A DEALER with no peer at all: the send queue never opens, the wait times out. */
    net_sock *lonely = net_sock_create(fx->ctx, NET_DEALER, &(net_opts){.linger_ms = 1}, &err);
    assert_non_null(lonely);
    net_frame f = {.data = buf, .len = sizeof buf, .release = count_release, .hint = &rel};
    int64_t t0 = net_now_ms();
    assert_int_equal(net_send(lonely, &f, 1, 50, &err), PST_ERR_TIMEOUT);
    assert_true(net_now_ms() - t0 < WAIT_MS);
    assert_non_null(strstr(err.msg, "send queue full for 50 ms"));
    assert_int_equal(atomic_load(&rel.calls), 1); /* released before net_send returned */
    net_sock_destroy(lonely);

    /* A ROUTER addressing a routing id nobody has: refused at once (ROUTER_MANDATORY). */
    wire_env h;
    wire_env_init(&h, WIRE_MSG_PULL_REPLY, "server", 0);
    wire_body b = {.range = &(wire_range){.offset = 0, .len = 4}};
    assert_int_equal(msg_send(fx->router, "nobody", 6, &h, &b, &f, 1, 0, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "peer not connected"));
    assert_int_equal(atomic_load(&rel.calls), 2);

    /* msg_send refusing its arguments releases the payload too. */
    net_frame many[5] = {f, f, f, f, f};
    for (int i = 1; i < 5; i++)
        many[i].release = NULL;
    assert_int_equal(msg_send(fx->dealer, NULL, 0, &h, &b, many, 5, 0, &err), PST_ERR_ARG);
    assert_int_equal(atomic_load(&rel.calls), 3);
    assert_int_equal(atomic_load(&rel.wrong), 0);
}

/* ---- timeouts ---------------------------------------------------------------------------- */

static void test_recv_timeout(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    int64_t t0 = net_now_ms();
    assert_int_equal(net_recv(fx->router, fx->m, 100, &err), PST_ERR_TIMEOUT);
    int64_t took = net_now_ms() - t0;
    assert_true(took >= 95);
    assert_true(took < 2000);
    assert_non_null(strstr(err.msg, "nothing received for 100 ms"));
    assert_int_equal(net_msg_count(fx->m), 0);
    /* 0 polls once. */
    t0 = net_now_ms();
    assert_int_equal(net_recv(fx->router, fx->m, 0, &err), PST_ERR_TIMEOUT);
    assert_true(net_now_ms() - t0 < 1000);
    uint64_t ready = 1;
    net_sock *socks[1] = {fx->router};
    assert_int_equal(net_poll(socks, 1, 20, &ready, &err), PST_ERR_TIMEOUT);
    assert_int_equal(ready, 0);
}

/* ---- malformed input --------------------------------------------------------------------- */

static void test_too_many_frames(void **state)
{
    fixture *fx = *state;
    const void *data[NET_MAX_FRAMES + 2];
    size_t len[NET_MAX_FRAMES + 2];
    char bytes[NET_MAX_FRAMES + 2][16];
    for (int i = 0; i < NET_MAX_FRAMES + 2; i++) {
        snprintf(bytes[i], sizeof bytes[i], "f%d", i);
        data[i] = bytes[i];
        len[i] = strlen(bytes[i]);
    }
    raw_send(fx, data, len, NET_MAX_FRAMES + 2); /* + the routing id: 11 frames arrive */
    pst_err err = {0};
    assert_int_equal(net_recv(fx->router, fx->m, WAIT_MS, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "more than 8 frames"));
    assert_int_equal(net_msg_count(fx->m), 0);

    /* Exactly NET_MAX_FRAMES is fine: 7 from the DEALER + its routing id. */
    raw_send(fx, data, len, NET_MAX_FRAMES - 1);
    if (net_recv(fx->router, fx->m, WAIT_MS, &err))
        fail_msg("8 frames: %s", err.msg);
    assert_int_equal(net_msg_count(fx->m), NET_MAX_FRAMES);
    size_t n;
    const char *last = net_msg_data(fx->m, NET_MAX_FRAMES - 1, &n);
    assert_int_equal(n, 2);
    assert_memory_equal(last, "f6", 2);
    /* The refused message was read to its end: the next one starts cleanly. */
    expect_good_message_next(fx);
}

static void test_garbage_envelope(void **state)
{
    fixture *fx = *state;
    static msg_in in;
    pst_err err = {0};
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x07};
    const void *data[1] = {junk};
    size_t len[1] = {sizeof junk};
    raw_send(fx, data, len, 1);
    assert_int_equal(msg_recv(fx->router, fx->m, 1, &in, WAIT_MS, &err), PST_ERR_PEER);
    assert_int_equal(err.code, PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "envelope of 5 bytes does not parse"));

    /* A well-formed envelope of another version. */
    wire_env h;
    wire_env_init(&h, WIRE_MSG_DONE, "worker", 0);
    h.version = WIRE_VERSION + 1;
    uint8_t buf[256];
    data[0] = buf;
    len[0] = pack(&h, NULL, buf, sizeof buf);
    raw_send(fx, data, len, 1);
    assert_int_equal(msg_recv(fx->router, fx->m, 1, &in, WAIT_MS, &err), PST_ERR_PEER);
    char want[64];
    snprintf(want, sizeof want, "version %u, this build speaks %u", WIRE_VERSION + 1, WIRE_VERSION);
    assert_non_null(strstr(err.msg, want));

    /* Only a routing id, no envelope: an empty message from the DEALER side. */
    assert_int_equal(zmq_send(fx->raw, "", 0, 0), 0);
    assert_int_equal(msg_recv(fx->router, fx->m, 1, &in, WAIT_MS, &err), PST_ERR_PEER);
    expect_good_message_next(fx);
}

static void test_frame_length_mismatch(void **state)
{
    fixture *fx = *state;
    static msg_in in;
    pst_err err = {0};
    wire_env h;
    wire_env_init(&h, WIRE_MSG_PUSH, "worker", 0);
    wire_range r = {.offset = 0, .len = 100};
    wire_body b = {.range = &r};
    h.nframes = 1;
    h.frame_bytes[0] = 400;
    uint8_t buf[256];
    static float g[100];
    const void *data[2] = {buf, g};
    size_t len[2] = {pack(&h, &b, buf, sizeof buf), 396};
    raw_send(fx, data, len, 2);
    assert_int_equal(msg_recv(fx->router, fx->m, 1, &in, WAIT_MS, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "PUSH"));
    assert_non_null(strstr(err.msg, "frame 1 has 396 bytes, header says 400"));

    /* Truncated: the envelope announces a frame that never comes. */
    raw_send(fx, data, len, 1);
    assert_int_equal(msg_recv(fx->router, fx->m, 1, &in, WAIT_MS, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "0 payload frames arrived, header says 1"));

    /* A huge declared length with a small frame. */
    r.len = (uint64_t)1 << 40;
    h.frame_bytes[0] = r.len * sizeof(float);
    len[0] = pack(&h, &b, buf, sizeof buf);
    len[1] = 16;
    raw_send(fx, data, len, 2);
    assert_int_equal(msg_recv(fx->router, fx->m, 1, &in, WAIT_MS, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "frame 1 has 16 bytes, header says 4398046511104"));
    expect_good_message_next(fx);
}

/* ZMQ_MAXMSGSIZE: a frame over the limit drops the sender's connection inside ZeroMQ; the
 * receiver sees nothing (a timeout), and the reconnected sender is heard again. */
static int setup_small(void **state) { return setup_opts(state, 1024); }

static void test_max_msg_size(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    expect_good_message_next(fx); /* connected */
    static uint8_t big[4096];
    memset(big, 0xab, sizeof big);
    net_frame f = {.data = big, .len = sizeof big};
    assert_int_equal(net_send(fx->dealer, &f, 1, WAIT_MS, &err), PST_OK);
    assert_int_equal(net_recv(fx->router, fx->m, 300, &err), PST_ERR_TIMEOUT);

    /* Frames at the limit still pass once the DEALER has reconnected: keep sending a small
     * one until it arrives (bounded). */
    int64_t deadline = net_now_ms() + WAIT_MS;
    int got = 0;
    while (!got && net_now_ms() < deadline) {
        net_frame s = {.data = big, .len = 1000};
        int rc = net_send(fx->dealer, &s, 1, 100, &err);
        assert_true(rc == PST_OK || rc == PST_ERR_TIMEOUT);
        if (net_recv(fx->router, fx->m, 100, &err) == PST_OK) {
            size_t n;
            net_msg_data(fx->m, 1, &n);
            assert_int_equal(n, 1000); /* never the oversized one */
            got = 1;
        }
    }
    assert_true(got);
}

/* ---- CURVE ------------------------------------------------------------------------- */

typedef struct {
    char dir[64];
    char server_key[128], server_pub[128], client_key[128], other_key[128], allow[128];
    char log_path[128];
    FILE *log;
    log_ctx lg;
} curve_fx;

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A key pair as pstrain keygen writes it; the allow-list file gets the public key when
 * listed. */
static void make_pair(curve_fx *c, const char *name, char *secret_path, int listed)
{
    char pub[41], sec[41], text[200], path[128];
    pst_err err = {0};
    assert_int_equal(net_curve_keypair(pub, sec, &err), PST_OK);
    snprintf(secret_path, 128, "%s/%s.key", c->dir, name);
    snprintf(text, sizeof text, "# pstrain CURVE secret key '%s' -- keep private\n%s\n", name, sec);
    write_text(secret_path, text);
    snprintf(path, sizeof path, "%s/%s.pub", c->dir, name);
    snprintf(text, sizeof text, "# pstrain CURVE public key '%s'\n%s\n", name, pub);
    write_text(path, text);
    if (listed) {
        FILE *f = fopen(c->allow, "a");
        assert_non_null(f);
        fprintf(f, "%s\n", pub);
        fclose(f);
    }
}

static int curve_setup(void **state)
{
    if (!zmq_has("curve"))
        skip();
    curve_fx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    snprintf(c->dir, sizeof c->dir, "/tmp/pst-test-net-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    snprintf(c->allow, sizeof c->allow, "%s/allow.txt", c->dir);
    write_text(c->allow, "# clients\n");
    make_pair(c, "server", c->server_key, 0);
    snprintf(c->server_pub, sizeof c->server_pub, "%s/server.pub", c->dir);
    make_pair(c, "worker", c->client_key, 1);
    make_pair(c, "intruder", c->other_key, 0);
    snprintf(c->log_path, sizeof c->log_path, "%s/log.txt", c->dir);
    c->log = fopen(c->log_path, "w+");
    assert_non_null(c->log);
    setvbuf(c->log, NULL, _IOLBF, 0);
    log_init(&c->lg, "test", -1, c->log);
    *state = c;
    return 0;
}

static int curve_teardown(void **state)
{
    curve_fx *c = *state;
    fclose(c->log);
    const char *names[] = {"server.key",   "server.pub",   "worker.key", "worker.pub",
                           "intruder.key", "intruder.pub", "allow.txt",  "log.txt",
                           "empty.txt",    "fresh.key",    "fresh.pub"};
    char path[160];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", c->dir, names[i]);
        unlink(path);
    }
    rmdir(c->dir);
    free(c);
    return 0;
}

/* The whole log so far. */
static void read_log(curve_fx *c, char *buf, size_t n)
{
    FILE *f = fopen(c->log_path, "r");
    assert_non_null(f);
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = '\0';
    fclose(f);
}

typedef struct {
    net_ctx *ctx;
    net_sock *router;
    char endpoint[256];
} curve_server;

static void server_start(curve_fx *c, curve_server *s)
{
    pst_err err = {0};
    s->ctx = net_ctx_create(1, &err);
    assert_non_null(s->ctx);
    net_curve_files f = {.server_secret = c->server_key, .allow = c->allow};
    if (net_ctx_curve(s->ctx, &f, &c->lg, &err))
        fail_msg("net_ctx_curve: %s", err.msg);
    s->router = net_sock_create(s->ctx, NET_ROUTER, &(net_opts){.linger_ms = 100}, &err);
    assert_non_null(s->router);
    if (net_sock_bind(s->router, "tcp://127.0.0.1:0", s->endpoint, sizeof s->endpoint, &err))
        fail_msg("bind: %s", err.msg);
}

static void server_stop(curve_server *s)
{
    net_sock_destroy(s->router);
    net_ctx_destroy(s->ctx);
}

/* A client context: CURVE with client_key, or plaintext when client_key is NULL. */
static net_ctx *client_ctx(curve_fx *c, const char *client_key)
{
    pst_err err = {0};
    net_ctx *ctx = net_ctx_create(1, &err);
    assert_non_null(ctx);
    if (client_key) {
        net_curve_files f = {.server_public = c->server_pub, .client_secret = client_key};
        if (net_ctx_curve(ctx, &f, &c->lg, &err))
            fail_msg("net_ctx_curve: %s", err.msg);
    }
    return ctx;
}

static void test_curve_round_trip(void **state)
{
    curve_fx *c = *state;
    curve_server s;
    server_start(c, &s);
    pst_err err = {0};
    net_ctx *cc = client_ctx(c, c->client_key);
    net_sock *d =
        net_sock_create(cc, NET_DEALER, &(net_opts){.identity = "w", .linger_ms = 100}, &err);
    assert_non_null(d);
    assert_int_equal(net_sock_connect(d, s.endpoint, &err), PST_OK);
    net_msg *m = net_msg_create(&err);
    net_frame f = {.data = "ping", .len = 4};
    assert_int_equal(net_send(d, &f, 1, WAIT_MS, &err), PST_OK);
    if (net_recv(s.router, m, WAIT_MS, &err))
        fail_msg("recv: %s", err.msg);
    assert_int_equal(net_msg_count(m), 2);
    size_t n;
    const void *id = net_msg_data(m, 0, &n);
    net_frame reply[2] = {{.data = id, .len = n}, {.data = "pong", .len = 4}};
    assert_int_equal(net_send(s.router, reply, 2, WAIT_MS, &err), PST_OK);
    assert_int_equal(net_recv(d, m, WAIT_MS, &err), PST_OK);
    const char *p = net_msg_data(m, 0, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(p, "pong", 4);
    assert_int_equal(net_ctx_refusals(s.ctx), 0);
    assert_int_equal(net_ctx_refusals(cc), 0);
    net_msg_destroy(m);
    net_sock_destroy(d);
    net_ctx_destroy(cc);
    server_stop(&s);
}

/* client_key: an unlisted key, or NULL for a plaintext client. Nothing must get through;
 * the server counts and logs the refusal. */
static void refused_client(curve_fx *c, const char *client_key, const char *server_says)
{
    curve_server s;
    server_start(c, &s);
    pst_err err = {0};
    net_ctx *cc = client_ctx(c, client_key);
    net_sock *d =
        net_sock_create(cc, NET_DEALER, &(net_opts){.identity = "x", .linger_ms = 1}, &err);
    assert_non_null(d);
    assert_int_equal(net_sock_connect(d, s.endpoint, &err), PST_OK);
    net_msg *m = net_msg_create(&err);
    net_frame f = {.data = "ping", .len = 4};
    /* The send is only queued: the handshake never completes. */
    int rc = net_send(d, &f, 1, 100, &err);
    assert_true(rc == PST_OK || rc == PST_ERR_TIMEOUT);
    int64_t deadline = net_now_ms() + WAIT_MS;
    while (net_ctx_refusals(s.ctx) == 0 && net_now_ms() < deadline)
        assert_int_equal(net_recv(s.router, m, 50, &err), PST_ERR_TIMEOUT);
    assert_true(net_ctx_refusals(s.ctx) >= 1);
    assert_int_equal(net_recv(s.router, m, 300, &err), PST_ERR_TIMEOUT);
    if (client_key) { /* a CURVE client learns it was refused */
        while (net_ctx_refusals(cc) == 0 && net_now_ms() < deadline)
            assert_int_equal(net_recv(d, m, 50, &err), PST_ERR_TIMEOUT);
        assert_true(net_ctx_refusals(cc) >= 1);
    }
    net_msg_destroy(m);
    net_sock_destroy(d);
    net_ctx_destroy(cc);
    server_stop(&s);
    char log[8192];
    read_log(c, log, sizeof log);
    if (!strstr(log, server_says))
        fail_msg("log lacks '%s':\n%s", server_says, log);
}

static void test_curve_unlisted_key(void **state)
{
    curve_fx *c = *state;
    refused_client(c, c->other_key, "is not in the allow-list");
    char log[8192];
    read_log(c, log, sizeof log);
    assert_non_null(strstr(log, "refused this process's CURVE key"));
}

static void test_curve_plaintext_client(void **state)
{
    curve_fx *c = *state;
    /* The server logs "does not use CURVE" or, when the client gave up first, "broke off". */
    refused_client(c, NULL, "security: refused a connection on tcp://127.0.0.1:");
}

/* What the listening side learns of a sender's key (net_msg_key): its own server key pair
 * is the server class even though the allow-list does not name it, a listed key a client,
 * and a plaintext connection has none. */
static net_key_class sender_class(curve_fx *c, curve_server *s, const char *client_key, char *z85)
{
    pst_err err = {0};
    net_ctx *cc = client_ctx(c, client_key);
    net_sock *d =
        net_sock_create(cc, NET_DEALER, &(net_opts){.identity = "k", .linger_ms = 100}, &err);
    assert_non_null(d);
    assert_int_equal(net_sock_connect(d, s->endpoint, &err), PST_OK);
    net_msg *m = net_msg_create(&err);
    net_frame f = {.data = "ping", .len = 4};
    assert_int_equal(net_send(d, &f, 1, WAIT_MS, &err), PST_OK);
    if (net_recv(s->router, m, WAIT_MS, &err))
        fail_msg("recv: %s", err.msg);
    net_key_class k = net_msg_key(m, z85);
    net_msg_destroy(m);
    net_sock_destroy(d);
    net_ctx_destroy(cc);
    return k;
}

static void read_pub(curve_fx *c, const char *name, char *z85)
{
    char path[160], line[128] = "";
    snprintf(path, sizeof path, "%s/%s.pub", c->dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f) && line[0] == '#')
        ;
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    assert_int_equal(strlen(line), 40);
    memcpy(z85, line, 41);
}

static void test_curve_key_class(void **state)
{
    curve_fx *c = *state;
    curve_server s;
    server_start(c, &s);
    char z[41], want[41];
    assert_int_equal(sender_class(c, &s, c->client_key, z), NET_KEY_CLIENT);
    read_pub(c, "worker", want);
    assert_string_equal(z, want);
    assert_int_equal(sender_class(c, &s, c->server_key, z), NET_KEY_SERVER);
    read_pub(c, "server", want);
    assert_string_equal(z, want);
    server_stop(&s);
    /* Without CURVE no class. */
    pst_err err = {0};
    net_ctx *ctx = net_ctx_create(1, &err);
    net_sock *r = net_sock_create(ctx, NET_ROUTER, &(net_opts){.linger_ms = 100}, &err);
    net_sock *d = net_sock_create(ctx, NET_DEALER, &(net_opts){.linger_ms = 100}, &err);
    char ep[256];
    assert_int_equal(net_sock_bind(r, "tcp://127.0.0.1:0", ep, sizeof ep, &err), PST_OK);
    assert_int_equal(net_sock_connect(d, ep, &err), PST_OK);
    net_msg *m = net_msg_create(&err);
    net_frame f = {.data = "ping", .len = 4};
    assert_int_equal(net_send(d, &f, 1, WAIT_MS, &err), PST_OK);
    assert_int_equal(net_recv(r, m, WAIT_MS, &err), PST_OK);
    assert_int_equal(net_msg_key(m, z), NET_KEY_NONE);
    assert_string_equal(z, "");
    net_msg_destroy(m);
    net_sock_destroy(d);
    net_sock_destroy(r);
    net_ctx_destroy(ctx);
}

/* Issue 19 item 18: a peer trying fresh keys one after another is logged per key once, and
 * per source address the 1st, 10th, 100th, ... time: 12 keys, 2 lines. */
static void test_curve_refusal_log_per_source(void **state)
{
    curve_fx *c = *state;
    curve_server s;
    server_start(c, &s);
    pst_err err = {0};
    char key[128];
    for (int i = 0; i < 12; i++) {
        make_pair(c, "fresh", key, 0);
        net_ctx *cc = client_ctx(c, key);
        net_sock *d = net_sock_create(cc, NET_DEALER, &(net_opts){.linger_ms = 1}, &err);
        assert_non_null(d);
        assert_int_equal(net_sock_connect(d, s.endpoint, &err), PST_OK);
        net_frame f = {.data = "ping", .len = 4};
        int rc = net_send(d, &f, 1, 100, &err);
        assert_true(rc == PST_OK || rc == PST_ERR_TIMEOUT);
        int64_t deadline = net_now_ms() + WAIT_MS;
        while (net_ctx_refusals(s.ctx) <= i && net_now_ms() < deadline) {
            uint64_t ready = 0;
            net_poll(&s.router, 1, 20, &ready, &err);
        }
        assert_true(net_ctx_refusals(s.ctx) > i);
        net_sock_destroy(d);
        net_ctx_destroy(cc);
    }
    server_stop(&s);
    char log[16384];
    read_log(c, log, sizeof log);
    int lines = 0;
    for (const char *p = log; (p = strstr(p, "security: refused a CURVE client from 127.0.0.1"));
         p++)
        lines++;
    if (lines != 2 || !strstr(log, "(10 keys refused from this address so far)"))
        fail_msg("expected 2 refusal lines, the 2nd counting 10 keys; the log:\n%s", log);
}

static void expect_config_error(const net_curve_files *f, const char *needle)
{
    pst_err err = {0};
    assert_int_equal(net_curve_check(f, &err), PST_ERR_CONFIG);
    if (!strstr(err.msg, needle))
        fail_msg("error '%s' lacks '%s'", err.msg, needle);
    assert_null(strchr(err.msg, '\n'));
}

static void test_curve_bad_key_files(void **state)
{
    curve_fx *c = *state;
    char missing[160], empty[160];
    snprintf(missing, sizeof missing, "%s/missing.key", c->dir);
    snprintf(empty, sizeof empty, "%s/empty.txt", c->dir);
    pst_err err = {0};
    net_curve_files ok = {c->server_key, c->server_pub, c->client_key, c->allow};
    assert_int_equal(net_curve_check(&ok, &err), PST_OK);
    net_curve_files none = {0};
    assert_int_equal(net_curve_check(&none, &err), PST_OK);
    expect_config_error(
        &(net_curve_files){.server_public = missing, .client_secret = c->client_key}, missing);
    write_text(empty, "0123456789\n");
    expect_config_error(&(net_curve_files){.server_public = c->server_pub, .client_secret = empty},
                        "is not a CURVE key file");
    write_text(empty, "# nothing here\n");
    /* Halves swapped: a public key where the secret belongs, and the other way round. */
    expect_config_error(
        &(net_curve_files){.server_public = c->server_pub, .client_secret = c->server_pub},
        "holds a public key");
    expect_config_error(
        &(net_curve_files){.server_public = c->server_key, .client_secret = c->client_key},
        "holds a secret key");
    expect_config_error(&(net_curve_files){.server_secret = c->server_key}, "needs an allow-list");
    expect_config_error(&(net_curve_files){.server_secret = c->server_key, .allow = empty},
                        "holds no keys");
    write_text(empty, "# one bad line\nnot-a-key\n");
    expect_config_error(&(net_curve_files){.server_secret = c->server_key, .allow = empty},
                        "empty.txt:2: not a CURVE public key");
    /* A folder of *.pub files is an allow-list too. */
    unlink(empty);
    if (net_curve_check(&(net_curve_files){.server_secret = c->server_key, .allow = c->dir}, &err))
        fail_msg("a folder allow-list: %s", err.msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_zero_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_on_failed_send, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recv_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_length_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_msg_size, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_curve_round_trip, curve_setup, curve_teardown),
        cmocka_unit_test_setup_teardown(test_curve_unlisted_key, curve_setup, curve_teardown),
        cmocka_unit_test_setup_teardown(test_curve_plaintext_client, curve_setup, curve_teardown),
        cmocka_unit_test_setup_teardown(test_curve_bad_key_files, curve_setup, curve_teardown),
        cmocka_unit_test_setup_teardown(test_curve_key_class, curve_setup, curve_teardown),
        cmocka_unit_test_setup_teardown(test_curve_refusal_log_per_source, curve_setup,
                                        curve_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
