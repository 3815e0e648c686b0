/* tests/test_api.c -- include/pstrain/pstrain.h: bad input and calls out of order give a
 * status and one line, never an abort; a worker joins an in-process coordinator and
 * server (threads), trains, and a worker whose model disagrees is refused. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/log.h"
#include "job/job.h"
#include "ps/coord.h"
#include "ps/server.h"

#include "pstrain/pstrain.h"

typedef struct {
    char dir[64], job_path[128], endpoint[256];
    cfg_job *job;
    log_ctx lg;
    volatile sig_atomic_t stop;
    coord_options co;
    srv_options so;
    pthread_t cth, sth;
    int crc, src, server_started;
    pst_err cerr, serr;
    pst_update_fn hook; /* non-NULL: the server runs through pst_server_run with it */
    void *hook_ctx;
} cluster;

/* The job file of a library job: no model, no data. */
static void write_job(cluster *c, int workers, const char *extra)
{
    snprintf(c->dir, sizeof c->dir, "/tmp/test_api_XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    snprintf(c->job_path, sizeof c->job_path, "%s/job.yaml", c->dir);
    FILE *f = fopen(c->job_path, "w");
    assert_non_null(f);
    fprintf(f,
            "name: t\nmodel: {external: true}\noptimizer: {name: sgd, lr: 0.5}\n"
            "cluster: {servers: 1, workers: %d, timeout_s: 5, heartbeat_ms: 50, "
            "heartbeat_timeout_s: 2}\noutput: {dir: %s}\n%s",
            workers, c->dir, extra ? extra : "");
    fclose(f);
}

static void *coord_thread(void *arg)
{
    cluster *c = arg;
    c->crc = coord_run(&c->co, &c->cerr);
    return NULL;
}

static void *server_thread(void *arg)
{
    cluster *c = arg;
    if (c->hook) {
        pst_server_options o = PST_SERVER_OPTIONS_INIT;
        o.job_path = c->job_path;
        o.coordinator = c->endpoint;
        o.rank = 0;
        o.quiet = 1;
        o.update = c->hook;
        o.update_ctx = c->hook_ctx;
        c->src = pst_server_run(&o, &c->serr);
    } else
        c->src = srv_run(&c->so, &c->serr);
    return NULL;
}

static cluster *start_with(int workers, pst_update_fn hook, void *hook_ctx)
{
    cluster *c = calloc(1, sizeof *c);
    c->hook = hook;
    c->hook_ctx = hook_ctx;
    write_job(c, workers, NULL);
    pst_err err = {0};
    if (cfg_job_load_file(&c->job, c->job_path, &err))
        fail_msg("job: %s", err.msg);
    log_init(&c->lg, "test", -1, stderr);
    c->lg.level = LOG_ERROR;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    c->co = (coord_options){.bind = "tcp://127.0.0.1:0",
                            .ready_fd = fds[1],
                            .job = c->job,
                            .lg = &c->lg,
                            .stop = &c->stop};
    assert_int_equal(pthread_create(&c->cth, NULL, coord_thread, c), 0);
    ssize_t n = read(fds[0], c->endpoint, sizeof c->endpoint - 1);
    close(fds[0]);
    assert_true(n > 0);
    c->endpoint[n - 1] = '\0';
    c->so = (srv_options){.rank = 0,
                          .coordinator = c->endpoint,
                          .bind_host = "127.0.0.1",
                          .job = c->job,
                          .lg = &c->lg,
                          .stop = &c->stop};
    assert_int_equal(pthread_create(&c->sth, NULL, server_thread, c), 0);
    return c;
}

static cluster *start(int workers) { return start_with(workers, NULL, NULL); }

/* Waits for the job's end; returns the coordinator's status. */
static int stop(cluster *c)
{
    pthread_join(c->sth, NULL);
    pthread_join(c->cth, NULL);
    int rc = c->crc;
    cfg_job_free(c->job);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", c->dir);
    assert_int_equal(system(cmd), 0);
    free(c);
    return rc;
}

static pst_worker *make(const char *job_path, const char *coordinator, int rank)
{
    pst_options o = PST_OPTIONS_INIT;
    o.job_path = job_path;
    o.coordinator = coordinator;
    o.rank = rank;
    o.quiet = 1;
    pst_worker *w = NULL;
    pst_err err = {0};
    if (pst_worker_create(&w, &o, &err))
        fail_msg("create: %s", err.msg);
    return w;
}

/* err holds code and a message containing want. */
static void expect(int rc, const pst_err *err, int code, const char *want)
{
    assert_int_equal(rc, code);
    assert_int_equal(err->code, code);
    if (!strstr(err->msg, want))
        fail_msg("message '%s' lacks '%s'", err->msg, want);
    assert_null(strchr(err->msg, '\n'));
}

static void test_create_bad_options(void **state)
{
    (void)state;
    pst_err err = {0};
    pst_worker *w = (pst_worker *)&err;
    expect(pst_worker_create(NULL, NULL, &err), &err, PST_ERR_ARG, "out is NULL");
    expect(pst_worker_create(&w, NULL, &err), &err, PST_ERR_ARG, "options are NULL");
    assert_null(w);
    pst_options o = PST_OPTIONS_INIT;
    unsetenv("PSTRAIN_RANK");
    unsetenv("JOB_COMPLETION_INDEX");
    unsetenv("PSTRAIN_COORDINATOR");
    unsetenv("DMLC_PS_ROOT_URI");
    unsetenv("PSTRAIN_JOB");
    expect(pst_worker_create(&w, &o, &err), &err, PST_ERR_ARG, "no rank");
    o.rank = 0;
    expect(pst_worker_create(&w, &o, &err), &err, PST_ERR_ARG, "no coordinator");
    setenv("PSTRAIN_RANK", "x1", 1);
    o.rank = -1;
    expect(pst_worker_create(&w, &o, &err), &err, PST_ERR_ARG, "'x1' is not a rank");
    unsetenv("PSTRAIN_RANK");
    o.rank = 0;
    o.coordinator = "tcp://127.0.0.1:1";
    expect(pst_worker_create(&w, &o, &err), &err, PST_ERR_ARG, "no job file");
    o.job_path = "/nonexistent/job.yaml";
    assert_int_not_equal(pst_worker_create(&w, &o, &err), PST_OK);
    assert_non_null(strstr(err.msg, "/nonexistent/job.yaml"));
    cluster c;
    write_job(&c, 2, NULL);
    o.job_path = c.job_path;
    o.rank = 2;
    expect(pst_worker_create(&w, &o, &err), &err, PST_ERR_ARG, "the job has 2 workers");
    o.rank = 1;
    const char *keys[] = {"cluster.nonsense"}, *vals[] = {"1"};
    o.keys = keys;
    o.values = vals;
    o.noverrides = 1;
    expect(pst_worker_create(&w, &o, &err), &err, PST_ERR_CONFIG, "cluster.nonsense");
    const char *k2[] = {"cluster.consistency"}, *v2[] = {"ssp"};
    o.keys = k2;
    o.values = v2;
    o.quiet = 1;
    assert_int_equal(pst_worker_create(&w, &o, &err), PST_OK);
    int s = -1;
    assert_string_equal(pst_consistency(w, &s), "ssp");
    assert_int_equal(pst_rank(w), 1);
    assert_int_equal(pst_num_workers(w), 2);
    pst_worker_destroy(w);
    unlink(c.job_path);
    rmdir(c.dir);
    /* A library job names no layers and no data. */
    write_job(&c, 1, "data: {train: x.csv}\n");
    o = (pst_options)PST_OPTIONS_INIT;
    o.job_path = c.job_path;
    o.rank = 0;
    o.coordinator = "tcp://127.0.0.1:1";
    expect(pst_worker_create(&w, &o, &err), &err, PST_ERR_CONFIG, "data.train must be left out");
    unlink(c.job_path);
    write_job(&c, 1, "model: {layers: [{units: 2}]}\n");
    o.job_path = c.job_path;
    assert_int_equal(pst_worker_create(&w, &o, &err), PST_ERR_CONFIG);
    unlink(c.job_path);
    rmdir(c.dir);
}

static void test_tensors_bad_input(void **state)
{
    (void)state;
    cluster c;
    write_job(&c, 1, NULL);
    pst_worker *w = make(c.job_path, "tcp://127.0.0.1:1", 0);
    pst_err err = {0};
    int64_t s2[2] = {3, 4}, s0[1] = {0}, big[2] = {1LL << 30, 1LL << 30};
    assert_int_equal(pst_tensor_declare(w, "a", 2, s2, &err), PST_OK);
    expect(pst_tensor_declare(w, "a", 2, s2, &err), &err, PST_ERR_ARG, "'a' declared twice");
    expect(pst_tensor_declare(w, "", 2, s2, &err), &err, PST_ERR_ARG, "name must be");
    expect(pst_tensor_declare(w, NULL, 2, s2, &err), &err, PST_ERR_ARG, "name must be");
    expect(pst_tensor_declare(w, "b", 0, s2, &err), &err, PST_ERR_ARG, "0 dimensions");
    expect(pst_tensor_declare(w, "b", 9, s2, &err), &err, PST_ERR_ARG, "9 dimensions");
    expect(pst_tensor_declare(w, "b", 1, NULL, &err), &err, PST_ERR_ARG, "shape not NULL");
    expect(pst_tensor_declare(w, "b", 1, s0, &err), &err, PST_ERR_ARG, "dimension 0 is 0");
    expect(pst_tensor_declare(w, "b", 2, big, &err), &err, PST_ERR_ARG, "2^40");
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    expect(pst_tensor_declare(w, longname, 1, s2, &err), &err, PST_ERR_ARG, "name must be");
    assert_int_equal(pst_tensor_declare(w, "b", 1, s2, &err), PST_OK);
    assert_int_equal(pst_tensor_count(w), 2);
    assert_int_equal(pst_nparams(w), 15);
    pst_tensor_info ti;
    assert_int_equal(pst_tensor_find(w, "b", &ti, &err), PST_OK);
    assert_int_equal(ti.offset, 12);
    assert_int_equal(ti.numel, 3);
    assert_int_equal(ti.ndim, 1);
    expect(pst_tensor_find(w, "c", &ti, &err), &err, PST_ERR_ARG, "no tensor 'c' (declared: a, b)");
    expect(pst_tensor_info_at(w, 2, &ti, &err), &err, PST_ERR_ARG, "index 2 of 2");
    assert_int_equal(pst_tensor_info_at(w, 0, &ti, &err), PST_OK);
    assert_string_equal(ti.name, "a");
    float buf[12] = {1, 2, 3}, out[12];
    expect(pst_tensor_set(w, "nope", buf, 12, &err), &err, PST_ERR_ARG, "no tensor 'nope'");
    expect(pst_tensor_set(w, "a", buf, 11, &err), &err, PST_ERR_ARG, "'a' has 12 floats, not 11");
    expect(pst_tensor_set(w, "a", NULL, 12, &err), &err, PST_ERR_ARG, "buffer is NULL");
    expect(pst_tensor_get(w, "zz", out, 12, &err), &err, PST_ERR_ARG, "pst_tensor_get: no tensor");
    assert_int_equal(pst_tensor_set(w, "b", buf, 3, &err), PST_OK);
    assert_int_equal(pst_tensor_get(w, "b", out, 3, &err), PST_OK);
    assert_memory_equal(out, buf, 3 * sizeof(float));
    /* Views only once joined. */
    assert_null(pst_tensor_weights(w, "a"));
    assert_null(pst_tensor_grad(w, "a"));
    assert_null(pst_weights(w));
    /* Out of order: nothing of the job before pst_join. */
    pst_req r = 0;
    expect(pst_push(w, &r, &err), &err, PST_ERR_STATE, "pst_push: not valid before pst_join");
    expect(pst_pull(w, &r, &err), &err, PST_ERR_STATE, "pst_pull: not valid before pst_join");
    expect(pst_wait(w, 2, &err), &err, PST_ERR_STATE, "pst_wait: not valid before pst_join");
    expect(pst_finish(w, &err), &err, PST_ERR_STATE, "pst_finish: not valid before pst_join");
    expect(pst_checkpoint(w, &err), &err, PST_ERR_STATE, "before pst_join");
    expect(pst_push(NULL, &r, &err), &err, PST_ERR_ARG, "worker is NULL");
    pst_worker_destroy(w);
    w = make(c.job_path, "tcp://127.0.0.1:1", 0);
    expect(pst_join(w, &err), &err, PST_ERR_STATE, "no tensor declared");
    pst_worker_destroy(w);
    pst_worker_destroy(NULL);
    unlink(c.job_path);
    rmdir(c.dir);
}

/* No coordinator answers: a timeout naming it, and the worker is unusable after. */
static void test_join_timeout(void **state)
{
    (void)state;
    cluster c;
    write_job(&c, 1, NULL);
    pst_options o = PST_OPTIONS_INIT;
    o.job_path = c.job_path;
    o.coordinator = "tcp://127.0.0.1:9";
    o.rank = 0;
    o.quiet = 1;
    const char *k[] = {"cluster.timeout_s"}, *v[] = {"1"};
    o.keys = k;
    o.values = v;
    o.noverrides = 1;
    pst_worker *w = NULL;
    pst_err err = {0};
    assert_int_equal(pst_worker_create(&w, &o, &err), PST_OK);
    int64_t s[1] = {4};
    assert_int_equal(pst_tensor_declare(w, "a", 1, s, &err), PST_OK);
    assert_int_equal(pst_join(w, &err), PST_ERR_TIMEOUT);
    assert_non_null(strstr(err.msg, "tcp://127.0.0.1:9"));
    pst_req r;
    expect(pst_push(w, &r, &err), &err, PST_ERR_STATE, "after a failure");
    expect(pst_join(w, &err), &err, PST_ERR_STATE, "after a failure");
    pst_worker_destroy(w);
    unlink(c.job_path);
    rmdir(c.dir);
}

/* One worker, bsp, SGD lr 0.5 on the server: w <- w - 0.5 g, exactly. */
static void test_train_one_worker(void **state)
{
    (void)state;
    cluster *c = start(1);
    pst_worker *w = make(c->job_path, c->endpoint, 0);
    pst_err err = {0};
    int64_t sa[2] = {2, 3}, sb[1] = {5};
    float a0[6] = {1, 2, 3, 4, 5, 6};
    assert_int_equal(pst_tensor_declare(w, "a", 2, sa, &err), PST_OK);
    assert_int_equal(pst_tensor_declare(w, "b", 1, sb, &err), PST_OK);
    assert_int_equal(pst_tensor_set(w, "a", a0, 6, &err), PST_OK);
    if (pst_join(w, &err))
        fail_msg("join: %s", err.msg);
    expect(pst_tensor_declare(w, "c", 1, sb, &err), &err, PST_ERR_STATE,
           "pst_tensor_declare: not valid joined");
    expect(pst_join(w, &err), &err, PST_ERR_STATE, "pst_join: not valid joined");
    float *A = pst_tensor_weights(w, "a"), *gA = pst_tensor_grad(w, "a"),
          *gB = pst_tensor_grad(w, "b");
    assert_non_null(A);
    assert_ptr_equal(pst_weights(w), A);
    assert_null(pst_tensor_weights(w, "zz"));
    assert_memory_equal(A, a0, sizeof a0); /* rank 0's initial weights came back */
    float ref[6];
    memcpy(ref, a0, sizeof ref);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 6; i++)
            gA[i] = (float)(i + step) * 0.25f;
        for (int i = 0; i < 5; i++)
            gB[i] = 1.0f;
        for (int i = 0; i < 6; i++)
            ref[i] -= 0.5f * ((float)(i + step) * 0.25f);
        pst_req push, pull, pull2;
        assert_int_equal(pst_push(w, &push, &err), PST_OK);
        assert_int_equal(pst_pull(w, &pull, &err), PST_OK);
        expect(pst_pull(w, &pull2, &err), &err, PST_ERR_STATE, "is outstanding");
        expect(pst_wait(w, 0, &err), &err, PST_ERR_STATE, "is not a request");
        expect(pst_wait(w, pull + 2, &err), &err, PST_ERR_STATE, "is not a request");
        if (pst_wait(w, pull, &err))
            fail_msg("wait: %s", err.msg);
        expect(pst_wait(w, pull, &err), &err, PST_ERR_STATE, "was waited for already");
        assert_int_equal(pst_wait(w, push, &err), PST_OK); /* released long ago */
        assert_int_equal(pst_clock(w), step + 1);
    }
    assert_memory_equal(A, ref, sizeof ref);
    float b[5];
    assert_int_equal(pst_tensor_get(w, "b", b, 5, &err), PST_OK);
    for (int i = 0; i < 5; i++)
        assert_true(b[i] == -1.5f);
    pst_req pull;
    assert_int_equal(pst_pull(w, &pull, &err), PST_OK);
    expect(pst_finish(w, &err), &err, PST_ERR_STATE, "pst_finish: the pull of clock 3");
    assert_int_equal(pst_wait(w, pull, &err), PST_OK);
    assert_int_equal(pst_checkpoint(w, &err), PST_OK);
    if (pst_finish(w, &err))
        fail_msg("finish: %s", err.msg);
    expect(pst_push(w, &pull, &err), &err, PST_ERR_STATE, "after pst_finish");
    assert_memory_equal(A, ref, sizeof ref); /* the final weights */
    pst_worker_destroy(w);
    assert_int_equal(stop(c), PST_OK);
}

typedef struct {
    const char *job, *ep;
    int rc;
    pst_err err;
} joiner;

static void *join_thread(void *arg)
{
    joiner *j = arg;
    pst_worker *w = make(j->job, j->ep, 0);
    int64_t s[1] = {9};
    pst_tensor_declare(w, "a", 1, s, &j->err);
    j->rc = pst_join(w, &j->err);
    pst_worker_destroy(w);
    return NULL;
}

/* Worker 1 declares 10 floats where worker 0 declared 9: refused by the coordinator. */
static void test_model_mismatch(void **state)
{
    (void)state;
    cluster *c = start(2);
    joiner j = {.job = c->job_path, .ep = c->endpoint};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, join_thread, &j), 0);
    pst_worker *w = make(c->job_path, c->endpoint, 1);
    pst_err err = {0};
    int64_t s[1] = {10};
    assert_int_equal(pst_tensor_declare(w, "a", 1, s, &err), PST_OK);
    int rc = pst_join(w, &err);
    assert_int_equal(rc, PST_ERR_CONFIG);
    if (!strstr(err.msg, "parameters"))
        fail_msg("message: %s", err.msg);
    pst_worker_destroy(w);
    pthread_join(th, NULL);
    assert_int_not_equal(j.rc, PST_OK); /* the job is off for worker 0 too */
    stop(c);
}

typedef struct {
    int calls;
    uint64_t lo, hi;
    int64_t last_step;
    float lr;
} hook_log;

/* A user rule: w <- w - 10 g, whatever the job's optimizer says. */
static void ten_times(void *ctx, float *w, const float *g, uint64_t offset, uint64_t n,
                      int64_t step, float lr)
{
    hook_log *h = ctx;
    h->calls++;
    h->lo = h->calls == 1 || offset < h->lo ? offset : h->lo;
    h->hi = offset + n > h->hi ? offset + n : h->hi;
    h->last_step = step;
    h->lr = lr;
    for (uint64_t i = 0; i < n; i++)
        w[i] -= 10.0f * g[i];
}

static void test_server_update_hook(void **state)
{
    (void)state;
    hook_log h = {0};
    cluster *c = start_with(1, ten_times, &h);
    pst_worker *w = make(c->job_path, c->endpoint, 0);
    pst_err err = {0};
    int64_t s[1] = {4};
    assert_int_equal(pst_tensor_declare(w, "a", 1, s, &err), PST_OK);
    if (pst_join(w, &err))
        fail_msg("join: %s", err.msg);
    float *g = pst_tensor_grad(w, "a"), *a = pst_tensor_weights(w, "a");
    for (int step = 0; step < 2; step++) {
        for (int i = 0; i < 4; i++)
            g[i] = (float)(i + 1);
        pst_req push, pull;
        assert_int_equal(pst_push(w, &push, &err), PST_OK);
        assert_int_equal(pst_pull(w, &pull, &err), PST_OK);
        assert_int_equal(pst_wait(w, pull, &err), PST_OK);
    }
    for (int i = 0; i < 4; i++)
        assert_true(a[i] == -20.0f * (float)(i + 1));
    assert_int_equal(pst_finish(w, &err), PST_OK);
    pst_worker_destroy(w);
    assert_int_equal(stop(c), PST_OK);
    assert_int_equal(h.calls, 2);
    assert_int_equal(h.lo, 0);
    assert_int_equal(h.hi, 4);
    assert_int_equal(h.last_step, 1);
    assert_true(h.lr == 0.5f); /* the job's lr, passed for the rule to use or not */
    /* Bad options: one line, no abort. */
    pst_server_options o = PST_SERVER_OPTIONS_INIT;
    unsetenv("PSTRAIN_RANK");
    unsetenv("JOB_COMPLETION_INDEX");
    expect(pst_server_run(&o, &err), &err, PST_ERR_ARG, "no rank");
    expect(pst_server_run(NULL, &err), &err, PST_ERR_ARG, "options are NULL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_bad_options), cmocka_unit_test(test_tensors_bad_input),
        cmocka_unit_test(test_join_timeout),       cmocka_unit_test(test_train_one_worker),
        cmocka_unit_test(test_model_mismatch),     cmocka_unit_test(test_server_update_hook),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
