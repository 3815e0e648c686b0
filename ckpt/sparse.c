/* ckpt/sparse.c -- sparse tables to and from a safetensors file; see sparse.h for the
 * layout. */
#include "sparse.h"

#include "ckpt_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 31
#define TENSORS_PER_TABLE 6 /* keys, rows, 2 state, touched, filter */
#define META_PER_TABLE 6
#define TEXT 64

/* The optimizer buffers' names (the dense state files' names, ckpt/state.c). */
static const char *buf_name(opt_kind k, int b)
{
    switch (k) {
    case OPT_ADAGRAD: return "opt.sum_sq";
    case OPT_ADAM: return b == 0 ? "opt.m" : "opt.v";
    case OPT_FTRL: return b == 0 ? "opt.z" : "opt.n";
    default: return "opt.unknown"; /* spt_config_check admits no other kind with state */
    }
}

static const char *init_name(spt_init_kind k)
{
    return k == SPT_INIT_ZEROS ? "zeros" : k == SPT_INIT_UNIFORM ? "uniform" : "normal";
}

int ckpt_sparse_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return 0;
    return 1;
}

static int check_names(const char *path, const ckpt_sparse_table *tabs, int n, pst_err *err)
{
    for (int i = 0; i < n; i++) {
        if (!ckpt_sparse_name_ok(tabs[i].name))
            return ckpt_one_line(err, pst_err_set(err, PST_ERR_ARG,
                                                  "%s: table name '%.40s' is not 1 to %d of "
                                                  "[A-Za-z0-9_-]",
                                                  path, tabs[i].name, NAME_MAX_LEN));
        for (int j = 0; j < i; j++)
            if (strcmp(tabs[i].name, tabs[j].name) == 0)
                return pst_err_set(err, PST_ERR_ARG, "%s: table '%s' given twice", path,
                                   tabs[i].name);
    }
    return PST_OK;
}

/* ---- Writing --------------------------------------------------------------------------- */

/* The tensors and metadata of table i (export d) appended to ts / mp; names in text. */
static void describe(const char *name, const spt_table *t, const spt_dump *d, out_tensor *ts,
                     int *nt, meta_pair *mp, int *nm, char (*text)[TEXT], int *ntext)
{
    const spt_config *c = spt_config_of(t);
    const double r = (double)d->n, dim = (double)d->dim;
#define TNAME(fmt, ...) (snprintf(text[*ntext], TEXT, fmt, __VA_ARGS__), text[(*ntext)++])
    ts[(*nt)++] = (out_tensor){TNAME("%s.keys", name), 1, {r, 0}, d->keys, d->n, CKPT_U64};
    ts[(*nt)++] =
        (out_tensor){TNAME("%s.rows", name), 2, {r, dim}, d->rows, d->n * d->dim, CKPT_F32};
    for (int b = 0; b < d->nbuf; b++)
        ts[(*nt)++] = (out_tensor){TNAME("%s.%s", name, buf_name(c->opt.kind, b)),
                                   2,
                                   {r, dim},
                                   d->state[b],
                                   d->n * d->dim,
                                   CKPT_F32};
    ts[(*nt)++] = (out_tensor){TNAME("%s.touched", name), 1, {r, 0}, d->touched, d->n, CKPT_U32};
    if (d->filter)
        ts[(*nt)++] =
            (out_tensor){TNAME("%s.filter", name), 1,      {(double)d->filter_cells, 0}, d->filter,
                         d->filter_cells,          CKPT_U8};
#define META(K, fmt, ...)                                                                          \
    do {                                                                                           \
        mp[*nm].key = TNAME("sparse.%s." K, name);                                                 \
        mp[(*nm)++].val = TNAME(fmt, __VA_ARGS__);                                                 \
    } while (0)
    META("dim", "%d", d->dim);
    META("optimizer", "%s", opt_kind_name(c->opt.kind));
    META("step", "%" PRId64, d->step);
    META("rows", "%zu", d->n);
    META("init", "%s", init_name(c->init));
    META("seed", "%" PRIu64, c->seed);
#undef META
#undef TNAME
}

int ckpt_sparse_save(const char *path, const ckpt_sparse_table *tabs, int n, pst_err *err)
{
    int rc = check_names(path, tabs, n, err);
    if (rc)
        return rc;
    int m = n > 0 ? n : 1;
    spt_dump *dumps = calloc((size_t)m, sizeof *dumps);
    out_tensor *ts = calloc((size_t)m * TENSORS_PER_TABLE, sizeof *ts);
    meta_pair *mp = calloc((size_t)m * META_PER_TABLE, sizeof *mp);
    char(*text)[TEXT] = calloc((size_t)m * (TENSORS_PER_TABLE + 2 * META_PER_TABLE), TEXT);
    char *json = NULL;
    int nt = 0, nm = 0, ntext = 0;
    if (!dumps || !ts || !mp || !text) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        if ((rc = spt_dump_fill(tabs[i].table, &dumps[i], err))) {
            pst_err_prefix(err, "%s: table '%s'", path, tabs[i].name);
            goto cleanup;
        }
        describe(tabs[i].name, tabs[i].table, &dumps[i], ts, &nt, mp, &nm, text, &ntext);
    }
    if (!(json = ckpt_st_header_json(ts, nt, NULL, NULL, mp, nm))) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    rc = ckpt_st_write(path, json, ts, nt, err);
cleanup:
    cJSON_free(json);
    for (int i = 0; dumps && i < n; i++)
        spt_dump_fini(&dumps[i]);
    free(dumps), free(ts), free(mp), free(text);
    return rc;
}

/* ---- Reading --------------------------------------------------------------------------- */

/* One table's view of the file: an spt_dump whose arrays point into the file buffer, or
 * into aligned copies (owned[]) where the file's data is not aligned for the type. */
typedef struct {
    spt_dump d;
    void *owned[TENSORS_PER_TABLE];
    int nowned;
} view;

static void view_fini(view *v)
{
    for (int i = 0; i < v->nowned; i++)
        free(v->owned[i]);
    memset(v, 0, sizeof *v);
}

/* The tensor's data aligned for its type: in place, or copied. NULL when out of memory. */
static void *aligned_data(st_file *f, const st_tensor *t, view *v)
{
    const unsigned char *p = f->data + t->begin;
    size_t bytes = (size_t)(t->end - t->begin);
    if ((uintptr_t)p % ckpt_dtype_size(t->dtype) == 0)
        return (void *)(uintptr_t)p;
    void *c = malloc(bytes ? bytes : 1);
    if (c) {
        memcpy(c, p, bytes);
        v->owned[v->nowned++] = c;
    }
    return c;
}

/* The metadata value sparse.<name>.<key> as an int64 >= 0. */
static int meta_int(st_file *f, const char *name, const char *key, int64_t *out, pst_err *err)
{
    char k[TEXT];
    snprintf(k, sizeof k, "sparse.%s.%s", name, key);
    const char *s = ckpt_st_meta_str(f, k);
    if (!s)
        return pst_err_set(err, PST_ERR_DATA, "%s: table '%s': metadata %s is missing", f->path,
                           name, k);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!s[0] || *end || errno || x < 0 || s[0] == ' ' || s[0] == '+')
        return ckpt_one_line(err, pst_err_set(err, PST_ERR_DATA,
                                              "%s: table '%s': metadata %s: '%.40s' is not a "
                                              "count",
                                              f->path, name, k, s));
    *out = x;
    return PST_OK;
}

/* Claims the table's tensor <name>.<suffix> of dtype dt and shape (rows[, dim]) and points
 * *p at its data. */
static int claim(st_file *f, const char *name, const char *suffix, ckpt_dtype dt, int64_t rows,
                 int dim, view *v, void **p, pst_err *err)
{
    char tn[TEXT];
    snprintf(tn, sizeof tn, "%s.%s", name, suffix);
    const int64_t shape[2] = {rows, dim};
    st_tensor *t;
    int rc = ckpt_st_claim_as(f, tn, dt, shape, dim ? 2 : 1, &t, err);
    if (rc)
        return ckpt_one_line(err, rc);
    if (!(*p = aligned_data(f, t, v)))
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
    return PST_OK;
}

/* Checks table `name` of the file against t and fills v. */
static int read_table(st_file *f, const char *name, const spt_table *t, view *v, pst_err *err)
{
    const spt_config *c = spt_config_of(t);
    int64_t dim, step, rows;
    int rc;
    if ((rc = meta_int(f, name, "dim", &dim, err)) ||
        (rc = meta_int(f, name, "step", &step, err)) ||
        (rc = meta_int(f, name, "rows", &rows, err)))
        return rc;
    char k[TEXT];
    snprintf(k, sizeof k, "sparse.%s.optimizer", name);
    const char *opt = ckpt_st_meta_str(f, k);
    if (!opt)
        return pst_err_set(err, PST_ERR_DATA, "%s: table '%s': metadata %s is missing", f->path,
                           name, k);
    if (strcmp(opt, opt_kind_name(c->opt.kind)) != 0)
        return ckpt_one_line(err, pst_err_set(err, PST_ERR_DATA,
                                              "%s: table '%s': optimizer state of %.20s, but "
                                              "the table uses %s",
                                              f->path, name, opt, opt_kind_name(c->opt.kind)));
    if (dim != c->dim)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: table '%s': rows of dim %" PRId64 ", but the table has dim %d",
                           f->path, name, dim, c->dim);
    spt_dump *d = &v->d;
    d->n = (size_t)rows;
    d->dim = c->dim;
    d->nbuf = spt_nbuf(t);
    d->step = step;
    void *p;
    if ((rc = claim(f, name, "keys", CKPT_U64, rows, 0, v, &p, err)))
        return rc;
    d->keys = p;
    if ((rc = claim(f, name, "rows", CKPT_F32, rows, c->dim, v, &p, err)))
        return rc;
    d->rows = p;
    for (int b = 0; b < d->nbuf; b++) {
        if ((rc = claim(f, name, buf_name(c->opt.kind, b), CKPT_F32, rows, c->dim, v, &p, err)))
            return rc;
        d->state[b] = p;
    }
    if ((rc = claim(f, name, "touched", CKPT_U32, rows, 0, v, &p, err)))
        return rc;
    d->touched = p;
    char fn[TEXT];
    snprintf(fn, sizeof fn, "%s.filter", name);
    st_tensor *ft = ckpt_st_find_tensor(f, fn);
    if (ft) {
        if (ft->dtype != CKPT_U8 || ft->ndim != 1)
            return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': not a U8 vector", f->path, fn);
        ft->used = 1;
        d->filter = (uint8_t *)(uintptr_t)(f->data + ft->begin);
        d->filter_cells = (uint64_t)ft->shape[0];
    }
    return PST_OK;
}

int ckpt_sparse_load(const char *path, const ckpt_sparse_table *tabs, int n, pst_err *err)
{
    int rc = check_names(path, tabs, n, err);
    if (rc)
        return rc;
    st_file f;
    if ((rc = ckpt_st_open_any(&f, path, err)))
        return ckpt_one_line(err, rc);
    view *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    if (!v) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (int i = 0; i < n && !rc; i++)
        rc = read_table(&f, tabs[i].name, tabs[i].table, &v[i], err);
    /* The table's own checks (keys ascending, stamps, budget) for every table before any
     * changes. */
    for (int i = 0; i < n && !rc; i++)
        if ((rc = spt_dump_check(tabs[i].table, &v[i].d, err)))
            pst_err_prefix(err, "%s: table '%s'", path, tabs[i].name);
    for (int i = 0; i < n && !rc; i++)
        if ((rc = spt_restore(tabs[i].table, &v[i].d, err)))
            pst_err_prefix(err, "%s: table '%s'", path, tabs[i].name);
cleanup:
    for (int i = 0; v && i < n; i++)
        view_fini(&v[i]);
    free(v);
    ckpt_st_fini(&f);
    return ckpt_one_line(err, rc);
}
