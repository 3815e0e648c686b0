/* proto/msg.h -- wire messages over net/ sockets: encode + send, receive + decode.
 *
 * A message is [routing id (ROUTER side only)] [packed envelope] [raw payload frames].
 * msg_send fills the envelope's frame count and lengths from the payload it is given, so
 * they cannot disagree; msg_recv checks them (wire_check_frames) before anyone reads a
 * payload. Payload pointers of a received message point into net_msg frames (no copy).
 * A sender builds the envelope and the one body of its type (wire.h), usually on its
 * stack; a receiver owns one msg_in, whose store the bodies are unpacked into. */
#ifndef PSTRAIN_PROTO_MSG_H
#define PSTRAIN_PROTO_MSG_H

#include <signal.h>

#include "net/net.h"
#include "proto/wire.h"

/* A received message. About 80 KB (the store): allocate one per receiver, once, and do
 * not copy it (b points into its own store). */
typedef struct {
    wire_env h;        /* the envelope */
    wire_body b;       /* the bodies it carries, NULL where none (into store) */
    const void *route; /* ROUTER: the sender's routing id */
    size_t route_len;
    const net_msg *msg; /* the message it came in (msg_peer reads its sender) */
    int npayload;
    const void *payload[WIRE_MAX_FRAMES];
    size_t payload_len[WIRE_MAX_FRAMES];
    wire_store store; /* msg_recv writes only the bodies a message carries */
} msg_in;

/* route may be NULL (DEALER); b may be NULL (no body). Payload frames keep their
 * zero-copy/copy choice. */
int msg_send(net_sock *s, const void *route, size_t route_len, wire_env *h, const wire_body *b,
             const net_frame *payload, int npayload, int timeout_ms, pst_err *err);

/* Receives and decodes one message into *in (valid until the next net_recv into m).
 * A malformed message is PST_ERR_PEER with the reason; the caller logs it and goes on. */
int msg_recv(net_sock *s, net_msg *m, int is_router, msg_in *in, int timeout_ms, pst_err *err);

/* The sender of the message msg_recv last gave in (also of one it refused), for warnings
 * about it and their per-peer limit (base/loglimit.h): key gets its address ("127.0.0.1"),
 * or its routing id where there is none; name both ("127.0.0.1, id worker-0-..."). Each
 * MSG_PEER bytes; "unknown peer" when neither is known. */
#define MSG_PEER (NET_PEER_ADDR + NET_PEER_ID + 8)
void msg_peer(const msg_in *in, int is_router, char *key, char *name);
/* The counter family of those messages, one series per reason, in the servers' and the
 * coordinator's /metrics (docs/observability.md). */
#define MSG_REFUSED_METRIC "pstrain_refused_messages_total"
#define MSG_REFUSED_HELP                                                                           \
    "Messages from peers dropped: malformed (did not parse or failed the wire checks) or "         \
    "refused (well-formed, but a forged sender, a bad range or out of place)."

/* A request on a DEALER and its answer (the delivery contract: proto/dlv.h): sends h and b,
 * again with the retry timer DLV_RTO_CALL (25 ms doubling to 250 ms: the request or its
 * answer may be lost, and a long wait -- a barrier held by a slow worker, registration
 * while others start -- is not flooded with repeats), and waits up to timeout_ms
 * for a message of type `want` (with the same clock when same_clock is set), skipping
 * anything else and checking *stop at least 4 times a second (returns PST_OK with *stop
 * raised; stop may be NULL: no signal ends the wait). An ERROR answer is PST_ERR_PEER
 * with the peer's text in err; no answer in time is PST_ERR_TIMEOUT. The answer is left
 * in *in. */
int msg_call(net_sock *s, net_msg *m, msg_in *in, wire_env *h, const wire_body *b, wire_type want,
             int same_clock, int timeout_ms, const volatile sig_atomic_t *stop, pst_err *err);

/* Registration of a server or worker: msg_call(HELLO -> WELCOME) with the errors a
 * process reports: a refusal is PST_ERR_CONFIG ("coordinator refused registration: ..."),
 * no answer PST_ERR_TIMEOUT naming the coordinator and the processes the job expects. */
int msg_register(net_sock *s, net_msg *m, msg_in *in, wire_env *h, const wire_hello *hello,
                 const char *coordinator, int timeout_s, int nservers, int nworkers,
                 const volatile sig_atomic_t *stop, pst_err *err);

/* After msg_recv refused a message (PST_ERR_PEER): one of another wire version
 * (in->h.version neither this build's nor 0, i.e. an envelope that parsed and claims
 * another version) from a routable sender -- the routing id a ROUTER got from ZeroMQ,
 * not anything the message says -- is answered with an ERROR naming both versions, as
 * proto/pstrain.proto promises, so the peer fails with a reason instead of timing out.
 * Nothing else in such a message is trusted: the reply's request id is 0. Returns 1 when
 * it answered, 0 otherwise (another cause, no route, or the reply could not be sent). */
int msg_refuse_version(net_sock *s, const msg_in *in, const char *role, int rank);

/* Replies with an ERROR message for request request_id (route as received). */
int msg_send_error(net_sock *s, const void *route, size_t route_len, const char *role, int rank,
                   uint64_t request_id, int code, const char *text, pst_err *err);

#endif
