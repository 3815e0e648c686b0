/* tests/test_sptable.c -- core/sptable.c (the sparse table) and ckpt/sparse.c (its files):
 * deterministic rows, lazy updates of each rule against a double-precision reference
 * (FTRL against a transcription of McMahan et al.'s Algorithm 1), admission, expiry, the
 * budget, the index under churn, owner routing, dump/restore and checkpoint files.
 *
 * `test_sptable --write PATH` writes the file tests/check_sparse_numpy.py reads with
 * numpy: table "emb" of dim 4, keys KEYS below, row i = (i, i + 0.25, i + 0.5, i + 0.75). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/rng.h"
#include "ckpt/sparse.h"
#include "core/sptable.h"

#define D 4

static spt_table *make(opt_kind k, int dim, void (*adjust)(spt_config *))
{
    spt_config c;
    spt_config_default(&c, dim);
    opt_config_default(&c.opt, k);
    c.seed = 42;
    if (adjust)
        adjust(&c);
    pst_err err = {0};
    spt_table *t = spt_create(&c, &err);
    if (!t)
        fail_msg("spt_create: %s", err.msg);
    return t;
}

static void pull_ok(spt_table *t, const uint64_t *keys, size_t n, float *rows)
{
    pst_err err = {0};
    if (spt_pull(t, keys, n, rows, &err) != PST_OK)
        fail_msg("spt_pull: %s", err.msg);
}

static void push_ok(spt_table *t, const uint64_t *keys, size_t n, const float *g, float lr)
{
    pst_err err = {0};
    if (spt_push(t, keys, n, g, lr, &err) != PST_OK)
        fail_msg("spt_push: %s", err.msg);
}

static void expect_config_error(void (*adjust)(spt_config *), const char *field)
{
    spt_config c;
    spt_config_default(&c, D);
    adjust(&c);
    pst_err err = {0};
    assert_int_equal(spt_config_check(&c, &err), PST_ERR_CONFIG);
    if (strncmp(err.msg, field, strlen(field)) != 0)
        fail_msg("expected '%s...', got '%s'", field, err.msg);
    assert_null(spt_create(&c, NULL));
}

static void bad_dim(spt_config *c) { c->dim = 0; }
static void bad_opt(spt_config *c) { c->opt.kind = OPT_RMSPROP; }
static void bad_lr(spt_config *c) { c->opt.lr = -1.0f; }
static void bad_admit(spt_config *c) { c->admit_after = 300; }
static void bad_expire(spt_config *c) { c->expire_steps = -1; }
static void bad_rows(spt_config *c) { c->max_rows = SPT_MAX_ROWS + 1; }
static void bad_scale(spt_config *c) { c->init_scale = NAN; }
static void bad_filter(spt_config *c) { c->filter_cells = 3; }

static void test_config_check(void **state)
{
    (void)state;
    spt_config c;
    spt_config_default(&c, 16);
    assert_int_equal(spt_config_check(&c, NULL), PST_OK);
    expect_config_error(bad_dim, "dim:");
    expect_config_error(bad_opt, "optimizer.name:");
    expect_config_error(bad_lr, "optimizer.lr:");
    expect_config_error(bad_admit, "admit_after:");
    expect_config_error(bad_expire, "expire_steps:");
    expect_config_error(bad_rows, "max_rows:");
    expect_config_error(bad_scale, "init_scale:");
    expect_config_error(bad_filter, "filter_cells:");
}

/* ---- deterministic rows ---------------------------------------------------------------- */

static void test_init_deterministic(void **state)
{
    (void)state;
    enum { N = 300, DIM = 8 };
    uint64_t keys[N], rev[N];
    for (int i = 0; i < N; i++)
        keys[i] = rev[N - 1 - i] = (uint64_t)i * 0x9E3779B97F4A7C15ULL + 1;
    float a[N * DIM], b[N * DIM];
    spt_table *t1 = make(OPT_ADAM, DIM, NULL), *t2 = make(OPT_SGD, DIM, NULL);
    pull_ok(t1, keys, N, a);
    /* the other table: reversed order, in three batches, after a tick */
    spt_tick(t2);
    pull_ok(t2, rev, 100, b);
    pull_ok(t2, rev + 100, 150, b + 100 * DIM);
    pull_ok(t2, rev + 250, 50, b + 250 * DIM);
    for (int i = 0; i < N; i++) {
        rng_state r;
        rng_seed(&r, spt_row_seed(42, keys[i]));
        for (int c = 0; c < DIM; c++) {
            float want = 0.05f * (2.0f * rng_uniform(&r) - 1.0f);
            assert_true(a[i * DIM + c] == want);
            assert_true(b[(N - 1 - i) * DIM + c] == want);
            assert_true(fabsf(want) < 0.05f);
        }
    }
    /* another seed gives other rows */
    spt_config c;
    spt_config_default(&c, DIM);
    c.seed = 43;
    spt_table *t3 = spt_create(&c, NULL);
    pull_ok(t3, keys, N, b);
    assert_true(memcmp(a, b, sizeof a) != 0);
    spt_destroy(t3);
    c.init = SPT_INIT_ZEROS;
    t3 = spt_create(&c, NULL);
    pull_ok(t3, keys, 5, b);
    for (int i = 0; i < 5 * DIM; i++)
        assert_true(b[i] == 0.0f);
    spt_destroy(t1);
    spt_destroy(t2);
    spt_destroy(t3);
}

/* ---- the rules, lazily, against a double-precision reference --------------------------- */

/* One update of a touched row in double from the formulas of optim.h; t = update number. */
static void ref_row(const opt_config *c, double *w, const double *g, double *s0, double *s1, int n,
                    double lr, int64_t t)
{
    for (int i = 0; i < n; i++) {
        double gi = g[i] + c->weight_decay * w[i];
        switch (c->kind) {
        case OPT_SGD: w[i] -= lr * gi; break;
        case OPT_ADAGRAD:
            s0[i] += gi * gi;
            w[i] -= lr * gi / (sqrt(s0[i]) + c->eps);
            break;
        case OPT_ADAM: {
            s0[i] = c->beta1 * s0[i] + (1.0 - c->beta1) * gi;
            s1[i] = c->beta2 * s1[i] + (1.0 - c->beta2) * gi * gi;
            double mhat = s0[i] / (1.0 - pow(c->beta1, (double)t));
            double vhat = s1[i] / (1.0 - pow(c->beta2, (double)t));
            w[i] -= lr * mhat / (sqrt(vhat) + c->eps);
            break;
        }
        case OPT_FTRL: {
            /* Algorithm 1 of McMahan et al. 2013, per coordinate i, alpha = lr:
             *   sigma_i = (sqrt(n_i + g_i^2) - sqrt(n_i)) / alpha
             *   z_i <- z_i + g_i - sigma_i w_{t,i};  n_i <- n_i + g_i^2
             *   w_{t+1,i} = 0 if |z_i| <= lambda1, else
             *               -((beta + sqrt(n_i)) / alpha + lambda2)^-1 (z_i - sgn(z_i) lambda1) */
            double gr = g[i], z = s0[i], nn = s1[i];
            double sigma = (sqrt(nn + gr * gr) - sqrt(nn)) / lr;
            z += gr - sigma * w[i];
            nn += gr * gr;
            double sgn = z < 0 ? -1.0 : 1.0;
            w[i] = fabs(z) <= c->l1
                       ? 0.0
                       : -1.0 / ((c->ftrl_beta + sqrt(nn)) / lr + c->l2) * (z - sgn * c->l1);
            s0[i] = z;
            s1[i] = nn;
            break;
        }
        default: fail_msg("no reference for %s", opt_kind_name(c->kind));
        }
    }
}

static float urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 40) / 8388608.0 - 1.0);
}

static void close_or_fail(const float *got, const double *want, int n, const char *what,
                          const char *kind)
{
    for (int i = 0; i < n; i++) {
        double tol = 2e-5 * fmax(1.0, fabs(want[i]));
        if (fabs((double)got[i] - want[i]) > tol)
            fail_msg("%s %s[%d]: got %.9g want %.9g", kind, what, i, (double)got[i], want[i]);
    }
}

static float g_l1;
static void set_l1(spt_config *c) { c->opt.l1 = g_l1, c->opt.l2 = 0.01f; }

/* K keys, 8 steps, each touching a random subset; rows never touched keep their initial
 * values and zero state bit for bit. Returns the zeros among the FTRL rows. */
static int check_lazy(opt_kind kind, float l1)
{
    enum { K = 40, STEPS = 8 };
    g_l1 = l1;
    spt_table *t = make(kind, D, kind == OPT_FTRL ? set_l1 : NULL);
    const opt_config *oc = &spt_config_of(t)->opt;
    uint64_t keys[K];
    for (int k = 0; k < K; k++)
        keys[k] = 1000 + (uint64_t)k * 77;
    static float rows0[K * D], rows[K * D];
    static double w[K * D], s0[K * D], s1[K * D];
    pull_ok(t, keys, K - 5, rows0); /* the last 5 keys: never touched */
    for (int i = 0; i < (K - 5) * D; i++)
        w[i] = rows0[i], s0[i] = s1[i] = 0.0;
    uint64_t seed = 7 + (uint64_t)kind;
    for (int step = 0; step < STEPS; step++) {
        uint64_t batch[K];
        int idx[K], n = 0;
        for (int k = 0; k < K - 5; k++)
            if (k < 3 || urand(&seed) > 0.2f) /* keys 0..2 every step */
                idx[n] = k, batch[n++] = keys[k];
        float g[K * D];
        double gd[D];
        pull_ok(t, batch, (size_t)n, rows);
        for (int j = 0; j < n * D; j++)
            g[j] = urand(&seed) * (kind == OPT_FTRL ? 0.3f : 1.0f);
        const float lr = kind == OPT_FTRL ? 0.5f : 0.05f;
        push_ok(t, batch, (size_t)n, g, lr);
        for (int j = 0; j < n; j++) {
            for (int c = 0; c < D; c++)
                gd[c] = g[j * D + c];
            int k = idx[j];
            ref_row(oc, w + k * D, gd, s0 + k * D, s1 + k * D, D, lr, step + 1);
        }
        spt_tick(t);
    }
    spt_dump d;
    assert_int_equal(spt_dump_fill(t, &d, NULL), PST_OK);
    assert_int_equal(d.n, K - 5);
    int zeros = 0;
    for (size_t r = 0; r < d.n; r++) {
        int k = (int)((d.keys[r] - 1000) / 77); /* keys ascend with k */
        assert_int_equal(k, (int)r);
        close_or_fail(d.rows + r * D, w + k * D, D, "row", opt_kind_name(kind));
        if (d.nbuf > 0)
            close_or_fail(d.state[0] + r * D, s0 + k * D, D, "state0", opt_kind_name(kind));
        if (d.nbuf > 1)
            close_or_fail(d.state[1] + r * D, s1 + k * D, D, "state1", opt_kind_name(kind));
        for (int c = 0; c < D; c++)
            zeros += d.rows[r * D + c] == 0.0f && w[k * D + c] == 0.0;
    }
    spt_dump_fini(&d);
    /* the never-touched keys come up fresh: initial values */
    float fresh[5 * D];
    pull_ok(t, keys + K - 5, 5, fresh);
    for (int i = 0; i < 5; i++) {
        rng_state r;
        rng_seed(&r, spt_row_seed(42, keys[K - 5 + i]));
        for (int c = 0; c < D; c++)
            assert_true(fresh[i * D + c] == 0.05f * (2.0f * rng_uniform(&r) - 1.0f));
    }
    spt_destroy(t);
    return zeros;
}

static void test_rules_lazy_against_reference(void **state)
{
    (void)state;
    const opt_kind kinds[] = {OPT_SGD, OPT_ADAGRAD, OPT_ADAM, OPT_FTRL};
    for (int i = 0; i < 4; i++)
        check_lazy(kinds[i], 0.0f);
}

/* Lazy: an untouched row keeps row and state bit for bit while others update. */
static void test_untouched_rows_unchanged(void **state)
{
    (void)state;
    spt_table *t = make(OPT_ADAM, D, NULL);
    uint64_t a = 5, b = 6;
    float ra[D], rb[D], g[D] = {0.1f, -0.2f, 0.3f, 0.4f};
    pull_ok(t, &a, 1, ra);
    pull_ok(t, &b, 1, rb);
    push_ok(t, &b, 1, g, 0.01f);
    spt_tick(t);
    spt_dump d0;
    assert_int_equal(spt_dump_fill(t, &d0, NULL), PST_OK);
    for (int s = 0; s < 5; s++) {
        pull_ok(t, &b, 1, rb);
        push_ok(t, &b, 1, g, 0.01f);
        spt_tick(t);
    }
    spt_dump d1;
    assert_int_equal(spt_dump_fill(t, &d1, NULL), PST_OK);
    assert_true(d1.keys[0] == a);
    assert_memory_equal(d1.rows, d0.rows, D * sizeof(float));
    assert_memory_equal(d1.state[0], d0.state[0], D * sizeof(float));
    assert_memory_equal(d1.state[1], d0.state[1], D * sizeof(float));
    assert_memory_equal(d1.rows, ra, sizeof ra);
    assert_true(memcmp(d1.rows + D, d0.rows + D, D * sizeof(float)) != 0);
    spt_dump_fini(&d0);
    spt_dump_fini(&d1);
    /* a non-finite gradient is refused whole, naming key and column */
    float bad[2 * D] = {0};
    bad[D + 2] = NAN;
    uint64_t two[2] = {a, b};
    spt_dump_fill(t, &d0, NULL);
    pst_err err = {0};
    assert_int_equal(spt_push(t, two, 2, bad, 0.01f, &err), PST_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "key 6 column 2"));
    spt_dump_fill(t, &d1, NULL);
    assert_memory_equal(d0.rows, d1.rows, 2 * D * sizeof(float));
    spt_dump_fini(&d0);
    spt_dump_fini(&d1);
    spt_destroy(t);
}

static void test_ftrl_l1_zeros(void **state)
{
    (void)state;
    /* a strong L1 zeroes most coordinates exactly, matching Algorithm 1 */
    int zeros = check_lazy(OPT_FTRL, 0.8f);
    assert_true(zeros > 0);
    /* without L1 none is exactly zero */
    assert_int_equal(check_lazy(OPT_FTRL, 0.0f), 0);
}

/* ---- admission, expiry, budget --------------------------------------------------------- */

static void admit3(spt_config *c) { c->admit_after = 3, c->filter_cells = 4096; }

static void test_admission(void **state)
{
    (void)state;
    spt_table *t = make(OPT_SGD, D, admit3);
    uint64_t k = 99;
    float r[D], g[D] = {1, 1, 1, 1};
    spt_stats s;
    for (int i = 0; i < 2; i++) {
        pull_ok(t, &k, 1, r);
        for (int c = 0; c < D; c++)
            assert_true(r[c] == 0.0f);
        push_ok(t, &k, 1, g, 0.1f);
        spt_tick(t);
    }
    spt_stats_get(t, &s);
    assert_int_equal(s.rows, 0);
    assert_int_equal(s.pending, 2);
    assert_int_equal(s.dropped, 2);
    assert_int_equal(s.filter_bytes, 4096);
    pull_ok(t, &k, 1, r); /* third occurrence: a row, with its initial values */
    rng_state rs;
    rng_seed(&rs, spt_row_seed(42, k));
    for (int c = 0; c < D; c++)
        assert_true(r[c] == 0.05f * (2.0f * rng_uniform(&rs) - 1.0f));
    spt_stats_get(t, &s);
    assert_int_equal(s.rows, 1);
    assert_int_equal(s.admitted, 1);
    spt_destroy(t);
}

static void expire3(spt_config *c) { c->expire_steps = 3; }

static void test_expiry(void **state)
{
    (void)state;
    spt_table *t = make(OPT_SGD, D, expire3);
    uint64_t a = 1, b = 2;
    float r0[D], r[D], g[D] = {1, 2, 3, 4};
    pull_ok(t, &a, 1, r0);
    pull_ok(t, &b, 1, r);
    push_ok(t, &a, 1, g, 0.5f); /* a = r0 - 0.5 g */
    spt_tick(t);
    spt_tick(t); /* step 2: touched 2 ticks ago, alive */
    pull_ok(t, &a, 1, r);
    for (int c = 0; c < D; c++)
        assert_true(r[c] == r0[c] - 0.5f * g[c]);
    for (int i = 0; i < 3; i++)
        spt_tick(t); /* step 5: a untouched for 3 ticks, b for 5 */
    spt_dump d;
    assert_int_equal(spt_dump_fill(t, &d, NULL), PST_OK);
    assert_int_equal(d.n, 0); /* both expired: out of the export */
    spt_dump_fini(&d);
    push_ok(t, &a, 1, g, 0.5f); /* dropped: no live row */
    pull_ok(t, &a, 1, r);       /* a new row again, fresh */
    assert_memory_equal(r, r0, sizeof r);
    spt_stats s;
    spt_stats_get(t, &s);
    assert_true(s.evicted >= 1);
    assert_int_equal(s.dropped, 1);
    /* a, touched at step 5, expires at step 8; the sweep reclaims it within T more ticks */
    for (int i = 0; i < 6; i++)
        spt_tick(t);
    spt_stats_get(t, &s);
    assert_int_equal(s.evicted, 3);
    assert_int_equal(s.rows, 0);
    spt_destroy(t);
}

static void budget5(spt_config *c) { c->max_rows = 5, c->expire_steps = 2; }

static void test_budget(void **state)
{
    (void)state;
    spt_table *t = make(OPT_ADAGRAD, D, budget5);
    uint64_t keys[8] = {10, 11, 12, 13, 14, 15, 16, 17};
    float r[8 * D];
    pull_ok(t, keys, 8, r);
    spt_stats s;
    spt_stats_get(t, &s);
    assert_int_equal(s.rows, 5);
    assert_int_equal(s.refused, 3);
    for (int i = 5 * D; i < 8 * D; i++)
        assert_true(r[i] == 0.0f);
    float g[8 * D];
    for (int i = 0; i < 8 * D; i++)
        g[i] = 1.0f;
    push_ok(t, keys, 8, g, 0.1f);
    spt_stats_get(t, &s);
    assert_int_equal(s.dropped, 3);
    /* once the first rows expire the budget has room again: at step 2 five new keys fit,
     * the last ones after the full reclaim that reaching the budget starts */
    spt_tick(t);
    spt_tick(t);
    uint64_t more[5] = {15, 16, 17, 20, 21};
    pull_ok(t, more, 5, r);
    spt_stats_get(t, &s);
    assert_int_equal(s.refused, 3);
    assert_int_equal(s.rows, 5);
    assert_int_equal(s.admitted, 10);
    assert_int_equal(s.evicted, 5);
    for (int i = 0; i < 5 * D; i++)
        assert_true(r[i] != 0.0f);
    assert_true(s.bytes > 0);
    spt_destroy(t);
}

/* The index under churn (insertions, expiry, backward-shift deletions, growth) against a
 * plain array: sgd with no decay is w - lr*g exactly, so the mirror is exact. */
static void expire2(spt_config *c) { c->expire_steps = 2, c->opt.kind = OPT_SGD; }

static void test_index_churn(void **state)
{
    (void)state;
    enum { U = 3000, B = 400, STEPS = 60 };
    spt_table *t = make(OPT_SGD, D, expire2);
    static float ref[U * D];
    static int64_t last[U];
    static uint64_t keys[B];
    static float rows[B * D], g[B * D];
    for (int k = 0; k < U; k++)
        last[k] = -100;
    uint64_t seed = 3;
    static unsigned char in_batch[U];
    for (int step = 0; step < STEPS; step++) {
        int n = 0;
        memset(in_batch, 0, sizeof in_batch);
        while (n < B) {
            int k = (int)((urand(&seed) + 1.0f) * 0.5f * (float)U) % U;
            if (in_batch[k])
                continue;
            in_batch[k] = 1;
            keys[n++] = (uint64_t)k * 2654435761ULL; /* spread over the id space */
        }
        pull_ok(t, keys, B, rows);
        for (int j = 0; j < B; j++) {
            int k = (int)(keys[j] / 2654435761ULL);
            if (step - last[k] >= 2) { /* new or expired: fresh row */
                rng_state r;
                rng_seed(&r, spt_row_seed(42, keys[j]));
                for (int c = 0; c < D; c++)
                    ref[k * D + c] = 0.05f * (2.0f * rng_uniform(&r) - 1.0f);
            }
            assert_memory_equal(rows + j * D, ref + k * D, D * sizeof(float));
            last[k] = step;
        }
        for (int j = 0; j < B * D; j++)
            g[j] = urand(&seed);
        push_ok(t, keys, B, g, 0.1f);
        for (int j = 0; j < B; j++) {
            int k = (int)(keys[j] / 2654435761ULL);
            for (int c = 0; c < D; c++)
                ref[k * D + c] -= 0.1f * (g[j * D + c] + 0.0f * ref[k * D + c]);
        }
        spt_tick(t);
    }
    spt_stats s;
    spt_stats_get(t, &s);
    assert_true(s.rows <= 4 * B); /* two steps' worth live, two more awaiting the sweep */
    spt_destroy(t);
}

/* Deletions in the middle of probe chains: half the rows expire and are swept while the
 * other half, updated, must still be found (not re-admitted fresh, not duplicated). */
static void test_index_deletions(void **state)
{
    (void)state;
    enum { N = 20000, B = 2000 };
    spt_table *t = make(OPT_SGD, D, expire2);
    static uint64_t keys[N];
    static float init[N * D], rows[B * D], g[B * D];
    for (int i = 0; i < N; i++)
        keys[i] = (uint64_t)i * 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < N; i += B)
        pull_ok(t, keys + i, B, init + i * D);
    spt_tick(t);
    static uint64_t odd[N / 2];
    for (int i = 0; i < N / 2; i++)
        odd[i] = keys[2 * i + 1];
    for (int i = 0; i < B * D; i++)
        g[i] = 1.0f;
    for (int i = 0; i < N / 2; i += B) {
        pull_ok(t, odd + i, B, rows);
        push_ok(t, odd + i, B, g, 0.5f);
    }
    spt_tick(t); /* step 2: the even rows are expired, and the sweep drops half of them */
    spt_stats s;
    spt_stats_get(t, &s);
    assert_true(s.evicted > N / 8);
    for (int i = 0; i < N / 2; i += B) {
        pull_ok(t, odd + i, B, rows);
        for (int j = 0; j < B; j++)
            for (int c = 0; c < D; c++)
                assert_true(rows[j * D + c] == init[(2 * (i + j) + 1) * D + c] - 0.5f);
    }
    spt_stats_get(t, &s);
    assert_int_equal(s.admitted, N);
    spt_dump d;
    assert_int_equal(spt_dump_fill(t, &d, NULL), PST_OK);
    assert_int_equal(d.n, N / 2);
    spt_dump_fini(&d);
    spt_destroy(t);
}

/* ---- owner routing --------------------------------------------------------------------- */

static void test_owner(void **state)
{
    (void)state;
    enum { N = 200000, S = 4 };
    int count[S + 1] = {0};
    int moved = 0;
    for (uint64_t i = 0; i < N; i++) {
        uint64_t key = i; /* sequential ids: the hard case for a naive hash */
        uint32_t o = spt_owner(key, S), o2 = spt_owner(key, S + 1);
        assert_true(o < S && o2 < S + 1);
        assert_int_equal(spt_owner(key, 1), 0);
        count[o]++;
        if (o2 != o) {
            moved++;
            assert_int_equal(o2, S); /* keys move to the new server only */
        }
    }
    for (int s = 0; s < S; s++)
        assert_true(fabs((double)count[s] / N - 1.0 / S) < 0.01);
    assert_true(fabs((double)moved / N - 1.0 / (S + 1)) < 0.01);
    assert_int_equal(spt_owner(12345, 7), spt_owner(12345, 7));
}

/* ---- dump, restore, checkpoint files --------------------------------------------------- */

static void filled(spt_table *t, int nkeys, int steps, uint64_t seed)
{
    uint64_t keys[64];
    float rows[64 * 32], g[64 * 32];
    const int d = spt_dim(t);
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < nkeys; i++)
            keys[i] = (uint64_t)(i * 31 + s % 3) * 1000003ULL + (i == 0 ? UINT64_MAX - 1000 : 0);
        pull_ok(t, keys, (size_t)nkeys, rows);
        for (int j = 0; j < nkeys * d; j++)
            g[j] = urand(&seed);
        push_ok(t, keys, (size_t)nkeys, g, 0.05f);
        spt_tick(t);
    }
}

static void assert_same_dump(const spt_table *a, const spt_table *b)
{
    spt_dump x, y;
    assert_int_equal(spt_dump_fill(a, &x, NULL), PST_OK);
    assert_int_equal(spt_dump_fill(b, &y, NULL), PST_OK);
    assert_int_equal(x.n, y.n);
    assert_int_equal(x.step, y.step);
    assert_int_equal(x.nbuf, y.nbuf);
    size_t rd = x.n * (size_t)x.dim * sizeof(float);
    assert_memory_equal(x.keys, y.keys, x.n * sizeof(uint64_t));
    assert_memory_equal(x.rows, y.rows, rd);
    for (int b2 = 0; b2 < x.nbuf; b2++)
        assert_memory_equal(x.state[b2], y.state[b2], rd);
    assert_memory_equal(x.touched, y.touched, x.n * sizeof(uint32_t));
    assert_int_equal(x.filter_cells, y.filter_cells);
    if (x.filter)
        assert_memory_equal(x.filter, y.filter, x.filter_cells);
    spt_dump_fini(&x);
    spt_dump_fini(&y);
}

static void test_dump_restore(void **state)
{
    (void)state;
    spt_table *a = make(OPT_ADAM, 8, NULL), *b = make(OPT_ADAM, 8, NULL);
    filled(a, 20, 4, 1);
    spt_dump d;
    assert_int_equal(spt_dump_fill(a, &d, NULL), PST_OK);
    for (size_t i = 1; i < d.n; i++)
        assert_true(d.keys[i] > d.keys[i - 1]);
    assert_int_equal(spt_restore(b, &d, NULL), PST_OK);
    assert_same_dump(a, b);
    /* both go on identically */
    filled(a, 20, 2, 9);
    filled(b, 20, 2, 9);
    assert_same_dump(a, b);
    /* a dump that does not fit: refused, table unchanged */
    spt_table *c = make(OPT_ADAM, 4, NULL), *s = make(OPT_SGD, 8, NULL);
    pst_err err = {0};
    assert_int_equal(spt_restore(c, &d, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "dim 8"));
    assert_int_equal(spt_restore(s, &d, &err), PST_ERR_DATA);
    uint64_t k0 = d.keys[0];
    d.keys[0] = d.keys[1];
    assert_int_equal(spt_restore(b, &d, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "ascending"));
    d.keys[0] = k0;
    d.rows[3] = INFINITY;
    assert_int_equal(spt_restore(b, &d, &err), PST_ERR_DATA);
    assert_same_dump(a, b);
    spt_dump_fini(&d);
    spt_destroy(a), spt_destroy(b), spt_destroy(c), spt_destroy(s);
}

static void ftrl_admit(spt_config *c)
{
    opt_config_default(&c->opt, OPT_FTRL);
    c->admit_after = 2;
    c->filter_cells = 1024;
}

static char tmpdir[64];

static void file_path(char *buf, size_t n, const char *name)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/test_sptable.XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
    }
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

static void flip_byte(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, at, at < 0 ? SEEK_END : SEEK_SET), 0);
    int ch = fgetc(f);
    fseek(f, -1, SEEK_CUR);
    fputc(ch ^ 0x40, f);
    fclose(f);
}

static void test_checkpoint_files(void **state)
{
    (void)state;
    char path[128];
    file_path(path, sizeof path, "sparse.safetensors");
    spt_table *a = make(OPT_ADAM, 8, NULL), *f = make(OPT_FTRL, 8, ftrl_admit);
    filled(a, 30, 3, 5);
    filled(f, 10, 4, 6);
    spt_table *a2 = make(OPT_ADAM, 8, NULL), *f2 = make(OPT_FTRL, 8, ftrl_admit);
    ckpt_sparse_table out[2] = {{"emb", a}, {"wide", f}};
    ckpt_sparse_table in[2] = {{"emb", a2}, {"wide", f2}};
    pst_err err = {0};
    if (ckpt_sparse_save(path, out, 2, &err))
        fail_msg("%s", err.msg);
    if (ckpt_sparse_load(path, in, 2, &err))
        fail_msg("%s", err.msg);
    assert_same_dump(a, a2);
    assert_same_dump(f, f2);

    /* mismatches: one line naming file and table, tables unchanged */
    spt_table *sgd = make(OPT_SGD, 8, NULL), *d4 = make(OPT_ADAM, 4, NULL);
    ckpt_sparse_table bad1[1] = {{"emb", sgd}}, bad2[1] = {{"emb", d4}}, bad3[1] = {{"x", a2}};
    assert_int_equal(ckpt_sparse_load(path, bad1, 1, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "table 'emb': optimizer state of adam"));
    assert_int_equal(ckpt_sparse_load(path, bad2, 1, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "dim 8, but the table has dim 4"));
    assert_int_equal(ckpt_sparse_load(path, bad3, 1, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "sparse.x.dim is missing"));
    assert_non_null(strstr(err.msg, path));
    spt_stats st;
    spt_stats_get(sgd, &st);
    assert_int_equal(st.rows, 0);

    /* a flipped byte in the data: refused as corrupted, naming the tensor */
    flip_byte(path, -3);
    spt_table *b = make(OPT_ADAM, 8, NULL);
    filled(b, 4, 1, 1);
    spt_table *b0 = make(OPT_ADAM, 8, NULL);
    filled(b0, 4, 1, 1);
    in[0].table = b;
    assert_int_equal(ckpt_sparse_load(path, in, 2, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "corrupted"));
    assert_non_null(strstr(err.msg, "tensor 'wide."));
    assert_null(strchr(err.msg, '\n'));
    assert_same_dump(b, b0);
    /* truncated */
    assert_int_equal(truncate(path, 100), 0);
    assert_int_equal(ckpt_sparse_load(path, in, 1, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, path));
    assert_same_dump(b, b0);
    /* bad names */
    ckpt_sparse_table badname[1] = {{"a.b", a}};
    assert_int_equal(ckpt_sparse_save(path, badname, 1, &err), PST_ERR_ARG);
    unlink(path);
    rmdir(tmpdir);
    spt_destroy(a), spt_destroy(f), spt_destroy(a2), spt_destroy(f2);
    spt_destroy(sgd), spt_destroy(d4), spt_destroy(b), spt_destroy(b0);
}

/* ---- merging servers' files (ckpt_sparse_merge) ------------------------------------------ */

/* Steps of one table "all" holding every key and of two "servers" holding the keys
 * spt_owner gives them, with the same pulls, gradients and ticks. */
static void servers_and_one(spt_table *all, spt_table *srv[2], int steps, uint64_t seed)
{
    enum { N = 40 };
    uint64_t keys[N], part[2][N];
    float rows[N * 8], g[N * 8], pg[2][N * 8];
    const int d = spt_dim(all);
    for (int s = 0; s < steps; s++) {
        size_t np[2] = {0, 0};
        int n = N - 10 * (s % 2); /* not every key every step: stamps differ */
        for (int i = 0; i < n; i++)
            keys[i] = (uint64_t)(i * 7919 + 3) * 2654435761ULL;
        for (int j = 0; j < n * d; j++)
            g[j] = urand(&seed);
        for (int i = 0; i < n; i++) {
            uint32_t o = spt_owner(keys[i], 2);
            memcpy(pg[o] + np[o] * (size_t)d, g + (size_t)i * d, (size_t)d * sizeof(float));
            part[o][np[o]++] = keys[i];
        }
        pull_ok(all, keys, (size_t)n, rows);
        push_ok(all, keys, (size_t)n, g, 0.05f);
        spt_tick(all);
        for (int o = 0; o < 2; o++) {
            pull_ok(srv[o], part[o], np[o], rows);
            push_ok(srv[o], part[o], np[o], pg[o], 0.05f);
            spt_tick(srv[o]);
        }
    }
}

static void save_ok(const char *path, const ckpt_sparse_table *t, int n)
{
    pst_err err = {0};
    if (ckpt_sparse_save(path, t, n, &err))
        fail_msg("%s", err.msg);
}

static void test_merge_files(void **state)
{
    (void)state;
    tmpdir[0] = '\0';
    char p0[128], p1[128], pm[128], bad[128];
    file_path(p0, sizeof p0, "tables-server-0.safetensors");
    file_path(p1, sizeof p1, "tables-server-1.safetensors");
    file_path(pm, sizeof pm, "merged.safetensors");
    file_path(bad, sizeof bad, "bad.safetensors");
    spt_table *all = make(OPT_ADAM, 8, NULL),
              *srv[2] = {make(OPT_ADAM, 8, NULL), make(OPT_ADAM, 8, NULL)};
    spt_table *wall = make(OPT_FTRL, 4, ftrl_admit),
              *wsrv[2] = {make(OPT_FTRL, 4, ftrl_admit), make(OPT_FTRL, 4, ftrl_admit)};
    servers_and_one(all, srv, 5, 11);
    servers_and_one(wall, wsrv, 4, 12);
    for (int o = 0; o < 2; o++) {
        ckpt_sparse_table t[2] = {{"emb", srv[o]}, {"wide", wsrv[o]}};
        save_ok(o ? p1 : p0, t, 2);
    }
    const char *in[2] = {p0, p1};
    pst_err err = {0};
    if (ckpt_sparse_merge(pm, in, 2, &err))
        fail_msg("%s", err.msg);
    /* The union is the one table's: rows, optimizer state, stamps, step. */
    spt_table *back = make(OPT_ADAM, 8, NULL), *wback = make(OPT_FTRL, 4, ftrl_admit);
    ckpt_sparse_table tb[2] = {{"emb", back}, {"wide", wback}};
    if (ckpt_sparse_load(pm, tb, 2, &err))
        fail_msg("%s", err.msg);
    assert_same_dump(all, back);
    /* The sketch: the servers' cell-wise maximum, over the counts of one process's. */
    spt_dump w, a, b, one;
    assert_int_equal(spt_dump_fill(wback, &w, NULL), PST_OK);
    assert_int_equal(spt_dump_fill(wsrv[0], &a, NULL), PST_OK);
    assert_int_equal(spt_dump_fill(wsrv[1], &b, NULL), PST_OK);
    assert_int_equal(spt_dump_fill(wall, &one, NULL), PST_OK);
    assert_int_equal(w.n, a.n + b.n);
    assert_non_null(w.filter);
    assert_int_equal(w.filter_cells, a.filter_cells);
    for (uint64_t c = 0; c < w.filter_cells; c++)
        assert_int_equal(w.filter[c], a.filter[c] > b.filter[c] ? a.filter[c] : b.filter[c]);
    spt_dump_fini(&w), spt_dump_fini(&a), spt_dump_fini(&b), spt_dump_fini(&one);

    /* Refusals: one line naming the file, nothing written. */
    const char *dup[2] = {p0, p0};
    assert_int_equal(ckpt_sparse_merge(bad, dup, 2, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "is also in"));
    assert_non_null(strstr(err.msg, p0));
    const char *gone[2] = {p0, bad};
    assert_int_equal(ckpt_sparse_merge(pm, gone, 2, &err), PST_ERR_IO);
    assert_non_null(strstr(err.msg, bad));
    assert_int_not_equal(access(bad, F_OK), 0);
    spt_table *d4 = make(OPT_ADAM, 4, NULL), *sgd = make(OPT_SGD, 8, NULL);
    filled(d4, 3, 1, 1);
    filled(sgd, 3, 1, 1);
    ckpt_sparse_table other[2] = {{"emb", d4}, {"wide", wsrv[1]}};
    save_ok(p1, other, 2);
    assert_int_equal(ckpt_sparse_merge(bad, in, 2, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "table 'emb': dim 4, but"));
    other[0].table = sgd;
    save_ok(p1, other, 2);
    assert_int_equal(ckpt_sparse_merge(bad, in, 2, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "optimizer sgd, but"));
    save_ok(p1, other, 1);
    assert_int_equal(ckpt_sparse_merge(bad, in, 2, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "holds table 'wide'"));
    assert_null(strchr(err.msg, '\n'));
    assert_int_not_equal(access(bad, F_OK), 0);
    /* One file: itself. */
    if (ckpt_sparse_merge(bad, in, 1, &err))
        fail_msg("%s", err.msg);
    ckpt_sparse_table t0[2] = {{"emb", back}, {"wide", wback}};
    if (ckpt_sparse_load(bad, t0, 2, &err))
        fail_msg("%s", err.msg);
    assert_same_dump(srv[0], back);
    unlink(p0), unlink(p1), unlink(pm), unlink(bad);
    rmdir(tmpdir);
    tmpdir[0] = '\0';
    spt_destroy(all), spt_destroy(srv[0]), spt_destroy(srv[1]), spt_destroy(back);
    spt_destroy(wall), spt_destroy(wsrv[0]), spt_destroy(wsrv[1]), spt_destroy(wback);
    spt_destroy(d4), spt_destroy(sgd);
}

/* ---- the file tests/check_sparse_numpy.py reads ---------------------------------------- */

static const uint64_t KEYS[] = {3, 17, 1099511627777ULL, 9223372036854775813ULL,
                                18446744073709551615ULL};

static int write_numpy_file(const char *path)
{
    spt_config c;
    spt_config_default(&c, 4);
    c.init = SPT_INIT_ZEROS;
    opt_config_default(&c.opt, OPT_SGD);
    pst_err err = {0};
    spt_table *t = spt_create(&c, &err);
    enum { N = sizeof KEYS / sizeof KEYS[0] };
    uint64_t keys[N];
    float rows[N * 4], g[N * 4];
    for (int i = 0; i < N; i++) {
        keys[i] = KEYS[N - 1 - i]; /* pulled in descending order, stored ascending */
        for (int c2 = 0; c2 < 4; c2++)
            g[i * 4 + c2] = -((float)(N - 1 - i) + 0.25f * (float)c2); /* w = 0 - 1 * g */
    }
    int rc = t ? PST_OK : 1;
    if (!rc && !(rc = spt_pull(t, keys, N, rows, &err)) &&
        !(rc = spt_push(t, keys, N, g, 1.0f, &err))) {
        spt_tick(t);
        ckpt_sparse_table tab = {"emb", t};
        rc = ckpt_sparse_save(path, &tab, 1, &err);
    }
    if (rc)
        fprintf(stderr, "test_sptable --write: %s\n", err.msg);
    spt_destroy(t);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write") == 0)
        return write_numpy_file(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_check),
        cmocka_unit_test(test_init_deterministic),
        cmocka_unit_test(test_rules_lazy_against_reference),
        cmocka_unit_test(test_untouched_rows_unchanged),
        cmocka_unit_test(test_ftrl_l1_zeros),
        cmocka_unit_test(test_admission),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_index_churn),
        cmocka_unit_test(test_index_deletions),
        cmocka_unit_test(test_owner),
        cmocka_unit_test(test_dump_restore),
        cmocka_unit_test(test_checkpoint_files),
        cmocka_unit_test(test_merge_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
