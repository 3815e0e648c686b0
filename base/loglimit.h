/* base/loglimit.h -- warnings about a peer's messages, rate-limited per peer.
 *
 * A hostile or broken peer can send thousands of bad messages a second; logging each one
 * buries the log (issue 16: 914 lines in 8 s). A log_limit lets the first `burst` warnings
 * of each peer in a window of `window_ms` through, each naming the peer, and counts the
 * rest; once the window is over (at the peer's next warning or at a log_limit_tick), one
 * line says how many it held back:
 *
 *   ... server[0] warn: dropped a malformed message: ... (from 127.0.0.1, id hostile-1)
 *   ... server[0] warn: 995 more refused messages from 127.0.0.1 in the last 10.0 s
 *
 * Peers are told apart by a key (the sender's address, or its routing id where there is
 * none): each warning names its sender in full (address and routing id), the count line
 * the key, as what it counts may have come on several connections from that address.
 * At most `max_peers` keys are tracked:
 * beyond them, new keys share one slot ("other peers"), so the table stays bounded however
 * many connections a flood opens. The caller passes the time (milliseconds, any monotonic
 * origin: base/clock.h) so tests can drive the windows. Owned by one process context and
 * used by one thread; no global state. */
#ifndef PSTRAIN_BASE_LOGLIMIT_H
#define PSTRAIN_BASE_LOGLIMIT_H

#include <stdint.h>

#include "base/err.h"
#include "base/log.h"

typedef struct log_limit log_limit;

/* The defaults of the servers and the coordinator: 16 warnings a peer per 10 s. 16 leaves
 * room for the few different refusals one confused peer causes before it is cut short. */
#define LOG_LIMIT_BURST 16
#define LOG_LIMIT_WINDOW_MS 10000
#define LOG_LIMIT_PEERS 64
#define LOG_LIMIT_KEY 128 /* bytes of a key kept, NUL included (proto/msg.h MSG_PEER) */

/* burst >= 1, window_ms >= 1, max_peers >= 1; lg is borrowed for the limiter's life. */
log_limit *log_limit_create(const log_ctx *lg, int burst, int64_t window_ms, int max_peers,
                            pst_err *err);
/* Logs what is still held back (log_limit_tick with final), then frees. NULL is fine. */
void log_limit_destroy(log_limit *l, int64_t now_ms);

/* One line about peer `key` (display name `name`; NULL or "": the key): logged at `level`
 * with " (from NAME)" appended when the peer's window has room, counted otherwise. A
 * window that has passed is closed first (its held-back count logged, at warn level).
 * Returns 1 when the line was logged, 0 when it was held back. log_limit_warn is the
 * usual case. */
int log_limit_log(log_limit *l, log_level level, const char *key, const char *name, int64_t now_ms,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
#define log_limit_warn(l, ...) log_limit_log((l), LOG_WARN, __VA_ARGS__)

/* Closes every window that has passed by now_ms (every window with final): logs one
 * "N more refused messages from NAME in the last T s" line per peer that had any held
 * back and frees the slots of peers gone quiet. Call it from the process's loop. */
void log_limit_tick(log_limit *l, int64_t now_ms, int final);

/* Warnings held back so far in the open window of `key` (0 when none or untracked), and
 * in all since creation; for tests and summaries. */
uint64_t log_limit_held(const log_limit *l, const char *key);
uint64_t log_limit_held_total(const log_limit *l);

#endif
