/* tests/test_wire.c -- message metadata: round trips of every type and body, bytes equal
 * to what the single-struct encoder (before issue 11) sent, and rejection of malformed,
 * truncated and random input. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/rng.h"
#include "proto/wire.h"

/* What the last unpack gave (the store is 80 KB: static, like a receiver's msg_in). */
static wire_env G;
static wire_body GB;
static wire_store GS;

static void round_trip(const wire_env *e, const wire_body *b)
{
    static uint8_t buf[WIRE_MAX_META];
    size_t len = 0;
    pst_err err = {0};
    if (wire_pack(e, b, buf, sizeof buf, &len, &err) != PST_OK)
        fail_msg("pack: %s", err.msg);
    if (wire_unpack(&G, &GB, &GS, buf, len, &err) != PST_OK)
        fail_msg("unpack: %s", err.msg);
}

static int pack_unpack(const wire_env *e, const wire_body *b, pst_err *err)
{
    static uint8_t buf[WIRE_MAX_META];
    size_t len = 0;
    assert_int_equal(wire_pack(e, b, buf, sizeof buf, &len, err), PST_OK);
    return wire_unpack(&G, &GB, &GS, buf, len, err);
}

static int pack_only(const wire_env *e, const wire_body *b, pst_err *err)
{
    static uint8_t buf[WIRE_MAX_META];
    size_t len = 0;
    return wire_pack(e, b, buf, sizeof buf, &len, err);
}

/* A welcome of S servers over [0, n), split evenly. */
static void welcome_of(wire_welcome *w, int S, int W, uint64_t n)
{
    memset(w, 0, sizeof *w);
    w->num_servers = S;
    w->num_workers = W;
    w->nparams = n;
    for (int s = 0; s <= S; s++)
        w->shard_offsets[s] = n * (uint64_t)s / (uint64_t)S;
    for (int s = 0; s < S; s++)
        snprintf(w->server_endpoints[s], WIRE_ENDPOINT_MAX, "tcp://10.0.0.%d:%d", s, 5000 + s);
}

static void test_range_round_trip(void **state)
{
    (void)state;
    static const wire_type types[4] = {WIRE_MSG_INIT, WIRE_MSG_PUSH, WIRE_MSG_PULL,
                                       WIRE_MSG_PULL_REPLY};
    for (int i = 0; i < 4; i++) {
        wire_env e;
        wire_env_init(&e, types[i], "worker", 3);
        e.request_id = 0x123456789abcULL;
        e.clock = 42;
        e.generation = 2;
        wire_range r = {.offset = 5000000000ULL,
                        .len = 1000, /* 64-bit offsets */
                        .clock_gap = types[i] == WIRE_MSG_PULL_REPLY ? 3 : 0,
                        .final = types[i] == WIRE_MSG_PULL,
                        .checkpoint = types[i] == WIRE_MSG_PUSH};
        if (types[i] != WIRE_MSG_PULL) {
            e.nframes = 1;
            e.frame_bytes[0] = 4000;
        }
        round_trip(&e, &(wire_body){.range = &r});
        assert_int_equal(G.type, types[i]);
        assert_true(G.request_id == e.request_id);
        assert_string_equal(G.role, "worker");
        assert_int_equal(G.rank, 3);
        assert_int_equal(G.clock, 42);
        assert_int_equal(G.generation, 2);
        assert_non_null(GB.range);
        assert_null(GB.welcome);
        assert_null(GB.membership);
        assert_null(GB.progress);
        assert_memory_equal(GB.range, &r, sizeof r);
    }
    size_t sizes[1] = {4000};
    pst_err err = {0};
    wire_env e;
    wire_env_init(&e, WIRE_MSG_PUSH, "worker", 0);
    e.nframes = 1;
    e.frame_bytes[0] = 4000;
    round_trip(&e, &(wire_body){.range = &(wire_range){.len = 1000}});
    assert_int_equal(wire_check_frames(&G, 1, sizes, &err), PST_OK);
    sizes[0] = 3996;
    assert_int_equal(wire_check_frames(&G, 1, sizes, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "frame 1 has 3996 bytes"));
    assert_int_equal(wire_check_frames(&G, 0, sizes, &err), PST_ERR_DATA);
}

static void test_welcome_hello_error_stats(void **state)
{
    (void)state;
    wire_env e;
    static wire_welcome w;
    wire_env_init(&e, WIRE_MSG_WELCOME, "coordinator", 0);
    welcome_of(&w, 3, 4, 300);
    w.total_updates = 77;
    w.generation = 5;
    round_trip(&e, &(wire_body){.welcome = &w});
    assert_non_null(GB.welcome);
    assert_null(GB.membership);
    assert_int_equal(GB.welcome->num_servers, 3);
    assert_int_equal(GB.welcome->num_workers, 4);
    assert_string_equal(GB.welcome->server_endpoints[2], "tcp://10.0.0.2:5002");
    assert_int_equal(GB.welcome->shard_offsets[3], 300);
    assert_int_equal(GB.welcome->total_updates, 77);
    assert_int_equal(GB.welcome->generation, 5); /* travels as the envelope's */
    assert_int_equal(G.generation, 5);

    wire_env_init(&e, WIRE_MSG_HELLO, "server", 1);
    wire_hello h = {
        .endpoint = "tcp://host:1234", .job_hash = 0xfeedULL, .pid = 77, .nparams = 9, .steps = 12};
    round_trip(&e, &(wire_body){.hello = &h});
    assert_non_null(GB.hello);
    assert_string_equal(GB.hello->endpoint, "tcp://host:1234");
    assert_true(GB.hello->job_hash == 0xfeedULL);
    assert_int_equal(GB.hello->pid, 77);
    assert_int_equal(GB.hello->nparams, 9);
    assert_int_equal(GB.hello->steps, 12);
    assert_int_equal(GB.hello->groups.n, 0);

    wire_env_init(&e, WIRE_MSG_ERROR, "server", 0);
    wire_error x = {.code = PST_ERR_PEER, .text = "range outside shard"};
    round_trip(&e, &(wire_body){.error = &x});
    assert_int_equal(GB.error->code, PST_ERR_PEER);
    assert_string_equal(GB.error->text, "range outside shard");

    wire_env_init(&e, WIRE_MSG_BYE, "server", 0);
    wire_stats st = {.pushes = 10,
                     .pulls = 11,
                     .bytes_in = 12,
                     .bytes_out = 13,
                     .updates = 14,
                     .nonfinite = 15,
                     .repeats = 16,
                     .refused = 17,
                     .max_clock_gap = 2};
    round_trip(&e, &(wire_body){.stats = &st});
    assert_non_null(GB.stats);
    assert_memory_equal(GB.stats, &st, sizeof st);
    wire_env_init(&e, WIRE_MSG_BYE, "server", 0); /* figures are optional */
    round_trip(&e, NULL);
    assert_null(GB.stats);
}

/* The types with no body of their own, and the optional progress and membership. */
static void test_control_messages(void **state)
{
    (void)state;
    static const wire_type bare[4] = {WIRE_MSG_SHUTDOWN, WIRE_MSG_BARRIER, WIRE_MSG_ACK,
                                      WIRE_MSG_STATUS};
    for (int i = 0; i < 4; i++) {
        wire_env e;
        wire_env_init(&e, bare[i], "worker", 2);
        e.clock = 7;
        e.request_id = 9;
        round_trip(&e, NULL);
        assert_int_equal(G.type, bare[i]);
        assert_int_equal(G.clock, 7);
        assert_int_equal(G.request_id, 9);
        wire_body none = {0};
        assert_memory_equal(&GB, &none, sizeof none);
    }
    assert_string_equal(wire_type_name(WIRE_MSG_BARRIER), "BARRIER");

    wire_env e;
    wire_progress p = {.epoch = 3,
                       .step = 120,
                       .loss = 0.25,
                       .samples_per_s = 1e4,
                       .test_accuracy = 0.9,
                       .stop_signal = 15};
    static const wire_type with_progress[4] = {WIRE_MSG_PROGRESS, WIRE_MSG_DONE, WIRE_MSG_HEARTBEAT,
                                               WIRE_MSG_STOP};
    for (int i = 0; i < 4; i++) {
        wire_env_init(&e, with_progress[i], "worker", 1);
        round_trip(&e, &(wire_body){.progress = &p});
        assert_non_null(GB.progress);
        assert_int_equal(GB.progress->epoch, 3);
        assert_int_equal(GB.progress->step, 120);
        assert_true(GB.progress->loss == 0.25 && GB.progress->samples_per_s == 1e4 &&
                    GB.progress->test_accuracy == 0.9);
        assert_int_equal(GB.progress->stop_signal, 15); /* a STOP's signal */
        round_trip(&e, NULL);
        assert_null(GB.progress);
    }

    /* A heartbeat answer and the WELCOME of a restarted server carry the membership. */
    static wire_membership m;
    memset(&m, 0, sizeof m);
    m.nworkers = 3;
    m.gen[0] = 1;
    m.gen[1] = 3;
    m.gen[2] = 1;
    m.lost[2] = 1;
    m.done[0] = 1;
    m.nservers = 2;
    m.server_gen[1] = 2;
    strcpy(m.server_ep[0], "tcp://a:1");
    strcpy(m.server_ep[1], "tcp://b:2");
    wire_env_init(&e, WIRE_MSG_HEARTBEAT, "coordinator", 0);
    round_trip(&e, &(wire_body){.membership = &m});
    assert_non_null(GB.membership);
    assert_null(GB.progress);
    assert_int_equal(GB.membership->nworkers, 3);
    assert_int_equal(GB.membership->gen[1], 3);
    assert_int_equal(GB.membership->lost[2], 1);
    assert_int_equal(GB.membership->done[0], 1);
    assert_int_equal(GB.membership->done[2], 0);
    assert_int_equal(GB.membership->nservers, 2);
    assert_int_equal(GB.membership->server_gen[1], 2);
    assert_string_equal(GB.membership->server_ep[1], "tcp://b:2");
    assert_int_equal(GB.membership->stop_signal, 0);
    m.stop_signal = 2; /* the job is stopping (SIGINT) */
    round_trip(&e, &(wire_body){.membership = &m});
    assert_int_equal(GB.membership->stop_signal, 2);
    m.stop_signal = 0;
    static wire_welcome w;
    welcome_of(&w, 2, 3, 100);
    w.rejoin = 1;
    wire_env_init(&e, WIRE_MSG_WELCOME, "coordinator", 0);
    round_trip(&e, &(wire_body){.welcome = &w, .membership = &m});
    assert_int_equal(GB.welcome->rejoin, 1);
    assert_int_equal(GB.membership->nworkers, 3);
    wire_membership empty = {0}; /* nothing on the wire, nothing back */
    round_trip(&e, &(wire_body){.welcome = &w, .membership = &empty});
    assert_null(GB.membership);
}

/* The bytes the encoder sends for a message are those the single-struct encoder sent
 * (captured from fuzz/make_corpus_wire.c built at b77f9f3): old and new builds meet. */
static void test_bytes_unchanged(void **state)
{
    (void)state;
    static const uint8_t push[] = {0x08, 0x03, 0x10, 0x05, 0x18, 0x4d, 0x22, 0x06, 0x77,
                                   0x6f, 0x72, 0x6b, 0x65, 0x72, 0x28, 0x01, 0x32, 0x02,
                                   0xe8, 0x07, 0x52, 0x06, 0x08, 0xf4, 0x03, 0x10, 0xfa,
                                   0x01, 0x58, 0x0c, 0x60, 0x01, 0xf0, 0x01, 0x01};
    static const uint8_t ack[] = {0x08, 0x03, 0x10, 0x0d, 0x18, 0x4e, 0x22, 0x06, 0x73, 0x65,
                                  0x72, 0x76, 0x65, 0x72, 0x58, 0x0c, 0xf8, 0x01, 0x02};
    static const uint8_t heartbeat[] = {0x08, 0x03, 0x10, 0x0e, 0x22, 0x0b, 0x63, 0x6f, 0x6f, 0x72,
                                        0x64, 0x69, 0x6e, 0x61, 0x74, 0x6f, 0x72, 0xf8, 0x01, 0x01,
                                        0x82, 0x02, 0x0f, 0x0a, 0x03, 0x01, 0x03, 0x01, 0x12, 0x03,
                                        0x00, 0x00, 0x01, 0x1a, 0x03, 0x00, 0x00, 0x00};
    static const uint8_t welcome_rejoin[] = {
        0x08, 0x03, 0x10, 0x03, 0x22, 0x0b, 0x63, 0x6f, 0x6f, 0x72, 0x64, 0x69, 0x6e, 0x61,
        0x74, 0x6f, 0x72, 0x4a, 0x22, 0x0a, 0x13, 0x74, 0x63, 0x70, 0x3a, 0x2f, 0x2f, 0x31,
        0x30, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x32, 0x3a, 0x36, 0x30, 0x30, 0x30, 0x12, 0x02,
        0x00, 0x64, 0x18, 0x64, 0x20, 0x02, 0x28, 0x01, 0xb0, 0x01, 0x01, 0xf8, 0x01, 0x04};
    static const uint8_t hello_worker[] = {
        0x08, 0x03, 0x10, 0x02, 0x22, 0x06, 0x77, 0x6f, 0x72, 0x6b, 0x65, 0x72, 0x28,
        0x02, 0x42, 0x3c, 0x0a, 0x14, 0x74, 0x63, 0x70, 0x3a, 0x2f, 0x2f, 0x31, 0x32,
        0x37, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x31, 0x3a, 0x35, 0x35, 0x35, 0x35, 0x10,
        0xe8, 0x07, 0x18, 0xef, 0x9b, 0xaf, 0x85, 0x89, 0xcf, 0x95, 0x9a, 0x12, 0x20,
        0x92, 0x21, 0x28, 0xac, 0x02, 0x32, 0x11, 0x0a, 0x05, 0x00, 0x90, 0x03, 0xe8,
        0x07, 0x12, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x3f};
    static const uint8_t bye[] = {0x08, 0x03, 0x10, 0x0b, 0x22, 0x06, 0x73, 0x65, 0x72, 0x76, 0x65,
                                  0x72, 0x28, 0x01, 0x7a, 0x10, 0x08, 0x64, 0x10, 0x64, 0x18, 0x80,
                                  0x80, 0x40, 0x20, 0x80, 0x80, 0x40, 0x28, 0x02, 0x30, 0x64};
    static uint8_t buf[WIRE_MAX_META];
    size_t len = 0;
    pst_err err = {0};
    wire_env e;

    wire_env_init(&e, WIRE_MSG_PUSH, "worker", 1);
    e.request_id = 77;
    e.clock = 12;
    e.nframes = 1;
    e.frame_bytes[0] = 1000;
    wire_range r = {.offset = 500, .len = 250, .clock_gap = 1, .checkpoint = 1};
    assert_int_equal(wire_pack(&e, &(wire_body){.range = &r}, buf, sizeof buf, &len, &err), 0);
    assert_int_equal(len, sizeof push);
    assert_memory_equal(buf, push, sizeof push);

    wire_env_init(&e, WIRE_MSG_ACK, "server", 0);
    e.request_id = 78;
    e.generation = 2;
    e.clock = 12;
    assert_int_equal(wire_pack(&e, NULL, buf, sizeof buf, &len, &err), 0);
    assert_int_equal(len, sizeof ack);
    assert_memory_equal(buf, ack, sizeof ack);

    static wire_membership m;
    memset(&m, 0, sizeof m);
    m.nworkers = 3;
    m.gen[0] = m.gen[2] = 1;
    m.gen[1] = 3;
    m.lost[2] = 1;
    wire_env_init(&e, WIRE_MSG_HEARTBEAT, "coordinator", 0);
    e.generation = 1;
    assert_int_equal(wire_pack(&e, &(wire_body){.membership = &m}, buf, sizeof buf, &len, &err), 0);
    assert_int_equal(len, sizeof heartbeat);
    assert_memory_equal(buf, heartbeat, sizeof heartbeat);

    static wire_welcome w;
    memset(&w, 0, sizeof w);
    w.num_servers = 1;
    w.num_workers = 2;
    w.nparams = 100;
    strcpy(w.server_endpoints[0], "tcp://10.0.0.2:6000");
    w.shard_offsets[1] = 100;
    w.rejoin = 1;
    w.generation = 4;
    wire_env_init(&e, WIRE_MSG_WELCOME, "coordinator", 0);
    assert_int_equal(wire_pack(&e, &(wire_body){.welcome = &w}, buf, sizeof buf, &len, &err), 0);
    assert_int_equal(len, sizeof welcome_rejoin);
    assert_memory_equal(buf, welcome_rejoin, sizeof welcome_rejoin);

    wire_env_init(&e, WIRE_MSG_HELLO, "worker", 2);
    wire_hello h = {.endpoint = "tcp://127.0.0.1:5555",
                    .nparams = 1000,
                    .job_hash = 0x1234567890abcdefull,
                    .pid = 4242,
                    .steps = 300,
                    .groups = {.n = 2, .offsets = {0, 400, 1000}, .mults = {0.0f, 1.0f}}};
    assert_int_equal(wire_pack(&e, &(wire_body){.hello = &h}, buf, sizeof buf, &len, &err), 0);
    assert_int_equal(len, sizeof hello_worker);
    assert_memory_equal(buf, hello_worker, sizeof hello_worker);

    wire_env_init(&e, WIRE_MSG_BYE, "server", 1);
    wire_stats st = {.pushes = 100,
                     .pulls = 100,
                     .bytes_in = 1 << 20,
                     .bytes_out = 1 << 20,
                     .updates = 100,
                     .max_clock_gap = 2};
    assert_int_equal(wire_pack(&e, &(wire_body){.stats = &st}, buf, sizeof buf, &len, &err), 0);
    assert_int_equal(len, sizeof bye);
    assert_memory_equal(buf, bye, sizeof bye);
}

static void test_rejects_inconsistent_messages(void **state)
{
    (void)state;
    pst_err err = {0};
    wire_env e;

    wire_env_init(&e, WIRE_MSG_PUSH, "worker", 0); /* an empty range */
    e.nframes = 1;
    e.frame_bytes[0] = 4;
    assert_int_equal(pack_unpack(&e, &(wire_body){.range = &(wire_range){.len = 0}}, &err),
                     PST_ERR_DATA);
    assert_null(GB.range); /* a refused message carries nothing */

    /* An empty range with its empty frame: the clock of a server that owns no dense
     * parameter (PUSH and PULL_REPLY, float32 only); INIT always carries floats. */
    const wire_type empty_ok[2] = {WIRE_MSG_PUSH, WIRE_MSG_PULL_REPLY};
    for (int k = 0; k < 2; k++) {
        wire_env_init(&e, empty_ok[k], "worker", 0);
        e.nframes = 1;
        e.frame_bytes[0] = 0;
        assert_int_equal(
            pack_unpack(&e, &(wire_body){.range = &(wire_range){.offset = 1, .len = 0}}, &err),
            PST_OK);
    }
    wire_env_init(&e, WIRE_MSG_PULL, "worker", 0);
    assert_int_equal(pack_unpack(&e, &(wire_body){.range = &(wire_range){.len = 0}}, &err), PST_OK);
    wire_env_init(&e, WIRE_MSG_INIT, "worker", 0);
    e.nframes = 1;
    e.frame_bytes[0] = 0;
    assert_int_equal(pack_unpack(&e, &(wire_body){.range = &(wire_range){.len = 0}}, &err),
                     PST_ERR_DATA);
    wire_env_init(&e, WIRE_MSG_PUSH, "worker", 0); /* compressed: never empty */
    e.nframes = 1;
    e.frame_bytes[0] = 0;
    assert_int_equal(
        pack_unpack(&e, &(wire_body){.range = &(wire_range){.len = 0, .enc = WIRE_ENC_BF16}}, &err),
        PST_ERR_DATA);

    wire_env_init(&e, WIRE_MSG_PUSH, "worker", 0); /* frame length != 4 * len */
    e.nframes = 1;
    e.frame_bytes[0] = 39;
    assert_int_equal(pack_unpack(&e, &(wire_body){.range = &(wire_range){.len = 10}}, &err),
                     PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "PUSH"));

    wire_env_init(&e, WIRE_MSG_PULL, "worker", 0); /* a pull carries no floats */
    e.nframes = 1;
    e.frame_bytes[0] = 40;
    assert_int_equal(pack_unpack(&e, &(wire_body){.range = &(wire_range){.len = 10}}, &err),
                     PST_ERR_DATA);

    wire_env_init(&e, WIRE_MSG_PULL, "worker", 0); /* offset + len wraps around */
    wire_range wrap = {.offset = UINT64_MAX - 2, .len = 10};
    assert_int_equal(pack_unpack(&e, &(wire_body){.range = &wrap}, &err), PST_ERR_DATA);

    wire_env_init(&e, WIRE_MSG_PULL, "worker", 0);
    e.clock = -4;
    assert_int_equal(pack_unpack(&e, &(wire_body){.range = &(wire_range){.len = 1}}, &err),
                     PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "clock"));

    static wire_welcome w;
    welcome_of(&w, 2, 1, 100); /* map not covering nparams */
    w.shard_offsets[1] = 60;
    w.shard_offsets[2] = 90;
    wire_env_init(&e, WIRE_MSG_WELCOME, "coordinator", 0);
    assert_int_equal(pack_unpack(&e, &(wire_body){.welcome = &w}, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "cover"));
    w.shard_offsets[1] = 95; /* decreasing */
    assert_int_equal(pack_unpack(&e, &(wire_body){.welcome = &w}, &err), PST_ERR_DATA);
    welcome_of(&w, 2, 0, 100); /* no workers */
    assert_int_equal(pack_unpack(&e, &(wire_body){.welcome = &w}, &err), PST_ERR_DATA);

    wire_env_init(&e, WIRE_MSG_DONE, "worker", 0); /* frames on a control message */
    e.nframes = 1;
    e.frame_bytes[0] = 8;
    assert_int_equal(pack_unpack(&e, NULL, &err), PST_ERR_DATA);

    wire_env_init(&e, WIRE_MSG_STATUS, "status", 0); /* a STATUS answer: one document */
    e.nframes = 1;
    e.frame_bytes[0] = 100;
    assert_int_equal(pack_unpack(&e, NULL, &err), PST_OK);
    e.frame_bytes[0] = WIRE_MAX_STATUS + 1;
    assert_int_equal(pack_unpack(&e, NULL, &err), PST_ERR_DATA);

    wire_env_init(&e, WIRE_MSG_DONE, "worker", -1);
    assert_int_equal(pack_unpack(&e, NULL, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "rank"));

    /* A membership past the limits is the sender's bug. */
    static wire_membership m;
    memset(&m, 0, sizeof m);
    m.nworkers = WIRE_MAX_WORKERS + 1;
    wire_env_init(&e, WIRE_MSG_HEARTBEAT, "coordinator", 0);
    assert_int_equal(pack_only(&e, &(wire_body){.membership = &m}, &err), PST_ERR_ARG);
}

/* A sender gives its type's body: another one, or none where one is required, is a bug. */
static void test_pack_checks_bodies(void **state)
{
    (void)state;
    pst_err err = {0};
    wire_env e;
    wire_range r = {.len = 1};
    wire_progress p = {0};
    wire_env_init(&e, WIRE_MSG_PUSH, "worker", 0);
    assert_int_equal(pack_only(&e, NULL, &err), PST_ERR_ARG);
    assert_non_null(strstr(err.msg, "PUSH without its body"));
    wire_env_init(&e, WIRE_MSG_ACK, "server", 0);
    assert_int_equal(pack_only(&e, &(wire_body){.range = &r}, &err), PST_ERR_ARG);
    assert_non_null(strstr(err.msg, "ACK given a body it does not carry"));
    wire_env_init(&e, WIRE_MSG_BYE, "server", 0);
    assert_int_equal(pack_only(&e, &(wire_body){.progress = &p}, &err), PST_ERR_ARG);
    wire_env_init(&e, WIRE_MSG_HELLO, "server", 0);
    assert_int_equal(pack_only(&e, NULL, &err), PST_ERR_ARG);
    wire_env_init(&e, WIRE_MSG_WELCOME, "coordinator", 0);
    assert_int_equal(pack_only(&e, NULL, &err), PST_ERR_ARG);
    wire_env_init(&e, WIRE_MSG_ERROR, "server", 0);
    assert_int_equal(pack_only(&e, NULL, &err), PST_ERR_ARG);
}

/* Update groups ride in HELLO and WELCOME and are checked like the shard map. */
static void test_update_groups(void **state)
{
    (void)state;
    pst_err err = {0};
    wire_env e;
    const wire_groups g3 = {.n = 3, /* [0, 600) frozen, [600, 900) x0.1, [900, 1000) x1 */
                            .offsets = {0, 600, 900, 1000},
                            .mults = {0.0f, 0.1f, 1.0f}};
    wire_env_init(&e, WIRE_MSG_HELLO, "worker", 1);
    wire_hello h = {.nparams = 1000, .groups = g3};
    round_trip(&e, &(wire_body){.hello = &h});
    assert_int_equal(GB.hello->groups.n, 3);
    assert_memory_equal(GB.hello->groups.offsets, g3.offsets, 4 * sizeof(uint64_t));
    assert_memory_equal(GB.hello->groups.mults, g3.mults, 3 * sizeof(float));

    static wire_welcome w;
    welcome_of(&w, 1, 2, 1000);
    w.groups = g3;
    wire_env_init(&e, WIRE_MSG_WELCOME, "coordinator", 0);
    wire_body b = {.welcome = &w};
    round_trip(&e, &b);
    assert_int_equal(GB.welcome->groups.n, 3);
    assert_true(GB.welcome->groups.mults[1] == 0.1f);
    assert_int_equal(GB.welcome->groups.offsets[2], 900);

    w.groups.n = 0; /* none: nothing on the wire, nothing back */
    round_trip(&e, &b);
    assert_int_equal(GB.welcome->groups.n, 0);

    w.groups.n = 3;
    w.groups.offsets[3] = 999; /* not covering the model */
    assert_int_equal(pack_unpack(&e, &b, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "do not cover"));
    w.groups.offsets[3] = 1000;
    w.groups.offsets[2] = 600; /* an empty group */
    assert_int_equal(pack_unpack(&e, &b, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "group 1 is empty"));
    w.groups.offsets[2] = 900;
    w.groups.mults[2] = -1.0f;
    assert_int_equal(pack_unpack(&e, &b, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "multiplier -1"));
    w.groups.mults[2] = NAN;
    assert_int_equal(pack_unpack(&e, &b, &err), PST_ERR_DATA);
    w.groups.mults[2] = INFINITY;
    assert_int_equal(pack_unpack(&e, &b, &err), PST_ERR_DATA);
    w.groups.mults[2] = 1.0f;
    assert_int_equal(pack_unpack(&e, &b, &err), PST_OK);
    w.groups.n = WIRE_MAX_GROUPS + 1;
    assert_int_equal(pack_only(&e, &b, &err), PST_ERR_ARG);
    h.groups.n = WIRE_MAX_GROUPS + 1;
    wire_env_init(&e, WIRE_MSG_HELLO, "worker", 1);
    assert_int_equal(pack_only(&e, &(wire_body){.hello = &h}, &err), PST_ERR_ARG);
}

/* State groups (batchnorm's running statistics): flags beside the groups, only when one is
 * set (a job without state packs the same bytes as before), and only on multiplier 0. */
static void test_state_groups(void **state)
{
    (void)state;
    pst_err err = {0};
    static uint8_t buf[WIRE_MAX_META];
    size_t plain = 0, flagged = 0;
    wire_env e;
    wire_env_init(&e, WIRE_MSG_HELLO, "worker", 1);
    wire_hello h = {.nparams = 1000,
                    .groups = {.n = 3, .offsets = {0, 600, 900, 1000}, .mults = {1, 0, 1}}};
    wire_body b = {.hello = &h};
    assert_int_equal(wire_pack(&e, &b, buf, sizeof buf, &plain, &err), PST_OK);
    round_trip(&e, &b);
    assert_int_equal(GB.hello->groups.n, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(GB.hello->groups.state[i], 0);
    h.groups.state[1] = 1;
    assert_int_equal(wire_pack(&e, &b, buf, sizeof buf, &flagged, &err), PST_OK);
    assert_int_equal(flagged, plain + 5); /* field 3: tag, length, 3 booleans */
    round_trip(&e, &b);
    assert_int_equal(GB.hello->groups.state[0], 0);
    assert_int_equal(GB.hello->groups.state[1], 1);
    assert_int_equal(GB.hello->groups.state[2], 0);

    static wire_welcome w;
    welcome_of(&w, 1, 2, 1000);
    w.groups = h.groups;
    wire_env_init(&e, WIRE_MSG_WELCOME, "coordinator", 0);
    round_trip(&e, &(wire_body){.welcome = &w});
    assert_int_equal(GB.welcome->groups.state[1], 1);
    w.groups.state[2] = 1; /* a state group that trains */
    assert_int_equal(pack_unpack(&e, &(wire_body){.welcome = &w}, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "state group 2 has multiplier 1"));
}

/* Found by reading what fuzz/fuzz_wire.c checks: a peer's role, endpoint or error text
 * with a line break went as is into log lines and error messages (a forged log line).
 * Names with control characters are refused; an error text keeps its words on one line. */
static void test_control_characters(void **state)
{
    (void)state;
    pst_err err = {0};
    wire_env e;
    wire_hello h = {0};
    wire_env_init(&e, WIRE_MSG_HELLO, "work\ner", 1);
    assert_int_equal(pack_unpack(&e, &(wire_body){.hello = &h}, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "role holds control character 0x0a"));
    wire_env_init(&e, WIRE_MSG_HELLO, "worker", 1);
    strcpy(h.endpoint, "tcp://a:1\r\n2026-01-01 coordinator[0] INFO forged");
    assert_int_equal(pack_unpack(&e, &(wire_body){.hello = &h}, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "endpoint holds control character 0x0d"));
    static wire_welcome w;
    welcome_of(&w, 1, 1, 10);
    strcpy(w.server_endpoints[0], "tcp://x:1\x7f");
    wire_env_init(&e, WIRE_MSG_WELCOME, "coordinator", 0);
    assert_int_equal(pack_unpack(&e, &(wire_body){.welcome = &w}, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "server endpoint holds control character 0x7f"));
    static wire_membership m;
    memset(&m, 0, sizeof m);
    m.nservers = 1;
    strcpy(m.server_ep[0], "tcp://y:2\n");
    wire_env_init(&e, WIRE_MSG_HEARTBEAT, "coordinator", 0);
    assert_int_equal(pack_unpack(&e, &(wire_body){.membership = &m}, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "server endpoint holds control character 0x0a"));
    wire_env_init(&e, WIRE_MSG_ERROR, "server", 0);
    wire_error x = {.text = "bad\nrange\r\tx"};
    round_trip(&e, &(wire_body){.error = &x});
    assert_string_equal(GB.error->text, "bad range  x");
}

static void test_rejects_wrong_version_and_type(void **state)
{
    (void)state;
    pst_err err = {0};
    wire_env e;
    wire_env_init(&e, WIRE_MSG_DONE, "worker", 0);
    e.version = WIRE_VERSION + 1;
    assert_int_equal(pack_unpack(&e, NULL, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "version"));
    /* The sender's version is kept (the receiver answers naming it), nothing else. */
    assert_int_equal(G.version, WIRE_VERSION + 1);
    assert_int_equal(G.type, 0);
    assert_int_equal(G.rank, 0);
    assert_null(GB.error);
    /* An ERROR of another version still shows its text: the peer's refusal of ours. */
    wire_env_init(&e, WIRE_MSG_ERROR, "server", 3);
    e.version = WIRE_VERSION + 1;
    wire_error x = {.code = PST_ERR_CONFIG, .text = "refused a message of wire version 1"};
    assert_int_equal(pack_unpack(&e, &(wire_body){.error = &x}, &err), PST_ERR_DATA);
    assert_int_equal(G.type, WIRE_MSG_ERROR);
    assert_non_null(GB.error);
    assert_string_equal(GB.error->text, x.text);
    /* No envelope at all: version 0. */
    G.version = 7;
    assert_int_equal(wire_unpack(&G, &GB, &GS, (const uint8_t *)"\xff\xff\xff", 3, &err),
                     PST_ERR_DATA);
    assert_int_equal(G.version, 0);
    wire_env_init(&e, (wire_type)77, "worker", 0);
    assert_int_equal(pack_unpack(&e, NULL, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "type"));
}

static void test_rejects_garbage_and_truncation(void **state)
{
    (void)state;
    wire_env e;
    wire_env_init(&e, WIRE_MSG_PUSH, "worker", 1);
    e.nframes = 1;
    e.frame_bytes[0] = 12;
    e.clock = 9;
    wire_range r = {.len = 3};
    uint8_t buf[512];
    size_t len;
    pst_err err = {0};
    assert_int_equal(wire_pack(&e, &(wire_body){.range = &r}, buf, sizeof buf, &len, &err), PST_OK);
    /* No strict prefix is a valid PUSH: each loses a required field or fails to parse. */
    for (size_t cut = 0; cut < len; cut++) {
        int rc = wire_unpack(&G, &GB, &GS, buf, cut, &err);
        if (rc == PST_OK)
            assert_true(G.type != WIRE_MSG_PUSH || GB.range->len != 3 || G.clock != 9);
    }
    rng_state rs;
    rng_seed(&rs, 9);
    int rejected = 0;
    for (int t = 0; t < 5000; t++) {
        size_t n = (size_t)rng_below(&rs, sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rng_next(&rs);
        rejected += wire_unpack(&G, &GB, &GS, buf, n, &err) != PST_OK;
    }
    assert_true(rejected >= 4990);
    static uint8_t big[WIRE_MAX_META + 1];
    assert_int_equal(wire_unpack(&G, &GB, &GS, big, sizeof big, &err), PST_ERR_DATA);
}

static void test_pack_refuses_bad_header(void **state)
{
    (void)state;
    wire_env e;
    wire_env_init(&e, WIRE_MSG_ERROR, "worker", 0);
    uint8_t small[4], big[1024];
    size_t len;
    pst_err err = {0};
    wire_error x = {.text = "padding so it does not fit"};
    assert_int_equal(wire_pack(&e, &(wire_body){.error = &x}, small, sizeof small, &len, &err),
                     PST_ERR_ARG);
    e.nframes = WIRE_MAX_FRAMES + 1;
    assert_int_equal(wire_pack(&e, &(wire_body){.error = &x}, big, sizeof big, &len, &err),
                     PST_ERR_ARG);
}

/* Checkpoints: a server's complete clocks in HELLO, the resume clock in WELCOME, the
 * checkpoint flag on PUSH. */
/* SPUSH/SPULL/SPULL_REPLY: the table and the frames' shapes travel; frame lengths that
 * disagree with K and d, a missing table, dim 0 or too many keys are refused. */
static void test_sparse_messages(void **state)
{
    (void)state;
    pst_err err = {0};
    static const wire_type types[3] = {WIRE_MSG_SPUSH, WIRE_MSG_SPULL, WIRE_MSG_SPULL_REPLY};
    for (int i = 0; i < 3; i++) {
        wire_env e;
        wire_env_init(&e, types[i], "worker", 1);
        e.clock = 9;
        wire_sparse sp = {.table = 2, .nkeys = 5, .dim = 8, .train = types[i] == WIRE_MSG_SPULL};
        e.nframes = types[i] == WIRE_MSG_SPUSH ? 2 : 1;
        e.frame_bytes[0] = types[i] == WIRE_MSG_SPULL_REPLY ? 5 * 8 * 4 : 5 * 8;
        e.frame_bytes[1] = 5 * 8 * 4;
        round_trip(&e, &(wire_body){.sparse = &sp});
        assert_int_equal(G.type, types[i]);
        assert_int_equal(G.clock, 9);
        assert_non_null(GB.sparse);
        assert_null(GB.range);
        assert_int_equal(GB.sparse->table, 2);
        assert_int_equal(GB.sparse->nkeys, 5);
        assert_int_equal(GB.sparse->dim, 8);
        assert_int_equal(GB.sparse->train, sp.train);
        /* A gradients frame one row short. */
        e.frame_bytes[e.nframes - 1] -= 4 * 8;
        if (types[i] != WIRE_MSG_SPULL) {
            assert_int_equal(pack_unpack(&e, &(wire_body){.sparse = &sp}, &err), PST_ERR_DATA);
            assert_non_null(strstr(err.msg, "5 keys of dim 8"));
        }
    }
    /* An empty push (a step that touched none of the server's keys): two empty frames. */
    wire_env e;
    wire_env_init(&e, WIRE_MSG_SPUSH, "worker", 0);
    e.nframes = 2;
    round_trip(&e, &(wire_body){.sparse = &(wire_sparse){.table = 0, .nkeys = 0, .dim = 1}});
    assert_int_equal(GB.sparse->nkeys, 0);
    /* Without the table, with dim 0, with more keys than one message may carry. */
    assert_int_equal(pack_only(&e, NULL, &err), PST_ERR_ARG);
    assert_int_equal(pack_unpack(&e, &(wire_body){.sparse = &(wire_sparse){.dim = 0}}, &err),
                     PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "dim 0"));
    e.frame_bytes[0] = (WIRE_MAX_SPARSE_KEYS + 1) * 8;
    e.frame_bytes[1] = (WIRE_MAX_SPARSE_KEYS + 1) * 4;
    assert_int_equal(
        pack_unpack(
            &e, &(wire_body){.sparse = &(wire_sparse){.nkeys = WIRE_MAX_SPARSE_KEYS + 1, .dim = 1}},
            &err),
        PST_ERR_DATA);
    /* A range body is not a sparse message's. */
    e.frame_bytes[0] = e.frame_bytes[1] = 0;
    assert_int_equal(pack_only(&e,
                               &(wire_body){.sparse = &(wire_sparse){.dim = 1},
                                            .range = &(wire_range){.len = 1}},
                               &err),
                     PST_ERR_ARG);
}

static void test_checkpoint_fields(void **state)
{
    (void)state;
    pst_err err = {0};
    wire_env e;
    wire_env_init(&e, WIRE_MSG_HELLO, "server", 1);
    wire_hello h = {.nckpt = 3, .ckpt_clocks = {40, 20, 0}};
    wire_body hb = {.hello = &h};
    round_trip(&e, &hb);
    assert_int_equal(GB.hello->nckpt, 3);
    assert_int_equal(GB.hello->ckpt_clocks[0], 40);
    assert_int_equal(GB.hello->ckpt_clocks[2], 0);
    assert_int_equal(GB.hello->ckpt_any, 0);
    h.ckpt_any = 1;
    round_trip(&e, &hb);
    assert_int_equal(GB.hello->ckpt_any, 1);
    h.ckpt_clocks[1] = -1;
    assert_int_equal(pack_unpack(&e, &hb, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "negative checkpoint clock"));
    h.nckpt = WIRE_MAX_CKPTS + 1;
    assert_int_equal(pack_only(&e, &hb, &err), PST_ERR_ARG);

    static wire_welcome w;
    welcome_of(&w, 1, 2, 10);
    wire_env_init(&e, WIRE_MSG_WELCOME, "coordinator", 0);
    wire_body wb = {.welcome = &w};
    round_trip(&e, &wb);
    assert_int_equal(GB.welcome->resume, 0);
    w.resume = 1;
    w.resume_clock = 1234567890123LL;
    round_trip(&e, &wb);
    assert_int_equal(GB.welcome->resume, 1);
    assert_true(GB.welcome->resume_clock == 1234567890123LL);
    w.resume_clock = -2;
    assert_int_equal(pack_unpack(&e, &wb, &err), PST_ERR_DATA);

    wire_env_init(&e, WIRE_MSG_PUSH, "worker", 0);
    e.nframes = 1;
    e.frame_bytes[0] = 8;
    wire_range r = {.len = 2};
    round_trip(&e, &(wire_body){.range = &r});
    assert_int_equal(GB.range->checkpoint, 0);
    r.checkpoint = 1;
    round_trip(&e, &(wire_body){.range = &r});
    assert_int_equal(GB.range->checkpoint, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_round_trip),
        cmocka_unit_test(test_welcome_hello_error_stats),
        cmocka_unit_test(test_control_messages),
        cmocka_unit_test(test_bytes_unchanged),
        cmocka_unit_test(test_rejects_inconsistent_messages),
        cmocka_unit_test(test_pack_checks_bodies),
        cmocka_unit_test(test_update_groups),
        cmocka_unit_test(test_state_groups),
        cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_rejects_wrong_version_and_type),
        cmocka_unit_test(test_rejects_garbage_and_truncation),
        cmocka_unit_test(test_pack_refuses_bad_header),
        cmocka_unit_test(test_checkpoint_fields),
        cmocka_unit_test(test_sparse_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
