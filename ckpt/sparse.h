/* ckpt/sparse.h -- sparse tables (core/sptable.h) in a safetensors file.
 *
 * A file holds one or more tables, each under its name N (1 to 31 of [A-Za-z0-9_-]), as
 * tensors in ascending key order (R rows, d = dim):
 *   N.keys      U64 (R)          the keys, strictly ascending
 *   N.rows      F32 (R, d)       the rows
 *   N.opt.sum_sq                 adagrad's G       \
 *   N.opt.m, N.opt.v             adam's moments     > F32 (R, d), as the optimizer keeps
 *   N.opt.z, N.opt.n             ftrl's z and n    /
 *   N.touched   U32 (R)          the step of each row's last touch (expiry)
 *   N.filter    U8 (C)           the admission sketch's counters, when the table has one
 * and in "__metadata__" (strings, as the format requires):
 *   sparse.N.dim, sparse.N.optimizer (opt_kind_name), sparse.N.step, sparse.N.rows,
 *   sparse.N.init, sparse.N.seed   -- what a restore checks, and what the rows came from
 * with the container's guarantees (ckpt.h): CRC-32 of every tensor and of the header, atomic
 * write. numpy reads a table as np.frombuffer(data, "<u8") and "<f4" at the data_offsets.
 *
 * Writing takes an export of each table (spt_dump_fill): the file's size again in memory
 * for the duration. Reading validates the whole file first -- container, metadata, every
 * tensor's dtype and shape, keys ascending, stamps <= step, that the table has the file's
 * dim and optimizer -- and a failure is one line naming the file, the table and the tensor
 * or key (PST_ERR_DATA; PST_ERR_IO when the file cannot be read), with the tables
 * unchanged. */
#ifndef PSTRAIN_CKPT_SPARSE_H
#define PSTRAIN_CKPT_SPARSE_H

#include "base/err.h"
#include "core/sptable.h"

typedef struct {
    const char *name;
    spt_table *table; /* borrowed; only read by ckpt_sparse_save */
} ckpt_sparse_table;

/* 1 when name can name a table in a file: 1 to 31 of [A-Za-z0-9_-]. */
int ckpt_sparse_name_ok(const char *name);

/* Writes tabs[0..n) (distinct names) to path atomically. */
int ckpt_sparse_save(const char *path, const ckpt_sparse_table *tabs, int n, pst_err *err);
/* Restores each of tabs[0..n) from the table of its name in the file at path. Every table
 * is checked before any is changed; a later table that runs out of memory (PST_ERR_NOMEM)
 * leaves the earlier ones restored. */
int ckpt_sparse_load(const char *path, const ckpt_sparse_table *tabs, int n, pst_err *err);

/* One file at out (atomically) from the table files in[0..n) of a job's n servers
 * (ps/srv_ckpt.h: tables-server-<rank>-clock-<c>.safetensors of one clock), which hold
 * disjoint key sets (spt_owner) of the same tables: per table, the union of their rows in
 * ascending key order, the largest step, the admission sketches' cell-wise maximum
 * (sparse_merge.c says why that is sound). The file is one a process holding every key
 * would write, and ckpt_sparse_load reads it into the job's tables of one process (within
 * their max_rows). Refused with one line naming the file (PST_ERR_DATA; PST_ERR_IO when one
 * cannot be read), nothing written: a key in two files, a table one file lacks, metadata
 * dim, optimizer, init or seed that differ, other tensors (optimizer state, sketch size). */
int ckpt_sparse_merge(const char *out, const char *const *in, int n, pst_err *err);

#endif
