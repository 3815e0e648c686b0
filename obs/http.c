/* obs/http.c -- the HTTP endpoint of a registry (libmicrohttpd). See obs.h.
 *
 * The listening socket is bound here rather than by libmicrohttpd, so that a port in use
 * is reported with the system's reason instead of a bare "could not start". The daemon
 * then runs on its own polling thread (MHD_USE_INTERNAL_POLLING_THREAD) and owns the
 * socket. */
#include "obs.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* A client that sends nothing for this long is dropped, so it cannot hold a slot. */
#define CONN_TIMEOUT_S 10
#define MAX_CONNS 32

struct obs_http {
    struct MHD_Daemon *d;
    obs_registry *reg;
    int port; /* the bound port (the kernel's pick when asked for 0) */
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                             const char *ctype)
{
    /* MUST_FREE: libmicrohttpd frees body with free() once it is sent. */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result text_reply(struct MHD_Connection *c, unsigned status, const char *text)
{
    char *b = strdup(text);
    return b ? reply(c, status, b, strlen(b), "text/plain; charset=utf-8") : MHD_NO;
}

/* Runs on the daemon's thread, once per request (GET has no body, so the first call can
 * answer). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **req_cls)
{
    (void)version;
    (void)upload_data;
    (void)req_cls;
    obs_http *h = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return text_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (*upload_size)
        return text_reply(c, MHD_HTTP_BAD_REQUEST, "no request body expected\n");
    if (strcmp(url, "/metrics") == 0) {
        char *text = NULL;
        size_t len = 0;
        if (obs_render(h->reg, obs_now(), &text, &len, NULL) != PST_OK)
            return text_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return reply(c, MHD_HTTP_OK, text, len, METRICS_TYPE);
    }
    char *body = NULL, *ctype = NULL;
    pst_err e = {0};
    int rc = obs_page(h->reg, url, &body, &ctype, &e);
    if (rc == PST_ERR_STATE)
        return text_reply(c, MHD_HTTP_NOT_FOUND, "not found; try /metrics\n");
    if (rc)
        return text_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    enum MHD_Result ok = reply(c, MHD_HTTP_OK, body, strlen(body), ctype);
    free(ctype);
    return ok;
}

/* A listening TCP socket on host:port, or -1 with err naming the port and the reason. */
static int listen_on(const char *host, int port, pst_err *err)
{
    int any = !host || !*host || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0;
    const char *shown = any ? "0.0.0.0" : host;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = any ? AF_INET : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(any ? NULL : host, service, &hints, &res);
    if (g != 0) {
        pst_err_set(err, PST_ERR_CONFIG, "metrics port %d on %s: %s", port, shown, gai_strerror(g));
        return -1;
    }
    int fd = -1, e = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        /* Lets a restarted process take its port back from connections in TIME_WAIT; a
         * port another process listens on stays refused. */
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 16) != 0) {
            e = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        pst_err_set(err, PST_ERR_CONFIG, "metrics port %d on %s: %s", port, shown, strerror(e));
    return fd;
}

obs_http *obs_http_start(obs_registry *r, const char *host, int port, pst_err *err)
{
    if (port < 0 || port > 65535) {
        pst_err_set(err, PST_ERR_CONFIG, "metrics port %d: must be in [0, 65535]", port);
        return NULL;
    }
    obs_http *h = calloc(1, sizeof *h);
    if (!h) {
        pst_err_set(err, PST_ERR_NOMEM, "out of memory for the metrics endpoint");
        return NULL;
    }
    h->reg = r;
    int fd = listen_on(host, port, err);
    if (fd < 0) {
        free(h);
        return NULL;
    }
    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa;
    h->port = port;
    if (getsockname(fd, (struct sockaddr *)&sa, &salen) == 0)
        h->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                 : ((struct sockaddr_in *)&sa)->sin_port);
    /* The daemon's thread inherits this mask: stop signals stay with the process's main
     * thread, whose handler and loops act on them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, h,
                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)MAX_CONNS, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!h->d) {
        close(fd);
        free(h);
        pst_err_set(err, PST_ERR_NET, "metrics port %d: cannot start the HTTP daemon", port);
        return NULL;
    }
    return h;
}

int obs_http_port(const obs_http *h) { return h->port; }

void obs_http_stop(obs_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d); /* joins the thread and closes the listening socket */
    free(h);
}
