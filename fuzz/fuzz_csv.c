/* fuzz/fuzz_csv.c -- the CSV loader, ds_load_csv, under every option it takes.
 *
 * Input: byte 0 chooses the options (bits 0-1 delimiter , ; tab space; bits 2-3 header
 * guess/none/present; bits 4-5 label last/first/none/by name "label"; bit 6 regression;
 * bit 7 nclasses 3 instead of 0), the rest is the file. */
#include <stdint.h>
#include <unistd.h>

#include "fuzz/fuzz_data_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char delims[4] = {',', ';', '\t', ' '};
    static const int headers[4] = {-1, 0, 1, 1};
    uint8_t o = data[0];
    ds_csv_options opt = {0};
    opt.delimiter = delims[o & 3];
    opt.header = headers[(o >> 2) & 3];
    switch ((o >> 4) & 3) {
    case 0: opt.label_index = -1; break;
    case 1: opt.label_index = 0; break;
    case 2: opt.label_index = DS_CSV_NO_LABEL; break;
    default:
        opt.label_name = "label";
        if (opt.header == 0)
            opt.header = 1;
        break;
    }
    opt.task = (o & 64) ? DS_TASK_REGRESS : DS_TASK_CLASSIFY;
    opt.nclasses = (o & 128) ? 3 : 0;
    char p[256];
    fuzz_tmp_file(data + 1, size - 1, "csv", p, sizeof p);
    pst_err err = {0};
    ds_dataset *ds = ds_load_csv(p, &opt, &err);
    fuzz_data_check(NULL, ds, ds != NULL, &err);
    unlink(p);
    return 0;
}
