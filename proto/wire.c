/* proto/wire.c -- see wire.h. */
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pstrain.pb-c.h"

const char *wire_type_name(wire_type t)
{
    switch (t) {
    case WIRE_MSG_ERROR: return "ERROR";
    case WIRE_MSG_HELLO: return "HELLO";
    case WIRE_MSG_WELCOME: return "WELCOME";
    case WIRE_MSG_INIT: return "INIT";
    case WIRE_MSG_PUSH: return "PUSH";
    case WIRE_MSG_PULL: return "PULL";
    case WIRE_MSG_PULL_REPLY: return "PULL_REPLY";
    case WIRE_MSG_PROGRESS: return "PROGRESS";
    case WIRE_MSG_DONE: return "DONE";
    case WIRE_MSG_SHUTDOWN: return "SHUTDOWN";
    case WIRE_MSG_BYE: return "BYE";
    case WIRE_MSG_BARRIER: return "BARRIER";
    case WIRE_MSG_ACK: return "ACK";
    case WIRE_MSG_HEARTBEAT: return "HEARTBEAT";
    case WIRE_MSG_STATUS: return "STATUS";
    case WIRE_MSG_STOP: return "STOP";
    case WIRE_MSG_SPUSH: return "SPUSH";
    case WIRE_MSG_SPULL: return "SPULL";
    case WIRE_MSG_SPULL_REPLY: return "SPULL_REPLY";
    }
    return "?";
}

const char *wire_enc_name(wire_enc e)
{
    switch (e) {
    case WIRE_ENC_F32: return "f32";
    case WIRE_ENC_F16: return "f16";
    case WIRE_ENC_BF16: return "bf16";
    case WIRE_ENC_TOPK: return "topk";
    }
    return "?";
}

void wire_env_init(wire_env *e, wire_type type, const char *role, int rank)
{
    memset(e, 0, sizeof *e);
    e->version = WIRE_VERSION;
    e->type = type;
    snprintf(e->role, sizeof e->role, "%s", role);
    e->rank = rank;
}

/* The bodies a message type carries (see wire.h), one bit each. */
enum {
    B_ERROR = 1 << 0,
    B_HELLO = 1 << 1,
    B_WELCOME = 1 << 2,
    B_RANGE = 1 << 3,
    B_PROGRESS = 1 << 4,
    B_STATS = 1 << 5,
    B_MEMBERSHIP = 1 << 6,
    B_SPARSE = 1 << 7
};

static unsigned bodies_of(int t)
{
    switch (t) {
    case WIRE_MSG_ERROR: return B_ERROR;
    case WIRE_MSG_HELLO: return B_HELLO;
    case WIRE_MSG_WELCOME: return B_WELCOME | B_MEMBERSHIP;
    case WIRE_MSG_INIT:
    case WIRE_MSG_PUSH:
    case WIRE_MSG_PULL:
    case WIRE_MSG_PULL_REPLY: return B_RANGE;
    case WIRE_MSG_PROGRESS:
    case WIRE_MSG_DONE:
    case WIRE_MSG_STOP: return B_PROGRESS;
    case WIRE_MSG_HEARTBEAT: return B_PROGRESS | B_MEMBERSHIP;
    case WIRE_MSG_SHUTDOWN: return B_MEMBERSHIP;
    case WIRE_MSG_BYE: return B_STATS;
    case WIRE_MSG_SPUSH:
    case WIRE_MSG_SPULL:
    case WIRE_MSG_SPULL_REPLY: return B_SPARSE;
    default: return 0;
    }
}

/* Of those, the ones it must carry. */
static unsigned bodies_required(int t)
{
    return bodies_of(t) & (B_ERROR | B_HELLO | B_WELCOME | B_RANGE | B_SPARSE);
}

static unsigned bodies_given(const wire_body *b)
{
    return (b->error ? B_ERROR : 0) | (b->hello ? B_HELLO : 0) | (b->welcome ? B_WELCOME : 0) |
           (b->range ? B_RANGE : 0) | (b->progress ? B_PROGRESS : 0) | (b->stats ? B_STATS : 0) |
           (b->membership ? B_MEMBERSHIP : 0) | (b->sparse ? B_SPARSE : 0);
}

/* The protobuf-c side of one message being packed; it borrows the bodies' arrays. */
typedef struct {
    Pstrain__Envelope env;
    Pstrain__Error error;
    Pstrain__Hello hello;
    Pstrain__Welcome wel;
    Pstrain__Range range;
    Pstrain__Progress prog;
    Pstrain__Stats stats;
    Pstrain__LrGroups hgroups, wgroups;
    protobuf_c_boolean hstate[WIRE_MAX_GROUPS], wstate[WIRE_MAX_GROUPS];
    Pstrain__Membership mem;
    Pstrain__Sparse sparse;
    char *eps[WIRE_MAX_SERVERS], *meps[WIRE_MAX_SERVERS];
    uint32_t *flags; /* (2 W) membership lost, done widened to the proto's uint32 (heap) */
} pb_out;

/* NULL when there are none (ngroups 0: nothing on the wire); the state flags only when one
 * is set. state: room for g->n flags. */
static Pstrain__LrGroups *pack_groups(Pstrain__LrGroups *pg, protobuf_c_boolean *state,
                                      const wire_groups *g)
{
    if (g->n == 0)
        return NULL;
    pg->n_offsets = (size_t)g->n + 1;
    pg->offsets = (uint64_t *)g->offsets;
    pg->n_lr_mults = (size_t)g->n;
    pg->lr_mults = (float *)g->mults;
    int any = 0;
    for (int i = 0; i < g->n; i++)
        any |= (state[i] = g->state[i] != 0);
    if (any) {
        pg->n_state = (size_t)g->n;
        pg->state = state;
    }
    return pg;
}

static int pack_hello(pb_out *o, const wire_hello *h, pst_err *err)
{
    if (h->groups.n < 0 || h->groups.n > WIRE_MAX_GROUPS)
        return pst_err_set(err, PST_ERR_ARG, "wire: %d update groups (max %d)", h->groups.n,
                           WIRE_MAX_GROUPS);
    if (h->nckpt < 0 || h->nckpt > WIRE_MAX_CKPTS)
        return pst_err_set(err, PST_ERR_ARG, "wire: %d checkpoint clocks (max %d)", h->nckpt,
                           WIRE_MAX_CKPTS);
    o->hello.endpoint = (char *)h->endpoint;
    o->hello.nparams = h->nparams;
    o->hello.job_hash = h->job_hash;
    o->hello.pid = h->pid;
    o->hello.steps = h->steps;
    o->hello.groups = pack_groups(&o->hgroups, o->hstate, &h->groups);
    o->hello.n_checkpoint_clocks = (size_t)h->nckpt;
    o->hello.checkpoint_clocks = (int64_t *)h->ckpt_clocks;
    o->hello.checkpoint_any_clock = h->ckpt_any != 0;
    o->env.hello = &o->hello;
    return PST_OK;
}

static int pack_welcome(pb_out *o, const wire_welcome *w, pst_err *err)
{
    if (w->num_servers < 0 || w->num_servers > WIRE_MAX_SERVERS)
        return pst_err_set(err, PST_ERR_ARG, "wire: %d servers (max %d)", w->num_servers,
                           WIRE_MAX_SERVERS);
    if (w->groups.n < 0 || w->groups.n > WIRE_MAX_GROUPS)
        return pst_err_set(err, PST_ERR_ARG, "wire: %d update groups (max %d)", w->groups.n,
                           WIRE_MAX_GROUPS);
    for (int i = 0; i < w->num_servers; i++)
        o->eps[i] = (char *)w->server_endpoints[i];
    o->wel.n_server_endpoints = (size_t)w->num_servers;
    o->wel.server_endpoints = o->eps;
    o->wel.n_shard_offsets = (size_t)w->num_servers + 1;
    o->wel.shard_offsets = (uint64_t *)w->shard_offsets;
    o->wel.nparams = w->nparams;
    o->wel.num_workers = w->num_workers;
    o->wel.num_servers = w->num_servers;
    o->wel.total_updates = w->total_updates;
    o->wel.groups = pack_groups(&o->wgroups, o->wstate, &w->groups);
    o->wel.resume = w->resume != 0;
    o->wel.resume_clock = w->resume_clock;
    o->wel.rejoin = w->rejoin != 0;
    o->env.welcome = &o->wel;
    o->env.generation = w->generation;
    return PST_OK;
}

static int pack_membership(pb_out *o, const wire_membership *m, pst_err *err)
{
    if (m->nworkers < 0 || m->nworkers > WIRE_MAX_WORKERS || m->nservers < 0 ||
        m->nservers > WIRE_MAX_SERVERS)
        return pst_err_set(err, PST_ERR_ARG,
                           "wire: %d worker and %d server members (max %d, "
                           "%d)",
                           m->nworkers, m->nservers, WIRE_MAX_WORKERS, WIRE_MAX_SERVERS);
    if (m->nworkers == 0 && m->nservers == 0)
        return PST_OK; /* an empty one is not sent */
    size_t w = (size_t)m->nworkers;
    if (w > 0 && !(o->flags = malloc(2 * w * sizeof *o->flags)))
        return pst_err_set(err, PST_ERR_NOMEM, "wire: out of memory for a membership");
    for (size_t i = 0; i < w; i++) {
        o->flags[i] = m->lost[i];
        o->flags[w + i] = m->done[i];
    }
    for (int i = 0; i < m->nservers; i++)
        o->meps[i] = (char *)m->server_ep[i];
    o->mem.n_generation = o->mem.n_lost = o->mem.n_done = w;
    o->mem.generation = (uint64_t *)m->gen;
    o->mem.lost = o->flags;
    o->mem.done = w > 0 ? o->flags + w : NULL;
    o->mem.n_server_endpoints = o->mem.n_server_generation = (size_t)m->nservers;
    o->mem.server_endpoints = o->meps;
    o->mem.server_generation = (uint64_t *)m->server_gen;
    o->mem.stop_signal = m->stop_signal;
    o->env.membership = &o->mem;
    return PST_OK;
}

static void pack_small(pb_out *o, const wire_body *b)
{
    if (b->error) {
        o->error.code = b->error->code;
        o->error.text = (char *)b->error->text;
        o->env.error = &o->error;
    }
    if (b->range) {
        o->range.offset = b->range->offset;
        o->range.len = b->range->len;
        o->range.encoding = (Pstrain__Encoding)b->range->enc;
        o->range.nnz = b->range->nnz;
        o->env.range = &o->range;
        o->env.clock_gap = b->range->clock_gap;
        o->env.final = b->range->final != 0;
        o->env.checkpoint = b->range->checkpoint != 0;
    }
    if (b->sparse) {
        o->sparse.table = b->sparse->table;
        o->sparse.nkeys = b->sparse->nkeys;
        o->sparse.dim = b->sparse->dim;
        o->sparse.train = b->sparse->train != 0;
        o->env.sparse = &o->sparse;
    }
    if (b->progress) {
        const wire_progress *p = b->progress;
        o->prog.epoch = p->epoch;
        o->prog.step = p->step;
        o->prog.loss = p->loss;
        o->prog.samples_per_s = p->samples_per_s;
        o->prog.test_accuracy = p->test_accuracy;
        o->prog.stop_signal = p->stop_signal;
        o->env.progress = &o->prog;
    }
    if (b->stats) {
        const wire_stats *t = b->stats;
        o->stats.pushes = t->pushes;
        o->stats.pulls = t->pulls;
        o->stats.bytes_in = t->bytes_in;
        o->stats.bytes_out = t->bytes_out;
        o->stats.max_clock_gap = t->max_clock_gap;
        o->stats.updates = t->updates;
        o->stats.nonfinite = t->nonfinite;
        o->stats.repeats = t->repeats;
        o->stats.refused = t->refused;
        o->env.stats = &o->stats;
    }
}

int wire_pack(const wire_env *e, const wire_body *b, uint8_t *buf, size_t cap, size_t *len,
              pst_err *err)
{
    static const wire_body none = {0};
    if (!b)
        b = &none;
    if (e->nframes < 0 || e->nframes > WIRE_MAX_FRAMES)
        return pst_err_set(err, PST_ERR_ARG, "wire: %d frames (max %d)", e->nframes,
                           WIRE_MAX_FRAMES);
    unsigned given = bodies_given(b);
    if (given & ~bodies_of(e->type))
        return pst_err_set(err, PST_ERR_ARG, "wire: %s given a body it does not carry",
                           wire_type_name(e->type));
    if (bodies_required(e->type) & ~given)
        return pst_err_set(err, PST_ERR_ARG, "wire: %s without its body", wire_type_name(e->type));
    pb_out o = {.env = PSTRAIN__ENVELOPE__INIT,
                .error = PSTRAIN__ERROR__INIT,
                .hello = PSTRAIN__HELLO__INIT,
                .wel = PSTRAIN__WELCOME__INIT,
                .range = PSTRAIN__RANGE__INIT,
                .prog = PSTRAIN__PROGRESS__INIT,
                .stats = PSTRAIN__STATS__INIT,
                .hgroups = PSTRAIN__LR_GROUPS__INIT,
                .wgroups = PSTRAIN__LR_GROUPS__INIT,
                .mem = PSTRAIN__MEMBERSHIP__INIT,
                .sparse = PSTRAIN__SPARSE__INIT};
    o.env.version = e->version;
    o.env.type = (Pstrain__MsgType)e->type;
    o.env.request_id = e->request_id;
    o.env.role = (char *)e->role;
    o.env.rank = e->rank;
    o.env.n_payload_bytes = (size_t)e->nframes;
    o.env.payload_bytes = (uint64_t *)e->frame_bytes;
    o.env.clock = e->clock;
    o.env.generation = e->generation;
    int rc = PST_OK;
    if (b->hello && (rc = pack_hello(&o, b->hello, err)))
        goto cleanup;
    if (b->welcome && (rc = pack_welcome(&o, b->welcome, err)))
        goto cleanup;
    if (b->membership && (rc = pack_membership(&o, b->membership, err)))
        goto cleanup;
    pack_small(&o, b);
    size_t need = pstrain__envelope__get_packed_size(&o.env);
    if (need > cap) {
        rc = pst_err_set(err, PST_ERR_ARG, "wire: envelope needs %zu bytes, buffer has %zu", need,
                         cap);
        goto cleanup;
    }
    *len = pstrain__envelope__pack(&o.env, buf);
cleanup:
    free(o.flags);
    return rc;
}

/* Copies a protobuf string into a fixed field; NULL counts as "". Roles and endpoints are
 * names that go into log lines: a control character (a forged line break) is refused. */
static int copy_str(char *dst, size_t cap, const char *src, const char *what, pst_err *err)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s of %zu bytes is too long (max %zu)", what,
                           n, cap - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)src[i] < 0x20 || src[i] == 0x7f)
            return pst_err_set(err, PST_ERR_DATA, "wire: %s holds control character 0x%02x", what,
                               (unsigned)(unsigned char)src[i]);
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return PST_OK;
}

/* Update groups of a HELLO or WELCOME: G in [1, WIRE_MAX_GROUPS], G + 1 strictly increasing
 * offsets from 0 to nparams, finite multipliers >= 0, no state flags or G of them (a state
 * group's multiplier 0). Absent: out->n = 0. */
static int unpack_groups(wire_groups *out, const Pstrain__LrGroups *g, uint64_t nparams,
                         const char *tn, pst_err *err)
{
    out->n = 0;
    if (!g)
        return PST_OK;
    size_t n = g->n_lr_mults;
    if (n < 1 || n > WIRE_MAX_GROUPS || g->n_offsets != n + 1)
        return pst_err_set(err, PST_ERR_DATA,
                           "wire: %s with %zu update groups and %zu offsets "
                           "(1 to %d groups, one more offset)",
                           tn, n, g->n_offsets, WIRE_MAX_GROUPS);
    for (size_t i = 0; i <= n; i++) {
        out->offsets[i] = g->offsets[i];
        if (i > 0 && g->offsets[i] <= g->offsets[i - 1])
            return pst_err_set(err, PST_ERR_DATA,
                               "wire: %s update group %zu is empty or "
                               "reversed",
                               tn, i - 1);
    }
    if (g->offsets[0] != 0 || g->offsets[n] != nparams)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s update groups do not cover [0, %llu)", tn,
                           (unsigned long long)nparams);
    for (size_t i = 0; i < n; i++) {
        float x = g->lr_mults[i];
        if (!(x >= 0.0f) || x > 3.4e38f) /* NaN, negative or infinite */
            return pst_err_set(err, PST_ERR_DATA, "wire: %s update group %zu has multiplier %g", tn,
                               i, (double)x);
        out->mults[i] = x;
    }
    if (g->n_state != 0 && g->n_state != n)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s with %zu update groups and %zu state flags",
                           tn, n, g->n_state);
    memset(out->state, 0, sizeof out->state);
    for (size_t i = 0; i < g->n_state; i++) {
        if (g->state[i] && out->mults[i] != 0.0f)
            return pst_err_set(err, PST_ERR_DATA,
                               "wire: %s state group %zu has multiplier %g, not 0", tn, i,
                               (double)out->mults[i]);
        out->state[i] = g->state[i] != 0;
    }
    out->n = (int)n;
    return PST_OK;
}

/* The envelope's own fields: version, type, role, rank, frame count. */
static int unpack_env(wire_env *e, const Pstrain__Envelope *env, pst_err *err)
{
    memset(e, 0, sizeof *e);
    if (env->version != WIRE_VERSION) {
        /* Nothing else of it is read, but the receiver may answer (msg_refuse_version), and
         * the answer of a receiver of another version is an ERROR worth showing. */
        e->version = env->version;
        e->type = (int)env->type == WIRE_MSG_ERROR ? WIRE_MSG_ERROR : (wire_type)0;
        return pst_err_set(err, PST_ERR_DATA, "wire: version %u, this build speaks %u",
                           env->version, WIRE_VERSION);
    }
    int t = env->type;
    if (t < WIRE_MSG_ERROR || t > WIRE_MSG_SPULL_REPLY)
        return pst_err_set(err, PST_ERR_DATA, "wire: unknown message type %d", t);
    const char *tn = wire_type_name((wire_type)t);
    if (env->n_payload_bytes > WIRE_MAX_FRAMES)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s with %zu payload frames (max %d)", tn,
                           env->n_payload_bytes, WIRE_MAX_FRAMES);
    int rc = copy_str(e->role, sizeof e->role, env->role, "role", err);
    if (rc)
        return rc;
    e->version = env->version;
    e->type = (wire_type)t;
    e->request_id = env->request_id;
    e->rank = env->rank;
    if (e->rank < 0)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s from negative rank %d", tn, e->rank);
    e->nframes = (int)env->n_payload_bytes;
    for (size_t i = 0; i < env->n_payload_bytes; i++)
        e->frame_bytes[i] = env->payload_bytes[i];
    e->clock = env->clock;
    e->generation = env->generation;
    return PST_OK;
}

static int unpack_membership(wire_membership *m, const Pstrain__Membership *mb, const char *tn,
                             pst_err *err)
{
    if (mb->n_generation > WIRE_MAX_WORKERS || mb->n_lost != mb->n_generation ||
        mb->n_done != mb->n_generation || mb->n_server_endpoints > WIRE_MAX_SERVERS ||
        mb->n_server_generation != mb->n_server_endpoints)
        return pst_err_set(err, PST_ERR_DATA,
                           "wire: %s with a membership of %zu/%zu/%zu "
                           "worker and %zu/%zu server entries (max %d, %d)",
                           tn, mb->n_generation, mb->n_lost, mb->n_done, mb->n_server_endpoints,
                           mb->n_server_generation, WIRE_MAX_WORKERS, WIRE_MAX_SERVERS);
    m->nworkers = (int)mb->n_generation;
    for (size_t i = 0; i < mb->n_generation; i++) {
        m->gen[i] = mb->generation[i];
        m->lost[i] = mb->lost[i] != 0;
        m->done[i] = mb->done[i] != 0;
    }
    m->nservers = (int)mb->n_server_endpoints;
    m->stop_signal = mb->stop_signal;
    for (size_t i = 0; i < mb->n_server_endpoints; i++) {
        m->server_gen[i] = mb->server_generation[i];
        int rc = copy_str(m->server_ep[i], WIRE_ENDPOINT_MAX, mb->server_endpoints[i],
                          "server endpoint", err);
        if (rc)
            return rc;
    }
    return PST_OK;
}

/* The frames a range message of encoding enc must declare (wire_enc.h); 0 when they do. */
static int range_frames_ok(const wire_env *e, const wire_range *r)
{
    const uint64_t f4 = r->len * sizeof(float), f2 = r->len * sizeof(uint16_t);
    switch (r->enc) {
    case WIRE_ENC_F32: return e->nframes == 1 && e->frame_bytes[0] == f4;
    case WIRE_ENC_F16:
    case WIRE_ENC_BF16: return e->nframes == 1 && e->frame_bytes[0] == f2;
    case WIRE_ENC_TOPK:
        return e->nframes == 2 && e->frame_bytes[0] == r->nnz * sizeof(uint32_t) &&
               e->frame_bytes[1] == r->nnz * sizeof(float);
    }
    return 0;
}

/* INIT, PUSH, PULL, PULL_REPLY: a range, and the frames its encoding says (PULL: none). */
static int unpack_range(wire_range *r, const wire_env *e, const Pstrain__Envelope *env,
                        pst_err *err)
{
    const char *tn = wire_type_name(e->type);
    if (!env->range)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s without a range", tn);
    memset(r, 0, sizeof *r);
    r->offset = env->range->offset;
    r->len = env->range->len;
    r->clock_gap = env->clock_gap;
    r->final = env->final;
    r->checkpoint = env->checkpoint;
    /* An empty PUSH/PULL/PULL_REPLY (float32, one empty frame where floats travel) is the
     * clock of a server whose dense range is empty (a sparse model with fewer dense floats
     * than servers); INIT always carries floats. */
    int empty_ok = e->type != WIRE_MSG_INIT && (int)env->range->encoding == WIRE_ENC_F32;
    if ((r->len == 0 && !empty_ok) || r->offset + r->len < r->offset ||
        r->len > UINT64_MAX / sizeof(float))
        return pst_err_set(err, PST_ERR_DATA, "wire: %s with bad range [%llu, +%llu)", tn,
                           (unsigned long long)r->offset, (unsigned long long)r->len);
    /* Which encodings a type may use: INIT's weights are exact, TOPK is for gradients. */
    int enc = (int)env->range->encoding;
    int top = e->type == WIRE_MSG_PUSH ? WIRE_ENC_TOPK : WIRE_ENC_BF16;
    if (enc < WIRE_ENC_F32 || enc > top || (e->type == WIRE_MSG_INIT && enc != WIRE_ENC_F32))
        return pst_err_set(err, PST_ERR_DATA, "wire: %s with encoding %d", tn, enc);
    r->enc = (wire_enc)enc;
    r->nnz = env->range->nnz;
    /* A TOPK frame pair does not bound len as a dense frame does: the chunk limit does. */
    if ((r->nnz != 0 && (r->enc != WIRE_ENC_TOPK || r->nnz > r->len)) ||
        (r->enc == WIRE_ENC_TOPK && r->len > WIRE_CHUNK_FLOATS))
        return pst_err_set(err, PST_ERR_DATA, "wire: %s of %llu floats (%s) with %llu entries", tn,
                           (unsigned long long)r->len, wire_enc_name(r->enc),
                           (unsigned long long)r->nnz);
    if (e->type != WIRE_MSG_PULL && !range_frames_ok(e, r))
        return pst_err_set(err, PST_ERR_DATA,
                           "wire: %s of %llu floats (%s, %llu entries) with %d frames of the "
                           "wrong size",
                           tn, (unsigned long long)r->len, wire_enc_name(r->enc),
                           (unsigned long long)r->nnz, e->nframes);
    if (e->type == WIRE_MSG_PULL && e->nframes != 0)
        return pst_err_set(err, PST_ERR_DATA, "wire: PULL with %d payload frames", e->nframes);
    if (e->clock < 0)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s with negative clock %lld", tn,
                           (long long)e->clock);
    return PST_OK;
}

/* SPUSH, SPULL, SPULL_REPLY: a table's K keys (frame of K uint64) and/or K x d floats,
 * with frame lengths that agree with K and d. */
static int unpack_sparse(wire_sparse *sp, const wire_env *e, const Pstrain__Envelope *env,
                         pst_err *err)
{
    const char *tn = wire_type_name(e->type);
    if (!env->sparse)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s without its table", tn);
    memset(sp, 0, sizeof *sp);
    sp->table = env->sparse->table;
    sp->nkeys = env->sparse->nkeys;
    sp->dim = env->sparse->dim;
    sp->train = env->sparse->train;
    if (sp->dim < 1 || sp->dim > WIRE_MAX_SPARSE_DIM || sp->nkeys > WIRE_MAX_SPARSE_KEYS ||
        sp->nkeys * sp->dim > WIRE_CHUNK_FLOATS)
        return pst_err_set(err, PST_ERR_DATA,
                           "wire: %s of table %u with %llu keys of dim %u (max %llu keys, "
                           "dim %d, %llu floats)",
                           tn, sp->table, (unsigned long long)sp->nkeys, sp->dim,
                           (unsigned long long)WIRE_MAX_SPARSE_KEYS, WIRE_MAX_SPARSE_DIM,
                           (unsigned long long)WIRE_CHUNK_FLOATS);
    uint64_t kb = sp->nkeys * sizeof(uint64_t), rb = sp->nkeys * sp->dim * sizeof(float);
    int ok = e->type == WIRE_MSG_SPUSH
                 ? e->nframes == 2 && e->frame_bytes[0] == kb && e->frame_bytes[1] == rb
             : e->type == WIRE_MSG_SPULL ? e->nframes == 1 && e->frame_bytes[0] == kb
                                         : e->nframes == 1 && e->frame_bytes[0] == rb;
    if (!ok)
        return pst_err_set(err, PST_ERR_DATA,
                           "wire: %s of %llu keys of dim %u must declare %s (%llu, %llu bytes)", tn,
                           (unsigned long long)sp->nkeys, sp->dim,
                           e->type == WIRE_MSG_SPUSH   ? "a keys and a gradients frame"
                           : e->type == WIRE_MSG_SPULL ? "one keys frame"
                                                       : "one rows frame",
                           (unsigned long long)kb, (unsigned long long)rb);
    if (e->clock < 0)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s with negative clock %lld", tn,
                           (long long)e->clock);
    return PST_OK;
}

/* Other types: a STATUS answer carries one frame (a JSON document), the rest none. */
static int check_other_frames(const wire_env *e, pst_err *err)
{
    if (e->type == WIRE_MSG_STATUS) {
        /* The answer carries the document (JSON); the request nothing. */
        if (e->nframes > 1 || (e->nframes == 1 && e->frame_bytes[0] > WIRE_MAX_STATUS))
            return pst_err_set(err, PST_ERR_DATA, "wire: STATUS with %d frames (%llu bytes)",
                               e->nframes,
                               (unsigned long long)(e->nframes ? e->frame_bytes[0] : 0));
    } else if (e->nframes != 0) {
        return pst_err_set(err, PST_ERR_DATA, "wire: %s with %d payload frames",
                           wire_type_name(e->type), e->nframes);
    }
    return PST_OK;
}

static int unpack_error(wire_error *x, const Pstrain__Error *pe, pst_err *err)
{
    if (!pe)
        return pst_err_set(err, PST_ERR_DATA, "wire: ERROR without error fields");
    memset(x, 0, sizeof *x);
    x->code = pe->code;
    snprintf(x->text, sizeof x->text, "%s", pe->text ? pe->text : "");
    /* The peer's text becomes the receiver's one-line error message: no line breaks. */
    for (char *c = x->text; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    return PST_OK;
}

static int unpack_hello(wire_hello *h, const Pstrain__Hello *ph, pst_err *err)
{
    if (!ph)
        return pst_err_set(err, PST_ERR_DATA, "wire: HELLO without hello fields");
    memset(h, 0, sizeof *h);
    int rc = copy_str(h->endpoint, sizeof h->endpoint, ph->endpoint, "endpoint", err);
    if (rc)
        return rc;
    h->nparams = ph->nparams;
    h->job_hash = ph->job_hash;
    h->pid = ph->pid;
    h->steps = ph->steps;
    if ((rc = unpack_groups(&h->groups, ph->groups, h->nparams, "HELLO", err)))
        return rc;
    if (ph->n_checkpoint_clocks > WIRE_MAX_CKPTS)
        return pst_err_set(err, PST_ERR_DATA,
                           "wire: HELLO with %zu checkpoint clocks "
                           "(max %d)",
                           ph->n_checkpoint_clocks, WIRE_MAX_CKPTS);
    h->nckpt = (int)ph->n_checkpoint_clocks;
    h->ckpt_any = ph->checkpoint_any_clock;
    for (int i = 0; i < h->nckpt; i++) {
        h->ckpt_clocks[i] = ph->checkpoint_clocks[i];
        if (h->ckpt_clocks[i] < 0)
            return pst_err_set(err, PST_ERR_DATA,
                               "wire: HELLO with negative checkpoint "
                               "clock %lld",
                               (long long)h->ckpt_clocks[i]);
    }
    return PST_OK;
}

/* Not cleared first (20 KB): every field is written, arrays up to num_servers. */
static int unpack_welcome(wire_welcome *h, const Pstrain__Welcome *w, uint64_t generation,
                          pst_err *err)
{
    if (!w)
        return pst_err_set(err, PST_ERR_DATA, "wire: WELCOME without welcome fields");
    if (w->num_servers < 1 || w->num_servers > WIRE_MAX_SERVERS || w->num_workers < 1 ||
        w->n_server_endpoints != (size_t)w->num_servers ||
        w->n_shard_offsets != (size_t)w->num_servers + 1)
        return pst_err_set(err, PST_ERR_DATA,
                           "wire: WELCOME with %d servers, %d workers, %zu endpoints, %zu "
                           "offsets",
                           w->num_servers, w->num_workers, w->n_server_endpoints,
                           w->n_shard_offsets);
    h->num_servers = w->num_servers;
    h->num_workers = w->num_workers;
    h->nparams = w->nparams;
    h->total_updates = w->total_updates;
    h->resume = w->resume;
    h->resume_clock = w->resume_clock;
    h->rejoin = w->rejoin;
    h->generation = generation;
    if (h->resume_clock < 0)
        return pst_err_set(err, PST_ERR_DATA, "wire: WELCOME with negative resume clock");
    int rc;
    for (int i = 0; i < w->num_servers; i++)
        if ((rc = copy_str(h->server_endpoints[i], WIRE_ENDPOINT_MAX, w->server_endpoints[i],
                           "server endpoint", err)))
            return rc;
    for (int i = 0; i <= w->num_servers; i++) {
        h->shard_offsets[i] = w->shard_offsets[i];
        if (i > 0 && h->shard_offsets[i] < h->shard_offsets[i - 1])
            return pst_err_set(err, PST_ERR_DATA, "wire: WELCOME shard offsets decrease");
    }
    if (h->shard_offsets[0] != 0 || h->shard_offsets[w->num_servers] != h->nparams)
        return pst_err_set(err, PST_ERR_DATA, "wire: WELCOME shard map does not cover [0, %llu)",
                           (unsigned long long)h->nparams);
    return unpack_groups(&h->groups, w->groups, h->nparams, "WELCOME", err);
}

static void unpack_small(wire_body *b, wire_store *st, const Pstrain__Envelope *env,
                         unsigned carries)
{
    if ((carries & B_PROGRESS) && env->progress) {
        wire_progress *p = &st->progress;
        memset(p, 0, sizeof *p);
        p->epoch = env->progress->epoch;
        p->step = env->progress->step;
        p->loss = env->progress->loss;
        p->samples_per_s = env->progress->samples_per_s;
        p->test_accuracy = env->progress->test_accuracy;
        p->stop_signal = env->progress->stop_signal;
        b->progress = p;
    }
    if ((carries & B_STATS) && env->stats) {
        wire_stats *t = &st->stats;
        memset(t, 0, sizeof *t);
        t->pushes = env->stats->pushes;
        t->pulls = env->stats->pulls;
        t->bytes_in = env->stats->bytes_in;
        t->bytes_out = env->stats->bytes_out;
        t->max_clock_gap = env->stats->max_clock_gap;
        t->updates = env->stats->updates;
        t->nonfinite = env->stats->nonfinite;
        t->repeats = env->stats->repeats;
        t->refused = env->stats->refused;
        b->stats = t;
    }
}

/* Fills only the bodies the type carries; a sub-message another type would carry is
 * ignored (an older build sent some fields with every type). */
static int unpack_fields(wire_env *e, wire_body *b, wire_store *st, const Pstrain__Envelope *env,
                         pst_err *err)
{
    memset(b, 0, sizeof *b);
    int rc = unpack_env(e, env, err);
    if (rc)
        return rc;
    const char *tn = wire_type_name(e->type);
    unsigned carries = bodies_of(e->type);
    if ((carries & B_MEMBERSHIP) && env->membership) {
        if ((rc = unpack_membership(&st->membership, env->membership, tn, err)))
            return rc;
        b->membership = &st->membership;
    }
    if (carries & B_RANGE) {
        if ((rc = unpack_range(&st->range, e, env, err)))
            return rc;
        b->range = &st->range;
    } else if (carries & B_SPARSE) {
        if ((rc = unpack_sparse(&st->sparse, e, env, err)))
            return rc;
        b->sparse = &st->sparse;
    } else if ((rc = check_other_frames(e, err)))
        return rc;
    if (carries & B_ERROR) {
        if ((rc = unpack_error(&st->error, env->error, err)))
            return rc;
        b->error = &st->error;
    }
    if (carries & B_HELLO) {
        if ((rc = unpack_hello(&st->hello, env->hello, err)))
            return rc;
        b->hello = &st->hello;
    }
    if (carries & B_WELCOME) {
        if ((rc = unpack_welcome(&st->welcome, env->welcome, e->generation, err)))
            return rc;
        b->welcome = &st->welcome;
    }
    unpack_small(b, st, env, carries);
    return PST_OK;
}

int wire_unpack(wire_env *e, wire_body *b, wire_store *st, const uint8_t *buf, size_t len,
                pst_err *err)
{
    memset(b, 0, sizeof *b);
    memset(e, 0, sizeof *e); /* version 0 when it does not parse */
    if (len > WIRE_MAX_META)
        return pst_err_set(err, PST_ERR_DATA, "wire: envelope of %zu bytes exceeds %d", len,
                           WIRE_MAX_META);
    Pstrain__Envelope *env = pstrain__envelope__unpack(NULL, len, buf);
    if (!env)
        return pst_err_set(err, PST_ERR_DATA, "wire: envelope of %zu bytes does not parse", len);
    int rc = unpack_fields(e, b, st, env, err);
    if (rc)
        memset(b, 0, sizeof *b); /* a refused message carries nothing... */
    /* ...but an ERROR of another version: the peer's refusal of ours, naming both. */
    if (rc && e->version != WIRE_VERSION && e->type == WIRE_MSG_ERROR &&
        unpack_error(&st->error, env->error, NULL) == PST_OK)
        b->error = &st->error;
    pstrain__envelope__free_unpacked(env, NULL);
    return rc;
}

int wire_check_frames(const wire_env *e, int nframes, const size_t *sizes, pst_err *err)
{
    if (nframes != e->nframes)
        return pst_err_set(err, PST_ERR_DATA, "wire: %d payload frames arrived, header says %d",
                           nframes, e->nframes);
    for (int i = 0; i < nframes; i++)
        if ((uint64_t)sizes[i] != e->frame_bytes[i])
            return pst_err_set(err, PST_ERR_DATA, "wire: frame %d has %zu bytes, header says %llu",
                               i + 1, sizes[i], (unsigned long long)e->frame_bytes[i]);
    return PST_OK;
}
