/* hook.c - the DNS-01 hook (acme.dns_hook): the operator's command run as
 * `HOOK set|clear NAME VALUE` (no shell), its output discarded, waited for up to
 * acme.dns_hook_timeout_s and killed after. A non-zero exit, a signal or the timeout is the
 * order's error. ACME thread only. */
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acme_int.h"
#include "torii/clock.h"

#define ACME_HOOK_TICK_MS 20

extern char **environ;

static int acme_hook_spawn(const char *cmd, char *const argv[], pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    int err;

    if (posix_spawn_file_actions_init(&fa) != 0) {
        return ENOMEM;
    }
    (void)posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    (void)posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    err = posix_spawn(pid, cmd, &fa, NULL, argv, environ);
    (void)posix_spawn_file_actions_destroy(&fa);
    return err;
}

#define ACME_HOOK_TIMEDOUT (-1)
#define ACME_HOOK_LOST     (-2) /* waitpid failed: the exit status is unknown */

/* Wait for pid up to timeout_ms; kill it after. *status as waitpid's, or one of the two
 * values above. */
static void acme_hook_wait(pid_t pid, int64_t timeout_ms, int *status)
{
    int64_t end = torii_clock_mono_us() / 1000 + timeout_ms;
    struct timespec tick = {.tv_sec = 0, .tv_nsec = ACME_HOOK_TICK_MS * 1000000L};

    for (int64_t i = 0; i <= timeout_ms / ACME_HOOK_TICK_MS + 1; i++) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            return;
        }
        if (r < 0 && errno != EINTR) {
            *status = ACME_HOOK_LOST;
            return;
        }
        if (torii_clock_mono_us() / 1000 >= end) {
            break;
        }
        (void)nanosleep(&tick, NULL);
    }
    (void)kill(pid, SIGKILL);
    (void)waitpid(pid, NULL, 0);
    *status = ACME_HOOK_TIMEDOUT;
}

int acme_hook_run(const struct torii_conf_acme *conf, const char *action, const char *name,
                  const char *value, struct torii_errbuf *eb)
{
    char *argv[5];
    pid_t pid = 0;
    int status = 0;
    int err;

    if (conf->dns_hook == NULL) {
        return torii_errf(eb, TORII_EINVAL, "acme: dns-01 needs acme.dns_hook");
    }
    argv[0] = conf->dns_hook;
    argv[1] = (char *)(uintptr_t)action; /* posix_spawn's argv is not const-qualified */
    argv[2] = (char *)(uintptr_t)name;
    argv[3] = (char *)(uintptr_t)value;
    argv[4] = NULL;
    err = acme_hook_spawn(conf->dns_hook, argv, &pid);
    if (err != 0) {
        return torii_errf(eb, TORII_EIO, "acme: dns_hook %s: cannot be started (errno %d)",
                          conf->dns_hook, err);
    }
    acme_hook_wait(pid, (int64_t)conf->dns_hook_timeout_s * 1000, &status);
    if (status == ACME_HOOK_LOST) {
        return torii_errf(eb, TORII_EIO, "acme: dns_hook %s %s %s: its exit status was lost",
                          conf->dns_hook, action, name);
    }
    if (status == ACME_HOOK_TIMEDOUT) {
        return torii_errf(eb, TORII_ETIMEDOUT, "acme: dns_hook %s %s %s: no exit after %u s",
                          conf->dns_hook, action, name, conf->dns_hook_timeout_s);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        return torii_errf(eb, TORII_EIO, "acme: dns_hook %s %s %s: %s %d", conf->dns_hook, action,
                          name, WIFEXITED(status) ? "exit status" : "killed by signal",
                          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    return TORII_OK;
}
