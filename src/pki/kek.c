/* kek.c - private keys encrypted at rest (docs/operations.md, Keys at rest): the AES-256-GCM
 * envelope and the ring of key-encryption keys (KEKs) it is sealed under.
 *
 * Envelope (version 1, binary, no padding):
 *   off  size  field
 *     0     4  magic "TKEK"
 *     4     1  version (1)
 *     5     8  KEK id: the first 8 bytes of SHA-256 of the KEK
 *    13    12  nonce (random, 96 bits; a fresh one for every seal)
 *    25     n  ciphertext (n = length of the plaintext, at least 1)
 *  25+n    16  GCM tag
 * Associated data: the 25 header bytes, then the record id. So a ciphertext copied under
 * another record id, or with its header edited, does not open. A DER key starts with 0x30 and
 * a PEM key with '-': neither can be taken for the magic.
 *
 * The ring is filled once at start (file or systemd credential, current + previous KEKs) and
 * only read afterwards, so any thread may seal and open with it. KEK bytes live only in the
 * ring, which wipes them when freed; every plaintext buffer made here is wiped before it is
 * freed. Nothing here logs; error messages name the record id and the KEK id, never a key. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "pki_int.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define KEK_MAGIC     "TKEK"
#define KEK_VERSION   1u
#define KEK_NONCE_LEN 12u
#define KEK_TAG_LEN   16u
#define KEK_HDR_LEN   (4u + 1u + TORII_KEK_ID_LEN + KEK_NONCE_LEN)

static const unsigned char kek_magic[4] = {'T', 'K', 'E', 'K'}; /* KEK_MAGIC, no NUL */

struct kek_entry {
    unsigned char key[TORII_KEK_LEN];
    unsigned char id[TORII_KEK_ID_LEN];
};

struct torii_kek_ring {
    struct kek_entry e[TORII_KEK_MAX];
    size_t n;
    size_t current; /* index of the KEK new envelopes are sealed under */
};

struct torii_kek_ring *torii_kek_ring_new(void)
{
    return torii_xcalloc(1, sizeof(struct torii_kek_ring));
}

void torii_kek_ring_free(struct torii_kek_ring *r)
{
    if (r != NULL) {
        OPENSSL_cleanse(r, sizeof(*r));
        free(r);
    }
}

size_t torii_kek_ring_count(const struct torii_kek_ring *r)
{
    return r != NULL ? r->n : 0;
}

void torii_kek_id_hex(const unsigned char id[TORII_KEK_ID_LEN], char out[2 * TORII_KEK_ID_LEN + 1])
{
    static const char hx[] = "0123456789abcdef";

    for (size_t i = 0; i < TORII_KEK_ID_LEN; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[(size_t)2 * TORII_KEK_ID_LEN] = '\0';
}

int torii_kek_ring_current_id(const struct torii_kek_ring *r, char out[2 * TORII_KEK_ID_LEN + 1])
{
    if (r == NULL || r->n == 0) {
        return TORII_ENOTFOUND;
    }
    torii_kek_id_hex(r->e[r->current].id, out);
    return TORII_OK;
}

int torii_kek_ring_add(struct torii_kek_ring *r, const unsigned char key[TORII_KEK_LEN],
                       int current, struct torii_errbuf *eb)
{
    unsigned char md[32];
    char hex[2 * TORII_KEK_ID_LEN + 1];
    unsigned int mdlen = 0;

    if (r == NULL || key == NULL) {
        return torii_errf(eb, TORII_EINVAL, "kek: no ring or no key");
    }
    if (EVP_Digest(key, TORII_KEK_LEN, md, &mdlen, EVP_sha256(), NULL) != 1) {
        return torii_errbuf_ossl(eb, "kek: SHA-256");
    }
    for (size_t i = 0; i < r->n; i++) {
        if (memcmp(r->e[i].id, md, TORII_KEK_ID_LEN) == 0) {
            torii_kek_id_hex(md, hex);
            return torii_errf(eb, TORII_EEXIST, "kek: KEK %s is configured twice", hex);
        }
    }
    if (r->n >= TORII_KEK_MAX) {
        return torii_errf(eb, TORII_ETOOBIG, "kek: more than %d KEKs", TORII_KEK_MAX);
    }
    memcpy(r->e[r->n].key, key, TORII_KEK_LEN);
    memcpy(r->e[r->n].id, md, TORII_KEK_ID_LEN);
    if (current) {
        r->current = r->n;
    }
    r->n++;
    return TORII_OK;
}

/* ---- envelope ------------------------------------------------------------------------- */

int torii_kek_is_sealed(const unsigned char *buf, size_t len)
{
    return buf != NULL && len >= 4 && memcmp(buf, kek_magic, sizeof(kek_magic)) == 0;
}

/* One AES-256-GCM pass (enc 1 = seal, 0 = open) over in[0..len) into out, with the header
 * and the record id as associated data. For open, tag is checked; for seal, it is written. */
static int kek_gcm(int enc, const unsigned char *key, const unsigned char *hdr, const char *id,
                   size_t id_len, const unsigned char *in, size_t len, unsigned char *out,
                   unsigned char *tag)
{
    int rc = TORII_ETLS;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0;
    int fin = 0;

    if (ctx == NULL || len > INT32_MAX || id_len > INT32_MAX
        || EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, KEK_NONCE_LEN, NULL) != 1
        || EVP_CipherInit_ex(ctx, NULL, NULL, key, hdr + 4 + 1 + TORII_KEK_ID_LEN, enc) != 1
        || EVP_CipherUpdate(ctx, NULL, &n, hdr, KEK_HDR_LEN) != 1
        || EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)id, (int)id_len) != 1
        || EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1) {
        goto out;
    }
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, KEK_TAG_LEN, tag) != 1) {
        goto out;
    }
    if (EVP_CipherFinal_ex(ctx, out + n, &fin) != 1) {
        rc = TORII_EPERM; /* open: the tag does not match */
        goto out;
    }
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, KEK_TAG_LEN, tag) != 1) {
        goto out;
    }
    rc = TORII_OK;
out:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int torii_kek_seal(const struct torii_kek_ring *r, const char *id, size_t id_len,
                   const unsigned char *plain, size_t len, unsigned char **out, size_t *out_len,
                   struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char *env = NULL;
    size_t total = KEK_HDR_LEN + len + KEK_TAG_LEN;

    TORII_ENSURE(r != NULL && r->n > 0,
                 torii_errf(eb, TORII_EINVAL, "kek: no KEK loaded: cannot seal the key of '%.*s'",
                            (int)(id_len > 200 ? 200 : id_len), id != NULL ? id : ""));
    TORII_ENSURE(id != NULL && id_len > 0 && plain != NULL && len > 0 && len < (1u << 24),
                 torii_errf(eb, TORII_EINVAL, "kek: nothing to seal or no record id"));
    env = torii_xmalloc(total);
    memcpy(env, kek_magic, sizeof(kek_magic));
    env[4] = (unsigned char)KEK_VERSION;
    memcpy(env + 5, r->e[r->current].id, TORII_KEK_ID_LEN);
    TORII_ENSURE(RAND_bytes(env + 5 + TORII_KEK_ID_LEN, KEK_NONCE_LEN) == 1,
                 torii_errbuf_ossl(eb, "kek: random nonce"));
    TORII_ENSURE(kek_gcm(1, r->e[r->current].key, env, id, id_len, plain, len, env + KEK_HDR_LEN,
                         env + KEK_HDR_LEN + len)
                     == TORII_OK,
                 torii_errbuf_ossl(eb, "kek: AES-256-GCM seal"));
    *out = env;
    *out_len = total;
    env = NULL;
out:
    torii_secure_free(env, total);
    return rc;
}

static const struct kek_entry *kek_find(const struct torii_kek_ring *r, const unsigned char *id)
{
    for (size_t i = 0; r != NULL && i < r->n; i++) {
        if (CRYPTO_memcmp(r->e[i].id, id, TORII_KEK_ID_LEN) == 0) {
            return &r->e[i];
        }
    }
    return NULL;
}

int torii_kek_open(const struct torii_kek_ring *r, const char *id, size_t id_len,
                   const unsigned char *env, size_t len, unsigned char **out, size_t *out_len,
                   struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const struct kek_entry *k;
    unsigned char *plain = NULL;
    unsigned char tag[KEK_TAG_LEN];
    char hex[2 * TORII_KEK_ID_LEN + 1];
    size_t n = len > KEK_HDR_LEN + KEK_TAG_LEN ? len - KEK_HDR_LEN - KEK_TAG_LEN : 0;
    int show = (int)(id_len > 200 ? 200 : id_len);

    TORII_ENSURE(id != NULL && id_len > 0 && torii_kek_is_sealed(env, len) && n > 0
                     && env[4] == KEK_VERSION,
                 torii_errf(eb, TORII_EINVAL,
                            "kek: the key of record '%.*s' is not a sealed key (version 1)", show,
                            id != NULL ? id : ""));
    torii_kek_id_hex(env + 5, hex);
    k = kek_find(r, env + 5);
    TORII_ENSURE(k != NULL, torii_errf(eb, TORII_ENOTFOUND,
                                       "kek: the key of record '%.*s' is sealed under KEK %s, "
                                       "which is not loaded (wrong or missing keys.kek_file / "
                                       "keys.kek_credential)",
                                       show, id, hex));
    plain = torii_xmalloc(n);
    memcpy(tag, env + KEK_HDR_LEN + n, KEK_TAG_LEN);
    rc = kek_gcm(0, k->key, env, id, id_len, env + KEK_HDR_LEN, n, plain, tag);
    TORII_ENSURE(rc != TORII_EPERM,
                 torii_errf(eb, TORII_EPERM,
                            "kek: the key of record '%.*s' does not open under KEK %s: the "
                            "ciphertext was altered or belongs to another record",
                            show, id, hex));
    TORII_ENSURE(rc == TORII_OK, torii_errbuf_ossl(eb, "kek: AES-256-GCM open"));
    *out = plain;
    *out_len = n;
    plain = NULL;
out:
    torii_secure_free(plain, n);
    return rc;
}

int torii_kek_text_is_sealed(const char *s)
{
    return s != NULL && strncmp(s, KEK_TEXT_PREFIX, KEK_TEXT_PREFIX_LEN) == 0;
}
