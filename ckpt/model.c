/* ckpt/model.c -- model checkpoints: weights, the model spec (pstrain.model: spec.c) and the
 * training data's task, classes and scaler (pstrain.data, here), to and from the header.
 * Names (task, scale) come from the name tables of data/. */
#include "ckpt_internal.h"
#include "hf.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    ml_shape in_shape = ml_model_in_shape(m);
    if ((spec && !(model = ckpt_model_json(spec, &in_shape))) ||
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
    if ((rc = ckpt_only_keys(f, "pstrain.data", root, keys, NELEM(keys), err)))
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

/* The identity transform of d features (shift 0, mul 1) into s; -1 when out of memory. */
static int identity_scaler(ds_scaler *s, int d)
{
    float *shift = malloc(sizeof(float) * (size_t)(d > 0 ? d : 1));
    float *mul = malloc(sizeof(float) * (size_t)(d > 0 ? d : 1));
    if (!shift || !mul) {
        free(shift);
        free(mul);
        return -1;
    }
    for (int j = 0; j < d; j++) {
        shift[j] = 0.0f;
        mul[j] = 1.0f;
    }
    *s = (ds_scaler){.d = d, .kind = DS_SCALE_NONE, .shift = shift, .mul = mul};
    return 0;
}

/* A model built elsewhere in ckpt/ (hf.c) as a ckpt_model: takes spec's contents and net;
 * the task is what a pstrain checkpoint of the same model says (regress for a language
 * model's (N, T) targets, else classify over its outputs), the scaler the identity. On failure both are freed. */
int ckpt_model_wrap(ml_model_spec *spec, ml_model *net, ckpt_model **out, pst_err *err)
{
    *out = NULL;
    ckpt_model *c = calloc(1, sizeof *c);
    if (!c || identity_scaler(&c->scaler, ml_model_in_dim(net))) {
        free(c);
        ml_model_destroy(net);
        spec_fini(spec);
        return pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
    }
    c->spec = *spec;
    memset(spec, 0, sizeof *spec);
    c->net = net;
    /* A language model's data: (N, T) next-id targets, which pstrain's own GPT-2
     * checkpoints call regress; any other model: classes, one per output. */
    if (c->spec.loss == ML_LOSS_SEQ_CCE)
        c->dm = (data_meta){.present = 1, .task = DS_TASK_REGRESS};
    else
        c->dm = (data_meta){.present = 1, .task = DS_TASK_CLASSIFY, .nclasses = model_classes(net)};
    *out = c;
    return PST_OK;
}

int ckpt_read_spec(const char *path, const ml_registry *reg, ml_model_spec *spec, int *in_dim,
                   pst_err *err)
{
    st_file f;
    memset(spec, 0, sizeof *spec);
    int rc = ckpt_st_open(&f, path, err);
    if (!rc) {
        rc = ckpt_parse_model_meta(&f, reg, spec, in_dim, NULL, err);
        ckpt_st_fini(&f);
    }
    return ckpt_one_line(err, rc);
}

int ckpt_load_reg(const char *path, const ml_registry *reg, int max_batch, ckpt_model **out,
                  pst_err *err)
{
    *out = NULL;
    if (ckpt_hf_is_folder(path))
        return ckpt_hf_load(path, 0, max_batch, out, err);
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
    ml_shape in_shape;
    if ((rc = ckpt_parse_model_meta(&f, reg, &c->spec, &in_dim, &in_shape, err)) ||
        (rc = parse_data_meta(&f, &c->dm, err)))
        goto fail;
    if (!c->dm.present) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: no pstrain.data in the metadata: the task and "
                         "classes are unknown",
                         path);
        goto fail;
    }
    uint64_t want = ml_model_spec_nparams_shaped(&c->spec, &in_shape);
    if (want > f.data_len / 4) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: pstrain.model describes more parameters than "
                         "the file's %zu floats",
                         path, f.data_len / 4);
        goto fail;
    }
    pst_err e2 = {0};
    if (!(c->net = ml_model_create_shaped(&c->spec, &in_shape, max_batch, &e2))) {
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
    /* A language model's token windows are stored as (N, T) next-id targets. */
    if (c->dm.task == DS_TASK_REGRESS && c->spec.loss != ML_LOSS_MSE &&
        c->spec.loss != ML_LOSS_SEQ_CCE) {
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
    if (ckpt_hf_is_folder(path)) {
        /* The scaler first: once the weights are in, nothing may fail. */
        if (scaler && identity_scaler(scaler, ml_model_in_dim(m)))
            return pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
        int rc = ckpt_hf_load_into(path, m, err);
        if (rc && scaler)
            ds_scaler_fini(scaler);
        return rc;
    }
    st_file f;
    int rc = ckpt_st_open(&f, path, err);
    if (rc)
        return ckpt_one_line(err, rc);
    ml_model_spec spec;
    data_meta dm;
    int in_dim = 0;
    ml_shape in_shape;
    memset(&spec, 0, sizeof spec);
    memset(&dm, 0, sizeof dm);
    /* The metadata, when there, must be sound even though m's architecture rules. */
    if (ckpt_st_meta_str(&f, "pstrain.model") &&
        (rc = ckpt_parse_model_meta(&f, reg, &spec, &in_dim, &in_shape, err)))
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

int ckpt_model_set_max_batch(ckpt_model *c, int max_batch, pst_err *err)
{
    if (ml_model_max_batch(c->net) == max_batch)
        return PST_OK;
    ml_shape in = ml_model_in_shape(c->net);
    ml_model *net = ml_model_create_shaped(&c->spec, &in, max_batch, err);
    if (!net)
        return err->code;
    /* Every weight, and every state segment (batchnorm's statistics), is a parameter. */
    assert(ml_model_nparams(net) == ml_model_nparams(c->net));
    memcpy(ml_model_params(net), ml_model_params(c->net), ml_model_nparams(net) * sizeof(float));
    ml_model_destroy(c->net);
    c->net = net;
    return PST_OK;
}
