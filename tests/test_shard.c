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

#include "ps/coord.h"
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

/* bsp sums the workers' gradients in rank order whatever order they arrive in, so the
 * result is bit-identical across arrival orders (float addition is not associative:
 * these values make (a + b) + c differ from (a + c) + b). */
static void test_bsp_sum_independent_of_arrival_order(void **state)
{
    (void)state;
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                     {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    float g[3][4] = {{1e8f, 1.0f, 3.3f, -2.0f},
                     {-1e8f, 1e-8f, 0.7f, 1e7f},
                     {1.0f, -1.0f, 1e-3f, -1e7f}};
    float w0[4] = {0.25f, -0.5f, 1.0f, 2.0f};
    float first[4];
    int differs_naive = 0;
    for (int o = 0; o < 6; o++) {
        srv_shard *sh = make(0, 4, CFG_CONS_BSP, 0, 3);
        init_all(sh, w0);
        for (int j = 0; j < 3; j++)
            push_ok(sh, orders[o][j], 0, 0, g[orders[o][j]], 4);
        const float *w = srv_shard_weights(sh, 0);
        if (o == 0)
            memcpy(first, w, sizeof first);
        else
            assert_memory_equal(w, first, sizeof first);
        /* The naive arrival-order sum would differ for some order. */
        volatile float a = 0.0f;
        for (int j = 0; j < 3; j++)
            a += g[orders[o][j]][1];
        differs_naive |= a != (g[0][1] + g[1][1]) + g[2][1];
        srv_shard_destroy(sh);
    }
    assert_true(differs_naive);
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

/* ---- update groups (fine-tuning) ------------------------------------------------------ */

/* Shard [10, 20) of a 30-float model whose groups are [0, 12) x1, [12, 15) frozen,
 * [15, 18) x2, [18, 30) frozen: the shard trains [10, 12) at lr and [15, 18) at 2 lr. */
static srv_shard *make_grouped(cfg_consistency cons, int nworkers)
{
    static const uint64_t offs[] = {0, 12, 15, 18, 30};
    static const float mults[] = {1.0f, 0.0f, 2.0f, 0.0f};
    srv_shard *sh = make(10, 10, cons, 0, nworkers);
    pst_err err = {0};
    if (srv_shard_set_groups(sh, offs, mults, 4, &err) != PST_OK)
        fail_msg("set_groups: %s", err.msg);
    assert_int_equal(srv_shard_trainable(sh), 5);
    float w[10];
    for (int i = 0; i < 10; i++)
        w[i] = (float)i;
    init_all(sh, w);
    return sh;
}

static void test_groups_bsp(void **state)
{
    (void)state;
    srv_shard *sh = make_grouped(CFG_CONS_BSP, 2);
    pst_err err = {0};
    float g1[5] = {1, 1, 1, 1, 1}, g3[5] = {3, 3, 3, 3, 3};
    /* A chunk covering a frozen float, or one that does not skip to the next trainable
     * float, is refused. */
    assert_int_equal(srv_shard_push(sh, 0, 0, 10, g1, 3, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "frozen"));
    assert_int_equal(srv_shard_push(sh, 0, 0, 15, g1, 3, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "starts at 10"));
    push_ok(sh, 0, 0, 10, g1, 2);
    assert_int_equal(srv_shard_push(sh, 0, 0, 12, g1, 3, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "starts at 15"));
    push_ok(sh, 0, 0, 15, g1, 3);
    assert_int_equal(srv_shard_worker_clock(sh, 0), 1); /* complete: 5 trainable floats */
    assert_false(srv_shard_pull_ready(sh, 0, 1, 0));
    push_ok(sh, 1, 0, 10, g3, 2);
    push_ok(sh, 1, 0, 15, g3, 3);
    assert_true(srv_shard_pull_ready(sh, 0, 1, 0));
    /* mean 2: x1 floats move by lr * 2 = 1, x2 floats by 2 lr * 2 = 2, frozen ones stay */
    const float want[10] = {-1, 0, 2, 3, 4, 3, 4, 5, 8, 9};
    expect_weights(sh, want);
    /* Groups are fixed once pushes arrived. */
    static const uint64_t offs[] = {0, 30};
    static const float one[] = {1.0f};
    assert_int_equal(srv_shard_set_groups(sh, offs, one, 1, &err), PST_ERR_STATE);
    srv_shard_destroy(sh);
}

static void test_groups_ssp_and_fully_frozen(void **state)
{
    (void)state;
    srv_shard *sh = make_grouped(CFG_CONS_SSP, 1);
    float g[5] = {2, 2, 2, 2, 2};
    push_ok(sh, 0, 0, 10, g, 2);
    push_ok(sh, 0, 0, 15, g, 3);
    const float want[10] = {-1, 0, 2, 3, 4, 3, 4, 5, 8, 9};
    expect_weights(sh, want);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 1); /* one update per step, over both chunks */
    srv_shard_destroy(sh);

    /* A shard that is frozen whole takes no push at all; groups must cover the shard. */
    static const uint64_t offs[] = {0, 25, 30};
    static const float mults[] = {0.0f, 1.0f};
    sh = make(10, 10, CFG_CONS_BSP, 0, 1);
    pst_err err = {0};
    assert_int_equal(srv_shard_set_groups(sh, offs, mults, 2, &err), PST_OK);
    assert_int_equal(srv_shard_trainable(sh), 0);
    float w[10] = {0};
    init_all(sh, w);
    assert_int_equal(srv_shard_push(sh, 0, 0, 10, g, 1, &err), PST_ERR_PEER);
    static const uint64_t short_offs[] = {12, 30};
    assert_int_equal(srv_shard_set_groups(sh, short_offs, mults, 1, &err), PST_ERR_ARG);
    srv_shard_destroy(sh);
}

/* ---- checkpoints: restore ------------------------------------------------------------ */

static srv_shard *make_adam(cfg_consistency cons, int nworkers)
{
    opt_config oc;
    opt_config_default(&oc, OPT_ADAM);
    oc.lr = 0.1f;
    pst_err err = {0};
    srv_shard *sh = srv_shard_create(0, 4, &oc, cons, 1, nworkers, &err);
    if (!sh)
        fail_msg("srv_shard_create: %s", err.msg);
    return sh;
}

/* A shard restored from the weights and optimizer state of clock 2 continues bit for bit
 * as the shard it was taken from (bsp, two workers), and acts as one at clock 2. */
static void test_restore_bsp(void **state)
{
    (void)state;
    const float w0[4] = {1, -2, 0.5f, 3};
    const float g[3][2][4] = {{{1, 2, 3, 4}, {0.5f, -1, 2, 0}},
                              {{-1, 0, 1, 2}, {3, 3, -3, 1}},
                              {{0.25f, 1, -2, 5}, {1, 1, 1, -1}}};
    srv_shard *a = make_adam(CFG_CONS_BSP, 2), *b = make_adam(CFG_CONS_BSP, 2);
    init_all(a, w0);
    float w2[4] = {0}, m[2][4] = {{0}};
    for (int c = 0; c < 3; c++) {
        if (c == 2) { /* the checkpoint: clock 2's weights and optimizer state */
            assert_true(srv_shard_applied(a, 0, 2) && !srv_shard_applied(a, 0, 3));
            assert_int_equal(srv_shard_clock(a), 2);
            memcpy(w2, srv_shard_weights(a, 0), sizeof w2);
            for (int i = 0; i < 2; i++)
                memcpy(m[i], opt_state_buf(srv_shard_opt(a), i), sizeof m[i]);
        }
        push_ok(a, 0, c, 0, g[c][0], 4);
        push_ok(a, 1, c, 0, g[c][1], 4);
    }
    pst_err err = {0};
    assert_false(srv_shard_initialized(b));
    assert_int_equal(srv_shard_restore(b, w2, 2, &err), PST_OK);
    for (int i = 0; i < 2; i++)
        memcpy(opt_state_buf(srv_shard_opt(b), i), m[i], sizeof m[i]);
    opt_state_set_step(srv_shard_opt(b), 2);
    assert_true(srv_shard_initialized(b));
    assert_int_equal(srv_shard_worker_clock(b, 1), 2);
    assert_int_equal(srv_shard_clock(b), 2);
    assert_true(srv_shard_pull_ready(b, 0, 2, 0));
    assert_false(srv_shard_pull_ready(b, 0, 3, 0));
    /* Clock 1 is over: its push is refused, clock 2's taken. */
    assert_int_equal(srv_shard_push(b, 0, 1, 0, g[1][0], 4, &err), PST_ERR_PEER);
    push_ok(b, 1, 2, 0, g[2][1], 4); /* the other order: a + b = b + a exactly */
    push_ok(b, 0, 2, 0, g[2][0], 4);
    assert_memory_equal(srv_shard_weights(b, 0), srv_shard_weights(a, 0), sizeof w2);
    assert_int_equal(opt_state_step(srv_shard_opt(b)), 3);
    assert_true(srv_shard_applied(b, 1, 3));
    /* Only once, only before INIT, only finite weights. */
    assert_int_equal(srv_shard_restore(b, w2, 2, &err), PST_ERR_STATE);
    srv_shard *c = make_adam(CFG_CONS_BSP, 2);
    float bad[4] = {1, NAN, 0, 0};
    assert_int_equal(srv_shard_restore(c, bad, 2, &err), PST_ERR_DATA);
    assert_false(srv_shard_initialized(c));
    /* A worker whose steps ended before the clock says DONE at once: the other's gradient
     * alone is applied, and the pull of clock 3 then answers. */
    assert_int_equal(srv_shard_restore(c, w2, 2, &err), PST_OK);
    srv_shard_worker_done(c, 1);
    push_ok(c, 0, 2, 0, g[2][0], 4);
    assert_true(srv_shard_pull_ready(c, 0, 3, 0));
    assert_int_equal(srv_shard_clock(c), 3);
    srv_shard_destroy(a);
    srv_shard_destroy(b);
    srv_shard_destroy(c);
}

/* ssp: a shard's clock is its fastest worker's; a worker's checkpoint step is applied once
 * its whole push is in. */
static void test_restore_ssp_clocks(void **state)
{
    (void)state;
    srv_shard *sh = make_adam(CFG_CONS_SSP, 2);
    const float w0[4] = {0, 0, 0, 0}, g[4] = {1, 1, 1, 1};
    pst_err err = {0};
    assert_int_equal(srv_shard_restore(sh, w0, 5, &err), PST_OK);
    assert_int_equal(srv_shard_clock(sh), 5);
    push_ok(sh, 1, 5, 0, g, 2);
    assert_false(srv_shard_applied(sh, 1, 6)); /* half a push */
    push_ok(sh, 1, 5, 2, g, 2);
    assert_true(srv_shard_applied(sh, 1, 6));
    assert_false(srv_shard_applied(sh, 0, 6));
    assert_int_equal(srv_shard_clock(sh), 6);
    srv_shard_destroy(sh);
}

/* The shard map of a fine-tuning job balances the trainable floats. */
static void test_shard_map_groups(void **state)
{
    (void)state;
    uint64_t a[5], b[5];
    /* No groups: the plain map. */
    coord_shard_map_groups(1000, 4, NULL, NULL, 0, a);
    coord_shard_map(1000, 4, b);
    assert_memory_equal(a, b, sizeof a);
    /* Fashion-MNIST's 784-256-128-5 with the body frozen: the 645 head floats are split,
     * 322 before the cut (rounded to 16 floats), instead of one server holding them all. */
    const uint64_t off[] = {0, 233856, 234501};
    const float mult[] = {0.0f, 1.0f};
    coord_shard_map_groups(234501, 2, off, mult, 2, a);
    assert_int_equal(a[0], 0);
    assert_int_equal(a[1], 234176);
    assert_int_equal(a[2], 234501);
    /* Too few trainable floats for every server: cuts stay ordered, aligned, non-empty. */
    const uint64_t off2[] = {0, 995, 1000};
    coord_shard_map_groups(1000, 4, off2, mult, 2, a);
    const uint64_t want[] = {0, 944, 960, 976, 1000};
    assert_memory_equal(a, want, sizeof want);
    /* Nothing trains: the plain map. */
    const float none[] = {0.0f, 0.0f};
    coord_shard_map_groups(1000, 4, off2, none, 2, a);
    coord_shard_map(1000, 4, b);
    assert_memory_equal(a, b, sizeof a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_ranges),
        cmocka_unit_test(test_check_range),
        cmocka_unit_test(test_bsp_mean_applied_once),
        cmocka_unit_test(test_bsp_sum_independent_of_arrival_order),
        cmocka_unit_test(test_bsp_worker_done),
        cmocka_unit_test(test_ssp_staleness_bound),
        cmocka_unit_test(test_ssp_chunks_one_update),
        cmocka_unit_test(test_asp_always_ready),
        cmocka_unit_test(test_push_validation),
        cmocka_unit_test(test_push_validation_async),
        cmocka_unit_test(test_create_bad_sizes),
        cmocka_unit_test(test_groups_bsp),
        cmocka_unit_test(test_groups_ssp_and_fully_frozen),
        cmocka_unit_test(test_shard_map_groups),
        cmocka_unit_test(test_restore_bsp),
        cmocka_unit_test(test_restore_ssp_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
