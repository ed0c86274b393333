/* testclock.c - see testclock.h. */
#include "testclock.h"

#include <time.h>

int64_t testclock_now_ms(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
