/* fuzz/fuzz_sparse.c -- the sparse libsvm/libffm loader, ds_sparse_load_libsvm.
 *
 * Input: byte 0 chooses the call (bit 0 regression; bit 1 nclasses 3 instead of 0; bit 2
 * an id space of 1000), the rest is the file. A loaded dataset must hold what a sparse
 * layer can index: row ranges that tile [0, NNZ), ids inside the id space, finite values,
 * fields below nfields, labels inside [0, K). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "data/sparse.h"
#include "fuzz/fuzz_common.h"

static void check(const ds_sparse *s, const ds_sparse_options *o)
{
    int64_t n = ds_sparse_rows(s), total = 0;
    for (int64_t r = 0; r < n; r++) {
        const uint64_t *ids;
        const float *vals;
        const uint32_t *fields;
        int64_t k = ds_sparse_row(s, r, &ids, &vals, &fields);
        if (k < 1)
            abort(); /* empty rows are refused */
        for (int64_t j = 0; j < k; j++)
            if ((o->id_space && ids[j] >= o->id_space) || !isfinite(vals[j]) ||
                (fields && fields[j] >= ds_sparse_nfields(s)))
                abort();
        total += k;
    }
    if (total != ds_sparse_nnz(s))
        abort();
    const int32_t *y = ds_sparse_labels(s);
    for (int64_t r = 0; y && r < n; r++)
        if (y[r] < 0 || y[r] >= ds_sparse_nclasses(s))
            abort();
    const float *t = ds_sparse_targets(s);
    for (int64_t r = 0; t && r < n; r++)
        if (!isfinite(t[r]))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t b = data[0];
    ds_sparse_options o = {.task = (b & 1) ? DS_TASK_REGRESS : DS_TASK_CLASSIFY,
                           .nclasses = (b & 2) ? 3 : 0,
                           .id_space = (b & 4) ? 1000 : 0};
    char p[256];
    fuzz_tmp_file(data + 1, size - 1, "sparse", p, sizeof p);
    pst_err err = {0};
    ds_sparse *s = ds_sparse_load_libsvm(p, &o, &err);
    if (s)
        check(s, &o);
    else {
        fuzz_check_msg(err.msg);
        if (err.code != PST_ERR_DATA && err.code != PST_ERR_NOMEM && err.code != PST_ERR_IO)
            abort();
    }
    ds_sparse_destroy(s);
    unlink(p);
    return 0;
}
