/* tests/test_handler.c -- the server's message handler (ps/handler.h) driven message by
 * message over an inproc:// ROUTER with one DEALER per worker: chunks taken once in order
 * (a repeat acknowledged again, a chunk after a gap not acknowledged until the gap is
 * filled), parked pulls (parked once per request id, answered when a push, a DONE or a
 * lost worker moves the slowest clock; an ACK at once when the worker's own push is
 * missing), a replaced incarnation refused, an unannounced one ignored, a rank claimed
 * from another connection refused, a rejoined worker's pull of the clock before the
 * shard's last update answered with that clock's weights, a message of another wire
 * version answered with an ERROR naming both, refusals counted (stats, metrics) and
 * their warnings limited per connection. A real shard (ps/shard.c) behind it;
 * milliseconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/loglimit.h"
#include "net/net.h"
#include "proto/msg.h"
#include "proto/wire_enc.h"
#include "ps/handler.h"
#include "ps/shard.h"

#define N 8 /* the shard: 8 floats, sent in chunks of 4 */
#define LR 0.5f
#define NW 3 /* DEALERs: worker 0, worker 1, a second connection */

typedef struct {
    net_ctx *ctx;
    net_sock *srv, *w[NW];
    net_msg *m, *wm;
    msg_in *in, *win;
    cfg_job job;
    srv_shard *shard;
    srv_handler *h;
    log_ctx lg;
    uint64_t next_id;
} fixture;

static fixture *make(cfg_consistency cons, int nworkers)
{
    fixture *fx = calloc(1, sizeof *fx);
    pst_err err = {0};
    fx->ctx = net_ctx_create(1, &err);
    net_opts ro = {.hwm = -1, .linger_ms = 0};
    fx->srv = net_sock_create(fx->ctx, NET_ROUTER, &ro, &err);
    assert_int_equal(net_sock_bind(fx->srv, "inproc://handler", NULL, 0, &err), PST_OK);
    for (int k = 0; k < NW; k++) {
        char id[16];
        snprintf(id, sizeof id, "conn-%d", k);
        net_opts d = {.identity = id, .linger_ms = 0};
        fx->w[k] = net_sock_create(fx->ctx, NET_DEALER, &d, &err);
        assert_int_equal(net_sock_connect(fx->w[k], "inproc://handler", &err), PST_OK);
    }
    fx->m = net_msg_create(&err);
    fx->wm = net_msg_create(&err);
    fx->in = malloc(sizeof *fx->in);
    fx->win = malloc(sizeof *fx->win);
    fx->job.cluster.consistency = cons;
    fx->job.cluster.heartbeat_timeout_s = 10;
    log_init(&fx->lg, "server", 0, stderr);
    fx->lg.level = LOG_ERROR;
    opt_config oc;
    opt_config_default(&oc, OPT_SGD);
    oc.lr = LR;
    fx->shard = srv_shard_create(0, N, &oc, cons, 0, nworkers, &err);
    assert_non_null(fx->shard);
    srv_handler_options o = {.rank = 0,
                             .job = &fx->job,
                             .lg = &fx->lg,
                             .sock = fx->srv,
                             .shard = fx->shard,
                             .nworkers = nworkers};
    fx->h = srv_handler_create(&o, &err);
    assert_non_null(fx->h);
    return fx;
}

static void destroy(fixture *fx)
{
    srv_handler_destroy(fx->h);
    srv_shard_destroy(fx->shard);
    free(fx->in);
    free(fx->win);
    net_msg_destroy(fx->m);
    net_msg_destroy(fx->wm);
    for (int k = 0; k < NW; k++)
        net_sock_destroy(fx->w[k]);
    net_sock_destroy(fx->srv);
    net_ctx_destroy(fx->ctx);
    free(fx);
}

/* Sends a request from connection `conn` as worker `rank` (incarnation gen) and has the
 * handler take it. Returns its request id. */
static uint64_t request(fixture *fx, int conn, int rank, uint64_t gen, wire_type type,
                        int64_t clock, uint64_t off, uint64_t len, const float *floats, uint64_t id)
{
    wire_env h;
    wire_env_init(&h, type, "worker", rank);
    h.generation = gen;
    h.request_id = id;
    h.clock = clock;
    wire_range r = {.offset = off, .len = len};
    int ranged = type == WIRE_MSG_INIT || type == WIRE_MSG_PUSH || type == WIRE_MSG_PULL;
    wire_body b = {.range = ranged ? &r : NULL};
    net_frame f = {.data = floats, .len = floats ? len * sizeof(float) : 0};
    pst_err err = {0};
    assert_int_equal(msg_send(fx->w[conn], NULL, 0, &h, &b, &f, floats ? 1 : 0, 0, &err), PST_OK);
    assert_int_equal(msg_recv(fx->srv, fx->m, 1, fx->in, 2000, &err), PST_OK);
    assert_int_equal(srv_handle(fx->h, fx->in, &err), PST_OK);
    return id;
}

static uint64_t push(fixture *fx, int rank, int64_t clock, uint64_t off, const float *g)
{
    return request(fx, rank, rank, 1, WIRE_MSG_PUSH, clock, off, 4, g, fx->next_id++);
}

/* The next reply on connection conn: of type `type` answering request id. */
static const msg_in *expect(fixture *fx, int conn, wire_type type, uint64_t id)
{
    pst_err err = {0};
    assert_int_equal(msg_recv(fx->w[conn], fx->wm, 0, fx->win, 2000, &err), PST_OK);
    if (fx->win->h.type != type)
        fail_msg("got %s (%s), wanted %s", wire_type_name(fx->win->h.type),
                 fx->win->b.error ? fx->win->b.error->text : "", wire_type_name(type));
    assert_int_equal(fx->win->h.request_id, id);
    return fx->win;
}

/* Nothing for conn (replies are sent within srv_handle, so 20 ms is plenty). */
static void expect_none(fixture *fx, int conn)
{
    pst_err err = {0};
    int rc = msg_recv(fx->w[conn], fx->wm, 0, fx->win, 20, &err);
    if (rc != PST_ERR_TIMEOUT)
        fail_msg("unexpected %s", wire_type_name(fx->win->h.type));
}

static void init_weights(fixture *fx, const float *w)
{
    uint64_t a = request(fx, 0, 0, 1, WIRE_MSG_INIT, 0, 0, 4, w, fx->next_id++);
    expect(fx, 0, WIRE_MSG_ACK, a);
    uint64_t b = request(fx, 0, 0, 1, WIRE_MSG_INIT, 0, 4, 4, w + 4, fx->next_id++);
    expect(fx, 0, WIRE_MSG_ACK, b);
}

static const float W0[N] = {1, 2, 3, 4, 5, 6, 7, 8};
static const float G[N] = {2, 2, 2, 2, 4, 4, 4, 4};

static void test_chunks_once_in_order(void **state)
{
    (void)state;
    fixture *fx = make(CFG_CONS_BSP, 1);
    /* INIT: the second range before the first waits; a repeat is acknowledged again. */
    uint64_t late = request(fx, 0, 0, 1, WIRE_MSG_INIT, 0, 4, 4, W0 + 4, 100);
    expect_none(fx, 0);
    init_weights(fx, W0);
    request(fx, 0, 0, 1, WIRE_MSG_INIT, 0, 4, 4, W0 + 4, late); /* sent again */
    expect(fx, 0, WIRE_MSG_ACK, late);
    assert_true(srv_shard_initialized(fx->shard));
    /* PUSH of clock 0: the second chunk first (its first was lost) waits. */
    uint64_t second = push(fx, 0, 0, 4, G + 4);
    expect_none(fx, 0);
    uint64_t first = push(fx, 0, 0, 0, G);
    expect(fx, 0, WIRE_MSG_ACK, first);
    request(fx, 0, 0, 1, WIRE_MSG_PUSH, 0, 0, 4, G, first); /* a repeat: ACK again */
    expect(fx, 0, WIRE_MSG_ACK, first);
    request(fx, 0, 0, 1, WIRE_MSG_PUSH, 0, 4, 4, G + 4, second);
    expect(fx, 0, WIRE_MSG_ACK, second);
    srv_shard_stats st;
    srv_shard_get_stats(fx->shard, &st);
    assert_int_equal(st.pushes, 2);
    assert_int_equal(st.repeats, 1);
    assert_int_equal(st.early, 1);
    assert_int_equal(srv_shard_worker_clock(fx->shard, 0), 1);
    /* A late copy of the whole step: still a repeat. */
    request(fx, 0, 0, 1, WIRE_MSG_PUSH, 0, 4, 4, G + 4, second);
    expect(fx, 0, WIRE_MSG_ACK, second);
    /* The pull of clock 1 sees w - lr g, applied once. */
    uint64_t p = request(fx, 0, 0, 1, WIRE_MSG_PULL, 1, 0, 4, NULL, fx->next_id++);
    const msg_in *r = expect(fx, 0, WIRE_MSG_PULL_REPLY, p);
    assert_int_equal(r->h.clock, 1);
    const float *w = fx->win->payload[0];
    for (int i = 0; i < 4; i++)
        assert_true(w[i] == W0[i] - LR * G[i]);
    destroy(fx);
}

/* A range request of worker 0 in encoding enc with frames f[0..nf) (cluster.compression). */
static uint64_t coded(fixture *fx, wire_type type, int64_t clock, uint64_t off, wire_enc enc,
                      uint64_t nnz, const net_frame *f, int nf)
{
    wire_env h;
    wire_env_init(&h, type, "worker", 0);
    h.generation = 1;
    h.request_id = fx->next_id++;
    h.clock = clock;
    wire_range r = {.offset = off, .len = 4, .enc = enc, .nnz = nnz};
    pst_err err = {0};
    assert_int_equal(msg_send(fx->w[0], NULL, 0, &h, &(wire_body){.range = &r}, f, nf, 0, &err),
                     PST_OK);
    assert_int_equal(msg_recv(fx->srv, fx->m, 1, fx->in, 2000, &err), PST_OK);
    assert_int_equal(srv_handle(fx->h, fx->in, &err), PST_OK);
    return h.request_id;
}

/* Compressed chunks are decoded onto floats and applied as float32 ones; a top-k table
 * with indices out of order is refused (ERROR) and not applied; a pull that asks for
 * binary16 is answered in it (the values here are exact in binary16). */
static void test_compressed_chunks(void **state)
{
    (void)state;
    fixture *fx = make(CFG_CONS_BSP, 1);
    init_weights(fx, W0);
    uint16_t half[4];
    wire_enc_halves(WIRE_ENC_F16, half, G, 4);
    net_frame fh = {.data = half, .len = sizeof half};
    expect(fx, 0, WIRE_MSG_ACK, coded(fx, WIRE_MSG_PUSH, 0, 0, WIRE_ENC_F16, 0, &fh, 1));
    uint32_t bad[2] = {3, 0}, idx[2] = {0, 3};
    float val[2] = {4, 4};
    net_frame ft[2] = {{.data = bad, .len = sizeof bad}, {.data = val, .len = sizeof val}};
    const msg_in *e =
        expect(fx, 0, WIRE_MSG_ERROR, coded(fx, WIRE_MSG_PUSH, 0, 4, WIRE_ENC_TOPK, 2, ft, 2));
    assert_non_null(strstr(e->b.error->text, "top-k entry 1"));
    assert_int_equal(srv_shard_worker_clock(fx->shard, 0), 0);
    ft[0].data = idx;
    expect(fx, 0, WIRE_MSG_ACK, coded(fx, WIRE_MSG_PUSH, 0, 4, WIRE_ENC_TOPK, 2, ft, 2));
    assert_int_equal(srv_shard_worker_clock(fx->shard, 0), 1);
    const float g1[4] = {4, 0, 0, 4};
    for (int c = 0; c < 2; c++) {
        const msg_in *r =
            expect(fx, 0, WIRE_MSG_PULL_REPLY,
                   coded(fx, WIRE_MSG_PULL, 1, 4 * (uint64_t)c, WIRE_ENC_F16, 0, NULL, 0));
        assert_int_equal(r->b.range->enc, WIRE_ENC_F16);
        assert_int_equal(r->payload_len[0], 4 * sizeof(uint16_t));
        float w[4];
        wire_dec_halves(WIRE_ENC_F16, w, r->payload[0], 4);
        for (int i = 0; i < 4; i++)
            assert_true(w[i] == W0[4 * c + i] - LR * (c ? g1[i] : G[i]));
    }
    destroy(fx);
}

static void push_step(fixture *fx, int rank, int64_t clock)
{
    uint64_t a = push(fx, rank, clock, 0, G);
    expect(fx, rank, WIRE_MSG_ACK, a);
    uint64_t b = push(fx, rank, clock, 4, G + 4);
    expect(fx, rank, WIRE_MSG_ACK, b);
}

/* bsp: worker 0's pull of clock 1 waits for worker 1's step 0, parked once however
 * often it is sent, and acknowledged at once each time (its clock here: its step 0 is
 * whole), so that its retry timer does not resend it while it waits; worker 1's last
 * chunk answers it. */
static void test_parked_pull(void **state)
{
    (void)state;
    fixture *fx = make(CFG_CONS_BSP, 2);
    init_weights(fx, W0);
    push_step(fx, 0, 0);
    uint64_t p = request(fx, 0, 0, 1, WIRE_MSG_PULL, 1, 0, 4, NULL, fx->next_id++);
    assert_int_equal(expect(fx, 0, WIRE_MSG_ACK, p)->h.clock, 1);
    expect_none(fx, 0);
    request(fx, 0, 0, 1, WIRE_MSG_PULL, 1, 0, 4, NULL, p); /* sent again */
    assert_int_equal(expect(fx, 0, WIRE_MSG_ACK, p)->h.clock, 1);
    expect_none(fx, 0);
    srv_handler_stats hs;
    srv_handler_get_stats(fx->h, &hs);
    assert_int_equal(hs.parked, 1);
    push_step(fx, 1, 0);
    const msg_in *r = expect(fx, 0, WIRE_MSG_PULL_REPLY, p);
    assert_int_equal(r->b.range->offset, 0);
    const float *w = fx->win->payload[0];
    for (int i = 0; i < 4; i++)
        assert_true(w[i] == W0[i] - LR * G[i]); /* the mean of two equal gradients */
    expect_none(fx, 0);                         /* answered once */
    srv_handler_get_stats(fx->h, &hs);
    assert_int_equal(hs.parked, 0);
    assert_int_equal(hs.pulls, 1);
    destroy(fx);
}

/* A pull whose worker's own push did not all arrive: an ACK at once with its clock here,
 * so the worker resends the push; the pull stays parked. */
static void test_pull_acks_missing_push(void **state)
{
    (void)state;
    fixture *fx = make(CFG_CONS_BSP, 2);
    init_weights(fx, W0);
    uint64_t a = push(fx, 0, 0, 0, G); /* its second chunk is lost */
    expect(fx, 0, WIRE_MSG_ACK, a);
    uint64_t p = request(fx, 0, 0, 1, WIRE_MSG_PULL, 1, 0, 4, NULL, fx->next_id++);
    const msg_in *r = expect(fx, 0, WIRE_MSG_ACK, p);
    assert_int_equal(r->h.clock, 0);
    uint64_t b = push(fx, 0, 0, 4, G + 4);
    expect(fx, 0, WIRE_MSG_ACK, b);
    push_step(fx, 1, 0);
    expect(fx, 0, WIRE_MSG_PULL_REPLY, p);
    destroy(fx);
}

/* A lost worker leaves the clock (worker 0's parked pull is answered at the next tick)
 * and is refused from then on; DONE is acknowledged and leaves the clock too. */
static void test_lost_and_done(void **state)
{
    (void)state;
    fixture *fx = make(CFG_CONS_BSP, 3);
    init_weights(fx, W0);
    push_step(fx, 0, 0);
    uint64_t p = request(fx, 0, 0, 1, WIRE_MSG_PULL, 1, 0, 4, NULL, fx->next_id++);
    expect(fx, 0, WIRE_MSG_ACK, p); /* parked */
    /* Worker 2 is done (its DONE arrives on connection 2). */
    uint64_t d = request(fx, 2, 2, 1, WIRE_MSG_DONE, 0, 0, 0, NULL, fx->next_id++);
    expect(fx, 2, WIRE_MSG_ACK, d);
    expect_none(fx, 0); /* worker 1 still owes clock 0 */
    uint64_t gen[3] = {1, 1, 1};
    uint8_t lost[3] = {0, 1, 0}, done[3] = {0, 0, 1};
    srv_handler_membership(fx->h, gen, lost, done);
    pst_err err = {0};
    assert_int_equal(srv_handler_tick(fx->h, &err), PST_OK);
    expect(fx, 0, WIRE_MSG_PULL_REPLY, p);
    uint64_t q = push(fx, 1, 0, 0, G);
    const msg_in *e = expect(fx, 1, WIRE_MSG_ERROR, q);
    assert_int_equal(e->b.error->code, PST_ERR_NET);
    assert_non_null(strstr(e->b.error->text, "declared lost"));
    destroy(fx);
}

/* Incarnations: after the coordinator announces worker 1's incarnation 2, the old one's
 * messages are refused (PST_ERR_NET), an unannounced incarnation 3 is ignored, and
 * incarnation 2 is taken on its own new connection. A rank claimed from another
 * connection is refused. */
static void test_replaced_incarnation(void **state)
{
    (void)state;
    fixture *fx = make(CFG_CONS_ASP, 2);
    init_weights(fx, W0);
    push_step(fx, 1, 0);
    /* Worker 0's rank from connection 2: refused. */
    uint64_t x = request(fx, 2, 0, 1, WIRE_MSG_PULL, 0, 0, 4, NULL, fx->next_id++);
    const msg_in *e = expect(fx, 2, WIRE_MSG_ERROR, x);
    assert_int_equal(e->b.error->code, PST_ERR_PEER);
    assert_non_null(strstr(e->b.error->text, "another connection"));
    uint64_t gen[2] = {1, 2};
    uint8_t none[2] = {0, 0};
    srv_handler_membership(fx->h, gen, none, none);
    uint64_t old = push(fx, 1, 1, 0, G);
    e = expect(fx, 1, WIRE_MSG_ERROR, old);
    assert_int_equal(e->b.error->code, PST_ERR_NET);
    assert_non_null(strstr(e->b.error->text, "replaced by incarnation 2"));
    request(fx, 2, 1, 3, WIRE_MSG_PULL, 1, 0, 4, NULL, fx->next_id++);
    expect_none(fx, 2);
    /* The new process on connection 2, at the clock the shard gave it (1, asp: its own). */
    int64_t c = srv_shard_worker_clock(fx->shard, 1);
    uint64_t y = request(fx, 2, 1, 2, WIRE_MSG_PUSH, c, 0, 4, G, fx->next_id++);
    expect(fx, 2, WIRE_MSG_ACK, y);
    uint64_t z = request(fx, 2, 1, 2, WIRE_MSG_PULL, c, 0, 4, NULL, fx->next_id++);
    const msg_in *r = expect(fx, 2, WIRE_MSG_PULL_REPLY, z);
    assert_int_equal(r->h.clock, c);
    destroy(fx);
}

/* bsp, worker 1 killed after its step of clock 1 was taken whole here (but, say, not on
 * another server): worker 0's push completes the clock and this shard updates past it.
 * The restarted incarnation, rejoining at the smaller clock another server reports (1),
 * pulls clock 1 and gets the weights of clock 1, from before that update (issue 19, item
 * 8: it computes the step again from what every worker used for it); a pull of clock 2
 * gets the newest. */
static void test_rejoined_pull_gets_its_clock(void **state)
{
    (void)state;
    fixture *fx = make(CFG_CONS_BSP, 2);
    init_weights(fx, W0);
    for (int64_t c = 0; c < 2; c++) {
        push_step(fx, 1, c);
        push_step(fx, 0, c);
    }
    assert_int_equal(srv_shard_clock(fx->shard), 2);
    uint64_t gen[2] = {1, 2};
    uint8_t none[2] = {0, 0};
    srv_handler_membership(fx->h, gen, none, none);
    assert_int_equal(srv_shard_worker_clock(fx->shard, 1), 2);
    uint64_t p = request(fx, 2, 1, 2, WIRE_MSG_PULL, 1, 0, 4, NULL, fx->next_id++);
    const msg_in *r = expect(fx, 2, WIRE_MSG_PULL_REPLY, p);
    assert_int_equal(r->h.clock, 2); /* its clock here: the step is in */
    const float *w = r->payload[0];
    for (int i = 0; i < 4; i++)
        assert_true(w[i] == W0[i] - LR * G[i]); /* one update: clock 1's weights */
    uint64_t q = request(fx, 2, 1, 2, WIRE_MSG_PULL, 2, 0, 4, NULL, fx->next_id++);
    r = expect(fx, 2, WIRE_MSG_PULL_REPLY, q);
    w = r->payload[0];
    for (int i = 0; i < 4; i++)
        assert_true(w[i] == W0[i] - LR * G[i] - LR * G[i]);
    /* Its push of clock 1 is a repeat here (the previous incarnation's is in). */
    uint64_t a = request(fx, 2, 1, 2, WIRE_MSG_PUSH, 1, 0, 4, G, fx->next_id++);
    expect(fx, 2, WIRE_MSG_ACK, a);
    assert_int_equal(srv_shard_clock(fx->shard), 2);
    destroy(fx);
}

/* A message of another wire version (issue 19, item 13): refused before anything in it
 * is read, and answered with an ERROR naming both versions to the connection it came
 * on (request id 0: not even that is trusted), so the peer learns why instead of timing
 * out. The shard is untouched. */
/* Lines of f (a tmpfile the handler logged to) that contain needle. */
static int lines_with(FILE *f, const char *needle)
{
    fflush(f);
    rewind(f);
    char line[1200];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fseek(f, 0, SEEK_END);
    return n;
}

/* A flood from one connection: counted (stats, metrics), at most LOG_LIMIT_BURST warnings
 * naming it (inproc has no address: its routing id), the rest in one count line; another
 * connection keeps its own budget. */
static void test_refusals_counted_and_limited(void **state)
{
    (void)state;
    fixture *fx = make(CFG_CONS_BSP, 1);
    FILE *log = tmpfile();
    assert_non_null(log);
    fx->lg.out = log;
    fx->lg.level = LOG_WARN;
    pst_err err = {0};
    obs_registry *reg = obs_registry_create(&err);
    srv_handler_options o = {.rank = 0,
                             .job = &fx->job,
                             .lg = &fx->lg,
                             .sock = fx->srv,
                             .shard = fx->shard,
                             .nworkers = 1,
                             .malformed = obs_counter(reg, MSG_REFUSED_METRIC, MSG_REFUSED_HELP,
                                                      "reason=\"malformed\"", &err),
                             .rejected = obs_counter(reg, MSG_REFUSED_METRIC, MSG_REFUSED_HELP,
                                                     "reason=\"refused\"", &err)};
    srv_handler_destroy(fx->h);
    fx->h = srv_handler_create(&o, &err);
    assert_non_null(fx->h);
    enum { FLOOD = 40 };
    net_frame junk = {.data = "\xff\xff", .len = 2};
    for (int i = 0; i < FLOOD; i++) {
        assert_int_equal(net_send(fx->w[1], &junk, 1, 0, &err), PST_OK);
        assert_int_equal(msg_recv(fx->srv, fx->m, 1, fx->in, 2000, &err), PST_ERR_PEER);
        srv_handle_refused(fx->h, fx->in, &err);
    }
    /* A PUSH as a worker the job does not have, from the second connection: refused. */
    wire_env h;
    wire_env_init(&h, WIRE_MSG_PUSH, "worker", 5);
    h.request_id = 7;
    wire_range r = {.offset = 0, .len = 4};
    net_frame f = {.data = G, .len = 4 * sizeof(float)};
    assert_int_equal(msg_send(fx->w[2], NULL, 0, &h, &(wire_body){.range = &r}, &f, 1, 0, &err),
                     PST_OK);
    assert_int_equal(msg_recv(fx->srv, fx->m, 1, fx->in, 2000, &err), PST_OK);
    assert_int_equal(srv_handle(fx->h, fx->in, &err), PST_OK);
    expect(fx, 2, WIRE_MSG_ERROR, 7);
    srv_handler_stats st;
    srv_handler_get_stats(fx->h, &st);
    assert_int_equal(st.malformed, FLOOD);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(lines_with(log, "dropped a malformed message"), LOG_LIMIT_BURST);
    assert_int_equal(lines_with(log, "(from conn-1)"), LOG_LIMIT_BURST);
    assert_int_equal(lines_with(log, "refused PUSH from worker[5]"), 1);
    assert_int_equal(lines_with(log, "(from conn-2)"), 1);
    srv_handler_flush_log(fx->h);
    char want[64];
    snprintf(want, sizeof want, "warn: %d more refused messages from conn-1 in the last",
             FLOOD - LOG_LIMIT_BURST);
    assert_int_equal(lines_with(log, want), 1);
    assert_int_equal(lines_with(log, "more refused messages"), 1);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(obs_render(reg, 0, &text, &len, &err), PST_OK);
    snprintf(want, sizeof want, "pstrain_refused_messages_total{reason=\"malformed\"} %d\n", FLOOD);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "pstrain_refused_messages_total{reason=\"refused\"} 1\n"));
    free(text);
    destroy(fx);
    obs_registry_destroy(reg);
    fclose(log);
}

static void test_wrong_version_answered(void **state)
{
    (void)state;
    fixture *fx = make(CFG_CONS_BSP, 1);
    wire_env h;
    wire_env_init(&h, WIRE_MSG_PUSH, "worker", 0);
    h.version = WIRE_VERSION + 1;
    h.request_id = 42;
    wire_range r = {.offset = 0, .len = 4};
    net_frame f = {.data = G, .len = 4 * sizeof(float)};
    pst_err err = {0};
    assert_int_equal(msg_send(fx->w[1], NULL, 0, &h, &(wire_body){.range = &r}, &f, 1, 0, &err),
                     PST_OK);
    assert_int_equal(msg_recv(fx->srv, fx->m, 1, fx->in, 2000, &err), PST_ERR_PEER);
    srv_handle_refused(fx->h, fx->in, &err);
    const msg_in *e = expect(fx, 1, WIRE_MSG_ERROR, 0);
    char v1[32], v2[32];
    snprintf(v1, sizeof v1, "wire version %u", WIRE_VERSION + 1);
    snprintf(v2, sizeof v2, "wire version %u", WIRE_VERSION);
    assert_non_null(strstr(e->b.error->text, v1));
    assert_non_null(strstr(e->b.error->text, v2));
    assert_int_equal(e->b.error->code, PST_ERR_CONFIG);
    expect_none(fx, 0);
    /* Junk that is no envelope at all is only dropped. */
    net_frame junk = {.data = "\xff\xff", .len = 2};
    assert_int_equal(net_send(fx->w[1], &junk, 1, 0, &err), PST_OK);
    assert_int_equal(msg_recv(fx->srv, fx->m, 1, fx->in, 2000, &err), PST_ERR_PEER);
    srv_handle_refused(fx->h, fx->in, &err);
    expect_none(fx, 1);
    assert_false(srv_shard_initialized(fx->shard));
    destroy(fx);
}

/* A sparse request of one table (SPUSH: keys + grads; SPULL: keys). */
static uint64_t srequest(fixture *fx, int rank, wire_type type, int64_t clock, uint32_t table,
                         uint32_t dim, const uint64_t *keys, size_t n, const float *g)
{
    wire_env h;
    wire_env_init(&h, type, "worker", rank);
    h.generation = 1;
    h.request_id = fx->next_id++;
    h.clock = clock;
    wire_sparse b = {.table = table, .nkeys = n, .dim = dim, .train = 1};
    net_frame f[2] = {{.data = keys, .len = n * sizeof *keys},
                      {.data = g, .len = n * dim * sizeof(float)}};
    pst_err err = {0};
    assert_int_equal(msg_send(fx->w[rank], NULL, 0, &h, &(wire_body){.sparse = &b}, f,
                              type == WIRE_MSG_SPUSH ? 2 : 1, 0, &err),
                     PST_OK);
    assert_int_equal(msg_recv(fx->srv, fx->m, 1, fx->in, 2000, &err), PST_OK);
    assert_int_equal(srv_handle(fx->h, fx->in, &err), PST_OK);
    return h.request_id;
}

/* bsp, two workers, one server holding every key: a pull of clock 1 waits (parked, ACK)
 * until both pushed clock 0, then gets the mean applied; an unknown table and a wrong dim
 * are refused with an ERROR naming them; a repeated SPUSH is acknowledged again. */
static void test_sparse_push_pull(void **state)
{
    (void)state;
    fixture *fx = make(CFG_CONS_BSP, 2);
    spt_config c;
    spt_config_default(&c, 2);
    opt_config_default(&c.opt, OPT_SGD);
    c.opt.lr = LR;
    c.init = SPT_INIT_ZEROS;
    const char *names[1] = {"emb"};
    pst_err err = {0};
    srv_sparse *sp = srv_sparse_create(names, &c, 1, 0, 1, CFG_CONS_BSP, 0, 2, &err);
    assert_non_null(sp);
    srv_handler_destroy(fx->h);
    srv_handler_options o = {.rank = 0,
                             .job = &fx->job,
                             .lg = &fx->lg,
                             .sock = fx->srv,
                             .shard = fx->shard,
                             .sparse = sp,
                             .nworkers = 2};
    fx->h = srv_handler_create(&o, &err);
    uint64_t keys[2] = {7, 1ULL << 40};
    float g0[4] = {1, 2, 3, 4}, g1[2] = {2, 2};
    uint64_t id = srequest(fx, 0, WIRE_MSG_SPULL, 0, 0, 2, keys, 2, NULL);
    const msg_in *r = expect(fx, 0, WIRE_MSG_SPULL_REPLY, id);
    assert_int_equal(r->b.sparse->nkeys, 2);
    assert_int_equal(r->payload_len[0], 4 * sizeof(float));
    id = srequest(fx, 0, WIRE_MSG_SPUSH, 0, 0, 2, keys, 2, g0);
    expect(fx, 0, WIRE_MSG_ACK, id);
    id = srequest(fx, 0, WIRE_MSG_SPUSH, 0, 0, 2, keys, 2, g0);
    expect(fx, 0, WIRE_MSG_ACK, id); /* a repeat */
    uint64_t pid = srequest(fx, 0, WIRE_MSG_SPULL, 1, 0, 2, keys, 2, NULL);
    expect(fx, 0, WIRE_MSG_ACK, pid); /* parked */
    id = srequest(fx, 1, WIRE_MSG_SPUSH, 0, 0, 2, keys, 1, g1);
    expect(fx, 1, WIRE_MSG_ACK, id);
    r = expect(fx, 0, WIRE_MSG_SPULL_REPLY, pid);
    float rows[4];
    memcpy(rows, r->payload[0], sizeof rows);
    /* zeros - 0.5 * mean: key 7 (1 + 2) / 2, (2 + 2) / 2; key 2^40 (3, 4) / 2 */
    assert_true(rows[0] == -0.75f && rows[1] == -1.0f && rows[2] == -0.75f && rows[3] == -1.0f);
    srequest(fx, 0, WIRE_MSG_SPULL, 1, 3, 2, keys, 2, NULL);
    r = expect(fx, 0, WIRE_MSG_ERROR, fx->next_id - 1);
    assert_non_null(strstr(r->b.error->text, "unknown sparse table 3"));
    srequest(fx, 0, WIRE_MSG_SPULL, 1, 0, 3, keys, 2, NULL);
    r = expect(fx, 0, WIRE_MSG_ERROR, fx->next_id - 1);
    assert_non_null(strstr(r->b.error->text, "'emb' has dim 2"));
    srv_handler_stats hs;
    srv_handler_get_stats(fx->h, &hs);
    assert_int_equal(hs.spulls, 2);
    destroy(fx);
    srv_sparse_destroy(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sparse_push_pull),
        cmocka_unit_test(test_compressed_chunks),
        cmocka_unit_test(test_chunks_once_in_order),
        cmocka_unit_test(test_parked_pull),
        cmocka_unit_test(test_pull_acks_missing_push),
        cmocka_unit_test(test_lost_and_done),
        cmocka_unit_test(test_replaced_incarnation),
        cmocka_unit_test(test_rejoined_pull_gets_its_clock),
        cmocka_unit_test(test_wrong_version_answered),
        cmocka_unit_test(test_refusals_counted_and_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
