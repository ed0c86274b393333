/* certdb_int.h - shared inside the certdb module: the serial index key rules. */
#ifndef TORII_CERTDB_INT_H
#define TORII_CERTDB_INT_H

#include <stddef.h>

#include <jansson.h>

#include "torii/store.h"

/** Room for one index key (TORII_STORE_ID_MAX + NUL). */
#define CERTDB_KEY_MAX (TORII_STORE_ID_MAX + 1)

/** The index keys of a certificate: qualified "<issuer>:<serial>" (empty when the entity has
 * no issuer torii knows) and bare "<serial>" (empty without a serial). */
struct certdb_keys {
    char qual[CERTDB_KEY_MAX];
    char bare[CERTDB_KEY_MAX];
};

/** Keys of entity e stored under id with leaf serial serial_hex ("" or NULL: none). */
void certdb_keys_of(const json_t *e, const char *id, const char *serial_hex,
                    struct certdb_keys *out);

/** Keys of a stored entity from its record (no chain parse; a version 1 record falls back to
 * the chain). ent may be NULL (unreadable JSON): only the bare key is then known. */
void certdb_keys_stored(const json_t *ent, const char *id, const unsigned char *aux, size_t aux_len,
                        struct certdb_keys *out);

#endif
