/* hosts.c - the names of an ACME request body ({"host": ...} or {"hosts": [...]}), checked
 * before an order is queued: DNS names only (a CA refuses IP literals over DNS identifiers),
 * an optional leading "*." label, lower-cased, no duplicates. Any thread. */
#include <ctype.h>
#include <string.h>

#include "acme_int.h"

#define ACME_HOSTS_MAX 100

/* RFC 1035 syntax (letters, digits, '-', labels 1..63, total <= 253), with an optional
 * leading "*."; not all digits and dots (an IPv4 literal). */
static int acme_host_ok(const char *h)
{
    size_t n = strlen(h);
    size_t label = 0;
    int alpha = 0;

    if (strncmp(h, "*.", 2) == 0) {
        h += 2;
        n -= 2;
    }
    if (n == 0 || n > 253 || h[0] == '.' || h[n - 1] == '.' || h[0] == '-') {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (ch == '.') {
            if (label == 0 || h[i - 1] == '-') {
                return 0;
            }
            label = 0;
            continue;
        }
        if (!isalnum(ch) && ch != '-') {
            return 0;
        }
        alpha |= isalpha(ch) || ch == '-';
        if (++label > 63) {
            return 0;
        }
    }
    return alpha;
}

static int acme_host_add(json_t *out, const char *h, struct torii_errbuf *eb)
{
    char low[256];
    size_t n = h != NULL ? strlen(h) : 0;
    size_t i;
    json_t *x;

    if (h == NULL || n >= sizeof(low) || !acme_host_ok(h)) {
        return torii_errf(eb, TORII_EINVAL,
                          "acme: \"%.64s\" is not a DNS name (\"*.\" allowed "
                          "as the first label)",
                          h != NULL ? h : "(not a string)");
    }
    for (i = 0; i <= n; i++) {
        low[i] = (char)tolower((unsigned char)h[i]);
    }
    json_array_foreach (out, i, x) {
        if (strcmp(json_string_value(x), low) == 0) {
            return torii_errf(eb, TORII_EINVAL, "acme: \"%.64s\" is listed twice", low);
        }
    }
    return json_array_append_new(out, json_string(low)) == 0 ? TORII_OK : TORII_ENOMEM;
}

/* The body is an object with exactly one of "host" and "hosts", nothing else. */
static int acme_hosts_shape(const json_t *body, struct torii_errbuf *eb)
{
    const char *k;
    const json_t *v;

    if (!json_is_object(body)) {
        return torii_errf(eb, TORII_EINVAL, "acme: expected a JSON object");
    }
    json_object_foreach ((json_t *)(uintptr_t)body, k, v) {
        if (strcmp(k, "host") != 0 && strcmp(k, "hosts") != 0) {
            return torii_errf(eb, TORII_EINVAL, "acme: unknown member \"%.64s\"", k);
        }
    }
    if ((json_object_get(body, "host") != NULL) == (json_object_get(body, "hosts") != NULL)) {
        return torii_errf(eb, TORII_EINVAL, "acme: give either \"host\" or \"hosts\"");
    }
    return TORII_OK;
}

/* Every name of "hosts" into res. */
static int acme_hosts_list(json_t *res, const json_t *hosts, struct torii_errbuf *eb)
{
    const json_t *v;
    size_t i;
    int rc = TORII_OK;

    if (!json_is_array(hosts) || json_array_size(hosts) == 0
        || json_array_size(hosts) > ACME_HOSTS_MAX) {
        return torii_errf(eb, TORII_EINVAL, "acme: \"hosts\": expected 1 to %d names",
                          ACME_HOSTS_MAX);
    }
    json_array_foreach (hosts, i, v) {
        rc = acme_host_add(res, json_string_value(v), eb);
        if (rc != TORII_OK) {
            break;
        }
    }
    return rc;
}

int torii_acme_hosts_parse(const json_t *body, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const json_t *host = json_object_get(body, "host");
    json_t *res = json_array();

    TORII_ENSURE(res != NULL, TORII_ENOMEM);
    TORII_TRY(acme_hosts_shape(body, eb));
    if (host != NULL) {
        TORII_TRY(acme_host_add(res, json_string_value(host), eb));
    } else {
        TORII_TRY(acme_hosts_list(res, json_object_get(body, "hosts"), eb));
    }
    *out = res;
    res = NULL;
out:
    json_decref(res);
    return rc;
}
