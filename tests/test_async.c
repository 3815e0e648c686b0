/* tests/test_async.c -- the corrections for stale gradients (ps/async.h): each formula
 * against a double-precision transcription of its paper's rule, and a shard (ps/shard.h)
 * under asp that measures staleness from the reads it served and applies them.
 *
 * Shard scenario (2 workers, plain SGD, lr 0.5, weights w0): both workers read w0; worker
 * 0 pushes g0 (staleness 0, applied as it is), then worker 1 pushes g1 computed at w0,
 * while the shard has applied one update since: staleness 1. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ps/async.h"
#include "ps/shard.h"

#define N 5
#define LR 0.5f

static const float w0[N] = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f};
static const float g0[N] = {0.1f, -0.2f, 0.3f, 0.05f, -0.4f};
static const float g1[N] = {-0.3f, 0.25f, 0.2f, -0.1f, 0.15f};

static void test_lr(void **state)
{
    (void)state;
    assert_true(srv_async_lr(0.1f, 0) == 0.1f);
    assert_true(srv_async_lr(0.1f, -3) == 0.1f);
    assert_true(fabsf(srv_async_lr(0.1f, 1) - 0.05f) < 1e-9f);
    assert_true(fabsf(srv_async_lr(0.3f, 2) - 0.1f) < 1e-8f);
}

/* Zheng et al. 2017, DC-ASGD-a: ms <- m ms + (1 - m) g^2; g' = g + l0/sqrt(ms+eps) g g (w - b). */
static void test_dc_formula(void **state)
{
    (void)state;
    const float w[N] = {1.0f, -0.5f, 0.0f, 3.0f, -2.0f};
    const float b[N] = {0.9f, -0.5f, 0.2f, 2.5f, -2.5f};
    float ms[N] = {0.0f, 0.01f, 0.5f, 0.02f, 0.0f}, out[N];
    double msd[N];
    for (int i = 0; i < N; i++)
        msd[i] = ms[i];
    const double l0 = 2.0, m = 0.95, eps = 1e-7;
    for (int round = 0; round < 3; round++) {
        srv_async_dc(out, g0, w, b, ms, N, (float)l0);
        for (int i = 0; i < N; i++) {
            double g = g0[i];
            msd[i] = m * msd[i] + (1 - m) * g * g;
            double want = g + l0 / sqrt(msd[i] + eps) * g * g * ((double)w[i] - b[i]);
            assert_true(fabs((double)ms[i] - msd[i]) <= 1e-6 * (fabs(msd[i]) + 1e-12));
            assert_true(fabs((double)out[i] - want) <= 1e-5 * (fabs(want) + 1e-6));
        }
    }
    /* Where the worker read the current weights there is nothing to correct. */
    srv_async_dc(out, g1, w, w, ms, N, (float)l0);
    for (int i = 0; i < N; i++)
        assert_true(out[i] == g1[i]);
}

/* Mitliagkas et al. 2016: total 1 - (1 - mu_e) / W kept at mu. */
static void test_momentum_formula(void **state)
{
    (void)state;
    assert_true(srv_async_momentum(0.9f, 1) == 0.9f);
    assert_true(fabsf(srv_async_momentum(0.9f, 2) - 0.8f) < 1e-6f);
    assert_true(fabsf(srv_async_momentum(0.9f, 4) - 0.6f) < 1e-6f);
    assert_true(srv_async_momentum(0.9f, 20) == 0.0f);
    assert_true(srv_async_momentum(0.0f, 4) == 0.0f);
    for (int W = 2; W <= 8; W++) {
        double mu = 0.95, e = srv_async_momentum((float)mu, W);
        if (e > 0)
            assert_true(fabs(1.0 - (1.0 - e) / W - mu) < 1e-6);
    }
}

static srv_shard *make(cfg_consistency cons, int staleness_lr, float dc)
{
    opt_config oc;
    opt_config_default(&oc, OPT_SGD);
    oc.lr = LR;
    pst_err err = {0};
    srv_shard *sh = srv_shard_create(0, N, &oc, cons, 0, 2, &err);
    if (!sh)
        fail_msg("srv_shard_create: %s", err.msg);
    if (srv_shard_set_async(sh, staleness_lr, dc, &err))
        fail_msg("srv_shard_set_async: %s", err.msg);
    srv_outcome out;
    if (srv_shard_init_range(sh, 0, w0, N, &out, &err) || out != SRV_APPLIED)
        fail_msg("init: %s", err.msg);
    return sh;
}

static void push(srv_shard *sh, int worker, int64_t clock, const float *g)
{
    pst_err err = {0};
    srv_outcome out;
    if (srv_shard_push(sh, worker, clock, 0, g, N, &out, &err) || out != SRV_APPLIED)
        fail_msg("push of worker %d: %s", worker, err.msg);
}

/* The scenario of the header; returns the weights after both pushes in w. */
static void scenario(srv_shard *sh, float *w)
{
    srv_shard_note_read(sh, 0, 0, N);
    srv_shard_note_read(sh, 1, 0, N);
    push(sh, 0, 0, g0);
    push(sh, 1, 0, g1);
    memcpy(w, srv_shard_weights(sh, 0), sizeof(float) * N);
}

static void test_shard_plain(void **state)
{
    (void)state;
    srv_shard *sh = make(CFG_CONS_ASP, 0, 0.0f);
    float w[N];
    scenario(sh, w);
    for (int i = 0; i < N; i++) {
        double want = (double)w0[i] - LR * (double)g0[i] - LR * (double)g1[i];
        assert_true(fabs(w[i] - want) < 1e-6);
    }
    srv_shard_destroy(sh);
}

static void test_shard_staleness_lr(void **state)
{
    (void)state;
    srv_shard *sh = make(CFG_CONS_ASP, 1, 0.0f);
    float w[N];
    scenario(sh, w);
    /* Worker 1's step is one update stale: lr / 2. */
    for (int i = 0; i < N; i++) {
        double want = (double)w0[i] - LR * (double)g0[i] - LR / 2 * (double)g1[i];
        assert_true(fabs(w[i] - want) < 1e-6);
    }
    /* A worker that reads again is fresh: its next step takes the whole lr. */
    srv_shard_note_read(sh, 0, 0, N);
    float before[N];
    memcpy(before, srv_shard_weights(sh, 0), sizeof before);
    push(sh, 0, 1, g1);
    for (int i = 0; i < N; i++)
        assert_true(fabs(srv_shard_weights(sh, 0)[i] - (before[i] - LR * g1[i])) < 1e-6);
    srv_shard_destroy(sh);
}

static void test_shard_delay_compensation(void **state)
{
    (void)state;
    const float l0 = 2.0f;
    srv_shard *sh = make(CFG_CONS_ASP, 0, l0);
    float w[N];
    scenario(sh, w);
    for (int i = 0; i < N; i++) {
        /* Worker 0 read the current weights: g0 unchanged, but the mean square learns it. */
        double ms = (1 - 0.95) * (double)g0[i] * g0[i];
        double w1 = (double)w0[i] - LR * (double)g0[i];
        ms = 0.95 * ms + (1 - 0.95) * (double)g1[i] * g1[i];
        double gc = g1[i] + l0 / sqrt(ms + 1e-7) * (double)g1[i] * g1[i] * (w1 - w0[i]);
        double want = w1 - LR * gc;
        assert_true(fabs(w[i] - want) < 1e-5 * (fabs(want) + 1));
    }
    srv_shard_destroy(sh);
}

/* A worker whose read the shard did not see (it rejoined; the shard restarted) is not
 * corrected: nothing is known of the weights it used. */
static void test_shard_unknown_read(void **state)
{
    (void)state;
    srv_shard *sh = make(CFG_CONS_ASP, 1, 2.0f);
    srv_shard_note_read(sh, 0, 0, N);
    push(sh, 0, 0, g0);
    srv_shard_note_read(sh, 1, 0, N);
    /* It starts at the slowest other live worker's clock: worker 0's 1. */
    int64_t clock = srv_shard_worker_rejoin(sh, 1);
    assert_int_equal(clock, 1);
    float before[N];
    memcpy(before, srv_shard_weights(sh, 0), sizeof before);
    push(sh, 1, clock, g1);
    for (int i = 0; i < N; i++)
        assert_true(fabs(srv_shard_weights(sh, 0)[i] - (before[i] - LR * g1[i])) < 1e-6);
    srv_shard_destroy(sh);
}

/* bsp: nothing is stale; the options change nothing (bit for bit). */
static void test_shard_bsp_unchanged(void **state)
{
    (void)state;
    srv_shard *a = make(CFG_CONS_BSP, 0, 0.0f), *b = make(CFG_CONS_BSP, 1, 2.0f);
    srv_shard *both[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        srv_shard_note_read(both[k], 0, 0, N);
        srv_shard_note_read(both[k], 1, 0, N);
        push(both[k], 0, 0, g0);
        push(both[k], 1, 0, g1);
    }
    assert_memory_equal(srv_shard_weights(a, 0), srv_shard_weights(b, 0), sizeof(float) * N);
    srv_shard_destroy(a);
    srv_shard_destroy(b);
}

static void test_bad_lambda(void **state)
{
    (void)state;
    opt_config oc;
    opt_config_default(&oc, OPT_SGD);
    pst_err err = {0};
    srv_shard *sh = srv_shard_create(0, N, &oc, CFG_CONS_ASP, 0, 2, &err);
    assert_non_null(sh);
    assert_int_equal(srv_shard_set_async(sh, 0, -1.0f, &err), PST_ERR_ARG);
    assert_int_equal(srv_shard_set_async(sh, 0, NAN, &err), PST_ERR_ARG);
    srv_shard_destroy(sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lr),
        cmocka_unit_test(test_dc_formula),
        cmocka_unit_test(test_momentum_formula),
        cmocka_unit_test(test_shard_plain),
        cmocka_unit_test(test_shard_staleness_lr),
        cmocka_unit_test(test_shard_delay_compensation),
        cmocka_unit_test(test_shard_unknown_read),
        cmocka_unit_test(test_shard_bsp_unchanged),
        cmocka_unit_test(test_bad_lambda),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
