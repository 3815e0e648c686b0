/* tests/test_registry.c -- the layer registry end to end with a layer type defined here
 * and nowhere else: `mix` shows up in job parsing (its keys, --print-config, overrides),
 * builds into a model with named inputs and fan-out whose backward matches finite
 * differences, and survives a checkpoint round trip -- all without touching another
 * file. Also: input validation, and docs/job-file.md's layer table against the registry.
 *
 * `build/test_registry --markdown` prints the table docs/job-file.md holds (between its
 * "layer-types" markers); `--help-text` the lines `pstrain --help` lists. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/rng.h"
#include "ckpt/ckpt.h"
#include "core/layer.h"
#include "core/model.h"
#include "job/job.h"
#include "spec_helpers.h"

/* ---- The test-only type: y = sign * sum_k gain_k (.) x_k  (x_k, y: (N, W); gain_k: (W)) */

enum { MIX_INIT, MIX_NOTE, MIX_FLIP };
static const char *const gain_names[] = {"gain0", "gain1", "gain2"};

static const ml_layer_key mix_keys[] = {
    [MIX_INIT] = {.name = "init",
                  .kind = ML_KEY_FLOAT,
                  .def = 1.0,
                  .min = 0,
                  .max = 10,
                  .doc = "initial gain"},
    [MIX_NOTE] = {.name = "note", .kind = ML_KEY_STRING, .doc = "free text"},
    [MIX_FLIP] = {.name = "flip", .kind = ML_KEY_BOOL, .def = 0, .doc = "negate the sum"},
};

static int mix_shape(ml_layer *l, pst_err *err)
{
    for (int k = 1; k < l->nin; k++)
        if (l->in[k] != l->in[0])
            return pst_err_set(err, PST_ERR_CONFIG, "inputs: widths %d and %d differ", l->in[0],
                               l->in[k]);
    l->out = l->in[0];
    l->ntensors = l->nin;
    for (int k = 0; k < l->nin; k++)
        l->tensor[k] = (ml_tensor){gain_names[k], l->out, 1};
    return PST_OK;
}

static void mix_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    (void)he;
    for (int k = 0; k < l->ntensors; k++)
        for (int j = 0; j < l->out; j++)
            t[k][j] = (float)l->spec->val[MIX_INIT].f + 0.1f * rng_uniform(r);
}

static float mix_sign(const ml_layer *l) { return l->spec->val[MIX_FLIP].i ? -1.0f : 1.0f; }

static void mix_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                        int n)
{
    float s = mix_sign(l);
    int w = l->out;
    for (int i = 0; i < n * w; i++) {
        float acc = 0;
        for (int k = 0; k < l->nin; k++)
            acc += t[k][i % w] * x[k][i];
        y[i] = s * acc;
    }
}

static void mix_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                         const float *y, const float *const *x, const float *const *t, int n)
{
    (void)y;
    float s = mix_sign(l);
    int w = l->out;
    for (int k = 0; k < l->nin; k++) {
        if (dx[k])
            for (int i = 0; i < n * w; i++)
                dx[k][i] = s * t[k][i % w] * dy[i];
        if (dt[k]) {
            memset(dt[k], 0, sizeof(float) * (size_t)w);
            for (int i = 0; i < n * w; i++)
                dt[k][i % w] += s * x[k][i] * dy[i];
        }
    }
}

static double mix_flops(const ml_layer *l, int n) { return 6.0 * n * l->out * l->nin; }

static const ml_layer_ops mix_type = {
    .name = "mix",
    .summary = "test only: y = sum_k gain_k x_k",
    .prefix = "mix",
    .keys = mix_keys,
    .nkeys = 3,
    .min_inputs = 1,
    .max_inputs = 3,
    .has_params = 1,
    .shape = mix_shape,
    .init = mix_init,
    .forward = mix_forward,
    .backward = mix_backward,
    .flops = mix_flops,
};

/* h1 feeds both h2 and mix (fan-out); h2 reads h1 by name; mix reads two inputs. */
static const char job_text[] = "name: mixjob\n"
                               "data: {format: csv, train: a.csv, num_classes: 3}\n"
                               "model:\n"
                               "  layers:\n"
                               "    - {units: 5, activation: tanh, name: h1}\n"
                               "    - {units: 5, activation: sigmoid, name: h2, inputs: [h1]}\n"
                               "    - type: mix\n"
                               "      inputs: [h1, h2]\n"
                               "      init: 0.5\n"
                               "      note: \"two branches\"\n"
                               "      flip: true\n"
                               "    - {units: 3, activation: softmax, name: out}\n";

static ml_registry *make_registry(void)
{
    pst_err err = {0};
    ml_registry *r = ml_registry_create(NULL, &err);
    assert_non_null(r);
    assert_int_equal(ml_registry_add(r, &mix_type, &err), PST_OK);
    assert_int_equal(ml_registry_add(r, &mix_type, &err), PST_ERR_ARG);
    assert_non_null(strstr(err.msg, "already registered"));
    assert_int_equal(ml_registry_count(r), ml_registry_count(ml_registry_builtin()) + 1);
    return r;
}

static char *print_job(const cfg_job *j)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(cfg_job_print(j, f, NULL), PST_OK);
    fclose(f);
    return buf;
}

static void test_job_parsing(void **state)
{
    (void)state;
    ml_registry *reg = make_registry();
    pst_err err = {0};
    cfg_job *j = NULL;
    int rc = cfg_job_load_string_reg(&j, reg, job_text, sizeof job_text - 1, "<mix>", &err);
    if (rc)
        fail_msg("%s", err.msg);
    const ml_model_spec *m = &j->model.spec;
    assert_int_equal(m->nlayers, 4);
    const ml_layer_spec *L = &m->layers[2];
    assert_ptr_equal(L->ops, &mix_type);
    assert_true(L->val[MIX_INIT].f == 0.5);
    assert_string_equal(L->val[MIX_NOTE].s, "two branches");
    assert_int_equal(L->val[MIX_FLIP].i, 1);
    assert_int_equal(L->ninputs, 2);
    assert_string_equal(L->inputs[1], "h2");
    char name[ML_NAME_MAX + 1];
    ml_layer_spec_name(m, 2, name, sizeof name);
    assert_string_equal(name, "mix_0");

    /* --print-config round trip, and overrides of the new keys */
    char *text = print_job(j);
    assert_non_null(strstr(text, "- type: mix"));
    assert_non_null(strstr(text, "inputs: [\"h1\", \"h2\"]"));
    cfg_job *k = NULL;
    assert_int_equal(cfg_job_load_string_reg(&k, reg, text, strlen(text), "<printed>", &err),
                     PST_OK);
    char *again = print_job(k);
    assert_string_equal(text, again);
    assert_true(cfg_job_hash(j) == cfg_job_hash(k));
    assert_int_equal(cfg_override(k, "model.layers.2.init", "2.5", &err), PST_OK);
    assert_true(k->model.spec.layers[2].val[MIX_INIT].f == 2.5);
    assert_int_equal(cfg_override(k, "model.layers.2.init", "11", &err), PST_OK);
    assert_int_equal(cfg_job_check(k, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "model.layers.2.init: must be in [0, 10]"));
    assert_int_equal(cfg_override(k, "model.layers.2.units", "3", &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "unknown key 'model.layers.2.units'"));
    free(again);
    free(text);
    cfg_job_free(k);

    /* The built-in registry does not know the type; an unknown key names its layer. */
    k = NULL;
    assert_int_equal(cfg_job_load_string(&k, job_text, sizeof job_text - 1, "<mix>", &err),
                     PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "<mix>:7: model.layers.2.type: 'mix' is not one of: dense, "
                                    "activation"));
    static const char bad_key[] = "data: {train: a, train_labels: b}\n"
                                  "model:\n  layers:\n    - {type: mix, units: 3}\n"
                                  "    - {units: 2, activation: softmax}\n";
    assert_int_equal(cfg_job_load_string_reg(&k, reg, bad_key, sizeof bad_key - 1, "<b>", &err),
                     PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "<b>:4: unknown key 'model.layers.0.units' (known: type, "
                                    "init, note, flip, name, inputs, trainable, lr_mult)"));
    cfg_job_free(j);
    ml_registry_destroy(reg);
}

/* ||g - g_fd|| <= 2e-3 ||g_fd|| + 1e-5, as tests/test_model.c. */
static void check_gradient(ml_model *m, int n)
{
    int in = ml_model_in_dim(m), out = ml_model_out_dim(m);
    rng_state r;
    rng_seed(&r, 5);
    float *x = malloc(sizeof(float) * (size_t)(n * in));
    int32_t *label = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n * in; i++)
        x[i] = 2.0f * rng_uniform(&r) - 1.0f;
    for (int i = 0; i < n; i++)
        label[i] = (int32_t)rng_below(&r, (uint64_t)out);
    ml_model_forward(m, x, n);
    ml_model_loss(m, label, NULL, n);
    ml_model_backward(m, x, n);
    size_t P = ml_model_nparams(m);
    float *g = malloc(sizeof(float) * P), *p = ml_model_params(m);
    memcpy(g, ml_model_grads(m), sizeof(float) * P);
    double num = 0, den = 0;
    const float h = 1e-3f;
    for (size_t k = 0; k < P; k++) {
        float keep = p[k];
        p[k] = keep + h;
        ml_model_forward(m, x, n);
        double lp = ml_model_loss(m, label, NULL, n);
        p[k] = keep - h;
        ml_model_forward(m, x, n);
        double lm = ml_model_loss(m, label, NULL, n);
        p[k] = keep;
        double fd = (lp - lm) / (2.0 * h);
        num += (g[k] - fd) * (g[k] - fd);
        den += fd * fd;
    }
    if (sqrt(num) > 2e-3 * sqrt(den) + 1e-5)
        fail_msg("gradient mismatch: |g - g_fd| %g, |g_fd| %g", sqrt(num), sqrt(den));
    free(x), free(label), free(g);
}

static void test_model_and_checkpoint(void **state)
{
    (void)state;
    ml_registry *reg = make_registry();
    pst_err err = {0};
    cfg_job *j = NULL;
    assert_int_equal(cfg_job_load_string_reg(&j, reg, job_text, sizeof job_text - 1, "<mix>", &err),
                     PST_OK);
    ml_model *m = ml_model_create(&j->model.spec, 4, 6, &err);
    if (!m)
        fail_msg("%s", err.msg);
    ml_model_init(m, 3);
    /* h1 (4x5 + 5), h2 (5x5 + 5), mix (5 + 5), out (5x3 + 3) */
    assert_int_equal(ml_model_nparams(m), 25 + 30 + 10 + 18);
    assert_string_equal(ml_model_segment(m, 4)->name, "mix_0.gain0");
    assert_string_equal(ml_model_segment(m, 5)->name, "mix_0.gain1");
    assert_true(ml_model_flops(m, 2) > 0);
    check_gradient(m, 1);
    check_gradient(m, 6);

    /* Checkpoint round trip with the registry; without it the type is refused. */
    char dir[] = "/tmp/pst_registry_XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ds_dataset *like = ds_create(2, 4, DS_TASK_CLASSIFY, 3, 0, &err);
    assert_non_null(like);
    if (ckpt_save_model(path, m, &j->model.spec, like, NULL, &err))
        fail_msg("%s", err.msg);
    ckpt_model *c = NULL;
    if (ckpt_load_reg(path, reg, 6, &c, &err))
        fail_msg("%s", err.msg);
    assert_true(ml_model_spec_same(ckpt_model_spec(c), &j->model.spec));
    assert_string_equal(ckpt_model_spec(c)->layers[2].val[MIX_NOTE].s, "two branches");
    ml_model *back = ckpt_model_net(c);
    assert_int_equal(ml_model_nparams(back), ml_model_nparams(m));
    assert_memory_equal(ml_model_params(back), ml_model_params(m),
                        ml_model_nparams(m) * sizeof(float));
    ckpt_model_destroy(c);
    c = NULL;
    assert_int_not_equal(ckpt_load(path, 6, &c, &err), PST_OK);
    assert_non_null(strstr(err.msg, "type is not one of dense, activation"));
    unlink(path);
    rmdir(dir);
    ds_destroy(like);
    ml_model_destroy(m);
    cfg_job_free(j);
    ml_registry_destroy(reg);
}

static void test_named_inputs_are_validated(void **state)
{
    (void)state;
    pst_err err = {0};
    ml_layer_spec L[3] = {DENSE_N(4, ACT_RELU, "a"), DENSE(3, ACT_LINEAR), DENSE(2, ACT_SOFTMAX)};
    ml_model_spec s = {L, 3, ML_LOSS_CCE, ML_INIT_AUTO};
    assert_int_equal(ml_model_spec_check(&s, &err), PST_OK);

    /* default names count every dense layer, named or not: layer 1 is dense_1 */
    char *nope[] = {"nope"}, *later[] = {"dense_2"}, *self[] = {"dense_1"}, *in[] = {"input"};
    L[1].inputs = nope;
    L[1].ninputs = 1;
    assert_int_equal(ml_model_spec_check(&s, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "model.layers.1.inputs: layer dense_1: no layer is named "
                                    "'nope'"));
    L[1].inputs = later; /* layer 2's default name: a forward reference */
    assert_int_equal(ml_model_spec_check(&s, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "'dense_2' is not an earlier layer"));
    L[1].inputs = self; /* its own name: a cycle */
    assert_int_equal(ml_model_spec_check(&s, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "model.layers.1.inputs: layer dense_1: 'dense_1'"));
    /* the model input: then layer "a" feeds nothing */
    L[1].inputs = in;
    assert_int_equal(ml_model_spec_check(&s, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "model.layers.0: the output of layer a is used by no later"));
    /* dense takes one input */
    char *two[] = {"a", "input"};
    L[1].inputs = two;
    L[1].ninputs = 2;
    assert_int_equal(ml_model_spec_check(&s, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "takes 1 to 1 inputs, got 2"));
    L[1].ninputs = 0;
    L[1].name = "input";
    assert_int_equal(ml_model_spec_check(&s, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "model.layers.1.name: 'input' names the model's input"));
}

/* A plain stack with named inputs spelled out is the same model as without them. */
static void test_explicit_inputs_equal_default(void **state)
{
    (void)state;
    ml_layer_spec A[2] = {DENSE(6, ACT_RELU), DENSE(3, ACT_SOFTMAX)};
    ml_layer_spec B[2] = {DENSE(6, ACT_RELU), DENSE(3, ACT_SOFTMAX)};
    char *in[] = {"input"}, *prev[] = {"dense_0"};
    B[0].inputs = in;
    B[0].ninputs = 1;
    B[1].inputs = prev;
    B[1].ninputs = 1;
    ml_model_spec sa = {A, 2, ML_LOSS_CCE, ML_INIT_AUTO}, sb = {B, 2, ML_LOSS_CCE, ML_INIT_AUTO};
    ml_model *a = ml_model_create(&sa, 5, 4, NULL), *b = ml_model_create(&sb, 5, 4, NULL);
    assert_non_null(a);
    assert_non_null(b);
    ml_model_init(a, 11);
    ml_model_init(b, 11);
    float x[20];
    for (int i = 0; i < 20; i++)
        x[i] = sinf((float)i);
    int32_t lab[4] = {0, 1, 2, 1};
    const float *ya = ml_model_forward(a, x, 4), *yb = ml_model_forward(b, x, 4);
    assert_memory_equal(ya, yb, sizeof(float) * 12);
    assert_true(ml_model_loss(a, lab, NULL, 4) == ml_model_loss(b, lab, NULL, 4));
    ml_model_backward(a, x, 4);
    ml_model_backward(b, x, 4);
    assert_memory_equal(ml_model_grads(a), ml_model_grads(b), sizeof(float) * ml_model_nparams(a));
    ml_model_destroy(a);
    ml_model_destroy(b);
}

/* docs/job-file.md holds, between its layer-types markers, what the registry prints. */
static void test_docs_table_matches_registry(void **state)
{
    (void)state;
    const char *begin = "<!-- layer-types: begin (build/test_registry --markdown) -->\n";
    const char *end = "<!-- layer-types: end -->";
    FILE *f = fopen(PSTRAIN_SOURCE_DIR "/docs/job-file.md", "rb");
    assert_non_null(f);
    static char doc[1 << 17];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    char *a = strstr(doc, begin), *b = a ? strstr(a, end) : NULL;
    if (!a || !b)
        fail_msg("docs/job-file.md has no layer-types markers");
    a += strlen(begin);
    *b = '\0';
    char *want = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&want, &len);
    assert_non_null(m);
    assert_int_equal(ml_registry_print_markdown(ml_registry_builtin(), m), PST_OK);
    fclose(m);
    if (strcmp(a, want) != 0)
        fail_msg("docs/job-file.md's layer table differs from the registry; replace it with "
                 "the output of build/test_registry --markdown:\n%s",
                 want);
    free(want);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--markdown") == 0)
        return ml_registry_print_markdown(ml_registry_builtin(), stdout) ? 1 : 0;
    if (argc == 2 && strcmp(argv[1], "--help-text") == 0)
        return ml_registry_print_help(ml_registry_builtin(), stdout) ? 1 : 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_parsing),
        cmocka_unit_test(test_model_and_checkpoint),
        cmocka_unit_test(test_named_inputs_are_validated),
        cmocka_unit_test(test_explicit_inputs_equal_default),
        cmocka_unit_test(test_docs_table_matches_registry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
