/* test_daemon.c - the daemon module: instance lock, listen probe, WATCHDOG_USEC parsing, beats
 * and the liveness check, the health state. */
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "daemon_int.h"
#include "torii/daemon.h"

static struct torii_config test_cfg; /* only debug_stall_file is read (NULL) */

static void test_lock_twice(void **state)
{
    char dir[] = "/tmp/torii-daemon-XXXXXX";
    char path[64];
    struct torii_daemon *a = NULL;
    struct torii_daemon *b = NULL;
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_non_null(mkdtemp(dir));
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(torii_daemon_new(&test_cfg, &a, &eb), TORII_OK);
    assert_int_equal(torii_daemon_new(&test_cfg, &b, &eb), TORII_OK);
    assert_int_equal(torii_daemon_lock(a, dir, &eb), TORII_OK);
    /* flock locks belong to the open file: a second open in this process conflicts too */
    assert_int_equal(torii_daemon_lock(b, dir, &eb), TORII_EPERM);
    assert_non_null(strstr(eb.msg, dir));
    assert_non_null(strstr(eb.msg, "is in use by another torii"));
    torii_daemon_free(a); /* releases it */
    assert_int_equal(torii_daemon_lock(b, dir, &eb), TORII_OK);
    torii_daemon_free(b);
    (void)snprintf(path, sizeof(path), "%s/torii.lock", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void test_probe(void **state)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    struct torii_errbuf eb = {{0}};
    char addr[64];
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    (void)state;
    assert_true(fd >= 0);
    /* a listener as torii's workers make them: SO_REUSEPORT */
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    assert_int_equal(listen(fd, 8), 0);
    (void)snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    assert_int_equal(torii_daemon_probe_listen("listen.https", addr, &eb), TORII_EIO);
    assert_non_null(strstr(eb.msg, "listen.https: address"));
    assert_non_null(strstr(eb.msg, addr));
    assert_int_equal(close(fd), 0);
    assert_int_equal(torii_daemon_probe_listen("listen.https", addr, &eb), TORII_OK);
    assert_int_equal(torii_daemon_probe_listen("listen.http", "127.0.0.1:0", &eb), TORII_OK);
    assert_int_equal(torii_daemon_probe_listen("listen.http", "nonsense", &eb), TORII_EINVAL);
}

static void test_watchdog_env(void **state)
{
    struct torii_daemon *d = NULL;
    struct torii_errbuf eb = {{0}};

    (void)state;
    unsetenv("WATCHDOG_PID");
    assert_int_equal(setenv("WATCHDOG_USEC", "30000000", 1), 0);
    assert_int_equal(torii_daemon_new(&test_cfg, &d, &eb), TORII_OK);
    assert_int_equal(torii_daemon_check_period_us(d), 15000000);
    torii_daemon_free(d);
    assert_int_equal(setenv("WATCHDOG_USEC", "12x", 1), 0);
    assert_int_equal(torii_daemon_new(&test_cfg, &d, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "WATCHDOG_USEC"));
    /* a watchdog meant for another process is not ours */
    assert_int_equal(setenv("WATCHDOG_USEC", "30000000", 1), 0);
    assert_int_equal(setenv("WATCHDOG_PID", "1", 1), 0);
    assert_int_equal(torii_daemon_new(&test_cfg, &d, &eb), TORII_OK);
    assert_int_equal(torii_daemon_check_period_us(d), 1000000);
    torii_daemon_free(d);
    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
}

/* Run base until want(d) holds, at most 2000 turns of 10 ms. */
static int run_until(struct event_base *base, struct torii_daemon *d,
                     int (*want)(const struct torii_daemon *))
{
    struct timeval tick = {.tv_sec = 0, .tv_usec = 10000};

    for (int i = 0; i < 2000; i++) {
        (void)event_base_loopexit(base, &tick);
        (void)event_base_dispatch(base);
        if (want(d)) {
            return 1;
        }
    }
    return 0;
}

static int not_alive(const struct torii_daemon *d)
{
    return !torii_daemon_alive(d);
}

static void test_beats(void **state)
{
    struct event_base *main_base = event_base_new();
    struct event_base *idle_base = event_base_new();
    struct torii_daemon *d = NULL;
    struct torii_daemon_beat *live = NULL;
    struct torii_daemon_beat *stuck = NULL;
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_non_null(main_base);
    assert_non_null(idle_base);
    assert_int_equal(setenv("WATCHDOG_USEC", "80000", 1), 0); /* check every 40 ms */
    assert_int_equal(torii_daemon_new(&test_cfg, &d, &eb), TORII_OK);
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(torii_daemon_state(d), TORII_DAEMON_STARTING);
    assert_int_equal(torii_daemon_beat_attach(d, main_base, "live", &live), TORII_OK);
    assert_int_equal(torii_daemon_watch(d, main_base), TORII_OK);
    torii_daemon_set_state(d, TORII_DAEMON_READY);
    assert_true(run_until(main_base, d, torii_daemon_ready));
    /* A loop that never runs (idle_base is not dispatched) makes the daemon not alive. */
    assert_int_equal(torii_daemon_beat_attach(d, idle_base, "stuck", &stuck), TORII_OK);
    assert_true(run_until(main_base, d, not_alive));
    assert_false(torii_daemon_ready(d));
    /* Its loop ended (a drained worker, still attached until its siblings end): it no longer
     * counts; then detached. */
    torii_daemon_beat_ended(stuck);
    assert_true(run_until(main_base, d, torii_daemon_alive));
    torii_daemon_beat_detach(stuck);
    assert_true(torii_daemon_alive(d));
    torii_daemon_set_state(d, TORII_DAEMON_DRAINING);
    assert_false(torii_daemon_ready(d));
    assert_true(torii_daemon_alive(d));
    torii_daemon_beat_detach(live);
    torii_daemon_unwatch(d);
    torii_daemon_free(d);
    event_base_free(idle_base);
    event_base_free(main_base);
}

/* The check's judgement, at chosen times (no timer, no machine speed): a check that comes
 * early after a late one (libevent keeps a persistent timer on its schedule) does not call a
 * loop stuck for a beat it had no time to make; a full period without a beat does. */
static void test_check_after_late_check(void **state)
{
    const int64_t s = 1000000; /* the default check period: 1 s, beats every 250 ms */
    const int64_t t = 100 * s;
    struct event_base *base = event_base_new();
    struct torii_daemon *d = NULL;
    struct torii_daemon_beat *b = NULL;
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_non_null(base);
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(torii_daemon_new(&test_cfg, &d, &eb), TORII_OK);
    assert_int_equal(torii_daemon_check_period_us(d), (uint64_t)s);
    assert_int_equal(torii_daemon_beat_attach(d, base, "worker", &b), TORII_OK);
    atomic_fetch_add(&b->count, 1);
    torii_daemon__check(d, t);
    assert_int_equal(atomic_load(&d->alive), 1);
    atomic_fetch_add(&b->count, 1);
    torii_daemon__check(d, t + s + 900000); /* 0.9 s late: the beat moved */
    assert_int_equal(atomic_load(&d->alive), 1);
    torii_daemon__check(d, t + 2 * s); /* on schedule, 0.1 s after: too soon to tell */
    assert_int_equal(atomic_load(&d->alive), 1);
    torii_daemon__check(d, t + 3 * s); /* 1.1 s without a beat: stuck */
    assert_int_equal(atomic_load(&d->alive), 0);
    atomic_fetch_add(&b->count, 1);
    torii_daemon__check(d, t + 3 * s + 100000); /* too soon: still the last judgement */
    assert_int_equal(atomic_load(&d->alive), 0);
    torii_daemon__check(d, t + 4 * s); /* it beat again */
    assert_int_equal(atomic_load(&d->alive), 1);
    torii_daemon_beat_detach(b);
    torii_daemon_free(d);
    event_base_free(base);
}

/* Hardening, in a child (it would make this test process undumpable too): no core file
 * size, not dumpable; the child reports through its exit status. */
static void test_harden(void **state)
{
    pid_t pid;
    int status = 0;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct torii_errbuf eb = {{0}};
        struct rlimit rl = {1, 1};

        if (torii_daemon_dumpable() != 1 || torii_daemon_harden(&eb) != TORII_OK) {
            _exit(2);
        }
        if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_cur != 0 || rl.rlim_max != 0) {
            _exit(3);
        }
        _exit(torii_daemon_dumpable() == 0 ? 0 : 4);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_twice),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_watchdog_env),
        cmocka_unit_test(test_beats),
        cmocka_unit_test(test_check_after_late_check),
        cmocka_unit_test(test_harden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
