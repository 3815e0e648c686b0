/* fuzz/fuzz_ckpt.c -- the safetensors reader: ckpt_load (a model checkpoint rebuilt from
 * its metadata) and ckpt_state_load (optimizer and server shard state files), on the input
 * as a file.
 *
 * pstrain's own files carry a CRC-32 of their header, so almost every mutation of a header
 * would stop at the checksum and the parser behind it would go unexplored. When the input
 * has the header checksum field, the harness therefore writes the right checksum into it
 * first (as ckpt/safetensors.c computes it: the 8 length bytes and the header, the 10 digits read
 * as zeros). Checksum refusals themselves are covered by tests/test_ckpt.c. Seeds without
 * any checksums (producer not "pstrain") let mutated tensor data reach the value checks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "ckpt/ckpt.h"
#include "fuzz/fuzz_common.h"

static void fix_header_crc(uint8_t *buf, size_t size)
{
    static const char pat[] = "\"crc32.__header__\":\"";
    const size_t pl = sizeof pat - 1;
    if (size < 8)
        return;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)buf[i] << (8 * i);
    if (hlen > size - 8)
        return;
    uint8_t *h = buf + 8, *found = NULL;
    for (size_t i = 0; i + pl + 11 <= hlen; i++)
        if (memcmp(h + i, pat, pl) == 0) {
            if (found)
                return;
            found = h + i + pl;
        }
    if (!found)
        return;
    memcpy(found, "0000000000", 10);
    uLong c = crc32_z(0L, Z_NULL, 0);
    c = crc32_z(c, buf, 8 + hlen);
    char d[11];
    snprintf(d, sizeof d, "%010lu", (unsigned long)(uint32_t)c);
    memcpy(found, d, 10);
}

static void check_refusal(int rc, const pst_err *err)
{
    fuzz_check_msg(err->msg);
    if (rc != PST_ERR_DATA && rc != PST_ERR_NOMEM && rc != PST_ERR_CONFIG) {
        fprintf(stderr, "fuzz_ckpt: refused with status %d: %s\n", rc, err->msg);
        abort();
    }
}

/* After a successful check, the restore "cannot fail": copy into a fresh optimizer state. */
static void restore_opt(const ckpt_state *st, opt_kind kind, size_t n)
{
    opt_config cfg;
    opt_config_default(&cfg, kind);
    pst_err err = {0};
    opt_state *os = opt_state_create(&cfg, n, &err);
    if (!os)
        return;
    ckpt_state_restore_opt(st, kind, os);
    opt_state_destroy(os);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    fix_header_crc(buf, size);
    char p[256];
    fuzz_tmp_file(buf, size, "ckpt", p, sizeof p);
    free(buf);

    pst_err err = {0};
    ckpt_model *c = NULL;
    int rc = ckpt_load(p, 4, &c, &err);
    if (rc == PST_OK) {
        /* A model that loaded runs: a zero batch through every layer. */
        ml_model *m = ckpt_model_net(c);
        float *x = calloc((size_t)4 * (size_t)ml_model_in_dim(m), sizeof *x);
        if (x)
            (void)ml_model_forward(m, x, 4);
        free(x);
        for (int k = 0; k < ckpt_model_nclasses(c); k++)
            (void)ckpt_model_class_name(c, k);
        const ds_scaler *s = ckpt_model_scaler(c);
        if (s->d != ml_model_in_dim(m)) {
            fprintf(stderr, "fuzz_ckpt: scaler of %d features, model input %d\n", s->d,
                    ml_model_in_dim(m));
            abort();
        }
        ckpt_model_destroy(c);
    } else {
        check_refusal(rc, &err);
        if (c)
            abort();
    }

    static const char *const kinds[2] = {"shard", "optimizer"};
    for (int k = 0; k < 2; k++) {
        ckpt_state *st = NULL;
        rc = ckpt_state_load(p, kinds[k], &st, &err);
        if (rc != PST_OK) {
            check_refusal(rc, &err);
            continue;
        }
        /* What the server's restore asks of a shard file, and the optimizer's state. */
        int64_t len = 0, v;
        const char *s;
        const float *w;
        (void)ckpt_state_get_str(st, "job_hash", &s, &err);
        (void)ckpt_state_get_int(st, "clock", &v, &err);
        (void)ckpt_state_get_double(st, "loss", &(double){0}, &err);
        if (ckpt_state_get_int(st, "len", &len, &err) == PST_OK && len > 0 && len < (1 << 26)) {
            (void)ckpt_state_get_tensor(st, "weights", (size_t)len, &w, &err);
            for (int o = OPT_SGD; o <= OPT_ADAMW; o++)
                if (ckpt_state_check_opt(st, (opt_kind)o, (size_t)len, &err) == PST_OK)
                    restore_opt(st, (opt_kind)o, (size_t)len);
        }
        ckpt_state_destroy(st);
    }
    unlink(p);
    return 0;
}
