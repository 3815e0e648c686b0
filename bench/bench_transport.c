/* bench/bench_transport.c -- push + pull of a large parameter vector through real pstrain
 * servers, next to raw ZeroMQ moving the same bytes over the same transport, in one run.
 *
 *   bench_transport --pstrain PATH [--params N] [--rounds R] [--servers 1,2,4] [--keep]
 *                   [--curve] [--no-fp16] [--smoke]
 *
 * --smoke: tiny sizes (2M floats, 16 rounds, 1 and 2 servers, a 3 s heartbeat timeout: the
 * smoke runs beside the whole suite, and its 4 clusters with fp16 must not starve past it),
 * run by ctest -L bench to check that the benchmark still runs to its end.
 *
 * --curve: the cluster runs with CURVE encryption and authentication (docs/security.md;
 * fresh keys in the temporary folder) and this program is a CURVE client; the raw side
 * stays plaintext, so servers=S against raw_seq in one run is the cost of pstrain with
 * CURVE against plain ZeroMQ, and the same figure of a run without --curve separates
 * CURVE's share.
 *
 * Product side, for each server count S: a real coordinator and S real `pstrain server`
 * processes (fork + exec of PATH) on loopback TCP, with a job of S servers, one worker,
 * bsp and plain SGD. This program is worker 0: HELLO with N parameters and the job's hash,
 * WELCOME, then the heartbeat thread (proto/hb.h) and worker/kv.c exactly as a training
 * worker uses them. One round is one step's traffic: wk_kv_push of the N-float gradient,
 * wk_kv_pull_start of the next clock and wk_kv_pull_wait into the weights (2 x 4N bytes;
 * the servers apply the SGD update in between). After the last round DONE goes to the servers and to the coordinator, which
 * shuts the servers down; every process must exit 0.
 *
 * fp16 (cluster.compression, off with --no-fp16): every server count runs a second
 * cluster whose worker pushes and pulls IEEE binary16 (wk_kv_set_compression), interleaved
 * with the others: the same N parameters each way in half the bytes. Its figures are
 * effective parameter throughput, in float32-equivalent GB/s (2 x 4N bytes a round,
 * whatever went on the wire), and their ratio to the float32 cluster of the same server
 * count: what compression buys a step. g = 2^-10 and the weights -k 2^-11 are exact in
 * binary16, so the same check holds.
 *
 * Raw side: a forked child with a ROUTER socket, this program's DEALER, tcp://127.0.0.1,
 * the same bytes in the same frames (WIRE_CHUNK_FLOATS floats = 16 MiB), zero-copy sends
 * on both sides, received frames dropped without reading them. Two shapes:
 *   raw-seq   all frames to the child, then all frames back (the bsp step's shape: a
 *             server answers a pull after the whole push);
 *   raw-echo  the child answers each frame as it arrives (both directions at once).
 *
 * Rounds are interleaved (raw-seq, raw-echo, S = 1, 2, 4, rotating the order each round)
 * after one untimed warm-up round of each, and the summary gives medians and the ratio
 * of each server count to raw-seq and raw-echo, with the CPU time the round cost all the
 * processes taking part (every thread of this one, the raw child or the cluster's
 * coordinator and servers): a figure a busy machine disturbs less than wall time. The
 * weights pulled back are checked on a sample of indices against the exact SGD result
 * (g = 2^-10, lr = 0.5, w0 = 0, so after k updates w = -k 2^-11 exactly). This process
 * and the raw child use the allocator settings of `pstrain worker` (cli/main.c). Figures
 * only: a benchmark never judges them.
 *
 * Memory: the N-float gradient and weights here, a copy in the raw child, and per server
 * count N floats of weights over its servers (plain SGD keeps no state, and bsp with one
 * worker no sums; all clusters stay up so their rounds interleave): about
 * 4N x (3 + number of clusters) bytes, 4 GB for the defaults (6 clusters with fp16). */
#define _GNU_SOURCE /* pipe2, dup2 flags */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "job/job.h"
#include "base/err.h"
#include "base/log.h"
#include "net/net.h"
#include "proto/hb.h"
#include "proto/msg.h"
#include "proto/wire.h"
#include "worker/kv.h"

#define MAX_CLUSTERS 8
#define MAX_ROUNDS 64
#define CHUNK_BYTES ((size_t)WIRE_CHUNK_FLOATS * sizeof(float))
#define GRAD_VALUE (1.0f / 1024.0f)
#define LR 0.5f
#define TIMEOUT_S 120

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void no_free(void *data, void *hint)
{
    (void)data;
    (void)hint;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[MAX_ROUNDS];
    memcpy(s, v, sizeof *v * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* CPU time in seconds of every thread of process pid so far (/proc/PID/task/TID/schedstat:
 * nanoseconds on a CPU), 0 when it is gone. Threads that already exited are not counted;
 * the processes measured here keep theirs for their whole life. */
static double cpu_s(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    double total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p2[128];
        snprintf(p2, sizeof p2, "/proc/%d/task/%.20s/schedstat", (int)pid, e->d_name);
        FILE *f = fopen(p2, "r");
        unsigned long long ns = 0;
        if (f) {
            if (fscanf(f, "%llu", &ns) == 1)
                total += (double)ns * 1e-9;
            fclose(f);
        }
    }
    closedir(d);
    return total;
}

/* ---- raw ZeroMQ: the child ------------------------------------------------------------ */

/* Control message from the parent: what the next frames are for. */
typedef struct {
    uint32_t mode;    /* RAW_SEQ, RAW_ECHO, RAW_QUIT */
    uint32_t nframes; /* payload frames that follow */
    uint64_t bytes;   /* total payload bytes */
} raw_ctl;

enum { RAW_SEQ = 1, RAW_ECHO = 2, RAW_QUIT = 3 };

/* Sends [route][frame] zero-copy from buf. */
static int raw_reply(void *sock, const void *route, size_t rlen, char *buf, size_t len)
{
    if (zmq_send(sock, route, rlen, ZMQ_SNDMORE) < 0)
        return -1;
    zmq_msg_t m;
    zmq_msg_init_data(&m, buf, len, no_free, NULL);
    if (zmq_msg_send(&m, sock, 0) < 0) {
        zmq_msg_close(&m);
        return -1;
    }
    return 0;
}

/* Receives [route][payload]; the payload is dropped unread. Returns its size or -1. */
static long raw_recv(void *sock, char *route, size_t *rlen)
{
    int r = zmq_recv(sock, route, 255, 0);
    if (r < 0)
        return -1;
    *rlen = (size_t)r;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sock, 0) < 0) {
        zmq_msg_close(&m);
        return -1;
    }
    long n = (long)zmq_msg_size(&m);
    zmq_msg_close(&m);
    return n;
}

/* The child: binds, reports its endpoint on fd, then serves rounds until RAW_QUIT. Its
 * reply frames come zero-copy from its own buffer, as a server's come from its shard. */
__attribute__((noreturn)) static void raw_child(int fd, size_t nbytes)
{
    char *buf = malloc(nbytes);
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    char ep[256];
    size_t eplen = sizeof ep;
    if (!buf || !sock || zmq_bind(sock, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &eplen) != 0)
        _exit(1);
    memset(buf, 1, nbytes); /* touch every page before timing */
    if (write(fd, ep, strlen(ep) + 1) < 0)
        _exit(1);
    close(fd);
    char route[256];
    size_t rlen;
    for (;;) {
        raw_ctl c;
        int rl = zmq_recv(sock, route, sizeof route, 0);
        if (rl <= 0 || rl > (int)sizeof route || zmq_recv(sock, &c, sizeof c, 0) != (int)sizeof c)
            _exit(1);
        rlen = (size_t)rl;
        if (c.mode == RAW_QUIT)
            break;
        uint64_t off = 0;
        for (uint32_t i = 0; i < c.nframes; i++) {
            long n = raw_recv(sock, route, &rlen);
            if (n < 0)
                _exit(1);
            if (c.mode == RAW_ECHO && raw_reply(sock, route, rlen, buf + off, (size_t)n))
                _exit(1);
            off += (uint64_t)n;
        }
        if (c.mode == RAW_SEQ) {
            for (uint64_t o = 0; o < c.bytes; o += CHUNK_BYTES) {
                size_t len = c.bytes - o < CHUNK_BYTES ? (size_t)(c.bytes - o) : CHUNK_BYTES;
                if (raw_reply(sock, route, rlen, buf + o, len))
                    _exit(1);
            }
        }
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    free(buf);
    _exit(0);
}

typedef struct {
    pid_t pid;
    void *ctx, *sock;
} raw_peer;

static int raw_start(raw_peer *r, size_t nbytes, pst_err *err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return pst_err_set(err, PST_ERR_IO, "pipe: %s", strerror(errno));
    /* Forked before this process creates any ZeroMQ context (a context does not survive
     * fork). */
    r->pid = fork();
    if (r->pid < 0)
        return pst_err_set(err, PST_ERR_IO, "fork: %s", strerror(errno));
    if (r->pid == 0) {
        close(p[0]);
        raw_child(p[1], nbytes);
    }
    close(p[1]);
    char ep[256] = {0};
    ssize_t n = read(p[0], ep, sizeof ep - 1);
    close(p[0]);
    if (n <= 0)
        return pst_err_set(err, PST_ERR_IO, "raw child did not report its endpoint");
    r->ctx = zmq_ctx_new();
    r->sock = zmq_socket(r->ctx, ZMQ_DEALER);
    int linger_ms = 1000; /* RAW_QUIT to a child that is gone must not hang the exit */
    if (!r->sock || zmq_setsockopt(r->sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms) != 0 ||
        zmq_connect(r->sock, ep) != 0)
        return pst_err_set(err, PST_ERR_NET, "raw: connect %s: %s", ep, zmq_strerror(errno));
    return PST_OK;
}

/* One raw round: the vector g to the child and nbytes back, in CHUNK_BYTES frames. */
static int raw_round(raw_peer *r, int mode, const char *g, size_t nbytes, double *secs,
                     pst_err *err)
{
    uint32_t nframes = (uint32_t)((nbytes + CHUNK_BYTES - 1) / CHUNK_BYTES);
    raw_ctl c = {(uint32_t)mode, nframes, nbytes};
    double t0 = now_s();
    if (zmq_send(r->sock, &c, sizeof c, 0) < 0)
        return pst_err_set(err, PST_ERR_NET, "raw: send: %s", zmq_strerror(errno));
    for (size_t o = 0; o < nbytes; o += CHUNK_BYTES) {
        size_t len = nbytes - o < CHUNK_BYTES ? nbytes - o : CHUNK_BYTES;
        zmq_msg_t m;
        zmq_msg_init_data(&m, (void *)(g + o), len, no_free, NULL);
        if (zmq_msg_send(&m, r->sock, 0) < 0) {
            zmq_msg_close(&m);
            return pst_err_set(err, PST_ERR_NET, "raw: send: %s", zmq_strerror(errno));
        }
    }
    size_t got = 0;
    for (uint32_t i = 0; i < nframes; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, r->sock, 0) < 0) {
            zmq_msg_close(&m);
            return pst_err_set(err, PST_ERR_NET, "raw: recv: %s", zmq_strerror(errno));
        }
        got += zmq_msg_size(&m);
        zmq_msg_close(&m);
    }
    *secs = now_s() - t0;
    if (got != nbytes)
        return pst_err_set(err, PST_ERR_DATA, "raw: %zu bytes back, sent %zu", got, nbytes);
    return PST_OK;
}

/* Ends the child: RAW_QUIT, or SIGTERM when a round failed half-way (abort). */
static int raw_stop(raw_peer *r, int abort)
{
    int st = -1;
    if (abort && r->pid > 0)
        kill(r->pid, SIGTERM);
    if (r->sock) {
        raw_ctl c = {RAW_QUIT, 0, 0};
        zmq_send(r->sock, &c, sizeof c, 0);
        zmq_close(r->sock);
    }
    if (r->ctx)
        zmq_ctx_term(r->ctx);
    if (r->pid > 0 && waitpid(r->pid, &st, 0) < 0)
        st = -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- the product: coordinator, S servers, and this program as worker 0 ------------------ */

typedef struct {
    int S;
    int fp16; /* pushes and pulls in binary16 */
    char job_path[512], log_path[512];
    cfg_job *job;
    pid_t pids[1 + WIRE_MAX_SERVERS]; /* [0] coordinator */
    int nproc;
    char ep[256];
    net_ctx *ctx;
    net_sock *coord;
    net_msg *m;
    msg_in *in;
    wk_kv *kv;
    hb_client *hb; /* heartbeats, as every worker sends them (worker/dist.c) */
    int64_t clock;
} cluster;

static const char job_fmt[] =
    "name: bench-transport\n"
    "seed: 1\n"
    "data:\n"
    "  format: csv\n"
    "  train: unused.csv\n"
    "model:\n"
    "  layers:\n"
    "    - {units: 2, activation: softmax}\n"
    "optimizer:\n"
    "  name: sgd\n"
    "  lr: %g\n"
    "  schedule: constant\n"
    "train:\n"
    "  batch_size: 1\n"
    "  epochs: 1\n"
    "cluster:\n"
    "  servers: %d\n"
    "  workers: 1\n"
    "  consistency: bsp\n"
    "  timeout_s: %d\n"
    "  heartbeat_ms: %d\n"
    "  heartbeat_timeout_s: %d\n"
    "checkpoint:\n"
    "  enabled: false\n" /* the figures are of the traffic */
    "output:\n"
    "  dir: %s/out-s%d%s\n"; /* in the temporary folder, not the cwd; one per cluster (they
                              run at once, and a run folder is one job's) */

/* fork + exec of `pstrain ARGS...` with stdout and stderr appended to log; ready_fd (or
 * -1) becomes descriptor 3. */
static pid_t spawn(const char *exe, char *const argv[], const char *log, int ready_fd)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int lf = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (lf < 0 || dup2(lf, 1) < 0 || dup2(lf, 2) < 0)
        _exit(127);
    if (ready_fd >= 0 && (ready_fd == 3 ? fcntl(3, F_SETFD, 0) : dup2(ready_fd, 3)) < 0)
        _exit(127);
    execv(exe, argv);
    _exit(127);
}

/* Fresh CURVE keys for --curve: DIR/server.key and .pub, DIR/worker.key and .pub, and
 * the allow-list DIR/allow.txt (both public keys). */
static const char *const curve_files[] = {"server.key", "server.pub", "worker.key", "worker.pub",
                                          "allow.txt"};

static int curve_keys_write(const char *dir, pst_err *err)
{
    char pub[2][41], sec[2][41], path[600];
    for (int i = 0; i < 2; i++)
        if (net_curve_keypair(pub[i], sec[i], err))
            return err->code;
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, curve_files[i]);
        FILE *f = fopen(path, "w");
        if (!f)
            return pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno));
        if (i == 4)
            fprintf(f, "%s\n%s\n", pub[0], pub[1]);
        else
            fprintf(f, "%s\n", i % 2 ? pub[i / 2] : sec[i / 2]);
        fclose(f);
    }
    return PST_OK;
}

/* The job's heartbeats: the defaults; --smoke makes a worker silent for 1 s lost, about
 * the length of its run (which also fails when no heartbeat was answered, cluster_finish). */
typedef struct {
    int interval_ms, timeout_s;
} hb_times;

static int cluster_start(cluster *c, const char *exe, const char *dir, int S, int curve,
                         hb_times hbt, pst_err *err)
{
    c->S = S;
    const char *tag = c->fp16 ? "-fp16" : "";
    snprintf(c->job_path, sizeof c->job_path, "%s/job-s%d%s.yaml", dir, S, tag);
    snprintf(c->log_path, sizeof c->log_path, "%s/cluster-s%d%s.log", dir, S, tag);
    FILE *f = fopen(c->job_path, "w");
    if (!f)
        return pst_err_set(err, PST_ERR_IO, "%s: %s", c->job_path, strerror(errno));
    fprintf(f, job_fmt, (double)LR, S, TIMEOUT_S, hbt.interval_ms, hbt.timeout_s, dir, S, tag);
    if (curve)
        fprintf(f,
                "security:\n  server_key: %s/server.key\n  server_public: %s/server.pub\n"
                "  client_key: %s/worker.key\n  allow: %s/allow.txt\n",
                dir, dir, dir, dir);
    fclose(f);
    int rc = cfg_job_load_file(&c->job, c->job_path, err);
    if (rc)
        return rc;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return pst_err_set(err, PST_ERR_IO, "pipe: %s", strerror(errno));
    char *cargv[] = {"pstrain",           "coordinator", c->job_path, "--bind",
                     "tcp://127.0.0.1:0", "--ready-fd",  "3",         NULL};
    c->pids[c->nproc++] = spawn(exe, cargv, c->log_path, p[1]);
    close(p[1]);
    size_t len = 0;
    ssize_t n;
    while (len < sizeof c->ep - 1 && (n = read(p[0], c->ep + len, sizeof c->ep - 1 - len)) > 0)
        len += (size_t)n;
    close(p[0]);
    c->ep[len] = '\0';
    char *nl = strchr(c->ep, '\n');
    if (!nl)
        return pst_err_set(err, PST_ERR_IO, "coordinator wrote no endpoint (see %s)", c->log_path);
    *nl = '\0';
    for (int i = 0; i < S; i++) {
        char rank[16];
        snprintf(rank, sizeof rank, "%d", i);
        char *sargv[] = {"pstrain", "server",        c->job_path, "--rank",
                         rank,      "--coordinator", c->ep,       NULL};
        c->pids[c->nproc++] = spawn(exe, sargv, c->log_path, -1);
    }
    return PST_OK;
}

/* HELLO as worker 0 with nparams, WELCOME, then the kv client. */
static int cluster_join(cluster *c, uint64_t nparams, int rounds, const log_ctx *lg,
                        const volatile sig_atomic_t *stop, pst_err *err)
{
    net_opts co = {.identity = "worker-0"};
    const cfg_security *sec = &c->job->security;
    net_curve_files cf = {NULL, sec->server_public, sec->client_key, NULL};
    if (!(c->ctx = net_ctx_create(1, err)) || !(c->m = net_msg_create(err)) ||
        net_ctx_curve(c->ctx, &cf, lg, err) || !(c->in = malloc(sizeof *c->in)) ||
        !(c->coord = net_sock_create(c->ctx, NET_DEALER, &co, err)) ||
        net_sock_connect(c->coord, c->ep, err))
        return err->code ? err->code : pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    wire_env h;
    wire_env_init(&h, WIRE_MSG_HELLO, "worker", 0);
    wire_hello hello = {.nparams = nparams,
                        .job_hash = cfg_job_hash(c->job),
                        .pid = (int)getpid(),
                        .steps = (uint64_t)rounds + 1};
    int rc = msg_send(c->coord, NULL, 0, &h, &(wire_body){.hello = &hello}, NULL, 0,
                      TIMEOUT_S * 1000, err);
    if (rc)
        return rc;
    for (;;) {
        if ((rc = msg_recv(c->coord, c->m, 0, c->in, TIMEOUT_S * 1000, err)))
            return pst_err_prefix(err, "waiting for WELCOME (see %s)", c->log_path);
        if (c->in->h.type == WIRE_MSG_ERROR)
            return pst_err_set(err, PST_ERR_CONFIG, "coordinator refused: %s",
                               c->in->b.error->text);
        if (c->in->h.type == WIRE_MSG_WELCOME)
            break;
    }
    const wire_welcome *welcome = c->in->b.welcome;
    /* From WELCOME on the coordinator counts this process as worker 0 and gives it up
     * when its heartbeats stop for the job's timeout (then the servers refuse its pushes):
     * the heartbeat thread of every worker, with worker/dist.c's options. */
    hb_options ho = {.ctx = c->ctx,
                     .coordinator = c->ep,
                     .role = "worker",
                     .rank = 0,
                     .generation = welcome->generation ? welcome->generation : 1,
                     .interval_ms = c->job->cluster.heartbeat_ms,
                     .timeout_ms = c->job->cluster.heartbeat_timeout_s * 1000,
                     .lg = lg};
    if ((c->hb = hb_start(&ho, err)))
        c->kv = wk_kv_create(c->ctx, 0, welcome, TIMEOUT_S * 1000, lg, stop, err);
    if (!c->kv)
        return err->code;
    return c->fp16 ? wk_kv_set_compression(c->kv, WIRE_ENC_F16, 0.0, err) : PST_OK;
}

/* Also where the heartbeat thread's findings surface (the coordinator gone, or one that
 * gave this worker up), as in worker/dist.c's report_progress. */
static int send_progress(cluster *c, wire_type type, pst_err *err)
{
    hb_set_progress(c->hb, 1, c->clock, 0.0);
    int rc = hb_check(c->hb, err);
    if (rc)
        return rc;
    wire_env h;
    wire_env_init(&h, type, "worker", 0);
    wire_progress p = {.epoch = 1, .step = c->clock, .test_accuracy = NAN};
    return msg_send(c->coord, NULL, 0, &h, &(wire_body){.progress = &p}, NULL, 0, TIMEOUT_S * 1000,
                    err);
}

/* One step's traffic: push g at the current clock, pull the next clock's weights into w. */
static int cluster_round(cluster *c, const float *g, float *w, double *secs, pst_err *err)
{
    int rc;
    if ((rc = wk_kv_push_released(c->kv, c->clock, err)))
        return rc;
    double t0 = now_s();
    if ((rc = wk_kv_push(c->kv, g, c->clock, err)))
        return rc;
    c->clock++;
    if ((rc = wk_kv_pull_start(c->kv, c->clock, 0, err)) ||
        (rc = wk_kv_pull_wait(c->kv, w, NULL, err)))
        return rc;
    *secs = now_s() - t0;
    return send_progress(c, WIRE_MSG_PROGRESS, err);
}

/* w after k SGD steps from 0 with constant g and lr: -k lr g, exact in float here. */
static int check_weights(const float *w, uint64_t n, int64_t k, int S, pst_err *err)
{
    float want = -(float)k * LR * GRAD_VALUE;
    for (uint64_t i = 0; i < n; i += 997)
        if (w[i] != want)
            return pst_err_set(err, PST_ERR_DATA, "S=%d: w[%llu] = %g after %lld updates, want %g",
                               S, (unsigned long long)i, (double)w[i], (long long)k, (double)want);
    if (w[n - 1] != want)
        return pst_err_set(err, PST_ERR_DATA, "S=%d: last weight %g, want %g", S, (double)w[n - 1],
                           (double)want);
    return PST_OK;
}

/* DONE to the servers and the coordinator; then every process of the cluster must exit 0
 * within the timeout. abort (the run failed elsewhere): SIGTERM to them instead. */
static int cluster_finish(cluster *c, int abort, pst_err *err)
{
    int rc = PST_OK;
    for (int i = 0; abort && i < c->nproc; i++)
        kill(c->pids[i], SIGTERM);
    uint64_t gen;
    uint8_t lost;
    /* Heartbeats answered: the coordinator followed this worker by them, not only by its
     * PROGRESS messages (which a long gap between rounds would not replace). */
    if (!abort && c->kv && hb_membership(c->hb, 1, &gen, &lost, NULL, NULL) < 1)
        rc = pst_err_set(err, PST_ERR_PEER, "S=%d: the coordinator answered no heartbeat (see %s)",
                         c->S, c->log_path);
    if (!abort && !rc && c->kv && !(rc = wk_kv_done(c->kv, err)))
        rc = send_progress(c, WIRE_MSG_DONE, err);
    hb_stop(c->hb);
    c->hb = NULL;
    wk_kv_close(c->kv);
    net_sock_destroy(c->coord);
    c->coord = NULL;
    net_msg_destroy(c->m);
    c->m = NULL;
    net_ctx_destroy(c->ctx);
    wk_kv_destroy(c->kv);
    c->kv = NULL;
    c->ctx = NULL;
    free(c->in);
    c->in = NULL;
    double deadline = now_s() + TIMEOUT_S;
    for (int i = 0; i < c->nproc; i++) {
        int st;
        pid_t r;
        while ((r = waitpid(c->pids[i], &st, WNOHANG)) == 0 && now_s() < deadline) {
            struct timespec ts = {0, 20000000};
            nanosleep(&ts, NULL);
        }
        if (r == 0) {
            kill(c->pids[i], SIGKILL);
            waitpid(c->pids[i], &st, 0);
            if (!rc)
                rc = pst_err_set(err, PST_ERR_TIMEOUT, "S=%d: pid %d did not exit (see %s)", c->S,
                                 (int)c->pids[i], c->log_path);
        } else if (!rc && !abort && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            rc = pst_err_set(err, PST_ERR_PEER, "S=%d: %s exited with status %d (see %s)", c->S,
                             i == 0 ? "the coordinator" : "a server", st, c->log_path);
    }
    c->nproc = 0;
    cfg_job_free(c->job);
    c->job = NULL;
    return rc;
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: bench_transport --pstrain PATH [--params N] [--rounds R] [--servers LIST] "
          "[--keep] [--curve] [--no-fp16] [--smoke]\n"
          "  --pstrain PATH  the pstrain binary to start as coordinator and servers\n"
          "  --params N      floats in the vector (default 100000000 = 400 MB)\n"
          "  --rounds R      timed rounds of each kind (default 7, at most 64)\n"
          "  --servers LIST  server counts, comma-separated (default 1,2,4)\n"
          "  --keep          keep the temporary folder with the job files and process logs\n"
          "  --curve         the cluster (not the raw side) with CURVE encryption\n"
          "  --no-fp16       no second cluster per server count with binary16 transport\n"
          "  --smoke         tiny sizes for a check that the benchmark runs (ctest -L bench):\n"
          "                  2000000 floats, 16 rounds, servers 1,2, heartbeat timeout 3 s;\n"
          "                  later options override the sizes\n",
          f);
}

/* "1,2,4" into counts; returns how many (at most MAX_CLUSTERS), -1 on other characters. */
static int parse_counts(char *s, int *counts)
{
    int n = 0;
    while (*s && n < MAX_CLUSTERS) {
        counts[n++] = (int)strtol(s, &s, 10);
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *exe = NULL;
    uint64_t nparams = 100000000ull;
    int rounds = 7, keep = 0, curve = 0, fp16 = 1;
    int counts[MAX_CLUSTERS] = {1, 2, 4}, ncl = 3;
    hb_times hbt = {500, 10};
    static const struct option opts[] = {
        {"pstrain", required_argument, NULL, 'p'}, {"params", required_argument, NULL, 'n'},
        {"rounds", required_argument, NULL, 'r'},  {"servers", required_argument, NULL, 's'},
        {"keep", no_argument, NULL, 'k'},          {"curve", no_argument, NULL, 'c'},
        {"no-fp16", no_argument, NULL, 'F'},       {"smoke", no_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'p': exe = optarg; break;
        case 'n': nparams = strtoull(optarg, NULL, 10); break;
        case 'r': rounds = atoi(optarg); break;
        case 's': ncl = parse_counts(optarg, counts); break;
        case 'k': keep = 1; break;
        case 'c': curve = 1; break;
        case 'F': fp16 = 0; break;
        case 'S': /* 8 MB a vector: ~40 ms a round of all kinds, ~1.5 s in all */
            nparams = 2000000ull;
            rounds = 16;
            counts[0] = 1;
            counts[1] = 2;
            ncl = 2;
            hbt = (hb_times){100, 3};
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (!exe || nparams < 16 || rounds < 1 || rounds > MAX_ROUNDS || ncl < 1) {
        usage(stderr);
        return 2;
    }
    for (int k = 0; k < ncl; k++)
        if (counts[k] < 1 || counts[k] > WIRE_MAX_SERVERS) {
            fprintf(stderr, "bench_transport: %d servers: expected 1..%d\n", counts[k],
                    WIRE_MAX_SERVERS);
            return 2;
        }
    /* The allocator settings `pstrain server|worker` set in cli/main.c: this program is
     * the job's worker. The raw child inherits them (forked), so both sides of both
     * measurements run under the same settings. */
    mallopt(M_ARENA_MAX, 1);
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    size_t nbytes = (size_t)nparams * sizeof(float);
    pst_err err = {0};
    int rc = 0, fail = 0;
    static const volatile sig_atomic_t never = 0;
    log_ctx lg;
    log_init(&lg, "bench", -1, stderr);

    raw_peer raw = {0};
    if (raw_start(&raw, nbytes, &err)) {
        fprintf(stderr, "bench_transport: %s\n", err.msg);
        raw_stop(&raw, 1);
        return 1;
    }
    char dir[] = "/tmp/bench-transport-XXXXXX";
    float *g = malloc(nbytes), *w = malloc(nbytes);
    /* Clusters: counts[k] servers in float32 (k < ncl), then in binary16 (k - ncl). */
    const int nfl = ncl;
    ncl *= fp16 ? 2 : 1;
    cluster *cl = calloc((size_t)ncl, sizeof *cl);
    if (!mkdtemp(dir) || !g || !w || !cl) {
        fprintf(stderr, "bench_transport: out of memory or no temporary folder\n");
        raw_stop(&raw, 1);
        return 1;
    }
    for (uint64_t i = 0; i < nparams; i++) {
        g[i] = GRAD_VALUE;
        w[i] = 0.0f;
    }

    printf("info params=%llu bytes_per_round=%zu frame_bytes=%zu rounds=%d curve=%d\n",
           (unsigned long long)nparams, 2 * nbytes, CHUNK_BYTES, rounds, curve);
    fflush(stdout);
    if (curve)
        rc = curve_keys_write(dir, &err);
    for (int k = 0; k < ncl && !rc && cl; k++) {
        cl[k].fp16 = k >= nfl;
        if (!(rc = cluster_start(&cl[k], exe, dir, counts[k % nfl], curve, hbt, &err)))
            rc = cluster_join(&cl[k], nparams, rounds, &lg, &never, &err);
    }
    /* Worker 0's initial weights (zeros), then the pull of clock 0, as a training run
     * starts. */
    for (int k = 0; k < ncl && !rc; k++)
        if (!(rc = wk_kv_init(cl[k].kv, w, &err)) && !(rc = wk_kv_pull_start(cl[k].kv, 0, 0, &err)))
            rc = wk_kv_pull_wait(cl[k].kv, w, NULL, &err);

    /* kinds: 0 raw-seq, 1 raw-echo, 2.. clusters */
    int nkinds = 2 + ncl;
    double t[2 + 2 * MAX_CLUSTERS][MAX_ROUNDS], cpu[2 + 2 * MAX_CLUSTERS][MAX_ROUNDS];
    for (int r = -1; r < rounds && !rc; r++) {
        int idx = r < 0 ? 0 : r;
        for (int j = 0; j < nkinds && !rc; j++) {
            int kind = (j + (r < 0 ? 0 : r)) % nkinds; /* rotate the order each round */
            double secs = 0;
            /* CPU of every process taking part (this one, the raw child or the cluster). */
            const pid_t *pids = kind < 2 ? &raw.pid : cl[kind - 2].pids;
            int np = kind < 2 ? 1 : cl[kind - 2].nproc;
            double c0 = cpu_s(getpid());
            for (int i = 0; i < np; i++)
                c0 += cpu_s(pids[i]);
            if (kind < 2)
                rc = raw_round(&raw, kind == 0 ? RAW_SEQ : RAW_ECHO, (const char *)g, nbytes, &secs,
                               &err);
            else {
                cluster *c = &cl[kind - 2];
                if (!(rc = cluster_round(c, g, w, &secs, &err)))
                    rc = check_weights(w, nparams, c->clock, c->S, &err);
            }
            double c1 = cpu_s(getpid());
            for (int i = 0; i < np; i++)
                c1 += cpu_s(pids[i]);
            if (r >= 0) {
                t[kind][idx] = secs;
                cpu[kind][idx] = c1 - c0;
            }
        }
        if (r < 0 || rc)
            continue;
        printf("round %d raw_seq_gbs=%.3f raw_echo_gbs=%.3f", r + 1, 2 * nbytes / t[0][r] / 1e9,
               2 * nbytes / t[1][r] / 1e9);
        for (int k = 0; k < ncl; k++) /* fp16: float32-equivalent (parameters moved) */
            printf(" s%d%s_gbs=%.3f", cl[k].S, cl[k].fp16 ? "_fp16" : "",
                   2 * nbytes / t[2 + k][r] / 1e9);
        printf("\n");
        fflush(stdout);
    }
    for (int k = 0; k < ncl; k++) {
        pst_err e2 = {0};
        if (cl[k].nproc && cluster_finish(&cl[k], rc != 0, &e2) && !rc) {
            rc = e2.code;
            err = e2;
        }
    }
    if (raw_stop(&raw, rc != 0) && !rc)
        rc = pst_err_set(&err, PST_ERR_PEER, "the raw ZeroMQ child failed");
    if (rc) {
        fprintf(stderr, "bench_transport: %s\n", err.msg);
        fail = 1;
        keep = 1;
    } else {
        double seq = median(t[0], rounds), echo = median(t[1], rounds);
        printf("summary raw_seq: median %.3f s = %.3f GB/s, CPU %.3f s per round\n", seq,
               2 * nbytes / seq / 1e9, median(cpu[0], rounds));
        printf("summary raw_echo: median %.3f s = %.3f GB/s, CPU %.3f s per round\n", echo,
               2 * nbytes / echo / 1e9, median(cpu[1], rounds));
        for (int k = 0; k < nfl; k++) {
            double m = median(t[2 + k], rounds);
            printf("summary servers=%d: median %.3f s = %.3f GB/s, CPU %.3f s per round, %.2f "
                   "of raw_seq, %.2f of raw_echo\n",
                   counts[k], m, 2 * nbytes / m / 1e9, median(cpu[2 + k], rounds), seq / m,
                   echo / m);
        }
        for (int k = nfl; k < ncl; k++) {
            double m = median(t[2 + k], rounds), m32 = median(t[2 + k - nfl], rounds);
            printf("summary servers=%d fp16: median %.3f s = %.3f GB/s of float32 parameters "
                   "(%.3f GB/s on the wire), CPU %.3f s per round, %.2f of servers=%d float32\n",
                   cl[k].S, m, 2 * nbytes / m / 1e9, nbytes / m / 1e9, median(cpu[2 + k], rounds),
                   m32 / m, cl[k].S);
        }
        printf("all processes exited 0\n");
    }
    if (keep)
        fprintf(stderr, "bench_transport: job files and logs kept in %s\n", dir);
    else {
        for (int k = 0; k < ncl; k++) {
            unlink(cl[k].job_path);
            unlink(cl[k].log_path);
        }
        for (int i = 0; curve && i < 5; i++) {
            char path[600];
            snprintf(path, sizeof path, "%s/%s", dir, curve_files[i]);
            unlink(path);
        }
        for (int k = 0; k < ncl; k++) { /* the run folder's lock only: checkpoints are off */
            char out[600], lock[640];
            snprintf(out, sizeof out, "%s/out-s%d%s", dir, cl[k].S, cl[k].fp16 ? "-fp16" : "");
            snprintf(lock, sizeof lock, "%s/.pstrain.lock", out);
            unlink(lock);
            rmdir(out);
        }
        rmdir(dir);
    }
    free(cl);
    free(g);
    free(w);
    return fail;
}
