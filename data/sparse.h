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

/* The feature hash: 64 bits of XXH3 (libxxhash) of the bytes, seeded, so that the same
 * (seed, bytes) give the same id on every machine and in every run. */
uint64_t ds_hash64(const void *bytes, size_t len, uint64_t seed);

#endif
