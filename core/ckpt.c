/* core/ckpt.c -- see ckpt.h. */
#include "ckpt.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The host is little-endian (x86-64, arm64); safetensors is too, so bytes go out as is. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors needs little-endian");

static char *header_json(ml_model *m, const char *const (*meta)[2], int nmeta, pst_err *err)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        goto nomem;
    if (nmeta > 0) {
        cJSON *md = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; md && i < nmeta; i++)
            if (!cJSON_AddStringToObject(md, meta[i][0], meta[i][1]))
                goto nomem;
        if (!md)
            goto nomem;
    }
    for (int i = 0; i < ml_model_nsegments(m); i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        cJSON *t = cJSON_AddObjectToObject(root, sg->name);
        if (!t || !cJSON_AddStringToObject(t, "dtype", "F32"))
            goto nomem;
        double shape[2] = {sg->rows, sg->cols};
        cJSON *sh = cJSON_CreateDoubleArray(shape, sg->cols == 1 ? 1 : 2);
        double offs[2] = {(double)(sg->offset * sizeof(float)),
                          (double)((sg->offset + sg->len) * sizeof(float))};
        cJSON *of = cJSON_CreateDoubleArray(offs, 2);
        if (!sh || !of) {
            cJSON_Delete(sh);
            cJSON_Delete(of);
            goto nomem;
        }
        cJSON_AddItemToObject(t, "shape", sh);
        cJSON_AddItemToObject(t, "data_offsets", of);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s)
        pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
    return s;
nomem:
    cJSON_Delete(root);
    pst_err_set(err, PST_ERR_NOMEM, "checkpoint: out of memory");
    return NULL;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int ckpt_save_model(const char *path, ml_model *m, const char *const (*meta)[2], int nmeta,
                    pst_err *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return pst_err_set(err, PST_ERR_ARG, "%s: path too long", path);
    char *json = header_json(m, meta, nmeta, err);
    if (!json)
        return PST_ERR_NOMEM;
    /* Pad the header with spaces so the tensor data starts 8-byte aligned (allowed by the
     * format, and lets readers map the floats in place). */
    size_t jlen = strlen(json);
    size_t padded = (jlen + 7) & ~(size_t)7;
    uint64_t hlen = padded;
    int rc = PST_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        rc = pst_err_set(err, PST_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto cleanup;
    }
    static const char spaces[8] = "        ";
    if (write_all(fd, &hlen, 8) || write_all(fd, json, jlen) ||
        write_all(fd, spaces, padded - jlen) ||
        write_all(fd, ml_model_params(m), ml_model_nparams(m) * sizeof(float)) || fsync(fd)) {
        rc = pst_err_set(err, PST_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto cleanup;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        rc = pst_err_set(err, PST_ERR_IO, "%s: cannot finish writing: %s", path, strerror(errno));
        unlink(tmp);
    }
cleanup:
    cJSON_free(json);
    return rc;
}
