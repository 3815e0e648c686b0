/* net/net.c -- see net.h. A thin layer over libzmq: it adds timeouts with clear errors,
 * frame-count limits and balanced release of zero-copy frames; ZeroMQ does the rest.
 * CURVE with an allow-list (keys, the guard thread) is in curve.c. */
#include "net_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

struct net_msg {
    int n;
    zmq_msg_t f[NET_MAX_FRAMES];
    /* The sender of a message refused for too many frames (net_recv keeps no frames of
     * it): what net_msg_peer says then. */
    char refused_addr[NET_PEER_ADDR], refused_id[NET_PEER_ID];
};

int64_t net_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

net_ctx *net_ctx_create(int io_threads, pst_err *err)
{
    net_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        pst_err_set(err, PST_ERR_NOMEM, "net: out of memory");
        return NULL;
    }
    c->zctx = zmq_ctx_new();
    if (!c->zctx) {
        pst_err_set(err, PST_ERR_NET, "net: zmq_ctx_new: %s", zmq_strerror(errno));
        free(c);
        return NULL;
    }
    zmq_ctx_set(c->zctx, ZMQ_IO_THREADS, io_threads > 0 ? io_threads : 1);
    /* Our own signal handling decides when to stop; ZeroMQ must not swallow EINTR. */
    zmq_ctx_set(c->zctx, ZMQ_BLOCKY, 0);
    return c;
}

void net_ctx_destroy(net_ctx *c)
{
    if (!c)
        return;
    net_curve_stop(c);
    zmq_ctx_term(c->zctx);
    free(c->keys.allow);
    free(c);
}

static int setopt_int(net_sock *s, int opt, int v, const char *name, pst_err *err)
{
    if (zmq_setsockopt(s->z, opt, &v, sizeof v) != 0)
        return pst_err_set(err, PST_ERR_NET, "net: setsockopt %s=%d: %s", name, v,
                           zmq_strerror(errno));
    return PST_OK;
}

net_sock *net_sock_create(net_ctx *ctx, net_kind kind, const net_opts *o, pst_err *err)
{
    net_opts def = {0};
    if (!o)
        o = &def;
    net_sock *s = calloc(1, sizeof *s);
    if (!s) {
        pst_err_set(err, PST_ERR_NOMEM, "net: out of memory");
        return NULL;
    }
    s->kind = kind;
    s->faults = ctx->faults;
    s->z = zmq_socket(ctx->zctx, kind == NET_ROUTER ? ZMQ_ROUTER : ZMQ_DEALER);
    if (!s->z) {
        pst_err_set(err, PST_ERR_NET, "net: zmq_socket: %s", zmq_strerror(errno));
        free(s);
        return NULL;
    }
    int linger = o->linger_ms > 0 ? o->linger_ms : 2000;
    if (setopt_int(s, ZMQ_LINGER, linger, "ZMQ_LINGER", err))
        goto fail;
    if (o->hwm != 0) {
        int hwm = o->hwm < 0 ? 0 : o->hwm; /* ZeroMQ spells "no limit" as 0 */
        if (setopt_int(s, ZMQ_SNDHWM, hwm, "ZMQ_SNDHWM", err) ||
            setopt_int(s, ZMQ_RCVHWM, hwm, "ZMQ_RCVHWM", err))
            goto fail;
    }
    if (o->rcv_hwm > 0 && setopt_int(s, ZMQ_RCVHWM, o->rcv_hwm, "ZMQ_RCVHWM", err))
        goto fail;
    if (o->max_msg_bytes > 0) {
        int64_t v = o->max_msg_bytes;
        if (zmq_setsockopt(s->z, ZMQ_MAXMSGSIZE, &v, sizeof v) != 0) {
            pst_err_set(err, PST_ERR_NET, "net: setsockopt ZMQ_MAXMSGSIZE: %s",
                        zmq_strerror(errno));
            goto fail;
        }
    }
    /* A DEALER whose peer is not up yet (or went away) reconnects by itself: first after
     * 100 ms, then backing off exponentially to once every 5 s, until the caller's own
     * deadline gives up. */
    if (kind == NET_DEALER &&
        (setopt_int(s, ZMQ_RECONNECT_IVL, 100, "ZMQ_RECONNECT_IVL", err) ||
         setopt_int(s, ZMQ_RECONNECT_IVL_MAX, 5000, "ZMQ_RECONNECT_IVL_MAX", err)))
        goto fail;
    /* A ROUTER reports an unknown peer (EHOSTUNREACH) instead of dropping silently. */
    if (kind == NET_ROUTER && setopt_int(s, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY", err))
        goto fail;
    if (kind == NET_ROUTER && o->handover &&
        setopt_int(s, ZMQ_ROUTER_HANDOVER, 1, "ZMQ_ROUTER_HANDOVER", err))
        goto fail;
    if (o->identity &&
        zmq_setsockopt(s->z, ZMQ_ROUTING_ID, o->identity, strlen(o->identity)) != 0) {
        pst_err_set(err, PST_ERR_NET, "net: routing id '%s': %s", o->identity, zmq_strerror(errno));
        goto fail;
    }
    if (ctx->curve && net_curve_sock_setup(ctx, s, err))
        goto fail;
    return s;
fail:
    zmq_close(s->z);
    free(s);
    return NULL;
}

void net_sock_destroy(net_sock *s)
{
    if (!s)
        return;
    zmq_close(s->z);
    free(s);
}

void net_sock_discard(net_sock *s)
{
    if (!s)
        return;
    int zero = 0;
    zmq_setsockopt(s->z, ZMQ_LINGER, &zero, sizeof zero); /* best effort: closed anyway */
    net_sock_destroy(s);
}

int net_sock_bind(net_sock *s, const char *endpoint, char *bound, size_t cap, pst_err *err)
{
    char ep[512];
    /* ZeroMQ spells "any free port" as '*'; accept the socket API's ":0" too. */
    size_t len = strlen(endpoint);
    if (len + 1 > sizeof ep)
        return pst_err_set(err, PST_ERR_ARG, "net: endpoint '%.60s...' too long", endpoint);
    memcpy(ep, endpoint, len + 1);
    if (len > 2 && strcmp(ep + len - 2, ":0") == 0)
        memcpy(ep + len - 1, "*", 2);
    if (zmq_bind(s->z, ep) != 0) {
        /* A port in use or an address not of this host stays so: trying again (a
         * launcher's restart) cannot help, so it is the caller's setting that is wrong. */
        int e = errno;
        int permanent = e == EADDRINUSE || e == EADDRNOTAVAIL || e == EINVAL ||
                        e == EPROTONOSUPPORT || e == EACCES;
        return pst_err_set(err, permanent ? PST_ERR_CONFIG : PST_ERR_NET, "net: cannot bind %s: %s",
                           endpoint, zmq_strerror(e));
    }
    if (bound && cap) {
        size_t n = cap;
        if (zmq_getsockopt(s->z, ZMQ_LAST_ENDPOINT, bound, &n) != 0)
            return pst_err_set(err, PST_ERR_NET, "net: bound endpoint of %s: %s", endpoint,
                               zmq_strerror(errno));
    }
    return PST_OK;
}

int net_sock_connect(net_sock *s, const char *endpoint, pst_err *err)
{
    if (zmq_connect(s->z, endpoint) != 0)
        return pst_err_set(err, PST_ERR_NET, "net: cannot connect to %s: %s", endpoint,
                           zmq_strerror(errno));
    return PST_OK;
}

/* Waits up to timeout_ms for socket s to accept a send (events ZMQ_POLLOUT). */
static int wait_event(void *z, short ev, int timeout_ms)
{
    zmq_pollitem_t it = {.socket = z, .events = ev};
    int64_t deadline = net_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        int left = timeout_ms < 0 ? -1 : (int)(deadline - net_now_ms());
        if (timeout_ms >= 0 && left < 0)
            left = 0;
        int rc = zmq_poll(&it, 1, left);
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
        if (timeout_ms >= 0 && net_now_ms() >= deadline)
            return 0;
    }
}

void net_ctx_set_faults(net_ctx *ctx, net_faults *f) { ctx->faults = f; }

int net_faults_attach(net_ctx *ctx, const char *spec, uint64_t salt, const log_ctx *lg,
                      net_faults **out, pst_err *err)
{
    *out = NULL;
    if (!spec || !spec[0])
        return PST_OK;
    pst_err fe = {0};
    if (!(*out = net_faults_create(spec, salt, &fe)))
        return pst_err_set(err, fe.code ? fe.code : PST_ERR_NOMEM, "%s", fe.msg);
    char d[160];
    net_faults_describe(*out, d, sizeof d);
    log_warn(lg, "fault injection (test only): %s", d);
    net_ctx_set_faults(ctx, *out);
    return PST_OK;
}

void net_faults_finish(net_faults *f, const log_ctx *lg)
{
    if (!f)
        return;
    net_fault_stats fs;
    net_faults_get_stats(f, &fs);
    log_info(lg,
             "fault injection: %llu messages sent, %llu dropped, %llu duplicated, %llu "
             "delayed",
             (unsigned long long)fs.messages, (unsigned long long)fs.dropped,
             (unsigned long long)fs.duplicated, (unsigned long long)fs.delayed);
    net_faults_destroy(f);
}

static int send_now(net_sock *s, const net_frame *frames, int n, int timeout_ms, pst_err *err);

/* Fault injection (faults.h): a dropped message is released as if sent; a duplicate goes
 * out twice, the first time as a copy (a zero-copy frame is released once, by the second);
 * a delayed one waits before it goes, so the order of messages is kept. */
int net_send(net_sock *s, const net_frame *frames, int n, int timeout_ms, pst_err *err)
{
    assert(n >= 1 && n <= NET_MAX_FRAMES);
    net_fault fate = s->faults ? net_faults_next(s->faults) : NET_FAULT_NONE;
    if (fate == NET_FAULT_DROP) {
        for (int i = 0; i < n; i++)
            if (frames[i].release)
                frames[i].release((void *)frames[i].data, frames[i].hint);
        return PST_OK;
    }
    if (fate == NET_FAULT_DELAY) {
        int ms = net_faults_delay_ms(s->faults);
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    if (fate == NET_FAULT_DUP) {
        net_frame copy[NET_MAX_FRAMES];
        for (int i = 0; i < n; i++)
            copy[i] = (net_frame){.data = frames[i].data, .len = frames[i].len};
        pst_err e = {0};
        (void)send_now(s, copy, n, timeout_ms, &e); /* the original below reports failures */
    }
    return send_now(s, frames, n, timeout_ms, err);
}

static int send_now(net_sock *s, const net_frame *frames, int n, int timeout_ms, pst_err *err)
{
    int rc = PST_OK, i = 0;
    /* The first frame waits for room in the queue; the rest of a message never blocks
     * once its first frame is in (ZeroMQ queues multipart messages atomically). A timeout
     * of 0 does not wait at all (servers: their queues are unbounded, see net_opts.hwm). */
    int w = timeout_ms == 0 ? 1 : wait_event(s->z, ZMQ_POLLOUT, timeout_ms);
    if (w == 0) {
        rc = pst_err_set(err, PST_ERR_TIMEOUT, "net: send queue full for %d ms (peer slow or gone)",
                         timeout_ms);
        goto release_rest;
    }
    if (w < 0) {
        rc = pst_err_set(err, PST_ERR_NET, "net: poll: %s", zmq_strerror(errno));
        goto release_rest;
    }
    for (; i < n; i++) {
        const net_frame *f = &frames[i];
        zmq_msg_t m;
        if (f->release) {
            if (zmq_msg_init_data(&m, (void *)f->data, f->len, f->release, f->hint) != 0) {
                rc = pst_err_set(err, PST_ERR_NET, "net: msg init: %s", zmq_strerror(errno));
                goto release_rest;
            }
        } else {
            if (zmq_msg_init_size(&m, f->len) != 0) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "net: no memory for a %zu-byte frame", f->len);
                goto release_rest;
            }
            if (f->len)
                memcpy(zmq_msg_data(&m), f->data, f->len);
        }
        int flags = (i + 1 < n ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT;
        int r;
        do
            r = zmq_msg_send(&m, s->z, flags);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            int e = errno;
            zmq_msg_close(&m); /* releases a zero-copy frame through its callback */
            i++;
            rc = pst_err_set(err, e == EHOSTUNREACH ? PST_ERR_PEER : PST_ERR_NET, "net: send: %s",
                             e == EHOSTUNREACH ? "peer not connected" : zmq_strerror(e));
            goto release_rest;
        }
    }
    return PST_OK;

release_rest:
    for (; i < n; i++)
        if (frames[i].release)
            frames[i].release((void *)frames[i].data, frames[i].hint);
    return rc;
}

net_msg *net_msg_create(pst_err *err)
{
    net_msg *m = calloc(1, sizeof *m);
    if (!m)
        pst_err_set(err, PST_ERR_NOMEM, "net: out of memory");
    return m;
}

void net_msg_clear(net_msg *m)
{
    for (int i = 0; i < m->n; i++)
        zmq_msg_close(&m->f[i]);
    m->n = 0;
    m->refused_addr[0] = m->refused_id[0] = '\0';
}

void net_msg_destroy(net_msg *m)
{
    if (!m)
        return;
    net_msg_clear(m);
    free(m);
}

int net_recv(net_sock *s, net_msg *m, int timeout_ms, pst_err *err)
{
    net_msg_clear(m);
    int w = wait_event(s->z, ZMQ_POLLIN, timeout_ms);
    if (w == 0)
        return pst_err_set(err, PST_ERR_TIMEOUT, "net: nothing received for %d ms", timeout_ms);
    if (w < 0)
        return pst_err_set(err, PST_ERR_NET, "net: poll: %s", zmq_strerror(errno));
    int too_many = 0;
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        int r;
        do
            r = zmq_msg_recv(&part, s->z, 0);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            zmq_msg_close(&part);
            net_msg_clear(m);
            return pst_err_set(err, PST_ERR_NET, "net: recv: %s", zmq_strerror(errno));
        }
        int more = zmq_msg_more(&part);
        if (m->n < NET_MAX_FRAMES)
            m->f[m->n++] = part; /* moves ownership of the frame into m */
        else {
            too_many = 1;
            zmq_msg_close(&part);
        }
        if (!more)
            break;
    }
    if (too_many) {
        char addr[NET_PEER_ADDR], id[NET_PEER_ID];
        net_msg_peer(m, s->kind == NET_ROUTER, addr, sizeof addr, id, sizeof id);
        net_msg_clear(m);
        memcpy(m->refused_addr, addr, sizeof addr);
        memcpy(m->refused_id, id, sizeof id);
        return pst_err_set(err, PST_ERR_PEER, "net: message of more than %d frames dropped",
                           NET_MAX_FRAMES);
    }
    return PST_OK;
}

int net_msg_count(const net_msg *m) { return m->n; }

net_key_class net_msg_key(const net_msg *m, char *z85)
{
    if (z85)
        z85[0] = '\0';
    /* A ROUTER's frame 0, the routing id it prepends, carries no metadata: the last frame
     * came from the peer's connection. */
    const char *u = m->n ? zmq_msg_gets((zmq_msg_t *)&m->f[m->n - 1], "User-Id") : NULL;
    size_t ns = strlen(NET_USER_SERVER), nc = strlen(NET_USER_CLIENT);
    net_key_class k = !u                                             ? NET_KEY_NONE
                      : strncmp(u, NET_USER_SERVER " ", ns + 1) == 0 ? NET_KEY_SERVER
                      : strncmp(u, NET_USER_CLIENT " ", nc + 1) == 0 ? NET_KEY_CLIENT
                                                                     : NET_KEY_NONE;
    if (z85 && k != NET_KEY_NONE)
        snprintf(z85, 41, "%s", u + (k == NET_KEY_SERVER ? ns : nc) + 1);
    return k;
}

void net_msg_peer(const net_msg *m, int is_router, char *addr, size_t acap, char *id, size_t icap)
{
    /* Like User-Id, the property lives on the frames that came from the connection, not on
     * the routing id the ROUTER prepends. */
    if (m->n == 0) {
        snprintf(addr, acap, "%s", m->refused_addr);
        snprintf(id, icap, "%s", m->refused_id);
        return;
    }
    const char *a = zmq_msg_gets((zmq_msg_t *)&m->f[m->n - 1], "Peer-Address");
    snprintf(addr, acap, "%s", a ? a : "");
    if (icap == 0)
        return;
    id[0] = '\0';
    if (!is_router)
        return;
    const unsigned char *r = zmq_msg_data((zmq_msg_t *)&m->f[0]);
    size_t rl = zmq_msg_size((zmq_msg_t *)&m->f[0]), o = 0;
    for (size_t i = 0; i < rl && o + 5 < icap; i++)
        o += (size_t)(r[i] > ' ' && r[i] < 127 && r[i] != '\\'
                          ? snprintf(id + o, icap - o, "%c", r[i])
                          : snprintf(id + o, icap - o, "\\x%02x", r[i]));
}

const void *net_msg_data(const net_msg *m, int i, size_t *len)
{
    assert(i >= 0 && i < m->n);
    zmq_msg_t *f = (zmq_msg_t *)&m->f[i];
    if (len)
        *len = zmq_msg_size(f);
    return zmq_msg_data(f);
}

int net_poll(net_sock *const *socks, int n, int timeout_ms, uint64_t *ready, pst_err *err)
{
    zmq_pollitem_t items[64];
    assert(n >= 1 && n <= 64);
    for (int i = 0; i < n; i++)
        items[i] = (zmq_pollitem_t){.socket = socks[i]->z, .events = ZMQ_POLLIN};
    int r = zmq_poll(items, n, timeout_ms);
    *ready = 0;
    if (r < 0) {
        if (errno == EINTR)
            return PST_OK; /* a signal: the caller checks its stop flag and polls again */
        return pst_err_set(err, PST_ERR_NET, "net: poll: %s", zmq_strerror(errno));
    }
    if (r == 0)
        return pst_err_set(err, PST_ERR_TIMEOUT, "net: nothing received for %d ms", timeout_ms);
    for (int i = 0; i < n; i++)
        if (items[i].revents & ZMQ_POLLIN)
            *ready |= (uint64_t)1 << i;
    return PST_OK;
}
