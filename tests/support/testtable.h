/* testtable.h - the certificate table's SNI selection as a unit test asks it: a name alone,
 * any key type accepted, now.
 * Threads: any thread. Ownership: the returned certificate is the caller's reference. */
#ifndef TORII_TESTTABLE_H
#define TORII_TESTTABLE_H

#include "torii/table.h"

/** The certificate torii_table_select chooses for name (ECDSA and RSA both acceptable, the
 * current time), a reference the caller drops with torii_tls_cert_unref; NULL when none. */
struct torii_tls_cert *testtable_select(struct torii_table *t, const char *name);

#endif
