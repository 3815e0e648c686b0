/* core/layers/registry.c -- the built-in layer types, registries, and the model spec
 * helpers every reader of layer types shares (defaults, names, checks, the docs table).
 *
 * `builtin` below is the only place a layer type is named: a new type is a file in
 * core/layers/ and one line here. */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/layer.h"

static const ml_layer_ops *const builtin_list[] = {
    &ml_layer_dense,           &ml_layer_activation,
    &ml_layer_concat,          &ml_layer_add,
    &ml_layer_dot_interaction, &ml_layer_embedding,
    &ml_layer_embedding_bag,   &ml_layer_fm,
    &ml_layer_conv2d,          &ml_layer_max_pool2d,
    &ml_layer_avg_pool2d,      &ml_layer_global_avg_pool,
    &ml_layer_flatten,         &ml_layer_dropout,
    &ml_layer_batchnorm,       &ml_layer_token_embedding,
    &ml_layer_pos_embedding,   &ml_layer_layernorm,
    &ml_layer_attention,       &ml_layer_token_dense,
    &ml_layer_lm_head,
};

struct ml_registry {
    const ml_layer_ops *const *ops;
    int n;
    const ml_layer_ops **own; /* ml_registry_create: the array ops points at */
    int cap;
};

static const ml_registry builtin = {
    .ops = builtin_list,
    .n = (int)(sizeof builtin_list / sizeof builtin_list[0]),
};

/* ---- Loss and init names ------------------------------------------------------------ */

#define NAME_AT(v, name) [v] = name,
static const char *const loss_names[ML_LOSS_COUNT] = {ML_LOSS_NAMES(NAME_AT)};
static const char *const init_names[ML_INIT_COUNT] = {ML_INIT_NAMES(NAME_AT)};

const char *ml_loss_name(int loss)
{
    return loss >= 0 && loss < ML_LOSS_COUNT ? loss_names[loss] : NULL;
}
const char *ml_init_name(int init)
{
    return init >= 0 && init < ML_INIT_COUNT ? init_names[init] : NULL;
}

int ml_loss_find(const char *name)
{
    for (int i = 0; name && i < ML_LOSS_COUNT; i++)
        if (strcmp(loss_names[i], name) == 0)
            return i;
    return -1;
}

/* ---- Registries --------------------------------------------------------------------- */

const ml_registry *ml_registry_builtin(void) { return &builtin; }

ml_registry *ml_registry_create(const ml_registry *base, pst_err *err)
{
    if (!base)
        base = &builtin;
    ml_registry *r = calloc(1, sizeof *r);
    if (r) {
        r->cap = base->n + 8;
        r->own = calloc((size_t)r->cap, sizeof *r->own);
    }
    if (!r || !r->own) {
        ml_registry_destroy(r);
        pst_err_set(err, PST_ERR_NOMEM, "layer registry: out of memory");
        return NULL;
    }
    memcpy(r->own, base->ops, (size_t)base->n * sizeof *r->own);
    r->n = base->n;
    r->ops = r->own;
    return r;
}

void ml_registry_destroy(ml_registry *r)
{
    if (!r)
        return;
    assert(r != &builtin);
    free(r->own);
    free(r);
}

static const char *const common_keys[] = {"type", "name", "inputs", "trainable", "lr_mult"};

int ml_registry_add(ml_registry *r, const ml_layer_ops *ops, pst_err *err)
{
    assert(r && r->own && ops);
    const int E = PST_ERR_ARG;
    if (!ops->name || !ops->name[0] || !ops->prefix || !ops->summary)
        return pst_err_set(err, E, "layer type: name, prefix and summary must be set");
    if (ml_registry_find(r, ops->name))
        return pst_err_set(err, E, "layer type '%s': already registered", ops->name);
    if (!ops->shape || !ops->flops || (ops->has_params && !ops->init) ||
        (ops->sparse ? !ops->sforward || !ops->sbackward || !ops->has_params || ops->inplace
                     : !ops->forward || !ops->backward))
        return pst_err_set(err, E,
                           "layer type '%s': shape, forward, backward (sforward, sbackward "
                           "and has_params for a sparse type), flops (and init with "
                           "parameters) must be set",
                           ops->name);
    if (ops->nkeys < 0 || ops->nkeys > ML_MAX_KEYS || (ops->nkeys && !ops->keys))
        return pst_err_set(err, E, "layer type '%s': %d keys (at most %d)", ops->name, ops->nkeys,
                           ML_MAX_KEYS);
    if (ops->min_inputs < 1 || ops->max_inputs < ops->min_inputs || ops->max_inputs > ML_MAX_INPUTS)
        return pst_err_set(err, E, "layer type '%s': inputs must be within [1, %d]", ops->name,
                           ML_MAX_INPUTS);
    for (int k = 0; k < ops->nkeys; k++) {
        const ml_layer_key *key = &ops->keys[k];
        if (!key->name || (unsigned)key->kind > ML_KEY_STRING ||
            (key->kind == ML_KEY_ENUM && (!key->enum_name || !key->enum_name(0))))
            return pst_err_set(err, E, "layer type '%s': key %d is malformed", ops->name, k);
        for (size_t c = 0; c < sizeof common_keys / sizeof common_keys[0]; c++)
            if (strcmp(key->name, common_keys[c]) == 0)
                return pst_err_set(err, E, "layer type '%s': key '%s' is common to all types",
                                   ops->name, key->name);
        if (ml_layer_key_find(ops, key->name) != k)
            return pst_err_set(err, E, "layer type '%s': key '%s' twice", ops->name, key->name);
    }
    if (ops->post_activation) {
        int a = ml_layer_key_find(ops, "activation");
        if (a < 0 || ops->keys[a].kind != ML_KEY_ENUM ||
            ops->keys[a].enum_name != ml_activation_name)
            return pst_err_set(err, E,
                               "layer type '%s': post_activation needs an `activation` "
                               "key over the activation table",
                               ops->name);
    }
    if (ops->tie_key) {
        int k = ml_layer_key_find(ops, ops->tie_key);
        if (k < 0 || ops->keys[k].kind != ML_KEY_STRING || ops->sparse)
            return pst_err_set(err, E, "layer type '%s': tie_key '%s' is not a string key",
                               ops->name, ops->tie_key);
    }
    if (ops->width_key) {
        int w = ml_layer_key_find(ops, ops->width_key);
        if (w < 0 || ops->keys[w].kind != ML_KEY_INT)
            return pst_err_set(err, E, "layer type '%s': width_key '%s' is not an int key",
                               ops->name, ops->width_key);
    }
    if (r->n == r->cap) {
        int cap = 2 * r->cap;
        const ml_layer_ops **p = realloc(r->own, (size_t)cap * sizeof *p);
        if (!p)
            return pst_err_set(err, PST_ERR_NOMEM, "layer registry: out of memory");
        r->own = p;
        r->ops = p;
        r->cap = cap;
    }
    r->own[r->n++] = ops;
    return PST_OK;
}

int ml_registry_count(const ml_registry *r) { return r->n; }

const ml_layer_ops *ml_registry_at(const ml_registry *r, int i)
{
    assert(i >= 0 && i < r->n);
    return r->ops[i];
}

const ml_layer_ops *ml_registry_find(const ml_registry *r, const char *name)
{
    for (int i = 0; name && i < r->n; i++)
        if (strcmp(r->ops[i]->name, name) == 0)
            return r->ops[i];
    return NULL;
}

void ml_registry_names(const ml_registry *r, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < r->n && len < n; i++) {
        int w = snprintf(buf + len, n - len, "%s%s", i ? ", " : "", r->ops[i]->name);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

/* ---- Specs -------------------------------------------------------------------------- */

void ml_shape_text(const ml_shape *s, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->rank && len < n; i++) {
        int w = snprintf(buf + len, n - len, "%s%d", i ? ", " : "(", s->d[i]);
        if (w < 0)
            return;
        len += (size_t)w;
    }
    if (len < n)
        snprintf(buf + len, n - len, s->rank ? ")" : "()");
}

int ml_layer_key_find(const ml_layer_ops *ops, const char *name)
{
    for (int k = 0; k < ops->nkeys; k++)
        if (strcmp(ops->keys[k].name, name) == 0)
            return k;
    return -1;
}

static ml_value key_default(const ml_layer_key *k)
{
    ml_value v;
    memset(&v, 0, sizeof v);
    if (k->kind == ML_KEY_FLOAT)
        v.f = k->def;
    else if (k->kind != ML_KEY_STRING)
        v.i = (int64_t)k->def;
    return v;
}

void ml_layer_spec_init(ml_layer_spec *s, const ml_layer_ops *ops)
{
    memset(s, 0, sizeof *s);
    s->ops = ops;
    s->trainable = 1;
    s->lr_mult = 1.0f;
    for (int k = 0; k < ops->nkeys; k++)
        s->val[k] = key_default(&ops->keys[k]);
}

void ml_layer_spec_set_type(ml_layer_spec *s, const ml_layer_ops *ops)
{
    const ml_layer_ops *old = s->ops;
    ml_value was[ML_MAX_KEYS];
    memcpy(was, s->val, sizeof was);
    for (int k = 0; k < ops->nkeys; k++) {
        const ml_layer_key *key = &ops->keys[k];
        int j = old ? ml_layer_key_find(old, key->name) : -1;
        if (j >= 0 && old->keys[j].kind == key->kind) {
            s->val[k] = was[j];
            was[j].s = NULL; /* moved */
            if (key->kind != ML_KEY_STRING)
                memset(&was[j], 0, sizeof was[j]);
        } else {
            s->val[k] = key_default(key);
        }
    }
    for (int j = 0; old && j < old->nkeys; j++)
        if (old->keys[j].kind == ML_KEY_STRING)
            free(was[j].s);
    for (int k = ops->nkeys; k < ML_MAX_KEYS; k++)
        memset(&s->val[k], 0, sizeof s->val[k]);
    s->ops = ops;
}

void ml_layer_spec_fini(ml_layer_spec *s)
{
    free(s->name);
    for (unsigned i = 0; i < s->ninputs; i++)
        free(s->inputs[i]);
    free(s->inputs);
    for (int k = 0; s->ops && k < s->ops->nkeys; k++)
        if (s->ops->keys[k].kind == ML_KEY_STRING)
            free(s->val[k].s);
    memset(s, 0, sizeof *s);
}

void ml_model_spec_fini(ml_model_spec *s)
{
    for (unsigned l = 0; s->layers && l < s->nlayers; l++)
        ml_layer_spec_fini(&s->layers[l]);
    free(s->layers);
    memset(s, 0, sizeof *s);
}

static char *dup_or_null(const char *s, int *bad)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *bad = 1;
    return d;
}

int ml_model_spec_copy(ml_model_spec *dst, const ml_model_spec *src, pst_err *err)
{
    memset(dst, 0, sizeof *dst);
    dst->loss = src->loss;
    dst->init = src->init;
    if (src->nlayers && !(dst->layers = calloc(src->nlayers, sizeof *dst->layers)))
        return pst_err_set(err, PST_ERR_NOMEM, "model spec: out of memory");
    dst->nlayers = src->nlayers;
    int bad = 0;
    for (unsigned l = 0; l < src->nlayers; l++) {
        const ml_layer_spec *a = &src->layers[l];
        ml_layer_spec *b = &dst->layers[l];
        *b = *a;
        b->name = dup_or_null(a->name, &bad);
        b->inputs = NULL;
        b->ninputs = 0;
        if (a->ninputs && (b->inputs = calloc(a->ninputs, sizeof *b->inputs))) {
            b->ninputs = a->ninputs;
            for (unsigned i = 0; i < a->ninputs; i++)
                b->inputs[i] = dup_or_null(a->inputs[i], &bad);
        } else if (a->ninputs) {
            bad = 1;
        }
        for (int k = 0; k < a->ops->nkeys; k++)
            if (a->ops->keys[k].kind == ML_KEY_STRING)
                b->val[k].s = dup_or_null(a->val[k].s, &bad);
    }
    if (bad) {
        ml_model_spec_fini(dst);
        return pst_err_set(err, PST_ERR_NOMEM, "model spec: out of memory");
    }
    return PST_OK;
}

void ml_layer_spec_name(const ml_model_spec *s, unsigned l, char *buf, size_t n)
{
    assert(l < s->nlayers && n > 0);
    const ml_layer_spec *L = &s->layers[l];
    char tmp[ML_NAME_MAX + 1];
    if (L->name && L->name[0]) {
        snprintf(tmp, sizeof tmp, "%s", L->name);
    } else {
        int k = 0;
        for (unsigned j = 0; j < l; j++)
            k += s->layers[j].ops == L->ops;
        snprintf(tmp, sizeof tmp, "%s_%d", L->ops->prefix, k);
    }
    snprintf(buf, n, "%s", tmp);
}

int ml_layer_spec_out_act(const ml_layer_spec *s)
{
    if (s->ops == &ml_layer_activation || s->ops->post_activation) {
        int k = ml_layer_key_find(s->ops, "activation");
        return k >= 0 ? (int)s->val[k].i : 0;
    }
    return 0;
}

int ml_layer_key_check(const ml_layer_key *k, const ml_value *v, pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    int bounded = k->max >= k->min;
    switch (k->kind) {
    case ML_KEY_INT:
        if ((double)v->i < k->min || (bounded && (double)v->i > k->max)) {
            if (bounded)
                return pst_err_set(err, E, "%s: must be in [%.0f, %.0f], got %" PRId64, k->name,
                                   k->min, k->max, v->i);
            return pst_err_set(err, E, "%s: must be >= %.0f, got %" PRId64, k->name, k->min, v->i);
        }
        return PST_OK;
    case ML_KEY_FLOAT:
        if (!isfinite(v->f) || v->f < k->min || (bounded && v->f > k->max)) {
            if (bounded)
                return pst_err_set(err, E, "%s: must be in [%g, %g], got %g", k->name, k->min,
                                   k->max, v->f);
            return pst_err_set(err, E, "%s: must be >= %g, got %g", k->name, k->min, v->f);
        }
        return PST_OK;
    case ML_KEY_BOOL:
        return v->i == 0 || v->i == 1 ? PST_OK
                                      : pst_err_set(err, E, "%s: must be true or false", k->name);
    case ML_KEY_ENUM:
        if (v->i < 0 || v->i > INT32_MAX || !k->enum_name((int)v->i))
            return pst_err_set(err, E, "%s: invalid value %" PRId64, k->name, v->i);
        return PST_OK;
    case ML_KEY_STRING: return PST_OK;
    }
    return pst_err_set(err, E, "%s: unknown kind", k->name);
}

int ml_layer_err_path(pst_err *err, unsigned l)
{
    if (!err)
        return PST_ERR_CONFIG;
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    int n = snprintf(err->msg, sizeof err->msg, "model.layers.%u.", l);
    if (n > 0 && (size_t)n < sizeof err->msg) /* the message loses its tail if need be */
        memcpy(err->msg + n, old, sizeof err->msg - (size_t)n - 1);
    err->msg[sizeof err->msg - 1] = '\0';
    return err->code;
}

/* Index of the layer before `before` whose name is `name`, ML_SRC_INPUT / ML_SRC_SPARSE for
 * the model's inputs, NO_LAYER if none (and FORWARD_REF if a layer at or after `before`
 * has it). */
enum { NO_LAYER = -3, FORWARD_REF = -4 };
static int find_input(const ml_model_spec *s, unsigned before, const char *name)
{
    if (strcmp(name, ML_INPUT_NAME) == 0)
        return ML_SRC_INPUT;
    if (strcmp(name, ML_SPARSE_NAME) == 0)
        return ML_SRC_SPARSE;
    char nm[ML_NAME_MAX + 1];
    for (unsigned j = 0; j < s->nlayers; j++) {
        ml_layer_spec_name(s, j, nm, sizeof nm);
        if (strcmp(nm, name) == 0)
            return j < before ? (int)j : FORWARD_REF;
    }
    return NO_LAYER;
}

int ml_model_spec_sources(const ml_model_spec *s, unsigned l, int *src, pst_err *err)
{
    const ml_layer_spec *L = &s->layers[l];
    char me[ML_NAME_MAX + 1];
    ml_layer_spec_name(s, l, me, sizeof me);
    if (L->ninputs == 0) {
        src[0] = L->ops->sparse ? ML_SRC_SPARSE : (int)l - 1;
        return 1;
    }
    if (L->ninputs > ML_MAX_INPUTS) {
        pst_err_set(err, PST_ERR_CONFIG,
                    "model.layers.%u.inputs: layer %s has %u inputs (at "
                    "most %d)",
                    l, me, L->ninputs, ML_MAX_INPUTS);
        return -1;
    }
    for (unsigned i = 0; i < L->ninputs; i++) {
        const char *name = L->inputs[i] ? L->inputs[i] : "";
        int j = find_input(s, l, name);
        if (j == NO_LAYER || j == FORWARD_REF) {
            pst_err_set(err, PST_ERR_CONFIG,
                        j == NO_LAYER ? "model.layers.%u.inputs: layer %s: no layer is named '%s' "
                                        "(inputs name earlier layers, '" ML_INPUT_NAME
                                        "' or '" ML_SPARSE_NAME "')"
                                      : "model.layers.%u.inputs: layer %s: '%s' is not an earlier "
                                        "layer (inputs come before the layer: no cycles)",
                        l, me, name);
            return -1;
        }
        src[i] = j;
    }
    return (int)L->ninputs;
}

int ml_model_spec_check(const ml_model_spec *s, pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    if (!s->layers || s->nlayers == 0)
        return pst_err_set(err, E, "model.layers: the model has no layers");
    unsigned nparam = 0;
    unsigned char *used = calloc(s->nlayers, 1);
    if (!used)
        return pst_err_set(err, PST_ERR_NOMEM, "model: out of memory");
    int rc = PST_OK;
    for (unsigned l = 0; l < s->nlayers && !rc; l++) {
        const ml_layer_spec *L = &s->layers[l];
        assert(L->ops);
        for (int k = 0; k < L->ops->nkeys && !rc; k++)
            if ((rc = ml_layer_key_check(&L->ops->keys[k], &L->val[k], err)))
                ml_layer_err_path(err, l);
        if (rc)
            break;
        if (L->name &&
            (strcmp(L->name, ML_INPUT_NAME) == 0 || strcmp(L->name, ML_SPARSE_NAME) == 0)) {
            rc = pst_err_set(err, E, "model.layers.%u.name: '%s' names the model's %s", l, L->name,
                             strcmp(L->name, ML_INPUT_NAME) == 0 ? "input" : "sparse features");
            break;
        }
        char me[ML_NAME_MAX + 1], other[ML_NAME_MAX + 1];
        ml_layer_spec_name(s, l, me, sizeof me);
        for (unsigned j = 0; j < l; j++) {
            ml_layer_spec_name(s, j, other, sizeof other);
            if (strcmp(me, other) == 0) {
                rc = pst_err_set(err, E,
                                 "model.layers.%u.name: '%s' is already the name of "
                                 "model.layers.%u",
                                 l, me, j);
                break;
            }
        }
        if (rc)
            break;
        int src[ML_MAX_INPUTS];
        int nin = ml_model_spec_sources(s, l, src, err);
        if (nin < 0) {
            rc = E;
            break;
        }
        if (nin < L->ops->min_inputs || nin > L->ops->max_inputs) {
            rc = pst_err_set(err, E,
                             "model.layers.%u.inputs: layer %s (%s) takes %d to %d "
                             "inputs, got %d",
                             l, me, L->ops->name, L->ops->min_inputs, L->ops->max_inputs, nin);
            break;
        }
        int reads_sparse = 0;
        for (int i = 0; i < nin; i++)
            reads_sparse += src[i] == ML_SRC_SPARSE;
        if (L->ops->sparse ? nin != 1 || !reads_sparse : reads_sparse) {
            rc = pst_err_set(err, E,
                             L->ops->sparse ? "model.layers.%u.inputs: layer %s (%s) reads '%s' "
                                              "alone (the batch's sparse features)"
                                            : "model.layers.%u.inputs: layer %s (%s) cannot "
                                              "read '%s' (only sparse layer types can)",
                             l, me, L->ops->name, ML_SPARSE_NAME);
            break;
        }
        for (int i = 0; i < nin; i++)
            if (src[i] >= 0)
                used[src[i]] = 1;
        nparam += L->ops->has_params != 0;
    }
    for (unsigned l = 0; !rc && l + 1 < s->nlayers; l++)
        if (!used[l]) {
            char me[ML_NAME_MAX + 1];
            ml_layer_spec_name(s, l, me, sizeof me);
            rc = pst_err_set(err, E,
                             "model.layers.%u: the output of layer %s is used by no "
                             "later layer",
                             l, me);
        }
    free(used);
    if (!rc && nparam == 0)
        rc = pst_err_set(err, E,
                         "model.layers: needs at least one layer with parameters "
                         "(e.g. dense)");
    return rc;
}

int ml_model_spec_same(const ml_model_spec *a, const ml_model_spec *b)
{
    if (a->nlayers != b->nlayers || a->loss != b->loss)
        return 0;
    for (unsigned l = 0; l < a->nlayers; l++) {
        const ml_layer_spec *x = &a->layers[l], *y = &b->layers[l];
        if (x->ops != y->ops || x->ninputs != y->ninputs)
            return 0;
        char nx[ML_NAME_MAX + 1], ny[ML_NAME_MAX + 1];
        ml_layer_spec_name(a, l, nx, sizeof nx);
        ml_layer_spec_name(b, l, ny, sizeof ny);
        if (strcmp(nx, ny) != 0)
            return 0;
        for (unsigned i = 0; i < x->ninputs; i++)
            if (strcmp(x->inputs[i], y->inputs[i]) != 0)
                return 0;
        for (int k = 0; k < x->ops->nkeys; k++) {
            const ml_layer_key *K = &x->ops->keys[k];
            if (K->flags & ML_KEY_COMPAT)
                continue;
            if (K->kind == ML_KEY_STRING
                    ? strcmp(x->val[k].s ? x->val[k].s : "", y->val[k].s ? y->val[k].s : "") != 0
                : K->kind == ML_KEY_FLOAT ? x->val[k].f != y->val[k].f
                                          : x->val[k].i != y->val[k].i)
                return 0;
        }
    }
    return 1;
}

/* ---- Docs and help ------------------------------------------------------------------ */

static void key_value_text(const ml_layer_key *k, char *buf, size_t n)
{
    int bounded = k->max >= k->min;
    switch (k->kind) {
    case ML_KEY_INT:
    case ML_KEY_FLOAT: {
        const char *kind = k->kind == ML_KEY_INT ? "int" : "float";
        if (bounded)
            snprintf(buf, n, "%s in [%g, %g]", kind, k->min, k->max);
        else
            snprintf(buf, n, "%s >= %g", kind, k->min);
        return;
    }
    case ML_KEY_BOOL: snprintf(buf, n, "bool"); return;
    case ML_KEY_STRING: snprintf(buf, n, "string"); return;
    case ML_KEY_ENUM: {
        size_t len = 0;
        buf[0] = '\0';
        for (int i = 0; k->enum_name(i) && len < n; i++) {
            int w = snprintf(buf + len, n - len, "%s`%s`", i ? " \\| " : "", k->enum_name(i));
            if (w < 0)
                break;
            len += (size_t)w;
        }
        return;
    }
    }
}

static void key_default_text(const ml_layer_key *k, char *buf, size_t n)
{
    if (k->flags & ML_KEY_REQUIRED)
        snprintf(buf, n, "required");
    else if (k->kind == ML_KEY_ENUM)
        snprintf(buf, n, "`%s`", k->enum_name((int)k->def));
    else if (k->kind == ML_KEY_BOOL)
        snprintf(buf, n, "%s", k->def ? "true" : "false");
    else if (k->kind == ML_KEY_STRING)
        snprintf(buf, n, "none");
    else
        snprintf(buf, n, "%g", k->def);
}

int ml_registry_print_markdown(const ml_registry *r, FILE *f)
{
    fputs("| type | key | value | default | meaning |\n|---|---|---|---|---|\n", f);
    for (int i = 0; i < r->n; i++) {
        const ml_layer_ops *o = r->ops[i];
        fprintf(f, "| `%s` | | | | %s (default names `%s_<k>`; inputs: %d", o->name, o->summary,
                o->prefix, o->min_inputs);
        if (o->max_inputs != o->min_inputs)
            fprintf(f, " to %d", o->max_inputs);
        fputs(") |\n", f);
        for (int k = 0; k < o->nkeys; k++) {
            const ml_layer_key *key = &o->keys[k];
            if (key->flags & ML_KEY_COMPAT)
                continue;
            char value[512], def[128];
            key_value_text(key, value, sizeof value);
            key_default_text(key, def, sizeof def);
            fprintf(f, "| `%s` | `%s` | %s | %s | %s |\n", o->name, key->name, value, def,
                    key->doc);
        }
    }
    return ferror(f) ? PST_ERR_IO : PST_OK;
}

int ml_registry_print_help(const ml_registry *r, FILE *f)
{
    for (int i = 0; i < r->n; i++) {
        const ml_layer_ops *o = r->ops[i];
        fprintf(f, "  %-12s %s\n", o->name, o->summary);
        for (int k = 0; k < o->nkeys; k++) {
            const ml_layer_key *key = &o->keys[k];
            if (key->flags & ML_KEY_COMPAT)
                continue;
            char value[512];
            key_value_text(key, value, sizeof value);
            /* The markdown escapes and quotes are noise on a terminal. */
            char plain[512];
            size_t p = 0;
            for (const char *c = value; *c && p + 1 < sizeof plain; c++)
                if (*c != '`' && *c != '\\')
                    plain[p++] = *c;
            plain[p] = '\0';
            fprintf(f, "    %-12s %s: %s\n", key->name, plain, key->doc);
        }
    }
    return ferror(f) ? PST_ERR_IO : PST_OK;
}
