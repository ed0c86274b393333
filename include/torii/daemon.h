/* daemon.h - how torii lives under a service manager: the sd_notify protocol (READY=1,
 * RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1) without libsystemd, a watchdog fed only while
 * every event loop iterates, the instance lock on the data dir, the probe that refuses a
 * listen address another process already serves, and the health state that /healthz and
 * /readyz report.
 *
 * Liveness. Each event loop (every proxy worker, the admin loop) attaches a beat: a periodic
 * timer on its own base that bumps a counter. The main loop checks the counters every check
 * period (half of WATCHDOG_USEC under a systemd watchdog, else one second) and sends
 * WATCHDOG=1 only when every counter moved since the previous check; a loop stuck in a
 * callback stops the pings, and systemd restarts the service after WatchdogSec.
 *
 * Threads: torii_daemon_new/free, lock, beat attach/detach, watch and set_state run on the main
 * thread (beats are attached before the loop threads start); a beat's timer runs on its loop's
 * thread; torii_daemon_alive/ready/state are safe from any thread (atomics).
 * Ownership: the daemon owns the lock descriptor (released by torii_daemon_free) and the beat
 * records; a beat's timer event belongs to its loop and is freed by torii_daemon_beat_detach
 * before that loop's base is freed. */
#ifndef TORII_DAEMON_H
#define TORII_DAEMON_H

#include <stdint.h>

#include "torii/conf.h"
#include "torii/err.h"

struct event_base;

enum torii_daemon_state {
    TORII_DAEMON_STARTING = 0, /* store, certificates, listeners not all up yet */
    TORII_DAEMON_READY,        /* serving */
    TORII_DAEMON_DRAINING,     /* stopping: finishing connections, not ready for new ones */
};

struct torii_daemon;
struct torii_daemon_beat;

/** A daemon state for cfg (borrowed; must outlive it). Reads WATCHDOG_USEC and WATCHDOG_PID
 * from the environment (a watchdog meant for another pid is ignored, as sd_watchdog_enabled
 * does). TORII_EINVAL when WATCHDOG_USEC is not a positive integer. */
int torii_daemon_new(const struct torii_config *cfg, struct torii_daemon **out,
                     struct torii_errbuf *eb) TORII_MUST_USE;
/** Releases the instance lock; NULL accepted. Every beat must be detached first. */
void torii_daemon_free(struct torii_daemon *d);

/** One instance per data dir: an exclusive flock on <data_dir>/torii.lock, held until
 * torii_daemon_free, with our pid written into it. TORII_EPERM when another process holds it
 * (the message names the data dir and that pid), TORII_EIO when the file cannot be opened. */
int torii_daemon_lock(struct torii_daemon *d, const char *data_dir, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** torii_daemon_lock, retried every 50 ms while another process holds the lock, for at most
 * timeout_ms: the successor of an upgrade takes the lock its predecessor releases once the
 * hand-over is done. Main thread. */
int torii_daemon_lock_wait(struct torii_daemon *d, const char *data_dir, unsigned timeout_ms,
                           struct torii_errbuf *eb) TORII_MUST_USE;
/** Release the instance lock (the predecessor of an upgrade, once its successor serves);
 * NULL accepted. Main thread. */
void torii_daemon_unlock(struct torii_daemon *d);

/** One instance per listen address: bind addr (key names it in errors, e.g. "listen.https")
 * once without SO_REUSEPORT and close it again. Every listener of torii sets SO_REUSEPORT, so
 * a second torii could otherwise share the port silently; this bind fails with EADDRINUSE
 * while any process listens there. Call before the real listeners are bound; a process that
 * inherits its sockets from its predecessor (upgrade) does not call it. Port 0 is not probed.
 * TORII_EIO naming key and addr when in use, TORII_EINVAL on a bad address. */
int torii_daemon_probe_listen(const char *key, const char *addr, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Send one sd_notify message ("READY=1", "STOPPING=1", ...) to $NOTIFY_SOCKET; nothing when
 * unset. Failures are logged. Any thread. */
void torii_daemon_notify(const char *msg);

/** Attach a beat named name (copied, e.g. "worker-0") to base: a persistent timer bumping the
 * beat's counter. Main thread, before the loop thread starts. TORII_ENOMEM, or TORII_EINVAL
 * when the table of beats is full. */
int torii_daemon_beat_attach(struct torii_daemon *d, struct event_base *base, const char *name,
                             struct torii_daemon_beat **out) TORII_MUST_USE;
/** The beat's loop has returned (a drained worker whose siblings still serve): stop checking
 * it. The loop's own thread, after its loop; NULL accepted. */
void torii_daemon_beat_ended(struct torii_daemon_beat *b);
/** Free the beat's timer and stop checking it (after its loop ended); NULL accepted. */
void torii_daemon_beat_detach(struct torii_daemon_beat *b);

/** Start the liveness check (and the watchdog pings) on the main loop's base. */
int torii_daemon_watch(struct torii_daemon *d, struct event_base *base) TORII_MUST_USE;
/** Free the check timer (before its base is freed); NULL accepted. */
void torii_daemon_unwatch(struct torii_daemon *d);

void torii_daemon_set_state(struct torii_daemon *d, enum torii_daemon_state s);
enum torii_daemon_state torii_daemon_state(const struct torii_daemon *d);
/** Every beat moved at the last check and the main loop checked within three periods. */
int torii_daemon_alive(const struct torii_daemon *d);
/** Alive and in state READY (store open, certificates loaded, listeners bound). */
int torii_daemon_ready(const struct torii_daemon *d);
/** The check period in microseconds (half of WATCHDOG_USEC, else 1 s). */
uint64_t torii_daemon_check_period_us(const struct torii_daemon *d);

/** Disable core dumps for the whole process (RLIMIT_CORE 0, then prctl PR_SET_DUMPABLE 0):
 * keys and KEKs in memory never reach a core file. Main thread, first thing at start (before
 * any key is loaded). TORII_EIO (eb says which call) when the kernel refuses. */
int torii_daemon_harden(struct torii_errbuf *eb) TORII_MUST_USE;
/** PR_GET_DUMPABLE of the process (0 after torii_daemon_harden); -1 on error. Any thread. */
int torii_daemon_dumpable(void);

/** Test hook (debug.stall_file): 1 while the file at path (NULL or "": none) names `name`
 * on its first line. A loop beat (or the fleet's applier, "fleet-apply") blocks while it
 * does, as a callback stuck in a system call would; callers bound the wait. Any thread. */
int torii_daemon_stall_wanted(const char *path, const char *name);

#endif
