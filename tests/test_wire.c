/* tests/test_wire.c -- envelope packing round trip and rejection of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/rng.h"
#include "proto/wire.h"

static wire_header sample(void)
{
    wire_header h;
    memset(&h, 0, sizeof h);
    h.version = WIRE_VERSION;
    h.type = WIRE_MSG_ERROR;
    h.request_id = 0x123456789abcULL;
    strcpy(h.role, "worker");
    h.rank = 3;
    h.nframes = 2;
    h.frame_bytes[0] = 4000000000ULL; /* > 2^31: lengths are 64-bit */
    h.frame_bytes[1] = 8;
    h.error_code = 5;
    strcpy(h.error_text, "bad key range");
    return h;
}

static void test_round_trip(void **state)
{
    (void)state;
    wire_header h = sample(), g;
    uint8_t buf[512];
    size_t len = 0;
    pst_err err = {0};
    assert_int_equal(wire_pack(&h, buf, sizeof buf, &len, &err), PST_OK);
    assert_int_equal(wire_unpack(&g, buf, len, &err), PST_OK);
    assert_int_equal(g.version, WIRE_VERSION);
    assert_int_equal(g.type, WIRE_MSG_ERROR);
    assert_true(g.request_id == h.request_id);
    assert_string_equal(g.role, "worker");
    assert_int_equal(g.rank, 3);
    assert_int_equal(g.nframes, 2);
    assert_true(g.frame_bytes[0] == 4000000000ULL);
    assert_int_equal(g.error_code, 5);
    assert_string_equal(g.error_text, "bad key range");
    size_t sizes[2] = {(size_t)4000000000ULL, 8};
    assert_int_equal(wire_check_frames(&g, 2, sizes, &err), PST_OK);
    sizes[1] = 7;
    assert_int_equal(wire_check_frames(&g, 2, sizes, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "frame 2"));
    assert_int_equal(wire_check_frames(&g, 1, sizes, &err), PST_ERR_DATA);
}

static void test_rejects_wrong_version_and_type(void **state)
{
    (void)state;
    wire_header h = sample(), g;
    uint8_t buf[512];
    size_t len;
    pst_err err = {0};
    h.version = WIRE_VERSION + 1;
    assert_int_equal(wire_pack(&h, buf, sizeof buf, &len, &err), PST_OK);
    assert_int_equal(wire_unpack(&g, buf, len, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "version"));
    h = sample();
    h.type = (wire_type)77;
    assert_int_equal(wire_pack(&h, buf, sizeof buf, &len, &err), PST_OK);
    assert_int_equal(wire_unpack(&g, buf, len, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "type"));
}

static void test_rejects_garbage_and_truncation(void **state)
{
    (void)state;
    wire_header h = sample(), g;
    uint8_t buf[512];
    size_t len;
    pst_err err = {0};
    assert_int_equal(wire_pack(&h, buf, sizeof buf, &len, &err), PST_OK);
    /* Every truncation either fails to parse or fails validation; none crashes. */
    for (size_t cut = 0; cut < len; cut++) {
        int rc = wire_unpack(&g, buf, cut, &err);
        if (rc == PST_OK) /* a prefix that parses must still be a consistent header */
            assert_int_equal(g.version, WIRE_VERSION);
    }
    rng_state r;
    rng_seed(&r, 9);
    int rejected = 0;
    for (int t = 0; t < 2000; t++) {
        size_t n = (size_t)rng_below(&r, sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rng_next(&r);
        rejected += wire_unpack(&g, buf, n, &err) != PST_OK;
    }
    assert_true(rejected > 1990);
    uint8_t big[WIRE_MAX_META + 1] = {0};
    assert_int_equal(wire_unpack(&g, big, sizeof big, &err), PST_ERR_DATA);
}

static void test_pack_refuses_small_buffer(void **state)
{
    (void)state;
    wire_header h = sample();
    uint8_t buf[8];
    size_t len;
    pst_err err = {0};
    assert_int_equal(wire_pack(&h, buf, sizeof buf, &len, &err), PST_ERR_ARG);
    h.nframes = WIRE_MAX_FRAMES + 1;
    uint8_t big[1024];
    assert_int_equal(wire_pack(&h, big, sizeof big, &len, &err), PST_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_rejects_wrong_version_and_type),
        cmocka_unit_test(test_rejects_garbage_and_truncation),
        cmocka_unit_test(test_pack_refuses_small_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
