/* net/faults.h -- test-only fault injection in the transport.
 *
 * A process given a fault specification (PSTRAIN_FAULTS or --faults, e.g.
 * "drop=0.1,dup=0.05,delay=0.02,delay_ms=30,seed=7") drops, duplicates or delays that
 * fraction of the messages it sends, each decision drawn from a PRNG seeded with seed and
 * the process's role and rank (the salt), so a failing run is replayed by running it again
 * with the same specification. The protocol above must survive it: requests are retried
 * and repeats recognised (docs/fault-tolerance.md).
 *
 * Thread-safe (a process's heartbeat thread sends too); sockets of a net_ctx share the
 * ctx's faults (net_ctx_set_faults). Each decision is replayed from the seed as long as
 * the process sends its messages in the same order. */
#ifndef PSTRAIN_NET_FAULTS_H
#define PSTRAIN_NET_FAULTS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct net_faults net_faults;

typedef enum { NET_FAULT_NONE = 0, NET_FAULT_DROP, NET_FAULT_DUP, NET_FAULT_DELAY } net_fault;

typedef struct {
    uint64_t messages, dropped, duplicated, delayed;
} net_fault_stats;

/* Parses spec (keys drop, dup, delay: fractions in [0, 1) whose sum is < 1; delay_ms:
 * 1..10000, default 20; seed: any integer, default 1). An empty or NULL spec is "no
 * faults" and returns NULL with PST_OK in err. A bad spec is PST_ERR_CONFIG naming the key. */
net_faults *net_faults_create(const char *spec, uint64_t salt, pst_err *err);
void net_faults_destroy(net_faults *f);

/* The fate of the next message sent (counted in the stats). */
net_fault net_faults_next(net_faults *f);
int net_faults_delay_ms(const net_faults *f);
void net_faults_get_stats(net_faults *f, net_fault_stats *st);
/* "drop 10.0%, dup 5.0%, delay 0.0% x 20 ms, seed 7" */
void net_faults_describe(const net_faults *f, char *buf, size_t cap);

#endif
