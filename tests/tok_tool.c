/* tests/tok_tool.c -- test-only program: GPT-2 BPE from the command line, for the
 * comparison with the reference encoder (tests/cli/test_tok_reference.sh) and for timing.
 *
 *   tok_tool encode VOCAB MERGES FILE...   ids of each file, space-separated, one line per file
 *   tok_tool roundtrip VOCAB MERGES FILE... exit 0 when decode(encode(file)) == file for all
 *   tok_tool bench VOCAB MERGES FILE...    tokens/s over the files (concatenated), twice:
 *                                          a cold word cache and a warm one
 * VOCAB and MERGES may both be "-" for the byte-level tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tok/tok.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap && !(buf = realloc(buf, cap *= 2)))
            break;
    }
    fclose(f);
    *len = n;
    return buf;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: tok_tool encode|roundtrip|bench VOCAB MERGES FILE...\n");
        return 2;
    }
    const char *cmd = argv[1];
    int bytes = strcmp(argv[2], "-") == 0;
    pst_err err = {0};
    tok_bpe *t;
    if (tok_bpe_create(&t, bytes ? NULL : argv[2], bytes ? NULL : argv[3], &err)) {
        fprintf(stderr, "tok_tool: %s\n", err.msg);
        return 1;
    }
    int status = 0;
    if (strcmp(cmd, "bench") == 0) {
        size_t total = 0;
        char *all = NULL;
        for (int i = 4; i < argc; i++) {
            size_t n;
            char *b = slurp(argv[i], &n);
            if (!b || !(all = realloc(all, total + n + 1))) {
                fprintf(stderr, "tok_tool: cannot read %s\n", argv[i]);
                return 1;
            }
            memcpy(all + total, b, n);
            total += n;
            free(b);
        }
        for (int pass = 0; pass < 2; pass++) {
            tok_ids ids = {0};
            double t0 = now_s();
            if (tok_encode(t, all, total, &ids, &err)) {
                fprintf(stderr, "tok_tool: %s\n", err.msg);
                return 1;
            }
            double dt = now_s() - t0;
            tok_stats st;
            tok_get_stats(t, &st);
            printf("%s cache: %zu bytes -> %zu tokens in %.3f s: %.0f tokens/s, %.1f MB/s "
                   "(cache %llu entries, %llu of %llu pieces hit)\n",
                   pass ? "warm" : "cold", total, ids.n, dt, (double)ids.n / dt,
                   (double)total / dt / 1e6, (unsigned long long)st.entries,
                   (unsigned long long)st.hits, (unsigned long long)st.pieces);
            tok_ids_fini(&ids);
        }
        free(all);
        tok_bpe_destroy(t);
        return 0;
    }
    for (int i = 4; i < argc; i++) {
        size_t n;
        char *text = slurp(argv[i], &n);
        tok_ids ids = {0};
        if (!text) {
            fprintf(stderr, "tok_tool: cannot read %s\n", argv[i]);
            return 1;
        }
        if (tok_encode(t, text, n, &ids, &err)) {
            fprintf(stderr, "tok_tool: %s: %s\n", argv[i], err.msg);
            status = 1;
        } else if (strcmp(cmd, "encode") == 0) {
            for (size_t k = 0; k < ids.n; k++)
                printf(k ? " %d" : "%d", ids.ids[k]);
            printf("\n");
        } else {
            char *back;
            size_t blen;
            if (tok_decode(t, ids.ids, ids.n, &back, &blen, &err)) {
                fprintf(stderr, "tok_tool: %s: %s\n", argv[i], err.msg);
                status = 1;
            } else if (blen != n || memcmp(back, text, n) != 0) {
                fprintf(stderr, "tok_tool: %s: decode(encode(x)) != x\n", argv[i]);
                status = 1;
            }
            free(back);
        }
        tok_ids_fini(&ids);
        free(text);
    }
    tok_bpe_destroy(t);
    return status;
}
