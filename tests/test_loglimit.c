/* tests/test_loglimit.c -- base/loglimit: the per-peer limit on refusal warnings (windows,
 * peers apart, the held-back counts and their lines, the bounded table). The clock is
 * passed in, so the windows are exact. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/loglimit.h"

typedef struct {
    char *buf;
    size_t len;
    FILE *out;
    log_ctx lg;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || !(fx->out = open_memstream(&fx->buf, &fx->len)))
        return -1;
    log_init(&fx->lg, "server", 0, fx->out);
    fx->lg.level = LOG_INFO;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    fclose(fx->out);
    free(fx->buf);
    free(fx);
    return 0;
}

/* Lines logged so far that contain `needle`. */
static int count_lines(fixture *fx, const char *needle)
{
    fflush(fx->out);
    int n = 0;
    for (const char *p = fx->buf; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_burst_then_count(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    log_limit *l = log_limit_create(&fx->lg, 3, 1000, 8, &err);
    assert_non_null(l);
    int shown = 0;
    for (int i = 0; i < 100; i++)
        shown += log_limit_warn(l, "10.0.0.1", "10.0.0.1, id w-1", 5 + i, "bad message %d", i);
    assert_int_equal(shown, 3);
    assert_int_equal(count_lines(fx, "warn: bad message"), 3);
    assert_int_equal(count_lines(fx, "bad message 2 (from 10.0.0.1, id w-1)\n"), 1);
    assert_int_equal(count_lines(fx, "bad message 3"), 0);
    assert_int_equal(log_limit_held(l, "10.0.0.1"), 97);
    /* Not before the window is over ... */
    log_limit_tick(l, 1004, 0);
    assert_int_equal(count_lines(fx, "more refused"), 0);
    /* ... and once, when it is: 1000 ms after its first warning (at 5). */
    log_limit_tick(l, 1005, 0);
    assert_int_equal(
        count_lines(fx, "warn: 97 more refused messages from 10.0.0.1 in the last 1.0 s\n"), 1);
    log_limit_tick(l, 5000, 0);
    assert_int_equal(count_lines(fx, "more refused"), 1);
    assert_int_equal(log_limit_held(l, "10.0.0.1"), 0);
    assert_int_equal(log_limit_held_total(l), 97);
    /* A new window lets a new burst through. */
    assert_int_equal(log_limit_warn(l, "10.0.0.1", NULL, 6000, "again"), 1);
    assert_int_equal(count_lines(fx, "again (from 10.0.0.1)"), 1); /* no name: the key */
    log_limit_destroy(l, 6001);
    assert_int_equal(count_lines(fx, "more refused"), 1); /* nothing was held back */
}

static void test_next_warning_closes_window(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    log_limit *l = log_limit_create(&fx->lg, 1, 100, 8, &err);
    assert_non_null(l);
    assert_int_equal(log_limit_warn(l, "a", NULL, 0, "x"), 1);
    assert_int_equal(log_limit_warn(l, "a", NULL, 50, "x"), 0);
    assert_int_equal(log_limit_warn(l, "a", NULL, 99, "x"), 0);
    /* No tick: the next warning after the window reports the old one, then shows. */
    assert_int_equal(log_limit_warn(l, "a", NULL, 100, "x"), 1);
    assert_int_equal(count_lines(fx, "warn: 2 more refused messages from a in the last 0.1 s"), 1);
    assert_int_equal(count_lines(fx, "warn: x (from a)"), 2);
    log_limit_destroy(l, 101);
}

static void test_peers_apart(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    log_limit *l = log_limit_create(&fx->lg, 2, 1000, 8, &err);
    assert_non_null(l);
    for (int i = 0; i < 10; i++)
        log_limit_warn(l, "hostile", NULL, i, "junk");
    /* The flood does not use up another peer's budget. */
    assert_int_equal(log_limit_warn(l, "worker", NULL, 20, "stale"), 1);
    assert_int_equal(log_limit_warn(l, "worker", NULL, 21, "stale"), 1);
    assert_int_equal(log_limit_warn(l, "worker", NULL, 22, "stale"), 0);
    assert_int_equal(log_limit_held(l, "hostile"), 8);
    assert_int_equal(log_limit_held(l, "worker"), 1);
    assert_int_equal(log_limit_held(l, "nobody"), 0);
    /* The end of the process reports every open window, however young. */
    log_limit_destroy(l, 30);
    assert_int_equal(count_lines(fx, "8 more refused messages from hostile in the last 0.0 s"), 1);
    assert_int_equal(count_lines(fx, "1 more refused messages from worker in the last 0.0 s"), 1);
}

static void test_table_bounded(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    log_limit *l = log_limit_create(&fx->lg, 1, 1000, 2, &err);
    assert_non_null(l);
    /* 2 peers tracked; every other key shares one slot, and its one burst. */
    int shown = 0;
    char key[16];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "peer-%d", i);
        shown += log_limit_warn(l, key, NULL, i, "junk");
    }
    assert_int_equal(shown, 3);
    assert_int_equal(count_lines(fx, "junk (from peer-0)"), 1);
    assert_int_equal(count_lines(fx, "junk (from peer-1)"), 1);
    assert_int_equal(count_lines(fx, "junk (from peer-2)"), 1); /* in the shared slot */
    assert_int_equal(log_limit_held_total(l), 47);
    log_limit_tick(l, 2000, 0);
    assert_int_equal(count_lines(fx, "47 more refused messages from other peers"), 1);
    /* Quiet peers' slots are freed: new ones get their own again. */
    assert_int_equal(log_limit_warn(l, "peer-99", NULL, 3000, "late"), 1);
    assert_int_equal(count_lines(fx, "late (from peer-99)"), 1);
    log_limit_destroy(l, 3001);
}

static void test_bad_arguments(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    assert_null(log_limit_create(&fx->lg, 0, 1000, 8, &err));
    assert_int_equal(err.code, PST_ERR_CONFIG);
    assert_null(log_limit_create(&fx->lg, 1, 0, 8, &err));
    assert_null(log_limit_create(&fx->lg, 1, 1000, 0, &err));
    log_limit_destroy(NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_burst_then_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_warning_closes_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peers_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
