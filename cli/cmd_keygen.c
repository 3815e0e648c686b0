/* cli/cmd_keygen.c -- pstrain keygen: CURVE key pairs for security.* (docs/security.md).
 *
 * For each NAME: DIR/NAME.key (the secret key, mode 0600) and DIR/NAME.pub (the public
 * key), each a '#' comment line and the key as 40 Z85 characters. Existing files are kept
 * unless --force; nothing is written for any name when one would be refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "cli/cli.h"
#include "net/net.h"

#define KEYGEN_MAX_NAMES 256

static const char keygen_synopsis[] =
    "usage: pstrain keygen [--output DIR] [--force] NAME...\n"
    "\n"
    "Writes a CURVE key pair per NAME: DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub\n"
    "(public), for the security: block of a job (docs/security.md). A usual set:\n"
    "  pstrain keygen --output keys server worker\n"
    "then security.server_key keys/server.key, security.server_public keys/server.pub,\n"
    "security.client_key keys/worker.key (workers), security.allow keys (every *.pub;\n"
    "the server key needs no listing: only it may act as a server).\n";
static const char keygen_epilog[] =
    "Exit status: 0 written, 2 bad usage or a key file exists, 4 cannot write.\n";

/* A name is a file name stem: no path separators, no leading dot. */
static int name_ok(const char *n)
{
    if (!n[0] || n[0] == '.' || n[0] == '-' || strlen(n) > 200)
        return 0;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return 1;
}

/* Clears a secret from the stack; volatile so the stores are not optimised away. */
static void wipe(char *p, size_t n)
{
    volatile char *v = p;
    while (n--)
        *v++ = 0;
}

/* Writes text to path with mode, replacing it only when force; returns an EXIT_* code. */
static int write_file(const char *path, const char *text, mode_t mode, int force)
{
    /* O_EXCL unless forced: never follow a planted link or clobber a key. A forced
     * rewrite goes through a fresh file renamed over the old one, so the secret never
     * sits in a file of wider mode. */
    fs_atomic out;
    pst_err err = {0};
    int rc = fs_atomic_open(&out, path, mode, &err);
    if (!rc && fputs(text, out.f) < 0) {
        fs_atomic_abort(&out);
        rc = pst_err_set(&err, PST_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    if (!rc)
        rc = fs_atomic_commit(&out, force ? FS_REPLACE : FS_EXCLUSIVE, &err);
    if (rc) {
        fprintf(stderr, "pstrain keygen: %s\n", err.msg);
        return EXIT_IO;
    }
    return EXIT_OK;
}

int cmd_keygen(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    (void)stop;
    const char *out = ".";
    int force = 0;
    const cli_opt opts[] = {
        {.name = "output",
         .kind = CLI_STR,
         .dest = &out,
         .meta = "DIR",
         .help = "folder for the key files (created, mode 0700); default: ."},
        {.name = "out",
         .kind = CLI_STR,
         .dest = &out,
         .meta = "DIR",
         .help = "the same as --output"},
        {.name = "force", .kind = CLI_FLAG, .dest = &force, .help = "overwrite existing key files"},
        {0}};
    const cli_spec spec = {.cmd = "keygen",
                           .synopsis = keygen_synopsis,
                           .opts = opts,
                           .epilog = keygen_epilog,
                           .max_pos = KEYGEN_MAX_NAMES};
    cli_args args;
    int ec = cli_parse(&spec, argc, argv, &args);
    if (ec >= 0)
        return ec;
    const char *names[KEYGEN_MAX_NAMES];
    int nnames = 0;
    for (int i = 0; i < args.npos; i++) {
        if (!name_ok(args.pos[i])) {
            fprintf(stderr,
                    "pstrain keygen: bad key name '%s' (letters, digits, '-', '_', '.'; "
                    "not starting with '.')\n",
                    args.pos[i]);
            cli_args_fini(&args);
            return EXIT_USAGE;
        }
        names[nnames++] = args.pos[i];
    }
    cli_args_fini(&args); /* the names point into argv */
    if (nnames == 0) {
        fprintf(stderr, "pstrain keygen: no key NAME given (see pstrain keygen --help)\n");
        return EXIT_USAGE;
    }
    if (mkdir(out, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "pstrain keygen: cannot create %s: %s\n", out, strerror(errno));
        return EXIT_IO;
    }
    char path[4096];
    if (!force)
        for (int i = 0; i < nnames; i++)
            for (int pub = 0; pub < 2; pub++) {
                snprintf(path, sizeof path, "%s/%s.%s", out, names[i], pub ? "pub" : "key");
                struct stat st;
                if (lstat(path, &st) == 0) {
                    fprintf(stderr,
                            "pstrain keygen: %s exists; not overwriting it (--force "
                            "replaces it)\n",
                            path);
                    return EXIT_USAGE;
                }
            }
    for (int i = 0; i < nnames; i++) {
        char pub[41], sec[41], text[256];
        pst_err err = {0};
        if (net_curve_keypair(pub, sec, &err)) {
            fprintf(stderr, "pstrain keygen: %s\n", err.msg);
            return cli_exit_code(err.code);
        }
        int rc;
        snprintf(path, sizeof path, "%s/%s.key", out, names[i]);
        snprintf(text, sizeof text, "# pstrain CURVE secret key '%s' -- keep private\n%s\n",
                 names[i], sec);
        if ((rc = write_file(path, text, 0600, force)))
            return rc;
        snprintf(path, sizeof path, "%s/%s.pub", out, names[i]);
        snprintf(text, sizeof text, "# pstrain CURVE public key '%s'\n%s\n", names[i], pub);
        if ((rc = write_file(path, text, 0644, force)))
            return rc;
        printf("%s/%s.key %s/%s.pub\n", out, names[i], out, names[i]);
        wipe(sec, sizeof sec);
        wipe(text, sizeof text);
    }
    return EXIT_OK;
}
