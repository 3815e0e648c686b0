/* fuzz/fuzz_hashed.c -- the hashed-feature loaders: CSV with categorical columns and a
 * cross (ds_load_csv), and the text_dir featurizer (ds_load_text_dir).
 *
 * Input: byte 0 chooses (bit 0: text_dir, else CSV; bits 1-2 ngrams - 1; bits 3-4 text
 * headers all/subject/none/all; bit 5 values tf, bit 6 binary; bit 7 hash_bits 8 instead
 * of 0). CSV: the rest is the file, columns "a" and "b" categorical, "a x b" crossed, the
 * last column the label. text_dir: the rest is split in half into two documents of two
 * classes. Whatever loads must be CSR that a trainer can index: ids inside the hash space,
 * row_ptr increasing to nnz, fields below nfields, finite values. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/sparse.h"
#include "fuzz/fuzz_data_check.h"

static void check_sparse(const ds_dataset *ds, int bits)
{
    const ds_sparse *sp = ds_sparse_of(ds);
    if (!sp)
        return;
    int64_t total = 0;
    for (int64_t r = 0; r < ds_sparse_rows(sp); r++) {
        const uint64_t *ids;
        const float *vals;
        const uint32_t *fields;
        int64_t k = ds_sparse_row(sp, r, &ids, &vals, &fields);
        if (k < 0)
            abort();
        for (int64_t j = 0; j < k; j++)
            if ((bits && ids[j] >> bits) || !isfinite(vals[j]) ||
                (fields && fields[j] >= ds_sparse_nfields(sp)))
                abort();
        total += k;
    }
    if (total != ds_sparse_nnz(sp) || ds_sparse_rows(sp) != ds_count(ds))
        abort();
}

static void write_file(const char *path, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n)
        abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t o = data[0];
    int bits = (o & 128) ? 8 : 0;
    pst_err err = {0};
    ds_dataset *ds;
    if (!(o & 1)) {
        const char *cat[] = {"a", "b"}, *cross[] = {"a x b"};
        ds_csv_options opt = {.header = 1,
                              .label_index = -1,
                              .task = DS_TASK_CLASSIFY,
                              .categorical = cat,
                              .ncategorical = 2,
                              .crosses = cross,
                              .ncrosses = 1,
                              .hash_bits = bits,
                              .hash_seed = 5};
        char p[256];
        fuzz_tmp_file(data + 1, size - 1, "hcsv", p, sizeof p);
        ds = ds_load_csv(p, &opt, &err);
        unlink(p);
    } else {
        const char *dir = getenv("TMPDIR");
        char root[256], a[320], b[320];
        snprintf(root, sizeof root, "%s/pstrain-fuzz-text-XXXXXX", dir && *dir ? dir : "/tmp");
        if (!mkdtemp(root))
            abort();
        snprintf(a, sizeof a, "%s/c0", root);
        snprintf(b, sizeof b, "%s/c1", root);
        mkdir(a, 0755);
        mkdir(b, 0755);
        size_t half = (size - 1) / 2;
        snprintf(a, sizeof a, "%s/c0/d.txt", root);
        snprintf(b, sizeof b, "%s/c1/d.txt", root);
        write_file(a, data + 1, half);
        write_file(b, data + 1 + half, size - 1 - half);
        static const ds_text_headers hd[4] = {DS_TEXT_HEADERS_ALL, DS_TEXT_HEADERS_SUBJECT,
                                              DS_TEXT_HEADERS_NONE, DS_TEXT_HEADERS_ALL};
        ds_text_options opt = {.ngrams = 1 + ((o >> 1) & 3),
                               .headers = hd[(o >> 3) & 3],
                               .value = (o & 64)   ? DS_TEXT_BINARY
                                        : (o & 32) ? DS_TEXT_TF
                                                   : DS_TEXT_COUNT,
                               .hash_bits = bits};
        ds = ds_load_text_dir(root, &opt, &err);
        unlink(a);
        unlink(b);
        snprintf(a, sizeof a, "%s/c0", root);
        snprintf(b, sizeof b, "%s/c1", root);
        rmdir(a);
        rmdir(b);
        rmdir(root);
    }
    if (ds)
        check_sparse(ds, bits);
    fuzz_data_check(NULL, ds, ds != NULL, &err); /* destroys ds */
    return 0;
}
