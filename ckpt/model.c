/* ckpt/model.c -- model checkpoints: weights, the model spec and the training data's task,
 * classes and scaler, and every mapping between layer types, activation, loss and scale
 * names, spec fields and the checkpoint header (pstrain.model, pstrain.data). */
#include "ckpt_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 4096
#define NAME_MAX_LEN 39 /* a layer name; core/model.c keeps 39 chars + ".weight" in 48 */

static const char *const act_names[] = {"linear", "relu", "sigmoid", "tanh", "softmax"};
static const char *const loss_names[] = {"categorical_crossentropy", "binary_crossentropy",
                                         "mse"};
static const char *const scale_names[] = {"none", "minmax", "standardize"};

/* ---- Writing --------------------------------------------------------------------------- */

static int scale_index(ds_scale_kind k)
{
    return k == DS_SCALE_MINMAX ? 1 : k == DS_SCALE_STANDARDIZE ? 2 : 0;
}

/* The number of classes of m's output: K units, or 2 for a single unit (sigmoid). */
static int model_classes(const ml_model *m)
{
    int k = ml_model_out_dim(m);
    return k == 1 ? 2 : k;
}

/* Checks that spec is the layer list m was built from (shapes of every dense layer). */
static int spec_matches(const cfg_model *spec, ml_model *m, pst_err *err)
{
    int width = ml_model_in_dim(m), seg = 0;
    for (unsigned l = 0; l < spec->nlayers; l++) {
        const cfg_layer *L = &spec->layers[l];
        if (L->type != CFG_LAYER_DENSE)
            continue;
        if (seg + 1 >= ml_model_nsegments(m) || ml_model_segment(m, seg)->rows != L->units ||
            ml_model_segment(m, seg)->cols != width)
            return pst_err_set(err, PST_ERR_ARG,
                               "checkpoint: model.layers.%u does not match the model", l);
        width = L->units;
        seg += 2;
    }
    if (seg != ml_model_nsegments(m) || spec->loss != ml_model_loss_kind(m))
        return pst_err_set(err, PST_ERR_ARG, "checkpoint: the layer list does not match the model");
    return PST_OK;
}

static char *model_json(const cfg_model *spec, int in_dim)
{
    cJSON *root = cJSON_CreateObject(), *layers = NULL;
    char *s = NULL;
    if (!root || !cJSON_AddNumberToObject(root, "input_dim", in_dim) ||
        !(layers = cJSON_AddArrayToObject(root, "layers")))
        goto cleanup;
    for (unsigned l = 0; l < spec->nlayers; l++) {
        const cfg_layer *L = &spec->layers[l];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            goto cleanup;
        cJSON_AddItemToArray(layers, o);
        assert((int)L->activation >= 0 && (int)L->activation < NELEM(act_names));
        /* The name as model.c used it for the parameters: its first NAME_MAX_LEN bytes. */
        char name[NAME_MAX_LEN + 1];
        snprintf(name, sizeof name, "%s", L->name ? L->name : "");
        int dense = L->type == CFG_LAYER_DENSE;
        if (!cJSON_AddStringToObject(o, "type", dense ? "dense" : "activation") ||
            (dense && !cJSON_AddNumberToObject(o, "units", L->units)) ||
            !cJSON_AddStringToObject(o, "activation", act_names[L->activation]) ||
            !(name[0] ? cJSON_AddStringToObject(o, "name", name)
                      : cJSON_AddNullToObject(o, "name")))
            goto cleanup;
    }
    assert((int)spec->loss >= 0 && (int)spec->loss < NELEM(loss_names));
    if (!cJSON_AddStringToObject(root, "loss", loss_names[spec->loss]))
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
    if (!root || !cJSON_AddStringToObject(root, "task", classify ? "classify" : "regress") ||
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
    if (!cJSON_AddStringToObject(root, "scale",
                                 scale_names[scaler ? scale_index(scaler->kind) : 0]))
        goto cleanup;
    s = cJSON_PrintUnformatted(root);
cleanup:
    cJSON_Delete(root);
    return s;
}

int ckpt_save_model(const char *path, ml_model *m, const cfg_model *spec,
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
                rc = pst_err_set(err, PST_ERR_ARG, "checkpoint: two parameters are named '%s' "
                                 "(rename a layer)", sg->name);
                goto cleanup;
            }
        ts[i] = (out_tensor){sg->name, sg->cols == 1 ? 1 : 2, {sg->rows, sg->cols},
                             params + sg->offset, sg->len};
    }
    if (with_scaler) {
        ts[nseg] = (out_tensor){PREP_SHIFT, 1, {scaler->d, 0}, scaler->shift, (size_t)scaler->d};
        ts[nseg + 1] = (out_tensor){PREP_MUL, 1, {scaler->d, 0}, scaler->mul, (size_t)scaler->d};
    }
    /* A file that could not be read back is worse than none: refuse non-finite values. */
    for (int i = 0; i < nt; i++) {
        int64_t bad = ckpt_first_nonfinite(ts[i].p, ts[i].n);
        if (bad >= 0) {
            rc = pst_err_set(err, PST_ERR_NUMERIC, "%s: not written: tensor '%s' element %" PRId64
                             " is %g", path, ts[i].name, bad, (double)ts[i].p[bad]);
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
    char **names;           /* (nclasses) entries may be NULL; NULL when none */
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

static void spec_fini(cfg_model *spec)
{
    if (spec->layers)
        for (unsigned l = 0; l < spec->nlayers; l++)
            free(spec->layers[l].name);
    free(spec->layers);
    memset(spec, 0, sizeof *spec);
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
static int only_keys(const st_file *f, const char *what, const cJSON *obj,
                     const char *const *allowed, int n, pst_err *err)
{
    for (const cJSON *k = obj->child; k; k = k->next)
        if (name_index(k->string, allowed, n) < 0)
            return pst_err_set(err, PST_ERR_DATA, "%s: %s: unknown key '%s'", f->path, what,
                               k->string);
    return ckpt_json_unique_keys(f, obj, what, err);
}

static int parse_model_meta(const st_file *f, cfg_model *spec, int *in_dim, pst_err *err)
{
    static const char *const top_keys[] = {"input_dim", "layers", "loss"};
    static const char *const layer_keys[] = {"type", "units", "activation", "name"};
    const char *text = ckpt_st_meta_str(f, "pstrain.model");
    memset(spec, 0, sizeof *spec);
    if (!text)
        return pst_err_set(err, PST_ERR_DATA, "%s: no pstrain.model in the metadata: the "
                           "architecture is unknown", f->path);
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
    if (!ckpt_json_is_uint(dim, INT32_MAX) || dim->valuedouble < 1) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model: input_dim is not a width >= 1",
                         f->path);
        goto cleanup;
    }
    *in_dim = (int)dim->valuedouble;
    int nl = cJSON_GetArraySize(layers);
    if (!cJSON_IsArray(layers) || nl < 1 || nl > MAX_LAYERS) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model: layers is not a list of 1 to %d "
                         "layers", f->path, MAX_LAYERS);
        goto cleanup;
    }
    int li = cJSON_IsString(loss) ? name_index(loss->valuestring, loss_names, NELEM(loss_names))
                                  : -1;
    if (li < 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model: loss is not one of "
                         "categorical_crossentropy, binary_crossentropy, mse", f->path);
        goto cleanup;
    }
    spec->loss = (cfg_loss)li;
    spec->init = CFG_INIT_AUTO;
    spec->layers = calloc((size_t)nl, sizeof *spec->layers);
    if (!spec->layers) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
        goto cleanup;
    }
    spec->nlayers = (unsigned)nl;
    int l = 0;
    for (const cJSON *L = layers->child; L; L = L->next, l++) {
        char what[64];
        snprintf(what, sizeof what, "pstrain.model: layers[%d]", l);
        cfg_layer *cl = &spec->layers[l];
        if (!cJSON_IsObject(L)) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: %s is not an object", f->path, what);
            goto cleanup;
        }
        if ((rc = only_keys(f, what, L, layer_keys, NELEM(layer_keys), err)))
            goto cleanup;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(L, "type");
        const cJSON *units = cJSON_GetObjectItemCaseSensitive(L, "units");
        const cJSON *act = cJSON_GetObjectItemCaseSensitive(L, "activation");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(L, "name");
        int dense = cJSON_IsString(type) && strcmp(type->valuestring, "dense") == 0;
        if (!dense && !(cJSON_IsString(type) && strcmp(type->valuestring, "activation") == 0)) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: %s: type is not dense or activation",
                             f->path, what);
            goto cleanup;
        }
        cl->type = dense ? CFG_LAYER_DENSE : CFG_LAYER_ACTIVATION;
        if (dense ? !ckpt_json_is_uint(units, INT32_MAX) || units->valuedouble < 1
                  : units != NULL) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: %s: units %s", f->path, what,
                             dense ? "is not a width >= 1" : "given for an activation layer");
            goto cleanup;
        }
        cl->units = dense ? (int)units->valuedouble : 0;
        int ai = cJSON_IsString(act) ? name_index(act->valuestring, act_names, NELEM(act_names))
                                     : -1;
        if (ai < 0) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: %s: activation is not one of linear, relu, "
                             "sigmoid, tanh, softmax", f->path, what);
            goto cleanup;
        }
        cl->activation = (cfg_act)ai;
        if (name && !cJSON_IsNull(name)) {
            size_t len = cJSON_IsString(name) ? strlen(name->valuestring) : 0;
            if (len < 1 || len > NAME_MAX_LEN) {
                rc = pst_err_set(err, PST_ERR_DATA, "%s: %s: name is not a string of 1 to %d "
                                 "characters", f->path, what, NAME_MAX_LEN);
                goto cleanup;
            }
            if (!(cl->name = strdup(name->valuestring))) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
                goto cleanup;
            }
        }
    }
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
    static const char *const tasks[] = {"classify", "regress"};
    int ti = cJSON_IsString(task) ? name_index(task->valuestring, tasks, 2) : -1;
    if (ti < 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: task is not classify or regress",
                         f->path);
        goto cleanup;
    }
    dm->task = ti == 0 ? DS_TASK_CLASSIFY : DS_TASK_REGRESS;
    if (!ckpt_json_is_uint(nc, 1 << 24) ||
        (dm->task == DS_TASK_CLASSIFY) != (nc->valuedouble > 0)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: num_classes must be >= 1 for "
                         "classify and 0 for regress", f->path);
        goto cleanup;
    }
    dm->nclasses = (int)nc->valuedouble;
    int si = cJSON_IsString(scale) ? name_index(scale->valuestring, scale_names, 3) : -1;
    if (si < 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: scale is not none, minmax or "
                         "standardize", f->path);
        goto cleanup;
    }
    if (dm->task == DS_TASK_REGRESS && names && !cJSON_IsNull(names)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: class_names given for regress",
                         f->path);
        goto cleanup;
    }
    dm->scale = si == 1 ? DS_SCALE_MINMAX : si == 2 ? DS_SCALE_STANDARDIZE : DS_SCALE_NONE;
    if (names && !cJSON_IsNull(names)) {
        if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) != dm->nclasses) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: class_names is not a list of "
                             "num_classes (%d) names", f->path, dm->nclasses);
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
                rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: class_names[%d] is not a "
                                 "string", f->path, c);
                goto cleanup;
            }
            for (int j = 0; j < c; j++)
                if (dm->names[j] && strcmp(dm->names[j], v->valuestring) == 0) {
                    rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: class name '%s' "
                                     "appears twice", f->path, v->valuestring);
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

/* Parameters the spec describes (dense: in * out + out), saturating so a corrupt width
 * cannot overflow; lets the reader refuse a spec larger than the file before allocating. */
static uint64_t spec_params(const cfg_model *spec, int in_dim)
{
    uint64_t total = 0, width = (uint64_t)in_dim;
    for (unsigned l = 0; l < spec->nlayers; l++) {
        const cfg_layer *L = &spec->layers[l];
        if (L->type != CFG_LAYER_DENSE)
            continue;
        uint64_t u = (uint64_t)L->units;
        total += width * u + u; /* each factor < 2^31: no overflow per layer */
        if (total > ((uint64_t)1 << 60))
            return UINT64_MAX;
        width = u;
    }
    return total;
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
                rc = pst_err_set(err, PST_ERR_DATA, "%s: two parameters of the model are named "
                                 "'%s'", f->path, sg->name);
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
            rc = pst_err_set(err, PST_ERR_DATA, "%s: unknown tensor '%s': the model has no such "
                             "parameter", f->path, f->t[i].name);
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
    cfg_model spec;   /* layers and names owned */
    ml_model *net;
    data_meta dm;
    ds_scaler scaler;
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
    if ((rc = parse_model_meta(&f, &c->spec, &in_dim, err)) ||
        (rc = parse_data_meta(&f, &c->dm, err)))
        goto fail;
    if (!c->dm.present) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: no pstrain.data in the metadata: the task and "
                         "classes are unknown", path);
        goto fail;
    }
    uint64_t want = spec_params(&c->spec, in_dim);
    if (want > f.data_len / 4) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model describes more parameters than "
                         "the file's %zu floats", path, f.data_len / 4);
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
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: num_classes %d but the model's "
                         "output gives %d classes", path, c->dm.nclasses, k);
        goto fail;
    }
    if (c->dm.task == DS_TASK_REGRESS && c->spec.loss != CFG_LOSS_MSE) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: task regress with loss %s", path,
                         loss_names[c->spec.loss]);
        goto fail;
    }
    if ((rc = match_and_copy(&f, c->net, c->dm.scale, &c->scaler, err)))
        goto fail;
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
    st_file f;
    int rc = ckpt_st_open(&f, path, err);
    if (rc)
        return ckpt_one_line(err, rc);
    cfg_model spec;
    data_meta dm;
    int in_dim = 0;
    memset(&spec, 0, sizeof spec);
    memset(&dm, 0, sizeof dm);
    /* The metadata, when there, must be sound even though m's architecture rules. */
    if (ckpt_st_meta_str(&f, "pstrain.model") && (rc = parse_model_meta(&f, &spec, &in_dim, err)))
        goto cleanup;
    if ((rc = parse_data_meta(&f, &dm, err)))
        goto cleanup;
    if (spec.nlayers && in_dim != ml_model_in_dim(m)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model: input_dim %d but the model "
                         "takes %d", path, in_dim, ml_model_in_dim(m));
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
const cfg_model *ckpt_model_spec(const ckpt_model *c) { return &c->spec; }
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
