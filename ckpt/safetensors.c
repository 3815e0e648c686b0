/* ckpt/safetensors.c -- the safetensors container: the header JSON, CRC-32s of every tensor and
 * of the header, atomic writes through base/fs.h, and a bounded, validating reader. */
#include "ckpt_internal.h"

#include "base/fs.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
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
#define HEADER_CRC_KEY "crc32.__header__"
#define CRC_PREFIX "crc32."

/* CRC-32 (zlib's, the ISO-HDLC polynomial) of n bytes, in size_t-sized pieces. */
static uint32_t crc_of(const void *p, size_t n)
{
    return (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), p, n);
}

/* ---- Writing --------------------------------------------------------------------------- */

/* off: the tensor's first byte in the data area. */
static int add_tensor_entry(cJSON *root, const out_tensor *t, size_t off)
{
    cJSON *o = cJSON_AddObjectToObject(root, t->name);
    if (!o || !cJSON_AddStringToObject(o, "dtype", ckpt_dtype_name(t->dtype)))
        return -1;
    size_t bytes = t->n * ckpt_dtype_size(t->dtype);
    double offs[2] = {(double)off, (double)(off + bytes)};
    if (ckpt_json_put(o, "shape", cJSON_CreateDoubleArray(t->shape, t->ndim)) ||
        ckpt_json_put(o, "data_offsets", cJSON_CreateDoubleArray(offs, 2)))
        return -1;
    return 0;
}

/* The header JSON, its CRC field still "0000000000". extra[0..nextra) are added to the
 * metadata as they are. */
char *ckpt_st_header_json(const out_tensor *ts, int nt, const char *model, const char *data,
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
        size_t bytes = ts[i].n * ckpt_dtype_size(ts[i].dtype);
        snprintf(val, sizeof val, "%" PRIu32, crc_of(ts[i].p, bytes));
        if (!cJSON_AddStringToObject(md, key, val) || add_tensor_entry(root, &ts[i], off))
            goto cleanup;
        off += bytes;
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
int64_t ckpt_first_nonfinite(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return (int64_t)i;
    return -1;
}

/* Writes the header json (its CRC field "0000000000") and the tensors ts[0..nt) to path
 * atomically: a temporary file in the same folder, fsync, rename, fsync of the folder. */
int ckpt_st_write(const char *path, const char *json, const out_tensor *ts, int nt, pst_err *err)
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
    assert(digits); /* ckpt_st_header_json wrote it once; tensor names cannot spell it */
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
        bad = fwrite(ts[i].p, ckpt_dtype_size(ts[i].dtype), ts[i].n, out.f) != ts[i].n;
    if (bad) {
        rc = pst_err_set(err, PST_ERR_IO, "%s: write failed: %s", out.tmp, strerror(errno));
        fs_atomic_abort(&out);
        return rc;
    }
    return fs_atomic_commit(&out, FS_REPLACE, err);
}

/* ---- Reading: the container ------------------------------------------------------------ */

void ckpt_st_fini(st_file *f)
{
    cJSON_Delete(f->root);
    free(f->buf);
    free(f->wide);
    free(f->t);
    memset(f, 0, sizeof *f);
}

const char *ckpt_st_meta_str(const st_file *f, const char *key)
{
    const cJSON *v = f->meta ? cJSON_GetObjectItemCaseSensitive(f->meta, key) : NULL;
    return v ? v->valuestring : NULL; /* every metadata value was checked to be a string */
}

st_tensor *ckpt_st_find_tensor(st_file *f, const char *name)
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
int ckpt_json_is_uint(const cJSON *v, double max)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= max &&
           v->valuedouble == floor(v->valuedouble);
}

int ckpt_json_put(cJSON *parent, const char *key, cJSON *item)
{
    if (item &&
        (key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item)))
        return 0;
    cJSON_Delete(item);
    return -1;
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
int ckpt_json_unique_keys(const st_file *f, const cJSON *obj, const char *what, pst_err *err)
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
    if (ckpt_json_unique_keys(f, e, name, err))
        return err ? err->code : PST_ERR_DATA;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': no dtype", f->path, name);
    int k = ckpt_dtype_find(dt->valuestring, f->dtypes);
    if (k >= 0)
        t->dtype = (ckpt_dtype)k;
    else {
        char list[96];
        ckpt_dtype_list(f->dtypes, list, sizeof list);
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': dtype %s, but pstrain reads %s",
                           f->path, name, dt->valuestring, list);
    }
    const uint64_t esize = ckpt_dtype_size(t->dtype);
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > MAX_DIMS)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: tensor '%s': shape is not a list of at most "
                           "%d sizes",
                           f->path, name, MAX_DIMS);
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 ||
        !ckpt_json_is_uint(cJSON_GetArrayItem(of, 0), 9007199254740992.0) ||
        !ckpt_json_is_uint(cJSON_GetArrayItem(of, 1), 9007199254740992.0))
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: tensor '%s': data_offsets is not a pair of "
                           "byte offsets",
                           f->path, name);
    t->begin = (uint64_t)cJSON_GetArrayItem(of, 0)->valuedouble;
    t->end = (uint64_t)cJSON_GetArrayItem(of, 1)->valuedouble;
    if (t->end < t->begin)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                           ") end before they begin",
                           f->path, name, t->begin, t->end);
    if (t->end > f->data_len)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: truncated: tensor '%s' needs data bytes [%" PRIu64 ", %" PRIu64
                           ") but the file holds %zu",
                           f->path, name, t->begin, t->end, f->data_len);
    /* elements * esize == bytes; the product stops as soon as it exceeds bytes / esize, so
     * a huge shape cannot overflow it. */
    const uint64_t limit = (t->end - t->begin) / esize;
    uint64_t count = 1;
    int over = 0, zero = 0;
    t->ndim = cJSON_GetArraySize(sh);
    for (int d = 0; d < t->ndim; d++) {
        const cJSON *v = cJSON_GetArrayItem(sh, d);
        if (!ckpt_json_is_uint(v, 9007199254740992.0))
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
    if (over || count * esize != t->end - t->begin)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: tensor '%s': its shape needs %s bytes than "
                           "the %" PRIu64 " its data_offsets give",
                           f->path, name, over || count > limit ? "more" : "fewer",
                           t->end - t->begin);
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
            return pst_err_set(err, PST_ERR_DATA,
                               "%s: __metadata__: value of '%s' is not a "
                               "string",
                               f->path, k->string);
        if (strncmp(k->string, "pstrain.", 8) == 0 && strcmp(k->string, "pstrain.version") &&
            strcmp(k->string, "pstrain.model") && strcmp(k->string, "pstrain.data") &&
            strcmp(k->string, "pstrain.quant"))
            return pst_err_set(err, PST_ERR_DATA, "%s: __metadata__: unknown key '%s'", f->path,
                               k->string);
        if (strncmp(k->string, CRC_PREFIX, strlen(CRC_PREFIX)) == 0 &&
            strcmp(k->string, HEADER_CRC_KEY) != 0) {
            st_tensor *t = ckpt_st_find_tensor(f, k->string + strlen(CRC_PREFIX));
            if (!t)
                return pst_err_set(err, PST_ERR_DATA, "%s: __metadata__: '%s' names no tensor",
                                   f->path, k->string);
            t->crc = k->valuestring;
        }
    }
    const char *ver = ckpt_st_meta_str(f, "pstrain.version");
    if (ver && strcmp(ver, CKPT_VERSION) != 0)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: checkpoint format version %s; this pstrain "
                           "reads version " CKPT_VERSION,
                           f->path, ver);
    return PST_OK;
}

static int check_header_crc(st_file *f, size_t hlen, pst_err *err)
{
    const char *want = ckpt_st_meta_str(f, HEADER_CRC_KEY);
    const char *producer = ckpt_st_meta_str(f, "producer");
    if (!want) {
        if (producer && strcmp(producer, "pstrain") == 0)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s: corrupted: written by pstrain but the "
                               "header checksum " HEADER_CRC_KEY " is missing",
                               f->path);
        return PST_OK;
    }
    char *digits = header_crc_digits((char *)f->buf + 8, hlen);
    if (!digits)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: " HEADER_CRC_KEY " must appear once, as "
                           "10 decimal digits",
                           f->path);
    uint32_t stored;
    char d[11];
    memcpy(d, digits, 10);
    d[10] = '\0';
    if (parse_crc(d, &stored) != 0)
        return pst_err_set(err, PST_ERR_DATA, "%s: " HEADER_CRC_KEY " '%s' is not a CRC-32",
                           f->path, d);
    uint32_t got = header_crc(f->buf, hlen, (size_t)(digits - (char *)f->buf - 8));
    if (got != stored)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: corrupted: header checksum mismatch (stored "
                           "%" PRIu32 ", computed %" PRIu32 ")",
                           f->path, stored, got);
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

/* The 8-byte little-endian header length and the header bytes: *hlen fits in the file, the
 * header holds no control bytes and starts like a JSON object. */
static int check_frame(const st_file *f, uint64_t *hlen, pst_err *err)
{
    const char *path = f->path;
    if (f->size == 0)
        return pst_err_set(err, PST_ERR_DATA, "%s: empty file, not a safetensors checkpoint", path);
    if (f->size < 8)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: truncated: %zu bytes, less than the 8-byte "
                           "header length",
                           path, f->size);
    memcpy(hlen, f->buf, 8);
    if (*hlen > HEADER_MAX)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: header length %" PRIu64 " is over 100 MB: "
                           "not a safetensors file",
                           path, *hlen);
    if (*hlen > f->size - 8)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: truncated: the header needs %" PRIu64 " bytes "
                           "but %zu follow its length",
                           path, *hlen, f->size - 8);
    const char *h = (const char *)f->buf + 8;
    if (*hlen < 2 || h[0] != '{')
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: not a safetensors file: the header is not a "
                           "JSON object",
                           path);
    for (uint64_t i = 0; i < *hlen; i++)
        if ((unsigned char)h[i] < 0x20 && h[i] != '\t' && h[i] != '\n' && h[i] != '\r')
            return pst_err_set(err, PST_ERR_DATA,
                               "%s: corrupted: control byte 0x%02x at header "
                               "byte %" PRIu64,
                               path, (unsigned char)h[i], i);
    return PST_OK;
}

/* Parses the hlen header bytes into f->root (one JSON object, nothing after it, unique keys)
 * and f->meta (an object of strings, or NULL), and points f->data past the header. */
static int parse_header(st_file *f, uint64_t hlen, pst_err *err)
{
    const char *path = f->path;
    const char *h = (const char *)f->buf + 8;
    const char *end = NULL;
    f->root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
    if (!f->root || !cJSON_IsObject(f->root))
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: the header is not a valid JSON object (error "
                           "near header byte %td)",
                           path, end ? end - h : (ptrdiff_t)0);
    for (const char *p = end; p < h + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return pst_err_set(err, PST_ERR_DATA,
                               "%s: corrupted: text after the header's JSON "
                               "at header byte %td",
                               path, p - h);
    f->data = f->buf + 8 + hlen;
    f->data_len = f->size - 8 - (size_t)hlen;
    int rc = ckpt_json_unique_keys(f, f->root, "header", err);
    if (rc)
        return rc;
    f->meta = cJSON_GetObjectItemCaseSensitive(f->root, "__metadata__");
    if (f->meta && !cJSON_IsObject(f->meta))
        return pst_err_set(err, PST_ERR_DATA, "%s: __metadata__ is not an object", path);
    if (f->meta) {
        if ((rc = ckpt_json_unique_keys(f, f->meta, "__metadata__", err)))
            return rc;
        for (const cJSON *k = f->meta->child; k; k = k->next)
            if (!cJSON_IsString(k))
                return pst_err_set(err, PST_ERR_DATA,
                                   "%s: __metadata__: value of '%s' is not a "
                                   "string",
                                   path, k->string);
    }
    return PST_OK;
}

/* Fills f->t from the header's tensor entries and checks that they tile the data area
 * exactly: no overlap, no gap, nothing after. */
static int parse_tensors(st_file *f, pst_err *err)
{
    const char *path = f->path;
    int n = cJSON_GetArraySize(f->root) - (f->meta ? 1 : 0);
    f->t = calloc((size_t)(n > 0 ? n : 1), sizeof *f->t);
    st_tensor **order = calloc((size_t)(n > 0 ? n : 1), sizeof *order); /* (n) by begin */
    int rc = PST_OK;
    if (!f->t || !order) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (const cJSON *e = f->root->child; e; e = e->next) {
        if (e == f->meta)
            continue;
        if ((rc = parse_tensor(f, e, &f->t[f->nt], err)))
            goto cleanup;
        order[f->nt] = &f->t[f->nt];
        f->nt++;
    }
    qsort(order, (size_t)f->nt, sizeof *order, cmp_begin);
    uint64_t at = 0;
    for (int i = 0; i < f->nt; i++) {
        if (order[i]->begin < at) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: tensors '%s' and '%s' overlap in the data",
                             path, order[i - 1]->name, order[i]->name);
            goto cleanup;
        }
        if (order[i]->begin > at) {
            rc = pst_err_set(err, PST_ERR_DATA,
                             "%s: data bytes [%" PRIu64 ", %" PRIu64 ") "
                             "belong to no tensor",
                             path, at, order[i]->begin);
            goto cleanup;
        }
        at = order[i]->end;
    }
    if (at != f->data_len)
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: %" PRIu64 " bytes after the last tensor that "
                         "the header does not describe",
                         path, (uint64_t)f->data_len - at);
cleanup:
    free(order);
    return rc;
}

/* Every tensor's data: its CRC-32 when stored (required when pstrain wrote the file), and
 * finite values only. */
static int check_tensor_data(const st_file *f, pst_err *err)
{
    const char *path = f->path;
    const char *producer = ckpt_st_meta_str(f, "producer");
    int need_crc = producer && strcmp(producer, "pstrain") == 0;
    for (int i = 0; i < f->nt; i++) {
        const st_tensor *t = &f->t[i];
        const unsigned char *p = f->data + t->begin;
        if (!t->crc && need_crc)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s: corrupted: tensor '%s' has no checksum " CRC_PREFIX "%s", path,
                               t->name, t->name);
        uint32_t want;
        if (t->crc && parse_crc(t->crc, &want) != 0)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s: " CRC_PREFIX "%s: '%s' is not a decimal "
                               "CRC-32",
                               path, t->name, t->crc);
        if (t->crc && crc_of(p, t->end - t->begin) != want)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s: corrupted: tensor '%s' fails its checksum "
                               "(stored %" PRIu32 ", computed %" PRIu32 ")",
                               path, t->name, want, crc_of(p, t->end - t->begin));
        /* The data may be unaligned (any header length is legal), so values are copied. */
        int floats = t->dtype == CKPT_F32 || t->dtype == CKPT_F16 || t->dtype == CKPT_BF16;
        size_t cnt = floats ? (size_t)(t->end - t->begin) / ckpt_dtype_size(t->dtype) : 0;
        for (size_t j = 0; j < cnt; j++) {
            float v = ckpt_float_at(t->dtype, p, j);
            if (!isfinite(v)) {
                char idx[64];
                index_text(t, (int64_t)j, idx, sizeof idx);
                return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': element %s is %s", path,
                                   t->name, idx,
                                   isnan(v) ? "NaN"
                                   : v > 0  ? "+Inf"
                                            : "-Inf");
            }
        }
    }
    return PST_OK;
}

/* An exported model file says so in pstrain.quant ("fp16" or "int8"): then, and only then,
 * and only for a model file's opener (F32 alone), F16 and I8 tensors are accepted too
 * (checked before the tensors are parsed). */
static int check_quant_kind(st_file *f, pst_err *err)
{
    const char *quant = ckpt_st_meta_str(f, "pstrain.quant");
    if (quant && strcmp(quant, "fp16") != 0 && strcmp(quant, "int8") != 0)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: __metadata__: pstrain.quant '%s' is not fp16 or int8", f->path,
                           quant);
    f->quant = quant != NULL && f->dtypes == CKPT_DTYPE_BIT(CKPT_F32);
    if (f->quant)
        f->dtypes |= CKPT_DTYPE_BIT(CKPT_F16) | CKPT_DTYPE_BIT(CKPT_I8);
    return PST_OK;
}

static int st_open(st_file *f, const char *path, unsigned dtypes_ok, pst_err *err)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    f->dtypes = dtypes_ok;
    uint64_t hlen = 0;
    int rc;
    if ((rc = read_whole(f, err)) || (rc = check_frame(f, &hlen, err)) ||
        (rc = parse_header(f, hlen, err)))
        goto fail;
    /* The header checksum comes first: with it, a flipped byte anywhere in the header is
     * reported as corruption rather than as whatever the flip happened to change. */
    if ((rc = check_header_crc(f, (size_t)hlen, err)) || (rc = check_quant_kind(f, err)) ||
        (rc = parse_tensors(f, err)) || (rc = check_meta(f, err)) ||
        (rc = check_tensor_data(f, err)))
        goto fail;
    if (f->quant && (rc = ckpt_st_widen(f, err)))
        goto fail;
    return PST_OK;

fail:
    ckpt_st_fini(f);
    return rc;
}

int ckpt_st_open(st_file *f, const char *path, pst_err *err)
{
    return st_open(f, path, CKPT_DTYPE_BIT(CKPT_F32), err);
}

int ckpt_st_open_any(st_file *f, const char *path, pst_err *err)
{
    return st_open(f, path,
                   CKPT_DTYPE_BIT(CKPT_F32) | CKPT_DTYPE_BIT(CKPT_U64) | CKPT_DTYPE_BIT(CKPT_U32) |
                       CKPT_DTYPE_BIT(CKPT_U8),
                   err);
}

int ckpt_st_open_hf(st_file *f, const char *path, pst_err *err)
{
    return st_open(f, path,
                   CKPT_DTYPE_BIT(CKPT_F32) | CKPT_DTYPE_BIT(CKPT_F16) | CKPT_DTYPE_BIT(CKPT_BF16) |
                       CKPT_DTYPE_BIT(CKPT_BOOL),
                   err);
}

/* ---- Reading: tensors by name and shape ------------------------------------------------ */

static void shape_text(const int64_t *shape, int ndim, char *buf, size_t n)
{
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && at < n; d++)
        at += (size_t)snprintf(buf + at, n - at, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (at < n)
        snprintf(buf + at, n - at, "]");
}

int ckpt_st_claim(st_file *f, const char *name, const int64_t *shape, int ndim, st_tensor **out,
                  pst_err *err)
{
    return ckpt_st_claim_as(f, name, CKPT_F32, shape, ndim, out, err);
}

/* Claims the tensor `name` of dtype dt and the given shape; error when missing, of another
 * dtype or shaped otherwise. */
int ckpt_st_claim_as(st_file *f, const char *name, ckpt_dtype dt, const int64_t *shape, int ndim,
                     st_tensor **out, pst_err *err)
{
    char want[96], got[160];
    shape_text(shape, ndim, want, sizeof want);
    st_tensor *t = ckpt_st_find_tensor(f, name);
    if (!t)
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s' is missing (the model needs %s)",
                           f->path, name, want);
    if (t->dtype != dt)
        return pst_err_set(err, PST_ERR_DATA, "%s: tensor '%s': dtype %s, expected %s", f->path,
                           name, ckpt_dtype_name(t->dtype), ckpt_dtype_name(dt));
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

/* Messages quote names from the file, which may hold any character once JSON escapes are
 * decoded ("a\nb"); the message must stay one line. */
int ckpt_one_line(pst_err *err, int rc)
{
    if (err)
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    return rc;
}
