/* kek_rec.c - the KEK envelope applied to the two places a stored certificate keeps its
 * private key today: the entity JSON's "privateKey" (PEM text) and the key slot of the TLS
 * record (DER, certrec.c). A sealed privateKey is the text "TKEK:" + standard base64 of the
 * envelope; a sealed TLS record holds the envelope in its key slot (a DER key starts with
 * 0x30, never with the magic). Both are sealed with the record id as associated data.
 * Threads: any (pure functions over caller-owned data and a read-only ring). */
#include <string.h>

#include <openssl/crypto.h>

#include "pki_int.h"
#include "torii/codec.h"
#include "torii/pki.h"

#define KEK_TEXT_PREFIX     "TKEK:"
#define KEK_TEXT_PREFIX_LEN 5u

/* The key slot of a TLS record: the offset of its u32 length field and its length; 0 when
 * the record has no key. */
static int kek_rec_key_slot(const unsigned char *aux, size_t len, size_t *off, size_t *key_len)
{
    struct torii_certrec cr;

    if (torii_certrec_decode(aux, len, &cr) != TORII_OK) {
        return TORII_EINVAL;
    }
    *key_len = cr.key_der.len;
    *off = cr.key_der.len > 0 ? (size_t)((const unsigned char *)cr.key_der.ptr - aux) - 4 : 0;
    return TORII_OK;
}

/* aux with its key slot (at off, old_len bytes) replaced by key[0..key_len). */
static unsigned char *kek_rec_splice(const unsigned char *aux, size_t len, size_t off,
                                     size_t old_len, const unsigned char *key, size_t key_len,
                                     size_t *out_len)
{
    size_t tail = len - off - 4 - old_len;
    unsigned char *out = torii_xmalloc(off + 4 + key_len + tail);

    memcpy(out, aux, off);
    for (int i = 0; i < 4; i++) {
        out[off + (size_t)i] = (unsigned char)(key_len >> (8 * i));
    }
    memcpy(out + off + 4, key, key_len);
    memcpy(out + off + 4 + key_len, aux + off + 4 + old_len, tail);
    *out_len = off + 4 + key_len + tail;
    return out;
}

int torii_kek_aux_open(const struct torii_kek_ring *r, const char *id, size_t id_len,
                       const unsigned char *aux, size_t len, unsigned char **out, size_t *out_len,
                       struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    size_t off = 0;
    size_t klen = 0;
    unsigned char *plain = NULL;
    size_t plen = 0;

    *out = NULL;
    *out_len = 0;
    if (aux == NULL || kek_rec_key_slot(aux, len, &off, &klen) != TORII_OK || klen == 0
        || !torii_kek_is_sealed(aux + off + 4, klen)) {
        return TORII_OK; /* not sealed (or not a record: its reader says so) */
    }
    TORII_TRY(torii_kek_open(r, id, id_len, aux + off + 4, klen, &plain, &plen, eb));
    *out = kek_rec_splice(aux, len, off, klen, plain, plen, out_len);
out:
    torii_secure_free(plain, plen);
    return rc;
}

int torii_kek_text_is_sealed(const char *s)
{
    return s != NULL && strncmp(s, KEK_TEXT_PREFIX, KEK_TEXT_PREFIX_LEN) == 0;
}

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

/* A sealed text of plain[0..len). */
static int kek_text_seal(const struct torii_kek_ring *r, const char *id, size_t id_len,
                         const unsigned char *plain, size_t len, char **out,
                         struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char *env = NULL;
    size_t elen = 0;
    char *b64 = NULL;

    TORII_TRY(torii_kek_seal(r, id, id_len, plain, len, &env, &elen, eb));
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

/* One key field: plain -> sealed; sealed elsewhere and rewrap -> opened and sealed under the
 * current KEK; otherwise *out = NULL (nothing to do). in/in_len: the field as stored. */
static int kek_field_convert(const struct torii_kek_ring *r, int rewrap, const char *id,
                             size_t id_len, const unsigned char *in, size_t in_len, int text,
                             unsigned char **out, size_t *out_len, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char *env = NULL;
    size_t elen = 0;
    unsigned char *plain = NULL;
    size_t plen = 0;
    int sealed =
        text ? torii_kek_text_is_sealed((const char *)in) : torii_kek_is_sealed(in, in_len);

    *out = NULL;
    if (sealed) {
        if (text) {
            TORII_TRY(kek_text_env((const char *)in, &env, &elen));
        }
        if (!rewrap || kek_under_current(r, text ? env : in, text ? elen : in_len)) {
            goto out;
        }
        TORII_TRY(torii_kek_open(r, id, id_len, text ? env : in, text ? elen : in_len, &plain,
                                 &plen, eb));
        in = plain;
        in_len = plen;
    }
    if (text) {
        TORII_TRY(kek_text_seal(r, id, id_len, in, in_len, (char **)out, eb));
        *out_len = strlen((const char *)*out);
    } else {
        TORII_TRY(torii_kek_seal(r, id, id_len, in, in_len, out, out_len, eb));
    }
out:
    free(env);
    torii_secure_free(plain, plen);
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
    unsigned char *sealed = NULL;
    size_t slen = 0;

    *out = NULL;
    TORII_ENSURE(json_is_object(e),
                 torii_errf(eb, TORII_EINVAL, "kek: record '%.*s' is not a JSON object",
                            (int)(id_len > 200 ? 200 : id_len), id));
    if (pk == NULL || pk[0] == '\0') {
        goto out;
    }
    TORII_TRY(kek_field_convert(r, rewrap, id, id_len, (const unsigned char *)pk, strlen(pk), 1,
                                &sealed, &slen, eb));
    if (sealed != NULL) {
        /* The PEM lives in jansson's copy: wipe it before it is freed. */
        OPENSSL_cleanse((char *)(uintptr_t)pk, strlen(pk));
        TORII_ENSURE(json_object_set_new(e, "privateKey", json_string((char *)sealed)) == 0,
                     TORII_ENOMEM);
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
    size_t off = 0;
    size_t klen = 0;
    unsigned char *key = NULL;
    size_t key_len = 0;

    memset(out, 0, sizeof(*out));
    TORII_TRY(
        kek_json_convert(r, rewrap, in->id, in->id_len, in->json, in->json_len, &out->json, eb));
    if (in->aux != NULL && in->aux_len > 0) {
        TORII_ENSURE(kek_rec_key_slot(in->aux, in->aux_len, &off, &klen) == TORII_OK,
                     torii_errf(eb, TORII_EINVAL, "kek: record '%.*s' has a malformed TLS record",
                                (int)(in->id_len > 200 ? 200 : in->id_len), in->id));
    }
    if (klen > 0) {
        TORII_TRY(kek_field_convert(r, rewrap, in->id, in->id_len, in->aux + off + 4, klen, 0, &key,
                                    &key_len, eb));
    }
    if (key != NULL) {
        out->aux = kek_rec_splice(in->aux, in->aux_len, off, klen, key, key_len, &out->aux_len);
    }
    out->changed = out->json != NULL || out->aux != NULL;
out:
    free(key);
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
