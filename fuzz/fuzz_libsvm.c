/* fuzz/fuzz_libsvm.c -- the libsvm/svmlight loader, ds_load_libsvm.
 *
 * Input: byte 0 chooses the call (bits 0-3 dim: 0 = the largest index, else 1..15; bit 4
 * regression; bit 5 nclasses 3 instead of 0), the rest is the file. */
#include <stdint.h>
#include <unistd.h>

#include "fuzz/fuzz_data_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t o = data[0];
    int dim = o & 15;
    ds_task task = (o & 16) ? DS_TASK_REGRESS : DS_TASK_CLASSIFY;
    int nclasses = (o & 32) ? 3 : 0;
    char p[256];
    fuzz_tmp_file(data + 1, size - 1, "libsvm", p, sizeof p);
    pst_err err = {0};
    ds_dataset *ds = ds_load_libsvm(p, dim, task, nclasses, &err);
    fuzz_data_check(NULL, ds, ds != NULL, &err);
    if (ds == NULL && err.code == 0)
        abort();
    unlink(p);
    return 0;
}
