/* lifecycle_int.h - helpers shared inside src/lifecycle. Not to be included elsewhere. */
#ifndef TORII_LIFECYCLE_INT_H
#define TORII_LIFECYCLE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/alert.h"
#include "torii/conf.h"
#include "torii/err.h"
#include "torii/store.h"

/** 1 when the calling thread is inside torii_lifecycle_write_begin/end. */
int torii_lifecycle__writing(void);

/** Exporter set (exporter.c). */
struct torii_exporters;
int torii_exporters__new(const struct torii_config *cfg, struct torii_store *store,
                         struct torii_exporters **out, struct torii_errbuf *eb) TORII_MUST_USE;
void torii_exporters__free(struct torii_exporters *xs);
/** Bit (1u << type) set for each alert type at least one exporter wants. */
unsigned torii_exporters__mask(const struct torii_exporters *xs);
/** Queue env (a new reference is taken per exporter that wants t). */
void torii_exporters__push(struct torii_exporters *xs, enum torii_alert_type t, json_t *env);
void torii_exporters__reopen(struct torii_exporters *xs);

/** Load an entity from the certificate bucket: *out a new object. TORII_ENOTFOUND,
 * TORII_ESTORE, TORII_EINVAL (stored JSON does not parse). */
int torii_lifecycle__load(struct torii_store *store, const char *id, json_t **out) TORII_MUST_USE;

#endif
