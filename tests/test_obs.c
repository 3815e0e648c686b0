/* tests/test_obs.c -- the metrics registry: the exact Prometheus text of a known sequence
 * of updates, refused registrations, ages, published pages, and the HTTP endpoint over a
 * real loopback socket (200 for /metrics and pages, 404 elsewhere, a taken port refused
 * with a message naming it). */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "obs/obs.h"

static obs_registry *reg(void)
{
    pst_err err = {0};
    obs_registry *r = obs_registry_create(&err);
    if (!r)
        fail_msg("obs_registry_create: %s", err.msg);
    return r;
}

static obs_metric *must(obs_metric *m, const pst_err *err)
{
    if (!m)
        fail_msg("registration: %s", err->msg);
    return m;
}

/* noinline: gcc 12 inlines it and then mistakes the result for a pointer to its local. */
__attribute__((noinline)) static char *render(obs_registry *r, double now)
{
    char *text = NULL;
    size_t len = 0;
    pst_err err = {0};
    if (obs_render(r, now, &text, &len, &err) != PST_OK)
        fail_msg("obs_render: %s", err.msg);
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_render_exact(void **state)
{
    (void)state;
    obs_registry *r = reg();
    pst_err err = {0};
    obs_metric *pushes =
        must(obs_counter(r, "t_pushes_total", "Pushes applied.", NULL, &err), &err);
    obs_metric *live = must(obs_gauge(r, "t_live_workers", "Live workers.", NULL, &err), &err);
    obs_metric *s0 = must(obs_gauge(r, "t_step", "Step.", "worker=\"0\"", &err), &err);
    obs_metric *s1 = must(obs_gauge(r, "t_step", "Step.", "worker=\"1\"", &err), &err);
    const double b[] = {0.001, 0.01, 0.1};
    obs_metric *lat =
        must(obs_histogram(r, "t_apply_seconds", "Apply time.", NULL, b, 3, &err), &err);
    obs_metric *age = must(
        obs_age(r, "t_heard_seconds", "Since heard.", "role=\"server\",rank=\"2\"", &err), &err);
    obs_metric *loss = must(obs_gauge(r, "t_loss", "Loss.", NULL, &err), &err);

    obs_add(pushes, 1);
    obs_add(pushes, 2);
    obs_set(live, 3);
    obs_set(s0, 17);
    obs_set(s1, 0.1);
    obs_observe(lat, 0.0005);
    obs_observe(lat, 0.01); /* on a bound: counts in le="0.01" */
    obs_observe(lat, 0.05);
    obs_observe(lat, 2.5); /* only in +Inf */
    obs_set_time(age, 1000.0);
    obs_set(loss, NAN);
    obs_add(NULL, 1); /* metrics off: a no-op */
    obs_set(NULL, 1);
    obs_observe(NULL, 1);
    obs_set_time(NULL, 1);

    char *text = render(r, 1012.5);
    const char *want = "# HELP t_pushes_total Pushes applied.\n"
                       "# TYPE t_pushes_total counter\n"
                       "t_pushes_total 3\n"
                       "# HELP t_live_workers Live workers.\n"
                       "# TYPE t_live_workers gauge\n"
                       "t_live_workers 3\n"
                       "# HELP t_step Step.\n"
                       "# TYPE t_step gauge\n"
                       "t_step{worker=\"0\"} 17\n"
                       "t_step{worker=\"1\"} 0.1\n"
                       "# HELP t_apply_seconds Apply time.\n"
                       "# TYPE t_apply_seconds histogram\n"
                       "t_apply_seconds_bucket{le=\"0.001\"} 1\n"
                       "t_apply_seconds_bucket{le=\"0.01\"} 2\n"
                       "t_apply_seconds_bucket{le=\"0.1\"} 3\n"
                       "t_apply_seconds_bucket{le=\"+Inf\"} 4\n"
                       "t_apply_seconds_sum 2.5605\n"
                       "t_apply_seconds_count 4\n"
                       "# HELP t_heard_seconds Since heard.\n"
                       "# TYPE t_heard_seconds gauge\n"
                       "t_heard_seconds{role=\"server\",rank=\"2\"} 12.5\n"
                       "# HELP t_loss Loss.\n"
                       "# TYPE t_loss gauge\n"
                       "t_loss NaN\n";
    assert_string_equal(text, want);
    free(text);
    obs_registry_destroy(r);
}

/* Values print in the shortest form that reads back exactly; big counts stay integers. */
static void test_value_format(void **state)
{
    (void)state;
    obs_registry *r = reg();
    pst_err err = {0};
    obs_metric *a = must(obs_gauge(r, "a", "A.", NULL, &err), &err);
    obs_metric *b = must(obs_counter(r, "b_total", "B.", NULL, &err), &err);
    obs_metric *c = must(obs_gauge(r, "c", "C.", NULL, &err), &err);
    obs_set(a, 1.0 / 3.0);
    obs_set(b, 123456789012.0);
    obs_set(c, -INFINITY);
    char *text = render(r, 0);
    assert_non_null(strstr(text, "\na 0.3333333333333333\n"));
    assert_non_null(strstr(text, "\nb_total 123456789012\n"));
    assert_non_null(strstr(text, "\nc -Inf\n"));
    double back = strtod(strstr(text, "\na ") + 3, NULL);
    assert_true(back == 1.0 / 3.0);
    free(text);
    obs_registry_destroy(r);
}

static void test_refused(void **state)
{
    (void)state;
    obs_registry *r = reg();
    pst_err err = {0};
    const double b[] = {1, 2};
    const double bad_b[] = {2, 1};
    must(obs_counter(r, "x_total", "X.", NULL, &err), &err);
    must(obs_gauge(r, "g", "G.", "k=\"1\"", &err), &err);
    assert_null(obs_counter(r, "9x", "X.", NULL, &err));
    assert_int_equal(err.code, PST_ERR_ARG);
    assert_null(obs_counter(r, "x-y", "X.", NULL, &err));
    assert_null(obs_counter(r, "y_total", "two\nlines", NULL, &err));
    assert_null(obs_gauge(r, "h", "H.", "k=1", &err));
    assert_null(obs_gauge(r, "h", "H.", "k=\"a\"b\"", &err));
    assert_null(obs_gauge(r, "h", "H.", "k=\"1\",", &err));
    assert_null(obs_histogram(r, "h", "H.", NULL, bad_b, 2, &err));
    assert_null(obs_histogram(r, "h", "H.", NULL, b, 0, &err));
    /* Same name: another type, another help, or the same labels again. */
    assert_null(obs_gauge(r, "x_total", "X.", "k=\"2\"", &err));
    assert_int_equal(err.code, PST_ERR_STATE);
    assert_null(obs_gauge(r, "g", "Other help.", "k=\"2\"", &err));
    assert_null(obs_counter(r, "x_total", "X.", NULL, &err));
    assert_non_null(strstr(err.msg, "x_total"));
    assert_null(obs_gauge(r, "g", "G.", "k=\"1\"", &err));
    assert_non_null(obs_gauge(r, "g", "G.", "k=\"2\"", &err));
    /* None of the refused ones shows. */
    char *text = render(r, 0);
    assert_string_equal(text, "# HELP x_total X.\n# TYPE x_total counter\nx_total 0\n"
                              "# HELP g G.\n# TYPE g gauge\ng{k=\"1\"} 0\ng{k=\"2\"} 0\n");
    free(text);
    obs_registry_destroy(r);
}

/* An age is left out until set, then follows the clock it is rendered at. */
static void test_age(void **state)
{
    (void)state;
    obs_registry *r = reg();
    pst_err err = {0};
    obs_metric *a = must(obs_age(r, "since_seconds", "S.", NULL, &err), &err);
    char *t0 = render(r, 50);
    assert_string_equal(t0, "# HELP since_seconds S.\n# TYPE since_seconds gauge\n");
    free(t0);
    obs_set_time(a, 40);
    char *t1 = render(r, 50), *t2 = render(r, 53.25);
    assert_non_null(strstr(t1, "\nsince_seconds 10\n"));
    assert_non_null(strstr(t2, "\nsince_seconds 13.25\n"));
    free(t1);
    free(t2);
    obs_registry_destroy(r);
}

static void test_pages(void **state)
{
    (void)state;
    obs_registry *r = reg();
    pst_err err = {0};
    char *body, *ct;
    assert_int_equal(obs_page(r, "/status", &body, &ct, &err), PST_ERR_STATE);
    assert_int_equal(obs_publish(r, "/status", "application/json", "{\"a\":1}", &err), PST_OK);
    assert_int_equal(obs_publish(r, "/status", "application/json", "{\"a\":2}", &err), PST_OK);
    assert_int_equal(obs_page(r, "/status", &body, &ct, &err), PST_OK);
    assert_string_equal(body, "{\"a\":2}");
    assert_string_equal(ct, "application/json");
    free(body);
    free(ct);
    assert_int_equal(obs_page(r, "/other", &body, &ct, &err), PST_ERR_STATE);
    obs_registry_destroy(r);
}

static void test_port_for(void **state)
{
    (void)state;
    assert_int_equal(obs_port_for(0, 1, 3), 0);
    assert_int_equal(obs_port_for(9100, 0, -1), 9100);
    assert_int_equal(obs_port_for(9100, 1, 0), 9101);
    assert_int_equal(obs_port_for(9100, 1, 2), 9103);
}

/* One HTTP/1.0 request to 127.0.0.1:port; the whole response, malloc'ed. */
static char *http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {30, 0}; /* a hung daemon fails the test instead of hanging it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail_msg("connect to port %d failed", port);
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    ssize_t got;
    while ((got = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)got;
    assert_true(got == 0);
    buf[len] = '\0';
    close(fd);
    return buf;
}

static void test_http(void **state)
{
    (void)state;
    obs_registry *r = reg();
    pst_err err = {0};
    obs_metric *c = must(obs_counter(r, "hits_total", "Hits.", NULL, &err), &err);
    obs_add(c, 7);
    obs_http *h = obs_http_start(r, "127.0.0.1", 0, &err);
    if (!h)
        fail_msg("obs_http_start: %s", err.msg);
    int port = obs_http_port(h);
    assert_true(port > 0);

    char *m = http_get(port, "/metrics");
    assert_true(strncmp(m, "HTTP/1.", 7) == 0 && strncmp(m + 8, " 200 ", 5) == 0);
    assert_non_null(strstr(m, "text/plain; version=0.0.4"));
    assert_non_null(strstr(m, "\r\n\r\n# HELP hits_total Hits.\n# TYPE hits_total counter\n"
                              "hits_total 7\n"));
    free(m);
    char *nf = http_get(port, "/status");
    assert_non_null(strstr(nf, " 404 "));
    free(nf);
    assert_int_equal(obs_publish(r, "/status", "application/json", "{\"ok\":true}", &err), PST_OK);
    char *st = http_get(port, "/status");
    assert_non_null(strstr(st, " 200 "));
    assert_non_null(strstr(st, "application/json"));
    assert_non_null(strstr(st, "\r\n\r\n{\"ok\":true}"));
    free(st);

    /* The same port again: refused at once, naming it. */
    obs_http *h2 = obs_http_start(r, "127.0.0.1", port, &err);
    assert_null(h2);
    assert_int_equal(err.code, PST_ERR_CONFIG);
    char want[64];
    snprintf(want, sizeof want, "metrics port %d on 127.0.0.1: ", port);
    assert_non_null(strstr(err.msg, want));
    assert_non_null(strstr(err.msg, "in use"));
    obs_http_stop(h);
    obs_registry_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_exact), cmocka_unit_test(test_value_format),
        cmocka_unit_test(test_refused),      cmocka_unit_test(test_age),
        cmocka_unit_test(test_pages),        cmocka_unit_test(test_port_for),
        cmocka_unit_test(test_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
