/* fuzz_acme.c - libFuzzer target: what the ACME client (src/acme) parses of a CA's answers,
 * without a network. Input: 1 selector byte (value modulo 5), then:
 *   0  a JSON body (directory, order, account) as acme_resp_json reads it, then as a problem
 *      document (RFC 7807/8555 6.7) turned into one sentence, with a Retry-After taken from
 *      the selector's upper bits (rate limits name the retry time);
 *   1  an authorization object: the challenge to answer among http-01, dns-01, tls-alpn-01
 *      (acme_authz_pick, and its error message naming what the CA offers);
 *   2  response header lines separated by '\n' as curl hands them over (Location,
 *      Replay-Nonce, Content-Type, Retry-After in seconds or as an HTTP-date, Link
 *      rel="alternate"/"up");
 *   3  an ARI renewalInfo object (RFC 9773 suggestedWindow);
 *   4  a PEM certificate chain download: the ARI certID of its leaf and the preferred-chain
 *      choice (acme_chain_pick with no alternates, so nothing is fetched). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "acme_int.h"

/* NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Results are kept here so that nothing is optimised away (and must-use results are used). */
static volatile int fuzz_sink;

static void fuzz_json(char *body, size_t len, long retry_after_s)
{
    struct torii_errbuf eb;
    struct acme_resp r = {.status = 400, .retry_after_s = -1};
    json_t *v = NULL;

    r.body = body;
    r.len = len;
    if (acme_resp_json(&r, "fuzz", &v, &eb) == TORII_OK) {
        fuzz_sink = acme_problem("fuzz", v, retry_after_s, &eb);
        json_decref(v);
    }
}

static void fuzz_authz(const char *body, size_t len)
{
    struct torii_conf_acme conf;
    struct acme_client c;
    struct torii_errbuf eb;
    const json_t *ch = NULL;
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);

    memset(&conf, 0, sizeof(conf));
    memset(&c, 0, sizeof(c));
    conf.challenges[0] = "http-01";
    conf.challenges[1] = "dns-01";
    conf.challenges[2] = "tls-alpn-01";
    conf.n_challenges = 3;
    c.conf = &conf;
    if (json_is_object(v)) {
        fuzz_sink = acme_authz_pick(&c, v, &ch, &eb);
    }
    json_decref(v);
}

static void fuzz_headers(const char *text, size_t len)
{
    struct acme_resp r = {.retry_after_s = -1};
    size_t b = 0;

    while (b < len) {
        const char *nl = memchr(text + b, '\n', len - b);
        size_t e = nl != NULL ? (size_t)(nl - text) + 1 : len;
        /* curl's lines are not NUL-terminated: a copy of exactly the line's bytes. */
        char *line = malloc(e - b);

        if (line == NULL) {
            break;
        }
        memcpy(line, text + b, e - b);
        fuzz_sink = (int)acme_net_header(line, 1, e - b, &r);
        free(line);
        b = e;
    }
    acme_resp_clear(&r);
}

static void fuzz_ari(const char *body, size_t len)
{
    json_t *v = json_loadb(body, len, 0, NULL);
    int due = 0;

    if (v != NULL) {
        fuzz_sink = torii_acme_ari_window_due(v, 1700000000000LL, &due);
    }
    json_decref(v);
}

static void fuzz_chain(char *pem, size_t len)
{
    struct torii_conf_acme conf;
    struct acme_client c;
    struct torii_errbuf eb;
    struct acme_resp r = {.status = 200, .retry_after_s = -1};
    static char preferred[] = "ISRG Root X1";
    char id[256];
    char *out = NULL;

    memset(&conf, 0, sizeof(conf));
    memset(&c, 0, sizeof(c));
    conf.preferred_chain = preferred;
    c.conf = &conf;
    fuzz_sink = torii_acme_ari_cert_id(pem, id, sizeof(id));
    r.body = pem;
    r.len = len;
    if (acme_chain_pick(&c, &r, &out, &eb) == TORII_OK) {
        free(out);
    }
}

/* NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;

    if (size < 1 || size > (size_t)64 * 1024) {
        return 0;
    }
    /* The CA's answer as net.c keeps it: NUL-terminated (and may hold NULs). */
    text = malloc(size);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    switch (data[0] % 5) {
    case 0:
        fuzz_json(text, size - 1, data[0] >= 128 ? (long)(data[0] >> 3) : -1);
        break;
    case 1:
        fuzz_authz(text, size - 1);
        break;
    case 2:
        fuzz_headers(text, size - 1);
        break;
    case 3:
        fuzz_ari(text, size - 1);
        break;
    default:
        fuzz_chain(text, size - 1);
        break;
    }
    free(text);
    return 0;
}
