/* dir.c - the data directory of a store: created 0700 when missing, checked to be a
 * directory (a warning when group/world accessible), and its LMDB files tightened to 0600. */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>

#include "store_int.h"
#include "torii/err.h"
#include "torii/log.h"

int torii_store__dir_prepare(const char *dir, struct torii_errbuf *eb)
{
    struct stat sb;

    if (mkdir(dir, 0700) == 0) {
        torii_log(TORII_LOG_INFO, "store: created data directory (dir=%s)", dir);
    } else if (errno != EEXIST) {
        int e = errno;

        torii_log(TORII_LOG_ERR, "store: open failed: mkdir: %s (dir=%s)", torii_errno_text(e).s,
                  dir);
        return torii_errf(eb, TORII_EIO, "store: cannot create %s: %s", dir, torii_errno_text(e).s);
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        torii_log(TORII_LOG_ERR, "store: open failed: not a directory (dir=%s)", dir);
        return torii_errf(eb, TORII_EIO, "store: %s is not a directory", dir);
    }
    if ((sb.st_mode & 077) != 0) {
        torii_log(TORII_LOG_WARN, "store: data directory is group/world accessible (dir=%s)", dir);
    }
    return TORII_OK;
}

/* LMDB creates files with the mode we pass, but files from an older run may be looser. */
void torii_store__files_tighten(const char *dir)
{
    static const char *const names[] = {"data.mdb", "lock.mdb"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[PATH_MAX];
        struct stat sb;
        int n = snprintf(path, sizeof(path), "%s/%s", dir, names[i]);

        if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &sb) != 0) {
            continue;
        }
        if ((sb.st_mode & 077) != 0) {
            torii_log(TORII_LOG_WARN, "store: tightening mode of %s to 0600", path);
            if (chmod(path, 0600) != 0) {
                torii_log_errno(TORII_LOG_WARN, "store: chmod %s failed", path);
            }
        }
    }
}
