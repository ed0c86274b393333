/* http.c - the admin API client of `torii ctl`: one libcurl easy handle, a bearer header
 * built for each request (wiped after), the X-Filtered-Count header read, the HTTP status
 * mapped to the documented exit codes. Files: bounded reads, private writes (0600). */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "ctl_int.h"
#include "torii/mem.h"

#define CTL_MAX_BODY  (64L * 1024 * 1024)
#define CTL_MAX_FILE  (16L * 1024 * 1024)
#define CTL_TIMEOUT_S 120L

void ctl_resp_clear(struct ctl_resp *r)
{
    if (r->body != NULL) {
        torii_secure_free(r->body, r->cap);
    }
    memset(r, 0, sizeof(*r));
    r->filtered = -1;
}

static size_t ctl_on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct ctl_resp *r = arg;
    size_t n = size * nmemb;

    if (r->len + n > (size_t)CTL_MAX_BODY) {
        return 0; /* curl reports a write error */
    }
    if (r->body == NULL || r->len + n + 1 > r->cap) {
        size_t cap = r->cap > 0 ? r->cap : 16384;
        char *grown = NULL;

        while (cap < r->len + n + 1) {
            cap *= 2;
        }
        grown = torii_xmalloc(cap); /* not realloc: the old copy may hold a key, wipe it */
        if (r->body != NULL) {
            memcpy(grown, r->body, r->len);
            torii_secure_free(r->body, r->cap);
        }
        r->body = grown;
        r->cap = cap;
    }
    memcpy(r->body + r->len, ptr, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static size_t ctl_on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
    static const char name[] = "X-Filtered-Count:";
    struct ctl_resp *r = arg;
    size_t n = size * nmemb;

    if (n > sizeof(name) && strncasecmp(ptr, name, sizeof(name) - 1) == 0) {
        r->filtered = strtol(ptr + sizeof(name) - 1, NULL, 10);
    }
    return n;
}

static struct curl_slist *ctl_headers(const struct ctl *c, const char *ctype)
{
    struct curl_slist *h = NULL;
    char *auth = NULL;
    size_t alen = 0;

    if (ctype != NULL) {
        char buf[128];
        (void)snprintf(buf, sizeof(buf), "Content-Type: %s", ctype);
        h = curl_slist_append(h, buf);
    } else {
        h = curl_slist_append(h, "Content-Type:"); /* not curl's form type for a bare POST */
    }
    h = curl_slist_append(h, "Expect:");
    if (c->token != NULL) {
        alen = strlen(c->token) + 32;
        auth = torii_xmalloc(alen);
        (void)snprintf(auth, alen, "Authorization: Bearer %s", c->token);
        h = curl_slist_append(h, auth);
        torii_secure_free(auth, alen);
    }
    return h;
}

static void ctl_headers_free(struct curl_slist *h)
{
    for (struct curl_slist *p = h; p != NULL; p = p->next) {
        OPENSSL_cleanse(p->data, strlen(p->data)); /* the bearer line; curl frees it */
    }
    curl_slist_free_all(h);
}

/* The length of path without its query string: messages never show a query (the password of
 * a .p12 import travels there). */
static int ctl_path_len(const char *path)
{
    return (int)strcspn(path, "?");
}

int ctl_request(struct ctl *c, const char *method, const char *path, const char *ctype,
                const void *body, size_t len, struct ctl_resp *r)
{
    CURL *h = c->curl;
    struct curl_slist *hdrs = ctl_headers(c, ctype);
    size_t ulen = strlen(c->url) + strlen(path) + 1;
    char *url = torii_xmalloc(ulen);
    CURLcode cc;
    int rc = TORII_CTL_EXIT_OK;

    ctl_resp_clear(r);
    (void)snprintf(url, ulen, "%s%s", c->url, path);
    curl_easy_reset(h);
    (void)curl_easy_setopt(h, CURLOPT_URL, url);
    (void)curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    (void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    (void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ctl_on_body);
    (void)curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    (void)curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, ctl_on_header);
    (void)curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    (void)curl_easy_setopt(h, CURLOPT_TIMEOUT, CTL_TIMEOUT_S);
    (void)curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    (void)curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0
        || strcmp(method, "PUT") == 0) {
        (void)curl_easy_setopt(h, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        (void)curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        (void)fprintf(c->err, "torii ctl: %s %s%.*s: %s\n", method, c->url, ctl_path_len(path),
                      path, curl_easy_strerror(cc));
        rc = TORII_CTL_EXIT_CONNECT;
        goto out;
    }
    (void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
out:
    ctl_headers_free(hdrs);
    free(url);
    return rc;
}

static int ctl_status_exit(long status)
{
    if (status >= 200 && status < 300) {
        return TORII_CTL_EXIT_OK;
    }
    if (status == 404) {
        return TORII_CTL_EXIT_NOT_FOUND;
    }
    if (status == 401 || status == 403 || status == 429) {
        return TORII_CTL_EXIT_AUTH;
    }
    return TORII_CTL_EXIT_API;
}

int ctl_call(struct ctl *c, const char *method, const char *path, const char *ctype,
             const void *body, size_t len, json_t **json, long *filtered)
{
    struct ctl_resp r = {.filtered = -1};
    json_error_t jerr;
    int rc = ctl_request(c, method, path, ctype, body, len, &r);
    json_t *v = NULL;

    if (rc != TORII_CTL_EXIT_OK) {
        goto out;
    }
    v = r.len > 0 ? json_loadb(r.body, r.len, 0, &jerr) : NULL;
    rc = ctl_status_exit(r.status);
    if (rc != TORII_CTL_EXIT_OK) {
        const char *e = json_string_value(json_object_get(v, "error"));
        (void)fprintf(c->err, "torii ctl: %s %.*s: %ld %s\n", method, ctl_path_len(path), path,
                      r.status, e != NULL ? e : "(no error message)");
        goto out;
    }
    if (r.len > 0 && v == NULL) {
        (void)fprintf(c->err, "torii ctl: %s %.*s: the answer is not JSON (%s)\n", method,
                      ctl_path_len(path), path, jerr.text);
        rc = TORII_CTL_EXIT_API;
        goto out;
    }
    if (filtered != NULL) {
        *filtered = r.filtered;
    }
    if (json != NULL) {
        *json = v;
        v = NULL;
    }
out:
    json_decref(v);
    ctl_resp_clear(&r);
    return rc;
}

int ctl_call_json(struct ctl *c, const char *method, const char *path, const json_t *body,
                  const char *ctype, json_t **json)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    int rc = TORII_CTL_EXIT_OK;

    if (body != NULL && text == NULL) {
        (void)fprintf(c->err, "torii ctl: out of memory\n");
        return TORII_CTL_EXIT_API;
    }
    rc = ctl_call(c, method, path,
                  body != NULL ? (ctype != NULL ? ctype : "application/json") : NULL, text,
                  text != NULL ? strlen(text) : 0, json, NULL);
    if (text != NULL) {
        torii_secure_free(text, strlen(text) + 1);
    }
    return rc;
}

char *ctl_escape(struct ctl *c, const char *s)
{
    char *e = curl_easy_escape(c->curl, s, 0);
    char *copy = torii_xstrdup(e != NULL ? e : "");

    curl_free(e);
    return copy;
}

void ctl_print_json(struct ctl *c, const json_t *v)
{
    (void)json_dumpf(v, c->out, JSON_INDENT(2) | JSON_ENCODE_ANY);
    (void)fputc('\n', c->out);
}

int ctl_read_file(struct ctl *c, const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;

    if (f == NULL) {
        (void)fprintf(c->err, "torii ctl: cannot read %s: %s\n", path, torii_errno_text(errno).s);
        return TORII_CTL_EXIT_USAGE;
    }
    buf = torii_xmalloc((size_t)CTL_MAX_FILE + 1);
    n = fread(buf, 1, (size_t)CTL_MAX_FILE + 1, f);
    (void)fclose(f);
    if (n > (size_t)CTL_MAX_FILE) {
        torii_secure_free(buf, (size_t)CTL_MAX_FILE + 1);
        (void)fprintf(c->err, "torii ctl: %s is larger than 16 MiB\n", path);
        return TORII_CTL_EXIT_USAGE;
    }
    buf = torii_xrealloc(buf, n + 1);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return TORII_CTL_EXIT_OK;
}

int ctl_write_private(struct ctl *c, const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ssize_t w = -1;

    if (fd < 0 || fchmod(fd, 0600) != 0 || (w = write(fd, data, len)) != (ssize_t)len
        || close(fd) != 0) {
        (void)fprintf(c->err, "torii ctl: cannot write %s: %s\n", path, torii_errno_text(errno).s);
        if (fd >= 0 && w != (ssize_t)len) {
            (void)close(fd);
        }
        return TORII_CTL_EXIT_USAGE;
    }
    return TORII_CTL_EXIT_OK;
}
