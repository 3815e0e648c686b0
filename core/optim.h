/* core/optim.h -- optimizer update rules over a flat slice of parameters.
 *
 * The rules are pure functions of (config, state, w, g): they know nothing of layers or
 * models, so a parameter server applies them unchanged to its shard, a slice
 * [offset, offset + n) of the model's flat parameter vector. The state (moments, step
 * count) covers exactly the slice it was created for.
 *
 * Update rules (g already includes nothing but the loss gradient; lr from the schedule):
 *   sgd       w -= lr * (g + wd*w)
 *   momentum  v = mu*v + (g + wd*w);  w -= lr*v               (PyTorch convention)
 *   nesterov  v = mu*v + (g + wd*w);  w -= lr*(g + wd*w + mu*v)
 *   adagrad   G += g'^2;              w -= lr * g' / (sqrt(G) + eps),   g' = g + wd*w
 *   rmsprop   E = rho*E + (1-rho) g'^2;  w -= lr * g' / (sqrt(E) + eps)
 *   adam      m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2;
 *             w -= lr * mhat / (sqrt(vhat) + eps), mhat = m/(1-b1^t), vhat = v/(1-b2^t)
 *   adamw     as adam with g' = g, and decoupled decay w -= lr*wd*w   (Loshchilov & Hutter)
 *   ftrl      FTRL-Proximal (McMahan et al. 2013, "Ad Click Prediction", Algorithm 1), per
 *             coordinate, alpha = lr, state z and n (both 0 at first):
 *               sigma = (sqrt(n + g^2) - sqrt(n)) / alpha;  z += g - sigma*w;  n += g^2;
 *               w = 0                                           if |z| <= l1
 *               w = -(z - sgn(z) l1) / ((beta + sqrt(n)) / alpha + l2)   otherwise
 *             so L1 gives exact zeros; weight_decay is not used (l2 is the rule's own).
 *             w before the first update is the initial value (0 for the paper's LR).
 *
 * A rule is also reachable one slice at a time with explicit state pointers (opt_rule:
 * sparse tables keep each row's state next to the row); opt_apply is opt_rule_init +
 * opt_rule_apply on the slice's part of opt_state.
 */
#ifndef PSTRAIN_CORE_OPTIM_H
#define PSTRAIN_CORE_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef enum {
    OPT_SGD = 0,
    OPT_MOMENTUM,
    OPT_NESTEROV,
    OPT_ADAGRAD,
    OPT_RMSPROP,
    OPT_ADAM,
    OPT_ADAMW,
    OPT_FTRL
} opt_kind;

typedef enum {
    OPT_SCHED_CONSTANT = 0,
    OPT_SCHED_STEP,  /* lr * gamma^floor((t - warmup) / step_size) after warmup */
    OPT_SCHED_COSINE /* min_lr + (lr - min_lr) * (1 + cos(pi * t' / T')) / 2 after warmup */
} opt_sched_kind;

typedef struct {
    opt_sched_kind kind;
    int64_t warmup_steps; /* linear warmup from lr/warmup to lr over the first steps (any kind) */
    int64_t step_size;    /* OPT_SCHED_STEP */
    float gamma;          /* OPT_SCHED_STEP */
    int64_t total_steps;  /* OPT_SCHED_COSINE: steps of the whole run, warmup included;
                             0 = the whole run (the trainer fills it in) */
    float min_lr;         /* OPT_SCHED_COSINE */
} opt_schedule;

typedef struct {
    opt_kind kind;
    float lr;
    float momentum;     /* momentum, nesterov */
    float beta1, beta2; /* adam, adamw */
    float rho;          /* rmsprop */
    float eps;          /* adagrad, rmsprop, adam, adamw */
    float weight_decay; /* L2 added to g, or decoupled for adamw */
    float ftrl_beta;    /* ftrl: beta of the per-coordinate rate alpha / (beta + sqrt(n)) */
    float l1, l2;       /* ftrl: L1 and L2 strengths (lambda1, lambda2 of the paper) */
    float clip_norm;    /* > 0: clip the whole gradient to this global L2 norm (worker side) */
    opt_schedule sched;
} opt_config;

/* Fills the usual defaults for kind (lr 0.01 sgd/momentum, 0.001 adam, mu 0.9,
 * betas 0.9/0.999, rho 0.9, eps 1e-8 (1e-10 adagrad), no decay, no clipping, constant lr;
 * ftrl: alpha = lr 0.1, beta 1 (the paper: "beta = 1 is usually good enough"), l1 = l2 = 0). */
void opt_config_default(opt_config *c, opt_kind kind);

/* Checks ranges (lr > 0, 0 <= momentum < 1, ...). Names the field in err. */
int opt_config_check(const opt_config *c, pst_err *err);

typedef struct opt_state opt_state;

/* State for a slice of n parameters: zeroed moments, step count 0. */
opt_state *opt_state_create(const opt_config *c, size_t n, pst_err *err);
void opt_state_destroy(opt_state *st);
size_t opt_state_len(const opt_state *st);
int64_t opt_state_step(const opt_state *st); /* steps taken (t) */
/* Number of float buffers the rule keeps per parameter (0, 1 or 2), and buffer i
 * (length opt_state_len), for checkpoints and tests. */
int opt_state_nbuf(const opt_state *st);
float *opt_state_buf(opt_state *st, int i);
void opt_state_set_step(opt_state *st, int64_t t);

/* Starts step t+1: call once per update, before the opt_apply calls of that update. */
void opt_tick(opt_state *st);

/* Applies one update to w[0..n) from g[0..n), using state entries [off, off + n).
 * Several calls between two ticks may update disjoint ranges with different lr (per-layer
 * multipliers). w and g must not overlap. */
void opt_apply(const opt_config *c, opt_state *st, float *restrict w, const float *restrict g,
               size_t off, size_t n, float lr);

/* One update of a rule with its per-update scalars (lr, adam's bias corrections) fixed
 * once, then applied to any number of slices with explicit state pointers: a sparse
 * table applies it row by row to rows that keep their state beside them. t is the update
 * number (>= 1, as opt_state_step after opt_tick). */
typedef struct {
    const opt_config *c; /* borrowed */
    float lr;
    float inv_bc1, inv_sqrt_bc2; /* adam(w): 1/(1-b1^t), 1/sqrt(1-b2^t) */
} opt_rule;

void opt_rule_init(opt_rule *r, const opt_config *c, int64_t t, float lr);
/* Number of float buffers kind keeps per parameter (0, 1 or 2). */
int opt_kind_nbuf(opt_kind k);
/* Updates w[0..n) from g[0..n) with state s0[0..n), s1[0..n) (NULL when the rule keeps
 * fewer buffers: opt_kind_nbuf). w, g, s0 and s1 must not overlap. */
void opt_rule_apply(const opt_rule *r, float *restrict w, const float *restrict g,
                    float *restrict s0, float *restrict s1, size_t n);

/* ---- Parameter groups: per-layer learning-rate multipliers and frozen ranges ------------
 *
 * A group is a range of the flat vector whose updates use lr * lr_mult (PyTorch's
 * parameter groups, Caffe's lr_mult). lr_mult 0 marks a frozen range: it is not updated
 * at all (no weight decay, no moment updates), not merely updated with lr 0. Group lists
 * are sorted, disjoint and given in the same coordinates as opt_apply's off; ngroups 0
 * means "one group of everything, multiplier 1". */
typedef struct {
    size_t offset, len; /* in floats */
    float lr_mult;      /* >= 0; 0 = frozen */
} opt_group;

/* opt_apply over [off, off + n) group by group: the part of the range each group covers
 * takes one opt_apply with lr * lr_mult; parts in frozen groups or in no group are left
 * untouched. w and g point at element off (as for opt_apply); the state entries are
 * [off, off + n). With ngroups 0 this is opt_apply(c, st, w, g, off, n, lr). */
void opt_apply_groups(const opt_config *c, opt_state *st, float *w, const float *g, size_t off,
                      size_t n, const opt_group *groups, int ngroups, float lr);

/* Global-norm clipping over the trainable groups only (lr_mult > 0): the norm is taken
 * over them and only they are scaled; frozen entries are neither read nor written (a
 * frozen layer's gradient is not computed). g covers [0, max end of the groups). With
 * ngroups 0 this is opt_clip_global_norm(g, n, max_norm). */
float opt_clip_global_norm_groups(float *g, size_t n, const opt_group *groups, int ngroups,
                                  float max_norm);

/* The learning rate at step t (0-based: the lr of the first update is opt_lr_at(c, 0)). */
float opt_lr_at(const opt_config *c, int64_t t);

/* Global-norm clipping: if ||g||_2 > max_norm, scales g by max_norm / ||g||. Returns the
 * norm before clipping. max_norm <= 0 only measures. */
float opt_clip_global_norm(float *g, size_t n, float max_norm);

const char *opt_kind_name(opt_kind k);

#endif
