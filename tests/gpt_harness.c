/* tests/gpt_harness.c -- the transformer unit tests' shared harness (gpt_harness.h). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gpt_harness.h"

void gh_setk(ml_layer_spec *s, const char *key, double v)
{
    int k = ml_layer_key_find(s->ops, key);
    assert_true(k >= 0);
    if (s->ops->keys[k].kind == ML_KEY_FLOAT)
        s->val[k].f = v;
    else
        s->val[k].i = (int64_t)v;
}

void gh_fill(float *x, size_t n, rng_state *r, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (2.0f * rng_uniform(r) - 1.0f);
}

void gh_assert_grad(const float *got, const float *fd, size_t len, const char *what)
{
    for (size_t i = 0; i < len; i++) {
        double d = fabs((double)got[i] - fd[i]), m = fmax(fabs(got[i]), fabs(fd[i]));
        if (d > 2e-2 * m + 2e-3) {
            print_error("%s[%zu]: backward %g, finite differences %g\n", what, i, got[i], fd[i]);
            fail();
        }
    }
}

static const float fd_h = 3e-3f;

/* sum dy * y in double, y = forward(x, t). */
static double objective(gh_layer_case *c)
{
    const ml_layer *l = &c->l;
    const float *cx[1] = {c->x};
    l->spec->ops->forward(l, c->y, cx, (const float *const *)c->t, c->n);
    double s = 0.0;
    for (size_t i = 0; i < c->yl; i++)
        s += (double)c->dy[i] * c->y[i];
    return s;
}

/* Central differences of the objective for every element of p (len), into c->fd. */
static void layer_fd(gh_layer_case *c, float *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        float v = p[i];
        p[i] = v + fd_h;
        double a = objective(c);
        p[i] = v - fd_h;
        double b = objective(c);
        p[i] = v;
        c->fd[i] = (float)((a - b) / (2.0 * fd_h));
    }
}

void gh_layer_make(gh_layer_case *c, const ml_layer *proto, int n, int ids, uint64_t seed)
{
    *c = (gh_layer_case){.l = *proto, .n = n, .ids = ids};
    ml_layer *l = &c->l;
    rng_state r;
    rng_seed(&r, seed);
    pst_err err = {0};
    assert_int_equal(l->spec->ops->shape(l, &err), PST_OK);
    if (l->spec->ops->workspace)
        l->ws = calloc(l->spec->ops->workspace(l, n) + 1, sizeof(float));
    c->xl = (size_t)n * l->in[0];
    c->yl = (size_t)n * l->out;
    c->x = malloc(c->xl * sizeof *c->x);
    c->dx = malloc(c->xl * sizeof *c->dx);
    c->y = malloc(c->yl * sizeof *c->y);
    c->dy = malloc(c->yl * sizeof *c->dy);
    size_t most = c->xl;
    for (int k = 0; k < l->ntensors; k++) {
        c->tl[k] = (size_t)l->tensor[k].rows * l->tensor[k].cols;
        c->t[k] = malloc(c->tl[k] * sizeof(float));
        c->dt[k] = malloc(c->tl[k] * sizeof(float));
        gh_fill(c->t[k], c->tl[k], &r, 0.5f);
        most = c->tl[k] > most ? c->tl[k] : most;
    }
    c->fd = malloc(most * sizeof *c->fd);
    if (ids)
        for (size_t i = 0; i < c->xl; i++)
            c->x[i] = (float)(rng_next(&r) % (uint64_t)l->tensor[0].rows);
    else
        gh_fill(c->x, c->xl, &r, 1.0f);
    gh_fill(c->dy, c->yl, &r, 1.0f);
}

void gh_layer_run(gh_layer_case *c)
{
    const ml_layer *l = &c->l;
    const float *cx[1] = {c->x};
    const float *const *ct = (const float *const *)c->t;
    l->spec->ops->forward(l, c->y, cx, ct, c->n);
    float *dxs[1] = {c->ids ? NULL : c->dx};
    l->spec->ops->backward(l, dxs, c->dt, c->dy, c->y, cx, ct, c->n);
}

void gh_layer_check(gh_layer_case *c, const char *name)
{
    gh_layer_run(c);
    char what[96];
    if (!c->ids) {
        layer_fd(c, c->x, c->xl);
        snprintf(what, sizeof what, "%s dx", name);
        gh_assert_grad(c->dx, c->fd, c->xl, what);
    }
    for (int k = 0; k < c->l.ntensors; k++) {
        layer_fd(c, c->t[k], c->tl[k]);
        snprintf(what, sizeof what, "%s d%s", name, c->l.tensor[k].name);
        gh_assert_grad(c->dt[k], c->fd, c->tl[k], what);
    }
}

void gh_layer_free(gh_layer_case *c)
{
    for (int k = 0; k < c->l.ntensors; k++)
        free(c->t[k]), free(c->dt[k]);
    free(c->x), free(c->dx), free(c->y), free(c->dy), free(c->fd), free(c->l.ws);
}

void gh_gpt_spec(ml_model_spec *s, const ml_gpt2_config *c)
{
    pst_err err = {0};
    int rc = ml_gpt2_spec(s, c, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, PST_OK);
}

ml_model *gh_model_create(ml_model_spec *s, int tokens, int n, uint64_t seed)
{
    pst_err err = {0};
    ml_model *m = ml_model_create(s, tokens, n, &err);
    ml_model_spec_fini(s);
    if (!m)
        print_error("%s\n", err.msg);
    assert_non_null(m);
    ml_model_init(m, seed);
    return m;
}

void gh_perturb(ml_model *m, rng_state *r)
{
    float *p = ml_model_params(m);
    for (size_t i = 0; i < ml_model_nparams(m); i++)
        p[i] += 0.2f * (2.0f * rng_uniform(r) - 1.0f);
}

void gh_model_fd(float *fd, ml_model *m, const float *ids, const int32_t *lab, int n)
{
    float *p = ml_model_params(m);
    for (size_t i = 0; i < ml_model_nparams(m); i++) {
        float v = p[i];
        p[i] = v + fd_h;
        ml_model_forward(m, ids, n);
        double a = ml_model_loss(m, lab, NULL, n);
        p[i] = v - fd_h;
        ml_model_forward(m, ids, n);
        double b = ml_model_loss(m, lab, NULL, n);
        p[i] = v;
        fd[i] = (float)((a - b) / (2.0 * fd_h));
    }
}

/* ---- The dump for tests/ref/gpt_ref.py ------------------------------------------------ */

static int write_file(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int bad = !f || fwrite(p, 1, bytes, f) != bytes;
    if (f && fclose(f) != 0)
        bad = 1;
    if (bad)
        fprintf(stderr, "gh_dump: cannot write %s\n", path);
    return bad;
}

int gh_dump(const char *dir, ml_model *m, const ml_gpt2_config *c, const float *ids,
            const int32_t *labels, const float *logits, int n, int t, double loss,
            const char *extra, int (*hf)(const ml_segment *sg, char *buf, size_t cap))
{
    size_t np = ml_model_nparams(m), nt = (size_t)n * t;
    int rc = write_file(dir, "params.f32", ml_model_params(m), np * sizeof(float)) ||
             write_file(dir, "grads.f32", ml_model_grads(m), np * sizeof(float)) ||
             write_file(dir, "logits.f32", logits, nt * c->vocab_size * sizeof(float)) ||
             write_file(dir, "ids.f32", ids, nt * sizeof(float)) ||
             write_file(dir, "labels.i32", labels, nt * sizeof(int32_t));
    char path[1024];
    snprintf(path, sizeof path, "%s/case.json", dir);
    FILE *f = rc ? NULL : fopen(path, "w");
    if (!f)
        return 1;
    fprintf(f,
            "{\"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, \"n_positions\": %d, "
            "\"vocab_size\": %d, \"context\": %d, \"batch\": %d, \"loss\": %.9g, %s"
            "\"segments\": [",
            c->n_layer, c->n_head, c->n_embd, c->n_positions, c->vocab_size, t, n, loss, extra);
    for (int s = 0; s < ml_model_nsegments(m); s++) {
        const ml_segment *sg = ml_model_segment(m, s);
        char name[96];
        if (hf(sg, name, sizeof name)) {
            fprintf(stderr, "gh_dump: no Hugging Face name for %s\n", sg->name);
            rc = 1;
        }
        fprintf(f,
                "%s{\"name\": \"%s\", \"hf\": \"%s\", \"offset\": %zu, \"rows\": %d, "
                "\"cols\": %d}",
                s ? ", " : "", sg->name, name, sg->offset, sg->rows, sg->cols);
    }
    fputs("]}\n", f);
    return fclose(f) != 0 || rc;
}
