/* harden.c - process hardening against key leaks (docs/operations.md, Keys at rest): no core
 * dump may carry a private key or a KEK out of the process. */
#include <sys/prctl.h>
#include <sys/resource.h>

#include <errno.h>
#include <string.h>

#include "torii/daemon.h"

int torii_daemon_harden(struct torii_errbuf *eb)
{
    struct rlimit none = {0, 0};
    struct rlimit cur = {1, 1};

    /* RLIMIT_CORE 0: the kernel writes no core file, and neither can a core_pattern pipe
     * (systemd-coredump) once the process is not dumpable. Already 0 (the unit's
     * LimitCORE=0): no call, which a system call filter without @resources might refuse. */
    if (getrlimit(RLIMIT_CORE, &cur) == 0 && cur.rlim_cur == 0 && cur.rlim_max == 0) {
        /* nothing to lower */
    } else if (setrlimit(RLIMIT_CORE, &none) != 0) {
        return torii_errf(eb, TORII_EIO, "daemon: setrlimit(RLIMIT_CORE, 0): %s",
                          torii_errno_text(errno).s);
    }
    /* Not dumpable: no core dump at all, and no ptrace attach or /proc/<pid>/mem read by
     * other processes of the same user. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        return torii_errf(eb, TORII_EIO, "daemon: prctl(PR_SET_DUMPABLE, 0): %s",
                          torii_errno_text(errno).s);
    }
    return TORII_OK;
}

int torii_daemon_dumpable(void)
{
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
}
