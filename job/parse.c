/* job/parse.c -- loading a job from text or a file: the schema-guided scan (pass 1),
 * libcyaml (pass 2), defaults (pass 3).
 *
 * Why a job is loaded in three passes:
 *   libcyaml 1.3 zero-fills optional fields the file leaves out and has no per-field
 *   default, so after cyaml_load_data "absent" and "written as 0" look alike, yet
 *   `optimizer: {name: adam}` must get adam's lr. Its scalar parsing is also lenient:
 *   "epochs: 5abc" loads as 5, "1.5" as 1, "shuffle: banana" as true.
 *   1. scan_*: walks the libyaml event stream alongside the very schema tables given to
 *      libcyaml. It rejects unknown and repeated keys, wrong shapes (a list where a number
 *      belongs) and every scalar that cfg_parse_scalar -- the parser cfg_override uses too --
 *      refuses, naming the key's own line; and it records which fields outside the layer
 *      list the file sets.
 *   2. cyaml_load_data builds the struct. Whatever cfg_parse_scalar accepts, libcyaml reads to
 *      the same value (both use strtoll base 0, strtof/strtod, exact enum names, the same
 *      false words), so the passes cannot disagree. Its log goes to a per-call buffer
 *      (cyaml_config.log_ctx) and becomes the error message should it still refuse.
 *   3. fill_defaults copies, for each field pass 1 did not see, the value of a template
 *      job whose optimizer part is opt_config_default(the kind now loaded).
 *   cfg_job_check then runs on the struct; when it refuses a key the file sets, one more
 *   scan finds that key's line for the message.
 * Aliases (*name) are refused: pass 1 would have to resolve them to know what they set.
 */
#include "job_internal.h"

#include "core/sptable.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CFG_FILE_MAX (16L << 20) /* bytes; a job file is a few hundred */

/* ---- Pass 1: schema-guided scan of the libyaml events ------------------------------- */

static void scan_fini(cfg_scan *sc)
{
    for (unsigned i = 0; i < sc->nlayers; i++)
        ml_layer_spec_fini(&sc->layers[i]);
    free(sc->layers);
    sc->layers = NULL;
    sc->nlayers = sc->layers_cap = 0;
}

static int field_was_set(const cfg_scan *sc, const cyaml_schema_field_t *f)
{
    for (size_t i = 0; i < sc->nset; i++)
        if (sc->set[i] == f)
            return 1;
    return 0;
}

/* "<source>:<line>: <path>: <msg>", the path left out at the top level. */
int cfg_scan_fail(cfg_scan *sc, size_t line, const char *fmt, ...)
{
    char msg[sizeof sc->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (sc->path[0])
        return pst_err_set(sc->err, PST_ERR_CONFIG, "%s:%zu: %s: %s", sc->source, line, sc->path,
                           msg);
    return pst_err_set(sc->err, PST_ERR_CONFIG, "%s:%zu: %s", sc->source, line, msg);
}

int cfg_scan_next(cfg_scan *sc, yaml_event_t *ev)
{
    if (yaml_parser_parse(&sc->parser, ev))
        return PST_OK;
    const yaml_parser_t *p = &sc->parser;
    return pst_err_set(sc->err, PST_ERR_CONFIG, "%s:%zu: YAML syntax error: %s%s%s", sc->source,
                       p->problem_mark.line + 1, p->problem ? p->problem : "unknown",
                       p->context ? " " : "", p->context ? p->context : "");
}

/* Appends ".comp" (or "comp" at the top) to sc->path; returns the old length to restore. */
size_t cfg_path_push(cfg_scan *sc, const char *comp)
{
    size_t len = strlen(sc->path);
    snprintf(sc->path + len, sizeof sc->path - len, "%s%s", len ? "." : "", comp);
    return len;
}

size_t cfg_path_push_key(cfg_scan *sc, const char *key, size_t line)
{
    size_t plen = cfg_path_push(sc, key);
    if (sc->find && !sc->found_line && strcmp(sc->path, sc->find) == 0)
        sc->found_line = line;
    return plen;
}

int cfg_scan_key(cfg_scan *sc, yaml_event_t *kev, size_t *line, int *end)
{
    *end = 0;
    int rc = cfg_scan_next(sc, kev);
    if (rc)
        return rc;
    *line = kev->start_mark.line + 1;
    if (kev->type == YAML_MAPPING_END_EVENT) {
        yaml_event_delete(kev);
        *end = 1;
        return PST_OK;
    }
    if (kev->type != YAML_SCALAR_EVENT) {
        yaml_event_delete(kev);
        return cfg_scan_fail(sc, *line, "a key must be a plain name, not a list or mapping");
    }
    return PST_OK;
}

static const char *shape_name(const cyaml_schema_value_t *v)
{
    switch (v->type) {
    case CYAML_MAPPING: return "a mapping of keys";
    case CYAML_SEQUENCE: return "a list";
    case CYAML_INT: return "an integer";
    case CYAML_UINT: return "a non-negative integer";
    case CYAML_FLOAT: return "a number";
    case CYAML_BOOL: return "a boolean";
    case CYAML_ENUM: return "a name";
    default: return "a string";
    }
}

static int scan_node(cfg_scan *sc, const cyaml_schema_value_t *v, yaml_event_t *ev);

static int scan_mapping(cfg_scan *sc, const cyaml_schema_field_t *fields)
{
    uint64_t seen = 0; /* bit i: fields[i] already given in this mapping */
    for (;;) {
        yaml_event_t kev;
        size_t line;
        int end;
        int rc = cfg_scan_key(sc, &kev, &line, &end);
        if (rc || end)
            return rc;
        const char *key = (const char *)kev.data.scalar.value;
        const cyaml_schema_field_t *f = cfg_field_find(fields, key);
        if (!f) {
            char known[320];
            cfg_field_list(fields, known, sizeof known);
            rc = pst_err_set(sc->err, PST_ERR_CONFIG, "%s:%zu: unknown key '%s%s%s' (known: %s)",
                             sc->source, line, sc->path, sc->path[0] ? "." : "", key, known);
            yaml_event_delete(&kev);
            return rc;
        }
        size_t idx = (size_t)(f - fields);
        assert(idx < 64);
        size_t plen = cfg_path_push_key(sc, key, line);
        yaml_event_delete(&kev);
        if (seen & (UINT64_C(1) << idx))
            return cfg_scan_fail(sc, line, "given twice");
        seen |= UINT64_C(1) << idx;
        assert(sc->nset < CFG_MAX_SET);
        sc->set[sc->nset++] = f;
        yaml_event_t vev;
        if ((rc = cfg_scan_next(sc, &vev)) ||
            (rc = f == FIELD_LAYERS ? cfg_scan_layers(sc, &vev) : scan_node(sc, &f->value, &vev)))
            return rc;
        sc->path[plen] = '\0';
    }
}

static int scan_list(cfg_scan *sc, const cyaml_schema_value_t *entry)
{
    for (unsigned long i = 0;; i++) {
        yaml_event_t ev;
        int rc = cfg_scan_next(sc, &ev);
        if (rc)
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return PST_OK;
        }
        char comp[24];
        snprintf(comp, sizeof comp, "%lu", i);
        size_t plen = cfg_path_push(sc, comp);
        if ((rc = scan_node(sc, entry, &ev)))
            return rc;
        sc->path[plen] = '\0';
    }
}

/* Checks the node that starts with *ev (consumed here) against v. Recursion follows the
 * schema, which is three levels deep, not the document: a mismatch stops the scan. */
static int scan_node(cfg_scan *sc, const cyaml_schema_value_t *v, yaml_event_t *ev)
{
    size_t line = ev->start_mark.line + 1;
    yaml_event_type_t type = ev->type;
    int rc = PST_OK;
    if (type == YAML_SCALAR_EVENT) {
        const char *text = (const char *)ev->data.scalar.value;
        if (v->type == CYAML_MAPPING || v->type == CYAML_SEQUENCE) {
            rc = cfg_scan_fail(sc, line, "expected %s, got '%s'", shape_name(v), text);
        } else {
            cfg_scalar val;
            char why[sizeof sc->err->msg];
            if (cfg_parse_scalar(v, text, &val, why, sizeof why))
                rc = cfg_scan_fail(sc, line, "%s", why);
        }
        yaml_event_delete(ev);
        return rc;
    }
    yaml_event_delete(ev);
    switch (type) {
    case YAML_MAPPING_START_EVENT:
        if (v->type != CYAML_MAPPING)
            return cfg_scan_fail(sc, line, "expected %s, got a mapping", shape_name(v));
        return scan_mapping(sc, v->mapping.fields);
    case YAML_SEQUENCE_START_EVENT:
        if (v->type != CYAML_SEQUENCE)
            return cfg_scan_fail(sc, line, "expected %s, got a list", shape_name(v));
        return scan_list(sc, v->sequence.entry);
    case YAML_ALIAS_EVENT:
        return cfg_scan_fail(sc, line, "aliases (*name) are not supported in job files");
    default: return cfg_scan_fail(sc, line, "unexpected YAML event %d", (int)type);
    }
}

/* Pass 1 over the whole stream. *empty: no document, or an empty one (all defaults). */
static int scan_job(cfg_scan *sc, const char *yaml, size_t len, int *empty)
{
    *empty = 0;
    if (!yaml_parser_initialize(&sc->parser))
        return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: cannot start the YAML parser", sc->source);
    yaml_parser_set_input_string(&sc->parser, (const unsigned char *)yaml, len);
    int rc;
    yaml_event_t ev;
    if ((rc = cfg_scan_next(sc, &ev)))
        goto cleanup;
    assert(ev.type == YAML_STREAM_START_EVENT);
    yaml_event_delete(&ev);
    if ((rc = cfg_scan_next(sc, &ev)))
        goto cleanup;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        *empty = 1;
        goto cleanup;
    }
    assert(ev.type == YAML_DOCUMENT_START_EVENT);
    yaml_event_delete(&ev);
    if ((rc = cfg_scan_next(sc, &ev)))
        goto cleanup;
    if (ev.type == YAML_SCALAR_EVENT && ev.data.scalar.length == 0) {
        yaml_event_delete(&ev);
        *empty = 1;
    } else if (ev.type == YAML_MAPPING_START_EVENT) {
        if ((rc = scan_node(sc, &cfg_job_value, &ev)))
            goto cleanup;
    } else {
        size_t line = ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        rc = cfg_scan_fail(sc, line,
                           "a job is a mapping of sections (name, seed, data, model, optimizer, "
                           "train, output)");
        goto cleanup;
    }
    if ((rc = cfg_scan_next(sc, &ev)))
        goto cleanup;
    assert(ev.type == YAML_DOCUMENT_END_EVENT);
    yaml_event_delete(&ev);
    if ((rc = cfg_scan_next(sc, &ev)))
        goto cleanup;
    if (ev.type != YAML_STREAM_END_EVENT)
        rc = cfg_scan_fail(sc, ev.start_mark.line + 1, "a job file holds one YAML document");
    yaml_event_delete(&ev);
cleanup:
    yaml_parser_delete(&sc->parser);
    /* A key or value quoted in a message may span lines (a folded plain scalar, a quoted
     * "\n"); the message stays one line. */
    if (rc && sc->err)
        for (char *c = sc->err->msg; *c; c++)
            if (*c == '\n' || *c == '\r')
                *c = ' ';
    return rc;
}

/* ---- Pass 2: libcyaml, its log captured -------------------------------------------- */

/* libcyaml logs an error as one problem line, then "Backtrace:" and one line per level,
 * innermost first: "  in mapping field 'lr' (line: 3, column: 7)",
 * "  in sequence entry '2' (line: ...)" (1-based), "  in mapping (line: ...)". */
typedef struct {
    char problem[256];
    char where[CFG_PATH_MAX]; /* dotted path rebuilt from the backtrace */
    unsigned line;            /* innermost line reported, 0 if none */
    int in_backtrace;
} cfg_cylog;

static void cylog_prepend(cfg_cylog *lg, const char *comp)
{
    size_t nc = strlen(comp), nw = strlen(lg->where);
    if (nc + 1 + nw >= sizeof lg->where)
        return; /* cannot happen for this schema's paths; keep the inner part */
    memmove(lg->where + nc + (nw ? 1 : 0), lg->where, nw + 1);
    memcpy(lg->where, comp, nc);
    if (nw)
        lg->where[nc] = '.';
}

static void cylog_capture(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    cfg_cylog *lg = ctx;
    if (level < CYAML_LOG_ERROR)
        return;
    char line[256];
    vsnprintf(line, sizeof line, fmt, args);
    line[strcspn(line, "\n")] = '\0';
    const char *m = line;
    if (strncmp(m, "Load: ", 6) == 0)
        m += 6;
    if (strcmp(m, "Backtrace:") == 0) {
        lg->in_backtrace = 1;
        return;
    }
    if (!lg->in_backtrace) {
        if (!lg->problem[0])
            snprintf(lg->problem, sizeof lg->problem, "%s", m);
        return;
    }
    char key[64];
    unsigned n;
    if (sscanf(m, " in mapping field '%63[^']'", key) == 1) {
        cylog_prepend(lg, key);
    } else if (sscanf(m, " in sequence entry '%u'", &n) == 1 && n > 0) {
        snprintf(key, sizeof key, "%u", n - 1);
        cylog_prepend(lg, key);
    }
    const char *at = strstr(m, "(line: ");
    unsigned l;
    if (!lg->line && at && sscanf(at, "(line: %u", &l) == 1)
        lg->line = l;
}

static cyaml_config_t cy_config(cfg_cylog *lg)
{
    cyaml_config_t c = {
        .log_fn = lg ? cylog_capture : NULL,
        .log_ctx = lg,
        .mem_fn = cyaml_mem,
        .mem_ctx = NULL,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_NO_ALIAS,
    };
    return c;
}

/* ---- Pass 3: defaults for what the file left out ------------------------------------ */

static int fill_fields(const cyaml_schema_field_t *fields, char *dst, const char *tmpl,
                       const cfg_scan *sc)
{
    for (const cyaml_schema_field_t *f = fields; f->key; f++) {
        char *d = dst + f->data_offset;
        const char *t = tmpl + f->data_offset;
        if (f->value.type == CYAML_MAPPING) {
            int rc = fill_fields(f->value.mapping.fields, d, t, sc);
            if (rc)
                return rc;
            continue;
        }
        /* Lists have no default but empty; layers get theirs as they are read. */
        if (f->value.type == CYAML_SEQUENCE || f->value.type == CYAML_IGNORE ||
            field_was_set(sc, f))
            continue;
        if (f->value.type == CYAML_STRING) {
            const char *s;
            memcpy(&s, t, sizeof s);
            if (s) {
                cfg_scalar val = {.s = s};
                if (cfg_store_scalar(&f->value, d, &val))
                    return PST_ERR_NOMEM;
            }
            continue;
        }
        memcpy(d, t, f->value.data_size);
    }
    return PST_OK;
}

char *cfg_default_dir(const char *name)
{
    size_t n = strlen("runs/") + strlen(name) + 1;
    char *s = cyaml_mem(NULL, NULL, n);
    if (s)
        snprintf(s, n, "runs/%s", name);
    return s;
}

void cfg_job_template(cfg_job *tmpl, opt_kind opt, opt_kind sparse_opt)
{
    memset(tmpl, 0, sizeof *tmpl);
    tmpl->name = (char *)"pstrain-job"; /* only read: fill_fields copies it */
    tmpl->seed = 42;
    tmpl->data.format = CFG_FMT_IDX;
    tmpl->data.task = DS_TASK_CLASSIFY;
    tmpl->data.label_index = -1;
    tmpl->data.header = CFG_HEADER_AUTO;
    tmpl->data.scale = DS_SCALE_NONE;
    tmpl->data.ngrams = 1;
    tmpl->model.spec.loss = ML_LOSS_CCE;
    tmpl->model.spec.init = ML_INIT_AUTO;
    opt_config_default(&tmpl->optimizer, opt);
    opt_config_default(&tmpl->sparse.opt, sparse_opt);
    tmpl->sparse.init = SPT_INIT_UNIFORM;
    tmpl->train.batch_size = 32;
    tmpl->train.epochs = 1;
    tmpl->train.threads = 1;
    tmpl->train.shuffle = 1;
    tmpl->train.log_every = 0;
    tmpl->train.accumulate = 1;
    tmpl->cluster.servers = 2;
    tmpl->cluster.workers = 2;
    tmpl->cluster.consistency = CFG_CONS_SSP;
    tmpl->cluster.staleness = 2;
    tmpl->cluster.timeout_s = 60;
    tmpl->cluster.heartbeat_ms = 500;
    tmpl->cluster.heartbeat_timeout_s = 10;
    tmpl->cluster.async_momentum = 1;
    tmpl->cluster.topk_ratio = 0.01f;
    tmpl->checkpoint.enabled = 1;
    tmpl->checkpoint.keep = 2;
}

static int fill_defaults(cfg_job *job, const cfg_scan *sc)
{
    cfg_job tmpl;
    cfg_job_template(&tmpl, job->optimizer.kind,
                     field_was_set(sc, FIELD_SPARSE_OPT) ? job->sparse.opt.kind : OPT_ADAGRAD);
    int rc = fill_fields(cfg_job_fields, (char *)job, (const char *)&tmpl, sc);
    if (rc)
        return rc;
    if (!field_was_set(sc, FIELD_OUTPUT_DIR) && job->name) {
        assert(!job->output.dir);
        if (!(job->output.dir = cfg_default_dir(job->name)))
            return PST_ERR_NOMEM;
    }
    return PST_OK;
}

/* The line of the key a cfg_job_check message starts with ("train.epochs: must be ..."),
 * found by scanning the (already valid) text again; 0 when the file does not set it. */
static size_t key_line(const ml_registry *reg, const char *yaml, size_t len, const char *msg)
{
    char key[CFG_PATH_MAX];
    size_t n = strcspn(msg, ": ");
    if (n == 0 || n >= sizeof key || msg[n] != ':')
        return 0;
    memcpy(key, msg, n);
    key[n] = '\0';
    pst_err scratch;
    cfg_scan sc;
    memset(&sc, 0, sizeof sc);
    sc.source = "";
    sc.err = &scratch;
    sc.reg = reg;
    sc.find = key;
    int empty;
    int rc = scan_job(&sc, yaml, len, &empty);
    scan_fini(&sc);
    return rc == PST_OK ? sc.found_line : 0;
}

/* ---- Load / free ------------------------------------------------------------------- */

void cfg_job_free(cfg_job *job)
{
    if (!job)
        return;
    ml_model_spec_fini(&job->model.spec);
    cyaml_config_t c = cy_config(NULL);
    cyaml_free(&c, &cfg_job_value, job, 0);
}

int cfg_job_load_string(cfg_job **out, const char *yaml, size_t len, const char *source,
                        pst_err *err)
{
    return cfg_job_load_string_reg(out, NULL, yaml, len, source, err);
}

int cfg_job_load_string_reg(cfg_job **out, const ml_registry *reg, const char *yaml, size_t len,
                            const char *source, pst_err *err)
{
    assert(out && yaml && source);
    *out = NULL;
    cfg_job *job = NULL;
    cfg_scan sc;
    memset(&sc, 0, sizeof sc);
    sc.source = source;
    sc.err = err;
    sc.reg = reg ? reg : ml_registry_builtin();

    int empty;
    int rc = scan_job(&sc, yaml, len, &empty);
    if (rc)
        goto cleanup;

    if (!empty) {
        cfg_cylog lg;
        memset(&lg, 0, sizeof lg);
        cyaml_config_t c = cy_config(&lg);
        cyaml_err_t ce = cyaml_load_data((const uint8_t *)yaml, len, &c, &cfg_job_value,
                                         (cyaml_data_t **)&job, NULL);
        if (ce != CYAML_OK) {
            job = NULL;
            rc = ce == CYAML_ERR_OOM ? PST_ERR_NOMEM : PST_ERR_CONFIG;
            const char *what = lg.problem[0] ? lg.problem : cyaml_strerror(ce);
            if (lg.line)
                pst_err_set(err, rc, "%s:%u: %s%s%s", source, lg.line, lg.where,
                            lg.where[0] ? ": " : "", what);
            else
                pst_err_set(err, rc, "%s: %s%s%s", source, lg.where, lg.where[0] ? ": " : "", what);
            goto cleanup;
        }
    }
    /* libcyaml returns no struct for a document that sets nothing. */
    if (!job) {
        if (!(job = cyaml_mem(NULL, NULL, sizeof *job))) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", source);
            goto cleanup;
        }
        memset(job, 0, sizeof *job);
    }
    /* The layers pass 1 read move into the job. */
    job->model.reg = sc.reg;
    job->model.spec.layers = sc.layers;
    job->model.spec.nlayers = sc.nlayers;
    sc.layers = NULL;
    sc.nlayers = sc.layers_cap = 0;
    if ((rc = fill_defaults(job, &sc))) {
        pst_err_set(err, rc, "%s: out of memory", source);
        goto cleanup;
    }
    if (cfg_gpt2_is_set(&job->model.gpt2) && job->model.spec.nlayers > 0) {
        rc = pst_err_set(err, PST_ERR_CONFIG,
                         "%s: model.gpt2 and model.layers: give one of them, not both", source);
        goto cleanup;
    }
    if ((rc = cfg_gpt2_expand(job, err))) {
        pst_err_prefix(err, "%s", source);
        goto cleanup;
    }
    if ((rc = cfg_job_check(job, err))) {
        size_t line = err ? key_line(sc.reg, yaml, len, err->msg) : 0;
        if (line)
            pst_err_prefix(err, "%s:%zu", source, line);
        else
            pst_err_prefix(err, "%s", source);
        goto cleanup;
    }
    *out = job;
    job = NULL;
cleanup:
    scan_fini(&sc);
    cfg_job_free(job);
    return rc;
}

/* Reads in chunks rather than by size, so pipes (/dev/stdin) work and a directory fails
 * with the read's own error (EISDIR). */
int cfg_job_load_file(cfg_job **out, const char *path, pst_err *err)
{
    return cfg_job_load_file_reg(out, NULL, path, err);
}

int cfg_job_load_file_reg(cfg_job **out, const ml_registry *reg, const char *path, pst_err *err)
{
    assert(out && path);
    *out = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = PST_OK;
    FILE *f = fopen(path, "rb");
    if (!f)
        return pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno));
    for (;;) {
        if (cap - len < 4096) {
            if (cap >= CFG_FILE_MAX) {
                rc = pst_err_set(err, PST_ERR_CONFIG,
                                 "%s: over %ld bytes, too large for a job "
                                 "file",
                                 path, CFG_FILE_MAX);
                goto cleanup;
            }
            size_t ncap = cap ? 2 * cap : 8192;
            char *nbuf = realloc(buf, ncap + 1);
            if (!nbuf) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
                goto cleanup;
            }
            buf = nbuf;
            cap = ncap;
        }
        errno = 0;
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (ferror(f)) {
            rc = pst_err_set(err, PST_ERR_IO, "%s: %s", path,
                             errno ? strerror(errno) : "read error");
            goto cleanup;
        }
        if (got == 0 || feof(f))
            break;
    }
    buf[len] = '\0';
    rc = cfg_job_load_string_reg(out, reg, buf, len, path, err);
cleanup:
    free(buf);
    fclose(f);
    return rc;
}

void cfg_checkpoint_dir(const cfg_job *job, char *buf, size_t cap)
{
    if (job->checkpoint.dir)
        snprintf(buf, cap, "%s", job->checkpoint.dir);
    else
        snprintf(buf, cap, "%s/checkpoints", job->output.dir);
}
