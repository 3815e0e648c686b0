/* tests/tmp_files.h -- a unit test's scratch folder and the files it writes there.
 *
 * tmp_dir_make("/tmp/test-x") makes DIR = /tmp/test-x.XXXXXX (mkdtemp), tmp_dir_remove
 * deletes it with everything in it (cmocka group setup/teardown call these), and
 * tmp_file(dir, name, text) writes text to dir/name, making the folders of name, and
 * returns the path (a static buffer: copy it before the next call). */
#ifndef PSTRAIN_TESTS_TMP_FILES_H
#define PSTRAIN_TESTS_TMP_FILES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TMP_DIR_MAX 64

static inline int tmp_dir_make(char dir[TMP_DIR_MAX], const char *prefix)
{
    if ((size_t)snprintf(dir, TMP_DIR_MAX, "%s.XXXXXX", prefix) >= TMP_DIR_MAX)
        return -1;
    return mkdtemp(dir) ? 0 : -1;
}

static inline int tmp_dir_remove(const char *dir)
{
    char cmd[TMP_DIR_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static inline const char *tmp_file(const char *dir, const char *name, const char *text)
{
    static char path[512];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return NULL;
    for (char *s = strchr(path + strlen(dir) + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(path, 0755);
        *s = '/';
    }
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    int ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    return ok ? path : NULL;
}

#endif
