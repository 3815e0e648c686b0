/* api/server.c -- pst_server_run: a parameter server in the caller's process, as `pstrain
 * server` runs it (ps/server.c's srv_run), with an optional user update rule in place of
 * the job's optimizer (ps/shard.h, srv_shard_set_update). */
#include "api_internal.h"

#include <stdio.h>

#include "ps/server.h"

/* pst_update_fn and srv_update_fn are the same function type (flat offsets, floats):
 * the assignment below has no cast, so the compiler checks that they stay so. */

PST_API int pst_server_run(const pst_server_options *o, pst_err *err)
{
    if (!o)
        return pst_err_set(err, PST_ERR_ARG, "pst_server_run: options are NULL");
    int rank, rc;
    char ep[WIRE_ENDPOINT_MAX];
    if ((rc = api_resolve_node(o->rank, o->coordinator, &rank, ep, sizeof ep, err)))
        return rc;
    cfg_job *job = NULL;
    if ((rc = api_load_job(&job, o->job_path, o->keys, o->values, o->noverrides, err)))
        goto cleanup;
    if (rank >= job->cluster.servers) {
        rc = pst_err_set(err, PST_ERR_ARG, "rank %d but the job has %d servers", rank,
                         job->cluster.servers);
        goto cleanup;
    }
    log_ctx lg;
    log_init(&lg, "server", rank, stderr);
    if (o->quiet)
        lg.level = LOG_WARN;
    volatile sig_atomic_t stop = 0; /* the library raises no signal; the job ends it */
    srv_options so = {.rank = rank,
                      .coordinator = ep,
                      .bind_host = o->bind ? o->bind : "127.0.0.1",
                      .advertise = o->advertise,
                      .port = o->port,
                      .job = job,
                      .lg = &lg,
                      .stop = &stop,
                      .update = o->update,
                      .update_ctx = o->update_ctx};
    rc = srv_run(&so, err);

cleanup:
    cfg_job_free(job);
    return rc;
}
