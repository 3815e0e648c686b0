/* proto/hb.c -- see hb.h. */
#include "hb.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/ident.h"
#include "proto/msg.h"

/* A turn of the thread later than this means the process was stopped or starved. */
#define HB_STALL_MS 1000

struct hb_client {
    hb_options o;
    char coordinator[WIRE_ENDPOINT_MAX];
    char role[16];
    pthread_t thread;
    int started;
    atomic_int stop;
    net_sock *sock;
    net_msg *m;
    msg_in *in;
    pthread_mutex_t mu; /* guards what follows */
    int has_progress;   /* hb_set_progress was called */
    int epoch;
    int64_t step, clock;
    double loss;
    int64_t last_answer_ms;
    int64_t loop_ms;         /* the thread's last turn (it turns at least every 100 ms) */
    int64_t got_ms;          /* when the last answer to a beat since wake_seq came */
    uint64_t seq, wake_seq;  /* beats sent (their request ids); the first after a stall */
    int64_t away_ms;         /* the longest stall the thread saw since hb_check last looked */
    pthread_cond_t answered; /* signalled with every answer (hb_check's wait after a stop) */
    int refused;
    char refusal[256];
    int nmembers;
    uint64_t gen[WIRE_MAX_WORKERS];
    uint8_t lost[WIRE_MAX_WORKERS];
    uint8_t done[WIRE_MAX_WORKERS];
    int nservers;
    uint64_t sgen[WIRE_MAX_SERVERS];
    char sep[WIRE_MAX_SERVERS][WIRE_ENDPOINT_MAX];
    uint64_t version;
    int stop_signal; /* the coordinator announced a stop (membership.stop_signal) */
};

static void send_heartbeat(hb_client *c)
{
    wire_env h;
    wire_env_init(&h, WIRE_MSG_HEARTBEAT, c->role, c->o.rank);
    h.generation = c->o.generation;
    wire_progress p = {0};
    pthread_mutex_lock(&c->mu);
    h.request_id = ++c->seq; /* the coordinator's answer carries it back */
    int has = c->has_progress;
    p.epoch = c->epoch;
    p.step = c->step;
    p.loss = c->loss;
    h.clock = c->clock;
    pthread_mutex_unlock(&c->mu);
    pst_err e = {0};
    /* Never blocks: a coordinator that does not read is what the timeout detects. */
    if (msg_send(c->sock, NULL, 0, &h, &(wire_body){.progress = has ? &p : NULL}, NULL, 0, 0, &e) &&
        e.code != PST_ERR_TIMEOUT)
        log_debug(c->o.lg, "heartbeat: %s", e.msg);
}

/* With mu held, at each turn and each answer: a turn later than HB_STALL_MS means the
 * process was stopped (or starved). Its length goes to away_ms (hb_check), and answers to
 * beats sent before it no longer count as a verdict. Returns whether there was one. */
static int note_stall(hb_client *c, int64_t now)
{
    if (now - c->loop_ms <= HB_STALL_MS)
        return 0;
    if (now - c->loop_ms > c->away_ms)
        c->away_ms = now - c->loop_ms;
    c->wake_seq = c->seq + 1;
    return 1;
}

static void take_answer(hb_client *c)
{
    const wire_env *h = &c->in->h;
    const wire_membership *mb = c->in->b.membership;
    pthread_mutex_lock(&c->mu);
    int64_t now = net_now_ms();
    note_stall(c, now); /* stopped in msg_recv: what it returns first was queued */
    c->last_answer_ms = c->loop_ms = now;
    /* Only an answer to a beat sent after the stall is a verdict: answers and probes
     * (request id 0) queued while this process was stopped predate any fence. */
    if (h->request_id && h->request_id >= c->wake_seq)
        c->got_ms = c->loop_ms;
    if (h->type == WIRE_MSG_ERROR && !c->refused) {
        c->refused = 1;
        snprintf(c->refusal, sizeof c->refusal, "%s", c->in->b.error->text);
    } else if (h->type == WIRE_MSG_HEARTBEAT && mb && mb->nworkers > 0) {
        if (mb->stop_signal && !c->stop_signal)
            c->stop_signal = (int)mb->stop_signal;
        int n = mb->nworkers, ns = mb->nservers;
        if (n != c->nmembers || memcmp(c->gen, mb->gen, sizeof(uint64_t) * (size_t)n) ||
            memcmp(c->lost, mb->lost, (size_t)n) || memcmp(c->done, mb->done, (size_t)n) ||
            ns != c->nservers || memcmp(c->sgen, mb->server_gen, sizeof(uint64_t) * (size_t)ns)) {
            memcpy(c->gen, mb->gen, sizeof(uint64_t) * (size_t)n);
            memcpy(c->lost, mb->lost, (size_t)n);
            memcpy(c->done, mb->done, (size_t)n);
            memcpy(c->sgen, mb->server_gen, sizeof(uint64_t) * (size_t)ns);
            memcpy(c->sep, mb->server_ep, sizeof c->sep[0] * (size_t)ns);
            c->nmembers = n;
            c->nservers = ns;
            c->version++;
        }
    }
    pthread_cond_broadcast(&c->answered);
    pthread_mutex_unlock(&c->mu);
}

static void *run(void *arg)
{
    hb_client *c = arg;
    int64_t next = 0;
    while (!atomic_load(&c->stop)) {
        int64_t now = net_now_ms();
        pthread_mutex_lock(&c->mu);
        if (note_stall(c, now)) {
            /* Back from a stop: judge the coordinator by its answers from now on, and
             * ask at once (it may have given this process up meanwhile). */
            c->last_answer_ms = now;
            next = now;
        }
        c->loop_ms = now;
        pthread_mutex_unlock(&c->mu);
        if (now >= next) {
            send_heartbeat(c);
            next = now + c->o.interval_ms;
        }
        /* Short waits, so hb_stop returns promptly. */
        int wait = (int)(next - now);
        if (wait > 100)
            wait = 100;
        if (wait < 1)
            wait = 1;
        pst_err e = {0};
        int rc = msg_recv(c->sock, c->m, 0, c->in, wait, &e);
        if (rc == PST_OK)
            take_answer(c);
        else if (rc == PST_ERR_PEER)
            log_warn(c->o.lg, "heartbeat: malformed answer from the coordinator: %s", e.msg);
    }
    return NULL;
}

hb_client *hb_start(const hb_options *o, pst_err *err)
{
    hb_client *c = calloc(1, sizeof *c);
    if (!c || !(c->in = malloc(sizeof *c->in))) {
        pst_err_set(err, PST_ERR_NOMEM, "heartbeat: out of memory");
        goto fail;
    }
    c->o = *o;
    snprintf(c->coordinator, sizeof c->coordinator, "%s", o->coordinator);
    snprintf(c->role, sizeof c->role, "%s", o->role);
    c->o.coordinator = c->coordinator;
    c->o.role = c->role;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->answered, NULL);
    c->last_answer_ms = c->loop_ms = net_now_ms();
    char id[PST_TAG_MAX], hb[32];
    snprintf(hb, sizeof hb, "hb-%llu", (unsigned long long)o->generation);
    pst_process_tag(id, sizeof id, o->role, o->rank, hb);
    net_opts so = {.identity = id, .linger_ms = 1, .max_msg_bytes = WIRE_MAX_META + 1024};
    if (!(c->m = net_msg_create(err)) ||
        !(c->sock = net_sock_create(o->ctx, NET_DEALER, &so, err)) ||
        net_sock_connect(c->sock, o->coordinator, err)) {
        pst_err_prefix(err, "heartbeat to %s", o->coordinator);
        goto fail;
    }
    if (pthread_create(&c->thread, NULL, run, c) != 0) {
        pst_err_set(err, PST_ERR_NOMEM, "heartbeat: cannot start a thread");
        goto fail;
    }
    c->started = 1;
    return c;
fail:
    hb_stop(c);
    return NULL;
}

void hb_stop(hb_client *c)
{
    if (!c)
        return;
    if (c->started) {
        atomic_store(&c->stop, 1);
        pthread_join(c->thread, NULL);
    }
    net_sock_destroy(c->sock);
    net_msg_destroy(c->m);
    if (c->in) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->answered);
    }
    free(c->in);
    free(c);
}

void hb_set_progress(hb_client *c, int epoch, int64_t step, double loss)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->has_progress = 1;
    c->epoch = epoch;
    c->step = step;
    c->loss = loss;
    pthread_mutex_unlock(&c->mu);
}

void hb_set_clock(hb_client *c, int64_t clock)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->clock = clock;
    pthread_mutex_unlock(&c->mu);
}

/* The main thread was away (stopped) past the coordinator's patience: waits, with mu
 * held, for an answer sent after now -- the coordinator may have fenced this incarnation
 * meanwhile, and nothing this process does may reach anyone before it knows. Bounded by
 * the timeout (a coordinator silent that long is then what hb_check reports). */
static void wait_verdict(hb_client *c, int64_t now)
{
    int64_t until = now + c->o.timeout_ms;
    while (!c->refused && c->got_ms < now && net_now_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->answered, &c->mu, &ts);
    }
}

/* How long this process was stopped, as far as the thread knows (with mu held): the
 * longest stall it saw, or the one it has not yet woken from. */
static int64_t away_ms(const hb_client *c, int64_t now)
{
    int64_t away = now - c->loop_ms;
    return away > c->away_ms ? away : c->away_ms;
}

/* Stops this long may have been fenced: the coordinator fences after a silence of the
 * timeout, counted from the last heartbeat, sent up to an interval before the stop, and
 * the interval is at most half the timeout (job/checks.c). */
static int64_t fence_risk_ms(const hb_client *c) { return c->o.timeout_ms / 2; }

int hb_away(hb_client *c)
{
    if (!c)
        return 0;
    pthread_mutex_lock(&c->mu);
    int away = away_ms(c, net_now_ms()) > fence_risk_ms(c);
    pthread_mutex_unlock(&c->mu);
    return away;
}

int hb_check(hb_client *c, pst_err *err)
{
    if (!c)
        return PST_OK;
    int rc = PST_OK;
    pthread_mutex_lock(&c->mu);
    int64_t now = net_now_ms();
    int64_t away = away_ms(c, now);
    if (away > fence_risk_ms(c)) {
        log_warn(c->o.lg,
                 "this process did not run for %.1f s (stopped?): asking the coordinator "
                 "whether it may go on",
                 away / 1000.0);
        c->away_ms = 0;
        wait_verdict(c, now);
        now = net_now_ms();
    }
    if (c->refused && strncmp(c->refusal, "replaced by incarnation", 23) == 0) {
        /* Fenced while stopped (ps/coord_members.c): a new incarnation has its rank. */
        rc =
            pst_err_set(err, PST_ERR_NET, "%s[%d]: %s; exiting 75", c->role, c->o.rank, c->refusal);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    /* The thread has not had its turn for a while: this process was stopped (SIGSTOP, a
     * debugger) or starved, and the silence is its own; the thread will tell on its turn. */
    if (now - c->loop_ms > HB_STALL_MS && !c->refused) {
        pthread_mutex_unlock(&c->mu);
        return PST_OK;
    }
    int64_t silent = now - c->last_answer_ms;
    if (c->refused)
        rc = pst_err_set(err, PST_ERR_NET, "coordinator %s: %s", c->coordinator, c->refusal);
    else if (silent > c->o.timeout_ms)
        rc = pst_err_set(err, PST_ERR_TIMEOUT,
                         "coordinator %s has not answered heartbeats for "
                         "%.1f s (gone?)",
                         c->coordinator, silent / 1000.0);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int hb_stop_window_ms(int heartbeat_timeout_s)
{
    int s = heartbeat_timeout_s < 8 ? heartbeat_timeout_s : 8;
    return (s > 0 ? s : 1) * 1000;
}

int hb_stop_signal(hb_client *c)
{
    if (!c)
        return 0;
    pthread_mutex_lock(&c->mu);
    int sig = c->stop_signal;
    pthread_mutex_unlock(&c->mu);
    return sig;
}

int hb_membership(hb_client *c, int n, uint64_t *gen, uint8_t *lost, uint8_t *done,
                  uint64_t *version)
{
    if (!c)
        return 0;
    pthread_mutex_lock(&c->mu);
    int k = c->nmembers < n ? c->nmembers : n;
    memcpy(gen, c->gen, sizeof(uint64_t) * (size_t)k);
    memcpy(lost, c->lost, (size_t)k);
    if (done)
        memcpy(done, c->done, (size_t)k);
    if (version)
        *version = c->version;
    int total = c->nmembers;
    pthread_mutex_unlock(&c->mu);
    return total;
}

int hb_servers(hb_client *c, int n, uint64_t *gen, char (*endpoints)[WIRE_ENDPOINT_MAX],
               uint64_t *version)
{
    if (!c)
        return 0;
    pthread_mutex_lock(&c->mu);
    int k = c->nservers < n ? c->nservers : n;
    memcpy(gen, c->sgen, sizeof(uint64_t) * (size_t)k);
    memcpy(endpoints, c->sep, sizeof c->sep[0] * (size_t)k);
    if (version)
        *version = c->version;
    int total = c->nservers;
    pthread_mutex_unlock(&c->mu);
    return total;
}
