/* tests/test_srv_sparse.c -- a server's sparse tables driven directly (ps/sparse.h): the
 * bsp mean applied once per clock and bit-identical whatever order the workers' pushes
 * arrive in, a lone bsp worker equal to a single process's table (pull, push, tick), the
 * pull rule (bsp waits for every live worker's clock; ssp's bound), asp applying each push
 * at once, repeats and early pushes, refused tables, dims, stray keys and NaN under both
 * nonfinite policies. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ps/sparse.h"

#define D 4

static spt_config config(opt_kind kind)
{
    spt_config c;
    spt_config_default(&c, D);
    c.seed = 1234;
    opt_config_default(&c.opt, kind);
    c.opt.lr = 0.1f;
    return c;
}

static srv_sparse *make(cfg_consistency cons, int staleness, int nworkers, uint32_t rank,
                        uint32_t nservers, opt_kind kind)
{
    const char *names[2] = {"emb", "wide"};
    spt_config cfgs[2] = {config(kind), config(kind)};
    pst_err err = {0};
    srv_sparse *sp =
        srv_sparse_create(names, cfgs, 2, rank, nservers, cons, staleness, nworkers, &err);
    if (!sp)
        fail_msg("srv_sparse_create: %s", err.msg);
    return sp;
}

/* Keys of worker k at step c (some shared among workers, some its own) and arbitrary
 * gradients, so that float sums depend on the order of the additions. */
static size_t batch(int k, int64_t c, uint64_t *keys, float *g)
{
    size_t n = 0;
    for (uint64_t i = 0; i < 6; i++)
        keys[n++] = (i * 7 + (uint64_t)c) % 11 + (i >= 4 ? 100 * (uint64_t)(k + 1) : 0);
    for (size_t i = 0; i < n * D; i++)
        g[i] = sinf((float)(i + 1) * 0.37f + (float)k * 1.3f + (float)c * 0.11f) * 0.3f;
    return n;
}

static void push_ok(srv_sparse *sp, int k, int64_t c, uint32_t t, const uint64_t *keys, size_t n,
                    const float *g, srv_outcome want)
{
    pst_err err = {0};
    srv_outcome out;
    if (srv_sparse_push(sp, k, c, t, keys, n, g, &out, &err) != PST_OK)
        fail_msg("push: %s", err.msg);
    assert_int_equal(out, want);
}

static void rows_of(srv_sparse *sp, uint32_t t, const uint64_t *keys, size_t n, float *rows)
{
    pst_err err = {0};
    if (srv_sparse_pull(sp, t, keys, n, 1, rows, &err) != PST_OK)
        fail_msg("pull: %s", err.msg);
}

/* Three workers, three clocks, pushes in two different orders: the same rows bit for bit,
 * and each clock waits for every worker. */
static void test_bsp_order_independent(void **state)
{
    (void)state;
    srv_sparse *a = make(CFG_CONS_BSP, 0, 3, 0, 1, OPT_ADAM);
    srv_sparse *b = make(CFG_CONS_BSP, 0, 3, 0, 1, OPT_ADAM);
    static const int order_a[3] = {0, 1, 2}, order_b[3] = {2, 0, 1};
    uint64_t keys[8];
    float g[8 * D];
    for (int64_t c = 0; c < 3; c++) {
        for (int i = 0; i < 3; i++) {
            assert_false(srv_sparse_pull_ready(a, 0, c + 1));
            size_t n = batch(order_a[i], c, keys, g);
            push_ok(a, order_a[i], c, 0, keys, n, g, SRV_APPLIED);
            n = batch(order_b[i], c, keys, g);
            push_ok(b, order_b[i], c, 0, keys, n, g, SRV_APPLIED);
        }
        assert_true(srv_sparse_pull_ready(a, 0, c + 1));
        assert_true(srv_sparse_pull_ready(b, 0, c + 1));
        assert_false(srv_sparse_pull_ready(a, 0, c + 2));
        /* The other table has its own clock: nobody pushed it yet. */
        assert_false(srv_sparse_pull_ready(a, 1, 1));
    }
    assert_int_equal(srv_sparse_clock(a, 0), 3);
    uint64_t all[400];
    for (uint64_t i = 0; i < 400; i++)
        all[i] = i;
    static float ra[400 * D], rb[400 * D];
    rows_of(a, 0, all, 400, ra);
    rows_of(b, 0, all, 400, rb);
    assert_memory_equal(ra, rb, sizeof ra);
    srv_sparse_stats st;
    srv_sparse_get_stats(a, &st);
    assert_int_equal(st.pushes, 9);
    srv_sparse_destroy(a);
    srv_sparse_destroy(b);
}

/* bsp, two workers: the update is the mean, (g0 + g1) / 2 per key (0 for a key a worker did
 * not touch), applied once; SGD makes it exact to check. */
static void test_bsp_mean(void **state)
{
    (void)state;
    srv_sparse *sp = make(CFG_CONS_BSP, 0, 2, 0, 1, OPT_SGD);
    uint64_t k0[2] = {5, 9}, k1[1] = {9};
    float w5[D], w9[D], g0[2 * D], g1[D];
    rows_of(sp, 0, &k0[0], 1, w5);
    rows_of(sp, 0, &k0[1], 1, w9);
    for (int j = 0; j < D; j++) {
        g0[j] = 1.0f;
        g0[D + j] = 0.5f;
        g1[j] = 1.5f;
    }
    push_ok(sp, 0, 0, 0, k0, 2, g0, SRV_APPLIED);
    float r[2 * D];
    rows_of(sp, 0, k0, 2, r);
    assert_memory_equal(r, w5, sizeof w5); /* not yet applied */
    push_ok(sp, 1, 0, 0, k1, 1, g1, SRV_APPLIED);
    rows_of(sp, 0, k0, 2, r);
    for (int j = 0; j < D; j++) {
        assert_true(r[j] == w5[j] - 0.1f * (1.0f * 0.5f));
        assert_true(r[D + j] == w9[j] - 0.1f * ((0.5f + 1.5f) * 0.5f));
    }
    srv_sparse_destroy(sp);
}

/* One bsp worker is a single process's table: pull, push the gradients, tick. */
static void test_bsp_one_worker_is_single_process(void **state)
{
    (void)state;
    srv_sparse *sp = make(CFG_CONS_BSP, 0, 1, 0, 1, OPT_ADAGRAD);
    spt_config c = config(OPT_ADAGRAD);
    pst_err err = {0};
    spt_table *ref = spt_create(&c, &err);
    assert_non_null(ref);
    uint64_t keys[8];
    float g[8 * D], r1[8 * D], r2[8 * D];
    for (int64_t s = 0; s < 5; s++) {
        size_t n = batch(0, s, keys, g);
        assert_true(srv_sparse_pull_ready(sp, 0, s));
        rows_of(sp, 0, keys, n, r1);
        assert_int_equal(spt_pull(ref, keys, n, r2, &err), PST_OK);
        assert_memory_equal(r1, r2, n * D * sizeof(float));
        push_ok(sp, 0, s, 0, keys, n, g, SRV_APPLIED);
        assert_int_equal(spt_push(ref, keys, n, g, c.opt.lr, &err), PST_OK);
        spt_tick(ref);
    }
    assert_int_equal(spt_step(srv_sparse_table(sp, 0)), 5);
    spt_destroy(ref);
    srv_sparse_destroy(sp);
}

static void test_repeats_early_and_done(void **state)
{
    (void)state;
    srv_sparse *sp = make(CFG_CONS_BSP, 0, 2, 0, 1, OPT_SGD);
    uint64_t key = 3;
    float g[D] = {1, 1, 1, 1};
    push_ok(sp, 0, 1, 0, &key, 1, g, SRV_EARLY); /* clock 0 is missing */
    push_ok(sp, 0, 0, 0, &key, 1, g, SRV_APPLIED);
    push_ok(sp, 0, 0, 0, &key, 1, g, SRV_REPEAT);
    push_ok(sp, 0, 1, 0, &key, 1, g, SRV_EARLY); /* bsp: clock 0 not yet applied */
    assert_false(srv_sparse_pull_ready(sp, 0, 1));
    /* Worker 1 finishes without pushing: clock 0 is applied with worker 0's step alone. */
    srv_sparse_worker_done(sp, 1);
    assert_true(srv_sparse_pull_ready(sp, 0, 1));
    push_ok(sp, 0, 1, 0, NULL, 0, NULL, SRV_APPLIED); /* an empty push counts */
    assert_int_equal(srv_sparse_clock(sp, 0), 2);
    pst_err err = {0};
    srv_outcome out;
    assert_int_equal(srv_sparse_push(sp, 1, 0, 0, &key, 1, g, &out, &err), PST_ERR_PEER);
    srv_sparse_destroy(sp);
}

/* ssp with staleness 1: a worker runs at most one clock ahead; asp never waits and each
 * push is applied at once. */
static void test_ssp_asp(void **state)
{
    (void)state;
    srv_sparse *sp = make(CFG_CONS_SSP, 1, 2, 0, 1, OPT_SGD);
    uint64_t key = 7;
    float g[D] = {1, 1, 1, 1}, w0[D], w1[D];
    rows_of(sp, 0, &key, 1, w0);
    push_ok(sp, 0, 0, 0, &key, 1, g, SRV_APPLIED);
    rows_of(sp, 0, &key, 1, w1);
    assert_true(w1[0] == w0[0] - 0.1f); /* at once */
    assert_true(srv_sparse_pull_ready(sp, 0, 1));
    push_ok(sp, 0, 1, 0, &key, 1, g, SRV_APPLIED);
    assert_false(srv_sparse_pull_ready(sp, 0, 2)); /* 2 - 0 > 1 */
    push_ok(sp, 1, 0, 0, NULL, 0, NULL, SRV_APPLIED);
    assert_true(srv_sparse_pull_ready(sp, 0, 2));
    srv_sparse_destroy(sp);
    sp = make(CFG_CONS_ASP, 0, 2, 0, 1, OPT_SGD);
    for (int64_t c = 0; c < 10; c++)
        push_ok(sp, 0, c, 0, &key, 1, g, SRV_APPLIED);
    assert_true(srv_sparse_pull_ready(sp, 0, 10));
    assert_int_equal(spt_step(srv_sparse_table(sp, 0)), 10);
    srv_sparse_destroy(sp);
}

static void test_refusals(void **state)
{
    (void)state;
    srv_sparse *sp = make(CFG_CONS_BSP, 0, 1, 1, 3, OPT_SGD);
    pst_err err = {0};
    uint64_t mine = 0, stray = 0;
    while (spt_owner(mine, 3) != 1)
        mine++;
    while (spt_owner(stray, 3) == 1)
        stray++;
    assert_int_equal(srv_sparse_check(sp, 0, D, &mine, 1, &err), PST_OK);
    assert_int_equal(srv_sparse_check(sp, 5, D, &mine, 1, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "unknown sparse table 5"));
    assert_int_equal(srv_sparse_check(sp, 1, D + 1, &mine, 1, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "'wide' has dim 4"));
    assert_int_equal(srv_sparse_check(sp, 0, D, &stray, 1, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "belongs to server"));
    /* NaN: rejected, nothing changes; under skip taken, not applied. */
    float g[D] = {1, NAN, 1, 1}, w0[D], w1[D];
    rows_of(sp, 0, &mine, 1, w0);
    srv_outcome out;
    assert_int_equal(srv_sparse_push(sp, 0, 0, 0, &mine, 1, g, &out, &err), PST_ERR_PEER);
    assert_non_null(strstr(err.msg, "column 1"));
    assert_int_equal(srv_sparse_clock(sp, 0), 0);
    srv_sparse_set_nonfinite(sp, CFG_NONFINITE_SKIP);
    push_ok(sp, 0, 0, 0, &mine, 1, g, SRV_APPLIED);
    assert_int_equal(srv_sparse_clock(sp, 0), 1);
    rows_of(sp, 0, &mine, 1, w1);
    assert_memory_equal(w0, w1, sizeof w0);
    srv_sparse_stats st;
    srv_sparse_get_stats(sp, &st);
    assert_int_equal(st.rejected_nonfinite, 2);
    assert_int_equal(st.tables.rows, 1);
    srv_sparse_destroy(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bsp_order_independent),
        cmocka_unit_test(test_bsp_mean),
        cmocka_unit_test(test_bsp_one_worker_is_single_process),
        cmocka_unit_test(test_repeats_early_and_done),
        cmocka_unit_test(test_ssp_asp),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
