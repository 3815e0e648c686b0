/* tests/bsp_reference.c -- what synchronous (bsp) training with W workers must compute,
 * in one process, for the distributed tests to compare against.
 *
 * usage: bsp_reference JOB.yaml W OUT.safetensors [KEY=VALUE ...]
 *
 * W trainers hold the W data partitions (the same partitions and per-epoch orders the
 * workers use). At every clock each worker that still has data computes its gradient on
 * the shared weights; their mean is applied once with the job's optimizer (per update
 * group: fine-tuning's lr multipliers and frozen layers). A worker whose
 * data runs out drops out, as a worker sending DONE does. Writes the final weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "job/job.h"
#include "core/optim.h"
#include "worker/dataprep.h"
#include "worker/trainer.h"

typedef struct {
    wk_data data;
    wk_trainer *tr;
    int epoch;
    int64_t step, nsteps;
    int done;
} sim_worker;

static int fail(const pst_err *err)
{
    fprintf(stderr, "bsp_reference: %s\n", err->msg);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bsp_reference JOB.yaml W OUT.safetensors [KEY=VALUE ...]\n");
        return 2;
    }
    pst_err err = {0};
    cfg_job *job = NULL;
    if (cfg_job_load_file(&job, argv[1], &err))
        return fail(&err);
    int W = atoi(argv[2]);
    char wbuf[16];
    snprintf(wbuf, sizeof wbuf, "%d", W);
    if (cfg_override(job, "cluster.workers", wbuf, &err))
        return fail(&err);
    for (int i = 4; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq)
            return fprintf(stderr, "bsp_reference: '%s' is not KEY=VALUE\n", argv[i]), 2;
        *eq = '\0';
        if (cfg_override(job, argv[i], eq + 1, &err))
            return fail(&err);
    }
    if (cfg_job_check(job, &err))
        return fail(&err);

    sim_worker *wk = calloc((size_t)W, sizeof *wk);
    for (int k = 0; k < W; k++) {
        if (wk_data_load(job, W, k, &wk[k].data, &err))
            return fail(&err);
        if (!(wk[k].tr = wk_trainer_create(job, wk[k].data.train, k, &err)))
            return fail(&err);
        wk[k].epoch = 1;
        wk[k].nsteps = wk_trainer_begin_epoch(wk[k].tr, wk[k].data.train, 1, &err);
    }
    ml_model *m0 = wk_trainer_model(wk[0].tr);
    size_t P = ml_model_nparams(m0);
    float *w = malloc(P * sizeof(float)), *sum = malloc(P * sizeof(float));
    memcpy(w, ml_model_params(m0), P * sizeof(float)); /* worker 0's initial weights */
    opt_state *st = opt_state_create(&job->optimizer, P, &err);
    if (!st)
        return fail(&err);
    opt_config oc = job->optimizer;
    if (oc.sched.kind == OPT_SCHED_COSINE && oc.sched.total_steps == 0)
        oc.sched.total_steps = wk[0].nsteps * job->train.epochs; /* as worker 0's trainer */
    int64_t clock = 0;
    for (;;) {
        int count = 0;
        memset(sum, 0, P * sizeof(float));
        for (int k = 0; k < W; k++) {
            sim_worker *s = &wk[k];
            if (s->done)
                continue;
            ml_model *m = wk_trainer_model(s->tr);
            memcpy(ml_model_params(m), w, P * sizeof(float));
            if (wk_trainer_compute(s->tr, s->data.train, s->step, NULL, &err))
                return fail(&err);
            const float *g = ml_model_grads(m);
            for (size_t i = 0; i < P; i++)
                sum[i] += g[i];
            count++;
            if (++s->step == s->nsteps) {
                wk_epoch_stats es;
                wk_trainer_end_epoch(s->tr, 0, &es);
                if (s->epoch == job->train.epochs)
                    s->done = 1;
                else {
                    s->epoch++;
                    s->step = 0;
                    s->nsteps = wk_trainer_begin_epoch(s->tr, s->data.train, s->epoch, &err);
                }
            }
        }
        if (count == 0)
            break;
        if (count > 1) {
            float inv = 1.0f / (float)count;
            for (size_t i = 0; i < P; i++)
                sum[i] *= inv;
        }
        /* Per update group, as the servers apply it: each layer's lr_mult, frozen layers
         * (multiplier 0) left as worker 0 loaded them. */
        int ngroups;
        const opt_group *groups = wk_trainer_groups(wk[0].tr, &ngroups);
        opt_tick(st);
        opt_apply_groups(&oc, st, w, sum, 0, P, groups, ngroups, opt_lr_at(&oc, clock));
        clock++;
    }
    memcpy(ml_model_params(m0), w, P * sizeof(float));
    if (ckpt_save_model(argv[3], m0, &job->model.spec, wk[0].data.train, &wk[0].data.scaler, &err))
        return fail(&err);
    printf("bsp_reference: %d workers, %lld clocks\n", W, (long long)clock);
    for (int k = 0; k < W; k++) {
        wk_trainer_destroy(wk[k].tr);
        wk_data_fini(&wk[k].data);
    }
    free(wk);
    free(w);
    free(sum);
    opt_state_destroy(st);
    cfg_job_free(job);
    return 0;
}
