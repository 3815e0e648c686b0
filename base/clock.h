/* base/clock.h -- the monotonic clock every timer and figure reads (CLOCK_MONOTONIC: never
 * jumps with the wall clock, so intervals and deadlines stay right across NTP steps). */
#ifndef PSTRAIN_BASE_CLOCK_H
#define PSTRAIN_BASE_CLOCK_H

#include <stdint.h>

double pst_mono_s(void);   /* seconds, with nanosecond resolution */
int64_t pst_mono_ms(void); /* milliseconds */

#endif
