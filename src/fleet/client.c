/* client.c - the etcd v3 JSON gateway over libcurl: one POST per call, endpoint failover in
 * the configured order (starting with the last that answered), a timeout on every call,
 * user/password authentication (/v3/auth/authenticate; a token belongs to the member that
 * issued it, so a new endpoint authenticates again), TLS with a CA and a client certificate.
 * Threads: any (a fresh curl handle per call; token and endpoint under mu). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "fleet_int.h"
#include "torii/log.h"
#include "torii/mem.h"

#define CLIENT_MAX_BODY ((size_t)512 << 20)
#define CLIENT_MAX_LINE ((size_t)64 << 20)

struct client_buf {
    char *p;
    size_t len;
    size_t cap;
    int too_big;
    /* streams: */
    fleet_line_cb cb;
    void *arg;
    int cb_rc;
    const atomic_int *stop;
};

int fleet_client_init(struct fleet_client *c, const struct torii_conf_fleet *conf,
                      struct torii_errbuf *eb)
{
    memset(c, 0, sizeof(*c));
    c->conf = conf;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return torii_errf(eb, TORII_EIO, "fleet: curl_global_init failed");
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        return torii_errf(eb, TORII_ENOMEM, "fleet: mutex init failed");
    }
    return TORII_OK;
}

void fleet_client_clear(struct fleet_client *c)
{
    if (c->token != NULL) {
        torii_secure_free(c->token, strlen(c->token));
    }
    (void)pthread_mutex_destroy(&c->mu);
    memset(c, 0, sizeof(*c));
}

/* Hand the complete lines of b to its callback, keeping a partial one. */
static void client_lines(struct client_buf *b)
{
    size_t start = 0;

    for (size_t i = 0; i < b->len && b->cb_rc == TORII_OK; i++) {
        if (b->p[i] == '\n') {
            if (i > start) {
                b->cb_rc = b->cb(b->p + start, i - start, b->arg);
            }
            start = i + 1;
        }
    }
    memmove(b->p, b->p + start, b->len - start);
    b->len -= start;
}

static size_t client_write(char *data, size_t sz, size_t nm, void *arg)
{
    struct client_buf *b = arg;
    size_t n = sz * nm;
    size_t max = b->cb != NULL ? CLIENT_MAX_LINE : CLIENT_MAX_BODY;

    if (b->len + n + 1 > max) {
        b->too_big = 1;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = torii_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    if (b->cb != NULL) {
        client_lines(b);
        if (b->cb_rc != TORII_OK) {
            return 0;
        }
    }
    return n;
}

static int client_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    const struct client_buf *buf = arg;

    (void)a;
    (void)b;
    (void)c;
    (void)d;
    return buf->stop != NULL && atomic_load(buf->stop) != 0;
}

/* A handle for url with body, headers (freed by the caller) and the TLS settings. */
static CURL *client_handle(const struct fleet_client *c, const char *url, const char *body,
                           const char *token, struct curl_slist **hdrs, struct client_buf *b)
{
    const struct torii_conf_fleet *f = c->conf;
    CURL *h = curl_easy_init();
    char auth[4096];

    if (h == NULL) {
        return NULL;
    }
    *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (token != NULL) {
        (void)snprintf(auth, sizeof(auth), "Authorization: %s", token);
        *hdrs = curl_slist_append(*hdrs, auth);
        OPENSSL_cleanse(auth, sizeof(auth));
    }
    (void)curl_easy_setopt(h, CURLOPT_URL, url);
    (void)curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    (void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
    (void)curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    (void)curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    (void)curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)f->timeout_ms);
    (void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, client_write);
    (void)curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    (void)curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    (void)curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 5L);
    (void)curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
    if (f->ca_file != NULL) {
        (void)curl_easy_setopt(h, CURLOPT_CAINFO, f->ca_file);
    }
    if (f->cert_file != NULL) {
        (void)curl_easy_setopt(h, CURLOPT_SSLCERT, f->cert_file);
        (void)curl_easy_setopt(h, CURLOPT_SSLKEY, f->key_file);
    }
    if (b->cb == NULL) {
        (void)curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)f->timeout_ms);
    } else {
        (void)curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        (void)curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, client_progress);
        (void)curl_easy_setopt(h, CURLOPT_XFERINFODATA, b);
    }
    return h;
}

/* One POST to endpoint i. TORII_OK with a 200 body in b; TORII_EAGAIN when the endpoint did
 * not answer or is unavailable; the error body's code otherwise. */
static int client_post(struct fleet_client *c, size_t i, const char *path, const char *body,
                       const char *token, struct client_buf *b, struct torii_errbuf *eb)
{
    const char *ep = json_string_value(json_array_get(c->conf->endpoints, i));
    struct curl_slist *hdrs = NULL;
    char url[512];
    long status = 0;
    CURL *h = NULL;
    CURLcode cc;
    int rc = TORII_OK;

    (void)snprintf(url, sizeof(url), "%s%s", ep, path);
    h = client_handle(c, url, body, token, &hdrs, b);
    TORII_ENSURE(h != NULL, torii_errf(eb, TORII_ENOMEM, "fleet: curl_easy_init failed"));
    cc = curl_easy_perform(h);
    (void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (b->cb != NULL && b->cb_rc != TORII_OK) {
        rc = b->cb_rc;
    } else if (cc == CURLE_ABORTED_BY_CALLBACK) {
        rc = TORII_OK; /* stopped */
    } else if (cc != CURLE_OK) {
        rc = torii_errf(eb, TORII_EAGAIN, "fleet: etcd %s: %s", ep,
                        b->too_big ? "response too large" : curl_easy_strerror(cc));
    } else if (status != 200) {
        rc = torii_fleet_gw_error(b->p, b->len, eb);
        if (rc == TORII_ENOTFOUND) {
            rc = torii_errf(eb, status >= 500 ? TORII_EAGAIN : TORII_EPROTO,
                            "fleet: etcd %s%s: HTTP %ld", ep, path, status);
        }
    } else if (b->cb != NULL) {
        rc = torii_errf(eb, TORII_EAGAIN, "fleet: etcd %s: the watch stream ended", ep);
    }
out:
    curl_slist_free_all(hdrs);
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
    return rc;
}

/* Authenticate on endpoint i: *token (malloc'd) from /v3/auth/authenticate. */
static int client_auth(struct fleet_client *c, size_t i, char **token, struct torii_errbuf *eb)
{
    struct client_buf b = {0};
    json_t *req = json_pack("{s:s, s:s}", "name", c->conf->user, "password", c->conf->password);
    char *body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    json_t *resp = NULL;
    const char *t;
    int rc = TORII_OK;

    *token = NULL;
    json_decref(req);
    TORII_ENSURE(body != NULL, TORII_ENOMEM);
    TORII_TRY(client_post(c, i, "/v3/auth/authenticate", body, NULL, &b, eb));
    resp = json_loadb(b.p, b.len, 0, NULL);
    t = json_string_value(json_object_get(resp, "token"));
    TORII_ENSURE(t != NULL && t[0] != '\0' && strlen(t) < 2048,
                 torii_errf(eb, TORII_EPROTO, "fleet: etcd authenticate: no token in the answer"));
    *token = torii_xstrdup(t);
out:
    if (body != NULL) {
        torii_secure_free(body, strlen(body));
    }
    json_decref(resp);
    if (b.p != NULL) {
        torii_secure_free(b.p, b.cap);
    }
    return rc;
}

/* The token to send to endpoint i (authenticating when needed); *tok is malloc'd or NULL. */
static int client_token(struct fleet_client *c, size_t i, int fresh, char **tok,
                        struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    *tok = NULL;
    if (c->conf->user == NULL) {
        return TORII_OK;
    }
    (void)pthread_mutex_lock(&c->mu);
    if (!fresh && c->token != NULL && c->cur == i) {
        *tok = torii_xstrdup(c->token);
    }
    (void)pthread_mutex_unlock(&c->mu);
    if (*tok != NULL) {
        return TORII_OK;
    }
    TORII_TRY(client_auth(c, i, tok, eb));
    (void)pthread_mutex_lock(&c->mu);
    if (c->token != NULL) {
        torii_secure_free(c->token, strlen(c->token));
    }
    c->token = torii_xstrdup(*tok);
    c->cur = i;
    (void)pthread_mutex_unlock(&c->mu);
out:
    return rc;
}

/* One endpoint, re-authenticating once when etcd refuses the token. */
static int client_try(struct fleet_client *c, size_t i, const char *path, const char *body,
                      struct client_buf *b, struct torii_errbuf *eb)
{
    char *tok = NULL;
    int rc = TORII_OK;

    for (int fresh = 0; fresh < 2; fresh++) {
        TORII_TRY(client_token(c, i, fresh, &tok, eb));
        b->len = 0;
        rc = client_post(c, i, path, body, tok, b, eb);
        if (tok != NULL) {
            torii_secure_free(tok, strlen(tok));
            tok = NULL;
        }
        if (rc != TORII_EPERM || c->conf->user == NULL) {
            break;
        }
    }
out:
    return rc;
}

static int client_run(struct fleet_client *c, const char *path, const char *body,
                      struct client_buf *b, struct torii_errbuf *eb)
{
    size_t n = json_array_size(c->conf->endpoints);
    size_t first;
    int rc = TORII_EAGAIN;

    (void)pthread_mutex_lock(&c->mu);
    first = c->cur;
    (void)pthread_mutex_unlock(&c->mu);
    for (size_t k = 0; k < n && rc == TORII_EAGAIN; k++) {
        size_t i = (first + k) % n;
        rc = client_try(c, i, path, body, b, eb);
        if (rc != TORII_EAGAIN) {
            (void)pthread_mutex_lock(&c->mu);
            if (c->cur != i && c->token != NULL) {
                torii_secure_free(c->token, strlen(c->token));
                c->token = NULL;
            }
            c->cur = i;
            (void)pthread_mutex_unlock(&c->mu);
        }
    }
    return rc;
}

int fleet_call(struct fleet_client *c, const char *path, const char *body, char **resp,
               size_t *resp_len, struct torii_errbuf *eb)
{
    struct client_buf b = {0};
    int rc = client_run(c, path, body, &b, eb);

    if (rc == TORII_OK) {
        *resp = b.p != NULL ? b.p : torii_xstrdup("");
        *resp_len = b.len;
        return TORII_OK;
    }
    if (b.p != NULL) {
        torii_secure_free(b.p, b.cap);
    }
    return rc;
}

int fleet_stream(struct fleet_client *c, const char *path, const char *body, fleet_line_cb cb,
                 void *arg, const atomic_int *stop, struct torii_errbuf *eb)
{
    struct client_buf b = {.cb = cb, .arg = arg, .stop = stop};
    int rc = client_run(c, path, body, &b, eb);

    if (b.p != NULL) {
        torii_secure_free(b.p, b.cap);
    }
    return rc;
}

int fleet_call_json(struct fleet_client *c, const char *path, json_t *req, char **resp,
                    size_t *resp_len, struct torii_errbuf *eb)
{
    char *body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    int rc;

    json_decref(req);
    if (body == NULL) {
        return torii_errf(eb, TORII_ENOMEM, "fleet: cannot encode a request to %s", path);
    }
    rc = fleet_call(c, path, body, resp, resp_len, eb);
    torii_secure_free(body, strlen(body));
    return rc;
}
