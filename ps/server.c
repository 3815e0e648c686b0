/* ps/server.c -- the server's network loop; the update and consistency rules are in
 * shard.c. See server.h. */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "ckpt/ckpt.h"
#include "net/net.h"
#include "proto/hb.h"
#include "proto/msg.h"
#include "ps/shard.h"

#define ROLE "server"
/* Messages a worker's connection may queue before this server reads them: 4 chunks of
 * 16 MiB keep the loop busy while the next arrive. */
#define SRV_RCV_HWM 4

/* A pull that has to wait for other workers' clocks. */
typedef struct {
    char route[64];
    size_t route_len;
    int worker;
    uint64_t request_id, off, len;
    int64_t clock;
    int final;
} pending_pull;

typedef struct {
    const srv_options *o;
    net_ctx *ctx;
    net_sock *sock;   /* ROUTER: workers connect here */
    net_sock *coord;  /* DEALER to the coordinator */
    net_msg *m;
    msg_in in;
    srv_shard *shard;
    int nworkers;
    char (*routes)[64]; /* (W) routing id of each worker, learned from its first message */
    size_t *route_lens;
    /* Membership (from the coordinator's heartbeat answers): each worker's incarnation and
     * whether it is lost. A new incarnation's connection replaces the old one's. */
    hb_client *hb;
    uint64_t hb_version;
    uint64_t *gen;
    uint8_t *lost;
    uint64_t *mgen;     /* scratch for hb_membership */
    uint8_t *mlost, *mdone;
    /* A restarted server recovering its shard (srv_shard_begin_recovery) */
    int64_t recover_start_ms, recover_from;
    net_faults *faults;
    pending_pull *pend;
    size_t npend, cap_pend;
    uint64_t pulls, bytes_in, bytes_out;
    /* Checkpoints (see the section below) */
    char ckdir[4096];    /* where this server writes them */
    char resume_dir[4200]; /* where it resumes from (checkpoint.resume, or its checkpoints/) */
    int nckpt;           /* complete checkpoints found there, clocks newest first */
    int64_t ckpt_clocks[WIRE_MAX_CKPTS];
    int ckpt_any;        /* they are of an all-frozen shard: any of them is any clock's */
    struct ckpt_want {   /* checkpoints asked for: of `clock`, once `worker`'s step is in */
        int64_t clock;
        int worker;
    } want[8];
    int nwant;
    int64_t ckpt_last;   /* clock of the newest checkpoint written or resumed from, -1 */
    struct {             /* Prometheus series (docs/observability.md); all NULL when off */
        obs_metric *pushes, *pulls, *bytes_in, *bytes_out, *updates, *refused, *nonfinite,
            *apply, *gap, *gap_max, *live, *workers, *clock, *pending, *ckpts, *ckpt_age,
            *ckpt_clock, *start;
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
    static const double apply_b[] = {1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1,
                                     0.3, 1, 3};
    static const double gap_b[] = {0, 1, 2, 3, 4, 6, 8, 16, 32, 64};
    const int na = (int)(sizeof apply_b / sizeof apply_b[0]);
    const int ng = (int)(sizeof gap_b / sizeof gap_b[0]);
    if (!(s->mx.pushes = obs_counter(r, "pstrain_server_pushes_total",
                                     "Gradient chunks (PUSH) received from workers and accepted.",
                                     NULL, err)) ||
        !(s->mx.pulls = obs_counter(r, "pstrain_server_pulls_total",
                                    "Pulls answered with weights (PULL_REPLY sent).", NULL,
                                    err)) ||
        !(s->mx.bytes_in = obs_counter(r, "pstrain_server_received_bytes_total",
                                       "Float payload bytes received (INIT and PUSH).", NULL,
                                       err)) ||
        !(s->mx.bytes_out = obs_counter(r, "pstrain_server_sent_bytes_total",
                                        "Float payload bytes sent in pull replies.", NULL,
                                        err)) ||
        !(s->mx.updates = obs_counter(r, "pstrain_server_updates_total",
                                      "Optimizer updates applied to the shard.", NULL, err)) ||
        !(s->mx.refused = obs_counter(r, "pstrain_server_refused_requests_total",
                                      "Worker messages refused with an ERROR reply.", NULL,
                                      err)) ||
        !(s->mx.nonfinite = obs_counter(r, "pstrain_server_nonfinite_gradients_total",
                                        "Pushes refused because they held NaN or Inf.", NULL,
                                        err)) ||
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
        !(s->mx.workers = obs_gauge(r, "pstrain_server_workers",
                                    "Workers of the job.", NULL, err)) ||
        !(s->mx.clock = obs_gauge(r, "pstrain_server_clock",
                                  "Clock of the shard (bsp: updates applied; ssp/asp: the "
                                  "largest worker clock).", NULL, err)) ||
        !(s->mx.pending = obs_gauge(r, "pstrain_server_pending_pulls",
                                    "Pulls parked until the clocks allow them.", NULL, err)) ||
        !(s->mx.ckpts = obs_counter(r, "pstrain_server_checkpoints_total",
                                    "Shard checkpoints written by this process.", NULL, err)) ||
        !(s->mx.ckpt_age = obs_age(r, "pstrain_server_last_checkpoint_age_seconds",
                                   "Seconds since the last checkpoint was written (absent "
                                   "before the first).", NULL, err)) ||
        !(s->mx.ckpt_clock = obs_gauge(r, "pstrain_server_last_checkpoint_clock",
                                       "Clock of the newest checkpoint written or resumed "
                                       "from; -1: none.", NULL, err)) ||
        !(s->mx.start = obs_gauge(r, "process_start_time_seconds",
                                  "Start time of the process since the Unix epoch in seconds.",
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
    if (!s->o->metrics || !s->shard)
        return;
    srv_shard_stats st;
    srv_shard_get_stats(s->shard, &st);
    obs_set(s->mx.pushes, (double)st.pushes);
    obs_set(s->mx.updates, (double)st.updates);
    obs_set(s->mx.nonfinite, (double)st.rejected_nonfinite);
    obs_set(s->mx.gap_max, (double)st.max_clock_gap);
    obs_set(s->mx.pulls, (double)s->pulls);
    obs_set(s->mx.bytes_in, (double)s->bytes_in);
    obs_set(s->mx.bytes_out, (double)s->bytes_out);
    obs_set(s->mx.live, srv_shard_live_workers(s->shard));
    obs_set(s->mx.clock, (double)srv_shard_clock(s->shard));
    obs_set(s->mx.pending, (double)s->npend);
}

static int register_with_coordinator(server *s, const char *endpoint, wire_header *welcome,
                                     pst_err *err)
{
    const srv_options *o = s->o;
    wire_header h;
    wire_header_init(&h, WIRE_MSG_HELLO, ROLE, o->rank);
    snprintf(h.endpoint, sizeof h.endpoint, "%s", endpoint);
    h.job_hash = cfg_job_hash(o->job);
    h.pid = (int)getpid();
    h.nckpt = s->nckpt;
    memcpy(h.ckpt_clocks, s->ckpt_clocks, sizeof h.ckpt_clocks);
    h.ckpt_any = s->ckpt_any;
    int rc = msg_register(s->coord, s->m, &s->in, &h, o->coordinator, o->job->cluster.timeout_s,
                          o->job->cluster.servers, o->job->cluster.workers, o->stop, err);
    if (rc)
        return rc;
    if (!*o->stop)
        *welcome = s->in.h;
    return PST_OK;
}

/* Release callback of zero-copy replies: the bytes belong to the shard. */
static void keep_bytes(void *data, void *hint)
{
    (void)data;
    (void)hint;
}

/* Sends weights [off, off + len) to a worker. bsp sends them zero-copy: the shard's weights
 * change only when every live worker has pushed its next step, which each does only after
 * reading this reply, so the bytes are stable until ZeroMQ is done with them. ssp/asp
 * apply pushes at any time, so the reply is a copy. */
static int send_weights(server *s, const char *route, size_t route_len, int worker,
                        uint64_t request_id, uint64_t off, uint64_t len, pst_err *err)
{
    wire_header h;
    wire_header_init(&h, WIRE_MSG_PULL_REPLY, ROLE, s->o->rank);
    h.request_id = request_id;
    h.offset = off;
    h.len = len;
    h.clock_gap = srv_shard_clock_gap(s->shard, worker);
    /* The requester's clock here: a rejoining worker starts from it. */
    h.clock = srv_shard_worker_clock(s->shard, worker);
    obs_observe(s->mx.gap, (double)h.clock_gap);
    srv_shard_note_served(s->shard, worker);
    net_frame f = {.data = srv_shard_weights(s->shard, off), .len = (size_t)len * sizeof(float)};
    if (s->o->job->cluster.consistency == CFG_CONS_BSP)
        f.release = keep_bytes;
    s->pulls++;
    s->bytes_out += f.len;
    return msg_send(s->sock, route, route_len, &h, &f, 1, 0, err);
}

/* Answers every parked pull the clocks now allow, in arrival order. */
static int serve_pending(server *s, pst_err *err)
{
    size_t keep = 0;
    for (size_t i = 0; i < s->npend; i++) {
        pending_pull *p = &s->pend[i];
        if (srv_shard_pull_ready(s->shard, p->worker, p->clock, p->final)) {
            int rc = send_weights(s, p->route, p->route_len, p->worker, p->request_id, p->off,
                                  p->len, err);
            if (rc == PST_ERR_PEER)
                log_warn(s->o->lg, "worker[%d] is gone; dropped its pull", p->worker);
            else if (rc)
                return rc;
        } else
            s->pend[keep++] = *p;
    }
    s->npend = keep;
    return PST_OK;
}

static int park_pull(server *s, const msg_in *in, pst_err *err)
{
    /* A pull sent again (its answer may have been lost... or not yet due) is parked once. */
    for (size_t i = 0; i < s->npend; i++)
        if (s->pend[i].worker == in->h.rank && s->pend[i].request_id == in->h.request_id)
            return PST_OK;
    /* The protocol bounds this: a worker has at most one step's pulls outstanding. */
    size_t limit = (size_t)s->nworkers * (srv_shard_len(s->shard) / WIRE_CHUNK_FLOATS + 2) * 2;
    if (s->npend == limit)
        return pst_err_set(err, PST_ERR_PEER, "too many waiting pulls (%zu)", s->npend);
    if (s->npend == s->cap_pend) {
        size_t cap = s->cap_pend ? s->cap_pend * 2 : 16;
        pending_pull *p = realloc(s->pend, cap * sizeof *p);
        if (!p)
            return pst_err_set(err, PST_ERR_NOMEM, "out of memory for waiting pulls");
        s->pend = p;
        s->cap_pend = cap;
    }
    pending_pull *p = &s->pend[s->npend++];
    memcpy(p->route, in->route, in->route_len);
    p->route_len = in->route_len;
    p->worker = in->h.rank;
    p->request_id = in->h.request_id;
    p->off = in->h.offset;
    p->len = in->h.len;
    p->clock = in->h.clock;
    p->final = in->h.final;
    return PST_OK;
}

/* Checks that a request comes from a worker we know, of its current incarnation, under a
 * consistent routing id. *later: of an incarnation the coordinator has not told us about
 * yet (a worker that just rejoined): ignored, it asks again. */
static int check_sender(server *s, const msg_in *in, int *later, pst_err *err)
{
    int r = in->h.rank;
    *later = 0;
    if (strcmp(in->h.role, "worker") != 0 || r >= s->nworkers)
        return pst_err_set(err, PST_ERR_PEER, "%s from unknown peer %s[%d]",
                           wire_type_name(in->h.type), in->h.role, r);
    if (in->route_len == 0 || in->route_len > sizeof s->routes[0])
        return pst_err_set(err, PST_ERR_PEER, "bad routing id of %zu bytes", in->route_len);
    /* Generation 0: a tool that does not say (taken as the current one). */
    uint64_t g = in->h.generation ? in->h.generation : s->gen[r];
    /* PST_ERR_NET: the sender may not go on, but a restarted process may rejoin. */
    if (g < s->gen[r])
        return pst_err_set(err, PST_ERR_NET, "%s from incarnation %llu of worker[%d], which "
                           "was replaced by incarnation %llu (a paused or restarted process)",
                           wire_type_name(in->h.type), (unsigned long long)g, r,
                           (unsigned long long)s->gen[r]);
    if (g > s->gen[r]) {
        *later = 1;
        return PST_OK;
    }
    if (s->lost[r])
        return pst_err_set(err, PST_ERR_NET, "%s from worker[%d], which the coordinator "
                           "declared lost (silent past the heartbeat timeout); restart it to "
                           "rejoin", wire_type_name(in->h.type), r);
    if (s->route_lens[r] == 0) {
        memcpy(s->routes[r], in->route, in->route_len);
        s->route_lens[r] = in->route_len;
    } else if (s->route_lens[r] != in->route_len ||
               memcmp(s->routes[r], in->route, in->route_len) != 0)
        return pst_err_set(err, PST_ERR_PEER,
                           "%s claims to be worker[%d] from another connection",
                           wire_type_name(in->h.type), r);
    return PST_OK;
}

/* Float payloads must be 4-byte aligned to be read in place. ZeroMQ allocates large frames
 * (aligned); a small one may sit at any offset of its receive buffer, so copy it. */
static const float *aligned_floats(const void *p, size_t bytes, float **scratch,
                                   size_t *scratch_len, pst_err *err)
{
    if (((uintptr_t)p & (sizeof(float) - 1)) == 0)
        return p;
    if (*scratch_len < bytes) {
        float *n = realloc(*scratch, bytes);
        if (!n) {
            pst_err_set(err, PST_ERR_NOMEM, "out of memory");
            return NULL;
        }
        *scratch = n;
        *scratch_len = bytes;
    }
    memcpy(*scratch, p, bytes);
    return *scratch;
}

/* ---- Checkpoints: <dir>/server-<rank>-clock-<c>.safetensors ----------------------------
 *
 * A shard checkpoint holds the shard's weights ("weights"), the optimizer state and where
 * they stand (state.clock: every worker's steps before it are applied). All servers write
 * at the same clocks, so the checkpoints of one clock together are the whole model:
 *   - when a worker flags its push of step c, each server writes clock c + 1 once that
 *     step is applied (bsp: the mean of step c; ssp/asp: that worker's push). Every worker
 *     flags the steps after which c + 1 is a multiple of checkpoint.every_steps (so bsp
 *     checkpoints go on while any worker trains), worker 0 alone those that end
 *     checkpoint.every_seconds;
 *   - at SHUTDOWN, the end-of-run clock.
 * A resumed job's coordinator picks the newest clock every server has complete. A shard
 * that is all frozen (fine-tuning) receives no pushes, so it sees no flags and its clocks
 * stay put; its weights and optimizer state never change either, so its checkpoints stand
 * for any clock ("trainable": 0), and it says so in HELLO. It writes one as soon as it is
 * initialised. */

#define CKPT_KIND "shard"
#define CKPT_SUFFIX ".safetensors"

static void ckpt_prefix(const server *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "server-%d-clock-", s->o->rank);
}

static void job_hash_text(const cfg_job *job, char *buf, size_t cap)
{
    snprintf(buf, cap, "%016llx", (unsigned long long)cfg_job_hash(job));
}

static int write_checkpoint(server *s, int64_t clock, pst_err *err)
{
    const srv_options *o = s->o;
    char prefix[48], path[4400], hash[24];
    ckpt_prefix(s, prefix, sizeof prefix);
    snprintf(path, sizeof path, "%s/%s%lld" CKPT_SUFFIX, s->ckdir, prefix, (long long)clock);
    job_hash_text(o->job, hash, sizeof hash);
    uint64_t base = srv_shard_base(s->shard), len = srv_shard_len(s->shard);
    ckpt_state *st = ckpt_state_create(CKPT_KIND, err);
    if (!st)
        return err->code;
    int rc;
    if ((rc = ckpt_state_set_str(st, "job_hash", hash, err)) ||
        (rc = ckpt_state_set_int(st, "rank", o->rank, err)) ||
        (rc = ckpt_state_set_int(st, "servers", o->job->cluster.servers, err)) ||
        (rc = ckpt_state_set_int(st, "workers", s->nworkers, err)) ||
        (rc = ckpt_state_set_int(st, "offset", (int64_t)base, err)) ||
        (rc = ckpt_state_set_int(st, "len", (int64_t)len, err)) ||
        (rc = ckpt_state_set_int(st, "clock", clock, err)) ||
        (rc = ckpt_state_set_int(st, "trainable", (int64_t)srv_shard_trainable(s->shard),
                                 err)) ||
        (rc = ckpt_state_set_str(st, "consistency",
                                 cfg_consistency_name(o->job->cluster.consistency), err)) ||
        (rc = ckpt_state_add_tensor(st, "weights", srv_shard_weights(s->shard, base), len,
                                    err)) ||
        (rc = ckpt_state_add_opt(st, o->job->optimizer.kind, srv_shard_opt(s->shard), err)) ||
        (rc = fs_mkdirs(s->ckdir, err)) || (rc = ckpt_state_save(st, path, err)))
        goto cleanup;
    s->ckpt_last = clock;
    obs_add(s->mx.ckpts, 1);
    obs_set_time(s->mx.ckpt_age, obs_now());
    obs_set(s->mx.ckpt_clock, (double)clock);
    log_info(o->lg, "checkpoint of clock %lld: %s", (long long)clock, path);
    pst_err e2 = {0};
    if (ckpt_prune(s->ckdir, prefix, CKPT_SUFFIX, o->job->checkpoint.keep, &e2))
        log_warn(o->lg, "removing old checkpoints: %s", e2.msg);
cleanup:
    ckpt_state_destroy(st);
    return rc;
}

/* Loads this server's checkpoint file of `clock` and checks it belongs to this job, rank
 * and clock, with an optimizer state and weights of its own length. */
static int load_checkpoint(const server *s, const char *path, int64_t clock, ckpt_state **out,
                           pst_err *err)
{
    const cfg_job *job = s->o->job;
    ckpt_state *st = NULL;
    int rc = ckpt_state_load(path, CKPT_KIND, &st, err);
    if (rc)
        return rc;
    const char *hash, *cons;
    char want[24];
    job_hash_text(job, want, sizeof want);
    int64_t rank, servers, workers, c, len;
    const float *w;
    if ((rc = ckpt_state_get_str(st, "job_hash", &hash, err)) ||
        (rc = ckpt_state_get_str(st, "consistency", &cons, err)) ||
        (rc = ckpt_state_get_int(st, "rank", &rank, err)) ||
        (rc = ckpt_state_get_int(st, "servers", &servers, err)) ||
        (rc = ckpt_state_get_int(st, "workers", &workers, err)) ||
        (rc = ckpt_state_get_int(st, "clock", &c, err)) ||
        (rc = ckpt_state_get_int(st, "len", &len, err)))
        goto fail;
    if (strcmp(hash, want) != 0) {
        rc = pst_err_set(err, PST_ERR_CONFIG, "%s: written by another job (model, optimizer, "
                         "cluster or training settings differ)", path);
        goto fail;
    }
    if (rank != s->o->rank || servers != job->cluster.servers ||
        workers != job->cluster.workers || c != clock || len < 1) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: holds server %lld of %lld (%lld workers) at "
                         "clock %lld, not what its name says", path, (long long)rank,
                         (long long)servers, (long long)workers, (long long)c);
        goto fail;
    }
    if ((rc = ckpt_state_get_tensor(st, "weights", (size_t)len, &w, err)) ||
        (rc = ckpt_state_check_opt(st, job->optimizer.kind, (size_t)len, err)))
        goto fail;
    *out = st;
    return PST_OK;
fail:
    ckpt_state_destroy(st);
    return rc;
}

/* Before HELLO: the clocks of this server's complete checkpoints in the resume folder
 * (checkpoint.resume, or the checkpoints/ folder inside it), newest first. A damaged one
 * is left out with a warning naming it; the coordinator then picks another clock. */
static int scan_checkpoints(server *s, const char *from, pst_err *err)
{
    char prefix[48], path[4400];
    int64_t tags[64];
    int n = 0, rc;
    ckpt_prefix(s, prefix, sizeof prefix);
    snprintf(s->resume_dir, sizeof s->resume_dir, "%s", from);
    if ((rc = ckpt_list(s->resume_dir, prefix, CKPT_SUFFIX, tags, 64, &n, err)))
        return rc;
    if (n == 0) {
        snprintf(s->resume_dir, sizeof s->resume_dir, "%s/checkpoints", from);
        if ((rc = ckpt_list(s->resume_dir, prefix, CKPT_SUFFIX, tags, 64, &n, err)))
            return rc;
    }
    s->nckpt = 0;
    for (int i = 0; i < n && s->nckpt < WIRE_MAX_CKPTS; i++) {
        snprintf(path, sizeof path, "%s/%s%lld" CKPT_SUFFIX, s->resume_dir, prefix,
                 (long long)tags[i]);
        ckpt_state *st = NULL;
        pst_err e = {0};
        int64_t trainable = 1;
        if (load_checkpoint(s, path, tags[i], &st, &e) == PST_OK &&
            ckpt_state_get_int(st, "trainable", &trainable, &e) == PST_OK) {
            s->ckpt_clocks[s->nckpt++] = tags[i];
            s->ckpt_any |= trainable == 0;
        } else
            log_warn(s->o->lg, "checkpoint %s is not usable: %s", path, e.msg);
        ckpt_state_destroy(st);
    }
    if (s->nckpt == 0)
        log_warn(s->o->lg, "no complete checkpoint of server %d in %s", s->o->rank, from);
    else
        log_info(s->o->lg, "%d complete checkpoint(s) in %s, the newest of clock %lld",
                 s->nckpt, s->resume_dir, (long long)s->ckpt_clocks[0]);
    return PST_OK;
}

/* After WELCOME of a resumed job: the shard from the checkpoint of `clock`, which must
 * cover exactly this server's range. Nothing changes unless all of it loads. */
static int restore_checkpoint(server *s, int64_t clock, pst_err *err)
{
    char prefix[48], path[4400];
    ckpt_prefix(s, prefix, sizeof prefix);
    int64_t file_clock = clock; /* an all-frozen shard's newest stands for any clock */
    int have = 0;
    for (int i = 0; i < s->nckpt; i++)
        have |= s->ckpt_clocks[i] == clock;
    if (!have && s->ckpt_any && s->nckpt > 0)
        file_clock = s->ckpt_clocks[0];
    snprintf(path, sizeof path, "%s/%s%lld" CKPT_SUFFIX, s->resume_dir, prefix,
             (long long)file_clock);
    ckpt_state *st = NULL;
    int rc = load_checkpoint(s, path, file_clock, &st, err);
    if (rc)
        return rc;
    int64_t off, len;
    const float *w;
    uint64_t base = srv_shard_base(s->shard), slen = srv_shard_len(s->shard);
    int64_t trainable;
    if ((rc = ckpt_state_get_int(st, "offset", &off, err)) ||
        (rc = ckpt_state_get_int(st, "len", &len, err)) ||
        (rc = ckpt_state_get_int(st, "trainable", &trainable, err)))
        goto cleanup;
    if (file_clock != clock && (trainable != 0 || srv_shard_trainable(s->shard) != 0)) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: of clock %lld, not %lld, and the shard is not "
                         "all frozen", path, (long long)file_clock, (long long)clock);
        goto cleanup;
    }
    if (off != (int64_t)base || len != (int64_t)slen) {
        rc = pst_err_set(err, PST_ERR_DATA, "%s: holds parameters [%lld, %lld) but this "
                         "server's shard is [%llu, %llu)", path, (long long)off,
                         (long long)(off + len), (unsigned long long)base,
                         (unsigned long long)(base + slen));
        goto cleanup;
    }
    if ((rc = ckpt_state_get_tensor(st, "weights", (size_t)len, &w, err)) ||
        (rc = srv_shard_restore(s->shard, w, clock, err)))
        goto cleanup;
    ckpt_state_restore_opt(st, s->o->job->optimizer.kind, srv_shard_opt(s->shard));
    s->ckpt_last = clock;
    obs_set(s->mx.ckpt_clock, (double)clock);
    log_info(s->o->lg, "resumed from %s (clock %lld, %lld optimizer steps)", path,
             (long long)clock, (long long)opt_state_step(srv_shard_opt(s->shard)));
cleanup:
    ckpt_state_destroy(st);
    return rc;
}

/* A flagged push: remembers the checkpoint it asks for (several workers flag the same
 * clock; under bsp at most one clock is pending, since the next one's pushes wait for this
 * one's update). */
static void want_checkpoint(server *s, int worker, int64_t clock)
{
    if (clock == s->ckpt_last)
        return;
    for (int i = 0; i < s->nwant; i++)
        if (s->want[i].clock == clock)
            return;
    if (s->nwant < (int)(sizeof s->want / sizeof s->want[0]))
        s->want[s->nwant++] = (struct ckpt_want){clock, worker};
    else
        log_warn(s->o->lg, "checkpoint of clock %lld not taken: %d others are pending",
                 (long long)clock, s->nwant);
}

/* After each worker message: the checkpoints asked for whose step is now applied. */
static int maybe_checkpoint(server *s, pst_err *err)
{
    /* An all-frozen shard's one checkpoint, as soon as it has its weights. */
    if (s->o->job->checkpoint.enabled && s->ckpt_last < 0 &&
        srv_shard_trainable(s->shard) == 0 && srv_shard_initialized(s->shard))
        return write_checkpoint(s, srv_shard_clock(s->shard), err);
    int keep = 0, rc = PST_OK;
    for (int i = 0; i < s->nwant; i++) {
        struct ckpt_want w = s->want[i];
        if (rc || !srv_shard_applied(s->shard, w.worker, w.clock))
            s->want[keep++] = w;
        else if (w.clock != s->ckpt_last)
            rc = write_checkpoint(s, w.clock, err);
    }
    s->nwant = keep;
    return rc;
}

/* Handles one message from a worker. Problems caused by the message (bad range, wrong
 * clock, NaN) are answered with an ERROR and logged; the server goes on. */
/* Recovery ends when every live worker has been heard, or after the heartbeat timeout
 * (those not heard take the slowest clock). */
static void maybe_end_recovery(server *s, int all_heard)
{
    if (!srv_shard_recovering(s->shard))
        return;
    int64_t waited = net_now_ms() - s->recover_start_ms;
    if (!all_heard && waited < 1000LL * s->o->job->cluster.heartbeat_timeout_s)
        return;
    int64_t lost = srv_shard_end_recovery(s->shard);
    log_warn(s->o->lg, "recovered in %.2f s at clock %lld: the updates of %lld step(s) since the "
             "checkpoint of clock %lld are lost on this shard", waited / 1000.0,
             (long long)srv_shard_clock(s->shard), (long long)lost, (long long)s->recover_from);
}

/* Acknowledges request h of a worker (INIT, PUSH, DONE; a parked PULL whose pushes did
 * not all arrive). */
static void send_ack(server *s, const msg_in *in)
{
    wire_header h;
    wire_header_init(&h, WIRE_MSG_ACK, ROLE, s->o->rank);
    h.request_id = in->h.request_id;
    /* A pull's: the worker's clock here (its pushes before it that were taken whole). */
    h.clock = in->h.type == WIRE_MSG_PULL ? srv_shard_worker_clock(s->shard, in->h.rank)
                                          : in->h.clock;
    pst_err e = {0};
    if (msg_send(s->sock, in->route, in->route_len, &h, NULL, 0, 0, &e))
        log_debug(s->o->lg, "ACK to worker[%d]: %s", in->h.rank, e.msg);
}

static int handle_worker(server *s, float **scratch, size_t *scratch_len, pst_err *err)
{
    const msg_in *in = &s->in;
    pst_err perr = {0};
    int later = 0;
    int rc = check_sender(s, in, &later, &perr);
    if (rc == PST_OK && later) {
        log_debug(s->o->lg, "%s from worker[%d] incarnation %llu, not yet announced: ignored",
                  wire_type_name(in->h.type), in->h.rank, (unsigned long long)in->h.generation);
        return PST_OK;
    }
    /* Recovering: a request says where its worker stands and goes unanswered (it comes
     * again), until every live worker has been heard. */
    if (rc == PST_OK && srv_shard_recovering(s->shard) &&
        (in->h.type == WIRE_MSG_PUSH || in->h.type == WIRE_MSG_PULL)) {
        if (!in->h.final)
            maybe_end_recovery(s, srv_shard_note_clock(s->shard, in->h.rank, in->h.clock));
        if (srv_shard_recovering(s->shard))
            return PST_OK;
    }
    if (rc == PST_OK) {
        const wire_header *h = &in->h;
        switch (h->type) {
        case WIRE_MSG_INIT:
        case WIRE_MSG_PUSH: {
            const float *g = aligned_floats(in->payload[0], in->payload_len[0], scratch,
                                            scratch_len, err);
            if (!g)
                return PST_ERR_NOMEM;
            s->bytes_in += in->payload_len[0];
            srv_outcome out = SRV_EARLY;
            if (h->type == WIRE_MSG_INIT)
                rc = h->rank == 0
                         ? srv_shard_init_range(s->shard, h->offset, g, h->len, &out, &perr)
                         : pst_err_set(&perr, PST_ERR_PEER, "INIT from worker[%d]", h->rank);
            else {
                double t0 = s->mx.apply ? obs_mono() : 0;
                rc = srv_shard_push(s->shard, h->rank, h->clock, h->offset, g, h->len, &out,
                                    &perr);
                if (rc == PST_OK && out == SRV_APPLIED)
                    obs_observe(s->mx.apply, obs_mono() - t0);
            }
            if (rc == PST_OK && out == SRV_APPLIED && h->type == WIRE_MSG_PUSH &&
                h->checkpoint && s->o->job->checkpoint.enabled)
                want_checkpoint(s, h->rank, h->clock + 1);
            if (rc == PST_OK && out != SRV_EARLY)
                send_ack(s, in);
            else if (rc == PST_OK)
                log_debug(s->o->lg, "%s [%llu, +%llu) clock %lld from worker[%d] came before "
                          "a missing one: not taken", wire_type_name(h->type),
                          (unsigned long long)h->offset, (unsigned long long)h->len,
                          (long long)h->clock, h->rank);
            break;
        }
        case WIRE_MSG_PULL:
            rc = srv_shard_check_range(s->shard, h->offset, h->len, &perr);
            if (rc == PST_OK) {
                if (srv_shard_pull_ready(s->shard, h->rank, h->clock, h->final)) {
                    rc = send_weights(s, in->route, in->route_len, h->rank, h->request_id,
                                      h->offset, h->len, err);
                    if (rc && rc != PST_ERR_PEER)
                        return rc;
                    rc = PST_OK;
                } else {
                    rc = park_pull(s, in, &perr);
                    /* The worker's pushes travel before this pull on its connection: a
                     * step of its that is not whole here was lost on the way. Say so now
                     * (an ACK of the pull, with the worker's clock here) rather than let
                     * the worker find out at its retry interval. */
                    if (rc == PST_OK && !h->final &&
                        srv_shard_worker_clock(s->shard, h->rank) < h->clock)
                        send_ack(s, in);
                }
            }
            break;
        case WIRE_MSG_DONE:
            log_debug(s->o->lg, "worker[%d] is done at clock %lld", h->rank,
                      (long long)srv_shard_worker_clock(s->shard, h->rank));
            srv_shard_worker_done(s->shard, h->rank);
            send_ack(s, in);
            maybe_end_recovery(s, srv_shard_note_clock(s->shard, -1, -1));
            break;
        default:
            rc = pst_err_set(&perr, PST_ERR_PEER, "unexpected %s", wire_type_name(h->type));
        }
    }
    if (rc) {
        obs_add(s->mx.refused, 1);
        log_warn(s->o->lg, "refused %s from %s[%d]: %s", wire_type_name(in->h.type), in->h.role,
                 in->h.rank, perr.msg);
        pst_err e2 = {0};
        if (msg_send_error(s->sock, in->route, in->route_len, ROLE, s->o->rank,
                           in->h.request_id, rc, perr.msg, &e2))
            log_warn(s->o->lg, "could not send the error: %s", e2.msg);
        if (rc == PST_ERR_NOMEM)
            return pst_err_set(err, rc, "%s", perr.msg);
    }
    /* Before the pulls it unblocks are answered: a worker that has the weights of a
     * checkpointed clock knows every server wrote that checkpoint. */
    if ((rc = maybe_checkpoint(s, err)))
        return rc;
    return serve_pending(s, err);
}

/* Takes the coordinator's newest membership: a worker newly lost leaves the live set (its
 * parked pulls go), a new incarnation rejoins at the shard's clock. */
static void apply_membership(server *s)
{
    uint64_t version = 0;
    int n = hb_membership(s->hb, s->nworkers, s->mgen, s->mlost, s->mdone, &version);
    if (version == s->hb_version || n != s->nworkers)
        return;
    s->hb_version = version;
    for (int k = 0; k < s->nworkers; k++) {
        if (s->mgen[k] > s->gen[k]) {
            s->gen[k] = s->mgen[k];
            s->lost[k] = 0;
            s->route_lens[k] = 0; /* the new process connects anew */
            int64_t clock = srv_shard_worker_rejoin(s->shard, k);
            log_info(s->o->lg, "worker[%d] rejoined (incarnation %llu) at clock %lld", k,
                     (unsigned long long)s->gen[k], (long long)clock);
        }
        if (s->mdone[k] && s->mgen[k] == s->gen[k] && srv_shard_worker_live(s->shard, k)) {
            /* It finished (its DONE to this server may have gone to a previous incarnation
             * of this server). */
            srv_shard_worker_done(s->shard, k);
            continue;
        }
        if (s->mlost[k] && !s->lost[k] && s->mgen[k] == s->gen[k]) {
            s->lost[k] = 1;
            log_warn(s->o->lg, "worker[%d] is lost (at clock %lld): going on without it", k,
                     (long long)srv_shard_worker_clock(s->shard, k));
            srv_shard_worker_lost(s->shard, k);
            size_t keep = 0;
            for (size_t i = 0; i < s->npend; i++)
                if (s->pend[i].worker != k)
                    s->pend[keep++] = s->pend[i];
            s->npend = keep;
        }
    }
}

static int send_bye(server *s, pst_err *err)
{
    srv_shard_stats st;
    srv_shard_get_stats(s->shard, &st);
    wire_header h;
    wire_header_init(&h, WIRE_MSG_BYE, ROLE, s->o->rank);
    h.has_stats = 1;
    h.pushes = st.pushes;
    h.pulls = s->pulls;
    h.bytes_in = s->bytes_in;
    h.bytes_out = s->bytes_out;
    h.max_clock_gap = st.max_clock_gap;
    h.updates = st.updates;
    h.nonfinite = st.rejected_nonfinite;
    h.repeats = st.repeats;
    log_info(s->o->lg,
             "done: %llu updates from %llu pushes, %llu pulls answered, %.1f MB in, %.1f MB "
             "out, largest clock gap served %lld, %llu non-finite gradients %s, %llu "
             "repeated chunks ignored, %llu workers lost, %llu rejoined",
             (unsigned long long)st.updates, (unsigned long long)st.pushes,
             (unsigned long long)s->pulls, s->bytes_in / 1e6, s->bytes_out / 1e6,
             (long long)st.max_clock_gap, (unsigned long long)st.rejected_nonfinite,
             s->o->job->cluster.nonfinite == CFG_NONFINITE_SKIP ? "skipped" : "rejected",
             (unsigned long long)st.repeats, (unsigned long long)st.lost_workers,
             (unsigned long long)st.rejoins);
    /* Until the coordinator acknowledges (the BYE may be lost), but not for ever: the job
     * is over either way. The ACK itself may be lost too, and the coordinator exits once it
     * has every BYE, so a repeat would then wait for an answer that never comes. The
     * coordinator sends SHUTDOWN again every heartbeat interval to each server whose BYE it
     * lacks: SHUTDOWN_QUIET intervals without one (while our BYE went again each interval)
     * mean it has ours -- wrong only if all those SHUTDOWNs and BYEs were lost. */
    enum { SHUTDOWN_QUIET = 3 };
    int interval = s->o->job->cluster.heartbeat_ms;
    int64_t deadline = net_now_ms() + 2000LL * s->o->job->cluster.heartbeat_timeout_s;
    int64_t last_shutdown = net_now_ms();
    while (net_now_ms() < deadline && !*s->o->stop) {
        int rc = msg_send(s->coord, NULL, 0, &h, NULL, 0, s->o->job->cluster.timeout_s * 1000,
                          err);
        if (rc)
            return rc;
        int64_t until = net_now_ms() + interval;
        for (int left; (left = (int)(until - net_now_ms())) > 0;) {
            pst_err e = {0};
            if (msg_recv(s->coord, s->m, 0, &s->in, left, &e) != PST_OK)
                continue;
            if (s->in.h.type == WIRE_MSG_ACK)
                return PST_OK;
            if (s->in.h.type == WIRE_MSG_SHUTDOWN)
                last_shutdown = net_now_ms();
        }
        if (net_now_ms() - last_shutdown >= (int64_t)SHUTDOWN_QUIET * interval) {
            log_debug(s->o->lg, "no ACK of BYE, but no SHUTDOWN for %d ms either: the "
                      "coordinator has it", SHUTDOWN_QUIET * interval);
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
    if (n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, ", %d live, %zu pulls waiting",
                 srv_shard_live_workers(s->shard), s->npend);
}

static int serve(server *s, pst_err *err)
{
    const srv_options *o = s->o;
    float *scratch = NULL;
    size_t scratch_len = 0;
    int rc = PST_OK;
    net_sock *socks[2] = {s->sock, s->coord};
    while (!*o->stop) {
        uint64_t ready = 0;
        /* The coordinator watches the workers; this server watches the coordinator. */
        if ((rc = hb_check(s->hb, err))) {
            char what[512];
            describe_wait(s, what, sizeof what);
            pst_err_prefix(err, "server[%d] (%s)", o->rank, what);
            break;
        }
        if (s->hb) {
            apply_membership(s);
            maybe_end_recovery(s, srv_shard_note_clock(s->shard, -1, -1));
            if ((rc = maybe_checkpoint(s, err)) || (rc = serve_pending(s, err)))
                break;
        }
        rc = net_poll(socks, 2, 200, &ready, err);
        if (rc == PST_ERR_TIMEOUT) {
            rc = PST_OK;
            continue;
        }
        if (rc)
            break;
        if (ready & 1) {
            pst_err perr = {0};
            int r = msg_recv(s->sock, s->m, 1, &s->in, 0, &perr);
            if (r == PST_OK) {
                rc = handle_worker(s, &scratch, &scratch_len, err);
                metrics_publish(s);
                if (rc)
                    break;
            } else if (r == PST_ERR_PEER)
                log_warn(o->lg, "dropped a malformed message: %s", perr.msg);
            else if (r != PST_ERR_TIMEOUT) {
                rc = pst_err_set(err, r, "%s", perr.msg);
                break;
            }
        }
        if (ready & 2) {
            pst_err perr = {0};
            int r = msg_recv(s->coord, s->m, 0, &s->in, 0, &perr);
            if (r == PST_OK && s->in.h.type == WIRE_MSG_SHUTDOWN) {
                int64_t clock = srv_shard_clock(s->shard);
                if (o->job->checkpoint.enabled && srv_shard_initialized(s->shard) &&
                    clock != s->ckpt_last && (rc = write_checkpoint(s, clock, err)))
                    break;
                rc = send_bye(s, err);
                break;
            }
            if (r == PST_ERR_PEER)
                log_warn(o->lg, "dropped a malformed message from the coordinator: %s", perr.msg);
        }
    }
    free(scratch);
    return rc;
}

/* A restarted server (WELCOME rejoin): the shard from this server's newest complete
 * checkpoint, the workers' incarnations and who is done or lost from the membership that
 * came with WELCOME; then the shard learns the workers' clocks from their requests (which
 * they send again, unanswered, to this new incarnation) -- see srv_shard_begin_recovery. */
static int recover(server *s, const wire_header *welcome, pst_err *err)
{
    const srv_options *o = s->o;
    int rc = scan_checkpoints(s, s->ckdir, err);
    if (rc)
        return pst_err_prefix(err, "server[%d] restarted", o->rank);
    if (s->nckpt == 0)
        return pst_err_set(err, PST_ERR_DATA, "server[%d] restarted but has no complete "
                           "checkpoint in %s to recover its shard from (set "
                           "checkpoint.every_steps): its parameters are lost", o->rank, s->ckdir);
    if ((rc = restore_checkpoint(s, s->ckpt_clocks[0], err)))
        return rc;
    for (int k = 0; k < s->nworkers && k < welcome->nmembers; k++) {
        s->gen[k] = welcome->member_gen[k] ? welcome->member_gen[k] : 1;
        if (welcome->member_done[k])
            srv_shard_worker_done(s->shard, k);
        else if (welcome->member_lost[k]) {
            s->lost[k] = 1;
            srv_shard_worker_lost(s->shard, k);
        }
    }
    srv_shard_begin_recovery(s->shard);
    s->recover_start_ms = net_now_ms();
    s->recover_from = s->ckpt_clocks[0];
    log_warn(o->lg, "restarted (incarnation %llu): recovering the shard from the checkpoint of "
             "clock %lld; learning the workers' clocks from their requests",
             (unsigned long long)welcome->generation, (long long)s->ckpt_clocks[0]);
    return PST_OK;
}

int srv_run(const srv_options *o, pst_err *err)
{
    server s;
    memset(&s, 0, sizeof s);
    s.o = o;
    int rc;
    wire_header *welcome = malloc(sizeof *welcome);
    char bound[256], endpoint[WIRE_ENDPOINT_MAX], ep[300];
    if (!welcome)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    if (!(s.ctx = net_ctx_create(1, err)) || !(s.m = net_msg_create(err)) ||
        net_faults_attach(s.ctx, o->faults, 0x5e77e7ULL + (uint64_t)o->rank, o->lg, &s.faults,
                          err)) {
        rc = err ? err->code : PST_ERR_NOMEM;
        goto cleanup;
    }
    const cfg_security *sec = &o->job->security;
    net_curve_files cf = {sec->server_key, sec->server_public, sec->client_key, sec->allow};
    if ((rc = net_ctx_curve(s.ctx, &cf, o->lg, err)))
        goto cleanup;
    /* Replies never wait (hwm -1), but at most SRV_RCV_HWM messages per worker wait here to
     * be processed: a worker pushing or initialising faster than this loop applies keeps
     * its chunks itself (zero-copy, in its own buffers) instead of this process holding up
     * to its whole shard again in received frames (1 GB per server at 1e9 parameters). */
    net_opts so = {.hwm = -1, .rcv_hwm = SRV_RCV_HWM,
                   .max_msg_bytes = (int64_t)(WIRE_CHUNK_FLOATS * sizeof(float)) + 4096};
    if (!(s.sock = net_sock_create(s.ctx, NET_ROUTER, &so, err))) {
        rc = err->code;
        goto cleanup;
    }
    snprintf(ep, sizeof ep, "tcp://%s:%d", o->bind_host, o->port);
    if ((rc = net_sock_bind(s.sock, ep, bound, sizeof bound, err)))
        goto cleanup;
    advertised_endpoint(endpoint, sizeof endpoint, bound, o);
    char id[32];
    snprintf(id, sizeof id, "server-%d-%d", o->rank, (int)getpid());
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
    s.ckpt_last = -1;
    if ((rc = metrics_register(&s, err)))
        goto cleanup;
    if (o->job->checkpoint.dir)
        snprintf(s.ckdir, sizeof s.ckdir, "%s", o->job->checkpoint.dir);
    else
        snprintf(s.ckdir, sizeof s.ckdir, "%s/checkpoints", o->job->output.dir);
    if (o->job->checkpoint.resume && (rc = scan_checkpoints(&s, o->job->checkpoint.resume, err)))
        goto cleanup;
    if ((rc = register_with_coordinator(&s, endpoint, welcome, err)) || *o->stop)
        goto cleanup;
    if (o->rank >= welcome->num_servers) {
        rc = pst_err_set(err, PST_ERR_CONFIG, "rank %d but the job has %d servers", o->rank,
                         welcome->num_servers);
        goto cleanup;
    }
    uint64_t base = welcome->shard_offsets[o->rank];
    uint64_t len = welcome->shard_offsets[o->rank + 1] - base;
    s.nworkers = welcome->num_workers;
    opt_config oc = o->job->optimizer;
    if (oc.sched.kind == OPT_SCHED_COSINE && oc.sched.total_steps == 0)
        oc.sched.total_steps = welcome->total_updates > 0 ? (int64_t)welcome->total_updates : 1;
    s.shard = srv_shard_create(base, len, &oc, o->job->cluster.consistency,
                               o->job->cluster.staleness, s.nworkers, err);
    s.routes = calloc((size_t)s.nworkers, sizeof *s.routes);
    s.route_lens = calloc((size_t)s.nworkers, sizeof *s.route_lens);
    s.gen = calloc((size_t)s.nworkers, sizeof *s.gen);
    s.mgen = calloc((size_t)s.nworkers, sizeof *s.mgen);
    s.lost = calloc((size_t)s.nworkers, 1);
    s.mlost = calloc((size_t)s.nworkers, 1);
    s.mdone = calloc((size_t)s.nworkers, 1);
    if (!s.shard || !s.routes || !s.route_lens || !s.gen || !s.mgen || !s.lost || !s.mlost ||
        !s.mdone) {
        rc = s.shard ? pst_err_set(err, PST_ERR_NOMEM, "out of memory") : err->code;
        goto cleanup;
    }
    for (int k = 0; k < s.nworkers; k++)
        s.gen[k] = 1; /* every worker's first incarnation */
    srv_shard_set_nonfinite(s.shard, o->job->cluster.nonfinite);
    hb_options ho = {.ctx = s.ctx, .coordinator = o->coordinator, .role = ROLE, .rank = o->rank,
                     .generation = welcome->generation ? welcome->generation : 1,
                     .interval_ms = o->job->cluster.heartbeat_ms,
                     .timeout_ms = o->job->cluster.heartbeat_timeout_s * 1000, .lg = o->lg};
    if (!(s.hb = hb_start(&ho, err))) {
        rc = err->code;
        goto cleanup;
    }
    /* Fine-tuning: per-layer lr multipliers and frozen ranges, as the workers computed them. */
    if ((rc = srv_shard_set_groups(s.shard, welcome->group_offsets, welcome->group_mults,
                                   welcome->ngroups, err)))
        goto cleanup;
    obs_set(s.mx.workers, s.nworkers);
    metrics_publish(&s);
    if (srv_shard_trainable(s.shard) < len)
        log_info(o->lg, "frozen: %llu of the shard's %llu parameters are never updated",
                 (unsigned long long)(len - srv_shard_trainable(s.shard)),
                 (unsigned long long)len);
    log_info(o->lg, "shard [%llu, %llu) of %llu parameters (%.1f MB), %d workers, %s",
             (unsigned long long)base, (unsigned long long)(base + len),
             (unsigned long long)welcome->nparams, len * 4.0 / 1e6, s.nworkers,
             cfg_consistency_name(o->job->cluster.consistency));
    if (welcome->rejoin) {
        if ((rc = recover(&s, welcome, err)))
            goto cleanup;
    } else if (welcome->resume) {
        if (!o->job->checkpoint.resume) {
            rc = pst_err_set(err, PST_ERR_CONFIG, "the coordinator resumes the job from clock "
                             "%lld but this server was started without --resume",
                             (long long)welcome->resume_clock);
            goto cleanup;
        }
        if ((rc = restore_checkpoint(&s, welcome->resume_clock, err)))
            goto cleanup;
    } else if (o->job->checkpoint.resume) {
        /* Starting afresh would clear the very checkpoints this server was to resume. */
        rc = pst_err_set(err, PST_ERR_CONFIG, "started with --resume %s, but the coordinator "
                         "starts the job afresh (give it --resume too)",
                         o->job->checkpoint.resume);
        goto cleanup;
    }
    /* "The newest checkpoint" must be this run's: an earlier run's go, and on resume those
     * after the resume clock (damaged, or not complete on every server). */
    if (o->job->checkpoint.enabled && !welcome->rejoin && !(welcome->resume && s.ckpt_any)) {
        char prefix[48];
        ckpt_prefix(&s, prefix, sizeof prefix);
        if ((rc = ckpt_remove_newer(s.ckdir, prefix, CKPT_SUFFIX,
                                    welcome->resume ? welcome->resume_clock : -1, err)))
            goto cleanup;
    }
    rc = serve(&s, err);
cleanup:
    hb_stop(s.hb);
    srv_shard_destroy(s.shard);
    free(s.routes);
    free(s.route_lens);
    free(s.gen);
    free(s.mgen);
    free(s.lost);
    free(s.mlost);
    free(s.mdone);
    free(s.pend);
    free(welcome);
    net_msg_destroy(s.m);
    net_sock_destroy(s.sock);
    net_sock_destroy(s.coord);
    net_ctx_destroy(s.ctx);
    net_faults_finish(s.faults, o->lg);
    return rc;
}
