/* audit.c - the audit log of state-changing admin calls and the limiter of failed
 * authentications per source.
 *
 * Audit decisions: one JSON object per line, appended with a single write(2) on an O_APPEND
 * descriptor and made durable with fdatasync before the caller goes on. Each mutating call
 * writes two lines: "intent" before the route runs (when it cannot be written the call is
 * refused with 503 and nothing changes: write-ahead) and "result" (status, entity, key
 * fingerprint) after the route and before the response is sent. fdatasync because the store
 * commits are durable too: an acknowledged change must never be missing from the log after a
 * power loss; admin writes are rare, the cost is one sync per line. Key material never
 * reaches a line: the fingerprint is the SHA-256 of the public key.
 *
 * Limiter decisions: a fixed window per source address (the port is ignored) starting at its
 * first failure; `limit` failures inside it block that source (every request, valid or not,
 * gets 429 + Retry-After) until the window ends. Fixed memory (ADMIN_RL_SLOTS); when full, the
 * source that failed least recently is forgotten. Loopback is not exempt. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "admin_guard.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"

/* ---- limiter ---- */

void admin_rl_source(const char *peer, char *key)
{
    const char *end = NULL;
    size_t n;

    if (peer == NULL) {
        peer = "-";
    }
    if (peer[0] == '[') {
        end = strchr(peer, ']');
        end = end != NULL ? end + 1 : NULL;
    } else {
        end = strrchr(peer, ':');
    }
    n = end != NULL ? (size_t)(end - peer) : strlen(peer);
    if (n >= ADMIN_RL_KEY) {
        n = ADMIN_RL_KEY - 1;
    }
    memcpy(key, peer, n);
    key[n] = '\0';
}

/* The slot index of source, or ADMIN_RL_SLOTS when it has none. */
static size_t rl_find(const struct admin_rl *rl, const char *source)
{
    for (size_t i = 0; i < ADMIN_RL_SLOTS; i++) {
        if (rl->slot[i].key[0] != '\0' && strcmp(rl->slot[i].key, source) == 0) {
            return i;
        }
    }
    return ADMIN_RL_SLOTS;
}

unsigned admin_rl_blocked(const struct admin_rl *rl, const char *source, int64_t now_ms)
{
    size_t i = rl_find(rl, source);
    const struct admin_rl_slot *s = i < ADMIN_RL_SLOTS ? &rl->slot[i] : NULL;
    int64_t left;

    if (rl->limit == 0 || s == NULL || s->fails < rl->limit) {
        return 0;
    }
    left = s->start_ms + rl->window_ms - now_ms;
    if (left <= 0) {
        return 0;
    }
    return (unsigned)((left + 999) / 1000);
}

void admin_rl_fail(struct admin_rl *rl, const char *source, int64_t now_ms)
{
    size_t at = rl_find(rl, source);
    struct admin_rl_slot *s = at < ADMIN_RL_SLOTS ? &rl->slot[at] : NULL;

    if (rl->limit == 0) {
        return;
    }
    if (s == NULL) {
        s = &rl->slot[0];
        for (size_t i = 0; i < ADMIN_RL_SLOTS && s->key[0] != '\0'; i++) {
            if (rl->slot[i].key[0] == '\0' || rl->slot[i].last_ms < s->last_ms) {
                s = &rl->slot[i];
            }
        }
        memset(s, 0, sizeof(*s));
        (void)snprintf(s->key, sizeof(s->key), "%s", source);
        s->start_ms = now_ms;
    }
    if (now_ms - s->start_ms >= rl->window_ms) {
        s->start_ms = now_ms;
        s->fails = 0;
    }
    s->fails++;
    s->last_ms = now_ms;
}

/* ---- audit log ---- */

int admin_audit_open(const struct torii_config *cfg, struct admin_audit *a, struct torii_errbuf *eb)
{
    char path[4096];
    int n;

    a->fd = -1;
    a->path = NULL;
    if (cfg->admin_audit_log != NULL) {
        n = snprintf(path, sizeof(path), "%s", cfg->admin_audit_log);
    } else if (cfg->data_dir != NULL && cfg->data_dir[0] != '\0') {
        n = snprintf(path, sizeof(path), "%s/audit.log", cfg->data_dir);
    } else {
        return torii_errf(eb, TORII_EINVAL, "admin: no admin.audit_log and no data_dir");
    }
    if (n < 0 || (size_t)n >= sizeof(path)) {
        return torii_errf(eb, TORII_EINVAL, "admin: audit log path too long");
    }
    a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (a->fd < 0) {
        return torii_errf(eb, TORII_EIO, "admin: cannot open the audit log %s: %s", path,
                          torii_errno_text(errno).s);
    }
    a->path = torii_xstrdup(path);
    torii_log(TORII_LOG_INFO, "admin: audit log (file=%s)", path);
    return TORII_OK;
}

void admin_audit_close(struct admin_audit *a)
{
    if (a->fd >= 0) {
        (void)close(a->fd);
    }
    a->fd = -1;
    TORII_FREE(a->path);
}

static void audit_time(char *buf, size_t len)
{
    int64_t ms = torii_clock_now_ms();
    time_t s = (time_t)(ms / 1000);
    struct tm tm;

    if (gmtime_r(&s, &tm) == NULL) {
        (void)snprintf(buf, len, "-");
        return;
    }
    (void)snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static json_t *audit_str(const char *s)
{
    char esc[1024];
    json_t *v = NULL;

    if (s == NULL) {
        return json_null();
    }
    v = json_string(s);
    return v != NULL ? v : json_string(torii_log_escape(s, strlen(s), esc, sizeof(esc)));
}

static char *audit_line(const struct admin_audit_rec *r)
{
    char when[96];
    char path[1024];
    json_t *o = NULL;
    char *text = NULL;

    audit_time(when, sizeof(when));
    (void)torii_log_escape(r->path.ptr, r->path.len, path, sizeof(path));
    o = json_object();
    if (o == NULL || json_object_set_new(o, "time", json_string(when)) != 0
        || json_object_set_new(o, "phase", audit_str(r->phase)) != 0
        || json_object_set_new(o, "token", audit_str(r->token)) != 0
        || json_object_set_new(o, "source", audit_str(r->source)) != 0
        || json_object_set_new(o, "method", audit_str(r->method)) != 0
        || json_object_set_new(o, "path", audit_str(path)) != 0
        || json_object_set_new(o, "entity", audit_str(r->entity)) != 0
        || json_object_set_new(o, "status", r->status != 0 ? json_integer(r->status) : json_null())
               != 0
        || json_object_set_new(o, "keyFingerprint", audit_str(r->key_fp)) != 0) {
        json_decref(o);
        return NULL;
    }
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}

int admin_audit_write(struct admin_audit *a, const struct admin_audit_rec *rec)
{
    char *line = audit_line(rec);
    size_t len = 0;
    size_t off = 0;
    int rc = TORII_OK;

    TORII_ENSURE(line != NULL && a->fd >= 0, TORII_EIO);
    len = strlen(line);
    line[len] = '\n'; /* json_dumps leaves room: overwrite the NUL, length tracked */
    len++;
    while (off < len) {
        ssize_t n = write(a->fd, line + off, len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        TORII_ENSURE(n > 0, TORII_EIO);
        off += (size_t)n;
    }
    TORII_ENSURE(fdatasync(a->fd) == 0, TORII_EIO);
out:
    if (rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "admin: cannot write the audit log (file=%s): %s",
                  a->path != NULL ? a->path : "-", torii_errno_text(errno).s);
    }
    free(line);
    return rc;
}
