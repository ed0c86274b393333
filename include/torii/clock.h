/* clock.h - the only source of wall-clock and monotonic time, so tests can inject time.
 * Threads: any thread (an offset set with torii_clock_set_offset_ms is read atomically).
 * Ownership: none. */
#ifndef TORII_CLOCK_H
#define TORII_CLOCK_H

#include <stdint.h>

/** Wall clock in milliseconds since the epoch, plus the injected offset. */
int64_t torii_clock_now_ms(void);
/** Monotonic clock in microseconds (not offset). */
int64_t torii_clock_mono_us(void);
/** Shift the wall clock (tests and the debug hook only). */
void torii_clock_set_offset_ms(int64_t off);

#endif
