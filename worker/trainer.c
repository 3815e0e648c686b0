/* worker/trainer.c -- see trainer.h. */
#include "trainer.h"
#include "sparse.h"
#include "worker/mask.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"
#include "ckpt/ckpt.h"
#include "data/augment.h"
#include "core/optim.h"
#include "base/clock.h"
#include "base/rng.h"

struct wk_trainer {
    const cfg_job *job;
    int rank; /* worker rank: part of the shuffle seed */
    int epoch;
    int64_t nsteps;     /* of the current epoch */
    wk_epoch_stats cur; /* running figures of the current epoch */
    double loss_sum;
    int64_t correct;
    double epoch_t0;
    opt_config opt_cfg; /* the job's optimizer with the cosine horizon resolved */
    ml_model *model;
    opt_state *opt;
    opt_group *groups; /* (ngroups) layers' lr multipliers, 0 = frozen; none = all at 1 */
    int ngroups;
    unsigned char *gstate; /* (ngroups) 1: a state group (batchnorm's running statistics) */
    int nstate;            /* state groups */
    size_t frozen;         /* parameters of frozen layers */
    int has_init;          /* model.init_from was loaded: init_rep says what */
    ckpt_init_report init_rep;
    wk_mask *mask; /* model.keep_zeros: the pruned weights held at 0 (worker/mask.h) */
    int batch;     /* B */
    int accum;     /* micro-batches of B per update (train.accumulate) */
    float *gacc;   /* (P) the step's summed gradient when accum > 1 */
    int in_dim;    /* D */
    int out_dim;   /* K */
    int classify;
    int lm;          /* sequence_crossentropy: targets (N, T = D) are next-token ids */
    float *bx;       /* (B, D) gathered batch */
    int32_t *blabel; /* (B), a language model's (B, T) */
    float *btarget;  /* (B, K) */
    int32_t *pred;   /* (B) */
    uint32_t *perm;  /* (N) sample order of the current epoch */
    int64_t perm_len;
    int64_t step;           /* updates applied: the schedule's t */
    int64_t resume_samples; /* training samples of the checkpoint wk_trainer_restore read */
    double first_loss;      /* loss of the first batch this trainer computed; NaN: none */
    wk_sparse *sp;          /* a model with embedding tables: its sparse batches and rows */
    uint32_t *eval_idx;     /* (B) with sp: the rows of an evaluation batch */
    int chw[3];             /* the images' (C, H, W) with data.augment */
    float *aug_tmp;         /* (C*H*W) data.augment's scratch; NULL: no augmentation */
    uint64_t aug_seed;      /* the epoch's (ds_aug_epoch_seed) */
};

/* Token windows (N, T) of ids and next ids against a vocabulary of v: an id past it would
 * read outside the embedding table. Every set a language model reads is checked (training
 * here, validation and test in wk_trainer_evaluate). */
static int check_ids(const ds_dataset *ds, int v, pst_err *err)
{
    const float *x = ds_x_const(ds), *y = ds_targets_const(ds);
    for (int64_t i = 0; i < ds_count(ds) * ds_dim(ds); i++)
        if (x[i] >= (float)v || y[i] >= (float)v)
            return pst_err_set(err, PST_ERR_CONFIG,
                               "model.gpt2.vocab_size: the model has %d tokens, but the "
                               "text holds id %.0f (data.tokenizer's vocabulary is larger)",
                               v, (double)(x[i] >= (float)v ? x[i] : y[i]));
    return PST_OK;
}

/* The model's last layer must produce what the data and loss need. */
static int check_fit(const cfg_job *job, const ml_model *m, const ds_dataset *ds, pst_err *err)
{
    int k = ml_model_out_dim(m);
    unsigned last = job->model.spec.nlayers - 1;
    if (job->model.spec.loss == ML_LOSS_SEQ_CCE) {
        /* Token windows (worker/textprep.h): x and targets (N, T), logits (N, T*V). */
        int t = ds_dim(ds);
        if (ds_task_of(ds) != DS_TASK_REGRESS || ds_target_dim(ds) != t || k % t != 0)
            return pst_err_set(err, PST_ERR_CONFIG,
                               "model.loss: sequence_crossentropy trains on token windows "
                               "(data.format text)");
        return check_ids(ds, k / t, err);
    }
    if (job->data.format == CFG_FMT_TEXT)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "model.loss: token windows (data.format text) need "
                           "sequence_crossentropy and an lm_head (model.gpt2)");
    if (ds_sparse_of(ds) && ml_model_ntables(m) == 0)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "model.layers: the data has sparse features, but no layer reads "
                           "them (embedding, embedding_bag or fm, inputs: [sparse])");
    if (ds_task_of(ds) == DS_TASK_REGRESS) {
        if (job->model.spec.loss != ML_LOSS_MSE)
            return pst_err_set(err, PST_ERR_CONFIG, "model.loss: regression data needs mse, not %s",
                               ml_loss_name(job->model.spec.loss));
        if (k != ds_target_dim(ds))
            return pst_err_set(err, PST_ERR_CONFIG,
                               "model.layers.%u.units: the output has %d units but the data "
                               "has %d target(s)",
                               last, k, ds_target_dim(ds));
        return PST_OK;
    }
    int c = ds_nclasses(ds);
    if (job->model.spec.loss == ML_LOSS_BCE && k == 1) {
        if (c > 2)
            return pst_err_set(err, PST_ERR_CONFIG,
                               "model.loss: binary_crossentropy with one output unit needs 2 "
                               "classes, the data has %d",
                               c);
        return PST_OK;
    }
    if (k < c)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "model.layers.%u.units: the output has %d units but the data has %d "
                           "classes",
                           last, k, c);
    return PST_OK;
}

/* Fine-tuning: the pretrained weights of model.init_from over the seeded ones (a layer the
 * checkpoint lacks keeps its fresh initialisation), and the update groups: each dense
 * layer's lr multiplier, 0 for frozen layers, which the model then skips in backward. */
static int setup_finetune(wk_trainer *t, pst_err *err)
{
    const cfg_model *spec = &t->job->model;
    ml_model *m = t->model;
    int nseg = ml_model_nsegments(m), n = 0, plain = 1;
    unsigned char *loaded = NULL;
    if (!(t->groups = malloc(sizeof *t->groups * (size_t)(nseg ? nseg : 1))) ||
        !(t->gstate = calloc((size_t)(nseg ? nseg : 1), 1)) ||
        !(loaded = calloc((size_t)(nseg ? nseg : 1), 1))) {
        free(loaded);
        return pst_err_set(err, PST_ERR_NOMEM, "trainer: out of memory");
    }
    if (spec->init_from) {
        if (ckpt_init_from(spec->init_from, m, loaded, &t->init_rep, err)) {
            free(loaded);
            return pst_err_prefix(err, "model.init_from");
        }
        t->has_init = 1;
        if (spec->keep_zeros && !(t->mask = wk_mask_create(m, err))) {
            free(loaded);
            return PST_ERR_NOMEM;
        }
    }
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        const ml_layer_spec *L = &spec->spec.layers[sg->layer];
        /* State (batchnorm's running statistics) is never an optimizer's to move. */
        /* LoRA adapters train on a frozen base (model.lora freezes every layer). */
        float mult = (L->trainable || sg->adapter) && !sg->state ? L->lr_mult : 0.0f;
        /* Frozen random weights are almost always a misspelt layer name, not a wish. */
        if (mult == 0.0f && !sg->state && spec->init_from && !loaded[i]) {
            free(loaded);
            return pst_err_set(err, PST_ERR_CONFIG,
                               "model.layers.%d: frozen, but %s has no "
                               "tensor '%s' to load (layer names must match the pretrained "
                               "model's)",
                               sg->layer, spec->init_from, sg->name);
        }
        plain &= mult == 1.0f;
        if (mult == 0.0f && !sg->state) {
            t->frozen += sg->len;
            ml_model_set_trainable(m, sg->layer, 0);
        }
        /* Segments tile [0, P) in order; neighbours with one multiplier merge, state
         * only with state (it travels, frozen weights do not). */
        if (n > 0 && t->groups[n - 1].lr_mult == mult && t->gstate[n - 1] == (sg->state != 0))
            t->groups[n - 1].len += sg->len;
        else {
            t->gstate[n] = sg->state != 0;
            t->nstate += sg->state != 0;
            t->groups[n++] = (opt_group){sg->offset, sg->len, mult};
        }
    }
    t->ngroups = plain ? 0 : n;
    free(loaded);
    return PST_OK;
}

wk_trainer *wk_trainer_create(const cfg_job *job, const ds_dataset *like, int rank, pst_err *err)
{
    wk_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        pst_err_set(err, PST_ERR_NOMEM, "trainer: out of memory");
        return NULL;
    }
    t->job = job;
    t->rank = rank;
    t->first_loss = NAN;
    t->opt_cfg = job->optimizer;
    t->batch = job->train.batch_size;
    t->accum = job->train.accumulate > 1 ? job->train.accumulate : 1;
    t->in_dim = ds_dim(like);
    t->classify = ds_task_of(like) == DS_TASK_CLASSIFY;
    t->lm = job->model.spec.loss == ML_LOSS_SEQ_CCE;
    int chw[3];
    ml_shape in = ds_image_shape(like, chw) ? ml_shape_image(chw[0], chw[1], chw[2])
                                            : ml_shape_flat(t->in_dim);
    t->model = ml_model_create_shaped(&job->model.spec, &in, t->batch, err);
    if (!t->model)
        goto fail;
    if (check_fit(job, t->model, like, err))
        goto fail;
    t->out_dim = ml_model_out_dim(t->model);
    ml_model_init(t->model, job->seed);
    if (setup_finetune(t, err))
        goto fail;
    t->opt = opt_state_create(&job->optimizer, ml_model_nparams(t->model), err);
    if (!t->opt)
        goto fail;
    if (t->accum > 1 && !(t->gacc = malloc(sizeof *t->gacc * (ml_model_nparams(t->model) + 1)))) {
        pst_err_set(err, PST_ERR_NOMEM, "trainer: out of memory");
        goto fail;
    }
    if (ml_model_ntables(t->model) > 0 &&
        (!(t->sp = wk_sparse_create(job, t->model, like, t->batch, err)) ||
         !(t->eval_idx = malloc(sizeof *t->eval_idx * (size_t)t->batch)))) {
        if (t->sp)
            pst_err_set(err, PST_ERR_NOMEM, "trainer: out of memory");
        goto fail;
    }
    if (t->lm && !(t->eval_idx = malloc(sizeof *t->eval_idx * (size_t)t->batch))) {
        pst_err_set(err, PST_ERR_NOMEM, "trainer: out of memory");
        goto fail;
    }
    /* data.augment: the training batches' images (never evaluation's) are transformed. */
    if (ds_aug_active(&job->data.augment)) {
        if (!ds_image_shape(like, t->chw)) {
            pst_err_set(err, PST_ERR_CONFIG, "data.augment: only for images, the data has none");
            goto fail;
        }
        if (ds_aug_check(&job->data.augment, t->chw, err))
            goto fail;
        if (!(t->aug_tmp = malloc(sizeof *t->aug_tmp * (size_t)t->in_dim))) {
            pst_err_set(err, PST_ERR_NOMEM, "trainer: out of memory");
            goto fail;
        }
    }
    /* A model of sparse features alone has no dense input (D = 0). */
    t->bx = malloc(sizeof(float) * (size_t)t->batch * (size_t)(t->in_dim ? t->in_dim : 1));
    t->blabel = malloc(sizeof(int32_t) * (size_t)t->batch * (size_t)(t->lm ? t->in_dim : 1));
    t->btarget = malloc(sizeof(float) * (size_t)t->batch * t->out_dim);
    t->pred = malloc(sizeof(int32_t) * (size_t)t->batch);
    if (!t->bx || !t->blabel || !t->btarget || !t->pred) {
        pst_err_set(err, PST_ERR_NOMEM, "trainer: out of memory for batch %d x %d", t->batch,
                    t->in_dim);
        goto fail;
    }
    return t;
fail:
    wk_trainer_destroy(t);
    return NULL;
}

void wk_trainer_destroy(wk_trainer *t)
{
    if (!t)
        return;
    ml_model_destroy(t->model);
    wk_sparse_destroy(t->sp);
    free(t->eval_idx);
    opt_state_destroy(t->opt);
    free(t->groups);
    free(t->gstate);
    wk_mask_destroy(t->mask);
    free(t->gacc);
    free(t->bx);
    free(t->blabel);
    free(t->btarget);
    free(t->pred);
    free(t->perm);
    free(t->aug_tmp);
    free(t);
}

ml_model *wk_trainer_model(wk_trainer *t) { return t->model; }
int64_t wk_trainer_step(const wk_trainer *t) { return t->step; }

const opt_group *wk_trainer_groups(const wk_trainer *t, int *n)
{
    *n = t->ngroups;
    return t->groups;
}

const unsigned char *wk_trainer_group_state(const wk_trainer *t)
{
    return t->ngroups ? t->gstate : NULL;
}

void wk_trainer_state_values(const wk_trainer *t, float *dst)
{
    const float *w = ml_model_params(t->model);
    for (int i = 0; t->nstate && i < t->ngroups; i++)
        if (t->gstate[i])
            memcpy(dst + t->groups[i].offset, w + t->groups[i].offset,
                   t->groups[i].len * sizeof(float));
}

size_t wk_trainer_frozen_params(const wk_trainer *t) { return t->frozen; }

const ckpt_init_report *wk_trainer_init_report(const wk_trainer *t)
{
    return t->has_init ? &t->init_rep : NULL;
}

int wk_trainer_finetune_note(const wk_trainer *t, char *buf, size_t n)
{
    if (!t->has_init)
        return 0;
    const ckpt_init_report *r = &t->init_rep;
    int at =
        snprintf(buf, n, "init_from %s: %d tensor(s) loaded", t->job->model.init_from, r->loaded);
    if (at >= 0 && (size_t)at < n && r->fresh)
        at += snprintf(buf + at, n - (size_t)at, "; %d freshly initialised (%s)", r->fresh,
                       r->fresh_names);
    if (at >= 0 && (size_t)at < n && r->skipped)
        snprintf(buf + at, n - (size_t)at, "; %d skipped, not in the model (%s)", r->skipped,
                 r->skipped_names);
    return 1;
}

/* How far ahead gather prefetches, in rows, and how much of each row's head (bytes, a
 * multiple of the 64-byte cache line). */
#define GATHER_AHEAD 2
#define GATHER_HEAD 512

/* Copies rows idx[0..n) of ds into the batch buffers.
 * The rows of a shuffled batch lie at random places in a dataset much larger than the
 * caches, so every row starts with a DRAM (and usually a TLB) miss before the hardware
 * prefetcher picks up its sequential stream. Prefetching the head of the row GATHER_AHEAD
 * ahead overlaps that latency with the current copy: for 128 Fashion-MNIST rows (784
 * floats each) out of 60000 it cut the gather from ~55 to ~41 us (best of 5 epochs, on the
 * machine of docs/benchmarks.md); 1 to 32 rows ahead, or 64 bytes up to the whole row, did
 * no better. */
static void gather(wk_trainer *t, const ds_dataset *ds, const uint32_t *idx, int n)
{
    const float *x = ds_x_const(ds);
    size_t rowb = sizeof(float) * (size_t)t->in_dim;
    size_t head = rowb < GATHER_HEAD ? rowb : GATHER_HEAD;
    for (int i = 0; i < n && t->in_dim > 0; i++) {
        if (i + GATHER_AHEAD < n) {
            const char *next = (const char *)(x + (size_t)idx[i + GATHER_AHEAD] * t->in_dim);
            for (size_t b = 0; b < head; b += 64)
                __builtin_prefetch(next + b, 0, 0);
        }
        memcpy(t->bx + (size_t)i * t->in_dim, x + (size_t)idx[i] * t->in_dim, rowb);
    }
    if (t->lm) {
        const float *tg = ds_targets_const(ds);
        size_t k = (size_t)t->in_dim;
        for (int i = 0; i < n; i++)
            for (size_t j = 0; j < k; j++)
                t->blabel[i * k + j] = (int32_t)tg[(size_t)idx[i] * k + j];
    } else if (t->classify) {
        const int32_t *lab = ds_labels_const(ds);
        for (int i = 0; i < n; i++)
            t->blabel[i] = lab[idx[i]];
    } else {
        const float *tg = ds_targets_const(ds);
        size_t k = (size_t)t->out_dim;
        for (int i = 0; i < n; i++)
            memcpy(t->btarget + i * k, tg + (size_t)idx[i] * k, sizeof(float) * k);
    }
}

static int ensure_perm(wk_trainer *t, int64_t n, pst_err *err)
{
    if (t->perm_len == n)
        return PST_OK;
    free(t->perm);
    t->perm = malloc(sizeof(uint32_t) * (size_t)(n ? n : 1));
    t->perm_len = t->perm ? n : 0;
    if (!t->perm)
        return pst_err_set(err, PST_ERR_NOMEM, "trainer: out of memory for %lld indices",
                           (long long)n);
    return PST_OK;
}

int64_t wk_trainer_begin_epoch(wk_trainer *t, const ds_dataset *train, int epoch, pst_err *err)
{
    int64_t n = ds_count(train);
    if (n > UINT32_MAX)
        return pst_err_set(err, PST_ERR_DATA, "trainer: %lld samples exceed 2^32", (long long)n),
               -1;
    if (ensure_perm(t, n, err))
        return -1;
    for (int64_t i = 0; i < n; i++)
        t->perm[i] = (uint32_t)i;
    if (t->job->train.shuffle) {
        /* A fresh stream per (seed, epoch, rank): resuming at epoch e reshuffles the way an
         * uninterrupted run would, and workers' orders differ. */
        rng_state r;
        rng_seed(&r, t->job->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)epoch) ^
                         (0xbf58476d1ce4e5b9ULL * (uint64_t)t->rank));
        rng_shuffle_u32(&r, t->perm, (size_t)n);
    }
    t->epoch = epoch;
    t->aug_seed = ds_aug_epoch_seed(t->job->seed, t->rank, epoch);
    t->nsteps = (n + (int64_t)t->batch * t->accum - 1) / ((int64_t)t->batch * t->accum);
    if (t->opt_cfg.sched.kind == OPT_SCHED_COSINE && t->opt_cfg.sched.total_steps == 0)
        t->opt_cfg.sched.total_steps = t->nsteps * t->job->train.epochs; /* "the whole run" */
    memset(&t->cur, 0, sizeof t->cur);
    t->loss_sum = 0.0;
    t->correct = 0;
    t->epoch_t0 = pst_mono_s();
    return t->nsteps;
}

/* The model on a gathered batch: dense x (NULL without dense input) and, with tables, the
 * sparse batch wk_sparse_batch made. */
static const float *forward(wk_trainer *t, const float *x, int n)
{
    if (!t->sp)
        return ml_model_forward(t->model, x, n);
    return ml_model_forward_sparse(t->model, t->in_dim ? x : NULL, wk_sparse_batch_of(t->sp), n);
}

/* optimizer.clip_norm: one global norm over the trainable dense gradient and the step's
 * embedding-row gradients together, as torch.nn.utils.clip_grad_norm_ over all of them. */
static void clip(wk_trainer *t)
{
    const opt_config *oc = &t->opt_cfg;
    if (oc->clip_norm <= 0.0f)
        return;
    float *g = ml_model_grads(t->model);
    size_t P = ml_model_nparams(t->model);
    if (!t->sp) {
        opt_clip_global_norm_groups(g, P, t->groups, t->ngroups, oc->clip_norm);
        return;
    }
    double dn = opt_clip_global_norm_groups(g, P, t->groups, t->ngroups, 0.0f); /* measures */
    double total = sqrt(dn * dn + wk_sparse_grad_sumsq(t->model));
    if (!(total > oc->clip_norm))
        return;
    float f = (float)(oc->clip_norm / total);
    if (dn > 0.0) /* scales the dense part to norm dn * f, i.e. by f */
        opt_clip_global_norm_groups(g, P, t->groups, t->ngroups, (float)(dn * f));
    wk_sparse_grad_scale(t->model, f);
}

/* One batch perm[lo, lo + b) of the epoch: forward, loss, backward (the gradient into
 * ml_model_grads) and the running figures. */
static int micro_batch(wk_trainer *t, const ds_dataset *train, int64_t step, int64_t lo, int b,
                       pst_err *err)
{
    gather(t, train, t->perm + lo, b);
    if (t->aug_tmp) /* each sample's draws seeded by (seed, rank, epoch, its row) */
        ds_aug_batch(&t->job->data.augment, t->bx, t->perm + lo, b, t->chw, t->aug_seed,
                     t->aug_tmp);
    int rc = t->sp ? wk_sparse_batch(t->sp, t->model, train, t->perm + lo, b, 1, err) : PST_OK;
    if (rc)
        return rc;
    /* dropout's mask: one seed per (job seed, rank, epoch, step, micro-batch of the step);
     * the micro-batch is 0 without train.accumulate. Each part mixed in turn: packed into
     * bit fields by XOR, a step past 2^24 or an epoch past 2^16 reused another's masks. */
    uint64_t micro = (uint64_t)((lo % ((int64_t)t->batch * t->accum)) / t->batch);
    uint64_t ds = rng_mix64((uint64_t)t->job->seed ^ 0x64726f70ULL /* "drop" */);
    ds = rng_mix64(ds ^ (uint64_t)(uint32_t)t->rank);
    ds = rng_mix64(ds ^ (uint64_t)(uint32_t)t->epoch);
    ds = rng_mix64(ds ^ micro);
    ml_model_set_mode(t->model, 1, rng_mix64(ds ^ (uint64_t)step));
    const float *out = forward(t, t->bx, b);
    double loss = ml_model_loss(t->model, t->blabel, t->classify || t->lm ? NULL : t->btarget, b);
    if (!isfinite(loss))
        return pst_err_set(err, PST_ERR_NUMERIC,
                           "epoch %d step %lld: loss is %g (diverged; lower optimizer.lr or set "
                           "optimizer.clip_norm)",
                           t->epoch, (long long)step, loss);
    if (isnan(t->first_loss))
        t->first_loss = loss;
    if (t->classify) {
        met_predict_classes(t->pred, out, b, t->out_dim);
        for (int i = 0; i < b; i++)
            t->correct += t->pred[i] == t->blabel[i];
    }
    if (t->sp)
        ml_model_backward_sparse(t->model, t->in_dim ? t->bx : NULL, wk_sparse_batch_of(t->sp), b);
    else
        ml_model_backward(t->model, t->bx, b);
    t->loss_sum += loss * b;
    t->cur.samples += b;
    return PST_OK;
}

int wk_trainer_compute(wk_trainer *t, const ds_dataset *train, int64_t step, double *loss_out,
                       pst_err *err)
{
    int64_t n = ds_count(train);
    int64_t per = (int64_t)t->batch * t->accum; /* samples of one update */
    int64_t lo = step * per;
    if (step < 0 || lo >= n || n != t->perm_len)
        return pst_err_set(err, PST_ERR_STATE, "trainer: step %lld outside the epoch",
                           (long long)step);
    int rc;
    if (t->accum == 1) {
        if ((rc = micro_batch(t, train, step, lo, (int)(n - lo < t->batch ? n - lo : t->batch),
                              err)))
            return rc;
    } else {
        /* train.accumulate: g = sum_m b_m g_m / sum_m b_m over the step's micro-batches m,
         * the mean gradient over all its samples, as one batch of them would give (each
         * g_m is a mean over its b_m samples). */
        float *g = ml_model_grads(t->model);
        size_t P = ml_model_nparams(t->model);
        int64_t total = 0;
        memset(t->gacc, 0, sizeof *t->gacc * P);
        for (int m = 0; m < t->accum && lo + total < n; m++) {
            int64_t at = lo + total;
            int b = (int)(n - at < t->batch ? n - at : t->batch);
            if ((rc = micro_batch(t, train, step, at, b, err)))
                return rc;
            for (size_t i = 0; i < P; i++)
                t->gacc[i] += (float)b * g[i];
            total += b;
        }
        float inv = 1.0f / (float)total;
        for (size_t i = 0; i < P; i++)
            g[i] = t->gacc[i] * inv;
    }
    clip(t);
    t->cur.steps++;
    if (loss_out)
        *loss_out = t->loss_sum / (double)t->cur.samples;
    return PST_OK;
}

int wk_trainer_apply_local(wk_trainer *t, pst_err *err)
{
    const opt_config *oc = &t->opt_cfg;
    opt_tick(t->opt);
    opt_apply_groups(oc, t->opt, ml_model_params(t->model), ml_model_grads(t->model), 0,
                     ml_model_nparams(t->model), t->groups, t->ngroups, opt_lr_at(oc, t->step));
    if (t->mask)
        wk_mask_apply(t->mask, ml_model_params(t->model));
    t->step++;
    return t->sp ? wk_sparse_apply_local(t->sp, t->model, err) : PST_OK;
}

void wk_trainer_set_rows_source(wk_trainer *t, const wk_rows_source *src)
{
    if (t->sp)
        wk_sparse_set_source(t->sp, src);
}

int wk_trainer_save_tables(const wk_trainer *t, const char *path, pst_err *err)
{
    return t->sp ? wk_sparse_save(t->sp, path, err) : PST_OK;
}

int wk_trainer_load_tables(wk_trainer *t, const char *path, pst_err *err)
{
    return t->sp ? wk_sparse_load(t->sp, path, err) : PST_OK;
}

int wk_trainer_tables_note(const wk_trainer *t, char *buf, size_t n)
{
    if (!t->sp)
        return 0;
    const opt_config *o = &t->job->sparse.opt;
    int at =
        snprintf(buf, n, "embedding tables: %s lr %g; ", opt_kind_name(o->kind), (double)o->lr);
    if (at >= 0 && (size_t)at < n)
        wk_sparse_describe(t->sp, buf + at, n - (size_t)at);
    return 1;
}

double wk_trainer_samples_per_s(const wk_trainer *t)
{
    return (double)t->cur.samples / (pst_mono_s() - t->epoch_t0 + 1e-9);
}

void wk_trainer_end_epoch(wk_trainer *t, int interrupted, wk_epoch_stats *st)
{
    *st = t->cur;
    st->seconds = pst_mono_s() - t->epoch_t0;
    st->interrupted = interrupted;
    st->lm = t->lm;
    st->loss = st->samples ? t->loss_sum / (double)st->samples : NAN;
    st->accuracy = t->classify && st->samples ? (double)t->correct / (double)st->samples : NAN;
}

/* What a constant predictor scores on ds: the share of its most frequent class (the
 * accuracy of always predicting it) and the entropy of its class frequencies, -sum p ln p
 * (the cross-entropy of always predicting them). */
static void constant_scores(const ds_dataset *ds, int nclasses, double *share, double *entropy)
{
    int64_t n = ds_count(ds), best = 0;
    int64_t *count = calloc((size_t)(nclasses > 0 ? nclasses : 1), sizeof *count);
    *share = 0.0;
    *entropy = 0.0;
    if (!count || n == 0) {
        free(count);
        return;
    }
    const int32_t *y = ds_labels_const(ds);
    for (int64_t i = 0; i < n; i++)
        if (y[i] >= 0 && y[i] < nclasses && ++count[y[i]] > best)
            best = count[y[i]];
    for (int k = 0; k < nclasses; k++)
        if (count[k]) {
            double p = (double)count[k] / (double)n;
            *entropy -= p * log(p);
        }
    free(count);
    *share = (double)best / (double)n;
}

/* The one verdict of wk_trainer_judge and wk_trainer_judge_epoch: loss and figures of the
 * model on ds, `what` naming them in the message ("the final loss"). r2 NaN: not known
 * (an epoch's running training figures hold none), so not judged. */
static int judge(const wk_trainer *t, const ds_dataset *ds, int classify, double loss,
                 double accuracy, double r2, const char *what, pst_err *err)
{
    /* What the loss is compared with: that of the first batch (the initial model's), and
     * for a classifier at least that of guessing uniformly, ln K. */
    double ref = t->first_loss;
    if (classify) {
        double uniform = log(t->out_dim == 1 ? 2.0 : (double)t->out_dim);
        ref = isfinite(ref) && ref > uniform ? ref : uniform;
    }
    if (!isfinite(loss) || (isfinite(ref) && loss > 100.0 * ref))
        return pst_err_set(err, PST_ERR_NUMERIC,
                           "the run diverged: %s is %g, over 100 times the first batch's %g "
                           "(lower optimizer.lr or set optimizer.clip_norm)",
                           what, loss, ref);
    if (classify) {
        /* Accuracy alone would fail a model of rare classes that learned their odds (its
         * accuracy can sit at the majority share): no better than chance is no better
         * than a constant in accuracy and, for a cross-entropy loss, in loss too. */
        double share, entropy;
        constant_scores(ds, t->out_dim == 1 ? 2 : t->out_dim, &share, &entropy);
        int ce = t->job->model.spec.loss != ML_LOSS_MSE;
        if (accuracy <= share && (!ce || loss >= entropy - 1e-6))
            return pst_err_set(err, PST_ERR_NUMERIC,
                               "the model is no better than chance: accuracy %.4f, while "
                               "always predicting the most frequent class scores %.4f (%s %g; "
                               "more epochs, another optimizer.lr or model?)",
                               accuracy, share, what, loss);
    } else if (!isnan(r2) && !(r2 > 0.0)) {
        return pst_err_set(err, PST_ERR_NUMERIC,
                           "the model is no better than predicting the mean: R^2 %.4f (%s %g; "
                           "more epochs, another optimizer.lr or model?)",
                           r2, what, loss);
    }
    return PST_OK;
}

int wk_trainer_judge(const wk_trainer *t, const ds_dataset *ds, const wk_eval *ev, pst_err *err)
{
    if (ev->n == 0)
        return PST_OK;
    return judge(t, ds, ev->classify, ev->loss, ev->cls.accuracy, ev->classify ? NAN : ev->r2,
                 "the final loss", err);
}

int wk_trainer_judge_epoch(const wk_trainer *t, int epoch, const ds_dataset *val, const wk_eval *ev,
                           const ds_dataset *train, const wk_epoch_stats *st, pst_err *err)
{
    char what[64];
    if (val && ev && ev->n > 0) {
        snprintf(what, sizeof what, "epoch %d's validation loss", epoch);
        return judge(t, val, ev->classify, ev->loss, ev->cls.accuracy, ev->classify ? NAN : ev->r2,
                     what, err);
    }
    if (st->samples == 0)
        return PST_OK;
    snprintf(what, sizeof what, "epoch %d's training loss", epoch);
    return judge(t, train, t->classify, st->loss, st->accuracy, NAN, what, err);
}

const float *wk_trainer_predict(wk_trainer *t, const ds_dataset *ds, int64_t lo, int n,
                                pst_err *err)
{
    if (n < 1 || n > t->batch || lo < 0 || lo + n > ds_count(ds) || ds_dim(ds) != t->in_dim) {
        pst_err_set(err, PST_ERR_ARG, "predict: rows [%lld, %lld) of %lld (%d features), batch %d",
                    (long long)lo, (long long)(lo + n), (long long)ds_count(ds), ds_dim(ds),
                    t->batch);
        return NULL;
    }
    ml_model_set_mode(t->model, 0, 0);
    if (t->sp) {
        for (int i = 0; i < n; i++)
            t->eval_idx[i] = (uint32_t)(lo + i);
        if (wk_sparse_batch(t->sp, t->model, ds, t->eval_idx, n, 0, err))
            return NULL;
    }
    const float *x = t->in_dim ? ds_x_const(ds) + (size_t)lo * t->in_dim : NULL;
    return forward(t, x, n);
}

int wk_trainer_evaluate(wk_trainer *t, const ds_dataset *ds, wk_eval *ev, met_confusion *cm,
                        pst_err *err)
{
    memset(ev, 0, sizeof *ev);
    ev->classify = t->classify;
    if (ds_dim(ds) != t->in_dim)
        return pst_err_set(err, PST_ERR_DATA, "evaluate: data has %d features, the model takes %d",
                           ds_dim(ds), t->in_dim);
    int rc;
    if (t->lm && (rc = check_ids(ds, t->out_dim / t->in_dim, err)))
        return rc;
    int nc = t->out_dim == 1 ? 2 : t->out_dim;
    met_confusion *own = NULL;
    if (t->classify && !cm) {
        own = met_confusion_create(nc, err);
        if (!own)
            return err ? err->code : PST_ERR_NOMEM;
        cm = own;
    }
    if (cm)
        met_confusion_reset(cm);
    met_regression reg;
    met_regression_reset(&reg);
    int64_t n = ds_count(ds);
    double loss_sum = 0.0;
    for (int64_t lo = 0; lo < n; lo += t->batch) {
        int b = (int)(n - lo < t->batch ? n - lo : t->batch);
        const float *out = wk_trainer_predict(t, ds, lo, b, err);
        if (!out) {
            met_confusion_destroy(own);
            return err ? err->code : PST_ERR_STATE;
        }
        if (t->lm) {
            for (int i = 0; i < b; i++)
                t->eval_idx[i] = (uint32_t)(lo + i);
            gather(t, ds, t->eval_idx, b);
            loss_sum += ml_model_loss(t->model, t->blabel, NULL, b) * b;
        } else if (t->classify) {
            const int32_t *lab = ds_labels_const(ds) + lo;
            for (int i = 0; i < b; i++)
                if (lab[i] < 0 || lab[i] >= nc) {
                    met_confusion_destroy(own);
                    return pst_err_set(err, PST_ERR_DATA,
                                       "evaluate: record %lld: label %d out of range [0, %d)",
                                       (long long)(lo + i), lab[i], nc);
                }
            loss_sum += ml_model_loss(t->model, lab, NULL, b) * b;
            met_predict_classes(t->pred, out, b, t->out_dim);
            met_confusion_add(cm, lab, t->pred, b);
        } else {
            const float *tg = ds_targets_const(ds) + (size_t)lo * t->out_dim;
            loss_sum += ml_model_loss(t->model, NULL, tg, b) * b;
            met_regression_add(&reg, out, tg, (int64_t)b * t->out_dim);
        }
    }
    ev->n = n;
    ev->loss = n ? loss_sum / (double)n : NAN;
    if (t->lm) {
        /* the mean token loss: every window holds T tokens */
        ev->lm = 1;
        ev->perplexity = exp(ev->loss);
        ev->mse = ev->mae = ev->r2 = NAN;
    } else if (t->classify)
        met_confusion_summary(cm, &ev->cls);
    else {
        ev->mse = met_regression_mse(&reg);
        ev->mae = met_regression_mae(&reg);
        ev->r2 = met_regression_r2(&reg);
    }
    met_confusion_destroy(own);
    return PST_OK;
}

/* ---- Checkpoints ------------------------------------------------------------------------- */

#define STATE_KIND "optimizer"

int wk_trainer_save_state(wk_trainer *t, const char *path, int epoch_done, uint64_t job_hash,
                          pst_err *err)
{
    char hash[24];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)job_hash);
    int done = epoch_done || t->epoch == 0;
    wk_resume at = {.epoch = done ? t->epoch + 1 : t->epoch};
    if (!done)
        at = (wk_resume){t->epoch, t->cur.steps, t->cur.samples, t->correct, t->loss_sum};
    ckpt_state *st = ckpt_state_create(STATE_KIND, err);
    if (!st)
        return err ? err->code : PST_ERR_NOMEM;
    int rc;
    if ((rc = ckpt_state_set_str(st, "job_hash", hash, err)) ||
        (rc = ckpt_state_set_int(st, "nparams", (int64_t)ml_model_nparams(t->model), err)) ||
        (rc = ckpt_state_set_int(st, "step", t->step, err)) ||
        (rc = ckpt_state_set_int(st, "epoch", at.epoch, err)) ||
        (rc = ckpt_state_set_int(st, "epoch_steps_done", at.done, err)) ||
        (rc = ckpt_state_set_int(st, "epoch_samples", at.samples, err)) ||
        (rc = ckpt_state_set_int(st, "epoch_correct", at.correct, err)) ||
        (rc = ckpt_state_set_double(st, "epoch_loss_sum", at.loss_sum, err)) ||
        (rc = ckpt_state_set_int(st, "train_samples", t->perm_len, err)) ||
        (rc = ckpt_state_add_opt(st, t->opt_cfg.kind, t->opt, err)))
        goto cleanup;
    rc = ckpt_state_save(st, path, err);
cleanup:
    ckpt_state_destroy(st);
    return rc;
}

int wk_trainer_restore(wk_trainer *t, const char *model_path, const char *state_path,
                       uint64_t job_hash, wk_resume *at, pst_err *err)
{
    ckpt_state *st = NULL;
    int rc = ckpt_state_load(state_path, STATE_KIND, &st, err);
    if (rc)
        return rc;
    const char *hash;
    char want[24];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)job_hash);
    int64_t nparams, step, epoch, done, samples, correct, train_samples;
    double loss_sum;
    size_t P = ml_model_nparams(t->model);
    if ((rc = ckpt_state_get_str(st, "job_hash", &hash, err)) ||
        (rc = ckpt_state_get_int(st, "nparams", &nparams, err)) ||
        (rc = ckpt_state_get_int(st, "step", &step, err)) ||
        (rc = ckpt_state_get_int(st, "epoch", &epoch, err)) ||
        (rc = ckpt_state_get_int(st, "epoch_steps_done", &done, err)) ||
        (rc = ckpt_state_get_int(st, "epoch_samples", &samples, err)) ||
        (rc = ckpt_state_get_int(st, "epoch_correct", &correct, err)) ||
        (rc = ckpt_state_get_double(st, "epoch_loss_sum", &loss_sum, err)) ||
        (rc = ckpt_state_get_int(st, "train_samples", &train_samples, err)))
        goto cleanup;
    if (strcmp(hash, want) != 0) {
        rc = pst_err_set(err, PST_ERR_CONFIG,
                         "%s: written by another job (model, optimizer or "
                         "training settings differ)",
                         state_path);
        goto cleanup;
    }
    if (nparams != (int64_t)P || step < 0 || epoch < 1 || epoch > t->job->train.epochs + 1 ||
        done < 0 || samples < 0 || correct < 0 || correct > samples || train_samples < 0 ||
        (epoch == t->job->train.epochs + 1 && done != 0)) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: inconsistent resume point (epoch %lld, step "
                         "%lld of it, %lld parameters)",
                         state_path, (long long)epoch, (long long)done, (long long)nparams);
        goto cleanup;
    }
    if ((rc = ckpt_state_check_opt(st, t->opt_cfg.kind, P, err)))
        goto cleanup;
    /* The last check that can fail changes the weights only when it passes. */
    if ((rc = ckpt_load_into(model_path, t->model, NULL, err)))
        goto cleanup;
    ckpt_state_restore_opt(st, t->opt_cfg.kind, t->opt);
    t->step = step;
    t->resume_samples = train_samples;
    *at = (wk_resume){(int)epoch, done, samples, correct, loss_sum};
cleanup:
    ckpt_state_destroy(st);
    return rc;
}

int wk_trainer_resume_epoch(wk_trainer *t, const ds_dataset *train, const wk_resume *at,
                            pst_err *err)
{
    if (at->epoch != t->epoch)
        return pst_err_set(err, PST_ERR_STATE, "trainer: resuming epoch %d in epoch %d", at->epoch,
                           t->epoch);
    if (t->resume_samples != ds_count(train))
        return pst_err_set(err, PST_ERR_DATA,
                           "the checkpoint was taken on %lld training samples "
                           "but the data now has %lld",
                           (long long)t->resume_samples, (long long)ds_count(train));
    if (at->done > t->nsteps)
        return pst_err_set(err, PST_ERR_DATA,
                           "the checkpoint is at step %lld of epoch %d, which "
                           "has %lld steps",
                           (long long)at->done, at->epoch, (long long)t->nsteps);
    t->cur.steps = at->done;
    t->cur.samples = at->samples;
    t->correct = at->correct;
    t->loss_sum = at->loss_sum;
    return PST_OK;
}
