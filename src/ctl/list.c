/* list.c - `torii ctl list` (a table, or the API's JSON with --json; filters map to the
 * query parameters of GET /api/certificates) and `torii ctl watch` (the list polled every
 * --interval seconds; one JSON line per added, changed or removed certificate). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "ctl_int.h"
#include "torii/mem.h"

#define CTL_DAY_MS      86400000LL
#define CTL_ALMOST_DAYS 30
#define CTL_QUERY_MAX   4096

/* Badges as the web page shows them (docs/ui.md): flag badges and the expiry ones. */
static const char *const ctl_flag_badges[] = {"ca",          "client",    "keypair", "selfSigned",
                                              "letsEncrypt", "autoRenew", "exposed", "revoked"};

struct ctl_query {
    char buf[CTL_QUERY_MAX];
    size_t len;
    int overflow;
};

static void ctl_q_add(struct ctl *c, struct ctl_query *q, const char *k, const char *v)
{
    char *ek = ctl_escape(c, k);
    char *ev = ctl_escape(c, v);
    int n = snprintf(q->buf + q->len, sizeof(q->buf) - q->len, "%c%s=%s", q->len == 0 ? '?' : '&',
                     ek, ev);

    if (n < 0 || (size_t)n >= sizeof(q->buf) - q->len) {
        q->overflow = 1;
    } else {
        q->len += (size_t)n;
    }
    free(ek);
    free(ev);
}

static int ctl_q_badge(struct ctl *c, struct ctl_query *q, const char *b, long long now)
{
    char t[32];

    if (b == NULL) {
        (void)fprintf(c->err, "torii ctl list: --badge needs a value\n");
        return TORII_CTL_EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof(ctl_flag_badges) / sizeof(ctl_flag_badges[0]); i++) {
        if (strcmp(b, ctl_flag_badges[i]) == 0) {
            (void)snprintf(t, sizeof(t), "filter.%s", b);
            ctl_q_add(c, q, t, "true");
            return TORII_CTL_EXIT_OK;
        }
    }
    if (strcmp(b, "expired") != 0 && strcmp(b, "almostExpired") != 0) {
        (void)fprintf(c->err,
                      "torii ctl list: unknown badge '%s' (ca, client, keypair, "
                      "selfSigned, letsEncrypt, autoRenew, exposed, revoked, expired, "
                      "almostExpired)\n",
                      b);
        return TORII_CTL_EXIT_USAGE;
    }
    ctl_q_add(c, q, "filter.revoked", "false");
    (void)snprintf(t, sizeof(t), "%lld", now);
    ctl_q_add(c, q, strcmp(b, "expired") == 0 ? "expiresBefore" : "expiresAfter", t);
    if (strcmp(b, "almostExpired") == 0) {
        (void)snprintf(t, sizeof(t), "%lld", now + CTL_ALMOST_DAYS * CTL_DAY_MS);
        ctl_q_add(c, q, "expiresBefore", t);
    }
    return TORII_CTL_EXIT_OK;
}

/* --filter FIELD=VALUE, --badge B, --expiring-within DAYS. */
static int ctl_q_filters(struct ctl *c, const struct ctl_args *a, struct ctl_query *q,
                         long long now)
{
    char t[300];
    long days = ctl_num_opt(c, a, "expiring-within", 0);

    for (size_t i = 0; i < a->n_opt; i++) {
        const char *v = a->opt[i].value;
        const char *eq = v != NULL ? strchr(v, '=') : NULL;

        if (strcmp(a->opt[i].name, "badge") == 0 && ctl_q_badge(c, q, v, now) != 0) {
            return TORII_CTL_EXIT_USAGE;
        }
        if (strcmp(a->opt[i].name, "filter") != 0) {
            continue;
        }
        if (eq == NULL || eq == v || (size_t)(eq - v) > 200) {
            (void)fprintf(c->err, "torii ctl list: --filter wants FIELD=VALUE, got '%s'\n", v);
            return TORII_CTL_EXIT_USAGE;
        }
        (void)snprintf(t, sizeof(t), "filter.%.*s", (int)(eq - v), v);
        ctl_q_add(c, q, t, eq + 1);
    }
    if (days < 0) {
        return TORII_CTL_EXIT_USAGE;
    }
    if (days > 0) {
        (void)snprintf(t, sizeof(t), "%lld", now);
        ctl_q_add(c, q, "expiresAfter", t);
        (void)snprintf(t, sizeof(t), "%lld", now + days * CTL_DAY_MS);
        ctl_q_add(c, q, "expiresBefore", t);
    }
    return TORII_CTL_EXIT_OK;
}

static int ctl_list_query(struct ctl *c, const struct ctl_args *a, struct ctl_query *q)
{
    const char *sort = ctl_arg(a, "sort");
    char t[300];
    long page = ctl_num_opt(c, a, "page", 1);
    long size = ctl_num_opt(c, a, "page-size", 0);
    const char *colon = sort != NULL ? strrchr(sort, ':') : NULL;

    memset(q, 0, sizeof(*q));
    if (page < 0 || size < 0 || ctl_q_filters(c, a, q, ctl_now_ms()) != TORII_CTL_EXIT_OK) {
        return TORII_CTL_EXIT_USAGE;
    }
    if (ctl_has(a, "page") && size == 0) {
        (void)fprintf(c->err, "torii ctl list: --page needs --page-size\n");
        return TORII_CTL_EXIT_USAGE;
    }
    if (colon != NULL && strcmp(colon, ":desc") != 0 && strcmp(colon, ":asc") != 0) {
        (void)fprintf(c->err, "torii ctl list: --sort wants FIELD, FIELD:asc or FIELD:desc\n");
        return TORII_CTL_EXIT_USAGE;
    }
    (void)snprintf(t, sizeof(t), "%.*s:%s", (int)(colon != NULL ? colon - sort : 200),
                   sort != NULL ? sort : "to", colon != NULL && colon[1] == 'd' ? "false" : "true");
    ctl_q_add(c, q, "sorted", t);
    if (ctl_arg(a, "search") != NULL) {
        ctl_q_add(c, q, "search", ctl_arg(a, "search"));
    }
    if (size > 0) {
        (void)snprintf(t, sizeof(t), "%ld", page);
        ctl_q_add(c, q, "page", t);
        (void)snprintf(t, sizeof(t), "%ld", size);
        ctl_q_add(c, q, "pageSize", t);
    }
    if (q->overflow) {
        (void)fprintf(c->err, "torii ctl list: the filters are too long\n");
        return TORII_CTL_EXIT_USAGE;
    }
    return TORII_CTL_EXIT_OK;
}

static void ctl_row(struct ctl *c, const json_t *e, long long now)
{
    json_int_t to = (json_int_t)json_number_value(json_object_get(e, "to"));
    time_t secs = (time_t)(to / 1000);
    struct tm tm;
    char date[16] = "-";
    char flags[160] = "";

    if (gmtime_r(&secs, &tm) != NULL) {
        (void)strftime(date, sizeof(date), "%Y-%m-%d", &tm);
    }
    for (size_t i = 0; i < sizeof(ctl_flag_badges) / sizeof(ctl_flag_badges[0]); i++) {
        if (json_is_true(json_object_get(e, ctl_flag_badges[i]))) {
            (void)strncat(flags, ctl_flag_badges[i], sizeof(flags) - strlen(flags) - 2);
            (void)strncat(flags, ",", sizeof(flags) - strlen(flags) - 1);
        }
    }
    if (flags[0] != '\0') {
        flags[strlen(flags) - 1] = '\0';
    }
    (void)fprintf(c->out, "%-40s %-32s %-10s %6lld %s\n",
                  json_string_value(json_object_get(e, "id")),
                  json_string_value(json_object_get(e, "domain")), date,
                  (long long)((to - now) / CTL_DAY_MS), flags[0] != '\0' ? flags : "-");
}

int ctl_cmd_list(struct ctl *c, const struct ctl_args *a)
{
    struct ctl_query q;
    char path[CTL_QUERY_MAX + 32];
    json_t *res = NULL;
    long matched = -1;
    size_t i;
    json_t *e;
    int rc = ctl_list_query(c, a, &q);

    if (rc != TORII_CTL_EXIT_OK) {
        return rc;
    }
    (void)snprintf(path, sizeof(path), "/api/certificates%s", q.buf);
    rc = ctl_call(c, "GET", path, NULL, NULL, 0, &res, &matched);
    if (rc != TORII_CTL_EXIT_OK) {
        goto out;
    }
    (void)fprintf(c->err, "%zu shown, %ld match\n", json_array_size(res), matched);
    if (ctl_has(a, "json")) {
        ctl_print_json(c, res);
        goto out;
    }
    (void)fprintf(c->out, "%-40s %-32s %-10s %6s %s\n", "ID", "DOMAIN", "EXPIRES", "DAYS", "FLAGS");
    json_array_foreach (res, i, e) {
        ctl_row(c, e, ctl_now_ms());
    }
out:
    json_decref(res);
    return rc;
}

/* ---- watch ---- */

/* The current list as {id: compact entity text} (redacted by the API). */
static int ctl_snapshot(struct ctl *c, json_t **out)
{
    json_t *res = NULL;
    json_t *snap = NULL;
    size_t i;
    json_t *e;
    int rc = ctl_call(c, "GET", "/api/certificates", NULL, NULL, 0, &res, NULL);

    if (rc != TORII_CTL_EXIT_OK) {
        return rc;
    }
    snap = json_object();
    json_array_foreach (res, i, e) {
        const char *id = json_string_value(json_object_get(e, "id"));
        char *text = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);

        if (id != NULL && text != NULL) {
            (void)json_object_set_new(snap, id, json_string(text));
        }
        free(text);
    }
    json_decref(res);
    *out = snap;
    return TORII_CTL_EXIT_OK;
}

static void ctl_event(struct ctl *c, const char *what, const char *id, size_t *events)
{
    json_t *ev =
        json_pack("{s:s,s:s,s:I}", "event", what, "id", id, "time", (json_int_t)ctl_now_ms());

    (void)json_dumpf(ev, c->out, JSON_COMPACT);
    (void)fputc('\n', c->out);
    (void)fflush(c->out);
    json_decref(ev);
    (*events)++;
}

/* Events from old to now; returns how many were printed. */
static size_t ctl_diff(struct ctl *c, json_t *old, json_t *now)
{
    const char *id;
    json_t *v;
    size_t n = 0;

    json_object_foreach (now, id, v) {
        const json_t *was = json_object_get(old, id);
        if (was == NULL) {
            ctl_event(c, "added", id, &n);
        } else if (!json_equal(was, v)) {
            ctl_event(c, "changed", id, &n);
        }
    }
    json_object_foreach (old, id, v) {
        if (json_object_get(now, id) == NULL) {
            ctl_event(c, "removed", id, &n);
        }
    }
    return n;
}

int ctl_cmd_watch(struct ctl *c, const struct ctl_args *a)
{
    long interval = ctl_num_opt(c, a, "interval", 2);
    long count = ctl_num_opt(c, a, "count", 0);
    long timeout = ctl_num_opt(c, a, "timeout", 0);
    long long deadline = timeout > 0 ? ctl_now_ms() + (long long)timeout * 1000 : 0;
    json_t *old = NULL;
    json_t *now = NULL;
    size_t events = 0;
    int rc = TORII_CTL_EXIT_USAGE;

    if (interval < 0 || count < 0 || timeout < 0) {
        return rc;
    }
    rc = ctl_snapshot(c, &old);
    if (rc == TORII_CTL_EXIT_OK) {
        (void)fprintf(c->err, "watching %zu certificates\n", json_object_size(old));
        (void)fflush(c->err);
    }
    /* until --count events or --timeout seconds (both 0: until interrupted) */
    while (rc == TORII_CTL_EXIT_OK && (count == 0 || events < (size_t)count)
           && (deadline == 0 || ctl_now_ms() < deadline)) {
        ctl_sleep_ms(interval * 1000);
        rc = ctl_snapshot(c, &now);
        if (rc == TORII_CTL_EXIT_OK) {
            events += ctl_diff(c, old, now);
            json_decref(old);
            old = now;
            now = NULL;
        }
    }
    json_decref(old);
    return rc;
}
