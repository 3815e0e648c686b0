/* tok/tok_internal.h -- what the files of tok/ share; included by tok/ alone.
 *
 * Legend: V = vocabulary size, M = merges, n = bytes of one pre-tokenized piece (a "word").
 * Tokens are kept as raw bytes; GPT-2's unicode spelling of bytes exists only in the files
 * and is undone at load (vocab.c). */
#ifndef PSTRAIN_TOK_TOK_INTERNAL_H
#define PSTRAIN_TOK_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "tok.h"

/* Merge table: open addressing over keys (a << 32 | b) of two token ids, capacity a power
 * of two at least 2 M. A merge of rank r makes token id: (a, b) -> (r, id). */
typedef struct {
    uint64_t key; /* TOK_EMPTY_KEY when free */
    int32_t rank;
    int32_t id;
} tok_pair;
#define TOK_EMPTY_KEY UINT64_MAX

/* Word cache: piece bytes -> their ids, so a word seen before costs one lookup. Entries
 * point into two arenas; the whole cache is dropped when it outgrows its bounds. */
typedef struct {
    uint64_t h;    /* hash of the bytes; 0 marks a free slot (real hashes are made non-zero) */
    uint32_t boff; /* bytes: arena[boff, boff + blen) */
    uint32_t blen;
    uint32_t ioff; /* ids: ids[ioff, ioff + ni) */
    uint32_t ni;
} tok_wentry;

typedef struct {
    tok_wentry *slot; /* (cap) */
    size_t cap, used;
    uint8_t *bytes;
    size_t nbytes, bytes_cap;
    int32_t *ids;
    size_t nids, ids_cap;
} tok_wcache;

/* A symbol of the word being merged: its token, and its neighbours (-1 none). */
typedef struct {
    int32_t id, prev, next;
} tok_sym;

/* A candidate merge in one word: the pair starting at symbol pos, as it was when queued. */
typedef struct {
    int32_t rank, pos, a, b;
} tok_cand;

struct tok_bpe {
    int bytes_only; /* the byte-level tokenizer: V = 256, id = byte */
    int32_t V;
    uint8_t *blob; /* token bytes, all tokens end to end */
    uint32_t *off; /* (V + 1): token id's bytes are blob[off[id], off[id + 1]) */
    int32_t byte_id[256];
    tok_pair *pairs; /* (pairs_cap) */
    size_t pairs_cap;
    int32_t nmerges;
    pcre2_code *re; /* GPT-2's pattern, JIT-compiled where PCRE2 can */
    pcre2_match_data *md;
    tok_wcache cache;
    /* Scratch of one word's BPE (bpe.c), grown as needed: symbols' ids and links, the
     * candidate heap and the candidates a pass creates. */
    tok_sym *sym;
    size_t sym_cap;
    tok_cand *heap, *pend;
    size_t heap_cap, pend_cap;
    tok_stats stats;
};

/* vocab.c: fills t's vocabulary and merge table from the two files. */
int tok_load_files(tok_bpe *t, const char *vocab_path, const char *merges_path, pst_err *err);
/* The merge of (a, b): its rank and the token it makes; 0 when (a, b) is no merge. */
int tok_pair_find(const tok_bpe *t, int32_t a, int32_t b, int32_t *rank, int32_t *id);
uint64_t tok_hash_bytes(const uint8_t *p, size_t n);

/* pretok.c: compiles the pattern into t->re / t->md. */
int tok_regex_init(tok_bpe *t, pst_err *err);
void tok_regex_fini(tok_bpe *t);

/* bpe.c: appends the BPE ids of one piece (n >= 1 bytes) to out. */
int tok_bpe_word(tok_bpe *t, const uint8_t *w, size_t n, tok_ids *out);
int tok_ids_push(tok_ids *v, const int32_t *ids, size_t n);
void tok_cache_fini(tok_wcache *c);

#endif
