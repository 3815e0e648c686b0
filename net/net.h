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

#include "base/err.h"
#include "base/log.h"
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
    int handover;          /* ROUTER: a new connection under a routing id already connected
                              takes it over (ZMQ_ROUTER_HANDOVER); 0: ZeroMQ ignores every
                              message of the newcomer, silently, while the old one is known */
} net_opts;

/* io_threads: ZeroMQ I/O threads (1 is enough below ~1 GB/s per process). */
net_ctx *net_ctx_create(int io_threads, pst_err *err);
void net_ctx_destroy(net_ctx *ctx);
/* Test-only: sockets created from ctx afterwards send through these faults (NULL: none).
 * f must outlive them. */
void net_ctx_set_faults(net_ctx *ctx, net_faults *f);
/* A process's fault injection from its spec (PSTRAIN_FAULTS; NULL or empty: none, *out
 * NULL): created with the salt (role and rank, so each process draws its own sequence),
 * announced with a warning, and set on ctx. A bad spec is PST_ERR_CONFIG. */
int net_faults_attach(net_ctx *ctx, const char *spec, uint64_t salt, const log_ctx *lg,
                      net_faults **out, pst_err *err);
/* Logs what f injected, then destroys it (NULL is fine). After the sockets are gone. */
void net_faults_finish(net_faults *f, const log_ctx *lg);

/* CURVE (CurveZMQ, RFC 26): encryption and authentication of every socket made from a
 * context after net_ctx_curve. Files hold one Z85 key (40 characters) on the first line
 * that is neither blank nor a '#' comment, as `pstrain keygen` writes them.
 *   server_secret  the secret key of listening sockets (ROUTERs): they are CURVE servers.
 *                  Required by a process that binds; its public half is what clients name.
 *   server_public  the listening side's public key: connecting sockets (DEALERs) are CURVE
 *                  clients that accept only a server holding its secret half.
 *   client_secret  this process's own key as a CURVE client (public half derived); NULL:
 *                  server_secret (a server connecting to the coordinator).
 *   allow          the client public keys a listening socket accepts: a directory of
 *                  *.pub files or a file of keys, one a line. Required with server_secret:
 *                  without a ZAP handler CURVE would encrypt but admit any key.
 * Every field NULL: CURVE stays off and the call does nothing. */
typedef struct {
    const char *server_secret, *server_public, *client_secret, *allow;
} net_curve_files;

/* Reads the keys (an unreadable or malformed file is PST_ERR_CONFIG naming it) and, when
 * this process may bind, starts the context's guard thread: it answers ZeroMQ's ZAP
 * requests (RFC 27) with the allow-list and the server key's own public half (see
 * net_msg_key) and watches the sockets' handshakes. Refusals are logged on lg as warnings
 * once per peer (a peer key and address), and of the keys refused from one address the
 * 1st, 10th, 100th, ...; a plaintext or mis-keyed peer, whose key is unknown, once per
 * socket and kind, then every 10th, 100th, ...; lg
 * is borrowed until net_ctx_destroy and must be safe to use from another thread. Call it
 * before the first net_sock_create, at most once. PST_ERR_CONFIG when this libzmq lacks
 * CURVE (zmq_has("curve")). */
int net_ctx_curve(net_ctx *ctx, const net_curve_files *f, const log_ctx *lg, pst_err *err);
/* Loads and checks the files as net_ctx_curve would, without a context: for launchers
 * that should fail before starting processes. */
int net_curve_check(const net_curve_files *f, pst_err *err);
/* Refusals the guard thread has seen so far (ZAP denials and failed handshakes), for tests. */
int net_ctx_refusals(net_ctx *ctx);

/* Writes a fresh key pair as Z85 text (41 bytes each, NUL included). */
int net_curve_keypair(char *public_z85, char *secret_z85, pst_err *err);

/* With CURVE on (net_ctx_curve) a ROUTER is a CURVE server and a DEALER a CURVE client; a
 * kind whose keys were not given is PST_ERR_CONFIG. */
net_sock *net_sock_create(net_ctx *ctx, net_kind kind, const net_opts *o, pst_err *err);
void net_sock_destroy(net_sock *s);
/* Closes s and drops what it still queues at once (linger 0), releasing its zero-copy
 * frames now instead of after the linger time: for a connection to a peer known dead, or
 * one whose unanswered requests no longer matter. NULL is ignored. */
void net_sock_discard(net_sock *s);

/* Binds to endpoint ("tcp://0.0.0.0:0" picks a free port) and writes the endpoint actually
 * bound ("tcp://0.0.0.0:41234") into bound (cap bytes; may be NULL). A port in use, an
 * address not of this host or a bad endpoint is PST_ERR_CONFIG (permanent: retrying cannot
 * help), other failures PST_ERR_NET. */
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
 * to its end and refused with PST_ERR_PEER (m then holds no frames, but net_msg_peer still
 * names its sender). */
int net_recv(net_sock *s, net_msg *m, int timeout_ms, pst_err *err);
int net_msg_count(const net_msg *m);

/* The class of the CURVE key the sender of a received message authenticated with, on a
 * listening socket (ROUTER) with CURVE on: the job's own server key pair (held by the
 * coordinator and the servers only) is NET_KEY_SERVER, whether or not the allow-list names
 * it; any other key of the allow-list NET_KEY_CLIENT. NET_KEY_NONE without CURVE (or with
 * no message). Roles are bound to keys with it: only a server key may speak as a server. */
typedef enum { NET_KEY_NONE, NET_KEY_SERVER, NET_KEY_CLIENT } net_key_class;
/* z85: NULL, or 41 bytes that get the sender's public key in Z85 ("" with NET_KEY_NONE). */
net_key_class net_msg_key(const net_msg *m, char *z85);
const void *net_msg_data(const net_msg *m, int i, size_t *len);
/* The sender of a received message, for log lines about it: its address as ZeroMQ saw the
 * connection (the "Peer-Address" property: "127.0.0.1" for tcp; "" for inproc, or no
 * message) into addr (acap bytes), and on a ROUTER its routing id as text into id (icap
 * bytes; printable bytes as they are, others as \xHH; "" on a DEALER). NET_PEER_ADDR and
 * NET_PEER_ID bytes hold any address and a process tag (base/ident.h) whole. */
#define NET_PEER_ADDR 48
#define NET_PEER_ID 72
void net_msg_peer(const net_msg *m, int is_router, char *addr, size_t acap, char *id, size_t icap);

/* Waits until one of socks[0..n) (n <= 64) has a message to read; sets bit i of *ready for each such
 * socket. Returns PST_ERR_TIMEOUT when none had one in timeout_ms (-1: wait forever). */
int net_poll(net_sock *const *socks, int n, int timeout_ms, uint64_t *ready, pst_err *err);

/* Milliseconds on a monotonic clock, for deadlines. */
int64_t net_now_ms(void);

#endif
