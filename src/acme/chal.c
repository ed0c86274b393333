/* chal.c - the table of pending challenge answers (acme.h): HTTP-01 key authorizations by
 * token and TLS-ALPN-01 validation records by name, published by the ACME thread (and, in
 * fleet mode, by the fleet's challenge watch) and read by the listeners. A mutex guards it; it
 * is tiny (the names of the orders in flight) and read only for /.well-known/acme-challenge/
 * requests and acme-tls/1 handshakes. Also the ACME thread's publish/withdraw, which hand an
 * answer to the fleet hook (torii_acme_share) after the local table. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "acme_int.h"
#include "torii/clock.h"
#include "torii/mem.h"

struct chal_entry {
    int used;
    int alpn; /* 0: http-01 */
    char key[TORII_ACME_KEY_MAX + 1];
    char value[TORII_ACME_KEYAUTH_MAX + 1];
    unsigned char *rec;
    size_t rec_len;
};

struct torii_acme_chal {
    pthread_mutex_t mu;
    struct chal_entry e[TORII_ACME_CHAL_MAX];
    uint64_t answered[2]; /* lookups answered: http-01, tls-alpn-01 (atomic) */
};

int torii_acme_chal_new(struct torii_acme_chal **out)
{
    struct torii_acme_chal *ch = torii_xcalloc(1, sizeof(*ch));

    if (pthread_mutex_init(&ch->mu, NULL) != 0) {
        free(ch);
        return TORII_ENOMEM;
    }
    *out = ch;
    return TORII_OK;
}

static void chal_entry_clear(struct chal_entry *e)
{
    torii_secure_free(e->rec, e->rec_len);
    memset(e, 0, sizeof(*e));
}

void torii_acme_chal_free(struct torii_acme_chal *ch)
{
    if (ch == NULL) {
        return;
    }
    for (size_t i = 0; i < TORII_ACME_CHAL_MAX; i++) {
        chal_entry_clear(&ch->e[i]);
    }
    (void)pthread_mutex_destroy(&ch->mu);
    free(ch);
}

/* The entry for (alpn, key of len bytes), or NULL. Mutex held. */
static struct chal_entry *chal_find(struct torii_acme_chal *ch, int alpn, const char *key,
                                    size_t len)
{
    for (size_t i = 0; i < TORII_ACME_CHAL_MAX; i++) {
        struct chal_entry *e = &ch->e[i];
        if (e->used && e->alpn == alpn && strlen(e->key) == len && memcmp(e->key, key, len) == 0) {
            return e;
        }
    }
    return NULL;
}

int torii_acme_chal_http01(struct torii_acme_chal *ch, const char *token, size_t len, char *out,
                           size_t out_len)
{
    int rc = TORII_ENOTFOUND;
    struct chal_entry *e;

    if (ch == NULL || len == 0 || len > TORII_ACME_KEY_MAX) {
        return TORII_ENOTFOUND;
    }
    (void)pthread_mutex_lock(&ch->mu);
    e = chal_find(ch, 0, token, len);
    if (e != NULL && strlen(e->value) < out_len) {
        memcpy(out, e->value, strlen(e->value) + 1);
        __atomic_fetch_add(&ch->answered[0], 1, __ATOMIC_RELAXED);
        rc = TORII_OK;
    }
    (void)pthread_mutex_unlock(&ch->mu);
    return rc;
}

int torii_acme_chal_alpn(struct torii_acme_chal *ch, const char *name, unsigned char **rec_out,
                         size_t *rec_len)
{
    int rc = TORII_ENOTFOUND;
    struct chal_entry *e;

    if (ch == NULL || name == NULL) {
        return TORII_ENOTFOUND;
    }
    (void)pthread_mutex_lock(&ch->mu);
    e = chal_find(ch, 1, name, strlen(name));
    if (e != NULL && e->rec != NULL) {
        *rec_out = torii_xmalloc(e->rec_len);
        memcpy(*rec_out, e->rec, e->rec_len);
        *rec_len = e->rec_len;
        __atomic_fetch_add(&ch->answered[1], 1, __ATOMIC_RELAXED);
        rc = TORII_OK;
    }
    (void)pthread_mutex_unlock(&ch->mu);
    return rc;
}

int torii_acme_chal_put(struct torii_acme_chal *ch, const char *type, const char *key,
                        const char *value, const unsigned char *rec, size_t rec_len)
{
    int alpn = strcmp(type, "tls-alpn-01") == 0;
    int rc = TORII_ETOOBIG;
    struct chal_entry *e;

    if (strlen(key) > TORII_ACME_KEY_MAX
        || (value != NULL && strlen(value) > TORII_ACME_KEYAUTH_MAX)) {
        return TORII_EINVAL;
    }
    (void)pthread_mutex_lock(&ch->mu);
    e = chal_find(ch, alpn, key, strlen(key));
    for (size_t i = 0; e == NULL && i < TORII_ACME_CHAL_MAX; i++) {
        e = ch->e[i].used ? NULL : &ch->e[i];
    }
    if (e != NULL) {
        chal_entry_clear(e);
        e->used = 1;
        e->alpn = alpn;
        memcpy(e->key, key, strlen(key) + 1);
        if (value != NULL) {
            memcpy(e->value, value, strlen(value) + 1);
        }
        if (rec != NULL) {
            e->rec = torii_xmalloc(rec_len);
            memcpy(e->rec, rec, rec_len);
            e->rec_len = rec_len;
        }
        rc = TORII_OK;
    }
    (void)pthread_mutex_unlock(&ch->mu);
    return rc;
}

void torii_acme_chal_drop(struct torii_acme_chal *ch, const char *type, const char *key)
{
    struct chal_entry *e;

    (void)pthread_mutex_lock(&ch->mu);
    e = chal_find(ch, strcmp(type, "tls-alpn-01") == 0, key, strlen(key));
    if (e != NULL) {
        chal_entry_clear(e);
    }
    (void)pthread_mutex_unlock(&ch->mu);
}

void torii_acme_chal_answered(struct torii_acme_chal *ch, uint64_t out[2])
{
    for (size_t i = 0; i < 2; i++) {
        out[i] = ch != NULL ? __atomic_load_n(&ch->answered[i], __ATOMIC_RELAXED) : 0;
    }
}

/* Seconds left before the order's deadline, plus a margin: how long a shared answer may
 * outlive a node that died with it. */
static int64_t acme_chal_ttl_s(const struct acme_client *c)
{
    int64_t left = c->deadline_ms - torii_clock_mono_us() / 1000;

    return (left > 0 ? left / 1000 : 0) + ACME_SHARE_MARGIN_S;
}

int acme_chal_publish(struct acme_client *c, const char *type, const char *key, const char *value,
                      const unsigned char *rec, size_t rec_len, struct torii_errbuf *eb)
{
    int rc = torii_acme_chal_put(c->chal, type, key, value, rec, rec_len);

    if (rc != TORII_OK) {
        return torii_errf(eb, rc, "acme: cannot hold the %s answer for %.64s: %s", type, key,
                          rc == TORII_ETOOBIG ? "the challenge table is full" : torii_strerror(rc));
    }
    if (c->share == NULL || c->share->publish == NULL) {
        return TORII_OK;
    }
    rc = c->share->publish(c->share->ctx, type, key, value, rec, rec_len, acme_chal_ttl_s(c), eb);
    if (rc != TORII_OK) {
        torii_acme_chal_drop(c->chal, type, key);
    }
    return rc;
}

void acme_chal_withdraw(struct acme_client *c, const char *type, const char *key)
{
    torii_acme_chal_drop(c->chal, type, key);
    if (c->share != NULL && c->share->withdraw != NULL) {
        c->share->withdraw(c->share->ctx, type, key);
    }
}
