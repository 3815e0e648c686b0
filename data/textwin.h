/* data/textwin.h -- `data.format: text`: a text file as windows of token ids, for
 * language-model training.
 *
 * Legend: L = tokens of the whole file, T = context (tokens a model sees), N = windows.
 * The file is tokenized once (tok/: GPT-2's BPE, or bytes) into L ids, and cut into
 *   N = (L - 1) / T  windows  tokens[i] = ids[i T, i T + T]   (T + 1 ids each),
 * consecutive windows sharing one id, so inputs tokens[i][0, T) and next-token targets
 * tokens[i][1, T + 1) cover the stream once; the last (L - 1) mod T ids are left out.
 *
 * Cache: with a cache folder, the L ids are kept in CACHE/<name>-<hash of path>.tokens,
 * keyed by 64-bit XXH3 hashes of the text's bytes and of the tokenizer files' bytes. A
 * rerun with the same text and tokenizer reads it instead of tokenizing; a stale file
 * (either changed) or a damaged one (bad magic, wrong length, checksum, ids outside the
 * vocabulary) is never trusted: it is logged and rebuilt. The file (little-endian int32):
 *   "PSTTOK1\n" | text hash u64 | tokenizer hash u64 | L u64 | V i32 | 0 i32 |
 *   checksum u64 (XXH3 of the ids, seeded with XXH3 of the 40 bytes before) | ids (L)
 *
 * Ownership: a ds_windows owns its tokens; the pointers it returns live until destroy. */
#ifndef PSTRAIN_DATA_TEXTWIN_H
#define PSTRAIN_DATA_TEXTWIN_H

#include <stdint.h>

#include "base/err.h"
#include "base/log.h"

typedef struct ds_windows ds_windows;

/* What the cache did for one load. */
typedef enum {
    DS_CACHE_OFF = 0, /* no cache folder given */
    DS_CACHE_HIT,     /* ids read from the cache; nothing tokenized */
    DS_CACHE_MISS,    /* no cache file: tokenized, and written */
    DS_CACHE_STALE,   /* text or tokenizer changed: tokenized again, rewritten */
    DS_CACHE_DAMAGED  /* unreadable cache file: tokenized again, rewritten */
} ds_cache_result;

typedef struct {
    const char *tokenizer; /* folder with encoder.json + vocab.bpe (GPT-2's names) or
                              vocab.json + merges.txt (Hugging Face's); NULL or "": bytes */
    int context;           /* T >= 1 */
    const char *cache_dir; /* NULL: no cache; created when missing */
    const log_ctx *log;    /* cache lines (rebuilt, write failed); NULL: none */
} ds_textwin_options;

/* Loads path as windows. Refused with one line naming the file: missing or unreadable, an
 * empty file, invalid UTF-8 (with the byte offset; BPE only), fewer than T + 1 tokens, bad
 * tokenizer files (tok_bpe_create's messages). A cache that cannot be written is logged
 * and not an error. *cache (may be NULL) says what the cache did. */
ds_windows *ds_textwin_load(const char *path, const ds_textwin_options *o, ds_cache_result *cache,
                            pst_err *err);
void ds_windows_destroy(ds_windows *w);

/* The tokenizer files of a folder: GPT-2's names first, then Hugging Face's; a folder
 * holding neither pair is PST_ERR_CONFIG naming the four files. */
int ds_tokenizer_files(const char *dir, char *vocab, char *merges, size_t cap, pst_err *err);

int64_t ds_windows_count(const ds_windows *w);         /* N */
int ds_windows_context(const ds_windows *w);           /* T; each window holds T + 1 ids */
int ds_windows_vocab(const ds_windows *w);             /* V of the tokenizer: every id < V */
int64_t ds_windows_stream(const ds_windows *w);        /* L, the ids of the whole file */
const int32_t *ds_windows_tokens(const ds_windows *w); /* (N, T + 1) */

/* As ds_split and ds_partition (data/data.h) do for samples, with the same seeded
 * permutation of the N windows, so a text job splits and partitions like any other. */
int ds_windows_split(const ds_windows *w, double frac, uint64_t seed, ds_windows **train,
                     ds_windows **val, pst_err *err);
ds_windows *ds_windows_partition(const ds_windows *w, int nparts, int k, uint64_t seed,
                                 pst_err *err);

#endif
