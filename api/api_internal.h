/* api/api_internal.h -- the worker handle behind include/pstrain/pstrain.h, shared by
 * api.c (options, tensors, state checks) and join.c (the network side); for api/ alone. */
#ifndef PSTRAIN_API_INTERNAL_H
#define PSTRAIN_API_INTERNAL_H

#include <signal.h>
#include <stdint.h>

#include "base/err.h"
#include "base/log.h"
#include "job/job.h"
#include "net/net.h"
#include "proto/msg.h"
#include "proto/wire.h"
#include "worker/kv.h"

#include "pstrain/pstrain.h"

/* created -> (declare...) -> joined -> finished; failed: a join or step that broke the
 * connection to the job (only destroy is left). */
typedef enum { API_CREATED = 0, API_JOINED, API_FINISHED, API_FAILED } api_state;

typedef struct {
    char name[PST_NAME_MAX];
    int ndim;
    int64_t shape[PST_MAX_DIMS];
    size_t offset, numel;
} api_tensor;

struct pst_worker {
    api_state state;
    cfg_job *job;
    int rank;
    char coordinator[WIRE_ENDPOINT_MAX];
    int64_t steps;
    log_ctx lg;
    volatile sig_atomic_t stop; /* never raised by the library: the kv client's stop flag */

    api_tensor *t; /* (ntensors) in declaration order = flat layout order */
    int ntensors, cap;
    size_t nparams;
    float *weights; /* (nparams) */
    float *grads;   /* (nparams) */

    /* The network side (join.c). */
    net_ctx *ctx;
    net_sock *coord;
    net_msg *m;
    msg_in *in;
    struct hb_client *hb;
    wk_kv *kv;
    uint64_t generation;
    int64_t clock;           /* steps pushed */
    int64_t pull_clock;      /* the outstanding pull's clock, -1: none */
    int64_t pushes_released; /* pushes below this clock were waited for */
    int epoch;
    int64_t step;
    double loss;
};

/* api.c: the job file with PSTRAIN_NUM_* and the caller's overrides, checked; the rank
 * and coordinator from the arguments, else the environment. */
int api_load_job(cfg_job **job, const char *path, const char *const *keys,
                 const char *const *values, int noverrides, pst_err *err);
int api_resolve_node(int rank_in, const char *coordinator, int *rank, char *ep_out, size_t cap,
                     pst_err *err);

/* join.c */
int api_join(pst_worker *w, pst_err *err);
int api_finish(pst_worker *w, pst_err *err);
void api_disconnect(pst_worker *w);
int api_idle(void *ctx, pst_err *err);

#endif
