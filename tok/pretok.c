/* tok/pretok.c -- GPT-2's pre-tokenizer through PCRE2 (UTF mode, Unicode properties).
 *
 * The reference pattern is
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * in Python's `regex` module, where \s is the Unicode White_Space property. PCRE2's \s
 * (with PCRE2_UCP) also takes U+180E, and JavaScript's takes U+FEFF but not U+0085, so
 * the class is spelled out: White_Space is these 25 code points (Unicode's PropList.txt,
 * unchanged since Unicode 6.3). \p{L} and \p{N} come from PCRE2's Unicode tables. */
#include "tok_internal.h"

#include <assert.h>

#define WS                                                                                         \
    "\\t\\n\\x{0B}\\f\\r "                                                                         \
    "\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char pattern[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS
                              "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

int tok_regex_init(tok_bpe *t, pst_err *err)
{
    int code;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &at, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return pst_err_set(err, PST_ERR_STATE,
                           "tokenizer: PCRE2 refused GPT-2's pattern at %zu: %s", (size_t)at,
                           (const char *)msg);
    }
    /* The JIT is an optimisation: where it is not available the interpreter gives the
     * same matches. */
    (void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
    if (!(t->md = pcre2_match_data_create_from_pattern(t->re, NULL)))
        return pst_err_set(err, PST_ERR_NOMEM, "tokenizer: out of memory");
    return PST_OK;
}

void tok_regex_fini(tok_bpe *t)
{
    pcre2_match_data_free(t->md);
    pcre2_code_free(t->re);
    t->md = NULL;
    t->re = NULL;
}

int tok_pretokenize(tok_bpe *t, const char *text, size_t len, tok_piece_fn piece, void *ctx,
                    pst_err *err)
{
    /* The first match checks the whole text as UTF-8 (from the start offset to the end);
     * the later ones skip the check. */
    uint32_t opts = 0;
    for (size_t pos = 0; pos < len;) {
        int rc = pcre2_match(t->re, (PCRE2_SPTR)text, len, pos, opts, t->md, NULL);
        if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return pst_err_set(err, PST_ERR_DATA, "invalid UTF-8 at byte offset %zu (%s)",
                               (size_t)pcre2_get_startchar(t->md), (const char *)msg);
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return pst_err_set(err, PST_ERR_STATE, "pre-tokenizer: at byte %zu: %s", pos,
                               (const char *)msg);
        }
        opts = PCRE2_NO_UTF_CHECK;
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        /* Every character starts some alternative, so the pieces tile the text. */
        assert(ov[0] == pos && ov[1] > pos);
        if ((rc = piece(ctx, pos, ov[1] - pos)))
            return rc;
        pos = ov[1];
    }
    return PST_OK;
}
