/* watch.c - beats of the event loops, the liveness check on the main loop, the watchdog
 * pings and the health state. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"

#define DAEMON_DEFAULT_CHECK_US 1000000u
#define DAEMON_BEAT_MAX_US      250000u
#define DAEMON_STALL_MAX_S      600

/* WATCHDOG_USEC (and WATCHDOG_PID, when set, naming us) -> *usec; 0 when not for us. */
static int daemon_watchdog_env(uint64_t *usec, struct torii_errbuf *eb)
{
    /* NOLINTBEGIN(concurrency-mt-unsafe): torii never calls setenv, so getenv only reads */
    const char *v = getenv("WATCHDOG_USEC");
    const char *p = getenv("WATCHDOG_PID");
    /* NOLINTEND(concurrency-mt-unsafe) */
    char *end = NULL;
    unsigned long long n;

    *usec = 0;
    if (v == NULL || v[0] == '\0') {
        return TORII_OK;
    }
    if (p != NULL && p[0] != '\0' && strtol(p, NULL, 10) != (long)getpid()) {
        return TORII_OK;
    }
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || n == 0 || v[0] == '-') {
        return torii_errf(eb, TORII_EINVAL, "WATCHDOG_USEC=\"%.32s\": expected a positive integer",
                          v);
    }
    *usec = n;
    return TORII_OK;
}

int torii_daemon_new(const struct torii_config *cfg, struct torii_daemon **out,
                     struct torii_errbuf *eb)
{
    struct torii_daemon *d = NULL;
    uint64_t wd = 0;
    int rc = daemon_watchdog_env(&wd, eb);

    if (rc != TORII_OK) {
        return rc;
    }
    d = torii_xcalloc(1, sizeof(*d));
    d->cfg = cfg;
    d->lock_fd = -1;
    d->watchdog = wd != 0;
    d->check_us = wd != 0 ? wd / 2 : DAEMON_DEFAULT_CHECK_US;
    if (d->check_us == 0) {
        d->check_us = 1;
    }
    d->beat_us = d->check_us / 4 < DAEMON_BEAT_MAX_US ? d->check_us / 4 : DAEMON_BEAT_MAX_US;
    if (d->beat_us == 0) {
        d->beat_us = 1;
    }
    atomic_init(&d->state, TORII_DAEMON_STARTING);
    atomic_init(&d->alive, 1);
    atomic_init(&d->checked_us, torii_clock_mono_us());
    *out = d;
    return TORII_OK;
}

void torii_daemon_free(struct torii_daemon *d)
{
    if (d == NULL) {
        return;
    }
    torii_daemon_unwatch(d);
    if (d->lock_fd >= 0) {
        (void)close(d->lock_fd); /* releases the flock */
    }
    free(d);
}

static struct timeval daemon_tv(uint64_t us)
{
    struct timeval tv = {.tv_sec = (time_t)(us / 1000000u),
                         .tv_usec = (suseconds_t)(us % 1000000u)};
    return tv;
}

int torii_daemon_stall_wanted(const char *path, const char *name)
{
    char buf[DAEMON_NAME_MAX + 2];
    ssize_t n;
    int fd = path != NULL && path[0] != '\0' ? open(path, O_RDONLY | O_CLOEXEC) : -1;

    if (fd < 0) {
        return 0;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    (void)close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    return strcmp(buf, name) == 0;
}

static void daemon_stall_hook(const struct torii_daemon_beat *b)
{
    const char *path = b->owner->cfg->debug_stall_file;
    const struct timespec nap = {.tv_sec = 0, .tv_nsec = 20L * 1000 * 1000};
    int64_t until = torii_clock_mono_us() + (int64_t)DAEMON_STALL_MAX_S * 1000000;

    if (path == NULL || path[0] == '\0' || !torii_daemon_stall_wanted(path, b->name)) {
        return;
    }
    torii_log(TORII_LOG_WARN, "daemon: debug.stall_file: blocking %s", b->name);
    while (torii_daemon_stall_wanted(path, b->name) && torii_clock_mono_us() < until) {
        (void)nanosleep(&nap, NULL);
    }
    torii_log(TORII_LOG_WARN, "daemon: debug.stall_file: %s released", b->name);
}

static void daemon_beat_cb(evutil_socket_t fd, short what, void *arg)
{
    struct torii_daemon_beat *b = arg;

    (void)fd;
    (void)what;
    atomic_fetch_add_explicit(&b->count, 1, memory_order_relaxed);
    daemon_stall_hook(b);
}

int torii_daemon_beat_attach(struct torii_daemon *d, struct event_base *base, const char *name,
                             struct torii_daemon_beat **out)
{
    struct torii_daemon_beat *b = NULL;
    struct timeval tv = daemon_tv(d->beat_us);
    size_t slot = d->n_beats;

    /* A detached slot is reused: worker sets come and go with every reload. */
    for (size_t i = 0; i < d->n_beats; i++) {
        if (!d->beats[i].active && d->beats[i].ev == NULL) {
            slot = i;
            break;
        }
    }
    if (slot >= DAEMON_BEATS_MAX) {
        return TORII_EINVAL;
    }
    b = &d->beats[slot];
    b->owner = d;
    (void)snprintf(b->name, sizeof(b->name), "%s", name);
    b->ev = event_new(base, -1, EV_PERSIST, daemon_beat_cb, b);
    if (b->ev == NULL || event_add(b->ev, &tv) != 0) {
        if (b->ev != NULL) {
            event_free(b->ev);
            b->ev = NULL;
        }
        return TORII_ENOMEM;
    }
    atomic_init(&b->count, 0);
    atomic_init(&b->ended, 0);
    b->seen = 0;
    b->active = 1;
    if (slot == d->n_beats) {
        d->n_beats++;
    }
    *out = b;
    return TORII_OK;
}

void torii_daemon_beat_ended(struct torii_daemon_beat *b)
{
    if (b != NULL) {
        atomic_store_explicit(&b->ended, 1, memory_order_release);
    }
}

void torii_daemon_beat_detach(struct torii_daemon_beat *b)
{
    if (b == NULL) {
        return;
    }
    b->active = 0;
    if (b->ev != NULL) {
        event_free(b->ev);
        b->ev = NULL;
    }
}

/* The first beat that did not move since the previous check (NULL: all moved). */
static const struct torii_daemon_beat *daemon_check_beats(struct torii_daemon *d)
{
    const struct torii_daemon_beat *stuck = NULL;

    for (size_t i = 0; i < d->n_beats; i++) {
        struct torii_daemon_beat *b = &d->beats[i];
        uint64_t now = atomic_load_explicit(&b->count, memory_order_relaxed);
        if (!b->active || atomic_load_explicit(&b->ended, memory_order_acquire)) {
            continue; /* a loop that ended (a drained worker) is not stuck */
        }
        if (now == b->seen && stuck == NULL) {
            stuck = b;
        }
        b->seen = now;
    }
    return stuck;
}

void torii_daemon__check(struct torii_daemon *d, int64_t now)
{
    const struct torii_daemon_beat *stuck;
    char status[96];

    atomic_store(&d->checked_us, now);
    /* A check that ran late is followed by one that runs early (libevent keeps a persistent
     * timer on its schedule), maybe before a healthy loop's next beat: the beats are compared
     * only when three quarters of the check period (three beat periods or more) went by since
     * they last were, so a loop is called stuck for missing beats, never for this loop's own
     * lateness on a loaded machine. */
    if (now - d->judged_us < (int64_t)(d->check_us / 4 * 3)) {
        if (d->watchdog && atomic_load(&d->alive)) {
            torii_daemon_notify("WATCHDOG=1");
        }
        return;
    }
    d->judged_us = now;
    stuck = daemon_check_beats(d);
    atomic_store(&d->alive, stuck == NULL);
    if (stuck != NULL) {
        if (!d->stuck_logged) {
            torii_log(TORII_LOG_ERR, "daemon: event loop %s does not iterate%s", stuck->name,
                      d->watchdog ? "; withholding WATCHDOG=1" : "");
            (void)snprintf(status, sizeof(status), "STATUS=event loop %s does not iterate",
                           stuck->name);
            torii_daemon_notify(status);
            d->stuck_logged = 1;
        }
        return;
    }
    if (d->stuck_logged) {
        torii_log(TORII_LOG_NOTICE, "daemon: every event loop iterates again");
        torii_daemon_notify("STATUS=serving");
        d->stuck_logged = 0;
    }
    if (d->watchdog) {
        torii_daemon_notify("WATCHDOG=1");
    }
}

static void daemon_check_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    torii_daemon__check(arg, torii_clock_mono_us());
}

int torii_daemon_watch(struct torii_daemon *d, struct event_base *base)
{
    struct timeval tv = daemon_tv(d->check_us);

    d->check = event_new(base, -1, EV_PERSIST, daemon_check_cb, d);
    if (d->check == NULL || event_add(d->check, &tv) != 0) {
        return TORII_ENOMEM;
    }
    atomic_store(&d->checked_us, torii_clock_mono_us());
    if (d->watchdog) {
        torii_log(TORII_LOG_INFO,
                  "daemon: watchdog on (ping every %llu ms while %zu loops iterate)",
                  (unsigned long long)(d->check_us / 1000), d->n_beats);
    }
    return TORII_OK;
}

void torii_daemon_unwatch(struct torii_daemon *d)
{
    if (d != NULL && d->check != NULL) {
        event_free(d->check);
        d->check = NULL;
    }
}

void torii_daemon_set_state(struct torii_daemon *d, enum torii_daemon_state s)
{
    atomic_store(&d->state, (int)s);
}

enum torii_daemon_state torii_daemon_state(const struct torii_daemon *d)
{
    return (enum torii_daemon_state)atomic_load(&d->state);
}

int torii_daemon_alive(const struct torii_daemon *d)
{
    int64_t age = torii_clock_mono_us() - atomic_load(&d->checked_us);

    return atomic_load(&d->alive) && age >= 0 && (uint64_t)age < 3 * d->check_us;
}

int torii_daemon_ready(const struct torii_daemon *d)
{
    return torii_daemon_state(d) == TORII_DAEMON_READY && torii_daemon_alive(d);
}

uint64_t torii_daemon_check_period_us(const struct torii_daemon *d)
{
    return d->check_us;
}
