/* net/curve.c -- CURVE for net.h's contexts: key files and the allow-list, the guard thread
 * (a ZAP handler, RFC 27, that admits the allow-list's client keys, and the monitors that
 * report refused handshakes), and each socket's CURVE options. See net.h (net_ctx_curve)
 * and docs/security.md. */
#include "net_internal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#define CURVE_Z85 40 /* characters of its Z85 text */
#define ZAP_DOMAIN "pstrain"
#define GUARD_MAX_MONITORS 62 /* sockets watched per context (plus ctl and ZAP in one poll) */
#define GUARD_SEEN_MAX 256    /* refused (key, address) pairs remembered, to log each once */
#define CTL_TIMEOUT_MS 5000

int net_curve_keypair(char *public_z85, char *secret_z85, pst_err *err)
{
    if (!zmq_has("curve"))
        return pst_err_set(err, PST_ERR_CONFIG, "this libzmq was built without CURVE support");
    if (zmq_curve_keypair(public_z85, secret_z85) != 0)
        return pst_err_set(err, PST_ERR_NET, "zmq_curve_keypair: %s", zmq_strerror(errno));
    return PST_OK;
}

/* Reads one Z85 key from a line; s is trimmed of surrounding blanks. */
static int parse_key(char *s, uint8_t *key)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strcspn(s, " \t\r\n");
    if (n != CURVE_Z85)
        return -1;
    char z[CURVE_Z85 + 1];
    memcpy(z, s, CURVE_Z85);
    z[CURVE_Z85] = '\0';
    return zmq_z85_decode(key, z) ? 0 : -1;
}

/* The first key line of a key file. want_secret: a file whose comment says it holds the
 * other half is refused with a hint, since the two are easy to swap in a config. */
static int read_key_file(const char *path, int want_secret, uint8_t *key, pst_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return pst_err_set(err, PST_ERR_CONFIG, "security: cannot read key file %s: %s", path,
                           strerror(errno));
    char line[256];
    int rc = pst_err_set(err, PST_ERR_CONFIG, "security: key file %s holds no key", path);
    while (fgets(line, sizeof line, f)) {
        char *p = line + strspn(line, " \t");
        /* '#' is also a Z85 character: a line is a comment only when it is no key. */
        if (*p == '#' && parse_key(p, key) != 0) {
            const char *other = want_secret ? "public key" : "secret key";
            if (strstr(p, other)) {
                rc = pst_err_set(err, PST_ERR_CONFIG,
                                 "security: %s holds a %s; the %s is "
                                 "needed here",
                                 path, other,
                                 want_secret ? "secret key (NAME.key)" : "public key (NAME.pub)");
                break;
            }
            continue;
        }
        if (*p == '\n' || *p == '\r' || *p == '\0')
            continue;
        rc = parse_key(p, key) == 0
                 ? PST_OK
                 : pst_err_set(err, PST_ERR_CONFIG,
                               "security: %s is not a CURVE key file "
                               "(expected 40 Z85 characters, as pstrain keygen writes)",
                               path);
        break;
    }
    fclose(f);
    return rc;
}

static int allow_add(curve_keys *k, const uint8_t *key, int *cap, pst_err *err)
{
    if (k->nallow == *cap) {
        int ncap = *cap ? *cap * 2 : 16;
        void *p = realloc(k->allow, (size_t)ncap * CURVE_KEY);
        if (!p)
            return pst_err_set(err, PST_ERR_NOMEM, "security: out of memory for the allow-list");
        k->allow = p;
        *cap = ncap;
    }
    memcpy(k->allow[k->nallow++], key, CURVE_KEY);
    return PST_OK;
}

/* A directory: every *.pub in it. A file: one key a line ('#' comments, blank lines). */
static int load_allow(curve_keys *k, const char *path, pst_err *err)
{
    struct stat st;
    int cap = 0, rc = PST_OK;
    uint8_t key[CURVE_KEY];
    snprintf(k->allow_path, sizeof k->allow_path, "%s", path);
    if (stat(path, &st) != 0)
        return pst_err_set(err, PST_ERR_CONFIG, "security: cannot read allow-list %s: %s", path,
                           strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return pst_err_set(err, PST_ERR_CONFIG, "security: cannot read allow-list %s: %s", path,
                               strerror(errno));
        struct dirent *e;
        while (rc == PST_OK && (e = readdir(d))) {
            size_t n = strlen(e->d_name);
            if (n < 5 || strcmp(e->d_name + n - 4, ".pub") != 0 || e->d_name[0] == '.')
                continue;
            char full[4096];
            if (snprintf(full, sizeof full, "%s/%s", path, e->d_name) >= (int)sizeof full)
                continue;
            rc = read_key_file(full, 0, key, err);
            if (rc == PST_OK)
                rc = allow_add(k, key, &cap, err);
        }
        closedir(d);
    } else {
        FILE *f = fopen(path, "r");
        if (!f)
            return pst_err_set(err, PST_ERR_CONFIG, "security: cannot read allow-list %s: %s", path,
                               strerror(errno));
        char line[256];
        for (int ln = 1; rc == PST_OK && fgets(line, sizeof line, f); ln++) {
            char *p = line + strspn(line, " \t");
            int bad = parse_key(p, key) != 0;
            if ((bad && *p == '#') || *p == '\n' || *p == '\r' || *p == '\0')
                continue;
            if (bad)
                rc = pst_err_set(err, PST_ERR_CONFIG,
                                 "security: allow-list %s:%d: not a CURVE "
                                 "public key (40 Z85 characters)",
                                 path, ln);
            else
                rc = allow_add(k, key, &cap, err);
        }
        fclose(f);
    }
    if (rc == PST_OK && k->nallow == 0)
        rc = pst_err_set(err, PST_ERR_CONFIG, "security: allow-list %s holds no keys%s", path,
                         S_ISDIR(st.st_mode) ? " (no *.pub files)" : "");
    return rc;
}

static int curve_on(const net_curve_files *f)
{
    return f && (f->server_secret || f->server_public || f->client_secret || f->allow);
}

/* Fills k from f; on failure k->allow is freed. */
static int load_keys(curve_keys *k, const net_curve_files *f, pst_err *err)
{
    int rc = PST_OK;
    char z[CURVE_Z85 + 1], zs[CURVE_Z85 + 1];
    memset(k, 0, sizeof *k);
    if (!zmq_has("curve"))
        return pst_err_set(err, PST_ERR_CONFIG,
                           "security: this libzmq was built without CURVE "
                           "support (zmq_has(\"curve\") is false)");
    if (f->server_secret) {
        if ((rc = read_key_file(f->server_secret, 1, k->server_secret, err)))
            goto fail;
        k->have_server = 1;
        zmq_z85_encode(zs, k->server_secret, CURVE_KEY);
        if (zmq_curve_public(z, zs) != 0 || !zmq_z85_decode(k->server_own_public, z)) {
            rc = pst_err_set(err, PST_ERR_CONFIG, "security: %s: cannot derive the public key",
                             f->server_secret);
            goto fail;
        }
        if (!f->allow) {
            rc = pst_err_set(err, PST_ERR_CONFIG,
                             "security: a server key (%s) needs an "
                             "allow-list of client keys",
                             f->server_secret);
            goto fail;
        }
    }
    if (f->allow && (rc = load_allow(k, f->allow, err)))
        goto fail;
    if (f->server_public) {
        if ((rc = read_key_file(f->server_public, 0, k->server_public, err)))
            goto fail;
        k->have_public = 1;
    }
    const char *cpath = f->client_secret ? f->client_secret : f->server_secret;
    if (f->client_secret && (rc = read_key_file(f->client_secret, 1, k->client_secret, err)))
        goto fail;
    if (!f->client_secret && f->server_secret)
        memcpy(k->client_secret, k->server_secret, CURVE_KEY);
    if (cpath) {
        zmq_z85_encode(zs, k->client_secret, CURVE_KEY);
        if (zmq_curve_public(z, zs) != 0 || !zmq_z85_decode(k->client_public, z)) {
            rc = pst_err_set(err, PST_ERR_CONFIG, "security: %s: cannot derive the public key",
                             cpath);
            goto fail;
        }
        k->have_client = 1;
    }
    return PST_OK;
fail:
    free(k->allow);
    k->allow = NULL;
    return rc;
}

int net_curve_check(const net_curve_files *f, pst_err *err)
{
    if (!curve_on(f))
        return PST_OK;
    curve_keys k;
    int rc = load_keys(&k, f, err);
    free(k.allow);
    return rc;
}

int net_ctx_refusals(net_ctx *c) { return __atomic_load_n(&c->refusals, __ATOMIC_RELAXED); }

/* Logs the 1st, 10th, 100th, ... of a count, so a peer retrying every few seconds is
 * reported without flooding the log. */
static int worth_logging(unsigned n)
{
    while (n >= 10 && n % 10 == 0)
        n /= 10;
    return n == 1;
}

typedef struct {
    void *pair; /* connected to a socket's monitor endpoint */
    net_kind kind;
    unsigned failed[3]; /* protocol, no detail, auth */
} guard_mon;

typedef struct {
    net_ctx *c;
    guard_mon mon[GUARD_MAX_MONITORS];
    int nmon;
    struct {
        uint8_t key[CURVE_KEY];
        char addr[64];
    } seen[GUARD_SEEN_MAX];
    int nseen;
    /* Refused keys per source address: one address trying many fresh keys (600 keys, 600
     * handshakes) is logged the 1st, 10th, 100th, ... time, like a plaintext peer. */
    struct {
        char addr[64];
        unsigned keys;
    } src[GUARD_SEEN_MAX];
    int nsrc;
    unsigned src_overflow; /* refusals from addresses past the table's GUARD_SEEN_MAX */
} guard;

/* Reads one multipart message into frames (up to n; the rest are dropped), returns how
 * many, 0 when none is waiting. Never blocks: a guard thread stuck in recv would stall
 * every handshake waiting for its ZAP reply. The frames of a message arrive together. */
static int recv_all(void *z, zmq_msg_t *frames, int n)
{
    int k = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            if (errno == EINTR)
                continue;
            break;
        }
        more = zmq_msg_more(&m);
        if (k < n)
            frames[k++] = m;
        else
            zmq_msg_close(&m);
    }
    return k;
}

static void frame_str(zmq_msg_t *m, char *buf, size_t cap)
{
    size_t n = zmq_msg_size(m);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, zmq_msg_data(m), n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] > 0x7e)
            buf[i] = '?';
}

/* The class of an admitted key (net.h, net_key_class): the job's own server key pair --
 * only the coordinator and the servers hold its secret half -- is the server class, even
 * when the allow-list does not name it; any other listed key is a client. NULL: refused. */
static const char *key_class(const curve_keys *k, const uint8_t *key)
{
    if (memcmp(k->server_own_public, key, CURVE_KEY) == 0)
        return NET_USER_SERVER;
    for (int i = 0; i < k->nallow; i++)
        if (memcmp(k->allow[i], key, CURVE_KEY) == 0)
            return NET_USER_CLIENT;
    return NULL;
}

/* Logs a refused key once per (key, address), and of the distinct keys refused from one
 * address the 1st, 10th, 100th, ... */
static void log_refusal(guard *g, const uint8_t *key, int have_key, const char *addr,
                        const char *mech)
{
    net_ctx *c = g->c;
    for (int i = 0; i < g->nseen; i++)
        if (memcmp(g->seen[i].key, key, CURVE_KEY) == 0 && strcmp(g->seen[i].addr, addr) == 0)
            return; /* logged already */
    if (g->nseen < GUARD_SEEN_MAX) {
        memcpy(g->seen[g->nseen].key, key, CURVE_KEY);
        snprintf(g->seen[g->nseen].addr, sizeof g->seen[g->nseen].addr, "%s", addr);
        g->nseen++;
    }
    unsigned *count = &g->src_overflow;
    for (int i = 0; i < g->nsrc && count == &g->src_overflow; i++)
        if (strcmp(g->src[i].addr, addr) == 0)
            count = &g->src[i].keys;
    if (count == &g->src_overflow && g->nsrc < GUARD_SEEN_MAX) {
        snprintf(g->src[g->nsrc].addr, sizeof g->src[g->nsrc].addr, "%s", addr);
        count = &g->src[g->nsrc++].keys;
    }
    unsigned n = ++*count;
    if (!c->lg || !worth_logging(n))
        return;
    char z[CURVE_Z85 + 1] = "-", more[96];
    if (have_key)
        zmq_z85_encode(z, key, CURVE_KEY);
    if (count == &g->src_overflow)
        snprintf(more, sizeof more, "%u keys refused from addresses past the first %d so far", n,
                 GUARD_SEEN_MAX);
    else if (n > 1)
        snprintf(more, sizeof more, "%u keys refused from this address so far", n);
    else
        snprintf(more, sizeof more, "further attempts of this peer are not logged");
    log_warn(c->lg,
             "security: refused a %s client from %s: key %s is not in the allow-list "
             "%s (%s)",
             mech, addr, z, c->keys.allow_path, more);
}

/* One ZAP request (RFC 27): version, request id, domain, address, routing id, mechanism,
 * credentials. Accepts a CURVE client whose public key is the server key or in the
 * allow-list; the reply's user id, "CLASS KEY" (NET_USER_SERVER or NET_USER_CLIENT and
 * the key in Z85), is attached to every message of that connection (net_msg_key). */
static void guard_zap(guard *g)
{
    net_ctx *c = g->c;
    zmq_msg_t f[8];
    int n = recv_all(c->zap, f, 8);
    const char *status = "400", *text = "key not in the allow-list", *cls = NULL;
    char addr[64] = "?", mech[16] = "?", user[CURVE_Z85 + 16] = "";
    uint8_t key[CURVE_KEY] = {0};
    int have_key = 0;
    if (n >= 6) {
        frame_str(&f[3], addr, sizeof addr);
        frame_str(&f[5], mech, sizeof mech);
    }
    if (n >= 7 && strcmp(mech, "CURVE") == 0 && zmq_msg_size(&f[6]) == CURVE_KEY) {
        memcpy(key, zmq_msg_data(&f[6]), CURVE_KEY);
        have_key = 1;
        if ((cls = key_class(&c->keys, key))) {
            char z[CURVE_Z85 + 1];
            zmq_z85_encode(z, key, CURVE_KEY);
            snprintf(user, sizeof user, "%s %s", cls, z);
            status = "200";
            text = "OK";
        }
    } else if (n >= 6) {
        text = "mechanism not allowed";
    }
    if (n >= 2) {
        const char *reply[6] = {"1.0", NULL, status, text, user, ""};
        for (int i = 0; i < 6; i++) {
            int flags = i < 5 ? ZMQ_SNDMORE : 0;
            if (i == 1)
                zmq_send(c->zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), flags);
            else
                zmq_send(c->zap, reply[i], strlen(reply[i]), flags);
        }
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
    if (status[0] == '2')
        return;
    __atomic_add_fetch(&c->refusals, 1, __ATOMIC_RELAXED);
    log_refusal(g, key, have_key, addr, mech);
}

/* One monitor event: frame 0 is a 16-bit event and a 32-bit value, frame 1 the endpoint. */
static int guard_event(guard *g, int i)
{
    guard_mon *m = &g->mon[i];
    net_ctx *c = g->c;
    zmq_msg_t f[2];
    int n = recv_all(m->pair, f, 2);
    uint16_t ev = 0;
    uint32_t val = 0;
    char ep[256] = "?";
    if (n >= 1 && zmq_msg_size(&f[0]) >= 6) {
        const uint8_t *d = zmq_msg_data(&f[0]);
        memcpy(&ev, d, 2);
        memcpy(&val, d + 2, 4);
    }
    if (n >= 2)
        frame_str(&f[1], ep, sizeof ep);
    for (int k = 0; k < n; k++)
        zmq_msg_close(&f[k]);
    if (ev == ZMQ_EVENT_MONITOR_STOPPED)
        return 1;
    int kind = ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL    ? 0
               : ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ? 1
               : ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH      ? 2
                                                            : -1;
    /* A server's own ZAP denial was logged, with the key, by guard_zap. */
    if (kind < 0 || (kind == 2 && m->kind == NET_ROUTER))
        return 0;
    __atomic_add_fetch(&c->refusals, 1, __ATOMIC_RELAXED);
    unsigned cnt = ++m->failed[kind];
    if (!c->lg || !worth_logging(cnt))
        return 0;
    char times[48] = "";
    if (cnt > 1)
        snprintf(times, sizeof times, " (%u times so far)", cnt);
    if (m->kind == NET_ROUTER && kind == 1) /* val: an errno */
        log_warn(c->lg,
                 "security: refused a connection on %s: the peer broke off the CURVE "
                 "handshake (a plaintext client, or one with the wrong server key?): %s%s",
                 ep, strerror((int)val), times);
    else if (m->kind == NET_ROUTER)
        log_warn(c->lg, "security: refused a connection on %s: %s [ZMTP error 0x%x]%s", ep,
                 val == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
                     ? "the peer does not use CURVE (a plaintext client?)"
                     : "the CURVE handshake failed (a client with the wrong server key?)",
                 val, times);
    else if (kind == 2)
        log_warn(c->lg,
                 "security: %s refused this process's CURVE key (status %u): its public "
                 "key is not in that side's allow-list%s",
                 ep, val, times);
    else
        log_warn(c->lg, "security: the CURVE handshake with %s failed (%s)%s", ep,
                 val == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ? "that side does not use CURVE"
                                                                   : "wrong server public key?",
                 times);
    return 0;
}

/* Control messages: "stop", or "mon K ENDPOINT" (K 'r' or 'd'), answered "ok" or "no". */
static int guard_ctl(guard *g)
{
    net_ctx *c = g->c;
    char cmd[300];
    int n = zmq_recv(c->ctl_guard, cmd, sizeof cmd - 1, ZMQ_DONTWAIT);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : 1;
    cmd[n < (int)sizeof cmd - 1 ? n : (int)sizeof cmd - 1] = '\0';
    if (strcmp(cmd, "stop") == 0)
        return 1;
    const char *ok = "no";
    if (strncmp(cmd, "mon ", 4) == 0 && n > 7 && g->nmon < GUARD_MAX_MONITORS) {
        void *p = zmq_socket(c->zctx, ZMQ_PAIR);
        if (p && zmq_connect(p, cmd + 6) == 0) {
            g->mon[g->nmon++] =
                (guard_mon){.pair = p, .kind = cmd[4] == 'r' ? NET_ROUTER : NET_DEALER};
            ok = "ok";
        } else if (p) {
            zmq_close(p);
        }
    }
    zmq_send(c->ctl_guard, ok, 2, 0);
    return 0;
}

static void *guard_main(void *arg)
{
    guard *g = arg;
    net_ctx *c = g->c;
    for (;;) {
        zmq_pollitem_t it[2 + GUARD_MAX_MONITORS];
        int n = 0;
        it[n++] = (zmq_pollitem_t){.socket = c->ctl_guard, .events = ZMQ_POLLIN};
        if (c->zap)
            it[n++] = (zmq_pollitem_t){.socket = c->zap, .events = ZMQ_POLLIN};
        int base = n;
        for (int i = 0; i < g->nmon; i++)
            it[n++] = (zmq_pollitem_t){.socket = g->mon[i].pair, .events = ZMQ_POLLIN};
        /* No timeout: this thread only reacts, and net_ctx_destroy ends it through ctl. */
        if (zmq_poll(it, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (c->zap && (it[1].revents & ZMQ_POLLIN))
            guard_zap(g);
        /* Downwards, so a removal (the last monitor moved into slot i) skips none. */
        for (int i = n - base - 1; i >= 0; i--)
            if ((it[base + i].revents & ZMQ_POLLIN) && guard_event(g, i)) {
                zmq_close(g->mon[i].pair);
                g->mon[i] = g->mon[--g->nmon];
            }
        /* Last: a "mon" command adds a socket this poll did not cover. */
        if ((it[0].revents & ZMQ_POLLIN) && guard_ctl(g))
            break;
    }
    for (int i = 0; i < g->nmon; i++)
        zmq_close(g->mon[i].pair);
    if (c->zap)
        zmq_close(c->zap);
    c->zap = NULL;
    zmq_close(c->ctl_guard);
    free(g);
    return NULL;
}

/* Sends a command to the guard thread and waits for its answer (ctl_mu held). */
static int guard_call(net_ctx *c, const char *cmd)
{
    char r[4] = "";
    pthread_mutex_lock(&c->ctl_mu);
    int ok = zmq_send(c->ctl, cmd, strlen(cmd), 0) >= 0 && zmq_recv(c->ctl, r, sizeof r, 0) == 2 &&
             memcmp(r, "ok", 2) == 0;
    pthread_mutex_unlock(&c->ctl_mu);
    return ok ? 0 : -1;
}

void net_curve_stop(net_ctx *c)
{
    if (c->guard_running) {
        pthread_mutex_lock(&c->ctl_mu);
        zmq_send(c->ctl, "stop", 4, 0);
        pthread_mutex_unlock(&c->ctl_mu);
        pthread_join(c->guard, NULL);
        c->guard_running = 0;
    }
    if (c->ctl) {
        zmq_close(c->ctl);
        c->ctl = NULL;
        pthread_mutex_destroy(&c->ctl_mu);
    }
    if (c->ctl_guard) /* the thread never started */
        zmq_close(c->ctl_guard);
    if (c->zap)
        zmq_close(c->zap);
    c->ctl_guard = c->zap = NULL;
}

int net_ctx_curve(net_ctx *c, const net_curve_files *f, const log_ctx *lg, pst_err *err)
{
    if (!curve_on(f))
        return PST_OK;
    assert(!c->curve && !c->ctl);
    int rc = load_keys(&c->keys, f, err);
    if (rc)
        return rc;
    c->lg = lg;
    guard *g = calloc(1, sizeof *g);
    if (!g)
        return pst_err_set(err, PST_ERR_NOMEM, "net: out of memory");
    g->c = c;
    pthread_mutex_init(&c->ctl_mu, NULL);
    int tmo = CTL_TIMEOUT_MS, zero = 0;
    /* The ZAP endpoint is bound here, before any socket of this context can handshake, so
     * no CURVE server socket ever runs without it (libzmq admits every key when no ZAP
     * handler is bound). */
    if (!(c->ctl = zmq_socket(c->zctx, ZMQ_PAIR)) ||
        !(c->ctl_guard = zmq_socket(c->zctx, ZMQ_PAIR)) ||
        zmq_setsockopt(c->ctl, ZMQ_RCVTIMEO, &tmo, sizeof tmo) != 0 ||
        zmq_setsockopt(c->ctl, ZMQ_SNDTIMEO, &tmo, sizeof tmo) != 0 ||
        zmq_setsockopt(c->ctl, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(c->ctl_guard, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_bind(c->ctl_guard, "inproc://pstrain-net-guard") != 0 ||
        zmq_connect(c->ctl, "inproc://pstrain-net-guard") != 0) {
        rc = pst_err_set(err, PST_ERR_NET, "net: guard sockets: %s", zmq_strerror(errno));
        goto fail;
    }
    if (c->keys.have_server && (!(c->zap = zmq_socket(c->zctx, ZMQ_REP)) ||
                                zmq_setsockopt(c->zap, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
                                zmq_bind(c->zap, "inproc://zeromq.zap.01") != 0)) {
        rc = pst_err_set(err, PST_ERR_NET, "net: ZAP handler: %s", zmq_strerror(errno));
        goto fail;
    }
    if (pthread_create(&c->guard, NULL, guard_main, g) != 0) {
        rc = pst_err_set(err, PST_ERR_NET, "net: cannot start the ZAP thread");
        goto fail;
    }
    c->guard_running = 1;
    c->curve = 1;
    if (lg && c->keys.have_server)
        log_info(lg, "security: CURVE on; accepting %d client key(s) from %s", c->keys.nallow,
                 c->keys.allow_path);
    else if (lg)
        log_info(lg, "security: CURVE on (as a client)");
    return PST_OK;
fail:
    free(g);
    net_curve_stop(c);
    free(c->keys.allow);
    c->keys.allow = NULL;
    return rc;
}

int net_curve_sock_setup(net_ctx *c, net_sock *s, pst_err *err)
{
    const curve_keys *k = &c->keys;
    int one = 1;
    if (s->kind == NET_ROUTER) {
        if (!k->have_server)
            return pst_err_set(err, PST_ERR_CONFIG,
                               "security: this process listens but has "
                               "no server secret key");
        if (zmq_setsockopt(s->z, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
            zmq_setsockopt(s->z, ZMQ_CURVE_SECRETKEY, k->server_secret, CURVE_KEY) != 0 ||
            zmq_setsockopt(s->z, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN)) != 0)
            return pst_err_set(err, PST_ERR_NET, "net: CURVE server options: %s",
                               zmq_strerror(errno));
    } else {
        if (!k->have_public || !k->have_client)
            return pst_err_set(err, PST_ERR_CONFIG,
                               "security: this process connects but has "
                               "no %s",
                               !k->have_public ? "server public key" : "client secret key");
        if (zmq_setsockopt(s->z, ZMQ_CURVE_SERVERKEY, k->server_public, CURVE_KEY) != 0 ||
            zmq_setsockopt(s->z, ZMQ_CURVE_PUBLICKEY, k->client_public, CURVE_KEY) != 0 ||
            zmq_setsockopt(s->z, ZMQ_CURVE_SECRETKEY, k->client_secret, CURVE_KEY) != 0)
            return pst_err_set(err, PST_ERR_NET, "net: CURVE client options: %s",
                               zmq_strerror(errno));
    }
    /* Watch the handshakes, so refusals are reported (guard_event). */
    char ep[64], cmd[80];
    pthread_mutex_lock(&c->ctl_mu);
    int id = c->nmon++;
    pthread_mutex_unlock(&c->ctl_mu);
    snprintf(ep, sizeof ep, "inproc://pstrain-net-mon-%d", id);
    int events = ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_MONITOR_STOPPED;
    if (zmq_socket_monitor(s->z, ep, events) != 0)
        return pst_err_set(err, PST_ERR_NET, "net: socket monitor: %s", zmq_strerror(errno));
    snprintf(cmd, sizeof cmd, "mon %c %s", s->kind == NET_ROUTER ? 'r' : 'd', ep);
    /* More sockets than the guard watches still work; their refusals go unreported. */
    if (guard_call(c, cmd) != 0)
        zmq_socket_monitor(s->z, NULL, 0);
    return PST_OK;
}
