/* tok/vocab.c -- reading encoder.json / vocab.json and vocab.bpe / merges.txt.
 *
 * Both files spell bytes in GPT-2's alphabet (bytes_to_unicode in openai/gpt-2
 * encoder.py): the 188 printable bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for
 * themselves (as code points), and the other 68 bytes, in increasing order, are code
 * points 256, 257, ... The table is computed here the way the reference computes it, and
 * every token is turned back into raw bytes once, at load. */
#include "tok_internal.h"

#include <cjson/cJSON.h>

#include "base/fs.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2's alphabet inverted: code point (< 324) -> byte, -1 when no byte maps to it. */
static void byte_alphabet(int16_t cp_to_byte[324])
{
    for (int c = 0; c < 324; c++)
        cp_to_byte[c] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        cp_to_byte[printable ? b : 256 + extra++] = (int16_t)b;
    }
}

uint64_t tok_hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, then a final mix so low bits spread */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return h ? h : 1;
}

/* One UTF-8 sequence at s[0, n) (already valid: cJSON's output or checked text): its code
 * point and length, or -1 for a malformed one. */
static int utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    int k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : -1;
    if (k < 0 || (size_t)k > n)
        return -1;
    uint32_t v = k == 1 ? c : c & (0x7F >> k);
    for (int i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return -1;
        v = v << 6 | (s[i] & 0x3F);
    }
    *cp = v;
    return k;
}

/* GPT-2 spelling -> raw bytes into out (capacity >= strlen(s)); -1 when a character is
 * not in the alphabet. */
static long unspell(const int16_t cp_to_byte[324], const char *s, size_t n, uint8_t *out)
{
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t cp;
        int step = utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (step < 0 || cp >= 324 || cp_to_byte[cp] < 0)
            return -1;
        out[k++] = (uint8_t)cp_to_byte[cp];
        i += (size_t)step;
    }
    return (long)k;
}

/* A token as the file spells it, shortened and with control characters as '?', for
 * one-line messages. */
static const char *show(const char *s, size_t n, char buf[48])
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < 40; i++)
        buf[k++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    if (n > 40)
        memcpy(buf + k, "...", 3), k += 3;
    buf[k] = '\0';
    return buf;
}

/* ---- token bytes -> id, for reading the merges (freed after load) --------------------- */

typedef struct {
    const tok_bpe *t;
    int32_t *slot; /* (cap) token ids, -1 free */
    size_t cap;
} tok_index;

static int32_t index_find(const tok_index *x, const uint8_t *p, size_t n)
{
    size_t mask = x->cap - 1;
    for (size_t i = tok_hash_bytes(p, n) & mask;; i = (i + 1) & mask) {
        int32_t id = x->slot[i];
        if (id < 0)
            return -1;
        size_t len = x->t->off[id + 1] - x->t->off[id];
        if (len == n && memcmp(x->t->blob + x->t->off[id], p, n) == 0)
            return id;
    }
}

/* -1 when the bytes of id are already there (under another id). */
static int index_add(tok_index *x, int32_t id)
{
    const uint8_t *p = x->t->blob + x->t->off[id];
    size_t n = x->t->off[id + 1] - x->t->off[id];
    if (index_find(x, p, n) >= 0)
        return -1;
    size_t mask = x->cap - 1;
    size_t i = tok_hash_bytes(p, n) & mask;
    while (x->slot[i] >= 0)
        i = (i + 1) & mask;
    x->slot[i] = id;
    return 0;
}

/* ---- encoder.json ------------------------------------------------------------------- */

static int load_vocab(tok_bpe *t, const char *path, const int16_t cp_to_byte[324], pst_err *err)
{
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    char sh[48];
    int rc = fs_read_all(path, &text, &len, err);
    if (rc)
        return rc;
    root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: not a JSON object of tokens and ids (an encoder.json or "
                         "vocab.json)",
                         path);
        goto cleanup;
    }
    int V = cJSON_GetArraySize(root);
    if (V < 256) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: %d tokens; a byte-level vocabulary has at least the 256 bytes", path,
                         V);
        goto cleanup;
    }
    size_t keybytes = 0;
    for (cJSON *e = root->child; e; e = e->next)
        keybytes += strlen(e->string);
    t->V = V;
    t->off = calloc((size_t)V + 1, sizeof *t->off);
    uint32_t *lens = calloc((size_t)V, sizeof *lens);
    uint8_t *tmp = malloc(keybytes + 1);
    t->blob = malloc(keybytes + 1);
    if (!t->off || !lens || !tmp || !t->blob || keybytes > UINT32_MAX) {
        free(lens);
        free(tmp);
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    /* Pass 1: ids valid and each once; lengths. Pass 2: bytes in id order. */
    for (cJSON *e = root->child; e && !rc; e = e->next) {
        size_t n = strlen(e->string);
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1.0;
        long spelled = unspell(cp_to_byte, e->string, n, tmp);
        if (!(v >= 0 && v < V && v == (double)(int32_t)v))
            rc = pst_err_set(err, PST_ERR_DATA,
                             "%s: token \"%s\": id must be an integer in [0, %d) (ids 0..V-1, "
                             "each once)",
                             path, show(e->string, n, sh), V);
        else if (spelled <= 0)
            rc = pst_err_set(err, PST_ERR_DATA, "%s: token \"%s\" (id %d) is %s", path,
                             show(e->string, n, sh), (int)v,
                             n == 0 ? "empty" : "not spelled in GPT-2's byte alphabet");
        else if (lens[(int32_t)v])
            rc = pst_err_set(err, PST_ERR_DATA, "%s: id %d is given to two tokens", path, (int)v);
        else
            lens[(int32_t)v] = (uint32_t)spelled;
    }
    if (!rc) {
        for (int i = 0; i < V; i++)
            t->off[i + 1] = t->off[i] + lens[i];
        for (cJSON *e = root->child; e; e = e->next) {
            int32_t id = (int32_t)e->valuedouble;
            unspell(cp_to_byte, e->string, strlen(e->string), t->blob + t->off[id]);
        }
    }
    free(lens);
    free(tmp);
cleanup:
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* ---- vocab.bpe ---------------------------------------------------------------------- */

static int pair_insert(tok_bpe *t, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = t->pairs_cap - 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & mask;
    while (t->pairs[i].key != TOK_EMPTY_KEY) {
        if (t->pairs[i].key == key)
            return t->pairs[i].rank; /* already there: its rank */
        i = (i + 1) & mask;
    }
    t->pairs[i] = (tok_pair){key, rank, id};
    return -1;
}

int tok_pair_find(const tok_bpe *t, int32_t a, int32_t b, int32_t *rank, int32_t *id)
{
    if (!t->pairs_cap)
        return 0;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = t->pairs_cap - 1;
    for (size_t i = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & mask;; i = (i + 1) & mask) {
        const tok_pair *p = &t->pairs[i];
        if (p->key == key) {
            *rank = p->rank;
            *id = p->id;
            return 1;
        }
        if (p->key == TOK_EMPTY_KEY)
            return 0;
    }
}

/* One merge line "A B" (line number ln, 1-based) at s[0, n). */
static int merge_line(tok_bpe *t, const tok_index *x, const int16_t cp_to_byte[324],
                      const char *path, size_t ln, char *s, size_t n, uint8_t *scratch,
                      pst_err *err)
{
    char sh[48], sh2[48];
    const char *f[3];
    size_t fl[3];
    int nf = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
            i++;
        if (i == n)
            break;
        size_t j = i;
        while (j < n && s[j] != ' ' && s[j] != '\t' && s[j] != '\r')
            j++;
        if (nf < 3) {
            f[nf] = s + i;
            fl[nf] = j - i;
        }
        nf++;
        i = j;
    }
    if (nf == 0)
        return PST_OK; /* blank line */
    if (nf != 2)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%zu: a merge is two tokens separated by a space, found %d", path, ln,
                           nf);
    int32_t id[2];
    long len[2];
    for (int k = 0; k < 2; k++) {
        len[k] = unspell(cp_to_byte, f[k], fl[k], scratch + (k ? len[0] : 0));
        if (len[k] <= 0)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s:%zu: token \"%s\" is not spelled in GPT-2's byte alphabet", path,
                               ln, show(f[k], fl[k], sh));
        if ((id[k] = index_find(x, scratch + (k ? len[0] : 0), (size_t)len[k])) < 0)
            return pst_err_set(err, PST_ERR_DATA, "%s:%zu: token \"%s\" is not in the vocabulary",
                               path, ln, show(f[k], fl[k], sh));
    }
    int32_t made = index_find(x, scratch, (size_t)(len[0] + len[1]));
    if (made < 0)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%zu: merge \"%s %s\" makes a token that is not in the "
                           "vocabulary",
                           path, ln, show(f[0], fl[0], sh), show(f[1], fl[1], sh2));
    int old = pair_insert(t, id[0], id[1], t->nmerges, made);
    if (old >= 0)
        return pst_err_set(err, PST_ERR_DATA, "%s:%zu: merge \"%s %s\" repeats merge %d", path, ln,
                           show(f[0], fl[0], sh), show(f[1], fl[1], sh2), old + 1);
    t->nmerges++;
    return PST_OK;
}

static int load_merges(tok_bpe *t, const char *path, const int16_t cp_to_byte[324], pst_err *err)
{
    char *text = NULL;
    size_t len = 0;
    tok_index x = {t, NULL, 0};
    uint8_t *scratch = NULL;
    int rc = fs_read_all(path, &text, &len, err);
    if (rc)
        return rc;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    for (x.cap = 1; x.cap < 2 * (size_t)t->V; x.cap <<= 1)
        ;
    for (t->pairs_cap = 1; t->pairs_cap < 2 * lines; t->pairs_cap <<= 1)
        ;
    x.slot = malloc(x.cap * sizeof *x.slot);
    t->pairs = malloc(t->pairs_cap * sizeof *t->pairs);
    scratch = malloc(len + 1);
    if (!x.slot || !t->pairs || !scratch) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    memset(x.slot, 0xff, x.cap * sizeof *x.slot);
    for (size_t i = 0; i < t->pairs_cap; i++)
        t->pairs[i].key = TOK_EMPTY_KEY;
    for (int32_t id = 0; id < t->V; id++)
        if (index_add(&x, id)) {
            char sh[48];
            rc = pst_err_set(
                err, PST_ERR_DATA, "vocabulary: token \"%s\" appears twice",
                show((const char *)t->blob + t->off[id], t->off[id + 1] - t->off[id], sh));
            goto cleanup;
        }
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        if ((t->byte_id[b] = index_find(&x, &c, 1)) < 0) {
            rc = pst_err_set(err, PST_ERR_DATA,
                             "vocabulary: byte 0x%02x has no token (a byte-level BPE "
                             "vocabulary holds all 256 bytes)",
                             b);
            goto cleanup;
        }
    }
    /* The reference drops the first line ("#version: 0.2"); so do Hugging Face's readers
     * when it starts with "#version". A file without it keeps its first line. */
    size_t ln = 1;
    for (size_t i = 0; i < len && !rc; ln++) {
        size_t j = i;
        while (j < len && text[j] != '\n')
            j++;
        if (!(ln == 1 && strncmp(text + i, "#version", 8) == 0)) {
            if (memchr(text + i, '\0', j - i))
                rc = pst_err_set(err, PST_ERR_DATA, "%s:%zu: NUL byte (not a merges file)", path,
                                 ln);
            else
                rc = merge_line(t, &x, cp_to_byte, path, ln, text + i, j - i, scratch, err);
        }
        i = j + 1;
    }
cleanup:
    free(x.slot);
    free(scratch);
    free(text);
    return rc;
}

int tok_load_files(tok_bpe *t, const char *vocab_path, const char *merges_path, pst_err *err)
{
    int16_t cp_to_byte[324];
    byte_alphabet(cp_to_byte);
    int rc = load_vocab(t, vocab_path, cp_to_byte, err);
    if (!rc)
        rc = load_merges(t, merges_path, cp_to_byte, err);
    if (rc && err && strncmp(err->msg, "vocabulary:", 11) == 0)
        pst_err_prefix(err, "%s", vocab_path);
    return rc;
}
