/* core/model.c -- layer stack, flat parameter layout, forward/backward driver.
 *
 * The spec's layers compile into ops: a dense layer with an activation becomes a DENSE op
 * followed by an ACT op, an activation layer one ACT op. Each op writes its own output
 * buffer (max_batch, width). Backward walks the ops in reverse with two ping-pong gradient
 * buffers: g holds dL/d(op output), the op writes dL/d(op input) into the other. */
#include "model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

typedef enum { OP_DENSE, OP_ACT } op_kind;

typedef struct {
    op_kind kind;
    ml_act act;        /* OP_ACT */
    int in, out;       /* widths */
    int layer;         /* index in the spec */
    size_t w_off, b_off; /* OP_DENSE: offsets of W (OUT, IN) and b (OUT) in params */
    int frozen;        /* OP_DENSE: backward writes no dW, db (ml_model_set_trainable) */
    float *y;          /* (max_batch, out) output of this op */
} op;

struct ml_model {
    int in_dim, out_dim, max_batch;
    cfg_loss loss;
    cfg_init init;
    int fused;          /* 1: last op is softmax+CCE or sigmoid+BCE, handled by the loss */
    int nops;
    op *ops;
    size_t nparams;
    float *params;      /* (P) */
    float *grads;       /* (P) the buffer backward writes: grads_own or the caller's */
    float *grads_own;   /* (P) */
    float *gbuf[2];     /* (max_batch, widest op output) ping-pong gradient buffers */
    float *scratch;     /* (max_batch, out_dim) targets built from labels */
    int start_buf;      /* which gbuf holds the output gradient after ml_model_loss */
    int nsegs;
    ml_segment *segs;
};

static ml_act act_from_cfg(cfg_act a)
{
    switch (a) {
    case CFG_ACT_RELU: return ML_ACT_RELU;
    case CFG_ACT_SIGMOID: return ML_ACT_SIGMOID;
    case CFG_ACT_TANH: return ML_ACT_TANH;
    case CFG_ACT_SOFTMAX: return ML_ACT_SOFTMAX;
    case CFG_ACT_LINEAR: break;
    }
    return ML_ACT_LINEAR;
}

/* 64-byte aligned, zeroed; size rounded up as aligned_alloc requires. */
static float *alloc_floats(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    if (bytes == 0)
        bytes = 64;
    float *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

ml_model *ml_model_create(const cfg_model *spec, int in_dim, int max_batch, pst_err *err)
{
    ml_model *m = NULL;
    if (!spec || spec->nlayers == 0) {
        pst_err_set(err, PST_ERR_CONFIG, "model.layers: the model has no layers");
        return NULL;
    }
    if (in_dim < 1 || max_batch < 1) {
        pst_err_set(err, PST_ERR_ARG, "model: input width %d and batch %d must be >= 1", in_dim,
                    max_batch);
        return NULL;
    }
    m = calloc(1, sizeof *m);
    if (!m)
        goto nomem;
    m->in_dim = in_dim;
    m->max_batch = max_batch;
    m->loss = spec->loss;
    m->init = spec->init;
    m->ops = calloc((size_t)spec->nlayers * 2, sizeof *m->ops);
    m->segs = calloc((size_t)spec->nlayers * 2, sizeof *m->segs);
    if (!m->ops || !m->segs)
        goto nomem;

    /* Pass 1: ops, widths and the parameter layout. max_width sizes the gradient buffers,
     * which hold gradients of op outputs only: backward never forms dL/dx of the data, so
     * the input width does not count (784 would more than double them for Fashion-MNIST). */
    int width = in_dim, max_width = 0, ndense = 0;
    size_t off = 0;
    for (unsigned l = 0; l < spec->nlayers; l++) {
        const cfg_layer *L = &spec->layers[l];
        if (L->type == CFG_LAYER_DENSE) {
            if (L->units < 1) {
                pst_err_set(err, PST_ERR_CONFIG, "model.layers.%u.units: must be >= 1, got %d",
                            l, L->units);
                goto fail;
            }
            op *o = &m->ops[m->nops++];
            o->kind = OP_DENSE;
            o->in = width;
            o->out = L->units;
            o->layer = (int)l;
            if ((size_t)o->in * o->out > ((size_t)1 << 40)) {
                pst_err_set(err, PST_ERR_CONFIG, "model.layers.%u: %d x %d weights are too many",
                            l, o->out, o->in);
                goto fail;
            }
            o->w_off = off;
            o->b_off = off + (size_t)o->in * o->out;
            char base[40];
            if (L->name && L->name[0])
                snprintf(base, sizeof base, "%s", L->name);
            else
                snprintf(base, sizeof base, "dense_%d", ndense);
            ml_segment *sw = &m->segs[m->nsegs++];
            snprintf(sw->name, sizeof sw->name, "%s.weight", base);
            sw->layer = (int)l;
            sw->offset = o->w_off;
            sw->len = (size_t)o->in * o->out;
            sw->rows = o->out;
            sw->cols = o->in;
            ml_segment *sb = &m->segs[m->nsegs++];
            snprintf(sb->name, sizeof sb->name, "%s.bias", base);
            sb->layer = (int)l;
            sb->offset = o->b_off;
            sb->len = (size_t)o->out;
            sb->rows = o->out;
            sb->cols = 1;
            off = o->b_off + (size_t)o->out;
            width = o->out;
            ndense++;
        }
        ml_act act = act_from_cfg(L->activation);
        if (L->type == CFG_LAYER_ACTIVATION || act != ML_ACT_LINEAR) {
            op *o = &m->ops[m->nops++];
            o->kind = OP_ACT;
            o->act = act;
            o->in = o->out = width;
            o->layer = (int)l;
        }
        if (width > max_width)
            max_width = width;
    }
    m->out_dim = width;
    m->nparams = off;
    if (ndense == 0) {
        pst_err_set(err, PST_ERR_CONFIG, "model.layers: needs at least one dense layer");
        goto fail;
    }

    const op *last = &m->ops[m->nops - 1];
    if (last->kind == OP_ACT && ((m->loss == CFG_LOSS_CCE && last->act == ML_ACT_SOFTMAX) ||
                                 (m->loss == CFG_LOSS_BCE && last->act == ML_ACT_SIGMOID)))
        m->fused = 1;
    if (!m->fused && m->loss != CFG_LOSS_MSE) {
        pst_err_set(err, PST_ERR_CONFIG, "model.loss: %s needs a %s output layer",
                    cfg_loss_name(m->loss), m->loss == CFG_LOSS_CCE ? "softmax" : "sigmoid");
        goto fail;
    }

    /* Pass 2: buffers. */
    m->params = alloc_floats(m->nparams);
    m->grads = m->grads_own = alloc_floats(m->nparams);
    m->gbuf[0] = alloc_floats((size_t)max_batch * max_width);
    m->gbuf[1] = alloc_floats((size_t)max_batch * max_width);
    m->scratch = alloc_floats((size_t)max_batch * m->out_dim);
    if (!m->params || !m->grads || !m->gbuf[0] || !m->gbuf[1] || !m->scratch)
        goto nomem;
    for (int i = 0; i < m->nops; i++) {
        m->ops[i].y = alloc_floats((size_t)max_batch * m->ops[i].out);
        if (!m->ops[i].y)
            goto nomem;
    }
    return m;

nomem:
    pst_err_set(err, PST_ERR_NOMEM, "model: out of memory");
fail:
    ml_model_destroy(m);
    return NULL;
}

void ml_model_destroy(ml_model *m)
{
    if (!m)
        return;
    if (m->ops)
        for (int i = 0; i < m->nops; i++)
            free(m->ops[i].y);
    free(m->ops);
    free(m->segs);
    free(m->params);
    free(m->grads_own);
    free(m->gbuf[0]);
    free(m->gbuf[1]);
    free(m->scratch);
    free(m);
}

void ml_model_init(ml_model *m, uint64_t seed)
{
    rng_state r;
    rng_seed(&r, seed);
    for (int i = 0; i < m->nops; i++) {
        const op *o = &m->ops[i];
        if (o->kind != OP_DENSE)
            continue;
        /* The activation that follows the dense op picks the scheme (Keras' defaults are
         * Glorot everywhere; He suits ReLU better: Var(w) = 2/IN, He et al. 2015). */
        ml_act next = (i + 1 < m->nops && m->ops[i + 1].kind == OP_ACT) ? m->ops[i + 1].act
                                                                         : ML_ACT_LINEAR;
        int he = m->init == CFG_INIT_HE || (m->init == CFG_INIT_AUTO && next == ML_ACT_RELU);
        float *w = m->params + o->w_off;
        size_t len = (size_t)o->in * o->out;
        if (he) {
            float sd = sqrtf(2.0f / (float)o->in);
            for (size_t k = 0; k < len; k++)
                w[k] = sd * rng_normal(&r);
        } else {
            /* Glorot uniform: U(-a, a), a = sqrt(6 / (IN + OUT)) (Glorot & Bengio, 2010). */
            float a = sqrtf(6.0f / (float)(o->in + o->out));
            for (size_t k = 0; k < len; k++)
                w[k] = a * (2.0f * rng_uniform(&r) - 1.0f);
        }
        memset(m->params + o->b_off, 0, (size_t)o->out * sizeof(float));
    }
}

size_t ml_model_nparams(const ml_model *m) { return m->nparams; }
float *ml_model_params(ml_model *m) { return m->params; }
float *ml_model_grads(ml_model *m) { return m->grads; }
void ml_model_use_grads(ml_model *m, float *g) { m->grads = g ? g : m->grads_own; }
int ml_model_in_dim(const ml_model *m) { return m->in_dim; }
int ml_model_out_dim(const ml_model *m) { return m->out_dim; }
int ml_model_max_batch(const ml_model *m) { return m->max_batch; }
cfg_loss ml_model_loss_kind(const ml_model *m) { return m->loss; }
int ml_model_nsegments(const ml_model *m) { return m->nsegs; }

const ml_segment *ml_model_segment(const ml_model *m, int i)
{
    assert(i >= 0 && i < m->nsegs);
    return &m->segs[i];
}

const float *ml_model_forward(ml_model *m, const float *x, int n)
{
    assert(n >= 1 && n <= m->max_batch);
    const float *in = x;
    for (int i = 0; i < m->nops; i++) {
        op *o = &m->ops[i];
        if (o->kind == OP_DENSE)
            ml_dense_forward(o->y, in, m->params + o->w_off, m->params + o->b_off, n, o->in,
                             o->out);
        else
            ml_act_forward(o->y, in, n, o->out, o->act);
        in = o->y;
    }
    return in;
}

/* Output of op i's predecessor, i.e. op i's input. */
static const float *op_input(const ml_model *m, const float *x, int i)
{
    return i == 0 ? x : m->ops[i - 1].y;
}

/* Targets (n, out) for BCE/MSE from whichever of label/target the caller gave: labels
 * become 0/1 values for one output unit, one-hot rows for several. */
static const float *targets_of(ml_model *m, const int32_t *label, const float *target, int n)
{
    if (target)
        return target;
    assert(label);
    int k = m->out_dim;
    memset(m->scratch, 0, (size_t)n * k * sizeof(float));
    for (int i = 0; i < n; i++) {
        if (k == 1)
            m->scratch[i] = label[i] ? 1.0f : 0.0f;
        else {
            assert(label[i] >= 0 && label[i] < k);
            m->scratch[(size_t)i * k + label[i]] = 1.0f;
        }
    }
    return m->scratch;
}

double ml_model_loss(ml_model *m, const int32_t *label, const float *target, int n)
{
    assert(n >= 1 && n <= m->max_batch);
    int k = m->out_dim;
    float *g = m->gbuf[0];
    m->start_buf = 0;
    const op *last = &m->ops[m->nops - 1];
    if (m->fused) {
        /* The loss differentiates through the output activation: g = dL/dz of its input. */
        const float *z = op_input(m, NULL, m->nops - 1);
        assert(m->nops >= 2); /* an activation alone on the raw input is not a model */
        if (m->loss == CFG_LOSS_CCE) {
            assert(label);
            return ml_softmax_xent(g, NULL, z, label, n, k);
        }
        return ml_sigmoid_bce(g, NULL, z, targets_of(m, label, target, n), n, k);
    }
    return ml_mse(g, last->y, targets_of(m, label, target, n), n, k);
}

void ml_model_set_trainable(ml_model *m, int layer, int trainable)
{
    for (int i = 0; i < m->nops; i++)
        if (m->ops[i].kind == OP_DENSE && m->ops[i].layer == layer)
            m->ops[i].frozen = !trainable;
}

void ml_model_backward(ml_model *m, const float *x, int n)
{
    int cur = m->start_buf;
    int first = m->fused ? m->nops - 2 : m->nops - 1;
    /* Ops below the lowest trainable dense op need no gradient at all. */
    int lowest = m->nops;
    for (int i = 0; i < m->nops && lowest == m->nops; i++)
        if (m->ops[i].kind == OP_DENSE && !m->ops[i].frozen)
            lowest = i;
    for (int i = first; i >= lowest; i--) {
        op *o = &m->ops[i];
        const float *in = op_input(m, x, i);
        float *g = m->gbuf[cur];
        if (o->kind == OP_DENSE) {
            /* The lowest trainable op passes nothing down (for op 0 the input is the data). */
            float *dx = i == lowest ? NULL : m->gbuf[cur ^ 1];
            ml_dense_backward(dx, o->frozen ? NULL : m->grads + o->w_off,
                              o->frozen ? NULL : m->grads + o->b_off, g, in,
                              m->params + o->w_off, n, o->in, o->out, 0);
            cur ^= 1;
        } else {
            if (i == 0)
                continue; /* activation straight on the data: nothing to propagate to */
            ml_act_backward(g, g, o->y, n, o->out, o->act);
        }
    }
}
