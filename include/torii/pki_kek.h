/* pki_kek.h - keys at rest: the KEK envelope (AES-256-GCM) and the KEK ring. Part of pki.h.
 * Threads and ownership: see the section comment below. */
#ifndef TORII_PKI_KEK_H
#define TORII_PKI_KEK_H

#include <stddef.h>

#include <jansson.h>

#include "torii/err.h"

/* ---- keys at rest: the KEK envelope (kek.c, kek_source.c; docs/operations.md) ----
 * Private keys in the store are sealed with AES-256-GCM under a key-encryption key (KEK),
 * with the record id as associated data (format: src/pki/kek.c). A ring holds the current KEK
 * (new envelopes) and previous ones (opening only). Threads: a ring is filled on one thread at
 * start, then only read: seal/open from any thread. Ownership: the ring owns its KEK bytes and
 * wipes them in torii_kek_ring_free; envelopes and opened keys are malloc'd for the caller,
 * who frees an opened key with torii_secure_free. Error messages name the record and KEK ids,
 * never key bytes. */

#define TORII_KEK_LEN    32 /* AES-256 */
#define TORII_KEK_ID_LEN 8  /* first bytes of SHA-256(KEK) */
#define TORII_KEK_MAX    8  /* KEKs in one ring (current + previous) */

struct torii_kek_ring;

/** Where the KEKs come from (the "keys" section of the configuration; all borrowed). */
struct torii_kek_sources {
    const char *file;                   /* keys.kek_file: the current KEK, or NULL */
    const char *credential;             /* keys.kek_credential: the current KEK, or NULL */
    const json_t *previous_files;       /* keys.previous_kek_files: array of paths, or NULL */
    const json_t *previous_credentials; /* keys.previous_kek_credentials, or NULL */
    const char *credentials_dir;        /* $CREDENTIALS_DIRECTORY (systemd), or NULL */
};

/** An empty ring (never NULL). */
struct torii_kek_ring *torii_kek_ring_new(void);
/** Wipe and free; NULL accepted. */
void torii_kek_ring_free(struct torii_kek_ring *r);
/** Add a KEK (copied); current = 1 makes it the one new envelopes use. TORII_EEXIST when the
 * same KEK is already in, TORII_ETOOBIG past TORII_KEK_MAX. */
int torii_kek_ring_add(struct torii_kek_ring *r, const unsigned char key[TORII_KEK_LEN],
                       int current, struct torii_errbuf *eb) TORII_MUST_USE;
/** KEKs in the ring (0 for NULL). */
size_t torii_kek_ring_count(const struct torii_kek_ring *r);
/** Hex id of the current KEK into out; TORII_ENOTFOUND for an empty ring. */
int torii_kek_ring_current_id(const struct torii_kek_ring *r, char out[2 * TORII_KEK_ID_LEN + 1])
    TORII_MUST_USE;
/** Hex form of a KEK id (16 characters + NUL). */
void torii_kek_id_hex(const unsigned char id[TORII_KEK_ID_LEN], char out[2 * TORII_KEK_ID_LEN + 1]);

/** Read one KEK file: a regular file (not a symlink) without any group or other permission
 * bit, holding 32 raw bytes or 64 hex digits (surrounding whitespace allowed). TORII_EIO
 * (cannot open/read), TORII_EPERM (group/other mode bits), TORII_EINVAL (content); eb names
 * the path, never the content. */
int torii_kek_read_file(const char *path, unsigned char key[TORII_KEK_LEN], struct torii_errbuf *eb)
    TORII_MUST_USE;
/** dir/name for a systemd credential; TORII_EINVAL for a name with '/' (or "." / "..") and
 * when dir is NULL (not started by systemd with credentials). */
int torii_kek_credential_path(const char *dir, const char *name, char *out, size_t cap,
                              struct torii_errbuf *eb) TORII_MUST_USE;
/** Load the configured KEKs: *out = NULL when none is configured (keys stay in clear),
 * else a ring whose current KEK is keys.kek_file or keys.kek_credential (setting both is an
 * error, as are previous KEKs without a current one). Every source must load. */
int torii_kek_ring_load(const struct torii_kek_sources *s, struct torii_kek_ring **out,
                        struct torii_errbuf *eb) TORII_MUST_USE;

/** 1 when buf[0..len) starts like an envelope (magic "TKEK"), 0 otherwise. */
int torii_kek_is_sealed(const unsigned char *buf, size_t len);
/** Seal plain[0..len) (1 byte .. 16 MiB) for record id[0..id_len) under the current KEK, with
 * a fresh random nonce. *out (malloc'd) is the envelope. TORII_EINVAL without a KEK. */
int torii_kek_seal(const struct torii_kek_ring *r, const char *id, size_t id_len,
                   const unsigned char *plain, size_t len, unsigned char **out, size_t *out_len,
                   struct torii_errbuf *eb) TORII_MUST_USE;
/** Open an envelope of record id[0..id_len). TORII_EINVAL: not an envelope (or an unknown
 * version); TORII_ENOTFOUND: sealed under a KEK that is not in the ring (wrong or missing
 * KEK; eb names its id); TORII_EPERM: the tag does not match (altered, or moved from another
 * record). *out (free with torii_secure_free) and *out_len on TORII_OK only. */
int torii_kek_open(const struct torii_kek_ring *r, const char *id, size_t id_len,
                   const unsigned char *env, size_t len, unsigned char **out, size_t *out_len,
                   struct torii_errbuf *eb) TORII_MUST_USE;

/* The envelope on the stored field (kek_rec.c): the entity JSON's "privateKey", sealed as the
 * text "TKEK:" + base64 of the envelope. Everything else opens and seals keys through
 * torii_pki_key_open / torii_pki_key_seal (pki_prep.h). */

/** One stored certificate record (borrowed). */
struct torii_kek_rec {
    const char *id;
    size_t id_len;
    const char *json;
    size_t json_len;
    const unsigned char *aux; /* TLS record, or NULL */
    size_t aux_len;
};
/** What torii_kek_rec_convert made: new JSON (NUL-terminated) and/or new TLS record (without
 * the key copy an older record held), each NULL when that part is unchanged; changed =
 * either. Free with torii_kek_rec_out_clear. */
struct torii_kek_rec_out {
    char *json;
    unsigned char *aux;
    size_t aux_len;
    int changed;
};
/** Seal the record's privateKey under the current KEK when it is in clear; with rewrap, also
 * re-seal one sealed under another (previous) KEK; drop the key copy of a TLS record written
 * before the key was stored once. A key already sealed under the current KEK is left alone,
 * so converting twice changes nothing. TORII_EINVAL for a record that is
 * not a JSON object or has a malformed TLS record; torii_kek_open's codes when a copy does not
 * open (rewrap). Plain key bytes made on the way are wiped. */
int torii_kek_rec_convert(const struct torii_kek_ring *r, int rewrap,
                          const struct torii_kek_rec *in, struct torii_kek_rec_out *out,
                          struct torii_errbuf *eb) TORII_MUST_USE;
void torii_kek_rec_out_clear(struct torii_kek_rec_out *o);

/** 1 when a privateKey text is sealed ("TKEK:..."). */
int torii_kek_text_is_sealed(const char *s);
/** Seal a privateKey text (PEM) for record id[0..id_len) under the current KEK: *out
 * (malloc'd) is "TKEK:<base64>". torii_kek_seal's codes. */
int torii_kek_text_seal(const struct torii_kek_ring *r, const char *id, size_t id_len,
                        const char *plain, char **out, struct torii_errbuf *eb) TORII_MUST_USE;
/** What `torii keys migrate|rotate` does to one key text of record id: clear -> sealed under
 * the current KEK; sealed under another KEK and rewrap -> opened and sealed under the current
 * one; otherwise *out = NULL (nothing to do). *out is malloc'd. torii_kek_open's codes. */
int torii_kek_text_convert(const struct torii_kek_ring *r, int rewrap, const char *id,
                           size_t id_len, const char *in, char **out, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** The PEM under a sealed privateKey text; *out malloc'd, NUL-terminated (wipe and free it).
 * TORII_EINVAL when s is not a sealed text; torii_kek_open's codes otherwise. */
int torii_kek_text_open(const struct torii_kek_ring *r, const char *id, size_t id_len,
                        const char *s, char **out, struct torii_errbuf *eb) TORII_MUST_USE;

#endif
