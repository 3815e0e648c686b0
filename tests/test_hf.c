/* tests/test_hf.c -- Hugging Face GPT-2 folders (ckpt/hf.h): save and load bit for bit,
 * through ckpt_load, ckpt_load_into, ckpt_init_from and ckpt_hf_export; files as
 * transformers writes them (the "transformer." prefix, mask buffers, a tied lm_head, F16
 * and BF16 weights); and bad input: one line naming the tensor and both shapes, the
 * missing tensors, the config key, nothing written.
 *
 * For tests/ref/hf_ref.py (PyTorch, the HF layout):
 *   test_hf --save DIR   a random GPT-2 written as DIR/model/ (config.json and
 *                        model.safetensors), with one batch (ids.i32, labels.i32 (N, T)),
 *                        this code's logits.f32 (N, T, V), case.json (N, T, loss) and
 *                        grads.safetensors (the gradient under the HF names)
 *   test_hf --eval DIR   loads DIR/model/ (written by PyTorch), reads DIR/case.json
 *                        (N, T) and the batch, writes logits.f32, loss.txt and
 *                        grads.safetensors.
 * and for tests/cli/test_hf_export.sh:
 *   test_hf --pstrain FILE   a small GPT-2 as a pstrain checkpoint. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/fs.h"
#include "base/rng.h"
#include "ckpt/ckpt.h"
#include "ckpt/hf.h"
#include "core/gpt2.h"
#include "core/model.h"

/* ---- Fixtures --------------------------------------------------------------------------- */

/* A GPT-2 of c with seeded weights, perturbed so that no two tensors are alike. */
static ml_model *gpt_make(const ml_gpt2_config *c, int batch, uint64_t seed)
{
    ml_model_spec s;
    pst_err err = {0};
    assert_int_equal(ml_gpt2_spec(&s, c, &err), PST_OK);
    ml_model *m = ml_model_create(&s, c->context ? c->context : c->n_positions, batch, &err);
    ml_model_spec_fini(&s);
    if (!m)
        print_error("%s\n", err.msg);
    assert_non_null(m);
    ml_model_init(m, seed);
    rng_state r;
    rng_seed(&r, seed + 1);
    float *p = ml_model_params(m);
    for (size_t i = 0; i < ml_model_nparams(m); i++)
        p[i] += 0.2f * (2.0f * rng_uniform(&r) - 1.0f);
    return m;
}

static char *tmpdir_make(void)
{
    char *d = strdup("/tmp/test_hf_XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

/* rm -r of the few levels the tests make. */
static void tree_remove(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static int exists(const char *dir, const char *name)
{
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

static void expect_msg(const pst_err *err, const char *part)
{
    if (!strstr(err->msg, part))
        print_error("message '%s' lacks '%s'\n", err->msg, part);
    assert_non_null(strstr(err->msg, part));
    assert_null(strchr(err->msg, '\n'));
}

static const ml_gpt2_config small = {
    .n_layer = 2, .n_head = 2, .n_embd = 8, .n_positions = 6, .vocab_size = 11};

/* ---- A safetensors writer of its own, for files as other tools write them -------------- */

typedef struct {
    const char *name, *dtype;
    int ndim;
    int64_t shape[4];
    const void *p;
    size_t bytes;
} raw_tensor;

static void write_st(const char *path, const raw_tensor *t, int n)
{
    char head[16384];
    size_t at = (size_t)snprintf(head, sizeof head, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        at += (size_t)snprintf(head + at, sizeof head - at, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                               t[i].name, t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++)
            at += (size_t)snprintf(head + at, sizeof head - at, "%s%lld", d ? "," : "",
                                   (long long)t[i].shape[d]);
        at += (size_t)snprintf(head + at, sizeof head - at, "],\"data_offsets\":[%zu,%zu]}", off,
                               off + t[i].bytes);
        off += t[i].bytes;
    }
    at += (size_t)snprintf(head + at, sizeof head - at, "}");
    assert_true(at < sizeof head);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t hl = at;
    fwrite(&hl, 8, 1, f);
    fwrite(head, 1, at, f);
    for (int i = 0; i < n; i++)
        fwrite(t[i].p, 1, t[i].bytes, f);
    assert_int_equal(fclose(f), 0);
}

static const char config_small[] =
    "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"n_layer\": 2, "
    "\"n_head\": 2, \"n_embd\": 8, \"n_positions\": 6, \"n_ctx\": 6, \"vocab_size\": 11, "
    "\"activation_function\": \"gelu_new\", \"layer_norm_epsilon\": 1e-05, \"n_inner\": null, "
    "\"attn_pdrop\": 0.1, \"resid_pdrop\": 0.1, \"embd_pdrop\": 0.1, \"bos_token_id\": 50256}";

/* float -> binary16 for values that are exact in it (small multiples of 1/64). */
static uint16_t to_half(float v)
{
    uint32_t b;
    memcpy(&b, &v, 4);
    uint32_t sign = (b >> 16) & 0x8000, e = (b >> 23) & 0xff, m = b & 0x7fffff;
    if (e == 0)
        return (uint16_t)sign;
    int he = (int)e - 127 + 15;
    if (he <= 0) { /* subnormal half */
        uint32_t mm = (m | 0x800000) >> (uint32_t)(14 - he);
        return (uint16_t)(sign | (mm & 0x3ff));
    }
    return (uint16_t)(sign | ((uint32_t)he << 10) | (m >> 13));
}

/* model's weights written as transformers does, prefix, buffers, lm_head, and each tensor
 * as F32, F16 or BF16 in turn (the weights rounded to sixteenths first, so every dtype
 * holds them exactly). Returns the weights rounded. */
static float *write_like_transformers(const char *dir, ml_model *m, int with_prefix)
{
    int nseg = ml_model_nsegments(m);
    float *p = ml_model_params(m);
    for (size_t i = 0; i < ml_model_nparams(m); i++)
        p[i] = roundf(p[i] * 16.0f) / 16.0f;
    raw_tensor *t = calloc((size_t)nseg + 8, sizeof *t);
    char(*names)[96] = calloc((size_t)nseg + 8, sizeof *names);
    void **bufs = calloc((size_t)nseg + 8, sizeof *bufs);
    int n = 0;
    for (int i = 0; i < nseg; i++, n++) {
        const ml_segment *sg = ml_model_segment(m, i);
        char hf[80];
        assert_int_equal(ml_gpt2_hf_name(sg->name, hf, sizeof hf), 0);
        snprintf(names[n], sizeof names[n], "%s%s", with_prefix ? "transformer." : "", hf);
        int one = strstr(hf, "ln_") || strstr(hf, ".bias");
        const char *dt = i % 3 == 0 ? "F32" : i % 3 == 1 ? "F16" : "BF16";
        size_t es = i % 3 == 0 ? 4 : 2;
        bufs[n] = malloc(sg->len * es);
        for (size_t j = 0; j < sg->len; j++) {
            float v = p[sg->offset + j];
            uint32_t b;
            memcpy(&b, &v, 4);
            if (es == 4)
                memcpy((char *)bufs[n] + 4 * j, &v, 4);
            else {
                uint16_t h = i % 3 == 1 ? to_half(v) : (uint16_t)(b >> 16);
                memcpy((char *)bufs[n] + 2 * j, &h, 2);
            }
        }
        t[n] = (raw_tensor){names[n], dt, one ? 1 : 2, {sg->rows, sg->cols}, bufs[n], sg->len * es};
        if (one)
            t[n].shape[0] = (int64_t)sg->len;
    }
    /* The causal-mask buffers of older transformers and the tied head. */
    static unsigned char mask[6 * 6];
    static float masked_bias = -1e4f;
    for (int i = 0; i < 36; i++)
        mask[i] = (i % 6) <= (i / 6);
    snprintf(names[n], 96, "%sh.0.attn.bias", with_prefix ? "transformer." : "");
    t[n] = (raw_tensor){names[n], "BOOL", 4, {1, 1, 6, 6}, mask, sizeof mask};
    n++;
    snprintf(names[n], 96, "%sh.1.attn.masked_bias", with_prefix ? "transformer." : "");
    t[n] = (raw_tensor){names[n], "F32", 0, {0}, &masked_bias, 4};
    n++;
    const ml_segment *wte = ml_model_segment(m, 0);
    t[n++] = (raw_tensor){"lm_head.weight", "F32", 2, {wte->rows, wte->cols}, p, wte->len * 4};
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_st(path, t, n);
    write_text(dir, "config.json", config_small);
    for (int i = 0; i < nseg; i++)
        free(bufs[i]);
    free(bufs);
    free(names);
    free(t);
    float *copy = malloc(ml_model_nparams(m) * sizeof *copy);
    memcpy(copy, p, ml_model_nparams(m) * sizeof *copy);
    return copy;
}

/* ---- Round trips ---------------------------------------------------------------------------- */

static void test_save_load(void **state)
{
    (void)state;
    char *d = tmpdir_make(), dir[512];
    snprintf(dir, sizeof dir, "%s/out/gpt", d); /* folders created */
    ml_model *a = gpt_make(&small, 2, 1), *b = gpt_make(&small, 2, 2);
    pst_err err = {0};
    assert_int_equal(ckpt_hf_save(dir, a, &err), PST_OK);
    assert_true(ckpt_hf_is_folder(dir));
    size_t bytes = ml_model_nparams(a) * sizeof(float);
    /* ckpt_hf_load builds the model from config.json */
    ckpt_model *ck = NULL;
    if (ckpt_hf_load(dir, 0, 3, &ck, &err))
        print_error("%s\n", err.msg);
    assert_non_null(ck);
    assert_memory_equal(ml_model_params(ckpt_model_net(ck)), ml_model_params(a), bytes);
    assert_true(ml_model_spec_same(ckpt_model_spec(ck), ml_model_get_spec(a)));
    assert_int_equal(ckpt_model_task(ck), DS_TASK_REGRESS); /* as pstrain's GPT-2 files */
    ckpt_model_destroy(ck);
    /* ckpt_load of the folder, and ckpt_load_into a model of a shorter context */
    assert_int_equal(ckpt_load(dir, 2, &ck, &err), PST_OK);
    assert_memory_equal(ml_model_params(ckpt_model_net(ck)), ml_model_params(a), bytes);
    ckpt_model_destroy(ck);
    ml_gpt2_config shortc = small;
    shortc.context = 3;
    ml_model *c = gpt_make(&shortc, 1, 3);
    ds_scaler sc;
    assert_int_equal(ckpt_load_into(dir, c, &sc, &err), PST_OK);
    assert_int_equal(sc.d, 3);
    ds_scaler_fini(&sc);
    assert_memory_equal(ml_model_params(c), ml_model_params(a), bytes);
    /* the weights file alone is refused with a hint, not matched by its few shared names */
    char wfile[600];
    snprintf(wfile, sizeof wfile, "%s/model.safetensors", dir);
    ckpt_init_report rep;
    assert_int_equal(ckpt_init_from(wfile, b, NULL, &rep, &err), PST_ERR_DATA);
    expect_msg(&err, "the weights of a Hugging Face GPT-2: give the folder that holds them");
    assert_int_equal(ckpt_load(wfile, 1, &ck, &err), PST_ERR_DATA);
    expect_msg(&err, "the weights of a Hugging Face GPT-2: give the folder that holds them");
    /* init_from a folder: every parameter, nothing skipped */
    unsigned char loaded[64];
    assert_int_equal(ckpt_init_from(dir, b, loaded, &rep, &err), PST_OK);
    assert_int_equal(rep.loaded, ml_model_nsegments(a));
    assert_int_equal(rep.fresh + rep.skipped, 0);
    assert_memory_equal(ml_model_params(b), ml_model_params(a), bytes);
    /* config.json says what transformers needs */
    char p[600], *text = NULL;
    size_t len = 0;
    snprintf(p, sizeof p, "%s/config.json", dir);
    assert_int_equal(fs_read_all(p, &text, &len, &err), PST_OK);
    const char *keys[] = {"\"model_type\":\t\"gpt2\"",
                          "\"n_layer\":\t2",
                          "\"n_head\":\t2",
                          "\"n_embd\":\t8",
                          "\"n_positions\":\t6",
                          "\"n_ctx\":\t6",
                          "\"vocab_size\":\t11",
                          "\"GPT2LMHeadModel\"",
                          "\"activation_function\":\t\"gelu_new\"",
                          "\"layer_norm_epsilon\":\t1e-05",
                          "\"tie_word_embeddings\":\ttrue"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(text, keys[i]))
            print_error("config.json lacks %s:\n%s\n", keys[i], text);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_non_null(strstr(text, keys[i]));
    free(text);
    ml_gpt2_config rc;
    assert_int_equal(ckpt_hf_read_config(dir, &rc, &err), PST_OK);
    assert_int_equal(rc.n_embd, 8);
    ml_model_destroy(a);
    ml_model_destroy(b);
    ml_model_destroy(c);
    tree_remove(d);
    free(d);
}

/* A file as transformers writes one: prefixed or not, mask buffers, lm_head, F16/BF16. */
static void test_transformers_file(void **state)
{
    (void)state;
    for (int prefix = 0; prefix < 2; prefix++) {
        char *d = tmpdir_make();
        ml_model *a = gpt_make(&small, 1, 5);
        float *want = write_like_transformers(d, a, prefix);
        ckpt_model *ck = NULL;
        pst_err err = {0};
        if (ckpt_hf_load(d, 0, 1, &ck, &err))
            print_error("%s\n", err.msg);
        assert_non_null(ck);
        assert_memory_equal(ml_model_params(ckpt_model_net(ck)), want,
                            ml_model_nparams(a) * sizeof(float));
        ckpt_model_destroy(ck);
        ml_model *b = gpt_make(&small, 1, 6);
        ckpt_init_report rep;
        assert_int_equal(ckpt_init_from(d, b, NULL, &rep, &err), PST_OK);
        assert_int_equal(rep.loaded, ml_model_nsegments(a));
        assert_int_equal(rep.skipped, 0); /* buffers and the tied head are no parameters */
        assert_memory_equal(ml_model_params(b), want, ml_model_nparams(a) * sizeof(float));
        free(want);
        ml_model_destroy(a);
        ml_model_destroy(b);
        tree_remove(d);
        free(d);
    }
}

/* A pstrain checkpoint exported, and a model of other layers refused. */
static void test_export(void **state)
{
    (void)state;
    char *d = tmpdir_make(), file[512], dir[512];
    snprintf(file, sizeof file, "%s/model.safetensors", d);
    snprintf(dir, sizeof dir, "%s/hf", d);
    ml_model *a = gpt_make(&small, 1, 7);
    pst_err err = {0};
    assert_int_equal(ckpt_save_model(file, a, ml_model_get_spec(a), NULL, NULL, &err), PST_OK);
    assert_int_equal(ckpt_hf_export(file, dir, &err), PST_OK);
    ckpt_model *ck = NULL;
    assert_int_equal(ckpt_hf_load(dir, 0, 1, &ck, &err), PST_OK);
    assert_memory_equal(ml_model_params(ckpt_model_net(ck)), ml_model_params(a),
                        ml_model_nparams(a) * sizeof(float));
    ckpt_model_destroy(ck);
    ml_model_destroy(a);
    /* an MLP */
    ml_layer_spec L;
    ml_layer_spec_init(&L, ml_registry_find(ml_registry_builtin(), "dense"));
    L.val[ml_layer_key_find(L.ops, "units")].i = 3;
    ml_model_spec s = {.layers = &L, .nlayers = 1, .loss = ML_LOSS_MSE};
    ml_model *mlp = ml_model_create(&s, 4, 1, &err);
    if (!mlp)
        print_error("%s\n", err.msg);
    assert_non_null(mlp);
    assert_int_equal(ckpt_save_model(file, mlp, &s, NULL, NULL, &err), PST_OK);
    snprintf(dir, sizeof dir, "%s/hf2", d);
    assert_int_equal(ckpt_hf_export(file, dir, &err), PST_ERR_DATA);
    expect_msg(&err, "only a GPT-2 exports to the Hugging Face layout");
    assert_false(exists(d, "hf2"));
    assert_int_equal(ckpt_hf_save(dir, mlp, &err), PST_ERR_ARG);
    assert_false(exists(d, "hf2"));
    ml_model_destroy(mlp);
    tree_remove(d);
    free(d);
}

/* ---- Bad input ------------------------------------------------------------------------------ */

static void expect_load_error(const char *dir, const char *part)
{
    ckpt_model *ck = NULL;
    pst_err err = {0};
    assert_int_equal(ckpt_hf_load(dir, 0, 1, &ck, &err), PST_ERR_DATA);
    assert_null(ck);
    expect_msg(&err, part);
}

static void expect_config_error(const char *dir, const char *config, const char *part)
{
    write_text(dir, "config.json", config);
    expect_load_error(dir, part);
}

static void test_bad_config(void **state)
{
    (void)state;
    char *d = tmpdir_make();
    ml_model *a = gpt_make(&small, 1, 8);
    pst_err err = {0};
    assert_int_equal(ckpt_hf_save(d, a, &err), PST_OK);
    expect_config_error(d, "{\"model_type\": \"gpt2\", \"n_layer\": 2",
                        "config.json: not valid JSON");
    expect_config_error(d, "[1]", "config.json: not a JSON object");
    expect_config_error(d, "{\"n_layer\": 2}", "config.json: model_type is missing");
    expect_config_error(d, "{\"model_type\": \"llama\"}",
                        "config.json: model_type 'llama': pstrain reads gpt2 only");
    expect_config_error(d,
                        "{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_embd\": 8, "
                        "\"n_positions\": 6, \"vocab_size\": 11}",
                        "config.json: n_head is missing");
    expect_config_error(d,
                        "{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_head\": 2.5, "
                        "\"n_embd\": 8, \"n_positions\": 6, \"vocab_size\": 11}",
                        "config.json: n_head is not an integer >= 1");
    expect_config_error(d,
                        "{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_head\": 3, "
                        "\"n_embd\": 8, \"n_positions\": 6, \"vocab_size\": 11}",
                        "config.json: gpt2: n_embd 8 is not divisible by n_head 3");
    const char base[] = "{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_head\": 2, \"n_embd\": "
                        "8, \"n_positions\": 6, \"vocab_size\": 11, ";
    const struct {
        const char *kv, *msg;
    } bad[] = {
        {"\"activation_function\": \"relu\"}",
         "activation_function 'relu': pstrain's GPT-2 computes gelu_new"},
        {"\"layer_norm_epsilon\": 1e-6}", "layer_norm_epsilon 1e-06: pstrain's LayerNorm"},
        {"\"n_inner\": 16}", "n_inner 16: pstrain's GPT-2 MLP has 4 * n_embd = 32 units"},
        {"\"scale_attn_by_inverse_layer_idx\": true}", "scale_attn_by_inverse_layer_idx true"},
        {"\"tie_word_embeddings\": false}", "tie_word_embeddings false"},
        {"\"add_cross_attention\": 1}", "add_cross_attention is not true or false"},
    };
    char text[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "%s%s", base, bad[i].kv);
        expect_config_error(d, text, bad[i].msg);
    }
    /* sizes the weights cannot hold: refused before the model is built */
    snprintf(text, sizeof text, "%s",
             "{\"model_type\": \"gpt2\", \"n_layer\": 40, \"n_head\": 16, \"n_embd\": "
             "16384, \"n_positions\": 4096, \"vocab_size\": 100000}");
    expect_config_error(d, text, "bytes cannot hold the ");
    /* init_from checks config.json too, and the heads a shape cannot show */
    snprintf(text, sizeof text, "%s%s", base, "\"n_ctx\": 6}");
    write_text(d, "config.json", text);
    ml_gpt2_config h4 = small;
    h4.n_head = 4;
    ml_model *b = gpt_make(&h4, 1, 9);
    ckpt_init_report rep;
    assert_int_equal(ckpt_init_from(d, b, NULL, &rep, &err), PST_ERR_DATA);
    expect_msg(&err, "config.json: n_head 2 but the model's layer h0_attn has heads 4");
    assert_int_equal(ckpt_load_into(d, b, NULL, &err), PST_ERR_DATA);
    expect_msg(&err, "config.json: n_head 2 but the model has 4");
    ml_model_destroy(a);
    ml_model_destroy(b);
    tree_remove(d);
    free(d);
}

static void test_bad_tensors(void **state)
{
    (void)state;
    char *d = tmpdir_make(), p[600];
    /* A model of n_embd 8 under a config of ... every tensor of another shape */
    ml_gpt2_config wide = small;
    wide.n_embd = 12;
    ml_model *w = gpt_make(&wide, 1, 10);
    pst_err err = {0};
    assert_int_equal(ckpt_hf_save(d, w, &err), PST_OK);
    write_text(d, "config.json", config_small);
    expect_load_error(d, "model.safetensors: tensor 'wte.weight': shape [11, 12] but config.json "
                         "needs [11, 8]");
    ml_model *a = gpt_make(&small, 1, 11), *before = gpt_make(&small, 1, 11);
    ckpt_init_report rep;
    assert_int_equal(ckpt_init_from(d, a, NULL, &rep, &err), PST_ERR_DATA);
    expect_msg(&err, "tensor 'wte.weight': shape [11, 12] but the model needs [11, 8]");
    assert_memory_equal(ml_model_params(a), ml_model_params(before),
                        ml_model_nparams(a) * sizeof(float)); /* unchanged */
    /* Missing tensors, all named */
    float *want = write_like_transformers(d, a, 1);
    free(want);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    float one[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    raw_tensor part[] = {{"wte.weight", "F32", 2, {11, 8}, ml_model_params(a), 11 * 8 * 4},
                         {"h.0.ln_1.weight", "F32", 1, {8}, one, 32}};
    write_st(p, part, 2);
    expect_load_error(d, "model.safetensors: 26 tensors the config needs are missing: "
                         "wpe.weight, h.0.ln_1.bias, h.0.attn.c_attn.weight");
    /* An unknown tensor; two names of one parameter; a dtype that is no weight */
    free(write_like_transformers(d, a, 0));
    ml_model *x = gpt_make(&small, 1, 12);
    int nseg = ml_model_nsegments(x);
    raw_tensor *t = calloc((size_t)nseg + 1, sizeof *t);
    char(*names)[96] = calloc((size_t)nseg + 1, sizeof *names);
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(x, i);
        ml_gpt2_hf_name(sg->name, names[i], sizeof names[i]);
        int one_d = strstr(names[i], "ln_") || strstr(names[i], ".bias");
        t[i] = (raw_tensor){names[i],
                            "F32",
                            one_d ? 1 : 2,
                            {one_d ? (int64_t)sg->len : sg->rows, sg->cols},
                            ml_model_params(x) + sg->offset,
                            sg->len * 4};
    }
    t[nseg] = (raw_tensor){"score.weight", "F32", 2, {2, 8}, ml_model_params(x), 64};
    write_st(p, t, nseg + 1);
    expect_load_error(d, "unknown tensor 'score.weight'");
    t[nseg] = (raw_tensor){"transformer.wpe.weight", "F32", 2, {6, 8}, ml_model_params(x), 192};
    write_st(p, t, nseg + 1);
    expect_load_error(d, "tensors 'wpe.weight' and 'transformer.wpe.weight' are one parameter");
    t[2].dtype = "U8";
    t[2].bytes = t[2].shape[0];
    write_st(p, t, nseg);
    expect_load_error(d, "tensor 'h.0.ln_1.weight': dtype U8, but pstrain reads F32, F16, BF16 "
                         "and BOOL only");
    /* Nothing written for a model that is not finite */
    float *pp = ml_model_params(x);
    pp[5] = NAN;
    char out[600];
    snprintf(out, sizeof out, "%s/nan", d);
    assert_int_equal(ckpt_hf_save(out, x, &err), PST_ERR_NUMERIC);
    expect_msg(&err, "not written: tensor 'wte.weight' element 5 is nan");
    assert_false(exists(d, "nan"));
    free(t);
    free(names);
    ml_model_destroy(x);
    ml_model_destroy(a);
    ml_model_destroy(before);
    ml_model_destroy(w);
    tree_remove(d);
    free(d);
}

/* ---- The dumps for tests/ref/hf_ref.py ------------------------------------------------------ */

static int write_raw(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int bad = !f || fwrite(p, 1, bytes, f) != bytes;
    if (f)
        bad |= fclose(f) != 0;
    if (bad)
        fprintf(stderr, "test_hf: cannot write %s\n", path);
    return bad;
}

static int read_raw(const char *dir, const char *name, void *p, size_t bytes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    int bad = !f || fread(p, 1, bytes, f) != bytes;
    if (f)
        fclose(f);
    if (bad)
        fprintf(stderr, "test_hf: cannot read %s\n", path);
    return bad;
}

/* Forward, loss, backward of m on the batch, and the results into dir. */
static int run_and_write(const char *dir, ml_model *m, const int32_t *ids, const int32_t *labels,
                         int n, int t, int v, double *loss)
{
    size_t nt = (size_t)n * t;
    float *x = malloc(nt * sizeof *x);
    for (size_t i = 0; i < nt; i++)
        x[i] = (float)ids[i];
    const float *logits = ml_model_forward(m, x, n);
    *loss = ml_model_loss(m, labels, NULL, n);
    int rc = write_raw(dir, "logits.f32", logits, nt * (size_t)v * sizeof(float));
    ml_model_backward(m, x, n);
    free(x);
    char path[1024];
    pst_err err = {0};
    snprintf(path, sizeof path, "%s/grads.safetensors", dir);
    if (!rc && ckpt_hf_write_tensors(path, m, ml_model_grads(m), &err)) {
        fprintf(stderr, "test_hf: %s\n", err.msg);
        rc = 1;
    }
    return rc;
}

static int dump_save(const char *dir)
{
    ml_gpt2_config c = {
        .n_layer = 2, .n_head = 2, .n_embd = 16, .n_positions = 12, .vocab_size = 37, .context = 8};
    const int n = 3, t = 8;
    ml_model *m = gpt_make(&c, n, 11);
    char sub[1024];
    pst_err err = {0};
    snprintf(sub, sizeof sub, "%s/model", dir);
    if (ckpt_hf_save(sub, m, &err)) {
        fprintf(stderr, "test_hf: %s\n", err.msg);
        ml_model_destroy(m);
        return 1;
    }
    int32_t ids[3 * 8], labels[3 * 8];
    rng_state r;
    rng_seed(&r, 12);
    for (int i = 0; i < n * t; i++) {
        ids[i] = (int32_t)(rng_next(&r) % 37);
        labels[i] = (int32_t)(rng_next(&r) % 37);
    }
    double loss = 0.0;
    int rc = write_raw(dir, "ids.i32", ids, sizeof ids) ||
             write_raw(dir, "labels.i32", labels, sizeof labels) ||
             run_and_write(dir, m, ids, labels, n, t, 37, &loss);
    char text[256];
    snprintf(text, sizeof text, "{\"batch\": %d, \"context\": %d, \"loss\": %.9g}\n", n, t, loss);
    rc = rc || write_raw(dir, "case.json", text, strlen(text));
    ml_model_destroy(m);
    return rc;
}

static int dump_eval(const char *dir)
{
    char path[1024], *text = NULL;
    size_t len = 0;
    pst_err err = {0};
    int n = 0, t = 0;
    snprintf(path, sizeof path, "%s/case.json", dir);
    if (fs_read_all(path, &text, &len, &err) ||
        sscanf(text, "{\"batch\": %d, \"context\": %d", &n, &t) != 2 || n < 1 || t < 1) {
        fprintf(stderr, "test_hf: %s: want {\"batch\": N, \"context\": T}\n", path);
        free(text);
        return 1;
    }
    free(text);
    snprintf(path, sizeof path, "%s/model", dir);
    ckpt_model *ck = NULL;
    if (ckpt_hf_load(path, t, n, &ck, &err)) {
        fprintf(stderr, "test_hf: %s\n", err.msg);
        return 1;
    }
    ml_model *m = ckpt_model_net(ck);
    int v = ml_model_out_dim(m) / t;
    int32_t *ids = malloc(sizeof *ids * (size_t)n * t),
            *labels = malloc(sizeof *ids * (size_t)n * t);
    double loss = 0.0;
    int rc = read_raw(dir, "ids.i32", ids, sizeof *ids * (size_t)n * t) ||
             read_raw(dir, "labels.i32", labels, sizeof *ids * (size_t)n * t) ||
             run_and_write(dir, m, ids, labels, n, t, v, &loss);
    char out[64];
    snprintf(out, sizeof out, "%.9g\n", loss);
    rc = rc || write_raw(dir, "loss.txt", out, strlen(out));
    free(ids);
    free(labels);
    ckpt_model_destroy(ck);
    return rc;
}

/* A pstrain checkpoint of a small GPT-2, for tests/cli/test_hf_export.sh. */
static int dump_pstrain(const char *file)
{
    ml_gpt2_config c = {.n_layer = 1, .n_head = 2, .n_embd = 8, .n_positions = 6, .vocab_size = 11};
    ml_model *m = gpt_make(&c, 1, 13);
    pst_err err = {0};
    int rc = ckpt_save_model(file, m, ml_model_get_spec(m), NULL, NULL, &err);
    if (rc)
        fprintf(stderr, "test_hf: %s\n", err.msg);
    ml_model_destroy(m);
    return rc != 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--pstrain") == 0)
        return dump_pstrain(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--save") == 0)
        return dump_save(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--eval") == 0)
        return dump_eval(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_load),   cmocka_unit_test(test_transformers_file),
        cmocka_unit_test(test_export),      cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_bad_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
