/* core/gpt2.c -- see gpt2.h. */
#include "gpt2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAYERS_PER_BLOCK 7
#define DROPS_PER_BLOCK 2 /* with dropout: after attention and after the MLP */

static char *dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static void set_int(ml_layer_spec *L, const char *key, int v)
{
    int k = ml_layer_key_find(L->ops, key);
    if (k >= 0)
        L->val[k].i = v;
}

/* Appends layer `name` of type ops reading inputs a (and b), NULL: the previous layer. */
static ml_layer_spec *add(ml_model_spec *s, const ml_layer_ops *ops, const char *name,
                          const char *a, const char *b, int *oom)
{
    ml_layer_spec *L = &s->layers[s->nlayers++];
    ml_layer_spec_init(L, ops);
    if (!(L->name = dup(name)))
        *oom = 1;
    unsigned n = b ? 2 : a ? 1 : 0;
    if (n) {
        if (!(L->inputs = calloc(n, sizeof *L->inputs)))
            *oom = 1;
        else {
            L->ninputs = n;
            L->inputs[0] = dup(a);
            if (b)
                L->inputs[1] = dup(b);
            for (unsigned i = 0; i < n; i++)
                *oom |= !L->inputs[i];
        }
    }
    return L;
}

static void set_float(ml_layer_spec *L, const char *key, double v)
{
    int k = ml_layer_key_find(L->ops, key);
    if (k >= 0)
        L->val[k].f = v;
}

/* With dropout p > 0: a dropout layer `name` reading `from` (NULL: the previous layer),
 * and name is what the next layer reads; else from itself. */
static const char *drop(ml_model_spec *s, const ml_gpt2_config *c, const char *name,
                        const char *from, int *oom)
{
    if (c->dropout <= 0.0)
        return from;
    set_float(add(s, &ml_layer_dropout, name, from, NULL, oom), "rate", c->dropout);
    return name;
}

static int check_config(const ml_gpt2_config *c, int t, pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    if (c->n_layer < 1 || c->n_layer > 1000 || c->n_head < 1 || c->n_embd < 1 ||
        c->n_embd > (1 << 16) || c->n_positions < 1 || c->vocab_size < 1 ||
        c->vocab_size > (1 << 24))
        return pst_err_set(err, E,
                           "gpt2: n_layer %d, n_head %d, n_embd %d, n_positions %d, vocab_size "
                           "%d: each must be >= 1 (n_layer <= 1000, n_embd <= 65536)",
                           c->n_layer, c->n_head, c->n_embd, c->n_positions, c->vocab_size);
    if (c->n_embd % c->n_head != 0)
        return pst_err_set(err, E, "gpt2: n_embd %d is not divisible by n_head %d", c->n_embd,
                           c->n_head);
    if (!(c->dropout >= 0.0 && c->dropout <= 0.95))
        return pst_err_set(err, E, "gpt2: dropout %g is outside [0, 0.95]", c->dropout);
    if (t < 1 || t > c->n_positions)
        return pst_err_set(err, E, "gpt2: a context of %d tokens does not fit n_positions %d", t,
                           c->n_positions);
    return PST_OK;
}

int ml_gpt2_spec(ml_model_spec *s, const ml_gpt2_config *c, pst_err *err)
{
    int t = c->context ? c->context : c->n_positions, oom = 0;
    memset(s, 0, sizeof *s);
    if (check_config(c, t, err))
        return PST_ERR_CONFIG;
    unsigned total = 3 + (LAYERS_PER_BLOCK + DROPS_PER_BLOCK) * (unsigned)c->n_layer + 2;
    if (!(s->layers = calloc(total, sizeof *s->layers)))
        return pst_err_set(err, PST_ERR_NOMEM, "gpt2: out of memory");
    s->loss = ML_LOSS_SEQ_CCE;
    s->init = ML_INIT_AUTO;
    ml_layer_spec *L = add(s, &ml_layer_token_embedding, "wte", ML_INPUT_NAME, NULL, &oom);
    set_int(L, "vocab", c->vocab_size);
    set_int(L, "dim", c->n_embd);
    L = add(s, &ml_layer_pos_embedding, "wpe", NULL, NULL, &oom);
    set_int(L, "tokens", t);
    set_int(L, "positions", c->n_positions);
    char x[ML_NAME_MAX + 1] = "wpe", nm[ML_NAME_MAX + 1], r1[ML_NAME_MAX + 1];
    char dn[ML_NAME_MAX + 1];
    if (drop(s, c, "drop", NULL, &oom))
        snprintf(x, sizeof x, "drop");
    for (int i = 0; i < c->n_layer; i++) {
        snprintf(nm, sizeof nm, "h%d_ln_1", i);
        set_int(add(s, &ml_layer_layernorm, nm, x, NULL, &oom), "tokens", t);
        snprintf(nm, sizeof nm, "h%d_attn", i);
        L = add(s, &ml_layer_attention, nm, NULL, NULL, &oom);
        set_int(L, "tokens", t);
        set_int(L, "heads", c->n_head);
        if (c->dropout > 0.0)
            set_float(L, "dropout", c->dropout);
        snprintf(dn, sizeof dn, "h%d_attn_drop", i);
        snprintf(r1, sizeof r1, "h%d_res1", i);
        add(s, &ml_layer_add, r1, x, drop(s, c, dn, NULL, &oom) == dn ? dn : nm, &oom);
        snprintf(nm, sizeof nm, "h%d_ln_2", i);
        set_int(add(s, &ml_layer_layernorm, nm, NULL, NULL, &oom), "tokens", t);
        snprintf(nm, sizeof nm, "h%d_mlp_fc", i);
        L = add(s, &ml_layer_token_dense, nm, NULL, NULL, &oom);
        set_int(L, "tokens", t);
        set_int(L, "units", 4 * c->n_embd);
        set_int(L, "activation", ml_activation_find("gelu"));
        snprintf(nm, sizeof nm, "h%d_mlp_proj", i);
        L = add(s, &ml_layer_token_dense, nm, NULL, NULL, &oom);
        set_int(L, "tokens", t);
        set_int(L, "units", c->n_embd);
        snprintf(dn, sizeof dn, "h%d_mlp_drop", i);
        const char *mo = drop(s, c, dn, NULL, &oom) == dn ? dn : nm;
        snprintf(x, sizeof x, "h%d_res2", i);
        add(s, &ml_layer_add, x, r1, mo, &oom);
    }
    set_int(add(s, &ml_layer_layernorm, "ln_f", NULL, NULL, &oom), "tokens", t);
    L = add(s, &ml_layer_lm_head, "head", NULL, NULL, &oom);
    set_int(L, "tokens", t);
    set_int(L, "vocab", c->vocab_size);
    int k = ml_layer_key_find(L->ops, "tie");
    if (!(L->val[k].s = dup("wte")))
        oom = 1;
    if (oom) {
        ml_model_spec_fini(s);
        return pst_err_set(err, PST_ERR_NOMEM, "gpt2: out of memory");
    }
    return PST_OK;
}

int ml_gpt2_hf_name(const char *seg, char *buf, size_t n)
{
    static const struct {
        const char *ours, *hf;
    } block[] = {
        {"ln_1.weight", "ln_1.weight"},           {"ln_1.bias", "ln_1.bias"},
        {"attn.attn_w", "attn.c_attn.weight"},    {"attn.attn_b", "attn.c_attn.bias"},
        {"attn.proj_w", "attn.c_proj.weight"},    {"attn.proj_b", "attn.c_proj.bias"},
        {"ln_2.weight", "ln_2.weight"},           {"ln_2.bias", "ln_2.bias"},
        {"mlp_fc.weight", "mlp.c_fc.weight"},     {"mlp_fc.bias", "mlp.c_fc.bias"},
        {"mlp_proj.weight", "mlp.c_proj.weight"}, {"mlp_proj.bias", "mlp.c_proj.bias"},
    };
    static const char *const top[] = {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (strcmp(seg, top[i]) == 0)
            return snprintf(buf, n, "%s", seg) < (int)n ? 0 : -1;
    int layer, used = 0;
    if (sscanf(seg, "h%d_%n", &layer, &used) != 1 || used == 0 || layer < 0)
        return -1;
    for (size_t i = 0; i < sizeof block / sizeof block[0]; i++)
        if (strcmp(seg + used, block[i].ours) == 0)
            return snprintf(buf, n, "h.%d.%s", layer, block[i].hf) < (int)n ? 0 : -1;
    return -1;
}

static int get_int(const ml_layer_spec *L, const char *key)
{
    int k = ml_layer_key_find(L->ops, key);
    return k >= 0 ? (int)L->val[k].i : 0;
}

int ml_gpt2_config_of(const ml_model_spec *s, ml_gpt2_config *c, pst_err *err)
{
    memset(c, 0, sizeof *c);
    const int E = PST_ERR_CONFIG;
    /* with dropout a `drop` layer follows wpe and each block has two more */
    int dr = s->nlayers > 2 && s->layers[2].ops == &ml_layer_dropout;
    if (s->nlayers < 2 + LAYERS_PER_BLOCK + 2 || s->layers[0].ops != &ml_layer_token_embedding ||
        s->layers[1].ops != &ml_layer_pos_embedding || s->layers[3 + dr].ops != &ml_layer_attention)
        return pst_err_set(err, E,
                           "not a GPT-2: the layers do not start token_embedding, "
                           "pos_embedding, layernorm, attention");
    c->vocab_size = get_int(&s->layers[0], "vocab");
    c->n_embd = get_int(&s->layers[0], "dim");
    c->context = get_int(&s->layers[1], "tokens");
    c->n_positions = get_int(&s->layers[1], "positions");
    c->n_head = get_int(&s->layers[3 + dr], "heads");
    c->n_layer = (int)((s->nlayers - 4 - dr) / (LAYERS_PER_BLOCK + dr * DROPS_PER_BLOCK));
    if (dr)
        c->dropout = s->layers[2].val[ml_layer_key_find(&ml_layer_dropout, "rate")].f;
    if (c->context == c->n_positions)
        c->context = 0;
    ml_model_spec g;
    pst_err e2 = {0};
    if (ml_gpt2_spec(&g, c, &e2))
        return pst_err_set(err, e2.code, "not a GPT-2: %s", e2.msg);
    int same = ml_model_spec_same(s, &g);
    ml_model_spec_fini(&g);
    if (!same)
        return pst_err_set(err, E,
                           "not a GPT-2: the layers differ from those of n_layer %d, n_head %d, "
                           "n_embd %d, n_positions %d, vocab_size %d (core/gpt2.h)",
                           c->n_layer, c->n_head, c->n_embd, c->n_positions, c->vocab_size);
    return PST_OK;
}
