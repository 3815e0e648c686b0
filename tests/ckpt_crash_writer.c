/* tests/ckpt_crash_writer.c -- test-only program for tests/cli/test_ckpt_crash.sh: writes
 * parameter-server shard checkpoints the way ps/srv_ckpt.c does, to be SIGKILLed at random
 * points, and checks what a restarting server would find.
 *
 *   ckpt_crash_writer write DIR RANK START KEEP   clocks START, START+1, ... for ever: each
 *       a file DIR/server-RANK-clock-C.safetensors (ckpt_state_save: temp file, fsync,
 *       rename, fsync of DIR), then ckpt_prune to the KEEP newest, as write_checkpoint in
 *       ps/srv_ckpt.c; after each save it prints "C\n" (one write(2)), so the last line
 *       printed is a checkpoint known complete
 *   ckpt_crash_writer check DIR RANK LAST          what the server's restart does
 *       (srv_ckpt_scan in ps/srv_ckpt.c: ckpt_list newest first, ckpt_state_load, the same
 *       checks as its load_checkpoint): every listed checkpoint must load whole, hold its
 *       rank and clock and exactly the contents written for that clock, and the newest
 *       must be LAST or LAST + 1 (killed between the rename and the print); -1 = nothing
 *       reported yet. Prints the newest clock (-1: none) and, on stderr, how many leftovers
 *       of an unfinished write the kill left.
 *   ckpt_crash_writer once DIR RANK CLOCK          one small checkpoint (16 floats, a seed
 *       for fuzz/).
 *   ckpt_crash_writer run DIR                      a `pstrain train` checkpoint folder
 *       (cli/cmd_train.c): the newest ckpt-N that ckpt_list gives, the one --resume tries
 *       first, must load whole (model.safetensors by ckpt_load, optimizer.safetensors by
 *       ckpt_state_load) and hold step N. Prints N (-1: none yet).
 *
 * Contents are a function of (rank, clock) only: N floats of weights and adam's two
 * moment buffers, so any mix of two writes, or a torn one, is seen. Exit 0 ok, 1 a check
 * failed (the message says which), 2 usage, 4 IO. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "ckpt/ckpt.h"
#include "core/optim.h"

#define N 65536 /* floats per buffer: 768 KiB a file, long enough to be killed mid-write */

static float value(int rank, int64_t clock, int buf, size_t i)
{
    uint64_t x =
        (uint64_t)clock * 0x9E3779B97F4A7C15ull ^ (uint64_t)rank << 40 ^ (uint64_t)buf << 32 ^ i;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return (float)(x % 2000001) * 1e-3f - 1000.0f;
}

/* w and os hold n = opt_state_len(os) floats each. */
static void fill(int rank, int64_t clock, float *w, opt_state *os)
{
    size_t n = opt_state_len(os);
    for (size_t i = 0; i < n; i++)
        w[i] = value(rank, clock, 0, i);
    for (int b = 0; b < opt_state_nbuf(os); b++) {
        float *p = opt_state_buf(os, b);
        for (size_t i = 0; i < n; i++)
            p[i] = b == 1 ? value(rank, clock, 2, i) * value(rank, clock, 2, i)
                          : value(rank, clock, 1, i);
    }
    opt_state_set_step(os, clock);
}

static int save(const char *dir, int rank, int64_t clock, float *w, opt_state *os, pst_err *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/server-%d-clock-%lld.safetensors", dir, rank, (long long)clock);
    fill(rank, clock, w, os);
    ckpt_state *st = ckpt_state_create("shard", err);
    if (!st)
        return err->code;
    int rc;
    if (!(rc = ckpt_state_set_str(st, "job_hash", "00000000c0ffee00", err)) &&
        !(rc = ckpt_state_set_int(st, "rank", rank, err)) &&
        !(rc = ckpt_state_set_int(st, "clock", clock, err)) &&
        !(rc = ckpt_state_set_int(st, "len", (int64_t)opt_state_len(os), err)) &&
        !(rc = ckpt_state_add_tensor(st, "weights", w, opt_state_len(os), err)) &&
        !(rc = ckpt_state_add_opt(st, OPT_ADAM, os, err)) && !(rc = fs_mkdirs(dir, err)))
        rc = ckpt_state_save(st, path, err);
    ckpt_state_destroy(st);
    return rc;
}

/* One listed checkpoint: loads whole and holds exactly what was written for its clock. */
static int check_one(const char *dir, int rank, int64_t clock, float *w, opt_state *os,
                     opt_state *got, pst_err *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/server-%d-clock-%lld.safetensors", dir, rank, (long long)clock);
    ckpt_state *st = NULL;
    int rc = ckpt_state_load(path, "shard", &st, err);
    if (rc)
        return rc;
    int64_t r, c, len;
    const float *lw;
    if ((rc = ckpt_state_get_int(st, "rank", &r, err)) ||
        (rc = ckpt_state_get_int(st, "clock", &c, err)) ||
        (rc = ckpt_state_get_int(st, "len", &len, err)))
        goto done;
    if (r != rank || c != clock || len != N) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: holds rank %lld clock %lld len %lld", path,
                         (long long)r, (long long)c, (long long)len);
        goto done;
    }
    if ((rc = ckpt_state_get_tensor(st, "weights", N, &lw, err)) ||
        (rc = ckpt_state_check_opt(st, OPT_ADAM, N, err)))
        goto done;
    ckpt_state_restore_opt(st, OPT_ADAM, got);
    fill(rank, clock, w, os);
    int same = memcmp(lw, w, N * sizeof *w) == 0 && opt_state_step(got) == clock;
    for (int b = 0; b < opt_state_nbuf(os); b++)
        same &= memcmp(opt_state_buf(os, b), opt_state_buf(got, b), N * sizeof(float)) == 0;
    if (!same)
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: loads, but its contents are not those written "
                         "for clock %lld",
                         path, (long long)clock);
done:
    ckpt_state_destroy(st);
    return rc;
}

static int check_run(const char *dir, pst_err *err)
{
    int64_t tags[64];
    int n = 0;
    int rc = ckpt_list(dir, "ckpt-", "", tags, 64, &n, err);
    if (rc || n == 0) {
        if (!rc)
            printf("-1\n");
        return rc;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/ckpt-%lld/model.safetensors", dir, (long long)tags[0]);
    ckpt_model *m = NULL;
    if ((rc = ckpt_load(path, 1, &m, err)))
        return rc;
    ckpt_model_destroy(m);
    snprintf(path, sizeof path, "%s/ckpt-%lld/optimizer.safetensors", dir, (long long)tags[0]);
    ckpt_state *st = NULL;
    int64_t opt_t = -1;
    if ((rc = ckpt_state_load(path, "optimizer", &st, err)) ||
        (rc = ckpt_state_get_int(st, "opt.t", &opt_t, err)))
        goto done;
    if (opt_t != tags[0])
        rc = pst_err_set(err, PST_ERR_DATA, "%s: optimizer at step %lld in ckpt-%lld", path,
                         (long long)opt_t, (long long)tags[0]);
    else
        printf("%lld\n", (long long)tags[0]);
done:
    ckpt_state_destroy(st);
    return rc;
}

static int leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 6) {
        fprintf(stderr, "usage: ckpt_crash_writer write DIR RANK START KEEP | check DIR RANK "
                        "LAST | once DIR RANK CLOCK | run DIR\n");
        return 2;
    }
    const char *mode = argv[1], *dir = argv[2];
    int rank = argc > 3 ? atoi(argv[3]) : 0;
    int64_t arg = argc > 4 ? atoll(argv[4]) : 0;
    opt_config oc;
    opt_config_default(&oc, OPT_ADAM);
    pst_err err = {0};
    float *w = malloc(N * sizeof *w);
    opt_state *os = opt_state_create(&oc, N, &err), *got = opt_state_create(&oc, N, &err);
    if (!w || !os || !got) {
        fprintf(stderr, "ckpt_crash_writer: out of memory\n");
        return 1;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "server-%d-clock-", rank);
    int rc = 0;
    if (strcmp(mode, "once") == 0 && argc == 5) {
        opt_state *small = opt_state_create(&oc, 16, &err);
        rc = small ? save(dir, rank, arg, w, small, &err) : err.code;
        opt_state_destroy(small);
    } else if (strcmp(mode, "write") == 0 && argc == 6) {
        int keep = atoi(argv[5]);
        for (int64_t c = arg; !rc; c++) {
            if ((rc = save(dir, rank, c, w, os, &err)))
                break;
            char line[32];
            int n = snprintf(line, sizeof line, "%lld\n", (long long)c);
            if (write(1, line, (size_t)n) != n)
                return 4;
            rc = ckpt_prune(dir, prefix, ".safetensors", keep, &err);
        }
    } else if (strcmp(mode, "check") == 0 && argc == 5) {
        int64_t tags[64];
        int n = 0;
        if ((rc = ckpt_list(dir, prefix, ".safetensors", tags, 64, &n, &err)))
            goto out;
        int64_t newest = n > 0 ? tags[0] : -1;
        /* Nothing reported yet (arg < 0): at most the first write, whatever its clock (a
         * writer may start at 100), completed unreported before the kill. */
        if (n == 0 ? arg >= 0 : arg < 0 ? n > 1 : newest != arg && newest != arg + 1) {
            fprintf(stderr,
                    "ckpt_crash_writer: the newest checkpoint listed is clock %lld, but "
                    "the last one reported complete is %lld\n",
                    (long long)newest, (long long)arg);
            return 1;
        }
        for (int i = 0; i < n; i++)
            if ((rc = check_one(dir, rank, tags[i], w, os, got, &err)))
                goto out;
        printf("%lld\n", (long long)newest);
        fprintf(stderr, "%d\n", leftovers(dir));
    } else if (strcmp(mode, "run") == 0 && argc == 3) {
        rc = check_run(dir, &err);
    } else {
        fprintf(stderr, "ckpt_crash_writer: bad arguments (see the top of the source)\n");
        return 2;
    }
out:
    free(w);
    opt_state_destroy(os);
    opt_state_destroy(got);
    if (rc) {
        fprintf(stderr, "ckpt_crash_writer: %s\n", err.msg);
        return rc == PST_ERR_IO ? 4 : 1;
    }
    return 0;
}
