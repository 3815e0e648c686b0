/* base/ident.h -- the name a process's sockets carry (their ZeroMQ routing id), which
 * must tell a restarted process from the one it replaces.
 *
 * The pid alone does not: in a container or a Kubernetes pod every pstrain is pid 1, so
 * a restarted server would say HELLO under its dead predecessor's name and be taken for
 * it. The tag adds the process's start time (/proc/self/stat, clock ticks since boot) and
 * a hash of the host name: fixed for the life of a process -- every socket of it, and a
 * reconnect, carry the same tag -- and different for the next process of the same rank,
 * on this host or another. No state: computed from the process each time. */
#ifndef PSTRAIN_BASE_IDENT_H
#define PSTRAIN_BASE_IDENT_H

#include <stddef.h>

/* "<role>-<rank>-<pid>-<16 hex digits>" in buf (at most PST_TAG_MAX bytes with the NUL);
 * suffix, when not NULL, is appended after a '-' ("hb-3"). */
#define PST_TAG_MAX 96
void pst_process_tag(char *buf, size_t n, const char *role, int rank, const char *suffix);

#endif
