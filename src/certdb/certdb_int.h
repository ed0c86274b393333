/* certdb_int.h - shared inside the certdb module: the serial index key rules and values. */
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

/* ---- id lists (idlist.c): the value of an index key ---- */

/** 1 when id can be in an id list (non-empty, no '\n'). */
int certdb_idlist_id_ok(const char *id);
/** 1 when list (NUL-terminated) holds id. */
int certdb_idlist_has(const char *list, const char *id);
/** list (NULL: empty) with id appended (malloc'd). */
char *certdb_idlist_with(const char *list, const char *id);
/** list without id (malloc'd), NULL when nothing is left. */
char *certdb_idlist_without(const char *list, const char *id);
/** The ids of list into *out (malloc'd array of malloc'd strings, oldest first); the count. */
size_t certdb_idlist_split(const char *list, char ***out);

#endif
