/* fuzz/fuzz_idx.c -- the IDX (MNIST) loader, ds_load_idx, plain and gzip files.
 *
 * Input: byte 0 = nclasses (0: taken from the labels; else 1..255), bytes 1-2 = the
 * length L of the images file (little-endian, clamped to what is there), then L bytes of
 * images file and the rest as the labels file. fuzz/make_corpus.sh writes seeds in this
 * layout from real IDX headers, plain and gzipped. */
#include <stdint.h>
#include <unistd.h>

#include "fuzz/fuzz_data_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int nclasses = data[0];
    size_t li = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (li > size)
        li = size;
    char pi[256], pl[256];
    fuzz_tmp_file(data, li, "images", pi, sizeof pi);
    fuzz_tmp_file(data + li, size - li, "labels", pl, sizeof pl);
    pst_err err = {0};
    ds_dataset *ds = ds_load_idx(pi, pl, nclasses, &err);
    fuzz_data_check(NULL, ds, ds != NULL, &err);
    unlink(pi);
    unlink(pl);
    return 0;
}
