/* net.c - HTTP transport of the ACME client on libcurl: one easy handle per client (kept
 * connections), the CA trusted from acme.ca_bundle (else the system store), bounded
 * answers, and the response headers the protocol reads (Location, Replay-Nonce,
 * Retry-After, Link, Content-Type). ACME thread only. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "acme_int.h"
#include "torii/mem.h"

void acme_resp_clear(struct acme_resp *r)
{
    free(r->body);
    free(r->location);
    free(r->nonce);
    free(r->content_type);
    free(r->up);
    for (size_t i = 0; i < r->n_links; i++) {
        free(r->links[i]);
    }
    memset(r, 0, sizeof(*r));
    r->retry_after_s = -1;
}

int acme_net_open(struct acme_client *c, struct torii_errbuf *eb)
{
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        return torii_errf(eb, TORII_ENOMEM, "acme: cannot create a curl handle");
    }
    return TORII_OK;
}

void acme_net_close(struct acme_client *c)
{
    if (c->curl != NULL) {
        curl_easy_cleanup(c->curl);
        c->curl = NULL;
    }
}

static size_t acme_net_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct acme_resp *r = arg;
    size_t n = size * nmemb;

    if (r->len + n > ACME_MAX_BODY) {
        return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
    }
    r->body = torii_xrealloc(r->body, r->len + n + 1);
    memcpy(r->body + r->len, ptr, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/* The value of header line `line` (len bytes) when its name is `name`, trimmed; else NULL. */
static char *acme_net_hval(const char *line, size_t len, const char *name)
{
    size_t nl = strlen(name);
    size_t b;
    size_t e = len;

    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0) {
        return NULL;
    }
    b = nl + 1;
    while (b < e && (line[b] == ' ' || line[b] == '\t')) {
        b++;
    }
    while (e > b && isspace((unsigned char)line[e - 1])) {
        e--;
    }
    return torii_xstrndup(line + b, e - b);
}

/* Link: <url>;rel="alternate" (one link per header line, as CAs send them). */
static void acme_net_link(struct acme_resp *r, char *v)
{
    char *lt = strchr(v, '<');
    char *gt = lt != NULL ? strchr(lt, '>') : NULL;
    const char *rel = gt != NULL ? strstr(gt, "rel=") : NULL;

    if (rel == NULL) {
        return;
    }
    *gt = '\0';
    rel += 4;
    if ((strncmp(rel, "\"alternate\"", 11) == 0 || strncmp(rel, "alternate", 9) == 0)
        && r->n_links < ACME_MAX_LINKS) {
        r->links[r->n_links++] = torii_xstrdup(lt + 1);
    } else if ((strncmp(rel, "\"up\"", 4) == 0 || strncmp(rel, "up", 2) == 0) && r->up == NULL) {
        r->up = torii_xstrdup(lt + 1);
    }
}

/* Retry-After: delay-seconds or an HTTP-date (RFC 9110 10.2.3). */
static long acme_net_retry_after(const char *v)
{
    char *end = NULL;
    long n = strtol(v, &end, 10);
    time_t t;

    if (end != v && *end == '\0') {
        return n < 0 ? 0 : n;
    }
    t = curl_getdate(v, NULL);
    if (t < 0) {
        return -1;
    }
    n = (long)(t - time(NULL));
    return n < 0 ? 0 : n;
}

size_t acme_net_header(char *line, size_t size, size_t nmemb, void *arg)
{
    struct acme_resp *r = arg;
    size_t n = size * nmemb;
    char *v;

    if ((v = acme_net_hval(line, n, "Location")) != NULL) {
        free(r->location);
        r->location = v;
    } else if ((v = acme_net_hval(line, n, "Replay-Nonce")) != NULL) {
        free(r->nonce);
        r->nonce = v;
    } else if ((v = acme_net_hval(line, n, "Content-Type")) != NULL) {
        free(r->content_type);
        r->content_type = v;
    } else if ((v = acme_net_hval(line, n, "Retry-After")) != NULL) {
        r->retry_after_s = acme_net_retry_after(v);
        free(v);
    } else if ((v = acme_net_hval(line, n, "Link")) != NULL) {
        acme_net_link(r, v);
        free(v);
    }
    return n;
}

/* CURLOPT_XFERINFOFUNCTION: a stop request aborts the transfer (a CA that never answers
 * must not hold the shutdown for the whole timeout). */
static int acme_net_progress(void *arg, curl_off_t dlt, curl_off_t dln, curl_off_t ult,
                             curl_off_t uln)
{
    const struct acme_client *c = arg;

    (void)dlt;
    (void)dln;
    (void)ult;
    (void)uln;
    return c->stop != NULL && __atomic_load_n(c->stop, __ATOMIC_RELAXED) != 0;
}

static void acme_net_setopts(struct acme_client *c, const char *url, struct acme_resp *r)
{
    curl_easy_reset(c->curl);
    (void)curl_easy_setopt(c->curl, CURLOPT_URL, url);
    (void)curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    (void)curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    (void)curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
    (void)curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, (long)ACME_HTTP_TIMEOUT);
    (void)curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "torii-acme/" TORII_VERSION);
    (void)curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, acme_net_body);
    (void)curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, r);
    (void)curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, acme_net_header);
    (void)curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, r);
    (void)curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, acme_net_progress);
    (void)curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
    (void)curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
    if (c->conf->ca_bundle != NULL) {
        (void)curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->conf->ca_bundle);
    }
}

int acme_net_do(struct acme_client *c, const char *url, const char *body, int head,
                struct acme_resp *r, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct curl_slist *hdrs = NULL;
    CURLcode cc;

    acme_resp_clear(r);
    acme_net_setopts(c, url, r);
    if (head) {
        (void)curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
    } else if (body != NULL) {
        hdrs = curl_slist_append(NULL, "Content-Type: application/jose+json");
        TORII_ENSURE(hdrs != NULL, TORII_ENOMEM);
        (void)curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
        (void)curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
    }
    cc = curl_easy_perform(c->curl);
    TORII_ENSURE(cc == CURLE_OK,
                 torii_errf(eb, TORII_EIO, "acme: %s: %s", url,
                            cc == CURLE_WRITE_ERROR           ? "answer too large"
                            : cc == CURLE_ABORTED_BY_CALLBACK ? "stopping"
                                                              : curl_easy_strerror(cc)));
    (void)curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->body == NULL) {
        r->body = torii_xstrdup("");
    }
out:
    curl_slist_free_all(hdrs);
    return rc;
}
