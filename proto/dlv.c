/* proto/dlv.c -- see dlv.h (the delivery contract). */
#include "dlv.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* rto = 2 srtt + 4 rttvar + 2 ms, at least 10 ms: RFC 6298's srtt + 4 rttvar alone goes
 * to srtt + 2 ms when the round trips are steady, which one descheduled server on a busy
 * 2-core machine exceeds; RFC 6298's 1 s floor would make every loss cost a second, so
 * the floor is 2 x srtt and 10 ms (a scheduling slice). 10 ms per MiB in flight before any
 * sample: 100 MiB/s, below what loopback moves on a loaded machine (0.3-3 GB/s,
 * docs/benchmarks.md). */
const dlv_rto_params DLV_RTO_KV = {
    .init_ms = 20,
    .init_srtt_ms = 5.0,
    .init_ms_per_mib = 10.0,
    .srtt_mult = 2.0,
    .var_mult = 4.0,
    .floor_ms = 2,
    .min_ms = 10,
    .max_ms = 1000,
    .sample_cap_ms = 1000.0,
    .adapt = 1,
    .patient = 3,
};

const dlv_rto_params DLV_RTO_CALL = {
    .init_ms = 25,
    .init_srtt_ms = 5.0,
    .init_ms_per_mib = 0.0,
    .srtt_mult = 3.0,
    .var_mult = 0.0,
    .floor_ms = 1,
    .max_ms = 250,
    .sample_cap_ms = 1000.0,
    .adapt = 0,
    .patient = 0,
};

/* ---- Retry timer ------------------------------------------------------------------------ */

void dlv_rto_init(dlv_rto *r, const dlv_rto_params *p)
{
    memset(r, 0, sizeof *r);
    r->p = *p;
    r->srtt_ms = p->init_srtt_ms;
    r->rttvar_ms = p->init_srtt_ms / 2;
    r->rto_ms = p->init_ms;
    r->patient_left = p->patient;
    r->due_ms = 0;
}

/* The timeout the estimate gives (init_ms without adaptation). */
static int estimate_ms(const dlv_rto *r)
{
    if (!r->p.adapt)
        return r->p.init_ms;
    int ms = (int)(r->p.srtt_mult * r->srtt_ms + r->p.var_mult * r->rttvar_ms) + r->p.floor_ms;
    if (ms < r->p.min_ms)
        ms = r->p.min_ms;
    return ms > r->p.max_ms ? r->p.max_ms : ms;
}

void dlv_rto_sample(dlv_rto *r, double rtt_ms)
{
    if (!r->p.adapt)
        return;
    double x = rtt_ms < r->p.sample_cap_ms ? rtt_ms : r->p.sample_cap_ms;
    if (x < 0)
        x = 0;
    if (r->nsamples == 0) {
        /* RFC 6298 (2.2): the first measurement sets the estimate. Smoothing it in from
         * init_srtt_ms (as before) took dozens of samples to reach round trips longer than
         * the prior -- samples that could not come, since such requests were resent. */
        r->srtt_ms = x;
        r->rttvar_ms = x / 2;
    } else {
        /* RFC 6298 (2.3, alpha 1/8, beta 1/4), rttvar first, from the old srtt. */
        r->rttvar_ms = 0.75 * r->rttvar_ms + 0.25 * fabs(r->srtt_ms - x);
        r->srtt_ms = 0.875 * r->srtt_ms + 0.125 * x;
    }
    r->nsamples++;
    /* A request sent once was answered within the timeout: backoff ends (Karn). */
    r->rto_ms = estimate_ms(r);
}

void dlv_rto_progress(dlv_rto *r)
{
    r->patient_left = r->p.patient;
    /* Karn's rule: only a clean sample ends an adaptive backoff (dlv_rto_sample). */
    if (!r->p.adapt)
        r->rto_ms = estimate_ms(r);
}

void dlv_rto_expired(dlv_rto *r, int only_parkable)
{
    if (only_parkable && r->patient_left > 0)
        r->patient_left--;
    else
        r->rto_ms = r->rto_ms * 2 > r->p.max_ms ? r->p.max_ms : r->rto_ms * 2;
    if (r->rto_ms < r->p.floor_ms)
        r->rto_ms = r->p.floor_ms;
}

void dlv_rto_arm(dlv_rto *r, int64_t now_ms)
{
    if (r->rto_ms < r->p.floor_ms)
        r->rto_ms = r->p.floor_ms;
    r->due_ms = now_ms + r->rto_ms;
}

void dlv_rto_arm_bytes(dlv_rto *r, int64_t now_ms, uint64_t bytes)
{
    dlv_rto_arm(r, now_ms);
    if (r->p.adapt && r->nsamples == 0)
        r->due_ms += (int64_t)(r->p.init_ms_per_mib * (double)bytes / (1024.0 * 1024.0));
}

void dlv_rto_hurry(dlv_rto *r, int64_t now_ms, double rtts)
{
    int64_t soon = now_ms + (int64_t)(rtts * r->srtt_ms) + r->p.floor_ms;
    if (soon < r->due_ms)
        r->due_ms = soon;
}

void dlv_rto_defer(dlv_rto *r, int64_t until_ms)
{
    if (until_ms > r->due_ms)
        r->due_ms = until_ms;
}

void dlv_rto_reset(dlv_rto *r)
{
    r->due_ms = 0;
    r->rto_ms = r->p.floor_ms;
}

int dlv_rto_due(const dlv_rto *r, int64_t now_ms) { return now_ms >= r->due_ms; }

int dlv_rto_wait_ms(const dlv_rto *r, int64_t now_ms)
{
    int64_t w = r->due_ms - now_ms;
    return w > 0 ? (w > INT32_MAX ? INT32_MAX : (int)w) : 0;
}

/* ---- Request ids and outstanding requests ------------------------------------------------ */

uint64_t dlv_ids_take(dlv_ids *ids, int n)
{
    uint64_t lo = ids->next;
    ids->next += (uint64_t)(n > 0 ? n : 0);
    return lo;
}

int dlv_batch_init(dlv_batch *b, int cap, pst_err *err)
{
    memset(b, 0, sizeof *b);
    if (cap < 0 || !(b->answered = calloc((size_t)cap + 1, 1)))
        return pst_err_set(err, PST_ERR_NOMEM, "delivery: out of memory for %d requests", cap);
    b->cap = cap;
    return PST_OK;
}

void dlv_batch_fini(dlv_batch *b)
{
    free(b->answered);
    memset(b, 0, sizeof *b);
}

void dlv_batch_start(dlv_batch *b, dlv_ids *ids, int n, double now_ms)
{
    assert(n >= 0 && n <= b->cap); /* the caller sized it for its largest operation */
    b->lo = dlv_ids_take(ids, n);
    b->n = n;
    b->unanswered = n;
    b->sent_ms = now_ms;
    b->resent = 0;
    memset(b->answered, 0, (size_t)n);
}

int dlv_batch_index(const dlv_batch *b, uint64_t id)
{
    return id >= b->lo && id - b->lo < (uint64_t)b->n ? (int)(id - b->lo) : -1;
}

int dlv_batch_answer(dlv_batch *b, uint64_t id, double now_ms, double *rtt_ms)
{
    if (rtt_ms)
        *rtt_ms = -1;
    int i = dlv_batch_index(b, id);
    if (i < 0 || b->answered[i])
        return 0;
    b->answered[i] = 1;
    if (--b->unanswered == 0 && !b->resent && rtt_ms)
        *rtt_ms = now_ms - b->sent_ms;
    return 1;
}

int dlv_batch_done(const dlv_batch *b) { return b->unanswered == 0; }
int dlv_batch_answered(const dlv_batch *b, int i) { return b->answered[i]; }

/* ---- Receiver ------------------------------------------------------------------------------ */

dlv_verdict dlv_stream_check(const dlv_stream *s, int64_t unit, uint64_t off, uint64_t first)
{
    uint64_t expect = s->taken == 0 ? first : s->next;
    if (unit < s->unit || (unit == s->unit && s->taken > 0 && off < expect))
        return DLV_REPEAT;
    if (unit > s->unit || off != expect)
        return DLV_GAP;
    return DLV_TAKE;
}

int dlv_stream_took(dlv_stream *s, uint64_t len, uint64_t next, uint64_t unit_len)
{
    s->taken += len;
    s->next = next;
    if (s->taken < unit_len)
        return 0;
    s->taken = 0;
    s->unit++;
    return 1;
}

void dlv_stream_reset(dlv_stream *s, int64_t unit)
{
    s->unit = unit;
    s->taken = 0;
    s->next = 0;
}

/* ---- Incarnations ------------------------------------------------------------------------ */

dlv_incarnation dlv_incarnation_check(uint64_t current, uint64_t got)
{
    if (got == 0 || got == current)
        return DLV_INC_CURRENT;
    return got < current ? DLV_INC_STALE : DLV_INC_NEWER;
}
