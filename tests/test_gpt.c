/* tests/test_gpt.c -- the transformer layers (token_embedding, pos_embedding, layernorm,
 * attention, token_dense, lm_head), GELU's place in the model, the tied head, the
 * sequence cross-entropy and the GPT-2 generator (core/gpt2.h): every backward against
 * central finite differences on several shapes (batch 1, T = 1, odd C), causality, and a
 * whole tiny GPT-2 model's gradients; bad configurations give one clear line.
 *
 * `test_gpt --dump DIR` writes a tiny GPT-2 (config.json, params.f32 in the flat layout
 * with segments.json, ids/labels, and this code's logits, loss and gradients) for
 * tests/ref/gpt_ref.py, which recomputes them with PyTorch in Hugging Face's layout.
 *
 * Legend: N batch, T tokens, C channels, H heads, V vocabulary. */
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
#include "core/gpt2.h"
#include "core/model.h"
#include "job/job.h"

#include "gpt_harness.h"

/* ---- One layer against finite differences --------------------------------------------- */

/* Shapes spec for input width in and batch n, checks dx (unless ids) and every dt. */
static void check_layer(ml_layer_spec *spec, int in, int n, int ids, uint64_t seed)
{
    gh_layer_case c;
    gh_layer_make(&c, &(ml_layer){.spec = spec, .nin = 1, .in = {in}}, n, ids, seed);
    gh_layer_check(&c, spec->ops->name);
    /* A frozen layer (dt all NULL) still gives the same dx. */
    float *none[ML_MAX_TENSORS] = {NULL};
    if (!ids) {
        const float *cx[1] = {c.x};
        const float *const *ct = (const float *const *)c.t;
        float *dxs[1] = {c.dx};
        memcpy(c.fd, c.dx, c.xl * sizeof *c.fd);
        spec->ops->forward(&c.l, c.y, cx, ct, n);
        spec->ops->backward(&c.l, dxs, none, c.dy, c.y, cx, ct, n);
        assert_memory_equal(c.dx, c.fd, c.xl * sizeof *c.fd);
    }
    gh_layer_free(&c);
}

typedef struct {
    int n, t, c, h;
} shape;

/* batch 1, T 1, odd C, several heads */
static const shape shapes[] = {
    {1, 1, 3, 1}, {1, 4, 5, 1}, {2, 3, 6, 3}, {3, 5, 8, 2}, {2, 2, 7, 7}};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static void test_token_embedding(void **state)
{
    (void)state;
    for (int s = 0; s < NSHAPES; s++) {
        ml_layer_spec L;
        ml_layer_spec_init(&L, &ml_layer_token_embedding);
        gh_setk(&L, "vocab", 5 + s);
        gh_setk(&L, "dim", shapes[s].c);
        check_layer(&L, shapes[s].t, shapes[s].n, 1, 10 + s);
    }
}

static void test_pos_embedding(void **state)
{
    (void)state;
    for (int s = 0; s < NSHAPES; s++) {
        ml_layer_spec L;
        ml_layer_spec_init(&L, &ml_layer_pos_embedding);
        gh_setk(&L, "tokens", shapes[s].t);
        gh_setk(&L, "positions", shapes[s].t + s); /* P > T leaves rows without gradient */
        check_layer(&L, shapes[s].t * shapes[s].c, shapes[s].n, 0, 20 + s);
    }
}

static void test_layernorm(void **state)
{
    (void)state;
    for (int s = 0; s < NSHAPES; s++) {
        ml_layer_spec L;
        ml_layer_spec_init(&L, &ml_layer_layernorm);
        gh_setk(&L, "tokens", shapes[s].t);
        check_layer(&L, shapes[s].t * shapes[s].c, shapes[s].n, 0, 30 + s);
    }
}

static void test_attention(void **state)
{
    (void)state;
    for (int s = 0; s < NSHAPES; s++) {
        ml_layer_spec L;
        ml_layer_spec_init(&L, &ml_layer_attention);
        gh_setk(&L, "tokens", shapes[s].t);
        gh_setk(&L, "heads", shapes[s].h);
        check_layer(&L, shapes[s].t * shapes[s].c, shapes[s].n, 0, 40 + s);
    }
}

static void test_token_dense(void **state)
{
    (void)state;
    for (int s = 0; s < NSHAPES; s++) {
        ml_layer_spec L;
        ml_layer_spec_init(&L, &ml_layer_token_dense);
        gh_setk(&L, "tokens", shapes[s].t);
        gh_setk(&L, "units", 2 + s);
        check_layer(&L, shapes[s].t * shapes[s].c, shapes[s].n, 0, 50 + s);
    }
}

static void test_lm_head(void **state)
{
    (void)state;
    for (int s = 0; s < NSHAPES; s++) {
        ml_layer_spec L;
        ml_layer_spec_init(&L, &ml_layer_lm_head);
        gh_setk(&L, "tokens", shapes[s].t);
        gh_setk(&L, "vocab", 3 + 2 * s);
        check_layer(&L, shapes[s].t * shapes[s].c, shapes[s].n, 0, 60 + s);
    }
}

/* Output token t of attention depends on inputs 0..t only. */
static void test_attention_is_causal(void **state)
{
    (void)state;
    const int n = 2, t = 5, c = 6;
    ml_layer_spec L;
    ml_layer_spec_init(&L, &ml_layer_attention);
    gh_setk(&L, "tokens", t);
    gh_setk(&L, "heads", 2);
    ml_layer l = {.spec = &L, .nin = 1, .in = {t * c}};
    assert_int_equal(L.ops->shape(&l, NULL), PST_OK);
    l.ws = calloc(L.ops->workspace(&l, n), sizeof(float));
    rng_state r;
    rng_seed(&r, 7);
    float *w[4];
    for (int k = 0; k < 4; k++) {
        w[k] = malloc(sizeof(float) * l.tensor[k].rows * l.tensor[k].cols);
        gh_fill(w[k], (size_t)l.tensor[k].rows * l.tensor[k].cols, &r, 0.5f);
    }
    float x[2 * 5 * 6], y0[2 * 5 * 6], y1[2 * 5 * 6];
    gh_fill(x, sizeof x / sizeof x[0], &r, 1.0f);
    const float *cx[1] = {x};
    L.ops->forward(&l, y0, cx, (const float *const *)w, n);
    for (int j = 3 * c; j < t * c; j++) /* change tokens 3, 4 of sample 0 */
        x[j] += 1.0f;
    L.ops->forward(&l, y1, cx, (const float *const *)w, n);
    assert_memory_equal(y0, y1, sizeof(float) * 3 * c);
    assert_memory_not_equal(y0 + 3 * c, y1 + 3 * c, sizeof(float) * 2 * c);
    assert_memory_equal(y0 + t * c, y1 + t * c, sizeof(float) * t * c); /* sample 1 */
    for (int k = 0; k < 4; k++)
        free(w[k]);
    free(l.ws);
}

/* ---- A whole tiny GPT-2 ------------------------------------------------------------- */

typedef struct {
    ml_model *m;
    int n, t, v;
    float *ids;
    int32_t *labels;
} gpt_case;

static void gpt_case_make(gpt_case *g, const ml_gpt2_config *c, int n, uint64_t seed)
{
    ml_model_spec s;
    gh_gpt_spec(&s, c);
    g->t = c->context ? c->context : c->n_positions;
    g->v = c->vocab_size;
    g->n = n;
    g->m = gh_model_create(&s, g->t, n, seed);
    rng_state r;
    rng_seed(&r, seed + 1);
    gh_perturb(g->m, &r);
    g->ids = malloc(sizeof(float) * n * g->t);
    g->labels = malloc(sizeof(int32_t) * n * g->t);
    for (int i = 0; i < n * g->t; i++) {
        g->ids[i] = (float)(rng_next(&r) % (uint64_t)g->v);
        g->labels[i] = (int32_t)(rng_next(&r) % (uint64_t)g->v);
    }
}

static void gpt_case_free(gpt_case *g)
{
    ml_model_destroy(g->m);
    free(g->ids);
    free(g->labels);
}

static double gpt_loss(gpt_case *g)
{
    ml_model_forward(g->m, g->ids, g->n);
    return ml_model_loss(g->m, g->labels, NULL, g->n);
}

static void check_gpt(const ml_gpt2_config *c, int n, uint64_t seed)
{
    gpt_case g;
    gpt_case_make(&g, c, n, seed);
    double loss = gpt_loss(&g);
    assert_true(isfinite(loss) && loss > 0.0);
    ml_model_backward(g.m, g.ids, n);
    size_t np = ml_model_nparams(g.m);
    float *grad = malloc(sizeof(float) * np), *fd = malloc(sizeof(float) * np);
    memcpy(grad, ml_model_grads(g.m), sizeof(float) * np);
    gh_model_fd(fd, g.m, g.ids, g.labels, n);
    for (int s = 0; s < ml_model_nsegments(g.m); s++) {
        const ml_segment *sg = ml_model_segment(g.m, s);
        gh_assert_grad(grad + sg->offset, fd + sg->offset, sg->len, sg->name);
    }
    free(grad), free(fd);
    gpt_case_free(&g);
}

static void test_gpt2_model_gradients(void **state)
{
    (void)state;
    ml_gpt2_config a = {.n_layer = 2, .n_head = 2, .n_embd = 6, .n_positions = 5, .vocab_size = 7};
    check_gpt(&a, 2, 1);
    ml_gpt2_config b = {
        .n_layer = 1, .n_head = 1, .n_embd = 5, .n_positions = 4, .vocab_size = 9, .context = 1};
    check_gpt(&b, 1, 2); /* batch 1, T 1, odd C, a context shorter than n_positions */
    ml_gpt2_config c = {.n_layer = 1, .n_head = 3, .n_embd = 9, .n_positions = 3, .vocab_size = 4};
    check_gpt(&c, 3, 3);
}

/* The generator's layout: segment names, the tie (no head segment), HF names. */
static void test_gpt2_layout(void **state)
{
    (void)state;
    ml_gpt2_config c = {.n_layer = 2, .n_head = 2, .n_embd = 8, .n_positions = 6, .vocab_size = 11};
    gpt_case g;
    gpt_case_make(&g, &c, 1, 4);
    size_t C = 8, V = 11, P = 6;
    size_t want =
        V * C + P * C + 2 * (4 * C + 3 * C * C + 3 * C + C * C + C + 8 * C * C + 5 * C) + 2 * C;
    assert_int_equal(ml_model_nparams(g.m), want);
    assert_int_equal(ml_model_nsegments(g.m), 2 + 2 * 12 + 2);
    char hf[64];
    const ml_segment *sg = ml_model_segment(g.m, 4);
    assert_string_equal(sg->name, "h0_attn.attn_w");
    assert_int_equal(sg->rows, 8);
    assert_int_equal(sg->cols, 24);
    assert_int_equal(ml_gpt2_hf_name(sg->name, hf, sizeof hf), 0);
    assert_string_equal(hf, "h.0.attn.c_attn.weight");
    for (int s = 0; s < ml_model_nsegments(g.m); s++)
        assert_int_equal(ml_gpt2_hf_name(ml_model_segment(g.m, s)->name, hf, sizeof hf), 0);
    assert_int_equal(ml_gpt2_hf_name("h1_mlp_proj.bias", hf, sizeof hf), 0);
    assert_string_equal(hf, "h.1.mlp.c_proj.bias");
    assert_int_equal(ml_gpt2_hf_name("dense_0.weight", hf, sizeof hf), -1);
    gpt_case_free(&g);
}

/* examples/tiny-gpt.yaml: the generator's layers, and one forward/backward (the loss of
 * a fresh model is near ln V: its logits start near 0). */
static void test_example_job(void **state)
{
    (void)state;
    cfg_job *job = NULL;
    pst_err err = {0};
    if (cfg_job_load_file(&job, PSTRAIN_SOURCE_DIR "/examples/tiny-gpt.yaml", &err))
        print_error("%s\n", err.msg);
    assert_non_null(job);
    ml_gpt2_config c = {
        .n_layer = 2, .n_head = 2, .n_embd = 64, .n_positions = 32, .vocab_size = 256};
    ml_model_spec s;
    assert_int_equal(ml_gpt2_spec(&s, &c, &err), PST_OK);
    assert_true(ml_model_spec_same(&s, &job->model.spec));
    ml_model_spec_fini(&s);
    const int n = 2, t = 32;
    ml_model *m = ml_model_create(&job->model.spec, t, n, &err);
    assert_non_null(m);
    ml_model_init(m, 5);
    float ids[2 * 32];
    int32_t labels[2 * 32];
    for (int i = 0; i < n * t; i++) {
        ids[i] = (float)((i * 37) % 256);
        labels[i] = (i * 37 + 11) % 256;
    }
    ml_model_forward(m, ids, n);
    double loss = ml_model_loss(m, labels, NULL, n);
    assert_true(fabs(loss - log(256.0)) < 0.1);
    ml_model_backward(m, ids, n);
    double g2 = 0.0;
    for (size_t i = 0; i < ml_model_nparams(m); i++)
        g2 += (double)ml_model_grads(m)[i] * ml_model_grads(m)[i];
    assert_true(isfinite(g2) && g2 > 0.0);
    ml_model_destroy(m);
    cfg_job_free(job);
}

/* model.gpt2 in a job: expanded as ml_gpt2_spec with data.context, re-expanded by its
 * overrides, printed as itself (not its layers) and loaded back the same; its refusals. */
static void test_gpt2_job(void **state)
{
    (void)state;
    static const char base[] = "data: {format: text, train: t.txt, context: 8}\n"
                               "model:\n"
                               "  gpt2: {n_layer: 2, n_head: 2, n_embd: 16, n_positions: 16,"
                               " vocab_size: 256}\n";
    cfg_job *job = NULL, *again = NULL;
    pst_err err = {0};
    if (cfg_job_load_string(&job, base, strlen(base), "j.yaml", &err))
        print_error("%s\n", err.msg);
    assert_non_null(job);
    ml_gpt2_config c = {.n_layer = 2,
                        .n_head = 2,
                        .n_embd = 16,
                        .n_positions = 16,
                        .vocab_size = 256,
                        .context = 8};
    ml_model_spec s;
    assert_int_equal(ml_gpt2_spec(&s, &c, &err), PST_OK);
    assert_true(ml_model_spec_same(&s, &job->model.spec));
    ml_model_spec_fini(&s);
    assert_int_equal(job->train.accumulate, 1);
    assert_int_equal(cfg_override(job, "model.gpt2.n_layer", "3", &err), PST_OK);
    assert_int_equal(job->model.spec.nlayers, 2 + 7 * 3 + 2);
    assert_int_equal(cfg_override(job, "model.layers.0.dim", "8", &err), PST_ERR_CONFIG);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(cfg_job_print(job, f, &err), PST_OK);
    fclose(f);
    assert_null(strstr(text, "layers:"));
    if (cfg_job_load_string(&again, text, len, "printed", &err))
        print_error("%s\n%s\n", err.msg, text);
    assert_non_null(again);
    assert_true(ml_model_spec_same(&again->model.spec, &job->model.spec));
    assert_true(cfg_job_hash(again) == cfg_job_hash(job));
    free(text);
    cfg_job_free(again);
    cfg_job_free(job);

    static const struct {
        const char *yaml, *msg;
    } bad[] = {
        {"data: {format: text, train: t.txt, context: 8}\nmodel: {gpt2: {n_layer: 1, n_head: 3, "
         "n_embd: 16, n_positions: 16, vocab_size: 256}}\n",
         "model.gpt2: n_embd 16 is not divisible by n_head 3"},
        {"data: {format: text, train: t.txt, context: 32}\nmodel: {gpt2: {n_layer: 1, n_head: 2, "
         "n_embd: 16, n_positions: 16, vocab_size: 256}}\n",
         "model.gpt2: a context of 32 tokens does not fit n_positions 16"},
        {"data: {format: text, train: t.txt, context: 8}\nmodel: {gpt2: {n_layer: 1, n_head: 2, "
         "n_embd: 16, n_positions: 16, vocab_size: 256}, layers: [{units: 2}]}\n",
         "model.gpt2 and model.layers: give one of them, not both"},
        {"data: {format: text, train: t.txt, context: 8}\nmodel: {loss: mse, gpt2: {n_layer: 1, "
         "n_head: 2, n_embd: 16, n_positions: 16, vocab_size: 256}}\n",
         "model.gpt2 model's loss is sequence_crossentropy, not mse"},
        {"data: {format: text, train: t.txt, context: 8}\nmodel: {gpt2: {n_layer: 1, n_head: 2, "
         "n_embd: 16, n_positions: 16, vocab_size: 256}}\ntrain: {accumulate: 0}\n",
         "train.accumulate: must be in [1, 1048576], got 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = (pst_err){0};
        assert_int_equal(
            cfg_job_load_string(&job, bad[i].yaml, strlen(bad[i].yaml), "j.yaml", &err),
            PST_ERR_CONFIG);
        assert_null(job);
        if (!strstr(err.msg, bad[i].msg) || strchr(err.msg, '\n'))
            print_error("case %zu: '%s'\n", i, err.msg);
        assert_non_null(strstr(err.msg, bad[i].msg));
    }
}

/* A GPT-2 through a checkpoint: the tied model saves (with its spec, `tie` included) and
 * loads into a fresh model by segment names, bit for bit. */
static void test_checkpoint_round_trip(void **state)
{
    (void)state;
    ml_gpt2_config c = {.n_layer = 1, .n_head = 2, .n_embd = 6, .n_positions = 4, .vocab_size = 9};
    gpt_case a, b;
    gpt_case_make(&a, &c, 1, 21);
    gpt_case_make(&b, &c, 1, 22);
    char path[] = "/tmp/test_gpt_ckptXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    pst_err err = {0};
    if (ckpt_save_model(path, a.m, ml_model_get_spec(a.m), NULL, NULL, &err) ||
        ckpt_load_into(path, b.m, NULL, &err))
        print_error("%s\n", err.msg);
    assert_int_equal(err.code, PST_OK);
    assert_memory_equal(ml_model_params(a.m), ml_model_params(b.m),
                        ml_model_nparams(a.m) * sizeof(float));
    unlink(path);
    gpt_case_free(&a);
    gpt_case_free(&b);
}

/* ---- Bad configurations: one clear line ----------------------------------------------- */

static void expect_gpt2_error(const ml_gpt2_config *c, const char *part)
{
    ml_model_spec s;
    pst_err err = {0};
    assert_int_equal(ml_gpt2_spec(&s, c, &err), PST_ERR_CONFIG);
    if (!strstr(err.msg, part))
        print_error("message '%s' lacks '%s'\n", err.msg, part);
    assert_non_null(strstr(err.msg, part));
    assert_null(strchr(err.msg, '\n'));
}

static void expect_model_error(ml_layer_spec *L, unsigned nl, ml_loss loss, int in,
                               const char *part)
{
    ml_model_spec s = {.layers = L, .nlayers = nl, .loss = loss};
    pst_err err = {0};
    assert_null(ml_model_create(&s, in, 2, &err));
    if (!strstr(err.msg, part))
        print_error("message '%s' lacks '%s'\n", err.msg, part);
    assert_non_null(strstr(err.msg, part));
    assert_null(strchr(err.msg, '\n'));
}

static void test_bad_configs(void **state)
{
    (void)state;
    ml_gpt2_config c = {.n_layer = 1, .n_head = 3, .n_embd = 8, .n_positions = 4, .vocab_size = 5};
    expect_gpt2_error(&c, "n_embd 8 is not divisible by n_head 3");
    c.n_head = 2;
    c.context = 9;
    expect_gpt2_error(&c, "a context of 9 tokens does not fit n_positions 4");
    c.context = 0;
    c.n_layer = 0;
    expect_gpt2_error(&c, "each must be >= 1");

    ml_layer_spec L[3];
    ml_layer_spec_init(&L[0], &ml_layer_layernorm); /* width 10 is not 3 tokens x C */
    gh_setk(&L[0], "tokens", 3);
    expect_model_error(L, 1, ML_LOSS_MSE, 10,
                       "model.layers.0.tokens: an input of width 10 is "
                       "not 3 tokens x C");
    ml_layer_spec_init(&L[0], &ml_layer_attention);
    gh_setk(&L[0], "tokens", 2);
    gh_setk(&L[0], "heads", 4);
    expect_model_error(L, 1, ML_LOSS_MSE, 12, "heads: 6 channels do not split into 4 heads");
    ml_layer_spec_init(&L[0], &ml_layer_pos_embedding);
    gh_setk(&L[0], "tokens", 8);
    gh_setk(&L[0], "positions", 4);
    expect_model_error(L, 1, ML_LOSS_MSE, 16, "a context of 8 tokens is longer than the 4");

    /* A tie to a layer of another shape, or to no layer. */
    ml_layer_spec_init(&L[0], &ml_layer_token_embedding);
    L[0].name = "wte";
    gh_setk(&L[0], "vocab", 5);
    gh_setk(&L[0], "dim", 4);
    ml_layer_spec_init(&L[1], &ml_layer_lm_head);
    gh_setk(&L[1], "tokens", 3);
    gh_setk(&L[1], "vocab", 6);
    L[1].val[ml_layer_key_find(L[1].ops, "tie")].s = "wte";
    expect_model_error(L, 2, ML_LOSS_SEQ_CCE, 3,
                       "model.layers.1.tie: wte.weight is (5, 4) but this layer's weight needs "
                       "(6, 4)");
    L[1].val[ml_layer_key_find(L[1].ops, "tie")].s = "nope";
    expect_model_error(L, 2, ML_LOSS_SEQ_CCE, 3, "tie: 'nope' is no earlier layer");
    /* sequence_crossentropy on an output that is no lm_head */
    ml_layer_spec_init(&L[1], &ml_layer_layernorm);
    gh_setk(&L[1], "tokens", 3);
    ml_layer_spec_init(&L[2], &ml_layer_dense);
    gh_setk(&L[2], "units", 4);
    expect_model_error(L, 3, ML_LOSS_SEQ_CCE, 3, "sequence_crossentropy needs logits of T tokens");
}

/* ---- The dump for tests/ref/gpt_ref.py ------------------------------------------------ */

static int hf_name(const ml_segment *sg, char *buf, size_t cap)
{
    return ml_gpt2_hf_name(sg->name, buf, cap);
}

static int dump(const char *dir)
{
    ml_gpt2_config c = {
        .n_layer = 2, .n_head = 2, .n_embd = 16, .n_positions = 12, .vocab_size = 37, .context = 8};
    gpt_case g;
    gpt_case_make(&g, &c, 3, 11);
    const float *logits = ml_model_forward(g.m, g.ids, g.n);
    double loss = ml_model_loss(g.m, g.labels, NULL, g.n);
    ml_model_backward(g.m, g.ids, g.n);
    int rc = gh_dump(dir, g.m, &c, g.ids, g.labels, logits, g.n, g.t, loss, "", hf_name);
    gpt_case_free(&g);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--dump") == 0)
        return dump(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_embedding),
        cmocka_unit_test(test_pos_embedding),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_token_dense),
        cmocka_unit_test(test_lm_head),
        cmocka_unit_test(test_attention_is_causal),
        cmocka_unit_test(test_gpt2_model_gradients),
        cmocka_unit_test(test_gpt2_layout),
        cmocka_unit_test(test_example_job),
        cmocka_unit_test(test_gpt2_job),
        cmocka_unit_test(test_checkpoint_round_trip),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
