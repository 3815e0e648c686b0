/* cli/cmd_consolidate.c -- `pstrain consolidate`: one model file from a distributed job's
 * shard checkpoints, on demand (while the job runs, or after it stopped).
 *
 * The servers' checkpoints of one clock (ps/srv_ckpt.c: server-<rank>-clock-<c>.safetensors,
 * each the weights of [offset, offset + len) of the flat parameter vector) tile the whole
 * vector; laid side by side they are the model at that clock, written as
 * model.safetensors is, with the architecture and preprocessing of the job. A model with
 * embedding tables holds its dense weights alone; the rows are in the servers' tables files
 * of that clock (tables-server-<rank>-clock-<c>.safetensors, disjoint key sets), merged into
 * the one tables file eval and predict read beside the model file (cli_tables_path). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ckpt/ckpt.h"
#include "ckpt/sparse.h"
#include "base/log.h"
#include "worker/dataprep.h"
#include "worker/trainer.h"

static const char consolidate_synopsis[] =
    "usage: pstrain consolidate [JOB.yaml] --resume DIR [--clock C] [--output FILE] "
    "[--KEY VALUE ...]\n"
    "\n"
    "Writes the whole model at one clock from the servers' shard checkpoints in DIR\n"
    "(checkpoint.dir of a distributed run, or its output.dir): the newest clock every\n"
    "server has complete, or --clock C. The job (file and overrides) must be the\n"
    "one that wrote them; its data is read for the input width, the class names and\n"
    "the fitted preprocessing. FILE defaults to DIR/model-clock-C.safetensors; it is\n"
    "written atomically and loads in `pstrain eval` and `predict`.\n"
    "A model with embedding tables: the servers' tables files of clock C\n"
    "(tables-server-<rank>-clock-C.safetensors) are merged into one beside FILE,\n"
    "where eval and predict look for it: NAME.tables.safetensors for\n"
    "NAME.safetensors, tables.safetensors for model.safetensors. Nothing is written\n"
    "unless both files can be.\n";

#define SHARD_SUFFIX ".safetensors"

/* Loads the S shard files of `clock` from dir into st[0..S) and checks they belong to
 * this job and tile [0, nparams). On failure every st[s] is NULL. */
static int load_shards(const cfg_job *job, const char *dir, int64_t clock, size_t nparams,
                       ckpt_state **st, pst_err *err)
{
    int S = job->cluster.servers, rc = PST_OK;
    char want[24];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)cfg_job_hash(job));
    int64_t at = 0;
    for (int s = 0; s < S && !rc; s++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/server-%d-clock-%lld" SHARD_SUFFIX, dir, s,
                 (long long)clock);
        const char *hash;
        int64_t rank, servers, off, len, c;
        const float *w;
        if ((rc = ckpt_state_load(path, "shard", &st[s], err)) ||
            (rc = ckpt_state_get_str(st[s], "job_hash", &hash, err)) ||
            (rc = ckpt_state_get_int(st[s], "rank", &rank, err)) ||
            (rc = ckpt_state_get_int(st[s], "servers", &servers, err)) ||
            (rc = ckpt_state_get_int(st[s], "clock", &c, err)) ||
            (rc = ckpt_state_get_int(st[s], "offset", &off, err)) ||
            (rc = ckpt_state_get_int(st[s], "len", &len, err)))
            break;
        if (strcmp(hash, want) != 0) {
            rc = pst_err_set(err, PST_ERR_CONFIG,
                             "%s: written by another job (model, "
                             "optimizer, cluster or training settings differ)",
                             path);
            break;
        }
        if (rank != s || servers != S || c != clock || off != at || len < 1 ||
            (uint64_t)(off + len) > nparams) {
            rc = pst_err_set(err, PST_ERR_DATA,
                             "%s: holds server %lld of %lld, parameters "
                             "[%lld, %lld) at clock %lld; expected server %d of %d from "
                             "parameter %lld of %zu",
                             path, (long long)rank, (long long)servers, (long long)off,
                             (long long)(off + len), (long long)c, s, S, (long long)at, nparams);
            break;
        }
        if ((rc = ckpt_state_get_tensor(st[s], "weights", (size_t)len, &w, err)))
            break;
        at = off + len;
    }
    if (!rc && (uint64_t)at != nparams)
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: the shards of clock %lld cover %lld of the "
                         "model's %zu parameters",
                         dir, (long long)clock, (long long)at, nparams);
    if (rc)
        for (int s = 0; s < S; s++) {
            ckpt_state_destroy(st[s]);
            st[s] = NULL;
        }
    return rc;
}

/* The clocks server 0 has checkpoints of, newest first, in `from` or else in
 * from/checkpoints (the folder found goes to dir); PST_ERR_IO when neither has any. */
static int list_clocks(const char *from, char *dir, size_t dircap, int64_t *tags, int cap, int *n,
                       pst_err *err)
{
    int rc;
    snprintf(dir, dircap, "%s", from);
    if ((rc = ckpt_list(dir, "server-0-clock-", SHARD_SUFFIX, tags, cap, n, err)))
        return rc;
    if (*n == 0) {
        snprintf(dir, dircap, "%s/checkpoints", from);
        if ((rc = ckpt_list(dir, "server-0-clock-", SHARD_SUFFIX, tags, cap, n, err)))
            return rc;
    }
    if (*n == 0) {
        /* A later run in this folder set the shards aside (cli/rundir.c, ps/srv_ckpt.c). */
        char aside[4300];
        int64_t t;
        for (int k = 0; k < 2; k++) {
            int na = 0;
            snprintf(aside, sizeof aside, "%s%s/" CKPT_ASIDE, from, k ? "/checkpoints" : "");
            if (ckpt_list(aside, "server-0-clock-", SHARD_SUFFIX, &t, 1, &na, NULL) == PST_OK && na)
                return pst_err_set(err, PST_ERR_IO,
                                   "--resume %s: no shard checkpoint of the run there; %s "
                                   "holds those of an earlier run, set aside when a later run "
                                   "started in this folder (--resume %s to consolidate them)",
                                   from, aside, aside);
        }
        return pst_err_set(err, PST_ERR_IO,
                           "--resume %s: no shard checkpoint there "
                           "(server-<rank>-clock-<c>.safetensors)",
                           from);
    }
    return PST_OK;
}

/* The shards' weights into the flat vector params (load_shards checked every one). */
static int copy_shards(ckpt_state **st, int S, float *params, pst_err *err)
{
    for (int s = 0; s < S; s++) {
        int64_t off, len;
        const float *w;
        if (ckpt_state_get_int(st[s], "offset", &off, err) ||
            ckpt_state_get_int(st[s], "len", &len, err) ||
            ckpt_state_get_tensor(st[s], "weights", (size_t)len, &w, err))
            return err->code;
        memcpy(params + off, w, (size_t)len * sizeof(float));
    }
    return PST_OK;
}

int cli_merge_tables(const char *dir, int servers, int64_t clock, const char *out, pst_err *err)
{
    char(*paths)[4400] = calloc((size_t)servers, sizeof *paths);
    const char **in = calloc((size_t)servers, sizeof *in);
    struct stat st;
    int rc = PST_OK;
    if (!paths || !in)
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    for (int s = 0; s < servers && !rc; s++) {
        snprintf(paths[s], sizeof paths[s], "%s/tables-server-%d-clock-%lld" SHARD_SUFFIX, dir, s,
                 (long long)clock);
        in[s] = paths[s];
        if (stat(paths[s], &st) != 0 || !S_ISREG(st.st_mode))
            rc = pst_err_set(err, PST_ERR_IO,
                             "%s: no such file: server %d's embedding tables of clock %lld "
                             "(each server writes them beside its shard checkpoint)",
                             paths[s], s, (long long)clock);
    }
    if (!rc)
        rc = ckpt_sparse_merge(out, in, servers, err);
    free(paths);
    free(in);
    return rc;
}

int cmd_consolidate(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    (void)stop;
    const char *out = NULL;
    long long want_clock = -1;
    const cli_opt opts[] = {{.name = "clock",
                             .kind = CLI_I64,
                             .dest = &want_clock,
                             .meta = "C",
                             .lo = 0,
                             .hi = 9.2e18,
                             .help = "the clock to consolidate (default: the newest complete one)"},
                            /* --output, as predict spells it; before the job
                             * shorthand of that name (output.dir), which consolidate
                             * does not use. --out: the earlier spelling. */
                            {.name = "output",
                             .kind = CLI_STR,
                             .dest = &out,
                             .meta = "FILE",
                             .help = "where to write the model"},
                            {.name = "out",
                             .kind = CLI_STR,
                             .dest = &out,
                             .meta = "FILE",
                             .help = "the same as --output"},
                            {0}};
    const cli_spec spec = {.cmd = "consolidate",
                           .synopsis = consolidate_synopsis,
                           .opts = opts,
                           .job = 1,
                           .max_pos = 1};
    cli_args args;
    int ec = cli_parse(&spec, argc, argv, &args);
    if (ec >= 0)
        return ec;
    const char *path = args.npos ? args.pos[0] : NULL;
    log_ctx lg;
    log_init(&lg, "consolidate", -1, stderr);
    pst_err err = {0};
    cfg_job *job = NULL;
    wk_data data = {0};
    wk_trainer *tr = NULL;
    int S = 0;
    ckpt_state **st = NULL;
    int rc = cli_load_job(&job, path, args.ov, args.nov, &err);
    cli_args_fini(&args); /* what is still used points into argv */
    if (rc) {
        fprintf(stderr, "pstrain consolidate: %s\n", err.msg);
        return cli_exit_code(rc);
    }
    const char *from = job->checkpoint.resume;
    if (!from) {
        fprintf(stderr, "pstrain consolidate: --resume DIR is required (the shard "
                        "checkpoints' folder)\n");
        cfg_job_free(job);
        return EXIT_USAGE;
    }
    S = job->cluster.servers;
    if (!(st = calloc((size_t)S, sizeof *st))) {
        rc = pst_err_set(&err, PST_ERR_NOMEM, "out of memory");
        goto done;
    }
    char dir[4200];
    int64_t tags[64];
    int n = 0;
    if ((rc = list_clocks(from, dir, sizeof dir, tags, 64, &n, &err)))
        goto done;
    /* The model, built as a worker builds it, for the parameter count and the file. */
    if ((rc = wk_data_load_log(job, job->cluster.workers, 0, NULL, &data, &err)))
        goto done;
    if (!(tr = wk_trainer_create(job, data.train, 0, &err))) {
        rc = err.code;
        goto done;
    }
    ml_model *m = wk_trainer_model(tr);
    size_t P = ml_model_nparams(m);
    int64_t clock = -1;
    for (int i = 0; i < n && clock < 0; i++) {
        if (want_clock >= 0 && tags[i] != want_clock)
            continue;
        pst_err e = {0};
        if ((rc = load_shards(job, dir, tags[i], P, st, &e)) == PST_OK)
            clock = tags[i];
        else if (want_clock >= 0 || rc == PST_ERR_CONFIG || rc == PST_ERR_NOMEM) {
            rc = pst_err_set(&err, rc, "%s", e.msg);
            goto done;
        } else
            log_warn(&lg, "clock %lld is not complete: %s", (long long)tags[i], e.msg);
    }
    if (clock < 0) {
        rc = want_clock >= 0
                 ? pst_err_set(&err, PST_ERR_IO, "%s: no checkpoint of clock %lld", dir, want_clock)
                 : pst_err_set(&err, PST_ERR_DATA,
                               "%s: no clock has a complete checkpoint on "
                               "all %d servers",
                               dir, S);
        goto done;
    }
    if ((rc = copy_shards(st, S, ml_model_params(m), &err)))
        goto done;
    char file[4400];
    if (out)
        snprintf(file, sizeof file, "%s", out);
    else
        snprintf(file, sizeof file, "%s/model-clock-%lld.safetensors", dir, (long long)clock);
    /* The tables first: a missing or clashing tables file leaves neither file written. */
    char tables[4500];
    int sparse = cfg_model_is_sparse(&job->model.spec);
    cli_tables_path(file, tables, sizeof tables);
    if (sparse && (rc = cli_merge_tables(dir, S, clock, tables, &err)))
        goto done;
    if ((rc = ckpt_save_model(file, m, &job->model.spec, data.train, &data.scaler, &err))) {
        if (sparse)
            unlink(tables);
        goto done;
    }
    log_info(&lg, "the model at clock %lld, from %d shard checkpoint(s): %s", (long long)clock, S,
             file);
    if (sparse)
        log_info(&lg, "its embedding tables, merged from the %d servers' tables of clock %lld: %s",
                 S, (long long)clock, tables);
done:
    if (rc)
        fprintf(stderr, "pstrain consolidate: %s\n", err.msg);
    for (int s = 0; st && s < S; s++)
        ckpt_state_destroy(st[s]);
    free(st);
    wk_trainer_destroy(tr);
    wk_data_fini(&data);
    cfg_job_free(job);
    return rc ? cli_exit_code(rc) : EXIT_OK;
}
