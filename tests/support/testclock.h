/* testclock.h - test-only helper: the monotonic clock in milliseconds, for the bounded waits
 * of tests that run an event loop until a condition holds (never for a result: a test's
 * verdict must not depend on the machine's speed).
 * Threads: any thread. Ownership: nothing is allocated. */
#ifndef TORII_TESTCLOCK_H
#define TORII_TESTCLOCK_H

#include <stdint.h>

/** CLOCK_MONOTONIC in milliseconds (an arbitrary origin: compare two readings only). */
int64_t testclock_now_ms(void);

#endif
