/* tests/hostile_client.c -- a misbehaving peer for tests/cli/test_dist_bad_peer.sh.
 *
 * usage: hostile_client SERVER_ENDPOINT COORDINATOR_ENDPOINT
 *        hostile_client [--curve SERVER_PUB CLIENT_KEY] --refused SERVER_EP COORDINATOR_EP
 *        hostile_client --curve SERVER_PUB CLIENT_KEY --impersonate JOB_HASH COORDINATOR_EP
 *        hostile_client --flood N SERVER_EP COORDINATOR_EP
 *
 * --flood (tests/cli/test_dist_bad_peer.sh): N malformed messages to the server (random
 * bytes and PUSH envelopes without their gradient frame, in turn) and N to the coordinator
 * (random bytes and DONEs forged as worker 0 from this connection, in turn), as fast as
 * the connections take them, to check that the warnings about them are limited per peer
 * and the refusals counted. Exits 0 when all 2N went out.
 *
 * --refused (tests/cli/test_auth.sh, a job with CURVE on): as a client the job does not
 * admit -- plaintext, or CURVE with the key in CLIENT_KEY, which is not in the job's
 * allow-list -- sends a PUSH and a PULL as worker 0 to the server and a DONE as worker 0
 * to the coordinator, then listens for REFUSED_WAIT_MS. Exits 0 when no message could be
 * delivered or answered (each send times out or goes unanswered), 1 when any answer came.
 *
 * --impersonate (tests/cli/test_auth.sh): with a listed client key, claims to be a
 * restarted server[0] of the running job -- a HELLO as server 0 with the job's fingerprint
 * JOB_HASH (16 hex digits, as a checkpoint's job_hash holds it), then a HEARTBEAT as its
 * new incarnation -- and listens for REFUSED_WAIT_MS. Exits 0 when the coordinator refused
 * (an ERROR or nothing came back), 1 when it answered with a WELCOME or a HEARTBEAT.
 *
 * Connects to a running job's server and coordinator on connections of its own and sends
 * what a broken or forging client might: random bytes, truncated multipart messages, an
 * envelope of another version, requests that claim to come from the job's workers (a PUSH
 * outside the shard, a NaN gradient, DONE, INIT, a final PULL), a frame length the frame
 * does not have, too many frames and, last, a frame over the server's size limit. The
 * server must answer every forged request and the envelope of another version with an
 * ERROR and drop the rest, the coordinator answer its envelope of another version; the
 * job must not notice. Prints one line per message sent and per ERROR received; exits 0
 * when every message went out and all those were answered with an ERROR, 1 otherwise.
 * Random bytes come from a fixed seed, so every run sends the same thing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "net/net.h"
#include "proto/msg.h"

#define TIMEOUT_MS 5000

typedef struct {
    net_sock *s;
    void *raw; /* a plain libzmq DEALER to the same peer: net_send refuses > 8 frames */
    const char *name;
    int sent, failed;
    int send_ms; /* how long a send may wait for the connection; 0: TIMEOUT_MS */
} conn;

static uint64_t next_random(uint64_t *x)
{
    /* xorshift64 (Marsaglia 2003): deterministic junk, no quality needed */
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void fill_random(uint8_t *b, size_t n, uint64_t *seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)next_random(seed);
}

static void send_frames(conn *c, const char *what, const net_frame *f, int n)
{
    pst_err err = {0};
    if (net_send(c->s, f, n, c->send_ms ? c->send_ms : TIMEOUT_MS, &err)) {
        printf("%s: could not send %s: %s\n", c->name, what, err.msg);
        c->failed++;
        return;
    }
    c->sent++;
    printf("%s: sent %s\n", c->name, what);
}

/* Sends h packed exactly as given (frame count and lengths included), then the frames. */
static void send_envelope(conn *c, const char *what, const wire_env *h, const wire_body *b,
                          size_t cut, const net_frame *payload, int npayload)
{
    uint8_t meta[WIRE_MAX_META];
    size_t len = 0;
    pst_err err = {0};
    if (wire_pack(h, b, meta, sizeof meta, &len, &err)) {
        printf("%s: cannot pack %s: %s\n", c->name, what, err.msg);
        c->failed++;
        return;
    }
    net_frame f[NET_MAX_FRAMES];
    f[0] = (net_frame){.data = meta, .len = cut && cut < len ? cut : len};
    for (int i = 0; i < npayload; i++)
        f[1 + i] = payload[i];
    send_frames(c, what, f, 1 + npayload);
}

/* A PUSH as worker `rank` of [off, off + len) with gradient g (len floats). */
static void send_push(conn *c, const char *what, int rank, uint64_t off, const float *g,
                      uint64_t len)
{
    wire_env h;
    wire_env_init(&h, WIRE_MSG_PUSH, "worker", rank);
    h.request_id = 900 + (uint64_t)c->sent;
    h.nframes = 1;
    h.frame_bytes[0] = len * sizeof(float);
    wire_range r = {.offset = off, .len = len};
    net_frame f = {.data = g, .len = (size_t)len * sizeof(float)};
    send_envelope(c, what, &h, &(wire_body){.range = &r}, 0, &f, 1);
}

static void attack_server(conn *c, uint64_t *seed, int *forged)
{
    uint8_t junk[3][200];
    for (int i = 0; i < 3; i++)
        fill_random(junk[i], sizeof junk[i], seed);
    net_frame f[NET_MAX_FRAMES + 4];
    f[0] = (net_frame){.data = junk[0], .len = sizeof junk[0]};
    send_frames(c, "200 random bytes", f, 1);
    for (int i = 0; i < 3; i++)
        f[i] = (net_frame){.data = junk[i], .len = 37 + (size_t)i * 50};
    send_frames(c, "3 frames of random bytes", f, 3);

    float g[4] = {0.5f, -0.5f, 0.25f, 1};
    wire_env h;
    wire_env_init(&h, WIRE_MSG_PUSH, "worker", 0);
    wire_range r4 = {.offset = 0, .len = 4};
    wire_body b4 = {.range = &r4};
    h.nframes = 1;
    h.frame_bytes[0] = sizeof g;
    send_envelope(c, "a PUSH envelope without its gradient frame", &h, &b4, 0, NULL, 0);
    net_frame gf = {.data = g, .len = sizeof g};
    send_envelope(c, "a PUSH envelope cut to 5 bytes", &h, &b4, 5, &gf, 1);
    wire_env v;
    wire_env_init(&v, WIRE_MSG_PULL, "worker", 0);
    v.version = 99;
    send_envelope(c, "a PULL of wire version 99", &v, &b4, 0, NULL, 0);
    (*forged)++; /* answered with an ERROR naming both versions (proto/pstrain.proto) */

    /* Forged requests: valid messages naming the job's workers from another connection,
     * or a worker the job does not have. Each must be answered with an ERROR. */
    send_push(c, "a PUSH as worker 0 outside the shard", 0, (uint64_t)1 << 30, g, 4);
    (*forged)++;
    send_push(c, "a PUSH as worker 0", 0, 0, g, 4);
    (*forged)++;
    float nan_g[4] = {1, NAN, 1, 1};
    send_push(c, "a PUSH as worker 1 with a NaN gradient", 1, 0, nan_g, 4);
    (*forged)++;
    send_push(c, "a PUSH as worker 7 (the job has 2)", 7, 0, g, 4);
    (*forged)++;
    wire_env d;
    wire_env_init(&d, WIRE_MSG_DONE, "worker", 1);
    d.request_id = 950;
    send_envelope(c, "a DONE as worker 1", &d, NULL, 0, NULL, 0);
    (*forged)++;
    wire_env in;
    wire_env_init(&in, WIRE_MSG_INIT, "worker", 0);
    in.request_id = 951;
    in.nframes = 1;
    in.frame_bytes[0] = sizeof g;
    send_envelope(c, "an INIT as worker 0", &in, &b4, 0, &gf, 1);
    (*forged)++;
    wire_env p;
    wire_env_init(&p, WIRE_MSG_PULL, "worker", 0);
    p.request_id = 952;
    wire_range fin = {.offset = 0, .len = 4, .final = 1};
    send_envelope(c, "a final PULL as worker 0", &p, &(wire_body){.range = &fin}, 0, NULL, 0);
    (*forged)++;

    /* A frame length the frame does not have: 1 GiB declared, 16 bytes sent. */
    wire_range big = {.offset = 0, .len = (uint64_t)1 << 28};
    h.frame_bytes[0] = big.len * sizeof(float);
    send_envelope(c, "a PUSH declaring a 1 GiB frame with 16 bytes", &h,
                  &(wire_body){.range = &big}, 0, &gf, 1);
    int n = NET_MAX_FRAMES + 4, rc = 0;
    for (int i = 0; i < n && rc >= 0; i++)
        rc = zmq_send(c->raw, junk[i % 3], 8, i + 1 < n ? ZMQ_SNDMORE : 0);
    if (rc < 0) {
        printf("%s: could not send a message of %d frames: %s\n", c->name, n,
               zmq_strerror(zmq_errno()));
        c->failed++;
    } else
        printf("%s: sent a message of %d frames\n", c->name, n);
}

/* Reads the server's answers until `want` ERRORs came or the deadline passed. */
static int read_errors(conn *c, int want)
{
    pst_err err = {0};
    net_msg *m = net_msg_create(&err);
    msg_in *in = malloc(sizeof *in);
    int got = 0;
    if (!m || !in) {
        printf("%s: out of memory\n", c->name);
        goto done;
    }
    int64_t deadline = net_now_ms() + TIMEOUT_MS;
    while (got < want) {
        int left = (int)(deadline - net_now_ms());
        if (left <= 0)
            break;
        int rc = msg_recv(c->s, m, 0, in, left, &err);
        if (rc == PST_ERR_TIMEOUT)
            break;
        if (rc) {
            printf("%s: bad reply: %s\n", c->name, err.msg);
            continue;
        }
        if (in->h.type == WIRE_MSG_ERROR) {
            got++;
            printf("%s: ERROR for request %llu: %s\n", c->name,
                   (unsigned long long)in->h.request_id, in->b.error->text);
        } else
            printf("%s: unexpected %s\n", c->name, wire_type_name(in->h.type));
    }
done:
    free(in);
    net_msg_destroy(m);
    return got;
}

static void attack_coordinator(conn *c, uint64_t *seed)
{
    uint8_t junk[64];
    fill_random(junk, sizeof junk, seed);
    net_frame f = {.data = junk, .len = sizeof junk};
    send_frames(c, "64 random bytes", &f, 1);
    wire_env h;
    wire_env_init(&h, WIRE_MSG_DONE, "worker", 0);
    h.version = 99;
    send_envelope(c, "a DONE of wire version 99", &h, NULL, 0, NULL, 0);
    /* Forged DONEs would end the job early if the coordinator believed them. */
    wire_progress far = {.epoch = 1000}, none = {0};
    for (int w = 0; w < 2; w++) {
        wire_env_init(&h, WIRE_MSG_DONE, "worker", w);
        char what[64];
        snprintf(what, sizeof what, "a DONE as worker %d", w);
        send_envelope(c, what, &h, &(wire_body){.progress = &far}, 0, NULL, 0);
    }
    wire_env_init(&h, WIRE_MSG_PROGRESS, "worker", 1);
    send_envelope(c, "a PROGRESS as worker 1", &h, &(wire_body){.progress = &none}, 0, NULL, 0);
    wire_env_init(&h, WIRE_MSG_HELLO, "server", 0);
    wire_hello hello = {.endpoint = "tcp://127.0.0.1:1"};
    send_envelope(c, "a HELLO as server 0", &h, &(wire_body){.hello = &hello}, 0, NULL, 0);
    wire_env_init(&h, WIRE_MSG_BYE, "server", 1);
    send_envelope(c, "a BYE as server 1", &h, NULL, 0, NULL, 0);
}

#define REFUSED_WAIT_MS 3000

/* --refused: see the top of this file. */
static int refused_mode(const char *server_pub, const char *client_key, const char *srv_ep,
                        const char *crd_ep)
{
    pst_err err = {0};
    int answered = 0, ok = 0;
    net_ctx *ctx = net_ctx_create(1, &err);
    net_msg *m = net_msg_create(&err);
    /* A refused client never gets a connection: its sends wait for one a second. */
    conn srv = {.name = "server", .send_ms = 1000}, crd = {.name = "coordinator", .send_ms = 1000};
    net_curve_files cf = {.server_public = server_pub, .client_secret = client_key};
    net_opts so = {.identity = "intruder", .linger_ms = 1};
    if (!ctx || !m || (server_pub && net_ctx_curve(ctx, &cf, NULL, &err)) ||
        !(srv.s = net_sock_create(ctx, NET_DEALER, &so, &err)) ||
        !(crd.s = net_sock_create(ctx, NET_DEALER, &so, &err)) ||
        net_sock_connect(srv.s, srv_ep, &err) || net_sock_connect(crd.s, crd_ep, &err)) {
        fprintf(stderr, "hostile_client: %s\n", err.msg);
        goto cleanup;
    }
    printf("as a %s client (a send only queues until a connection is accepted)\n",
           server_pub ? "CURVE" : "plaintext");
    float g[4] = {0.5f, -0.5f, 0.25f, 1};
    send_push(&srv, "a PUSH as worker 0", 0, 0, g, 4);
    wire_env h;
    wire_env_init(&h, WIRE_MSG_PULL, "worker", 0);
    h.request_id = 960;
    wire_range r = {.offset = 0, .len = 4};
    send_envelope(&srv, "a PULL as worker 0", &h, &(wire_body){.range = &r}, 0, NULL, 0);
    wire_env_init(&h, WIRE_MSG_DONE, "worker", 0);
    wire_progress far = {.epoch = 1000};
    send_envelope(&crd, "a DONE as worker 0", &h, &(wire_body){.progress = &far}, 0, NULL, 0);
    /* Listen on both connections at once for the whole wait. */
    int64_t deadline = net_now_ms() + REFUSED_WAIT_MS;
    conn *cs[2] = {&srv, &crd};
    net_sock *socks[2] = {srv.s, crd.s};
    int heard[2] = {0, 0};
    for (int left; (left = (int)(deadline - net_now_ms())) > 0;) {
        uint64_t ready = 0;
        if (net_poll(socks, 2, left, &ready, &err) == PST_ERR_TIMEOUT)
            break;
        for (int i = 0; i < 2; i++)
            if ((ready >> i & 1) && net_recv(cs[i]->s, m, 0, &err) == PST_OK) {
                printf("%s: ANSWERED with a message of %d frames\n", cs[i]->name, net_msg_count(m));
                heard[i] = 1;
                answered++;
            }
    }
    for (int i = 0; i < 2; i++)
        if (!heard[i])
            printf("%s: no answer in %d ms\n", cs[i]->name, REFUSED_WAIT_MS);
    printf("%d message(s) sent, %d could not be sent, %d answered\n", srv.sent + crd.sent,
           srv.failed + crd.failed, answered);
    ok = answered == 0;
cleanup:
    net_msg_destroy(m);
    net_sock_destroy(srv.s);
    net_sock_destroy(crd.s);
    net_ctx_destroy(ctx);
    fflush(stdout);
    return ok ? 0 : 1;
}

/* --impersonate: see the top of this file. */
static int impersonate_mode(const char *server_pub, const char *client_key, const char *hash,
                            const char *crd_ep)
{
    pst_err err = {0};
    int accepted = 0, errors = 0;
    net_ctx *ctx = net_ctx_create(1, &err);
    net_msg *m = net_msg_create(&err);
    msg_in *in = malloc(sizeof *in);
    conn crd = {.name = "coordinator"};
    net_curve_files cf = {.server_public = server_pub, .client_secret = client_key};
    net_opts so = {.identity = "server-0-1", .linger_ms = 1};
    if (!ctx || !m || !in || net_ctx_curve(ctx, &cf, NULL, &err) ||
        !(crd.s = net_sock_create(ctx, NET_DEALER, &so, &err)) ||
        net_sock_connect(crd.s, crd_ep, &err)) {
        fprintf(stderr, "hostile_client: %s\n", err.msg);
        accepted = 1;
        goto cleanup;
    }
    wire_env h;
    wire_env_init(&h, WIRE_MSG_HELLO, "server", 0);
    h.request_id = 970;
    wire_hello hello = {
        .job_hash = strtoull(hash, NULL, 16), .pid = 1, .endpoint = "tcp://127.0.0.1:1"};
    send_envelope(&crd, "a HELLO as a restarted server 0", &h, &(wire_body){.hello = &hello}, 0,
                  NULL, 0);
    wire_env_init(&h, WIRE_MSG_HEARTBEAT, "server", 0);
    h.request_id = 971;
    h.generation = 2;
    send_envelope(&crd, "a HEARTBEAT as server 0 incarnation 2", &h, NULL, 0, NULL, 0);
    for (int64_t deadline = net_now_ms() + REFUSED_WAIT_MS;;) {
        int left = (int)(deadline - net_now_ms());
        if (left <= 0)
            break;
        int rc = msg_recv(crd.s, m, 0, in, left, &err);
        if (rc == PST_ERR_TIMEOUT)
            break;
        if (rc) {
            printf("coordinator: bad reply: %s\n", err.msg);
            continue;
        }
        if (in->h.type == WIRE_MSG_ERROR) {
            errors++;
            printf("coordinator: ERROR: %s\n", in->b.error->text);
            continue;
        }
        printf("coordinator: ACCEPTED: answered with a %s\n", wire_type_name(in->h.type));
        accepted = 1;
    }
    printf("%d message(s) sent, %d ERROR(s), %s\n", crd.sent, errors,
           accepted ? "accepted as server 0" : "refused");
cleanup:
    free(in);
    net_msg_destroy(m);
    net_sock_destroy(crd.s);
    net_ctx_destroy(ctx);
    fflush(stdout);
    return accepted ? 1 : 0;
}

/* --flood: see the top of this file. */
static int flood_mode(int n, const char *srv_ep, const char *crd_ep)
{
    pst_err err = {0};
    net_ctx *ctx = net_ctx_create(1, &err);
    conn srv = {.name = "server"}, crd = {.name = "coordinator"};
    net_opts so = {.identity = "flood-server", .linger_ms = 2000};
    net_opts co = {.identity = "flood-coord", .linger_ms = 2000};
    int ok = 0;
    if (!ctx || !(srv.s = net_sock_create(ctx, NET_DEALER, &so, &err)) ||
        !(crd.s = net_sock_create(ctx, NET_DEALER, &co, &err)) ||
        net_sock_connect(srv.s, srv_ep, &err) || net_sock_connect(crd.s, crd_ep, &err)) {
        fprintf(stderr, "hostile_client: %s\n", err.msg);
        goto cleanup;
    }
    uint64_t seed = 0x5eed5eed5eedULL;
    uint8_t junk[48];
    float g[4] = {1, 2, 3, 4};
    wire_range r4 = {.offset = 0, .len = 4};
    wire_progress far = {.epoch = 1000};
    for (int i = 0; i < n; i++) {
        fill_random(junk, sizeof junk, &seed);
        net_frame f = {.data = junk, .len = sizeof junk};
        wire_env h;
        if (i % 2 == 0) {
            if (net_send(srv.s, &f, 1, TIMEOUT_MS, &err) == PST_OK)
                srv.sent++;
            else
                srv.failed++;
            if (net_send(crd.s, &f, 1, TIMEOUT_MS, &err) == PST_OK)
                crd.sent++;
            else
                crd.failed++;
            continue;
        }
        uint8_t meta[WIRE_MAX_META];
        size_t len = 0;
        wire_env_init(&h, WIRE_MSG_PUSH, "worker", 0);
        h.nframes = 1;
        h.frame_bytes[0] = sizeof g;
        f = (net_frame){.data = meta};
        if (wire_pack(&h, &(wire_body){.range = &r4}, meta, sizeof meta, &len, &err) == PST_OK &&
            (f.len = len, net_send(srv.s, &f, 1, TIMEOUT_MS, &err) == PST_OK))
            srv.sent++;
        else
            srv.failed++;
        wire_env_init(&h, WIRE_MSG_DONE, "worker", 0);
        if (wire_pack(&h, &(wire_body){.progress = &far}, meta, sizeof meta, &len, &err) ==
                PST_OK &&
            (f.len = len, net_send(crd.s, &f, 1, TIMEOUT_MS, &err) == PST_OK))
            crd.sent++;
        else
            crd.failed++;
    }
    printf("flood: %d messages sent to the server, %d to the coordinator, %d could not be "
           "sent\n",
           srv.sent, crd.sent, srv.failed + crd.failed);
    ok = srv.failed == 0 && crd.failed == 0;
cleanup:
    net_sock_destroy(srv.s); /* linger: what is queued still goes out */
    net_sock_destroy(crd.s);
    net_ctx_destroy(ctx);
    fflush(stdout);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--flood") == 0)
        return flood_mode(atoi(argv[2]), argv[3], argv[4]);
    if (argc == 7 && strcmp(argv[1], "--curve") == 0 && strcmp(argv[4], "--impersonate") == 0)
        return impersonate_mode(argv[2], argv[3], argv[5], argv[6]);
    if (argc == 7 && strcmp(argv[1], "--curve") == 0 && strcmp(argv[4], "--refused") == 0)
        return refused_mode(argv[2], argv[3], argv[5], argv[6]);
    if (argc == 4 && strcmp(argv[1], "--refused") == 0)
        return refused_mode(NULL, NULL, argv[2], argv[3]);
    if (argc != 3) {
        fprintf(stderr, "usage: %s SERVER_ENDPOINT COORDINATOR_ENDPOINT\n", argv[0]);
        return 2;
    }
    int ok = 0, forged = 0, answered = 0;
    pst_err err = {0};
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    /* Over the server's limit (one chunk of floats + 4096 bytes): it drops the connection. */
    size_t big_len = (size_t)(WIRE_CHUNK_FLOATS * sizeof(float)) + 65536;
    uint8_t *big = calloc(1, big_len);
    net_ctx *ctx = net_ctx_create(1, &err);
    void *zctx = zmq_ctx_new();
    net_opts so = {.identity = "hostile-server", .linger_ms = 1000};
    net_opts co = {.identity = "hostile-coord", .linger_ms = 1000};
    conn srv = {.name = "server"}, crd = {.name = "coordinator"};
    int linger = 1000, sndtimeo = TIMEOUT_MS;
    if (!big || !ctx || !zctx || !(srv.raw = zmq_socket(zctx, ZMQ_DEALER)) ||
        zmq_setsockopt(srv.raw, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(srv.raw, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo) != 0 ||
        zmq_connect(srv.raw, argv[1]) != 0 ||
        !(srv.s = net_sock_create(ctx, NET_DEALER, &so, &err)) ||
        !(crd.s = net_sock_create(ctx, NET_DEALER, &co, &err)) ||
        net_sock_connect(srv.s, argv[1], &err) || net_sock_connect(crd.s, argv[2], &err)) {
        fprintf(stderr, "hostile_client: %s\n",
                err.msg[0] ? err.msg
                : !big     ? "out of memory"
                           : zmq_strerror(zmq_errno()));
        goto cleanup;
    }
    attack_server(&srv, &seed, &forged);
    answered = read_errors(&srv, forged);
    printf("server: %d of %d forged requests answered with an ERROR\n", answered, forged);
    /* Last, as it costs this connection: a frame over the server's message size limit. */
    net_frame bf = {.data = big, .len = big_len};
    send_frames(&srv, "a frame over the server's size limit", &bf, 1);
    attack_coordinator(&crd, &seed);
    /* Of all that, the coordinator answers the DONE of wire version 99 alone; read before
     * the oversized frame, which costs the connection. */
    int crd_answered = read_errors(&crd, 1);
    printf("coordinator: %d of 1 wrong-version messages answered with an ERROR\n", crd_answered);
    bf.len = WIRE_MAX_META + 4096; /* over the coordinator's limit */
    send_frames(&crd, "a frame over the coordinator's size limit", &bf, 1);
    ok = srv.failed == 0 && crd.failed == 0 && answered == forged && crd_answered == 1;
cleanup:
    if (srv.raw)
        zmq_close(srv.raw);
    if (zctx)
        zmq_ctx_term(zctx);
    net_sock_destroy(srv.s);
    net_sock_destroy(crd.s);
    net_ctx_destroy(ctx);
    free(big);
    fflush(stdout);
    return ok ? 0 : 1;
}
