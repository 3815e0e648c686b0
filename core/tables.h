/* core/tables.h -- the embedding tables a model's sparse layers read, as the model sees
 * them for one batch: per table the batch's unique keys and the rows the caller fills.
 *
 * A table is named (the layers' `table` key or the layer's name) and has a row width d
 * and an init scale; each layer reading it adds the fields it reads. ml_tables_gather
 * de-duplicates a batch's ids per table: keys in first-appearance order (entry order of
 * the CSR), and per entry the index of its key (-1 for an entry no layer of the table
 * reads). The model owns one (core/model.c); the caller reaches it through model.h.
 *
 * Dimensions: NNZ = entries of the batch, K = unique keys of one table, d its row width.
 * Thread-safety: none. */
#ifndef PSTRAIN_CORE_TABLES_H
#define PSTRAIN_CORE_TABLES_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "layer.h"

typedef struct ml_tables ml_tables;

ml_tables *ml_tables_create(pst_err *err);
void ml_tables_destroy(ml_tables *t);

/* A layer reading table `name` (d, init scale, the fields [lo, hi] it reads): returns the
 * table's index (a new table for a new name), or -1 with err set when an earlier reader
 * gave the name another d or init scale. */
int ml_tables_add_reader(ml_tables *t, const char *name, int dim, float init_scale, uint32_t lo,
                         uint32_t hi, pst_err *err);

int ml_tables_count(const ml_tables *t);
const char *ml_tables_name(const ml_tables *t, int i);
int ml_tables_dim(const ml_tables *t, int i);
float ml_tables_init_scale(const ml_tables *t, int i);

/* The tables a model of spec would have (names, d, init scales, in the same order as the
 * built model's), added to t without building the model or knowing the input width:
 * sparse layers' shapes depend on their spec alone. For a parameter server, which holds
 * its share of every table but never sees data. Errors as ml_model_create's for those
 * layers (PST_ERR_CONFIG with the layer's path). */
int ml_tables_of_spec(ml_tables *t, const ml_model_spec *spec, pst_err *err);

/* Validates b (n in [0, max_rows], row_ptr non-decreasing) and fills every table's keys
 * and entry indices; rows and grads are resized to (K, d) (contents unspecified until
 * the caller writes them). Errors: PST_ERR_ARG for a malformed batch, NOMEM. */
int ml_tables_gather(ml_tables *t, const ml_sparse_batch *b, int max_rows, pst_err *err);

size_t ml_tables_nkeys(const ml_tables *t, int i);
const uint64_t *ml_tables_keys(const ml_tables *t, int i); /* (K) */
const int32_t *ml_tables_index(const ml_tables *t, int i); /* (NNZ) */
float *ml_tables_rows(ml_tables *t, int i);                /* (K, d) */
float *ml_tables_grads(ml_tables *t, int i);               /* (K, d) */
/* The last gathered batch's n and NNZ (to check a forward is given the same batch). */
int ml_tables_batch_rows(const ml_tables *t);
int64_t ml_tables_batch_nnz(const ml_tables *t);

#endif
