/* net/net.h -- the transport: ZeroMQ sockets carrying multipart messages.
 *
 * It knows frames and endpoints, nothing of tensors, keys or message types (proto/ and
 * above do). A message is up to NET_MAX_FRAMES frames. Sending a frame with a release
 * callback hands ZeroMQ a pointer instead of a copy (zmq_msg_init_data): the caller must
 * leave the bytes untouched until release(data, hint) is called, which happens on one of
 * ZeroMQ's I/O threads. Received frames are read in place (no copy) until the next
 * net_recv into the same net_msg or net_msg_destroy.
 *
 * Every wait takes a timeout in milliseconds and returns PST_ERR_TIMEOUT when it passes.
 * Thread-safety: a net_sock is used by one thread; a net_ctx may be shared. */
#ifndef PSTRAIN_NET_NET_H
#define PSTRAIN_NET_NET_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "net/faults.h"

#define NET_MAX_FRAMES 8

typedef struct net_ctx net_ctx;
typedef struct net_sock net_sock;
typedef struct net_msg net_msg;

typedef enum {
    NET_ROUTER, /* server side: frame 0 of every message is the peer's routing id */
    NET_DEALER  /* client side: talks to one or more ROUTERs */
} net_kind;

typedef struct {
    int64_t max_msg_bytes; /* > 0: larger inbound frames drop the connection (ZMQ_MAXMSGSIZE) */
    int hwm;               /* send/receive high-water mark in messages; 0: ZeroMQ's 1000;
                              -1: none (for servers, whose queues the protocol bounds) */
    int rcv_hwm;           /* > 0: receive high-water mark per peer instead of hwm's: a
                              full queue stops reading that peer's connection, so its
                              sender waits (TCP flow control) instead of this process
                              buffering what it cannot process yet */
    const char *identity;  /* DEALER routing id, e.g. "worker-3"; NULL: ZeroMQ picks one */
    int linger_ms;         /* how long close waits to flush queued messages; default 2000 */
} net_opts;

/* io_threads: ZeroMQ I/O threads (1 is enough below ~1 GB/s per process). */
net_ctx *net_ctx_create(int io_threads, pst_err *err);
void net_ctx_destroy(net_ctx *ctx);
/* Test-only: sockets created from ctx afterwards send through these faults (NULL: none).
 * f must outlive them. */
void net_ctx_set_faults(net_ctx *ctx, net_faults *f);

net_sock *net_sock_create(net_ctx *ctx, net_kind kind, const net_opts *o, pst_err *err);
void net_sock_destroy(net_sock *s);

/* Binds to endpoint ("tcp://0.0.0.0:0" picks a free port) and writes the endpoint actually
 * bound ("tcp://0.0.0.0:41234") into bound (cap bytes; may be NULL). */
int net_sock_bind(net_sock *s, const char *endpoint, char *bound, size_t cap, pst_err *err);
/* Connects (ZeroMQ retries by itself, 100 ms doubling to 5 s, so a peer that starts later
 * or a host name that resolves later is reached; the first message waits for it). */
int net_sock_connect(net_sock *s, const char *endpoint, pst_err *err);

typedef struct {
    const void *data;
    size_t len;
    /* NULL: the bytes are copied now. Otherwise zero-copy; see the top of this file. */
    void (*release)(void *data, void *hint);
    void *hint;
} net_frame;

/* Sends frames[0..n) as one message; waits at most timeout_ms while the send queue is full
 * (the peer is slow or gone); 0 does not wait. On failure every zero-copy frame not yet handed to ZeroMQ is
 * released before returning, so the caller's accounting stays balanced. */
int net_send(net_sock *s, const net_frame *frames, int n, int timeout_ms, pst_err *err);

net_msg *net_msg_create(pst_err *err);
void net_msg_destroy(net_msg *m);
/* Releases the frames of the last message (also done by the next net_recv). */
void net_msg_clear(net_msg *m);

/* Receives one whole message into m. A message of more than NET_MAX_FRAMES frames is read
 * to its end and refused with PST_ERR_PEER. */
int net_recv(net_sock *s, net_msg *m, int timeout_ms, pst_err *err);
int net_msg_count(const net_msg *m);
const void *net_msg_data(const net_msg *m, int i, size_t *len);

/* Waits until one of socks[0..n) (n <= 64) has a message to read; sets bit i of *ready for each such
 * socket. Returns PST_ERR_TIMEOUT when none had one in timeout_ms (-1: wait forever). */
int net_poll(net_sock *const *socks, int n, int timeout_ms, uint64_t *ready, pst_err *err);

/* Milliseconds on a monotonic clock, for deadlines. */
int64_t net_now_ms(void);

#endif
