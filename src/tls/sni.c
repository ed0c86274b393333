/* sni.c - the certificate selection rule (DESIGN.md "Selection rule"), free of any table or
 * lock so it can be tested on plain arrays. torii_table_select applies it per lookup level. */
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "torii/pki.h"
#include "torii/table.h"

int torii_sni_name_normalize(const char *name, size_t len, char *out)
{
    if (name == NULL || out == NULL) {
        return TORII_EINVAL;
    }
    /* RFC 6066 3: HostName is sent without a trailing dot, but resolvers' absolute form
     * "example.com." names the same host; drop exactly one. */
    if (len > 0 && name[len - 1] == '.') {
        len--;
    }
    if (len == 0 || len > TORII_SNI_NAME_MAX) {
        return TORII_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (ch == '\0' || ch == '*') {
            return TORII_EINVAL;
        }
        if (ch >= 'A' && ch <= 'Z') {
            ch = (char)(ch - 'A' + 'a');
        }
        out[i] = ch;
    }
    out[len] = '\0';
    return (int)len;
}

int torii_sni_wildcard_key(const char *name, size_t len, char *out)
{
    size_t dot = 0;

    if (name == NULL || out == NULL || len == 0 || len > TORII_SNI_NAME_MAX) {
        return TORII_ENOTFOUND;
    }
    while (dot < len && name[dot] != '.') {
        dot++;
    }
    /* RFC 6125 6.4.3: the wildcard stands for exactly one whole left-most label, so the key is
     * built from the name minus that label only; the apex and deeper names never reach it. */
    if (dot == 0 || dot >= len - 1) {
        return TORII_ENOTFOUND;
    }
    size_t rest = len - dot; /* ".suffix" */
    out[0] = '*';
    for (size_t i = 0; i < rest; i++) {
        out[1 + i] = name[dot + i];
    }
    out[1 + rest] = '\0';
    return (int)(1 + rest);
}

int torii_sni_usable(const struct torii_sni_attr *a, int64_t now_ms)
{
    const uint32_t need = TORII_CERTREC_HAS_KEY | TORII_CERTREC_KEY_MATCHES;
    /* A CA certificate is an issuer or a trust anchor, never an end entity: browsers refuse
     * one served for a host (Firefox: CA_CERT_USED_AS_END_ENTITY), and the reference product
     * leaves CA and key-pair entities out of SNI selection. */
    const uint32_t veto = TORII_CERTREC_REVOKED | TORII_CERTREC_NOT_SERVER | TORII_CERTREC_CLIENT
                          | TORII_CERTREC_KEYPAIR | TORII_CERTREC_CA;

    if (a == NULL) {
        return 0;
    }
    if ((a->flags & need) != need || (a->flags & veto) != 0) {
        return 0;
    }
    return a->not_before_ms <= now_ms && now_ms < a->not_after_ms;
}

/* TLS 1.2 only: the negotiated cipher suite names the certificate type (RFC 5246 7.4.2), so a
 * type that no offered suite can authenticate with is of no use, whatever the sigalgs say. */
static int sni_suite_allows(int key_type, const struct torii_sni_query *q)
{
    if (!q->tls12_only) {
        return 1;
    }
    switch (key_type) {
    case EVP_PKEY_EC:
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
        return q->suite_ecdsa; /* ECDHE-ECDSA suites carry EdDSA too (RFC 8422 5.1.1) */
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
        return q->suite_rsa;
    default:
        return 1;
    }
}

int torii_sni_key_rank(int key_type, const struct torii_sni_query *q)
{
    if (!sni_suite_allows(key_type, q)) {
        return 0;
    }
    if (!q->ecdsa_ok && !q->rsa_ok) {
        return 1;
    }
    if (key_type == EVP_PKEY_EC) {
        return q->ecdsa_ok ? 3 : 0;
    }
    if (key_type == EVP_PKEY_RSA) {
        return q->rsa_ok ? 2 : 0;
    }
    return 1;
}

int torii_sni_pick(const struct torii_sni_attr *const *cands, size_t n,
                   const struct torii_sni_query *q)
{
    int best = TORII_ENOTFOUND;
    int best_rank = -1;
    int64_t best_after = 0;

    if (cands == NULL || q == NULL) {
        return TORII_ENOTFOUND;
    }
    for (size_t i = 0; i < n && i <= INT32_MAX; i++) {
        const struct torii_sni_attr *a = cands[i];
        if (!torii_sni_usable(a, q->now_ms)) {
            continue;
        }
        int rank = torii_sni_key_rank(a->key_type, q);
        if (rank > best_rank || (rank == best_rank && a->not_after_ms > best_after)) {
            best = (int)i;
            best_rank = rank;
            best_after = a->not_after_ms;
        }
    }
    return best;
}
