/* ckpt/lora.c -- a LoRA checkpoint's merged model: every base tensor copied and each
 * adapted projection W (in, out) replaced by W + (alpha / r) A B (core/layers/lora.h), in
 * the model the same spec makes without adapters. Adapters are named after their weight
 * ("<p>lora_a" adapts "<p>w", "lora_a" adapts "weight": attention's attn_lora_a ->
 * attn_w, proj_lora_a -> proj_w; token_dense's lora_a -> weight). */
#include "ckpt_internal.h"

#include <stdio.h>
#include <string.h>

#include "core/layers/lora.h"

int ckpt_lora_strip(ml_model_spec *s)
{
    int n = 0;
    for (unsigned l = 0; l < s->nlayers; l++) {
        ml_layer_spec *L = &s->layers[l];
        int kr = ml_layer_key_find(L->ops, "lora_rank"),
            ka = ml_layer_key_find(L->ops, "lora_alpha");
        if (kr < 0 || ka < 0 || L->val[kr].i == 0)
            continue;
        L->val[kr].i = 0;
        L->val[ka].f = L->ops->keys[ka].def;
        L->trainable = 1;
        n++;
    }
    return n;
}

static const ml_segment *find_seg(const ml_model *m, const char *name)
{
    for (int i = 0; i < ml_model_nsegments(m); i++)
        if (strcmp(ml_model_segment(m, i)->name, name) == 0)
            return ml_model_segment(m, i);
    return NULL;
}

int ckpt_lora_merge(ml_model *base, ml_model *lo, pst_err *err)
{
    const ml_model_spec *s = ml_model_get_spec(lo);
    float *pb = ml_model_params(base), *pl = ml_model_params(lo);
    for (int i = 0; i < ml_model_nsegments(base); i++) {
        const ml_segment *d = ml_model_segment(base, i), *o = find_seg(lo, d->name);
        if (!o || o->len != d->len)
            return pst_err_set(err, PST_ERR_DATA, "lora merge: no tensor '%s'", d->name);
        memcpy(pb + d->offset, pl + o->offset, d->len * sizeof(float));
    }
    for (int i = 0; i + 1 < ml_model_nsegments(lo); i++) {
        const ml_segment *a = ml_model_segment(lo, i), *b = ml_model_segment(lo, i + 1);
        const char *dot = strrchr(a->name, '.'), *tail = dot ? strstr(dot, "lora_a") : NULL;
        if (!a->adapter || !tail || tail[6])
            continue;
        char want[64];
        snprintf(want, sizeof want, "%.*s%s", (int)(tail - a->name), a->name,
                 tail == dot + 1 ? "weight" : "w");
        const ml_segment *w = find_seg(base, want);
        const ml_layer_spec *L = &s->layers[a->layer];
        int kr = ml_layer_key_find(L->ops, "lora_rank"),
            ka = ml_layer_key_find(L->ops, "lora_alpha");
        if (!w || !b->adapter || kr < 0 || ka < 0 || w->rows != a->rows || w->cols != b->cols)
            return pst_err_set(err, PST_ERR_DATA, "lora merge: adapter '%s' adapts no weight",
                               a->name);
        int r = (int)L->val[kr].i;
        ml_lora_merge(pb + w->offset, pl + a->offset, pl + b->offset, w->rows, r, w->cols,
                      (float)(L->val[ka].f / r));
    }
    return PST_OK;
}
