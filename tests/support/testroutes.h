/* testroutes.h - compile proxy routes from a JSON literal in a unit test.
 * Threads: any thread. Ownership: *out as torii_routes_compile gives it (caller frees). */
#ifndef TORII_TESTROUTES_H
#define TORII_TESTROUTES_H

#include "torii/err.h"
#include "torii/proxy.h"

/** torii_routes_compile on a config whose only key is "routes": routes_json. JSON that does not
 * parse is a bug in the test, not a result: it is reported and the test aborts. */
int testroutes_compile_json(const char *routes_json, struct torii_routes **out,
                            struct torii_errbuf *eb);

#endif
