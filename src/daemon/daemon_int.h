/* daemon_int.h - internal to the daemon module: the daemon state shared by its files. */
#ifndef TORII_DAEMON_INT_H
#define TORII_DAEMON_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include "torii/daemon.h"

/* Beats: every proxy worker and the admin loop (workers are capped at 256 by the config). */
#define DAEMON_BEATS_MAX 272
#define DAEMON_NAME_MAX  24

struct torii_daemon_beat {
    struct torii_daemon *owner;
    struct event *ev;       /* on the beat's loop; NULL once detached */
    _Atomic uint64_t count; /* bumped by the loop's timer */
    _Atomic int ended;      /* set by the loop's thread once its loop has returned */
    uint64_t seen;          /* main thread: count at the previous check */
    int active;             /* main thread: checked */
    char name[DAEMON_NAME_MAX];
};

struct torii_daemon {
    const struct torii_config *cfg;
    int lock_fd;
    uint64_t check_us;          /* check period */
    uint64_t beat_us;           /* beat period: a quarter of the check period, at most 250 ms */
    int watchdog;               /* WATCHDOG_USEC set for us: ping */
    struct event *check;        /* on the main loop */
    _Atomic int state;          /* enum torii_daemon_state */
    _Atomic int alive;          /* every beat moved at the last check */
    _Atomic int64_t checked_us; /* monotonic time of the last check */
    int stuck_logged;           /* main thread */
    int64_t judged_us;          /* main thread: when the beats were last compared */
    size_t n_beats;
    struct torii_daemon_beat beats[DAEMON_BEATS_MAX];
};

/* One liveness check at monotonic time now_us (the main loop's check timer; unit tests call it
 * with chosen times). Main thread. */
void torii_daemon__check(struct torii_daemon *d, int64_t now_us);

#endif
