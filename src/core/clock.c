/* clock.c - wall and monotonic time with an injectable offset. */
#include "torii/clock.h"

#include <stdatomic.h>
#include <time.h>

/* Written by the debug hook / tests, read by any thread. */
static _Atomic int64_t clock_offset_ms;

int64_t torii_clock_now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + atomic_load(&clock_offset_ms);
}

int64_t torii_clock_mono_us(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void torii_clock_set_offset_ms(int64_t off)
{
    atomic_store(&clock_offset_ms, off);
}
