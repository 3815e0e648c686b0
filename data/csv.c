/* data/csv.c -- the CSV loader: quoted fields, a guessed or given header, integer or
 * string class labels (mapped to class ids in order of first appearance). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* getline, strdup; the build also passes it */
#endif
#include "data_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* ---- String class names -> class ids (open addressing, FNV-1a) ---------------------------- */

typedef struct {
    char **names; /* (count) in order of first appearance */
    int count, cap;
    int32_t *slot; /* (nslot) class id + 1, 0 = empty; kept at most half full */
    size_t nslot;  /* power of two */
} class_map;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static int class_map_rehash(class_map *m, size_t nslot)
{
    int32_t *slot = calloc(nslot, sizeof *slot);
    if (!slot)
        return -1;
    for (int c = 0; c < m->count; c++) {
        size_t i = (size_t)fnv1a(m->names[c]) & (nslot - 1);
        while (slot[i])
            i = (i + 1) & (nslot - 1);
        slot[i] = c + 1;
    }
    free(m->slot);
    m->slot = slot;
    m->nslot = nslot;
    return 0;
}

/* Returns the class of name, adding it when new; -1 when out of memory. */
static int class_map_get(class_map *m, const char *name)
{
    if ((size_t)m->count + 1 > m->nslot / 2) {
        if (m->nslot > SIZE_MAX / 4 || class_map_rehash(m, m->nslot ? m->nslot * 2 : 16))
            return -1;
    }
    size_t mask = m->nslot - 1, i = (size_t)fnv1a(name) & mask;
    for (; m->slot[i]; i = (i + 1) & mask) {
        if (strcmp(m->names[m->slot[i] - 1], name) == 0)
            return m->slot[i] - 1;
    }
    if (m->count == m->cap) {
        if (m->cap > INT_MAX / 2)
            return -1;
        int cap = m->cap ? m->cap * 2 : 8;
        char **names = realloc(m->names, (size_t)cap * sizeof *names);
        if (!names)
            return -1;
        m->names = names;
        m->cap = cap;
    }
    if (!(m->names[m->count] = strdup(name)))
        return -1;
    m->slot[i] = m->count + 1;
    return m->count++;
}

static void class_map_fini(class_map *m)
{
    ds_names_free(m->names, m->count);
    free(m->slot);
    memset(m, 0, sizeof *m);
}

/* ---- CSV ------------------------------------------------------------------------------- */

typedef struct {
    char **v; /* field starts, pointing into the line buffer */
    size_t n, cap;
} csv_fields;

static int is_blank(char c, char delim) { return is_space_tab(c) && c != delim; }

/* Splits line in place at delim. A field may be double-quoted (RFC 4180: the delimiter may
 * appear inside, "" stands for one quote); blanks around a field are dropped. Returns 0,
 * PST_ERR_NOMEM, or PST_ERR_DATA with *why saying what is malformed. Quoted fields do not
 * span lines: one line is one record. */
static int csv_split(char *line, char delim, csv_fields *f, const char **why)
{
    f->n = 0;
    char *p = line;
    for (;;) {
        if (f->n == f->cap) {
            if (f->cap >= INT_MAX / 2) {
                *why = "too many fields";
                return PST_ERR_DATA;
            }
            size_t cap = f->cap ? f->cap * 2 : 16;
            char **v = realloc(f->v, cap * sizeof *v);
            if (!v)
                return PST_ERR_NOMEM;
            f->v = v;
            f->cap = cap;
        }
        while (is_blank(*p, delim))
            p++;
        char *start = p, *end;
        if (*p == '"') {
            char *w = p++; /* unescape in place: the write point trails the read point */
            for (;;) {
                if (*p == '\0') {
                    *why = "unterminated quoted field";
                    return PST_ERR_DATA;
                }
                if (*p == '"') {
                    if (p[1] != '"') {
                        p++;
                        break;
                    }
                    p++;
                }
                *w++ = *p++;
            }
            while (is_blank(*p, delim))
                p++;
            if (*p != '\0' && *p != delim) {
                *why = "text after a closing quote";
                return PST_ERR_DATA;
            }
            end = w;
        } else {
            while (*p != '\0' && *p != delim)
                p++;
            end = p;
            while (end > start && is_blank(end[-1], delim))
                end--;
        }
        f->v[f->n++] = start;
        char sep = *p;
        *end = '\0'; /* end <= p: may overwrite the delimiter, which sep remembers */
        if (sep == '\0')
            return PST_OK;
        p++;
    }
}

typedef struct {
    const char *path;
    const ds_csv_options *opt;
    char delim;
    csv_fields fields;
    char **names; /* (ncols) header names, or NULL without a header */
    int ncols;    /* fields per line, fixed by the first line */
    int label_col;
    int d;          /* ncols - 1 */
    int64_t n;      /* rows so far */
    size_t cap;     /* rows allocated */
    float *x;       /* (cap, D) */
    int32_t *label; /* (cap) classification */
    float *target;  /* (cap) regression */
    int label_mode; /* classification: 0 undecided, 1 integer ids, 2 strings */
    int32_t max_label;
    class_map classes;
    int *field_of;   /* (ncols) categorical field of a column, -1: dense or label */
    int (*cross)[2]; /* (ncrosses) the two columns of each cross */
    ds_sparse *sp;   /* hashed columns, NULL without any */
    char *key;       /* hash input scratch */
    size_t key_cap;
} csv_state;

enum { CSV_LABEL_UNDECIDED = 0, CSV_LABEL_INT, CSV_LABEL_STRING };

/* "column 3 ('petal_width')", 1-based like the line numbers. */
static void csv_col_desc(const csv_state *st, int col, char *buf, size_t cap)
{
    if (st->names)
        snprintf(buf, cap, "column %d ('%.64s')", col + 1, st->names[col]);
    else
        snprintf(buf, cap, "column %d", col + 1);
}

static int csv_field_error(const csv_state *st, long long line, int col, const char *field,
                           num_status ns, pst_err *err)
{
    char where[96];
    csv_col_desc(st, col, where, sizeof where);
    if (ns == NUM_EMPTY)
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: %s: empty field", st->path, line, where);
    if (ns == NUM_NONFINITE)
        return pst_err_set(err, PST_ERR_NUMERIC, "%s:%lld: %s: '%.64s' is not a finite number",
                           st->path, line, where, field);
    return pst_err_set(err, PST_ERR_DATA, "%s:%lld: %s: '%.64s' is not a number", st->path, line,
                       where, field);
}

/* The column named name ("a" of "a x b" when len is its length), or -1. */
static int csv_col_by_name(const csv_state *st, const char *name, size_t len)
{
    for (int c = 0; st->names && c < st->ncols; c++)
        if (strlen(st->names[c]) == len && memcmp(st->names[c], name, len) == 0)
            return c;
    return -1;
}

/* data.categorical and data.crosses against the header: every column named must exist and
 * not be the label; categorical columns leave the dense features. */
static int csv_hashed_columns(csv_state *st, long long line, pst_err *err)
{
    const ds_csv_options *opt = st->opt;
    if (opt->ncategorical == 0 && opt->ncrosses == 0)
        return PST_OK;
    st->field_of = malloc((size_t)st->ncols * sizeof *st->field_of);
    st->cross = calloc((size_t)(opt->ncrosses ? opt->ncrosses : 1), sizeof *st->cross);
    st->sp = ds_sparse_part_new(1);
    if (!st->field_of || !st->cross || !st->sp)
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", st->path);
    for (int c = 0; c < st->ncols; c++)
        st->field_of[c] = -1;
    for (int k = 0; k < opt->ncategorical; k++) {
        const char *name = opt->categorical[k];
        int c = csv_col_by_name(st, name, strlen(name));
        if (c < 0)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s:%lld: categorical column '%.64s': no such column in the header",
                               st->path, line, name);
        if (c == st->label_col)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s:%lld: categorical column '%.64s' is the label column", st->path,
                               line, name);
        if (st->field_of[c] >= 0)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s:%lld: categorical column '%.64s' listed twice", st->path, line,
                               name);
        st->field_of[c] = k;
        st->d--;
    }
    for (int k = 0; k < opt->ncrosses; k++) {
        const char *x = opt->crosses[k], *sep = strstr(x, " x ");
        if (!sep)
            return pst_err_set(err, PST_ERR_ARG, "%s: cross '%.64s' is not 'a x b'", st->path, x);
        const char *b = sep + 3;
        int ca = csv_col_by_name(st, x, (size_t)(sep - x));
        int cb = csv_col_by_name(st, b, strlen(b));
        if (ca < 0 || cb < 0)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s:%lld: cross '%.64s': no column '%.*s' in the header", st->path,
                               line, x, ca < 0 ? (int)(sep - x) : (int)strlen(b), ca < 0 ? x : b);
        if (ca == st->label_col || cb == st->label_col)
            return pst_err_set(err, PST_ERR_DATA, "%s:%lld: cross '%.64s' uses the label column",
                               st->path, line, x);
        st->cross[k][0] = ca;
        st->cross[k][1] = cb;
    }
    return PST_OK;
}

/* Hashes "<a> 0x1F <va>" (b NULL) or "<a> 0x1F <va> 0x1E <b> 0x1F <vb>" into the row's
 * sparse part (sparse.h, "Hashed features"). */
static int csv_hash_push(csv_state *st, int a, int b, uint32_t field)
{
    const char *parts[4] = {st->names[a], st->fields.v[a], b >= 0 ? st->names[b] : NULL,
                            b >= 0 ? st->fields.v[b] : NULL};
    size_t need = 4;
    for (int i = 0; i < 4; i++)
        need += parts[i] ? strlen(parts[i]) : 0;
    if (need > st->key_cap) {
        char *k = realloc(st->key, need * 2);
        if (!k)
            return -1;
        st->key = k;
        st->key_cap = need * 2;
    }
    size_t len = 0;
    for (int i = 0; i < 4 && parts[i]; i++) {
        if (i)
            st->key[len++] = i == 2 ? '\x1e' : '\x1f';
        size_t l = strlen(parts[i]);
        memcpy(st->key + len, parts[i], l);
        len += l;
    }
    uint64_t id = ds_hash_id(st->key, len, st->opt->hash_seed, st->opt->hash_bits);
    return ds_sparse_push(st->sp, id, 1.0f, field);
}

/* The first non-blank line fixes the column count, decides whether it is a header (for
 * header = -1: yes when a field that must be numeric is not; a label name needs a header)
 * and resolves the label column. Returns with st->names set when the line was a header. */
static int csv_first_line(csv_state *st, long long line, pst_err *err)
{
    const ds_csv_options *opt = st->opt;
    int nf = (int)st->fields.n;
    int unlabelled = !opt->label_name && opt->label_index == DS_CSV_NO_LABEL;
    if (nf < 2 && !unlabelled) {
        /* A file of another separator reads as one field a line: name the likely one. */
        const char *f0 = st->fields.v[0];
        const char *hint = strchr(f0, ';')    ? " (the line has ';': set data.delimiter ';')"
                           : strchr(f0, '\t') ? " (the line has tabs: set data.delimiter to a "
                                                "tab, \"\\t\" in the job file)"
                           : strchr(f0, '|')  ? " (the line has '|': set data.delimiter '|')"
                                              : "";
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%lld: 1 field; need at least one feature and a label column%s",
                           st->path, line, hint);
    }
    st->ncols = nf;
    st->d = unlabelled ? nf : nf - 1;
    int lc = -1;
    if (!opt->label_name && !unlabelled) {
        lc = opt->label_index == -1 ? nf - 1 : opt->label_index;
        if (lc < 0 || lc >= nf)
            return pst_err_set(err, PST_ERR_ARG,
                               "%s:%lld: label_index %d out of range for %d columns", st->path,
                               line, opt->label_index, nf);
    }
    int hashed = opt->ncategorical > 0 || opt->ncrosses > 0;
    int header = opt->label_name || hashed ? 1 : opt->header;
    if (header == -1) {
        header = 0;
        for (int c = 0; c < nf && !header; c++) {
            /* A class column may hold strings; in regression every column is numeric. */
            if (c == lc && opt->task == DS_TASK_CLASSIFY)
                continue;
            float v;
            header = ds_parse_float(st->fields.v[c], &v) == NUM_BAD;
        }
    }
    if (header) {
        if (!(st->names = calloc((size_t)nf, sizeof *st->names)))
            return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", st->path);
        for (int c = 0; c < nf; c++) {
            if (!(st->names[c] = strdup(st->fields.v[c])))
                return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", st->path);
        }
        if (opt->label_name) {
            for (int c = 0; c < nf && lc < 0; c++) {
                if (strcmp(st->names[c], opt->label_name) == 0)
                    lc = c;
            }
            if (lc < 0)
                return pst_err_set(err, PST_ERR_ARG,
                                   "%s:%lld: no column named '%.64s' in the header", st->path, line,
                                   opt->label_name);
        }
    }
    st->label_col = lc;
    return csv_hashed_columns(st, line, err);
}

static int csv_label(csv_state *st, long long line, const char *field, pst_err *err)
{
    const ds_csv_options *opt = st->opt;
    int col = st->label_col;
    if (opt->task == DS_TASK_REGRESS) {
        num_status ns = ds_parse_float(field, &st->target[st->n]);
        return ns ? csv_field_error(st, line, col, field, ns, err) : PST_OK;
    }
    char where[96];
    int32_t v;
    num_status ns = ds_parse_int(field, &v);
    if (ns == NUM_EMPTY) {
        csv_col_desc(st, col, where, sizeof where);
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: %s: empty label", st->path, line, where);
    }
    /* The first data row decides: a numeric label means class ids, anything else names. */
    if (st->label_mode == CSV_LABEL_UNDECIDED) {
        float f;
        st->label_mode = ds_parse_float(field, &f) == NUM_OK ? CSV_LABEL_INT : CSV_LABEL_STRING;
    }
    if (st->label_mode == CSV_LABEL_STRING) {
        int c = class_map_get(&st->classes, field);
        if (c < 0)
            return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", st->path, line);
        if (opt->nclasses > 0 && c >= opt->nclasses)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s:%lld: label '%.64s' would be class %d, but nclasses is %d",
                               st->path, line, field, c, opt->nclasses);
        st->label[st->n] = c;
        return PST_OK;
    }
    if (ns != NUM_OK) {
        csv_col_desc(st, col, where, sizeof where);
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%lld: %s: label '%.64s' is not an integer "
                           "class id%s",
                           st->path, line, where, field,
                           st->n > 0 ? " (the first data row had a numeric label)" : "");
    }
    if (v < 0 || (opt->nclasses > 0 && v >= opt->nclasses) || v == INT32_MAX) {
        if (opt->nclasses > 0)
            return pst_err_set(err, PST_ERR_DATA, "%s:%lld: label %d out of range [0, %d)",
                               st->path, line, (int)v, opt->nclasses);
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: label %d out of range [0, %d)", st->path,
                           line, (int)v, INT32_MAX);
    }
    st->max_label = v > st->max_label ? v : st->max_label;
    st->label[st->n] = v;
    return PST_OK;
}

static int csv_row(csv_state *st, long long line, pst_err *err)
{
    if ((size_t)st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 256;
        float *x = ds_realloc_rows(st->x, cap, (size_t)st->d * sizeof *x);
        if (!x)
            return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", st->path, line);
        st->x = x;
        if (st->opt->task == DS_TASK_CLASSIFY) {
            int32_t *l = ds_realloc_rows(st->label, cap, sizeof *l);
            if (!l)
                return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", st->path, line);
            st->label = l;
        } else {
            float *t = ds_realloc_rows(st->target, cap, sizeof *t);
            if (!t)
                return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", st->path, line);
            st->target = t;
        }
        st->cap = cap;
    }
    float *xr = st->x + (size_t)st->n * (size_t)st->d;
    if (st->label_col < 0) { /* no label column: a placeholder the caller ignores */
        if (st->label)
            st->label[st->n] = 0;
        else
            st->target[st->n] = 0.0f;
    }
    for (int c = 0, j = 0; c < st->ncols; c++) {
        const char *field = st->fields.v[c];
        if (c == st->label_col) {
            int rc = csv_label(st, line, field, err);
            if (rc)
                return rc;
            continue;
        }
        if (st->field_of && st->field_of[c] >= 0) {
            if (csv_hash_push(st, c, -1, (uint32_t)st->field_of[c]))
                return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", st->path, line);
            continue;
        }
        num_status ns = ds_parse_float(field, &xr[j++]);
        if (ns)
            return csv_field_error(st, line, c, field, ns, err);
    }
    for (int k = 0; k < st->opt->ncrosses; k++)
        if (csv_hash_push(st, st->cross[k][0], st->cross[k][1],
                          (uint32_t)(st->opt->ncategorical + k)))
            return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", st->path, line);
    if (st->sp && ds_sparse_end_row(st->sp))
        return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", st->path, line);
    st->n++;
    return PST_OK;
}

/* Options that no file can satisfy, reported before the file is opened. */
static int csv_check_options(const char *path, const ds_csv_options *opt, char delim, pst_err *err)
{
    if (delim == '"' || delim == '\n' || delim == '\r' || opt->header < -1 || opt->header > 1 ||
        (opt->task != DS_TASK_CLASSIFY && opt->task != DS_TASK_REGRESS) ||
        (!opt->label_name && opt->label_index < DS_CSV_NO_LABEL) || opt->nclasses < 0)
        return pst_err_set(err, PST_ERR_ARG,
                           "%s: bad CSV options (delimiter, header, task, "
                           "label or nclasses)",
                           path);
    if (opt->label_name && opt->header == 0)
        return pst_err_set(err, PST_ERR_ARG, "%s: label column '%.64s' by name needs a header line",
                           path, opt->label_name);
    if ((opt->ncategorical > 0 || opt->ncrosses > 0) && opt->header == 0)
        return pst_err_set(err, PST_ERR_ARG,
                           "%s: categorical columns and crosses are named by a header line", path);
    if (opt->ncategorical < 0 || opt->ncrosses < 0 || opt->hash_bits < 0 || opt->hash_bits > 63 ||
        (opt->ncategorical && !opt->categorical) || (opt->ncrosses && !opt->crosses))
        return pst_err_set(err, PST_ERR_ARG,
                           "%s: bad CSV options (categorical, crosses, hash_bits)", path);
    return PST_OK;
}

/* Reads every line of f into st: the first non-blank one through csv_first_line, then one
 * row per non-blank line. */
static int csv_read(csv_state *st, FILE *f, pst_err *err)
{
    const char *path = st->path;
    char *buf = NULL;
    size_t bufcap = 0;
    long long line = 0;
    int seen_first = 0;
    int rc = PST_OK;
    for (;;) {
        errno = 0;
        ssize_t len = getline(&buf, &bufcap, f);
        if (len < 0) {
            if (ferror(f))
                rc = pst_err_set(err, errno == ENOMEM ? PST_ERR_NOMEM : PST_ERR_IO, "%s:%lld: %s",
                                 path, line + 1, strerror(errno));
            break;
        }
        line++;
        if (memchr(buf, '\0', (size_t)len)) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s:%lld: NUL byte (not a text file?)", path, line);
            break;
        }
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        char *s = buf;
        if (line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
            s += 3; /* UTF-8 byte order mark, as spreadsheet programs write it */
        const char *p = s;
        while (is_space_tab(*p))
            p++;
        if (*p == '\0')
            continue;
        const char *why = NULL;
        if ((rc = csv_split(s, st->delim, &st->fields, &why))) {
            if (rc == PST_ERR_NOMEM)
                pst_err_set(err, rc, "%s:%lld: out of memory", path, line);
            else
                pst_err_set(err, rc, "%s:%lld: %s", path, line, why);
            break;
        }
        if (!seen_first) {
            seen_first = 1;
            if ((rc = csv_first_line(st, line, err)))
                break;
            if (st->names)
                continue;
        }
        if (st->fields.n != (size_t)st->ncols) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s:%lld: %zu fields, expected %d", path, line,
                             st->fields.n, st->ncols);
            break;
        }
        if ((rc = csv_row(st, line, err)))
            break;
    }
    free(buf);
    if (rc == PST_OK && !seen_first)
        rc = pst_err_set(err, PST_ERR_DATA, "%s: empty file", path);
    else if (rc == PST_OK && st->n == 0)
        rc = pst_err_set(err, PST_ERR_DATA, "%s: no data rows", path);
    return rc;
}

/* The dataset of the rows read; it takes st's x, label and target (and the class names), so
 * they are NULL in st on success. K: nclasses, else the classes seen or the largest id + 1. */
static ds_dataset *csv_dataset(csv_state *st, pst_err *err)
{
    const ds_csv_options *opt = st->opt;
    int k = 0, tdim = 0;
    if (opt->task == DS_TASK_CLASSIFY) {
        if (st->label_mode == CSV_LABEL_STRING)
            k = opt->nclasses > 0 ? opt->nclasses : st->classes.count;
        else
            k = opt->nclasses > 0 ? opt->nclasses : st->max_label + 1;
        if (k < 1)
            k = 1; /* no label column: every placeholder label is 0 */
    } else {
        tdim = 1;
    }
    /* Give back the doubling slack; a failed shrink just keeps the larger block. */
    float *x = ds_realloc_rows(st->x, (size_t)st->n, (size_t)st->d * sizeof *x);
    st->x = x ? x : st->x;
    ds_dataset *ds =
        ds_adopt_d0(st->n, st->d, opt->task, k, tdim, st->x, st->label, st->target, err);
    if (!ds)
        return NULL;
    ds->sp = st->sp;
    st->sp = NULL;
    st->x = NULL;
    st->label = NULL;
    st->target = NULL;
    if (st->label_mode == CSV_LABEL_STRING) {
        /* Names for classes 0..k-1; classes beyond those seen (nclasses given) stay NULL. */
        char **names = realloc(st->classes.names, (size_t)k * sizeof *names);
        if (!names) {
            pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", st->path);
            ds_destroy(ds);
            return NULL;
        }
        for (int c = st->classes.count; c < k; c++)
            names[c] = NULL;
        ds->class_names = names;
        st->classes.names = NULL;
        st->classes.count = 0;
    }
    return ds;
}

ds_dataset *ds_load_csv(const char *path, const ds_csv_options *opt, pst_err *err)
{
    if (!path || !opt) {
        pst_err_set(err, PST_ERR_ARG, "ds_load_csv: NULL path or options");
        return NULL;
    }
    csv_state st = {.path = path, .opt = opt, .delim = opt->delimiter ? opt->delimiter : ','};
    if (csv_check_options(path, opt, st.delim, err))
        return NULL;
    FILE *f = ds_fopen_text(path, err); /* plain or gzipped */
    if (!f)
        return NULL;
    ds_dataset *ds = NULL;
    if (csv_read(&st, f, err) == PST_OK)
        ds = csv_dataset(&st, err);
    fclose(f);
    free(st.fields.v);
    ds_names_free(st.names, st.ncols);
    free(st.x);
    free(st.label);
    free(st.target);
    class_map_fini(&st.classes);
    free(st.field_of);
    free(st.cross);
    free(st.key);
    ds_sparse_destroy(st.sp);
    return ds;
}
