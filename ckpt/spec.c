/* ckpt/spec.c -- a model spec to and from the checkpoint header's pstrain.model JSON: layer
 * types, their keys and every name (activation, loss) from the layer registry and the name
 * tables of core/. */
#include "ckpt_internal.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 4096
#define NAME_MAX_LEN ML_NAME_MAX /* a layer name; core/model.c keeps it + ".weight" in 48 */

/* One layer as JSON: type, the type's keys (enums by name), name (null when defaulted),
 * inputs (only when given). For dense and activation layers exactly what pstrain 0.1
 * wrote. */
static int layer_json(cJSON *o, const ml_layer_spec *L)
{
    if (ckpt_json_put(o, "type", cJSON_CreateString(L->ops->name)))
        return -1;
    for (int k = 0; k < L->ops->nkeys; k++) {
        const ml_layer_key *K = &L->ops->keys[k];
        const ml_value *v = &L->val[k];
        cJSON *x = NULL;
        if ((K->flags & ML_KEY_COMPAT) || ml_layer_key_omitted(K, v))
            continue;
        switch (K->kind) {
        case ML_KEY_INT: x = cJSON_CreateNumber((double)v->i); break;
        case ML_KEY_FLOAT: x = cJSON_CreateNumber(v->f); break;
        case ML_KEY_BOOL: x = cJSON_CreateBool(v->i != 0); break;
        case ML_KEY_ENUM: x = cJSON_CreateString(K->enum_name((int)v->i)); break;
        case ML_KEY_STRING: x = v->s ? cJSON_CreateString(v->s) : cJSON_CreateNull(); break;
        }
        if (ckpt_json_put(o, K->name, x))
            return -1;
    }
    /* The name as model.c used it for the parameters: its first NAME_MAX_LEN bytes. */
    char name[NAME_MAX_LEN + 1];
    snprintf(name, sizeof name, "%s", L->name ? L->name : "");
    if (ckpt_json_put(o, "name", name[0] ? cJSON_CreateString(name) : cJSON_CreateNull()))
        return -1;
    if (L->ninputs) {
        cJSON *in = cJSON_CreateArray();
        if (ckpt_json_put(o, "inputs", in))
            return -1;
        for (unsigned i = 0; i < L->ninputs; i++)
            if (ckpt_json_put(in, NULL, cJSON_CreateString(L->inputs[i])))
                return -1;
    }
    return 0;
}

/* "input_shape" [C, H, W] only for image inputs: files of feature models stay as they
 * were. */
char *ckpt_model_json(const ml_model_spec *spec, const ml_shape *in)
{
    cJSON *root = cJSON_CreateObject(), *layers = NULL;
    char *s = NULL;
    if (!root || ckpt_json_put(root, "input_dim", cJSON_CreateNumber(ml_shape_width(in))))
        goto cleanup;
    if (in->rank > 1 && ckpt_json_put(root, "input_shape", cJSON_CreateIntArray(in->d, in->rank)))
        goto cleanup;
    if (ckpt_json_put(root, "layers", layers = cJSON_CreateArray()))
        goto cleanup;
    for (unsigned l = 0; l < spec->nlayers; l++) {
        cJSON *o = cJSON_CreateObject();
        if (ckpt_json_put(layers, NULL, o) || layer_json(o, &spec->layers[l]))
            goto cleanup;
    }
    assert(ml_loss_name(spec->loss));
    if (ckpt_json_put(root, "loss", cJSON_CreateString(ml_loss_name(spec->loss))))
        goto cleanup;
    s = cJSON_PrintUnformatted(root);
cleanup:
    cJSON_Delete(root);
    return s;
}

static int name_index(const char *s, const char *const *names, int n)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* Refuses keys of obj outside allowed[0..n), so a misspelled or corrupted key is not
 * silently dropped. */
int ckpt_only_keys(const st_file *f, const char *what, const cJSON *obj, const char *const *allowed,
                   int n, pst_err *err)
{
    for (const cJSON *k = obj->child; k; k = k->next)
        if (name_index(k->string, allowed, n) < 0)
            return pst_err_set(err, PST_ERR_DATA, "%s: %s: unknown key '%s'", f->path, what,
                               k->string);
    return ckpt_json_unique_keys(f, obj, what, err);
}

/* A JSON value as key K's value; -1 when it is not one. */
static int json_value(const ml_layer_key *K, const cJSON *x, ml_value *v)
{
    memset(v, 0, sizeof *v);
    switch (K->kind) {
    case ML_KEY_INT:
        if (!cJSON_IsNumber(x) || x->valuedouble != (double)(int64_t)x->valuedouble ||
            fabs(x->valuedouble) > 9007199254740992.0)
            return -1;
        v->i = (int64_t)x->valuedouble;
        return 0;
    case ML_KEY_FLOAT:
        if (!cJSON_IsNumber(x))
            return -1;
        v->f = x->valuedouble;
        return 0;
    case ML_KEY_BOOL:
        if (!cJSON_IsBool(x))
            return -1;
        v->i = cJSON_IsTrue(x);
        return 0;
    case ML_KEY_ENUM:
        for (int i = 0; cJSON_IsString(x) && K->enum_name(i); i++)
            if (strcmp(K->enum_name(i), x->valuestring) == 0) {
                v->i = i;
                return 0;
            }
        return -1;
    case ML_KEY_STRING:
        if (cJSON_IsNull(x))
            return 0;
        if (!cJSON_IsString(x) || !(v->s = strdup(x->valuestring)))
            return -1;
        return 0;
    }
    return -1;
}

/* "linear, relu, ..." */
static void enum_list(const ml_layer_key *K, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; K->enum_name(i) && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? ", " : "", K->enum_name(i));
}

/* One entry of pstrain.model's layers into cl (ml_layer_spec_init'ed here). */
static int parse_layer(const st_file *f, const ml_registry *reg, const char *what, const cJSON *L,
                       ml_layer_spec *cl, pst_err *err)
{
    memset(cl, 0, sizeof *cl);
    if (!cJSON_IsObject(L))
        return pst_err_set(err, PST_ERR_DATA, "%s: %s is not an object", f->path, what);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(L, "type");
    const ml_layer_ops *ops =
        cJSON_IsString(type) ? ml_registry_find(reg, type->valuestring) : NULL;
    if (!ops) {
        char names[256];
        ml_registry_names(reg, names, sizeof names);
        return pst_err_set(err, PST_ERR_DATA, "%s: %s: type is not one of %s", f->path, what,
                           names);
    }
    ml_layer_spec_init(cl, ops);
    const char *allowed[ML_MAX_KEYS + 3] = {"type", "name", "inputs"};
    int nallowed = 3;
    for (int k = 0; k < ops->nkeys; k++)
        if (!(ops->keys[k].flags & ML_KEY_COMPAT))
            allowed[nallowed++] = ops->keys[k].name;
    int rc = ckpt_only_keys(f, what, L, allowed, nallowed, err);
    if (rc)
        return rc;
    for (int k = 0; k < ops->nkeys; k++) {
        const ml_layer_key *K = &ops->keys[k];
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(L, K->name);
        if (!x || (K->flags & ML_KEY_COMPAT))
            continue; /* absent: the default (a required key then fails its check) */
        if (json_value(K, x, &cl->val[k])) {
            char names[256] = "";
            if (K->kind == ML_KEY_ENUM) {
                enum_list(K, names, sizeof names);
                return pst_err_set(err, PST_ERR_DATA, "%s: %s: %s is not one of %s", f->path, what,
                                   K->name, names);
            }
            return pst_err_set(err, PST_ERR_DATA, "%s: %s: %s is not a valid value", f->path, what,
                               K->name);
        }
    }
    for (int k = 0; k < ops->nkeys; k++) {
        pst_err e2 = {0};
        if (ml_layer_key_check(&ops->keys[k], &cl->val[k], &e2))
            return pst_err_set(err, PST_ERR_DATA, "%s: %s: %s", f->path, what, e2.msg);
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(L, "name");
    if (name && !cJSON_IsNull(name)) {
        size_t len = cJSON_IsString(name) ? strlen(name->valuestring) : 0;
        if (len < 1 || len > NAME_MAX_LEN)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s: %s: name is not a string of 1 to %d "
                               "characters",
                               f->path, what, NAME_MAX_LEN);
        if (!(cl->name = strdup(name->valuestring)))
            return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
    }
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(L, "inputs");
    if (inputs) {
        int n = cJSON_GetArraySize(inputs);
        if (!cJSON_IsArray(inputs) || n < 1 || n > ML_MAX_INPUTS)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s: %s: inputs is not a list of 1 to %d "
                               "names",
                               f->path, what, ML_MAX_INPUTS);
        if (!(cl->inputs = calloc((size_t)n, sizeof *cl->inputs)))
            return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
        for (const cJSON *x = inputs->child; x; x = x->next) {
            if (!cJSON_IsString(x))
                return pst_err_set(err, PST_ERR_DATA, "%s: %s: inputs is not a list of names",
                                   f->path, what);
            if (!(cl->inputs[cl->ninputs++] = strdup(x->valuestring)))
                return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
        }
    }
    return PST_OK;
}

/* in_shape: "input_shape" when there (its product must be input_dim), else (input_dim). */
static int parse_input_shape(const st_file *f, const cJSON *root, int in_dim, ml_shape *in,
                             pst_err *err)
{
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(root, "input_shape");
    *in = ml_shape_flat(in_dim);
    if (!sh)
        return PST_OK;
    int r = cJSON_GetArraySize(sh);
    int64_t prod = 1;
    if (!cJSON_IsArray(sh) || r != 3)
        goto bad;
    *in = (ml_shape){.rank = 3};
    for (int i = 0; i < r; i++) {
        const cJSON *d = cJSON_GetArrayItem(sh, i);
        if (!ckpt_json_is_uint(d, 1 << 20) || d->valuedouble < 1)
            goto bad;
        in->d[i] = (int)d->valuedouble;
        prod *= in->d[i];
    }
    if (prod == in_dim)
        return PST_OK;
bad:
    return pst_err_set(err, PST_ERR_DATA,
                       "%s: pstrain.model: input_shape is not [C, H, W] with C*H*W = input_dim",
                       f->path);
}

int ckpt_parse_model_meta(const st_file *f, const ml_registry *reg, ml_model_spec *spec,
                          int *in_dim, ml_shape *in_shape, pst_err *err)
{
    static const char *const top_keys[] = {"input_dim", "input_shape", "layers", "loss"};
    ml_shape unused;
    if (!in_shape)
        in_shape = &unused;
    const char *text = ckpt_st_meta_str(f, "pstrain.model");
    memset(spec, 0, sizeof *spec);
    if (!reg)
        reg = ml_registry_builtin();
    if (!text && ckpt_hf_weights_file(f))
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: the weights of a Hugging Face GPT-2: give the folder that holds "
                           "them and its config.json",
                           f->path);
    if (!text)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: no pstrain.model in the metadata: the "
                           "architecture is unknown",
                           f->path);
    int rc = PST_OK;
    cJSON *root = cJSON_Parse(text);
    if (!cJSON_IsObject(root)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model is not a JSON object", f->path);
        goto cleanup;
    }
    if ((rc = ckpt_only_keys(f, "pstrain.model", root, top_keys, NELEM(top_keys), err)))
        goto cleanup;
    const cJSON *dim = cJSON_GetObjectItemCaseSensitive(root, "input_dim");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(root, "loss");
    /* 0: a model of sparse features alone (ml_model_create refuses it for a model that
     * reads the dense input). */
    if (!ckpt_json_is_uint(dim, INT32_MAX)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model: input_dim is not a width >= 0",
                         f->path);
        goto cleanup;
    }
    *in_dim = (int)dim->valuedouble;
    if ((rc = parse_input_shape(f, root, *in_dim, in_shape, err)))
        goto cleanup;
    int nl = cJSON_GetArraySize(layers);
    if (!cJSON_IsArray(layers) || nl < 1 || nl > MAX_LAYERS) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: pstrain.model: layers is not a list of 1 to %d "
                         "layers",
                         f->path, MAX_LAYERS);
        goto cleanup;
    }
    int li = cJSON_IsString(loss) ? ml_loss_find(loss->valuestring) : -1;
    if (li < 0) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: pstrain.model: loss is not one of "
                         "categorical_crossentropy, binary_crossentropy, mse",
                         f->path);
        goto cleanup;
    }
    spec->loss = (ml_loss)li;
    spec->init = ML_INIT_AUTO;
    spec->layers = calloc((size_t)nl, sizeof *spec->layers);
    if (!spec->layers) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
        goto cleanup;
    }
    int l = 0;
    for (const cJSON *L = layers->child; L; L = L->next, l++) {
        char what[64];
        snprintf(what, sizeof what, "pstrain.model: layers[%d]", l);
        rc = parse_layer(f, reg, what, L, &spec->layers[l], err);
        spec->nlayers = (unsigned)l + 1; /* so that spec_fini frees what it holds */
        if (rc)
            goto cleanup;
    }
    pst_err e2 = {0};
    int sparse = 0;
    for (unsigned i = 0; i < spec->nlayers; i++)
        sparse |= spec->layers[i].ops->sparse;
    if (ml_model_spec_check(spec, &e2))
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model: %s", f->path, e2.msg);
    else if (*in_dim == 0 && !sparse)
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: pstrain.model: input_dim is 0, but only a model of sparse "
                         "features alone has no dense input",
                         f->path);
cleanup:
    cJSON_Delete(root);
    if (rc)
        ml_model_spec_fini(spec);
    return rc;
}
