/* tests/test_shard.c -- a server's shard driven directly: initialisation, the bsp mean
 * applied once per clock, ssp's staleness bound (c - min_live_clock <= s), asp, the
 * refusal of every malformed push with the shard left as it was, and what a lossy transport
 * brings: chunks that arrive twice, late or after a gap (SRV_REPEAT / SRV_EARLY), workers
 * lost and rejoined, and gradients with NaN/Inf under both nonfinite policies.
 *
 * The optimizer is plain SGD, w <- w - lr * g (core/optim.h), with lr = 0.5 and gradients
 * chosen so that every expected weight is exact in float. Where the values are arbitrary
 * instead (to make float rounding depend on the order of operations), the reference is a
 * second shard fed cleanly, and the weights are compared bit for bit. */
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

static const char *outcome_name(srv_outcome o)
{
    return o == SRV_APPLIED  ? "APPLIED"
           : o == SRV_REPEAT ? "REPEAT"
           : o == SRV_EARLY  ? "EARLY"
                             : "?";
}

/* One INIT range that must succeed; returns its outcome. */
static srv_outcome init_out(srv_shard *sh, uint64_t off, const float *w, uint64_t len)
{
    pst_err err = {0};
    srv_outcome out = SRV_APPLIED;
    if (srv_shard_init_range(sh, off, w, len, &out, &err) != PST_OK)
        fail_msg("init of [%llu, +%llu): %s", (unsigned long long)off, (unsigned long long)len,
                 err.msg);
    return out;
}

static void init_all(srv_shard *sh, const float *w)
{
    assert_int_equal(init_out(sh, srv_shard_base(sh), w, srv_shard_len(sh)), SRV_APPLIED);
    assert_true(srv_shard_initialized(sh));
}

/* One push that must succeed (PST_OK); returns its outcome. */
static srv_outcome push_out(srv_shard *sh, int worker, int64_t clock, uint64_t off, const float *g,
                            uint64_t len)
{
    pst_err err = {0};
    srv_outcome out = SRV_APPLIED;
    if (srv_shard_push(sh, worker, clock, off, g, len, &out, &err) != PST_OK)
        fail_msg("push by worker %d at clock %lld: %s", worker, (long long)clock, err.msg);
    return out;
}

static void push_ok(srv_shard *sh, int worker, int64_t clock, uint64_t off, const float *g,
                    uint64_t len)
{
    srv_outcome out = push_out(sh, worker, clock, off, g, len);
    if (out != SRV_APPLIED)
        fail_msg("push by worker %d at clock %lld of [%llu, +%llu): %s, expected APPLIED", worker,
                 (long long)clock, (unsigned long long)off, (unsigned long long)len,
                 outcome_name(out));
}

static void expect_weights(const srv_shard *sh, const float *want)
{
    const float *w = srv_shard_weights(sh, srv_shard_base(sh));
    for (uint64_t i = 0; i < srv_shard_len(sh); i++)
        assert_float_equal(w[i], want[i], 1e-6);
}

/* ---- snapshots: "the shard is exactly as it was" ----------------------------------- */

#define SNAP_FLOATS 16
#define SNAP_WORKERS 4

typedef struct {
    float w[SNAP_FLOATS];
    srv_shard_stats st;
    int64_t clock[SNAP_WORKERS];
    int64_t shard_clock;
    int live, initialized;
} snapshot;

static void take(const srv_shard *sh, int nworkers, snapshot *s)
{
    assert_true(srv_shard_len(sh) <= SNAP_FLOATS && nworkers <= SNAP_WORKERS);
    memset(s, 0, sizeof *s);
    memcpy(s->w, srv_shard_weights(sh, srv_shard_base(sh)),
           (size_t)srv_shard_len(sh) * sizeof(float));
    srv_shard_get_stats(sh, &s->st);
    for (int k = 0; k < nworkers; k++)
        s->clock[k] = srv_shard_worker_clock(sh, k);
    s->shard_clock = srv_shard_clock(sh);
    s->live = srv_shard_live_workers(sh);
    s->initialized = srv_shard_initialized(sh);
}

/* Pushes, expects PST_ERR_PEER naming `what`, and the shard exactly as before (only the
 * non-finite counter may move, by `nonfinite`). */
static void refused(srv_shard *sh, int nworkers, int worker, int64_t clock, uint64_t off,
                    const float *g, uint64_t len, const char *what, uint64_t nonfinite)
{
    snapshot before, after;
    take(sh, nworkers, &before);
    pst_err err = {0};
    srv_outcome out = SRV_APPLIED;
    int rc = srv_shard_push(sh, worker, clock, off, g, len, &out, &err);
    if (rc != PST_ERR_PEER)
        fail_msg("push (worker %d, clock %lld, [%llu, +%llu)) returned %d, expected a refusal "
                 "naming '%s'",
                 worker, (long long)clock, (unsigned long long)off, (unsigned long long)len, rc,
                 what);
    if (!strstr(err.msg, what))
        fail_msg("refusal '%s' does not name '%s'", err.msg, what);
    assert_int_not_equal(out, SRV_APPLIED);
    take(sh, nworkers, &after);
    before.st.rejected_nonfinite += nonfinite;
    assert_memory_equal(&before, &after, sizeof before);
}

/* Pushes a chunk that must not be taken: PST_OK with outcome `want` (REPEAT or EARLY), and
 * the shard exactly as before but for the matching counter. */
static void not_taken(srv_shard *sh, int nworkers, int worker, int64_t clock, uint64_t off,
                      const float *g, uint64_t len, srv_outcome want)
{
    snapshot before, after;
    take(sh, nworkers, &before);
    srv_outcome out = push_out(sh, worker, clock, off, g, len);
    if (out != want)
        fail_msg("push by worker %d at clock %lld of [%llu, +%llu): %s, expected %s", worker,
                 (long long)clock, (unsigned long long)off, (unsigned long long)len,
                 outcome_name(out), outcome_name(want));
    take(sh, nworkers, &after);
    before.st.repeats += want == SRV_REPEAT;
    before.st.early += want == SRV_EARLY;
    assert_memory_equal(&before, &after, sizeof before);
}

/* The same for an INIT range. */
static void init_not_taken(srv_shard *sh, uint64_t off, const float *w, uint64_t len,
                           srv_outcome want)
{
    snapshot before, after;
    take(sh, 1, &before);
    srv_outcome out = init_out(sh, off, w, len);
    if (out != want)
        fail_msg("init of [%llu, +%llu): %s, expected %s", (unsigned long long)off,
                 (unsigned long long)len, outcome_name(out), outcome_name(want));
    take(sh, 1, &after);
    assert_memory_equal(&before, &after, sizeof before);
}

/* ---- initialisation ------------------------------------------------------------------ */

static void test_init_ranges(void **state)
{
    (void)state;
    srv_shard *sh = make(16, 8, CFG_CONS_BSP, 0, 2);
    const float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    pst_err err = {0};
    srv_outcome out;
    assert_false(srv_shard_initialized(sh));
    assert_false(srv_shard_pull_ready(sh, 0, 0, 0));

    /* A push before the weights exist has nothing to update. */
    assert_int_equal(srv_shard_push(sh, 0, 0, 16, w, 8, &out, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "before the weights were initialised"));

    assert_int_equal(init_out(sh, 16, w, 4), SRV_APPLIED);
    assert_false(srv_shard_initialized(sh));
    assert_false(srv_shard_pull_ready(sh, 0, 0, 0));
    assert_false(srv_shard_pull_ready(sh, 1, 0, 0));

    /* The same first half again is a repeat: it must not count as the second half. */
    init_not_taken(sh, 16, w, 4, SRV_REPEAT);
    assert_false(srv_shard_initialized(sh));
    /* Outside the shard, and a non-finite weight. */
    assert_int_equal(srv_shard_init_range(sh, 22, w, 4, &out, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "range [22, 26) is outside this server's shard [16, 24)"));
    const float bad[4] = {5, 6, INFINITY, 8};
    assert_int_equal(srv_shard_init_range(sh, 20, bad, 4, &out, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "weight 22 is not finite"));
    assert_int_not_equal(out, SRV_APPLIED);
    assert_false(srv_shard_initialized(sh));

    assert_int_equal(init_out(sh, 20, w + 4, 4), SRV_APPLIED);
    assert_true(srv_shard_initialized(sh));
    assert_true(srv_shard_pull_ready(sh, 0, 0, 0));
    assert_true(srv_shard_pull_ready(sh, 1, 0, 0));
    expect_weights(sh, w);

    /* INIT once initialised is a repeat (an acknowledgement was lost): nothing changes. */
    const float other[8] = {9, 9, 9, 9, 9, 9, 9, 9};
    init_not_taken(sh, 16, other, 8, SRV_REPEAT);
    init_not_taken(sh, 20, other, 4, SRV_REPEAT);
    expect_weights(sh, w);
    srv_shard_destroy(sh);
}

/* INIT ranges repeated and out of order: a repeat changes nothing, a range after a gap
 * waits, and once the missing range came the later one completes the init exactly. */
static void test_init_out_of_order(void **state)
{
    (void)state;
    srv_shard *sh = make(100, 12, CFG_CONS_ASP, 0, 1);
    float w[12], other[12];
    for (int i = 0; i < 12; i++) {
        w[i] = 0.1f * (float)(i + 1);
        other[i] = -7.0f;
    }
    /* A = [100, 104), B = [104, 108), C = [108, 112) */
    init_not_taken(sh, 108, w + 8, 4, SRV_EARLY); /* A and B are missing */
    init_not_taken(sh, 104, w + 4, 4, SRV_EARLY); /* A is missing */
    assert_int_equal(init_out(sh, 100, w, 4), SRV_APPLIED);
    init_not_taken(sh, 100, other, 4, SRV_REPEAT);
    init_not_taken(sh, 108, w + 8, 4, SRV_EARLY); /* B was lost */
    init_not_taken(sh, 100, w, 4, SRV_REPEAT);
    assert_false(srv_shard_initialized(sh));
    assert_false(srv_shard_pull_ready(sh, 0, 0, 0));
    pst_err err = {0};
    srv_outcome out;
    assert_int_equal(srv_shard_push(sh, 0, 0, 100, w, 12, &out, &err), PST_ERR_PEER);

    assert_int_equal(init_out(sh, 104, w + 4, 4), SRV_APPLIED);
    assert_false(srv_shard_initialized(sh)); /* repeats of A did not count for C */
    assert_int_equal(init_out(sh, 108, w + 8, 4), SRV_APPLIED);
    assert_true(srv_shard_initialized(sh));
    assert_true(srv_shard_pull_ready(sh, 0, 0, 0));
    assert_memory_equal(srv_shard_weights(sh, 100), w, sizeof w);

    init_not_taken(sh, 104, other + 4, 4, SRV_REPEAT);
    init_not_taken(sh, 108, other + 8, 4, SRV_REPEAT);
    init_not_taken(sh, 100, other, 12, SRV_REPEAT);
    assert_memory_equal(srv_shard_weights(sh, 100), w, sizeof w);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.pushes, 0);
    assert_int_equal(st.updates, 0);
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
    assert_int_equal(st.repeats, 0);
    assert_int_equal(st.early, 0);
    assert_true(srv_shard_pull_ready(sh, 1, 2, 0));
    /* A final pull waits for every worker to be done. */
    assert_false(srv_shard_pull_ready(sh, 0, 2, 1));
    srv_shard_destroy(sh);
}

/* bsp sums the workers' gradients in rank order whatever order they arrive in, so the
 * result is bit-identical across arrival orders (float addition is not associative:
 * these values make (a + b) + c differ from (a + c) + b). */
static const float nonassoc_g[3][4] = {
    {1e8f, 1.0f, 3.3f, -2.0f}, {-1e8f, 1e-8f, 0.7f, 1e7f}, {1.0f, -1.0f, 1e-3f, -1e7f}};
static const float nonassoc_w0[4] = {0.25f, -0.5f, 1.0f, 2.0f};

static void test_bsp_sum_independent_of_arrival_order(void **state)
{
    (void)state;
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                     {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    float first[4];
    int differs_naive = 0;
    for (int o = 0; o < 6; o++) {
        srv_shard *sh = make(0, 4, CFG_CONS_BSP, 0, 3);
        init_all(sh, nonassoc_w0);
        for (int j = 0; j < 3; j++)
            push_ok(sh, orders[o][j], 0, 0, nonassoc_g[orders[o][j]], 4);
        const float *w = srv_shard_weights(sh, 0);
        if (o == 0)
            memcpy(first, w, sizeof first);
        else
            assert_memory_equal(w, first, sizeof first);
        /* The naive arrival-order sum would differ for some order. */
        volatile float a = 0.0f;
        for (int j = 0; j < 3; j++)
            a += nonassoc_g[orders[o][j]][1];
        differs_naive |= a != (nonassoc_g[0][1] + nonassoc_g[1][1]) + nonassoc_g[2][1];
        srv_shard_destroy(sh);
    }
    assert_true(differs_naive);
}

/* The same with every chunk delivered twice, in many orders, over two clocks: a copy of a
 * chunk already taken is a repeat, one ahead of its turn (after a gap, or of a clock not yet
 * assembled) is early and sent again later, as a worker resends what was not acknowledged.
 * The weights are those of the clean order, bit for bit. */
static void test_bsp_duplicates_any_order(void **state)
{
    (void)state;
    enum { W = 3, C = 2, J = 2, CHUNK = 2, EVENTS = W * C * J };
    float g[C][W][4];
    for (int c = 0; c < C; c++)
        for (int k = 0; k < W; k++)
            for (int i = 0; i < 4; i++)
                g[c][k][i] = nonassoc_g[k][i] * (c == 0 ? 1.0f : -0.37f);

    srv_shard *ref = make(0, 4, CFG_CONS_BSP, 0, W);
    init_all(ref, nonassoc_w0);
    for (int c = 0; c < C; c++)
        for (int k = 0; k < W; k++)
            for (int j = 0; j < J; j++)
                push_ok(ref, k, c, (uint64_t)(j * CHUNK), g[c][k] + j * CHUNK, CHUNK);
    srv_shard_stats rst;
    srv_shard_get_stats(ref, &rst);
    assert_int_equal(rst.updates, C);

    uint32_t seed = 12345u;
    for (int trial = 0; trial < 40; trial++) {
        /* Events are (clock, worker, chunk) codes, each twice; the queue grows as early
         * ones are sent again. */
        int queue[4096], head = 0, tail = 0;
        for (int e = 0; e < 2 * EVENTS; e++)
            queue[tail++] = e % EVENTS;
        for (int i = tail - 1; i > 0; i--) { /* Fisher-Yates with an LCG */
            seed = seed * 1664525u + 1013904223u;
            int r = (int)((seed >> 8) % (uint32_t)(i + 1)), t = queue[i];
            queue[i] = queue[r];
            queue[r] = t;
        }
        srv_shard *sh = make(0, 4, CFG_CONS_BSP, 0, W);
        init_all(sh, nonassoc_w0);
        int applied[EVENTS] = {0}, napplied = 0, nrepeat = 0, nearly = 0;
        while (head < tail) {
            int e = queue[head++];
            int c = e / (W * J), k = e / J % W, j = e % J;
            srv_outcome out = push_out(sh, k, c, (uint64_t)(j * CHUNK), g[c][k] + j * CHUNK, CHUNK);
            if (out == SRV_APPLIED) {
                assert_int_equal(applied[e], 0);
                applied[e] = 1;
                napplied++;
            } else if (out == SRV_REPEAT) {
                assert_int_equal(applied[e], 1); /* only what was taken is a repeat */
                nrepeat++;
            } else {
                assert_int_equal(applied[e], 0);
                nearly++;
                assert_true(tail < 4096);
                queue[tail++] = e;
            }
        }
        assert_int_equal(napplied, EVENTS);
        assert_memory_equal(srv_shard_weights(sh, 0), srv_shard_weights(ref, 0), 4 * sizeof(float));
        srv_shard_stats st;
        srv_shard_get_stats(sh, &st);
        assert_int_equal(st.pushes, rst.pushes);
        assert_int_equal(st.updates, C);
        assert_int_equal(st.repeats, nrepeat);
        assert_int_equal(st.early, nearly);
        assert_int_equal(nrepeat, EVENTS); /* each chunk's other copy, in the end */
        for (int k = 0; k < W; k++)
            assert_int_equal(srv_shard_worker_clock(sh, k), C);
        assert_int_equal(srv_shard_clock(sh), C);
        srv_shard_destroy(sh);
    }
    srv_shard_destroy(ref);
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

    refused(sh, 3, 2, 0, 0, c, 2, "push from worker 2, which is no longer in the job", 0);
    expect_weights(sh, w1);
    srv_shard_worker_done(sh, 2); /* a repeated DONE changes nothing */
    assert_int_equal(srv_shard_live_workers(sh), 2);

    /* Clock 1: worker 1 pushes, then finishes; its gradient still counts. */
    push_ok(sh, 1, 1, 0, c, 2);
    srv_shard_worker_done(sh, 1);
    expect_weights(sh, w1);
    /* That push again after its DONE (a copy held up behind DONE): a repeat, not refused. */
    not_taken(sh, 3, 1, 1, 0, c, 2, SRV_REPEAT);
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
    assert_int_equal(st.lost_workers, 0);
    srv_shard_destroy(sh);
}

/* A worker lost halfway through a two-chunk step leaves nothing of it in the mean, and
 * pulls that waited only on it are answered. */
static void test_bsp_worker_lost(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 4, CFG_CONS_BSP, 0, 3);
    const float w0[4] = {1, 2, 3, 4};
    init_all(sh, w0);
    const float g0[4] = {2, 4, -2, 0}, g2[4] = {0, 2, 6, 4}, big[4] = {100, 100, 100, 100};
    srv_shard_stats st;

    /* Clock 0: worker 0 whole, workers 1 and 2 half. */
    push_ok(sh, 0, 0, 0, g0, 2);
    push_ok(sh, 0, 0, 2, g0 + 2, 2);
    push_ok(sh, 1, 0, 0, big, 2);
    push_ok(sh, 2, 0, 0, g2, 2);
    srv_shard_worker_lost(sh, 1);
    assert_int_equal(srv_shard_live_workers(sh), 2);
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.lost_workers, 1);
    assert_int_equal(st.updates, 0); /* worker 2 still owes clock 0 */
    expect_weights(sh, w0);
    assert_false(srv_shard_pull_ready(sh, 0, 1, 0));
    push_ok(sh, 2, 0, 2, g2 + 2, 2);
    /* mean of workers 0 and 2: (1, 3, 2, 2); worker 1's half step is not in it */
    const float w1[4] = {0.5f, 0.5f, 2, 3};
    expect_weights(sh, w1);
    assert_true(srv_shard_pull_ready(sh, 0, 1, 0));
    assert_true(srv_shard_pull_ready(sh, 2, 1, 0));
    assert_false(srv_shard_pull_ready(sh, 0, 2, 0));

    /* A lost worker's pushes are refused until it rejoins; a second LOST changes nothing. */
    refused(sh, 3, 1, 0, 2, big, 2, "push from worker 1, which is no longer in the job", 0);
    refused(sh, 3, 1, 1, 0, big, 4, "no longer in the job", 0);
    snapshot before, after;
    take(sh, 3, &before);
    srv_shard_worker_lost(sh, 1);
    take(sh, 3, &after);
    assert_memory_equal(&before, &after, sizeof before);

    /* Clock 1: worker 0 whole, worker 2 half, then lost: the pull of clock 2 waited only on
     * worker 2, and the mean is worker 0's gradient alone. */
    const float h0[4] = {2, 2, 2, 2};
    push_ok(sh, 0, 1, 0, h0, 2);
    push_ok(sh, 0, 1, 2, h0 + 2, 2);
    push_ok(sh, 2, 1, 0, big, 2);
    assert_false(srv_shard_pull_ready(sh, 0, 2, 0));
    expect_weights(sh, w1);
    srv_shard_worker_lost(sh, 2);
    assert_int_equal(srv_shard_live_workers(sh), 1);
    assert_true(srv_shard_pull_ready(sh, 0, 2, 0));
    const float w2[4] = {-0.5f, -0.5f, 1, 2};
    expect_weights(sh, w2);
    assert_int_equal(srv_shard_clock(sh), 2);

    /* Worker 0 goes on alone. */
    push_ok(sh, 0, 2, 0, h0, 2);
    push_ok(sh, 0, 2, 2, h0 + 2, 2);
    assert_true(srv_shard_pull_ready(sh, 0, 3, 0));
    const float w3[4] = {-1.5f, -1.5f, 0, 1};
    expect_weights(sh, w3);
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 3);
    assert_int_equal(st.lost_workers, 2);
    assert_false(srv_shard_all_done(sh));
    srv_shard_worker_done(sh, 0);
    assert_true(srv_shard_all_done(sh));
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

/* A lost worker no longer holds back the staleness bound. */
static void test_ssp_worker_lost(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 2, CFG_CONS_SSP, 1, 3);
    const float w0[2] = {0, 0}, g[2] = {1, -2};
    init_all(sh, w0);
    for (int64_t c = 0; c < 2; c++) {
        push_ok(sh, 0, c, 0, g, 2);
        push_ok(sh, 1, c, 0, g, 2);
    }
    /* Workers 0 and 1 at clock 2, worker 2 at 0: 2 - 0 > 1. */
    assert_false(srv_shard_pull_ready(sh, 0, 2, 0));
    assert_false(srv_shard_pull_ready(sh, 1, 2, 0));
    assert_int_equal(srv_shard_clock_gap(sh, 0), 2);
    srv_shard_worker_lost(sh, 2);
    assert_int_equal(srv_shard_live_workers(sh), 2);
    assert_true(srv_shard_pull_ready(sh, 0, 2, 0));
    assert_true(srv_shard_pull_ready(sh, 1, 3, 0)); /* 3 - 2 <= 1 */
    assert_false(srv_shard_pull_ready(sh, 1, 4, 0));
    assert_int_equal(srv_shard_clock_gap(sh, 0), 0);
    const float w4[2] = {-4 * LR, 8 * LR};
    expect_weights(sh, w4);
    refused(sh, 3, 2, 0, 0, g, 2, "push from worker 2, which is no longer in the job", 0);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.lost_workers, 1);
    assert_int_equal(st.updates, 4);
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

/* ---- refused, repeated and early pushes ------------------------------------------------ */

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

    not_taken(sh, 3, 0, 1, 8, g, 8, SRV_EARLY); /* clock 1 while worker 0 is at 0 */
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
    refused(sh, 3, 0, 0, 8, inf_g, 8, "gradient 15 is -inf (rejected", 1);

    /* Chunks: [8, 12) accepted; the same chunk again and an overlapping one are repeats,
     * one that skips ahead is early; [12, 16) completes the step. */
    push_ok(sh, 0, 0, 8, g, 4);
    not_taken(sh, 3, 0, 0, 8, g, 4, SRV_REPEAT);
    not_taken(sh, 3, 0, 0, 10, g, 4, SRV_REPEAT);
    not_taken(sh, 3, 0, 0, 14, g, 2, SRV_EARLY);
    refused(sh, 3, 0, 0, 12, g, 8, "outside this server's shard", 0); /* would exceed it */
    push_ok(sh, 0, 0, 12, g + 4, 4);
    assert_int_equal(srv_shard_worker_clock(sh, 0), 1);

    /* Worker 0 completed clock 0: its clock 1 waits while clock 0 is assembled, and its
     * clock 0 again is a repeat. */
    not_taken(sh, 3, 0, 1, 8, g, 8, SRV_EARLY);
    not_taken(sh, 3, 0, 0, 8, g, 8, SRV_REPEAT);
    not_taken(sh, 3, 0, 0, 12, g, 4, SRV_REPEAT);

    srv_shard_worker_done(sh, 2);
    refused(sh, 3, 2, 0, 8, g, 8, "push from worker 2, which is no longer in the job", 0);

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
    assert_int_equal(st.repeats, 4);
    assert_int_equal(st.early, 3);
    srv_shard_destroy(sh);
}

/* ssp/asp apply a push at once, so a refused or repeated one must not even tick the
 * optimizer. */
static void test_push_validation_async(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 4, CFG_CONS_ASP, 0, 2);
    const float w0[4] = {1, 1, 1, 1};
    init_all(sh, w0);
    float g[4] = {1, 1, NAN, 1};
    refused(sh, 2, 1, 0, 0, g, 4, "gradient 2 is", 1);
    g[2] = 1;
    not_taken(sh, 2, 1, 3, 0, g, 4, SRV_EARLY);
    push_ok(sh, 1, 0, 0, g, 2);
    not_taken(sh, 2, 1, 0, 0, g, 2, SRV_REPEAT);
    push_ok(sh, 1, 0, 2, g, 2);
    not_taken(sh, 2, 1, 0, 2, g, 2, SRV_REPEAT);
    not_taken(sh, 2, 1, 0, 0, g, 4, SRV_REPEAT);
    const float want[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    expect_weights(sh, want);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 1);
    assert_int_equal(st.rejected_nonfinite, 1);
    srv_shard_destroy(sh);
}

/* Chunks repeated, after a gap, of an earlier or a later clock, against a second shard fed
 * the same steps cleanly: after each worker's step the weights are bit-identical. */
static void dedupe_against_clean(cfg_consistency cons)
{
    enum { W = 2, C = 3, J = 3, CHUNK = 2, LEN = J * CHUNK };
    srv_shard *ref = make(0, LEN, cons, 1, W), *sh = make(0, LEN, cons, 1, W);
    float w0[LEN];
    for (int i = 0; i < LEN; i++)
        w0[i] = 0.3f * (float)i - 0.77f;
    init_all(ref, w0);
    init_all(sh, w0);
    uint64_t nrepeat = 0, nearly = 0;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < W; k++) {
            float g[LEN], stale[LEN];
            for (int i = 0; i < LEN; i++) {
                g[i] = 0.1f * (float)((c * 7 + k * 3 + i * 5) % 11) - 0.43f;
                stale[i] = 1000.0f; /* must never be taken */
            }
            for (int j = 0; j < J; j++)
                push_ok(ref, k, c, (uint64_t)(j * CHUNK), g + j * CHUNK, CHUNK);

            if (c > 0) { /* the previous clock again */
                not_taken(sh, W, k, c - 1, 0, stale, CHUNK, SRV_REPEAT);
                not_taken(sh, W, k, c - 1, 2 * CHUNK, stale, CHUNK, SRV_REPEAT);
                nrepeat += 2;
            }
            not_taken(sh, W, k, c, CHUNK, g + CHUNK, CHUNK, SRV_EARLY); /* first lost */
            push_ok(sh, k, c, 0, g, CHUNK);
            not_taken(sh, W, k, c, 0, stale, CHUNK, SRV_REPEAT);
            not_taken(sh, W, k, c, 2 * CHUNK, g + 2 * CHUNK, CHUNK, SRV_EARLY); /* gap */
            not_taken(sh, W, k, c + 1, 0, g, CHUNK, SRV_EARLY);                 /* a later clock */
            nrepeat += 1;
            nearly += 3;
            push_ok(sh, k, c, CHUNK, g + CHUNK, CHUNK);
            not_taken(sh, W, k, c, CHUNK, stale + CHUNK, CHUNK, SRV_REPEAT);
            push_ok(sh, k, c, 2 * CHUNK, g + 2 * CHUNK, CHUNK);
            not_taken(sh, W, k, c, 2 * CHUNK, stale, CHUNK, SRV_REPEAT);
            not_taken(sh, W, k, c, 0, stale, LEN, SRV_REPEAT);
            nrepeat += 3;
            if (cons == CFG_CONS_BSP && k == 0) {
                /* bsp: worker 0 is at clock c + 1, but clock c is still assembled. */
                not_taken(sh, W, k, c + 1, 0, g, CHUNK, SRV_EARLY);
                nearly++;
            }
            assert_memory_equal(srv_shard_weights(sh, 0), srv_shard_weights(ref, 0),
                                sizeof(float) * LEN);
            for (int i = 0; i < W; i++)
                assert_int_equal(srv_shard_worker_clock(sh, i), srv_shard_worker_clock(ref, i));
            assert_int_equal(srv_shard_clock(sh), srv_shard_clock(ref));
            assert_int_equal(srv_shard_pull_ready(sh, 0, c + 1, 0),
                             srv_shard_pull_ready(ref, 0, c + 1, 0));
        }
    srv_shard_stats st, rst;
    srv_shard_get_stats(sh, &st);
    srv_shard_get_stats(ref, &rst);
    assert_int_equal(st.pushes, rst.pushes);
    assert_int_equal(st.pushes, W * C * J);
    assert_int_equal(st.updates, rst.updates);
    assert_int_equal(st.updates, cons == CFG_CONS_BSP ? C : W * C);
    assert_int_equal(st.repeats, nrepeat);
    assert_int_equal(st.early, nearly);
    assert_int_equal(rst.repeats, 0);
    assert_int_equal(rst.early, 0);
    srv_shard_destroy(ref);
    srv_shard_destroy(sh);
}

static void test_push_dedupe_bsp(void **state)
{
    (void)state;
    dedupe_against_clean(CFG_CONS_BSP);
}

static void test_push_dedupe_ssp(void **state)
{
    (void)state;
    dedupe_against_clean(CFG_CONS_SSP);
}

static void test_create_bad_sizes(void **state)
{
    (void)state;
    opt_config oc;
    opt_config_default(&oc, OPT_SGD);
    pst_err err = {0};
    assert_null(srv_shard_create(0, (uint64_t)1 << 41, &oc, CFG_CONS_BSP, 0, 1, &err));
    assert_int_equal(err.code, PST_ERR_ARG);
    assert_null(srv_shard_create(0, 4, &oc, CFG_CONS_BSP, 0, 0, &err));
    assert_int_equal(err.code, PST_ERR_ARG);
}

/* A server of a sparse model with fewer dense floats than servers: an empty range
 * [base, base), initialised from the start; each worker's empty push is its whole step,
 * so the clocks (bsp's barrier, ssp's bound, checkpoints) move as on any shard. */
static void test_empty_shard(void **state)
{
    (void)state;
    const cfg_consistency cons[2] = {CFG_CONS_BSP, CFG_CONS_SSP};
    for (int c = 0; c < 2; c++) {
        srv_shard *sh = make(1, 0, cons[c], 1, 2);
        pst_err err = {0};
        srv_outcome out;
        const float none[1] = {0};
        assert_int_equal(srv_shard_len(sh), 0);
        assert_true(srv_shard_initialized(sh));
        assert_int_equal(srv_shard_check_range(sh, 1, 0, &err), PST_OK);
        assert_int_equal(srv_shard_check_range(sh, 0, 0, &err), PST_ERR_PEER);
        assert_int_equal(srv_shard_check_range(sh, 1, 1, &err), PST_ERR_PEER);
        for (int64_t t = 0; t < 3; t++) {
            assert_int_equal(srv_shard_push(sh, 0, t, 1, none, 0, &out, &err), PST_OK);
            assert_int_equal(out, SRV_APPLIED);
            /* bsp: clock t + 1 waits for worker 1's step t; ssp (s = 1) allows it. */
            assert_int_equal(srv_shard_pull_ready(sh, 0, t + 1, 0), cons[c] != CFG_CONS_BSP);
            assert_int_equal(srv_shard_push(sh, 1, t, 1, none, 0, &out, &err), PST_OK);
            assert_int_equal(srv_shard_pull_ready(sh, 0, t + 1, 0), 1);
            assert_true(srv_shard_applied(sh, 0, t + 1));
            /* The same step again is a repeat. */
            assert_int_equal(srv_shard_push(sh, 1, t, 1, none, 0, &out, &err), PST_OK);
            assert_int_equal(out, SRV_REPEAT);
        }
        assert_int_equal(srv_shard_clock(sh), 3);
        assert_int_equal(srv_shard_worker_clock(sh, 1), 3);
        srv_shard_destroy(sh);
    }
    /* Restored from a checkpoint of an empty shard. */
    srv_shard *sh = make(0, 0, CFG_CONS_BSP, 0, 2);
    pst_err err = {0};
    const float none[1] = {0};
    assert_int_equal(srv_shard_restore(sh, none, 5, &err), PST_OK);
    assert_int_equal(srv_shard_clock(sh), 5);
    srv_shard_destroy(sh);
}

/* ---- lost workers rejoining ------------------------------------------------------------ */

/* bsp: a new incarnation starts at the clock being assembled, or the next one when its
 * previous incarnation's whole step is already in the mean. */
static void test_rejoin_bsp(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 4, CFG_CONS_BSP, 0, 3);
    const float w0[4] = {8, 8, 8, 8};
    init_all(sh, w0);
    const float a[3][4] = {{2, 0, 2, 0}, {0, 2, 0, 2}, {4, 4, -2, -2}};
    const float twos[4] = {2, 2, 2, 2}, fours[4] = {4, 4, 4, 4}, zeros[4] = {0, 0, 0, 0};
    const float sixes[4] = {6, 6, 6, 6}, threes[4] = {3, 3, 3, 3};
    const float big[4] = {90, 90, 90, 90};
    srv_shard_stats st;

    /* Clock 0: sum (6, 6, 0, 0), mean (2, 2, 0, 0). */
    for (int k = 0; k < 3; k++)
        push_ok(sh, k, 0, 0, a[k], 4);
    const float w1[4] = {7, 7, 8, 8};
    expect_weights(sh, w1);

    /* Clock 1: worker 1 is lost after half its step and rejoins at clock 1. */
    push_ok(sh, 0, 1, 0, twos, 2);
    push_ok(sh, 0, 1, 2, twos + 2, 2);
    push_ok(sh, 1, 1, 0, big, 2);
    srv_shard_worker_lost(sh, 1);
    assert_int_equal(srv_shard_worker_rejoin(sh, 1), 1);
    assert_int_equal(srv_shard_worker_clock(sh, 1), 1);
    assert_int_equal(srv_shard_live_workers(sh), 3);
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.rejoins, 1);
    assert_int_equal(st.lost_workers, 1);
    assert_false(srv_shard_pull_ready(sh, 0, 2, 0));
    not_taken(sh, 3, 1, 0, 0, big, 2, SRV_REPEAT); /* an earlier clock */
    not_taken(sh, 3, 1, 1, 2, big, 2, SRV_EARLY);  /* the step starts afresh */
    push_ok(sh, 1, 1, 0, fours, 2);
    push_ok(sh, 1, 1, 2, fours + 2, 2);
    assert_false(srv_shard_pull_ready(sh, 0, 2, 0)); /* worker 2 owes clock 1 */
    push_ok(sh, 2, 1, 0, zeros, 4);
    /* mean (2 + 4 + 0) / 3 = 2: the old incarnation's 90s are not in it */
    const float w2[4] = {6, 6, 7, 7};
    expect_weights(sh, w2);
    assert_true(srv_shard_pull_ready(sh, 1, 2, 0));

    /* Clock 2: worker 1 pushes its whole step, is lost, and rejoins at clock 3; its step
     * stays in the mean. */
    push_ok(sh, 1, 2, 0, sixes, 4);
    srv_shard_worker_lost(sh, 1);
    expect_weights(sh, w2);
    assert_int_equal(srv_shard_worker_rejoin(sh, 1), 3);
    assert_int_equal(srv_shard_worker_clock(sh, 1), 3);
    not_taken(sh, 3, 1, 2, 0, big, 4, SRV_REPEAT);
    not_taken(sh, 3, 1, 3, 0, twos, 4, SRV_EARLY); /* clock 2 is still assembled */
    assert_false(srv_shard_pull_ready(sh, 0, 3, 0));
    push_ok(sh, 0, 2, 0, zeros, 4);
    push_ok(sh, 2, 2, 0, threes, 4);
    /* mean (0 + 6 + 3) / 3 = 3 */
    const float w3[4] = {4.5f, 4.5f, 5.5f, 5.5f};
    expect_weights(sh, w3);
    assert_true(srv_shard_pull_ready(sh, 1, 3, 0));
    push_ok(sh, 1, 3, 0, twos, 4);
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.rejoins, 2);
    assert_int_equal(st.lost_workers, 2);
    assert_int_equal(st.updates, 3);
    srv_shard_destroy(sh);
}

/* bsp with one live worker applies its step as it arrives, so a worker rejoining while that
 * step is halfway in starts at the next clock. */
static void test_rejoin_bsp_lone_worker(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 4, CFG_CONS_BSP, 0, 2);
    const float w0[4] = {0, 0, 0, 0};
    init_all(sh, w0);
    const float twos[4] = {2, 2, 2, 2}, fours[4] = {4, 4, 4, 4}, zeros[4] = {0, 0, 0, 0};
    srv_shard_worker_lost(sh, 1);
    push_ok(sh, 0, 0, 0, twos, 2);
    assert_int_equal(srv_shard_worker_rejoin(sh, 1), 1);
    assert_int_equal(srv_shard_live_workers(sh), 2);
    not_taken(sh, 2, 1, 0, 0, fours, 4, SRV_REPEAT);
    not_taken(sh, 2, 1, 1, 0, fours, 4, SRV_EARLY);
    assert_false(srv_shard_pull_ready(sh, 1, 1, 0));
    push_ok(sh, 0, 0, 2, twos + 2, 2);
    const float w1[4] = {-1, -1, -1, -1};
    expect_weights(sh, w1);
    assert_true(srv_shard_pull_ready(sh, 0, 1, 0));
    assert_true(srv_shard_pull_ready(sh, 1, 1, 0));
    /* Clock 1 with both: mean (4 + 0) / 2 = 2 */
    push_ok(sh, 1, 1, 0, fours, 4);
    expect_weights(sh, w1);
    push_ok(sh, 0, 1, 0, zeros, 4);
    const float w2[4] = {-2, -2, -2, -2};
    expect_weights(sh, w2);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 2);
    srv_shard_destroy(sh);
}

/* bsp, a lone worker's clock is applied chunk by chunk: lost halfway, the part it pushed
 * stands as that clock's update, so its new incarnation starts at the next clock and the
 * chunks of the old one it sends again are repeats, not applied a second time. */
static void test_rejoin_bsp_lone_worker_lost_midstep(void **state)
{
    (void)state;
    const float w0[4] = {0, 0, 0, 0}, twos[4] = {2, 2, 2, 2}, fours[4] = {4, 4, 4, 4};
    for (int nworkers = 1; nworkers <= 2; nworkers++) {
        srv_shard *sh = make(0, 4, CFG_CONS_BSP, 0, nworkers);
        init_all(sh, w0);
        if (nworkers == 2)
            srv_shard_worker_done(sh, 1); /* worker 0 trains alone */
        push_ok(sh, 0, 0, 0, twos, 2);
        const float w1[4] = {-1, -1, 0, 0};
        expect_weights(sh, w1);
        srv_shard_worker_lost(sh, 0);
        assert_int_equal(srv_shard_clock(sh), 1);
        assert_true(srv_shard_applied(sh, 0, 1));
        assert_int_equal(srv_shard_worker_rejoin(sh, 0), 1);
        assert_int_equal(srv_shard_worker_clock(sh, 0), 1);
        not_taken(sh, nworkers, 0, 0, 0, twos, 2, SRV_REPEAT);
        not_taken(sh, nworkers, 0, 0, 2, twos + 2, 2, SRV_REPEAT);
        not_taken(sh, nworkers, 0, 0, 0, twos, 4, SRV_REPEAT);
        expect_weights(sh, w1);
        assert_true(srv_shard_pull_ready(sh, 0, 1, 0));
        /* Clock 1 as usual. */
        push_ok(sh, 0, 1, 0, fours, 2);
        push_ok(sh, 0, 1, 2, fours + 2, 2);
        const float w2[4] = {-3, -3, -2, -2};
        expect_weights(sh, w2);
        srv_shard_stats st;
        srv_shard_get_stats(sh, &st);
        assert_int_equal(st.updates, 2);
        assert_int_equal(srv_shard_clock(sh), 2);
        assert_true(srv_shard_pull_ready(sh, 0, 2, 0));
        srv_shard_destroy(sh);
    }
}

/* ssp: a new incarnation starts at the slowest live worker's clock. */
static void test_rejoin_ssp(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 2, CFG_CONS_SSP, 10, 3);
    const float w0[2] = {0, 0}, g[2] = {1, 1}, big[2] = {50, 50};
    init_all(sh, w0);
    for (int64_t c = 0; c < 3; c++)
        push_ok(sh, 0, c, 0, g, 2);
    for (int64_t c = 0; c < 2; c++)
        push_ok(sh, 1, c, 0, g, 2);
    push_ok(sh, 2, 0, 0, g, 2);
    srv_shard_worker_lost(sh, 2);
    const float w6[2] = {-3, -3};
    expect_weights(sh, w6);
    assert_int_equal(srv_shard_worker_rejoin(sh, 2), 2); /* worker 1's clock */
    assert_int_equal(srv_shard_worker_clock(sh, 2), 2);
    assert_int_equal(srv_shard_live_workers(sh), 3);
    not_taken(sh, 3, 2, 1, 0, big, 2, SRV_REPEAT);
    not_taken(sh, 3, 2, 0, 0, big, 2, SRV_REPEAT);
    not_taken(sh, 3, 2, 3, 0, big, 2, SRV_EARLY);
    push_ok(sh, 2, 2, 0, g, 2);
    const float w7[2] = {-3.5f, -3.5f};
    expect_weights(sh, w7);
    assert_int_equal(srv_shard_worker_clock(sh, 2), 3);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.updates, 7);
    assert_int_equal(st.rejoins, 1);
    assert_int_equal(st.lost_workers, 1);
    srv_shard_destroy(sh);
}

/* ssp/asp: a worker lost while ahead of the slowest live one rejoins at its own clock: its
 * steps up to there are in the weights, and sent again they are repeats. */
static void test_rejoin_ssp_ahead(void **state)
{
    (void)state;
    const cfg_consistency cons[2] = {CFG_CONS_SSP, CFG_CONS_ASP};
    const float w0[2] = {0, 0}, g[2] = {1, 1}, big[2] = {50, 50};
    for (int j = 0; j < 2; j++) {
        srv_shard *sh = make(0, 2, cons[j], 10, 2);
        init_all(sh, w0);
        for (int64_t c = 0; c < 3; c++)
            push_ok(sh, 0, c, 0, g, 2);
        push_ok(sh, 1, 0, 0, g, 2);
        srv_shard_worker_lost(sh, 0);
        const float w4[2] = {-2, -2};
        expect_weights(sh, w4);
        assert_int_equal(srv_shard_worker_rejoin(sh, 0), 3); /* not worker 1's clock, 1 */
        assert_int_equal(srv_shard_worker_clock(sh, 0), 3);
        for (int64_t c = 0; c < 3; c++)
            not_taken(sh, 2, 0, c, 0, big, 2, SRV_REPEAT);
        not_taken(sh, 2, 0, 4, 0, big, 2, SRV_EARLY);
        expect_weights(sh, w4);
        push_ok(sh, 0, 3, 0, g, 2);
        const float w5[2] = {-2.5f, -2.5f};
        expect_weights(sh, w5);
        assert_int_equal(srv_shard_worker_clock(sh, 0), 4);
        assert_int_equal(srv_shard_clock_gap(sh, 0), 3);
        srv_shard_stats st;
        srv_shard_get_stats(sh, &st);
        assert_int_equal(st.updates, 5);
        srv_shard_destroy(sh);
    }
}

/* ---- gradients with NaN/Inf ------------------------------------------------------------ */

static void test_nonfinite_reject(void **state)
{
    (void)state;
    srv_shard *sh = make(4, 4, CFG_CONS_SSP, 1, 1);
    srv_shard_set_nonfinite(sh, CFG_NONFINITE_REJECT);
    const float w0[4] = {1, 1, 1, 1};
    init_all(sh, w0);
    const float g[4] = {2, 2, 2, 2}, bad[2] = {2, INFINITY};
    push_ok(sh, 0, 0, 4, g, 2);
    refused(sh, 1, 0, 0, 6, bad, 2, "push from worker 0: gradient 7 is inf (rejected", 1);
    refused(sh, 1, 0, 0, 6, bad, 2, "gradient 7 is", 1); /* each refusal counts */
    push_ok(sh, 0, 0, 6, g + 2, 2);
    const float w1[4] = {0, 0, 0, 0};
    expect_weights(sh, w1);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.rejected_nonfinite, 2);
    assert_int_equal(st.updates, 1);
    assert_int_equal(srv_shard_worker_clock(sh, 0), 1);
    srv_shard_destroy(sh);
}

/* bsp, skip: a step with a NaN/Inf chunk is taken (the worker's clock moves on) but leaves
 * the mean, which is over the other worker's gradient alone. */
static void test_nonfinite_skip_bsp(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 4, CFG_CONS_BSP, 0, 2);
    srv_shard_set_nonfinite(sh, CFG_NONFINITE_SKIP);
    const float w0[4] = {1, 1, 1, 1};
    init_all(sh, w0);
    const float ok[2] = {2, 2}, bad[2] = {INFINITY, 2};
    const float g1[4] = {4, 0, 2, -2}, twos[4] = {2, 2, 2, 2}, zeros[4] = {0, 0, 0, 0};
    push_ok(sh, 0, 0, 0, ok, 2);
    push_ok(sh, 0, 0, 2, bad, 2); /* taken, not applied */
    assert_int_equal(srv_shard_worker_clock(sh, 0), 1);
    not_taken(sh, 2, 0, 0, 2, bad, 2, SRV_REPEAT); /* counted once */
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.rejected_nonfinite, 1);
    assert_false(srv_shard_pull_ready(sh, 0, 1, 0));
    push_ok(sh, 1, 0, 0, g1, 4);
    /* w - 0.5 * g1 */
    const float w1[4] = {-1, 1, 0, 2};
    expect_weights(sh, w1);
    assert_true(srv_shard_pull_ready(sh, 0, 1, 0));
    /* The next clock counts both again: mean (2 + 0) / 2 = 1. */
    push_ok(sh, 0, 1, 0, twos, 4);
    push_ok(sh, 1, 1, 0, zeros, 4);
    const float w2[4] = {-1.5f, 0.5f, -0.5f, 1.5f};
    expect_weights(sh, w2);
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.rejected_nonfinite, 1);
    assert_int_equal(st.updates, 2);
    srv_shard_destroy(sh);
}

/* ssp, skip: the chunk with a NaN/Inf changes nothing; the step still counts as pushed. */
static void test_nonfinite_skip_ssp(void **state)
{
    (void)state;
    srv_shard *sh = make(0, 4, CFG_CONS_SSP, 1, 2);
    srv_shard_set_nonfinite(sh, CFG_NONFINITE_SKIP);
    const float w0[4] = {1, 1, 1, 1};
    init_all(sh, w0);
    const float ok[2] = {2, 2}, bad[2] = {NAN, 4};
    push_ok(sh, 0, 0, 0, ok, 2);
    const float w1[4] = {0, 0, 1, 1};
    expect_weights(sh, w1);
    push_ok(sh, 0, 0, 2, bad, 2);
    expect_weights(sh, w1);
    assert_int_equal(srv_shard_worker_clock(sh, 0), 1);
    not_taken(sh, 2, 0, 0, 2, bad, 2, SRV_REPEAT);
    /* A whole step of one chunk with an Inf: nothing of it. */
    const float bad4[4] = {1, 1, -INFINITY, 1};
    push_ok(sh, 1, 0, 0, bad4, 4);
    expect_weights(sh, w1);
    assert_int_equal(srv_shard_worker_clock(sh, 1), 1);
    srv_shard_stats st;
    srv_shard_get_stats(sh, &st);
    assert_int_equal(st.rejected_nonfinite, 2);
    /* A clean step afterwards is applied as usual. */
    const float twos[4] = {2, 2, 2, 2};
    push_ok(sh, 1, 1, 0, twos, 4);
    const float w2[4] = {-1, -1, 0, 0};
    expect_weights(sh, w2);
    srv_shard_destroy(sh);
}

/* bsp, skip: a clock whose every counted step was skipped -- both workers' steps have a NaN,
 * or worker 0's has and worker 1 is lost halfway through its own -- passes with no update,
 * instead of holding the pulls and pushes of the next clock back for good. */
static void test_nonfinite_skip_bsp_all_skipped(void **state)
{
    (void)state;
    const float w0[4] = {1, 1, 1, 1}, ok[2] = {2, 2}, bad[4] = {NAN, 2, 2, 2};
    const float big[2] = {90, 90}, twos[4] = {2, 2, 2, 2}, sixes[4] = {6, 6, 6, 6};
    for (int lost = 0; lost < 2; lost++) {
        srv_shard *sh = make(0, 4, CFG_CONS_BSP, 0, 2);
        srv_shard_set_nonfinite(sh, CFG_NONFINITE_SKIP);
        init_all(sh, w0);
        push_ok(sh, 0, 0, 0, ok, 2);
        push_ok(sh, 0, 0, 2, bad, 2); /* skipped */
        assert_false(srv_shard_pull_ready(sh, 0, 1, 0));
        if (lost) {
            push_ok(sh, 1, 0, 0, big, 2);
            srv_shard_worker_lost(sh, 1);
        } else {
            push_ok(sh, 1, 0, 0, bad, 4); /* skipped */
        }
        expect_weights(sh, w0);
        srv_shard_stats st;
        srv_shard_get_stats(sh, &st);
        assert_int_equal(st.updates, 0);
        assert_int_equal(st.rejected_nonfinite, lost ? 1 : 2);
        assert_int_equal(srv_shard_clock(sh), 1);
        assert_true(srv_shard_applied(sh, 0, 1));
        assert_true(srv_shard_pull_ready(sh, 0, 1, 0));
        assert_false(srv_shard_pull_ready(sh, 0, 2, 0));
        if (lost)
            assert_int_equal(srv_shard_worker_rejoin(sh, 1), 1);
        else
            assert_true(srv_shard_pull_ready(sh, 1, 1, 0));
        /* Clock 1 is assembled as usual: mean (6 + 2) / 2 = 4. */
        push_ok(sh, 1, 1, 0, sixes, 4);
        assert_false(srv_shard_pull_ready(sh, 1, 2, 0));
        push_ok(sh, 0, 1, 0, twos, 4);
        const float w1[4] = {-1, -1, -1, -1};
        expect_weights(sh, w1);
        srv_shard_get_stats(sh, &st);
        assert_int_equal(st.updates, 1);
        assert_int_equal(srv_shard_clock(sh), 2);
        assert_true(srv_shard_pull_ready(sh, 0, 2, 0));
        srv_shard_destroy(sh);
    }
}

static srv_shard *make_opt(const opt_config *oc, cfg_consistency cons, int nworkers)
{
    pst_err err = {0};
    srv_shard *sh = srv_shard_create(0, 4, oc, cons, 10, nworkers, &err);
    if (!sh)
        fail_msg("srv_shard_create: %s", err.msg);
    return sh;
}

/* ssp, asp and a lone bsp worker apply a step as it arrives, with one optimizer tick at its
 * first chunk, skipped (NaN/Inf) or not: the step counts as an update and its finite chunks
 * are applied with its own t. A 4-step warmup, lr (t + 1) / 4, shows a wrong t in the
 * weights; Adam, whose bias correction divides by 1 - beta^t, must find t >= 1. */
static void test_nonfinite_skip_first_chunk(void **state)
{
    (void)state;
    static const struct {
        cfg_consistency cons;
        int nworkers;
    } jobs[] = {{CFG_CONS_SSP, 2}, {CFG_CONS_ASP, 2}, {CFG_CONS_BSP, 1}};
    const float w0[4] = {0, 0, 0, 0}, bad[2] = {NAN, 1}, fours[4] = {4, 4, 4, 4};
    for (size_t j = 0; j < sizeof jobs / sizeof jobs[0]; j++)
        for (int adam = 0; adam < 2; adam++) {
            opt_config oc;
            opt_config_default(&oc, adam ? OPT_ADAM : OPT_SGD);
            oc.lr = adam ? 0.1f : 1.0f;
            oc.sched.warmup_steps = 4;
            srv_shard *sh = make_opt(&oc, jobs[j].cons, jobs[j].nworkers);
            srv_shard_set_nonfinite(sh, CFG_NONFINITE_SKIP);
            init_all(sh, w0);
            /* Steps 0 and 1: the first chunk skipped, the second applied. */
            for (int64_t c = 0; c < 2; c++) {
                push_ok(sh, 0, c, 0, bad, 2);
                push_ok(sh, 0, c, 2, fours, 2);
            }
            push_ok(sh, 0, 2, 0, fours, 4);
            srv_shard_stats st;
            srv_shard_get_stats(sh, &st);
            assert_int_equal(st.updates, 3);
            assert_int_equal(st.rejected_nonfinite, 2);
            assert_int_equal(opt_state_step(srv_shard_opt(sh)), 3);
            assert_int_equal(srv_shard_worker_clock(sh, 0), 3);
            const float *w = srv_shard_weights(sh, 0);
            if (!adam) {
                /* [0, 2) only at step 2 (lr 0.75); [2, 4) at lr 0.25, 0.5 and 0.75. */
                const float want[4] = {-3, -3, -6, -6};
                expect_weights(sh, want);
            } else {
                for (int i = 0; i < 4; i++)
                    assert_true(isfinite(w[i]) && w[i] < 0.0f);
            }
            srv_shard_destroy(sh);
        }
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
    if (srv_shard_set_groups(sh, offs, mults, NULL, 4, &err) != PST_OK)
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
    /* A chunk covering a frozen float is refused, wherever it lies; one past the next
     * trainable float waits; one already taken is a repeat. */
    refused(sh, 2, 0, 0, 10, g1, 3, "frozen", 0);
    not_taken(sh, 2, 0, 0, 15, g1, 3, SRV_EARLY);
    push_ok(sh, 0, 0, 10, g1, 2);
    refused(sh, 2, 0, 0, 12, g1, 3, "frozen", 0);
    not_taken(sh, 2, 0, 0, 10, g3, 2, SRV_REPEAT);
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
    assert_int_equal(srv_shard_set_groups(sh, offs, one, NULL, 1, &err), PST_ERR_STATE);
    srv_shard_destroy(sh);
}

/* ---- state groups (batchnorm's running statistics, ps/state.h) ------------------------ */

/* A 10-float model, one shard: [0, 4) trains, [4, 6) frozen, [6, 10) state. Adam with
 * decoupled weight decay, so an optimizer that touched the state would move it off the
 * workers' mean. Weights 0..9. */
static srv_shard *make_stateful(cfg_consistency cons, int nworkers)
{
    static const uint64_t offs[] = {0, 4, 6, 10};
    static const float mults[] = {1.0f, 0.0f, 0.0f};
    static const unsigned char st[] = {0, 0, 1};
    opt_config oc;
    opt_config_default(&oc, OPT_ADAMW);
    oc.lr = LR;
    oc.weight_decay = 0.5f;
    pst_err err = {0};
    srv_shard *sh =
        srv_shard_create(0, 10, &oc, cons, cons == CFG_CONS_SSP ? 1 : 0, nworkers, &err);
    if (!sh || srv_shard_set_groups(sh, offs, mults, st, 3, &err) != PST_OK)
        fail_msg("stateful shard: %s", err.msg);
    assert_int_equal(srv_shard_trainable(sh), 8); /* a step pushes the state too */
    float w[10];
    for (int i = 0; i < 10; i++)
        w[i] = (float)i;
    init_all(sh, w);
    return sh;
}

static void expect_state(const srv_shard *sh, float a, float b, float c, float d)
{
    const float *w = srv_shard_weights(sh, 0);
    const float want[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        if (w[6 + i] != want[i]) /* exactly: no optimizer arithmetic on them */
            fail_msg("state float %d is %g, expected %g", 6 + i, (double)w[6 + i], (double)want[i]);
    assert_true(w[4] == 4.0f && w[5] == 5.0f); /* frozen: untouched */
}

/* bsp, 2 workers: the state becomes the mean of the clock's two reports, exactly; the
 * trainable floats move by the optimizer; the frozen range is still refused. */
static void test_state_bsp_mean(void **state)
{
    (void)state;
    srv_shard *sh = make_stateful(CFG_CONS_BSP, 2);
    const float g[4] = {1, 1, 1, 1};
    const float v0[4] = {10, 20, 30, 40}, v1[4] = {20, 40, 60, 80};
    refused(sh, 2, 0, 0, 4, v0, 3, "frozen", 0);
    push_ok(sh, 0, 0, 0, g, 4);
    push_ok(sh, 0, 0, 6, v0, 4);
    assert_int_equal(srv_shard_worker_clock(sh, 0), 1);
    expect_state(sh, 6, 7, 8, 9); /* not before the clock is whole */
    push_ok(sh, 1, 0, 0, g, 4);
    push_ok(sh, 1, 0, 6, v1, 4);
    assert_true(srv_shard_pull_ready(sh, 0, 1, 0));
    expect_state(sh, 15, 30, 45, 60);
    const float *w = srv_shard_weights(sh, 0);
    for (int i = 0; i < 4; i++)
        assert_true(w[i] < (float)i); /* Adam moved them against the gradient */
    /* The next clock: the mean of the new reports, not a blend with the old. */
    const float v2[4] = {1, 2, 3, 4}, v3[4] = {3, 4, 5, 6};
    push_ok(sh, 1, 1, 0, g, 4);
    push_ok(sh, 1, 1, 6, v3, 4);
    push_ok(sh, 0, 1, 0, g, 4);
    push_ok(sh, 0, 1, 6, v2, 4);
    expect_state(sh, 2, 3, 4, 5);
    srv_shard_destroy(sh);
}

/* asp, 2 workers: each report replaces that worker's latest values; the state is the mean
 * over both workers (one yet to report counts the INIT values). A restore seeds again. */
static void test_state_asp_latest(void **state)
{
    (void)state;
    srv_shard *sh = make_stateful(CFG_CONS_ASP, 2);
    const float g[4] = {0, 0, 0, 0};
    const float v0[4] = {10, 21, 30, 41}, v1[4] = {2, 3, 6, 7}, z[4] = {0, 0, 0, 0};
    push_ok(sh, 0, 0, 0, g, 4);
    push_ok(sh, 0, 0, 6, v0, 4);
    expect_state(sh, 8, 14, 19, 25); /* (v0 + {6, 7, 8, 9}) / 2 */
    push_ok(sh, 1, 0, 0, g, 4);
    push_ok(sh, 1, 0, 6, v1, 4);
    expect_state(sh, 6, 12, 18, 24);
    push_ok(sh, 0, 1, 0, g, 4);
    push_ok(sh, 0, 1, 6, z, 4);
    expect_state(sh, 1, 1.5f, 3, 3.5f); /* worker 1's latest only */
    srv_shard_destroy(sh);

    /* A restored shard's first report averages with the restored values. */
    static const uint64_t offs[] = {0, 4, 6, 10};
    static const float mults[] = {1.0f, 0.0f, 0.0f};
    static const unsigned char st[] = {0, 0, 1};
    opt_config oc;
    opt_config_default(&oc, OPT_SGD);
    pst_err err = {0};
    sh = srv_shard_create(0, 10, &oc, CFG_CONS_ASP, 0, 2, &err);
    assert_non_null(sh);
    assert_int_equal(srv_shard_set_groups(sh, offs, mults, st, 3, &err), PST_OK);
    const float saved[10] = {0, 1, 2, 3, 4, 5, 2, 2, 2, 2};
    assert_int_equal(srv_shard_restore(sh, saved, 3, &err), PST_OK);
    push_ok(sh, 1, 3, 0, g, 4);
    push_ok(sh, 1, 3, 6, (const float[4]){4, 6, 8, 10}, 4);
    expect_state(sh, 3, 4, 5, 6);
    srv_shard_destroy(sh);
}

/* A state group must have multiplier 0. */
static void test_state_group_refused(void **state)
{
    (void)state;
    static const uint64_t offs[] = {0, 4, 10};
    static const float mults[] = {1.0f, 0.5f};
    static const unsigned char st[] = {0, 1};
    srv_shard *sh = make(0, 10, CFG_CONS_BSP, 0, 1);
    pst_err err = {0};
    assert_int_equal(srv_shard_set_groups(sh, offs, mults, st, 2, &err), PST_ERR_ARG);
    assert_non_null(strstr(err.msg, "state group"));
    srv_shard_destroy(sh);
}

/* A worker lost halfway through a step whose chunks jump over a frozen range. */
static void test_groups_bsp_worker_lost(void **state)
{
    (void)state;
    srv_shard *sh = make_grouped(CFG_CONS_BSP, 2);
    float g1[5] = {1, 1, 1, 1, 1}, g2[5] = {2, 2, 2, 2, 2}, big[5] = {77, 77, 77, 77, 77};
    push_ok(sh, 1, 0, 10, big, 2);
    push_ok(sh, 0, 0, 10, g2, 2);
    push_ok(sh, 0, 0, 15, g2, 3);
    assert_false(srv_shard_pull_ready(sh, 0, 1, 0));
    srv_shard_worker_lost(sh, 1);
    assert_true(srv_shard_pull_ready(sh, 0, 1, 0));
    /* worker 0's gradient alone: x1 floats move by 1, x2 floats by 2 */
    const float want[10] = {-1, 0, 2, 3, 4, 3, 4, 5, 8, 9};
    expect_weights(sh, want);
    /* Rejoined at clock 1, it pushes with worker 0: mean (1 + 2) / 2 = 1.5 */
    assert_int_equal(srv_shard_worker_rejoin(sh, 1), 1);
    push_ok(sh, 1, 1, 10, g1, 2);
    push_ok(sh, 1, 1, 15, g1, 3);
    push_ok(sh, 0, 1, 10, g2, 2);
    push_ok(sh, 0, 1, 15, g2, 3);
    const float want2[10] = {-1.75f, -0.75f, 2, 3, 4, 1.5f, 2.5f, 3.5f, 8, 9};
    expect_weights(sh, want2);
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
    assert_int_equal(srv_shard_set_groups(sh, offs, mults, NULL, 2, &err), PST_OK);
    assert_int_equal(srv_shard_trainable(sh), 0);
    float w[10] = {0};
    init_all(sh, w);
    refused(sh, 1, 0, 0, 10, g, 1, "frozen", 0);
    static const uint64_t short_offs[] = {12, 30};
    assert_int_equal(srv_shard_set_groups(sh, short_offs, mults, NULL, 1, &err), PST_ERR_ARG);
    srv_shard_destroy(sh);
}

/* A push covering frozen floats is refused before it is classed as a repeat or early: a
 * worker whose view of the groups disagrees hears of it, instead of being acknowledged or
 * sending it again for ever. */
static void test_groups_frozen_refused_first(void **state)
{
    (void)state;
    srv_shard *sh = make_grouped(CFG_CONS_SSP, 1);
    float g[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    /* Would be early: inside [12, 15) before the step's first chunk, or of a later clock. */
    refused(sh, 1, 0, 0, 12, g, 3, "frozen", 0);
    refused(sh, 1, 0, 3, 13, g, 1, "frozen", 0);
    push_ok(sh, 0, 0, 10, g, 2);
    /* Would be a repeat: before 15, where the step's next chunk starts. */
    refused(sh, 1, 0, 0, 12, g, 1, "frozen", 0);
    refused(sh, 1, 0, 0, 10, g, 3, "frozen", 0);
    push_ok(sh, 0, 0, 15, g, 3);
    /* Would be a repeat: of a clock already pushed. */
    refused(sh, 1, 0, 0, 12, g, 3, "frozen", 0);
    refused(sh, 1, 0, 0, 18, g, 2, "frozen", 0);
    assert_int_equal(srv_shard_worker_clock(sh, 0), 1);
    srv_shard_destroy(sh);

    /* A shard frozen whole: its step would start past its end, so any push would be early. */
    static const uint64_t offs[] = {0, 25, 30};
    static const float mults[] = {0.0f, 1.0f};
    sh = make(10, 10, CFG_CONS_BSP, 0, 1);
    pst_err err = {0};
    assert_int_equal(srv_shard_set_groups(sh, offs, mults, NULL, 2, &err), PST_OK);
    const float w[10] = {0};
    init_all(sh, w);
    refused(sh, 1, 0, 0, 10, g, 1, "frozen", 0);
    refused(sh, 1, 0, 0, 10, g, 10, "frozen", 0);
    refused(sh, 1, 0, 1, 19, g, 1, "frozen", 0);
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
    /* Clock 1 is over: its push is a repeat, clock 2's taken. */
    not_taken(b, 2, 0, 1, 0, g[1][0], 4, SRV_REPEAT);
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

/* The weights a pull of clock c gets from each of two shards A = [0, 4) and B = [4, 8),
 * and the gradient a worker computes from them: g = 0.37 w + k + 0.1 c, float rounding
 * and all, so the result depends on exactly which weights it saw. */
static void gradient_of(srv_shard *a, srv_shard *b, int k, int64_t c, float *g)
{
    const float *wa = srv_shard_weights_of(a, c, 0), *wb = srv_shard_weights_of(b, c, 4);
    for (int i = 0; i < 8; i++)
        g[i] = 0.37f * (i < 4 ? wa[i] : wb[i - 4]) + (float)k + 0.1f * (float)c;
}

/* bsp, worker 1 killed between its pushes of clock 1 to two shards (issue 19, item 8):
 * A took its step whole and, worker 0's push completing the clock, updated past it; B
 * waits for it. The restarted incarnation rejoins (A at clock 2, B at 1), takes the
 * smaller clock and computes that step again from the weights of clock 1 -- which A still
 * has (srv_shard_weights_of) -- so the run ends bit-identical to one without the kill. */
static void test_rejoin_bsp_between_shards(void **state)
{
    (void)state;
    const float w0[8] = {0.3f, -1.7f, 2.9f, 0.01f, 5.5f, -0.25f, 1e-3f, 7.0f};
    srv_shard *a = make(0, 4, CFG_CONS_BSP, 0, 2), *b = make(4, 4, CFG_CONS_BSP, 0, 2);
    srv_shard *ra = make(0, 4, CFG_CONS_BSP, 0, 2), *rb = make(4, 4, CFG_CONS_BSP, 0, 2);
    init_all(a, w0);
    init_all(b, w0 + 4);
    init_all(ra, w0);
    init_all(rb, w0 + 4);
    float g[2][8];
    /* The clean run: 3 clocks, each worker computing from the weights of the clock. */
    for (int64_t c = 0; c < 3; c++) {
        for (int k = 0; k < 2; k++)
            gradient_of(ra, rb, k, c, g[k]);
        for (int k = 0; k < 2; k++) {
            push_ok(ra, k, c, 0, g[k], 4);
            push_ok(rb, k, c, 4, g[k] + 4, 4);
        }
    }
    /* The run with the kill. */
    for (int k = 0; k < 2; k++)
        gradient_of(a, b, k, 0, g[k]);
    for (int k = 0; k < 2; k++) {
        push_ok(a, k, 0, 0, g[k], 4);
        push_ok(b, k, 0, 4, g[k] + 4, 4);
    }
    for (int k = 0; k < 2; k++)
        gradient_of(a, b, k, 1, g[k]);
    float old1[8];
    memcpy(old1, g[1], sizeof old1);
    push_ok(a, 1, 1, 0, g[1], 4); /* ... and killed before its push to B */
    push_ok(a, 0, 1, 0, g[0], 4);
    push_ok(b, 0, 1, 4, g[0] + 4, 4);
    assert_int_equal(srv_shard_clock(a), 2); /* A updated past clock 1 */
    assert_int_equal(srv_shard_clock(b), 1);
    assert_int_equal(srv_shard_worker_rejoin(a, 1), 2);
    assert_int_equal(srv_shard_worker_rejoin(b, 1), 1);
    /* The new incarnation at clock 1 (the smaller): both shards answer that pull, with the
     * weights of clock 1, so it computes the very gradient the old one pushed to A. */
    assert_true(srv_shard_pull_ready(a, 1, 1, 0));
    assert_true(srv_shard_pull_ready(b, 1, 1, 0));
    gradient_of(a, b, 1, 1, g[1]);
    assert_memory_equal(g[1], old1, sizeof old1);
    assert_int_equal(push_out(a, 1, 1, 0, g[1], 4), SRV_REPEAT);
    push_ok(b, 1, 1, 4, g[1] + 4, 4);
    for (int k = 0; k < 2; k++)
        gradient_of(a, b, k, 2, g[k]);
    for (int k = 0; k < 2; k++) {
        push_ok(a, k, 2, 0, g[k], 4);
        push_ok(b, k, 2, 4, g[k] + 4, 4);
    }
    assert_memory_equal(srv_shard_weights(a, 0), srv_shard_weights(ra, 0), 4 * sizeof(float));
    assert_memory_equal(srv_shard_weights(b, 4), srv_shard_weights(rb, 4), 4 * sizeof(float));
    /* A final pull, and a pull of the current clock, get the newest weights. */
    assert_ptr_equal(srv_shard_weights_of(a, 3, 0), srv_shard_weights(a, 0));
    srv_shard_destroy(a);
    srv_shard_destroy(b);
    srv_shard_destroy(ra);
    srv_shard_destroy(rb);
}

/* A restarted server's recovery (issue 19, item 7): the loss it reports. asp/ssp apply
 * each worker's step as an update of its own, so 3 workers 4, 7 and 9 steps past the
 * checkpoint of clock 10 lost 20 updates, not the 9 of the largest clock; bsp's clocks
 * each averaged every worker's step: 10 -> 14, 4 clocks. */
static void test_recovery_loss_per_worker(void **state)
{
    (void)state;
    const float w0[4] = {0, 0, 0, 0};
    const int64_t seen[3] = {14, 17, 19};
    for (int c = 0; c < 3; c++) {
        cfg_consistency cons = c == 0 ? CFG_CONS_ASP : c == 1 ? CFG_CONS_SSP : CFG_CONS_BSP;
        srv_shard *sh = make(0, 4, cons, 2, 3);
        pst_err err = {0};
        assert_int_equal(srv_shard_restore(sh, w0, 10, &err), PST_OK);
        srv_shard_begin_recovery(sh);
        assert_false(srv_shard_note_clock(sh, 0, seen[0]));
        assert_false(srv_shard_note_clock(sh, 1, seen[1]));
        assert_true(srv_shard_note_clock(sh, 2, seen[2]));
        int64_t per[3];
        int64_t lost = srv_shard_end_recovery(sh, per);
        for (int k = 0; k < 3; k++)
            assert_int_equal(per[k], seen[k] - 10);
        assert_int_equal(lost, cons == CFG_CONS_BSP ? 4 : 4 + 7 + 9);
        assert_false(srv_shard_recovering(sh));
        srv_shard_destroy(sh);
    }
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

/* ---- model.keep_zeros: the pruning mask ------------------------------------------------ */

/* The INIT weights' exact zeros stay 0 through asp pushes (each applied at once) with
 * momentum, whose velocity would otherwise move them; the other weights move. A restored
 * shard learns the same mask from the restored weights. */
static void test_keep_zeros(void **state)
{
    (void)state;
    opt_config oc;
    opt_config_default(&oc, OPT_MOMENTUM);
    oc.lr = 0.1f;
    pst_err err = {0};
    srv_shard *sh = srv_shard_create(10, 6, &oc, CFG_CONS_ASP, 0, 2, &err);
    assert_non_null(sh);
    srv_shard_set_keep_zeros(sh, 1);
    const float w0[6] = {1, 0, -2, 0, 0.5f, 3};
    const float g[6] = {1, 1, 1, 1, 1, 1};
    assert_int_equal(init_out(sh, 10, w0, 3), SRV_APPLIED);
    assert_int_equal(srv_shard_mask_count(sh), 0); /* not whole yet */
    assert_int_equal(init_out(sh, 13, w0 + 3, 3), SRV_APPLIED);
    assert_int_equal(srv_shard_mask_count(sh), 2);
    for (int64_t c = 0; c < 3; c++) {
        push_ok(sh, 0, c, 10, g, 6);
        push_ok(sh, 1, c, 10, g, 6);
    }
    const float *w = srv_shard_weights(sh, 10);
    assert_true(w[1] == 0.0f && w[3] == 0.0f);
    assert_true(w[0] != w0[0] && w[2] != w0[2] && w[4] != w0[4] && w[5] != w0[5]);
    float saved[6];
    memcpy(saved, w, sizeof saved);
    srv_shard_destroy(sh);

    sh = srv_shard_create(10, 6, &oc, CFG_CONS_ASP, 0, 2, &err);
    assert_non_null(sh);
    srv_shard_set_keep_zeros(sh, 1);
    assert_int_equal(srv_shard_restore(sh, saved, 3, &err), PST_OK);
    assert_int_equal(srv_shard_mask_count(sh), 2);
    push_ok(sh, 0, 3, 10, g, 6);
    w = srv_shard_weights(sh, 10);
    assert_true(w[1] == 0.0f && w[3] == 0.0f && w[0] != saved[0]);
    srv_shard_destroy(sh);

    /* Off (the default): the zeros train like any weight. */
    sh = srv_shard_create(10, 6, &oc, CFG_CONS_ASP, 0, 1, &err);
    assert_non_null(sh);
    init_all(sh, w0);
    assert_int_equal(srv_shard_mask_count(sh), 0);
    push_ok(sh, 0, 0, 10, g, 6);
    assert_true(srv_shard_weights(sh, 10)[1] != 0.0f);
    srv_shard_destroy(sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_ranges),
        cmocka_unit_test(test_init_out_of_order),
        cmocka_unit_test(test_check_range),
        cmocka_unit_test(test_bsp_mean_applied_once),
        cmocka_unit_test(test_bsp_sum_independent_of_arrival_order),
        cmocka_unit_test(test_bsp_duplicates_any_order),
        cmocka_unit_test(test_bsp_worker_done),
        cmocka_unit_test(test_bsp_worker_lost),
        cmocka_unit_test(test_ssp_staleness_bound),
        cmocka_unit_test(test_ssp_worker_lost),
        cmocka_unit_test(test_ssp_chunks_one_update),
        cmocka_unit_test(test_asp_always_ready),
        cmocka_unit_test(test_push_validation),
        cmocka_unit_test(test_push_validation_async),
        cmocka_unit_test(test_push_dedupe_bsp),
        cmocka_unit_test(test_push_dedupe_ssp),
        cmocka_unit_test(test_create_bad_sizes),
        cmocka_unit_test(test_empty_shard),
        cmocka_unit_test(test_rejoin_bsp),
        cmocka_unit_test(test_rejoin_bsp_lone_worker),
        cmocka_unit_test(test_rejoin_bsp_lone_worker_lost_midstep),
        cmocka_unit_test(test_rejoin_ssp),
        cmocka_unit_test(test_rejoin_ssp_ahead),
        cmocka_unit_test(test_nonfinite_reject),
        cmocka_unit_test(test_nonfinite_skip_bsp),
        cmocka_unit_test(test_nonfinite_skip_ssp),
        cmocka_unit_test(test_nonfinite_skip_bsp_all_skipped),
        cmocka_unit_test(test_nonfinite_skip_first_chunk),
        cmocka_unit_test(test_groups_bsp),
        cmocka_unit_test(test_groups_bsp_worker_lost),
        cmocka_unit_test(test_groups_ssp_and_fully_frozen),
        cmocka_unit_test(test_groups_frozen_refused_first),
        cmocka_unit_test(test_shard_map_groups),
        cmocka_unit_test(test_state_bsp_mean),
        cmocka_unit_test(test_state_asp_latest),
        cmocka_unit_test(test_state_group_refused),
        cmocka_unit_test(test_restore_bsp),
        cmocka_unit_test(test_restore_ssp_clocks),
        cmocka_unit_test(test_recovery_loss_per_worker),
        cmocka_unit_test(test_rejoin_bsp_between_shards),
        cmocka_unit_test(test_keep_zeros),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
