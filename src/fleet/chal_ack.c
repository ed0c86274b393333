/* chal_ack.c - acknowledgements of the shared ACME answers (fleet.h): the CA may reach any
 * node, so the doer tells it to validate only once every live member that follows the
 * answers holds the answer in its table. Each node's challenge watch (chal.c), once an
 * answer of revision R is in its table, puts <prefix>k/<suffix>/<node id> = "R" attached to
 * the answer's lease (it goes with the answer). The publisher polls the member registry
 * (members.c) and those keys until every member with "acme" (and itself) acknowledged R or
 * later, bounded by timeout_ms; past that it names the missing members in a warning and goes
 * on (a try of the CA beats a stall). The pure parts (keys, values, the decision) come first.
 * Threads: acknowledgements on the challenge watch thread; the wait on the ACME thread. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"

#define ACK_SUB        'k'
#define ACK_REV_DIGITS 19
#define ACK_NAP_MIN    20
#define ACK_NAP_MAX    200

/* ---- pure ---- */

char *torii_fleet_chal_ack_key(const char *prefix, const char *sfx, const char *id)
{
    size_t n = strlen(prefix) + strlen(sfx) + strlen(id) + 4;
    char *k = torii_xmalloc(n);

    (void)snprintf(k, n, "%s%c/%s/%s", prefix, ACK_SUB, sfx, id);
    return k;
}

int torii_fleet_chal_ack_parse(const char *id, size_t idlen, const char *val, size_t vlen,
                               struct torii_fleet_ack *out)
{
    int64_t rev = 0;

    memset(out, 0, sizeof(*out));
    if (!torii_fleet_id_ok(id, idlen) || val == NULL || vlen == 0 || vlen > ACK_REV_DIGITS) {
        return TORII_EPROTO;
    }
    for (size_t i = 0; i < vlen; i++) {
        int d = val[i] - '0';
        if (d < 0 || d > 9 || rev > (INT64_MAX - d) / 10) {
            return TORII_EPROTO;
        }
        rev = rev * 10 + d;
    }
    if (rev <= 0) {
        return TORII_EPROTO;
    }
    memcpy(out->id, id, idlen);
    out->rev = rev;
    return TORII_OK;
}

/* 1 when id acknowledged rev or later. */
static int ack_has(const struct torii_fleet_ack *acks, size_t na, const char *id, int64_t rev)
{
    for (size_t i = 0; i < na; i++) {
        if (acks[i].rev >= rev && strcmp(acks[i].id, id) == 0) {
            return 1;
        }
    }
    return 0;
}

size_t torii_fleet_chal_unacked(const struct torii_fleet_member *m, size_t n, const char *self,
                                const struct torii_fleet_ack *acks, size_t na, int64_t rev,
                                size_t *missing, size_t cap)
{
    size_t k = 0;
    int self_seen = 0;

    for (size_t i = 0; i < n; i++) {
        int is_self = strcmp(m[i].id, self) == 0;
        self_seen |= is_self;
        if ((m[i].acme || is_self) && !ack_has(acks, na, m[i].id, rev)) {
            if (k < cap) {
                missing[k] = i;
            }
            k++;
        }
    }
    if (!self_seen && !ack_has(acks, na, self, rev)) {
        if (k < cap) {
            missing[k] = n;
        }
        k++;
    }
    return k;
}

/* ---- the node ---- */

void fleet_chal_nap_ms(const struct torii_fleet_chal *c, unsigned ms)
{
    const struct timespec step = {.tv_sec = 0, .tv_nsec = 20L * 1000 * 1000};

    for (unsigned waited = 0; waited < ms && !atomic_load(&c->stop); waited += 20) {
        (void)nanosleep(&step, NULL);
    }
}

void fleet_chal_ack(struct torii_fleet_chal *c, const char *sfx, size_t slen,
                    const struct torii_fleet_kv *kv)
{
    struct torii_errbuf eb = {{0}};
    char *s;
    char *k;
    char v[24];
    int n;

    if (kv->lease <= 0 || kv->mod_rev <= 0) {
        return; /* not an answer as a node publishes it (always under a lease) */
    }
    s = torii_xstrndup(sfx, slen);
    k = torii_fleet_chal_ack_key(c->o.conf->prefix, s, c->o.fleet->el.id);
    n = snprintf(v, sizeof(v), "%" PRId64, kv->mod_rev);
    if (fleet_kv_put(&c->cl, k, v, (size_t)n, kv->lease, &eb) != TORII_OK) {
        torii_log(TORII_LOG_INFO,
                  "fleet: acme answer %s: cannot acknowledge it (%s): the doer waits at most "
                  "timeout_ms for this node",
                  s, eb.msg);
    }
    free(k);
    free(s);
}

/* The acknowledgements of sfx as read now (malformed ones left out): *acks (malloc'd), *na. */
static int ack_read(struct torii_fleet_chal *c, const char *sfx, struct torii_fleet_ack **acks,
                    size_t *na, struct torii_errbuf *eb)
{
    char *pfx = torii_fleet_chal_ack_key(c->o.conf->prefix, sfx, "");
    size_t plen = strlen(pfx);
    struct torii_fleet_range r = {0};
    int rc = TORII_OK;

    *acks = NULL;
    *na = 0;
    TORII_TRY(fleet_kv_range_prefix(&c->cl, pfx, FLEET_MEMBERS_MAX, 0, &r, eb));
    *acks = torii_xcalloc(r.n + 1, sizeof(**acks));
    for (size_t i = 0; i < r.n; i++) {
        const struct torii_fleet_kv *kv = &r.kvs[i];
        if (kv->key_len > plen
            && torii_fleet_chal_ack_parse(kv->key + plen, kv->key_len - plen, kv->val, kv->val_len,
                                          &(*acks)[*na])
                   == TORII_OK) {
            (*na)++;
        }
    }
out:
    torii_fleet_range_clear(&r);
    free(pfx);
    return rc;
}

/* One look: the members and the acknowledgements of sfx; *m (malloc'd) and *n the members,
 * missing[0..*nmiss) those that have not acknowledged rev (index *n: this node). */
static int ack_look(struct torii_fleet_chal *c, const char *sfx, int64_t rev,
                    struct torii_fleet_member **m, size_t *n, size_t *missing, size_t *nmiss,
                    struct torii_errbuf *eb)
{
    struct torii_fleet_ack *acks = NULL;
    size_t na = 0;
    int rc = TORII_OK;

    TORII_TRY(fleet_members_read(c->o.fleet, m, n, eb));
    TORII_TRY(ack_read(c, sfx, &acks, &na, eb));
    *nmiss = torii_fleet_chal_unacked(*m, *n, c->o.fleet->el.id, acks, na, rev, missing,
                                      FLEET_MEMBERS_MAX + 1);
out:
    free(acks);
    return rc;
}

/* The warning naming the members missing[0..nmiss) of m[0..n) (index n: this node). */
static void ack_warn(const struct torii_fleet_chal *c, const char *sfx, int64_t rev,
                     const struct torii_fleet_member *m, size_t n, const size_t *missing,
                     size_t nmiss, const char *why)
{
    char names[1024] = "";
    size_t used = 0;

    for (size_t i = 0; i < nmiss && i <= FLEET_MEMBERS_MAX && used < sizeof(names); i++) {
        const char *name = missing[i] < n ? m[missing[i]].name : c->o.fleet->el.node;
        const char *id = missing[i] < n ? m[missing[i]].id : c->o.fleet->el.id;
        int w =
            snprintf(names + used, sizeof(names) - used, "%s%s (%s)", i > 0 ? ", " : "", name, id);
        used += w > 0 ? (size_t)w : 0;
    }
    torii_log(TORII_LOG_WARN,
              "fleet: acme answer %s (revision %" PRId64 ") not confirmed after %u ms by %s%s; "
              "the CA is told to validate anyway",
              sfx, rev, c->o.conf->timeout_ms, nmiss > 0 ? names : "(unknown)", why);
}

void fleet_chal_wait_acked(struct torii_fleet_chal *c, const char *sfx, int64_t rev)
{
    int64_t until = torii_clock_mono_us() + (int64_t)c->o.conf->timeout_ms * 1000;
    size_t missing[FLEET_MEMBERS_MAX + 1];
    struct torii_fleet_member *m = NULL;
    size_t n = 0;
    size_t nmiss = 0;
    unsigned nap = ACK_NAP_MIN;
    char why[300] = "";

    for (;;) {
        struct torii_errbuf eb = {{0}};
        free(m);
        m = NULL;
        n = 0;
        if (ack_look(c, sfx, rev, &m, &n, missing, &nmiss, &eb) != TORII_OK) {
            nmiss = 0; /* who is missing is not known this time */
            (void)snprintf(why, sizeof(why), " (etcd: %s)", eb.msg);
        } else if (nmiss == 0) {
            torii_log(TORII_LOG_INFO,
                      "fleet: acme answer %s (revision %" PRId64 ") confirmed by every member "
                      "following the answers (%zu)",
                      sfx, rev,
                      torii_fleet_chal_unacked(m, n, c->o.fleet->el.id, NULL, 0, rev, NULL, 0));
            break;
        } else {
            why[0] = '\0';
        }
        if (atomic_load(&c->stop) || torii_clock_mono_us() >= until) {
            ack_warn(c, sfx, rev, m, n, missing, nmiss, why);
            break;
        }
        fleet_chal_nap_ms(c, nap);
        nap = nap * 2 > ACK_NAP_MAX ? ACK_NAP_MAX : nap * 2;
    }
    free(m);
}
