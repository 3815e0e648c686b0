/* ps/server.c -- the server's network loop; the update and consistency rules are in
 * shard.c. See server.h. */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/ident.h"
#include "net/net.h"
#include "proto/hb.h"
#include "proto/msg.h"
#include "ps/handler.h"
#include "ps/async.h"
#include "ps/shard.h"
#include "ps/srv_ckpt.h"

#define ROLE "server"
/* Messages a worker's connection may queue before this server reads them: 4 chunks of
 * 16 MiB keep the loop busy while the next arrive. */
#define SRV_RCV_HWM 4

typedef struct {
    const srv_options *o;
    net_ctx *ctx;
    net_sock *sock;  /* ROUTER: workers connect here */
    net_sock *coord; /* DEALER to the coordinator */
    net_msg *m;
    msg_in *in; /* every message received, coordinator's and workers' */
    srv_shard *shard;
    srv_sparse *sparse;   /* NULL: the model has no embedding tables */
    srv_handler *handler; /* the workers' messages (handler.c) */
    srv_ckpt *ckpt;       /* the shard's checkpoints (srv_ckpt.c) */
    int nworkers;
    /* Membership (from the coordinator's heartbeat answers), passed to the handler. */
    hb_client *hb;
    uint64_t hb_version;
    uint64_t *mgen; /* scratch for hb_membership */
    uint8_t *mlost, *mdone;
    net_faults *faults;
    struct { /* Prometheus series (docs/observability.md); all NULL when off */
        obs_metric *pushes, *pulls, *bytes_in, *bytes_out, *updates, *refused, *nonfinite, *apply,
            *gap, *gap_max, *live, *workers, *clock, *pending, *ckpts, *ckpt_age, *ckpt_clock,
            *start, *sp_rows, *sp_admitted, *sp_refused, *sp_evicted, *malformed, *rejected;
        obs_metric *in_step, *out_step; /* dense payload bytes per clock */
    } mx;
} server;

/* Replaces the host of a bound endpoint ("tcp://0.0.0.0:4242") with the advertised one. */
static void advertised_endpoint(char *out, size_t cap, const char *bound, const srv_options *o)
{
    const char *port = strrchr(bound, ':');
    char host[128];
    if (o->advertise && o->advertise[0])
        snprintf(host, sizeof host, "%s", o->advertise);
    else if (strcmp(o->bind_host, "0.0.0.0") == 0 || strcmp(o->bind_host, "*") == 0) {
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "127.0.0.1");
        host[sizeof host - 1] = '\0';
    } else
        snprintf(host, sizeof host, "%s", o->bind_host);
    snprintf(out, cap, "tcp://%.128s%.16s", host, port ? port : ":0");
}

/* Registers this server's series (srv_options.metrics). */
static int metrics_register(server *s, pst_err *err)
{
    obs_registry *r = s->o->metrics;
    if (!r)
        return PST_OK;
    /* Apply times from a few microseconds (a small chunk, ssp) to seconds (a 16 MiB chunk
     * of adam on a loaded host); clock gaps as the staleness bound allows. */
    static const double apply_b[] = {1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3,
                                     0.01, 0.03, 0.1,  0.3,  1,    3};
    static const double gap_b[] = {0, 1, 2, 3, 4, 6, 8, 16, 32, 64};
    const int na = (int)(sizeof apply_b / sizeof apply_b[0]);
    const int ng = (int)(sizeof gap_b / sizeof gap_b[0]);
    if (!(s->mx.pushes = obs_counter(r, "pstrain_server_pushes_total",
                                     "Gradient chunks (PUSH) received from workers and accepted.",
                                     NULL, err)) ||
        !(s->mx.pulls = obs_counter(r, "pstrain_server_pulls_total",
                                    "Pulls answered with weights (PULL_REPLY sent).", NULL, err)) ||
        !(s->mx.bytes_in =
              obs_counter(r, "pstrain_server_received_bytes_total",
                          "Float payload bytes received (INIT and PUSH).", NULL, err)) ||
        !(s->mx.bytes_out = obs_counter(r, "pstrain_server_sent_bytes_total",
                                        "Float payload bytes sent in pull replies.", NULL, err)) ||
        !(s->mx.updates = obs_counter(r, "pstrain_server_updates_total",
                                      "Optimizer updates applied to the shard.", NULL, err)) ||
        !(s->mx.refused = obs_counter(r, "pstrain_server_refused_requests_total",
                                      "Worker messages refused with an ERROR reply.", NULL, err)) ||
        !(s->mx.malformed =
              obs_counter(r, MSG_REFUSED_METRIC, MSG_REFUSED_HELP, "reason=\"malformed\"", err)) ||
        !(s->mx.rejected =
              obs_counter(r, MSG_REFUSED_METRIC, MSG_REFUSED_HELP, "reason=\"refused\"", err)) ||
        !(s->mx.nonfinite =
              obs_counter(r, "pstrain_server_nonfinite_gradients_total",
                          "Pushes refused because they held NaN or Inf.", NULL, err)) ||
        !(s->mx.apply = obs_histogram(r, "pstrain_server_push_apply_seconds",
                                      "Time to apply one pushed chunk (bsp: sum, and the update "
                                      "when the clock completes).",
                                      NULL, apply_b, na, err)) ||
        !(s->mx.gap = obs_histogram(r, "pstrain_server_pull_clock_gap",
                                    "Clock gap (requester's clock - slowest live clock) of each "
                                    "answered pull: the staleness served.",
                                    NULL, gap_b, ng, err)) ||
        !(s->mx.gap_max = obs_gauge(r, "pstrain_server_clock_gap_max",
                                    "Largest clock gap among answered pulls.", NULL, err)) ||
        !(s->mx.live = obs_gauge(r, "pstrain_server_live_workers",
                                 "Workers in the live set (neither done nor lost).", NULL, err)) ||
        !(s->mx.workers =
              obs_gauge(r, "pstrain_server_workers", "Workers of the job.", NULL, err)) ||
        !(s->mx.clock = obs_gauge(r, "pstrain_server_clock",
                                  "Clock of the shard (bsp: updates applied; ssp/asp: the "
                                  "largest worker clock).",
                                  NULL, err)) ||
        !(s->mx.sp_rows = obs_gauge(r, "pstrain_server_sparse_rows",
                                    "Embedding rows this server holds (its keys of every table).",
                                    NULL, err)) ||
        !(s->mx.sp_admitted = obs_gauge(r, "pstrain_server_sparse_admitted_rows",
                                        "Embedding rows created since the start.", NULL, err)) ||
        !(s->mx.sp_refused =
              obs_gauge(r, "pstrain_server_sparse_refused_rows",
                        "New keys refused over the row budget (read as zeros).", NULL, err)) ||
        !(s->mx.sp_evicted = obs_gauge(r, "pstrain_server_sparse_evicted_rows",
                                       "Embedding rows dropped by expiry.", NULL, err)) ||
        !(s->mx.pending = obs_gauge(r, "pstrain_server_pending_pulls",
                                    "Pulls parked until the clocks allow them.", NULL, err)) ||
        !(s->mx.ckpts = obs_counter(r, "pstrain_server_checkpoints_total",
                                    "Shard checkpoints written by this process.", NULL, err)) ||
        !(s->mx.ckpt_age = obs_age(r, "pstrain_server_last_checkpoint_age_seconds",
                                   "Seconds since the last checkpoint was written (absent "
                                   "before the first).",
                                   NULL, err)) ||
        !(s->mx.ckpt_clock = obs_gauge(r, "pstrain_server_last_checkpoint_clock",
                                       "Clock of the newest checkpoint written or resumed "
                                       "from; -1: none.",
                                       NULL, err)) ||
        !(s->mx.start =
              obs_gauge(r, "process_start_time_seconds",
                        "Start time of the process since the Unix epoch in seconds.", NULL, err)))
        return err->code;
    /* cluster.compression's effect, read without dividing two series. */
    if (!(s->mx.in_step = obs_gauge(r, "pstrain_server_received_bytes_per_step",
                                    "Float payload bytes received (INIT and PUSH, as encoded) "
                                    "per clock of the shard.",
                                    NULL, err)) ||
        !(s->mx.out_step = obs_gauge(r, "pstrain_server_sent_bytes_per_step",
                                     "Float payload bytes sent in pull replies (as encoded) per "
                                     "clock of the shard.",
                                     NULL, err)))
        return err->code;
    obs_set(s->mx.start, obs_now());
    obs_set(s->mx.ckpt_clock, -1);
    return PST_OK;
}

/* Copies the figures the loop keeps anyway into the series: once per message, so the hot
 * path itself only times the apply. */
static void metrics_publish(server *s)
{
    if (!s->o->metrics || !s->shard || !s->handler)
        return;
    srv_shard_stats st;
    srv_shard_get_stats(s->shard, &st);
    obs_set(s->mx.pushes, (double)st.pushes);
    obs_set(s->mx.updates, (double)st.updates);
    obs_set(s->mx.nonfinite, (double)st.rejected_nonfinite);
    obs_set(s->mx.gap_max, (double)st.max_clock_gap);
    srv_handler_stats hs;
    srv_handler_get_stats(s->handler, &hs);
    obs_set(s->mx.pulls, (double)hs.pulls);
    obs_set(s->mx.bytes_in, (double)hs.bytes_in);
    obs_set(s->mx.bytes_out, (double)hs.bytes_out);
    double clocks = srv_shard_clock(s->shard) > 0 ? (double)srv_shard_clock(s->shard) : 1.0;
    obs_set(s->mx.in_step, (double)hs.bytes_in / clocks);
    obs_set(s->mx.out_step, (double)hs.bytes_out / clocks);
    obs_set(s->mx.live, srv_shard_live_workers(s->shard));
    obs_set(s->mx.clock, (double)srv_shard_clock(s->shard));
    obs_set(s->mx.pending, (double)hs.parked);
    if (s->sparse) {
        srv_sparse_stats ss;
        srv_sparse_get_stats(s->sparse, &ss);
        obs_set(s->mx.sp_rows, (double)ss.tables.rows);
        obs_set(s->mx.sp_admitted, (double)ss.tables.admitted);
        obs_set(s->mx.sp_refused, (double)ss.tables.refused);
        obs_set(s->mx.sp_evicted, (double)ss.tables.evicted);
    }
}

/* What WELCOME said, kept while s->in takes other messages. */
typedef struct {
    wire_welcome w;
    wire_membership members; /* a restarted server's (nworkers 0: none came) */
} welcome_copy;

static int register_with_coordinator(server *s, const char *endpoint, welcome_copy *welcome,
                                     pst_err *err)
{
    const srv_options *o = s->o;
    wire_env h;
    wire_env_init(&h, WIRE_MSG_HELLO, ROLE, o->rank);
    wire_hello hello = {.job_hash = cfg_job_hash(o->job), .pid = (int)getpid()};
    snprintf(hello.endpoint, sizeof hello.endpoint, "%s", endpoint);
    hello.nckpt = srv_ckpt_found(s->ckpt, hello.ckpt_clocks, &hello.ckpt_any);
    int rc =
        msg_register(s->coord, s->m, s->in, &h, &hello, o->coordinator, o->job->cluster.timeout_s,
                     o->job->cluster.servers, o->job->cluster.workers, o->stop, err);
    if (rc || *o->stop)
        return rc;
    welcome->w = *s->in->b.welcome;
    welcome->members.nworkers = welcome->members.nservers = 0;
    if (s->in->b.membership)
        welcome->members = *s->in->b.membership;
    return PST_OK;
}

/* The shard's checkpoint of its clock, unless it has it already (the end of a run or a
 * stop). */
static int write_final(server *s, pst_err *err)
{
    int64_t clock = srv_shard_clock(s->shard);
    if (!s->o->job->checkpoint.enabled || !srv_shard_initialized(s->shard) ||
        clock == srv_ckpt_last(s->ckpt))
        return PST_OK;
    return srv_ckpt_write(s->ckpt, s->shard, clock, err);
}

/* BYE until acknowledged, at most until deadline (net_now_ms). */
static int send_bye(server *s, int64_t deadline, pst_err *err)
{
    srv_shard_stats st;
    srv_shard_get_stats(s->shard, &st);
    srv_handler_stats hs;
    srv_handler_get_stats(s->handler, &hs);
    wire_env h;
    wire_env_init(&h, WIRE_MSG_BYE, ROLE, s->o->rank);
    wire_stats figures = {.pushes = st.pushes,
                          .pulls = hs.pulls,
                          /* sparse keys, gradients and rows included */
                          .bytes_in = hs.bytes_in + hs.sparse_bytes_in,
                          .bytes_out = hs.bytes_out + hs.sparse_bytes_out,
                          .max_clock_gap = st.max_clock_gap,
                          .updates = st.updates,
                          .nonfinite = st.rejected_nonfinite,
                          .repeats = st.repeats,
                          .refused = hs.malformed + hs.rejected};
    wire_body bye = {.stats = &figures};
    srv_handler_flush_log(s->handler);
    double clocks = srv_shard_clock(s->shard) > 0 ? (double)srv_shard_clock(s->shard) : 1.0;
    log_info(s->o->lg,
             "done: %llu updates from %llu pushes, %llu pulls answered, %.1f MB in, %.1f MB "
             "out (%.0f and %.0f bytes per step), largest clock gap served %lld, %llu "
             "non-finite gradients %s, %llu repeated chunks ignored, %llu workers lost, %llu "
             "rejoined, %llu messages refused (%llu malformed)",
             (unsigned long long)st.updates, (unsigned long long)st.pushes,
             (unsigned long long)hs.pulls, hs.bytes_in / 1e6, hs.bytes_out / 1e6,
             hs.bytes_in / clocks, hs.bytes_out / clocks, (long long)st.max_clock_gap,
             (unsigned long long)st.rejected_nonfinite,
             s->o->job->cluster.nonfinite == CFG_NONFINITE_SKIP ? "skipped" : "rejected",
             (unsigned long long)st.repeats, (unsigned long long)st.lost_workers,
             (unsigned long long)st.rejoins, (unsigned long long)(hs.malformed + hs.rejected),
             (unsigned long long)hs.malformed);
    if (s->sparse) {
        srv_sparse_stats ss;
        srv_sparse_get_stats(s->sparse, &ss);
        log_info(s->o->lg,
                 "sparse: %d table(s), %llu rows held (%.1f MB), %llu admitted, %llu pending, "
                 "%llu refused over the budget, %llu evicted; %llu pushes (%llu keys), %llu "
                 "rows pulled, %llu bytes in, %llu bytes out",
                 srv_sparse_ntables(s->sparse), (unsigned long long)ss.tables.rows,
                 ss.tables.bytes / 1e6, (unsigned long long)ss.tables.admitted,
                 (unsigned long long)ss.tables.pending, (unsigned long long)ss.tables.refused,
                 (unsigned long long)ss.tables.evicted, (unsigned long long)ss.pushes,
                 (unsigned long long)ss.keys_in, (unsigned long long)ss.keys_out,
                 (unsigned long long)hs.sparse_bytes_in, (unsigned long long)hs.sparse_bytes_out);
    }
    /* Until the coordinator acknowledges (the BYE may be lost), but not for ever: the job
     * is over either way. The ACK itself may be lost too, and the coordinator exits once it
     * has every BYE, so a repeat would then wait for an answer that never comes. The
     * coordinator sends SHUTDOWN again every heartbeat interval to each server whose BYE it
     * lacks: SHUTDOWN_QUIET intervals without one (while our BYE went again each interval)
     * mean it has ours -- wrong only if all those SHUTDOWNs and BYEs were lost. */
    enum { SHUTDOWN_QUIET = 3 };
    int interval = s->o->job->cluster.heartbeat_ms;
    int64_t last_shutdown = net_now_ms();
    while (net_now_ms() < deadline) {
        int rc = msg_send(s->coord, NULL, 0, &h, &bye, NULL, 0, s->o->job->cluster.timeout_s * 1000,
                          err);
        if (rc)
            return rc;
        int64_t until = net_now_ms() + interval;
        for (int left; (left = (int)(until - net_now_ms())) > 0;) {
            pst_err e = {0};
            if (msg_recv(s->coord, s->m, 0, s->in, left, &e) != PST_OK)
                continue;
            if (s->in->h.type == WIRE_MSG_ACK)
                return PST_OK;
            if (s->in->h.type == WIRE_MSG_SHUTDOWN)
                last_shutdown = net_now_ms();
        }
        if (net_now_ms() - last_shutdown >= (int64_t)SHUTDOWN_QUIET * interval) {
            log_debug(s->o->lg,
                      "no ACK of BYE, but no SHUTDOWN for %d ms either: the "
                      "coordinator has it",
                      SHUTDOWN_QUIET * interval);
            return PST_OK;
        }
    }
    log_warn(s->o->lg, "the coordinator did not acknowledge BYE");
    return PST_OK;
}

/* What the server is waiting for, for timeout messages. */
static void describe_wait(const server *s, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "worker clocks:");
    for (int w = 0; w < s->nworkers && n > 0 && (size_t)n < cap; w++)
        n += snprintf(buf + n, cap - (size_t)n, " worker[%d]=%lld", w,
                      (long long)srv_shard_worker_clock(s->shard, w));
    srv_handler_stats hs;
    srv_handler_get_stats(s->handler, &hs);
    if (n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, ", %d live, %zu pulls waiting",
                 srv_shard_live_workers(s->shard), hs.parked);
}

/* A stop that cannot end as agreed (no SHUTDOWN in time, the coordinator gone): the
 * other shards may hold another clock, or a worker's step this one lacks, so nothing is
 * written -- a checkpoint of a clock no other server has would only push out an older
 * one they share (checkpoint.keep), or an earlier run's set aside. */
static void stop_alone(server *s, int sig, const char *why)
{
    int64_t last = srv_ckpt_last(s->ckpt);
    char newest[64] = "none";
    if (last >= 0)
        snprintf(newest, sizeof newest, "clock %lld", (long long)last);
    log_warn(s->o->lg,
             "stop (signal %d): %s; writing no checkpoint of this shard's clock %lld, which the "
             "other shards may not share (the newest written: %s)",
             sig, why, (long long)srv_shard_clock(s->shard), newest);
    if (s->o->stopped_by)
        *s->o->stopped_by = sig;
}

/* A stop: this process's signal or the coordinator's announcement (0: none). */
static int stop_signal_of(const server *s)
{
    return *s->o->stop ? (int)*s->o->stop : hb_stop_signal(s->hb);
}

static int serve(server *s, pst_err *err)
{
    const srv_options *o = s->o;
    int rc = PST_OK, stop_sig = 0;
    int64_t stop_ms = 0;
    const int window = hb_stop_window_ms(o->job->cluster.heartbeat_timeout_s);
    net_sock *socks[2] = {s->sock, s->coord};
    for (;;) {
        uint64_t ready = 0;
        if (!stop_sig && (stop_sig = stop_signal_of(s))) {
            stop_ms = net_now_ms();
            log_info(o->lg,
                     "stop (signal %d): taking the workers' last pushes until the "
                     "coordinator's SHUTDOWN",
                     stop_sig);
        }
        if (*o->stop && net_now_ms() - stop_ms > window * 3 / 4) {
            stop_alone(s, stop_sig, "no SHUTDOWN from the coordinator in time");
            return PST_OK;
        }
        /* The coordinator watches the workers; this server watches the coordinator. */
        if ((rc = hb_check(s->hb, err))) {
            if (stop_sig) {
                stop_alone(s, stop_sig, err->msg);
                return PST_OK;
            }
            char what[512];
            describe_wait(s, what, sizeof what);
            pst_err_prefix(err, "server[%d] (%s)", o->rank, what);
            break;
        }
        if (s->hb) {
            uint64_t version = 0;
            int n = hb_membership(s->hb, s->nworkers, s->mgen, s->mlost, s->mdone, &version);
            if (version != s->hb_version && n == s->nworkers) {
                s->hb_version = version;
                srv_handler_membership(s->handler, s->mgen, s->mlost, s->mdone);
            }
            if ((rc = srv_handler_tick(s->handler, err)))
                break;
        }
        rc = net_poll(socks, 2, 200, &ready, err);
        if (rc == PST_ERR_TIMEOUT) {
            rc = PST_OK;
            continue;
        }
        if (rc)
            break;
        /* Stopped in the poll past the heartbeat timeout: the coordinator may have fenced
         * this incarnation; hb_check (above) asks before any request is answered. */
        if (hb_away(s->hb))
            continue;
        if (ready & 1) {
            pst_err perr = {0};
            int r = msg_recv(s->sock, s->m, 1, s->in, 0, &perr);
            if (r == PST_OK) {
                rc = srv_handle(s->handler, s->in, err);
                metrics_publish(s);
                if (rc)
                    break;
            } else if (r == PST_ERR_PEER)
                srv_handle_refused(s->handler, s->in, &perr);
            else if (r != PST_ERR_TIMEOUT) {
                rc = pst_err_set(err, r, "%s", perr.msg);
                break;
            }
        }
        if (ready & 2) {
            pst_err perr = {0};
            int r = msg_recv(s->coord, s->m, 0, s->in, 0, &perr);
            if (r == PST_OK && s->in->h.type == WIRE_MSG_SHUTDOWN) {
                /* Who was lost, as the coordinator knows it now (a heartbeat may not have
                 * told us yet): the checkpoint is then of the clock the live workers reached,
                 * the same on every server. */
                const wire_membership *m = s->in->b.membership;
                if (m && m->nworkers == s->nworkers)
                    srv_handler_membership(s->handler, m->gen, m->lost, m->done);
                if (s->in->h.clock < 0)
                    log_warn(o->lg, "stop: not every worker stopped at one clock; writing no "
                                    "checkpoint");
                else if ((rc = write_final(s, err)))
                    break;
                /* A stop's BYE is bounded by the stop's window, the end of a run's by
                 * twice the heartbeat timeout. */
                int64_t now = net_now_ms();
                rc = send_bye(s,
                              stop_sig ? now + window / 4
                                       : now + 2000LL * o->job->cluster.heartbeat_timeout_s,
                              err);
                if (stop_sig && o->stopped_by)
                    *o->stopped_by = stop_sig;
                break;
            }
            if (r == PST_ERR_PEER)
                log_warn(o->lg, "dropped a malformed message from the coordinator: %s", perr.msg);
        }
    }
    return rc;
}

/* A restarted server (WELCOME rejoin): the shard from this server's newest complete
 * checkpoint, the workers' incarnations and who is done or lost from the membership that
 * came with WELCOME; then the shard learns the workers' clocks from their requests (which
 * they send again, unanswered, to this new incarnation) -- see srv_shard_begin_recovery. */
static int recover(server *s, const welcome_copy *welcome, pst_err *err)
{
    const srv_options *o = s->o;
    int rc = srv_ckpt_scan(s->ckpt, srv_ckpt_dir(s->ckpt), err);
    if (rc)
        return pst_err_prefix(err, "server[%d] restarted", o->rank);
    int64_t clocks[WIRE_MAX_CKPTS];
    int any;
    if (srv_ckpt_found(s->ckpt, clocks, &any) == 0)
        return pst_err_set(err, PST_ERR_DATA,
                           "server[%d] restarted but has no complete "
                           "checkpoint in %s to recover its shard from (set "
                           "checkpoint.every_steps): its parameters are lost",
                           o->rank, srv_ckpt_dir(s->ckpt));
    if ((rc = srv_ckpt_restore(s->ckpt, s->shard, clocks[0], err)))
        return rc;
    srv_handler_recover(s->handler, &welcome->members, clocks[0]);
    log_warn(o->lg,
             "restarted (incarnation %llu): recovering the shard from the checkpoint of "
             "clock %lld; learning the workers' clocks from their requests",
             (unsigned long long)welcome->w.generation, (long long)clocks[0]);
    return PST_OK;
}

/* After WELCOME: the shard of this server's range, its handler and the heartbeat thread. */
static int setup_shard(server *s, const wire_welcome *welcome, pst_err *err)
{
    const srv_options *o = s->o;
    if (o->rank >= welcome->num_servers)
        return pst_err_set(err, PST_ERR_CONFIG, "rank %d but the job has %d servers", o->rank,
                           welcome->num_servers);
    uint64_t base = welcome->shard_offsets[o->rank];
    uint64_t len = welcome->shard_offsets[o->rank + 1] - base;
    /* A sparse model with fewer dense floats than servers leaves some ranges empty: such a
     * server holds only its share of the tables (by key, spt_owner), and its empty shard
     * keeps the clock from the workers' empty pushes. */
    if (len == 0)
        log_info(o->lg,
                 "owns no dense parameter (the model's %llu dense floats do not go around %d "
                 "servers): it holds its share of the sparse tables",
                 (unsigned long long)welcome->nparams, welcome->num_servers);
    s->nworkers = welcome->num_workers;
    opt_config oc = o->job->optimizer;
    const cfg_cluster *cl = &o->job->cluster;
    if (oc.sched.kind == OPT_SCHED_COSINE && oc.sched.total_steps == 0)
        oc.sched.total_steps = welcome->total_updates > 0 ? (int64_t)welcome->total_updates : 1;
    int momentum_rule = oc.kind == OPT_MOMENTUM || oc.kind == OPT_NESTEROV;
    if (cl->async_momentum && cl->consistency != CFG_CONS_BSP && momentum_rule) {
        float mu = srv_async_momentum(oc.momentum, s->nworkers);
        log_info(o->lg,
                 "cluster.async_momentum: explicit momentum %g for the %g of %d "
                 "asynchronous workers (implicit %g)",
                 (double)mu, (double)oc.momentum, s->nworkers, 1.0 - 1.0 / s->nworkers);
        oc.momentum = mu;
    }
    s->shard = srv_shard_create(base, len, &oc, cl->consistency, cl->staleness, s->nworkers, err);
    if (!s->shard)
        return err->code;
    if (srv_shard_set_async(s->shard, cl->staleness_lr, cl->delay_compensation, err))
        return err->code;
    s->mgen = calloc((size_t)s->nworkers, sizeof *s->mgen);
    s->mlost = calloc((size_t)s->nworkers, 1);
    s->mdone = calloc((size_t)s->nworkers, 1);
    if (!s->mgen || !s->mlost || !s->mdone)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    srv_handler_options hopt = {.rank = o->rank,
                                .job = o->job,
                                .lg = o->lg,
                                .sock = s->sock,
                                .shard = s->shard,
                                .nworkers = s->nworkers,
                                .ckpt = s->ckpt,
                                .apply = s->mx.apply,
                                .gap = s->mx.gap,
                                .refused = s->mx.refused,
                                .malformed = s->mx.malformed,
                                .rejected = s->mx.rejected};
    /* Every server holds its share of every table, whatever its dense range. */
    int rc = srv_sparse_create_for_job(&s->sparse, o->job, (uint32_t)o->rank,
                                       (uint32_t)welcome->num_servers, s->nworkers, err);
    if (rc)
        return rc;
    hopt.sparse = s->sparse;
    srv_ckpt_set_sparse(s->ckpt, s->sparse);
    if (!(s->handler = srv_handler_create(&hopt, err)))
        return err->code;
    srv_shard_set_nonfinite(s->shard, o->job->cluster.nonfinite);
    srv_shard_set_keep_zeros(s->shard, o->job->model.keep_zeros);
    if (o->update)
        srv_shard_set_update(s->shard, o->update, o->update_ctx);
    hb_options ho = {.ctx = s->ctx,
                     .coordinator = o->coordinator,
                     .role = ROLE,
                     .rank = o->rank,
                     .generation = welcome->generation ? welcome->generation : 1,
                     .interval_ms = o->job->cluster.heartbeat_ms,
                     .timeout_ms = o->job->cluster.heartbeat_timeout_s * 1000,
                     .lg = o->lg};
    if (!(s->hb = hb_start(&ho, err)))
        return err->code;
    /* Fine-tuning: per-layer lr multipliers and frozen ranges, as the workers computed them. */
    rc = srv_shard_set_groups(s->shard, welcome->groups.offsets, welcome->groups.mults,
                              welcome->groups.state, welcome->groups.n, err);
    if (rc)
        return rc;
    obs_set(s->mx.workers, s->nworkers);
    metrics_publish(s);
    if (srv_shard_trainable(s->shard) < len)
        log_info(o->lg, "frozen: %llu of the shard's %llu parameters are never updated",
                 (unsigned long long)(len - srv_shard_trainable(s->shard)),
                 (unsigned long long)len);
    log_info(o->lg, "shard [%llu, %llu) of %llu parameters (%.1f MB), %d workers, %s",
             (unsigned long long)base, (unsigned long long)(base + len),
             (unsigned long long)welcome->nparams, len * 4.0 / 1e6, s->nworkers,
             cfg_consistency_name(o->job->cluster.consistency));
    return PST_OK;
}

/* Where the shard starts: recovered after a restart, resumed from a checkpoint, or
 * afresh (initialised by worker 0's INIT). */
static int start_shard(server *s, const welcome_copy *wc, pst_err *err)
{
    const srv_options *o = s->o;
    const wire_welcome *welcome = &wc->w;
    int rc;
    if (welcome->rejoin) {
        if ((rc = recover(s, wc, err)))
            return rc;
    } else if (welcome->resume) {
        if (!o->job->checkpoint.resume)
            return pst_err_set(err, PST_ERR_CONFIG,
                               "the coordinator resumes the job from "
                               "clock %lld but this server was started without --resume",
                               (long long)welcome->resume_clock);
        if ((rc = srv_ckpt_restore(s->ckpt, s->shard, welcome->resume_clock, err)))
            return rc;
    } else if (o->job->checkpoint.resume) {
        /* Starting afresh would clear the very checkpoints this server was to resume. */
        return pst_err_set(err, PST_ERR_CONFIG,
                           "started with --resume %s, but the coordinator "
                           "starts the job afresh (give it --resume too)",
                           o->job->checkpoint.resume);
    }
    /* "The newest checkpoint" must be this run's: an earlier run's go, and on resume those
     * after the resume clock (damaged, or not complete on every server). */
    int64_t clocks[WIRE_MAX_CKPTS];
    int any = 0;
    srv_ckpt_found(s->ckpt, clocks, &any);
    if (o->job->checkpoint.enabled && !welcome->rejoin && !(welcome->resume && any))
        return srv_ckpt_remove_newer(s->ckpt, welcome->resume ? welcome->resume_clock : -1, err);
    return PST_OK;
}

int srv_run(const srv_options *o, pst_err *err)
{
    server s;
    memset(&s, 0, sizeof s);
    s.o = o;
    int rc;
    welcome_copy *welcome = malloc(sizeof *welcome);
    char bound[256], endpoint[WIRE_ENDPOINT_MAX], ep[300];
    if (!welcome || !(s.in = malloc(sizeof *s.in))) {
        free(welcome);
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    }
    if (!(s.ctx = net_ctx_create(1, err)) || !(s.m = net_msg_create(err)) ||
        net_faults_attach(s.ctx, o->faults, 0x5e77e7ULL + (uint64_t)o->rank, o->lg, &s.faults,
                          err)) {
        rc = err ? err->code : PST_ERR_NOMEM;
        goto cleanup;
    }
    const cfg_security *sec = &o->job->security;
    /* The server key is also this process's client key (security.client_key is for
     * workers): only a server key may register as a server (docs/security.md). */
    net_curve_files cf = {sec->server_key, sec->server_public, NULL, sec->allow};
    if ((rc = net_ctx_curve(s.ctx, &cf, o->lg, err)))
        goto cleanup;
    /* Replies never wait (hwm -1), but at most SRV_RCV_HWM messages per worker wait here to
     * be processed: a worker pushing or initialising faster than this loop applies keeps
     * its chunks itself (zero-copy, in its own buffers) instead of this process holding up
     * to its whole shard again in received frames (1 GB per server at 1e9 parameters). */
    /* Handover: a worker whose server restarted at the same address (a container, a pod,
     * a fixed --port) is connected to it twice for a moment -- its old socket reconnects
     * by itself, and wk_kv_reconnect opens a fresh one under the same routing id. Without
     * handover ZeroMQ keeps the old connection (which the worker closes) and drops
     * everything of the fresh one without a word: the worker's requests vanish and the
     * job hangs. With it the newest connection of a routing id is the one answered. */
    net_opts so = {.hwm = -1,
                   .handover = 1,
                   .rcv_hwm = SRV_RCV_HWM,
                   .max_msg_bytes = (int64_t)(WIRE_CHUNK_FLOATS * sizeof(float)) + 4096};
    if (!(s.sock = net_sock_create(s.ctx, NET_ROUTER, &so, err))) {
        rc = err->code;
        goto cleanup;
    }
    snprintf(ep, sizeof ep, "tcp://%s:%d", o->bind_host, o->port);
    if ((rc = net_sock_bind(s.sock, ep, bound, sizeof bound, err)))
        goto cleanup;
    advertised_endpoint(endpoint, sizeof endpoint, bound, o);
    char id[PST_TAG_MAX];
    pst_process_tag(id, sizeof id, "server", o->rank, NULL);
    /* This connection carries HELLO and BYE, each sent until answered: what is still queued
     * at close is a repeat to a coordinator that has exited, not worth 2 s of flushing. */
    net_opts co = {.identity = id, .linger_ms = 100};
    if (!(s.coord = net_sock_create(s.ctx, NET_DEALER, &co, err))) {
        rc = err->code;
        goto cleanup;
    }
    if ((rc = net_sock_connect(s.coord, o->coordinator, err)))
        goto cleanup;
    log_info(o->lg, "listening on %s (advertised as %s); registering with %s", bound, endpoint,
             o->coordinator);
    if ((rc = metrics_register(&s, err)))
        goto cleanup;
    if (!(s.ckpt = srv_ckpt_create(o->rank, o->job, o->lg, s.mx.ckpts, s.mx.ckpt_age,
                                   s.mx.ckpt_clock, err))) {
        rc = err->code;
        goto cleanup;
    }
    if (o->job->checkpoint.resume && (rc = srv_ckpt_scan(s.ckpt, o->job->checkpoint.resume, err)))
        goto cleanup;
    if ((rc = register_with_coordinator(&s, endpoint, welcome, err)) || *o->stop)
        goto cleanup;
    if ((rc = setup_shard(&s, &welcome->w, err)) || (rc = start_shard(&s, welcome, err)))
        goto cleanup;
    rc = serve(&s, err);
cleanup:
    hb_stop(s.hb);
    srv_handler_destroy(s.handler);
    srv_shard_destroy(s.shard);
    srv_sparse_destroy(s.sparse);
    srv_ckpt_destroy(s.ckpt);
    free(s.mgen);
    free(s.mlost);
    free(s.mdone);
    free(welcome);
    free(s.in);
    net_msg_destroy(s.m);
    net_sock_destroy(s.sock);
    net_sock_destroy(s.coord);
    net_ctx_destroy(s.ctx);
    net_faults_finish(s.faults, o->lg);
    return rc;
}
