/* metrics.h - process-wide counters that any thread bumps without a lock, and a writer for
 * the Prometheus text exposition format (version 0.0.4) used by the admin /metrics route.
 * Counters are sharded: each thread adds to its own shard (picked once per thread) with a
 * relaxed atomic add, and a reader sums the shards, so the hot path (accept, client hello)
 * never takes a lock nor bounces one cache line between workers.
 * Threads: torii_metrics_* any thread (lock-free); a struct torii_prom belongs to its caller.
 * Ownership: torii_prom_take hands the buffer to the caller (free()). */
#ifndef TORII_METRICS_H
#define TORII_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "torii/err.h"

/* X-macro: id, Prometheus family, label (k="v" or ""), type, help. Families sharing a name
 * must be adjacent (one HELP/TYPE per family). */
#define TORII_METRICS_LIST(X)                                                                      \
    X(TORII_METRIC_HANDSHAKE_OK, "torii_tls_handshakes_total", "outcome=\"ok\"", "counter",        \
      "TLS client hellos answered with a certificate, by outcome")                                 \
    X(TORII_METRIC_HANDSHAKE_FAILED, "torii_tls_handshakes_total", "outcome=\"failed\"",           \
      "counter", "")                                                                               \
    X(TORII_METRIC_CONN_ACCEPTED, "torii_connections_accepted_total", "", "counter",               \
      "Connections accepted on the public listeners")                                              \
    X(TORII_METRIC_CONN_OPEN, "torii_connections_open", "", "gauge",                               \
      "Connections currently open on the public listeners")                                        \
    X(TORII_METRIC_CONN_NO_REQUEST, "torii_connections_without_request_total", "", "counter",      \
      "Connections on the public listeners closed without any request (none, or empty lines)")     \
    X(TORII_METRIC_TUNNELS_OPEN, "torii_tunnels_open", "", "gauge",                                \
      "Upgraded connections (WebSocket...) currently tunnelled")                                   \
    X(TORII_METRIC_TUNNELS, "torii_tunnels_total", "", "counter",                                  \
      "Upgraded connections tunnelled since start")                                                \
    X(TORII_METRIC_TUNNELS_IDLE, "torii_tunnels_idle_closed_total", "", "counter",                 \
      "Tunnels closed by limits.tunnel_idle_timeout_ms")                                           \
    X(TORII_METRIC_HTTP_1XX, "torii_http_requests_total", "class=\"1xx\"", "counter",              \
      "HTTP requests answered, by status class")                                                   \
    X(TORII_METRIC_HTTP_2XX, "torii_http_requests_total", "class=\"2xx\"", "counter", "")          \
    X(TORII_METRIC_HTTP_3XX, "torii_http_requests_total", "class=\"3xx\"", "counter", "")          \
    X(TORII_METRIC_HTTP_4XX, "torii_http_requests_total", "class=\"4xx\"", "counter", "")          \
    X(TORII_METRIC_HTTP_5XX, "torii_http_requests_total", "class=\"5xx\"", "counter", "")          \
    X(TORII_METRIC_RENEWALS, "torii_certificate_renewals_total", "", "counter",                    \
      "Certificates renewed")                                                                      \
    X(TORII_METRIC_RENEWAL_FAILURES, "torii_certificate_renewal_failures_total", "", "counter",    \
      "Certificate renewals that failed (retried with backoff)")                                   \
    X(TORII_METRIC_ALERTS_RAISED, "torii_alerts_raised_total", "", "counter",                      \
      "Alerts raised (before exporter filtering)")                                                 \
    X(TORII_METRIC_ALERTS_SENT, "torii_alerts_sent_total", "", "counter",                          \
      "Alerts delivered by an exporter")                                                           \
    X(TORII_METRIC_ALERTS_DROPPED, "torii_alerts_dropped_total", "", "counter",                    \
      "Alerts dropped by an exporter (queue full or retries exhausted)")                           \
    X(TORII_METRIC_ALERTS_RETRIES, "torii_alerts_retries_total", "", "counter",                    \
      "Exporter delivery attempts that failed and were retried")                                   \
    X(TORII_METRIC_CERT_PARSE, "torii_tls_cert_parse_total", "", "counter",                        \
      "Certificates parsed (DER chain and private key) on their first use by a handshake")         \
    X(TORII_METRIC_CERT_PARSE_SECONDS, "torii_tls_cert_parse_seconds_total", "", "counter",        \
      "Time spent in those first-use parses")                                                      \
    X(TORII_METRIC_CERT_PARSE_MAX_SECONDS, "torii_tls_cert_parse_max_seconds", "", "gauge",        \
      "Longest single first-use parse since start")                                                \
    X(TORII_METRIC_CHAIN_PARSE, "torii_pki_chain_parses_total", "", "counter",                     \
      "PEM certificate chains parsed (the store write path parses each written chain once)")       \
    X(TORII_METRIC_H2_CONNECTIONS, "torii_h2_connections_total", "", "counter",                    \
      "Client connections that negotiated HTTP/2 (ALPN h2)")                                       \
    X(TORII_METRIC_H2_STREAMS, "torii_h2_streams_total", "", "counter",                            \
      "HTTP/2 request streams opened by clients")                                                  \
    X(TORII_METRIC_H2_RST_SENT, "torii_h2_frames_sent_total", "type=\"rst_stream\"", "counter",    \
      "HTTP/2 error frames sent to clients, by type")                                              \
    X(TORII_METRIC_H2_GOAWAY_SENT, "torii_h2_frames_sent_total", "type=\"goaway\"", "counter", "") \
    X(TORII_METRIC_H2_DEF_MALFORMED, "torii_h2_defences_total", "kind=\"malformed\"", "counter",   \
      "HTTP/2 defences triggered: malformed requests reset, header lists over the limit "          \
      "(431), rapid reset, CONTINUATION and control-frame floods (GOAWAY ENHANCE_YOUR_CALM), "     \
      "streams reset for a flow-control window kept closed")                                       \
    X(TORII_METRIC_H2_DEF_HEADER_LIST, "torii_h2_defences_total", "kind=\"header_list\"",          \
      "counter", "")                                                                               \
    X(TORII_METRIC_H2_DEF_RAPID_RESET, "torii_h2_defences_total", "kind=\"rapid_reset\"",          \
      "counter", "")                                                                               \
    X(TORII_METRIC_H2_DEF_CONTINUATION, "torii_h2_defences_total", "kind=\"continuation_flood\"",  \
      "counter", "")                                                                               \
    X(TORII_METRIC_H2_DEF_CONTROL_FLOOD, "torii_h2_defences_total", "kind=\"control_flood\"",      \
      "counter", "")                                                                               \
    X(TORII_METRIC_H2_DEF_SLOW_READER, "torii_h2_defences_total", "kind=\"slow_reader\"",          \
      "counter", "")

enum torii_metric {
#define TORII_METRIC_ENUM(id, fam, lbl, type, help) id,
    TORII_METRICS_LIST(TORII_METRIC_ENUM)
#undef TORII_METRIC_ENUM
        TORII_METRIC_COUNT
};

/* Metrics recorded in microseconds and written in seconds (their families end in _seconds or
 * _seconds_total, Prometheus base units): add a duration in microseconds. */
#define TORII_METRIC_IN_US(m)                                                                      \
    ((m) == TORII_METRIC_CERT_PARSE_SECONDS || (m) == TORII_METRIC_CERT_PARSE_MAX_SECONDS)
/* Metrics holding a maximum (set with torii_metrics_max; read as the largest shard) rather than
 * a sum. */
#define TORII_METRIC_IS_MAX(m) ((m) == TORII_METRIC_CERT_PARSE_MAX_SECONDS)

/** Add n (may be negative for gauges) to metric m. Lock-free; any thread. */
void torii_metrics_add(enum torii_metric m, int64_t n);
/** Add one. */
void torii_metrics_inc(enum torii_metric m);
/** Raise metric m (a TORII_METRIC_IS_MAX one) to v if v is larger: a compare-exchange loop on
 * this thread's shard, no lock, no allocation. Any thread. */
void torii_metrics_max(enum torii_metric m, int64_t v);
/** Current value: the sum over the shards, or their maximum for a TORII_METRIC_IS_MAX metric
 * (a racy but consistent-enough snapshot). In microseconds for a TORII_METRIC_IN_US one. */
int64_t torii_metrics_get(enum torii_metric m);
/** Count one HTTP response by its status class (100..599; anything else is ignored). */
void torii_metrics_http_status(int status);
/** Zero every counter (tests only; not atomic with respect to concurrent adds). */
void torii_metrics_reset(void);

/* ---- Prometheus text format ---- */

/** A growing text buffer; zero-initialize it. */
struct torii_prom {
    char *buf;
    size_t len;
    size_t cap;
};

/** "# HELP name help\n# TYPE name type\n". help is escaped (backslash, newline). name must
 * match [a-zA-Z_:][a-zA-Z0-9_:]* and type be counter|gauge|untyped (TORII_EINVAL, nothing
 * written, otherwise). Call once per family, before its samples. */
int torii_prom_family(struct torii_prom *p, const char *name, const char *type, const char *help)
    TORII_MUST_USE;

/** One sample "name{k1="v1",...} value\n". labels holds n_labels (key, value) pairs, i.e.
 * 2*n_labels strings; keys must match [a-zA-Z_][a-zA-Z0-9_]* and not start with "__";
 * values are escaped (\\, \", \n). value is written as an integer when it is one, else with
 * enough digits to round-trip; NaN/Inf as NaN, +Inf, -Inf. TORII_EINVAL (nothing written)
 * for a bad name or key. */
int torii_prom_sample(struct torii_prom *p, const char *name, const char *const *labels,
                      size_t n_labels, double value) TORII_MUST_USE;

/** Every built-in counter of TORII_METRICS_LIST, with HELP and TYPE (TORII_METRIC_IN_US ones
 * converted to seconds, written exactly: "0.000215"). */
void torii_prom_counters(struct torii_prom *p);

/** Escape a label value into out (always terminated; truncated to outlen). Returns out. */
char *torii_prom_escape_label(const char *v, char *out, size_t outlen);

/** Append src's text to p (src unchanged). */
void torii_prom_append(struct torii_prom *p, const struct torii_prom *src);

/** The text so far (NUL-terminated; "" when empty) and its length; p stays usable. */
const char *torii_prom_text(const struct torii_prom *p, size_t *len);
/** Hand the buffer to the caller (free()), leaving p empty. NULL when nothing was written. */
char *torii_prom_take(struct torii_prom *p, size_t *len);
void torii_prom_clear(struct torii_prom *p);

#endif
