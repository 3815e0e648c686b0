/* core/ckpt.c -- see ckpt.h.
 *
 * Reading is three passes over a file held whole in memory: the container (header length,
 * JSON, tensor entries, offsets, checksums, finite values), then the metadata (the model
 * and data descriptions), then the match of tensors against the model's segments. Only
 * when all three pass are weights copied, so a bad file never half-loads a model. */
#include "ckpt.h"

#include "base/fs.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The host is little-endian (x86-64, arm64); safetensors is too, so bytes go out as is. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors needs little-endian");

#define CKPT_VERSION "1"
#define HEADER_MAX ((uint64_t)100 << 20) /* a header past this is not a checkpoint of ours */
#define MAX_DIMS 8
#define MAX_LAYERS 4096
#define NAME_MAX_LEN 39 /* a layer name; model.c keeps 39 chars + ".weight" in 48 */
#define HEADER_CRC_KEY "crc32.__header__"
#define CRC_PREFIX "crc32."
#define PREP_SHIFT "preprocess.shift"
#define PREP_MUL "preprocess.mul"

static const char *const act_names[] = {"linear", "relu", "sigmoid", "tanh", "softmax"};
static const char *const loss_names[] = {"categorical_crossentropy", "binary_crossentropy",
                                         "mse"};
static const char *const scale_names[] = {"none", "minmax", "standardize"};
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* CRC-32 (zlib's, the ISO-HDLC polynomial) of n bytes, in size_t-sized pieces. */
static uint32_t crc_of(const void *p, size_t n)
{
    return (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), p, n);
}

/* ---- Writing --------------------------------------------------------------------------- */

static int scale_index(ds_scale_kind k)
{
    return k == DS_SCALE_MINMAX ? 1 : k == DS_SCALE_STANDARDIZE ? 2 : 0;
}

/* The number of classes of m's output: K units, or 2 for a single unit (sigmoid). */
static int model_classes(const ml_model *m)
{
    int k = ml_model_out_dim(m);
    return k == 1 ? 2 : k;
}

/* Checks that spec is the layer list m was built from (shapes of every dense layer). */
static int spec_matches(const cfg_model *spec, ml_model *m, pst_err *err)
{
    int width = ml_model_in_dim(m), seg = 0;
    for (unsigned l = 0; l < spec->nlayers; l++) {
        const cfg_layer *L = &spec->layers[l];
        if (L->type != CFG_LAYER_DENSE)
            continue;
        if (seg + 1 >= ml_model_nsegments(m) || ml_model_segment(m, seg)->rows != L->units ||
            ml_model_segment(m, seg)->cols != width)
            return pst_err_set(err, PST_ERR_ARG,
                               "checkpoint: model.layers.%u does not match the model", l);
        width = L->units;
        seg += 2;
    }
    if (seg != ml_model_nsegments(m) || spec->loss != ml_model_loss_kind(m))
        return pst_err_set(err, PST_ERR_ARG, "checkpoint: the layer list does not match the model");
    return PST_OK;
}

static char *model_json(const cfg_model *spec, int in_dim)
{
    cJSON *root = cJSON_CreateObject(), *layers = NULL;
    char *s = NULL;
    if (!root || !cJSON_AddNumberToObject(root, "input_dim", in_dim) ||
        !(layers = cJSON_AddArrayToObject(root, "layers")))
        goto cleanup;
    for (unsigned l = 0; l < spec->nlayers; l++) {
        const cfg_layer *L = &spec->layers[l];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            goto cleanup;
        cJSON_AddItemToArray(layers, o);
        assert((int)L->activation >= 0 && (int)L->activation < NELEM(act_names));
        /* The name as model.c used it for the parameters: its first NAME_MAX_LEN bytes. */
        char name[NAME_MAX_LEN + 1];
        snprintf(name, sizeof name, "%s", L->name ? L->name : "");
        int dense = L->type == CFG_LAYER_DENSE;
        if (!cJSON_AddStringToObject(o, "type", dense ? "dense" : "activation") ||
            (dense && !cJSON_AddNumberToObject(o, "units", L->units)) ||
            !cJSON_AddStringToObject(o, "activation", act_names[L->activation]) ||
            !(name[0] ? cJSON_AddStringToObject(o, "name", name)
                      : cJSON_AddNullToObject(o, "name")))
            goto cleanup;
    }
    assert((int)spec->loss >= 0 && (int)spec->loss < NELEM(loss_names));
    if (!cJSON_AddStringToObject(root, "loss", loss_names[spec->loss]))
        goto cleanup;
    s = cJSON_PrintUnformatted(root);
cleanup:
    cJSON_Delete(root);
    return s;
}

static char *data_json(const ds_dataset *like, ml_model *m, const ds_scaler *scaler)
{
    int classify = ds_task_of(like) == DS_TASK_CLASSIFY;
    int k = classify ? model_classes(m) : 0, named = 0;
    for (int c = 0; classify && c < k; c++)
        named |= ds_class_name(like, c) != NULL;
    cJSON *root = cJSON_CreateObject();
    char *s = NULL;
    if (!root || !cJSON_AddStringToObject(root, "task", classify ? "classify" : "regress") ||
        !cJSON_AddNumberToObject(root, "num_classes", k))
        goto cleanup;
    if (named) {
        cJSON *names = cJSON_AddArrayToObject(root, "class_names");
        if (!names)
            goto cleanup;
        for (int c = 0; c < k; c++) {
            const char *nm = ds_class_name(like, c);
            cJSON *v = nm ? cJSON_CreateString(nm) : cJSON_CreateNull();
            if (!v)
                goto cleanup;
            cJSON_AddItemToArray(names, v);
        }
    } else if (!cJSON_AddNullToObject(root, "class_names")) {
        goto cleanup;
    }
    if (!cJSON_AddStringToObject(root, "scale",
                                 scale_names[scaler ? scale_index(scaler->kind) : 0]))
        goto cleanup;
    s = cJSON_PrintUnformatted(root);
cleanup:
    cJSON_Delete(root);
    return s;
}

/* One tensor to write: name, shape, bytes. */
typedef struct {
    const char *name;
    int ndim;
    double shape[2];
    const float *p;
    size_t n; /* floats */
} out_tensor;

static int add_tensor_entry(cJSON *root, const out_tensor *t, size_t off)
{
    cJSON *o = cJSON_AddObjectToObject(root, t->name);
    if (!o || !cJSON_AddStringToObject(o, "dtype", "F32"))
        return -1;
    cJSON *sh = cJSON_CreateDoubleArray(t->shape, t->ndim);
    double offs[2] = {(double)(off * sizeof(float)), (double)((off + t->n) * sizeof(float))};
    cJSON *of = cJSON_CreateDoubleArray(offs, 2);
    if (!sh || !of) {
        cJSON_Delete(sh);
        cJSON_Delete(of);
        return -1;
    }
    cJSON_AddItemToObject(o, "shape", sh);
    cJSON_AddItemToObject(o, "data_offsets", of);
    return 0;
}

/* One more metadata entry (state files' "state.*" keys). */
typedef struct {
    const char *key, *val;
} meta_pair;

/* The header JSON, its CRC field still "0000000000". extra[0..nextra) are added to the
 * metadata as they are. */
static char *header_json(const out_tensor *ts, int nt, const char *model, const char *data,
                         const meta_pair *extra, int nextra)
{
    cJSON *root = cJSON_CreateObject(), *md = NULL;
    char *s = NULL;
    if (!root || !(md = cJSON_AddObjectToObject(root, "__metadata__")) ||
        !cJSON_AddStringToObject(md, "format", "pt") ||
        !cJSON_AddStringToObject(md, "producer", "pstrain") ||
        !cJSON_AddStringToObject(md, "pstrain.version", CKPT_VERSION) ||
        (model && !cJSON_AddStringToObject(md, "pstrain.model", model)) ||
        (data && !cJSON_AddStringToObject(md, "pstrain.data", data)) ||
        !cJSON_AddStringToObject(md, HEADER_CRC_KEY, "0000000000"))
        goto cleanup;
    for (int i = 0; i < nextra; i++)
        if (!cJSON_AddStringToObject(md, extra[i].key, extra[i].val))
            goto cleanup;
    size_t off = 0;
    for (int i = 0; i < nt; i++) {
        char key[128], val[16];
        snprintf(key, sizeof key, CRC_PREFIX "%s", ts[i].name);
        snprintf(val, sizeof val, "%" PRIu32, crc_of(ts[i].p, ts[i].n * sizeof(float)));
        if (!cJSON_AddStringToObject(md, key, val) || add_tensor_entry(root, &ts[i], off))
            goto cleanup;
        off += ts[i].n;
    }
    s = cJSON_PrintUnformatted(root);
cleanup:
    cJSON_Delete(root);
    return s;
}

/* Where the 10 digits of "crc32.__header__":"DDDDDDDDDD" start in h[0..n), or NULL when
 * the field is not there exactly once in that spelling. */
static char *header_crc_digits(char *h, size_t n)
{
    static const char pat[] = "\"" HEADER_CRC_KEY "\":\"";
    const size_t pl = sizeof pat - 1;
    char *found = NULL;
    for (size_t i = 0; i + pl + 11 <= n; i++) {
        if (memcmp(h + i, pat, pl) != 0)
            continue;
        if (found)
            return NULL;
        found = h + i + pl;
    }
    if (!found || found[10] != '"')
        return NULL;
    for (int i = 0; i < 10; i++)
        if (found[i] < '0' || found[i] > '9')
            return NULL;
    return found;
}

/* CRC of the 8 length bytes and the header with its own CRC digits read as zeros. */
static uint32_t header_crc(const unsigned char *file, size_t hlen, size_t digits_at)
{
    uLong c = crc32_z(0L, Z_NULL, 0);
    c = crc32_z(c, file, 8 + digits_at);
    c = crc32_z(c, (const Bytef *)"0000000000", 10);
    c = crc32_z(c, file + 8 + digits_at + 10, hlen - digits_at - 10);
    return (uint32_t)c;
}

/* The first non-finite value of a float array, or -1. */
static int64_t first_nonfinite(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return (int64_t)i;
    return -1;
}

/* Writes the header json (its CRC field "0000000000") and the tensors ts[0..nt) to path
 * atomically: a temporary file in the same folder, fsync, rename, fsync of the folder. */
static int write_file(const char *path, const char *json, const out_tensor *ts, int nt,
                      pst_err *err)
{
    /* Pad the header with spaces so the tensor data starts 8-byte aligned (allowed by the
     * format, and lets readers map the floats in place). */
    size_t jlen = strlen(json);
    size_t padded = (jlen + 7) & ~(size_t)7;
    unsigned char *head = malloc(8 + padded);
    if (!head)
        return pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
    uint64_t hlen = padded;
    memcpy(head, &hlen, 8);
    memcpy(head + 8, json, jlen);
    memset(head + 8 + jlen, ' ', padded - jlen);
    char *digits = header_crc_digits((char *)head + 8, padded);
    assert(digits); /* header_json wrote it once; tensor names cannot spell it */
    char crc[11];
    snprintf(crc, sizeof crc, "%010" PRIu32,
             header_crc(head, padded, (size_t)(digits - (char *)head - 8)));
    memcpy(digits, crc, 10);

    fs_atomic out;
    int rc = fs_atomic_open(&out, path, 0644, err);
    if (rc) {
        free(head);
        return rc;
    }
    int bad = fwrite(head, 1, 8 + padded, out.f) != 8 + padded;
    free(head);
    for (int i = 0; i < nt && !bad; i++)
        bad = fwrite(ts[i].p, sizeof(float), ts[i].n, out.f) != ts[i].n;
    if (bad) {
        rc = pst_err_set(err, PST_ERR_IO, "%s: write failed: %s", out.tmp, strerror(errno));
        fs_atomic_abort(&out);
        return rc;
    }
    return fs_atomic_commit(&out, FS_REPLACE, err);
}

int ckpt_save_model(const char *path, ml_model *m, const cfg_model *spec,
                    const ds_dataset *like, const ds_scaler *scaler, pst_err *err)
{
    int rc = PST_OK;
    char *model = NULL, *data = NULL, *json = NULL;
    out_tensor *ts = NULL;
    if (spec && (rc = spec_matches(spec, m, err)))
        return rc;
    int with_scaler = scaler && scaler->kind != DS_SCALE_NONE;
    if (with_scaler && (scaler->d != ml_model_in_dim(m) || !scaler->shift || !scaler->mul))
        return pst_err_set(err, PST_ERR_ARG, "checkpoint: scaler of %d features for a model of %d",
                           scaler->d, ml_model_in_dim(m));
    int nseg = ml_model_nsegments(m), nt = nseg + (with_scaler ? 2 : 0);
    ts = calloc((size_t)nt, sizeof *ts);
    if (!ts)
        goto nomem;
    const float *params = ml_model_params(m);
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        for (int j = 0; j < i; j++)
            if (strcmp(ts[j].name, sg->name) == 0) {
                rc = pst_err_set(err, PST_ERR_ARG, "checkpoint: two parameters are named '%s' "
                                 "(rename a layer)", sg->name);
                goto cleanup;
            }
        ts[i] = (out_tensor){sg->name, sg->cols == 1 ? 1 : 2, {sg->rows, sg->cols},
                             params + sg->offset, sg->len};
    }
    if (with_scaler) {
        ts[nseg] = (out_tensor){PREP_SHIFT, 1, {scaler->d, 0}, scaler->shift, (size_t)scaler->d};
        ts[nseg + 1] = (out_tensor){PREP_MUL, 1, {scaler->d, 0}, scaler->mul, (size_t)scaler->d};
    }
    /* A file that could not be read back is worse than none: refuse non-finite values. */
    for (int i = 0; i < nt; i++) {
        int64_t bad = first_nonfinite(ts[i].p, ts[i].n);
        if (bad >= 0) {
            rc = pst_err_set(err, PST_ERR_NUMERIC, "%s: not written: tensor '%s' element %" PRId64
                             " is %g", path, ts[i].name, bad, (double)ts[i].p[bad]);
            goto cleanup;
        }
    }
    if ((spec && !(model = model_json(spec, ml_model_in_dim(m)))) ||
        (like && !(data = data_json(like, m, scaler))) ||
        !(json = header_json(ts, nt, model, data, NULL, 0)))
        goto nomem;
    rc = write_file(path, json, ts, nt, err);
    goto cleanup;

nomem:
    rc = pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
cleanup:
    cJSON_free(model);
    cJSON_free(data);
    cJSON_free(json);
    free(ts);
    return rc;
}

/* ---- Reading: the container ------------------------------------------------------------ */

typedef struct {
    const char *name;       /* borrowed from the parsed header */
    int ndim;
    int64_t shape[MAX_DIMS];
    uint64_t begin, end;    /* bytes of the data area */
    const char *crc;        /* value of "crc32.<name>", or NULL */
    int used;               /* claimed by a model segment or a preprocess slot */
} st_tensor;

typedef struct {
    const char *path;
    unsigned char *buf;     /* the whole file */
    size_t size;
    cJSON *root;
    const cJSON *meta;      /* "__metadata__" or NULL */
    const unsigned char *data;
    size_t data_len;
    st_tensor *t;
    int nt;
} st_file;

static void st_fini(st_file *f)
{
    cJSON_Delete(f->root);
    free(f->buf);
    free(f->t);
    memset(f, 0, sizeof *f);
}

static const char *meta_str(const st_file *f, const char *key)
{
    const cJSON *v = f->meta ? cJSON_GetObjectItemCaseSensitive(f->meta, key) : NULL;
    return v ? v->valuestring : NULL; /* every metadata value was checked to be a string */
}

static st_tensor *find_tensor(st_file *f, const char *name)
{
    for (int i = 0; i < f->nt; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    return NULL;
}

static int read_whole(st_file *f, pst_err *err)
{
    int fd = open(f->path, O_RDONLY);
    if (fd < 0)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot open: %s", f->path, strerror(errno));
    struct stat st;
    int rc = PST_OK;
    if (fstat(fd, &st) != 0) {
        rc = pst_err_set(err, PST_ERR_IO, "%s: cannot stat: %s", f->path, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = pst_err_set(err, PST_ERR_IO, "%s: not a regular file", f->path);
        goto cleanup;
    }
    f->size = (size_t)st.st_size;
    f->buf = malloc(f->size ? f->size : 1);
    if (!f->buf) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory for %zu bytes", f->path, f->size);
        goto cleanup;
    }
    size_t got = 0;
    while (got < f->size) {
        ssize_t r = read(fd, f->buf + got, f->size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = pst_err_set(err, PST_ERR_IO, "%s: read failed: %s", f->path, strerror(errno));
            goto cleanup;
        }
        if (r == 0)
            break; /* shrank while we read: judged as truncated below */
        got += (size_t)r;
    }
    f->size = got;
cleanup:
    close(fd);
    return rc;
}

/* 1 when v is a JSON number holding an integer in [0, max]. */
static int is_uint(const cJSON *v, double max)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= max &&
           v->valuedouble == floor(v->valuedouble);
}

/* Returns 0 and the value of a checksum written in decimal (1 to 10 digits), else -1. */
static int parse_crc(const char *s, uint32_t *out)
{
    size_t n = strlen(s);
    if (n < 1 || n > 10)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A duplicated key (JSON allows them, cJSON keeps both) would let two readers see two
 * different files; it is refused. */
static int check_unique_keys(const st_file *f, const cJSON *obj, const char *what, pst_err *err)
{
    int n = cJSON_GetArraySize(obj);
    if (n < 2)
        return PST_OK;
    const char **keys = malloc((size_t)n * sizeof *keys);
    if (!keys)
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
    int i = 0, rc = PST_OK;
    for (const cJSON *c = obj->child; c; c = c->next)
        keys[i++] = c->string;
    qsort(keys, (size_t)n, sizeof *keys, cmp_names);
    for (i = 1; i < n; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: %s: key '%s' appears twice", f->path, what,
                             keys[i]);
            break;
        }
    free(keys);
    return rc;
}

static int cmp_begin(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int parse_tensor(st_file *f, const cJSON *e, st_tensor *t, pst_err *err)
{
    const char *name = e->string;
    t->name = name;
    if (!cJSON_IsObject(e))
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': entry is not an object", f->path,
                           name);
    for (const cJSON *k = e->child; k; k = k->next)
        if (strcmp(k->string, "dtype") && strcmp(k->string, "shape") &&
            strcmp(k->string, "data_offsets"))
            return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': unknown key '%s'", f->path,
                               name, k->string);
    if (check_unique_keys(f, e, name, err))
        return err ? err->code : PST_ERR_DATA;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': no dtype", f->path, name);
    if (strcmp(dt->valuestring, "F32") != 0)
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': dtype %s, but pstrain reads F32 "
                           "only", f->path, name, dt->valuestring);
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > MAX_DIMS)
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': shape is not a list of at most "
                           "%d sizes", f->path, name, MAX_DIMS);
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 ||
        !is_uint(cJSON_GetArrayItem(of, 0), 9007199254740992.0) ||
        !is_uint(cJSON_GetArrayItem(of, 1), 9007199254740992.0))
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': data_offsets is not a pair of "
                           "byte offsets", f->path, name);
    t->begin = (uint64_t)cJSON_GetArrayItem(of, 0)->valuedouble;
    t->end = (uint64_t)cJSON_GetArrayItem(of, 1)->valuedouble;
    if (t->end < t->begin)
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': data_offsets [%" PRIu64 ", %"
                           PRIu64 ") end before they begin", f->path, name, t->begin, t->end);
    if (t->end > f->data_len)
        return pst_err_set(err, PST_ERR_DATA, "%s: truncated: tensor '%s' needs data bytes [%"
                           PRIu64 ", %" PRIu64 ") but the file holds %zu", f->path, name,
                           t->begin, t->end, f->data_len);
    /* elements * 4 == bytes; the product stops as soon as it exceeds bytes / 4, so a huge
     * shape cannot overflow it. */
    const uint64_t limit = (t->end - t->begin) / 4;
    uint64_t count = 1;
    int over = 0, zero = 0;
    t->ndim = cJSON_GetArraySize(sh);
    for (int d = 0; d < t->ndim; d++) {
        const cJSON *v = cJSON_GetArrayItem(sh, d);
        if (!is_uint(v, 9007199254740992.0))
            return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': shape[%d] is not a size",
                               f->path, name, d);
        t->shape[d] = (int64_t)v->valuedouble;
        zero |= t->shape[d] == 0;
    }
    for (int d = 0; d < t->ndim && !zero && !over; d++) {
        if (count > limit / (uint64_t)t->shape[d])
            over = 1;
        else
            count *= (uint64_t)t->shape[d];
    }
    if (zero)
        count = 0;
    if (over || count * 4 != t->end - t->begin)
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': its shape needs %s bytes than "
                           "the %" PRIu64 " its data_offsets give", f->path, name,
                           over || count > limit ? "more" : "fewer", t->end - t->begin);
    return PST_OK;
}

/* Checks the metadata object: string values, no duplicates, known pstrain.* keys,
 * checksum keys that name a tensor (tensors are parsed by then). */
static int check_meta(st_file *f, pst_err *err)
{
    if (!f->meta)
        return PST_OK;
    for (const cJSON *k = f->meta->child; k; k = k->next) {
        if (!cJSON_IsString(k))
            return pst_err_set(err, PST_ERR_DATA, "%s: __metadata__: value of '%s' is not a "
                               "string", f->path, k->string);
        if (strncmp(k->string, "pstrain.", 8) == 0 && strcmp(k->string, "pstrain.version") &&
            strcmp(k->string, "pstrain.model") && strcmp(k->string, "pstrain.data"))
            return pst_err_set(err, PST_ERR_DATA, "%s: __metadata__: unknown key '%s'", f->path,
                               k->string);
        if (strncmp(k->string, CRC_PREFIX, strlen(CRC_PREFIX)) == 0 &&
            strcmp(k->string, HEADER_CRC_KEY) != 0) {
            st_tensor *t = find_tensor(f, k->string + strlen(CRC_PREFIX));
            if (!t)
                return pst_err_set(err, PST_ERR_DATA, "%s: __metadata__: '%s' names no tensor",
                                   f->path, k->string);
            t->crc = k->valuestring;
        }
    }
    const char *ver = meta_str(f, "pstrain.version");
    if (ver && strcmp(ver, CKPT_VERSION) != 0)
        return pst_err_set(err, PST_ERR_DATA, "%s: checkpoint format version %s; this pstrain "
                           "reads version " CKPT_VERSION, f->path, ver);
    return PST_OK;
}

static int check_header_crc(st_file *f, size_t hlen, pst_err *err)
{
    const char *want = meta_str(f, HEADER_CRC_KEY);
    const char *producer = meta_str(f, "producer");
    if (!want) {
        if (producer && strcmp(producer, "pstrain") == 0)
            return pst_err_set(err, PST_ERR_DATA, "%s: corrupted: written by pstrain but the "
                               "header checksum " HEADER_CRC_KEY " is missing", f->path);
        return PST_OK;
    }
    char *digits = header_crc_digits((char *)f->buf + 8, hlen);
    if (!digits)
        return pst_err_set(err, PST_ERR_DATA, "%s: " HEADER_CRC_KEY " must appear once, as "
                           "10 decimal digits", f->path);
    uint32_t stored;
    char d[11];
    memcpy(d, digits, 10);
    d[10] = '\0';
    if (parse_crc(d, &stored) != 0)
        return pst_err_set(err, PST_ERR_DATA, "%s: " HEADER_CRC_KEY " '%s' is not a CRC-32",
                           f->path, d);
    uint32_t got = header_crc(f->buf, hlen, (size_t)(digits - (char *)f->buf - 8));
    if (got != stored)
        return pst_err_set(err, PST_ERR_DATA, "%s: corrupted: header checksum mismatch (stored "
                           "%" PRIu32 ", computed %" PRIu32 ")", f->path, stored, got);
    return PST_OK;
}

/* Element i of a tensor as "[r, c]" (2-D) or "[i]". */
static void index_text(const st_tensor *t, int64_t i, char *buf, size_t n)
{
    if (t->ndim == 2 && t->shape[1] > 0)
        snprintf(buf, n, "[%" PRId64 ", %" PRId64 "]", i / t->shape[1], i % t->shape[1]);
    else
        snprintf(buf, n, "[%" PRId64 "]", i);
}

static int st_open(st_file *f, const char *path, pst_err *err)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    st_tensor **order = NULL;
    int rc = read_whole(f, err);
    if (rc)
        goto fail;
    if (f->size == 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: empty file, not a safetensors checkpoint", path);
        goto fail;
    }
    if (f->size < 8) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: truncated: %zu bytes, less than the 8-byte "
                         "header length", path, f->size);
        goto fail;
    }
    uint64_t hlen;
    memcpy(&hlen, f->buf, 8);
    if (hlen > HEADER_MAX) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: header length %" PRIu64 " is over 100 MB: not "
                         "a safetensors file", path, hlen);
        goto fail;
    }
    if (hlen > f->size - 8) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: truncated: the header needs %" PRIu64 " bytes "
                         "but %zu follow its length", path, hlen, f->size - 8);
        goto fail;
    }
    const char *h = (const char *)f->buf + 8;
    if (hlen < 2 || h[0] != '{') {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: not a safetensors file: the header is not a "
                         "JSON object", path);
        goto fail;
    }
    for (uint64_t i = 0; i < hlen; i++)
        if ((unsigned char)h[i] < 0x20 && h[i] != '\t' && h[i] != '\n' && h[i] != '\r') {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: corrupted: control byte 0x%02x at header "
                             "byte %" PRIu64, path, (unsigned char)h[i], i);
            goto fail;
        }
    const char *end = NULL;
    f->root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
    if (!f->root || !cJSON_IsObject(f->root)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: the header is not a valid JSON object (error "
                         "near header byte %td)", path, end ? end - h : (ptrdiff_t)0);
        goto fail;
    }
    for (const char *p = end; p < h + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: corrupted: text after the header's JSON at "
                             "header byte %td", path, p - h);
            goto fail;
        }
    f->data = f->buf + 8 + hlen;
    f->data_len = f->size - 8 - (size_t)hlen;
    if ((rc = check_unique_keys(f, f->root, "header", err)))
        goto fail;
    f->meta = cJSON_GetObjectItemCaseSensitive(f->root, "__metadata__");
    if (f->meta && !cJSON_IsObject(f->meta)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: __metadata__ is not an object", path);
        goto fail;
    }
    if (f->meta) {
        if ((rc = check_unique_keys(f, f->meta, "__metadata__", err)))
            goto fail;
        for (const cJSON *k = f->meta->child; k; k = k->next)
            if (!cJSON_IsString(k)) {
                rc = pst_err_set(err, PST_ERR_DATA, "%s: __metadata__: value of '%s' is not a "
                                 "string", path, k->string);
                goto fail;
            }
    }
    /* The header checksum comes first: with it, a flipped byte anywhere in the header is
     * reported as corruption rather than as whatever the flip happened to change. */
    if ((rc = check_header_crc(f, (size_t)hlen, err)))
        goto fail;

    int n = cJSON_GetArraySize(f->root) - (f->meta ? 1 : 0);
    f->t = calloc((size_t)(n > 0 ? n : 1), sizeof *f->t);
    order = calloc((size_t)(n > 0 ? n : 1), sizeof *order);
    if (!f->t || !order) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (const cJSON *e = f->root->child; e; e = e->next) {
        if (e == f->meta)
            continue;
        if ((rc = parse_tensor(f, e, &f->t[f->nt], err)))
            goto fail;
        order[f->nt] = &f->t[f->nt];
        f->nt++;
    }
    /* The tensors must tile the data area exactly: no overlap, no gap, nothing after. */
    qsort(order, (size_t)f->nt, sizeof *order, cmp_begin);
    uint64_t at = 0;
    for (int i = 0; i < f->nt; i++) {
        if (order[i]->begin < at) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: tensors '%s' and '%s' overlap in the data",
                             path, order[i - 1]->name, order[i]->name);
            goto fail;
        }
        if (order[i]->begin > at) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: data bytes [%" PRIu64 ", %" PRIu64 ") "
                             "belong to no tensor", path, at, order[i]->begin);
            goto fail;
        }
        at = order[i]->end;
    }
    if (at != f->data_len) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: %" PRIu64 " bytes after the last tensor that "
                         "the header does not describe", path, (uint64_t)f->data_len - at);
        goto fail;
    }
    if ((rc = check_meta(f, err)))
        goto fail;
    const char *producer = meta_str(f, "producer");
    int need_crc = producer && strcmp(producer, "pstrain") == 0;
    for (int i = 0; i < f->nt; i++) {
        st_tensor *t = &f->t[i];
        const unsigned char *p = f->data + t->begin;
        if (!t->crc && need_crc) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: corrupted: tensor '%s' has no checksum "
                             CRC_PREFIX "%s", path, t->name, t->name);
            goto fail;
        }
        uint32_t want;
        if (t->crc && parse_crc(t->crc, &want) != 0) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: " CRC_PREFIX "%s: '%s' is not a decimal "
                             "CRC-32", path, t->name, t->crc);
            goto fail;
        }
        if (t->crc && crc_of(p, t->end - t->begin) != want) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: corrupted: tensor '%s' fails its checksum "
                             "(stored %" PRIu32 ", computed %" PRIu32 ")", path, t->name, want,
                             crc_of(p, t->end - t->begin));
            goto fail;
        }
        /* The data may be unaligned (any header length is legal), so values are copied. */
        size_t cnt = (size_t)(t->end - t->begin) / 4;
        for (size_t j = 0; j < cnt; j++) {
            float v;
            memcpy(&v, p + 4 * j, 4);
            if (!isfinite(v)) {
                char idx[64];
                index_text(t, (int64_t)j, idx, sizeof idx);
                rc = pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': element %s is %s", path,
                                 t->name, idx, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
                goto fail;
            }
        }
    }
    free(order);
    return PST_OK;

fail:
    free(order);
    st_fini(f);
    return rc;
}

/* ---- Reading: the metadata ------------------------------------------------------------- */

/* What pstrain.data says. */
typedef struct {
    int present;
    ds_task task;
    int nclasses;
    char **names;           /* (nclasses) entries may be NULL; NULL when none */
    ds_scale_kind scale;
} data_meta;

static void data_meta_fini(data_meta *dm)
{
    if (dm->names)
        for (int c = 0; c < dm->nclasses; c++)
            free(dm->names[c]);
    free(dm->names);
    memset(dm, 0, sizeof *dm);
}

static void spec_fini(cfg_model *spec)
{
    if (spec->layers)
        for (unsigned l = 0; l < spec->nlayers; l++)
            free(spec->layers[l].name);
    free(spec->layers);
    memset(spec, 0, sizeof *spec);
}

static int name_index(const char *s, const char *const *names, int n)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* Refuses keys of obj outside allowed[0..n), so a misspelled or corrupted key is not
 * silently dropped. */
static int only_keys(const st_file *f, const char *what, const cJSON *obj,
                     const char *const *allowed, int n, pst_err *err)
{
    for (const cJSON *k = obj->child; k; k = k->next)
        if (name_index(k->string, allowed, n) < 0)
            return pst_err_set(err, PST_ERR_DATA, "%s: %s: unknown key '%s'", f->path, what,
                               k->string);
    return check_unique_keys(f, obj, what, err);
}

static int parse_model_meta(const st_file *f, cfg_model *spec, int *in_dim, pst_err *err)
{
    static const char *const top_keys[] = {"input_dim", "layers", "loss"};
    static const char *const layer_keys[] = {"type", "units", "activation", "name"};
    const char *text = meta_str(f, "pstrain.model");
    memset(spec, 0, sizeof *spec);
    if (!text)
        return pst_err_set(err, PST_ERR_DATA, "%s: no pstrain.model in the metadata: the "
                           "architecture is unknown", f->path);
    int rc = PST_OK;
    cJSON *root = cJSON_Parse(text);
    if (!cJSON_IsObject(root)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model is not a JSON object", f->path);
        goto cleanup;
    }
    if ((rc = only_keys(f, "pstrain.model", root, top_keys, NELEM(top_keys), err)))
        goto cleanup;
    const cJSON *dim = cJSON_GetObjectItemCaseSensitive(root, "input_dim");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(root, "loss");
    if (!is_uint(dim, INT32_MAX) || dim->valuedouble < 1) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model: input_dim is not a width >= 1",
                         f->path);
        goto cleanup;
    }
    *in_dim = (int)dim->valuedouble;
    int nl = cJSON_GetArraySize(layers);
    if (!cJSON_IsArray(layers) || nl < 1 || nl > MAX_LAYERS) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model: layers is not a list of 1 to %d "
                         "layers", f->path, MAX_LAYERS);
        goto cleanup;
    }
    int li = cJSON_IsString(loss) ? name_index(loss->valuestring, loss_names, NELEM(loss_names))
                                  : -1;
    if (li < 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model: loss is not one of "
                         "categorical_crossentropy, binary_crossentropy, mse", f->path);
        goto cleanup;
    }
    spec->loss = (cfg_loss)li;
    spec->init = CFG_INIT_AUTO;
    spec->layers = calloc((size_t)nl, sizeof *spec->layers);
    if (!spec->layers) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
        goto cleanup;
    }
    spec->nlayers = (unsigned)nl;
    int l = 0;
    for (const cJSON *L = layers->child; L; L = L->next, l++) {
        char what[64];
        snprintf(what, sizeof what, "pstrain.model: layers[%d]", l);
        cfg_layer *cl = &spec->layers[l];
        if (!cJSON_IsObject(L)) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: %s is not an object", f->path, what);
            goto cleanup;
        }
        if ((rc = only_keys(f, what, L, layer_keys, NELEM(layer_keys), err)))
            goto cleanup;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(L, "type");
        const cJSON *units = cJSON_GetObjectItemCaseSensitive(L, "units");
        const cJSON *act = cJSON_GetObjectItemCaseSensitive(L, "activation");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(L, "name");
        int dense = cJSON_IsString(type) && strcmp(type->valuestring, "dense") == 0;
        if (!dense && !(cJSON_IsString(type) && strcmp(type->valuestring, "activation") == 0)) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: %s: type is not dense or activation",
                             f->path, what);
            goto cleanup;
        }
        cl->type = dense ? CFG_LAYER_DENSE : CFG_LAYER_ACTIVATION;
        if (dense ? !is_uint(units, INT32_MAX) || units->valuedouble < 1 : units != NULL) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: %s: units %s", f->path, what,
                             dense ? "is not a width >= 1" : "given for an activation layer");
            goto cleanup;
        }
        cl->units = dense ? (int)units->valuedouble : 0;
        int ai = cJSON_IsString(act) ? name_index(act->valuestring, act_names, NELEM(act_names))
                                     : -1;
        if (ai < 0) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: %s: activation is not one of linear, relu, "
                             "sigmoid, tanh, softmax", f->path, what);
            goto cleanup;
        }
        cl->activation = (cfg_act)ai;
        if (name && !cJSON_IsNull(name)) {
            size_t len = cJSON_IsString(name) ? strlen(name->valuestring) : 0;
            if (len < 1 || len > NAME_MAX_LEN) {
                rc = pst_err_set(err, PST_ERR_DATA, "%s: %s: name is not a string of 1 to %d "
                                 "characters", f->path, what, NAME_MAX_LEN);
                goto cleanup;
            }
            if (!(cl->name = strdup(name->valuestring))) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
                goto cleanup;
            }
        }
    }
cleanup:
    cJSON_Delete(root);
    if (rc)
        spec_fini(spec);
    return rc;
}

static int parse_data_meta(const st_file *f, data_meta *dm, pst_err *err)
{
    static const char *const keys[] = {"task", "num_classes", "class_names", "scale"};
    memset(dm, 0, sizeof *dm);
    const char *text = meta_str(f, "pstrain.data");
    if (!text)
        return PST_OK;
    dm->present = 1;
    int rc = PST_OK;
    cJSON *root = cJSON_Parse(text);
    if (!cJSON_IsObject(root)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data is not a JSON object", f->path);
        goto cleanup;
    }
    if ((rc = only_keys(f, "pstrain.data", root, keys, NELEM(keys), err)))
        goto cleanup;
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(root, "task");
    const cJSON *nc = cJSON_GetObjectItemCaseSensitive(root, "num_classes");
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(root, "class_names");
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(root, "scale");
    static const char *const tasks[] = {"classify", "regress"};
    int ti = cJSON_IsString(task) ? name_index(task->valuestring, tasks, 2) : -1;
    if (ti < 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: task is not classify or regress",
                         f->path);
        goto cleanup;
    }
    dm->task = ti == 0 ? DS_TASK_CLASSIFY : DS_TASK_REGRESS;
    if (!is_uint(nc, 1 << 24) || (dm->task == DS_TASK_CLASSIFY) != (nc->valuedouble > 0)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: num_classes must be >= 1 for "
                         "classify and 0 for regress", f->path);
        goto cleanup;
    }
    dm->nclasses = (int)nc->valuedouble;
    int si = cJSON_IsString(scale) ? name_index(scale->valuestring, scale_names, 3) : -1;
    if (si < 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: scale is not none, minmax or "
                         "standardize", f->path);
        goto cleanup;
    }
    if (dm->task == DS_TASK_REGRESS && names && !cJSON_IsNull(names)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: class_names given for regress",
                         f->path);
        goto cleanup;
    }
    dm->scale = si == 1 ? DS_SCALE_MINMAX : si == 2 ? DS_SCALE_STANDARDIZE : DS_SCALE_NONE;
    if (names && !cJSON_IsNull(names)) {
        if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) != dm->nclasses) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: class_names is not a list of "
                             "num_classes (%d) names", f->path, dm->nclasses);
            goto cleanup;
        }
        if (!(dm->names = calloc((size_t)dm->nclasses, sizeof *dm->names))) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
            goto cleanup;
        }
        int c = 0;
        for (const cJSON *v = names->child; v; v = v->next, c++) {
            if (cJSON_IsNull(v))
                continue;
            if (!cJSON_IsString(v)) {
                rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: class_names[%d] is not a "
                                 "string", f->path, c);
                goto cleanup;
            }
            for (int j = 0; j < c; j++)
                if (dm->names[j] && strcmp(dm->names[j], v->valuestring) == 0) {
                    rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: class name '%s' "
                                     "appears twice", f->path, v->valuestring);
                    goto cleanup;
                }
            if (!(dm->names[c] = strdup(v->valuestring))) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
                goto cleanup;
            }
        }
    }
cleanup:
    cJSON_Delete(root);
    if (rc)
        data_meta_fini(dm);
    return rc;
}

/* Parameters the spec describes (dense: in * out + out), saturating so a corrupt width
 * cannot overflow; lets the reader refuse a spec larger than the file before allocating. */
static uint64_t spec_params(const cfg_model *spec, int in_dim)
{
    uint64_t total = 0, width = (uint64_t)in_dim;
    for (unsigned l = 0; l < spec->nlayers; l++) {
        const cfg_layer *L = &spec->layers[l];
        if (L->type != CFG_LAYER_DENSE)
            continue;
        uint64_t u = (uint64_t)L->units;
        total += width * u + u; /* each factor < 2^31: no overflow per layer */
        if (total > ((uint64_t)1 << 60))
            return UINT64_MAX;
        width = u;
    }
    return total;
}

/* ---- Reading: tensors against the model ------------------------------------------------ */

static void shape_text(const int64_t *shape, int ndim, char *buf, size_t n)
{
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && at < n; d++)
        at += (size_t)snprintf(buf + at, n - at, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (at < n)
        snprintf(buf + at, n - at, "]");
}

/* Claims the tensor `name` of the given shape; error when missing or shaped otherwise. */
static int claim(st_file *f, const char *name, const int64_t *shape, int ndim, st_tensor **out,
                 pst_err *err)
{
    char want[96], got[160];
    shape_text(shape, ndim, want, sizeof want);
    st_tensor *t = find_tensor(f, name);
    if (!t)
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s' is missing (the model needs %s)",
                           f->path, name, want);
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = t->shape[d] == shape[d];
    if (!same) {
        shape_text(t->shape, t->ndim, got, sizeof got);
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': shape %s but the model needs %s",
                           f->path, name, got, want);
    }
    t->used = 1;
    *out = t;
    return PST_OK;
}

/* Matches every tensor of f to a segment of m or to a preprocess slot (when scale is not
 * NONE), then, all checks passed, copies the weights into m and the transform into
 * scaler (may be NULL). */
static int match_and_copy(st_file *f, ml_model *m, ds_scale_kind scale, ds_scaler *scaler,
                          pst_err *err)
{
    int nseg = ml_model_nsegments(m);
    st_tensor **src = calloc((size_t)nseg, sizeof *src);
    float *shift = NULL, *mul = NULL;
    int rc = PST_OK, d = ml_model_in_dim(m);
    st_tensor *ts = NULL, *tm = NULL;
    if (!src) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
        goto cleanup;
    }
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        for (int j = 0; j < i; j++)
            if (strcmp(ml_model_segment(m, j)->name, sg->name) == 0) {
                rc = pst_err_set(err, PST_ERR_DATA, "%s: two parameters of the model are named "
                                 "'%s'", f->path, sg->name);
                goto cleanup;
            }
        int64_t shape[2] = {sg->rows, sg->cols};
        if ((rc = claim(f, sg->name, shape, sg->cols == 1 ? 1 : 2, &src[i], err)))
            goto cleanup;
    }
    if (scale != DS_SCALE_NONE) {
        int64_t shape[1] = {d};
        if ((rc = claim(f, PREP_SHIFT, shape, 1, &ts, err)) ||
            (rc = claim(f, PREP_MUL, shape, 1, &tm, err)))
            goto cleanup;
    }
    for (int i = 0; i < f->nt; i++)
        if (!f->t[i].used) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: unknown tensor '%s': the model has no such "
                             "parameter", f->path, f->t[i].name);
            goto cleanup;
        }
    if (scaler) {
        shift = malloc((size_t)d * sizeof *shift);
        mul = malloc((size_t)d * sizeof *mul);
        if (!shift || !mul) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", f->path);
            goto cleanup;
        }
        for (int j = 0; j < d; j++) {
            shift[j] = 0.0f;
            mul[j] = 1.0f;
        }
        if (ts) {
            memcpy(shift, f->data + ts->begin, (size_t)d * sizeof *shift);
            memcpy(mul, f->data + tm->begin, (size_t)d * sizeof *mul);
        }
    }
    /* Everything checked: from here on nothing fails. */
    float *params = ml_model_params(m);
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        memcpy(params + sg->offset, f->data + src[i]->begin, sg->len * sizeof(float));
    }
    if (scaler) {
        *scaler = (ds_scaler){.d = d, .kind = scale, .shift = shift, .mul = mul};
        shift = mul = NULL;
    }
cleanup:
    free(src);
    free(shift);
    free(mul);
    return rc;
}

/* ---- Reading: the public calls --------------------------------------------------------- */

/* Messages quote names from the file, which may hold any character once JSON escapes are
 * decoded ("a\nb"); the message must stay one line. */
static int one_line(pst_err *err, int rc)
{
    if (err)
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    return rc;
}

struct ckpt_model {
    cfg_model spec;   /* layers and names owned */
    ml_model *net;
    data_meta dm;
    ds_scaler scaler;
};

void ckpt_model_destroy(ckpt_model *c)
{
    if (!c)
        return;
    ml_model_destroy(c->net);
    spec_fini(&c->spec);
    data_meta_fini(&c->dm);
    ds_scaler_fini(&c->scaler);
    free(c);
}

int ckpt_load(const char *path, int max_batch, ckpt_model **out, pst_err *err)
{
    *out = NULL;
    st_file f;
    int rc = st_open(&f, path, err);
    if (rc)
        return one_line(err, rc);
    ckpt_model *c = calloc(1, sizeof *c);
    if (!c) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    int in_dim = 0;
    if ((rc = parse_model_meta(&f, &c->spec, &in_dim, err)) ||
        (rc = parse_data_meta(&f, &c->dm, err)))
        goto fail;
    if (!c->dm.present) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: no pstrain.data in the metadata: the task and "
                         "classes are unknown", path);
        goto fail;
    }
    uint64_t want = spec_params(&c->spec, in_dim);
    if (want > f.data_len / 4) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model describes more parameters than "
                         "the file's %zu floats", path, f.data_len / 4);
        goto fail;
    }
    pst_err e2 = {0};
    if (!(c->net = ml_model_create(&c->spec, in_dim, max_batch, &e2))) {
        /* A model the metadata cannot build is a bad file, not a bad job. */
        rc = pst_err_set(err, e2.code == PST_ERR_NOMEM ? PST_ERR_NOMEM : PST_ERR_DATA,
                         "%s: pstrain.model: %s", path, e2.msg);
        goto fail;
    }
    int k = model_classes(c->net);
    if (c->dm.task == DS_TASK_CLASSIFY && c->dm.nclasses != k) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: num_classes %d but the model's "
                         "output gives %d classes", path, c->dm.nclasses, k);
        goto fail;
    }
    if (c->dm.task == DS_TASK_REGRESS && c->spec.loss != CFG_LOSS_MSE) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.data: task regress with loss %s", path,
                         loss_names[c->spec.loss]);
        goto fail;
    }
    if ((rc = match_and_copy(&f, c->net, c->dm.scale, &c->scaler, err)))
        goto fail;
    st_fini(&f);
    *out = c;
    return PST_OK;

fail:
    ckpt_model_destroy(c);
    st_fini(&f);
    return one_line(err, rc);
}

int ckpt_load_into(const char *path, ml_model *m, ds_scaler *scaler, pst_err *err)
{
    st_file f;
    int rc = st_open(&f, path, err);
    if (rc)
        return one_line(err, rc);
    cfg_model spec;
    data_meta dm;
    int in_dim = 0;
    memset(&spec, 0, sizeof spec);
    memset(&dm, 0, sizeof dm);
    /* The metadata, when there, must be sound even though m's architecture rules. */
    if (meta_str(&f, "pstrain.model") && (rc = parse_model_meta(&f, &spec, &in_dim, err)))
        goto cleanup;
    if ((rc = parse_data_meta(&f, &dm, err)))
        goto cleanup;
    if (spec.nlayers && in_dim != ml_model_in_dim(m)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: pstrain.model: input_dim %d but the model "
                         "takes %d", path, in_dim, ml_model_in_dim(m));
        goto cleanup;
    }
    rc = match_and_copy(&f, m, dm.present ? dm.scale : DS_SCALE_NONE, scaler, err);
cleanup:
    spec_fini(&spec);
    data_meta_fini(&dm);
    st_fini(&f);
    return one_line(err, rc);
}

ml_model *ckpt_model_net(ckpt_model *c) { return c->net; }
const cfg_model *ckpt_model_spec(const ckpt_model *c) { return &c->spec; }
ds_task ckpt_model_task(const ckpt_model *c) { return c->dm.task; }
int ckpt_model_nclasses(const ckpt_model *c)
{
    return c->dm.task == DS_TASK_CLASSIFY ? c->dm.nclasses : 0;
}
const char *ckpt_model_class_name(const ckpt_model *c, int k)
{
    if (!c->dm.names || k < 0 || k >= c->dm.nclasses)
        return NULL;
    return c->dm.names[k];
}
const ds_scaler *ckpt_model_scaler(const ckpt_model *c) { return &c->scaler; }

/* ---- Fine-tuning: initial weights by name from another model's checkpoint ---------------- */

/* Appends ", name" to a list of names, or " ..." once when it no longer fits. */
static void names_append(char *buf, size_t cap, const char *name)
{
    size_t n = strlen(buf);
    if (n >= 4 && strcmp(buf + n - 4, " ...") == 0)
        return;
    size_t need = (n ? 2 : 0) + strlen(name);
    if (n + need + 5 <= cap)
        snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", name);
    else if (n + 5 <= cap)
        snprintf(buf + n, cap - n, " ...");
}

int ckpt_init_from(const char *path, ml_model *m, unsigned char *loaded, ckpt_init_report *rep,
                   pst_err *err)
{
    memset(rep, 0, sizeof *rep);
    st_file f;
    int rc = st_open(&f, path, err);
    if (rc)
        return one_line(err, rc);
    int nseg = ml_model_nsegments(m);
    st_tensor **src = calloc((size_t)(nseg ? nseg : 1), sizeof *src);
    if (!src) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        for (int j = 0; j < i; j++)
            if (strcmp(ml_model_segment(m, j)->name, sg->name) == 0) {
                rc = pst_err_set(err, PST_ERR_CONFIG, "two parameters of the model are named "
                                 "'%s'", sg->name);
                goto cleanup;
            }
        if (!find_tensor(&f, sg->name)) {
            rep->fresh++;
            names_append(rep->fresh_names, sizeof rep->fresh_names, sg->name);
            continue;
        }
        /* Same name, other shape: a layer resized without being renamed. An error, not a
         * fresh start, so a typo in units never silently discards pretrained weights. */
        int64_t shape[2] = {sg->rows, sg->cols};
        if ((rc = claim(&f, sg->name, shape, sg->cols == 1 ? 1 : 2, &src[i], err)))
            goto cleanup;
        rep->loaded++;
    }
    if (rep->loaded == 0) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: holds none of the model's parameters (%s): "
                         "layer names must match the pretrained model's", path,
                         rep->fresh_names);
        goto cleanup;
    }
    for (int i = 0; i < f.nt; i++)
        if (!f.t[i].used && strcmp(f.t[i].name, PREP_SHIFT) != 0 &&
            strcmp(f.t[i].name, PREP_MUL) != 0) {
            rep->skipped++;
            names_append(rep->skipped_names, sizeof rep->skipped_names, f.t[i].name);
        }
    /* Everything checked: from here on nothing fails. */
    float *params = ml_model_params(m);
    for (int i = 0; i < nseg; i++)
        if (src[i]) {
            const ml_segment *sg = ml_model_segment(m, i);
            memcpy(params + sg->offset, f.data + src[i]->begin, sg->len * sizeof(float));
        }
    for (int i = 0; loaded && i < nseg; i++)
        loaded[i] = src[i] != NULL;
cleanup:
    free(src);
    st_fini(&f);
    if (rc)
        memset(rep, 0, sizeof *rep);
    return one_line(err, rc);
}

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
    state_meta *m;   /* writing */
    int nm, mcap;
    char *path;      /* reading: the file, for messages */
    st_file f;       /* reading: the whole file, validated */
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
        st_fini(&st->f);
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
            return pst_err_set(err, PST_ERR_ARG, "checkpoint: state.%s: value needs escapes",
                               key);
    return set_meta(st, key, v, err);
}

int ckpt_state_add_tensor(ckpt_state *st, const char *name, const float *p, size_t n,
                          pst_err *err)
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
        int64_t bad = first_nonfinite(t->p, t->n);
        if (bad >= 0) {
            rc = pst_err_set(err, PST_ERR_NUMERIC, "%s: not written: tensor '%s' element %" PRId64
                             " is %g", path, t->name, bad, (double)t->p[bad]);
            goto cleanup;
        }
        ts[i] = (out_tensor){t->name, 1, {(double)t->n, 0}, t->p, t->n};
    }
    for (int i = 0; i < st->nm; i++)
        mp[i] = (meta_pair){st->m[i].key, st->m[i].val};
    if (!(json = header_json(ts, st->nt, NULL, NULL, mp, st->nm)))
        goto nomem;
    rc = write_file(path, json, ts, st->nt, err);
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
    int rc = st_open(&st->f, st->path, err);
    if (rc) {
        free(st->path);
        free(st);
        return one_line(err, rc);
    }
    const char *producer = meta_str(&st->f, "producer");
    const char *k = meta_str(&st->f, STATE_PREFIX "kind");
    if (!producer || strcmp(producer, "pstrain") != 0) {
        /* Only pstrain's files carry every checksum, and only those are trusted to resume. */
        rc = pst_err_set(err, PST_ERR_DATA, "%s: not written by pstrain", path);
        goto fail;
    }
    if (!k) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: not a training-state file (no state.kind; a "
                         "model checkpoint?)", path);
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
    return one_line(err, rc);
}

const char *ckpt_state_kind(const ckpt_state *st) { return st->kind; }

int ckpt_state_get_str(const ckpt_state *st, const char *key, const char **v, pst_err *err)
{
    assert(st->path);
    char k[sizeof STATE_PREFIX + STATE_KEY_MAX];
    if (!good_key(key))
        return pst_err_set(err, PST_ERR_ARG, "checkpoint: bad state key '%.60s'", key);
    snprintf(k, sizeof k, STATE_PREFIX "%s", key);
    if (!(*v = meta_str(&st->f, k)))
        return one_line(err, pst_err_set(err, PST_ERR_DATA, "%s: %s is missing", st->path, k));
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
        return one_line(err, pst_err_set(err, PST_ERR_DATA, "%s: state.%s: '%.40s' is not an "
                                         "integer", st->path, key, s));
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
        return one_line(err, pst_err_set(err, PST_ERR_DATA, "%s: state.%s: '%.40s' is not a "
                                         "finite number", st->path, key, s));
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
            return one_line(err, pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s' holds %zu "
                                             "floats, expected %zu", st->path, name, have, n));
        *p = (const float *)(const void *)(st->f.data + t->begin);
        return PST_OK;
    }
    return one_line(err, pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s' is missing", st->path,
                                     name));
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
        return one_line(err, pst_err_set(err, PST_ERR_DATA, "%s: optimizer state of %.20s, but "
                                         "the job uses %s", st->path, k, opt_kind_name(kind)));
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

/* ---- Checkpoint folders ------------------------------------------------------------------ */


/* If name is prefix N suffix (N decimal, no sign, at most 18 digits), stores N and
 * returns 1; with tmp, the name must instead continue with ".tmp." after the suffix (a
 * write that never finished). */
static int parse_entry(const char *name, const char *prefix, const char *suffix, int tmp,
                       int64_t *tag)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    if (strncmp(name, prefix, pl) != 0)
        return 0;
    const char *d = name + pl;
    size_t nd = 0;
    int64_t v = 0;
    while (d[nd] >= '0' && d[nd] <= '9' && nd < 18)
        v = v * 10 + (d[nd++] - '0');
    if (nd == 0 || (d[nd] >= '0' && d[nd] <= '9') || strncmp(d + nd, suffix, sl) != 0)
        return 0;
    const char *rest = d + nd + sl;
    if (tmp ? strncmp(rest, ".tmp.", 5) != 0 : rest[0] != '\0')
        return 0;
    *tag = v;
    return 1;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Every tag of dir's entries prefix N suffix, newest first, in a malloc'ed array. */
static int list_all(const char *dir, const char *prefix, const char *suffix, int64_t **tags,
                    int *n, pst_err *err)
{
    *tags = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? PST_OK
                               : pst_err_set(err, PST_ERR_IO, "%s: cannot list: %s", dir,
                                             strerror(errno));
    int cap = 0, rc = PST_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t tag;
        if (!parse_entry(e->d_name, prefix, suffix, 0, &tag))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *t = realloc(*tags, (size_t)cap * sizeof *t);
            if (!t) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            *tags = t;
        }
        (*tags)[(*n)++] = tag;
    }
    closedir(d);
    if (rc) {
        free(*tags);
        *tags = NULL;
        *n = 0;
        return rc;
    }
    if (*n)
        qsort(*tags, (size_t)*n, sizeof **tags, cmp_desc);
    return PST_OK;
}

int ckpt_list(const char *dir, const char *prefix, const char *suffix, int64_t *tags, int max,
              int *n, pst_err *err)
{
    int64_t *all;
    int total;
    int rc = list_all(dir, prefix, suffix, &all, &total, err);
    if (rc)
        return rc;
    *n = total < max ? total : max;
    if (*n)
        memcpy(tags, all, (size_t)*n * sizeof *tags);
    free(all);
    return PST_OK;
}

int ckpt_prune(const char *dir, const char *prefix, const char *suffix, int keep, pst_err *err)
{
    int64_t *all;
    int total;
    int rc = list_all(dir, prefix, suffix, &all, &total, err);
    char p[4352];
    for (int i = keep; i < total && !rc; i++) {
        snprintf(p, sizeof p, "%s/%s%" PRId64 "%s", dir, prefix, all[i], suffix);
        rc = fs_remove(p, err);
    }
    free(all);
    if (rc)
        return rc;
    /* Leftovers of writes that never finished (a crash between create and rename). This
     * process's own are in progress elsewhere on the call stack, never here. */
    DIR *d = opendir(dir);
    if (!d)
        return PST_OK;
    char own[32];
    snprintf(own, sizeof own, ".tmp.%ld", (long)getpid());
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        int64_t tag;
        size_t len = strlen(e->d_name), ol = strlen(own);
        if (!parse_entry(e->d_name, prefix, suffix, 1, &tag) ||
            (len >= ol && strcmp(e->d_name + len - ol, own) == 0))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        rc = fs_remove(p, err);
    }
    closedir(d);
    return rc;
}

int ckpt_remove_newer(const char *dir, const char *prefix, const char *suffix, int64_t after,
                      pst_err *err)
{
    int64_t *all;
    int total;
    int rc = list_all(dir, prefix, suffix, &all, &total, err);
    char p[4352];
    for (int i = 0; i < total && !rc && all[i] > after; i++) {
        snprintf(p, sizeof p, "%s/%s%" PRId64 "%s", dir, prefix, all[i], suffix);
        rc = fs_remove(p, err);
    }
    free(all);
    return rc;
}

int ckpt_dir_begin(const char *path, char *tmp, size_t cap, pst_err *err)
{
    if (snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid()) >= (int)cap)
        return pst_err_set(err, PST_ERR_ARG, "%s: path too long", path);
    int rc = fs_remove(tmp, err);
    if (rc)
        return rc;
    if (mkdir(tmp, 0777) != 0)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot create folder: %s", tmp,
                           strerror(errno));
    return PST_OK;
}

int ckpt_dir_commit(const char *tmp, const char *path, pst_err *err)
{
    /* rename(2) replaces only an empty folder; an older folder of the same name (a run
     * resumed from before it) goes first. */
    int rc = fs_remove(path, err);
    if (rc)
        return rc;
    if (rename(tmp, path) != 0)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot finish writing: %s", path,
                           strerror(errno));
    return fs_sync_parent(path, err);
}

void ckpt_dir_abort(const char *tmp)
{
    fs_remove(tmp, NULL);
}
