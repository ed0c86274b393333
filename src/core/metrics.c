/* metrics.c - sharded lock-free counters and the Prometheus text writer. */
#include "torii/metrics.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "torii/mem.h"

#define METRICS_SHARDS 32

/* One shard per group of threads, aligned so two shards never share a cache line. */
struct metrics_shard {
    _Alignas(64) _Atomic int64_t v[TORII_METRIC_COUNT];
};

/* Written by any thread with relaxed atomic adds; read by the admin thread (sums). */
static struct metrics_shard metrics_shards[METRICS_SHARDS];
/* Next shard to hand out; any thread. */
static _Atomic unsigned metrics_next_shard;
/* This thread's shard + 1 (0 = not picked yet); owned by its thread. */
static _Thread_local unsigned metrics_my_shard;

static struct metrics_shard *metrics_shard(void)
{
    if (metrics_my_shard == 0) {
        metrics_my_shard =
            atomic_fetch_add_explicit(&metrics_next_shard, 1, memory_order_relaxed) % METRICS_SHARDS
            + 1;
    }
    return &metrics_shards[metrics_my_shard - 1];
}

void torii_metrics_add(enum torii_metric m, int64_t n)
{
    if ((unsigned)m >= TORII_METRIC_COUNT) {
        return;
    }
    atomic_fetch_add_explicit(&metrics_shard()->v[m], n, memory_order_relaxed);
}

void torii_metrics_inc(enum torii_metric m)
{
    torii_metrics_add(m, 1);
}

void torii_metrics_max(enum torii_metric m, int64_t v)
{
    _Atomic int64_t *slot;
    int64_t cur;

    if ((unsigned)m >= TORII_METRIC_COUNT) {
        return;
    }
    slot = &metrics_shard()->v[m];
    cur = atomic_load_explicit(slot, memory_order_relaxed);
    /* Only this thread's group writes the shard: the loop retries at most a few times. */
    while (v > cur
           && !atomic_compare_exchange_weak_explicit(slot, &cur, v, memory_order_relaxed,
                                                     memory_order_relaxed)) {
    }
}

int64_t torii_metrics_get(enum torii_metric m)
{
    int64_t sum = 0;
    int64_t max = 0;

    if ((unsigned)m >= TORII_METRIC_COUNT) {
        return 0;
    }
    for (size_t i = 0; i < METRICS_SHARDS; i++) {
        int64_t v = atomic_load_explicit(&metrics_shards[i].v[m], memory_order_relaxed);
        sum += v;
        max = v > max ? v : max;
    }
    return TORII_METRIC_IS_MAX(m) ? max : sum;
}

void torii_metrics_http_status(int status)
{
    if (status >= 100 && status < 600) {
        torii_metrics_inc((enum torii_metric)(TORII_METRIC_HTTP_1XX + (status / 100 - 1)));
    }
}

void torii_metrics_reset(void)
{
    for (size_t i = 0; i < METRICS_SHARDS; i++) {
        for (size_t m = 0; m < TORII_METRIC_COUNT; m++) {
            atomic_store_explicit(&metrics_shards[i].v[m], 0, memory_order_relaxed);
        }
    }
}

/* ---- Prometheus text format ---------------------------------------------------------- */

static void prom_reserve(struct torii_prom *p, size_t more)
{
    size_t cap = p->cap != 0 ? p->cap : 1024;

    if (p->len + more + 1 <= p->cap) {
        return;
    }
    while (cap < p->len + more + 1) {
        cap *= 2;
    }
    p->buf = torii_xrealloc(p->buf, cap);
    p->cap = cap;
}

static void prom_put(struct torii_prom *p, const char *s, size_t n)
{
    prom_reserve(p, n);
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
}

static void prom_puts(struct torii_prom *p, const char *s)
{
    prom_put(p, s, strlen(s));
}

static int prom_name_ok(const char *s, int colon_ok)
{
    if (s == NULL || s[0] == '\0') {
        return 0;
    }
    for (size_t i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        int alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) {
            return 0;
        }
    }
    return 1;
}

int torii_prom_family(struct torii_prom *p, const char *name, const char *type, const char *help)
{
    if (!prom_name_ok(name, 1)
        || (strcmp(type, "counter") != 0 && strcmp(type, "gauge") != 0
            && strcmp(type, "untyped") != 0)) {
        return TORII_EINVAL;
    }
    prom_puts(p, "# HELP ");
    prom_puts(p, name);
    prom_puts(p, " ");
    for (const char *h = help != NULL ? help : ""; *h != '\0'; h++) {
        if (*h == '\\') {
            prom_puts(p, "\\\\");
        } else if (*h == '\n') {
            prom_puts(p, "\\n");
        } else {
            prom_put(p, h, 1);
        }
    }
    prom_puts(p, "\n# TYPE ");
    prom_puts(p, name);
    prom_puts(p, " ");
    prom_puts(p, type);
    prom_puts(p, "\n");
    return TORII_OK;
}

static void prom_put_label_value(struct torii_prom *p, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\') {
            prom_puts(p, "\\\\");
        } else if (*v == '"') {
            prom_puts(p, "\\\"");
        } else if (*v == '\n') {
            prom_puts(p, "\\n");
        } else {
            prom_put(p, v, 1);
        }
    }
}

char *torii_prom_escape_label(const char *v, char *out, size_t outlen)
{
    struct torii_prom tmp = {0};
    size_t n;

    if (outlen == 0) {
        return out;
    }
    prom_put_label_value(&tmp, v);
    n = tmp.len < outlen - 1 ? tmp.len : outlen - 1;
    if (n > 0) {
        memcpy(out, tmp.buf, n);
    }
    out[n] = '\0';
    torii_prom_clear(&tmp);
    return out;
}

static void prom_put_value(struct torii_prom *p, double value)
{
    char num[64];

    if (isnan(value)) {
        prom_puts(p, "NaN");
        return;
    }
    if (isinf(value)) {
        prom_puts(p, value > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (value > -9.0e15 && value < 9.0e15 && (double)(long long)value == value) {
        (void)snprintf(num, sizeof(num), "%lld", (long long)value);
    } else {
        (void)snprintf(num, sizeof(num), "%.17g", value);
    }
    prom_puts(p, num);
}

int torii_prom_sample(struct torii_prom *p, const char *name, const char *const *labels,
                      size_t n_labels, double value)
{
    if (!prom_name_ok(name, 1)) {
        return TORII_EINVAL;
    }
    for (size_t i = 0; i < n_labels; i++) {
        const char *k = labels[2 * i];
        if (!prom_name_ok(k, 0) || strncmp(k, "__", 2) == 0 || labels[2 * i + 1] == NULL) {
            return TORII_EINVAL;
        }
    }
    prom_puts(p, name);
    if (n_labels > 0) {
        prom_puts(p, "{");
        for (size_t i = 0; i < n_labels; i++) {
            if (i > 0) {
                prom_puts(p, ",");
            }
            prom_puts(p, labels[2 * i]);
            prom_puts(p, "=\"");
            prom_put_label_value(p, labels[2 * i + 1]);
            prom_puts(p, "\"");
        }
        prom_puts(p, "}");
    }
    prom_puts(p, " ");
    prom_put_value(p, value);
    prom_puts(p, "\n");
    return TORII_OK;
}

/* A duration in microseconds, written in seconds exactly (no binary rounding): "0.000215". */
static void prom_put_us(struct torii_prom *p, int64_t us)
{
    char num[64];
    uint64_t mag = us < 0 ? (uint64_t)0 - (uint64_t)us : (uint64_t)us;
    uint64_t frac = mag % 1000000u;
    int n;

    if (frac == 0) {
        n = snprintf(num, sizeof(num), "%s%llu", us < 0 ? "-" : "",
                     (unsigned long long)(mag / 1000000u));
    } else {
        n = snprintf(num, sizeof(num), "%s%llu.%06llu", us < 0 ? "-" : "",
                     (unsigned long long)(mag / 1000000u), (unsigned long long)frac);
        while (n > 0 && num[n - 1] == '0') {
            num[--n] = '\0';
        }
    }
    TORII_ASSERT(n > 0 && (size_t)n < sizeof(num));
    prom_puts(p, num);
}

void torii_prom_counters(struct torii_prom *p)
{
    static const struct {
        const char *family;
        const char *label; /* k="v" (static, already valid) or "" */
        const char *type;
        const char *help;
    } defs[] = {
#define TORII_METRIC_DEF(id, fam, lbl, type, help) {fam, lbl, type, help},
        TORII_METRICS_LIST(TORII_METRIC_DEF)
#undef TORII_METRIC_DEF
    };
    const char *prev = "";

    for (size_t m = 0; m < TORII_METRIC_COUNT; m++) {
        if (strcmp(prev, defs[m].family) != 0) {
            TORII_ASSERT(torii_prom_family(p, defs[m].family, defs[m].type, defs[m].help)
                         == TORII_OK);
            prev = defs[m].family;
        }
        prom_puts(p, defs[m].family);
        if (defs[m].label[0] != '\0') {
            prom_puts(p, "{");
            prom_puts(p, defs[m].label);
            prom_puts(p, "}");
        }
        prom_puts(p, " ");
        if (TORII_METRIC_IN_US(m)) {
            prom_put_us(p, torii_metrics_get((enum torii_metric)m));
        } else {
            prom_put_value(p, (double)torii_metrics_get((enum torii_metric)m));
        }
        prom_puts(p, "\n");
    }
}

void torii_prom_append(struct torii_prom *p, const struct torii_prom *src)
{
    if (src->len > 0) {
        prom_put(p, src->buf, src->len);
    }
}

const char *torii_prom_text(const struct torii_prom *p, size_t *len)
{
    if (len != NULL) {
        *len = p->len;
    }
    return p->buf != NULL ? p->buf : "";
}

char *torii_prom_take(struct torii_prom *p, size_t *len)
{
    char *b = p->buf;

    if (len != NULL) {
        *len = p->len;
    }
    p->buf = NULL;
    p->len = 0;
    p->cap = 0;
    return b;
}

void torii_prom_clear(struct torii_prom *p)
{
    TORII_FREE(p->buf);
    p->len = 0;
    p->cap = 0;
}
