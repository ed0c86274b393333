/* batch.c - certdb writes: batches of prepared entities and their serial index entries,
 * committed in one durable store transaction; the compare-and-swap read-modify-write loop.
 * Threads: any; a batch belongs to the thread that made it (see certdb.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certdb_int.h"
#include "torii/certdb.h"
#include "torii/log.h"
#include "torii/mem.h"

#define CERTDB_SOPS 4 /* index ops per item: two keys, each removed and/or written */

struct certdb_sop {
    enum torii_store_op_kind kind; /* PUT (value: the key's id list) or DELETE (list emptied) */
    char *key;
    char *val; /* PUT: the ids, '\n'-separated, oldest first */
};

struct certdb_item {
    enum torii_store_op_kind kind; /* CREATE, REPLACE_IF or DELETE */
    char *id;
    char *text;  /* the new JSON (wiped); NULL for DELETE */
    json_t *ent; /* what text parses to (a copy of the prepared entity), for the watchers */
    struct torii_cert_prepared prep;
    char *expect; /* REPLACE_IF: the JSON read (wiped) */
    size_t expect_len;
    struct certdb_sop sop[CERTDB_SOPS];
    size_t n_sop;
    int rc;
    struct torii_errbuf eb;
};

struct torii_certdb_batch {
    struct torii_store *st;
    struct certdb_item *items;
    size_t n;
    size_t cap;
    json_t *ents;    /* id -> index of the last item writing it */
    json_t *serials; /* index key -> its id list, or null once emptied, as the batch leaves it */
    int committed;
};

struct torii_certdb_batch *torii_certdb_batch_new(struct torii_store *st)
{
    struct torii_certdb_batch *b = torii_xcalloc(1, sizeof(*b));

    b->st = st;
    b->ents = json_object();
    b->serials = json_object();
    TORII_ASSERT(b->ents != NULL && b->serials != NULL);
    return b;
}

static void certdb_item_clear(struct certdb_item *it)
{
    free(it->id);
    if (it->text != NULL) {
        torii_secure_free(it->text, strlen(it->text));
    }
    json_decref(it->ent);
    torii_secure_free(it->expect, it->expect_len);
    torii_cert_prepared_clear(&it->prep);
    for (size_t i = 0; i < it->n_sop; i++) {
        free(it->sop[i].key);
        free(it->sop[i].val);
    }
    memset(it, 0, sizeof(*it));
}

void torii_certdb_batch_free(struct torii_certdb_batch *b)
{
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        certdb_item_clear(&b->items[i]);
    }
    free(b->items);
    json_decref(b->ents);
    json_decref(b->serials);
    free(b);
}

size_t torii_certdb_batch_size(const struct torii_certdb_batch *b)
{
    return b->n;
}

struct torii_store *torii_certdb_batch_store(const struct torii_certdb_batch *b)
{
    return b->st;
}

/* The item that last wrote id in b, or NULL. */
static const struct certdb_item *certdb_last(const struct torii_certdb_batch *b, const char *id)
{
    const json_t *v = json_object_get(b->ents, id);

    return v != NULL ? &b->items[json_integer_value(v)] : NULL;
}

int torii_certdb_batch_get(struct torii_certdb_batch *b, const char *id, unsigned flags,
                           struct torii_certdb_entry *out, struct torii_errbuf *eb)
{
    const struct certdb_item *it = certdb_last(b, id);
    struct torii_certdb_entry e;

    if (it == NULL) {
        return torii_certdb_get(b->st, id, flags, out, eb);
    }
    if (it->kind == TORII_STORE_DELETE) {
        return torii_errf(eb, TORII_ENOTFOUND, "entity not found");
    }
    memset(&e, 0, sizeof(e));
    e.len = strlen(it->text);
    e.text = torii_xstrndup(it->text, e.len);
    e.ent = json_loadb(e.text, e.len, 0, NULL);
    if ((flags & TORII_CERTDB_WITH_AUX) != 0 && it->prep.aux != NULL) {
        e.aux = torii_xmalloc(it->prep.aux_len);
        memcpy(e.aux, it->prep.aux, it->prep.aux_len);
        e.aux_len = it->prep.aux_len;
    }
    if (e.ent == NULL) {
        torii_certdb_entry_clear(&e);
        return TORII_ENOMEM;
    }
    *out = e;
    return TORII_OK;
}

/* 1 when id exists as b leaves the store, 0 when not, a negative code when unknown. */
static int certdb_exists(struct torii_certdb_batch *b, const char *id)
{
    const struct certdb_item *it = certdb_last(b, id);
    char *text = NULL;
    size_t len = 0;
    int rc;

    if (it != NULL) {
        return it->kind != TORII_STORE_DELETE;
    }
    rc = torii_store_get(b->st, TORII_STORE_CERTS, id, &text, &len, NULL, NULL);
    torii_secure_free(text, len);
    if (rc == TORII_OK) {
        return 1;
    }
    return rc == TORII_ENOTFOUND || rc == TORII_EINVAL ? 0 : -rc;
}

/* The id list of index key as b leaves the store (malloc'd), or NULL when empty. */
static char *certdb_serial_val(struct torii_certdb_batch *b, const char *key)
{
    const json_t *v = json_object_get(b->serials, key);
    char *val = NULL;

    if (v != NULL) {
        return json_is_string(v) ? torii_xstrdup(json_string_value(v)) : NULL;
    }
    if (torii_store_get(b->st, TORII_STORE_SERIALS, key, &val, NULL, NULL, NULL) != TORII_OK) {
        return NULL;
    }
    return val;
}

static void certdb_sop_add(struct torii_certdb_batch *b, struct certdb_item *it, const char *key,
                           char *val_owned)
{
    TORII_ASSERT(it->n_sop < CERTDB_SOPS);
    it->sop[it->n_sop].kind = val_owned != NULL ? TORII_STORE_PUT : TORII_STORE_DELETE;
    it->sop[it->n_sop].key = torii_xstrdup(key);
    it->sop[it->n_sop++].val = val_owned;
    (void)json_object_set_new(b->serials, key,
                              val_owned != NULL ? json_string(val_owned) : json_null());
}

/* One key of the index moving from old_key to new_key ("" for none) for it->id: the id leaves
 * the old key's list and joins the new key's (appended: the newest writer is last). */
static void certdb_index_key(struct torii_certdb_batch *b, struct certdb_item *it,
                             const char *old_key, const char *new_key)
{
    char *cur = NULL;
    char *next = NULL;

    if (it->id == NULL || !certdb_idlist_id_ok(it->id)) {
        return;
    }
    if (old_key[0] != '\0' && strcmp(old_key, new_key) != 0) {
        cur = certdb_serial_val(b, old_key);
        if (cur != NULL && certdb_idlist_has(cur, it->id)) {
            next = certdb_idlist_without(cur, it->id);
            certdb_sop_add(b, it, old_key, next);
        }
        free(cur);
    }
    if (new_key[0] != '\0') {
        cur = certdb_serial_val(b, new_key);
        if (cur == NULL || !certdb_idlist_has(cur, it->id)) {
            certdb_sop_add(b, it, new_key, certdb_idlist_with(cur, it->id));
        }
        free(cur);
    }
}

static void certdb_index(struct torii_certdb_batch *b, struct certdb_item *it,
                         const struct certdb_keys *old, const struct certdb_keys *new_keys)
{
    certdb_index_key(b, it, old->qual, new_keys->qual);
    certdb_index_key(b, it, old->bare, new_keys->bare);
}

static struct certdb_item *certdb_push(struct torii_certdb_batch *b, struct certdb_item *it)
{
    if (b->n == b->cap) {
        b->cap = b->cap == 0 ? 8 : b->cap * 2;
        b->items = torii_xrealloc(b->items, b->cap * sizeof(*b->items));
    }
    b->items[b->n] = *it;
    b->items[b->n].rc = TORII_ESTORE; /* until a commit says otherwise */
    (void)snprintf(b->items[b->n].eb.msg, sizeof(b->items[b->n].eb.msg), "not committed");
    memset(it, 0, sizeof(*it));
    (void)json_object_set_new(b->ents, b->items[b->n].id, json_integer((json_int_t)b->n));
    return &b->items[b->n++];
}

/* Prepare entity into it (id, text, record). Keys at rest: the store's KEK ring opens a
 * sealed key and seals a clear one (torii_cert_prepare), whatever ring o names, so that no
 * writer can store a key in clear while a KEK is loaded. */
static int certdb_item_prepare(const struct torii_store *st, struct certdb_item *it, json_t *entity,
                               const struct torii_cert_prep_opts *o, struct torii_errbuf *eb)
{
    struct torii_cert_prep_opts po = {.mode = TORII_CERT_PREP_AS_IS};
    int rc = TORII_OK;
    const char *id;

    if (o != NULL) {
        po = *o;
    }
    po.kek = torii_store_kek(st);
    TORII_ENSURE(json_is_object(entity),
                 torii_errf(eb, TORII_EINVAL, "certificate entity must be a JSON object"));
    TORII_TRY(torii_cert_prepare(entity, &po, &it->prep, eb));
    id = json_string_value(json_object_get(entity, "id"));
    TORII_ENSURE(id != NULL && id[0] != '\0', torii_errf(eb, TORII_EINVAL, "entity without an id"));
    it->id = torii_xstrdup(id);
    it->text = json_dumps(entity, JSON_COMPACT);
    TORII_ENSURE(it->text != NULL, TORII_ENOMEM);
    /* A copy: the caller may change its entity before the commit. Cheaper than the watchers
     * parsing text again at the commit, on the thread that holds the store's write lock. */
    it->ent = json_deep_copy(entity);
    TORII_ENSURE(it->ent != NULL, TORII_ENOMEM);
out:
    return rc;
}

/* A creation prepared apart from its batch (torii_certdb_prepare): the item without its
 * index ops, and the index keys the entity gets. */
struct torii_certdb_prep {
    struct certdb_item it;
    struct certdb_keys keys;
};

void torii_certdb_prep_free(struct torii_certdb_prep *p)
{
    if (p != NULL) {
        certdb_item_clear(&p->it);
        free(p);
    }
}

int torii_certdb_prepare(const struct torii_store *st, json_t *entity,
                         const struct torii_cert_prep_opts *o, struct torii_certdb_prep **out,
                         struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_certdb_prep *p = torii_xcalloc(1, sizeof(*p));

    TORII_TRY(certdb_item_prepare(st, &p->it, entity, o, eb));
    certdb_keys_of(entity, p->it.id, p->it.prep.serial_hex, &p->keys);
    *out = p;
    p = NULL;
out:
    torii_certdb_prep_free(p);
    return rc;
}

int torii_certdb_batch_create_prepared(struct torii_certdb_batch *b, struct torii_certdb_prep **pp,
                                       uint32_t *flags, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_certdb_prep *p = *pp;
    struct certdb_keys none;
    int ex;

    *pp = NULL;
    memset(&none, 0, sizeof(none));
    ex = certdb_exists(b, p->it.id);
    TORII_ENSURE(ex == 0, ex > 0 ? torii_errf(eb, TORII_EEXIST, "entity already exists")
                                 : torii_errf(eb, -ex, "store: read failed"));
    p->it.kind = TORII_STORE_CREATE;
    certdb_index(b, &p->it, &none, &p->keys);
    if (flags != NULL) {
        *flags = p->it.prep.flags;
    }
    (void)certdb_push(b, &p->it);
out:
    torii_certdb_prep_free(p);
    return rc;
}

int torii_certdb_batch_create(struct torii_certdb_batch *b, json_t *entity,
                              const struct torii_cert_prep_opts *o, uint32_t *flags,
                              struct torii_errbuf *eb)
{
    struct torii_certdb_prep *p = NULL;
    int rc = torii_certdb_prepare(b->st, entity, o, &p, eb);

    return rc == TORII_OK ? torii_certdb_batch_create_prepared(b, &p, flags, eb) : rc;
}

int torii_certdb_batch_replace(struct torii_certdb_batch *b, const struct torii_certdb_entry *read,
                               json_t *entity, const struct torii_cert_prep_opts *o,
                               uint32_t *flags, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct certdb_item it;
    struct certdb_keys old;
    struct certdb_keys keys;

    memset(&it, 0, sizeof(it));
    TORII_TRY(certdb_item_prepare(b->st, &it, entity, o, eb));
    it.kind = TORII_STORE_REPLACE_IF;
    it.expect = torii_xstrndup(read->text, read->len);
    it.expect_len = read->len;
    certdb_keys_stored(read->ent, it.id, read->aux, read->aux_len, &old);
    certdb_keys_of(entity, it.id, it.prep.serial_hex, &keys);
    certdb_index(b, &it, &old, &keys);
    if (flags != NULL) {
        *flags = it.prep.flags;
    }
    (void)certdb_push(b, &it);
out:
    certdb_item_clear(&it);
    return rc;
}

/* The JSON text of an entity stored as given, its privateKey sealed under the store's KEK
 * ring when it is in clear (the caller's entity is left as it is). */
static int certdb_text_sealed(const struct torii_certdb_batch *b, const json_t *entity,
                              const char *id, char **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const char *pk = json_string_value(json_object_get(entity, "privateKey"));
    json_t *copy = NULL;
    char *sealed = NULL;

    if (pk == NULL || pk[0] == '\0' || torii_store_kek(b->st) == NULL) {
        *out = json_dumps(entity, JSON_COMPACT);
        return *out != NULL ? TORII_OK : TORII_ENOMEM;
    }
    TORII_TRY(torii_pki_key_seal(torii_store_kek(b->st), id, pk, &sealed, eb));
    copy = json_copy((json_t *)(uintptr_t)entity); /* shallow: the clear string is not touched */
    TORII_ENSURE(copy != NULL && json_object_set_new(copy, "privateKey", json_string(sealed)) == 0,
                 TORII_ENOMEM);
    *out = json_dumps(copy, JSON_COMPACT);
    TORII_ENSURE(*out != NULL, TORII_ENOMEM);
out:
    json_decref(copy);
    if (sealed != NULL) {
        torii_secure_free(sealed, strlen(sealed));
    }
    return rc;
}

int torii_certdb_batch_put_record(struct torii_certdb_batch *b, const json_t *entity,
                                  const unsigned char *aux, size_t aux_len, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct certdb_item it;
    struct certdb_keys none;
    struct certdb_keys keys;
    struct torii_certrec *rec = torii_xcalloc(1, sizeof(*rec));
    const char *id = json_string_value(json_object_get(entity, "id"));

    memset(&it, 0, sizeof(it));
    memset(&none, 0, sizeof(none));
    TORII_ENSURE(id != NULL && id[0] != '\0', torii_errf(eb, TORII_EINVAL, "entity without an id"));
    TORII_ENSURE(aux != NULL && torii_certrec_decode(aux, aux_len, rec) == TORII_OK
                     && !rec->summary,
                 torii_errf(eb, TORII_EINVAL, "record of '%.200s' does not decode", id));
    it.kind = TORII_STORE_PUT;
    it.id = torii_xstrdup(id);
    TORII_TRY(certdb_text_sealed(b, entity, id, &it.text, eb));
    it.prep.aux = torii_xmalloc(aux_len);
    memcpy(it.prep.aux, aux, aux_len);
    it.prep.aux_len = aux_len;
    it.prep.flags = rec->flags;
    certdb_keys_stored(entity, id, aux, aux_len, &keys);
    certdb_index(b, &it, &none, &keys);
    (void)certdb_push(b, &it);
out:
    free(rec);
    certdb_item_clear(&it);
    return rc;
}

int torii_certdb_batch_delete(struct torii_certdb_batch *b, const char *id, struct torii_errbuf *eb)
{
    struct certdb_item it;
    struct torii_certdb_entry rd;
    struct certdb_keys old;
    struct certdb_keys none;
    int rc;

    memset(&rd, 0, sizeof(rd));
    rc = torii_certdb_batch_get(b, id, TORII_CERTDB_WITH_AUX, &rd, eb);
    if (rc != TORII_OK && rc != TORII_ESTORE) {
        return torii_errf(eb, TORII_ENOTFOUND, "entity not found");
    }
    memset(&it, 0, sizeof(it));
    memset(&none, 0, sizeof(none));
    it.kind = TORII_STORE_DELETE;
    it.id = torii_xstrdup(id);
    /* An unreadable stored entity is still deleted (its bare index entry goes with it when
     * its record still names the serial). */
    certdb_keys_stored(rc == TORII_OK ? rd.ent : NULL, id, rd.aux, rd.aux_len, &old);
    certdb_index(b, &it, &old, &none);
    (void)certdb_push(b, &it);
    torii_certdb_entry_clear(&rd);
    return TORII_OK;
}

/* ---- commit ---- */

/* The store ops of items [from, to) into ops (room for every item's ops); returns how many. */
static size_t certdb_ops(const struct torii_certdb_batch *b, size_t from, size_t to,
                         struct torii_store_op *ops)
{
    size_t k = 0;

    for (size_t i = from; i < to; i++) {
        const struct certdb_item *it = &b->items[i];

        ops[k] = (struct torii_store_op){.kind = it->kind,
                                         .bucket = TORII_STORE_CERTS,
                                         .rec = {.id = it->id, .id_len = strlen(it->id)}};
        if (it->text != NULL) {
            ops[k].rec.json = it->text;
            ops[k].rec.json_len = strlen(it->text);
            ops[k].rec.aux = it->prep.aux;
            ops[k].rec.aux_len = it->prep.aux_len;
            ops[k].parsed = it->ent;
        }
        if (it->kind == TORII_STORE_REPLACE_IF) {
            ops[k].expect_json = it->expect;
            ops[k].expect_json_len = it->expect_len;
        }
        k++;
        for (size_t j = 0; j < it->n_sop; j++) {
            ops[k++] = (struct torii_store_op){
                .kind = it->sop[j].kind,
                .bucket = TORII_STORE_SERIALS,
                .rec = {.id = it->sop[j].key,
                        .id_len = strlen(it->sop[j].key),
                        .json = it->sop[j].val,
                        .json_len = it->sop[j].val != NULL ? strlen(it->sop[j].val) : 0}};
        }
    }
    return k;
}

/* One transaction of items [from, to), with the messages the API shows. */
static int certdb_apply(struct torii_certdb_batch *b, size_t from, size_t to,
                        struct torii_store_op *ops, struct torii_errbuf *eb)
{
    size_t n = certdb_ops(b, from, to, ops);
    const struct torii_store_remote *remote = torii_store_remote_of(b->st);
    /* Fleet mode: etcd is the source of truth; it brings the ops back into the store. */
    int rc = remote != NULL ? remote->commit(remote->ctx, ops, n, eb)
                            : torii_store_apply(b->st, ops, n, eb);

    if (rc == TORII_EEXIST) {
        rc = torii_errf(eb, TORII_EEXIST, "entity already exists");
    } else if (rc == TORII_ENOTFOUND) {
        rc = torii_errf(eb, TORII_ENOTFOUND, "entity not found");
    } else if (rc == TORII_ECONFLICT) {
        rc = torii_errf(eb, TORII_ECONFLICT,
                        "entity changed concurrently (renewed or updated by another request) "
                        "since this request read it; nothing was written: fetch it and retry");
    } else if (rc != TORII_OK && rc != TORII_EAGAIN) {
        torii_log(TORII_LOG_ERR, "certdb: certificate write failed: %s", eb != NULL ? eb->msg : "");
        if (rc == TORII_EINVAL) {
            rc = TORII_ESTORE; /* the entities were validated: a store refusal is our failure */
        }
    }
    return rc;
}

static void certdb_set_rc(struct certdb_item *it, int rc, const struct torii_errbuf *eb)
{
    it->rc = rc;
    (void)snprintf(it->eb.msg, sizeof(it->eb.msg), "%s",
                   rc != TORII_OK && eb->msg[0] != '\0' ? eb->msg : torii_strerror(rc));
}

int torii_certdb_batch_commit(struct torii_certdb_batch *b, enum torii_certdb_commit_mode mode,
                              struct torii_errbuf *eb)
{
    struct torii_errbuf local = {{0}};
    struct torii_store_op *ops = NULL;
    int rc = TORII_OK;

    TORII_ENSURE(!b->committed, torii_errf(eb, TORII_EINVAL, "certdb: batch committed twice"));
    b->committed = 1;
    if (b->n == 0) {
        return TORII_OK;
    }
    ops = torii_xcalloc(b->n * (1 + CERTDB_SOPS), sizeof(*ops));
    rc = certdb_apply(b, 0, b->n, ops, &local);
    if (mode == TORII_CERTDB_PER_ITEM
        && (rc == TORII_EEXIST || rc == TORII_ENOTFOUND || rc == TORII_ECONFLICT)) {
        /* A concurrent writer invalidated an item: each alone, in order. */
        for (size_t i = 0; i < b->n; i++) {
            struct torii_errbuf one = {{0}};
            certdb_set_rc(&b->items[i], certdb_apply(b, i, i + 1, ops, &one), &one);
        }
        rc = TORII_OK;
    } else {
        for (size_t i = 0; i < b->n; i++) {
            certdb_set_rc(&b->items[i], rc, &local);
        }
        if (mode == TORII_CERTDB_PER_ITEM) {
            rc = TORII_OK;
        } else if (rc != TORII_OK && eb != NULL) {
            *eb = local;
        }
    }
out:
    free(ops);
    return rc;
}

int torii_certdb_batch_item_rc(const struct torii_certdb_batch *b, size_t i, const char **msg)
{
    if (i >= b->n) {
        return TORII_EINVAL;
    }
    if (msg != NULL) {
        *msg = b->items[i].eb.msg;
    }
    return b->items[i].rc;
}

/* ---- read-modify-write and single items ---- */

int torii_certdb_update(struct torii_store *st, const char *id, const struct torii_certdb_rmw *rmw,
                        torii_certdb_edit_fn edit, void *arg, struct torii_errbuf *eb)
{
    unsigned attempts = rmw != NULL && rmw->attempts > 0 ? rmw->attempts : 1;
    int rc = TORII_OK;

    for (unsigned attempt = 0; attempt < attempts; attempt++) {
        struct torii_certdb_entry rd;
        struct torii_certdb_batch *b = NULL;
        int committed = 0;

        rc = torii_certdb_get(st, id, TORII_CERTDB_WITH_AUX, &rd, eb);
        if (rc != TORII_OK) {
            return rc;
        }
        b = torii_certdb_batch_new(st);
        rc = edit(b, &rd, attempt, arg, eb);
        if (rc == TORII_OK && b->n > 0) {
            if (rmw != NULL && rmw->between != NULL) {
                rmw->between(id, attempt, rmw->between_arg);
            }
            rc = torii_certdb_batch_commit(b, TORII_CERTDB_ATOMIC, eb);
            committed = 1;
        }
        torii_certdb_batch_free(b);
        torii_certdb_entry_clear(&rd);
        if (rc != TORII_ECONFLICT || !committed) {
            break;
        }
    }
    return rc;
}

int torii_certdb_create(struct torii_store *st, json_t *entity,
                        const struct torii_cert_prep_opts *o, uint32_t *flags,
                        struct torii_errbuf *eb)
{
    struct torii_certdb_batch *b = torii_certdb_batch_new(st);
    int rc = torii_certdb_batch_create(b, entity, o, flags, eb);

    if (rc == TORII_OK) {
        rc = torii_certdb_batch_commit(b, TORII_CERTDB_ATOMIC, eb);
    }
    torii_certdb_batch_free(b);
    return rc;
}

int torii_certdb_delete(struct torii_store *st, const char *id, struct torii_errbuf *eb)
{
    struct torii_certdb_batch *b = torii_certdb_batch_new(st);
    int rc = torii_certdb_batch_delete(b, id, eb);

    if (rc == TORII_OK) {
        rc = torii_certdb_batch_commit(b, TORII_CERTDB_ATOMIC, eb);
    }
    torii_certdb_batch_free(b);
    return rc;
}

int torii_certdb_create_all(struct torii_store *st, const json_t *entities, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_certdb_batch *b = torii_certdb_batch_new(st);
    size_t i;
    json_t *e;
    json_t *copy = NULL;

    /* A copy is prepared: with a KEK the stored key is sealed, and the caller's entities keep
     * the key a PKI call returns once (docs/api.md). */
    json_array_foreach (entities, i, e) {
        copy = json_deep_copy(e);
        TORII_ENSURE(copy != NULL, TORII_ENOMEM);
        TORII_TRY(torii_certdb_batch_create(b, copy, NULL, NULL, eb));
        json_decref(copy);
        copy = NULL;
    }
    rc = torii_certdb_batch_commit(b, TORII_CERTDB_ATOMIC, eb);
out:
    json_decref(copy);
    torii_certdb_batch_free(b);
    return rc;
}
