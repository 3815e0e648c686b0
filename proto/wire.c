/* proto/wire.c -- see wire.h. */
#include "wire.h"


#include <stdio.h>
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
    }
    return "?";
}

void wire_header_init(wire_header *h, wire_type type, const char *role, int rank)
{
    memset(h, 0, sizeof *h);
    h->version = WIRE_VERSION;
    h->type = type;
    snprintf(h->role, sizeof h->role, "%s", role);
    h->rank = rank;
}

static int has_range_type(int t)
{
    return t == WIRE_MSG_INIT || t == WIRE_MSG_PUSH || t == WIRE_MSG_PULL ||
           t == WIRE_MSG_PULL_REPLY;
}

int wire_pack(const wire_header *h, uint8_t *buf, size_t cap, size_t *len, pst_err *err)
{
    if (h->nframes < 0 || h->nframes > WIRE_MAX_FRAMES)
        return pst_err_set(err, PST_ERR_ARG, "wire: %d frames (max %d)", h->nframes,
                           WIRE_MAX_FRAMES);
    if (h->num_servers < 0 || h->num_servers > WIRE_MAX_SERVERS)
        return pst_err_set(err, PST_ERR_ARG, "wire: %d servers (max %d)", h->num_servers,
                           WIRE_MAX_SERVERS);
    if (h->ngroups < 0 || h->ngroups > WIRE_MAX_GROUPS)
        return pst_err_set(err, PST_ERR_ARG, "wire: %d update groups (max %d)", h->ngroups,
                           WIRE_MAX_GROUPS);
    Pstrain__Envelope env = PSTRAIN__ENVELOPE__INIT;
    Pstrain__Error perr = PSTRAIN__ERROR__INIT;
    Pstrain__Hello hello = PSTRAIN__HELLO__INIT;
    Pstrain__Welcome wel = PSTRAIN__WELCOME__INIT;
    Pstrain__Range range = PSTRAIN__RANGE__INIT;
    Pstrain__Progress prog = PSTRAIN__PROGRESS__INIT;
    Pstrain__Stats stats = PSTRAIN__STATS__INIT;
    Pstrain__LrGroups groups = PSTRAIN__LR_GROUPS__INIT;
    Pstrain__Membership mem = PSTRAIN__MEMBERSHIP__INIT;
    uint32_t lost[WIRE_MAX_WORKERS], done[WIRE_MAX_WORKERS];
    char *eps[WIRE_MAX_SERVERS], *meps[WIRE_MAX_SERVERS];
    if (h->nmembers < 0 || h->nmembers > WIRE_MAX_WORKERS || h->nmember_servers < 0 ||
        h->nmember_servers > WIRE_MAX_SERVERS)
        return pst_err_set(err, PST_ERR_ARG, "wire: %d worker and %d server members (max %d, "
                           "%d)", h->nmembers, h->nmember_servers, WIRE_MAX_WORKERS,
                           WIRE_MAX_SERVERS);
    if (h->nmembers > 0 || h->nmember_servers > 0) {
        for (int i = 0; i < h->nmembers; i++) {
            lost[i] = h->member_lost[i];
            done[i] = h->member_done[i];
        }
        for (int i = 0; i < h->nmember_servers; i++)
            meps[i] = (char *)h->member_server_ep[i];
        mem.n_generation = mem.n_lost = mem.n_done = (size_t)h->nmembers;
        mem.generation = (uint64_t *)h->member_gen;
        mem.lost = lost;
        mem.done = done;
        mem.n_server_endpoints = mem.n_server_generation = (size_t)h->nmember_servers;
        mem.server_endpoints = meps;
        mem.server_generation = (uint64_t *)h->member_server_gen;
        env.membership = &mem;
    }
    env.generation = h->generation;
    if (h->ngroups > 0) {
        groups.n_offsets = (size_t)h->ngroups + 1;
        groups.offsets = (uint64_t *)h->group_offsets;
        groups.n_lr_mults = (size_t)h->ngroups;
        groups.lr_mults = (float *)h->group_mults;
    }
    env.version = h->version;
    env.type = (Pstrain__MsgType)h->type;
    env.request_id = h->request_id;
    env.role = (char *)h->role;
    env.rank = h->rank;
    env.n_payload_bytes = (size_t)h->nframes;
    env.payload_bytes = (uint64_t *)h->frame_bytes;
    env.clock = h->clock;
    env.clock_gap = h->clock_gap;
    env.final = h->final != 0;
    env.checkpoint = h->checkpoint != 0;
    if (h->nckpt < 0 || h->nckpt > WIRE_MAX_CKPTS)
        return pst_err_set(err, PST_ERR_ARG, "wire: %d checkpoint clocks (max %d)", h->nckpt,
                           WIRE_MAX_CKPTS);
    switch (h->type) {
    case WIRE_MSG_ERROR:
        perr.code = h->error_code;
        perr.text = (char *)h->error_text;
        env.error = &perr;
        break;
    case WIRE_MSG_HELLO:
        hello.endpoint = (char *)h->endpoint;
        hello.nparams = h->nparams;
        hello.job_hash = h->job_hash;
        hello.pid = h->pid;
        hello.steps = h->steps;
        hello.groups = h->ngroups > 0 ? &groups : NULL;
        hello.n_checkpoint_clocks = (size_t)h->nckpt;
        hello.checkpoint_clocks = (int64_t *)h->ckpt_clocks;
        hello.checkpoint_any_clock = h->ckpt_any != 0;
        env.hello = &hello;
        break;
    case WIRE_MSG_WELCOME:
        for (int i = 0; i < h->num_servers; i++)
            eps[i] = (char *)h->server_endpoints[i];
        wel.n_server_endpoints = (size_t)h->num_servers;
        wel.server_endpoints = eps;
        wel.n_shard_offsets = (size_t)h->num_servers + 1;
        wel.shard_offsets = (uint64_t *)h->shard_offsets;
        wel.nparams = h->nparams;
        wel.num_workers = h->num_workers;
        wel.num_servers = h->num_servers;
        wel.total_updates = h->total_updates;
        wel.groups = h->ngroups > 0 ? &groups : NULL;
        wel.resume = h->resume != 0;
        wel.resume_clock = h->resume_clock;
        wel.rejoin = h->rejoin != 0;
        env.welcome = &wel;
        break;
    default:
        break;
    }
    if (has_range_type(h->type)) {
        range.offset = h->offset;
        range.len = h->len;
        env.range = &range;
    }
    if (h->has_progress) {
        prog.epoch = h->epoch;
        prog.step = h->step;
        prog.loss = h->loss;
        prog.samples_per_s = h->samples_per_s;
        prog.test_accuracy = h->test_accuracy;
        env.progress = &prog;
    }
    if (h->has_stats) {
        stats.pushes = h->pushes;
        stats.pulls = h->pulls;
        stats.bytes_in = h->bytes_in;
        stats.bytes_out = h->bytes_out;
        stats.max_clock_gap = h->max_clock_gap;
        stats.updates = h->updates;
        stats.nonfinite = h->nonfinite;
        stats.repeats = h->repeats;
        env.stats = &stats;
    }
    size_t need = pstrain__envelope__get_packed_size(&env);
    if (need > cap)
        return pst_err_set(err, PST_ERR_ARG, "wire: envelope needs %zu bytes, buffer has %zu",
                           need, cap);
    *len = pstrain__envelope__pack(&env, buf);
    return PST_OK;
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
            return pst_err_set(err, PST_ERR_DATA, "wire: %s holds control character 0x%02x",
                               what, (unsigned)(unsigned char)src[i]);
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return PST_OK;
}

/* Update groups of a HELLO or WELCOME: G in [1, WIRE_MAX_GROUPS], G + 1 strictly increasing
 * offsets from 0 to nparams, finite multipliers >= 0. */
static int unpack_groups(wire_header *h, const Pstrain__LrGroups *g, const char *tn,
                         pst_err *err)
{
    if (!g)
        return PST_OK;
    size_t n = g->n_lr_mults;
    if (n < 1 || n > WIRE_MAX_GROUPS || g->n_offsets != n + 1)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s with %zu update groups and %zu offsets "
                           "(1 to %d groups, one more offset)", tn, n, g->n_offsets,
                           WIRE_MAX_GROUPS);
    for (size_t i = 0; i <= n; i++) {
        h->group_offsets[i] = g->offsets[i];
        if (i > 0 && g->offsets[i] <= g->offsets[i - 1])
            return pst_err_set(err, PST_ERR_DATA, "wire: %s update group %zu is empty or "
                               "reversed", tn, i - 1);
    }
    if (g->offsets[0] != 0 || g->offsets[n] != h->nparams)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s update groups do not cover [0, %llu)", tn,
                           (unsigned long long)h->nparams);
    for (size_t i = 0; i < n; i++) {
        float x = g->lr_mults[i];
        if (!(x >= 0.0f) || x > 3.4e38f) /* NaN, negative or infinite */
            return pst_err_set(err, PST_ERR_DATA, "wire: %s update group %zu has multiplier %g",
                               tn, i, (double)x);
        h->group_mults[i] = x;
    }
    h->ngroups = (int)n;
    return PST_OK;
}

static int unpack_fields(wire_header *h, const Pstrain__Envelope *env, pst_err *err)
{
    if (env->version != WIRE_VERSION)
        return pst_err_set(err, PST_ERR_DATA, "wire: version %u, this build speaks %u",
                           env->version, WIRE_VERSION);
    int t = env->type;
    if (t < WIRE_MSG_ERROR || t > WIRE_MSG_STATUS)
        return pst_err_set(err, PST_ERR_DATA, "wire: unknown message type %d", t);
    const char *tn = wire_type_name((wire_type)t);
    if (env->n_payload_bytes > WIRE_MAX_FRAMES)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s with %zu payload frames (max %d)", tn,
                           env->n_payload_bytes, WIRE_MAX_FRAMES);
    int rc = copy_str(h->role, sizeof h->role, env->role, "role", err);
    if (rc)
        return rc;
    h->version = env->version;
    h->type = (wire_type)t;
    h->request_id = env->request_id;
    h->rank = env->rank;
    if (h->rank < 0)
        return pst_err_set(err, PST_ERR_DATA, "wire: %s from negative rank %d", tn, h->rank);
    h->nframes = (int)env->n_payload_bytes;
    for (size_t i = 0; i < env->n_payload_bytes; i++)
        h->frame_bytes[i] = env->payload_bytes[i];
    h->clock = env->clock;
    h->clock_gap = env->clock_gap;
    h->final = env->final;
    h->checkpoint = env->checkpoint;
    h->generation = env->generation;
    if (env->membership) {
        const Pstrain__Membership *mb = env->membership;
        if (mb->n_generation > WIRE_MAX_WORKERS || mb->n_lost != mb->n_generation ||
            mb->n_done != mb->n_generation || mb->n_server_endpoints > WIRE_MAX_SERVERS ||
            mb->n_server_generation != mb->n_server_endpoints)
            return pst_err_set(err, PST_ERR_DATA, "wire: %s with a membership of %zu/%zu/%zu "
                               "worker and %zu/%zu server entries (max %d, %d)", tn,
                               mb->n_generation, mb->n_lost, mb->n_done,
                               mb->n_server_endpoints, mb->n_server_generation,
                               WIRE_MAX_WORKERS, WIRE_MAX_SERVERS);
        h->nmembers = (int)mb->n_generation;
        for (size_t i = 0; i < mb->n_generation; i++) {
            h->member_gen[i] = mb->generation[i];
            h->member_lost[i] = mb->lost[i] != 0;
            h->member_done[i] = mb->done[i] != 0;
        }
        h->nmember_servers = (int)mb->n_server_endpoints;
        for (size_t i = 0; i < mb->n_server_endpoints; i++) {
            h->member_server_gen[i] = mb->server_generation[i];
            if ((rc = copy_str(h->member_server_ep[i], WIRE_ENDPOINT_MAX,
                               mb->server_endpoints[i], "server endpoint", err)))
                return rc;
        }
    }

    if (has_range_type(t)) {
        if (!env->range)
            return pst_err_set(err, PST_ERR_DATA, "wire: %s without a range", tn);
        h->has_range = 1;
        h->offset = env->range->offset;
        h->len = env->range->len;
        if (h->len == 0 || h->offset + h->len < h->offset)
            return pst_err_set(err, PST_ERR_DATA, "wire: %s with bad range [%llu, +%llu)", tn,
                               (unsigned long long)h->offset, (unsigned long long)h->len);
        /* Messages carrying floats carry exactly one frame of len floats. */
        int carries = t != WIRE_MSG_PULL;
        if (carries && (h->nframes != 1 || h->frame_bytes[0] != h->len * sizeof(float) ||
                        h->len > UINT64_MAX / sizeof(float)))
            return pst_err_set(err, PST_ERR_DATA,
                               "wire: %s of %llu floats must declare one frame of %llu bytes",
                               tn, (unsigned long long)h->len,
                               (unsigned long long)(h->len * sizeof(float)));
        if (!carries && h->nframes != 0)
            return pst_err_set(err, PST_ERR_DATA, "wire: PULL with %d payload frames", h->nframes);
        if (h->clock < 0)
            return pst_err_set(err, PST_ERR_DATA, "wire: %s with negative clock %lld", tn,
                               (long long)h->clock);
    } else if (t == WIRE_MSG_STATUS) {
        /* The answer carries the document (JSON); the request nothing. */
        if (h->nframes > 1 || (h->nframes == 1 && h->frame_bytes[0] > WIRE_MAX_STATUS))
            return pst_err_set(err, PST_ERR_DATA, "wire: STATUS with %d frames (%llu bytes)",
                               h->nframes,
                               (unsigned long long)(h->nframes ? h->frame_bytes[0] : 0));
    } else if (h->nframes != 0) {
        return pst_err_set(err, PST_ERR_DATA, "wire: %s with %d payload frames", tn, h->nframes);
    }

    switch (t) {
    case WIRE_MSG_ERROR:
        if (!env->error)
            return pst_err_set(err, PST_ERR_DATA, "wire: ERROR without error fields");
        h->error_code = env->error->code;
        snprintf(h->error_text, sizeof h->error_text, "%s",
                 env->error->text ? env->error->text : "");
        /* The peer's text becomes the receiver's one-line error message: no line breaks. */
        for (char *c = h->error_text; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = ' ';
        break;
    case WIRE_MSG_HELLO:
        if (!env->hello)
            return pst_err_set(err, PST_ERR_DATA, "wire: HELLO without hello fields");
        if ((rc = copy_str(h->endpoint, sizeof h->endpoint, env->hello->endpoint, "endpoint",
                           err)))
            return rc;
        h->nparams = env->hello->nparams;
        h->job_hash = env->hello->job_hash;
        h->pid = env->hello->pid;
        h->steps = env->hello->steps;
        if ((rc = unpack_groups(h, env->hello->groups, tn, err)))
            return rc;
        if (env->hello->n_checkpoint_clocks > WIRE_MAX_CKPTS)
            return pst_err_set(err, PST_ERR_DATA, "wire: HELLO with %zu checkpoint clocks "
                               "(max %d)", env->hello->n_checkpoint_clocks, WIRE_MAX_CKPTS);
        h->nckpt = (int)env->hello->n_checkpoint_clocks;
        h->ckpt_any = env->hello->checkpoint_any_clock;
        for (int i = 0; i < h->nckpt; i++) {
            h->ckpt_clocks[i] = env->hello->checkpoint_clocks[i];
            if (h->ckpt_clocks[i] < 0)
                return pst_err_set(err, PST_ERR_DATA, "wire: HELLO with negative checkpoint "
                                   "clock %lld", (long long)h->ckpt_clocks[i]);
        }
        break;
    case WIRE_MSG_WELCOME: {
        const Pstrain__Welcome *w = env->welcome;
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
        if (h->resume_clock < 0)
            return pst_err_set(err, PST_ERR_DATA, "wire: WELCOME with negative resume clock");
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
            return pst_err_set(err, PST_ERR_DATA,
                               "wire: WELCOME shard map does not cover [0, %llu)",
                               (unsigned long long)h->nparams);
        if ((rc = unpack_groups(h, w->groups, tn, err)))
            return rc;
        break;
    }
    default:
        break;
    }
    if (env->progress) {
        h->has_progress = 1;
        h->epoch = env->progress->epoch;
        h->step = env->progress->step;
        h->loss = env->progress->loss;
        h->samples_per_s = env->progress->samples_per_s;
        h->test_accuracy = env->progress->test_accuracy;
    }
    if (env->stats) {
        h->has_stats = 1;
        h->pushes = env->stats->pushes;
        h->pulls = env->stats->pulls;
        h->bytes_in = env->stats->bytes_in;
        h->bytes_out = env->stats->bytes_out;
        h->max_clock_gap = env->stats->max_clock_gap;
        h->updates = env->stats->updates;
        h->nonfinite = env->stats->nonfinite;
        h->repeats = env->stats->repeats;
    }
    return PST_OK;
}

int wire_unpack(wire_header *h, const uint8_t *buf, size_t len, pst_err *err)
{
    memset(h, 0, sizeof *h);
    if (len > WIRE_MAX_META)
        return pst_err_set(err, PST_ERR_DATA, "wire: envelope of %zu bytes exceeds %d", len,
                           WIRE_MAX_META);
    Pstrain__Envelope *env = pstrain__envelope__unpack(NULL, len, buf);
    if (!env)
        return pst_err_set(err, PST_ERR_DATA, "wire: envelope of %zu bytes does not parse", len);
    int rc = unpack_fields(h, env, err);
    pstrain__envelope__free_unpacked(env, NULL);
    return rc;
}

int wire_check_frames(const wire_header *h, int nframes, const size_t *sizes, pst_err *err)
{
    if (nframes != h->nframes)
        return pst_err_set(err, PST_ERR_DATA, "wire: %d payload frames arrived, header says %d",
                           nframes, h->nframes);
    for (int i = 0; i < nframes; i++)
        if ((uint64_t)sizes[i] != h->frame_bytes[i])
            return pst_err_set(err, PST_ERR_DATA,
                               "wire: frame %d has %zu bytes, header says %llu", i + 1,
                               sizes[i], (unsigned long long)h->frame_bytes[i]);
    return PST_OK;
}
