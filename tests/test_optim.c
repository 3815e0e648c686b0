/* tests/test_optim.c -- core/optim.c against a plain double-precision reference written
 * from the formulas in optim.h, plus state, schedules, clipping and config checks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/optim.h"

#define NKINDS (OPT_FTRL + 1)

/* Deterministic uniform values in [-1, 1) (xorshift64*), so failures reproduce. */
static float urand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    uint64_t x = *s * 0x2545F4914F6CDD1DULL;
    return (float)((double)(x >> 40) / 8388608.0 - 1.0);
}

/* ---- reference: one update of the rule in double, element by element ------------------ */

/* s0, s1: the rule's state (v / G / E, or m and v for adam); t: the step (>= 1). */
static void ref_update(const opt_config *c, double *w, const double *g, double *s0, double *s1,
                       size_t n, double lr, int64_t t)
{
    const double wd = c->weight_decay, mu = c->momentum, eps = c->eps;
    const double b1 = c->beta1, b2 = c->beta2, rho = c->rho;
    for (size_t i = 0; i < n; i++) {
        double gp = g[i] + wd * w[i]; /* L2 decay folded into the gradient */
        switch (c->kind) {
        case OPT_SGD: w[i] -= lr * gp; break;
        case OPT_MOMENTUM:
            s0[i] = mu * s0[i] + gp;
            w[i] -= lr * s0[i];
            break;
        case OPT_NESTEROV:
            s0[i] = mu * s0[i] + gp;
            w[i] -= lr * (gp + mu * s0[i]);
            break;
        case OPT_ADAGRAD:
            s0[i] += gp * gp;
            w[i] -= lr * gp / (sqrt(s0[i]) + eps);
            break;
        case OPT_RMSPROP:
            s0[i] = rho * s0[i] + (1.0 - rho) * gp * gp;
            w[i] -= lr * gp / (sqrt(s0[i]) + eps);
            break;
        case OPT_ADAM:
        case OPT_ADAMW: {
            if (c->kind == OPT_ADAMW)
                gp = g[i]; /* decay is decoupled, applied to w below */
            s0[i] = b1 * s0[i] + (1.0 - b1) * gp;
            s1[i] = b2 * s1[i] + (1.0 - b2) * gp * gp;
            double mhat = s0[i] / (1.0 - pow(b1, (double)t));
            double vhat = s1[i] / (1.0 - pow(b2, (double)t));
            double step = lr * mhat / (sqrt(vhat) + eps);
            if (c->kind == OPT_ADAMW)
                w[i] = w[i] - lr * wd * w[i] - step;
            else
                w[i] -= step;
            break;
        }
        case OPT_FTRL: {
            /* McMahan et al. 2013, Algorithm 1 (alpha = lr; s0 = z, s1 = n); no weight decay */
            double gi = g[i], a = lr, l1 = c->l1, l2 = c->l2, beta = c->ftrl_beta;
            double sigma = (sqrt(s1[i] + gi * gi) - sqrt(s1[i])) / a;
            s0[i] += gi - sigma * w[i];
            s1[i] += gi * gi;
            w[i] = fabs(s0[i]) <= l1
                       ? 0.0
                       : -(s0[i] - (s0[i] < 0 ? -l1 : l1)) / ((beta + sqrt(s1[i])) / a + l2);
            break;
        }
        }
    }
}

/* |got - want| <= rel * max(1, max |want|): errors measured against the array's scale, so
 * entries that pass through 0 (momentum buffers) do not demand impossible precision. */
static void assert_close_f(const float *got, const double *want, size_t n, double rel,
                           const char *what, opt_kind k, size_t elems)
{
    double scale = 1.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(want[i]) > scale)
            scale = fabs(want[i]);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= rel * scale))
            fail_msg("%s %s n=%zu: element %zu got %.9g want %.9g (diff %.3g)", opt_kind_name(k),
                     what, elems, i, (double)got[i], want[i], d);
    }
}

/* Five ticks of opt_apply against the reference, w and state compared after each. */
static void check_against_reference(opt_kind kind, size_t n, float wd, uint64_t seed)
{
    opt_config c;
    opt_config_default(&c, kind);
    c.lr = 0.05f; /* large enough that every term of the rule moves w well past 1e-6 */
    c.weight_decay = wd;
    assert_int_equal(opt_config_check(&c, NULL), PST_OK);

    opt_state *st = opt_state_create(&c, n, NULL);
    assert_non_null(st);
    float *w = malloc(n * sizeof *w), *g = malloc(n * sizeof *g), *g_copy = malloc(n * sizeof *g);
    double *rw = calloc(n, sizeof *rw), *rg = calloc(n, sizeof *rg);
    double *rs0 = calloc(n, sizeof *rs0), *rs1 = calloc(n, sizeof *rs1);
    assert_true(w && g && g_copy && rw && rg && rs0 && rs1);
    for (size_t i = 0; i < n; i++) {
        w[i] = urand(&seed);
        rw[i] = w[i];
    }
    for (int step = 0; step < 5; step++) {
        for (size_t i = 0; i < n; i++) {
            g[i] = urand(&seed);
            rg[i] = g[i];
        }
        memcpy(g_copy, g, n * sizeof *g);
        opt_tick(st);
        float lr = opt_lr_at(&c, step);
        opt_apply(&c, st, w, g, 0, n, lr);
        ref_update(&c, rw, rg, rs0, rs1, n, lr, opt_state_step(st));
        /* The caller's gradient is read only, also when decay is folded into it. */
        assert_memory_equal(g, g_copy, n * sizeof *g);
        assert_close_f(w, rw, n, 1e-6, "w", kind, n);
        if (opt_state_nbuf(st) >= 1)
            assert_close_f(opt_state_buf(st, 0), rs0, n, 1e-6, "state 0", kind, n);
        if (opt_state_nbuf(st) >= 2)
            assert_close_f(opt_state_buf(st, 1), rs1, n, 1e-6, "state 1", kind, n);
    }
    assert_int_equal(opt_state_step(st), 5);
    opt_state_destroy(st);
    free(w), free(g), free(g_copy), free(rw), free(rg), free(rs0), free(rs1);
}

static void test_rules_match_reference(void **state)
{
    (void)state;
    const size_t sizes[] = {7, 1000}; /* all-tail and vector body + chunks + tail */
    const float decays[] = {0.0f, 0.05f};
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    for (int k = 0; k < NKINDS; k++)
        for (int si = 0; si < 2; si++)
            for (int di = 0; di < 2; di++)
                check_against_reference((opt_kind)k, sizes[si], decays[di], seed++);
}

/* Two disjoint ranges with different lr in one tick (per-layer multipliers) update exactly
 * as two independent states over the two slices would. */
static void test_disjoint_ranges(void **state)
{
    (void)state;
    enum { N = 1000, SPLIT = 389 };
    const float lr_a = 0.03f, lr_b = 0.007f;
    for (int k = 0; k < NKINDS; k++) {
        opt_config c;
        opt_config_default(&c, (opt_kind)k);
        c.weight_decay = 0.01f;
        opt_state *whole = opt_state_create(&c, N, NULL);
        opt_state *sa = opt_state_create(&c, SPLIT, NULL);
        opt_state *sb = opt_state_create(&c, N - SPLIT, NULL);
        assert_true(whole && sa && sb);
        float w1[N], w2[N], g[N];
        uint64_t seed = 42 + (uint64_t)k;
        for (int i = 0; i < N; i++)
            w1[i] = w2[i] = urand(&seed);
        for (int step = 0; step < 3; step++) {
            for (int i = 0; i < N; i++)
                g[i] = urand(&seed);
            opt_tick(whole);
            opt_apply(&c, whole, w1, g, 0, SPLIT, lr_a);
            opt_apply(&c, whole, w1 + SPLIT, g + SPLIT, SPLIT, N - SPLIT, lr_b);
            opt_tick(sa);
            opt_apply(&c, sa, w2, g, 0, SPLIT, lr_a);
            opt_tick(sb);
            opt_apply(&c, sb, w2 + SPLIT, g + SPLIT, 0, N - SPLIT, lr_b);
        }
        /* Elementwise rules: the same float operations on each element either way. */
        for (int i = 0; i < N; i++)
            assert_float_equal(w1[i], w2[i], 1e-7);
        for (int b = 0; b < opt_state_nbuf(whole); b++) {
            const float *bw = opt_state_buf(whole, b);
            const float *ba = opt_state_buf(sa, b), *bb = opt_state_buf(sb, b);
            for (int i = 0; i < N; i++)
                assert_float_equal(bw[i], (i < SPLIT ? ba[i] : bb[i - SPLIT]), 1e-7);
        }
        /* And the two lr really were used: the split state differs from one lr for all. */
        opt_state *one = opt_state_create(&c, N, NULL);
        float w3[N];
        seed = 42 + (uint64_t)k;
        for (int i = 0; i < N; i++)
            w3[i] = urand(&seed);
        for (int step = 0; step < 3; step++) {
            for (int i = 0; i < N; i++)
                g[i] = urand(&seed);
            opt_tick(one);
            opt_apply(&c, one, w3, g, 0, N, lr_a);
        }
        assert_float_equal(w3[0], w1[0], 1e-7);
        assert_true(fabsf(w3[N - 1] - w1[N - 1]) > 1e-4f);
        opt_state_destroy(one);
        opt_state_destroy(whole);
        opt_state_destroy(sa);
        opt_state_destroy(sb);
    }
}

/* At t = 1, m = (1-b1) g and v = (1-b2) g^2, so mhat = g, vhat = g^2 and the step is
 * lr * g / (|g| + eps) ~ lr * sign(g) whatever |g| is. Without the correction it would be
 * lr * 0.1 / sqrt(0.001) ~ 3.16 lr. */
static void test_adam_bias_correction(void **state)
{
    (void)state;
    const float gs[] = {1e-3f, -0.02f, 0.5f, -3.0f, 40.0f};
    enum { N = sizeof gs / sizeof gs[0] };
    for (int k = OPT_ADAM; k <= OPT_ADAMW; k++) {
        opt_config c;
        opt_config_default(&c, (opt_kind)k);
        c.weight_decay = 0.0f;
        opt_state *st = opt_state_create(&c, N, NULL);
        float w[N] = {0};
        opt_tick(st);
        opt_apply(&c, st, w, gs, 0, N, c.lr);
        for (int i = 0; i < N; i++) {
            float expect = gs[i] > 0 ? -c.lr : c.lr;
            assert_float_equal(w[i], expect, 1e-4 * c.lr);
        }
        /* Far into training the corrections are ~1: the same first moments now give the
         * uncorrected 0.1 / sqrt(0.001) = 3.1623 lr, so st->t is what the scalars use. */
        opt_state *late = opt_state_create(&c, N, NULL);
        opt_state_set_step(late, 1000000);
        float w2[N] = {0};
        opt_apply(&c, late, w2, gs, 0, N, c.lr);
        for (int i = 0; i < N; i++) {
            double a = fabs((double)gs[i]);
            double m = (1.0 - (double)c.beta1) * a, v = (1.0 - (double)c.beta2) * a * a;
            double expect = c.lr * m / (sqrt(v) + (double)c.eps); /* ~3.1623 lr */
            assert_float_equal(fabsf(w2[i]), expect, 1e-5 * c.lr);
        }
        opt_state_destroy(late);
        opt_state_destroy(st);
    }
}

/* AdamW's decay does not pass through the moments: with g = 0 the moments stay 0 and w
 * shrinks by exactly lr*wd*w; Adam's L2 decay instead enters g' and gives a full
 * lr-sized step at t = 1. */
static void test_adamw_decoupled(void **state)
{
    (void)state;
    float g[2] = {0.0f, 0.0f};
    opt_config c;
    opt_config_default(&c, OPT_ADAMW);
    c.weight_decay = 0.1f;
    c.lr = 0.01f;
    opt_state *st = opt_state_create(&c, 2, NULL);
    float w[2] = {2.0f, -1.0f};
    opt_tick(st);
    opt_apply(&c, st, w, g, 0, 2, c.lr);
    assert_float_equal(w[0], 2.0f - 0.01f * 0.1f * 2.0f, 1e-7);
    assert_float_equal(w[1], -1.0f + 0.01f * 0.1f * 1.0f, 1e-7);
    assert_float_equal(opt_state_buf(st, 0)[0], 0.0f, 0.0);
    assert_float_equal(opt_state_buf(st, 1)[0], 0.0f, 0.0);
    opt_state_destroy(st);

    c.kind = OPT_ADAM;
    st = opt_state_create(&c, 2, NULL);
    float w2[2] = {2.0f, -1.0f};
    opt_tick(st);
    opt_apply(&c, st, w2, g, 0, 2, c.lr);
    assert_float_equal(w2[0], 2.0f - 0.01f, 1e-6); /* g' = 0.2: step lr * sign(g') */
    assert_float_equal(w2[1], -1.0f + 0.01f, 1e-6);
    opt_state_destroy(st);
}

static void test_state_layout_and_steps(void **state)
{
    (void)state;
    const int nbuf[NKINDS] = {0, 1, 1, 1, 1, 2, 2, 2};
    for (int k = 0; k < NKINDS; k++) {
        opt_config c;
        opt_config_default(&c, (opt_kind)k);
        pst_err err = {0};
        opt_state *st = opt_state_create(&c, 37, &err);
        assert_non_null(st);
        assert_int_equal(opt_state_len(st), 37);
        assert_int_equal(opt_state_nbuf(st), nbuf[k]);
        assert_int_equal(opt_state_step(st), 0);
        for (int b = 0; b < nbuf[k]; b++) {
            float *buf = opt_state_buf(st, b);
            assert_int_equal((uintptr_t)buf % 64, 0);
            for (int i = 0; i < 37; i++)
                assert_float_equal(buf[i], 0.0f, 0.0);
        }
        opt_tick(st);
        opt_tick(st);
        opt_tick(st);
        assert_int_equal(opt_state_step(st), 3);
        opt_state_set_step(st, 10);
        opt_tick(st);
        assert_int_equal(opt_state_step(st), 11);
        opt_state_destroy(st);

        /* An empty slice is valid (a server with no keys of this kind). */
        st = opt_state_create(&c, 0, NULL);
        assert_non_null(st);
        assert_int_equal(opt_state_len(st), 0);
        opt_tick(st);
        opt_apply(&c, st, NULL, NULL, 0, 0, c.lr);
        opt_state_destroy(st);
    }
    opt_state_destroy(NULL);

    opt_config bad;
    opt_config_default(&bad, OPT_SGD);
    bad.kind = (opt_kind)99;
    pst_err err = {0};
    assert_null(opt_state_create(&bad, 10, &err));
    assert_int_not_equal(err.code, PST_OK);
}

static void test_defaults(void **state)
{
    (void)state;
    const float lr[NKINDS] = {0.01f, 0.01f, 0.01f, 0.01f, 0.001f, 0.001f, 0.001f, 0.1f};
    for (int k = 0; k < NKINDS; k++) {
        opt_config c;
        opt_config_default(&c, (opt_kind)k);
        assert_int_equal(c.kind, k);
        assert_float_equal(c.lr, lr[k], 0.0);
        assert_float_equal(c.momentum, 0.9f, 0.0);
        assert_float_equal(c.beta1, 0.9f, 0.0);
        assert_float_equal(c.beta2, 0.999f, 0.0);
        assert_float_equal(c.rho, 0.9f, 0.0);
        assert_float_equal(c.eps, k == OPT_ADAGRAD ? 1e-10f : 1e-8f, 0.0);
        assert_float_equal(c.weight_decay, k == OPT_ADAMW ? 0.01f : 0.0f, 0.0);
        assert_float_equal(c.clip_norm, 0.0f, 0.0);
        assert_int_equal(c.sched.kind, OPT_SCHED_CONSTANT);
        assert_int_equal(c.sched.warmup_steps, 0);
        assert_int_equal(opt_config_check(&c, NULL), PST_OK);
    }
    assert_string_equal(opt_kind_name(OPT_SGD), "sgd");
    assert_string_equal(opt_kind_name(OPT_NESTEROV), "nesterov");
    assert_string_equal(opt_kind_name(OPT_ADAMW), "adamw");
    assert_string_equal(opt_kind_name(OPT_FTRL), "ftrl");
    assert_string_equal(opt_kind_name((opt_kind)99), "unknown");
}

static void test_lr_schedules(void **state)
{
    (void)state;
    opt_config c;
    opt_config_default(&c, OPT_SGD);
    c.lr = 0.1f;

    /* constant */
    assert_float_equal(opt_lr_at(&c, 0), 0.1f, 0.0);
    assert_float_equal(opt_lr_at(&c, 123456), 0.1f, 0.0);

    /* warmup 4 (constant): 0.1 * (t+1)/4 = 0.025, 0.05, 0.075, 0.1, then 0.1 */
    c.sched.warmup_steps = 4;
    assert_float_equal(opt_lr_at(&c, 0), 0.025f, 1e-8);
    assert_float_equal(opt_lr_at(&c, 1), 0.05f, 1e-8);
    assert_float_equal(opt_lr_at(&c, 2), 0.075f, 1e-8);
    assert_float_equal(opt_lr_at(&c, 3), 0.1f, 1e-8);
    assert_float_equal(opt_lr_at(&c, 4), 0.1f, 1e-8);

    /* step, gamma 0.5, step_size 10: 0.1 for t 0..9, 0.05 for 10..19, 0.025 at 25,
     * 0.0125 at 30 */
    c.sched.kind = OPT_SCHED_STEP;
    c.sched.warmup_steps = 0;
    c.sched.gamma = 0.5f;
    c.sched.step_size = 10;
    assert_int_equal(opt_config_check(&c, NULL), PST_OK);
    assert_float_equal(opt_lr_at(&c, 0), 0.1f, 1e-8);
    assert_float_equal(opt_lr_at(&c, 9), 0.1f, 1e-8);
    assert_float_equal(opt_lr_at(&c, 10), 0.05f, 1e-8);
    assert_float_equal(opt_lr_at(&c, 25), 0.025f, 1e-8);
    assert_float_equal(opt_lr_at(&c, 30), 0.0125f, 1e-8);
    /* with warmup 5 the steps count from the end of warmup: t' = t - 5 */
    c.sched.warmup_steps = 5;
    assert_float_equal(opt_lr_at(&c, 0), 0.02f, 1e-8);  /* 0.1 * 1/5 */
    assert_float_equal(opt_lr_at(&c, 14), 0.1f, 1e-8);  /* t' = 9 */
    assert_float_equal(opt_lr_at(&c, 15), 0.05f, 1e-8); /* t' = 10 */

    /* cosine, lr 0.1 -> min_lr 0.01 over total 100:
     *   t = 0:   0.1
     *   t = 25:  0.01 + 0.09 * (1 + cos(pi/4)) / 2 = 0.01 + 0.045 * 1.70710678 = 0.08681981
     *   t = 50:  0.01 + 0.09 * (1 + 0) / 2 = 0.055
     *   t = 75:  0.01 + 0.045 * (1 - 0.70710678) = 0.02318019
     *   t >= 100: 0.01 */
    c.sched.kind = OPT_SCHED_COSINE;
    c.sched.warmup_steps = 0;
    c.sched.total_steps = 100;
    c.sched.min_lr = 0.01f;
    assert_int_equal(opt_config_check(&c, NULL), PST_OK);
    assert_float_equal(opt_lr_at(&c, 0), 0.1f, 1e-7);
    assert_float_equal(opt_lr_at(&c, 25), 0.08681981f, 1e-7);
    assert_float_equal(opt_lr_at(&c, 50), 0.055f, 1e-7);
    assert_float_equal(opt_lr_at(&c, 75), 0.02318019f, 1e-7);
    assert_float_equal(opt_lr_at(&c, 100), 0.01f, 1e-8);
    assert_float_equal(opt_lr_at(&c, 5000), 0.01f, 1e-8);
    /* cosine with warmup 10, total 110 (warmup included): 0.01 at t=0 (0.1 * 1/10), 0.1 at
     * t=9 and t=10 (t' = 0), 0.055 at t=60 (t' = 50 of T' = 100), 0.01 from t=110 on */
    c.sched.warmup_steps = 10;
    c.sched.total_steps = 110;
    assert_float_equal(opt_lr_at(&c, 0), 0.01f, 1e-8);
    assert_float_equal(opt_lr_at(&c, 9), 0.1f, 1e-7);
    assert_float_equal(opt_lr_at(&c, 10), 0.1f, 1e-7);
    assert_float_equal(opt_lr_at(&c, 60), 0.055f, 1e-7);
    assert_float_equal(opt_lr_at(&c, 110), 0.01f, 1e-8);
}

static void test_clip_global_norm(void **state)
{
    (void)state;
    /* ||(3, 4)|| = 5 */
    float g[2] = {3.0f, 4.0f};
    assert_float_equal(opt_clip_global_norm(g, 2, 10.0f), 5.0f, 1e-6);
    assert_float_equal(g[0], 3.0f, 0.0); /* below the threshold: untouched */
    assert_float_equal(g[1], 4.0f, 0.0);
    assert_float_equal(opt_clip_global_norm(g, 2, 0.0f), 5.0f, 1e-6); /* measure only */
    assert_float_equal(g[0], 3.0f, 0.0);
    assert_float_equal(opt_clip_global_norm(g, 2, 1.0f), 5.0f, 1e-6);
    assert_float_equal(g[0], 0.6f, 1e-7);
    assert_float_equal(g[1], 0.8f, 1e-7);

    /* n = 1003 (unrolled body and tail): g_i = (-1)^i * 2, ||g|| = 2 sqrt(1003) = 63.34035 */
    enum { N = 1003 };
    float h[N];
    for (int i = 0; i < N; i++)
        h[i] = i % 2 ? -2.0f : 2.0f;
    assert_float_equal(opt_clip_global_norm(h, N, 4.0f), 2.0 * sqrt(1003.0), 1e-4);
    double ss = 0.0;
    for (int i = 0; i < N; i++)
        ss += (double)h[i] * h[i];
    assert_float_equal(sqrt(ss), 4.0, 1e-5);
    assert_true(h[0] > 0 && h[1] < 0); /* direction kept */
    assert_float_equal(opt_clip_global_norm(NULL, 0, 1.0f), 0.0f, 0.0);
}

/* Sets one field through mod, runs the check and expects the error to name the field. */
static void expect_config_error(opt_kind kind, void (*mod)(opt_config *), const char *field,
                                const char *value)
{
    opt_config c;
    opt_config_default(&c, kind);
    mod(&c);
    pst_err err = {0};
    assert_int_equal(opt_config_check(&c, &err), PST_ERR_CONFIG);
    assert_int_equal(err.code, PST_ERR_CONFIG);
    if (strstr(err.msg, field) != err.msg)
        fail_msg("message '%s' does not start with '%s'", err.msg, field);
    if (value && !strstr(err.msg, value))
        fail_msg("message '%s' does not show the value '%s'", err.msg, value);
}

static void m_lr_neg(opt_config *c) { c->lr = -1.0f; }
static void m_lr_nan(opt_config *c) { c->lr = NAN; }
static void m_mom_one(opt_config *c) { c->momentum = 1.0f; }
static void m_mom_neg(opt_config *c) { c->momentum = -0.5f; }
static void m_beta1(opt_config *c) { c->beta1 = 1.5f; }
static void m_beta2(opt_config *c) { c->beta2 = 1.0f; }
static void m_rho(opt_config *c) { c->rho = -0.1f; }
static void m_eps(opt_config *c) { c->eps = 0.0f; }
static void m_wd(opt_config *c) { c->weight_decay = -0.25f; }
static void m_clip(opt_config *c) { c->clip_norm = -1.0f; }
static void m_warmup(opt_config *c) { c->sched.warmup_steps = -3; }
static void m_step_size(opt_config *c)
{
    c->sched.kind = OPT_SCHED_STEP;
    c->sched.step_size = 0;
}
static void m_gamma(opt_config *c)
{
    c->sched.kind = OPT_SCHED_STEP;
    c->sched.gamma = 0.0f;
}
static void m_total(opt_config *c)
{
    c->sched.kind = OPT_SCHED_COSINE;
    c->sched.total_steps = -1;
}
static void m_min_lr(opt_config *c)
{
    c->sched.kind = OPT_SCHED_COSINE;
    c->sched.total_steps = 100;
    c->sched.min_lr = 1.0f; /* above lr */
}
static void m_kind(opt_config *c) { c->kind = (opt_kind)42; }
static void m_sched_kind(opt_config *c) { c->sched.kind = (opt_sched_kind)7; }

static void test_config_check(void **state)
{
    (void)state;
    expect_config_error(OPT_SGD, m_lr_neg, "optimizer.lr:", "-1");
    expect_config_error(OPT_ADAM, m_lr_nan, "optimizer.lr:", NULL);
    expect_config_error(OPT_MOMENTUM, m_mom_one, "optimizer.momentum:", "1");
    expect_config_error(OPT_NESTEROV, m_mom_neg, "optimizer.momentum:", "-0.5");
    expect_config_error(OPT_ADAM, m_beta1, "optimizer.beta1:", "1.5");
    expect_config_error(OPT_ADAMW, m_beta2, "optimizer.beta2:", "1");
    expect_config_error(OPT_RMSPROP, m_rho, "optimizer.rho:", "-0.1");
    expect_config_error(OPT_ADAGRAD, m_eps, "optimizer.eps:", "0");
    expect_config_error(OPT_SGD, m_wd, "optimizer.weight_decay:", "-0.25");
    expect_config_error(OPT_SGD, m_clip, "optimizer.clip_norm:", "-1");
    expect_config_error(OPT_SGD, m_warmup, "optimizer.warmup_steps:", "-3");
    expect_config_error(OPT_SGD, m_step_size, "optimizer.step_size:", "0");
    expect_config_error(OPT_SGD, m_gamma, "optimizer.gamma:", "0");
    expect_config_error(OPT_SGD, m_total, "optimizer.total_steps:", "-1");
    expect_config_error(OPT_SGD, m_min_lr, "optimizer.min_lr:", "1");
    expect_config_error(OPT_SGD, m_kind, "optimizer.name:", "42");
    expect_config_error(OPT_SGD, m_sched_kind, "optimizer.schedule:", "7");

    /* The exact wording for the common case. */
    opt_config c;
    opt_config_default(&c, OPT_SGD);
    c.lr = -1.0f;
    pst_err err = {0};
    opt_config_check(&c, &err);
    assert_string_equal(err.msg, "optimizer.lr: must be > 0, got -1");

    /* Fields a kind does not use are not its concern. */
    opt_config_default(&c, OPT_ADAM);
    c.momentum = 1.5f;
    assert_int_equal(opt_config_check(&c, NULL), PST_OK);
    opt_config_default(&c, OPT_SGD);
    c.beta2 = 2.0f;
    c.eps = 0.0f;
    assert_int_equal(opt_config_check(&c, NULL), PST_OK);
}

/* opt_apply_groups equals one opt_apply per group with lr * lr_mult, leaves frozen ranges
 * (weights and moments) untouched, and with a sub-range (a server shard) updates only the
 * part of each group inside it. Every rule, two steps (the moments carry over). */
static void test_apply_groups(void **state)
{
    (void)state;
    enum { N = 40 };
    /* [0, 10) x1, [10, 22) frozen, [22, 30) x2.5, [30, 40) x0.5 */
    const opt_group gr[] = {{0, 10, 1.0f}, {10, 12, 0.0f}, {22, 8, 2.5f}, {30, 10, 0.5f}};
    for (int k = 0; k < NKINDS; k++) {
        opt_config c;
        opt_config_default(&c, (opt_kind)k);
        c.weight_decay = 0.01f; /* frozen must mean no decay either */
        opt_state *a = opt_state_create(&c, N, NULL), *b = opt_state_create(&c, N, NULL);
        opt_state *sub = opt_state_create(&c, N, NULL);
        assert_non_null(a);
        assert_non_null(b);
        assert_non_null(sub);
        float wa[N], wb[N], ws[N], g[N], w0[N];
        uint64_t seed = 77 + (uint64_t)k;
        for (int i = 0; i < N; i++)
            w0[i] = wa[i] = wb[i] = ws[i] = urand(&seed);
        for (int step = 0; step < 2; step++) {
            for (int i = 0; i < N; i++)
                g[i] = urand(&seed);
            const float lr = 0.05f;
            opt_tick(a);
            opt_apply_groups(&c, a, wa, g, 0, N, gr, 4, lr);
            opt_tick(b);
            for (int i = 0; i < 4; i++)
                if (gr[i].lr_mult > 0.0f)
                    opt_apply(&c, b, wb + gr[i].offset, g + gr[i].offset, gr[i].offset, gr[i].len,
                              lr * gr[i].lr_mult);
            /* A shard [5, 35) in two chunks [5, 26) and [26, 35), as a server applies. */
            opt_tick(sub);
            opt_apply_groups(&c, sub, ws + 5, g + 5, 5, 21, gr, 4, lr);
            opt_apply_groups(&c, sub, ws + 26, g + 26, 26, 9, gr, 4, lr);
        }
        for (int i = 0; i < N; i++) {
            assert_true(wa[i] == wb[i]);
            if (i >= 5 && i < 35)
                assert_true(ws[i] == wa[i]);
            else
                assert_true(ws[i] == w0[i]);
            if (i >= 10 && i < 22)
                assert_true(wa[i] == w0[i]); /* frozen */
            else
                assert_true(wa[i] != w0[i]);
        }
        for (int bi = 0; bi < opt_state_nbuf(a); bi++)
            for (int i = 10; i < 22; i++)
                assert_true(opt_state_buf(a, bi)[i] == 0.0f);
        /* No groups: the whole range at multiplier 1, float for float as opt_apply. */
        opt_state *p = opt_state_create(&c, N, NULL), *q = opt_state_create(&c, N, NULL);
        float wp[N], wq[N];
        memcpy(wp, w0, sizeof wp);
        memcpy(wq, w0, sizeof wq);
        opt_tick(p);
        opt_tick(q);
        opt_apply_groups(&c, p, wp, g, 0, N, NULL, 0, 0.1f);
        opt_apply(&c, q, wq, g, 0, N, 0.1f);
        assert_memory_equal(wp, wq, sizeof wp);
        opt_state_destroy(p);
        opt_state_destroy(q);
        opt_state_destroy(a);
        opt_state_destroy(b);
        opt_state_destroy(sub);
    }
}

/* Clipping over groups measures and scales the trainable groups only. */
static void test_clip_groups(void **state)
{
    (void)state;
    /* trainable (3, 4) at [0, 2), frozen [2, 4) holding junk, trainable (0) at [4, 5) */
    float g[5] = {3.0f, 4.0f, 1e30f, NAN, 0.0f};
    const opt_group gr[] = {{0, 2, 1.0f}, {2, 2, 0.0f}, {4, 1, 3.0f}};
    assert_float_equal(opt_clip_global_norm_groups(g, 5, gr, 3, 1.0f), 5.0f, 1e-6);
    assert_float_equal(g[0], 0.6f, 1e-7);
    assert_float_equal(g[1], 0.8f, 1e-7);
    assert_true(g[2] == 1e30f);
    assert_true(isnan(g[3]));
    float h[2] = {3.0f, 4.0f};
    assert_float_equal(opt_clip_global_norm_groups(h, 2, NULL, 0, 1.0f), 5.0f, 1e-6);
    assert_float_equal(h[1], 0.8f, 1e-7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_match_reference),  cmocka_unit_test(test_disjoint_ranges),
        cmocka_unit_test(test_adam_bias_correction),   cmocka_unit_test(test_adamw_decoupled),
        cmocka_unit_test(test_state_layout_and_steps), cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_lr_schedules),           cmocka_unit_test(test_clip_global_norm),
        cmocka_unit_test(test_apply_groups),           cmocka_unit_test(test_clip_groups),
        cmocka_unit_test(test_config_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
