/* obs/obs.c -- the metrics registry and its text rendering. See obs.h. */
#include "obs.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum { K_COUNTER, K_GAUGE, K_AGE, K_HISTOGRAM } kind;

typedef struct family family;

struct obs_metric {
    obs_registry *reg;
    family *fam;
    char *labels; /* NULL: none */
    double value; /* counter, gauge; age: the moment */
    int set;      /* age: set at least once */
    double sum;   /* histogram */
    uint64_t count;
    uint64_t *buckets; /* (nb) observations <= bounds[i], not cumulative; +Inf = count */
    obs_metric *next;
};

struct family {
    char *name, *help;
    kind k;
    double *bounds; /* (nb) histogram upper bounds */
    int nb;
    obs_metric *first, *last;
    family *next;
};

typedef struct page {
    char *path, *ctype, *body;
    struct page *next;
} page;

struct obs_registry {
    pthread_mutex_t mu; /* guards everything below and every series' values */
    family *first, *last;
    page *pages;
};

double obs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double obs_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int obs_port_for(int base, int is_server, int rank)
{
    if (base <= 0)
        return 0;
    return is_server ? base + 1 + rank : base;
}

obs_registry *obs_registry_create(pst_err *err)
{
    obs_registry *r = calloc(1, sizeof *r);
    if (!r) {
        pst_err_set(err, PST_ERR_NOMEM, "out of memory for the metrics registry");
        return NULL;
    }
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        pst_err_set(err, PST_ERR_NOMEM, "cannot create the metrics registry's mutex");
        return NULL;
    }
    return r;
}

static void metric_free(obs_metric *m)
{
    free(m->labels);
    free(m->buckets);
    free(m);
}

void obs_registry_destroy(obs_registry *r)
{
    if (!r)
        return;
    for (family *f = r->first, *fn; f; f = fn) {
        fn = f->next;
        for (obs_metric *m = f->first, *mn; m; m = mn) {
            mn = m->next;
            metric_free(m);
        }
        free(f->name);
        free(f->help);
        free(f->bounds);
        free(f);
    }
    for (page *p = r->pages, *pn; p; p = pn) {
        pn = p->next;
        free(p->path);
        free(p->ctype);
        free(p->body);
        free(p);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static int valid_name(const char *s)
{
    if (!s || !*s || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == ':'))
            return 0;
    return 1;
}

/* A label body: name="value"[,name="value"...] with no escapes needed in the values. */
static int valid_labels(const char *s)
{
    while (*s) {
        const char *eq = strchr(s, '=');
        if (!eq || eq == s || eq[1] != '"')
            return 0;
        for (const char *c = s; c < eq; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
                  (c > s && *c >= '0' && *c <= '9')))
                return 0;
        const char *v = eq + 2, *q = v;
        while (*q && *q != '"' && *q != '\\' && *q != '\n')
            q++;
        if (*q != '"')
            return 0;
        s = q + 1;
        if (*s == ',' && s[1])
            s++;
        else if (*s)
            return 0;
    }
    return 1;
}

static const char *kind_type(kind k)
{
    return k == K_COUNTER ? "counter" : k == K_HISTOGRAM ? "histogram" : "gauge";
}

static obs_metric *add_series(obs_registry *r, kind k, const char *name, const char *help,
                              const char *labels, const double *bounds, int nb, pst_err *err)
{
    if (!valid_name(name)) {
        pst_err_set(err, PST_ERR_ARG, "metric name '%s' is not [a-zA-Z_:][a-zA-Z0-9_:]*",
                    name ? name : "(null)");
        return NULL;
    }
    if (!help || strchr(help, '\n') || strchr(help, '\\')) {
        pst_err_set(err, PST_ERR_ARG, "%s: help must be one line without backslashes", name);
        return NULL;
    }
    if (labels && (!*labels || !valid_labels(labels))) {
        pst_err_set(err, PST_ERR_ARG, "%s: bad labels '%s' (want name=\"value\",...)", name,
                    labels);
        return NULL;
    }
    if (k == K_HISTOGRAM) {
        if (nb < 1 || !bounds) {
            pst_err_set(err, PST_ERR_ARG, "%s: a histogram needs at least one bound", name);
            return NULL;
        }
        for (int i = 0; i < nb; i++)
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
                pst_err_set(err, PST_ERR_ARG, "%s: bounds must be finite and increasing", name);
                return NULL;
            }
    }
    obs_metric *m = calloc(1, sizeof *m);
    if (!m || (labels && !(m->labels = strdup(labels))) ||
        (k == K_HISTOGRAM && !(m->buckets = calloc((size_t)nb, sizeof *m->buckets)))) {
        if (m)
            metric_free(m);
        pst_err_set(err, PST_ERR_NOMEM, "out of memory for metric %s", name);
        return NULL;
    }
    m->reg = r;
    pthread_mutex_lock(&r->mu);
    family *f = r->first;
    while (f && strcmp(f->name, name) != 0)
        f = f->next;
    if (f) {
        int same = f->k == k && strcmp(f->help, help) == 0 &&
                   (k != K_HISTOGRAM ||
                    (f->nb == nb && memcmp(f->bounds, bounds, (size_t)nb * sizeof *bounds) == 0));
        for (obs_metric *o = f->first; o && same; o = o->next)
            if ((!o->labels && !labels) || (o->labels && labels && !strcmp(o->labels, labels))) {
                pthread_mutex_unlock(&r->mu);
                metric_free(m);
                pst_err_set(err, PST_ERR_STATE, "metric %s{%s} is registered twice", name,
                            labels ? labels : "");
                return NULL;
            }
        if (!same) {
            pthread_mutex_unlock(&r->mu);
            metric_free(m);
            pst_err_set(err, PST_ERR_STATE,
                        "metric %s registered before with another type, "
                        "help or buckets",
                        name);
            return NULL;
        }
    } else {
        f = calloc(1, sizeof *f);
        if (!f || !(f->name = strdup(name)) || !(f->help = strdup(help)) ||
            (k == K_HISTOGRAM && !(f->bounds = malloc((size_t)nb * sizeof *bounds)))) {
            pthread_mutex_unlock(&r->mu);
            if (f) {
                free(f->name);
                free(f->help);
                free(f);
            }
            metric_free(m);
            pst_err_set(err, PST_ERR_NOMEM, "out of memory for metric %s", name);
            return NULL;
        }
        f->k = k;
        f->nb = k == K_HISTOGRAM ? nb : 0;
        if (f->bounds)
            memcpy(f->bounds, bounds, (size_t)nb * sizeof *bounds);
        if (r->last)
            r->last->next = f;
        else
            r->first = f;
        r->last = f;
    }
    m->fam = f;
    if (f->last)
        f->last->next = m;
    else
        f->first = m;
    f->last = m;
    pthread_mutex_unlock(&r->mu);
    return m;
}

obs_metric *obs_counter(obs_registry *r, const char *name, const char *help, const char *labels,
                        pst_err *err)
{
    return add_series(r, K_COUNTER, name, help, labels, NULL, 0, err);
}

obs_metric *obs_gauge(obs_registry *r, const char *name, const char *help, const char *labels,
                      pst_err *err)
{
    return add_series(r, K_GAUGE, name, help, labels, NULL, 0, err);
}

obs_metric *obs_age(obs_registry *r, const char *name, const char *help, const char *labels,
                    pst_err *err)
{
    return add_series(r, K_AGE, name, help, labels, NULL, 0, err);
}

obs_metric *obs_histogram(obs_registry *r, const char *name, const char *help, const char *labels,
                          const double *bounds, int nb, pst_err *err)
{
    return add_series(r, K_HISTOGRAM, name, help, labels, bounds, nb, err);
}

void obs_add(obs_metric *m, double v)
{
    if (!m)
        return;
    assert(m->fam->k == K_COUNTER || m->fam->k == K_GAUGE);
    pthread_mutex_lock(&m->reg->mu);
    m->value += v;
    pthread_mutex_unlock(&m->reg->mu);
}

void obs_set(obs_metric *m, double v)
{
    if (!m)
        return;
    assert(m->fam->k == K_COUNTER || m->fam->k == K_GAUGE);
    pthread_mutex_lock(&m->reg->mu);
    m->value = v;
    pthread_mutex_unlock(&m->reg->mu);
}

void obs_set_time(obs_metric *m, double t)
{
    if (!m)
        return;
    assert(m->fam->k == K_AGE);
    pthread_mutex_lock(&m->reg->mu);
    m->value = t;
    m->set = 1;
    pthread_mutex_unlock(&m->reg->mu);
}

void obs_observe(obs_metric *m, double v)
{
    if (!m)
        return;
    const family *f = m->fam;
    assert(f->k == K_HISTOGRAM);
    int i = 0;
    while (i < f->nb && !(v <= f->bounds[i]))
        i++;
    pthread_mutex_lock(&m->reg->mu);
    if (i < f->nb)
        m->buckets[i]++;
    m->count++;
    m->sum += v;
    pthread_mutex_unlock(&m->reg->mu);
}

/* The shortest of %.15g..%.17g that reads back to v; Prometheus' spellings of the
 * non-finite values. */
static void fmt_value(char *buf, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(buf, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int p = 15; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* name{labels[,extra]} value */
static void print_sample(FILE *f, const char *name, const char *suffix, const char *labels,
                         const char *extra, double v)
{
    char val[40];
    fmt_value(val, sizeof val, v);
    fprintf(f, "%s%s", name, suffix);
    if (labels || extra)
        fprintf(f, "{%s%s%s}", labels ? labels : "", labels && extra ? "," : "",
                extra ? extra : "");
    fprintf(f, " %s\n", val);
}

static void render_family(FILE *out, const family *f, double now)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, kind_type(f->k));
    for (const obs_metric *m = f->first; m; m = m->next) {
        if (f->k == K_AGE) {
            if (m->set)
                print_sample(out, f->name, "", m->labels, NULL, now - m->value);
        } else if (f->k != K_HISTOGRAM) {
            print_sample(out, f->name, "", m->labels, NULL, m->value);
        } else {
            uint64_t cum = 0;
            char le[64], val[40];
            for (int i = 0; i < f->nb; i++) {
                cum += m->buckets[i];
                fmt_value(val, sizeof val, f->bounds[i]);
                snprintf(le, sizeof le, "le=\"%s\"", val);
                print_sample(out, f->name, "_bucket", m->labels, le, (double)cum);
            }
            print_sample(out, f->name, "_bucket", m->labels, "le=\"+Inf\"", (double)m->count);
            print_sample(out, f->name, "_sum", m->labels, NULL, m->sum);
            print_sample(out, f->name, "_count", m->labels, NULL, (double)m->count);
        }
    }
}

int obs_render(obs_registry *r, double now, char **text, size_t *len, pst_err *err)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory rendering metrics");
    pthread_mutex_lock(&r->mu);
    for (const family *fam = r->first; fam; fam = fam->next)
        render_family(f, fam, now);
    pthread_mutex_unlock(&r->mu);
    if (ferror(f) | fclose(f)) {
        free(buf);
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory rendering metrics");
    }
    *text = buf;
    *len = n;
    return PST_OK;
}

int obs_publish(obs_registry *r, const char *path, const char *content_type, const char *body,
                pst_err *err)
{
    char *b = strdup(body), *ct = strdup(content_type), *pa = strdup(path);
    page *np = NULL;
    int ok = 0;
    pthread_mutex_lock(&r->mu);
    page *p = r->pages;
    while (p && strcmp(p->path, path) != 0)
        p = p->next;
    if (!p && b && ct && pa && (np = calloc(1, sizeof *np))) {
        np->path = pa;
        pa = NULL;
        np->next = r->pages;
        r->pages = p = np;
    }
    if (p && b && ct) {
        free(p->body);
        free(p->ctype);
        p->body = b;
        p->ctype = ct;
        b = ct = NULL;
        ok = 1;
    }
    pthread_mutex_unlock(&r->mu);
    free(b);
    free(ct);
    free(pa);
    return !ok ? pst_err_set(err, PST_ERR_NOMEM, "out of memory publishing %s", path) : PST_OK;
}

int obs_page(obs_registry *r, const char *path, char **body, char **content_type, pst_err *err)
{
    int rc = PST_OK;
    *body = *content_type = NULL;
    pthread_mutex_lock(&r->mu);
    page *p = r->pages;
    while (p && strcmp(p->path, path) != 0)
        p = p->next;
    if (!p)
        rc = pst_err_set(err, PST_ERR_STATE, "%s: nothing published", path);
    else if (!(*body = strdup(p->body)) || !(*content_type = strdup(p->ctype))) {
        free(*body);
        *body = NULL;
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory serving %s", path);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}
