/* accesslog.c - one access log line per exchange, in the json format (default) or Apache's
 * "combined" plus host and duration; fields cut at PX_LOG_FIELD_MAX characters and escaped.
 * The time strings are cached per second in the worker. Worker thread only. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>

#include "session_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/metrics.h"
#include "torii/stream.h"

#define PX_LOG_FIELD_MAX 256 /* characters of one logged field */

/* A JSON string of at most PX_LOG_FIELD_MAX characters of s ("null" when s.ptr is NULL). */
static size_t log_json_slice(char *o, size_t cap, struct torii_slice s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    size_t len = s.len < PX_LOG_FIELD_MAX ? s.len : PX_LOG_FIELD_MAX;

    if (s.ptr == NULL) {
        if (cap > 4) {
            o[0] = 'n';
            o[1] = 'u';
            o[2] = 'l';
            o[3] = 'l';
            return 4;
        }
        return 0;
    }
    if (n + 1 < cap) {
        o[n++] = '"';
    }
    for (size_t i = 0; i < len && n + 8 < cap; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\') {
            o[n++] = '\\';
            o[n++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o[n++] = '\\';
            o[n++] = 'u';
            o[n++] = '0';
            o[n++] = '0';
            o[n++] = hex[c >> 4];
            o[n++] = hex[c & 15];
        } else {
            o[n++] = (char)c;
        }
    }
    if (n + 1 < cap) {
        o[n++] = '"';
    }
    return n;
}

static struct torii_slice px_or_empty(struct torii_slice s)
{
    if (s.ptr == NULL) {
        s.ptr = "";
        s.len = 0;
    }
    return s;
}

/* The path and query of a request as logged ("path" field, cut at PX_LOG_FIELD_MAX): the
 * query follows the path in the request-target, so one slice covers both. */
struct torii_slice torii_proxy__log_target(const struct torii_http_req *req)
{
    struct torii_slice s = req->path;

    if (s.ptr != NULL && req->query.len > 0 && req->query.ptr == s.ptr + s.len + 1) {
        s.len += 1 + req->query.len;
    }
    return s;
}

static size_t log_json_str(char *o, size_t cap, const char *s)
{
    struct torii_slice v = {s, s != NULL ? strlen(s) : 0};

    return log_json_slice(o, cap, v);
}

/* The cached time strings of the current second (ISO 8601 and the common log format). */
static void px_log_clock(struct proxy_worker *pw, int64_t now_ms)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;

    if (now_ms / 1000 == pw->log_sec) {
        return;
    }
    pw->log_sec = now_ms / 1000;
    if (gmtime_r(&t, &tm) == NULL
        || strftime(pw->log_time, sizeof(pw->log_time), "%Y-%m-%dT%H:%M:%S", &tm) == 0
        || strftime(pw->log_clf, sizeof(pw->log_clf), "%d/%b/%Y:%H:%M:%S +0000", &tm) == 0) {
        (void)snprintf(pw->log_time, sizeof(pw->log_time), "1970-01-01T00:00:00");
        (void)snprintf(pw->log_clf, sizeof(pw->log_clf), "01/Jan/1970:00:00:00 +0000");
    }
}

/* A field of the combined format: "-" when absent, quotes and controls escaped as \xHH. */
static size_t log_clf_slice(char *o, size_t cap, struct torii_slice s)
{
    char esc[PX_LOG_FIELD_MAX * 4 + 1];
    int w;

    if (s.ptr == NULL || s.len == 0) {
        w = snprintf(o, cap, "-");
    } else {
        w = snprintf(o, cap, "%s",
                     torii_log_escape(s.ptr, s.len < PX_LOG_FIELD_MAX ? s.len : PX_LOG_FIELD_MAX,
                                      esc, sizeof(esc)));
    }
    return w > 0 && (size_t)w < cap ? (size_t)w : 0;
}

/* Apache/nginx "combined", plus the host and the duration in ms:
 * ip - - [time] "METHOD target HTTP/1.x" status bytes "referer" "user-agent" host ms */
static size_t pc_log_combined(struct proxy_conn *pc, char *line, size_t cap, int64_t end_us)
{
    const struct proxy_exch *x = &pc->x;
    size_t n = 0;
    int w = snprintf(line, cap, "%s - - [%s] \"", pc->ip, pc->pw->log_clf);

    n = w > 0 ? (size_t)w : 0;
    n += log_clf_slice(line + n, cap - n, x->method);
    n += (size_t)snprintf(line + n, cap - n, " ");
    n += log_clf_slice(line + n, cap - n, x->path);
    n += (size_t)snprintf(line + n, cap - n, " HTTP/%s\" %d %llu \"",
                          pc->h2_child ? "2.0"
                          : x->minor   ? "1.1"
                                       : "1.0",
                          x->status, (unsigned long long)x->bytes_out);
    n += log_clf_slice(line + n, cap - n, x->referer);
    n += (size_t)snprintf(line + n, cap - n, "\" \"");
    n += log_clf_slice(line + n, cap - n, x->ua);
    n += (size_t)snprintf(line + n, cap - n, "\" ");
    n += log_clf_slice(line + n, cap - n, x->host);
    if (n < cap) {
        w = snprintf(line + n, cap - n, " %.3f\n", (double)(end_us - x->t0_us) / 1000.0);
        n += w > 0 ? (size_t)w : 0;
    }
    return n;
}

static size_t pc_log_json(struct proxy_conn *pc, char *line, size_t cap, int64_t now_ms,
                          int64_t end_us)
{
    const struct proxy_exch *x = &pc->x;
    const char *sni = NULL;
    size_t n = 0;
    int w;

    if (pc->tls) {
        sni = SSL_get_servername(torii_stream_ssl(pc->st), TLSEXT_NAMETYPE_host_name);
    }
    w = snprintf(line, cap, "{\"time\":\"%s.%03dZ\",\"client\":", pc->pw->log_time,
                 (int)(now_ms % 1000));
    n = w > 0 ? (size_t)w : 0;
    n += log_json_str(line + n, cap - n, pc->ip);
    n += (size_t)snprintf(line + n, cap - n, ",\"sni\":");
    n += log_json_str(line + n, cap - n, sni);
    n += (size_t)snprintf(line + n, cap - n, ",\"host\":");
    n += log_json_slice(line + n, cap - n, px_or_empty(x->host));
    n += (size_t)snprintf(line + n, cap - n, ",\"method\":");
    n += log_json_slice(line + n, cap - n, px_or_empty(x->method));
    n += (size_t)snprintf(line + n, cap - n, ",\"path\":");
    n += log_json_slice(line + n, cap - n, px_or_empty(x->path));
    n += (size_t)snprintf(
        line + n, cap - n,
        ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"upstream\":", x->status,
        (unsigned long long)x->bytes_in, (unsigned long long)x->bytes_out);
    n += log_json_str(line + n, cap - n, x->target != NULL ? x->target->name : NULL);
    if (n < cap) {
        w = snprintf(
            line + n, cap - n,
            ",\"duration_ms\":%.3f,\"upstream_ms\":%.3f,\"protocol\":\"HTTP/%s\"}\n",
            (double)(end_us - x->t0_us) / 1000.0,
            x->tu0_us != 0 ? (double)((x->tu1_us ? x->tu1_us : end_us) - x->tu0_us) / 1000.0 : 0.0,
            pc->h2_child ? "2.0"
            : x->minor   ? "1.1"
                         : "1.0");
        n += w > 0 ? (size_t)w : 0;
    }
    return n;
}

void torii_proxy__access_log(struct proxy_conn *pc)
{
    struct proxy_worker *pw = pc->pw;
    char line[2048];
    size_t n;
    int64_t now_ms;
    int64_t end_us;

    pc->had_request = 1;
    torii_metrics_http_status(pc->x.status);
    if (!pw->cfg->access_log) {
        return; /* before the clocks: two reads per request saved when nothing is logged */
    }
    now_ms = torii_clock_now_ms();
    end_us = torii_clock_mono_us();
    px_log_clock(pw, now_ms);
    if (pw->cfg->access_log_format[0] == 'c') {
        n = pc_log_combined(pc, line, sizeof(line), end_us);
    } else {
        n = pc_log_json(pc, line, sizeof(line), now_ms, end_us);
    }
    if (n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    torii_log_access_write(line, n);
}
