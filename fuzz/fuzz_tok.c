/* fuzz/fuzz_tok.c -- GPT-2's BPE encoder (tok/) on arbitrary bytes.
 *
 * A small byte-level BPE vocabulary (the 256 bytes and a few English merges, written once
 * to a temporary folder) and the byte-level tokenizer encode the input. Checked:
 *   - BPE accepts exactly the valid UTF-8 inputs (a strict validator here: no overlong
 *     forms, no surrogates, nothing past U+10FFFF), and a refusal is PST_ERR_DATA, one
 *     line, "invalid UTF-8 at byte offset N" with N the first bad sequence's offset;
 *   - accepted: every id in [0, V), at most one id per byte, decode gives the input back,
 *     and the pre-tokenizer's pieces tile it;
 *   - the byte-level tokenizer gives one id per byte and round-trips everything. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz/fuzz_common.h"
#include "tok/tok.h"

/* Offset of the first invalid UTF-8 sequence, or n when all is valid (RFC 3629). */
static size_t first_invalid(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 3, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (i + k > n)
            return i;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return i;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000))
            return i;
        i += k;
    }
    return n;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror("fuzz_tok: writing the vocabulary");
        abort();
    }
}

/* The 256 bytes as GPT-2 spells them, then merges of common English pairs. */
static tok_bpe *small_bpe(void)
{
    static const char *const merges[] = {"\xc4\xa0 t", "h e",       "\xc4\xa0t he", "i n",
                                         "e r",        "a n",       "\xc4\xa0 a",   "o n",
                                         "r e",        "\xc4\xa0 s"};
    static const char *const made[] = {"\\u0120t", "he",       "\\u0120the", "in", "er",
                                       "an",       "\\u0120a", "on",         "re", "\\u0120s"};
    char dir[128], vp[160], mp[160];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/pstrain-fuzz-tok-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("fuzz_tok: mkdtemp");
        abort();
    }
    snprintf(vp, sizeof vp, "%s/encoder.json", dir);
    snprintf(mp, sizeof mp, "%s/vocab.bpe", dir);
    char *v = malloc(1 << 16), m[1024];
    size_t n = (size_t)snprintf(v, 1 << 16, "{"),
           k = (size_t)snprintf(m, sizeof m, "#version: 0.2\n");
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        int cp = printable ? b : 256 + extra++;
        n += (size_t)snprintf(v + n, (1 << 16) - n, "%s\"\\u%04x\": %d", b ? ", " : "", cp, b);
    }
    for (int i = 0; i < 10; i++) {
        n += (size_t)snprintf(v + n, (1 << 16) - n, ", \"%s\": %d", made[i], 256 + i);
        k += (size_t)snprintf(m + k, sizeof m - k, "%s\n", merges[i]);
    }
    snprintf(v + n, (1 << 16) - n, "}");
    put(vp, v);
    put(mp, m);
    free(v);
    tok_bpe *t;
    pst_err err = {0};
    if (tok_bpe_create(&t, vp, mp, &err)) {
        fprintf(stderr, "fuzz_tok: %s\n", err.msg);
        abort();
    }
    unlink(vp);
    unlink(mp);
    rmdir(dir);
    return t;
}

static int count_piece(void *ctx, size_t off, size_t len)
{
    size_t *next = ctx;
    if (off != *next || len == 0)
        abort(); /* pieces must tile the text */
    *next = off + len;
    return 0;
}

static void round_trip(const tok_bpe *t, const tok_ids *ids, const uint8_t *data, size_t size)
{
    char *back;
    size_t blen;
    pst_err err = {0};
    if (tok_decode(t, ids->ids, ids->n, &back, &blen, &err) || blen != size ||
        memcmp(back, data, size) != 0) {
        fprintf(stderr, "fuzz_tok: decode(encode(x)) != x\n");
        abort();
    }
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Harness state, built once: the tokenizers are read-only apart from their caches. */
    static tok_bpe *bpe, *bytes;
    if (!bpe) {
        bpe = small_bpe();
        if (tok_bpe_create(&bytes, NULL, NULL, NULL))
            abort();
    }
    pst_err err = {0};
    tok_ids ids = {0};
    size_t bad = first_invalid(data, size);
    int rc = tok_encode(bpe, (const char *)data, size, &ids, &err);
    if (bad < size) {
        char want[80];
        snprintf(want, sizeof want, "invalid UTF-8 at byte offset %zu ", bad);
        fuzz_check_msg(err.msg);
        if (rc != PST_ERR_DATA || ids.n != 0 || strncmp(err.msg, want, strlen(want)) != 0) {
            fprintf(stderr, "fuzz_tok: invalid at %zu, got rc %d \"%s\"\n", bad, rc, err.msg);
            abort();
        }
    } else {
        if (rc != PST_OK || ids.n > size) {
            fprintf(stderr, "fuzz_tok: valid UTF-8 refused: rc %d \"%s\"\n", rc, err.msg);
            abort();
        }
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || ids.ids[i] >= tok_vocab_size(bpe))
                abort();
        round_trip(bpe, &ids, data, size);
        size_t next = 0;
        if (tok_pretokenize(bpe, (const char *)data, size, count_piece, &next, &err) ||
            next != size)
            abort();
    }
    tok_ids_fini(&ids);
    if (tok_encode(bytes, (const char *)data, size, &ids, &err) || ids.n != size)
        abort();
    round_trip(bytes, &ids, data, size);
    tok_ids_fini(&ids);
    return 0;
}
