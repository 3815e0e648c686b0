/* job/layers.c -- model.layers: layer entries read by the keys of the layer registry,
 * from the file scan and from overrides. */
#include "job_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gpt2.h"

/* ---- Layers: keys by type, from the layer registry ---------------------------------- */

/* The keys every layer has, whatever its type, after `type` and the type's own. */
static const char *const layer_common[] = {"name", "inputs", "trainable", "lr_mult"};

/* "type, units, activation, name, inputs, trainable, lr_mult" for messages. */
static void layer_key_list(const ml_layer_ops *ops, char *buf, size_t n)
{
    size_t len = (size_t)snprintf(buf, n, "type");
    for (int k = 0; ops && k < ops->nkeys && len < n; k++)
        if (!(ops->keys[k].flags & ML_KEY_COMPAT))
            len += (size_t)snprintf(buf + len, n - len, ", %s", ops->keys[k].name);
    for (size_t c = 0; c < sizeof layer_common / sizeof layer_common[0] && len < n; c++)
        len += (size_t)snprintf(buf + len, n - len, ", %s", layer_common[c]);
}

static const char *type_why(const ml_registry *reg, const char *text, char *why, size_t whylen)
{
    char names[256];
    ml_registry_names(reg, names, sizeof names);
    snprintf(why, whylen, "'%s' is not one of: %s", text, names);
    return why;
}

/* Replaces L's inputs with the names in items[0..n) (n == 0: the previous layer). */
static int set_inputs(ml_layer_spec *L, const char *const *items, size_t n)
{
    char **arr = n ? calloc(n, sizeof *arr) : NULL;
    if (n && !arr)
        return PST_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(arr[i] = strdup(items[i]))) {
            while (i--)
                free(arr[i]);
            free(arr);
            return PST_ERR_NOMEM;
        }
    for (unsigned i = 0; i < L->ninputs; i++)
        free(L->inputs[i]);
    free(L->inputs);
    L->inputs = arr;
    L->ninputs = (unsigned)n;
    return PST_OK;
}

/* "a, b", "[a, b]", "a" or "" (the previous layer): the inputs as written on the command
 * line (or as a scalar in a file). */
static int set_inputs_text(ml_layer_spec *L, const char *text, char *why, size_t whylen)
{
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", text) >= (int)sizeof buf) {
        snprintf(why, whylen, "list too long");
        return -1;
    }
    char *p = buf;
    while (*p == ' ')
        p++;
    size_t n = strlen(p);
    while (n && p[n - 1] == ' ')
        p[--n] = '\0';
    if (n && p[0] == '[' && p[n - 1] == ']') {
        p[n - 1] = '\0';
        p++;
    }
    const char *items[ML_MAX_INPUTS + 1];
    size_t count = 0;
    char *save = NULL;
    for (char *it = strtok_r(p, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
        while (*it == ' ')
            it++;
        size_t il = strlen(it);
        while (il && it[il - 1] == ' ')
            it[--il] = '\0';
        if (!il || cfg_is_null_word(it))
            continue;
        if (count == ML_MAX_INPUTS) {
            snprintf(why, whylen, "more than %d inputs", ML_MAX_INPUTS);
            return -1;
        }
        items[count++] = it;
    }
    if (set_inputs(L, items, count)) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

/* Parses text as the value of key k of a layer into *out (strings borrowed). */
static int parse_layer_value(const ml_layer_key *k, const char *text, ml_value *out, char *why,
                             size_t whylen)
{
    static const cyaml_schema_value_t v_int = {CYAML_VALUE_INT(CYAML_FLAG_DEFAULT, int)};
    static const cyaml_schema_value_t v_float = {CYAML_VALUE_FLOAT(CYAML_FLAG_DEFAULT, double)};
    static const cyaml_schema_value_t v_bool = {CYAML_VALUE_BOOL(CYAML_FLAG_DEFAULT, int)};
    cfg_scalar val;
    memset(out, 0, sizeof *out);
    switch (k->kind) {
    case ML_KEY_INT:
        if (cfg_parse_scalar(&v_int, text, &val, why, whylen))
            return -1;
        out->i = val.i;
        return 0;
    case ML_KEY_FLOAT:
        if (cfg_parse_scalar(&v_float, text, &val, why, whylen))
            return -1;
        out->f = val.d;
        return 0;
    case ML_KEY_BOOL:
        if (cfg_parse_scalar(&v_bool, text, &val, why, whylen))
            return -1;
        out->i = val.i;
        return 0;
    case ML_KEY_ENUM: {
        for (int i = 0; k->enum_name(i); i++)
            if (strcmp(text, k->enum_name(i)) == 0) {
                out->i = i;
                return 0;
            }
        int len = snprintf(why, whylen, "'%s' is not one of:", text);
        for (int i = 0; k->enum_name(i) && len >= 0 && (size_t)len < whylen; i++)
            len +=
                snprintf(why + len, whylen - (size_t)len, "%s %s", i ? "," : "", k->enum_name(i));
        return -1;
    }
    case ML_KEY_STRING: out->s = cfg_is_null_word(text) ? NULL : (char *)text; return 0;
    }
    snprintf(why, whylen, "unsupported value type");
    return -1;
}

/* Sets key `key` of layer L from text (a scalar). Returns 0, 1 for a key the layer does
 * not have, -1 for a bad value (why says what), PST_ERR_NOMEM-like -2 for memory. */
int cfg_layer_set_key(const ml_registry *reg, ml_layer_spec *L, const char *key, const char *text,
                      char *why, size_t whylen)
{
    if (strcmp(key, "type") == 0) {
        const ml_layer_ops *ops = ml_registry_find(reg, text);
        if (!ops) {
            type_why(reg, text, why, whylen);
            return -1;
        }
        ml_layer_spec_set_type(L, ops);
        return 0;
    }
    if (strcmp(key, "name") == 0) {
        char *s = NULL;
        if (!cfg_is_null_word(text) && !(s = strdup(text)))
            return -2;
        free(L->name);
        L->name = s;
        return 0;
    }
    if (strcmp(key, "inputs") == 0)
        return set_inputs_text(L, text, why, whylen);
    cfg_scalar val;
    if (strcmp(key, "trainable") == 0) {
        static const cyaml_schema_value_t v_bool = {CYAML_VALUE_BOOL(CYAML_FLAG_DEFAULT, int)};
        if (cfg_parse_scalar(&v_bool, text, &val, why, whylen))
            return -1;
        L->trainable = (int)val.i;
        return 0;
    }
    if (strcmp(key, "lr_mult") == 0) {
        static const cyaml_schema_value_t v_f = {CYAML_VALUE_FLOAT(CYAML_FLAG_DEFAULT, float)};
        if (cfg_parse_scalar(&v_f, text, &val, why, whylen))
            return -1;
        L->lr_mult = (float)val.d;
        return 0;
    }
    int k = ml_layer_key_find(L->ops, key);
    if (k < 0)
        return 1;
    const ml_layer_key *K = &L->ops->keys[k];
    ml_value v;
    if (parse_layer_value(K, text, &v, why, whylen))
        return -1;
    if (K->kind == ML_KEY_STRING) {
        char *s = v.s ? strdup(v.s) : NULL;
        if (v.s && !s)
            return -2;
        free(L->val[k].s);
        v.s = s;
    }
    L->val[k] = v;
    return 0;
}

/* One key of a layer entry as the scan met it, kept until the entry's type is known. */
typedef struct {
    char *key;
    char *text; /* a scalar's text; for a list (inputs) its items joined by "," */
    size_t line;
} layer_arg;

#define CFG_LAYER_ARGS 32

static void free_args(layer_arg *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].key);
        free(a[i].text);
    }
}

/* A list of plain names (inputs: [a, b]) joined into "a,b". */
static int scan_name_list(cfg_scan *sc, char **out)
{
    char buf[1024];
    size_t len = 0;
    buf[0] = '\0';
    for (;;) {
        yaml_event_t ev;
        int rc = cfg_scan_next(sc, &ev);
        if (rc)
            return rc;
        size_t line = ev.start_mark.line + 1;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&ev);
            return cfg_scan_fail(sc, line, "expected a list of layer names");
        }
        const char *t = (const char *)ev.data.scalar.value;
        int w = snprintf(buf + len, sizeof buf - len, "%s%s", len ? "," : "", t);
        int bad = strchr(t, ',') != NULL;
        yaml_event_delete(&ev);
        if (bad)
            return cfg_scan_fail(sc, line, "a layer name has no ','");
        if (w < 0 || (size_t)w >= sizeof buf - len)
            return cfg_scan_fail(sc, line, "list too long");
        len += (size_t)w;
    }
    if (!(*out = strdup(buf)))
        return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: out of memory", sc->source);
    return PST_OK;
}

/* The keys of one layer entry (a mapping) into args[]. */
static int scan_layer_args(cfg_scan *sc, layer_arg *args, size_t *nargs)
{
    for (;;) {
        yaml_event_t kev;
        size_t line;
        int end;
        int rc = cfg_scan_key(sc, &kev, &line, &end);
        if (rc || end)
            return rc;
        char *key = strdup((const char *)kev.data.scalar.value);
        yaml_event_delete(&kev);
        if (!key)
            return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: out of memory", sc->source);
        size_t plen = cfg_path_push_key(sc, key, line);
        for (size_t i = 0; i < *nargs; i++)
            if (strcmp(args[i].key, key) == 0) {
                free(key);
                return cfg_scan_fail(sc, line, "given twice");
            }
        if (*nargs == CFG_LAYER_ARGS) {
            free(key);
            return cfg_scan_fail(sc, line, "too many keys");
        }
        layer_arg *a = &args[(*nargs)++];
        a->key = key;
        a->text = NULL; /* freed with the entry's args should the value fail to scan */
        a->line = line;
        yaml_event_t vev;
        if ((rc = cfg_scan_next(sc, &vev)))
            return rc;
        size_t vline = vev.start_mark.line + 1;
        if (vev.type == YAML_SCALAR_EVENT) {
            a->text = strdup((const char *)vev.data.scalar.value);
            yaml_event_delete(&vev);
            if (!a->text)
                return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: out of memory", sc->source);
        } else if (vev.type == YAML_SEQUENCE_START_EVENT && strcmp(key, "inputs") == 0) {
            yaml_event_delete(&vev);
            if ((rc = scan_name_list(sc, &a->text)))
                return rc;
        } else {
            yaml_event_type_t t = vev.type;
            yaml_event_delete(&vev);
            if (t == YAML_ALIAS_EVENT)
                return cfg_scan_fail(sc, vline, "aliases (*name) are not supported in job files");
            return cfg_scan_fail(sc, vline, "expected a single value, got a %s",
                                 t == YAML_SEQUENCE_START_EVENT ? "list" : "mapping");
        }
        sc->path[plen] = '\0';
    }
}

/* Builds a layer entry from its keys: the type first (default dense), then every
 * other key in the order written. */
static int scan_layer_build(cfg_scan *sc, layer_arg *args, size_t nargs, ml_layer_spec *L)
{
    char why[sizeof sc->err->msg];
    memset(L, 0, sizeof *L);
    const ml_layer_ops *ops = ml_registry_find(sc->reg, "dense");
    if (!ops)
        ops = ml_registry_at(sc->reg, 0);
    for (size_t i = 0; i < nargs; i++) {
        if (strcmp(args[i].key, "type") != 0)
            continue;
        if (!(ops = ml_registry_find(sc->reg, args[i].text))) {
            cfg_path_push(sc, "type");
            return cfg_scan_fail(sc, args[i].line, "%s",
                                 type_why(sc->reg, args[i].text, why, sizeof why));
        }
    }
    ml_layer_spec_init(L, ops);
    for (size_t i = 0; i < nargs; i++) {
        if (strcmp(args[i].key, "type") == 0)
            continue;
        int rc = cfg_layer_set_key(sc->reg, L, args[i].key, args[i].text, why, sizeof why);
        if (rc == 1) {
            char known[320];
            layer_key_list(ops, known, sizeof known);
            return pst_err_set(sc->err, PST_ERR_CONFIG,
                               "%s:%zu: unknown key '%s.%s' (known: "
                               "%s)",
                               sc->source, args[i].line, sc->path, args[i].key, known);
        }
        if (rc == -2)
            return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: out of memory", sc->source);
        if (rc) {
            cfg_path_push(sc, args[i].key);
            return cfg_scan_fail(sc, args[i].line, "%s", why);
        }
    }
    return PST_OK;
}

/* model.layers: a list of mappings whose keys depend on each entry's type. */
int cfg_scan_layers(cfg_scan *sc, yaml_event_t *ev)
{
    size_t line = ev->start_mark.line + 1;
    yaml_event_type_t type = ev->type;
    if (type != YAML_SEQUENCE_START_EVENT) {
        int rc;
        if (type == YAML_SCALAR_EVENT)
            rc = cfg_scan_fail(sc, line, "expected a list, got '%s'",
                               (const char *)ev->data.scalar.value);
        else if (type == YAML_ALIAS_EVENT)
            rc = cfg_scan_fail(sc, line, "aliases (*name) are not supported in job files");
        else
            rc = cfg_scan_fail(sc, line, "expected a list, got a mapping");
        yaml_event_delete(ev);
        return rc;
    }
    yaml_event_delete(ev);
    for (unsigned long i = 0;; i++) {
        yaml_event_t e;
        int rc = cfg_scan_next(sc, &e);
        if (rc)
            return rc;
        if (e.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&e);
            return PST_OK;
        }
        char comp[24];
        snprintf(comp, sizeof comp, "%lu", i);
        size_t plen = cfg_path_push(sc, comp);
        size_t eline = e.start_mark.line + 1;
        yaml_event_type_t et = e.type;
        const char *text = et == YAML_SCALAR_EVENT ? (const char *)e.data.scalar.value : "";
        if (et != YAML_MAPPING_START_EVENT) {
            if (et == YAML_ALIAS_EVENT)
                rc = cfg_scan_fail(sc, eline, "aliases (*name) are not supported in job files");
            else if (et == YAML_SCALAR_EVENT)
                rc = cfg_scan_fail(sc, eline, "expected a mapping of keys, got '%s'", text);
            else
                rc = cfg_scan_fail(sc, eline, "expected a mapping of keys, got a list");
            yaml_event_delete(&e);
            return rc;
        }
        yaml_event_delete(&e);
        if (sc->nlayers == sc->layers_cap) {
            unsigned cap = sc->layers_cap ? 2 * sc->layers_cap : 8;
            ml_layer_spec *p = realloc(sc->layers, cap * sizeof *p);
            if (!p)
                return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: out of memory", sc->source);
            sc->layers = p;
            sc->layers_cap = cap;
        }
        layer_arg args[CFG_LAYER_ARGS];
        size_t nargs = 0;
        rc = scan_layer_args(sc, args, &nargs);
        if (!rc) {
            ml_layer_spec *L = &sc->layers[sc->nlayers];
            rc = scan_layer_build(sc, args, nargs, L);
            if (!rc)
                sc->nlayers++;
            else
                ml_layer_spec_fini(L);
        }
        free_args(args, nargs);
        if (rc)
            return rc;
        sc->path[plen] = '\0';
    }
}

/* ---- model.gpt2: a configuration expanded into layers ---------------------------------- */

int cfg_gpt2_is_set(const cfg_gpt2 *g)
{
    return g->n_layer || g->n_head || g->n_embd || g->n_positions || g->vocab_size;
}

int cfg_gpt2_expand(cfg_job *job, pst_err *err)
{
    const cfg_gpt2 *g = &job->model.gpt2;
    ml_model_spec *spec = &job->model.spec;
    if (!cfg_gpt2_is_set(g))
        return PST_OK;
    /* categorical_crossentropy is the default: a file that leaves loss out reads so. */
    if (spec->loss != ML_LOSS_SEQ_CCE && spec->loss != ML_LOSS_CCE)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "model.loss: a model.gpt2 model's loss is sequence_crossentropy, "
                           "not %s",
                           ml_loss_name(spec->loss));
    ml_gpt2_config c = {.n_layer = g->n_layer,
                        .n_head = g->n_head,
                        .n_embd = g->n_embd,
                        .n_positions = g->n_positions,
                        .vocab_size = g->vocab_size,
                        .dropout = g->dropout,
                        .context = job->data.context};
    ml_model_spec s;
    pst_err why = {0};
    int rc = ml_gpt2_spec(&s, &c, &why);
    if (rc) {
        /* "gpt2: n_embd 64 is not divisible by n_head 3" names the section in full */
        const char *m = strncmp(why.msg, "gpt2: ", 6) == 0 ? why.msg + 6 : why.msg;
        return pst_err_set(err, rc, "model.gpt2: %s%s", m,
                           rc == PST_ERR_CONFIG && job->data.context > g->n_positions &&
                                   g->n_positions > 0
                               ? " (data.context is the window)"
                               : "");
    }
    s.init = spec->init;
    ml_model_spec_fini(spec);
    *spec = s;
    return PST_OK;
}

/* ---- model.lora: adapters written into the layers ------------------------------------ */

enum { LORA_ATTN = 1, LORA_MLP = 2 };

static int set_lora(ml_layer_spec *L, int rank, double alpha)
{
    int kr = ml_layer_key_find(L->ops, "lora_rank"), ka = ml_layer_key_find(L->ops, "lora_alpha");
    if (kr < 0 || ka < 0)
        return 0;
    L->val[kr].i = rank;
    L->val[ka].f = rank ? alpha : L->ops->keys[ka].def;
    return rank > 0;
}

int cfg_lora_apply(cfg_job *job, pst_err *err)
{
    const cfg_lora *lo = &job->model.lora;
    ml_model_spec *s = &job->model.spec;
    const int E = PST_ERR_CONFIG;
    if (lo->rank == 0 && lo->targets_count == 0)
        return PST_OK; /* no adapters: the layers' own keys stand */
    if (lo->rank < 1 || lo->rank > (1 << 16))
        return pst_err_set(err, E,
                           "model.lora.rank: must be 1 to 65536 (at most min(in, out) of "
                           "every adapted projection), got %d",
                           lo->rank);
    if (!(lo->alpha > 0.0) || !isfinite(lo->alpha))
        return pst_err_set(err, E, "model.lora.alpha: must be > 0, got %g", lo->alpha);
    unsigned targets = lo->targets_count ? 0 : LORA_ATTN | LORA_MLP;
    for (unsigned i = 0; i < lo->targets_count; i++) {
        const char *t = lo->targets[i] ? lo->targets[i] : "";
        if (strcmp(t, "attn") == 0)
            targets |= LORA_ATTN;
        else if (strcmp(t, "mlp") == 0)
            targets |= LORA_MLP;
        else
            return pst_err_set(err, E, "model.lora.targets: '%s' is not attn or mlp", t);
    }
    /* A GPT-2's projections are (C, 3C), (C, C), (C, 4C), (4C, C): min(in, out) = C. */
    if (cfg_gpt2_is_set(&job->model.gpt2) && lo->rank > job->model.gpt2.n_embd)
        return pst_err_set(err, E,
                           "model.lora.rank: %d is more than n_embd %d, the smallest side of "
                           "the projections (rank <= min(in, out))",
                           lo->rank, job->model.gpt2.n_embd);
    unsigned adapted = 0;
    for (unsigned l = 0; l < s->nlayers; l++) {
        ml_layer_spec *L = &s->layers[l];
        unsigned want = L->ops == &ml_layer_attention     ? LORA_ATTN
                        : L->ops == &ml_layer_token_dense ? LORA_MLP
                                                          : 0;
        adapted += set_lora(L, (targets & want) ? lo->rank : 0, lo->alpha);
        if (L->ops->has_params)
            L->trainable = 0; /* the base stays as loaded; adapters train regardless */
    }
    if (adapted == 0)
        return pst_err_set(err, E,
                           "model.lora.targets: the model has no %s layers to adapt (LoRA "
                           "needs a transformer's projections: model.gpt2)",
                           targets == LORA_ATTN  ? "attention (attn)"
                           : targets == LORA_MLP ? "token_dense (mlp)"
                                                 : "attention (attn) or token_dense (mlp)");
    return PST_OK;
}
