/* net/faults.c -- see faults.h. */
#include "faults.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

struct net_faults {
    double drop, dup, delay;
    int delay_ms;
    uint64_t seed;
    pthread_mutex_t mu; /* a process's threads (heartbeats) send too */
    rng_state rng;
    net_fault_stats stats;
};

static int parse_fraction(const char *key, const char *val, double *out, pst_err *err)
{
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !(v >= 0.0 && v < 1.0))
        return pst_err_set(err, PST_ERR_CONFIG, "faults: %s=%s must be a fraction in [0, 1)", key,
                           val);
    *out = v;
    return PST_OK;
}

net_faults *net_faults_create(const char *spec, uint64_t salt, pst_err *err)
{
    if (!spec || !spec[0])
        return NULL;
    net_faults *f = calloc(1, sizeof *f);
    char *copy = strdup(spec);
    if (!f || !copy) {
        pst_err_set(err, PST_ERR_NOMEM, "faults: out of memory");
        goto fail;
    }
    f->delay_ms = 20;
    f->seed = 1;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) {
            pst_err_set(err, PST_ERR_CONFIG, "faults: '%s' is not key=value", item);
            goto fail;
        }
        *eq = '\0';
        const char *key = item, *val = eq + 1;
        char *end;
        if (strcmp(key, "drop") == 0) {
            if (parse_fraction(key, val, &f->drop, err))
                goto fail;
        } else if (strcmp(key, "dup") == 0) {
            if (parse_fraction(key, val, &f->dup, err))
                goto fail;
        } else if (strcmp(key, "delay") == 0) {
            if (parse_fraction(key, val, &f->delay, err))
                goto fail;
        } else if (strcmp(key, "delay_ms") == 0) {
            long v = strtol(val, &end, 10);
            if (end == val || *end || v < 1 || v > 10000) {
                pst_err_set(err, PST_ERR_CONFIG, "faults: delay_ms=%s must be in [1, 10000]", val);
                goto fail;
            }
            f->delay_ms = (int)v;
        } else if (strcmp(key, "seed") == 0) {
            errno = 0;
            unsigned long long v = strtoull(val, &end, 10);
            if (errno || end == val || *end) {
                pst_err_set(err, PST_ERR_CONFIG, "faults: seed=%s is not an integer", val);
                goto fail;
            }
            f->seed = v;
        } else {
            pst_err_set(err, PST_ERR_CONFIG,
                        "faults: unknown key '%s' (drop, dup, delay, "
                        "delay_ms, seed)",
                        key);
            goto fail;
        }
    }
    if (f->drop + f->dup + f->delay >= 1.0) {
        pst_err_set(err, PST_ERR_CONFIG, "faults: drop + dup + delay must be < 1");
        goto fail;
    }
    /* Each process draws its own sequence: seed and (role, rank) mixed. */
    rng_seed(&f->rng, f->seed * 0x9e3779b97f4a7c15ULL ^ salt);
    pthread_mutex_init(&f->mu, NULL);
    free(copy);
    return f;
fail:
    free(copy);
    free(f);
    return NULL;
}

void net_faults_destroy(net_faults *f)
{
    if (!f)
        return;
    pthread_mutex_destroy(&f->mu);
    free(f);
}

net_fault net_faults_next(net_faults *f)
{
    net_fault fate = NET_FAULT_NONE;
    pthread_mutex_lock(&f->mu);
    /* 53 random bits: a uniform double in [0, 1). */
    double u = (double)(rng_next(&f->rng) >> 11) * (1.0 / 9007199254740992.0);
    f->stats.messages++;
    if (u < f->drop) {
        f->stats.dropped++;
        fate = NET_FAULT_DROP;
    } else if (u < f->drop + f->dup) {
        f->stats.duplicated++;
        fate = NET_FAULT_DUP;
    } else if (u < f->drop + f->dup + f->delay) {
        f->stats.delayed++;
        fate = NET_FAULT_DELAY;
    }
    pthread_mutex_unlock(&f->mu);
    return fate;
}

int net_faults_delay_ms(const net_faults *f) { return f->delay_ms; }

void net_faults_get_stats(net_faults *f, net_fault_stats *st)
{
    pthread_mutex_lock(&f->mu);
    *st = f->stats;
    pthread_mutex_unlock(&f->mu);
}

void net_faults_describe(const net_faults *f, char *buf, size_t cap)
{
    snprintf(buf, cap, "drop %.1f%%, dup %.1f%%, delay %.1f%% x %d ms, seed %llu", 100.0 * f->drop,
             100.0 * f->dup, 100.0 * f->delay, f->delay_ms, (unsigned long long)f->seed);
}
