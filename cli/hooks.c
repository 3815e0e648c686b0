/* cli/hooks.c -- the test hooks of this process, from its PSTRAIN_TEST_* variables. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

extern char **environ;

const pst_test_hooks *cli_test_hooks(pst_test_hooks *h, int rank)
{
    int any = 0;
    for (char **e = environ; *e && !any; e++)
        any = strncmp(*e, "PSTRAIN_TEST_", 13) == 0;
    if (!any)
        return NULL; /* production: no hooks at all */
    memset(h, 0, sizeof *h);
    const char *slow = getenv("PSTRAIN_TEST_SLOW_WORKER");
    const char *ms = getenv("PSTRAIN_TEST_STEP_DELAY_MS");
    if (ms && slow && (strcmp(slow, "all") == 0 || atoi(slow) == rank))
        h->step_delay_ms = atoi(ms);
    const char *nan_worker = getenv("PSTRAIN_TEST_NAN_WORKER");
    const char *nan_step = getenv("PSTRAIN_TEST_NAN_STEP");
    if (nan_step && nan_worker && atoi(nan_worker) == rank)
        h->nan_at_clock = atoll(nan_step);
    const char *stop_after = getenv("PSTRAIN_TEST_STOP_AFTER_STEPS");
    if (stop_after)
        h->stop_after_clock = atoll(stop_after);
    return h;
}
