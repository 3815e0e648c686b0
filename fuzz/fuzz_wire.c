/* fuzz/fuzz_wire.c -- the message decoder: wire_unpack on a packed envelope, then
 * wire_check_frames against the frame sizes the header declares and against wrong ones.
 *
 * Input: the bytes of one envelope as a peer would send them (frame 1 of a message after
 * the routing id; see proto/msg.h). Beyond "no crash, no leak, no UB" it checks what a
 * receiver relies on: a refusal is PST_ERR_DATA with a one-line message and no bodies; an
 * accepted message carries the bodies its type requires and no others, has bounded counts
 * and NUL-terminated strings, packs again, and unpacks from that to the same envelope and
 * bodies (so validation does not depend on how the sender encoded it). */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_common.h"
#include "proto/wire.h"

static void must(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_wire: invariant broken: %s\n", what);
        abort();
    }
}

static int terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL && !strpbrk(s, "\r\n");
}

/* A range's encoding (proto/wire_enc.h) is one its type may use, and the frames the
 * receiver reads are exactly the ones it implies: F32 len floats, F16/BF16 len halves,
 * TOPK (PUSH only) nnz <= len indices and nnz values, within one chunk; PULL none. */
static void check_encoding(const wire_env *e, const wire_range *r)
{
    const wire_enc enc = r->enc;
    must(enc == WIRE_ENC_F32 || enc == WIRE_ENC_F16 || enc == WIRE_ENC_BF16 ||
             (enc == WIRE_ENC_TOPK && e->type == WIRE_MSG_PUSH),
         "an encoding the type may use");
    must(e->type != WIRE_MSG_INIT || enc == WIRE_ENC_F32, "INIT carries exact float32");
    must(r->nnz == 0 || (enc == WIRE_ENC_TOPK && r->nnz <= r->len), "entries only for TOPK");
    if (e->type == WIRE_MSG_PULL) {
        must(e->nframes == 0, "a PULL carries no frames");
        return;
    }
    if (enc == WIRE_ENC_TOPK) {
        must(r->len <= WIRE_CHUNK_FLOATS, "a TOPK range within one chunk");
        must(e->nframes == 2 && e->frame_bytes[0] == r->nnz * sizeof(uint32_t) &&
                 e->frame_bytes[1] == r->nnz * sizeof(float),
             "TOPK frames of nnz indices and values");
        return;
    }
    uint64_t esize = enc == WIRE_ENC_F32 ? sizeof(float) : sizeof(uint16_t);
    must(e->nframes == 1 && e->frame_bytes[0] == r->len * esize &&
             e->frame_bytes[0] / esize == r->len,
         "one frame of len floats in the declared encoding");
}

/* Bounded counts and one-line, terminated strings in every body present. */
static void check_bodies(const wire_env *e, const wire_body *b)
{
    int ranged = e->type == WIRE_MSG_INIT || e->type == WIRE_MSG_PUSH || e->type == WIRE_MSG_PULL ||
                 e->type == WIRE_MSG_PULL_REPLY;
    must(!!b->range == ranged, "a range exactly on the range types");
    must(!!b->error == (e->type == WIRE_MSG_ERROR), "an error exactly on ERROR");
    must(!!b->hello == (e->type == WIRE_MSG_HELLO), "a hello exactly on HELLO");
    must(!!b->welcome == (e->type == WIRE_MSG_WELCOME), "a welcome exactly on WELCOME");
    must(!b->stats || e->type == WIRE_MSG_BYE, "stats only on BYE");
    must(!b->membership || e->type == WIRE_MSG_HEARTBEAT || e->type == WIRE_MSG_WELCOME ||
             e->type == WIRE_MSG_SHUTDOWN,
         "a membership only on HEARTBEAT, WELCOME and SHUTDOWN");
    must(!b->progress || e->type == WIRE_MSG_PROGRESS || e->type == WIRE_MSG_DONE ||
             e->type == WIRE_MSG_STOP || e->type == WIRE_MSG_HEARTBEAT,
         "progress only on PROGRESS, DONE, STOP and HEARTBEAT");
    int sparse =
        e->type == WIRE_MSG_SPUSH || e->type == WIRE_MSG_SPULL || e->type == WIRE_MSG_SPULL_REPLY;
    must(!!b->sparse == sparse, "a table exactly on SPUSH, SPULL and SPULL_REPLY");
    if (b->sparse)
        must(b->sparse->dim >= 1 && b->sparse->dim <= WIRE_MAX_SPARSE_DIM &&
                 b->sparse->nkeys <= WIRE_MAX_SPARSE_KEYS &&
                 b->sparse->nkeys * b->sparse->dim <= WIRE_CHUNK_FLOATS,
             "sparse key count and row width bounded");
    if (b->range) {
        /* Empty only as the float32 PUSH/PULL/PULL_REPLY that carry the clock of a server
         * with no dense range (worker/kv.c). */
        must((b->range->len > 0 || (e->type != WIRE_MSG_INIT && b->range->enc == WIRE_ENC_F32)) &&
                 b->range->offset + b->range->len >= b->range->offset,
             "a range that does not wrap, empty only as a float32 PUSH, PULL or PULL_REPLY");
        check_encoding(e, b->range);
    }
    if (b->error)
        must(terminated(b->error->text, sizeof b->error->text), "error text one line");
    if (b->hello) {
        must(terminated(b->hello->endpoint, WIRE_ENDPOINT_MAX), "endpoint one line");
        must(b->hello->groups.n >= 0 && b->hello->groups.n <= WIRE_MAX_GROUPS,
             "group count bounded");
        must(b->hello->nckpt >= 0 && b->hello->nckpt <= WIRE_MAX_CKPTS, "checkpoint count bounded");
    }
    if (b->welcome) {
        const wire_welcome *w = b->welcome;
        must(w->num_servers >= 1 && w->num_servers <= WIRE_MAX_SERVERS, "server count bounded");
        must(w->groups.n >= 0 && w->groups.n <= WIRE_MAX_GROUPS, "group count bounded");
        must(w->shard_offsets[w->num_servers] == w->nparams, "the shard map covers the model");
        for (int i = 0; i < w->num_servers; i++)
            must(terminated(w->server_endpoints[i], WIRE_ENDPOINT_MAX), "server endpoint one line");
    }
    if (b->membership) {
        const wire_membership *m = b->membership;
        must(m->nworkers >= 0 && m->nworkers <= WIRE_MAX_WORKERS && m->nservers >= 0 &&
                 m->nservers <= WIRE_MAX_SERVERS,
             "member counts bounded");
        for (int i = 0; i < m->nservers; i++)
            must(terminated(m->server_ep[i], WIRE_ENDPOINT_MAX), "member endpoint one line");
    }
}

static int same_groups(const wire_groups *a, const wire_groups *b)
{
    size_t n = (size_t)a->n;
    return a->n == b->n &&
           (n == 0 || (memcmp(a->offsets, b->offsets, (n + 1) * sizeof *a->offsets) == 0 &&
                       memcmp(a->mults, b->mults, n * sizeof *a->mults) == 0 &&
                       memcmp(a->state, b->state, n * sizeof *a->state) == 0));
}

/* The large bodies are filled up to their counts only (not cleared): compare those. */
static int same_welcome(const wire_welcome *a, const wire_welcome *b)
{
    int S = a->num_servers;
    if (S != b->num_servers || a->num_workers != b->num_workers || a->nparams != b->nparams ||
        a->total_updates != b->total_updates || a->resume != b->resume ||
        a->resume_clock != b->resume_clock || a->rejoin != b->rejoin ||
        a->generation != b->generation || !same_groups(&a->groups, &b->groups) ||
        memcmp(a->shard_offsets, b->shard_offsets, (size_t)(S + 1) * sizeof(uint64_t)) != 0)
        return 0;
    for (int i = 0; i < S; i++)
        if (strcmp(a->server_endpoints[i], b->server_endpoints[i]) != 0)
            return 0;
    return 1;
}

static int same_membership(const wire_membership *a, const wire_membership *b)
{
    size_t W = (size_t)a->nworkers, S = (size_t)a->nservers;
    if (a->nworkers != b->nworkers || a->nservers != b->nservers ||
        memcmp(a->gen, b->gen, W * sizeof *a->gen) != 0 || memcmp(a->lost, b->lost, W) != 0 ||
        memcmp(a->done, b->done, W) != 0 ||
        memcmp(a->server_gen, b->server_gen, S * sizeof *a->server_gen) != 0)
        return 0;
    for (size_t i = 0; i < S; i++)
        if (strcmp(a->server_ep[i], b->server_ep[i]) != 0)
            return 0;
    return 1;
}

/* proto3 leaves out a scalar equal to 0, and -0.0 == 0: a -0.0 comes back as +0.0, the
 * same number. Compare progress by value. */
static int same_progress(const wire_progress *a, const wire_progress *b)
{
    return a->epoch == b->epoch && a->step == b->step &&
           (a->loss == b->loss || (a->loss != a->loss && b->loss != b->loss)) &&
           (a->samples_per_s == b->samples_per_s ||
            (a->samples_per_s != a->samples_per_s && b->samples_per_s != b->samples_per_s)) &&
           (a->test_accuracy == b->test_accuracy ||
            (a->test_accuracy != a->test_accuracy && b->test_accuracy != b->test_accuracy));
}

/* Both present or both absent, and equal. */
#define SAME(x, y, eq) ((!(x) && !(y)) || ((x) && (y) && (eq)))

static void check_round_trip(const wire_env *e, const wire_body *b)
{
    static uint8_t buf[WIRE_MAX_META];
    static wire_store st2;
    size_t len = 0;
    pst_err err = {0};
    wire_env e2;
    wire_body b2;
    must(wire_pack(e, b, buf, sizeof buf, &len, &err) == PST_OK, "accepted message packs");
    must(wire_unpack(&e2, &b2, &st2, buf, len, &err) == PST_OK, "repacked message unpacks");
    must(memcmp(e, &e2, sizeof e2) == 0, "the envelope survives a round trip");
    /* An empty membership is not sent: it comes back absent. */
    const wire_membership *m = b->membership;
    if (m && m->nworkers == 0 && m->nservers == 0)
        m = NULL;
    must(SAME(b->error, b2.error, memcmp(b->error, b2.error, sizeof *b->error) == 0) &&
             SAME(b->range, b2.range, memcmp(b->range, b2.range, sizeof *b->range) == 0) &&
             SAME(b->stats, b2.stats, memcmp(b->stats, b2.stats, sizeof *b->stats) == 0) &&
             SAME(b->hello, b2.hello, memcmp(b->hello, b2.hello, sizeof *b->hello) == 0) &&
             SAME(b->progress, b2.progress, same_progress(b->progress, b2.progress)) &&
             SAME(b->sparse, b2.sparse, memcmp(b->sparse, b2.sparse, sizeof *b->sparse) == 0) &&
             SAME(b->welcome, b2.welcome, same_welcome(b->welcome, b2.welcome)) &&
             SAME(m, b2.membership, same_membership(m, b2.membership)),
         "the bodies survive a round trip");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wire_store st; /* a receiver's, reused: unpacking writes only what it fills */
    wire_env e;
    wire_body b;
    pst_err err = {0};
    int rc = wire_unpack(&e, &b, &st, data, size, &err);
    if (rc != PST_OK) {
        must(rc == PST_ERR_DATA, "a refusal is PST_ERR_DATA");
        fuzz_check_msg(err.msg);
        /* ...but the ERROR of a peer of another version, whose text the receiver shows
         * (a one-line message like any ERROR's). */
        wire_body none = {0};
        int foreign_error = e.version != WIRE_VERSION && e.type == WIRE_MSG_ERROR;
        if (foreign_error && b.error) {
            must(!strpbrk(b.error->text, "\n\r"), "a foreign ERROR's text is one line");
            none.error = b.error;
        }
        must(memcmp(&b, &none, sizeof b) == 0, "a refused message carries no bodies");
        return 0;
    }
    must(e.version == WIRE_VERSION, "version checked");
    must(e.nframes >= 0 && e.nframes <= WIRE_MAX_FRAMES, "frame count bounded");
    must(memchr(e.role, '\0', sizeof e.role) != NULL, "role terminated");
    /* Peer strings end up in log lines and error messages: one line each. */
    must(!strpbrk(e.role, "\r\n"), "no line breaks in the role");
    check_bodies(&e, &b);

    /* The frames the envelope declares pass; one frame more, or one byte off, does not. */
    size_t sizes[WIRE_MAX_FRAMES + 1] = {0};
    for (int i = 0; i < e.nframes; i++)
        sizes[i] = (size_t)e.frame_bytes[i];
    int exact_sizes = 1;
    for (int i = 0; i < e.nframes; i++)
        exact_sizes &= (uint64_t)sizes[i] == e.frame_bytes[i];
    if (exact_sizes)
        must(wire_check_frames(&e, e.nframes, sizes, &err) == PST_OK, "declared frames pass");
    must(wire_check_frames(&e, e.nframes + 1, sizes, &err) == PST_ERR_DATA, "extra frame refused");
    if (e.nframes > 0) {
        sizes[0] += 1;
        must(wire_check_frames(&e, e.nframes, sizes, &err) == PST_ERR_DATA,
             "wrong frame size refused");
    }
    check_round_trip(&e, &b);
    return 0;
}
