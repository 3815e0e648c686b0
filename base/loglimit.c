/* base/loglimit.c -- see loglimit.h. */
#include "loglimit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One peer's window: opened by its first warning, closed window_ms later (by the next
 * warning or a tick), when the count it held back is logged. */
typedef struct {
    int used;
    char key[LOG_LIMIT_KEY];
    char name[LOG_LIMIT_KEY]; /* in its count line: the key, or "other peers" */
    int64_t start_ms;         /* when the window opened */
    int shown;                /* warnings logged in it (<= burst) */
    uint64_t held;            /* warnings held back in it */
} peer_slot;

struct log_limit {
    const log_ctx *lg;
    int burst, npeers;
    int64_t window_ms;
    peer_slot *slot; /* npeers + 1: the last is shared by the keys that find no room */
    uint64_t held_total;
};

log_limit *log_limit_create(const log_ctx *lg, int burst, int64_t window_ms, int max_peers,
                            pst_err *err)
{
    if (burst < 1 || window_ms < 1 || max_peers < 1) {
        pst_err_set(err, PST_ERR_CONFIG, "log limit: burst %d, window %lld ms, %d peers", burst,
                    (long long)window_ms, max_peers);
        return NULL;
    }
    log_limit *l = calloc(1, sizeof *l);
    if (!l || !(l->slot = calloc((size_t)max_peers + 1, sizeof *l->slot))) {
        free(l);
        pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        return NULL;
    }
    l->lg = lg;
    l->burst = burst;
    l->window_ms = window_ms;
    l->npeers = max_peers;
    return l;
}

void log_limit_destroy(log_limit *l, int64_t now_ms)
{
    if (!l)
        return;
    log_limit_tick(l, now_ms, 1);
    free(l->slot);
    free(l);
}

/* Logs what slot p held back and frees it. */
static void close_window(log_limit *l, peer_slot *p, int64_t now_ms)
{
    if (p->held)
        log_warn(l->lg, "%llu more refused messages from %s in the last %.1f s",
                 (unsigned long long)p->held, p->name, (double)(now_ms - p->start_ms) / 1000.0);
    p->used = 0;
}

static peer_slot *find_slot(log_limit *l, const char *key)
{
    peer_slot *free_slot = NULL;
    for (int i = 0; i < l->npeers; i++) {
        peer_slot *p = &l->slot[i];
        /* A key longer than a slot holds is kept cut: compare it cut the same way, or its
         * every warning would take a fresh slot. */
        if (p->used && strncmp(p->key, key, sizeof p->key - 1) == 0)
            return p;
        if (!p->used && !free_slot)
            free_slot = p;
    }
    peer_slot *p = free_slot ? free_slot : &l->slot[l->npeers];
    if (!p->used) {
        snprintf(p->key, sizeof p->key, "%s", free_slot ? key : "");
        snprintf(p->name, sizeof p->name, "%s", free_slot ? key : "other peers");
    }
    return p;
}

int log_limit_log(log_limit *l, log_level level, const char *key, const char *name, int64_t now_ms,
                  const char *fmt, ...)
{
    if (!name || !name[0])
        name = key;
    peer_slot *p = find_slot(l, key);
    if (p->used && now_ms - p->start_ms >= l->window_ms)
        close_window(l, p, now_ms);
    if (!p->used) {
        /* find_slot set key and name; a closed window keeps them. */
        p->used = 1;
        p->start_ms = now_ms;
        p->shown = 0;
        p->held = 0;
    }
    if (p->shown >= l->burst) {
        p->held++;
        l->held_total++;
        return 0;
    }
    p->shown++;
    char line[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_msg(l->lg, level, "%s (from %s)", line, name);
    return 1;
}

void log_limit_tick(log_limit *l, int64_t now_ms, int final)
{
    for (int i = 0; i <= l->npeers; i++) {
        peer_slot *p = &l->slot[i];
        if (p->used && (final || now_ms - p->start_ms >= l->window_ms))
            close_window(l, p, now_ms);
    }
}

uint64_t log_limit_held(const log_limit *l, const char *key)
{
    for (int i = 0; i <= l->npeers; i++)
        if (l->slot[i].used && strcmp(l->slot[i].key, key) == 0)
            return l->slot[i].held;
    return 0;
}

uint64_t log_limit_held_total(const log_limit *l) { return l->held_total; }
