/* ckpt/hf.c -- Hugging Face GPT-2 folders (hf.h): config.json through cJSON, the weights
 * through the safetensors container (safetensors.c) under core/gpt2.h's names. */
#include "ckpt_internal.h"
#include "hf.h"

#include "base/fs.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#define PREFIX "transformer."
#define PATH_CAP 4096
#define HF_NAME_CAP 96

int ckpt_hf_is_folder(const char *path)
{
    struct stat st;
    char p[PATH_CAP];
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return 0;
    if (snprintf(p, sizeof p, "%s/" CKPT_HF_CONFIG, path) >= (int)sizeof p)
        return 0;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- config.json ------------------------------------------------------------------------ */

/* An integer key >= 1; absent: PST_ERR_DATA when required, else *v untouched. */
static int config_int(const char *file, const cJSON *root, const char *key, int required, int *v,
                      pst_err *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!x || (!required && cJSON_IsNull(x))) {
        if (required)
            return pst_err_set(err, PST_ERR_DATA, "%s: %s is missing", file, key);
        return PST_OK;
    }
    if (!ckpt_json_is_uint(x, INT32_MAX) || x->valuedouble < 1)
        return pst_err_set(err, PST_ERR_DATA, "%s: %s is not an integer >= 1", file, key);
    *v = (int)x->valuedouble;
    return PST_OK;
}

/* A boolean key that must be absent or `want`: pstrain computes only that case. */
static int config_bool(const char *file, const cJSON *root, const char *key, int want,
                       const char *why, pst_err *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!x || cJSON_IsNull(x))
        return PST_OK;
    if (!cJSON_IsBool(x))
        return pst_err_set(err, PST_ERR_DATA, "%s: %s is not true or false", file, key);
    if (cJSON_IsTrue(x) != want)
        return pst_err_set(err, PST_ERR_DATA, "%s: %s %s: %s", file, key, want ? "false" : "true",
                           why);
    return PST_OK;
}

/* The keys whose values change what the model computes are checked; the rest (dropouts,
 * token ids, task heads' summary_*, torch_dtype ...) describe training or other heads. */
static int config_parse(const char *file, const cJSON *root, ml_gpt2_config *c, pst_err *err)
{
    int rc;
    if (!cJSON_IsObject(root))
        return pst_err_set(err, PST_ERR_DATA, "%s: not a JSON object", file);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!mt)
        return pst_err_set(err, PST_ERR_DATA, "%s: model_type is missing (a GPT-2 has gpt2)", file);
    if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "gpt2") != 0)
        return pst_err_set(err, PST_ERR_DATA, "%s: model_type '%s': pstrain reads gpt2 only", file,
                           cJSON_IsString(mt) ? mt->valuestring : "(not a string)");
    if ((rc = config_int(file, root, "n_layer", 1, &c->n_layer, err)) ||
        (rc = config_int(file, root, "n_head", 1, &c->n_head, err)) ||
        (rc = config_int(file, root, "n_embd", 1, &c->n_embd, err)) ||
        (rc = config_int(file, root, "n_positions", 1, &c->n_positions, err)) ||
        (rc = config_int(file, root, "vocab_size", 1, &c->vocab_size, err)))
        return rc;
    /* 4 n_embd in 64 bits: n_embd is range-checked only later (check_config). */
    int64_t want_inner = 4 * (int64_t)c->n_embd;
    int inner = want_inner > INT32_MAX ? -1 : (int)want_inner, ctx = 1;
    if ((rc = config_int(file, root, "n_inner", 0, &inner, err)) ||
        (rc = config_int(file, root, "n_ctx", 0, &ctx, err)))
        return rc;
    if (inner != want_inner)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: n_inner %d: pstrain's GPT-2 MLP has 4 * n_embd = %lld units", file,
                           inner, (long long)want_inner);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    if (act && !(cJSON_IsString(act) && (strcmp(act->valuestring, "gelu_new") == 0 ||
                                         strcmp(act->valuestring, "gelu_pytorch_tanh") == 0)))
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: activation_function '%s': pstrain's GPT-2 computes gelu_new "
                           "(the tanh form)",
                           file, cJSON_IsString(act) ? act->valuestring : "(not a string)");
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    if (eps && !cJSON_IsNumber(eps))
        return pst_err_set(err, PST_ERR_DATA, "%s: layer_norm_epsilon is not a number", file);
    if (eps && fabs(eps->valuedouble - 1e-5) > 1e-12)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: layer_norm_epsilon %g: pstrain's LayerNorm uses 1e-05", file,
                           eps->valuedouble);
    if ((rc = config_bool(file, root, "scale_attn_weights", 1,
                          "pstrain scales attention scores by 1/sqrt(head size)", err)) ||
        (rc = config_bool(file, root, "scale_attn_by_inverse_layer_idx", 0,
                          "pstrain does not scale attention by layer", err)) ||
        (rc = config_bool(file, root, "add_cross_attention", 0,
                          "pstrain's GPT-2 is decoder-only, without cross-attention", err)) ||
        (rc = config_bool(file, root, "tie_word_embeddings", 1, "pstrain's head is tied to wte",
                          err)))
        return rc;
    c->context = 0;
    ml_model_spec s;
    pst_err e2 = {0};
    if (ml_gpt2_spec(&s, c, &e2))
        return pst_err_set(err, PST_ERR_DATA, "%s: %s", file, e2.msg);
    ml_model_spec_fini(&s);
    return PST_OK;
}

int ckpt_hf_read_config(const char *dir, ml_gpt2_config *c, pst_err *err)
{
    char file[PATH_CAP];
    memset(c, 0, sizeof *c);
    snprintf(file, sizeof file, "%s/" CKPT_HF_CONFIG, dir);
    char *text = NULL;
    size_t len = 0;
    int rc = fs_read_all(file, &text, &len, err);
    if (rc)
        return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root)
        rc = pst_err_set(err, PST_ERR_DATA, "%s: not valid JSON (error near byte %td)", file,
                         end ? end - text : (ptrdiff_t)0);
    else
        rc = config_parse(file, root, c, err);
    cJSON_Delete(root);
    free(text);
    if (rc)
        memset(c, 0, sizeof *c);
    return ckpt_one_line(err, rc);
}

/* config.json for c, as GPT2Config.to_json_string writes its keys; NULL when out of memory
 * (free with cJSON_free). */
static char *config_json(const ml_gpt2_config *c)
{
    cJSON *o = cJSON_CreateObject(), *arch = NULL;
    char *s = NULL;
    if (!o || !(arch = cJSON_AddArrayToObject(o, "architectures")))
        goto cleanup;
    cJSON *name = cJSON_CreateString("GPT2LMHeadModel");
    if (!name)
        goto cleanup;
    cJSON_AddItemToArray(arch, name);
    const struct {
        const char *key;
        double v;
    } nums[] = {
        {"attn_pdrop", c->dropout},      {"embd_pdrop", c->dropout},   {"resid_pdrop", c->dropout},
        {"initializer_range", 0.02},     {"layer_norm_epsilon", 1e-5}, {"n_ctx", c->n_positions},
        {"n_embd", c->n_embd},           {"n_head", c->n_head},        {"n_layer", c->n_layer},
        {"n_positions", c->n_positions}, {"vocab_size", c->vocab_size}};
    for (int i = 0; i < NELEM(nums); i++)
        if (!cJSON_AddNumberToObject(o, nums[i].key, nums[i].v))
            goto cleanup;
    if (c->vocab_size == 50257 && (!cJSON_AddNumberToObject(o, "bos_token_id", 50256) ||
                                   !cJSON_AddNumberToObject(o, "eos_token_id", 50256)))
        goto cleanup;
    if (!cJSON_AddStringToObject(o, "activation_function", "gelu_new") ||
        !cJSON_AddStringToObject(o, "model_type", "gpt2") || !cJSON_AddNullToObject(o, "n_inner") ||
        !cJSON_AddBoolToObject(o, "reorder_and_upcast_attn", 0) ||
        !cJSON_AddBoolToObject(o, "scale_attn_by_inverse_layer_idx", 0) ||
        !cJSON_AddBoolToObject(o, "scale_attn_weights", 1) ||
        !cJSON_AddBoolToObject(o, "tie_word_embeddings", 1) ||
        !cJSON_AddStringToObject(o, "torch_dtype", "float32") ||
        !cJSON_AddBoolToObject(o, "use_cache", 1))
        goto cleanup;
    s = cJSON_Print(o);
cleanup:
    cJSON_Delete(o);
    return s;
}

/* ---- Names and shapes ---------------------------------------------------------------------- */

/* HF keeps LayerNorm parameters and biases 1-D, every weight matrix 2-D (also wte of C 1). */
static int hf_ndim(const char *hf)
{
    size_t n = strlen(hf);
    return (n >= 5 && strcmp(hf + n - 5, ".bias") == 0) || strstr(hf, "ln_") != NULL ? 1 : 2;
}

/* name without the "transformer." prefix GPT2LMHeadModel writes. */
static const char *unprefixed(const char *name)
{
    return strncmp(name, PREFIX, strlen(PREFIX)) == 0 ? name + strlen(PREFIX) : name;
}

/* The tensors of an HF file that are no parameter: the causal-mask buffers of old
 * transformers versions (h.I.attn.bias, h.I.attn.masked_bias) and lm_head.weight, the tied
 * copy of wte. */
static int ignorable(const char *name)
{
    const char *n = unprefixed(name);
    if (strcmp(n, "lm_head.weight") == 0)
        return 1;
    int layer, used = 0;
    if (sscanf(n, "h.%d.%n", &layer, &used) != 1 || used == 0)
        return 0;
    return strcmp(n + used, "attn.bias") == 0 || strcmp(n + used, "attn.masked_bias") == 0;
}

/* Two tensors of f for one parameter ("wte.weight" and "transformer.wte.weight") would
 * let the order of the header decide: refused. */
static int check_names(const st_file *f, pst_err *err)
{
    for (int i = 0; i < f->nt; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(unprefixed(f->t[i].name), unprefixed(f->t[j].name)) == 0)
                return pst_err_set(err, PST_ERR_DATA, "%s: tensors '%s' and '%s' are one parameter",
                                   f->path, f->t[j].name, f->t[i].name);
    return PST_OK;
}

st_tensor *ckpt_hf_find(st_file *f, const char *seg)
{
    st_tensor *t = ckpt_st_find_tensor(f, seg);
    char hf[HF_NAME_CAP];
    if (t || ml_gpt2_hf_name(seg, hf, sizeof hf))
        return t;
    for (int i = 0; i < f->nt; i++)
        if (strcmp(unprefixed(f->t[i].name), hf) == 0)
            return &f->t[i];
    return NULL;
}

static void shape_text(const int64_t *shape, int ndim, char *buf, size_t n)
{
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && at < n; d++)
        at += (size_t)snprintf(buf + at, n - at, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (at < n)
        snprintf(buf + at, n - at, "]");
}

int ckpt_hf_claim(st_file *f, st_tensor *t, const ml_segment *sg, const char *needs, pst_err *err)
{
    if (t->dtype != CKPT_F32 && t->dtype != CKPT_F16 && t->dtype != CKPT_BF16)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: tensor '%s': dtype %s, but a weight is F32, F16 or BF16", f->path,
                           t->name, ckpt_dtype_name(t->dtype));
    char hf[HF_NAME_CAP];
    int64_t shape[2] = {sg->rows, sg->cols};
    int ndim = ml_gpt2_hf_name(sg->name, hf, sizeof hf) == 0 ? hf_ndim(hf) : sg->cols == 1 ? 1 : 2;
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = t->shape[d] == shape[d];
    if (!same) {
        char want[64], got[160];
        shape_text(shape, ndim, want, sizeof want);
        shape_text(t->shape, t->ndim, got, sizeof got);
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': shape %s but %s needs %s", f->path,
                           t->name, got, needs, want);
    }
    t->used = 1;
    return PST_OK;
}

int ckpt_hf_ignorable(const char *name) { return ignorable(name); }

int ckpt_hf_weights_file(const st_file *f)
{
    for (int i = 0; i < f->nt; i++)
        if (strcmp(unprefixed(f->t[i].name), "h.0.attn.c_attn.weight") == 0)
            return 1;
    return 0;
}

/* ---- Writing ------------------------------------------------------------------------------- */

/* The header JSON and the tensors of values in m's layout under HF names; ts[i].name
 * points into names (nseg * HF_NAME_CAP). */
static int prepare(ml_model *m, const float *values, out_tensor **ts_out, char **names_out,
                   char **json_out, pst_err *err)
{
    int nseg = ml_model_nsegments(m), rc = PST_OK;
    out_tensor *ts = calloc((size_t)(nseg ? nseg : 1), sizeof *ts);
    char *names = calloc((size_t)(nseg ? nseg : 1), HF_NAME_CAP), *json = NULL;
    if (!ts || !names) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
        goto fail;
    }
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        char *nm = names + (size_t)i * HF_NAME_CAP;
        if (ml_gpt2_hf_name(sg->name, nm, HF_NAME_CAP)) {
            rc = pst_err_set(err, PST_ERR_ARG, "checkpoint: '%s' is no GPT-2 parameter", sg->name);
            goto fail;
        }
        int nd = hf_ndim(nm);
        ts[i] = (out_tensor){
            nm,      nd,      {nd == 1 ? (double)sg->len : sg->rows, sg->cols}, values + sg->offset,
            sg->len, CKPT_F32};
        int64_t bad = ckpt_first_nonfinite(ts[i].p, ts[i].n);
        if (bad >= 0) {
            rc = pst_err_set(err, PST_ERR_NUMERIC,
                             "not written: tensor '%s' element %" PRId64 " is %g", nm, bad,
                             (double)values[sg->offset + (size_t)bad]);
            goto fail;
        }
    }
    if (!(json = ckpt_st_header_json(ts, nseg, NULL, NULL, NULL, 0))) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
        goto fail;
    }
    *ts_out = ts;
    *names_out = names;
    *json_out = json;
    return PST_OK;
fail:
    free(ts);
    free(names);
    return rc;
}

int ckpt_hf_write_tensors(const char *path, ml_model *m, const float *values, pst_err *err)
{
    out_tensor *ts = NULL;
    char *names = NULL, *json = NULL;
    int rc = prepare(m, values, &ts, &names, &json, err);
    if (!rc)
        rc = ckpt_st_write(path, json, ts, ml_model_nsegments(m), err);
    cJSON_free(json);
    free(ts);
    free(names);
    return rc;
}

int ckpt_hf_save(const char *dir, ml_model *m, pst_err *err)
{
    ml_gpt2_config c;
    pst_err e2 = {0};
    if (ml_gpt2_config_of(ml_model_get_spec(m), &c, &e2))
        return pst_err_set(err, PST_ERR_ARG, "%s: cannot write a Hugging Face GPT-2: %s", dir,
                           e2.msg);
    out_tensor *ts = NULL;
    char *names = NULL, *json = NULL, *config = NULL, path[PATH_CAP];
    int rc = prepare(m, ml_model_params(m), &ts, &names, &json, err);
    if (rc)
        return rc;
    if (!(config = config_json(&c))) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
        goto cleanup;
    }
    if ((rc = fs_mkdirs(dir, err)))
        goto cleanup;
    snprintf(path, sizeof path, "%s/" CKPT_HF_WEIGHTS, dir);
    if ((rc = ckpt_st_write(path, json, ts, ml_model_nsegments(m), err)))
        goto cleanup;
    /* config.json last: a folder with a config is a complete one (ckpt_hf_is_folder). */
    snprintf(path, sizeof path, "%s/" CKPT_HF_CONFIG, dir);
    fs_atomic out;
    if ((rc = fs_atomic_open(&out, path, 0644, err)))
        goto cleanup;
    if (fputs(config, out.f) < 0 || fputc('\n', out.f) < 0) {
        fs_atomic_abort(&out);
        rc = pst_err_set(err, PST_ERR_IO, "%s: write failed", path);
        goto cleanup;
    }
    rc = fs_atomic_commit(&out, FS_REPLACE, err);
cleanup:
    cJSON_free(config);
    cJSON_free(json);
    free(ts);
    free(names);
    return rc;
}

/* ---- Reading ------------------------------------------------------------------------------- */

/* Appends name to a list "a, b, c" of at most cap bytes, then " ...". */
static void list_append(char *buf, size_t cap, const char *name)
{
    size_t n = strlen(buf);
    if (n >= 4 && strcmp(buf + n - 4, " ...") == 0)
        return;
    if (n + 2 + strlen(name) + 5 <= cap)
        snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", name);
    else if (n + 5 <= cap)
        snprintf(buf + n, cap - n, " ...");
}

/* Matches every parameter of m to a tensor of f (all required) and copies them. */
static int match_all(st_file *f, ml_model *m, pst_err *err)
{
    int nseg = ml_model_nsegments(m), missing = 0, rc = PST_OK;
    char names[320] = "";
    st_tensor **src = calloc((size_t)(nseg ? nseg : 1), sizeof *src);
    if (!src)
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        char hf[HF_NAME_CAP];
        if (ml_gpt2_hf_name(sg->name, hf, sizeof hf))
            snprintf(hf, sizeof hf, "%s", sg->name);
        if (!(src[i] = ckpt_hf_find(f, sg->name))) {
            missing++;
            list_append(names, sizeof names, hf);
        } else if ((rc = ckpt_hf_claim(f, src[i], sg, CKPT_HF_CONFIG, err))) {
            goto cleanup;
        }
    }
    if (missing) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: %d tensor%s the config needs %s missing: %s",
                         f->path, missing, missing == 1 ? "" : "s", missing == 1 ? "is" : "are",
                         names);
        goto cleanup;
    }
    for (int i = 0; i < f->nt; i++)
        if (!f->t[i].used && !ignorable(f->t[i].name)) {
            rc = pst_err_set(err, PST_ERR_DATA,
                             "%s: unknown tensor '%s': a GPT-2 of this config has no such "
                             "parameter",
                             f->path, f->t[i].name);
            goto cleanup;
        }
    /* Everything checked: from here on nothing fails. */
    float *params = ml_model_params(m);
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        ckpt_st_read_floats(f, src[i], params + sg->offset, sg->len);
    }
cleanup:
    free(src);
    return rc;
}

/* The config of dir against the model's own (context aside). */
static int same_config(const char *dir, const ml_gpt2_config *fc, const ml_gpt2_config *mc,
                       pst_err *err)
{
    const struct {
        const char *key;
        int file, model;
    } k[] = {{"n_layer", fc->n_layer, mc->n_layer},
             {"n_head", fc->n_head, mc->n_head},
             {"n_embd", fc->n_embd, mc->n_embd},
             {"n_positions", fc->n_positions, mc->n_positions},
             {"vocab_size", fc->vocab_size, mc->vocab_size}};
    for (int i = 0; i < NELEM(k); i++)
        if (k[i].file != k[i].model)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s/" CKPT_HF_CONFIG ": %s %d but the model has %d", dir, k[i].key,
                               k[i].file, k[i].model);
    return PST_OK;
}

int ckpt_hf_load_into(const char *dir, ml_model *m, pst_err *err)
{
    ml_gpt2_config mc, fc;
    pst_err e2 = {0};
    if (ml_gpt2_config_of(ml_model_get_spec(m), &mc, &e2))
        return pst_err_set(err, PST_ERR_ARG, "%s: the model is %s", dir, e2.msg);
    int rc = ckpt_hf_read_config(dir, &fc, err);
    if (rc || (rc = same_config(dir, &fc, &mc, err)))
        return rc;
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/" CKPT_HF_WEIGHTS, dir);
    st_file f;
    if ((rc = ckpt_st_open_hf(&f, path, err)))
        return ckpt_one_line(err, rc);
    if (!(rc = check_names(&f, err)))
        rc = match_all(&f, m, err);
    ckpt_st_fini(&f);
    return ckpt_one_line(err, rc);
}

int ckpt_hf_load(const char *dir, int context, int max_batch, ckpt_model **out, pst_err *err)
{
    *out = NULL;
    ml_gpt2_config c;
    int rc = ckpt_hf_read_config(dir, &c, err);
    if (rc)
        return rc;
    c.context = context;
    ml_model_spec s;
    pst_err e2 = {0};
    if (ml_gpt2_spec(&s, &c, &e2))
        return pst_err_set(err, e2.code, "%s: %s", dir, e2.msg);
    int t = context ? context : c.n_positions;
    /* A large config of sizes the weights cannot hold (2 bytes a parameter at the least)
     * is refused before the model's memory is taken; a small one gets the tensors' own
     * messages (missing, shapes) below. */
    char path[PATH_CAP];
    struct stat st;
    uint64_t np = ml_model_spec_nparams(&s, t);
    snprintf(path, sizeof path, "%s/" CKPT_HF_WEIGHTS, dir);
    if (np > ((uint64_t)1 << 24) && stat(path, &st) == 0 && (uint64_t)st.st_size / 2 < np) {
        ml_model_spec_fini(&s);
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: %lld bytes cannot hold the %" PRIu64 " parameters " CKPT_HF_CONFIG
                           " describes",
                           path, (long long)st.st_size, np);
    }
    ml_model *m = ml_model_create(&s, t, max_batch, &e2);
    if (!m) {
        ml_model_spec_fini(&s);
        return pst_err_set(err, e2.code, "%s: %s", dir, e2.msg);
    }
    if ((rc = ckpt_hf_load_into(dir, m, err))) {
        ml_model_destroy(m);
        ml_model_spec_fini(&s);
        return rc;
    }
    return ckpt_model_wrap(&s, m, out, err);
}

int ckpt_hf_export(const char *ckpt, const char *dir, pst_err *err)
{
    ml_model_spec s;
    int in_dim = 0;
    int rc = ckpt_read_spec(ckpt, NULL, &s, &in_dim, err);
    if (rc)
        return rc;
    ml_gpt2_config c;
    ml_model *m = NULL, *lo = NULL;
    pst_err e2 = {0};
    /* A LoRA run exports merged: its adapters folded into the weights they adapt. */
    if (ml_model_spec_nparams(&s, in_dim) != UINT64_MAX) {
        ml_model_spec bare;
        if ((rc = ml_model_spec_copy(&bare, &s, err)))
            goto cleanup;
        if (ckpt_lora_strip(&bare)) {
            if (!(lo = ml_model_create(&s, in_dim, 1, &e2))) {
                ml_model_spec_fini(&bare);
                rc = pst_err_set(err, e2.code, "%s: %s", ckpt, e2.msg);
                goto cleanup;
            }
            if ((rc = ckpt_load_into(ckpt, lo, NULL, err))) {
                ml_model_spec_fini(&bare);
                goto cleanup;
            }
        }
        ml_model_spec_fini(&s);
        s = bare;
    }
    if (ml_gpt2_config_of(&s, &c, &e2)) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: only a GPT-2 exports to the Hugging Face layout, and this model is "
                         "%s",
                         ckpt, e2.msg);
        goto cleanup;
    }
    if (!(m = ml_model_create(&s, in_dim, 1, &e2))) {
        rc = pst_err_set(err, e2.code, "%s: %s", ckpt, e2.msg);
        goto cleanup;
    }
    if (lo)
        rc = ckpt_lora_merge(m, lo, err);
    else
        rc = ckpt_load_into(ckpt, m, NULL, err);
    if (!rc)
        rc = ckpt_hf_save(dir, m, err);
cleanup:
    ml_model_destroy(lo);
    ml_model_destroy(m);
    ml_model_spec_fini(&s);
    return rc;
}

int ckpt_hf_open_for(st_file *f, char *path, size_t cap, const char *dir, const ml_model *m,
                     pst_err *err)
{
    memset(f, 0, sizeof *f);
    ml_gpt2_config c;
    int rc = ckpt_hf_read_config(dir, &c, err);
    if (rc)
        return rc;
    /* Shapes catch every other size; the heads split C without changing a shape. */
    const ml_model_spec *s = ml_model_get_spec(m);
    for (unsigned l = 0; l < s->nlayers; l++) {
        const ml_layer_spec *L = &s->layers[l];
        int k = L->ops == &ml_layer_attention ? ml_layer_key_find(L->ops, "heads") : -1;
        if (k >= 0 && L->val[k].i != c.n_head) {
            char name[ML_NAME_MAX + 1];
            ml_layer_spec_name(s, l, name, sizeof name);
            return pst_err_set(err, PST_ERR_DATA,
                               "%s/" CKPT_HF_CONFIG ": n_head %d but the model's layer %s has "
                               "heads %d",
                               dir, c.n_head, name, (int)L->val[k].i);
        }
    }
    snprintf(path, cap, "%s/" CKPT_HF_WEIGHTS, dir);
    if ((rc = ckpt_st_open_hf(f, path, err)))
        return ckpt_one_line(err, rc);
    if ((rc = check_names(f, err)))
        ckpt_st_fini(f);
    return ckpt_one_line(err, rc);
}
