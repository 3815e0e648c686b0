/* fuzz/fuzz_common.h -- helpers shared by the libFuzzer harnesses (test code, not linked
 * into pstrain).
 *
 * The loaders under test read files by path (ds_load_*, ckpt_load, ckpt_state_load), so a
 * harness writes its input to a private temporary file first: the code path is exactly the
 * one a real file takes, with no change to the library for the sake of fuzzing. */
#ifndef PSTRAIN_FUZZ_COMMON_H
#define PSTRAIN_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fresh file holding data[0..n); its name goes into path (cap >= 64). Aborts when the
 * temporary folder is unusable: that is a broken setup, not a finding. */
static inline void fuzz_tmp_file(const uint8_t *data, size_t n, const char *tag, char *path,
                                 size_t cap)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, cap, "%s/pstrain-fuzz-%s-XXXXXX", dir && *dir ? dir : "/tmp", tag);
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("fuzz: mkstemp");
        abort();
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, data + done, n - done);
        if (w <= 0) {
            perror("fuzz: write");
            abort();
        }
        done += (size_t)w;
    }
    close(fd);
}

/* A one-line error message: library code promises one line naming the problem. */
static inline void fuzz_check_msg(const char *msg)
{
    if (msg[0] == '\0' || strchr(msg, '\n')) {
        fprintf(stderr, "fuzz: error message is empty or not one line: '%s'\n", msg);
        abort();
    }
}

#endif
