/* tests/test_lora.c -- LoRA adapters (core/layers/lora.h) on token_dense and attention:
 * backward against central finite differences (every tensor and dx; batch 1, T 1, odd
 * sizes, rank 1 to min(in, out)); a frozen base (base dt NULL) gives the same adapter
 * gradients and dx; a model with adapters starts as the base model (B = 0), keeps the
 * base at the offsets it has without them, and merging W + (alpha/r) A B computes what
 * the adapters compute; model.lora's bad input gives one line naming the key.
 * `test_lora --dump DIR` writes the case tests/ref/lora_ref.py checks against PyTorch.
 *
 * Legend: N batch, T tokens, C channels, H heads, r rank. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/rng.h"
#include "core/gpt2.h"
#include "core/model.h"
#include "job/job.h"

#include "gpt_harness.h"

/* Shapes spec (with adapters) for input width in and batch n; checks dx and every dt
 * (B random, so dA is not zero), then the frozen base: base dt NULL, adapters' and dx the
 * same. */
static void check_layer(ml_layer_spec *spec, int in, int n, uint64_t seed)
{
    gh_layer_case c;
    gh_layer_make(&c, &(ml_layer){.spec = spec, .nin = 1, .in = {in}}, n, 0, seed);
    assert_true(c.l.adapter_mask != 0);
    gh_layer_check(&c, spec->ops->name);
    float *dt2[ML_MAX_TENSORS] = {NULL};
    for (int k = 0; k < c.l.ntensors; k++)
        if ((c.l.adapter_mask >> k) & 1u)
            dt2[k] = calloc(c.tl[k], sizeof(float));
    float *dx2 = malloc(c.xl * sizeof *dx2);
    float *dxs2[1] = {dx2};
    const float *cx[1] = {c.x};
    const float *const *ct = (const float *const *)c.t;
    spec->ops->forward(&c.l, c.y, cx, ct, n);
    spec->ops->backward(&c.l, dxs2, dt2, c.dy, c.y, cx, ct, n);
    assert_memory_equal(c.dx, dx2, c.xl * sizeof *dx2);
    for (int k = 0; k < c.l.ntensors; k++)
        if (dt2[k]) {
            assert_memory_equal(c.dt[k], dt2[k], c.tl[k] * sizeof(float));
            free(dt2[k]);
        }
    free(dx2);
    gh_layer_free(&c);
}

typedef struct {
    int n, t, c, h, r;
} shape;

/* batch 1, T 1, odd C, rank 1 and rank = C (min(in, out) of every projection here) */
static const shape shapes[] = {
    {1, 1, 3, 1, 1}, {1, 4, 5, 1, 2}, {2, 3, 6, 3, 6}, {3, 5, 8, 2, 3}, {2, 2, 7, 7, 7}};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static void test_token_dense_lora(void **state)
{
    (void)state;
    for (int s = 0; s < NSHAPES; s++) {
        ml_layer_spec L;
        ml_layer_spec_init(&L, &ml_layer_token_dense);
        gh_setk(&L, "tokens", shapes[s].t);
        gh_setk(&L, "units", shapes[s].c + s); /* out >= in: rank C fits */
        gh_setk(&L, "lora_rank", shapes[s].r);
        gh_setk(&L, "lora_alpha", 2.0 + s);
        check_layer(&L, shapes[s].t * shapes[s].c, shapes[s].n, 30 + s);
    }
}

static void test_attention_lora(void **state)
{
    (void)state;
    for (int s = 0; s < NSHAPES; s++) {
        ml_layer_spec L;
        ml_layer_spec_init(&L, &ml_layer_attention);
        gh_setk(&L, "tokens", shapes[s].t);
        gh_setk(&L, "heads", shapes[s].h);
        gh_setk(&L, "lora_rank", shapes[s].r);
        gh_setk(&L, "lora_alpha", 1.5 * (s + 1));
        check_layer(&L, shapes[s].t * shapes[s].c, shapes[s].n, 50 + s);
    }
}

static void test_rank_out_of_range(void **state)
{
    (void)state;
    ml_layer_spec L;
    ml_layer_spec_init(&L, &ml_layer_attention);
    gh_setk(&L, "tokens", 2);
    gh_setk(&L, "heads", 2);
    gh_setk(&L, "lora_rank", 9);
    ml_layer l = {.spec = &L, .nin = 1, .in = {2 * 8}};
    pst_err err = {0};
    assert_int_equal(L.ops->shape(&l, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "lora_rank: 9"));
}

/* A GPT-2 (L 2, H 2, C 8, T 6, V 11) with and without adapters on every projection. */
static ml_model *gpt(int rank, int n)
{
    ml_gpt2_config c = {.n_layer = 2, .n_head = 2, .n_embd = 8, .n_positions = 6, .vocab_size = 11};
    ml_model_spec s;
    gh_gpt_spec(&s, &c);
    for (unsigned l = 0; l < s.nlayers && rank; l++)
        if (s.layers[l].ops == &ml_layer_attention || s.layers[l].ops == &ml_layer_token_dense) {
            gh_setk(&s.layers[l], "lora_rank", rank);
            gh_setk(&s.layers[l], "lora_alpha", 4.0);
        }
    return gh_model_create(&s, 6, n, 7);
}

static void test_model_starts_as_base_and_merges(void **state)
{
    (void)state;
    const int n = 3, r = 2;
    ml_model *base = gpt(0, n), *lo = gpt(r, n);
    size_t pb = ml_model_nparams(base);
    /* base tensors at the base model's offsets, drawn alike; adapters after them */
    assert_true(ml_model_nparams(lo) > pb);
    assert_memory_equal(ml_model_params(base), ml_model_params(lo), pb * sizeof(float));
    int nad = 0;
    for (int i = 0; i < ml_model_nsegments(lo); i++) {
        const ml_segment *sg = ml_model_segment(lo, i);
        if (sg->adapter)
            nad++, assert_true(sg->offset >= pb);
        else
            assert_true(sg->offset + sg->len <= pb);
    }
    assert_int_equal(nad, 2 * 4 * 2); /* 2 blocks x 4 projections x (A, B) */
    float x[3 * 6];
    rng_state rs;
    rng_seed(&rs, 3);
    for (int i = 0; i < n * 6; i++)
        x[i] = (float)(rng_next(&rs) % 11);
    int out = ml_model_out_dim(base);
    float *yb = malloc(sizeof(float) * (size_t)n * out);
    memcpy(yb, ml_model_forward(base, x, n), sizeof(float) * (size_t)n * out);
    assert_memory_equal(yb, ml_model_forward(lo, x, n), sizeof(float) * (size_t)n * out);
    /* B random: the adapted model differs; W + (alpha/r) A B in the base model gives the
     * same logits to float tolerance */
    float *pl = ml_model_params(lo), *pm = ml_model_params(base);
    for (int i = 0; i < ml_model_nsegments(lo); i++) {
        const ml_segment *sg = ml_model_segment(lo, i);
        if (sg->adapter && strstr(sg->name, "lora_b"))
            for (size_t j = 0; j < sg->len; j++)
                pl[sg->offset + j] = 0.3f * (2.0f * rng_uniform(&rs) - 1.0f);
    }
    for (int i = 0; i < ml_model_nsegments(lo); i++) {
        const ml_segment *a = ml_model_segment(lo, i);
        if (!a->adapter || !strstr(a->name, "lora_a"))
            continue;
        const ml_segment *b = ml_model_segment(lo, i + 1);
        /* the base weight: "h0_attn.attn_lora_a" -> "h0_attn.attn_w", "h0_mlp_fc.lora_a" ->
         * "h0_mlp_fc.weight" */
        char want[64];
        snprintf(want, sizeof want, "%s", a->name);
        char *dot = strchr(want, '.');
        assert_non_null(dot);
        if (strcmp(dot, ".attn_lora_a") == 0)
            strcpy(dot, ".attn_w");
        else if (strcmp(dot, ".proj_lora_a") == 0)
            strcpy(dot, ".proj_w");
        else
            strcpy(dot, ".weight");
        const ml_segment *w = NULL;
        for (int j = 0; j < ml_model_nsegments(base); j++)
            if (strcmp(ml_model_segment(base, j)->name, want) == 0)
                w = ml_model_segment(base, j);
        assert_non_null(w);
        for (int p = 0; p < w->rows; p++)
            for (int q = 0; q < w->cols; q++) {
                double s = 0.0;
                for (int k = 0; k < r; k++)
                    s += (double)pl[a->offset + (size_t)p * r + k] *
                         pl[b->offset + (size_t)k * w->cols + q];
                pm[w->offset + (size_t)p * w->cols + q] += (float)(4.0 / r * s);
            }
    }
    const float *ym = ml_model_forward(base, x, n);
    memcpy(yb, ym, sizeof(float) * (size_t)n * out);
    const float *yl = ml_model_forward(lo, x, n);
    double most = 0.0, moved = 0.0;
    for (int i = 0; i < n * out; i++) {
        most = fmax(most, fabs((double)yb[i] - yl[i]));
        moved = fmax(moved, fabs((double)yl[i]));
    }
    assert_true(most < 1e-4 * (1.0 + moved));
    free(yb);
    ml_model_destroy(base);
    ml_model_destroy(lo);
}

/* model.lora's refusals: one line naming the key. */
static void expect_refusal(const char *lora, const char *layers, const char *want)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "name: t\ndata: {format: text, train: x.txt, context: 6}\nmodel:\n  %s\n  lora: %s\n",
             layers, lora);
    cfg_job *job = NULL;
    pst_err err = {0};
    int rc = cfg_job_load_string(&job, yaml, strlen(yaml), "job.yaml", &err);
    if (rc == PST_OK || !strstr(err.msg, want)) {
        print_error("lora %s: rc %d '%s', wanted '%s'\n", lora, rc, err.msg, want);
        cfg_job_free(job);
        fail();
    }
    assert_int_equal(rc, PST_ERR_CONFIG);
    assert_null(strchr(err.msg, '\n'));
}

static void test_job_refusals(void **state)
{
    (void)state;
    const char *g = "gpt2: {n_layer: 1, n_head: 2, n_embd: 8, n_positions: 6, vocab_size: 11}";
    expect_refusal("{rank: -1}", g, "model.lora.rank: must be 1 to 65536");
    expect_refusal("{rank: 0, targets: [attn]}", g, "model.lora.rank");
    expect_refusal("{rank: 9}", g, "model.lora.rank: 9 is more than n_embd 8");
    expect_refusal("{rank: 2, alpha: 0}", g, "model.lora.alpha: must be > 0, got 0");
    expect_refusal("{rank: 2, alpha: -1}", g, "model.lora.alpha: must be > 0");
    expect_refusal("{rank: 2, targets: [ffn]}", g, "model.lora.targets: 'ffn' is not attn or mlp");
    expect_refusal("{rank: 2}", "layers: [{type: dense, units: 4}]",
                   "model.lora.targets: the model has no attention (attn) or token_dense (mlp)");
}

static void test_job_applies(void **state)
{
    (void)state;
    const char *yaml = "name: t\ndata: {format: text, train: x.txt, context: 6}\nmodel:\n"
                       "  gpt2: {n_layer: 1, n_head: 2, n_embd: 8, n_positions: 6, vocab_size: "
                       "11}\n  lora: {rank: 4, alpha: 16, targets: [attn]}\n";
    cfg_job *job = NULL;
    pst_err err = {0};
    assert_int_equal(cfg_job_load_string(&job, yaml, strlen(yaml), "job.yaml", &err), PST_OK);
    const ml_model_spec *s = &job->model.spec;
    for (unsigned l = 0; l < s->nlayers; l++) {
        const ml_layer_spec *L = &s->layers[l];
        int k = ml_layer_key_find(L->ops, "lora_rank");
        if (L->ops->has_params)
            assert_false(L->trainable);
        if (k >= 0)
            assert_int_equal(L->val[k].i, L->ops == &ml_layer_attention ? 4 : 0);
    }
    cfg_job_free(job);
}

/* ---- The dump for tests/ref/lora_ref.py ------------------------------------------------ */

/* The Hugging Face name of segment sg of a GPT-2 with adapters: a base tensor's as
 * ml_gpt2_hf_name gives it, an adapter's after the weight it adapts ("h0_attn.attn_lora_a"
 * adapts "h0_attn.attn_w", i.e. "h.0.attn.c_attn.weight": "h.0.attn.c_attn.lora_a"). */
static int hf_name(const ml_segment *sg, char *hf, size_t cap)
{
    if (!sg->adapter)
        return ml_gpt2_hf_name(sg->name, hf, cap);
    char w[64];
    snprintf(w, sizeof w, "%s", sg->name);
    char *dot = strchr(w, '.');
    if (!dot)
        return 1;
    const char *part = strstr(dot, "lora_a") ? "lora_a" : "lora_b";
    if (strncmp(dot, ".attn_", 6) == 0)
        strcpy(dot, ".attn_w");
    else if (strncmp(dot, ".proj_", 6) == 0)
        strcpy(dot, ".proj_w");
    else
        strcpy(dot, ".weight");
    char base[64];
    if (ml_gpt2_hf_name(w, base, sizeof base))
        return 1;
    char *tail = strrchr(base, '.'); /* ".weight" */
    if (!tail)
        return 1;
    *tail = '\0';
    return snprintf(hf, cap, "%s.%s", base, part) >= (int)cap;
}

/* `test_lora --dump DIR`: gpt()'s model with adapters of rank 2, B random (it starts at 0,
 * which would leave A's gradient 0), one batch of 3 windows through forward, loss and
 * backward: the files tests/ref/gpt_ref.py's check_dump reads, with case.json's "lora". */
static int dump(const char *dir)
{
    const int n = 3, r = 2, t = 6, v = 11;
    ml_model *m = gpt(r, n);
    rng_state rs;
    rng_seed(&rs, 5);
    float *p = ml_model_params(m);
    for (int i = 0; i < ml_model_nsegments(m); i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        if (sg->adapter && strstr(sg->name, "lora_b"))
            for (size_t j = 0; j < sg->len; j++)
                p[sg->offset + j] = 0.3f * (2.0f * rng_uniform(&rs) - 1.0f);
    }
    float ids[3 * 6];
    int32_t labels[3 * 6];
    for (int i = 0; i < n * t; i++) {
        ids[i] = (float)(rng_next(&rs) % (uint64_t)v);
        labels[i] = (int32_t)(rng_next(&rs) % (uint64_t)v);
    }
    const float *logits = ml_model_forward(m, ids, n);
    double loss = ml_model_loss(m, labels, NULL, n);
    ml_model_backward(m, ids, n);
    /* gpt()'s configuration: L 2, H 2, C 8, T 6, V 11; alpha 4 */
    ml_gpt2_config c = {.n_layer = 2, .n_head = 2, .n_embd = 8, .n_positions = 6, .vocab_size = v};
    char extra[64];
    snprintf(extra, sizeof extra, "\"lora\": {\"rank\": %d, \"alpha\": 4.0}, ", r);
    int rc = gh_dump(dir, m, &c, ids, labels, logits, n, t, loss, extra, hf_name);
    ml_model_destroy(m);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--dump") == 0)
        return dump(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_dense_lora),
        cmocka_unit_test(test_attention_lora),
        cmocka_unit_test(test_rank_out_of_range),
        cmocka_unit_test(test_model_starts_as_base_and_merges),
        cmocka_unit_test(test_job_refusals),
        cmocka_unit_test(test_job_applies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
