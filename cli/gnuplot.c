/* cli/gnuplot.c -- gnuplot, shared by `pstrain plot` and `pstrain explain` (cli/gnuplot.h). */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/gnuplot.h"

extern char **environ;

int cli_gp_find(const char *name, char *buf, size_t size)
{
    const char *path = getenv("PATH");
    if (!buf || size == 0 || !path || !*path) /* buf checked: GCC's -Wformat-truncation */
        return 0;
    for (const char *p = path;;) {
        size_t len = strcspn(p, ":");
        /* An empty PATH entry means the current folder (POSIX execvp). */
        int n = len ? snprintf(buf, size, "%.*s/%s", (int)len, p, name)
                    : snprintf(buf, size, "./%s", name);
        struct stat st;
        if (n > 0 && (size_t)n < size && stat(buf, &st) == 0 && S_ISREG(st.st_mode) &&
            access(buf, X_OK) == 0)
            return 1;
        if (p[len] == '\0')
            return 0;
        p += len + 1;
    }
}

int cli_gp_run(const char *cmd, const char *gnuplot, void (*write)(FILE *s, const void *ctx),
               const void *ctx)
{
    const char *tmpdir = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/pstrain-plot.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        fprintf(stderr, "pstrain %s: %s: cannot create the gnuplot script: %s\n", cmd, tmpl,
                strerror(errno));
        return EXIT_IO;
    }
    unlink(tmpl);
    int rc = EXIT_IO;
    posix_spawn_file_actions_t fa;
    int fa_ready = 0;
    FILE *s = fdopen(fd, "w+");
    if (!s) {
        fprintf(stderr, "pstrain %s: cannot write the gnuplot script: %s\n", cmd, strerror(errno));
        close(fd);
        return EXIT_IO;
    }
    write(s, ctx);
    if (fflush(s) != 0 || ferror(s) || lseek(fd, 0, SEEK_SET) != 0) {
        fprintf(stderr, "pstrain %s: cannot write the gnuplot script: %s\n", cmd, strerror(errno));
        goto cleanup;
    }
    if (posix_spawn_file_actions_init(&fa) != 0)
        goto cleanup;
    fa_ready = 1;
    posix_spawn_file_actions_adddup2(&fa, fd, STDIN_FILENO);
    /* The child must not outlive its reader of stdout: flush ours before it writes. */
    fflush(stdout);
    char *argv[] = {"gnuplot", NULL};
    pid_t pid;
    int e = posix_spawn(&pid, gnuplot, &fa, NULL, argv, environ);
    if (e != 0) {
        fprintf(stderr, "pstrain %s: cannot run %s: %s\n", cmd, gnuplot, strerror(e));
        goto cleanup;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "pstrain %s: waiting for gnuplot: %s\n", cmd, strerror(errno));
            goto cleanup;
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "pstrain %s: gnuplot failed (%s %d; its messages are above)\n", cmd,
                WIFEXITED(status) ? "exit code" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        rc = EXIT_FAILURE_RUNTIME;
        goto cleanup;
    }
    rc = EXIT_OK;
cleanup:
    if (fa_ready)
        posix_spawn_file_actions_destroy(&fa);
    fclose(s);
    return rc;
}

void cli_gp_sanitise(char *dst, size_t n, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < n; i++) {
        char c = src[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 strchr(" _.+-", c);
        dst[i] = ok ? c : '?';
    }
    dst[i] = '\0';
}
