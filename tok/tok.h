/* tok/tok.h -- GPT-2's byte-level BPE tokenizer, and a byte-level fallback.
 *
 * A tok_bpe turns UTF-8 text into token ids and back, exactly as GPT-2's reference encoder
 * (openai/gpt-2 encoder.py; the npm package gpt-3-encoder is a faithful port) does:
 *
 *   1. pre-tokenize: the text is cut into pieces by GPT-2's pattern
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      matched left to right (PCRE2 with Unicode properties; \s is Unicode White_Space,
 *      25 code points, as in Python's `regex` module, which the reference uses);
 *   2. each piece's UTF-8 bytes become symbols, one per byte (GPT-2's bytes_to_unicode
 *      table is how the vocabulary files spell bytes; it is undone once, at load);
 *   3. BPE: while some adjacent pair of symbols is a merge, every occurrence of the pair
 *      with the lowest rank (line in the merges file) is merged, left to right;
 *   4. each final symbol's id is its entry in the vocabulary.
 *
 * Files: encoder.json / vocab.json (JSON object: token -> id, ids 0..V-1 each once) and
 * vocab.bpe / merges.txt (optional "#version" first line, then one merge "A B" per line, in
 * rank order). Both spell tokens in GPT-2's byte alphabet. Without files the tokenizer is
 * byte-level: V = 256 and id = byte value (lossless for any bytes, no pre-tokenizer).
 *
 * Invalid UTF-8: the reference works on Python strings, which cannot hold it. The BPE
 * tokenizer refuses such text (PST_ERR_DATA, "invalid UTF-8 at byte offset N"), rather
 * than guessing a repair that the reference never made; the byte-level one takes any bytes.
 *
 * Threads: tok_encode uses the tok_bpe's scratch buffers and word cache, so one tok_bpe
 * serves one thread at a time; tok_decode and the getters only read it.
 *
 * Ownership: tok_ids belong to the caller (zero-initialise, fill, tok_ids_fini). */
#ifndef PSTRAIN_TOK_TOK_H
#define PSTRAIN_TOK_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct tok_bpe tok_bpe;

/* A growable array of token ids; {0} is an empty one. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} tok_ids;

void tok_ids_fini(tok_ids *v);
/* Room for n more ids (v->n unchanged); PST_ERR_NOMEM when it cannot grow. */
int tok_ids_reserve(tok_ids *v, size_t n);

/* From a vocabulary and a merges file, or the byte-level tokenizer when both paths are
 * NULL (one alone is PST_ERR_ARG). Refused with one line naming the file (and line or
 * token): a missing or unreadable file, not JSON or not an object of integer ids, ids not
 * exactly 0..V-1, a token that is not in GPT-2's byte alphabet, a vocabulary without one
 * of the 256 single-byte tokens, a merge line that is not two tokens, a merge whose
 * tokens (or their concatenation) are not in the vocabulary, a repeated merge. */
int tok_bpe_create(tok_bpe **out, const char *vocab_path, const char *merges_path, pst_err *err);
void tok_bpe_destroy(tok_bpe *t);

int tok_vocab_size(const tok_bpe *t); /* V; 256 for the byte-level tokenizer */
int tok_merge_count(const tok_bpe *t);
int tok_is_bytes(const tok_bpe *t); /* 1 for the byte-level tokenizer */
/* The bytes of token id (not NUL-terminated), NULL for an id outside [0, V). */
const uint8_t *tok_token_bytes(const tok_bpe *t, int32_t id, size_t *len);

/* Appends the ids of text[0, len) to out. Refused: invalid UTF-8 (BPE only; the message
 * names the byte offset), no memory. On failure out holds what it held before. */
int tok_encode(tok_bpe *t, const char *text, size_t len, tok_ids *out, pst_err *err);

/* The bytes of ids[0, n) concatenated into a malloc'd buffer (*out, *len; a NUL follows
 * the bytes, not counted). An id outside [0, V) is PST_ERR_DATA naming its index. */
int tok_decode(const tok_bpe *t, const int32_t *ids, size_t n, char **out, size_t *len,
               pst_err *err);

/* GPT-2's pre-tokenizer alone: calls piece(ctx, offset, length) for each piece of
 * text[0, len), in order (the pieces tile the text); a non-zero return stops it and is
 * returned. Invalid UTF-8 is PST_ERR_DATA naming the byte offset. For tests and tools. */
typedef int (*tok_piece_fn)(void *ctx, size_t off, size_t len);
int tok_pretokenize(tok_bpe *t, const char *text, size_t len, tok_piece_fn piece, void *ctx,
                    pst_err *err);

/* Word cache figures since create: pieces encoded, found in the cache, entries now. */
typedef struct {
    uint64_t pieces, hits, entries;
} tok_stats;
void tok_get_stats(const tok_bpe *t, tok_stats *s);

#endif
