/* jws.c - compact JWS (RFC 7515 section 7.1): split, header checks, signature verification
 * and signing. The signing input is the token's own bytes up to the second dot, so nothing
 * is re-encoded; the payload is decoded and parsed only after its signature verified. */
#include <string.h>
#include <strings.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "jwt_int.h"
#include "torii/codec.h"
#include "torii/log.h"
#include "torii/mem.h"

#define JWT_DER_MAX 160 /* DER ECDSA-Sig-Value of P-521, with room */

static const struct {
    unsigned alg;
    const char *name;
} jwt_algs[] = {
    {TORII_JWT_ES256, "ES256"}, {TORII_JWT_ES384, "ES384"}, {TORII_JWT_RS256, "RS256"},
    {TORII_JWT_PS256, "PS256"}, {TORII_JWT_EDDSA, "EdDSA"},
};

static const char *const jwt_verdicts[] = {
    "ok",      "malformed",     "bad_alg",    "bad_header",   "unknown_key", "bad_signature",
    "expired", "not_yet_valid", "bad_issuer", "bad_audience",
};

const char *torii_jwt_alg_name(unsigned alg)
{
    for (size_t i = 0; i < sizeof(jwt_algs) / sizeof(jwt_algs[0]); i++) {
        if (jwt_algs[i].alg == alg) {
            return jwt_algs[i].name;
        }
    }
    return NULL;
}

unsigned torii_jwt_alg_parse(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(jwt_algs) / sizeof(jwt_algs[0]); i++) {
        if (strlen(jwt_algs[i].name) == len && memcmp(jwt_algs[i].name, name, len) == 0) {
            return jwt_algs[i].alg;
        }
    }
    return 0;
}

const char *torii_jwt_verdict_name(enum torii_jwt_verdict v)
{
    if ((size_t)v < sizeof(jwt_verdicts) / sizeof(jwt_verdicts[0])) {
        return jwt_verdicts[v];
    }
    return "unknown";
}

/* ---- ECDSA signature forms ---------------------------------------------------------------- */

int torii_jwt_ecdsa_raw_to_der(const unsigned char *raw, size_t raw_len, unsigned char *der,
                               size_t cap, size_t *der_len)
{
    int rc = TORII_OK;
    ECDSA_SIG *sig = NULL;
    BIGNUM *r = NULL;
    BIGNUM *s = NULL;
    size_t n = raw_len / 2;
    unsigned char *p = der;
    int len;

    TORII_ENSURE(raw_len % 2 == 0 && (n == 32 || n == 48 || n == 66), TORII_EINVAL);
    sig = ECDSA_SIG_new();
    r = BN_bin2bn(raw, (int)n, NULL);
    s = BN_bin2bn(raw + n, (int)n, NULL);
    TORII_ENSURE(sig != NULL && r != NULL && s != NULL, TORII_ENOMEM);
    TORII_ENSURE(ECDSA_SIG_set0(sig, r, s) == 1, TORII_ENOMEM);
    r = NULL;
    s = NULL;
    len = i2d_ECDSA_SIG(sig, NULL);
    TORII_ENSURE(len > 0, TORII_EINVAL);
    TORII_ENSURE((size_t)len <= cap, TORII_ETOOBIG);
    TORII_ENSURE(i2d_ECDSA_SIG(sig, &p) == len, TORII_EINVAL);
    *der_len = (size_t)len;
out:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    ERR_clear_error();
    return rc;
}

int torii_jwt_ecdsa_der_to_raw(const unsigned char *der, size_t der_len, size_t n,
                               unsigned char *raw)
{
    int rc = TORII_OK;
    const unsigned char *p = der;
    ECDSA_SIG *sig = NULL;
    const BIGNUM *r = NULL;
    const BIGNUM *s = NULL;

    TORII_ENSURE(der_len > 0 && der_len <= JWT_DER_MAX && n > 0 && n <= 66, TORII_EINVAL);
    sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    TORII_ENSURE(sig != NULL && p == der + der_len, TORII_EINVAL);
    ECDSA_SIG_get0(sig, &r, &s);
    TORII_ENSURE(BN_bn2binpad(r, raw, (int)n) == (int)n
                     && BN_bn2binpad(s, raw + n, (int)n) == (int)n,
                 TORII_EINVAL);
out:
    ECDSA_SIG_free(sig);
    ERR_clear_error();
    return rc;
}

/* ---- low-level sign / verify -------------------------------------------------------------- */

static const EVP_MD *jws_md(unsigned alg)
{
    switch (alg) {
    case TORII_JWT_ES384:
        return EVP_sha384();
    case TORII_JWT_EDDSA:
        return NULL;
    default:
        return EVP_sha256();
    }
}

static size_t jws_ec_half(unsigned alg)
{
    return alg == TORII_JWT_ES256 ? 32 : alg == TORII_JWT_ES384 ? 48 : 0;
}

/* Init ctx for alg with key (verify or sign). RFC 7518 3.5: PSS with MGF1 on the same hash
 * and a salt as long as the hash. */
static int jws_ctx_init(EVP_MD_CTX *ctx, unsigned alg, EVP_PKEY *key, int sign)
{
    EVP_PKEY_CTX *pctx = NULL;
    int ok = sign ? EVP_DigestSignInit(ctx, &pctx, jws_md(alg), NULL, key)
                  : EVP_DigestVerifyInit(ctx, &pctx, jws_md(alg), NULL, key);

    if (ok != 1) {
        return 0;
    }
    if (alg == TORII_JWT_PS256) {
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1
             && EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) == 1
             && EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1;
    }
    return ok;
}

/* 1 when sig is alg's signature of in[0..in_len) by key. */
static int jws_verify_one(EVP_MD_CTX *ctx, EVP_PKEY *key, unsigned alg, const unsigned char *in,
                          size_t in_len, const unsigned char *sig, size_t sig_len)
{
    unsigned char der[JWT_DER_MAX];
    size_t der_len = 0;
    int ok;

    if (jws_ec_half(alg) != 0) {
        if (sig_len != 2 * jws_ec_half(alg)
            || torii_jwt_ecdsa_raw_to_der(sig, sig_len, der, sizeof(der), &der_len) != TORII_OK) {
            return 0;
        }
        sig = der;
        sig_len = der_len;
    }
    ok = EVP_MD_CTX_reset(ctx) == 1 && jws_ctx_init(ctx, alg, key, 0)
         && EVP_DigestVerify(ctx, sig, sig_len, in, in_len) == 1;
    ERR_clear_error();
    return ok;
}

/* ---- parsing ------------------------------------------------------------------------------ */

struct jws_parts {
    const char *h; /* header, base64url */
    size_t h_len;
    const char *p; /* payload, base64url */
    size_t p_len;
    const char *s; /* signature, base64url */
    size_t s_len;
};

struct jws_header {
    unsigned alg;
    const char *kid; /* into the header's json_t */
    size_t kid_len;
};

static int jws_b64url_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'
           || c == '_';
}

/* Three non-empty base64url parts separated by two dots; 0 or -1. RFC 7515 7.1 compact form
 * has no padding and no other alphabet: anything else is refused before decoding. */
static int jws_split(const char *tok, size_t len, struct jws_parts *pt)
{
    const char *dot[2];
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (tok[i] == '.') {
            if (n == 2) {
                return -1;
            }
            dot[n++] = tok + i;
        } else if (!jws_b64url_char((unsigned char)tok[i])) {
            return -1;
        }
    }
    if (n != 2) {
        return -1;
    }
    pt->h = tok;
    pt->h_len = (size_t)(dot[0] - tok);
    pt->p = dot[0] + 1;
    pt->p_len = (size_t)(dot[1] - pt->p);
    pt->s = dot[1] + 1;
    pt->s_len = (size_t)(tok + len - pt->s);
    return pt->h_len > 0 && pt->p_len > 0 && pt->s_len > 0 ? 0 : -1;
}

/* Decode one base64url part holding a JSON object, nesting bounded. NULL when it does not. */
static json_t *jws_json_part(const char *b64, size_t len)
{
    unsigned char *buf = NULL;
    size_t n = 0;
    json_t *j = NULL;
    json_error_t jerr;

    if (torii_b64_decode(b64, len, &buf, &n) != TORII_OK) {
        return NULL;
    }
    if (torii_jwt__json_depth_ok((const char *)buf, n, TORII_JWT_MAX_DEPTH)) {
        j = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &jerr);
    }
    free(buf);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* RFC 7519 5.1 / RFC 8725 3.11: typ is JWT or at+jwt (RFC 9068), "application/" optional. */
static int jws_typ_ok(const char *t)
{
    if (strncasecmp(t, "application/", 12) == 0) {
        t += 12;
    }
    return strcasecmp(t, "JWT") == 0 || strcasecmp(t, "at+jwt") == 0;
}

/* Header parameters that would let the token choose its own key, or change how the payload is
 * read: refused, never ignored (docs/jwt.md). */
static const char *const jws_refused[] = {"crit", "jku", "jwk", "x5u", "x5c", "cty", "zip", "b64"};

static enum torii_jwt_verdict jws_header_check(const json_t *hdr, struct jws_header *out,
                                               struct torii_errbuf *eb)
{
    const json_t *alg = json_object_get(hdr, "alg");
    const json_t *kid = json_object_get(hdr, "kid");
    const json_t *typ = json_object_get(hdr, "typ");

    for (size_t i = 0; i < sizeof(jws_refused) / sizeof(jws_refused[0]); i++) {
        if (json_object_get(hdr, jws_refused[i]) != NULL) {
            (void)torii_errf(eb, TORII_EPERM, "jwt: header parameter %s refused", jws_refused[i]);
            return TORII_JWT_BAD_HEADER;
        }
    }
    if (typ != NULL && (!json_is_string(typ) || !jws_typ_ok(json_string_value(typ)))) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: typ is not JWT");
        return TORII_JWT_BAD_HEADER;
    }
    if (!json_is_string(alg)) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: header has no alg");
        return TORII_JWT_MALFORMED;
    }
    out->alg = torii_jwt_alg_parse(json_string_value(alg), json_string_length(alg));
    if (out->alg == 0) {
        char esc[40];
        (void)torii_errf(
            eb, TORII_EPERM, "jwt: alg %s not accepted",
            torii_log_escape(json_string_value(alg), json_string_length(alg), esc, sizeof(esc)));
        return TORII_JWT_BAD_ALG;
    }
    if (!json_is_string(kid) || json_string_length(kid) == 0
        || json_string_length(kid) > TORII_JWT_MAX_KID) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: header has no usable kid");
        return TORII_JWT_UNKNOWN_KEY;
    }
    out->kid = json_string_value(kid);
    out->kid_len = json_string_length(kid);
    return TORII_JWT_OK;
}

/* ---- verification ------------------------------------------------------------------------- */

static int jws_kid_allowed(const struct torii_jwt_policy *p, const struct jws_header *h)
{
    if (p->kids == NULL) {
        return 1;
    }
    for (size_t i = 0; i < p->n_kids; i++) {
        size_t n = p->kids[i] != NULL ? strlen(p->kids[i]) : 0;

        if (n == 0 || n > h->kid_len || memcmp(p->kids[i], h->kid, n) != 0) {
            continue;
        }
        /* The store id itself, or its key kid "<id>.<thumbprint>" (jwt.h). */
        if (n == h->kid_len
            || (h->kid_len == n + 1 + TORII_JWT_KID_THUMB_LEN && h->kid[n] == '.'
                && memchr(h->kid + n + 1, '.', TORII_JWT_KID_THUMB_LEN) == NULL)) {
            return 1;
        }
    }
    return 0;
}

/* The signature against each key of the kid (newest first). */
static enum torii_jwt_verdict jws_sig_check(const struct torii_jwt_keyset *ks,
                                            const struct torii_jwt_policy *p,
                                            const struct jws_parts *pt, const struct jws_header *h,
                                            int64_t now_ms, struct torii_errbuf *eb)
{
    const struct torii_jwt__key *k = NULL;
    size_t n = torii_jwt__keyset_find(ks, h->kid, h->kid_len, &k);
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    EVP_MD_CTX *ctx = NULL;
    size_t usable = 0;
    int expired = 0;
    enum torii_jwt_verdict v = TORII_JWT_BAD_SIGNATURE;

    if (n == 0 || !jws_kid_allowed(p, h)) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: kid not in the accepted key set");
        return TORII_JWT_UNKNOWN_KEY;
    }
    if (torii_b64_decode(pt->s, pt->s_len, &sig, &sig_len) != TORII_OK) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: signature is not base64url");
        return TORII_JWT_MALFORMED;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        free(sig);
        (void)torii_errf(eb, TORII_EPERM, "jwt: out of memory");
        return TORII_JWT_BAD_SIGNATURE;
    }
    for (size_t i = 0; i < n; i++) {
        if ((k[i].algs & h->alg) == 0) {
            continue;
        }
        if (now_ms >= k[i].not_after_ms) {
            expired = 1;
            continue;
        }
        usable++;
        if (jws_verify_one(ctx, k[i].key, h->alg, (const unsigned char *)pt->h,
                           pt->h_len + 1 + pt->p_len, sig, sig_len)) {
            v = TORII_JWT_OK;
            break;
        }
    }
    if (usable == 0) {
        /* An expired key of the right type says more than the other keys of the kid. */
        v = expired ? TORII_JWT_UNKNOWN_KEY : TORII_JWT_BAD_ALG;
        (void)torii_errf(eb, TORII_EPERM,
                         expired ? "jwt: key expired" : "jwt: alg does not fit the key");
    } else if (v != TORII_JWT_OK) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: signature does not verify");
    }
    EVP_MD_CTX_free(ctx);
    free(sig);
    return v;
}

static enum torii_jwt_verdict jws_verify(const struct torii_jwt_keyset *ks,
                                         const struct torii_jwt_policy *p, const char *tok,
                                         size_t len, int64_t now_ms, json_t **claims,
                                         struct torii_errbuf *eb)
{
    struct jws_parts pt;
    struct jws_header h;
    json_t *hdr = NULL;
    json_t *cl = NULL;
    enum torii_jwt_verdict v = TORII_JWT_MALFORMED;

    if (len > TORII_JWT_MAX_TOKEN) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: token longer than %d bytes", TORII_JWT_MAX_TOKEN);
        goto out;
    }
    if (jws_split(tok, len, &pt) != 0) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: not a compact JWS (three base64url parts)");
        goto out;
    }
    hdr = jws_json_part(pt.h, pt.h_len);
    if (hdr == NULL) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: header is not a JSON object");
        goto out;
    }
    v = jws_header_check(hdr, &h, eb);
    if (v != TORII_JWT_OK) {
        goto out;
    }
    if (p->algs != 0 && (p->algs & h.alg) == 0) {
        v = TORII_JWT_BAD_ALG;
        (void)torii_errf(eb, TORII_EPERM, "jwt: alg %s not accepted by this route",
                         torii_jwt_alg_name(h.alg));
        goto out;
    }
    v = jws_sig_check(ks, p, &pt, &h, now_ms, eb);
    if (v != TORII_JWT_OK) {
        goto out;
    }
    /* Trusted from here on: the payload's bytes are what the key holder signed. */
    cl = jws_json_part(pt.p, pt.p_len);
    if (cl == NULL) {
        v = TORII_JWT_MALFORMED;
        (void)torii_errf(eb, TORII_EPERM, "jwt: claims are not a JSON object");
        goto out;
    }
    v = torii_jwt__claims_check(cl, p, now_ms, eb);
    if (v == TORII_JWT_OK && claims != NULL) {
        *claims = cl;
        cl = NULL;
    }
out:
    json_decref(cl);
    json_decref(hdr);
    return v;
}

int torii_jwt_verify(const struct torii_jwt_keyset *ks, const struct torii_jwt_policy *p,
                     const char *tok, size_t len, int64_t now_ms, enum torii_jwt_verdict *verdict,
                     json_t **claims, struct torii_errbuf *eb)
{
    enum torii_jwt_verdict v;

    if (verdict == NULL) {
        return TORII_EINVAL;
    }
    *verdict = TORII_JWT_MALFORMED;
    if (ks == NULL || p == NULL || (tok == NULL && len > 0) || p->leeway_s < 0
        || p->leeway_s > 3600) {
        return torii_errf(eb, TORII_EINVAL, "jwt: bad arguments (key set, policy or leeway)");
    }
    v = jws_verify(ks, p, tok != NULL ? tok : "", len, now_ms, claims, eb);
    *verdict = v;
    return v == TORII_JWT_OK ? TORII_OK : TORII_EPERM;
}

/* ---- signing ------------------------------------------------------------------------------ */

static unsigned jws_default_alg(EVP_PKEY *key)
{
    unsigned algs = torii_jwt_key_algs(key);

    return (algs & TORII_JWT_RS256) != 0 ? TORII_JWT_RS256 : algs;
}

/* The signature of in[0..in_len) in JWS form into *out (malloc'd). */
static int jws_sign_raw(EVP_PKEY *key, unsigned alg, const char *in, size_t in_len,
                        unsigned char **out, size_t *out_len, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    size_t half = jws_ec_half(alg);

    TORII_ENSURE(ctx != NULL, TORII_ENOMEM);
    TORII_ENSURE(jws_ctx_init(ctx, alg, key, 1)
                     && EVP_DigestSign(ctx, NULL, &sig_len, (const unsigned char *)in, in_len) == 1,
                 torii_errbuf_ossl(eb, "jwt: sign"));
    sig = torii_xmalloc(sig_len > 2 * half ? sig_len : 2 * half);
    TORII_ENSURE(EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)in, in_len) == 1,
                 torii_errbuf_ossl(eb, "jwt: sign"));
    if (half != 0) {
        unsigned char der[JWT_DER_MAX];

        TORII_ENSURE(sig_len <= sizeof(der), TORII_ETLS);
        memcpy(der, sig, sig_len);
        TORII_TRY(torii_jwt_ecdsa_der_to_raw(der, sig_len, half, sig));
        sig_len = 2 * half;
    }
    *out = sig;
    *out_len = sig_len;
    sig = NULL;
out:
    free(sig);
    EVP_MD_CTX_free(ctx);
    return rc;
}

#define JWS_SIG_MAX 1024 /* bytes; an RSA-4096 signature is 512 */

static size_t jws_b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/* The compact header and claims texts; the algorithm checked against the key (0: the key's
 * default, written back to *alg). */
static int jws_texts(EVP_PKEY *key, unsigned *alg, const char *kid, const json_t *claims,
                     char **htext, char **ctext, struct torii_errbuf *eb)
{
    json_t *hdr = NULL;
    int rc = TORII_OK;

    TORII_ENSURE(key != NULL && json_is_object(claims),
                 torii_errf(eb, TORII_EINVAL, "jwt: claims must be a JSON object"));
    TORII_ENSURE(kid != NULL && kid[0] != '\0' && strlen(kid) <= TORII_JWT_MAX_KID,
                 torii_errf(eb, TORII_EINVAL, "jwt: kid must be 1..%d bytes", TORII_JWT_MAX_KID));
    if (*alg == 0) {
        *alg = jws_default_alg(key);
    }
    TORII_ENSURE(torii_jwt_alg_name(*alg) != NULL && (torii_jwt_key_algs(key) & *alg) != 0,
                 torii_errf(eb, TORII_EINVAL, "jwt: the key does not allow this algorithm"));
    hdr = json_pack("{s:s, s:s, s:s}", "alg", torii_jwt_alg_name(*alg), "typ", "JWT", "kid", kid);
    TORII_ENSURE(hdr != NULL, TORII_ENOMEM);
    *htext = json_dumps(hdr, JSON_COMPACT);
    *ctext = json_dumps(claims, JSON_COMPACT);
    TORII_ENSURE(*htext != NULL && *ctext != NULL, TORII_ENOMEM);
out:
    json_decref(hdr);
    return rc;
}

int torii_jwt_sign(EVP_PKEY *key, unsigned alg, const char *kid, const json_t *claims, char **out,
                   size_t *out_len, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    char *htext = NULL;
    char *ctext = NULL;
    char *tok = NULL;
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    size_t hl;
    size_t cl;
    size_t n;

    TORII_TRY(jws_texts(key, &alg, kid, claims, &htext, &ctext, eb));
    hl = strlen(htext);
    cl = strlen(ctext);
    TORII_ENSURE(
        hl < TORII_JWT_MAX_TOKEN && cl < TORII_JWT_MAX_TOKEN,
        torii_errf(eb, TORII_ETOOBIG, "jwt: token longer than %d bytes", TORII_JWT_MAX_TOKEN));
    /* header.payload.signature */
    tok = torii_xmalloc(jws_b64_len(hl) + jws_b64_len(cl) + 2 + jws_b64_len(JWS_SIG_MAX) + 2);
    n = torii_b64_encode_to(htext, hl, 1, tok);
    tok[n++] = '.';
    n += torii_b64_encode_to(ctext, cl, 1, tok + n);
    TORII_TRY(jws_sign_raw(key, alg, tok, n, &sig, &sig_len, eb));
    TORII_ENSURE(sig_len <= JWS_SIG_MAX, torii_errf(eb, TORII_ETOOBIG, "jwt: signature too long"));
    tok[n++] = '.';
    n += torii_b64_encode_to(sig, sig_len, 1, tok + n);
    TORII_ENSURE(
        n <= TORII_JWT_MAX_TOKEN,
        torii_errf(eb, TORII_ETOOBIG, "jwt: token longer than %d bytes", TORII_JWT_MAX_TOKEN));
    *out = tok;
    tok = NULL;
    if (out_len != NULL) {
        *out_len = n;
    }
out:
    free(tok);
    free(sig);
    free(htext);
    free(ctext);
    return rc;
}
