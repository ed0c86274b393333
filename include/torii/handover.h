/* handover.h - binary upgrade without refusing a connection: the running torii passes its
 * listening sockets to its successor over <data_dir>/torii-upgrade.sock (SCM_RIGHTS), then
 * drains. See docs/operations.md (Binary upgrade).
 * Threads: main thread only (blocking I/O, each wait bounded by TORII_HANDOVER_TIMEOUT_S). */
#ifndef TORII_HANDOVER_H
#define TORII_HANDOVER_H

#include <stddef.h>

#include "torii/err.h"
#include "torii/proxy.h"

#define TORII_HANDOVER_SOCK      "torii-upgrade.sock"
#define TORII_HANDOVER_TIMEOUT_S 60
#define TORII_HANDOVER_MAX_SOCKS 1024

/** Listen on <data_dir>/torii-upgrade.sock (mode 0600) for a successor; an existing socket is
 * replaced. One torii per data dir is the data-dir lock's rule (torii_daemon_lock): call this
 * holding it, or as the successor that took over the socket's owner. */
int torii_handover_listen(const char *data_dir, int *out, struct torii_errbuf *eb) TORII_MUST_USE;
/** Old side: accept a successor and read its TAKEOVER request. */
int torii_handover_accept(int lfd, int *conn, long *peer_pid, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** Old side: send the sockets (fds borrowed), wait for SERVING, answer DRAINING. TORII_OK:
 * the successor accepts on them; the caller drains. */
int torii_handover_give(int conn, const struct torii_listen_sock *socks, size_t n,
                        struct torii_errbuf *eb) TORII_MUST_USE;

/** New side: connect to the running torii of data_dir and receive its sockets (owned:
 * torii_handover_socks_free). *conn stays open for torii_handover_serving. */
int torii_handover_take(const char *data_dir, int *conn, struct torii_listen_socks *got,
                        struct torii_errbuf *eb) TORII_MUST_USE;
/** New side: tell the old process we serve; wait until it drains. */
int torii_handover_serving(int conn, struct torii_errbuf *eb) TORII_MUST_USE;
/** Close the received descriptors and free the list. */
void torii_handover_socks_free(struct torii_listen_socks *got);

#endif
