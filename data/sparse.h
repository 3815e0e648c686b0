/* data/sparse.h -- sparse datasets: rows of (feature id, value) pairs with 64-bit ids,
 * kept sparse (never densified), and the seeded hash that makes ids of anything else.
 *
 * Legend: N = rows, NNZ = (id, value) pairs in all rows. Row-compressed (CSR) storage:
 *   row_ptr (N + 1)  row r holds entries [row_ptr[r], row_ptr[r + 1])
 *   ids     (NNZ)    feature ids, any uint64 (hashed or as written), in file order
 *   vals    (NNZ)    their values
 *   fields  (NNZ)    the field of each entry (libffm "field:id:value"), or NULL when the
 *                    file has none
 * plus one class label (classification) or one target (regression) per row.
 *
 * The issue this serves is sparse parameters (embedding tables keyed by these ids); the
 * layers that read it come with the sparse model. Ownership: a ds_sparse owns its
 * buffers; accessor pointers stay valid until ds_sparse_destroy. */
#ifndef PSTRAIN_DATA_SPARSE_H
#define PSTRAIN_DATA_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "data/data.h"

typedef struct ds_sparse ds_sparse;

typedef struct {
    ds_task task;      /* classify: integer labels (svmlight's -1/+1 become 0/1); regress */
    int nclasses;      /* classify: 0 takes max label + 1 */
    uint64_t id_space; /* ids must be < id_space (a hash space of 2^k, say); 0: any uint64 */
} ds_sparse_options;

/* libsvm/svmlight "label id:value id:value ..." or libffm "label field:id:value ..." (one
 * form per file), ids decimal uint64 in any order, '#' starts a comment, blank lines are
 * skipped. Refused, with file, line and entry named: a row with no features, an id past
 * id_space or not a number, a value that is not a finite number, a malformed entry, a
 * label out of range, entries of both forms. */
ds_sparse *ds_sparse_load_libsvm(const char *path, const ds_sparse_options *o, pst_err *err);
void ds_sparse_destroy(ds_sparse *s);

int64_t ds_sparse_rows(const ds_sparse *s);
int64_t ds_sparse_nnz(const ds_sparse *s);
ds_task ds_sparse_task(const ds_sparse *s);
int ds_sparse_nclasses(const ds_sparse *s);     /* 0 for regression */
int ds_sparse_has_fields(const ds_sparse *s);   /* the file was libffm */
uint32_t ds_sparse_nfields(const ds_sparse *s); /* max field + 1; 0 without fields */
/* Row r's entries: returns their count, sets *ids and *vals (and *fields, NULL without
 * fields; fields may be NULL when not wanted). */
int64_t ds_sparse_row(const ds_sparse *s, int64_t r, const uint64_t **ids, const float **vals,
                      const uint32_t **fields);
const int32_t *ds_sparse_labels(const ds_sparse *s); /* (N) or NULL */
const float *ds_sparse_targets(const ds_sparse *s);  /* (N) or NULL */

/* Largest entry count of one row (a batch of B rows needs at most B times this). */
int64_t ds_sparse_max_row(const ds_sparse *s);

/* ---- The sparse part of a dataset ---------------------------------------------------
 *
 * A ds_dataset (data.h) may carry sparse features beside its dense x (N, D): one CSR row
 * per sample, the same N rows in the same order. Every row operation of data.h
 * (ds_subset, ds_split, ds_partition, ds_shuffle_inplace, ds_filter_classes) moves the
 * sparse rows with the dense ones; ds_align_classes and the scalers touch labels and dense
 * columns only. A pure-sparse dataset (hashed text, libsvm kept sparse) has D = 0. The
 * dataset's labels or targets are those of the sparse rows: a part has none of its own
 * (ds_sparse_labels/targets return NULL for it). */

/* The dataset's sparse part (borrowed, valid until ds_destroy), NULL when it has none. */
const ds_sparse *ds_sparse_of(const ds_dataset *ds);

/* Entries in rows[0..n) together (rows NULL: rows 0..n-1): what ds_sparse_gather needs
 * in ids/vals/fields. Rows must be < ds_sparse_rows(s). */
int64_t ds_sparse_count(const ds_sparse *s, const uint32_t *rows, int64_t n);

/* A batch in CSR for the rows rows[0..n) (the trainer's sample order; rows NULL: rows
 * 0..n-1), into caller buffers:
 *   row_ptr (n + 1)  batch row i holds [row_ptr[i], row_ptr[i + 1]), row_ptr[0] = 0
 *   ids, vals (cap)  the entries
 *   fields (cap)     their fields (0 when s has none); NULL when not wanted
 * Returns the entry count, or -1 with err set (PST_ERR_ARG) when a row is out of range or
 * the entries do not fit in cap; the buffers are then partly written. */
int64_t ds_sparse_gather(const ds_sparse *s, const uint32_t *rows, int64_t n, int64_t *row_ptr,
                         uint64_t *ids, float *vals, uint32_t *fields, int64_t cap, pst_err *err);

/* The libsvm/libffm file as a dataset: D = 0, the rows as its sparse part, the labels or
 * targets (T = 1) as the dataset's. Same format and refusals as ds_sparse_load_libsvm. */
ds_dataset *ds_load_libsvm_sparse(const char *path, const ds_sparse_options *o, pst_err *err);

/* ---- Hashed features ----------------------------------------------------------------
 *
 * Ids made by hashing are id = ds_hash64(bytes, seed) masked to hash_bits bits
 * (id & (2^hash_bits - 1); hash_bits 0 keeps all 64). The bytes hashed:
 *   CSV categorical column c, value v:   c 0x1F v              (field: c's place in the list)
 *   CSV cross of columns a and b:        a 0x1F va 0x1E b 0x1F vb   (field: after the columns)
 *   text word n-gram w1 .. wn:           w1 ' ' w2 ... ' ' wn  (field: n - 1)
 * so the same string in two columns gives two ids. */
uint64_t ds_hash_id(const void *bytes, size_t len, uint64_t seed, int hash_bits);

/* A folder of documents, one sparse row per document (data.format text_dir).
 * Tokens: maximal runs of ASCII letters and digits, lower-cased; every other byte (blanks,
 * punctuation, control bytes, and every byte >= 0x80, so UTF-8 letters too) separates
 * tokens. N-grams run across line ends. */
#define DS_TEXT_VALUE_NAMES(X)                                                                     \
    X(DS_TEXT_COUNT, "count") X(DS_TEXT_TF, "tf") X(DS_TEXT_BINARY, "binary")
typedef enum { DS_TEXT_VALUE_NAMES(DS_ENUM_VALUE) DS_TEXT_VALUE_COUNT } ds_text_value;
/* What of a mail is read: all of the file; the body (after the first empty line: a file
 * without one has no body); or the body and the Subject: header line. */
#define DS_TEXT_HEADER_NAMES(X)                                                                    \
    X(DS_TEXT_HEADERS_ALL, "all")                                                                  \
    X(DS_TEXT_HEADERS_SUBJECT, "subject") X(DS_TEXT_HEADERS_NONE, "none")
typedef enum { DS_TEXT_HEADER_NAMES(DS_ENUM_VALUE) DS_TEXT_HEADERS_COUNT } ds_text_headers;

typedef struct {
    int ngrams;              /* >= 1: every word n-gram for n = 1..ngrams */
    ds_text_value value;     /* count: occurrences; tf: count / n-grams of the document;
                                binary: 1 */
    ds_text_headers headers; /* mail headers read */
    int hash_bits;           /* 0..63: ids < 2^hash_bits; 0: all 64 bits */
    uint64_t seed;           /* of the hash */
    const char *suffix;      /* only files whose names end so (".txt"); NULL: every file */
    /* Classes: "name=dir dir ..." (folders under root, blank-separated), class c =
     * classes[c]; nclasses 0: every subfolder of root is a class, by name in byte order. */
    const char *const *classes;
    int nclasses;
} ds_text_options;

/* Reads every regular file (names not starting with '.') of each class's folders, folders
 * in the given order and files in byte order of their names, into a dataset of D = 0 with
 * class names. Refused, naming the file or folder: a folder that cannot be read or holds
 * no document, a document that cannot be read or has no words. */
ds_dataset *ds_load_text_dir(const char *root, const ds_text_options *o, pst_err *err);
const char *ds_text_value_name(int v);
const char *ds_text_headers_name(int v);

/* The feature hash: 64 bits of XXH3 (libxxhash) of the bytes, seeded, so that the same
 * (seed, bytes) give the same id on every machine and in every run. */
uint64_t ds_hash64(const void *bytes, size_t len, uint64_t seed);

#endif
