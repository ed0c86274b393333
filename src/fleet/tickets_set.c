/* tickets_set.c - the stored form of the fleet's session ticket key set (docs/fleet.md), and
 * the rotation rule. Pure functions, no I/O: the value of <prefix>t/keys in etcd is
 *   {"v": 1, "keys": "TKEK:<base64 of a KEK envelope>"}
 * and the envelope (torii_kek_seal, record id = the etcd key, so a value copied under another
 * key or prefix does not open) seals
 *   created_ms (8 bytes, big-endian, Unix milliseconds) | n ticket keys of 80 bytes (n = 1, 2)
 * with k[0] the current key. Nothing of the set is in clear, not even its age: a value edited
 * in etcd does not open. The decoder distrusts its input: any other member, version, length,
 * or duplicate key name is an error that names it.
 * Threads: any (pure). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "fleet_int.h"
#include "torii/codec.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define TS_VERSION   1
#define TS_HDR       8 /* created_ms */
#define TS_PREFIX    "TKEK:"
#define TS_TEXT_MAX  4096
#define TS_PLAIN_MAX (TS_HDR + 2 * TORII_TLS_TICKET_KEY_LEN)

int torii_fleet_tickets_due(int64_t created_ms, unsigned period_s, int64_t now_ms)
{
    int64_t period_ms = (int64_t)period_s * 1000;

    if (period_s == 0) {
        return 0;
    }
    /* A set from the future (a clock set back, or a bogus value) by more than a period is
     * due too, or it would never rotate. */
    return now_ms - created_ms >= period_ms || created_ms - now_ms > period_ms;
}

int torii_fleet_tickets_encode(const struct torii_kek_ring *kek, const char *rec, size_t rec_len,
                               const struct torii_fleet_ticket_set *s, char **out,
                               struct torii_errbuf *eb)
{
    unsigned char plain[TS_PLAIN_MAX];
    size_t plen = TS_HDR + s->keys.n * TORII_TLS_TICKET_KEY_LEN;
    unsigned char *env = NULL;
    size_t env_len = 0;
    char *b64 = NULL;
    char *text = NULL;
    json_t *j = NULL;
    int rc = TORII_OK;

    *out = NULL;
    TORII_ENSURE(s->keys.n >= 1 && s->keys.n <= 2 && s->created_ms > 0,
                 torii_errf(eb, TORII_EINVAL,
                            "fleet: a ticket key set needs 1 or 2 keys and "
                            "a creation time"));
    for (int i = 0; i < TS_HDR; i++) {
        plain[i] = (unsigned char)((uint64_t)s->created_ms >> (8 * (TS_HDR - 1 - i)));
    }
    memcpy(plain + TS_HDR, s->keys.k, s->keys.n * TORII_TLS_TICKET_KEY_LEN);
    TORII_TRY(torii_kek_seal(kek, rec, rec_len, plain, plen, &env, &env_len, eb));
    b64 = torii_b64_encode(env, env_len, 0, NULL);
    text = torii_xmalloc(strlen(TS_PREFIX) + strlen(b64) + 1);
    (void)snprintf(text, strlen(TS_PREFIX) + strlen(b64) + 1, "%s%s", TS_PREFIX, b64);
    j = json_pack("{s:i, s:s}", "v", TS_VERSION, "keys", text);
    *out = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    TORII_ENSURE(*out != NULL, TORII_ENOMEM);
out:
    OPENSSL_cleanse(plain, sizeof(plain));
    json_decref(j);
    free(text);
    free(b64);
    free(env);
    return rc;
}

/* The envelope of a stored value: checks the JSON shape, returns the decoded envelope. */
static int ts_envelope(const char *val, size_t len, unsigned char **env, size_t *env_len,
                       struct torii_errbuf *eb)
{
    json_t *root = json_loadb(val, len, JSON_REJECT_DUPLICATES, NULL);
    const json_t *v = json_object_get(root, "v");
    const char *keys = json_string_value(json_object_get(root, "keys"));
    const char *member;
    const json_t *ignored;
    size_t plen = strlen(TS_PREFIX);
    int rc = TORII_OK;

    TORII_ENSURE(json_is_object(root),
                 torii_errf(eb, TORII_EPROTO, "fleet: ticket key set: not a JSON object"));
    json_object_foreach ((json_t *)root, member, ignored) {
        TORII_ENSURE(strcmp(member, "v") == 0 || strcmp(member, "keys") == 0,
                     torii_errf(eb, TORII_EPROTO, "fleet: ticket key set: unknown member \"%.32s\"",
                                member));
    }
    TORII_ENSURE(
        json_is_integer(v) && json_integer_value(v) == TS_VERSION,
        torii_errf(eb, TORII_EPROTO, "fleet: ticket key set: \"v\" is not %d", TS_VERSION));
    TORII_ENSURE(keys != NULL && strlen(keys) > plen && strlen(keys) < TS_TEXT_MAX
                     && strncmp(keys, TS_PREFIX, plen) == 0,
                 torii_errf(eb, TORII_EPROTO,
                            "fleet: ticket key set: \"keys\" is not a sealed text (TKEK:...)"));
    TORII_ENSURE(torii_b64_decode(keys + plen, strlen(keys) - plen, env, env_len) == TORII_OK,
                 torii_errf(eb, TORII_EPROTO, "fleet: ticket key set: \"keys\" is not base64"));
out:
    json_decref(root);
    return rc;
}

int torii_fleet_tickets_decode(const struct torii_kek_ring *kek, const char *rec, size_t rec_len,
                               const char *val, size_t len, struct torii_fleet_ticket_set *out,
                               struct torii_errbuf *eb)
{
    unsigned char *env = NULL;
    unsigned char *plain = NULL;
    size_t env_len = 0;
    size_t plen = 0;
    uint64_t created = 0;
    int rc = TORII_OK;

    memset(out, 0, sizeof(*out));
    TORII_TRY(ts_envelope(val, len, &env, &env_len, eb));
    TORII_TRY(torii_kek_open(kek, rec, rec_len, env, env_len, &plain, &plen, eb));
    TORII_ENSURE(plen == TS_HDR + TORII_TLS_TICKET_KEY_LEN || plen == TS_PLAIN_MAX,
                 torii_errf(eb, TORII_EPROTO,
                            "fleet: ticket key set: %zu bytes sealed, not %d or %d", plen,
                            TS_HDR + TORII_TLS_TICKET_KEY_LEN, TS_PLAIN_MAX));
    for (int i = 0; i < TS_HDR; i++) {
        created = created << 8 | plain[i];
    }
    TORII_ENSURE(created > 0 && created < (uint64_t)INT64_MAX,
                 torii_errf(eb, TORII_EPROTO, "fleet: ticket key set: bad creation time"));
    out->created_ms = (int64_t)created;
    out->keys.n = (plen - TS_HDR) / TORII_TLS_TICKET_KEY_LEN;
    memcpy(out->keys.k, plain + TS_HDR, plen - TS_HDR);
    TORII_ENSURE(out->keys.n == 1 || CRYPTO_memcmp(out->keys.k[0], out->keys.k[1], 16) != 0,
                 torii_errf(eb, TORII_EPROTO, "fleet: ticket key set: two keys with one name"));
out:
    if (plain != NULL) {
        torii_secure_free(plain, plen);
    }
    free(env);
    if (rc != TORII_OK) {
        OPENSSL_cleanse(out, sizeof(*out));
    }
    return rc;
}
