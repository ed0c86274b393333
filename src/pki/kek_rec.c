/* kek_rec.c - the KEK envelope applied to the one place a stored certificate keeps its
 * private key: the entity JSON's "privateKey". A sealed privateKey is the text "TKEK:" +
 * standard base64 of the envelope, sealed with the record id as associated data. Converting
 * a record (torii keys migrate/rotate) also drops the key copy a TLS record written by an
 * older torii still holds (certrec.c, version 3).
 * Threads: any (pure functions over caller-owned data and a read-only ring). */
#include <string.h>

#include <openssl/crypto.h>

#include "pki_int.h"
#include "torii/codec.h"
#include "torii/pki.h"

/* The envelope under a sealed text ("TKEK:<base64>"); *env malloc'd. */
static int kek_text_env(const char *s, unsigned char **env, size_t *len)
{
    return torii_b64_decode(s + KEK_TEXT_PREFIX_LEN, strlen(s + KEK_TEXT_PREFIX_LEN), env, len);
}

int torii_kek_text_open(const struct torii_kek_ring *r, const char *id, size_t id_len,
                        const char *s, char **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char *env = NULL;
    size_t elen = 0;
    unsigned char *plain = NULL;
    size_t plen = 0;

    TORII_ENSURE(torii_kek_text_is_sealed(s) && kek_text_env(s, &env, &elen) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "kek: the privateKey of record '%.*s' is not sealed",
                            (int)(id_len > 200 ? 200 : id_len), id));
    TORII_TRY(torii_kek_open(r, id, id_len, env, elen, &plain, &plen, eb));
    *out = torii_xmalloc(plen + 1);
    memcpy(*out, plain, plen);
    (*out)[plen] = '\0';
out:
    free(env);
    torii_secure_free(plain, plen);
    return rc;
}

int torii_kek_text_seal(const struct torii_kek_ring *r, const char *id, size_t id_len,
                        const char *plain, char **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char *env = NULL;
    size_t elen = 0;
    char *b64 = NULL;

    TORII_ENSURE(plain != NULL, torii_errf(eb, TORII_EINVAL, "kek: nothing to seal"));
    TORII_TRY(torii_kek_seal(r, id, id_len, (const unsigned char *)plain, strlen(plain), &env,
                             &elen, eb));
    b64 = torii_b64_encode(env, elen, 0, NULL);
    TORII_ENSURE(b64 != NULL, TORII_ENOMEM);
    *out = torii_xmalloc(KEK_TEXT_PREFIX_LEN + strlen(b64) + 1);
    memcpy(*out, KEK_TEXT_PREFIX, KEK_TEXT_PREFIX_LEN);
    memcpy(*out + KEK_TEXT_PREFIX_LEN, b64, strlen(b64) + 1);
out:
    free(b64);
    free(env);
    return rc;
}

/* 1 when env[0..len) is sealed under the ring's current KEK. */
static int kek_under_current(const struct torii_kek_ring *r, const unsigned char *env, size_t len)
{
    char cur[2 * TORII_KEK_ID_LEN + 1];
    char got[2 * TORII_KEK_ID_LEN + 1];

    if (len < 5 + TORII_KEK_ID_LEN || torii_kek_ring_current_id(r, cur) != TORII_OK) {
        return 0;
    }
    torii_kek_id_hex(env + 5, got);
    return strcmp(cur, got) == 0;
}

int torii_kek_text_convert(const struct torii_kek_ring *r, int rewrap, const char *id,
                           size_t id_len, const char *in, char **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char *env = NULL;
    size_t elen = 0;
    char *plain = NULL;

    *out = NULL;
    if (torii_kek_text_is_sealed(in)) {
        TORII_TRY(kek_text_env(in, &env, &elen));
        if (!rewrap || kek_under_current(r, env, elen)) {
            goto out;
        }
        TORII_TRY(torii_kek_text_open(r, id, id_len, in, &plain, eb));
        in = plain;
    }
    rc = torii_kek_text_seal(r, id, id_len, in, out, eb);
out:
    free(env);
    if (plain != NULL) {
        torii_secure_free(plain, strlen(plain));
    }
    return rc;
}

/* The entity JSON with its privateKey converted; *out NULL when nothing changes. */
static int kek_json_convert(const struct torii_kek_ring *r, int rewrap, const char *id,
                            size_t id_len, const char *json, size_t len, char **out,
                            struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *e = json_loadb(json, len, 0, NULL);
    const char *pk = json_string_value(json_object_get(e, "privateKey"));
    char *sealed = NULL;

    *out = NULL;
    TORII_ENSURE(json_is_object(e),
                 torii_errf(eb, TORII_EINVAL, "kek: record '%.*s' is not a JSON object",
                            (int)(id_len > 200 ? 200 : id_len), id));
    if (pk == NULL || pk[0] == '\0') {
        goto out;
    }
    TORII_TRY(torii_kek_text_convert(r, rewrap, id, id_len, pk, &sealed, eb));
    if (sealed != NULL) {
        /* The PEM lives in jansson's copy: wipe it before it is freed. */
        OPENSSL_cleanse((char *)(uintptr_t)pk, strlen(pk));
        TORII_ENSURE(json_object_set_new(e, "privateKey", json_string(sealed)) == 0, TORII_ENOMEM);
        *out = json_dumps(e, JSON_COMPACT);
        TORII_ENSURE(*out != NULL, TORII_ENOMEM);
    }
out:
    free(sealed);
    json_decref(e);
    return rc;
}

int torii_kek_rec_convert(const struct torii_kek_ring *r, int rewrap,
                          const struct torii_kek_rec *in, struct torii_kek_rec_out *out,
                          struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    memset(out, 0, sizeof(*out));
    TORII_TRY(
        kek_json_convert(r, rewrap, in->id, in->id_len, in->json, in->json_len, &out->json, eb));
    /* A TLS record written before the key was stored once still holds a copy of the key
     * (clear DER, or sealed by an earlier migrate): it goes. */
    if (in->aux != NULL && in->aux_len > 0) {
        rc = torii_certrec_drop_key(in->aux, in->aux_len, &out->aux, &out->aux_len);
        TORII_ENSURE(rc == TORII_OK,
                     torii_errf(eb, TORII_EINVAL, "kek: record '%.*s' has a malformed TLS record",
                                (int)(in->id_len > 200 ? 200 : in->id_len), in->id));
    }
    out->changed = out->json != NULL || out->aux != NULL;
out:
    if (rc != TORII_OK) {
        torii_kek_rec_out_clear(out);
    }
    return rc;
}

void torii_kek_rec_out_clear(struct torii_kek_rec_out *o)
{
    free(o->json);
    free(o->aux);
    memset(o, 0, sizeof(*o));
}
