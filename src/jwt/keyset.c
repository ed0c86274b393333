/* keyset.c - the immutable key set of torii_jwt_verify (jwt.h): an array sorted by kid, then
 * by notAfter (newest first), searched by bisection. Built on one thread, sealed, then shared
 * by an atomic reference count; nothing in it changes after the seal, so readers need no
 * lock. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "jwt_int.h"
#include "torii/mem.h"

struct torii_jwt_keyset {
    atomic_long ref;
    int sealed;
    size_t n;
    size_t cap;
    struct torii_jwt__key *keys;
};

unsigned torii_jwt_key_algs(EVP_PKEY *key)
{
    char group[32];

    if (key == NULL) {
        return 0;
    }
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
        /* RFC 7518 3.3: keys of 2048 bits or larger MUST be used. */
        return EVP_PKEY_get_bits(key) >= 2048 ? TORII_JWT_RS256 | TORII_JWT_PS256 : 0;
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           NULL)
            != 1) {
            return 0;
        }
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0) {
            return TORII_JWT_ES256;
        }
        if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0) {
            return TORII_JWT_ES384;
        }
        return 0;
    case EVP_PKEY_ED25519:
        return TORII_JWT_EDDSA;
    default:
        return 0;
    }
}

struct torii_jwt_keyset *torii_jwt_keyset_new(void)
{
    struct torii_jwt_keyset *ks = torii_xcalloc(1, sizeof(*ks));

    atomic_init(&ks->ref, 1);
    return ks;
}

static int keyset_kid_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : alen > blen;
}

static size_t keyset_kid_count(const struct torii_jwt_keyset *ks, const char *kid, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < ks->n; i++) {
        n += keyset_kid_cmp(ks->keys[i].kid, ks->keys[i].kid_len, kid, len) == 0;
    }
    return n;
}

int torii_jwt_keyset_add(struct torii_jwt_keyset *ks, const char *kid, size_t kid_len,
                         EVP_PKEY *pub, int64_t not_after_ms, struct torii_errbuf *eb)
{
    struct torii_jwt__key *k;
    unsigned algs;

    if (ks == NULL || pub == NULL) {
        return torii_errf(eb, TORII_EINVAL, "jwt: no key set or no key");
    }
    if (ks->sealed) {
        return torii_errf(eb, TORII_EINVAL, "jwt: key set is sealed");
    }
    if (kid == NULL || kid_len == 0 || kid_len > TORII_JWT_MAX_KID) {
        return torii_errf(eb, TORII_EINVAL, "jwt: kid must be 1..%d bytes", TORII_JWT_MAX_KID);
    }
    algs = torii_jwt_key_algs(pub);
    if (algs == 0) {
        return torii_errf(eb, TORII_EUNSUPPORTED,
                          "jwt: key type not usable for JWS (P-256, P-384, RSA >= 2048 or "
                          "Ed25519 only)");
    }
    if (keyset_kid_count(ks, kid, kid_len) >= TORII_JWT_KID_KEYS_MAX) {
        return torii_errf(eb, TORII_ETOOBIG, "jwt: more than %d keys under one kid",
                          TORII_JWT_KID_KEYS_MAX);
    }
    if (EVP_PKEY_up_ref(pub) != 1) {
        return torii_errf(eb, TORII_ENOMEM, "jwt: key reference");
    }
    if (ks->n == ks->cap) {
        ks->cap = ks->cap == 0 ? 8 : ks->cap * 2;
        ks->keys = torii_xrealloc(ks->keys, ks->cap * sizeof(*ks->keys));
    }
    k = &ks->keys[ks->n++];
    k->kid = torii_xstrndup(kid, kid_len);
    k->kid_len = kid_len;
    k->key = pub;
    k->algs = algs;
    k->not_after_ms = not_after_ms;
    return TORII_OK;
}

static int keyset_key_cmp(const void *a, const void *b)
{
    const struct torii_jwt__key *x = a;
    const struct torii_jwt__key *y = b;
    int c = keyset_kid_cmp(x->kid, x->kid_len, y->kid, y->kid_len);

    if (c != 0) {
        return c;
    }
    /* Newest first: a token signed with the live key verifies on the first try. */
    return x->not_after_ms > y->not_after_ms ? -1 : x->not_after_ms < y->not_after_ms;
}

void torii_jwt_keyset_seal(struct torii_jwt_keyset *ks)
{
    if (ks == NULL || ks->sealed) {
        return;
    }
    if (ks->n > 1) {
        qsort(ks->keys, ks->n, sizeof(*ks->keys), keyset_key_cmp);
    }
    ks->sealed = 1;
}

size_t torii_jwt_keyset_count(const struct torii_jwt_keyset *ks)
{
    return ks != NULL ? ks->n : 0;
}

struct torii_jwt_keyset *torii_jwt_keyset_ref(struct torii_jwt_keyset *ks)
{
    if (ks != NULL) {
        atomic_fetch_add_explicit(&ks->ref, 1, memory_order_relaxed);
    }
    return ks;
}

void torii_jwt_keyset_unref(struct torii_jwt_keyset *ks)
{
    if (ks == NULL || atomic_fetch_sub_explicit(&ks->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    for (size_t i = 0; i < ks->n; i++) {
        free(ks->keys[i].kid);
        EVP_PKEY_free(ks->keys[i].key);
    }
    free(ks->keys);
    free(ks);
}

size_t torii_jwt__keyset_find(const struct torii_jwt_keyset *ks, const char *kid, size_t len,
                              const struct torii_jwt__key **first)
{
    size_t lo = 0;
    size_t hi = ks->n;
    size_t n = 0;

    if (!ks->sealed) {
        return 0;
    }
    /* Lower bound of kid. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (keyset_kid_cmp(ks->keys[mid].kid, ks->keys[mid].kid_len, kid, len) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    while (lo + n < ks->n && n < TORII_JWT_KID_KEYS_MAX
           && keyset_kid_cmp(ks->keys[lo + n].kid, ks->keys[lo + n].kid_len, kid, len) == 0) {
        n++;
    }
    *first = n > 0 ? &ks->keys[lo] : NULL;
    return n;
}
