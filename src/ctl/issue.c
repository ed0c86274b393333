/* issue.c - the commands of `torii ctl` that make certificates: issue (the built-in PKI,
 * every field of the reference's "Create certificate" form) and letsencrypt (the ACME API:
 * an async order, then its job polled once a second until it ends or --timeout). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_int.h"
#include "torii/mem.h"

#define CTL_DAY_MS       86400000.0
#define CTL_LE_TIMEOUT_S 300L

long long ctl_now_ms(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

void ctl_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The PKI route: a CA given or not, a CA certificate asked or not. */
static char *ctl_issue_path(struct ctl *c, const struct ctl_args *a)
{
    const char *ca = ctl_arg(a, "ca");
    int sub = ctl_has(a, "ca-cert");
    char *e = NULL;
    size_t n = 0;
    char *p = NULL;

    if (ca == NULL) {
        return torii_xstrdup(sub ? "/api/pki/cas" : "/api/pki/certs");
    }
    e = ctl_escape(c, ca);
    n = strlen(e) + 32;
    p = torii_xmalloc(n);
    (void)snprintf(p, n, "/api/pki/cas/%s/%s", e, sub ? "cas" : "certs");
    free(e);
    return p;
}

static json_t *ctl_issue_body(struct ctl *c, const struct ctl_args *a)
{
    const char *kt = ctl_arg(a, "key-type");
    const char *digest = ctl_arg(a, "digest");
    int rsa = kt != NULL && strcmp(kt, "rsa") == 0;
    long size = ctl_num_opt(c, a, "key-size", rsa ? 2048 : 256);
    long days = ctl_num_opt(c, a, "days", 365);
    json_t *hosts = json_array();
    json_t *body = NULL;

    if (kt != NULL && !rsa && strcmp(kt, "ecdsa") != 0) {
        (void)fprintf(c->err, "torii ctl issue: --key-type must be ecdsa or rsa, got '%s'\n", kt);
        size = -1;
    }
    if (ctl_arg(a, "subject") == NULL) {
        (void)fprintf(c->err, "torii ctl issue: --subject DN is required (e.g. CN=app)\n");
        size = -1;
    }
    for (size_t i = 0; i < a->n_opt; i++) {
        if (strcmp(a->opt[i].name, "host") == 0) {
            (void)json_array_append_new(hosts, json_string(a->opt[i].value));
        }
    }
    if (size < 0 || days < 0) {
        json_decref(hosts);
        return NULL;
    }
    body = json_pack("{s:o,s:{s:s,s:I},s:s,s:b,s:b,s:b,s:f,s:s}", "hosts", hosts, "key", "algo",
                     rsa ? "rsa" : "ecdsa", "size", (json_int_t)size, "subject",
                     ctl_arg(a, "subject"), "client", ctl_has(a, "client"), "ca",
                     ctl_has(a, "ca-cert"), "includeAIA", ctl_has(a, "aia"), "duration",
                     (double)days * CTL_DAY_MS, "digestAlg", digest != NULL ? digest : "SHA-256");
    return body;
}

int ctl_cmd_issue(struct ctl *c, const struct ctl_args *a)
{
    const char *key_out = ctl_arg(a, "key-out");
    json_t *body = ctl_issue_body(c, a);
    char *path = ctl_issue_path(c, a);
    json_t *res = NULL;
    const char *key = NULL;
    int rc = TORII_CTL_EXIT_USAGE;

    if (body == NULL) {
        goto out;
    }
    rc = ctl_call_json(c, "POST", path, body, NULL, &res);
    if (rc != TORII_CTL_EXIT_OK || res == NULL) {
        goto out;
    }
    key = json_string_value(json_object_get(res, "privateKey"));
    if (key_out != NULL && key != NULL) {
        rc = ctl_write_private(c, key_out, key, strlen(key));
    }
    /* the generated key is shown once by the API: never on the terminal here */
    (void)json_object_set_new(res, "privateKey", json_string(""));
    (void)json_object_set_new(res, "privateKeyRedacted", json_true());
    ctl_print_json(c, res);
out:
    json_decref(res);
    json_decref(body);
    free(path);
    return rc;
}

/* Poll the ACME job until it ends (done: 0, failed: 4) or the deadline (4). */
static int ctl_le_wait(struct ctl *c, const char *job, long timeout_s)
{
    char *e = ctl_escape(c, job);
    size_t n = strlen(e) + 32;
    char *path = torii_xmalloc(n);
    long long deadline = ctl_now_ms() + (long long)timeout_s * 1000;
    json_t *j = NULL;
    int rc = TORII_CTL_EXIT_API;

    (void)snprintf(path, n, "/api/pki/acme/jobs/%s", e);
    while (ctl_now_ms() < deadline) {
        const char *st = NULL;

        json_decref(j);
        j = NULL;
        rc = ctl_call(c, "GET", path, NULL, NULL, 0, &j, NULL);
        if (rc != TORII_CTL_EXIT_OK) {
            goto out;
        }
        st = json_string_value(json_object_get(j, "state"));
        st = st != NULL ? st : json_string_value(json_object_get(j, "status"));
        if (st != NULL && (strcmp(st, "done") == 0 || strcmp(st, "valid") == 0)) {
            ctl_print_json(c, j);
            goto out;
        }
        if (json_object_get(j, "error") != NULL || (st != NULL && strcmp(st, "failed") == 0)) {
            ctl_print_json(c, j);
            (void)fprintf(c->err, "torii ctl letsencrypt: the order %s failed\n", job);
            rc = TORII_CTL_EXIT_API;
            goto out;
        }
        ctl_sleep_ms(1000);
    }
    (void)fprintf(c->err, "torii ctl letsencrypt: order %s still running after %ld s\n", job,
                  timeout_s);
    rc = TORII_CTL_EXIT_API;
out:
    json_decref(j);
    free(path);
    free(e);
    return rc;
}

int ctl_cmd_letsencrypt(struct ctl *c, const struct ctl_args *a)
{
    long timeout = ctl_num_opt(c, a, "timeout", CTL_LE_TIMEOUT_S);
    json_t *hosts = json_array();
    json_t *body = json_pack("{s:o}", "hosts", hosts);
    json_t *res = NULL;
    const char *job = NULL;
    int rc = TORII_CTL_EXIT_USAGE;

    for (size_t i = 0; i < a->n_pos; i++) {
        (void)json_array_append_new(hosts, json_string(a->pos[i]));
    }
    if (timeout < 0) {
        goto out;
    }
    rc = ctl_call_json(c, "POST", "/api/pki/certs/_letsencrypt?async=true", body, NULL, &res);
    if (rc != TORII_CTL_EXIT_OK) {
        goto out;
    }
    job = json_string_value(json_object_get(res, "jobId"));
    job = job != NULL ? job : json_string_value(json_object_get(res, "id"));
    if (ctl_has(a, "no-wait") || job == NULL || json_object_get(res, "chain") != NULL) {
        ctl_print_json(c, res);
        goto out;
    }
    rc = ctl_le_wait(c, job, timeout);
out:
    json_decref(res);
    json_decref(body);
    return rc;
}
