/* proto/dlv.h -- reliable delivery: THE DELIVERY CONTRACT, and the pieces that keep it.
 *
 * The transport may lose, duplicate and delay whole messages (a flaky network, a
 * reconnect dropping what was queued, or net/faults.h); within one connection ZeroMQ keeps
 * the order of what it delivers. Above it every process keeps this contract:
 *
 * 1. Every request is answered, and the requester alone resends.
 *      worker -> server:  INIT, PUSH, DONE -> ACK {request id};  PULL -> PULL_REPLY
 *                         {request id, range} (a parked pull may get an ACK first, see 4)
 *      worker / server -> coordinator:  HELLO -> WELCOME;  BARRIER -> BARRIER {id};
 *                         DONE -> ACK;  BYE -> ACK;  STATUS -> STATUS;
 *                         HEARTBEAT -> HEARTBEAT {membership} or ERROR
 *    A request with no answer within the retry timeout (dlv_rto) is sent again, unchanged:
 *    same request id, clock, range and floats. Receivers never resend; they answer every
 *    copy they receive. HEARTBEATs are not resent (the next one is the retry), nor are
 *    answers (a lost answer is asked for again by the request's repeat). The coordinator
 *    alone pushes unasked: SHUTDOWN, sent again every heartbeat interval until the BYE.
 *
 * 2. Request ids (dlv_ids) are a counter per sender, one per message, never reused by a
 *    process; an operation of n messages takes n consecutive ids (dlv_batch), so an answer
 *    names the piece it answers. An answer to an id the requester no longer waits for
 *    (a repeat answered twice, an earlier pull) is dropped.
 *
 * 3. Idempotent -- a repeat changes nothing and is answered again as the first copy was:
 *    PULL (answered with the weights as they are now), HELLO of the same process
 *    (WELCOME again), BARRIER (a released barrier is released again), DONE (done once, ACK
 *    again), BYE, STATUS, HEARTBEAT.
 *    Ordered -- a worker's INIT and PUSH chunks to one server are one stream (dlv_stream):
 *    unit c (a clock: the chunks of step c; INIT: unit 0) is a run of chunks at increasing
 *    offsets, each starting where the previous one ended (the sender may jump over ranges
 *    both sides know it never sends: frozen layers). The receiver takes each chunk once,
 *    in order:
 *      the expected chunk          taken, then ACKed;
 *      a repeat (an earlier unit, or before the expected offset of this one)
 *                                  not taken again, ACKed again (the first ACK may be lost);
 *      a gap (a later unit, or past the expected offset)
 *                                  not taken, not ACKed: it waits; the sender resends it
 *                                  after the missing chunk, at its retry timeout or sooner.
 *    What a stream's unit means (bsp: a push ahead of the clock being assembled also
 *    waits) is the receiver's business (ps/shard.c); the order rule is here.
 *
 * 4. A worker's requests to one server travel on one connection, so a PULL arrives after
 *    that worker's pushes before it. A pull the clocks do not allow yet is parked (once
 *    per request id; a repeat is not parked twice) and answered when a push, a DONE or a
 *    lost worker moves the slowest clock. The server acknowledges a parked (non-final)
 *    pull at once, and each repeat of it again: an ACK of the pull carrying the worker's
 *    clock there. The worker then waits for the reply without resending at its retry
 *    timeout -- the pull waits for the slowest worker, it is not lost -- only after
 *    KV_PARKED_MS (a reply lost; a sibling server's reply hurries it, as any pull). When
 *    that clock shows the worker's own earlier step not whole at the server, a pull's loss
 *    is the push's: the worker resends that push at once.
 *
 * 5. Incarnations (dlv_incarnation): every message carries its sender's incarnation
 *    (generation; 0 from tools that do not say, taken as the current one). The
 *    coordinator numbers them -- 1 at the start, +1 for each HELLO of a restarted process
 *    of that rank -- and announces them in heartbeat answers. A receiver takes the current
 *    incarnation's messages, refuses an older one's with ERROR PST_ERR_NET (that process
 *    must stop; a restart may rejoin), and ignores a newer one's until announced (the
 *    sender resends). A new incarnation starts afresh: its own request ids, a new
 *    connection (routing id), and its stream at the clock the receiver gives it; a
 *    replaced server's workers resend everything it did not answer to the new one at
 *    once (dlv_rto_reset).
 *
 * The retry timer (dlv_rto) is one estimator with parameters, TCP's (RFC 6298) with
 * Karn's rule: round-trip samples of requests sent once only (an answer after a repeat may
 * be the first copy's); the first sample sets srtt = r, rttvar = r / 2, later ones smooth
 * (rttvar += (|r - srtt| - rttvar) / 4, then srtt += (r - srtt) / 8); the timeout is
 * rto = srtt_mult * srtt + var_mult * rttvar + floor_ms (at most max_ms), doubled at
 * every expiration and KEPT doubled until a request sent once is answered (a clean
 * sample): an answer to a repeat ends no backoff, or a timer shorter than the real round
 * trip would resend every request and never learn better (every answer would follow a
 * repeat). Before the first sample the timer also allows the transfer time of the bytes
 * in flight (init_ms_per_mib per MiB): 400 MB of INIT take longer on the wire than a small
 * request's round trip; later samples (whole operations) include their transfer. The
 * callers arm the timer when they send and again at every answer, so it fires only after
 * rto without any answer: an operation of many large chunks is not resent while its
 * answers keep coming. The kv client and msg_call use it with DLV_RTO_KV and
 * DLV_RTO_CALL; a different policy is a change of those parameters, not of the code.
 *
 * No sockets here: these are plain state machines the callers drive, tested alone
 * (tests/test_dlv.c). Single-threaded: one owner per object. */
#ifndef PSTRAIN_PROTO_DLV_H
#define PSTRAIN_PROTO_DLV_H

#include <stdint.h>

#include "base/err.h"

/* ---- Retry timer ------------------------------------------------------------------------ */

typedef struct {
    int init_ms;                /* retry timeout before any sample, and after dlv_rto_init */
    double init_srtt_ms;        /* round trip assumed before the first sample (dlv_rto_hurry) */
    double init_ms_per_mib;     /* before the first sample: transfer allowance per MiB in
                               flight (dlv_rto_arm_bytes) */
    double srtt_mult, var_mult; /* rto = srtt_mult * srtt + var_mult * rttvar + floor_ms */
    int floor_ms;               /* added to the estimate, and the least timeout */
    int min_ms;                 /* the least timeout from the estimate (RFC 6298's 1 s, scaled to
                           a loopback job: a scheduling delay of a busy machine) */
    int max_ms;                 /* backoff stops here (also caps the estimate) */
    double sample_cap_ms;       /* a sample longer than this counts as this long */
    int adapt;   /* 0: fixed schedule (init_ms doubling to max_ms), samples ignored */
    int patient; /* expirations of only parkable requests (pulls) at one timeout
                           before it doubles: a parked pull waits for a slow worker, it is
                           seldom lost; 0: every expiration doubles */
} dlv_rto_params;

/* The worker's kv client: 2 x srtt + 4 x rttvar + 2 ms, at least 10 ms, 20 ms (+ 10 ms per
 * MiB) before any sample, at most 1 s; pulls patient for 3 tries. */
extern const dlv_rto_params DLV_RTO_KV;
/* msg_call (registration, barriers, DONE to the coordinator, STATUS): 25 ms doubling to
 * 250 ms, whatever the round trips (a barrier held by a slow worker is a long wait, not a
 * loss, and must not be flooded). */
extern const dlv_rto_params DLV_RTO_CALL;

typedef struct {
    dlv_rto_params p;
    double srtt_ms, rttvar_ms;
    int nsamples;
    int rto_ms;       /* the current timeout */
    int patient_left; /* expirations of parkable requests still allowed at rto_ms */
    int64_t due_ms;   /* when unanswered requests go again (dlv_rto_arm) */
} dlv_rto;

void dlv_rto_init(dlv_rto *r, const dlv_rto_params *p);
/* A round trip of a request answered without being sent again (Karn: a resent one's
 * answer may be the first copy's): updates the estimate, and the timeout is the estimate
 * again (backoff ends). */
void dlv_rto_sample(dlv_rto *r, double rtt_ms);
/* An answer came: patience is restored. A backed-off timeout stays until a sample (adapt:
 * the answer may be a repeat's); without adapt the fixed schedule starts again. */
void dlv_rto_progress(dlv_rto *r);
/* The timer fired with requests unanswered and they went again: doubles the timeout (up
 * to max_ms) -- unless only parkable requests went (only_parkable) and patience is left. */
void dlv_rto_expired(dlv_rto *r, int only_parkable);
/* The timer from now: due at now + rto. */
void dlv_rto_arm(dlv_rto *r, int64_t now_ms);
/* The same with `bytes` of requests and answers in flight: before the first sample their
 * transfer allowance (init_ms_per_mib per MiB) is added. */
void dlv_rto_arm_bytes(dlv_rto *r, int64_t now_ms, uint64_t bytes);
/* Due no later than now + rtts round trips + floor (a sibling's answer came: one still
 * missing is likely lost). */
void dlv_rto_hurry(dlv_rto *r, int64_t now_ms, double rtts);
/* Nothing is due before until_ms: what is unanswered the peer said it holds (parked
 * pulls, contract item 4). */
void dlv_rto_defer(dlv_rto *r, int64_t until_ms);
/* A fresh connection (the peer restarted): everything goes again now, at the floor. */
void dlv_rto_reset(dlv_rto *r);
int dlv_rto_due(const dlv_rto *r, int64_t now_ms);
/* Milliseconds until due (0 when due). */
int dlv_rto_wait_ms(const dlv_rto *r, int64_t now_ms);

/* ---- Request ids and outstanding requests ------------------------------------------------ */

typedef struct {
    uint64_t next;
} dlv_ids;

/* Takes n consecutive ids; returns the first. */
uint64_t dlv_ids_take(dlv_ids *ids, int n);

/* The requests of one operation: ids [lo, lo + n), request lo + i being piece i, each
 * answered once. */
typedef struct {
    uint64_t lo;
    int n, cap, unanswered;
    unsigned char *answered; /* (cap) */
    double sent_ms;          /* when started (dlv_batch_start's clock) */
    int resent;              /* sent again at least once: its round trip is no sample */
} dlv_batch;

/* Room for operations of up to cap requests. PST_ERR_NOMEM. */
int dlv_batch_init(dlv_batch *b, int cap, pst_err *err);
void dlv_batch_fini(dlv_batch *b);
/* A new operation of n <= cap requests, ids from ids, started at now_ms (ms, any
 * monotonic clock with sub-ms resolution): none answered yet. */
void dlv_batch_start(dlv_batch *b, dlv_ids *ids, int n, double now_ms);
/* The index of request id in the operation, or -1 when it is not one of its ids. */
int dlv_batch_index(const dlv_batch *b, uint64_t id);
/* Marks request id answered; returns 1 when that is news (0: not ours, or answered
 * already -- a repeat's answer). When it completes an operation never resent, *rtt_ms
 * (may be NULL) gets its round trip, else -1. */
int dlv_batch_answer(dlv_batch *b, uint64_t id, double now_ms, double *rtt_ms);
int dlv_batch_done(const dlv_batch *b);
int dlv_batch_answered(const dlv_batch *b, int i);

/* ---- Receiver: one sender's ordered stream ------------------------------------------------ */

typedef struct {
    int64_t unit;   /* units taken whole (a worker's clock) */
    uint64_t taken; /* of unit `unit`: how much was taken so far */
    uint64_t next;  /* where its next chunk must start, once taken > 0 */
} dlv_stream;

typedef enum {
    DLV_TAKE = 0, /* the expected chunk: take it, then acknowledge */
    DLV_REPEAT,   /* taken before: acknowledge again, take nothing */
    DLV_GAP       /* one before it is missing: neither take nor acknowledge */
} dlv_verdict;

/* The verdict on a chunk of `unit` starting at off; first: where every unit's first chunk
 * starts. */
dlv_verdict dlv_stream_check(const dlv_stream *s, int64_t unit, uint64_t off, uint64_t first);
/* The expected chunk was taken: len more of the unit, the next chunk starts at next. Once
 * unit_len has been taken the unit is whole and the stream moves to the next one; returns
 * 1 then. */
int dlv_stream_took(dlv_stream *s, uint64_t len, uint64_t next, uint64_t unit_len);
/* Starts the stream at unit (a new incarnation, a restore): nothing of it taken. */
void dlv_stream_reset(dlv_stream *s, int64_t unit);

/* ---- Incarnations ------------------------------------------------------------------------ */

typedef enum {
    DLV_INC_CURRENT = 0, /* take it */
    DLV_INC_STALE,       /* an older, replaced incarnation: refuse (PST_ERR_NET) */
    DLV_INC_NEWER        /* not announced yet: ignore, it comes again */
} dlv_incarnation;

/* current: the incarnation the receiver knows; got: the message's (0: current). */
dlv_incarnation dlv_incarnation_check(uint64_t current, uint64_t got);

#endif
