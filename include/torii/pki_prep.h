/* pki_prep.h - key material at rest and the one-parse preparation of an entity for the store
 * (certdb's seam into the PKI). Part of pki.h.
 * Threads: any thread (pure functions over their arguments).
 * Ownership: sealed buffers and prepared records are malloc'd and owned by the caller (wiped
 * on release); EVP_PKEYs returned are new references the caller frees. */
#ifndef TORII_PKI_PREP_H
#define TORII_PKI_PREP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/types.h>

#include "torii/err.h"
#include "torii/pki_revoke.h"

/* ---- key material at rest ----
 * A certificate's private key is stored once: the entity JSON's "privateKey", as PEM (maybe
 * encrypted with "password") or sealed under a KEK ("TKEK:...", pki_kek.h). The TLS record
 * holds no key bytes. These are the one pair of functions that make the stored form and open
 * it; kek is the KEK ring (NULL: none loaded), passed down in the callers' option structs. */

struct torii_kek_ring;

/** The stored form of a private key text (PEM) of record id: sealed under kek's current KEK
 * when one is loaded, else a copy of text; a text already sealed is copied as is. *out is
 * malloc'd (wipe it with torii_secure_free). TORII_EINVAL without text or id; the envelope's
 * codes (pki_kek.h). */
int torii_pki_key_seal(const struct torii_kek_ring *kek, const char *id, const char *text,
                       char **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** Open a stored private key text of record id: a sealed text through kek (TORII_ENOTFOUND:
 * sealed under a KEK that is not loaded; TORII_EPERM: altered or moved from another record),
 * then the PEM with password (NULL or "": none). *out is a new EVP_PKEY the caller frees.
 * TORII_EINVAL (eb names the record, never key bytes) when it does not open. */
int torii_pki_key_open(const struct torii_kek_ring *kek, const char *id, const char *text,
                       const char *password, EVP_PKEY **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** The text of a stored private key of record id as it was given (PEM, maybe encrypted with
 * the entity's password): a sealed text is opened through kek (codes as torii_pki_key_open),
 * a clear one is copied. *out is malloc'd, NUL-terminated: wipe it with torii_secure_free.
 * For `?export=true` only: every other use opens an EVP_PKEY with torii_pki_key_open. */
int torii_pki_key_text_open(const struct torii_kek_ring *kek, const char *id, const char *text,
                            char **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** Where a stored key is (all borrowed): what the TLS table and client identities are given
 * next to a TLS record, to open the key at first use through torii_pki_key_open. */
struct torii_pki_key_src {
    const char *id;                   /* the record id (the envelope's associated data) */
    const char *text;                 /* the entity's privateKey as stored; NULL or "": none */
    const char *password;             /* the entity's password; NULL or "": none */
    const struct torii_kek_ring *kek; /* NULL: none loaded */
};

/** The key source of a stored entity (strings borrowed from it). */
struct torii_pki_key_src torii_pki_key_src_of(const json_t *entity,
                                              const struct torii_kek_ring *kek);

/** An entity copied under a new id (its "id" already set) from record from_id: a sealed
 * privateKey, bound to from_id, is opened and sealed again for the new id under kek's current
 * KEK (the clear text is wiped). A clear or missing key is left as is. torii_pki_key_open's
 * codes (TORII_ENOTFOUND without the KEK it was sealed under). */
int torii_pki_entity_key_rebind(const struct torii_kek_ring *kek, json_t *entity,
                                const char *from_id, struct torii_errbuf *eb) TORII_MUST_USE;

/** torii_pki_key_open on an entity's id, privateKey and password. */
int torii_pki_entity_key_open(const struct torii_kek_ring *kek, const json_t *entity,
                              EVP_PKEY **out, struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- one-parse preparation of an entity for the store (certdb) ---- */

enum torii_cert_prep_mode {
    TORII_CERT_PREP_AS_IS = 0, /* the entity is stored as given: only the record is built */
    TORII_CERT_PREP_NORMALIZE, /* normalize, certType from the flags, record */
    TORII_CERT_PREP_ENRICH,    /* normalize, every derived field (torii_cert_enrich), record */
};

struct torii_cert_prep_opts {
    enum torii_cert_prep_mode mode;
    int64_t now_ms; /* ENRICH: the instant `valid` is judged at */
    /* Called once the entity is normalized, before anything is parsed (NULL: none); a non-OK
     * return stops the preparation with that code. */
    int (*check)(const json_t *entity, void *arg, struct torii_errbuf *eb);
    void *check_arg;
    /* Keep the stored key (NULL: no): when the entity has no privateKey and keep_from has
     * one, and the entity's leaf has the public key of the leaf in keep_aux (keep_from's
     * record), keep_from's privateKey and password are copied in; another public key is
     * TORII_EINVAL. */
    const json_t *keep_from;
    const unsigned char *keep_aux;
    size_t keep_aux_len;
    /* Called on the prepared entity, record built (NULL: none); non-OK stops as check does. */
    int (*after)(const json_t *entity, void *arg, struct torii_errbuf *eb);
    void *after_arg;
    /* Keys at rest (NULL: none loaded): a sealed privateKey is opened with it, and a clear
     * one is stored sealed under its current KEK (torii_pki_key_seal). */
    const struct torii_kek_ring *kek;
};

/** What the preparation produced besides the modified entity. */
struct torii_cert_prepared {
    unsigned char *aux; /* the TLS record (no key bytes): torii_cert_prepared_clear */
    size_t aux_len;
    uint32_t flags;                            /* the record's TORII_CERTREC_* */
    char serial_hex[TORII_PKI_SERIAL_HEX_MAX]; /* the leaf's, "" when it does not print */
};

/** Prepare entity (modified in place) for the store from ONE parse of its chain and key:
 * normalize and enrich as o->mode says, then build the record and read the serial.
 * TORII_EINVAL (eb says why) for a bad entity, chain or key. *out is written only on
 * success. */
int torii_cert_prepare(json_t *entity, const struct torii_cert_prep_opts *o,
                       struct torii_cert_prepared *out, struct torii_errbuf *eb) TORII_MUST_USE;
void torii_cert_prepared_clear(struct torii_cert_prepared *p);

/** PEM chain parses since the process started (every path that reads an entity's chain;
 * metric torii_pki_chain_parses_total): the write path's cost measure. Any thread. */
uint64_t torii_pki_chain_parse_count(void);

#endif
