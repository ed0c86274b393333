/* ctl_int.h - internal to the ctl module: the parsed command line, the admin API client
 * (http.c) and the commands (cmds.c, list.c). Not to be included outside src/ctl.
 * Threads: main thread only. */
#ifndef TORII_CTL_INT_H
#define TORII_CTL_INT_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "torii/ctl.h"
#include "torii/err.h"

#define CTL_MAX_ARGS 64

struct ctl_opt {
    const char *name;  /* without the leading "--" */
    const char *value; /* NULL for a flag */
};

/** One command line after the command name: options (repeatable) and positional words. */
struct ctl_args {
    struct ctl_opt opt[CTL_MAX_ARGS];
    size_t n_opt;
    const char *pos[CTL_MAX_ARGS];
    size_t n_pos;
};

/** The value of the first option `name` (NULL: absent). */
const char *ctl_arg(const struct ctl_args *a, const char *name);
/** 1 when the flag or option `name` was given. */
int ctl_has(const struct ctl_args *a, const char *name);

/** The client: admin URL, bearer token, output streams, a libcurl handle. */
struct ctl {
    char *url;   /* owned, no trailing '/' */
    char *token; /* owned, wiped on free; NULL: no Authorization header */
    FILE *out;
    FILE *err;
    void *curl; /* CURL * */
};

struct ctl_resp {
    long status;
    char *body; /* owned, NUL-terminated (may hold a private key: wiped on clear) */
    size_t len;
    size_t cap;    /* bytes allocated for body */
    long filtered; /* X-Filtered-Count, -1 when absent */
};

void ctl_resp_clear(struct ctl_resp *r);

/** One request to <url><path> (path already percent-encoded): ctype/body may be NULL/0.
 * TORII_CTL_EXIT_OK when an HTTP answer came (any status, in *r), TORII_CTL_EXIT_CONNECT
 * (printed on err) when none did. */
int ctl_request(struct ctl *c, const char *method, const char *path, const char *ctype,
                const void *body, size_t len, struct ctl_resp *r);
/** ctl_request, then the exit code of the status (2xx: OK; the API's error printed on err as
 * "torii ctl: METHOD path: STATUS error" otherwise) and, on 2xx, the JSON body in *json (new
 * reference; NULL when the body is empty; a body that is not JSON is an API error). */
int ctl_call(struct ctl *c, const char *method, const char *path, const char *ctype,
             const void *body, size_t len, json_t **json, long *filtered);
/** ctl_call with a JSON body (NULL: none). */
int ctl_call_json(struct ctl *c, const char *method, const char *path, const json_t *body,
                  const char *ctype, json_t **json);
/** Percent-encode s for a path segment or query value into a new string (free()). */
char *ctl_escape(struct ctl *c, const char *s);
/** Print v as indented JSON on c->out. */
void ctl_print_json(struct ctl *c, const json_t *v);
/** Read a whole file (at most 16 MiB) into *out (NUL-terminated; free or wipe it), *len. */
int ctl_read_file(struct ctl *c, const char *path, char **out, size_t *len);
/** Write len bytes to path created with mode 0600 (replacing it); 0 or USAGE-like error 4. */
int ctl_write_private(struct ctl *c, const char *path, const char *data, size_t len);

#define CTL_NUM_MAX 3153600000L /* 100 years in seconds */

/** A positive integer option (1..CTL_NUM_MAX; dflt when absent); -1 with a message on err
 * when it is not one. */
long ctl_num_opt(struct ctl *c, const struct ctl_args *a, const char *name, long dflt);
/** Milliseconds since the epoch (wall clock). */
long long ctl_now_ms(void);
/** Sleep ms milliseconds (interrupted sleeps resume). */
void ctl_sleep_ms(long ms);

/* ---- commands (cmds.c, list.c): each returns an exit code ---- */
int ctl_cmd_get(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_import(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_issue(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_letsencrypt(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_renew(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_revoke(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_delete(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_export(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_list(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_watch(struct ctl *c, const struct ctl_args *a);

#endif
