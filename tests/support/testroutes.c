/* testroutes.c - proxy routes from JSON for unit tests (see testroutes.h). */
#include "testroutes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "torii/conf.h"

int testroutes_compile_json(const char *routes_json, struct torii_routes **out,
                            struct torii_errbuf *eb)
{
    struct torii_config cfg;
    json_error_t jerr;
    int rc;

    memset(&cfg, 0, sizeof(cfg));
    cfg.routes = json_loads(routes_json, 0, &jerr);
    if (cfg.routes == NULL) {
        (void)fprintf(stderr, "testroutes: the test's routes JSON does not parse: %s (line %d)\n",
                      jerr.text, jerr.line);
        abort();
    }
    rc = torii_routes_compile(&cfg, out, eb);
    json_decref(cfg.routes);
    return rc;
}
