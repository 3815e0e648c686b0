/* net/net_internal.h -- the context and socket structs, shared by net/'s files (not a
 * public header: only net/net.c and net/curve.c include it; the interface is net.h).
 *
 *   net.c    contexts, sockets, send/recv/poll with timeouts, zero-copy frames, faults
 *   curve.c  CURVE: key files, the allow-list, the guard thread (ZAP handler and
 *            handshake monitors), each socket's CURVE options */
#ifndef PSTRAIN_NET_NET_INTERNAL_H
#define PSTRAIN_NET_NET_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "net.h"

#define CURVE_KEY 32 /* bytes of a CURVE key */
/* The ZAP user id of an admitted connection is "CLASS KEY": one of these, a space and the
 * key in Z85 (curve.c writes it, net_msg_key in net.c reads it). */
#define NET_USER_SERVER "server"
#define NET_USER_CLIENT "client"

/* Keys loaded from net_curve_files. */
typedef struct {
    int have_server, have_public, have_client;
    uint8_t server_secret[CURVE_KEY], server_public[CURVE_KEY];
    uint8_t client_secret[CURVE_KEY], client_public[CURVE_KEY];
    uint8_t server_own_public[CURVE_KEY]; /* server_secret's public half: the server class */
    uint8_t (*allow)[CURVE_KEY];          /* nallow client public keys, owned */
    int nallow;
    char allow_path[512];
} curve_keys;

struct net_ctx {
    void *zctx;
    int curve; /* net_ctx_curve switched CURVE on */
    curve_keys keys;
    const log_ctx *lg; /* borrowed; used by the guard thread */
    pthread_t guard;
    int guard_running;
    void *zap;       /* REP at inproc://zeromq.zap.01, owned by the guard thread once it runs */
    void *ctl;       /* PAIR to the guard thread; its use is serialised by ctl_mu */
    void *ctl_guard; /* the guard thread's end */
    pthread_mutex_t ctl_mu;
    int nmon;           /* monitors registered (names their inproc endpoints) */
    int refusals;       /* __atomic: refusals the guard thread saw */
    net_faults *faults; /* test-only fault injection (faults.h), borrowed */
};

struct net_sock {
    void *z;
    net_kind kind;
    net_faults *faults;
};

/* curve.c: a new socket's CURVE options (a ROUTER is a CURVE server, a DEALER a client)
 * and its handshake monitor, registered with the guard thread. Only with ctx->curve set. */
int net_curve_sock_setup(net_ctx *c, net_sock *s, pst_err *err);
/* curve.c: stops and joins the guard thread and closes its sockets; safe when CURVE was
 * never switched on. From net_ctx_destroy, before the ZeroMQ context ends. */
void net_curve_stop(net_ctx *c);

#endif
