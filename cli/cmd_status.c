/* cli/cmd_status.c -- `pstrain status`: asks a running job's coordinator who is alive.
 *
 * The coordinator answers a STATUS request with its status document (the JSON of its
 * /status page, docs/observability.md); this prints it as a table, or as it is (--json).
 * The coordinator is found from RUN_DIR/coordinator.endpoint (it writes the file while it
 * runs) or given with --coordinator. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "job/job.h"
#include "base/log.h"
#include "net/net.h"
#include "proto/msg.h"

static const char status_synopsis[] =
    "usage: pstrain status [RUN_DIR] [--coordinator ENDPOINT] [--job JOB.yaml] [--json]\n"
    "                      [--timeout S]\n"
    "\n"
    "Asks a running job's coordinator for the state of every process: role, rank,\n"
    "state (alive, late, lost, done, waiting), pid, seconds since its last heartbeat,\n"
    "incarnation and restarts, and the workers' epoch, step and loss.\n"
    "\n"
    "  RUN_DIR            the job's output.dir: the coordinator writes its endpoint to\n"
    "                     RUN_DIR/coordinator.endpoint while it runs (default: the\n"
    "                     default job's, runs/fashion-mnist)\n";
static const char status_epilog[] =
    "Exit status: 0 answered; 2 bad option; 4 no endpoint file; 75 no answer in time\n"
    "(the job is not running, or the endpoint is unreachable).\n";

static int read_endpoint(const char *dir, char *ep, size_t cap)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/coordinator.endpoint", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "pstrain status: %s: %s (is the job running, with output.dir %s?)\n", path,
                strerror(errno), dir);
        return EXIT_IO;
    }
    int ok = fgets(ep, (int)cap, f) != NULL;
    fclose(f);
    ep[strcspn(ep, "\r\n")] = '\0';
    if (!ok || strncmp(ep, "tcp://", 6) != 0) {
        fprintf(stderr, "pstrain status: %s: line 1 is not a tcp:// endpoint\n", path);
        return EXIT_IO;
    }
    return EXIT_OK;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* The document as a table. Returns EXIT_OK, or EXIT_FAILURE_RUNTIME if it does not parse. */
static int print_table(const char *text, size_t len)
{
    cJSON *doc = cJSON_ParseWithLength(text, len);
    const cJSON *procs = cJSON_GetObjectItemCaseSensitive(doc, "processes");
    if (!doc || !cJSON_IsArray(procs)) {
        fprintf(stderr, "pstrain status: the coordinator's answer is not a status document\n");
        cJSON_Delete(doc);
        return EXIT_FAILURE_RUNTIME;
    }
    printf("job %s: %s, %s, %.0f%% done (%.0f of %.0f workers finished, %.0f lost), up %.0f s\n",
           str(doc, "job"), str(doc, "phase"), str(doc, "consistency"),
           100.0 * num(doc, "progress"), num(doc, "workers_done"), num(doc, "workers"),
           num(doc, "workers_lost"), num(doc, "uptime_s"));
    printf("%-12s %-8s %-8s %10s %10s %6s  %-16s %s\n", "PROCESS", "STATE", "PID", "HEARD",
           "RESTARTS", "EPOCH", "STEP", "LOSS");
    const cJSON *p;
    cJSON_ArrayForEach(p, procs)
    {
        char name[32], heard[24] = "-", pid[16] = "-", step[40] = "", epoch[16] = "", loss[24] = "",
                       restarts[16] = "-";
        snprintf(name, sizeof name, "%s[%.0f]", str(p, "role"), num(p, "rank"));
        if (!isnan(num(p, "last_heard_s_ago")))
            snprintf(heard, sizeof heard, "%.1f s ago", num(p, "last_heard_s_ago"));
        if (!isnan(num(p, "pid")))
            snprintf(pid, sizeof pid, "%.0f", num(p, "pid"));
        if (!isnan(num(p, "restarts")))
            snprintf(restarts, sizeof restarts, "%.0f", num(p, "restarts"));
        if (!isnan(num(p, "epoch"))) {
            snprintf(epoch, sizeof epoch, "%.0f", num(p, "epoch"));
            snprintf(step, sizeof step, "%.0f/%.0f", num(p, "steps_done"), num(p, "steps_total"));
            if (!isnan(num(p, "loss")))
                snprintf(loss, sizeof loss, "%.4f", num(p, "loss"));
        }
        printf("%-12s %-8s %-8s %10s %10s %6s  %-16s %s\n", name, str(p, "state"), pid, heard,
               restarts, epoch, step, loss);
    }
    cJSON_Delete(doc);
    return EXIT_OK;
}

/* Where to ask (--coordinator, else the run folder's coordinator.endpoint) and the job,
 * for its keys (--job, else RUN_DIR/job.yaml when there is one; *job NULL without). Returns
 * the exit code: EXIT_OK, or the failure's, said on stderr. */
static int find_job(const char *dir, const char *coordinator, const char *job_path, char *ep,
                    size_t cap, cfg_job **job)
{
    if (coordinator)
        snprintf(ep, cap, "%s", coordinator);
    else {
        int rc = read_endpoint(dir ? dir : "runs/fashion-mnist", ep, cap);
        if (rc)
            return rc;
    }
    /* The job's keys: a coordinator with CURVE answers only an allowed client key. */
    char job_buf[4200];
    if (!job_path && dir) {
        snprintf(job_buf, sizeof job_buf, "%s/job.yaml", dir);
        if (access(job_buf, R_OK) == 0)
            job_path = job_buf;
    }
    pst_err err = {0};
    if (job_path && cli_load_job(job, job_path, NULL, 0, &err)) {
        fprintf(stderr, "pstrain status: %s\n", err.msg);
        return cli_exit_code(err.code);
    }
    return EXIT_OK;
}

int cmd_status(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    const char *coordinator = NULL, *job_path = NULL;
    int json = 0;
    double timeout_s = 5;
    const cli_opt opts[] = {
        {.name = "coordinator",
         .kind = CLI_STR,
         .dest = &coordinator,
         .meta = "EP",
         .help = "ask this endpoint instead (tcp://host:port)"},
        {.name = "job",
         .kind = CLI_STR,
         .dest = &job_path,
         .meta = "JOB.yaml",
         .help = "the job, for its security keys when the job runs with CURVE\n(default: "
                 "RUN_DIR/job.yaml when it exists); the status\nrequest uses "
                 "security.client_key, which the coordinator's\nallow-list must hold"},
        {.name = "json",
         .kind = CLI_FLAG,
         .dest = &json,
         .help = "print the status document as it came (one JSON line)"},
        {.name = "timeout",
         .kind = CLI_NUM,
         .dest = &timeout_s,
         .meta = "S",
         .help = "seconds to wait for the answer (default 5)"},
        {0}};
    const cli_spec spec = {.cmd = "status",
                           .synopsis = status_synopsis,
                           .opts = opts,
                           .epilog = status_epilog,
                           .max_pos = 1,
                           .unknown = "unknown or incomplete option"};
    cli_args args;
    int ec = cli_parse(&spec, argc, argv, &args);
    if (ec >= 0)
        return ec;
    const char *dir = args.npos ? args.pos[0] : NULL;
    cli_args_fini(&args); /* dir points into argv */
    if (!(timeout_s > 0 && timeout_s <= 3600)) {
        fprintf(stderr, "pstrain status: --timeout %g: seconds in (0, 3600]\n", timeout_s);
        return EXIT_USAGE;
    }
    char ep[300];
    cfg_job *job = NULL;
    int found = find_job(dir, coordinator, job_path, ep, sizeof ep, &job);
    if (found != EXIT_OK)
        return found;
    pst_err err = {0};
    int code = EXIT_OK;
    log_ctx lg; /* CURVE refusals of this client */
    log_init(&lg, "status", -1, stderr);
    net_msg *m = NULL;
    msg_in *in = NULL;
    net_sock *s = NULL;
    net_ctx *ctx = net_ctx_create(1, &err);
    if (!ctx) {
        fprintf(stderr, "pstrain status: %s\n", err.msg);
        code = cli_exit_code(err.code);
        goto cleanup;
    }
    if (job && job->security.server_public) {
        net_curve_files cf = {NULL, job->security.server_public, job->security.client_key, NULL};
        if (net_ctx_curve(ctx, &cf, &lg, &err)) {
            fprintf(stderr, "pstrain status: %s\n", err.msg);
            code = cli_exit_code(err.code);
            goto cleanup;
        }
    }
    m = net_msg_create(&err);
    in = malloc(sizeof *in);
    net_opts o = {.linger_ms = 1, .max_msg_bytes = WIRE_MAX_STATUS + WIRE_MAX_META};
    s = m && in ? net_sock_create(ctx, NET_DEALER, &o, &err) : NULL;
    if (!s || net_sock_connect(s, ep, &err)) {
        fprintf(stderr, "pstrain status: %s: %s\n", ep, err.msg[0] ? err.msg : "out of memory");
        code = cli_exit_code(err.code ? err.code : PST_ERR_NOMEM);
        goto cleanup;
    }
    wire_env h;
    wire_env_init(&h, WIRE_MSG_STATUS, "status", 0);
    h.request_id = 1;
    int rc = msg_call(s, m, in, &h, NULL, WIRE_MSG_STATUS, 0, (int)(timeout_s * 1000), stop, &err);
    if (rc == PST_ERR_TIMEOUT)
        rc = pst_err_set(&err, PST_ERR_TIMEOUT,
                         "no answer from the coordinator at %s within "
                         "%g s (is the job running?)",
                         ep, timeout_s);
    if (!rc && *stop)
        rc = pst_err_set(&err, PST_ERR_STATE, "interrupted");
    if (!rc && in->npayload != 1)
        rc = pst_err_set(&err, PST_ERR_PEER, "the coordinator's answer has no status document");
    if (rc) {
        fprintf(stderr, "pstrain status: %s\n", err.msg);
        code = *stop ? cli_stop_exit_code((int)*stop) : cli_exit_code(rc);
        goto cleanup;
    }
    if (json)
        printf("%.*s\n", (int)in->payload_len[0], (const char *)in->payload[0]);
    else
        code = print_table(in->payload[0], in->payload_len[0]);
cleanup:
    cfg_job_free(job);
    net_sock_destroy(s);
    net_msg_destroy(m);
    free(in);
    net_ctx_destroy(ctx);
    return code;
}
