/* data/textdir.c -- the hashing text featurizer: a folder of documents per class, each
 * document one sparse row of hashed word n-grams (see sparse.h for tokens and hashes). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* strdup, strtok_r; the build also passes it */
#endif
#include "data_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define TEXT_DOC_MAX (64L << 20) /* bytes of one document */

#define DS_NAME(v, name) name,
static const char *const value_names[] = {DS_TEXT_VALUE_NAMES(DS_NAME)};
static const char *const header_names[] = {DS_TEXT_HEADER_NAMES(DS_NAME)};

const char *ds_text_value_name(int v)
{
    return v >= 0 && v < DS_TEXT_VALUE_COUNT ? value_names[v] : NULL;
}

const char *ds_text_headers_name(int v)
{
    return v >= 0 && v < DS_TEXT_HEADERS_COUNT ? header_names[v] : NULL;
}

static int is_word(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* What a document's tokenising needs across documents: the n-gram text being hashed and
 * the (start, length) of the last ngrams tokens. */
typedef struct {
    const ds_text_options *o;
    char *gram; /* w1 ' ' w2 ... */
    size_t gram_cap;
    const char **tok; /* (ngrams) ring of the last tokens */
    size_t *tlen;
} featurizer;

/* Hashes every n-gram that ends with the token just added (k tokens seen so far). */
static int push_grams(featurizer *fz, ds_sparse *s, int64_t k, int64_t *count)
{
    int ng = fz->o->ngrams;
    size_t len = 0;
    for (int n = 1; n <= ng && n <= k; n++) {
        /* gram = tokens k-n .. k-1; built right to left by prepending would copy more, so
         * rebuild from the ring: n is small (1..4 in practice). */
        len = 0;
        for (int j = n - 1; j >= 0; j--) {
            int slot = (int)((k - 1 - j) % ng);
            size_t need = len + fz->tlen[slot] + 1;
            if (need > fz->gram_cap) {
                size_t cap = need * 2;
                char *g = realloc(fz->gram, cap);
                if (!g)
                    return -1;
                fz->gram = g;
                fz->gram_cap = cap;
            }
            if (len)
                fz->gram[len++] = ' ';
            memcpy(fz->gram + len, fz->tok[slot], fz->tlen[slot]);
            len += fz->tlen[slot];
        }
        uint64_t id = ds_hash_id(fz->gram, len, fz->o->seed, fz->o->hash_bits);
        if (ds_sparse_push(s, id, 1.0f, (uint32_t)(n - 1)))
            return -1;
        (*count)++;
    }
    return 0;
}

/* Tokenises text[0..len) (lower-cased in place) onto the row being built. */
static int tokenize(featurizer *fz, ds_sparse *s, char *text, size_t len, int64_t *k,
                    int64_t *count)
{
    int ng = fz->o->ngrams;
    for (size_t i = 0; i < len;) {
        if (!is_word((unsigned char)text[i])) {
            i++;
            continue;
        }
        size_t j = i;
        for (; j < len && is_word((unsigned char)text[j]); j++)
            if (text[j] >= 'A' && text[j] <= 'Z')
                text[j] = (char)(text[j] - 'A' + 'a');
        int slot = (int)(*k % ng);
        fz->tok[slot] = text + i;
        fz->tlen[slot] = j - i;
        (*k)++;
        if (push_grams(fz, s, *k, count))
            return -1;
        i = j;
    }
    return 0;
}

/* End of the header block: the offset just past the first empty line ("\n\n" or
 * "\n\r\n"), or len when there is none. */
static size_t body_start(const char *t, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (t[i] != '\n')
            continue;
        if (t[i + 1] == '\n')
            return i + 2;
        if (t[i + 1] == '\r' && i + 2 < len && t[i + 2] == '\n')
            return i + 3;
    }
    return len;
}

/* One document as the row being built; the file's text is modified (lower-cased). */
static int featurize(featurizer *fz, ds_sparse *s, char *text, size_t len, const char *path,
                     int64_t row, pst_err *err)
{
    int64_t k = 0, count = 0;
    int rc = 0;
    const ds_text_options *o = fz->o;
    if (o->headers == DS_TEXT_HEADERS_ALL) {
        rc = tokenize(fz, s, text, len, &k, &count);
    } else {
        size_t b = body_start(text, len);
        if (o->headers == DS_TEXT_HEADERS_SUBJECT) {
            /* The first "Subject:" line of the header block, without its continuation. */
            for (size_t i = 0; i < b;) {
                const char *nl = memchr(text + i, '\n', b - i);
                size_t end = nl ? (size_t)(nl - text) : b;
                if (end - i >= 8 && strncasecmp(text + i, "subject:", 8) == 0) {
                    rc = tokenize(fz, s, text + i + 8, end - i - 8, &k, &count);
                    break;
                }
                i = end + 1;
            }
        }
        if (!rc)
            rc = tokenize(fz, s, text + b, len - b, &k, &count);
    }
    if (rc)
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
    if (count == 0)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s (row %lld): no words in the document (an empty row; headers: %s)",
                           path, (long long)row + 1, ds_text_headers_name(o->headers));
    if (ds_sparse_merge_row(s))
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
    int64_t lo = s->row_ptr[s->n];
    for (int64_t e = lo; e < s->nnz; e++) {
        if (o->value == DS_TEXT_BINARY)
            s->vals[e] = 1.0f;
        else if (o->value == DS_TEXT_TF)
            s->vals[e] = (float)((double)s->vals[e] / (double)count);
    }
    if (ds_sparse_end_row(s))
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
    return PST_OK;
}

/* Reads path whole into *buf (grown as needed); *len its size. */
static int read_doc(const char *path, char **buf, size_t *cap, size_t *len, pst_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    int rc = PST_OK;
    *len = 0;
    for (;;) {
        if (*cap - *len < 65536) {
            if (*cap >= (size_t)TEXT_DOC_MAX) {
                rc = pst_err_set(err, PST_ERR_DATA, "%s: over %ld bytes, too large for a document",
                                 path, TEXT_DOC_MAX);
                break;
            }
            size_t ncap = *cap ? *cap * 2 : 1 << 17;
            char *b = realloc(*buf, ncap);
            if (!b) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            *buf = b;
            *cap = ncap;
        }
        errno = 0;
        size_t got = fread(*buf + *len, 1, *cap - *len, f);
        *len += got;
        if (ferror(f)) {
            rc = pst_err_set(err, PST_ERR_IO, "%s: cannot read: %s", path,
                             errno ? strerror(errno) : "read error");
            break;
        }
        if (got == 0 || feof(f))
            break;
    }
    fclose(f);
    return rc;
}

/* buf = a "/" b; -1 when it does not fit. */
static int join_path(char *buf, size_t cap, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la + 1 + lb + 1 > cap)
        return -1;
    memcpy(buf, a, la);
    buf[la] = '/';
    memcpy(buf + la + 1, b, lb + 1);
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static void strlist_fini(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int strlist_add(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s)))
        return -1;
    l->n++;
    return 0;
}

/* The names in folder dir, sorted: subfolders (dirs 1) or documents (dirs 0: regular files
 * ending in suffix). Dotfiles are left out. */
static int list_dir(const char *dir, int dirs, const char *suffix, strlist *out, pst_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot read the folder: %s", dir, strerror(errno));
    int rc = PST_OK;
    size_t sl = suffix ? strlen(suffix) : 0;
    char path[4096];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        size_t nl = strlen(e->d_name);
        if (!dirs && sl && (nl < sl || strcmp(e->d_name + nl - sl, suffix) != 0))
            continue;
        struct stat st;
        if (join_path(path, sizeof path, dir, e->d_name) || stat(path, &st) != 0 ||
            (dirs ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)))
            continue;
        if (strlist_add(out, e->d_name)) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
    }
    closedir(d);
    if (out->n)
        qsort(out->v, out->n, sizeof *out->v, name_cmp);
    return rc;
}

/* "name=dir dir ..." into the class name and its folders. */
static int parse_class(const char *spec, int c, char **name, strlist *dirs, pst_err *err)
{
    const char *eq = strchr(spec, '=');
    size_t nl = eq ? (size_t)(eq - spec) : 0;
    while (nl && spec[nl - 1] == ' ')
        nl--;
    const char *p = spec;
    while (*p == ' ')
        p++;
    if (!eq || p >= spec + nl)
        return pst_err_set(err, PST_ERR_ARG,
                           "text classes: entry %d '%.64s' is not 'name=folder folder ...'", c,
                           spec);
    if (!(*name = strndup(p, (size_t)(spec + nl - p))))
        return pst_err_set(err, PST_ERR_NOMEM, "text classes: out of memory");
    char *rest = strdup(eq + 1), *save = NULL;
    if (!rest)
        return pst_err_set(err, PST_ERR_NOMEM, "text classes: out of memory");
    int rc = PST_OK;
    for (char *t = strtok_r(rest, " \t,", &save); t && !rc; t = strtok_r(NULL, " \t,", &save))
        if (strlist_add(dirs, t))
            rc = pst_err_set(err, PST_ERR_NOMEM, "text classes: out of memory");
    free(rest);
    if (!rc && dirs->n == 0)
        rc = pst_err_set(err, PST_ERR_ARG, "text classes: entry %d '%.64s' names no folder", c,
                         spec);
    return rc;
}

/* Every document of one folder, as rows of class c. */
static int read_folder(featurizer *fz, ds_sparse *s, const char *dir, int32_t c, int32_t **labels,
                       size_t *lcap, char **buf, size_t *bcap, pst_err *err)
{
    strlist docs = {0};
    int rc = list_dir(dir, 0, fz->o->suffix, &docs, err);
    if (!rc && docs.n == 0)
        rc = pst_err_set(err, PST_ERR_DATA, "%s: no documents in the class folder%s%s%s", dir,
                         fz->o->suffix ? " (files ending in '" : "",
                         fz->o->suffix ? fz->o->suffix : "", fz->o->suffix ? "')" : "");
    char path[4096];
    for (size_t i = 0; !rc && i < docs.n; i++) {
        size_t len = 0;
        if (join_path(path, sizeof path, dir, docs.v[i])) {
            rc = pst_err_set(err, PST_ERR_ARG, "%s/%s: path too long", dir, docs.v[i]);
            break;
        }
        if ((rc = read_doc(path, buf, bcap, &len, err)))
            break;
        if ((size_t)s->n >= *lcap) {
            size_t cap = *lcap ? *lcap * 2 : 1024;
            int32_t *l = ds_realloc_rows(*labels, cap, sizeof *l);
            if (!l) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            *labels = l;
            *lcap = cap;
        }
        (*labels)[s->n] = c;
        rc = featurize(fz, s, *buf, len, path, s->n, err);
    }
    strlist_fini(&docs);
    return rc;
}

/* The class names and folders: o->classes, or every subfolder of root. */
static int class_table(const char *root, const ds_text_options *o, char ***names, strlist **dirs,
                       int *k, pst_err *err)
{
    strlist sub = {0};
    int rc = PST_OK;
    int n = o->nclasses;
    if (n == 0) {
        if ((rc = list_dir(root, 1, NULL, &sub, err)))
            goto cleanup;
        if (sub.n < 2) {
            rc = pst_err_set(err, PST_ERR_DATA,
                             "%s: %zu class folder(s); need one subfolder per class, at least 2",
                             root, sub.n);
            goto cleanup;
        }
        n = (int)sub.n;
    }
    *names = calloc((size_t)n, sizeof **names);
    *dirs = calloc((size_t)n, sizeof **dirs);
    *k = n;
    if (!*names || !*dirs) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", root);
        goto cleanup;
    }
    for (int c = 0; c < n && !rc; c++) {
        if (o->nclasses)
            rc = parse_class(o->classes[c], c, &(*names)[c], &(*dirs)[c], err);
        else if (!((*names)[c] = strdup(sub.v[c])) || strlist_add(&(*dirs)[c], sub.v[c]))
            rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", root);
    }
cleanup:
    strlist_fini(&sub);
    return rc;
}

ds_dataset *ds_load_text_dir(const char *root, const ds_text_options *o, pst_err *err)
{
    if (!root || !o || o->ngrams < 1 || o->hash_bits < 0 || o->hash_bits > 63 ||
        (unsigned)o->value >= DS_TEXT_VALUE_COUNT ||
        (unsigned)o->headers >= DS_TEXT_HEADERS_COUNT || o->nclasses < 0 || o->nclasses == 1) {
        pst_err_set(err, PST_ERR_ARG, "ds_load_text_dir: bad options");
        return NULL;
    }
    featurizer fz = {.o = o};
    char **names = NULL, *buf = NULL;
    strlist *dirs = NULL;
    int32_t *labels = NULL;
    size_t lcap = 0, bcap = 0;
    int k = 0;
    ds_dataset *ds = NULL;
    ds_sparse *s = ds_sparse_part_new(1);
    fz.tok = calloc((size_t)o->ngrams, sizeof *fz.tok);
    fz.tlen = calloc((size_t)o->ngrams, sizeof *fz.tlen);
    int rc = !s || !fz.tok || !fz.tlen ? pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", root)
                                       : class_table(root, o, &names, &dirs, &k, err);
    char dir[4096];
    for (int c = 0; c < k && !rc; c++)
        for (size_t i = 0; i < dirs[c].n && !rc; i++) {
            if (join_path(dir, sizeof dir, root, dirs[c].v[i])) {
                rc = pst_err_set(err, PST_ERR_ARG, "%s/%s: path too long", root, dirs[c].v[i]);
                break;
            }
            rc = read_folder(&fz, s, dir, c, &labels, &lcap, &buf, &bcap, err);
        }
    if (!rc) {
        float *x = malloc(1);
        if (!labels)
            labels = malloc(sizeof *labels);
        if (!x || !labels ||
            !(ds = ds_adopt_d0(s->n, 0, DS_TASK_CLASSIFY, k, 0, x, labels, NULL, err))) {
            free(x);
            rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", root);
        } else {
            labels = NULL;
            ds->sp = s;
            s = NULL;
            ds->class_names = names;
            names = NULL;
        }
    }
    free(labels);
    free(buf);
    free(fz.gram);
    free(fz.tok);
    free(fz.tlen);
    ds_sparse_destroy(s);
    ds_names_free(names, k);
    for (int c = 0; dirs && c < k; c++)
        strlist_fini(&dirs[c]);
    free(dirs);
    return ds;
}
