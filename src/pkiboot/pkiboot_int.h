/* pkiboot_int.h - internal to pkiboot: the two store accesses of the first start (store_io.c).
 * Main thread only. To be replaced by the certdb calls (get, create) once that module lands. */
#ifndef TORII_PKIBOOT_INT_H
#define TORII_PKIBOOT_INT_H

#include <jansson.h>

#include "torii/err.h"
#include "torii/store.h"

/** The entity `id` of TORII_STORE_CERTS as a JSON object (*out, new reference, written only on
 * success). TORII_OK, TORII_ENOTFOUND, the store's code, or TORII_ESTORE when the stored text
 * is not a JSON object. */
int pkiboot_entity_load(struct torii_store *st, const char *id, json_t **out) TORII_MUST_USE;

/** Store new enriched entities (a JSON array, each with a string "id") in one durable
 * torii_store_apply: each record (TORII_STORE_CREATE, TLS record built here) with its serial
 * index entry. TORII_EINVAL (a record does not build), TORII_EEXIST, TORII_ESTORE, TORII_ENOMEM
 * (eb says why); nothing stored then. */
int pkiboot_persist(struct torii_store *st, const json_t *entities, struct torii_errbuf *eb)
    TORII_MUST_USE;

#endif
