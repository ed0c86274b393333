/* members.c - the fleet's member registry (fleet.h): each node keeps <prefix>m/<id> =
 * {"name": "<host> pid <pid>", "acme": true|false} attached to its job lease (elect.c puts it
 * after each grant), so the key lives exactly as long as the node's lease. The id is drawn at
 * start (16 random [A-Za-z0-9] characters). Values read back are untrusted: parsed strictly.
 * Also the plain etcd requests of the module's threads: a put under a lease, and a range over
 * a prefix or over one of the fleet's key families (<prefix><sub>/).
 * Threads: the elect thread registers; any thread reads (each caller its own client). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_int.h"
#include "torii/log.h"
#include "torii/mem.h"

#define MEMBER_SUB 'm'

/* ---- pure ---- */

int torii_fleet_id_ok(const char *s, size_t len)
{
    if (len != TORII_FLEET_ID_LEN) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) {
            return 0;
        }
    }
    return 1;
}

char *torii_fleet_member_value(const char *name, int acme)
{
    json_t *o = json_pack("{s:s, s:b}", "name", name, "acme", acme);
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    return s;
}

/* A node name as a member value may hold it: 1..TORII_FLEET_NODE_MAX printable ASCII. */
static int member_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > TORII_FLEET_NODE_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

int torii_fleet_member_parse(const char *id, size_t idlen, const char *val, size_t vlen,
                             struct torii_fleet_member *out, struct torii_errbuf *eb)
{
    json_t *o = NULL;
    const json_t *name;
    const json_t *acme;
    int rc = TORII_OK;

    memset(out, 0, sizeof(*out));
    TORII_ENSURE(torii_fleet_id_ok(id, idlen),
                 torii_errf(eb, TORII_EPROTO, "fleet: member m/%.*s: not a node id",
                            (int)(idlen > 32 ? 32 : idlen), id));
    o = val != NULL ? json_loadb(val, vlen, JSON_REJECT_DUPLICATES, NULL) : NULL;
    name = json_object_get(o, "name");
    acme = json_object_get(o, "acme");
    TORII_ENSURE(json_is_object(o) && json_object_size(o) == 2 && json_is_string(name)
                     && json_is_boolean(acme)
                     && member_name_ok(json_string_value(name), json_string_length(name)),
                 torii_errf(eb, TORII_EPROTO,
                            "fleet: member m/%.*s: not {\"name\": <printable>, \"acme\": <bool>}",
                            (int)idlen, id));
    memcpy(out->id, id, idlen);
    memcpy(out->name, json_string_value(name), json_string_length(name));
    out->acme = json_is_true(acme);
out:
    json_decref(o);
    return rc;
}

/* ---- etcd requests ---- */

int fleet_kv_put(struct fleet_client *cl, const char *key, const void *val, size_t vlen,
                 int64_t lease, struct torii_errbuf *eb)
{
    char *resp = NULL;
    size_t len = 0;
    json_t *req = json_pack("{s:o, s:o, s:I}", "key", fleet_b64(key, strlen(key)), "value",
                            fleet_b64(val, vlen), "lease", (json_int_t)lease);
    int rc = fleet_call_json(cl, "/v3/kv/put", req, &resp, &len, eb);

    free(resp);
    return rc;
}

int fleet_kv_range_prefix(struct fleet_client *cl, const char *pfx, unsigned limit, int keys_only,
                          struct torii_fleet_range *out, struct torii_errbuf *eb)
{
    size_t plen = strlen(pfx);
    size_t elen = 0;
    char *end = torii_fleet_prefix_end(pfx, plen, &elen);
    char *resp = NULL;
    size_t len = 0;
    int rc = TORII_OK;

    TORII_TRY(fleet_call_json(cl, "/v3/kv/range",
                              json_pack("{s:o, s:o, s:I, s:b}", "key", fleet_b64(pfx, plen),
                                        "range_end", fleet_b64(end, elen), "limit",
                                        (json_int_t)limit, "keys_only", keys_only),
                              &resp, &len, eb));
    rc = torii_fleet_gw_range_parse(resp, len, out, eb);
out:
    if (resp != NULL) {
        torii_secure_free(resp, len); /* values may be sealed records */
    }
    free(end);
    return rc;
}

int fleet_range_sub(struct torii_fleet *f, char sub, unsigned limit, int keys_only,
                    struct torii_fleet_range *out, struct torii_errbuf *eb)
{
    size_t n = strlen(f->o.conf->prefix) + 3;
    char *key = torii_xmalloc(n);
    int rc;

    (void)snprintf(key, n, "%s%c/", f->o.conf->prefix, sub);
    rc = fleet_kv_range_prefix(&f->cl, key, limit, keys_only, out, eb);
    free(key);
    return rc;
}

int fleet_member_register(struct torii_fleet *f, int64_t lease, struct torii_errbuf *eb)
{
    size_t klen = strlen(f->o.conf->prefix) + 3 + TORII_FLEET_ID_LEN;
    char *k = torii_xmalloc(klen);
    char *v = torii_fleet_member_value(f->el.node, f->o.acme_answers);
    int rc = TORII_OK;

    (void)snprintf(k, klen, "%s%c/%s", f->o.conf->prefix, MEMBER_SUB, f->el.id);
    TORII_ENSURE(v != NULL, TORII_ENOMEM);
    TORII_TRY(fleet_kv_put(&f->cl, k, v, strlen(v), lease, eb));
    torii_log(TORII_LOG_INFO, "fleet: this node (%s) is member %s of the fleet", f->el.node,
              f->el.id);
out:
    free(v);
    free(k);
    return rc;
}

int fleet_members_read(struct torii_fleet *f, struct torii_fleet_member **out, size_t *n,
                       struct torii_errbuf *eb)
{
    size_t plen = strlen(f->o.conf->prefix) + 2; /* "<prefix>m/" */
    struct torii_fleet_range r = {0};
    int rc = TORII_OK;

    *out = NULL;
    *n = 0;
    TORII_TRY(fleet_range_sub(f, MEMBER_SUB, FLEET_MEMBERS_MAX, 0, &r, eb));
    *out = torii_xcalloc(r.n + 1, sizeof(**out));
    for (size_t i = 0; i < r.n; i++) {
        struct torii_errbuf e = {{0}};
        const struct torii_fleet_kv *kv = &r.kvs[i];
        if (kv->key_len > plen
            && torii_fleet_member_parse(kv->key + plen, kv->key_len - plen, kv->val, kv->val_len,
                                        &(*out)[*n], &e)
                   == TORII_OK) {
            (*n)++;
        } else {
            torii_log(TORII_LOG_WARN, "%s (ignored)", e.msg[0] != '\0' ? e.msg : "fleet: member");
        }
    }
out:
    torii_fleet_range_clear(&r);
    return rc;
}
