/* proto/wire.h -- the wire format in plain C: packs and validates message metadata.
 *
 * The only module that includes the protoc-c generated header; everything else sees
 * wire_header. See pstrain.proto for the messages and one training step's exchange.
 * Validation here is structural (version, type, field presence, sizes); what depends on
 * the receiver's state (is the range inside my shard? is the sender known?) is checked by
 * the receiver. */
#ifndef PSTRAIN_PROTO_WIRE_H
#define PSTRAIN_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define WIRE_VERSION 3u /* 2: update groups in HELLO/WELCOME (an older peer would ignore
                            them and update frozen layers); 3: ACK, HEARTBEAT, generations
                            (an older worker would never see its pushes acknowledged) */
#define WIRE_MAX_FRAMES 4       /* raw frames after the envelope */
#define WIRE_MAX_META 65536     /* bytes of a packed envelope */
#define WIRE_MAX_SERVERS 64
#define WIRE_ENDPOINT_MAX 256
#define WIRE_MAX_GROUPS 256     /* update groups (fine-tuning) in HELLO/WELCOME */
/* Floats in one PUSH/PULL/INIT frame: 16 MiB. Larger frames would come from glibc's mmap
 * path, whose fresh pages fill at a third of memcpy speed here (DESIGN-NOTES). */
#define WIRE_CHUNK_FLOATS ((uint64_t)4 << 20)
#define WIRE_MAX_CKPTS 16       /* checkpoint clocks a server reports in HELLO */
#define WIRE_MAX_WORKERS 4096   /* workers in a membership (cluster.workers' limit) */
#define WIRE_MAX_STATUS (1u << 20) /* bytes of a STATUS answer's JSON frame */

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
    WIRE_MSG_STATUS
} wire_type;

typedef struct {
    uint32_t version;
    wire_type type;
    uint64_t request_id;
    char role[16];
    int32_t rank;
    int nframes; /* raw frames that follow */
    uint64_t frame_bytes[WIRE_MAX_FRAMES];

    /* ERROR */
    uint32_t error_code;
    char error_text[256];
    /* HELLO */
    char endpoint[WIRE_ENDPOINT_MAX];
    uint64_t nparams; /* also WELCOME */
    uint64_t job_hash;
    int32_t pid;
    uint64_t steps;         /* HELLO from a worker */
    int nckpt;              /* HELLO from a server: clocks of its complete checkpoints */
    int64_t ckpt_clocks[WIRE_MAX_CKPTS];
    int ckpt_any;           /* ... which stand for any clock (an all-frozen shard) */
    int resume;             /* WELCOME: continue from the checkpoints of resume_clock */
    int64_t resume_clock;
    int checkpoint;         /* PUSH: write a checkpoint once this step is applied */
    uint64_t total_updates; /* WELCOME: updates per server over the run (cosine schedules) */
    /* WELCOME */
    int num_servers, num_workers;
    char server_endpoints[WIRE_MAX_SERVERS][WIRE_ENDPOINT_MAX];
    uint64_t shard_offsets[WIRE_MAX_SERVERS + 1];
    /* HELLO from a worker, WELCOME: update groups (see LrGroups); ngroups 0 = none, i.e.
     * every parameter at multiplier 1. Group g is [group_offsets[g], group_offsets[g+1]). */
    int ngroups;
    uint64_t group_offsets[WIRE_MAX_GROUPS + 1];
    float group_mults[WIRE_MAX_GROUPS];
    /* INIT, PUSH, PULL, PULL_REPLY */
    int has_range;
    uint64_t offset, len;
    int64_t clock;
    int64_t clock_gap;
    int final;
    /* PROGRESS, DONE */
    int has_progress;
    int32_t epoch;
    int64_t step;
    double loss, samples_per_s, test_accuracy;
    /* BYE */
    int has_stats;
    uint64_t pushes, pulls, bytes_in, bytes_out, updates, nonfinite, repeats;
    int64_t max_clock_gap;
    /* Fault tolerance */
    uint64_t generation; /* the sender's incarnation (WELCOME: the worker's) */
    int rejoin;          /* WELCOME: a restarted worker taking over its rank */
    int nmembers;        /* HEARTBEAT reply: membership of workers 0..nmembers-1 */
    uint64_t member_gen[WIRE_MAX_WORKERS];
    uint8_t member_lost[WIRE_MAX_WORKERS];
    uint8_t member_done[WIRE_MAX_WORKERS];
    int nmember_servers; /* ... and of servers 0..nmember_servers-1 */
    uint64_t member_server_gen[WIRE_MAX_SERVERS];
    char member_server_ep[WIRE_MAX_SERVERS][WIRE_ENDPOINT_MAX];
} wire_header;

/* Starts a header of the given type from the sender's role and rank (everything else 0). */
void wire_header_init(wire_header *h, wire_type type, const char *role, int rank);

/* Packs h into buf (cap bytes); returns the packed length in *len. */
int wire_pack(const wire_header *h, uint8_t *buf, size_t cap, size_t *len, pst_err *err);

/* Unpacks and validates: version, known type, fields the type requires (a range for
 * PUSH/PULL/INIT/PULL_REPLY, a hello, a consistent shard map in WELCOME, update groups
 * that tile [0, nparams) with finite multipliers >= 0, ...), string
 * lengths, frame counts. Any failure is PST_ERR_DATA naming what was wrong. */
int wire_unpack(wire_header *h, const uint8_t *buf, size_t len, pst_err *err);

/* Checks that the raw frames that arrived match the header's declared lengths. */
int wire_check_frames(const wire_header *h, int nframes, const size_t *sizes, pst_err *err);

const char *wire_type_name(wire_type t);

#endif
