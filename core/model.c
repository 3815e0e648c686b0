/* core/model.c -- layers with named inputs, the flat parameter layout, forward/backward.
 *
 * The spec's layers compile into steps ("nodes"): a layer is one node running its type's
 * ops, and a layer whose type applies an activation (post_activation, e.g. dense with
 * `activation: relu`) gets a second node running the activation type. Nodes run in spec
 * order, each reading the outputs of earlier nodes (inputs name earlier layers only, so
 * that order is topological) and writing its own output buffer (max_batch, width).
 *
 * Backward walks the nodes in reverse. Node i holds g_i = dL/d(its output); a consumer
 * overwrites the g of an input it is the first to reach and adds into it otherwise
 * (through `scratch`), so fan-out needs no zeroing pass. A sequential stack is the fast
 * path: an activation node that is the only consumer of its input shares that input's g
 * and runs in place, exactly the two-buffer ping-pong of a plain MLP.
 *
 * Sparse layers (ops->sparse) are nodes reading the batch's sparse features (src
 * ML_SRC_SPARSE) and one table of m->tables (core/tables.h) each; backward adds their
 * rows' gradients into the table's grads, zeroed once per step. A dense-only model has no
 * tables and takes no sparse branch but one flag test per node. */
#include "model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "tables.h"

typedef struct {
    const ml_layer_ops *ops;
    ml_layer l;             /* widths and tensors; l.spec points into m->spec or act_spec */
    ml_layer_spec act_spec; /* a post-activation node's own spec (type activation) */
    int layer;              /* index in the spec */
    int nin;
    int src[ML_MAX_INPUTS]; /* node index of each input; ML_SRC_INPUT, ML_SRC_SPARSE */
    int nconsumers;
    int consumer;               /* the first consumer's node index (the only one if 1) */
    size_t off[ML_MAX_TENSORS]; /* offsets of the tensors in params/grads */
    int frozen;                 /* backward writes no parameter gradients */
    int table;                  /* sparse nodes: index in m->tables; -1 otherwise */
    int tie;                    /* node whose tensor 0 this node's tensor 0 is; -1: none */
    int tied;                   /* a later node's tensor 0 is this node's tensor 0 */
    float *y;                   /* (max_batch, out) */
    float *g;                   /* (max_batch, out) dL/dy; may be an input's buffer (shared) */
    int g_owned;
} node;

struct ml_model {
    ml_model_spec spec; /* a deep copy */
    int in_dim, out_dim, max_batch;
    ml_shape in_shape; /* the input's (in_dim == its width) */
    int fused;         /* 1: the last node is softmax+CCE or sigmoid+BCE, in the loss */
    int seq_t;         /* sequence_crossentropy: the output is (N, seq_t * V); 0 otherwise */
    int nnodes;
    node *nodes;
    int *layer_node; /* (nlayers) the node that gives layer l's output */
    size_t nparams;
    float *params;           /* (P) */
    float *grads;            /* (P) the buffer backward writes: grads_own or the caller's */
    float *grads_own;        /* (P) */
    float *scratch;          /* (max_batch, widest output) targets and fan-out gradients */
    unsigned char *got;      /* (nnodes) backward: g of node i written this step */
    float *tie_grad;         /* (largest tied tensor) the owner's share of a tied gradient */
    unsigned char *tie_done; /* (nnodes) backward: a tied node wrote node i's tensor 0 */
    size_t tie_len;
    int nsegs;
    ml_segment *segs;
    ml_tables *tables; /* NULL: no sparse layers */
};

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

static int act_key(void)
{
    static const int k = 1; /* "activation" in core/layers/activation.c's key table */
    assert(ml_layer_key_find(&ml_layer_activation, "activation") == k);
    return k;
}

/* A sparse node's table: the `table` key or the layer's name. */
static int add_table(ml_model *m, const ml_layer *l, const char *layer_name, pst_err *err)
{
    assert(l->dim >= 1 && l->field_lo <= l->field_hi);
    if (!m->tables && !(m->tables = ml_tables_create(err)))
        return -1;
    const char *name = l->table && l->table[0] ? l->table : layer_name;
    return ml_tables_add_reader(m->tables, name, l->dim, l->init_scale, l->field_lo, l->field_hi,
                                err);
}

/* The output shape a layer's shape op left unset: its first input's when the type has no
 * parameters and keeps the width (activation, add), (OUT) otherwise. */
static void default_out_shape(ml_layer *l)
{
    if (l->out_shape.rank)
        return;
    if (!l->spec->ops->has_params && l->nin >= 1 && l->in_shape[0].rank &&
        ml_shape_width(&l->in_shape[0]) == l->out)
        l->out_shape = l->in_shape[0];
    else
        l->out_shape = ml_shape_flat(l->out);
}

/* Input k's width and shape: the model input's, none (sparse) or an earlier layer's. */
static void set_input(ml_layer *l, int k, const ml_shape *shape)
{
    l->in_shape[k] = *shape;
    l->in[k] = ml_shape_width(shape);
}

/* The value of a tie key (ops->tie_key) of spec layer L, or NULL when unset. */
static const char *tie_name(const ml_layer_spec *L)
{
    if (!L->ops->tie_key)
        return NULL;
    int k = ml_layer_key_find(L->ops, L->ops->tie_key);
    assert(k >= 0 && L->ops->keys[k].kind == ML_KEY_STRING);
    return L->val[k].s && L->val[k].s[0] ? L->val[k].s : NULL;
}

/* Node nd (spec layer l, shaped) with a tie: tensor 0 becomes tensor 0 of the named
 * earlier layer, which must have the same shape. */
static int resolve_tie(ml_model *m, node *nd, unsigned l, pst_err *err)
{
    const char *want = tie_name(nd->l.spec);
    if (!want)
        return PST_OK;
    assert(nd->l.ntensors >= 1);
    const char *key = nd->l.spec->ops->tie_key;
    for (int i = 0; i < m->nnodes; i++) {
        node *o = &m->nodes[i];
        char name[ML_NAME_MAX + 1];
        ml_layer_spec_name(&m->spec, (unsigned)o->layer, name, sizeof name);
        if (o->ops == &ml_layer_activation || strncmp(name, want, ML_NAME_MAX) != 0)
            continue;
        const ml_tensor *a = &o->l.tensor[0], *b = &nd->l.tensor[0];
        if (o->l.ntensors < 1 || o->ops->sparse || o->tie >= 0)
            return pst_err_set(err, PST_ERR_CONFIG, "%s: layer '%s' has no dense tensor to tie to",
                               key, want);
        if (a->rows != b->rows || a->cols != b->cols)
            return pst_err_set(err, PST_ERR_CONFIG,
                               "%s: %s.%s is (%d, %d) but this layer's %s needs (%d, %d)", key,
                               want, a->name, a->rows, a->cols, b->name, b->rows, b->cols);
        nd->tie = i;
        nd->off[0] = o->off[0];
        o->tied = 1;
        if ((size_t)a->rows * a->cols > m->tie_len)
            m->tie_len = (size_t)a->rows * a->cols;
        return PST_OK;
    }
    (void)l;
    return pst_err_set(err, PST_ERR_CONFIG, "%s: '%s' is no earlier layer", key, want);
}

/* Pass 1: nodes, widths, segments and the parameter layout. */
static int build_nodes(ml_model *m, pst_err *err)
{
    const ml_model_spec *s = &m->spec;
    size_t off = 0;
    for (unsigned l = 0; l < s->nlayers; l++) {
        const ml_layer_spec *L = &s->layers[l];
        node *nd = &m->nodes[m->nnodes];
        int src[ML_MAX_INPUTS];
        int nin = ml_model_spec_sources(s, l, src, err);
        assert(nin >= 1); /* ml_model_spec_check passed */
        nd->ops = L->ops;
        nd->layer = (int)l;
        nd->l.spec = L;
        nd->nin = nd->l.nin = nin;
        for (int i = 0; i < nin; i++) {
            nd->src[i] = src[i] < 0 ? src[i] : m->layer_node[src[i]];
            ml_shape none = {0, {0, 0, 0}};
            set_input(&nd->l, i,
                      src[i] == ML_SRC_INPUT    ? &m->in_shape
                      : src[i] == ML_SRC_SPARSE ? &none
                                                : &m->nodes[nd->src[i]].l.out_shape);
        }
        nd->l.index = m->nnodes;
        if (L->ops->shape(&nd->l, err))
            return ml_layer_err_path(err, l);
        assert(nd->l.out >= 1 && nd->l.ntensors <= ML_MAX_TENSORS);
        default_out_shape(&nd->l);
        assert(ml_shape_width(&nd->l.out_shape) == nd->l.out);
        char base[ML_NAME_MAX + 1];
        ml_layer_spec_name(s, l, base, sizeof base);
        nd->table = -1;
        nd->tie = -1;
        if (resolve_tie(m, nd, l, err))
            return ml_layer_err_path(err, l);
        if (L->ops->sparse && (nd->table = add_table(m, &nd->l, base, err)) < 0)
            return ml_layer_err_path(err, l);
        for (int t = nd->tie >= 0 ? 1 : 0; t < nd->l.ntensors; t++) {
            const ml_tensor *T = &nd->l.tensor[t];
            ml_segment *sg = &m->segs[m->nsegs++];
            snprintf(sg->name, sizeof sg->name, "%s.%s", base, T->name);
            sg->layer = (int)l;
            sg->offset = nd->off[t] = off;
            sg->len = (size_t)T->rows * T->cols;
            sg->rows = T->rows;
            sg->cols = T->cols;
            sg->state = (nd->l.state_mask >> t) & 1u;
            off += sg->len;
        }
        m->nnodes++;
        int act = ml_layer_spec_out_act(L);
        if (L->ops->post_activation && act != 0) {
            node *a = &m->nodes[m->nnodes];
            ml_layer_spec_init(&a->act_spec, &ml_layer_activation);
            a->act_spec.val[act_key()].i = act;
            a->ops = &ml_layer_activation;
            a->layer = (int)l;
            a->l.spec = &a->act_spec;
            a->nin = a->l.nin = 1;
            a->src[0] = m->nnodes - 1;
            set_input(&a->l, 0, &nd->l.out_shape);
            a->l.index = m->nnodes;
            if (ml_layer_activation.shape(&a->l, err))
                return ml_layer_err_path(err, l);
            default_out_shape(&a->l);
            m->nnodes++;
        }
        m->layer_node[l] = m->nnodes - 1;
    }
    m->nparams = off;
    m->out_dim = m->nodes[m->nnodes - 1].l.out;
    return PST_OK;
}

uint64_t ml_model_spec_nparams(const ml_model_spec *s, int in_dim)
{
    ml_shape in = ml_shape_flat(in_dim);
    return ml_model_spec_nparams_shaped(s, &in);
}

/* The post-activation step keeps its input's shape, so layer l's output shape is its
 * own node's. */
uint64_t ml_model_spec_nparams_shaped(const ml_model_spec *s, const ml_shape *in)
{
    ml_shape *width = malloc(sizeof *width * (s->nlayers ? s->nlayers : 1));
    uint64_t total = 0;
    if (!width)
        return UINT64_MAX;
    for (unsigned l = 0; l < s->nlayers; l++) {
        ml_layer L = {.spec = &s->layers[l]};
        int src[ML_MAX_INPUTS];
        int nin = ml_model_spec_sources(s, l, src, NULL);
        if (nin < 1 || nin > ML_MAX_INPUTS) {
            total = UINT64_MAX;
            break;
        }
        L.nin = nin;
        ml_shape none = {0, {0, 0, 0}};
        for (int i = 0; i < nin; i++)
            set_input(&L, i,
                      src[i] == ML_SRC_INPUT    ? in
                      : src[i] == ML_SRC_SPARSE ? &none
                                                : &width[src[i]]);
        if (s->layers[l].ops->shape(&L, NULL)) {
            total = UINT64_MAX;
            break;
        }
        default_out_shape(&L);
        width[l] = L.out_shape;
        for (int t = tie_name(&s->layers[l]) ? 1 : 0; t < L.ntensors; t++)
            total += (uint64_t)L.tensor[t].rows * (uint64_t)L.tensor[t].cols;
        if (total > ((uint64_t)1 << 60)) {
            total = UINT64_MAX;
            break;
        }
    }
    free(width);
    return total;
}

static int check_output(ml_model *m, pst_err *err)
{
    const node *last = &m->nodes[m->nnodes - 1];
    if (m->spec.loss == ML_LOSS_SEQ_CCE) {
        /* Logits (N, T*V) from a layer with a `tokens` key (lm_head): V = OUT / T. */
        int k = ml_layer_key_find(last->ops, "tokens");
        int t = k >= 0 && last->ops != &ml_layer_activation ? (int)last->l.spec->val[k].i : 0;
        if (t < 1 || last->l.out % t != 0)
            return pst_err_set(err, PST_ERR_CONFIG,
                               "model.loss: sequence_crossentropy needs logits of T tokens "
                               "(an lm_head) as the output layer");
        m->seq_t = t;
        return PST_OK;
    }
    int act = last->ops == &ml_layer_activation ? (int)last->l.spec->val[act_key()].i : 0;
    const ml_activation *a = ml_activation_at(act);
    if (m->nnodes >= 2 && a->fused_loss == (int)m->spec.loss)
        m->fused = 1;
    if (!m->fused && m->spec.loss != ML_LOSS_MSE) {
        const char *want = "?";
        for (int i = 0; i < ml_activation_count(); i++)
            if (ml_activation_at(i)->fused_loss == (int)m->spec.loss)
                want = ml_activation_at(i)->name;
        return pst_err_set(err, PST_ERR_CONFIG, "model.loss: %s needs a %s output layer",
                           ml_loss_name(m->spec.loss), want);
    }
    return PST_OK;
}

/* Pass 2: consumers, then buffers. An activation node that is its input's only consumer
 * (and not on the raw input) shares the input's gradient buffer: backward in place. */
static int alloc_buffers(ml_model *m)
{
    size_t widest = (size_t)m->out_dim;
    for (int i = 0; i < m->nnodes; i++)
        m->nodes[i].consumer = -1;
    for (int i = 0; i < m->nnodes; i++) {
        node *nd = &m->nodes[i];
        if ((size_t)nd->l.out > widest)
            widest = (size_t)nd->l.out;
        for (int k = 0; k < nd->nin; k++)
            if (nd->src[k] >= 0) {
                node *p = &m->nodes[nd->src[k]];
                if (p->nconsumers++ == 0)
                    p->consumer = i;
            }
    }
    m->params = alloc_floats(m->nparams);
    m->grads = m->grads_own = alloc_floats(m->nparams);
    m->scratch = alloc_floats((size_t)m->max_batch * widest);
    m->got = calloc((size_t)m->nnodes, 1);
    m->tie_done = calloc((size_t)m->nnodes, 1);
    if (!m->params || !m->grads || !m->scratch || !m->got || !m->tie_done)
        return PST_ERR_NOMEM;
    if (m->tie_len && !(m->tie_grad = alloc_floats(m->tie_len)))
        return PST_ERR_NOMEM;
    for (int i = 0; i < m->nnodes; i++) {
        node *nd = &m->nodes[i];
        for (int k = 0; k < nd->l.ntensors; k++)
            nd->l.state[k] = (nd->l.state_mask >> k) & 1u ? m->params + nd->off[k] : NULL;
    }
    for (int i = 0; i < m->nnodes; i++) {
        node *nd = &m->nodes[i];
        size_t len = (size_t)m->max_batch * nd->l.out;
        if (!(nd->y = alloc_floats(len)))
            return PST_ERR_NOMEM;
        if (nd->ops->workspace &&
            !(nd->l.ws = alloc_floats(nd->ops->workspace(&nd->l, m->max_batch))))
            return PST_ERR_NOMEM;
        const node *p = nd->nin == 1 && nd->src[0] >= 0 ? &m->nodes[nd->src[0]] : NULL;
        if (nd->ops->inplace && p && p->nconsumers == 1 && p->l.out == nd->l.out && p->g) {
            nd->g = p->g;
        } else {
            if (!(nd->g = alloc_floats(len)))
                return PST_ERR_NOMEM;
            nd->g_owned = 1;
        }
    }
    return PST_OK;
}

/* 1 when a layer reads the dense input (a model of sparse layers alone may have none). */
static int reads_input(const ml_model_spec *s)
{
    for (unsigned l = 0; l < s->nlayers; l++) {
        int src[ML_MAX_INPUTS];
        int nin = ml_model_spec_sources(s, l, src, NULL);
        for (int i = 0; i < nin; i++)
            if (src[i] == ML_SRC_INPUT)
                return 1;
    }
    return 0;
}

ml_model *ml_model_create(const ml_model_spec *spec, int in_dim, int max_batch, pst_err *err)
{
    ml_shape in = ml_shape_flat(in_dim);
    return ml_model_create_shaped(spec, &in, max_batch, err);
}

ml_model *ml_model_create_shaped(const ml_model_spec *spec, const ml_shape *in, int max_batch,
                                 pst_err *err)
{
    ml_model *m = NULL;
    int in_dim = ml_shape_width(in);
    if (!spec || spec->nlayers == 0) {
        pst_err_set(err, PST_ERR_CONFIG, "model.layers: the model has no layers");
        return NULL;
    }
    if (ml_model_spec_check(spec, err))
        return NULL;
    if (in_dim < (reads_input(spec) ? 1 : 0) || max_batch < 1) {
        pst_err_set(err, PST_ERR_ARG, "model: input width %d and batch %d must be >= 1", in_dim,
                    max_batch);
        return NULL;
    }
    if (!(m = calloc(1, sizeof *m)))
        goto nomem;
    if (ml_model_spec_copy(&m->spec, spec, err)) {
        free(m);
        return NULL;
    }
    m->in_dim = in_dim;
    m->in_shape = in->rank ? *in : ml_shape_flat(0);
    m->max_batch = max_batch;
    m->nodes = calloc((size_t)spec->nlayers * 2, sizeof *m->nodes);
    m->layer_node = calloc(spec->nlayers, sizeof *m->layer_node);
    m->segs = calloc((size_t)spec->nlayers * ML_MAX_TENSORS, sizeof *m->segs);
    if (!m->nodes || !m->layer_node || !m->segs)
        goto nomem;
    if (build_nodes(m, err) || check_output(m, err))
        goto fail;
    if (alloc_buffers(m))
        goto nomem;
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
    for (int i = 0; m->nodes && i < m->nnodes; i++) {
        free(m->nodes[i].y);
        free(m->nodes[i].l.ws);
        if (m->nodes[i].g_owned)
            free(m->nodes[i].g);
    }
    free(m->nodes);
    free(m->layer_node);
    free(m->segs);
    free(m->params);
    free(m->grads_own);
    free(m->scratch);
    free(m->got);
    free(m->tie_grad);
    free(m->tie_done);
    ml_tables_destroy(m->tables);
    ml_model_spec_fini(&m->spec);
    free(m);
}

void ml_model_init(ml_model *m, uint64_t seed)
{
    rng_state r;
    rng_seed(&r, seed);
    for (int i = 0; i < m->nnodes; i++) {
        const node *nd = &m->nodes[i];
        if (nd->l.ntensors == 0 || (nd->tie >= 0 && nd->l.ntensors == 1))
            continue; /* nothing, or only a tied tensor (its owner inits it) */
        assert(nd->tie < 0 || nd->l.ntensors == 1);
        /* The activation its output feeds picks the scheme (Keras' defaults are Glorot
         * everywhere; He suits ReLU better: Var(w) = 2/IN, He et al. 2015). */
        int feeds_he = 0;
        if (nd->nconsumers == 1 && m->nodes[nd->consumer].ops == &ml_layer_activation) {
            const node *c = &m->nodes[nd->consumer];
            feeds_he = ml_activation_at((int)c->l.spec->val[act_key()].i)->he_init;
        }
        int he = m->spec.init == ML_INIT_HE || (m->spec.init == ML_INIT_AUTO && feeds_he);
        float *t[ML_MAX_TENSORS];
        for (int k = 0; k < nd->l.ntensors; k++)
            t[k] = m->params + nd->off[k];
        nd->ops->init(&nd->l, t, he, &r);
    }
}

size_t ml_model_nparams(const ml_model *m) { return m->nparams; }
float *ml_model_params(ml_model *m) { return m->params; }
float *ml_model_grads(ml_model *m) { return m->grads; }
void ml_model_use_grads(ml_model *m, float *g) { m->grads = g ? g : m->grads_own; }
int ml_model_in_dim(const ml_model *m) { return m->in_dim; }
ml_shape ml_model_in_shape(const ml_model *m) { return m->in_shape; }

void ml_model_set_mode(ml_model *m, int training, uint64_t seed)
{
    for (int i = 0; i < m->nnodes; i++) {
        m->nodes[i].l.training = training != 0;
        m->nodes[i].l.seed = seed;
    }
}
int ml_model_out_dim(const ml_model *m) { return m->out_dim; }
int ml_model_max_batch(const ml_model *m) { return m->max_batch; }
ml_loss ml_model_loss_kind(const ml_model *m) { return m->spec.loss; }
const ml_model_spec *ml_model_get_spec(const ml_model *m) { return &m->spec; }
int ml_model_nsegments(const ml_model *m) { return m->nsegs; }

const ml_segment *ml_model_segment(const ml_model *m, int i)
{
    assert(i >= 0 && i < m->nsegs);
    return &m->segs[i];
}

/* ---- Sparse tables (core/tables.c does the work) ------------------------------------- */

int ml_model_ntables(const ml_model *m) { return ml_tables_count(m->tables); }

ml_table_info ml_model_table_info(const ml_model *m, int t)
{
    assert(t >= 0 && t < ml_model_ntables(m));
    int layer = 0;
    while (layer < m->nnodes && m->nodes[layer].table != t)
        layer++;
    assert(layer < m->nnodes);
    return (ml_table_info){.name = ml_tables_name(m->tables, t),
                           .dim = ml_tables_dim(m->tables, t),
                           .init_scale = ml_tables_init_scale(m->tables, t),
                           .layer = m->nodes[layer].layer};
}

int ml_model_gather(ml_model *m, const ml_sparse_batch *b, pst_err *err)
{
    if (!m->tables)
        return PST_OK;
    return ml_tables_gather(m->tables, b, m->max_batch, err);
}

size_t ml_model_table_nkeys(const ml_model *m, int t) { return ml_tables_nkeys(m->tables, t); }
const uint64_t *ml_model_table_keys(const ml_model *m, int t)
{
    return ml_tables_keys(m->tables, t);
}
const int32_t *ml_model_table_index(const ml_model *m, int t)
{
    return ml_tables_index(m->tables, t);
}
float *ml_model_table_rows(ml_model *m, int t) { return ml_tables_rows(m->tables, t); }
float *ml_model_table_grads(ml_model *m, int t) { return ml_tables_grads(m->tables, t); }

double ml_model_flops(const ml_model *m, int n)
{
    double f = 0;
    for (int i = 0; i < m->nnodes; i++)
        f += m->nodes[i].ops->flops(&m->nodes[i].l, n);
    return f;
}

static const float *node_input(const ml_model *m, const float *x, const node *nd, int k)
{
    return nd->src[k] < 0 ? x : m->nodes[nd->src[k]].y;
}

/* What sparse node nd sees of batch b: the entries and its table's gathered rows. */
static ml_sparse_in sparse_in(ml_model *m, const node *nd, const ml_sparse_batch *b, int n)
{
    assert(b && m->tables && b->n == n && n == ml_tables_batch_rows(m->tables) &&
           b->row_ptr[n] - b->row_ptr[0] == ml_tables_batch_nnz(m->tables));
    return (ml_sparse_in){.row_ptr = b->row_ptr,
                          .vals = b->vals,
                          .fields = b->fields,
                          .idx = ml_tables_index(m->tables, nd->table),
                          .e0 = b->row_ptr[0],
                          .rows = ml_tables_rows(m->tables, nd->table)};
}

const float *ml_model_forward_sparse(ml_model *m, const float *x, const ml_sparse_batch *b, int n)
{
    assert(n >= 1 && n <= m->max_batch);
    for (int i = 0; i < m->nnodes; i++) {
        node *nd = &m->nodes[i];
        const float *in[ML_MAX_INPUTS];
        const float *t[ML_MAX_TENSORS];
        for (int k = 0; k < nd->l.ntensors; k++)
            t[k] = m->params + nd->off[k];
        if (nd->ops->sparse) {
            ml_sparse_in s = sparse_in(m, nd, b, n);
            nd->ops->sforward(&nd->l, nd->y, &s, t, n);
            continue;
        }
        for (int k = 0; k < nd->nin; k++)
            in[k] = node_input(m, x, nd, k);
        nd->ops->forward(&nd->l, nd->y, in, t, n);
    }
    return m->nodes[m->nnodes - 1].y;
}

const float *ml_model_forward(ml_model *m, const float *x, int n)
{
    return ml_model_forward_sparse(m, x, NULL, n);
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
    const node *last = &m->nodes[m->nnodes - 1];
    memset(m->got, 0, (size_t)m->nnodes);
    if (m->seq_t) {
        /* label (N, T): per position, softmax over V; the mean over the N*T positions. */
        assert(label);
        m->got[m->nnodes - 1] = 1;
        return ml_softmax_xent(last->g, NULL, last->y, label, n * m->seq_t, k / m->seq_t);
    }
    if (m->fused) {
        /* The loss differentiates through the output activation: dL/dz of its input. */
        assert(last->src[0] >= 0); /* an activation alone on the raw input is not a model */
        node *z = &m->nodes[last->src[0]];
        m->got[last->src[0]] = 1;
        if (m->spec.loss == ML_LOSS_CCE) {
            assert(label);
            return ml_softmax_xent(z->g, NULL, z->y, label, n, k);
        }
        return ml_sigmoid_bce(z->g, NULL, z->y, targets_of(m, label, target, n), n, k);
    }
    m->got[m->nnodes - 1] = 1;
    return ml_mse(last->g, last->y, targets_of(m, label, target, n), n, k);
}

void ml_model_set_trainable(ml_model *m, int layer, int trainable)
{
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].layer == layer && (m->nodes[i].l.ntensors > 0 || m->nodes[i].table >= 0))
            m->nodes[i].frozen = !trainable;
}

static void add_into(float *restrict dst, const float *restrict src, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dst[i] += src[i];
}

/* Sparse node nd's backward: its table's rows' gradients (added into) and its tensors'. */
static void sparse_backward(ml_model *m, node *nd, const ml_sparse_batch *b, int n)
{
    float *dt[ML_MAX_TENSORS] = {NULL};
    const float *t[ML_MAX_TENSORS];
    for (int k = 0; k < nd->l.ntensors; k++) {
        t[k] = m->params + nd->off[k];
        dt[k] = m->grads + nd->off[k];
    }
    ml_sparse_in s = sparse_in(m, nd, b, n);
    nd->ops->sbackward(&nd->l, ml_tables_grads(m->tables, nd->table), dt, nd->g, nd->y, &s, t, n);
}

void ml_model_backward(ml_model *m, const float *x, int n)
{
    ml_model_backward_sparse(m, x, NULL, n);
}

void ml_model_backward_sparse(ml_model *m, const float *x, const ml_sparse_batch *b, int n)
{
    int first = m->fused ? m->nnodes - 2 : m->nnodes - 1;
    /* Nodes before the lowest trainable one need no gradient at all: none of them is
     * downstream of a trainable node. */
    int lowest = m->nnodes;
    for (int i = 0; i < m->nnodes && lowest == m->nnodes; i++)
        if ((m->nodes[i].l.ntensors > 0 || m->nodes[i].table >= 0) && !m->nodes[i].frozen)
            lowest = i;
    memset(m->tie_done, 0, (size_t)m->nnodes);
    for (int t = 0; t < ml_tables_count(m->tables); t++)
        if (ml_tables_nkeys(m->tables, t))
            memset(ml_tables_grads(m->tables, t), 0,
                   ml_tables_nkeys(m->tables, t) * (size_t)ml_tables_dim(m->tables, t) *
                       sizeof(float));
    for (int i = first; i >= lowest; i--) {
        node *nd = &m->nodes[i];
        if (!m->got[i])
            continue; /* nothing flows back to it (after the fused output, say) */
        if (nd->ops->sparse) {
            if (!nd->frozen)
                sparse_backward(m, nd, b, n);
            continue;
        }
        float *dx[ML_MAX_INPUTS];
        float *dt[ML_MAX_TENSORS] = {NULL};
        const float *in[ML_MAX_INPUTS];
        const float *t[ML_MAX_TENSORS];
        int add[ML_MAX_INPUTS] = {0}, any = 0;
        float *scratch = m->scratch;
        for (int k = 0; k < nd->nin; k++) {
            int p = nd->src[k];
            in[k] = node_input(m, x, nd, k);
            dx[k] = NULL;
            if (p < lowest) /* the data, or a node that needs no gradient */
                continue;
            if (!m->got[p]) {
                dx[k] = m->nodes[p].g;
                m->got[p] = 1;
            } else {
                /* fan-out: a second consumer adds; one scratch per call keeps it simple
                 * (several such inputs of one node take turns below) */
                add[k] = 1;
            }
            any = 1;
        }
        int params =
            nd->l.ntensors > 0 && !nd->frozen && (nd->tie < 0 || !m->nodes[nd->tie].frozen);
        if (!any && !params)
            continue;
        for (int k = 0; k < nd->l.ntensors; k++) {
            t[k] = m->params + nd->off[k];
            if (params)
                dt[k] = m->grads + nd->off[k];
        }
        /* A tie: the later node (the head) ran first and wrote the shared gradient; its
         * owner writes its share aside and adds it (tie_done marks that a head wrote). */
        if (params && nd->tie >= 0)
            m->tie_done[nd->tie] = 1;
        int tie_add = params && nd->tied && m->tie_done[i];
        if (tie_add)
            dt[0] = m->tie_grad;
        int nadd = 0;
        for (int k = 0; k < nd->nin; k++)
            nadd += add[k];
        if (nadd <= 1) {
            for (int k = 0; k < nd->nin; k++)
                if (add[k])
                    dx[k] = scratch;
            nd->ops->backward(&nd->l, dx, dt, nd->g, nd->y, in, t, n);
            for (int k = 0; k < nd->nin; k++)
                if (add[k])
                    add_into(m->nodes[nd->src[k]].g, scratch, (size_t)n * nd->l.in[k]);
            if (tie_add)
                add_into(m->grads + nd->off[0], m->tie_grad,
                         (size_t)nd->l.tensor[0].rows * nd->l.tensor[0].cols);
            continue;
        }
        /* Several fan-out inputs: one backward per such input into scratch (parameter
         * gradients and the direct inputs on the first call only). */
        int done_first = 0;
        for (int j = 0; j < nd->nin; j++) {
            if (!add[j])
                continue;
            float *dxj[ML_MAX_INPUTS];
            float *none[ML_MAX_TENSORS] = {NULL};
            for (int k = 0; k < nd->nin; k++)
                dxj[k] = k == j ? scratch : (!done_first && !add[k] ? dx[k] : NULL);
            nd->ops->backward(&nd->l, dxj, done_first ? none : dt, nd->g, nd->y, in, t, n);
            add_into(m->nodes[nd->src[j]].g, scratch, (size_t)n * nd->l.in[j]);
            done_first = 1;
        }
        if (tie_add)
            add_into(m->grads + nd->off[0], m->tie_grad,
                     (size_t)nd->l.tensor[0].rows * nd->l.tensor[0].cols);
    }
}
