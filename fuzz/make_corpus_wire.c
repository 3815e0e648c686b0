/* fuzz/make_corpus_wire.c -- writes the seed corpus of fuzz_wire: one packed envelope of
 * every message type with the fields a real exchange fills (see proto/pstrain.proto), as
 * files OUT_DIR/<type>.bin. Run by fuzz/make_corpus.sh; not part of pstrain. */
#include <stdio.h>
#include <string.h>

#include "proto/wire.h"

static int emit(const char *dir, const char *name, const wire_env *e, const wire_body *b)
{
    static uint8_t buf[WIRE_MAX_META];
    size_t len = 0;
    pst_err err = {0};
    if (wire_pack(e, b, buf, sizeof buf, &len, &err)) {
        fprintf(stderr, "make_corpus_wire: %s: %s\n", name, err.msg);
        return 1;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

static int emit_hellos(const char *d)
{
    wire_env e;
    int bad = 0;
    wire_env_init(&e, WIRE_MSG_ERROR, "server", 1);
    wire_error x = {.code = 5, .text = "range [0, 10) is outside my shard"};
    bad |= emit(d, "error", &e, &(wire_body){.error = &x});

    wire_env_init(&e, WIRE_MSG_HELLO, "worker", 2);
    wire_hello h = {.endpoint = "tcp://127.0.0.1:5555",
                    .nparams = 1000,
                    .job_hash = 0x1234567890abcdefull,
                    .pid = 4242,
                    .steps = 300,
                    .groups = {.n = 2, .offsets = {0, 400, 1000}, .mults = {0.0f, 1.0f}}};
    bad |= emit(d, "hello_worker", &e, &(wire_body){.hello = &h});

    wire_env_init(&e, WIRE_MSG_HELLO, "server", 0);
    wire_hello hs = {.endpoint = "tcp://10.0.0.2:6000",
                     .nparams = 1000,
                     .nckpt = 3,
                     .ckpt_clocks = {30, 20, 10}};
    bad |= emit(d, "hello_server", &e, &(wire_body){.hello = &hs});
    return bad;
}

static int emit_welcomes(const char *d)
{
    static wire_welcome w, r; /* 20 KB each */
    wire_env e;
    int bad = 0;
    wire_env_init(&e, WIRE_MSG_WELCOME, "coordinator", 0);
    w.num_servers = 2;
    w.num_workers = 3;
    w.nparams = 1000;
    w.total_updates = 900;
    w.resume = 1;
    w.resume_clock = 20;
    snprintf(w.server_endpoints[0], WIRE_ENDPOINT_MAX, "tcp://10.0.0.2:6000");
    snprintf(w.server_endpoints[1], WIRE_ENDPOINT_MAX, "tcp://10.0.0.3:6000");
    w.shard_offsets[1] = 500;
    w.shard_offsets[2] = 1000;
    w.groups.n = 1;
    w.groups.offsets[1] = 1000;
    w.groups.mults[0] = 1.0f;
    bad |= emit(d, "welcome", &e, &(wire_body){.welcome = &w});

    /* The WELCOME of a worker rejoining under its rank. */
    r.num_servers = 1;
    r.num_workers = 2;
    r.nparams = 100;
    snprintf(r.server_endpoints[0], WIRE_ENDPOINT_MAX, "tcp://10.0.0.2:6000");
    r.shard_offsets[1] = 100;
    r.rejoin = 1;
    r.generation = 4;
    bad |= emit(d, "welcome_rejoin", &e, &(wire_body){.welcome = &r});
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus_wire OUT_DIR\n");
        return 2;
    }
    const char *d = argv[1];
    wire_env e;
    int bad = emit_hellos(d) | emit_welcomes(d);

    static const wire_type ranged[4] = {WIRE_MSG_INIT, WIRE_MSG_PUSH, WIRE_MSG_PULL,
                                        WIRE_MSG_PULL_REPLY};
    static const char *const rnames[4] = {"init", "push", "pull", "pull_reply"};
    for (int i = 0; i < 4; i++) {
        wire_env_init(&e, ranged[i], ranged[i] == WIRE_MSG_PULL_REPLY ? "server" : "worker", 1);
        e.request_id = 77;
        e.clock = 12;
        wire_range r = {
            .offset = 500, .len = 250, .clock_gap = 1, .checkpoint = ranged[i] == WIRE_MSG_PUSH};
        if (ranged[i] != WIRE_MSG_PULL) {
            e.nframes = 1;
            e.frame_bytes[0] = 250 * sizeof(float);
        }
        bad |= emit(d, rnames[i], &e, &(wire_body){.range = &r});
    }
    /* cluster.compression: halves both ways, a top-k push of 5 entries, a pull asking for
     * bfloat16 (Range.encoding and nnz). */
    static const struct {
        wire_type t;
        wire_enc enc;
        const char *name;
    } coded[5] = {{WIRE_MSG_PUSH, WIRE_ENC_F16, "push_f16"},
                  {WIRE_MSG_PULL_REPLY, WIRE_ENC_F16, "pull_reply_f16"},
                  {WIRE_MSG_PUSH, WIRE_ENC_BF16, "push_bf16"},
                  {WIRE_MSG_PULL, WIRE_ENC_BF16, "pull_bf16"},
                  {WIRE_MSG_PUSH, WIRE_ENC_TOPK, "push_topk"}};
    for (int i = 0; i < 5; i++) {
        wire_env_init(&e, coded[i].t, coded[i].t == WIRE_MSG_PULL_REPLY ? "server" : "worker", 1);
        e.request_id = 80;
        e.clock = 12;
        wire_range r = {.offset = 500, .len = 250, .enc = coded[i].enc};
        if (coded[i].enc == WIRE_ENC_TOPK) {
            r.nnz = 5;
            e.nframes = 2;
            e.frame_bytes[0] = 5 * sizeof(uint32_t);
            e.frame_bytes[1] = 5 * sizeof(float);
        } else if (coded[i].t != WIRE_MSG_PULL) {
            e.nframes = 1;
            e.frame_bytes[0] = 250 * sizeof(uint16_t);
        }
        bad |= emit(d, coded[i].name, &e, &(wire_body){.range = &r});
    }

    wire_env_init(&e, WIRE_MSG_PROGRESS, "worker", 0);
    wire_progress p = {
        .epoch = 3, .step = 120, .loss = 0.25, .samples_per_s = 10000.0, .test_accuracy = 0.9};
    bad |= emit(d, "progress", &e, &(wire_body){.progress = &p});
    e.type = WIRE_MSG_DONE;
    bad |= emit(d, "done", &e, &(wire_body){.progress = &p});
    e.type = WIRE_MSG_STOP;
    e.clock = 120;
    wire_progress ps = p;
    ps.stop_signal = 15;
    bad |= emit(d, "stop", &e, &(wire_body){.progress = &ps});

    /* A sparse step: 3 keys of a dim-4 table pushed, pulled and answered. */
    static const wire_type sparse[3] = {WIRE_MSG_SPUSH, WIRE_MSG_SPULL, WIRE_MSG_SPULL_REPLY};
    static const char *const snames[3] = {"spush", "spull", "spull_reply"};
    for (int i = 0; i < 3; i++) {
        wire_env_init(&e, sparse[i], sparse[i] == WIRE_MSG_SPULL_REPLY ? "server" : "worker", 1);
        e.request_id = 79;
        e.clock = 12;
        wire_sparse sp = {.table = 1, .nkeys = 3, .dim = 4, .train = sparse[i] != WIRE_MSG_SPUSH};
        uint64_t kb = 3 * sizeof(uint64_t), rb = 3 * 4 * sizeof(float);
        e.nframes = sparse[i] == WIRE_MSG_SPUSH ? 2 : 1;
        e.frame_bytes[0] = sparse[i] == WIRE_MSG_SPULL_REPLY ? rb : kb;
        e.frame_bytes[1] = sparse[i] == WIRE_MSG_SPUSH ? rb : 0;
        bad |= emit(d, snames[i], &e, &(wire_body){.sparse = &sp});
    }

    wire_env_init(&e, WIRE_MSG_BYE, "server", 1);
    wire_stats st = {.pushes = 100,
                     .pulls = 100,
                     .bytes_in = 1 << 20,
                     .bytes_out = 1 << 20,
                     .updates = 100,
                     .max_clock_gap = 2};
    bad |= emit(d, "bye", &e, &(wire_body){.stats = &st});

    /* Fault tolerance: an acknowledgement and a heartbeat reply with the workers'
     * membership (generations, one lost). */
    wire_env_init(&e, WIRE_MSG_ACK, "server", 0);
    e.request_id = 78;
    e.generation = 2;
    e.clock = 12;
    bad |= emit(d, "ack", &e, NULL);
    wire_env_init(&e, WIRE_MSG_HEARTBEAT, "coordinator", 0);
    e.generation = 1;
    static wire_membership m;
    m.nworkers = 3;
    m.gen[0] = 1;
    m.gen[1] = 3;
    m.gen[2] = 1;
    m.lost[2] = 1;
    bad |= emit(d, "heartbeat", &e, &(wire_body){.membership = &m});

    wire_env_init(&e, WIRE_MSG_SHUTDOWN, "coordinator", 0);
    bad |= emit(d, "shutdown", &e, NULL);
    wire_env_init(&e, WIRE_MSG_BARRIER, "worker", 3);
    e.clock = 5;
    bad |= emit(d, "barrier", &e, NULL);
    return bad;
}
