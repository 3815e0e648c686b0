/* core/optim.c -- update rules, state and lr schedules; see optim.h for the formulas.
 *
 * opt_apply runs over every parameter of every step, so each rule is a plain loop over
 * restrict pointers with the kind and all scalars decided before it, and gcc -O3 vectorises
 * every loop (-fopt-info-vec-optimized; see opt_sqrt_inplace for the square roots).
 * Per-element arithmetic is in float; the per-call scalars (bias corrections) are computed
 * once in double. */
#include "optim.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

/* M_PI is not in strict C11. */
#define OPT_PI 3.14159265358979323846

/* Moments are 64-byte aligned (one cache line, one AVX-512 vector). */
#define OPT_ALIGN 64

struct opt_state {
    opt_kind kind;
    size_t n;      /* parameters covered: the slice the state was created for */
    int64_t t;     /* updates started (opt_tick count) */
    int nbuf;      /* 0, 1 or 2 */
    float *buf[2]; /* (n) each: v / G / E for one-buffer rules, m and v for adam(w) */
};

static int kind_valid(opt_kind k) { return (int)k >= (int)OPT_SGD && (int)k <= (int)OPT_FTRL; }

int opt_kind_nbuf(opt_kind k)
{
    switch (k) {
    case OPT_SGD: return 0;
    case OPT_MOMENTUM:
    case OPT_NESTEROV:
    case OPT_ADAGRAD:
    case OPT_RMSPROP: return 1;
    case OPT_ADAM:
    case OPT_ADAMW:
    case OPT_FTRL: return 2;
    }
    return 0;
}

const char *opt_kind_name(opt_kind k)
{
    switch (k) {
    case OPT_SGD: return "sgd";
    case OPT_MOMENTUM: return "momentum";
    case OPT_NESTEROV: return "nesterov";
    case OPT_ADAGRAD: return "adagrad";
    case OPT_RMSPROP: return "rmsprop";
    case OPT_ADAM: return "adam";
    case OPT_ADAMW: return "adamw";
    case OPT_FTRL: return "ftrl";
    }
    return "unknown";
}

/* Defaults follow the libraries users compare against:
 *   lr        0.01 sgd, momentum, nesterov, adagrad (PyTorch); 0.001 rmsprop (Keras, whose
 *             rho = 0.9 we share: with rho 0.9 the first steps are ~3x lr, so PyTorch's
 *             0.01 would be aggressive); 0.001 adam, adamw (both)
 *   momentum  0.9;  beta1 0.9, beta2 0.999;  rho 0.9
 *   eps       1e-8, adagrad 1e-10 (PyTorch)
 *   weight_decay 0, adamw 0.01 (PyTorch AdamW)
 *   clip_norm 0 (off); schedule constant, no warmup; for the step schedule gamma 0.1 and
 *   step_size 1000; for cosine min_lr 0 and total_steps 0, meaning the whole run: the
 *   trainer replaces 0 by epochs x steps per epoch before the first step. */
void opt_config_default(opt_config *c, opt_kind kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    switch (kind) {
    case OPT_FTRL: c->lr = 0.1f; break;
    case OPT_RMSPROP:
    case OPT_ADAM:
    case OPT_ADAMW: c->lr = 0.001f; break;
    default: c->lr = 0.01f; break;
    }
    c->momentum = 0.9f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->rho = 0.9f;
    c->eps = kind == OPT_ADAGRAD ? 1e-10f : 1e-8f;
    c->weight_decay = kind == OPT_ADAMW ? 0.01f : 0.0f;
    c->clip_norm = 0.0f;
    c->ftrl_beta = 1.0f;
    c->l1 = 0.0f;
    c->l2 = 0.0f;
    c->sched.kind = OPT_SCHED_CONSTANT;
    c->sched.warmup_steps = 0;
    c->sched.step_size = 1000;
    c->sched.gamma = 0.1f;
    c->sched.total_steps = 0;
    c->sched.min_lr = 0.0f;
}

/* Range checks are written as !(x in range) so that NaN fails them too. Fields a kind does
 * not use (momentum for adam, betas for sgd, ...) are not checked. */
int opt_config_check(const opt_config *c, pst_err *err)
{
    const int code = PST_ERR_CONFIG;
    if (!kind_valid(c->kind))
        return pst_err_set(err, code, "optimizer.name: unknown optimizer %d", (int)c->kind);
    if (!(c->lr > 0.0f) || !isfinite(c->lr))
        return pst_err_set(err, code, "optimizer.lr: must be > 0, got %g", (double)c->lr);
    if ((c->kind == OPT_MOMENTUM || c->kind == OPT_NESTEROV) &&
        !(c->momentum >= 0.0f && c->momentum < 1.0f))
        return pst_err_set(err, code, "optimizer.momentum: must be in [0, 1), got %g",
                           (double)c->momentum);
    if (c->kind == OPT_ADAM || c->kind == OPT_ADAMW) {
        if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f))
            return pst_err_set(err, code, "optimizer.beta1: must be in [0, 1), got %g",
                               (double)c->beta1);
        if (!(c->beta2 >= 0.0f && c->beta2 < 1.0f))
            return pst_err_set(err, code, "optimizer.beta2: must be in [0, 1), got %g",
                               (double)c->beta2);
    }
    if (c->kind == OPT_RMSPROP && !(c->rho >= 0.0f && c->rho < 1.0f))
        return pst_err_set(err, code, "optimizer.rho: must be in [0, 1), got %g", (double)c->rho);
    if (c->kind == OPT_FTRL) {
        if (!(c->ftrl_beta >= 0.0f) || !isfinite(c->ftrl_beta))
            return pst_err_set(err, code, "optimizer.beta: must be >= 0, got %g",
                               (double)c->ftrl_beta);
        if (!(c->l1 >= 0.0f) || !isfinite(c->l1))
            return pst_err_set(err, code, "optimizer.l1: must be >= 0, got %g", (double)c->l1);
        if (!(c->l2 >= 0.0f) || !isfinite(c->l2))
            return pst_err_set(err, code, "optimizer.l2: must be >= 0, got %g", (double)c->l2);
    }
    if (c->kind >= OPT_ADAGRAD && c->kind <= OPT_ADAMW && (!(c->eps > 0.0f) || !isfinite(c->eps)))
        return pst_err_set(err, code, "optimizer.eps: must be > 0, got %g", (double)c->eps);
    if (!(c->weight_decay >= 0.0f) || !isfinite(c->weight_decay))
        return pst_err_set(err, code, "optimizer.weight_decay: must be >= 0, got %g",
                           (double)c->weight_decay);
    if (!(c->clip_norm >= 0.0f) || !isfinite(c->clip_norm))
        return pst_err_set(err, code, "optimizer.clip_norm: must be >= 0 (0 = off), got %g",
                           (double)c->clip_norm);

    const opt_schedule *s = &c->sched;
    if (s->warmup_steps < 0)
        return pst_err_set(err, code, "optimizer.warmup_steps: must be >= 0, got %lld",
                           (long long)s->warmup_steps);
    switch (s->kind) {
    case OPT_SCHED_CONSTANT: break;
    case OPT_SCHED_STEP:
        if (s->step_size < 1)
            return pst_err_set(err, code,
                               "optimizer.step_size: must be >= 1 for the step "
                               "schedule, got %lld",
                               (long long)s->step_size);
        if (!(s->gamma > 0.0f) || !isfinite(s->gamma))
            return pst_err_set(err, code, "optimizer.gamma: must be > 0, got %g", (double)s->gamma);
        break;
    case OPT_SCHED_COSINE:
        if (s->total_steps < 0)
            return pst_err_set(err, code,
                               "optimizer.total_steps: must be >= 0 (0 = the whole run), got %lld",
                               (long long)s->total_steps);
        if (!(s->min_lr >= 0.0f && s->min_lr <= c->lr))
            return pst_err_set(err, code, "optimizer.min_lr: must be in [0, lr = %g], got %g",
                               (double)c->lr, (double)s->min_lr);
        break;
    default: return pst_err_set(err, code, "optimizer.schedule: unknown schedule %d", (int)s->kind);
    }
    return PST_OK;
}

opt_state *opt_state_create(const opt_config *c, size_t n, pst_err *err)
{
    if (!kind_valid(c->kind)) {
        pst_err_set(err, PST_ERR_ARG, "opt_state_create: unknown optimizer %d", (int)c->kind);
        return NULL;
    }
    opt_state *st = calloc(1, sizeof *st);
    if (!st)
        goto nomem;
    st->kind = c->kind;
    st->n = n;
    st->nbuf = opt_kind_nbuf(c->kind);
    if (st->nbuf > 0) {
        /* aligned_alloc wants a multiple of the alignment; n == 0 still gets one line so
         * opt_state_buf never returns NULL. */
        if (n > (SIZE_MAX - OPT_ALIGN) / sizeof(float))
            goto nomem;
        size_t bytes = (n * sizeof(float) + OPT_ALIGN - 1) / OPT_ALIGN * OPT_ALIGN;
        if (bytes == 0)
            bytes = OPT_ALIGN;
        for (int i = 0; i < st->nbuf; i++) {
            st->buf[i] = aligned_alloc(OPT_ALIGN, bytes);
            if (!st->buf[i])
                goto nomem;
            memset(st->buf[i], 0, bytes);
        }
    }
    return st;

nomem:
    opt_state_destroy(st);
    pst_err_set(err, PST_ERR_NOMEM, "opt_state_create: no memory for %s state of %zu parameters",
                opt_kind_name(c->kind), n);
    return NULL;
}

void opt_state_destroy(opt_state *st)
{
    if (!st)
        return;
    free(st->buf[0]);
    free(st->buf[1]);
    free(st);
}

size_t opt_state_len(const opt_state *st) { return st->n; }
int64_t opt_state_step(const opt_state *st) { return st->t; }
int opt_state_nbuf(const opt_state *st) { return st->nbuf; }

float *opt_state_buf(opt_state *st, int i)
{
    assert(i >= 0 && i < st->nbuf);
    return st->buf[i];
}

void opt_state_set_step(opt_state *st, int64_t t)
{
    assert(t >= 0);
    st->t = t;
}

void opt_tick(opt_state *st) { st->t++; }

/* ---- the rules: vectorisable loops, kind and scalars fixed before them --------------- */

/* sqrtf may set errno, and gcc 12 keeps that scalar call path inside the loop, so a rule
 * with sqrtf in its loop vectorises only under -fno-math-errno (which gcc 12 ignores as a
 * #pragma or function attribute): a scalar adam loop measured ~4x slower here. So the
 * rules that need a square root run in chunks of OPT_CHUNK parameters, in three loops:
 * update the state and gather the values to root (vectorised), take the roots with
 * packed sqrt (opt_sqrt_inplace), finish the update (vectorised). The chunk lives in L1.
 * Packed and scalar sqrt are both correctly rounded, so the results do not depend on
 * which path ran. */
#define OPT_CHUNK 512

static void opt_sqrt_inplace(float *restrict d, size_t n)
{
    size_t i = 0;
#if defined(__SSE__)
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(d + i, _mm_sqrt_ps(_mm_loadu_ps(d + i)));
#endif
    for (; i < n; i++)
        d[i] = sqrtf(d[i]);
}

/* w -= lr * (g + wd*w) */
static void apply_sgd(float *restrict w, const float *restrict g, size_t n, float lr, float wd)
{
    for (size_t i = 0; i < n; i++)
        w[i] -= lr * (g[i] + wd * w[i]);
}

/* v = mu*v + g';  w -= lr*v  (PyTorch SGD with momentum, dampening 0) */
static void apply_momentum(float *restrict w, const float *restrict g, float *restrict v, size_t n,
                           float lr, float mu, float wd)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * w[i];
        float vi = mu * v[i] + gi;
        v[i] = vi;
        w[i] -= lr * vi;
    }
}

/* v = mu*v + g';  w -= lr*(g' + mu*v)  (PyTorch nesterov=True) */
static void apply_nesterov(float *restrict w, const float *restrict g, float *restrict v, size_t n,
                           float lr, float mu, float wd)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * w[i];
        float vi = mu * v[i] + gi;
        v[i] = vi;
        w[i] -= lr * (gi + mu * vi);
    }
}

/* Adagrad (Duchi et al. 2011) when decay == 1 and scale == 1:  G += g'^2;
 * RMSprop (Tieleman & Hinton 2012) when decay == rho, scale == 1 - rho:
 * E = rho*E + (1-rho) g'^2.  Both then  w -= lr * g' / (sqrt(s) + eps). */
static void apply_scaled(float *restrict w, const float *restrict g, float *restrict s, size_t n,
                         float lr, float decay, float scale, float eps, float wd)
{
    float root[OPT_CHUNK];
    for (size_t c0 = 0; c0 < n; c0 += OPT_CHUNK) {
        size_t len = n - c0 < OPT_CHUNK ? n - c0 : OPT_CHUNK;
        float *restrict wc = w + c0, *restrict sc = s + c0;
        const float *restrict gc = g + c0;
        for (size_t i = 0; i < len; i++) {
            float gi = gc[i] + wd * wc[i];
            float si = decay * sc[i] + scale * gi * gi;
            sc[i] = si;
            root[i] = si;
        }
        opt_sqrt_inplace(root, len);
        for (size_t i = 0; i < len; i++) {
            float gi = gc[i] + wd * wc[i];
            wc[i] -= lr * gi / (root[i] + eps);
        }
    }
}

/* Adam (Kingma & Ba 2015) with g' = g + l2*w, and AdamW's decoupled decay
 * w -= lr*dwd*w (Loshchilov & Hutter 2019); one of l2, dwd is 0. The bias corrections
 * enter as mhat = m * inv_bc1 and sqrt(vhat) = sqrt(v) * inv_sqrt_bc2. */
static void apply_adam(float *restrict w, const float *restrict g, float *restrict m,
                       float *restrict v, size_t n, float lr, float b1, float b2, float eps,
                       float l2, float dwd, float inv_bc1, float inv_sqrt_bc2)
{
    const float one_m_b1 = 1.0f - b1, one_m_b2 = 1.0f - b2;
    const float decay = lr * dwd;
    float root[OPT_CHUNK];
    for (size_t c0 = 0; c0 < n; c0 += OPT_CHUNK) {
        size_t len = n - c0 < OPT_CHUNK ? n - c0 : OPT_CHUNK;
        float *restrict wc = w + c0, *restrict mc = m + c0, *restrict vc = v + c0;
        const float *restrict gc = g + c0;
        for (size_t i = 0; i < len; i++) {
            float gi = gc[i] + l2 * wc[i];
            mc[i] = b1 * mc[i] + one_m_b1 * gi;
            float vi = b2 * vc[i] + one_m_b2 * gi * gi;
            vc[i] = vi;
            root[i] = vi;
        }
        opt_sqrt_inplace(root, len);
        for (size_t i = 0; i < len; i++) {
            float wi = wc[i];
            wc[i] = wi - decay * wi - lr * (mc[i] * inv_bc1) / (root[i] * inv_sqrt_bc2 + eps);
        }
    }
}

/* FTRL-Proximal (McMahan et al. 2013, Algorithm 1) per coordinate, alpha = lr:
 *   sigma = (sqrt(n + g^2) - sqrt(n)) / alpha;  z += g - sigma*w;  n += g^2;
 *   w = |z| <= l1 ? 0 : -(z - sgn(z) l1) / ((beta + sqrt(n)) / alpha + l2)
 * The three square roots of a coordinate (sqrt(n) old and new) go through the packed-root
 * chunk as the other rules' do. */
static void apply_ftrl(float *restrict w, const float *restrict g, float *restrict z,
                       float *restrict nn, size_t n, float alpha, float beta, float l1, float l2)
{
    const float inv_alpha = 1.0f / alpha;
    float r_old[OPT_CHUNK], r_new[OPT_CHUNK];
    for (size_t c0 = 0; c0 < n; c0 += OPT_CHUNK) {
        size_t len = n - c0 < OPT_CHUNK ? n - c0 : OPT_CHUNK;
        float *restrict wc = w + c0, *restrict zc = z + c0, *restrict nc = nn + c0;
        const float *restrict gc = g + c0;
        for (size_t i = 0; i < len; i++) {
            r_old[i] = nc[i];
            r_new[i] = nc[i] + gc[i] * gc[i];
        }
        opt_sqrt_inplace(r_old, len);
        opt_sqrt_inplace(r_new, len);
        for (size_t i = 0; i < len; i++) {
            float gi = gc[i];
            float sigma = (r_new[i] - r_old[i]) * inv_alpha;
            float zi = zc[i] + gi - sigma * wc[i];
            zc[i] = zi;
            nc[i] += gi * gi;
            float az = zi < 0.0f ? -zi : zi;
            float shrunk = zi < 0.0f ? zi + l1 : zi - l1; /* z - sgn(z) l1 */
            float wi = -shrunk / ((beta + r_new[i]) * inv_alpha + l2);
            wc[i] = az <= l1 ? 0.0f : wi;
        }
    }
}

void opt_rule_init(opt_rule *r, const opt_config *c, int64_t t, float lr)
{
    /* The contract is tick first; adam's bias correction divides by 1 - beta^t. */
    assert(t >= 1);
    r->c = c;
    r->lr = lr;
    r->inv_bc1 = r->inv_sqrt_bc2 = 1.0f;
    if (c->kind == OPT_ADAM || c->kind == OPT_ADAMW) {
        /* 1 - b^t in double: in float 1 - 0.999^t loses most digits for small t. */
        double bc1 = 1.0 - pow((double)c->beta1, (double)t);
        double bc2 = 1.0 - pow((double)c->beta2, (double)t);
        r->inv_bc1 = (float)(1.0 / bc1);
        r->inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    }
}

void opt_rule_apply(const opt_rule *r, float *restrict w, const float *restrict g,
                    float *restrict s0, float *restrict s1, size_t n)
{
    const opt_config *c = r->c;
    const float wd = c->weight_decay, lr = r->lr;
    if (n == 0)
        return;
    switch (c->kind) {
    case OPT_SGD: apply_sgd(w, g, n, lr, wd); break;
    case OPT_MOMENTUM: apply_momentum(w, g, s0, n, lr, c->momentum, wd); break;
    case OPT_NESTEROV: apply_nesterov(w, g, s0, n, lr, c->momentum, wd); break;
    case OPT_ADAGRAD: apply_scaled(w, g, s0, n, lr, 1.0f, 1.0f, c->eps, wd); break;
    case OPT_RMSPROP: apply_scaled(w, g, s0, n, lr, c->rho, 1.0f - c->rho, c->eps, wd); break;
    case OPT_ADAM:
    case OPT_ADAMW: {
        float l2 = c->kind == OPT_ADAM ? wd : 0.0f;
        float dwd = c->kind == OPT_ADAMW ? wd : 0.0f;
        apply_adam(w, g, s0, s1, n, lr, c->beta1, c->beta2, c->eps, l2, dwd, r->inv_bc1,
                   r->inv_sqrt_bc2);
        break;
    }
    case OPT_FTRL: apply_ftrl(w, g, s0, s1, n, lr, c->ftrl_beta, c->l1, c->l2); break;
    }
}

void opt_apply(const opt_config *c, opt_state *st, float *restrict w, const float *restrict g,
               size_t off, size_t n, float lr)
{
    assert(c->kind == st->kind);
    assert(off <= st->n && n <= st->n - off);
    assert(st->t >= 1);
    if (n == 0)
        return;
    opt_rule r;
    opt_rule_init(&r, c, st->t, lr);
    opt_rule_apply(&r, w, g, st->nbuf > 0 ? st->buf[0] + off : NULL,
                   st->nbuf > 1 ? st->buf[1] + off : NULL, n);
}

/* Warmup (any schedule): lr * (t+1) / warmup for t < warmup, so the first update uses
 * lr/warmup and update warmup-1 the full lr. After it, with t' = t - warmup:
 *   constant  lr
 *   step      lr * gamma^floor(t' / step_size)                      (PyTorch StepLR)
 *   cosine    min_lr + (lr - min_lr) * (1 + cos(pi * t' / T')) / 2, T' = total - warmup,
 *             and min_lr from t' >= T' on       (Loshchilov & Hutter 2017, no restarts) */
float opt_lr_at(const opt_config *c, int64_t t)
{
    const opt_schedule *s = &c->sched;
    const double lr = c->lr;
    if (t < 0)
        t = 0;
    if (s->warmup_steps > 0 && t < s->warmup_steps)
        return (float)(lr * (double)(t + 1) / (double)s->warmup_steps);
    int64_t tp = t - s->warmup_steps;
    switch (s->kind) {
    case OPT_SCHED_CONSTANT: return c->lr;
    case OPT_SCHED_STEP: {
        assert(s->step_size >= 1);
        return (float)(lr * pow((double)s->gamma, (double)(tp / s->step_size)));
    }
    case OPT_SCHED_COSINE: {
        assert(s->total_steps >= 1); /* 0 ("whole run") is resolved by the trainer */
        int64_t span = s->total_steps - s->warmup_steps;
        if (tp >= span)
            return s->min_lr;
        double min_lr = s->min_lr;
        double frac = (double)tp / (double)span;
        return (float)(min_lr + (lr - min_lr) * (1.0 + cos(OPT_PI * frac)) / 2.0);
    }
    }
    return c->lr;
}

/* Sum of squares in double with 8 independent accumulators: the chain of dependent adds
 * would otherwise bound the loop at one add per latency, and gcc may not reorder FP sums
 * itself. */
static double sum_squares(const float *g, size_t n)
{
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)g[i + k] * (double)g[i + k];
    double ss = 0.0;
    for (; i < n; i++)
        ss += (double)g[i] * (double)g[i];
    for (int k = 0; k < 8; k++)
        ss += acc[k];
    return ss;
}

float opt_clip_global_norm(float *g, size_t n, float max_norm)
{
    double norm = sqrt(sum_squares(g, n));
    if (max_norm > 0.0f && norm > (double)max_norm) {
        float scale = (float)((double)max_norm / norm);
        for (size_t j = 0; j < n; j++)
            g[j] *= scale;
    }
    return (float)norm;
}

/* ---- Parameter groups ------------------------------------------------------------------ */

void opt_apply_groups(const opt_config *c, opt_state *st, float *w, const float *g, size_t off,
                      size_t n, const opt_group *groups, int ngroups, float lr)
{
    if (ngroups == 0) {
        opt_apply(c, st, w, g, off, n, lr);
        return;
    }
    const size_t end = off + n;
    for (int i = 0; i < ngroups; i++) {
        const opt_group *gr = &groups[i];
        size_t lo = gr->offset > off ? gr->offset : off;
        size_t hi = gr->offset + gr->len < end ? gr->offset + gr->len : end;
        if (lo >= hi || !(gr->lr_mult > 0.0f))
            continue;
        /* lr * 1.0f is lr exactly, so a multiplier of 1 changes no float. */
        opt_apply(c, st, w + (lo - off), g + (lo - off), lo, hi - lo, lr * gr->lr_mult);
    }
}

float opt_clip_global_norm_groups(float *g, size_t n, const opt_group *groups, int ngroups,
                                  float max_norm)
{
    if (ngroups == 0)
        return opt_clip_global_norm(g, n, max_norm);
    double ss = 0.0;
    for (int i = 0; i < ngroups; i++)
        if (groups[i].lr_mult > 0.0f) {
            assert(groups[i].offset + groups[i].len <= n);
            ss += sum_squares(g + groups[i].offset, groups[i].len);
        }
    double norm = sqrt(ss);
    if (max_norm > 0.0f && norm > (double)max_norm) {
        float scale = (float)((double)max_norm / norm);
        for (int i = 0; i < ngroups; i++) {
            if (!(groups[i].lr_mult > 0.0f))
                continue;
            float *p = g + groups[i].offset;
            for (size_t j = 0; j < groups[i].len; j++)
                p[j] *= scale;
        }
    }
    return (float)norm;
}
