/* ckpt/state.c -- training-state files: named scalars and tensors (optimizer state, a server's
 * shard, clocks) in the safetensors container, for resuming. */
#include "ckpt_internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Training-state files ---------------------------------------------------------------- */

#define STATE_PREFIX "state."
#define STATE_KEY_MAX 48 /* a key or tensor name, NUL included */
#define STATE_VAL_MAX 72 /* an int64, a %.17g double or a short string, NUL included */

typedef struct {
    char name[STATE_KEY_MAX];
    const float *p; /* writing: borrowed from the caller; reading: inside f's buffer */
    size_t n;
} state_tensor;

typedef struct {
    char key[sizeof STATE_PREFIX + STATE_KEY_MAX]; /* "state.<key>" */
    char val[STATE_VAL_MAX];
} state_meta;

struct ckpt_state {
    char kind[STATE_VAL_MAX];
    state_tensor *t; /* writing */
    int nt, tcap;
    state_meta *m; /* writing */
    int nm, mcap;
    char *path; /* reading: the file, for messages */
    st_file f;  /* reading: the whole file, validated */
};

/* Keys and tensor names: 1 to 47 of [A-Za-z0-9_.-], so they need no JSON escapes and a
 * message quoting them stays one line. */
static int good_key(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n >= STATE_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

ckpt_state *ckpt_state_create(const char *kind, pst_err *err)
{
    ckpt_state *st = calloc(1, sizeof *st);
    if (!st) {
        pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
        return NULL;
    }
    if (ckpt_state_set_str(st, "kind", kind, err)) {
        ckpt_state_destroy(st);
        return NULL;
    }
    snprintf(st->kind, sizeof st->kind, "%s", kind);
    return st;
}

void ckpt_state_destroy(ckpt_state *st)
{
    if (!st)
        return;
    free(st->t);
    free(st->m);
    if (st->path)
        ckpt_st_fini(&st->f);
    free(st->path);
    free(st);
}

static int set_meta(ckpt_state *st, const char *key, const char *val, pst_err *err)
{
    assert(!st->path); /* a loaded state is read-only */
    if (!good_key(key))
        return pst_err_set(err, PST_ERR_ARG, "checkpoint: bad state key '%.60s'", key);
    if (strlen(val) >= STATE_VAL_MAX)
        return pst_err_set(err, PST_ERR_ARG, "checkpoint: state.%s: value too long", key);
    for (int i = 0; i < st->nm; i++)
        if (strcmp(st->m[i].key + strlen(STATE_PREFIX), key) == 0)
            return pst_err_set(err, PST_ERR_ARG, "checkpoint: state.%s set twice", key);
    if (st->nm == st->mcap) {
        int cap = st->mcap ? 2 * st->mcap : 16;
        state_meta *m = realloc(st->m, (size_t)cap * sizeof *m);
        if (!m)
            return pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
        st->m = m;
        st->mcap = cap;
    }
    state_meta *e = &st->m[st->nm++];
    snprintf(e->key, sizeof e->key, STATE_PREFIX "%s", key);
    snprintf(e->val, sizeof e->val, "%s", val);
    return PST_OK;
}

int ckpt_state_set_int(ckpt_state *st, const char *key, int64_t v, pst_err *err)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return set_meta(st, key, buf, err);
}

int ckpt_state_set_double(ckpt_state *st, const char *key, double v, pst_err *err)
{
    if (!isfinite(v))
        return pst_err_set(err, PST_ERR_NUMERIC, "checkpoint: state.%s is %g", key, v);
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v); /* 17 significant digits read back exactly */
    return set_meta(st, key, buf, err);
}

int ckpt_state_set_str(ckpt_state *st, const char *key, const char *v, pst_err *err)
{
    for (const char *c = v; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '"' || *c == '\\' || *c == 0x7f)
            return pst_err_set(err, PST_ERR_ARG, "checkpoint: state.%s: value needs escapes", key);
    return set_meta(st, key, v, err);
}

int ckpt_state_add_tensor(ckpt_state *st, const char *name, const float *p, size_t n, pst_err *err)
{
    assert(!st->path);
    if (!good_key(name) || strncmp(name, "crc32.", 6) == 0)
        return pst_err_set(err, PST_ERR_ARG, "checkpoint: bad tensor name '%.60s'", name);
    if (n == 0 || !p)
        return pst_err_set(err, PST_ERR_ARG, "checkpoint: tensor '%s' is empty", name);
    for (int i = 0; i < st->nt; i++)
        if (strcmp(st->t[i].name, name) == 0)
            return pst_err_set(err, PST_ERR_ARG, "checkpoint: tensor '%s' added twice", name);
    if (st->nt == st->tcap) {
        int cap = st->tcap ? 2 * st->tcap : 8;
        state_tensor *t = realloc(st->t, (size_t)cap * sizeof *t);
        if (!t)
            return pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
        st->t = t;
        st->tcap = cap;
    }
    state_tensor *t = &st->t[st->nt++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->p = p;
    t->n = n;
    return PST_OK;
}

/* The optimizer's buffers by what they hold (see optim.h for the formulas). */
static int opt_buf_names(opt_kind k, const char *names[2])
{
    switch (k) {
    case OPT_SGD: return 0;
    case OPT_MOMENTUM:
    case OPT_NESTEROV: names[0] = "opt.velocity"; return 1;
    case OPT_ADAGRAD: names[0] = "opt.sum_sq"; return 1;
    case OPT_RMSPROP: names[0] = "opt.mean_sq"; return 1;
    case OPT_ADAM:
    case OPT_ADAMW:
        names[0] = "opt.m";
        names[1] = "opt.v";
        return 2;
    case OPT_FTRL:
        names[0] = "opt.z";
        names[1] = "opt.n";
        return 2;
    }
    return 0;
}

int ckpt_state_add_opt(ckpt_state *st, opt_kind kind, opt_state *os, pst_err *err)
{
    const char *names[2];
    int nb = opt_buf_names(kind, names);
    assert(nb == opt_state_nbuf(os));
    int rc = ckpt_state_set_str(st, "opt.kind", opt_kind_name(kind), err);
    if (!rc)
        rc = ckpt_state_set_int(st, "opt.t", opt_state_step(os), err);
    for (int i = 0; i < nb && !rc; i++)
        rc = ckpt_state_add_tensor(st, names[i], opt_state_buf(os, i), opt_state_len(os), err);
    return rc;
}

int ckpt_state_save(const ckpt_state *st, const char *path, pst_err *err)
{
    int rc = PST_OK;
    out_tensor *ts = calloc((size_t)(st->nt ? st->nt : 1), sizeof *ts);
    meta_pair *mp = calloc((size_t)(st->nm ? st->nm : 1), sizeof *mp);
    char *json = NULL;
    if (!ts || !mp)
        goto nomem;
    for (int i = 0; i < st->nt; i++) {
        const state_tensor *t = &st->t[i];
        int64_t bad = ckpt_first_nonfinite(t->p, t->n);
        if (bad >= 0) {
            rc = pst_err_set(err, PST_ERR_NUMERIC,
                             "%s: not written: tensor '%s' element %" PRId64 " is %g", path,
                             t->name, bad, (double)t->p[bad]);
            goto cleanup;
        }
        ts[i] = (out_tensor){t->name, 1, {(double)t->n, 0}, t->p, t->n, CKPT_F32};
    }
    for (int i = 0; i < st->nm; i++)
        mp[i] = (meta_pair){st->m[i].key, st->m[i].val};
    if (!(json = ckpt_st_header_json(ts, st->nt, NULL, NULL, mp, st->nm)))
        goto nomem;
    rc = ckpt_st_write(path, json, ts, st->nt, err);
    goto cleanup;
nomem:
    rc = pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
cleanup:
    cJSON_free(json);
    free(ts);
    free(mp);
    return rc;
}

int ckpt_state_load(const char *path, const char *kind, ckpt_state **out, pst_err *err)
{
    *out = NULL;
    ckpt_state *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
    }
    int rc = ckpt_st_open(&st->f, st->path, err);
    if (rc) {
        free(st->path);
        free(st);
        return ckpt_one_line(err, rc);
    }
    const char *producer = ckpt_st_meta_str(&st->f, "producer");
    const char *k = ckpt_st_meta_str(&st->f, STATE_PREFIX "kind");
    if (!producer || strcmp(producer, "pstrain") != 0) {
        /* Only pstrain's files carry every checksum, and only those are trusted to resume. */
        rc = pst_err_set(err, PST_ERR_DATA, "%s: not written by pstrain", path);
        goto fail;
    }
    if (!k) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: not a training-state file (no state.kind; a "
                         "model checkpoint?)",
                         path);
        goto fail;
    }
    if (strcmp(k, kind) != 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: holds %.40s state, expected %s", path, k, kind);
        goto fail;
    }
    snprintf(st->kind, sizeof st->kind, "%s", k);
    /* Floats are read in place, so they must be 4-byte aligned: pstrain pads the header
     * to 8 bytes, but any length is legal. The JSON is parsed already (cJSON holds its own
     * copies), so the data may move down over the header's tail. */
    size_t mis = (size_t)((uintptr_t)st->f.data % sizeof(float));
    if (mis) {
        unsigned char *d = (unsigned char *)st->f.data - mis;
        memmove(d, st->f.data, st->f.data_len);
        st->f.data = d;
    }
    *out = st;
    return PST_OK;
fail:
    ckpt_state_destroy(st);
    return ckpt_one_line(err, rc);
}

const char *ckpt_state_kind(const ckpt_state *st) { return st->kind; }

int ckpt_state_get_str(const ckpt_state *st, const char *key, const char **v, pst_err *err)
{
    assert(st->path);
    char k[sizeof STATE_PREFIX + STATE_KEY_MAX];
    if (!good_key(key))
        return pst_err_set(err, PST_ERR_ARG, "checkpoint: bad state key '%.60s'", key);
    snprintf(k, sizeof k, STATE_PREFIX "%s", key);
    if (!(*v = ckpt_st_meta_str(&st->f, k)))
        return ckpt_one_line(err, pst_err_set(err, PST_ERR_DATA, "%s: %s is missing", st->path, k));
    return PST_OK;
}

int ckpt_state_get_int(const ckpt_state *st, const char *key, int64_t *v, pst_err *err)
{
    const char *s;
    int rc = ckpt_state_get_str(st, key, &s, err);
    if (rc)
        return rc;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!s[0] || *end || errno == ERANGE || s[0] == ' ')
        return ckpt_one_line(err, pst_err_set(err, PST_ERR_DATA,
                                              "%s: state.%s: '%.40s' is not "
                                              "an integer",
                                              st->path, key, s));
    *v = x;
    return PST_OK;
}

int ckpt_state_get_double(const ckpt_state *st, const char *key, double *v, pst_err *err)
{
    const char *s;
    int rc = ckpt_state_get_str(st, key, &s, err);
    if (rc)
        return rc;
    char *end;
    double x = strtod(s, &end);
    if (!s[0] || *end || !isfinite(x) || s[0] == ' ')
        return ckpt_one_line(err, pst_err_set(err, PST_ERR_DATA,
                                              "%s: state.%s: '%.40s' is not "
                                              "a finite number",
                                              st->path, key, s));
    *v = x;
    return PST_OK;
}

int ckpt_state_get_tensor(const ckpt_state *st, const char *name, size_t n, const float **p,
                          pst_err *err)
{
    assert(st->path);
    for (int i = 0; i < st->f.nt; i++) {
        const st_tensor *t = &st->f.t[i];
        if (strcmp(t->name, name) != 0)
            continue;
        size_t have = (size_t)(t->end - t->begin) / sizeof(float);
        if (have != n)
            return ckpt_one_line(err, pst_err_set(err, PST_ERR_DATA,
                                                  "%s: tensor '%s' holds "
                                                  "%zu floats, expected %zu",
                                                  st->path, name, have, n));
        *p = (const float *)(const void *)(st->f.data + t->begin);
        return PST_OK;
    }
    return ckpt_one_line(
        err, pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s' is missing", st->path, name));
}

int ckpt_state_check_opt(const ckpt_state *st, opt_kind kind, size_t n, pst_err *err)
{
    const char *k;
    int64_t t;
    int rc;
    if ((rc = ckpt_state_get_str(st, "opt.kind", &k, err)) ||
        (rc = ckpt_state_get_int(st, "opt.t", &t, err)))
        return rc;
    if (strcmp(k, opt_kind_name(kind)) != 0)
        return ckpt_one_line(err, pst_err_set(err, PST_ERR_DATA,
                                              "%s: optimizer state of %.20s, "
                                              "but the job uses %s",
                                              st->path, k, opt_kind_name(kind)));
    if (t < 0)
        return pst_err_set(err, PST_ERR_DATA, "%s: state.opt.t is negative", st->path);
    const char *names[2];
    int nb = opt_buf_names(kind, names);
    for (int i = 0; i < nb; i++) {
        const float *p;
        if ((rc = ckpt_state_get_tensor(st, names[i], n, &p, err)))
            return rc;
    }
    return PST_OK;
}

void ckpt_state_restore_opt(const ckpt_state *st, opt_kind kind, opt_state *os)
{
    const char *names[2];
    int nb = opt_buf_names(kind, names);
    int64_t t = 0;
    int rc = ckpt_state_get_int(st, "opt.t", &t, NULL);
    assert(rc == PST_OK && nb == opt_state_nbuf(os)); /* ckpt_state_check_opt passed */
    (void)rc;
    for (int i = 0; i < nb; i++) {
        const float *p = NULL;
        rc = ckpt_state_get_tensor(st, names[i], opt_state_len(os), &p, NULL);
        assert(rc == PST_OK);
        memcpy(opt_state_buf(os, i), p, opt_state_len(os) * sizeof(float));
    }
    opt_state_set_step(os, t);
}
