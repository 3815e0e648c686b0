/* proto/wire.h -- the wire format in plain C: packs and validates message metadata.
 *
 * The only module that includes the protoc-c generated header; everything else sees a
 * small envelope (wire_env) and one struct per sub-message (wire_range, wire_welcome, ...).
 * See pstrain.proto for the messages and one training step's exchange.
 * Validation here is structural (version, type, field presence, sizes); what depends on
 * the receiver's state (is the range inside my shard? is the sender known?) is checked by
 * the receiver. */
#ifndef PSTRAIN_PROTO_WIRE_H
#define PSTRAIN_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define WIRE_VERSION                                                                               \
    3u                      /* 2: update groups in HELLO/WELCOME (an older peer would ignore
                            them and update frozen layers); 3: ACK, HEARTBEAT, generations
                            (an older worker would never see its pushes acknowledged) */
#define WIRE_MAX_FRAMES 4   /* raw frames after the envelope */
#define WIRE_MAX_META 65536 /* bytes of a packed envelope */
#define WIRE_MAX_SERVERS 64
#define WIRE_ENDPOINT_MAX 256
#define WIRE_MAX_GROUPS 256 /* update groups (fine-tuning) in HELLO/WELCOME */
/* Floats in one PUSH/PULL/INIT frame: 16 MiB. Larger frames would come from glibc's mmap
 * path, whose fresh pages fill at a third of memcpy speed here (DESIGN-NOTES). */
#define WIRE_CHUNK_FLOATS ((uint64_t)4 << 20)
#define WIRE_MAX_CKPTS 16          /* checkpoint clocks a server reports in HELLO */
#define WIRE_MAX_WORKERS 4096      /* workers in a membership (cluster.workers' limit) */
#define WIRE_MAX_STATUS (1u << 20) /* bytes of a STATUS answer's JSON frame */
#define WIRE_MAX_SPARSE_DIM 4096   /* a table's row width (SPT_MAX_DIM) */
#define WIRE_MAX_SPARSE_KEYS ((uint64_t)1 << 22) /* keys in one SPUSH/SPULL */

typedef enum {
    WIRE_MSG_ERROR = 1,
    WIRE_MSG_HELLO,
    WIRE_MSG_WELCOME,
    WIRE_MSG_INIT,
    WIRE_MSG_PUSH,
    WIRE_MSG_PULL,
    WIRE_MSG_PULL_REPLY,
    WIRE_MSG_PROGRESS,
    WIRE_MSG_DONE,
    WIRE_MSG_SHUTDOWN,
    WIRE_MSG_BYE,
    WIRE_MSG_BARRIER,
    WIRE_MSG_ACK,
    WIRE_MSG_HEARTBEAT,
    WIRE_MSG_STATUS,
    WIRE_MSG_STOP,
    WIRE_MSG_SPUSH,
    WIRE_MSG_SPULL,
    WIRE_MSG_SPULL_REPLY
} wire_type;

/* The envelope: what every message carries, whatever its type (Envelope's own fields). */
typedef struct {
    uint32_t version;
    wire_type type;
    uint64_t request_id; /* echoed in the reply */
    char role[16];       /* the sender's: "coordinator", "server", "worker", "status" */
    int32_t rank;        /* the sender's */
    uint64_t generation; /* the sender's incarnation (WELCOME: see wire_welcome) */
    /* PUSH: the worker's clock; PULL: the clock wanted; PULL_REPLY, ACK: the requester's
     * clock at the server (ACK of INIT/PUSH/DONE: the request's); BARRIER: its id. */
    int64_t clock;
    int nframes; /* raw frames that follow (msg_send fills these two) */
    uint64_t frame_bytes[WIRE_MAX_FRAMES];
} wire_env;

/* One struct per sub-message of pstrain.proto. Which a message type carries:
 *   ERROR: error (required)           HELLO: hello (required)
 *   WELCOME: welcome (required), membership (the WELCOME of a restarted server)
 *   INIT, PUSH, PULL, PULL_REPLY: range (required)
 *   PROGRESS, DONE, STOP: progress    HEARTBEAT: progress (a worker's), membership (the reply)
 *   BYE: stats                        SHUTDOWN: membership (the coordinator's, as sent)
 *   BARRIER, ACK, STATUS: none
 *   SPUSH, SPULL, SPULL_REPLY: sparse (required); frames: SPUSH keys (K x 8 B) + grads
 *     (K x d x 4 B), SPULL keys, SPULL_REPLY rows (K x d x 4 B)
 * wire_pack refuses a body its type does not carry; wire_unpack ignores one. */
typedef struct {
    uint32_t code;  /* a pst_status */
    char text[256]; /* one line (control characters become spaces on receipt) */
} wire_error;

/* Update groups (LrGroups); n 0 = none, i.e. every parameter at multiplier 1. Group g is
 * [offsets[g], offsets[g+1]), offsets[0] = 0, offsets[n] = nparams. state[g] 1: a state
 * group (batchnorm's running statistics, multiplier 0): pushed as values, set to the
 * workers' mean by the servers (ps/shard.h). */
typedef struct {
    int n;
    uint64_t offsets[WIRE_MAX_GROUPS + 1];
    float mults[WIRE_MAX_GROUPS];
    unsigned char state[WIRE_MAX_GROUPS];
} wire_groups;

typedef struct {
    char endpoint[WIRE_ENDPOINT_MAX]; /* servers: where workers connect */
    uint64_t nparams;                 /* workers: size of their model */
    uint64_t job_hash;
    int32_t pid;
    uint64_t steps;     /* workers: steps they will take */
    wire_groups groups; /* workers: their model's update groups */
    int nckpt;          /* servers: clocks of their complete checkpoints, newest first */
    int64_t ckpt_clocks[WIRE_MAX_CKPTS];
    int ckpt_any; /* ... which stand for any clock (an all-frozen shard) */
} wire_hello;

typedef struct {
    int num_servers, num_workers;
    char server_endpoints[WIRE_MAX_SERVERS][WIRE_ENDPOINT_MAX]; /* (S) */
    uint64_t shard_offsets[WIRE_MAX_SERVERS + 1]; /* (S + 1): server s owns [off[s], off[s+1]) */
    uint64_t nparams;
    uint64_t total_updates; /* updates per server over the run (cosine schedules) */
    wire_groups groups;     /* the workers' update groups, for the servers */
    int resume;             /* continue from the checkpoints of resume_clock */
    int64_t resume_clock;
    int rejoin; /* a restarted process taking over its rank */
    /* The incarnation given to the process (the envelope's generation on the wire:
     * wire_pack sends this one, wire_unpack fills both). */
    uint64_t generation;
} wire_welcome;

/* How a range's floats travel (Encoding in pstrain.proto; frames in proto/wire_enc.h). */
typedef enum { WIRE_ENC_F32 = 0, WIRE_ENC_F16, WIRE_ENC_BF16, WIRE_ENC_TOPK } wire_enc;
const char *wire_enc_name(wire_enc e); /* "f32", "f16", "bf16", "topk" */

typedef struct {
    uint64_t offset, len; /* floats of the flat parameter vector; len > 0 but in the empty
                           * float32 PUSH, PULL and PULL_REPLY of a server with no dense
                           * range (worker/kv.c) */
    /* INIT: F32; PUSH: any (TOPK: frames of nnz <= len entries); PULL: the encoding wanted
     * for the reply (F32, F16, BF16); PULL_REPLY: F32, F16 or BF16. */
    wire_enc enc;
    uint64_t nnz;
    int64_t clock_gap; /* PULL_REPLY: requester's clock - slowest live worker's */
    int final;         /* PULL: wait until every worker is DONE (final weights) */
    int checkpoint;    /* PUSH: write a checkpoint once this step is applied */
} wire_range;

/* One table's rows on the wire (Sparse). K = 0 is an empty SPUSH (a step that touched
 * none of the receiver's keys still counts toward its clock there). */
typedef struct {
    uint32_t table; /* index among the model's tables */
    uint64_t nkeys; /* K, <= WIRE_MAX_SPARSE_KEYS, K x d <= WIRE_CHUNK_FLOATS */
    uint32_t dim;   /* d, 1 .. WIRE_MAX_SPARSE_DIM */
    int train;      /* SPULL: a training step's (rows created); 0: read-only (evaluation) */
} wire_sparse;

typedef struct {
    int32_t epoch;
    int64_t step;
    double loss, samples_per_s, test_accuracy; /* test_accuracy: worker 0's DONE, NaN if none */
    uint32_t stop_signal;                      /* STOP: the signal that stopped the worker */
} wire_progress;

typedef struct { /* a server's figures, with BYE */
    uint64_t pushes, pulls, bytes_in, bytes_out, updates, nonfinite, repeats;
    uint64_t refused; /* messages from peers dropped as malformed or refused */
    int64_t max_clock_gap;
} wire_stats;

/* Workers 0..nworkers-1 and servers 0..nservers-1 as the coordinator sees them. */
typedef struct {
    int nworkers;
    uint64_t gen[WIRE_MAX_WORKERS]; /* (W) incarnation, 1 at the start */
    uint8_t lost[WIRE_MAX_WORKERS]; /* (W) silent past the heartbeat timeout */
    uint8_t done[WIRE_MAX_WORKERS]; /* (W) finished its data */
    int nservers;
    uint64_t server_gen[WIRE_MAX_SERVERS];               /* (S) */
    char server_ep[WIRE_MAX_SERVERS][WIRE_ENDPOINT_MAX]; /* (S) where it listens now */
    uint32_t stop_signal; /* non-zero: the job is stopping (every worker stops after its step) */
} wire_membership;

/* The bodies of one message, NULL where it carries none. A sender points at bodies it
 * built; wire_unpack points into a wire_store. */
typedef struct {
    const wire_error *error;
    const wire_hello *hello;
    const wire_welcome *welcome;
    const wire_range *range;
    const wire_progress *progress;
    const wire_stats *stats;
    const wire_membership *membership;
    const wire_sparse *sparse;
} wire_body;

/* Where wire_unpack writes bodies: the receiver allocates one, once (about 80 KB, mostly
 * welcome and membership). Unpacking writes only the bodies the message carries, so an ACK
 * touches none of it; a body's contents are valid only while wire_body points at it. */
typedef struct {
    wire_error error;
    wire_hello hello;
    wire_welcome welcome;
    wire_range range;
    wire_progress progress;
    wire_stats stats;
    wire_membership membership;
    wire_sparse sparse;
} wire_store;

/* Starts an envelope of the given type from the sender's role and rank (everything else 0). */
void wire_env_init(wire_env *e, wire_type type, const char *role, int rank);

/* Packs e and the bodies in b (NULL: none) into buf (cap bytes); returns the packed length
 * in *len. A body the type does not carry, a range type without a range, or counts past
 * the limits are PST_ERR_ARG. */
int wire_pack(const wire_env *e, const wire_body *b, uint8_t *buf, size_t cap, size_t *len,
              pst_err *err);

/* Unpacks and validates: version, known type, the bodies the type requires (a range for
 * PUSH/PULL/INIT/PULL_REPLY, with an encoding its type may use and exactly the frames that
 * encoding implies, a hello, a consistent shard map in WELCOME, update groups
 * that tile [0, nparams) with finite multipliers >= 0, ...), string lengths, frame
 * counts. Fills *e, points b's members at the bodies written into *st (NULL for the
 * others). Any failure is PST_ERR_DATA naming what was wrong. A message of another
 * version is refused before anything else is read: e->version is then the sender's (0:
 * no envelope), e->type is WIRE_MSG_ERROR for an ERROR (b->error holding its text, the
 * refusal of a peer of that version) and 0 otherwise. */
int wire_unpack(wire_env *e, wire_body *b, wire_store *st, const uint8_t *buf, size_t len,
                pst_err *err);

/* Checks that the raw frames that arrived match the envelope's declared lengths. */
int wire_check_frames(const wire_env *e, int nframes, const size_t *sizes, pst_err *err);

const char *wire_type_name(wire_type t);

#endif
