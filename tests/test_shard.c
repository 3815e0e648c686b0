/* tests/test_shard.c -- a server's shard driven directly: initialisation, the bsp mean
 * applied once per clock, ssp's staleness bound (c - min_live_clock <= s), asp, and the
 * refusal of every malformed push with the shard left as it was.
 *
 * The optimizer is plain SGD, w <- w - lr * g (core/optim.h), with lr = 0.5 and gradients
 * chosen so that every expected weight is exact in float. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ps/shard.h"

#define LR 0.5f

static srv_shard *make(uint64_t base, uint64_t len, cfg_consistency cons, int staleness,
                       int nworkers)
{
    opt_config oc;
    opt_config_default(&oc, OPT_SGD);
    oc.lr = LR;
    pst_err err = {0};
    srv_shard *sh = srv_shard_create(base, len, &oc, cons, staleness, nworkers, &err);
    if (!sh)
        fail_msg("srv_shard_create: %s", err.msg);
    return sh;
}

static void init_all(srv_shard *sh, const float *w)
{
    pst_err err = {0};
    if (srv_shard_init_range(sh, srv_shard_base(sh), w, srv_shard_len(sh), &err) != PST_OK)
        fail_msg("init: %s", err.msg);
    assert_true(srv_shard_initialized(sh));
}

static void push_ok(srv_shard *sh, int worker, int64_t clock, uint64_t off, const float *g,
                    uint64_t len)
{
    pst_err err = {0};
    if (srv_shard_push(sh, worker, clock, off, g, len, &err) != PST_OK)
        fail_msg("push by worker %d at clock %lld: %s", worker, (long long)clock, err.msg);
}

static void expect_weights(const srv_shard *sh, const float *want)
{
    const float *w = srv_shard_weights(sh, srv_shard_base(sh));
    for (uint64_t i = 0; i < srv_shard_len(sh); i++)
        assert_float_equal(w[i], want[i], 1e-6);
}

/* ---- initialisation ------------------------------------------------------------------ */

static void test_init_ranges(void **state)
{
    (void)state;
    srv_shard *sh = make(16, 8, CFG_CONS_BSP, 0, 2);
    const float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    pst_err err = {0};
    assert_false(srv_shard_initialized(sh));
    assert_false(srv_shard_pull_ready(sh, 0, 0, 0));

    /* A push before the weights exist has nothing to update. */
    assert_int_equal(srv_shard_push(sh, 0, 0, 16, w, 8, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "before the weights were initialised"));

    assert_int_equal(srv_shard_init_range(sh, 16, w, 4, &err), PST_OK);
    assert_false(srv_shard_initialized(sh));
    assert_false(srv_shard_pull_ready(sh, 0, 0, 0));
    assert_false(srv_shard_pull_ready(sh, 1, 0, 0));

    /* The same first half again would otherwise count as the second half. */
    assert_int_equal(srv_shard_init_range(sh, 16, w, 4, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "INIT of [16, 20) repeats or skips"));
    assert_non_null(strstr(err.msg, "next range starts at 20"));
    assert_false(srv_shard_initialized(sh));
    /* Outside the shard, and a non-finite weight. */
    assert_int_equal(srv_shard_init_range(sh, 22, w, 4, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "range [22, 26) is outside this server's shard [16, 24)"));
    const float bad[4] = {5, 6, INFINITY, 8};
    assert_int_equal(srv_shard_init_range(sh, 20, bad, 4, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "weight 22 is not finite"));
    assert_false(srv_shard_initialized(sh));

    assert_int_equal(srv_shard_init_range(sh, 20, w + 4, 4, &err), PST_OK);
    assert_true(srv_shard_initialized(sh));
    assert_true(srv_shard_pull_ready(sh, 0, 0, 0));
    assert_true(srv_shard_pull_ready(sh, 1, 0, 0));
    expect_weights(sh, w);

    const float other[8] = {9, 9, 9, 9, 9, 9, 9, 9};
    assert_int_equal(srv_shard_init_range(sh, 16, other, 8, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "INIT after the shard was initialised"));
    expect_weights(sh, w);
    srv_shard_destroy(sh);
}

static void test_check_range(void **state)
{
    (void)state;
    srv_shard *sh = make(16, 8, CFG_CONS_ASP, 0, 1);
    pst_err err = {0};
    assert_int_equal(srv_shard_check_range(sh, 16, 8, &err), PST_OK);
    assert_int_equal(srv_shard_check_range(sh, 23, 1, &err), PST_OK);
    assert_int_equal(srv_shard_check_range(sh, 24, 1, &err), PST_ERR_PEER);
    assert_int_equal(srv_shard_check_range(sh, 15, 2, &err), PST_ERR_PEER);
    assert_int_equal(srv_shard_check_range(sh, 16, 9, &err), PST_ERR_PEER);
    assert_int_equal(srv_shard_check_range(sh, 16, 0, &err), PST_ERR_PEER);
    /* off + len would wrap around. */
    assert_int_equal(srv_shard_check_range(sh, 20, UINT64_MAX - 2, &err), PST_ERR_PEER);
    assert_int_equal(srv_shard_check_range(sh, UINT64_MAX - 1, 4, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "outside this server's shard [16, 24)"));
    srv_shard_destroy(sh);
}

/* ---- bsp ------------------------------------------------------------------------------- */

static void test_bsp_mean_applied_once(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 4, CFG_CONS_BSP, 0, 3);
    const float w0[4] = {1, 2, 3, 4};
    init_all(sh, w0);
    const float g[3][4] = {{1, 0, -3, 0.5f}, {2, -1, 0, 1.5f}, {0, 4, 3, 1}};
    srv_shard_stats st;

    push_ok(sh, 0, 0, 0, g[0], 4);
    push_ok(sh, 1, 0, 0, g[1], 4);
    /* Two of three pushed clock 0: nothing applied, nobody may read clock 1 yet. */
    expect_weights(sh, w0);
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 0);
    assert_int_equal(st.pushes, 2);
    for (int k = 0; k < 3; k++) {
        assert_true(srv_shard_pull_ready(sh, k, 0, 0));
        assert_false(srv_shard_pull_ready(sh, k, 1, 0));
    }
    assert_int_equal(srv_shard_worker_clock(sh, 0), 1);
    assert_int_equal(srv_shard_worker_clock(sh, 2), 0);

    push_ok(sh, 2, 0, 0, g[2], 4);
    /* sum (3, 3, 0, 3), mean (1, 1, 0, 1): w - 0.5 * mean */
    const float w1[4] = {0.5f, 1.5f, 3, 3.5f};
    expect_weights(sh, w1);
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 1);
    assert_int_equal(st.pushes, 3);
    for (int k = 0; k < 3; k++) {
        assert_true(srv_shard_pull_ready(sh, k, 1, 0));
        assert_false(srv_shard_pull_ready(sh, k, 2, 0));
        assert_int_equal(srv_shard_clock_gap(sh, k), 0);
    }

    /* Clock 1 in two chunks per worker: one step when the last half arrives. */
    const float h[3][4] = {{2, 2, 2, 2}, {4, 0, -2, 6}, {0, 1, 3, 1}};
    for (int k = 0; k < 3; k++) {
        push_ok(sh, k, 1, 0, h[k], 2);
        assert_int_equal(srv_shard_worker_clock(sh, k), 1); /* half a step is no step */
        assert_false(srv_shard_pull_ready(sh, k, 2, 0));
    }
    push_ok(sh, 0, 1, 2, h[0] + 2, 2);
    push_ok(sh, 1, 1, 2, h[1] + 2, 2);
    expect_weights(sh, w1);
    assert_false(srv_shard_pull_ready(sh, 0, 2, 0));
    push_ok(sh, 2, 1, 2, h[2] + 2, 2);
    /* sum (6, 3, 3, 9), mean (2, 1, 1, 3) */
    const float w2[4] = {-0.5f, 1, 2.5f, 2};
    expect_weights(sh, w2);
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 2);
    assert_int_equal(st.pushes, 9);
    assert_true(srv_shard_pull_ready(sh, 1, 2, 0));
    /* A final pull waits for every worker to be done. */
    assert_false(srv_shard_pull_ready(sh, 0, 2, 1));
    srv_shard_destroy(sh);
}

static void test_bsp_worker_done(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 2, CFG_CONS_BSP, 0, 3);
    const float w0[2] = {1, 1};
    init_all(sh, w0);
    const float a[2] = {2, 0}, b[2] = {0, 4}, c[2] = {6, 2};

    /* Clock 0: workers 0 and 1 push, worker 2 leaves without pushing: the mean is over the
     * two that did, and their pulls of clock 1 are answered. */
    push_ok(sh, 0, 0, 0, a, 2);
    push_ok(sh, 1, 0, 0, b, 2);
    assert_false(srv_shard_pull_ready(sh, 0, 1, 0));
    srv_shard_worker_done(sh, 2);
    assert_int_equal(srv_shard_live_workers(sh), 2);
    const float w1[2] = {0.5f, 0}; /* mean (1, 2) */
    expect_weights(sh, w1);
    assert_true(srv_shard_pull_ready(sh, 0, 1, 0));
    assert_true(srv_shard_pull_ready(sh, 1, 1, 0));

    pst_err err = {0};
    assert_int_equal(srv_shard_push(sh, 2, 0, 0, c, 2, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "push from worker 2 after it finished"));
    expect_weights(sh, w1);
    srv_shard_worker_done(sh, 2); /* a repeated DONE changes nothing */
    assert_int_equal(srv_shard_live_workers(sh), 2);

    /* Clock 1: worker 1 pushes, then finishes; its gradient still counts. */
    push_ok(sh, 1, 1, 0, c, 2);
    srv_shard_worker_done(sh, 1);
    expect_weights(sh, w1);
    assert_false(srv_shard_pull_ready(sh, 0, 2, 0));
    push_ok(sh, 0, 1, 0, a, 2);
    const float w2[2] = {-1.5f, -0.5f}; /* mean (4, 1) */
    expect_weights(sh, w2);
    assert_true(srv_shard_pull_ready(sh, 0, 2, 0));
    assert_false(srv_shard_all_done(sh));
    assert_false(srv_shard_pull_ready(sh, 0, 2, 1));
    srv_shard_worker_done(sh, 0);
    assert_true(srv_shard_all_done(sh));
    assert_true(srv_shard_pull_ready(sh, 0, 2, 1));
    expect_weights(sh, w2);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 2);
    srv_shard_destroy(sh);
}

/* ---- ssp and asp ------------------------------------------------------------------------ */

static void test_ssp_staleness_bound(void **state)
{
    (void)state;
    const int s = 2;
    srv_shard *sh = make(0, 2, CFG_CONS_SSP, s, 3);
    const float w0[2] = {0, 0}, g[2] = {1, -2};
    init_all(sh, w0);
    srv_shard_stats st;

    /* Worker 0 runs ahead; each push is applied at once. */
    for (int64_t c = 0; c < s; c++) {
        push_ok(sh, 0, c, 0, g, 2);
        const float want[2] = {-LR * (float)(c + 1), 2 * LR * (float)(c + 1)};
        expect_weights(sh, want);
    }
    /* Worker 0 is at clock s, the others at 0: exactly at the bound. */
    assert_true(srv_shard_pull_ready(sh, 0, s, 0));
    assert_int_equal(srv_shard_clock_gap(sh, 0), s);
    assert_int_equal(srv_shard_clock_gap(sh, 1), 0);
    srv_shard_note_served(sh, 1);
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.max_clock_gap, 0);
    srv_shard_note_served(sh, 0);
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.max_clock_gap, s);

    push_ok(sh, 0, s, 0, g, 2);
    /* One past the bound: the pull for clock s + 1 waits for the slowest worker. */
    assert_false(srv_shard_pull_ready(sh, 0, s + 1, 0));
    assert_true(srv_shard_pull_ready(sh, 1, 0, 0));
    push_ok(sh, 1, 0, 0, g, 2);
    assert_false(srv_shard_pull_ready(sh, 0, s + 1, 0)); /* worker 2 is still at 0 */
    push_ok(sh, 2, 0, 0, g, 2);
    assert_true(srv_shard_pull_ready(sh, 0, s + 1, 0));
    assert_false(srv_shard_pull_ready(sh, 0, s + 2, 0));
    assert_int_equal(srv_shard_clock_gap(sh, 0), s);
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, s + 3);
    const float w5[2] = {-LR * (s + 3), 2 * LR * (s + 3)};
    expect_weights(sh, w5);

    /* The slowest workers leaving move the bound to worker 0's own clock, s + 1. */
    srv_shard_worker_done(sh, 1);
    srv_shard_worker_done(sh, 2);
    assert_true(srv_shard_pull_ready(sh, 0, 2 * s + 1, 0));
    assert_false(srv_shard_pull_ready(sh, 0, 2 * s + 2, 0));
    assert_int_equal(srv_shard_clock_gap(sh, 0), 0);
    srv_shard_destroy(sh);
}

static void test_ssp_chunks_one_update(void **state)
{
    (void)state;
    srv_shard *sh = make(8, 4, CFG_CONS_SSP, 1, 2);
    const float w0[4] = {1, 1, 1, 1}, g[4] = {2, 4, 6, 8};
    init_all(sh, w0);
    push_ok(sh, 1, 0, 8, g, 2);
    assert_int_equal(srv_shard_worker_clock(sh, 1), 0);
    const float half[4] = {0, -1, 1, 1};
    expect_weights(sh, half); /* the first chunk is applied at once */
    push_ok(sh, 1, 0, 10, g + 2, 2);
    assert_int_equal(srv_shard_worker_clock(sh, 1), 1);
    const float full[4] = {0, -1, -2, -3};
    expect_weights(sh, full);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 1);
    assert_int_equal(st.pushes, 2);
    srv_shard_destroy(sh);
}

static void test_asp_always_ready(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 2, CFG_CONS_ASP, 0, 2);
    const float w0[2] = {3, 3}, g[2] = {2, -2};
    init_all(sh, w0);
    for (int64_t c = 0; c < 10; c++) {
        push_ok(sh, 0, c, 0, g, 2);
        const float want[2] = {3 - LR * 2 * (float)(c + 1), 3 + LR * 2 * (float)(c + 1)};
        expect_weights(sh, want);
    }
    assert_true(srv_shard_pull_ready(sh, 0, 10, 0));
    assert_true(srv_shard_pull_ready(sh, 0, 1000000, 0));
    assert_true(srv_shard_pull_ready(sh, 1, 0, 0));
    assert_int_equal(srv_shard_clock_gap(sh, 0), 10);
    srv_shard_note_served(sh, 0);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.max_clock_gap, 10);
    assert_int_equal(st.updates, 10);
    srv_shard_destroy(sh);
}

/* ---- refused pushes -------------------------------------------------------------------- */

typedef struct {
    float w[8];
    srv_shard_stats st;
    int64_t clock[3];
    int live;
} snapshot;

static void take(const srv_shard *sh, int nworkers, snapshot *s)
{
    memset(s, 0, sizeof *s);
    memcpy(s->w, srv_shard_weights(sh, srv_shard_base(sh)),
           (size_t)srv_shard_len(sh) * sizeof(float));
    srv_shard_get_stats(sh, &s->st);
    for (int k = 0; k < nworkers; k++)
        s->clock[k] = srv_shard_worker_clock(sh, k);
    s->live = srv_shard_live_workers(sh);
}

/* Pushes, expects PST_ERR_PEER naming `what`, and the shard exactly as before (only the
 * non-finite counter may move, by `nonfinite`). */
static void refused(srv_shard *sh, int nworkers, int worker, int64_t clock, uint64_t off,
                    const float *g, uint64_t len, const char *what, uint64_t nonfinite)
{
    snapshot before, after;
    take(sh, nworkers, &before);
    pst_err err = {0};
    int rc = srv_shard_push(sh, worker, clock, off, g, len, &err);
    if (rc != PST_ERR_PEER)
        fail_msg("push (worker %d, clock %lld, [%llu, +%llu)) returned %d, expected a refusal "
                 "naming '%s'",
                 worker, (long long)clock, (unsigned long long)off, (unsigned long long)len, rc,
                 what);
    if (!strstr(err.msg, what))
        fail_msg("refusal '%s' does not name '%s'", err.msg, what);
    take(sh, nworkers, &after);
    before.st.rejected_nonfinite += nonfinite;
    assert_memory_equal(&before, &after, sizeof before);
}

static void test_push_validation(void **state)
{
    (void)state;
    /* bsp, 3 workers, shard [8, 16). */
    srv_shard *sh = make(8, 8, CFG_CONS_BSP, 0, 3);
    const float w0[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    init_all(sh, w0);
    float g[8];
    for (int i = 0; i < 8; i++)
        g[i] = 2;

    refused(sh, 3, 0, 1, 8, g, 8, "push for clock 1 from worker 0, expected 0", 0);
    refused(sh, 3, 0, 0, 0, g, 8, "range [0, 8) is outside this server's shard [8, 16)", 0);
    refused(sh, 3, 0, 0, 12, g, 8, "range [12, 20) is outside", 0);
    refused(sh, 3, 3, 0, 8, g, 8, "push from unknown worker 3", 0);
    refused(sh, 3, -1, 0, 8, g, 8, "push from unknown worker -1", 0);

    float nan_g[8], inf_g[8];
    memcpy(nan_g, g, sizeof g);
    memcpy(inf_g, g, sizeof g);
    nan_g[5] = NAN;
    inf_g[7] = -INFINITY;
    refused(sh, 3, 0, 0, 8, nan_g, 8, "push from worker 0: gradient 13 is", 1);
    refused(sh, 3, 0, 0, 8, inf_g, 8, "gradient 15 is -inf (rejected)", 1);

    /* Chunks: [8, 12) accepted; the same chunk again, an overlapping one, and one that
     * skips ahead are refused; [12, 16) completes the step. */
    push_ok(sh, 0, 0, 8, g, 4);
    refused(sh, 3, 0, 0, 8, g, 4, "push of [8, 12) for clock 0 from worker 0 repeats or skips", 0);
    refused(sh, 3, 0, 0, 10, g, 4, "the next chunk starts at 12", 0);
    refused(sh, 3, 0, 0, 14, g, 2, "push of [14, 16) for clock 0 from worker 0 repeats or skips",
            0);
    refused(sh, 3, 0, 0, 12, g, 8, "outside this server's shard", 0); /* would exceed it */
    push_ok(sh, 0, 0, 12, g + 4, 4);
    assert_int_equal(srv_shard_worker_clock(sh, 0), 1);

    /* Worker 0 completed clock 0; clock 1 before the others pushed 0 is a broken peer. */
    refused(sh, 3, 0, 1, 8, g, 8, "push for clock 1 from worker 0 while clock 0 is assembled", 0);
    refused(sh, 3, 0, 0, 8, g, 8, "push for clock 0 from worker 0, expected 1", 0);

    srv_shard_worker_done(sh, 2);
    refused(sh, 3, 2, 0, 8, g, 8, "push from worker 2 after it finished", 0);

    /* None of the refused pushes reached the sum: worker 1's push applies the mean of
     * exactly two gradients, (2 + 6) / 2 = 4 per float, so w <- w - 0.5 * 4. */
    float g1[8];
    for (int i = 0; i < 8; i++)
        g1[i] = 6;
    push_ok(sh, 1, 0, 8, g1, 8);
    float want[8];
    for (int i = 0; i < 8; i++)
        want[i] = w0[i] - 2;
    expect_weights(sh, want);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 1);
    assert_int_equal(st.pushes, 3);
    assert_int_equal(st.rejected_nonfinite, 2);
    srv_shard_destroy(sh);
}

/* ssp/asp apply a push at once, so a refused one must not even tick the optimizer. */
static void test_push_validation_async(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 4, CFG_CONS_ASP, 0, 2);
    const float w0[4] = {1, 1, 1, 1};
    init_all(sh, w0);
    float g[4] = {1, 1, NAN, 1};
    refused(sh, 2, 1, 0, 0, g, 4, "gradient 2 is", 1);
    g[2] = 1;
    refused(sh, 2, 1, 3, 0, g, 4, "expected 0", 0);
    push_ok(sh, 1, 0, 0, g, 2);
    refused(sh, 2, 1, 0, 0, g, 2, "repeats or skips", 0);
    push_ok(sh, 1, 0, 2, g, 2);
    const float want[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    expect_weights(sh, want);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 1);
    assert_int_equal(st.rejected_nonfinite, 1);
    srv_shard_destroy(sh);
}

static void test_create_bad_sizes(void **state)
{
    (void)state;
    opt_config oc;
    opt_config_default(&oc, OPT_SGD);
    pst_err err = {0};
    assert_null(srv_shard_create(0, 0, &oc, CFG_CONS_BSP, 0, 1, &err));
    assert_int_equal(err.code, PST_ERR_ARG);
    assert_null(srv_shard_create(0, 4, &oc, CFG_CONS_BSP, 0, 0, &err));
    assert_int_equal(err.code, PST_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_ranges),
        cmocka_unit_test(test_check_range),
        cmocka_unit_test(test_bsp_mean_applied_once),
        cmocka_unit_test(test_bsp_worker_done),
        cmocka_unit_test(test_ssp_staleness_bound),
        cmocka_unit_test(test_ssp_chunks_one_update),
        cmocka_unit_test(test_asp_always_ready),
        cmocka_unit_test(test_push_validation),
        cmocka_unit_test(test_push_validation_async),
        cmocka_unit_test(test_create_bad_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
