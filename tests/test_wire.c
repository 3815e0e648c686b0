/* tests/test_wire.c -- message metadata: round trips of every kind, and rejection of
 * malformed, truncated and random input. */
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

static void round_trip(const wire_header *h, wire_header *g)
{
    uint8_t buf[WIRE_MAX_META];
    size_t len = 0;
    pst_err err = {0};
    assert_int_equal(wire_pack(h, buf, sizeof buf, &len, &err), PST_OK);
    if (wire_unpack(g, buf, len, &err) != PST_OK)
        fail_msg("unpack: %s", err.msg);
}

static int pack_unpack(const wire_header *h, pst_err *err)
{
    uint8_t buf[WIRE_MAX_META];
    size_t len = 0;
    wire_header g;
    assert_int_equal(wire_pack(h, buf, sizeof buf, &len, err), PST_OK);
    return wire_unpack(&g, buf, len, err);
}

static void test_push_round_trip(void **state)
{
    (void)state;
    wire_header h, g;
    wire_header_init(&h, WIRE_MSG_PUSH, "worker", 3);
    h.request_id = 0x123456789abcULL;
    h.offset = 5000000000ULL; /* 64-bit offsets and lengths */
    h.len = 1000;
    h.clock = 42;
    h.nframes = 1;
    h.frame_bytes[0] = 4000;
    round_trip(&h, &g);
    assert_int_equal(g.type, WIRE_MSG_PUSH);
    assert_true(g.request_id == h.request_id);
    assert_string_equal(g.role, "worker");
    assert_int_equal(g.rank, 3);
    assert_int_equal(g.has_range, 1);
    assert_true(g.offset == 5000000000ULL);
    assert_int_equal(g.len, 1000);
    assert_int_equal(g.clock, 42);
    size_t sizes[1] = {4000};
    pst_err err = {0};
    assert_int_equal(wire_check_frames(&g, 1, sizes, &err), PST_OK);
    sizes[0] = 3996;
    assert_int_equal(wire_check_frames(&g, 1, sizes, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "frame 1 has 3996 bytes"));
    assert_int_equal(wire_check_frames(&g, 0, sizes, &err), PST_ERR_DATA);
}

static void test_welcome_hello_error_stats(void **state)
{
    (void)state;
    wire_header h, g;
    wire_header_init(&h, WIRE_MSG_WELCOME, "coordinator", 0);
    h.num_servers = 3;
    h.num_workers = 4;
    h.nparams = 300;
    uint64_t offs[4] = {0, 100, 200, 300};
    memcpy(h.shard_offsets, offs, sizeof offs);
    for (int i = 0; i < 3; i++)
        snprintf(h.server_endpoints[i], WIRE_ENDPOINT_MAX, "tcp://10.0.0.%d:%d", i, 5000 + i);
    round_trip(&h, &g);
    assert_int_equal(g.num_servers, 3);
    assert_int_equal(g.num_workers, 4);
    assert_string_equal(g.server_endpoints[2], "tcp://10.0.0.2:5002");
    assert_int_equal(g.shard_offsets[3], 300);

    wire_header_init(&h, WIRE_MSG_HELLO, "server", 1);
    strcpy(h.endpoint, "tcp://host:1234");
    h.job_hash = 0xfeedULL;
    h.pid = 77;
    round_trip(&h, &g);
    assert_string_equal(g.endpoint, "tcp://host:1234");
    assert_true(g.job_hash == 0xfeedULL);
    assert_int_equal(g.pid, 77);

    wire_header_init(&h, WIRE_MSG_ERROR, "server", 0);
    h.error_code = PST_ERR_PEER;
    strcpy(h.error_text, "range outside shard");
    round_trip(&h, &g);
    assert_int_equal(g.error_code, PST_ERR_PEER);
    assert_string_equal(g.error_text, "range outside shard");

    wire_header_init(&h, WIRE_MSG_BARRIER, "worker", 2);
    h.clock = 7;
    round_trip(&h, &g);
    assert_int_equal(g.type, WIRE_MSG_BARRIER);
    assert_int_equal(g.clock, 7);
    assert_string_equal(wire_type_name(g.type), "BARRIER");

    wire_header_init(&h, WIRE_MSG_BYE, "server", 0);
    h.has_stats = 1;
    h.pushes = 10;
    h.max_clock_gap = 2;
    round_trip(&h, &g);
    assert_int_equal(g.has_stats, 1);
    assert_int_equal(g.pushes, 10);
    assert_int_equal(g.max_clock_gap, 2);
}

static void test_rejects_inconsistent_messages(void **state)
{
    (void)state;
    pst_err err = {0};
    wire_header h;

    wire_header_init(&h, WIRE_MSG_PUSH, "worker", 0); /* no range */
    h.nframes = 1;
    h.frame_bytes[0] = 4;
    h.len = 0;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);

    wire_header_init(&h, WIRE_MSG_PUSH, "worker", 0); /* frame length != 4 * len */
    h.len = 10;
    h.nframes = 1;
    h.frame_bytes[0] = 39;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "PUSH"));

    wire_header_init(&h, WIRE_MSG_PULL, "worker", 0); /* a pull carries no floats */
    h.len = 10;
    h.nframes = 1;
    h.frame_bytes[0] = 40;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);

    wire_header_init(&h, WIRE_MSG_PULL, "worker", 0); /* offset + len wraps around */
    h.offset = UINT64_MAX - 2;
    h.len = 10;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);

    wire_header_init(&h, WIRE_MSG_PULL, "worker", 0);
    h.len = 1;
    h.clock = -4;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "clock"));

    wire_header_init(&h, WIRE_MSG_WELCOME, "coordinator", 0); /* map not covering nparams */
    h.num_servers = 2;
    h.num_workers = 1;
    h.nparams = 100;
    h.shard_offsets[1] = 60;
    h.shard_offsets[2] = 90;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "cover"));
    h.shard_offsets[1] = 95; /* decreasing */
    h.shard_offsets[2] = 90;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);

    wire_header_init(&h, WIRE_MSG_DONE, "worker", 0); /* frames on a control message */
    h.nframes = 1;
    h.frame_bytes[0] = 8;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);

    wire_header_init(&h, WIRE_MSG_DONE, "worker", -1);
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "rank"));
}

/* Update groups ride in HELLO and WELCOME and are checked like the shard map. */
static void test_update_groups(void **state)
{
    (void)state;
    wire_header h, g;
    pst_err err = {0};
    wire_header_init(&h, WIRE_MSG_HELLO, "worker", 1);
    h.nparams = 1000;
    h.ngroups = 3; /* [0, 600) frozen, [600, 900) x0.1, [900, 1000) x1 */
    uint64_t offs[4] = {0, 600, 900, 1000};
    float mults[3] = {0.0f, 0.1f, 1.0f};
    memcpy(h.group_offsets, offs, sizeof offs);
    memcpy(h.group_mults, mults, sizeof mults);
    round_trip(&h, &g);
    assert_int_equal(g.ngroups, 3);
    assert_memory_equal(g.group_offsets, offs, sizeof offs);
    assert_memory_equal(g.group_mults, mults, sizeof mults);

    wire_header_init(&h, WIRE_MSG_WELCOME, "coordinator", 0);
    h.num_servers = 1;
    h.num_workers = 2;
    h.nparams = 1000;
    h.shard_offsets[1] = 1000;
    h.ngroups = 3;
    memcpy(h.group_offsets, offs, sizeof offs);
    memcpy(h.group_mults, mults, sizeof mults);
    round_trip(&h, &g);
    assert_int_equal(g.ngroups, 3);
    assert_true(g.group_mults[1] == 0.1f);
    assert_int_equal(g.group_offsets[2], 900);

    h.ngroups = 0; /* none: nothing on the wire, nothing back */
    round_trip(&h, &g);
    assert_int_equal(g.ngroups, 0);

    h.ngroups = 3;
    h.group_offsets[3] = 999; /* not covering the model */
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "do not cover"));
    h.group_offsets[3] = 1000;
    h.group_offsets[2] = 600; /* an empty group */
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "group 1 is empty"));
    h.group_offsets[2] = 900;
    h.group_mults[2] = -1.0f;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "multiplier -1"));
    h.group_mults[2] = NAN;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    h.group_mults[2] = INFINITY;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    h.group_mults[2] = 1.0f;
    assert_int_equal(pack_unpack(&h, &err), PST_OK);
    h.ngroups = WIRE_MAX_GROUPS + 1;
    uint8_t buf[WIRE_MAX_META];
    size_t len;
    assert_int_equal(wire_pack(&h, buf, sizeof buf, &len, &err), PST_ERR_ARG);
}

/* Found by reading what fuzz/fuzz_wire.c checks: a peer's role, endpoint or error text
 * with a line break went as is into log lines and error messages (a forged log line).
 * Names with control characters are refused; an error text keeps its words on one line. */
static void test_control_characters(void **state)
{
    (void)state;
    wire_header h, g;
    pst_err err = {0};
    wire_header_init(&h, WIRE_MSG_HELLO, "work\ner", 1);
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "role holds control character 0x0a"));
    wire_header_init(&h, WIRE_MSG_HELLO, "worker", 1);
    strcpy(h.endpoint, "tcp://a:1\r\n2026-01-01 coordinator[0] INFO forged");
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "endpoint holds control character 0x0d"));
    wire_header_init(&h, WIRE_MSG_WELCOME, "coordinator", 0);
    h.num_servers = 1;
    h.num_workers = 1;
    h.nparams = 10;
    h.shard_offsets[1] = 10;
    strcpy(h.server_endpoints[0], "tcp://x:1\x7f");
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "server endpoint holds control character 0x7f"));
    wire_header_init(&h, WIRE_MSG_ERROR, "server", 0);
    strcpy(h.error_text, "bad\nrange\r\tx");
    round_trip(&h, &g);
    assert_string_equal(g.error_text, "bad range  x");
}

static void test_rejects_wrong_version_and_type(void **state)
{
    (void)state;
    pst_err err = {0};
    wire_header h;
    wire_header_init(&h, WIRE_MSG_DONE, "worker", 0);
    h.version = WIRE_VERSION + 1;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "version"));
    wire_header_init(&h, (wire_type)77, "worker", 0);
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "type"));
}

static void test_rejects_garbage_and_truncation(void **state)
{
    (void)state;
    wire_header h, g;
    wire_header_init(&h, WIRE_MSG_PUSH, "worker", 1);
    h.len = 3;
    h.nframes = 1;
    h.frame_bytes[0] = 12;
    h.clock = 9;
    uint8_t buf[512];
    size_t len;
    pst_err err = {0};
    assert_int_equal(wire_pack(&h, buf, sizeof buf, &len, &err), PST_OK);
    /* No strict prefix is a valid PUSH: each loses a required field or fails to parse. */
    for (size_t cut = 0; cut < len; cut++) {
        int rc = wire_unpack(&g, buf, cut, &err);
        if (rc == PST_OK)
            assert_true(g.type != WIRE_MSG_PUSH || g.len != 3 || g.clock != 9);
    }
    rng_state r;
    rng_seed(&r, 9);
    int rejected = 0;
    for (int t = 0; t < 5000; t++) {
        size_t n = (size_t)rng_below(&r, sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rng_next(&r);
        rejected += wire_unpack(&g, buf, n, &err) != PST_OK;
    }
    assert_true(rejected >= 4990);
    static uint8_t big[WIRE_MAX_META + 1];
    assert_int_equal(wire_unpack(&g, big, sizeof big, &err), PST_ERR_DATA);
}

static void test_pack_refuses_bad_header(void **state)
{
    (void)state;
    wire_header h;
    wire_header_init(&h, WIRE_MSG_DONE, "worker", 0);
    uint8_t small[4], big[1024];
    size_t len;
    pst_err err = {0};
    strcpy(h.error_text, "padding so it does not fit");
    h.type = WIRE_MSG_ERROR;
    assert_int_equal(wire_pack(&h, small, sizeof small, &len, &err), PST_ERR_ARG);
    h.nframes = WIRE_MAX_FRAMES + 1;
    assert_int_equal(wire_pack(&h, big, sizeof big, &len, &err), PST_ERR_ARG);
}

/* Checkpoints: a server's complete clocks in HELLO, the resume clock in WELCOME, the
 * checkpoint flag on PUSH. */
static void test_checkpoint_fields(void **state)
{
    (void)state;
    wire_header h, g;
    pst_err err = {0};
    wire_header_init(&h, WIRE_MSG_HELLO, "server", 1);
    h.nckpt = 3;
    h.ckpt_clocks[0] = 40;
    h.ckpt_clocks[1] = 20;
    h.ckpt_clocks[2] = 0;
    round_trip(&h, &g);
    assert_int_equal(g.nckpt, 3);
    assert_int_equal(g.ckpt_clocks[0], 40);
    assert_int_equal(g.ckpt_clocks[2], 0);
    assert_int_equal(g.ckpt_any, 0);
    h.ckpt_any = 1;
    round_trip(&h, &g);
    assert_int_equal(g.ckpt_any, 1);
    h.ckpt_clocks[1] = -1;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "negative checkpoint clock"));
    h.nckpt = WIRE_MAX_CKPTS + 1;
    uint8_t buf[WIRE_MAX_META];
    size_t len;
    assert_int_equal(wire_pack(&h, buf, sizeof buf, &len, &err), PST_ERR_ARG);

    wire_header_init(&h, WIRE_MSG_WELCOME, "coordinator", 0);
    h.num_servers = 1;
    h.num_workers = 2;
    h.nparams = 10;
    h.shard_offsets[1] = 10;
    round_trip(&h, &g);
    assert_int_equal(g.resume, 0);
    h.resume = 1;
    h.resume_clock = 1234567890123LL;
    round_trip(&h, &g);
    assert_int_equal(g.resume, 1);
    assert_true(g.resume_clock == 1234567890123LL);
    h.resume_clock = -2;
    assert_int_equal(pack_unpack(&h, &err), PST_ERR_DATA);

    wire_header_init(&h, WIRE_MSG_PUSH, "worker", 0);
    h.len = 2;
    h.nframes = 1;
    h.frame_bytes[0] = 8;
    round_trip(&h, &g);
    assert_int_equal(g.checkpoint, 0);
    h.checkpoint = 1;
    round_trip(&h, &g);
    assert_int_equal(g.checkpoint, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_round_trip),
        cmocka_unit_test(test_welcome_hello_error_stats),
        cmocka_unit_test(test_rejects_inconsistent_messages),
        cmocka_unit_test(test_update_groups),
        cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_rejects_wrong_version_and_type),
        cmocka_unit_test(test_rejects_garbage_and_truncation),
        cmocka_unit_test(test_pack_refuses_bad_header),
        cmocka_unit_test(test_checkpoint_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
