/* base/testhooks.h -- behaviour only tests ask for, behind one pointer.
 *
 * Production code carries no test fields: a role's options hold one
 * `const pst_test_hooks *hooks`, NULL in production, and every hook below is read only
 * through it (`o->hooks && o->hooks->step_delay_ms > 0`). The cli fills it from the
 * PSTRAIN_TEST_* environment variables of the process, and only when one is set
 * (cli/hooks.c, cli_test_hooks); unit tests may fill one directly. Zero in a field means
 * "off". The struct is plain data, owned by whoever passes the pointer (it must outlive
 * the run it is passed to). */
#ifndef PSTRAIN_BASE_TESTHOOKS_H
#define PSTRAIN_BASE_TESTHOOKS_H

#include <stdint.h>

typedef struct {
    /* A slow worker (tests of the staleness bound, of status and metrics while a job
     * runs): sleep this long after every step. PSTRAIN_TEST_STEP_DELAY_MS, for the worker
     * whose rank is PSTRAIN_TEST_SLOW_WORKER ("all": every worker). */
    int step_delay_ms;
    /* A stop arriving right after step k (tests of resume): raise SIGTERM once the
     * worker's clock (train: the update count) reaches k. PSTRAIN_TEST_STOP_AFTER_STEPS. */
    int64_t stop_after_clock;
    /* A poisoned gradient: the gradient of step k (clock + 1 = k, 1-based) gets a NaN.
     * PSTRAIN_TEST_NAN_STEP, for the worker whose rank is PSTRAIN_TEST_NAN_WORKER. */
    int64_t nan_at_clock;
} pst_test_hooks;

#endif
