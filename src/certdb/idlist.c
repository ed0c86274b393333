/* idlist.c - the value of a serial index key: the ids of every certificate under that key,
 * '\n'-separated, in the order they joined (the newest writer last). A certificate and its
 * "[UNTIL EXPIRATION]" copy share a key, so a key names one or a few ids; an id that holds a
 * '\n' is never indexed (the admin API refuses control characters in ids).
 * Threads: any (pure). */
#include <stdlib.h>
#include <string.h>

#include "certdb_int.h"
#include "torii/mem.h"

int certdb_idlist_id_ok(const char *id)
{
    return id[0] != '\0' && strchr(id, '\n') == NULL;
}

/* The next entry of list at *p: its start and length; *p moves past it. 0 at the end. */
static int certdb_idlist_next(const char **p, const char **start, size_t *len)
{
    const char *nl;

    if (**p == '\0') {
        return 0;
    }
    nl = strchr(*p, '\n');
    *start = *p;
    *len = nl != NULL ? (size_t)(nl - *p) : strlen(*p);
    *p = nl != NULL ? nl + 1 : *p + *len;
    return 1;
}

static int certdb_idlist_is(const char *start, size_t len, const char *id)
{
    return len == strlen(id) && memcmp(start, id, len) == 0;
}

int certdb_idlist_has(const char *list, const char *id)
{
    const char *p = list;
    const char *start;
    size_t len;

    while (certdb_idlist_next(&p, &start, &len)) {
        if (certdb_idlist_is(start, len, id)) {
            return 1;
        }
    }
    return 0;
}

char *certdb_idlist_with(const char *list, const char *id)
{
    size_t n = list != NULL ? strlen(list) : 0;
    size_t k = strlen(id);
    char *out = torii_xmalloc(n + k + 2);

    if (n > 0) {
        memcpy(out, list, n + 1);
        out[n++] = '\n'; /* over list's NUL */
    }
    memcpy(out + n, id, k + 1);
    return out;
}

char *certdb_idlist_without(const char *list, const char *id)
{
    char *out = torii_xmalloc(strlen(list) + 1);
    const char *p = list;
    const char *start;
    size_t len;
    size_t n = 0;

    while (certdb_idlist_next(&p, &start, &len)) {
        if (len == 0 || certdb_idlist_is(start, len, id)) {
            continue;
        }
        if (n > 0) {
            out[n++] = '\n';
        }
        memcpy(out + n, start, len);
        n += len;
    }
    out[n] = '\0';
    if (n == 0) {
        free(out);
        return NULL;
    }
    return out;
}

size_t certdb_idlist_split(const char *list, char ***out)
{
    const char *p = list;
    const char *start;
    size_t len;
    size_t n = 0;
    char **v = NULL;

    while (certdb_idlist_next(&p, &start, &len)) {
        if (len > 0) {
            v = torii_xrealloc(v, (n + 1) * sizeof(*v));
            v[n++] = torii_xstrndup(start, len);
        }
    }
    *out = v;
    return n;
}
