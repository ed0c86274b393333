/* table.h - the certificate table handshakes read: lower-cased host name (exact SAN or
 * "*.suffix" wildcard) -> candidate certificates, on a liburcu lock-free hash table.
 * Readers (workers, in the client-hello callback) take no lock and allocate nothing; a writer
 * replaces only the entries of the certificate that changed and frees old ones after an RCU
 * grace period (call_rcu).
 * Three indexes: host name -> candidates (SNI), entity id -> certificate (torii_table_get,
 * the default certificate), issuer name hash + serial -> certificates (client certificate
 * revocation, torii_table_issuer_serial).
 * Threads: select/get/issuer_serial: any thread registered with torii_table_reader_register();
 * update/default: any thread (internally locked, writers serialized).
 * Ownership: torii_table_select and torii_table_get return a counted reference released with
 * torii_tls_cert_unref(); X509/EVP_PKEY pointers from torii_tls_cert_get are borrowed for as
 * long as that reference is held, so a connection keeps what it was handed after a replace. */
#ifndef TORII_TABLE_H
#define TORII_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "torii/err.h"
#include "torii/pki.h"

struct torii_table;
struct torii_tls_cert;

struct torii_pki_key_src;

/** What a source hands over for one use of a certificate's materials: its current TLS record
 * and its key source, both borrowed for the length of the call. Returns TORII_OK or an error
 * (message in eb), which the source returns as is. */
typedef int (*torii_table_use_fn)(void *use_arg, const unsigned char *rec, size_t rec_len,
                                  const struct torii_pki_key_src *key, struct torii_errbuf *eb);

/** Where a table in source mode reads a certificate's materials at its first use (and for
 * torii_tls_cert_leaf_dup): load reads id's current record and key source (for torii, from
 * the store) and calls use(use_arg, ...) once with them, then wipes what it read. Called on
 * any reader thread, concurrently, never with a table lock held. TORII_ENOTFOUND when id is
 * gone, the store's error, or use's. arg and everything load reaches must outlive the table. */
struct torii_table_src {
    int (*load)(void *arg, const char *id, torii_table_use_fn use, void *use_arg,
                struct torii_errbuf *eb);
    void *arg;
};

/** An empty table (urcu-memb flavour, auto-resizing hash tables) without a source: every
 * torii_table_update keeps a copy of its record and key.
 * TORII_ENOMEM, or the error of torii_rand_bytes (hash seed). */
int torii_table_new(struct torii_table **out) TORII_MUST_USE;
/** An empty table in source mode (src copied; NULL: as torii_table_new). An update without a
 * key keeps only what selection needs (id, names, dates, flags, key type, issuer+serial key:
 * about 150 bytes and one allocation per certificate, plus one hash node per name); the
 * record and the key are read through src at the certificate's first use. Errors as
 * torii_table_new. */
int torii_table_new_src(const struct torii_table_src *src, struct torii_table **out) TORII_MUST_USE;
/** Free; NULL accepted. Waits for a grace period and for every pending call_rcu callback
 * (rcu_barrier), then frees everything; no reader or writer may still be using t. */
void torii_table_free(struct torii_table *t);

/** Register / unregister the calling thread as an RCU reader (idempotent; once per thread,
 * before its first torii_table_select, and before it exits). Threads that register with
 * liburcu must do it through these calls only. A thread that only writes need not register:
 * writers register themselves for the length of the call when they are not readers. */
void torii_table_reader_register(void);
void torii_table_reader_unregister(void);

/** Insert or replace certificate `id` from its TLS record (pki.h; rec stays the caller's) and
 * its key source, or remove it when rec is NULL (removing an absent id is TORII_OK).
 * With a key (text not empty), or on a table without a source, the record and the key source
 * (the entity's privateKey and password) are copied, and wiped when the certificate goes (the
 * KEK ring borrowed: it must outlive the table); there, no key means not served. On a table
 * with a source and no key, nothing but what selection needs is kept: the record's
 * TORII_CERTREC_HAS_KEY flag says whether it has a key, and both are read through the source
 * at first use. The
 * key is opened through torii_pki_key_open at the certificate's first handshake. The names that
 * the old version had and the new one lacks are dropped; cost is proportional to the old and
 * new certificate's names, not to the table. Record names that are not a host name or "*."
 * plus one are ignored. TORII_EINVAL (message in eb) for an empty id or a malformed record;
 * the table is then unchanged. Never blocks readers. */
int torii_table_update(struct torii_table *t, const char *id, const unsigned char *rec,
                       size_t rec_len, const struct torii_pki_key_src *key, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Size the hash tables for n certificates at once (a bulk load: start-up with the store's
 * count), instead of growing them step by step; the size holds until the table has n
 * certificates, then the usual rule applies (grow at two nodes per bucket, liburcu shrinks).
 * Any thread; a writer. NULL accepted. */
void torii_table_reserve(struct torii_table *t, size_t n);

/** The first load of an empty table (start-up), much cheaper than one update per certificate
 * at a million certificates: begin takes the writer lock (other writers wait until end) and
 * TORII_EEXIST when the table is not empty; add builds a certificate as torii_table_update
 * does without a key (errors as there, that certificate left out) but publishes nothing; end
 * fills the hash tables in one pass each, sized first, and publishes everything at once
 * (returns the table's size). A repeated id: the last one added wins. hint: the expected
 * count (0: unknown). begin, add and end on one thread; end must follow every successful
 * begin; readers may run meanwhile and see the table as it was before begin. */
struct torii_table_bulk;
int torii_table_bulk_begin(struct torii_table *t, size_t hint, struct torii_table_bulk **out)
    TORII_MUST_USE;
int torii_table_bulk_add(struct torii_table_bulk *b, const char *id, const unsigned char *rec,
                         size_t rec_len, struct torii_errbuf *eb) TORII_MUST_USE;
size_t torii_table_bulk_end(struct torii_table_bulk *b);

/** Name the default certificate (by id, copied; may be set before the certificate exists;
 * NULL clears it). It is looked up at select time, so updates of that id apply at once. */
void torii_table_set_default(struct torii_table *t, const char *id);

/** What the client offered. */
struct torii_sni_query {
    const char *name; /* SNI, not NUL-terminated; NULL when absent */
    size_t name_len;
    int ecdsa_ok; /* client offered an ECDSA signature algorithm */
    int rsa_ok;   /* client offered an RSA signature algorithm (or sent none at all) */
    int64_t now_ms;
    /* Set when the client cannot negotiate TLS 1.3 (no 0x0304 in supported_versions): the
     * TLS 1.2 cipher suite then fixes the certificate type. 0 (TLS 1.3 offered, or unknown)
     * leaves the choice to the signature algorithms alone and the two fields below unread. */
    int tls12_only;
    int suite_ecdsa; /* offered an ECDHE-ECDSA suite that the server enables */
    int suite_rsa;   /* offered an RSA-authenticated suite (ECDHE-RSA, DHE-RSA) it enables */
};

enum torii_sni_match {
    TORII_SNI_EXACT = 0,
    TORII_SNI_WILDCARD,
    TORII_SNI_DEFAULT,
};

/** Select by the rule: exact > one-label wildcard > default; usable only (has key, not
 * revoked, in validity, not a CA certificate, not client-only, not a key pair), a key type
 * the client can use (ECDSA when offered else RSA; for a TLS 1.2-only client, one its cipher
 * suites allow), latest notAfter wins (torii_sni_pick). A level is used when it has a
 * usable candidate. Names compared case-insensitively, trailing dot ignored; a missing,
 * empty, over-long (> 253) or '*'-bearing name goes straight to the default. The default
 * itself must be usable. Lock-free and allocation-free; the caller must be a registered
 * reader.
 * Returns TORII_OK (with *out a new reference and *match, which may be NULL, set),
 * TORII_ENOTFOUND, or TORII_EINVAL when t, q or out is NULL. */
int torii_table_select(struct torii_table *t, const struct torii_sni_query *q,
                       struct torii_tls_cert **out, enum torii_sni_match *match) TORII_MUST_USE;

/** The parsed materials (parsed once, lazily, on first use; concurrent first calls agree on
 * one copy). Any out-pointer may be NULL. chain holds the certificates sent after the leaf:
 * the record's chain without the leaf and without any self-signed (root) certificate, which
 * the client must already trust (may be empty), ready for SSL_use_cert_and_key. All three
 * are borrowed while the reference is held. TORII_ETLS if they do not parse (remembered:
 * later calls fail fast). */
int torii_tls_cert_get(struct torii_tls_cert *c, X509 **leaf, EVP_PKEY **key,
                       STACK_OF(X509) * *chain) TORII_MUST_USE;
/** A new X509 parsed from the leaf DER (caller X509_free()s), also for certificates without a
 * private key (CA entries), which torii_tls_cert_get refuses. TORII_ETLS when it does not
 * parse, TORII_EINVAL for NULL arguments. */
int torii_tls_cert_leaf_dup(const struct torii_tls_cert *c, X509 **out) TORII_MUST_USE;
/** The entity id (borrowed for the life of the reference). */
const char *torii_tls_cert_id(const struct torii_tls_cert *c);
/** Atomic reference count; both accept NULL. The last unref frees the parsed objects and wipes
 * the private key DER. */
void torii_tls_cert_ref(struct torii_tls_cert *c);
void torii_tls_cert_unref(struct torii_tls_cert *c);

/** Key type of the certificate (EVP_PKEY_RSA, EVP_PKEY_EC, ...; 0 when it has no key). */
int torii_tls_cert_key_type(const struct torii_tls_cert *c);
/** TORII_CERTREC_* flags of its record (HAS_KEY cleared when the record has no key). */
uint32_t torii_tls_cert_flags(const struct torii_tls_cert *c);

/** The certificate installed under entity id, as a new reference (*out; release with
 * torii_tls_cert_unref). Lock-free; the caller must be a registered reader. A replaced id
 * yields a new reference object, so comparing references tells whether an entry changed
 * (a held reference is never reused for another certificate).
 * TORII_ENOTFOUND when absent; TORII_EINVAL for a NULL or empty argument. */
int torii_table_get(struct torii_table *t, const char *id, struct torii_tls_cert **out)
    TORII_MUST_USE;

/** Longest issuer+serial index key: issuer name hash, then the serial DER. */
#define TORII_TABLE_SERIAL_KEY_MAX (TORII_CERTREC_ISSUER_HASH_LEN + TORII_CERTREC_SERIAL_MAX)

/** The issuer+serial index key of a certificate (the same bytes the TLS record carries):
 * SHA-256 of the DER issuer name, then the DER serialNumber INTEGER. out holds
 * TORII_TABLE_SERIAL_KEY_MAX bytes; *len receives the length. TORII_ENOTFOUND when the
 * serial is too long to be indexed (over TORII_CERTREC_SERIAL_MAX bytes of DER); TORII_ETLS
 * when the name does not encode; TORII_EINVAL for NULL arguments. */
int torii_table_serial_key(const X509 *x, unsigned char *out, size_t *len) TORII_MUST_USE;

/** How many certificates of the table have a leaf with x's issuer name and serial number
 * (the same certificate imported under several ids counts once per id); *revoked (may be
 * NULL) is set to 1 when any of them is revoked, else 0. A revoked leaf of a v1 record is
 * indexed too (parsed at update). Lock-free; the caller must be a registered reader.
 * Returns the count (>= 0), TORII_EINVAL (NULL t or x) or TORII_ETLS. */
int torii_table_issuer_serial(struct torii_table *t, const X509 *x, int *revoked) TORII_MUST_USE;

/** Number of certificates currently in the table. */
size_t torii_table_size(struct torii_table *t);

/* ---- the selection rule itself (pure: no table, no lock; used by torii_table_select) ---- */

#define TORII_SNI_NAME_MAX 253 /* longest host name (RFC 1035), without the trailing dot */
#define TORII_SNI_KEY_MAX  255 /* longest table key: "*." + name */

/** What the rule looks at in a candidate (copied from its TLS record, immutable). */
struct torii_sni_attr {
    uint32_t flags; /* TORII_CERTREC_* */
    int64_t not_before_ms;
    int64_t not_after_ms;
    int key_type; /* EVP_PKEY_* */
};

/** Normalize a host name into out (TORII_SNI_NAME_MAX + 1 bytes, NUL-terminated): one trailing
 * dot removed, ASCII lower-cased. Rejects (TORII_EINVAL) an empty name, one longer than
 * TORII_SNI_NAME_MAX, and any NUL or '*' byte (a client never gets to name a wildcard itself).
 * Returns the normalized length (> 0). */
int torii_sni_name_normalize(const char *name, size_t len, char *out) TORII_MUST_USE;

/** The one-label wildcard key of a normalized name: "*." + name minus its first label, into out
 * (TORII_SNI_KEY_MAX + 1 bytes). "a.b.example.com" -> "*.b.example.com" (never deeper).
 * TORII_ENOTFOUND when the name has no dot, an empty first label or nothing after the dot.
 * Returns the key length. */
int torii_sni_wildcard_key(const char *name, size_t len, char *out) TORII_MUST_USE;

/** 1 when a candidate may be served at now_ms: HAS_KEY and KEY_MATCHES set; not REVOKED,
 * NOT_SERVER, CLIENT, KEYPAIR or CA (basicConstraints CA:TRUE: a CA certificate is never an
 * end entity, whatever its key usage); not_before <= now < not_after. 0 otherwise. */
int torii_sni_usable(const struct torii_sni_attr *a, int64_t now_ms);

/** Preference of a key type for this client: 0 when a TLS 1.2-only client offered no cipher
 * suite for that type (tls12_only, suite_*); else 3 ECDSA when offered, 2 RSA when offered,
 * 1 any other type, 0 a type the client did not offer. A client that offered neither
 * signature type ranks all the suite-allowed types 1. */
int torii_sni_key_rank(int key_type, const struct torii_sni_query *q);

/** Index of the best candidate: usable only, then highest key rank, then latest not_after (the
 * first one wins a full tie). Candidates of rank 0 are still returned when nothing better
 * exists: the handshake then fails cleanly instead of silently using another name's
 * certificate. TORII_ENOTFOUND when none is usable (or n == 0). */
int torii_sni_pick(const struct torii_sni_attr *const *cands, size_t n,
                   const struct torii_sni_query *q) TORII_MUST_USE;

#endif
