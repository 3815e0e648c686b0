/* obs/obs.h -- metrics a process exports for Prometheus, and the HTTP endpoint serving them.
 *
 * A registry holds metric families (counter, gauge, histogram), each with one or more
 * series told apart by their labels. The owner's loop updates series through handles; an
 * HTTP daemon thread (obs_http) renders the whole registry in the Prometheus text
 * exposition format, version 0.0.4:
 *
 *   # HELP pstrain_server_pushes_total Gradient chunks received and applied.
 *   # TYPE pstrain_server_pushes_total counter
 *   pstrain_server_pushes_total 1234
 *
 *   reg = obs_registry_create(&err);
 *   obs_metric *pushes = obs_counter(reg, "pstrain_server_pushes_total", "...", NULL, &err);
 *   obs_http *http = obs_http_start(reg, "127.0.0.1", 9101, &err);   // GET /metrics
 *   ... obs_add(pushes, 1);                                           // from the loop
 *   obs_http_stop(http); obs_registry_destroy(reg);
 *
 * Threads: every function may be called from any thread. One mutex per registry guards
 * all values, so a scrape sees one consistent moment (a histogram's buckets agree with its
 * count); an update is one uncontended lock, ~20 ns, next to the microseconds a message
 * costs. Update functions take a NULL handle as "metrics are off" and do nothing, so
 * callers need no ifs.
 *
 * Besides metrics, a registry holds published pages (obs_publish): documents the owner
 * renders in its own thread (the coordinator's /status JSON) and the daemon serves as
 * they were last published, so the daemon never reads the owner's data structures. */
#ifndef PSTRAIN_OBS_OBS_H
#define PSTRAIN_OBS_OBS_H

#include <stddef.h>

#include "base/err.h"

typedef struct obs_registry obs_registry;
typedef struct obs_metric obs_metric; /* one series; owned by its registry */
typedef struct obs_http obs_http;

obs_registry *obs_registry_create(pst_err *err);
/* Frees the registry and every handle it gave out. Stop the daemon serving it first. */
void obs_registry_destroy(obs_registry *r);

/* Registers a series and returns its handle (NULL with err set on a bad name, a name
 * registered before with another type or help, or a repeated name + labels).
 *   name:   [a-zA-Z_:][a-zA-Z0-9_:]*; counters should end in _total, units in the name
 *           (_seconds, _bytes) as Prometheus' conventions ask;
 *   help:   one line, the family's # HELP;
 *   labels: NULL, or the body of the label set as it is printed: worker="3" or
 *           role="server",rank="0" (values must not hold '"', '\\' or newlines).
 * Series of one family print in the order they were registered. */
obs_metric *obs_counter(obs_registry *r, const char *name, const char *help, const char *labels,
                        pst_err *err);
obs_metric *obs_gauge(obs_registry *r, const char *name, const char *help, const char *labels,
                      pst_err *err);
/* A gauge of "seconds since": set it to the moment (obs_set_time, Unix seconds); a scrape
 * prints now - moment. Until it is first set, the series is left out of the output. */
obs_metric *obs_age(obs_registry *r, const char *name, const char *help, const char *labels,
                    pst_err *err);
/* bounds: nb increasing finite upper bounds (le="..."); the +Inf bucket is added. All
 * series of a family must use the same bounds. */
obs_metric *obs_histogram(obs_registry *r, const char *name, const char *help, const char *labels,
                          const double *bounds, int nb, pst_err *err);

void obs_add(obs_metric *m, double v);      /* counter or gauge += v (counters: v >= 0) */
void obs_set(obs_metric *m, double v);      /* gauge = v; counter = v, a running total the
                                                caller keeps (it must never decrease) */
void obs_set_time(obs_metric *m, double t); /* age: the moment, in Unix seconds */
void obs_observe(obs_metric *m, double v);  /* histogram: one observation */

/* Renders every family as Prometheus text 0.0.4, ages taken at `now` (Unix seconds).
 * *text is malloc'ed, NUL-terminated, *len bytes (the caller frees it). Families print in
 * registration order; values print in the shortest form that reads back exactly. */
int obs_render(obs_registry *r, double now, char **text, size_t *len, pst_err *err);

/* Publishes (replaces) the page served at `path` ("/status"); body is copied. */
int obs_publish(obs_registry *r, const char *path, const char *content_type, const char *body,
                pst_err *err);
/* A copy of the page at `path`: PST_OK with *body and *content_type malloc'ed (the caller
 * frees both), or PST_ERR_STATE when nothing is published there. */
int obs_page(obs_registry *r, const char *path, char **body, char **content_type, pst_err *err);

/* Unix time in seconds (CLOCK_REALTIME), and a monotonic clock in seconds for durations. */
double obs_now(void);
double obs_mono(void);

/* Starts an HTTP daemon on its own thread, listening on host:port (host "0.0.0.0" or "*":
 * every interface; port 0: any free one, see obs_http_port), serving GET /metrics (obs_render of r), every published page, and 404
 * for anything else. r must outlive the daemon. A port that is taken fails at once with
 * PST_ERR_CONFIG: "metrics port 9101 on 127.0.0.1: Address already in use". */
obs_http *obs_http_start(obs_registry *r, const char *host, int port, pst_err *err);
int obs_http_port(const obs_http *h);
/* Stops the thread and closes the socket; NULL is a no-op. */
void obs_http_stop(obs_http *h);

/* The port of the Prometheus endpoint of a process of a job with cluster.metrics_port
 * `base` (0 = off): the coordinator listens on base, server r on base + 1 + r. */
int obs_port_for(int base, int is_server, int rank);

#endif
