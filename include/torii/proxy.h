/* proxy.h - the public listeners and the worker threads that serve them. Each worker owns one
 * libevent event_base, its own SO_REUSEPORT sockets for the https and http listeners, and
 * every connection accepted on them (TLS through the shared torii_tls_ctx). Until routes
 * exist, every request gets a 404 JSON body saying no route matched.
 * Threads: start/stop from the main thread only; the workers run their loops.
 * Ownership: cfg, table and tls are borrowed and must outlive the workers. */
#ifndef TORII_PROXY_H
#define TORII_PROXY_H

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/table.h"
#include "torii/tls.h"

struct torii_workers;

/** Bind every listener socket (errors reported here, synchronously) and start the workers. */
int torii_workers_start(const struct torii_config *cfg, struct torii_table *table,
                        struct torii_tls_ctx *tls, struct torii_workers **out,
                        struct torii_errbuf *eb) TORII_MUST_USE;
/** Stop accepting, close connections, join and free; NULL accepted. */
void torii_workers_stop(struct torii_workers *w);

#endif
