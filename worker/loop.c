/* worker/loop.c -- see loop.h. */
#include "loop.h"

#include <math.h>
#include <signal.h>
#include <string.h>

#include "base/clock.h"

/* ---- Cadence ------------------------------------------------------------------------------ */

void wk_cadence_init(wk_cadence *c, const cfg_checkpoint *ck, int timed)
{
    *c = (wk_cadence){.enabled = ck->enabled,
                      .every_steps = ck->every_steps,
                      .every_seconds = ck->every_seconds,
                      .timed = timed,
                      .last_s = pst_mono_s()};
}

int wk_cadence_due(wk_cadence *c, int64_t steps_done)
{
    if (!c->enabled)
        return 0;
    int due = c->every_steps > 0 && steps_done % c->every_steps == 0;
    if (c->timed && c->every_seconds > 0 && (due || pst_mono_s() - c->last_s >= c->every_seconds)) {
        c->last_s = pst_mono_s();
        due = 1;
    }
    return due;
}

void wk_cadence_reset(wk_cadence *c) { c->last_s = pst_mono_s(); }

/* ---- The loop ---------------------------------------------------------------------------- */

/* The steps of one epoch from `first`; *interrupted when a stop cut them short. */
static int run_steps(const wk_loop_options *o, wk_loop_pos *at, int64_t first, int *interrupted,
                     pst_err *err)
{
    const wk_loop_ops *ops = o->ops;
    int rc;
    for (int64_t s = first; s < at->nsteps; s++) {
        if (o->stop && *o->stop) {
            *interrupted = 1;
            return PST_OK;
        }
        at->step = s;
        if (ops->prepare && (rc = ops->prepare(o->ctx, at, err)))
            return rc;
        if ((rc = wk_trainer_compute(o->tr, o->train, s, &at->loss, err)))
            return rc;
        int due = o->cadence && wk_cadence_due(o->cadence, at->clock + 1);
        if (!ops->update) {
            if ((rc = wk_trainer_apply_local(o->tr, err)))
                return rc;
        } else if ((rc = ops->update(o->ctx, at, due, err)))
            return rc;
        at->clock++;
        double sps = wk_trainer_samples_per_s(o->tr);
        if (o->rep) {
            wk_report_progress(o->rep, at->epoch, s + 1, at->nsteps, at->loss, sps);
            if (o->log_every > 0 && (s + 1) % o->log_every == 0) {
                wk_comm_stats cs;
                if (ops->comm)
                    ops->comm(o->ctx, 0, &cs);
                if ((rc = wk_report_steps(o->rep, at->epoch, s + 1, at->nsteps, at->loss, sps,
                                          ops->comm ? &cs : NULL, err)))
                    return rc;
            }
        }
        if (ops->after_step && (rc = ops->after_step(o->ctx, at, err)))
            return rc;
        if (o->hooks && o->hooks->stop_after_clock > 0 && at->clock == o->hooks->stop_after_clock)
            raise(SIGTERM); /* test hook: a stop arriving right here */
        /* The epoch's last step is covered by the epoch-end checkpoint. */
        if (due && ops->checkpoint && s + 1 < at->nsteps &&
            (rc = ops->checkpoint(o->ctx, 0, "periodic", err)))
            return rc;
    }
    return PST_OK;
}

/* The evaluation and the record of an epoch that ended (or was cut short). */
static int report_epoch(const wk_loop_options *o, int epoch, const wk_epoch_stats *st, pst_err *err)
{
    int rc;
    if (!o->rep) {
        char ppl[32] = ""; /* a language model's perplexity, exp(mean token loss) */
        if (st->lm)
            snprintf(ppl, sizeof ppl, " ppl %.2f", exp(st->loss));
        if (o->lg)
            log_info(o->lg, "epoch %d/%d loss %.4f%s | %.2fs %.0f samples/s", epoch, o->last_epoch,
                     st->loss, ppl, st->seconds, st->seconds > 0 ? st->samples / st->seconds : 0.0);
        return PST_OK;
    }
    wk_eval val;
    if (o->val && (rc = wk_trainer_evaluate(o->tr, o->val, &val, NULL, err)))
        return rc;
    wk_comm_stats cs;
    if (o->ops->comm)
        o->ops->comm(o->ctx, 1, &cs);
    if ((rc = wk_report_epoch(o->rep, epoch, st, o->val ? &val : NULL, o->ops->comm ? &cs : NULL,
                              err)))
        return rc;
    /* train.on_divergence: a run going nowhere says so after every epoch, not only at
     * the end (an epoch cut short by a stop has too few steps to judge). */
    pst_err why = {0};
    if (st->interrupted ||
        !wk_trainer_judge_epoch(o->tr, epoch, o->val, o->val ? &val : NULL, o->train, st, &why))
        return PST_OK;
    if (o->on_divergence == CFG_DIV_STOP)
        return pst_err_set(err, PST_ERR_DIVERGED,
                           "%s; stopped after epoch %d "
                           "(train.on_divergence: stop)",
                           why.msg, epoch);
    if (o->lg)
        log_warn(o->lg, "%s", why.msg);
    return PST_OK;
}

int wk_loop_run(const wk_loop_options *o, wk_loop_result *res, pst_err *err)
{
    const wk_loop_ops *ops = o->ops;
    wk_loop_pos at = {.clock = o->clock, .loss = NAN};
    memset(res, 0, sizeof *res);
    int rc = PST_OK;
    for (int e = o->first_epoch; e <= o->last_epoch; e++) {
        at.epoch = e;
        at.nsteps = wk_trainer_begin_epoch(o->tr, o->train, e, err);
        if (at.nsteps < 0)
            return err ? err->code : PST_ERR_STATE;
        int64_t first = 0;
        if (e == o->first_epoch) {
            first = o->first_step;
            if (o->resume && (rc = wk_trainer_resume_epoch(o->tr, o->train, o->resume, err)))
                goto out;
        }
        if (ops->begin_epoch)
            ops->begin_epoch(o->ctx, e);
        int interrupted = 0;
        if ((rc = run_steps(o, &at, first, &interrupted, err)))
            goto out;
        wk_trainer_end_epoch(o->tr, interrupted, &res->last);
        if (ops->end_epoch && (rc = ops->end_epoch(o->ctx, &res->last, err)))
            goto out;
        res->interrupted = interrupted;
        if (interrupted && !o->report_interrupted)
            goto out;
        if ((rc = report_epoch(o, e, &res->last, err)))
            goto out;
        if (ops->checkpoint) {
            if ((rc = ops->checkpoint(o->ctx, !interrupted, interrupted ? "stopped" : NULL, err)))
                goto out;
            if (o->cadence)
                wk_cadence_reset(o->cadence);
        }
        if (interrupted)
            goto out;
    }
out:
    res->clock = at.clock;
    return rc;
}

int wk_loop_local_epochs(wk_trainer *tr, const ds_dataset *train, int first, int last,
                         wk_epoch_stats *st, pst_err *err)
{
    const wk_loop_ops local = {0};
    wk_loop_options o = {.tr = tr,
                         .train = train,
                         .first_epoch = first,
                         .last_epoch = last,
                         .clock = wk_trainer_step(tr),
                         .ops = &local};
    wk_loop_result res;
    int rc = wk_loop_run(&o, &res, err);
    *st = res.last;
    return rc;
}
