/* tests/test_tok_windows.c -- `data.format: text` (data/textwin.c): windows of a token
 * stream, the token cache (miss, hit, stale text, stale tokenizer, damaged files), refused
 * inputs, split and partition, and the job keys (data.tokenizer, data.context). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tmp_files.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/textwin.h"
#include "job/job.h"
#include "worker/textprep.h"

static char dir[TMP_DIR_MAX];

static int group_setup(void **state)
{
    (void)state;
    return tmp_dir_make(dir, "/tmp/pst_test_tokwin");
}

static int group_teardown(void **state)
{
    (void)state;
    return tmp_dir_remove(dir);
}

static const char *path_of(const char *name)
{
    static char p[4][256];
    static int k;
    char *s = p[k++ % 4];
    snprintf(s, 256, "%s/%s", dir, name);
    return s;
}

static const char *put(const char *name, const void *data, size_t n)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return p;
}

/* A minimal BPE tokenizer folder (GPT-2's file names): the 256 bytes, spelled as GPT-2
 * spells them, plus "ab" from the one merge "a b". */
static const char *put_tokenizer(const char *name, int with_merge)
{
    const char *d = path_of(name);
    mkdir(d, 0755);
    char *s = malloc(65536), vp[300], mp[300];
    assert_non_null(s);
    size_t n = (size_t)snprintf(s, 65536, "{");
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        int cp = b;
        if (!printable)
            cp = 256 + extra++;
        char sp[4] = {0};
        if (cp < 0x80) {
            sp[0] = (char)cp;
        } else {
            sp[0] = (char)(0xC0 | cp >> 6);
            sp[1] = (char)(0x80 | (cp & 0x3F));
        }
        n += (size_t)snprintf(s + n, 65536 - n, "%s\"%s%s\": %d", b ? ", " : "",
                              (cp == '"' || cp == '\\') ? "\\" : "", sp, b);
    }
    snprintf(s + n, 65536 - n, ", \"ab\": 256}");
    snprintf(vp, sizeof vp, "%s/encoder.json", d);
    snprintf(mp, sizeof mp, "%s/vocab.bpe", d);
    FILE *f = fopen(vp, "wb");
    fputs(s, f);
    fclose(f);
    f = fopen(mp, "wb");
    fputs(with_merge ? "#version: 0.2\na b\n" : "#version: 0.2\n", f);
    fclose(f);
    free(s);
    return d;
}

/* ---- windows ------------------------------------------------------------------------ */

static void test_windows_of_bytes(void **state)
{
    (void)state;
    /* 11 bytes, context 3: (11 - 1) / 3 = 3 windows, ids [0,3], [3,6], [6,9]; the last
     * id (index 10) is left out. */
    const char *p = put("abc.txt", "0123456789X", 11);
    ds_textwin_options o = {.context = 3};
    ds_cache_result c;
    pst_err err = {0};
    ds_windows *w = ds_textwin_load(p, &o, &c, &err);
    assert_non_null(w);
    assert_int_equal(c, DS_CACHE_OFF);
    assert_int_equal(ds_windows_count(w), 3);
    assert_int_equal(ds_windows_context(w), 3);
    assert_int_equal(ds_windows_vocab(w), 256);
    assert_int_equal(ds_windows_stream(w), 11);
    const int32_t *t = ds_windows_tokens(w);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            assert_int_equal(t[i * 4 + j], '0' + 3 * i + j);
    ds_windows_destroy(w);
    /* Exactly one window: context + 1 tokens. */
    o.context = 10;
    assert_non_null(w = ds_textwin_load(p, &o, NULL, &err));
    assert_int_equal(ds_windows_count(w), 1);
    ds_windows_destroy(w);
}

static void test_windows_bpe(void **state)
{
    (void)state;
    const char *tk = put_tokenizer("tok1", 1);
    const char *p = put("ab.txt", "ab ab abab", 10);
    ds_textwin_options o = {.tokenizer = tk, .context = 2};
    pst_err err = {0};
    ds_windows *w = ds_textwin_load(p, &o, NULL, &err);
    if (!w)
        fail_msg("%s", err.msg);
    /* Pieces "ab", " ab", " abab" -> ab | ' ' ab | ' ' ab ab (the one merge is "a b"):
     * 6 ids, (6 - 1) / 2 = 2 windows of 3, sharing id 2. */
    assert_int_equal(ds_windows_vocab(w), 257);
    assert_int_equal(ds_windows_stream(w), 6);
    static const int32_t want[] = {256, ' ', 256, 256, ' ', 256};
    assert_int_equal(ds_windows_count(w), 2);
    assert_memory_equal(ds_windows_tokens(w), want, sizeof want);
    ds_windows_destroy(w);
}

static void expect_load_error(const char *path, const ds_textwin_options *o, int code,
                              const char *want)
{
    pst_err err = {0};
    ds_windows *w = ds_textwin_load(path, o, NULL, &err);
    assert_null(w);
    assert_int_equal(err.code, code);
    if (!strstr(err.msg, want))
        fail_msg("expected \"%s\" in \"%s\"", want, err.msg);
    assert_null(strchr(err.msg, '\n'));
}

static void test_refused(void **state)
{
    (void)state;
    ds_textwin_options o = {.context = 8};
    expect_load_error(path_of("missing.txt"), &o, PST_ERR_IO, "missing.txt: No such file");
    expect_load_error(put("empty.txt", "", 0), &o, PST_ERR_DATA,
                      "empty.txt: empty file (no text to tokenize)");
    expect_load_error(put("short.txt", "tiny", 4), &o, PST_ERR_DATA,
                      "short.txt: 4 tokens, shorter than one window of 9 (context 8 + 1)");
    o.tokenizer = put_tokenizer("tok2", 1);
    expect_load_error(put("bad.txt", "fine text \xff then not", 20), &o, PST_ERR_DATA,
                      "bad.txt: invalid UTF-8 at byte offset 10");
    o.tokenizer = dir; /* a folder without the files */
    expect_load_error(put("ok.txt", "some text here", 14), &o, PST_ERR_CONFIG,
                      "no tokenizer files (encoder.json + vocab.bpe, or vocab.json + merges.txt)");
    o.tokenizer = path_of("nofolder");
    expect_load_error(path_of("ok.txt"), &o, PST_ERR_CONFIG, "nofolder: tokenizer folder: No such");
    /* Bad tokenizer files come with tok_bpe_create's message naming the file. */
    const char *tk = put_tokenizer("tok3", 1);
    char vp[300];
    snprintf(vp, sizeof vp, "%s/encoder.json", tk);
    FILE *f = fopen(vp, "wb");
    fputs("not json", f);
    fclose(f);
    o.tokenizer = tk;
    expect_load_error(path_of("ok.txt"), &o, PST_ERR_DATA, "encoder.json: not a JSON object");
}

/* ---- the cache ---------------------------------------------------------------------- */

static ds_cache_result load_c(const char *p, const ds_textwin_options *o, int64_t *stream)
{
    ds_cache_result c = DS_CACHE_OFF;
    pst_err err = {0};
    ds_windows *w = ds_textwin_load(p, o, &c, &err);
    if (!w)
        fail_msg("%s", err.msg);
    *stream = ds_windows_stream(w);
    ds_windows_destroy(w);
    return c;
}

static void test_cache(void **state)
{
    (void)state;
    char cache[300], file[400];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    const char *tk = put_tokenizer("tok4", 1);
    const char *p = put("c.txt", "ab ab ab ab ab ab ab", 20);
    log_ctx lg;
    FILE *logf = tmpfile();
    assert_non_null(logf);
    log_init(&lg, "test", -1, logf);
    ds_textwin_options o = {.tokenizer = tk, .context = 2, .cache_dir = cache, .log = &lg};
    int64_t n;
    assert_int_equal(load_c(p, &o, &n), DS_CACHE_MISS);
    assert_int_equal(n, 13); /* ab + 6 x (' ', ab) */
    assert_int_equal(load_c(p, &o, &n), DS_CACHE_HIT);
    assert_int_equal(n, 13);
    /* The text changed: stale, tokenized again. */
    put("c.txt", "ab ab ab ab ab ab abab", 22);
    assert_int_equal(load_c(p, &o, &n), DS_CACHE_STALE);
    assert_int_equal(n, 14);
    assert_int_equal(load_c(p, &o, &n), DS_CACHE_HIT);
    /* The tokenizer changed (no merge now): stale again, and bytes come out. */
    put_tokenizer("tok4", 0);
    assert_int_equal(load_c(p, &o, &n), DS_CACHE_STALE);
    assert_int_equal(n, 22);
    assert_int_equal(load_c(p, &o, &n), DS_CACHE_HIT);
    /* The byte-level tokenizer keys the cache too. */
    o.tokenizer = NULL;
    assert_int_equal(load_c(p, &o, &n), DS_CACHE_STALE);
    assert_int_equal(load_c(p, &o, &n), DS_CACHE_HIT);
    assert_int_equal(n, 22);

    /* Damaged files: each is rebuilt (and then hit). */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s/c.txt-*.tokens > %s/name", cache, dir);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(path_of("name"), "r");
    assert_non_null(fgets(file, sizeof file, f));
    fclose(f);
    file[strcspn(file, "\n")] = '\0';
    f = fopen(file, "rb");
    unsigned char good[4096];
    size_t len = fread(good, 1, sizeof good, f);
    fclose(f);
    assert_int_equal(len, 48 + 4 * 22);
    struct {
        size_t at; /* byte to change, or a cut when cut is set */
        int cut;
    } damage[] = {{0, 0},       {47, 0}, {48 + 5, 0}, {len - 1, 0},
                  {len - 2, 1}, {30, 1}, {0, 1},      {33, 0}};
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        unsigned char bad[4096];
        memcpy(bad, good, len);
        size_t n2 = len;
        if (damage[i].cut)
            n2 = damage[i].at;
        else
            bad[damage[i].at] ^= 0x40;
        f = fopen(file, "wb");
        fwrite(bad, 1, n2, f);
        fclose(f);
        ds_cache_result c = load_c(p, &o, &n);
        if (c != DS_CACHE_DAMAGED)
            fail_msg("damage %zu: cache result %d, expected damaged", i, (int)c);
        assert_int_equal(n, 22);
        assert_int_equal(load_c(p, &o, &n), DS_CACHE_HIT);
    }
    /* Each rebuild said so in a log line naming the cache file. */
    char line[1024];
    int rebuilt = 0;
    rewind(logf);
    while (fgets(line, sizeof line, logf))
        rebuilt += strstr(line, " warn: token cache ") && strstr(line, "; tokenizing ") &&
                   strstr(line, "c.txt again");
    assert_int_equal(rebuilt, 3 + 8); /* 3 stale, 8 damaged */
    /* A cache folder that cannot be written is logged and not an error. */
    o.cache_dir = "/proc/pstrain-no-such-cache";
    assert_int_equal(load_c(p, &o, &n), DS_CACHE_MISS);
    assert_int_equal(n, 22);
    fclose(logf);
}

/* ---- split and partition ------------------------------------------------------------ */

static void test_split_partition(void **state)
{
    (void)state;
    char text[1001];
    for (int i = 0; i < 1000; i++)
        text[i] = (char)('a' + i % 26);
    const char *p = put("long.txt", text, 1000);
    ds_textwin_options o = {.context = 9};
    pst_err err = {0};
    ds_windows *w = ds_textwin_load(p, &o, NULL, &err);
    assert_non_null(w);
    int64_t n = ds_windows_count(w);
    assert_int_equal(n, 111); /* (1000 - 1) / 9 */
    /* Partitions are disjoint and cover every window (windows are all different here:
     * each starts 9 letters after the last, 9 and 26 coprime). */
    int64_t total = 0;
    unsigned char *seen = calloc((size_t)n, 1);
    for (int k = 0; k < 3; k++) {
        ds_windows *part = ds_windows_partition(w, 3, k, 42, &err);
        assert_non_null(part);
        int64_t m = ds_windows_count(part);
        assert_true(m == 37);
        for (int64_t r = 0; r < m; r++) {
            const int32_t *row = ds_windows_tokens(part) + r * 10;
            /* Which window is it? Search the source (windows are all different). */
            int64_t hit = -1;
            for (int64_t s = 0; s < n && hit < 0; s++)
                if (!memcmp(ds_windows_tokens(w) + s * 10, row, 10 * sizeof *row) && !seen[s])
                    hit = s;
            assert_true(hit >= 0);
            seen[hit] = 1;
        }
        total += m;
        ds_windows_destroy(part);
    }
    assert_int_equal(total, n);
    free(seen);
    ds_windows *tr, *va;
    assert_int_equal(ds_windows_split(w, 0.1, 7, &tr, &va, &err), PST_OK);
    assert_int_equal(ds_windows_count(va), 11);
    assert_int_equal(ds_windows_count(tr), 100);
    /* Same seed, same split. */
    ds_windows *tr2, *va2;
    assert_int_equal(ds_windows_split(w, 0.1, 7, &tr2, &va2, &err), PST_OK);
    assert_memory_equal(ds_windows_tokens(va), ds_windows_tokens(va2), 11 * 10 * sizeof(int32_t));
    ds_windows_destroy(tr);
    ds_windows_destroy(va);
    ds_windows_destroy(tr2);
    ds_windows_destroy(va2);
    ds_windows_destroy(w);
}

/* ---- job keys ----------------------------------------------------------------------- */

static void test_job_keys(void **state)
{
    (void)state;
    static const char ok[] =
        "data: {format: text, train: corpus.txt, tokenizer: gpt2, context: 64}\n"
        "model: {layers: [{type: dense, units: 4, activation: softmax}]}\n";
    cfg_job *j;
    pst_err err = {0};
    assert_int_equal(cfg_job_load_string(&j, ok, strlen(ok), "t.yaml", &err), PST_OK);
    assert_int_equal(j->data.format, CFG_FMT_TEXT);
    assert_string_equal(j->data.tokenizer, "gpt2");
    assert_int_equal(j->data.context, 64);
    uint64_t h = cfg_job_hash(j);
    /* --print-config round trip; the override path; context is in the fingerprint, the
     * tokenizer folder (a path) is not. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(cfg_job_print(j, f, &err), PST_OK);
    fclose(f);
    assert_non_null(strstr(text, "  tokenizer: \"gpt2\"\n  context: 64\n"));
    cfg_job *back;
    assert_int_equal(cfg_job_load_string(&back, text, len, "printed", &err), PST_OK);
    assert_int_equal(cfg_job_hash(back), h);
    assert_int_equal(cfg_override(back, "data.tokenizer", "/elsewhere/gpt2", &err), PST_OK);
    assert_int_equal(cfg_job_hash(back), h);
    assert_int_equal(cfg_override(back, "data.context", "32", &err), PST_OK);
    assert_int_equal(cfg_job_check(back, &err), PST_OK);
    assert_true(cfg_job_hash(back) != h);
    cfg_job_free(back);
    free(text);
    cfg_job_free(j);

    static const char *const bad[][2] = {
        {"data: {format: text, train: a}\n", "data.context: format text needs 1..1048576"},
        {"data: {format: text, train: a, context: 0}\n", "data.context: format text needs"},
        {"data: {format: text, train: a, context: -5}\n", "got -5"},
        {"data: {format: csv, train: a, context: 5}\n", "data.context: only for format text"},
        {"data: {format: csv, train: a, tokenizer: t}\n", "data.tokenizer: only for format text"},
        {"data: {format: text, train: a, context: 4, train_labels: b}\n",
         "data.train_labels: format text has no labels files"},
        {"data: {format: txt, train: a}\n", "data.format"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml,
                 "%smodel: {layers: [{type: dense, units: 4, activation: softmax}]}\n", bad[i][0]);
        cfg_job *x = NULL;
        assert_int_equal(cfg_job_load_string(&x, yaml, strlen(yaml), "t.yaml", &err),
                         PST_ERR_CONFIG);
        if (!strstr(err.msg, bad[i][1]))
            fail_msg("case %zu: expected \"%s\" in \"%s\"", i, bad[i][1], err.msg);
    }
}

/* A job's windows (worker/textprep.c): validation split, partitions across workers, the
 * cache in <output.dir>/token-cache, and a real text when Debian's fortunes are there. */
static void test_job_windows(void **state)
{
    (void)state;
    const char *text = "/usr/share/games/fortunes/debian";
    char small[2000];
    for (int i = 0; i < 1999; i++)
        small[i] = (char)('a' + i % 23);
    if (access(text, R_OK) != 0)
        text = put("job.txt", small, 1999);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "data: {format: text, train: %s, test: %s, context: 16, validation_split: 0.1}\n"
             "model: {layers: [{type: dense, units: 4, activation: softmax}]}\n"
             "output: {dir: %s/run}\n",
             text, text, dir);
    cfg_job *j;
    pst_err err = {0};
    assert_int_equal(cfg_job_load_string(&j, yaml, strlen(yaml), "t.yaml", &err), PST_OK);
    wk_text all, part[2];
    assert_int_equal(wk_text_load(j, 1, 0, NULL, &all, &err), PST_OK);
    int64_t n = ds_windows_count(all.test);
    assert_true(n >= 10);
    assert_int_equal(ds_windows_count(all.val), (int64_t)llround(0.1 * (double)n));
    assert_int_equal(ds_windows_count(all.train) + ds_windows_count(all.val), n);
    int64_t sum = 0;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(wk_text_load(j, 2, k, NULL, &part[k], &err), PST_OK);
        sum += ds_windows_count(part[k].train);
        /* The validation windows do not depend on the partition. */
        assert_memory_equal(ds_windows_tokens(part[k].val), ds_windows_tokens(all.val),
                            (size_t)ds_windows_count(all.val) * 17 * sizeof(int32_t));
    }
    assert_int_equal(sum, ds_windows_count(all.train));
    char cache[300];
    snprintf(cache, sizeof cache, "%s/run/token-cache", dir);
    assert_int_equal(access(cache, F_OK), 0);
    for (int k = 0; k < 2; k++)
        wk_text_fini(&part[k]);
    wk_text_fini(&all);
    cfg_job_free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows_of_bytes), cmocka_unit_test(test_windows_bpe),
        cmocka_unit_test(test_refused),          cmocka_unit_test(test_cache),
        cmocka_unit_test(test_split_partition),  cmocka_unit_test(test_job_keys),
        cmocka_unit_test(test_job_windows),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
