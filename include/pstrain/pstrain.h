/* pstrain/pstrain.h -- pstrain as a library: a worker of a distributed job, driven by your
 * own training code.
 *
 * A pstrain job is one coordinator, S parameter servers and W workers. The servers hold the
 * model as one flat vector of floats, cut into S contiguous shards, and apply the job's
 * optimizer (optimizer: in the job file) to the gradients workers push; they answer pulls
 * under the job's consistency rule (cluster.consistency: bsp, ssp with
 * cluster.staleness, or asp). This header lets any program be one of the W workers: it
 * declares its tensors, and from then on pushes gradients and pulls weights.
 *
 * The flat layout is the program's: the tensors it declares, in the order it declares
 * them, are consecutive ranges of the flat vector (tensor k starts where tensor k-1
 * ends). Every worker of a job must declare the same tensors in the same order; the
 * coordinator learns the model's size from the workers' registration (and refuses a
 * worker whose size differs), so the job file does not describe the model: it says
 * `model: {external: true}` and names no layers and no data ("Job files" below).
 *
 * Worked example: one worker of a job started by hand (or by a cluster script):
 *
 *     pstrain coordinator job.yaml --bind tcp://127.0.0.1:7070 &
 *     pstrain server job.yaml --rank 0 --coordinator tcp://127.0.0.1:7070 &
 *     PSTRAIN_RANK=0 PSTRAIN_COORDINATOR=tcp://127.0.0.1:7070 ./mytrain job.yaml
 *
 * where mytrain.c is
 *
 *     #include <pstrain/pstrain.h>
 *
 *     int main(int argc, char **argv)
 *     {
 *         pst_err err = {0};
 *         pst_worker *w = NULL;
 *         pst_options o = PST_OPTIONS_INIT;           // rank, coordinator: from the env
 *         o.job_path = argv[1];
 *         o.steps = 100;
 *         int64_t wshape[2] = {10, 784}, bshape[1] = {10};
 *         if (pst_worker_create(&w, &o, &err) ||
 *             pst_tensor_declare(w, "fc.weight", 2, wshape, &err) ||  // floats [0, 7840)
 *             pst_tensor_declare(w, "fc.bias", 1, bshape, &err) ||    // [7840, 7850)
 *             pst_tensor_set(w, "fc.weight", my_init, 7840, &err) ||  // rank 0's start
 *             pst_join(w, &err))                                      // servers' weights in
 *             goto fail;
 *         float *W = pst_tensor_weights(w, "fc.weight"), *dW = pst_tensor_grad(w, "fc.weight");
 *         for (int step = 0; step < 100; step++) {
 *             my_forward_backward(W, dW, ...);   // writes every gradient of the step
 *             pst_req push, pull;
 *             if (pst_push(w, &push, &err) || pst_pull(w, &pull, &err) ||
 *                 pst_wait(w, pull, &err))      // the new weights are in W now
 *                 goto fail;
 *         }
 *         if (pst_finish(w, &err))             // DONE: this worker leaves the job
 *             goto fail;
 *         pst_worker_destroy(w);
 *         return 0;
 *     fail:
 *         fprintf(stderr, "mytrain: %s\n", err.msg);
 *         pst_worker_destroy(w);
 *         return 1;
 *     }
 *
 * Build it with   cc mytrain.c $(pkg-config --cflags --libs pstrain)
 *
 * Life of a worker:  create -> declare... (set...) -> join -> { push, pull, wait }... ->
 * finish -> destroy. Calls out of this order fail with PST_ERR_STATE and a message; no
 * call of this API aborts or exits on bad input.
 *
 * Errors: every function that can fail returns 0 (PST_OK) or a pst_status, and when
 * err is not NULL fills it with one line naming what failed ("pst_tensor_get: no tensor
 * 'fc.wieght' (declared: fc.weight, fc.bias)"). err is caller-owned; it may be NULL.
 *
 * Servers: pst_server_run (at the end) runs a parameter server in your process, as
 * `pstrain server` does, optionally with your own update rule instead of the job's
 * optimizer.
 *
 * Threads: a pst_worker is used by one thread at a time. The library starts threads of
 * its own (ZeroMQ's I/O thread and a heartbeat thread), which never call back into yours.
 *
 * Job files: the worker reads the same job file and the same settings as every other
 * process of the job (`pstrain worker JOB.yaml --rank R --coordinator EP` and its
 * environment: PSTRAIN_RANK or JOB_COMPLETION_INDEX, PSTRAIN_COORDINATOR or
 * DMLC_PS_ROOT_URI + DMLC_PS_ROOT_PORT, PSTRAIN_NUM_SERVERS/DMLC_NUM_SERVER,
 * PSTRAIN_NUM_WORKERS/DMLC_NUM_WORKER, PSTRAIN_SERVER_KEY, PSTRAIN_SERVER_PUBLIC,
 * PSTRAIN_CLIENT_KEY, PSTRAIN_ALLOW; not TF_CONFIG): cluster:, optimizer:, checkpoint: and
 * security: apply as they do for pstrain's own workers. Relative paths in the job file
 * are taken from the working directory (pstrain's CLI takes data and key paths from the
 * job file's folder). A library job says `model: {external:
 * true}` and leaves model.layers and data.train out (pstrain's own workers refuse such a
 * job; examples/library/job.yaml, docs/library.md). */
#ifndef PSTRAIN_PSTRAIN_H
#define PSTRAIN_PSTRAIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PST_API __attribute__((visibility("default")))
#else
#define PST_API
#endif

#define PSTRAIN_API_VERSION 1

/* ---- Status codes and messages ------------------------------------------------------- */

/* The same codes and message struct the rest of pstrain uses (its base/err.h); defined
 * once whichever header comes first. */
#ifndef PSTRAIN_BASE_ERR_H
typedef enum {
    PST_OK = 0,
    PST_ERR_ARG,     /* bad argument: unknown tensor, wrong size, bad option */
    PST_ERR_NOMEM,   /* allocation failed or size overflows */
    PST_ERR_IO,      /* open/read/write failed */
    PST_ERR_DATA,    /* malformed input data */
    PST_ERR_CONFIG,  /* bad job file, or a model that disagrees with the job's */
    PST_ERR_NUMERIC, /* NaN/Inf where a finite value is needed */
    PST_ERR_STATE,   /* call not valid now (out of order) */
    PST_ERR_TIMEOUT, /* a peer did not answer in time (retriable) */
    PST_ERR_PEER,    /* a peer refused a request or sent a bad message */
    PST_ERR_NET,     /* a socket operation failed */
    PST_ERR_DIVERGED /* training diverged */
} pst_status;

typedef struct {
    int code;      /* a pst_status; PST_OK when nothing failed */
    char msg[512]; /* one line, no trailing newline */
} pst_err;
#endif

/* Short stable name of a code ("arg", "state", ...); a static string. */
PST_API const char *pst_status_str(int code);

/* ---- Joining a job --------------------------------------------------------------------- */

typedef struct pst_worker pst_worker; /* opaque; one per process and job */

/* Request handles: what pst_push and pst_pull return and pst_wait takes. 0 is never a
 * valid handle. */
typedef uint64_t pst_req;

typedef struct {
    /* The job file (YAML); NULL: the environment's PSTRAIN_JOB. Borrowed during
     * pst_worker_create only. */
    const char *job_path;
    /* The coordinator's endpoint (tcp://HOST:PORT); NULL: PSTRAIN_COORDINATOR, else
     * tcp://$DMLC_PS_ROOT_URI:$DMLC_PS_ROOT_PORT. Copied. */
    const char *coordinator;
    /* This worker's rank in [0, cluster.workers); -1: PSTRAIN_RANK, else
     * JOB_COMPLETION_INDEX. Rank 0 sends the initial weights. */
    int rank;
    /* Job overrides, as `--KEY VALUE` on pstrain's command line: keys[i] is a job key
     * ("cluster.consistency"), values[i] its value; noverrides pairs, applied after the
     * environment's (PSTRAIN_NUM_WORKERS, ...). Borrowed during pst_worker_create. */
    const char *const *keys;
    const char *const *values;
    int noverrides;
    /* Steps this worker will push (the coordinator's progress total and the servers'
     * schedules, e.g. cosine decay); 0: unknown. */
    int64_t steps;
    /* Log lines (info and up) go to stderr unless quiet is set. */
    int quiet;
} pst_options;

#define PST_OPTIONS_INIT                                                                           \
    {                                                                                              \
        NULL, NULL, -1, NULL, NULL, 0, 0, 0                                                        \
    }

/* Loads the job (no network yet) and fills *out with a new worker, which the caller owns
 * and frees with pst_worker_destroy. On failure *out is NULL. */
PST_API int pst_worker_create(pst_worker **out, const pst_options *o, pst_err *err);

/* Frees everything; NULL is fine. A joined worker that did not pst_finish is simply gone
 * to the job (the coordinator notices through its heartbeats). */
PST_API void pst_worker_destroy(pst_worker *w);

/* ---- Tensors ------------------------------------------------------------------------- */

#define PST_MAX_DIMS 8
#define PST_NAME_MAX 128

/* Declares a dense tensor of ndim dimensions (1..PST_MAX_DIMS, each >= 1) in row-major
 * order, as the next range of the flat vector. name (1..PST_NAME_MAX-1 bytes) and shape
 * are copied. Only before pst_join; a name declared twice is PST_ERR_ARG. */
PST_API int pst_tensor_declare(pst_worker *w, const char *name, int ndim, const int64_t *shape,
                               pst_err *err);

typedef struct {
    const char *name; /* owned by the worker, valid until pst_worker_destroy */
    int ndim;
    int64_t shape[PST_MAX_DIMS];
    size_t offset; /* first float in the flat vector */
    size_t numel;  /* floats */
} pst_tensor_info;

/* Number of declared tensors, and tensor i's description (0 <= i < count). */
PST_API int pst_tensor_count(const pst_worker *w);
PST_API int pst_tensor_info_at(const pst_worker *w, int i, pst_tensor_info *info, pst_err *err);
/* The tensor called name; an unknown name is PST_ERR_ARG. */
PST_API int pst_tensor_find(const pst_worker *w, const char *name, pst_tensor_info *info,
                            pst_err *err);

/* Copies n floats (n must equal the tensor's numel) into the worker's weights of tensor
 * name. Before pst_join this is the initial weight rank 0 sends the servers (unset
 * tensors start at zero); after it, the local copy until the next pull overwrites it. */
PST_API int pst_tensor_set(pst_worker *w, const char *name, const float *src, size_t n,
                           pst_err *err);
/* Copies the tensor's current weights (the last pull's) into dst (n floats, n == numel). */
PST_API int pst_tensor_get(const pst_worker *w, const char *name, float *dst, size_t n,
                           pst_err *err);

/* Zero-copy views, valid from pst_join until pst_worker_destroy, owned by the worker (do
 * not free): the tensor's numel floats in the flat weights (written by pst_wait on a
 * pull) and in the flat gradient buffer (read by pst_push). NULL for an unknown name or
 * before pst_join. The whole flat vectors: pst_weights / pst_grads, pst_nparams floats. */
PST_API float *pst_tensor_weights(pst_worker *w, const char *name);
PST_API float *pst_tensor_grad(pst_worker *w, const char *name);
PST_API float *pst_weights(pst_worker *w);
PST_API float *pst_grads(pst_worker *w);
PST_API size_t pst_nparams(const pst_worker *w);

/* ---- The job ------------------------------------------------------------------------- */

/* Registers with the coordinator (the model's size: the declared tensors), connects to the
 * servers, has rank 0 send its initial weights, pulls the servers' weights into the flat
 * weights and waits until every worker has them. Blocks up to the job's
 * cluster.timeout_s. A size that disagrees with the other workers' is PST_ERR_CONFIG
 * from the coordinator. */
PST_API int pst_join(pst_worker *w, pst_err *err);

/* The job's consistency rule: "bsp", "ssp" or "asp"; *staleness (may be NULL) gets
 * cluster.staleness (ssp; 0 for bsp). Valid after pst_worker_create. */
PST_API const char *pst_consistency(const pst_worker *w, int *staleness);
PST_API int pst_rank(const pst_worker *w);
PST_API int pst_num_workers(const pst_worker *w);

/* This worker's clock: the steps it has pushed. A pull asks for the weights of this
 * clock: under bsp those after every worker's push of it, under ssp those at most
 * `staleness` clocks behind, under asp whatever the servers hold. */
PST_API int64_t pst_clock(const pst_worker *w);

/* ---- Push, pull, wait ---------------------------------------------------------------- */

/* Sends the flat gradient buffer (every tensor: pst_grads) as this clock's step and
 * advances the clock. Zero-copy: the buffer must not be written until pst_wait(*req)
 * returns (a later pull's wait implies it). */
PST_API int pst_push(pst_worker *w, pst_req *req, pst_err *err);
/* Asks for the weights of the current clock. One pull at a time: a second before the
 * first's wait is PST_ERR_STATE. */
PST_API int pst_pull(pst_worker *w, pst_req *req, pst_err *err);
/* Blocks until req is done: a push's buffer released by the transport; a pull's weights
 * written into the flat weights. A pull waits at most cluster.timeout_s for its servers;
 * an unknown or already waited-for handle is PST_ERR_STATE. */
PST_API int pst_wait(pst_worker *w, pst_req req, pst_err *err);

/* Flags the next push: every server writes a checkpoint of clock + 1 once that step is
 * applied (checkpoint.dir of the job; as pstrain's own worker 0 does on its cadence). */
PST_API int pst_checkpoint(pst_worker *w, pst_err *err);

/* Reports progress (shown by the coordinator's /status and `pstrain status`). */
PST_API void pst_progress(pst_worker *w, int epoch, int64_t step, double loss);

/* Clean shutdown: waits for every push to be taken and tells every server this worker is
 * done; rank 0 then pulls the final weights into the flat weights (answered once every
 * worker is done); last, DONE to the coordinator. The job ends when every worker has
 * finished (the servers write their checkpoints). An outstanding pull must be waited
 * for first. Afterwards only pst_tensor_get, the views and pst_worker_destroy. */
PST_API int pst_finish(pst_worker *w, pst_err *err);

/* ---- A server with its own update rule ------------------------------------------------ */

/* A user update rule, run by a server in place of the job's optimizer: updates w[0..n),
 * the weights of flat floats [offset, offset + n), from the gradient g[0..n) (under bsp
 * the mean of the workers' gradients of the step; under ssp/asp one worker's) at update
 * `step` (0-based) with the job's scheduled learning rate lr. w and g are borrowed for the
 * call. A range may be part of a tensor, or span several (shards and chunks cut the flat
 * vector where they like): a per-tensor rule maps offsets to tensors (pst_tensor_info's
 * offset and numel in a worker declaring the same tensors). Called on the server's
 * thread, one call at a time; it must not block. */
typedef void (*pst_update_fn)(void *ctx, float *w, const float *g, uint64_t offset, uint64_t n,
                              int64_t step, float lr);

typedef struct {
    const char *job_path;    /* NULL: PSTRAIN_JOB */
    const char *coordinator; /* NULL: PSTRAIN_COORDINATOR, DMLC_PS_ROOT_URI + _PORT */
    int rank;                /* -1: PSTRAIN_RANK, JOB_COMPLETION_INDEX */
    const char *bind;        /* interface to listen on; NULL: 127.0.0.1 */
    const char *advertise;   /* host workers connect to; NULL: bind */
    int port;                /* 0: any free one */
    const char *const *keys; /* job overrides, as pst_options */
    const char *const *values;
    int noverrides;
    int quiet;
    pst_update_fn update; /* NULL: the job's optimizer (optimizer: in the job file) */
    void *update_ctx;     /* passed to update; borrowed until pst_server_run returns */
} pst_server_options;

#define PST_SERVER_OPTIONS_INIT                                                                    \
    {                                                                                              \
        NULL, NULL, -1, NULL, NULL, 0, NULL, NULL, 0, 0, NULL, NULL                                \
    }

/* Runs server `rank` of the job (as `pstrain server`) until the job ends: PST_OK once the
 * coordinator shut it down (its shard checkpoint written), else the failure. Blocks. */
PST_API int pst_server_run(const pst_server_options *o, pst_err *err);

#ifdef __cplusplus
}
#endif

#endif
