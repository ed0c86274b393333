/* admin.h - the admin server: its own thread and event_base, bound to admin.listen
 * (loopback by default), serving /api/certificates (and later /api/pki, the web page and
 * /metrics) through the strict HTTP/1.1 engine. Every request is authenticated: bearer token,
 * HTTP Basic (client id + token), or Otoroshi-Client-Id/-Secret headers. The token comes from
 * config, TORII_ADMIN_TOKEN (already folded into the config), or <data_dir>/admin.token,
 * generated on first start with mode 0600.
 * Threads: torii_admin_start/stop from the main thread only; everything else runs on the
 * admin thread.
 * Ownership: cfg, store and table are borrowed and must outlive the admin server. */
#ifndef TORII_ADMIN_H
#define TORII_ADMIN_H

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/store.h"
#include "torii/table.h"

struct torii_admin;

/** Bind the listener (errors reported synchronously) and start the admin thread. */
int torii_admin_start(const struct torii_config *cfg, struct torii_store *store,
                      struct torii_table *table, struct torii_admin **out, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** Stop the loop, join the thread, free everything; NULL accepted. */
void torii_admin_stop(struct torii_admin *adm);

#endif
