/* ckpt/model.c -- model checkpoints: weights, the model spec and the training data's task,
 * classes and scaler, and the mapping between specs and the checkpoint header
 * (pstrain.model, pstrain.data). Layer types, their keys and every name (activation,
 * loss, scale) come from the layer registry and the name tables of core/ and data/. */
#include "ckpt_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 4096
#define NAME_MAX_LEN ML_NAME_MAX /* a layer name; core/model.c keeps it + ".weight" in 48 */

/* ---- Writing --------------------------------------------------------------------------- */

/* The number of classes of m's output: K units, or 2 for a single unit (sigmoid). */
static int model_classes(const ml_model *m)
{
    int k = ml_model_out_dim(m);
    return k == 1 ? 2 : k;
}

/* Checks that spec is the layer list m was built from. */
static int spec_matches(const ml_model_spec *spec, ml_model *m, pst_err *err)
{
    if (!ml_model_spec_same(spec, ml_model_get_spec(m)))
        return pst_err_set(err, PST_ERR_ARG, "checkpoint: the layer list does not match the model");
    return PST_OK;
}

/* One layer as JSON: type, the type's keys (enums by name), name (null when defaulted),
 * inputs (only when given). For dense and activation layers exactly what pstrain 0.1
 * wrote. */
static int layer_json(cJSON *o, const ml_layer_spec *L)
{
    if (!cJSON_AddStringToObject(o, "type", L->ops->name))
        return -1;
    for (int k = 0; k < L->ops->nkeys; k++) {
        const ml_layer_key *K = &L->ops->keys[k];
        const ml_value *v = &L->val[k];
        cJSON *x = NULL;
        if (K->flags & ML_KEY_COMPAT)
            continue;
        switch (K->kind) {
        case ML_KEY_INT: x = cJSON_CreateNumber((double)v->i); break;
        case ML_KEY_FLOAT: x = cJSON_CreateNumber(v->f); break;
        case ML_KEY_BOOL: x = cJSON_CreateBool(v->i != 0); break;
        case ML_KEY_ENUM: x = cJSON_CreateString(K->enum_name((int)v->i)); break;
        case ML_KEY_STRING: x = v->s ? cJSON_CreateString(v->s) : cJSON_CreateNull(); break;
        }
        if (!x || !cJSON_AddItemToObject(o, K->name, x)) {
            cJSON_Delete(x);
            return -1;
        }
    }
    /* The name as model.c used it for the parameters: its first NAME_MAX_LEN bytes. */
    char name[NAME_MAX_LEN + 1];
    snprintf(name, sizeof name, "%s", L->name ? L->name : "");
    if (!(name[0] ? cJSON_AddStringToObject(o, "name", name) : cJSON_AddNullToObject(o, "name")))
        return -1;
    if (L->ninputs) {
        cJSON *in = cJSON_AddArrayToObject(o, "inputs");
        if (!in)
            return -1;
        for (unsigned i = 0; i < L->ninputs; i++) {
            cJSON *x = cJSON_CreateString(L->inputs[i]);
            if (!x)
                return -1;
            cJSON_AddItemToArray(in, x);
        }
    }
    return 0;
}

static char *model_json(const ml_model_spec *spec, int in_dim)
{
    cJSON *root = cJSON_CreateObject(), *layers = NULL;
    char *s = NULL;
    if (!root || !cJSON_AddNumberToObject(root, "input_dim", in_dim) ||
        !(layers = cJSON_AddArrayToObject(root, "layers")))
        goto cleanup;
    for (unsigned l = 0; l < spec->nlayers; l++) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            goto cleanup;
        cJSON_AddItemToArray(layers, o);
        if (layer_json(o, &spec->layers[l]))
            goto cleanup;
    }
    assert(ml_loss_name(spec->loss));
    if (!cJSON_AddStringToObject(root, "loss", ml_loss_name(spec->loss)))
        goto cleanup;
    s = cJSON_PrintUnformatted(root);
cleanup:
    cJSON_Delete(root);
    return s;
}

static char *data_json(const ds_dataset *like, ml_model *m, const ds_scaler *scaler)
{
    int classify = ds_task_of(like) == DS_TASK_CLASSIFY;
    int k = classify ? model_classes(m) : 0, named = 0;
    for (int c = 0; classify && c < k; c++)
        named |= ds_class_name(like, c) != NULL;
    cJSON *root = cJSON_CreateObject();
    char *s = NULL;
    /* Names from data/data.h's tables; a scaler of unknown kind is written as none. */
    const char *scale = scaler ? ds_scale_name(scaler->kind) : NULL;
    if (!root ||
        !cJSON_AddStringToObject(root, "task",
                                 ds_task_name(classify ? DS_TASK_CLASSIFY : DS_TASK_REGRESS)) ||
        !cJSON_AddNumberToObject(root, "num_classes", k))
        goto cleanup;
    if (named) {
        cJSON *names = cJSON_AddArrayToObject(root, "class_names");
        if (!names)
            goto cleanup;
        for (int c = 0; c < k; c++) {
            const char *nm = ds_class_name(like, c);
            cJSON *v = nm ? cJSON_CreateString(nm) : cJSON_CreateNull();
            if (!v)
                goto cleanup;
            cJSON_AddItemToArray(names, v);
        }
    } else if (!cJSON_AddNullToObject(root, "class_names")) {
        goto cleanup;
    }
    if (!cJSON_AddStringToObject(root, "scale", scale ? scale : ds_scale_name(DS_SCALE_NONE)))
        goto cleanup;
    s = cJSON_PrintUnformatted(root);
cleanup:
    cJSON_Delete(root);
    return s;
}

int ckpt_save_model(const char *path, ml_model *m, const ml_model_spec *spec,
                    const ds_dataset *like, const ds_scaler *scaler, pst_err *err)
{
    int rc = PST_OK;
    char *model = NULL, *data = NULL, *json = NULL;
    out_tensor *ts = NULL;
    if (spec && (rc = spec_matches(spec, m, err)))
        return rc;
    int with_scaler = scaler && scaler->kind != DS_SCALE_NONE;
    if (with_scaler && (scaler->d != ml_model_in_dim(m) || !scaler->shift || !scaler->mul))
        return pst_err_set(err, PST_ERR_ARG, "checkpoint: scaler of %d features for a model of %d",
                           scaler->d, ml_model_in_dim(m));
    int nseg = ml_model_nsegments(m), nt = nseg + (with_scaler ? 2 : 0);
    ts = calloc((size_t)nt, sizeof *ts);
    if (!ts)
        goto nomem;
    const float *params = ml_model_params(m);
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        for (int j = 0; j < i; j++)
            if (strcmp(ts[j].name, sg->name) == 0) {
                rc = pst_err_set(err, PST_ERR_ARG,
                                 "checkpoint: two parameters are named '%s' "
                                 "(rename a layer)",
                                 sg->name);
                goto cleanup;
            }
        ts[i] = (out_tensor){
            sg->name, sg->cols == 1 ? 1 : 2, {sg->rows, sg->cols}, params + sg->offset, sg->len,
            CKPT_F32};
    }
    if (with_scaler) {
        ts[nseg] =
            (out_tensor){PREP_SHIFT, 1, {scaler->d, 0}, scaler->shift, (size_t)scaler->d, CKPT_F32};
        ts[nseg + 1] =
            (out_tensor){PREP_MUL, 1, {scaler->d, 0}, scaler->mul, (size_t)scaler->d, CKPT_F32};
    }
    /* A file that could not be read back is worse than none: refuse non-finite values. */
    for (int i = 0; i < nt; i++) {
        int64_t bad = ckpt_first_nonfinite(ts[i].p, ts[i].n);
        if (bad >= 0) {
            rc = pst_err_set(err, PST_ERR_NUMERIC,
                             "%s: not written: tensor '%s' element %" PRId64 " is %g", path,
                             ts[i].name, bad, (double)((const float *)ts[i].p)[bad]);
            goto cleanup;
        }
    }
    if ((spec && !(model = model_json(spec, ml_model_in_dim(m)))) ||
        (like && !(data = data_json(like, m, scaler))) ||
        !(json = ckpt_st_header_json(ts, nt, model, data, NULL, 0)))
        goto nomem;
    rc = ckpt_st_write(path, json, ts, nt, err);
    goto cleanup;

nomem:
    rc = pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
cleanup:
    cJSON_free(model);
    cJSON_free(data);
    cJSON_free(json);
    free(ts);
    return rc;
}

/* ---- Reading: the metadata ------------------------------------------------------------- */

/* What pstrain.data says. */
typedef struct {
    int present;
    ds_task task;
    int nclasses;
    char **names; /* (nclasses) entries may be NULL; NULL when none */
    ds_scale_kind scale;
} data_meta;

static void data_meta_fini(data_meta *dm)
{
    if (dm->names)
        for (int c = 0; c < dm->nclasses; c++)
            free(dm->names[c]);
    free(dm->names);
    memset(dm, 0, sizeof *dm);
}

static void spec_fini(ml_model_spec *spec) { ml_model_spec_fini(spec); }

static int name_index(const char *s, const char *const *names, int n)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* Refuses keys of obj outside allowed[0..n), so a misspelled or corrupted key is not
 * silently dropped. */
static int only_keys(const st_file *f, const char *what, const cJSON *obj,
                     const char *const *allowed, int n, pst_err *err)
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
    int rc = only_keys(f, what, L, allowed, nallowed, err);
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

static int parse_model_meta(const st_file *f, const ml_registry *reg, ml_model_spec *spec,
                            int *in_dim, pst_err *err)
{
    static const char *const top_keys[] = {"input_dim", "layers", "loss"};
    const char *text = ckpt_st_meta_str(f, "pstrain.model");
    memset(spec, 0, sizeof *spec);
    if (!reg)
        reg = ml_registry_builtin();
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
    if ((rc = only_keys(f, "pstrain.model", root, top_keys, NELEM(top_keys), err)))
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
        spec_fini(spec);
    return rc;
}

static int parse_data_meta(const st_file *f, data_meta *dm, pst_err *err)
{
    static const char *const keys[] = {"task", "num_classes", "class_names", "scale"};
    memset(dm, 0, sizeof *dm);
    const char *text = ckpt_st_meta_str(f, "pstrain.data");
    if (!text)
        return PST_OK;
    dm->present = 1;
    int rc = PST_OK;
    cJSON *root = cJSON_Parse(text);
    if (!cJSON_IsObject(root)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data is not a JSON object", f->path);
        goto cleanup;
    }
    if ((rc = only_keys(f, "pstrain.data", root, keys, NELEM(keys), err)))
        goto cleanup;
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(root, "task");
    const cJSON *nc = cJSON_GetObjectItemCaseSensitive(root, "num_classes");
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(root, "class_names");
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(root, "scale");
    int ti = cJSON_IsString(task) ? ds_task_find(task->valuestring) : -1;
    if (ti < 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: task is not classify or regress",
                         f->path);
        goto cleanup;
    }
    dm->task = (ds_task)ti;
    if (!ckpt_json_is_uint(nc, 1 << 24) ||
        (dm->task == DS_TASK_CLASSIFY) != (nc->valuedouble > 0)) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: pstrain.data: num_classes must be >= 1 for "
                         "classify and 0 for regress",
                         f->path);
        goto cleanup;
    }
    dm->nclasses = (int)nc->valuedouble;
    int si = cJSON_IsString(scale) ? ds_scale_find(scale->valuestring) : -1;
    if (si < 0) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: pstrain.data: scale is not none, minmax or "
                         "standardize",
                         f->path);
        goto cleanup;
    }
    if (dm->task == DS_TASK_REGRESS && names && !cJSON_IsNull(names)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: class_names given for regress",
                         f->path);
        goto cleanup;
    }
    dm->scale = (ds_scale_kind)si;
    if (names && !cJSON_IsNull(names)) {
        if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) != dm->nclasses) {
            rc = pst_err_set(err, PST_ERR_DATA,
                             "%s: pstrain.data: class_names is not a list of "
                             "num_classes (%d) names",
                             f->path, dm->nclasses);
            goto cleanup;
        }
        if (!(dm->names = calloc((size_t)dm->nclasses, sizeof *dm->names))) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
            goto cleanup;
        }
        int c = 0;
        for (const cJSON *v = names->child; v; v = v->next, c++) {
            if (cJSON_IsNull(v))
                continue;
            if (!cJSON_IsString(v)) {
                rc = pst_err_set(err, PST_ERR_DATA,
                                 "%s: pstrain.data: class_names[%d] is not a "
                                 "string",
                                 f->path, c);
                goto cleanup;
            }
            for (int j = 0; j < c; j++)
                if (dm->names[j] && strcmp(dm->names[j], v->valuestring) == 0) {
                    rc = pst_err_set(err, PST_ERR_DATA,
                                     "%s: pstrain.data: class name '%s' "
                                     "appears twice",
                                     f->path, v->valuestring);
                    goto cleanup;
                }
            if (!(dm->names[c] = strdup(v->valuestring))) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
                goto cleanup;
            }
        }
    }
cleanup:
    cJSON_Delete(root);
    if (rc)
        data_meta_fini(dm);
    return rc;
}

/* ---- Reading: tensors against the model ------------------------------------------------ */

/* Matches every tensor of f to a segment of m or to a preprocess slot (when scale is not
 * NONE), then, all checks passed, copies the weights into m and the transform into
 * scaler (may be NULL). */
static int match_and_copy(st_file *f, ml_model *m, ds_scale_kind scale, ds_scaler *scaler,
                          pst_err *err)
{
    int nseg = ml_model_nsegments(m);
    st_tensor **src = calloc((size_t)nseg, sizeof *src);
    float *shift = NULL, *mul = NULL;
    int rc = PST_OK, d = ml_model_in_dim(m);
    st_tensor *ts = NULL, *tm = NULL;
    if (!src) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
        goto cleanup;
    }
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        for (int j = 0; j < i; j++)
            if (strcmp(ml_model_segment(m, j)->name, sg->name) == 0) {
                rc = pst_err_set(err, PST_ERR_DATA,
                                 "%s: two parameters of the model are named "
                                 "'%s'",
                                 f->path, sg->name);
                goto cleanup;
            }
        int64_t shape[2] = {sg->rows, sg->cols};
        if ((rc = ckpt_st_claim(f, sg->name, shape, sg->cols == 1 ? 1 : 2, &src[i], err)))
            goto cleanup;
    }
    if (scale != DS_SCALE_NONE) {
        int64_t shape[1] = {d};
        if ((rc = ckpt_st_claim(f, PREP_SHIFT, shape, 1, &ts, err)) ||
            (rc = ckpt_st_claim(f, PREP_MUL, shape, 1, &tm, err)))
            goto cleanup;
    }
    for (int i = 0; i < f->nt; i++)
        if (!f->t[i].used) {
            rc = pst_err_set(err, PST_ERR_DATA,
                             "%s: unknown tensor '%s': the model has no such "
                             "parameter",
                             f->path, f->t[i].name);
            goto cleanup;
        }
    if (scaler) {
        shift = malloc((size_t)d * sizeof *shift);
        mul = malloc((size_t)d * sizeof *mul);
        if (!shift || !mul) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
            goto cleanup;
        }
        for (int j = 0; j < d; j++) {
            shift[j] = 0.0f;
            mul[j] = 1.0f;
        }
        if (ts) {
            memcpy(shift, f->data + ts->begin, (size_t)d * sizeof *shift);
            memcpy(mul, f->data + tm->begin, (size_t)d * sizeof *mul);
        }
    }
    /* Everything checked: from here on nothing fails. */
    float *params = ml_model_params(m);
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        memcpy(params + sg->offset, f->data + src[i]->begin, sg->len * sizeof(float));
    }
    if (scaler) {
        *scaler = (ds_scaler){.d = d, .kind = scale, .shift = shift, .mul = mul};
        shift = mul = NULL;
    }
cleanup:
    free(src);
    free(shift);
    free(mul);
    return rc;
}

/* ---- Reading: the public calls --------------------------------------------------------- */

struct ckpt_model {
    ml_model_spec spec; /* layers and names owned */
    ml_model *net;
    data_meta dm;
    ds_scaler scaler;
    char dtype[8]; /* "fp32", or the export's pstrain.quant */
};

void ckpt_model_destroy(ckpt_model *c)
{
    if (!c)
        return;
    ml_model_destroy(c->net);
    spec_fini(&c->spec);
    data_meta_fini(&c->dm);
    ds_scaler_fini(&c->scaler);
    free(c);
}

int ckpt_load(const char *path, int max_batch, ckpt_model **out, pst_err *err)
{
    return ckpt_load_reg(path, NULL, max_batch, out, err);
}

int ckpt_load_reg(const char *path, const ml_registry *reg, int max_batch, ckpt_model **out,
                  pst_err *err)
{
    *out = NULL;
    st_file f;
    int rc = ckpt_st_open(&f, path, err);
    if (rc)
        return ckpt_one_line(err, rc);
    ckpt_model *c = calloc(1, sizeof *c);
    if (!c) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    int in_dim = 0;
    if ((rc = parse_model_meta(&f, reg, &c->spec, &in_dim, err)) ||
        (rc = parse_data_meta(&f, &c->dm, err)))
        goto fail;
    if (!c->dm.present) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: no pstrain.data in the metadata: the task and "
                         "classes are unknown",
                         path);
        goto fail;
    }
    uint64_t want = ml_model_spec_nparams(&c->spec, in_dim);
    if (want > f.data_len / 4) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: pstrain.model describes more parameters than "
                         "the file's %zu floats",
                         path, f.data_len / 4);
        goto fail;
    }
    pst_err e2 = {0};
    if (!(c->net = ml_model_create(&c->spec, in_dim, max_batch, &e2))) {
        /* A model the metadata cannot build is a bad file, not a bad job. */
        rc = pst_err_set(err, e2.code == PST_ERR_NOMEM ? PST_ERR_NOMEM : PST_ERR_DATA,
                         "%s: pstrain.model: %s", path, e2.msg);
        goto fail;
    }
    int k = model_classes(c->net);
    if (c->dm.task == DS_TASK_CLASSIFY && c->dm.nclasses != k) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: pstrain.data: num_classes %d but the model's "
                         "output gives %d classes",
                         path, c->dm.nclasses, k);
        goto fail;
    }
    if (c->dm.task == DS_TASK_REGRESS && c->spec.loss != ML_LOSS_MSE) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: task regress with loss %s", path,
                         ml_loss_name(c->spec.loss));
        goto fail;
    }
    if ((rc = match_and_copy(&f, c->net, c->dm.scale, &c->scaler, err)))
        goto fail;
    snprintf(c->dtype, sizeof c->dtype, "%s",
             f.quant ? ckpt_st_meta_str(&f, "pstrain.quant") : "fp32");
    ckpt_st_fini(&f);
    *out = c;
    return PST_OK;

fail:
    ckpt_model_destroy(c);
    ckpt_st_fini(&f);
    return ckpt_one_line(err, rc);
}

int ckpt_load_into(const char *path, ml_model *m, ds_scaler *scaler, pst_err *err)
{
    return ckpt_load_into_reg(path, NULL, m, scaler, err);
}

int ckpt_load_into_reg(const char *path, const ml_registry *reg, ml_model *m, ds_scaler *scaler,
                       pst_err *err)
{
    st_file f;
    int rc = ckpt_st_open(&f, path, err);
    if (rc)
        return ckpt_one_line(err, rc);
    ml_model_spec spec;
    data_meta dm;
    int in_dim = 0;
    memset(&spec, 0, sizeof spec);
    memset(&dm, 0, sizeof dm);
    /* The metadata, when there, must be sound even though m's architecture rules. */
    if (ckpt_st_meta_str(&f, "pstrain.model") &&
        (rc = parse_model_meta(&f, reg, &spec, &in_dim, err)))
        goto cleanup;
    if ((rc = parse_data_meta(&f, &dm, err)))
        goto cleanup;
    if (spec.nlayers && in_dim != ml_model_in_dim(m)) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: pstrain.model: input_dim %d but the model "
                         "takes %d",
                         path, in_dim, ml_model_in_dim(m));
        goto cleanup;
    }
    rc = match_and_copy(&f, m, dm.present ? dm.scale : DS_SCALE_NONE, scaler, err);
cleanup:
    spec_fini(&spec);
    data_meta_fini(&dm);
    ckpt_st_fini(&f);
    return ckpt_one_line(err, rc);
}

ml_model *ckpt_model_net(ckpt_model *c) { return c->net; }
const ml_model_spec *ckpt_model_spec(const ckpt_model *c) { return &c->spec; }
ds_task ckpt_model_task(const ckpt_model *c) { return c->dm.task; }
int ckpt_model_nclasses(const ckpt_model *c)
{
    return c->dm.task == DS_TASK_CLASSIFY ? c->dm.nclasses : 0;
}
const char *ckpt_model_class_name(const ckpt_model *c, int k)
{
    if (!c->dm.names || k < 0 || k >= c->dm.nclasses)
        return NULL;
    return c->dm.names[k];
}
const ds_scaler *ckpt_model_scaler(const ckpt_model *c) { return &c->scaler; }
const char *ckpt_model_dtype(const ckpt_model *c) { return c->dtype; }
