/* log.h - one line per event on stderr, logfmt-ish: "ts level module: message".
 * Threads: any thread (internally locked: one write(2) per line).
 * Never pass private keys, tokens or raw peer bytes; escape peer strings with torii_log_escape. */
#ifndef TORII_LOG_H
#define TORII_LOG_H

#include <stddef.h>

#include "torii/err.h"

enum torii_log_level {
    TORII_LOG_ERR = 0,
    TORII_LOG_WARN,
    TORII_LOG_NOTICE,
    TORII_LOG_INFO,
    TORII_LOG_DEBUG,
};

void torii_log_set_level(enum torii_log_level lvl);
enum torii_log_level torii_log_get_level(void);
/** Parse "err|warn|notice|info|debug"; TORII_EINVAL otherwise. */
int torii_log_level_parse(const char *s, enum torii_log_level *out) TORII_MUST_USE;

void torii_log(enum torii_log_level lvl, const char *fmt, ...) TORII_PRINTF(2, 3);
/** Like torii_log, appending ": strerror(errno)". */
void torii_log_errno(enum torii_log_level lvl, const char *fmt, ...) TORII_PRINTF(2, 3);
/** Log and exit(1); start-up only. */
void torii_fatal(const char *fmt, ...) TORII_PRINTF(1, 2) __attribute__((noreturn));

/** When $JOURNAL_STREAM names stderr (systemd), event lines start with their syslog priority
 * ("<3>" err .. "<7>" debug) so the journal keeps the level. Main thread, at start-up. */
void torii_log_detect_journal(void);

/** Access log sink: path (append, created 0640) or NULL for stderr. Called again to reopen
 * (logrotate, SIGUSR1, reload): the descriptor is swapped atomically, writers never block.
 * TORII_EIO with the path named in eb; the previous sink is kept then. Main thread. */
int torii_log_access_open(const char *path, struct torii_errbuf *eb) TORII_MUST_USE;
/** Write one complete line (one write(2), so lines never interleave). Any thread. */
void torii_log_access_write(const char *line, size_t len);
/** Flush (fsync) and close the sink; later lines go to stderr. At exit, workers stopped. */
void torii_log_access_close(void);

/** Copy s[0..len) into out (size outlen, always terminated), escaping quotes, backslashes,
 * control and non-ASCII bytes as \xHH. Returns out. */
char *torii_log_escape(const char *s, size_t len, char *out, size_t outlen);

#endif
