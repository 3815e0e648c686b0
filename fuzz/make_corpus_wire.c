/* fuzz/make_corpus_wire.c -- writes the seed corpus of fuzz_wire: one packed envelope of
 * every message type with the fields a real exchange fills (see proto/pstrain.proto), as
 * files OUT_DIR/<type>.bin. Run by fuzz/make_corpus.sh; not part of pstrain. */
#include <stdio.h>
#include <string.h>

#include "proto/wire.h"

static int emit(const char *dir, const char *name, const wire_header *h)
{
    static uint8_t buf[WIRE_MAX_META];
    size_t len = 0;
    pst_err err = {0};
    if (wire_pack(h, buf, sizeof buf, &len, &err)) {
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

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus_wire OUT_DIR\n");
        return 2;
    }
    const char *d = argv[1];
    wire_header h;
    int bad = 0;

    wire_header_init(&h, WIRE_MSG_ERROR, "server", 1);
    h.error_code = 5;
    snprintf(h.error_text, sizeof h.error_text, "range [0, 10) is outside my shard");
    bad |= emit(d, "error", &h);

    wire_header_init(&h, WIRE_MSG_HELLO, "worker", 2);
    snprintf(h.endpoint, sizeof h.endpoint, "tcp://127.0.0.1:5555");
    h.nparams = 1000;
    h.job_hash = 0x1234567890abcdefull;
    h.pid = 4242;
    h.steps = 300;
    h.ngroups = 2;
    h.group_offsets[1] = 400;
    h.group_offsets[2] = 1000;
    h.group_mults[0] = 0.0f;
    h.group_mults[1] = 1.0f;
    bad |= emit(d, "hello_worker", &h);

    wire_header_init(&h, WIRE_MSG_HELLO, "server", 0);
    snprintf(h.endpoint, sizeof h.endpoint, "tcp://10.0.0.2:6000");
    h.nparams = 1000;
    h.nckpt = 3;
    h.ckpt_clocks[0] = 30;
    h.ckpt_clocks[1] = 20;
    h.ckpt_clocks[2] = 10;
    bad |= emit(d, "hello_server", &h);

    wire_header_init(&h, WIRE_MSG_WELCOME, "coordinator", 0);
    h.num_servers = 2;
    h.num_workers = 3;
    h.nparams = 1000;
    h.total_updates = 900;
    h.resume = 1;
    h.resume_clock = 20;
    snprintf(h.server_endpoints[0], WIRE_ENDPOINT_MAX, "tcp://10.0.0.2:6000");
    snprintf(h.server_endpoints[1], WIRE_ENDPOINT_MAX, "tcp://10.0.0.3:6000");
    h.shard_offsets[1] = 500;
    h.shard_offsets[2] = 1000;
    h.ngroups = 1;
    h.group_offsets[1] = 1000;
    h.group_mults[0] = 1.0f;
    bad |= emit(d, "welcome", &h);

    static const wire_type ranged[4] = {WIRE_MSG_INIT, WIRE_MSG_PUSH, WIRE_MSG_PULL,
                                        WIRE_MSG_PULL_REPLY};
    static const char *const rnames[4] = {"init", "push", "pull", "pull_reply"};
    for (int i = 0; i < 4; i++) {
        wire_header_init(&h, ranged[i], ranged[i] == WIRE_MSG_PULL_REPLY ? "server" : "worker", 1);
        h.request_id = 77;
        h.has_range = 1;
        h.offset = 500;
        h.len = 250;
        h.clock = 12;
        h.clock_gap = 1;
        h.checkpoint = ranged[i] == WIRE_MSG_PUSH;
        if (ranged[i] != WIRE_MSG_PULL) {
            h.nframes = 1;
            h.frame_bytes[0] = 250 * sizeof(float);
        }
        bad |= emit(d, rnames[i], &h);
    }

    wire_header_init(&h, WIRE_MSG_PROGRESS, "worker", 0);
    h.has_progress = 1;
    h.epoch = 3;
    h.step = 120;
    h.loss = 0.25;
    h.samples_per_s = 10000.0;
    h.test_accuracy = 0.9;
    bad |= emit(d, "progress", &h);
    h.type = WIRE_MSG_DONE;
    h.final = 1;
    bad |= emit(d, "done", &h);

    wire_header_init(&h, WIRE_MSG_BYE, "server", 1);
    h.has_stats = 1;
    h.pushes = 100;
    h.pulls = 100;
    h.bytes_in = 1 << 20;
    h.bytes_out = 1 << 20;
    h.updates = 100;
    h.max_clock_gap = 2;
    bad |= emit(d, "bye", &h);

    /* Fault tolerance: an acknowledgement, a heartbeat reply with the workers' membership
     * (generations, one lost), and the WELCOME of a worker rejoining under its rank. */
    wire_header_init(&h, WIRE_MSG_ACK, "server", 0);
    h.request_id = 78;
    h.generation = 2;
    h.clock = 12;
    bad |= emit(d, "ack", &h);
    wire_header_init(&h, WIRE_MSG_HEARTBEAT, "coordinator", 0);
    h.generation = 1;
    h.nmembers = 3;
    h.member_gen[0] = 1;
    h.member_gen[1] = 3;
    h.member_gen[2] = 1;
    h.member_lost[2] = 1;
    bad |= emit(d, "heartbeat", &h);
    wire_header_init(&h, WIRE_MSG_WELCOME, "coordinator", 0);
    h.num_servers = 1;
    h.num_workers = 2;
    h.nparams = 100;
    snprintf(h.server_endpoints[0], WIRE_ENDPOINT_MAX, "tcp://10.0.0.2:6000");
    h.shard_offsets[1] = 100;
    h.rejoin = 1;
    h.generation = 4;
    bad |= emit(d, "welcome_rejoin", &h);

    wire_header_init(&h, WIRE_MSG_SHUTDOWN, "coordinator", 0);
    bad |= emit(d, "shutdown", &h);
    wire_header_init(&h, WIRE_MSG_BARRIER, "worker", 3);
    h.clock = 5;
    bad |= emit(d, "barrier", &h);
    return bad;
}
