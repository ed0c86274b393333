/* testtable.c - see testtable.h. */
#include "testtable.h"

#include <string.h>

#include "torii/clock.h"

struct torii_tls_cert *testtable_select(struct torii_table *t, const char *name)
{
    struct torii_sni_query q = {.name = name,
                                .name_len = strlen(name),
                                .ecdsa_ok = 1,
                                .rsa_ok = 1,
                                .now_ms = torii_clock_now_ms()};
    struct torii_tls_cert *c = NULL;

    return torii_table_select(t, &q, &c, NULL) == TORII_OK ? c : NULL;
}
