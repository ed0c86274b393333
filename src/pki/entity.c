/* entity.c - the certificate entity JSON: template, normalize (types + defaults), enrich
 * (derived fields from the chain and key), redaction.
 *
 * Field names, types and defaults follow Otoroshi's Cert entity (reference 1.1). Deliberate
 * differences (reference section 13):
 *  - `valid` also requires: now within [from, to], not revoked, a private key, and each chain
 *    certificate signed by the next one. A key that does not match the leaf is an error.
 *  - `subject` is built per attribute rather than by splitting a printed DN on ',', so an
 *    escaped comma inside a value no longer corrupts it (see torii_pki__dn_string in data.c).
 *  - name/description: when normalize had to fall back to "none" because domain was unknown,
 *    enrich replaces that "none" with the derived domain / "Certificate for <domain>".
 *  - JSON null for a non-nullable field means "absent" (the default applies). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/clock.h"
#include "torii/pki.h"

enum pki_ftype {
    PKI_F_STR,
    PKI_F_STR_OR_NULL,
    PKI_F_BOOL,
    PKI_F_NUM,
    PKI_F_STR_ARRAY,
    PKI_F_STR_MAP,
    PKI_F_LOC,
    PKI_F_OUTPUT, /* certType, warnings: accepted on input, dropped by normalize */
};

struct pki_field {
    const char *name;
    enum pki_ftype type;
};

/* Serializer order of the reference (1.1); certType sits after sans. */
static const struct pki_field pki_fields[] = {
    {"_loc", PKI_F_LOC},
    {"id", PKI_F_STR},
    {"domain", PKI_F_STR},
    {"name", PKI_F_STR},
    {"description", PKI_F_STR},
    {"chain", PKI_F_STR},
    {"caRef", PKI_F_STR_OR_NULL},
    {"privateKey", PKI_F_STR},
    {"selfSigned", PKI_F_BOOL},
    {"ca", PKI_F_BOOL},
    {"valid", PKI_F_BOOL},
    {"exposed", PKI_F_BOOL},
    {"revoked", PKI_F_BOOL},
    {"autoRenew", PKI_F_BOOL},
    {"letsEncrypt", PKI_F_BOOL},
    {"subject", PKI_F_STR},
    {"from", PKI_F_NUM},
    {"to", PKI_F_NUM},
    {"client", PKI_F_BOOL},
    {"keypair", PKI_F_BOOL},
    {"sans", PKI_F_STR_ARRAY},
    {"certType", PKI_F_OUTPUT},
    {"warnings", PKI_F_OUTPUT}, /* of POST/PUT responses only: never stored */
    {"password", PKI_F_STR_OR_NULL},
    {"metadata", PKI_F_STR_MAP},
    {"tags", PKI_F_STR_ARRAY},
};

#define PKI_N_FIELDS (sizeof(pki_fields) / sizeof(pki_fields[0]))

static const struct pki_field *pki_field_find(const char *name)
{
    size_t i;

    for (i = 0; i < PKI_N_FIELDS; i++) {
        if (strcmp(pki_fields[i].name, name) == 0) {
            return &pki_fields[i];
        }
    }
    return NULL;
}

static int pki_is_str_array(const json_t *v)
{
    size_t i;
    json_t *x;

    if (!json_is_array(v)) {
        return 0;
    }
    json_array_foreach (v, i, x) {
        if (!json_is_string(x)) {
            return 0;
        }
    }
    return 1;
}

static int pki_is_str_map(const json_t *v)
{
    const char *k;
    json_t *x;

    if (!json_is_object(v)) {
        return 0;
    }
    json_object_foreach ((json_t *)(uintptr_t)v, k, x) {
        if (!json_is_string(x)) {
            return 0;
        }
    }
    return 1;
}

static int pki_check_loc(const json_t *v, struct torii_errbuf *eb)
{
    const json_t *tenant;
    const json_t *teams;

    if (!json_is_object(v)) {
        return torii_errf(eb, TORII_EINVAL, "field '_loc' must be an object");
    }
    tenant = json_object_get(v, "tenant");
    teams = json_object_get(v, "teams");
    if (tenant != NULL && !json_is_null(tenant) && !json_is_string(tenant)) {
        return torii_errf(eb, TORII_EINVAL, "field '_loc.tenant' must be a string");
    }
    if (teams != NULL && !json_is_null(teams) && !pki_is_str_array(teams)) {
        return torii_errf(eb, TORII_EINVAL, "field '_loc.teams' must be an array of strings");
    }
    return TORII_OK;
}

static int pki_check_field(const struct pki_field *f, const json_t *v, struct torii_errbuf *eb)
{
    if (json_is_null(v)) {
        return TORII_OK; /* absent: the default applies (or null stays, when nullable) */
    }
    switch (f->type) {
    case PKI_F_STR:
    case PKI_F_STR_OR_NULL:
        if (!json_is_string(v)) {
            return torii_errf(eb, TORII_EINVAL, "field '%s' must be a string", f->name);
        }
        if (strcmp(f->name, "id") == 0 && json_string_length(v) == 0) {
            return torii_errf(eb, TORII_EINVAL, "field 'id' must not be empty");
        }
        return TORII_OK;
    case PKI_F_BOOL:
        if (!json_is_boolean(v)) {
            return torii_errf(eb, TORII_EINVAL, "field '%s' must be a boolean", f->name);
        }
        return TORII_OK;
    case PKI_F_NUM:
        if (!json_is_number(v)) {
            return torii_errf(eb, TORII_EINVAL, "field '%s' must be a number (epoch ms)", f->name);
        }
        if (json_is_real(v) && !(json_real_value(v) >= -9.2e18 && json_real_value(v) <= 9.2e18)) {
            return torii_errf(eb, TORII_EINVAL, "field '%s' is out of range", f->name);
        }
        return TORII_OK;
    case PKI_F_STR_ARRAY:
        if (!pki_is_str_array(v)) {
            return torii_errf(eb, TORII_EINVAL, "field '%s' must be an array of strings", f->name);
        }
        return TORII_OK;
    case PKI_F_STR_MAP:
        if (!pki_is_str_map(v)) {
            return torii_errf(eb, TORII_EINVAL, "field '%s' must be an object of string values",
                              f->name);
        }
        return TORII_OK;
    case PKI_F_LOC:
        return pki_check_loc(v, eb);
    case PKI_F_OUTPUT:
        return TORII_OK;
    default:
        return torii_errf(eb, TORII_EINVAL, "field '%s': unknown type", f->name);
    }
}

/* Rebuild the object in serializer order (jansson keeps insertion order). */
static int pki_reorder(json_t *e)
{
    int rc = TORII_OK;
    json_t *tmp = json_object();
    size_t i;

    TORII_ENSURE(tmp != NULL, TORII_ENOMEM);
    for (i = 0; i < PKI_N_FIELDS; i++) {
        json_t *v = json_object_get(e, pki_fields[i].name);
        if (v != NULL) {
            TORII_ENSURE(json_object_set(tmp, pki_fields[i].name, v) == 0, TORII_ENOMEM);
        }
    }
    json_object_clear(e);
    TORII_ENSURE(json_object_update(e, tmp) == 0, TORII_ENOMEM);
out:
    json_decref(tmp);
    return rc;
}

/* A NULL value here comes from json_string() refusing invalid UTF-8 (allocation failures
 * inside jansson are as unlikely as anywhere else), hence EINVAL. */
static int pki_set(json_t *e, const char *k, json_t *v_owned)
{
    if (v_owned == NULL) {
        return TORII_EINVAL;
    }
    return json_object_set_new(e, k, v_owned) == 0 ? TORII_OK : TORII_ENOMEM;
}

static int pki_is_blank(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') {
            return 0;
        }
    }
    return 1;
}

static int pki_fill_loc(json_t *e)
{
    int rc = TORII_OK;
    json_t *loc = json_object_get(e, "_loc");

    if (!json_is_object(loc)) {
        loc = json_object();
        TORII_ENSURE(loc != NULL, TORII_ENOMEM);
        TORII_TRY(pki_set(e, "_loc", loc));
    }
    if (!json_is_string(json_object_get(loc, "tenant"))) {
        TORII_TRY(pki_set(loc, "tenant", json_string("default")));
    }
    if (!json_is_array(json_object_get(loc, "teams"))) {
        TORII_TRY(pki_set(loc, "teams", json_pack("[s]", "default")));
    }
out:
    return rc;
}

/* Every member known and of its type (nothing is changed before this passed). */
static int pki_norm_validate(json_t *entity, struct torii_errbuf *eb)
{
    const char *k;
    json_t *v;

    json_object_foreach (entity, k, v) {
        const struct pki_field *f = pki_field_find(k);
        int rc = f != NULL ? pki_check_field(f, v, eb)
                           : torii_errf(eb, TORII_EINVAL, "unknown field '%s'", k);
        if (rc != TORII_OK) {
            return rc;
        }
    }
    return TORII_OK;
}

/* Output-only members go; null means absent for non-nullable fields. */
static void pki_norm_drop_nulls(json_t *entity)
{
    (void)json_object_del(entity, "certType");
    (void)json_object_del(entity, "warnings");
    for (size_t i = 0; i < PKI_N_FIELDS; i++) {
        const struct pki_field *f = &pki_fields[i];
        const json_t *v = json_object_get(entity, f->name);
        if (v != NULL && json_is_null(v) && f->type != PKI_F_STR_OR_NULL) {
            (void)json_object_del(entity, f->name);
        }
    }
}

/* k = v_owned unless k is present (v_owned is then dropped). */
static int pki_set_absent(json_t *e, const char *k, json_t *v_owned)
{
    if (json_object_get(e, k) != NULL) {
        json_decref(v_owned);
        return TORII_OK;
    }
    return pki_set(e, k, v_owned);
}

/* id (generated), name, description and domain when missing. */
static int pki_norm_names(json_t *entity)
{
    int rc = TORII_OK;
    const char *domain = json_string_value(json_object_get(entity, "domain"));
    char id[64];

    if (json_object_get(entity, "id") == NULL) {
        rc = torii_uuid_id("certificate_", id, sizeof(id));
        rc = rc == TORII_OK ? pki_set(entity, "id", json_string(id)) : rc;
    }
    rc = rc == TORII_OK
             ? pki_set_absent(entity, "name", json_string(domain != NULL ? domain : "none"))
             : rc;
    rc = rc == TORII_OK ? pki_set_absent(entity, "description",
                                         domain != NULL ? json_sprintf("Certificate for %s", domain)
                                                        : json_string("none"))
                        : rc;
    if (rc == TORII_OK && domain == NULL) {
        rc = pki_set(entity, "domain", json_string("--"));
    }
    return rc;
}

/* The default of an absent field (a new reference), NULL when it has none. */
static json_t *pki_field_default(const struct pki_field *f, int64_t now)
{
    switch (f->type) {
    case PKI_F_STR:
        return json_string(strcmp(f->name, "subject") == 0 ? "--" : "");
    case PKI_F_STR_OR_NULL:
        return json_null();
    case PKI_F_BOOL:
        return json_false();
    case PKI_F_NUM:
        return json_integer((json_int_t)now);
    case PKI_F_STR_ARRAY:
        return json_array();
    case PKI_F_STR_MAP:
        return json_object();
    default: /* PKI_F_LOC (pki_fill_loc), PKI_F_OUTPUT */
        return NULL;
    }
}

/* Absent fields get their defaults; numbers sent as reals become integers. */
static int pki_norm_defaults(json_t *entity, int64_t now)
{
    int rc = TORII_OK;

    for (size_t i = 0; i < PKI_N_FIELDS && rc == TORII_OK; i++) {
        const struct pki_field *f = &pki_fields[i];
        const json_t *v = json_object_get(entity, f->name);
        json_t *def = v == NULL ? pki_field_default(f, now) : NULL;

        if (v != NULL && f->type == PKI_F_NUM && json_is_real(v)) {
            rc = pki_set(entity, f->name, json_integer((json_int_t)json_real_value(v)));
        } else if (def != NULL) {
            rc = pki_set(entity, f->name, def);
        }
    }
    return rc;
}

int torii_cert_normalize(json_t *entity, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const json_t *pw;

    TORII_ENSURE(json_is_object(entity),
                 torii_errf(eb, TORII_EINVAL, "certificate entity must be a JSON object"));
    TORII_TRY(pki_norm_validate(entity, eb));
    pki_norm_drop_nulls(entity);
    TORII_TRY(pki_norm_names(entity));
    TORII_TRY(pki_fill_loc(entity));
    TORII_TRY(pki_norm_defaults(entity, torii_clock_now_ms()));
    pw = json_object_get(entity, "password");
    rc = json_is_string(pw) && pki_is_blank(json_string_value(pw))
             ? pki_set(entity, "password", json_null())
             : TORII_OK;
    rc = rc == TORII_OK ? pki_reorder(entity) : rc;
out:
    return rc;
}

json_t *torii_cert_template(void)
{
    char id[64];
    json_t *e = NULL;

    if (torii_uuid_id("cert_", id, sizeof(id)) != TORII_OK) {
        return NULL;
    }
    e = json_pack("{s:s}", "id", id);
    if (e == NULL || torii_cert_normalize(e, NULL) != TORII_OK) {
        json_decref(e);
        return NULL;
    }
    return e;
}

json_t *torii_cert_redacted(const json_t *entity)
{
    json_t *c = json_deep_copy(entity);

    if (c != NULL && json_is_object(c)) {
        (void)json_object_del(c, "privateKey");
        (void)json_object_del(c, "password");
    }
    return c;
}

void torii_cert_secrets_wipe(json_t *entity)
{
    static const char *const secret[] = {"privateKey", "password"};

    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++) {
        const json_t *v = json_object_get(entity, secret[i]);
        const char *s = json_string_value(v);

        if (s != NULL) {
            /* jansson hands out const text; the string is ours to clear before it is freed. */
            OPENSSL_cleanse((void *)(uintptr_t)s, json_string_length(v));
        }
    }
}

/* ---- enrich ---- */

static int pki_rfc2253(const X509_NAME *name, char **out)
{
    int rc = TORII_OK;
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    TORII_ENSURE(b != NULL, TORII_ENOMEM);
    TORII_ENSURE(X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0,
                 TORII_EINVAL);
    len = BIO_get_mem_data(b, &data);
    TORII_ENSURE(len >= 0, TORII_ENOMEM);
    *out = torii_xstrndup(data != NULL ? data : "", (size_t)len);
out:
    BIO_free(b);
    return rc;
}

/* sans: dNSName, iPAddress (text) and otherName with a UTF8String value, in certificate
 * order; rfc822/URI entries are ignored (reference 1.2). */
/* One SAN as a JSON string (DNS, UTF-8 otherName, IP), NULL for other kinds and for names
 * jansson rejects (invalid UTF-8, embedded NUL: skipped). */
static json_t *pki_san_json(const GENERAL_NAME *g)
{
    const ASN1_STRING *str = NULL;
    char ip[64];

    if (g->type == GEN_IPADD) {
        return torii_pki__ip_text(g->d.iPAddress, ip, sizeof(ip)) == TORII_OK ? json_string(ip)
                                                                              : NULL;
    }
    if (g->type == GEN_DNS) {
        str = g->d.dNSName;
    } else if (g->type == GEN_OTHERNAME && g->d.otherName->value != NULL
               && g->d.otherName->value->type == V_ASN1_UTF8STRING) {
        str = g->d.otherName->value->value.utf8string;
    }
    return str != NULL ? json_stringn((const char *)ASN1_STRING_get0_data(str),
                                      (size_t)ASN1_STRING_length(str))
                       : NULL;
}

static int pki_sans(X509 *leaf, json_t **out)
{
    int rc = TORII_OK;
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    json_t *arr = json_array();

    TORII_ENSURE(arr != NULL, TORII_ENOMEM);
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        json_t *js = pki_san_json(sk_GENERAL_NAME_value(gens, i));
        TORII_ENSURE(js == NULL || json_array_append_new(arr, js) == 0, TORII_ENOMEM);
    }
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
    return rc;
}

const char *torii_cert_type(const json_t *e)
{
    static const char *const order[] = {"client", "ca", "letsEncrypt", "keypair", "selfSigned"};
    size_t i;

    for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (json_is_true(json_object_get(e, order[i]))) {
            return order[i];
        }
    }
    return "certificate";
}

/* domain = CN, else first SAN, else the RFC 2253 subject ("--" when nothing prints). */
static int pki_domain(X509 *leaf, const json_t *sans, json_t **out)
{
    int rc = TORII_OK;
    char *cn = torii_pki__cn(leaf);
    char *raw = NULL;
    json_t *domain = NULL;

    if (cn != NULL) {
        domain = json_string(cn);
    } else if (json_array_size(sans) > 0) {
        domain = json_incref(json_array_get(sans, 0));
    } else {
        TORII_TRY(pki_rfc2253(X509_get_subject_name(leaf), &raw));
        domain = json_string(raw[0] != '\0' ? raw : "--");
    }
    if (domain == NULL) {
        domain = json_string("--"); /* CN not valid UTF-8 for jansson */
    }
    TORII_ENSURE(domain != NULL, TORII_ENOMEM);
    *out = domain;
out:
    free(raw);
    free(cn);
    return rc;
}

/* The derived values of a parsed chain, before they are applied. */
struct pki_derived {
    char *pem;
    json_t *subject;
    json_t *domain;
    json_t *sans;
    int64_t from;
    int64_t to;
};

static void pki_derived_clear(struct pki_derived *d)
{
    free(d->pem);
    json_decref(d->subject);
    json_decref(d->domain);
    json_decref(d->sans);
}

static int pki_derive(STACK_OF(X509) * chain, struct pki_derived *d, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    X509 *leaf = sk_X509_value(chain, 0);
    char *subject = NULL;

    TORII_ENSURE(torii_pki__time_ms(X509_get0_notBefore(leaf), &d->from) == TORII_OK
                     && torii_pki__time_ms(X509_get0_notAfter(leaf), &d->to) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "chain: leaf validity dates do not convert"));
    TORII_TRY(torii_pki__chain_pem(chain, &d->pem));
    TORII_ENSURE(torii_pki__dn_string(X509_get_subject_name(leaf), &subject) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "chain: leaf subject does not print"));
    TORII_TRY(pki_sans(leaf, &d->sans));
    TORII_TRY(pki_domain(leaf, d->sans, &d->domain));
    d->subject = json_string(subject);
    TORII_ENSURE(d->subject != NULL,
                 torii_errf(eb, TORII_EINVAL, "chain: leaf subject is not valid UTF-8"));
out:
    free(subject);
    return rc;
}

/* Everything derived: apply (name/description still "none" get the domain). */
/* key = v_owned when key holds the placeholder "none" (v_owned is dropped otherwise). */
static int pki_set_if_none(json_t *e, const char *key, json_t *v_owned)
{
    const char *s = json_string_value(json_object_get(e, key));

    if (s == NULL || strcmp(s, "none") != 0) {
        json_decref(v_owned);
        return TORII_OK;
    }
    return pki_set(e, key, v_owned);
}

static int pki_apply_derived(json_t *entity, const struct pki_derived *d, int ca, int self_signed,
                             int valid)
{
    const struct {
        const char *k;
        json_t *v;
    } set[] = {
        {"chain", json_string(d->pem)},
        {"subject", json_incref(d->subject)},
        {"domain", json_incref(d->domain)},
        {"sans", json_incref(d->sans)},
        {"from", json_integer((json_int_t)d->from)},
        {"to", json_integer((json_int_t)d->to)},
        {"ca", json_boolean(ca)},
        {"selfSigned", json_boolean(self_signed)},
        {"valid", json_boolean(valid)},
    };
    int rc = TORII_OK;

    for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++) {
        if (rc == TORII_OK) {
            rc = pki_set(entity, set[i].k, set[i].v);
        } else {
            json_decref(set[i].v);
        }
    }
    rc = rc == TORII_OK ? pki_set_if_none(entity, "name", json_incref(d->domain)) : rc;
    rc = rc == TORII_OK
             ? pki_set_if_none(entity, "description",
                               json_sprintf("Certificate for %s", json_string_value(d->domain)))
             : rc;
    rc = rc == TORII_OK ? pki_set(entity, "certType", json_string(torii_cert_type(entity))) : rc;
    return rc == TORII_OK ? pki_reorder(entity) : rc;
}

int torii_pki__enrich_from(json_t *entity, STACK_OF(X509) * chain, EVP_PKEY *key, int64_t now_ms,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct pki_derived d;
    X509 *leaf = sk_X509_value(chain, 0);
    int valid;

    memset(&d, 0, sizeof(d));
    TORII_ENSURE(key == NULL || torii_pki__cert_key_match(leaf, key),
                 torii_errf(eb, TORII_EINVAL, "privateKey: does not match the leaf certificate"));
    TORII_TRY(pki_derive(chain, &d, eb));
    valid = key != NULL && now_ms >= d.from && now_ms <= d.to
            && !json_is_true(json_object_get(entity, "revoked")) && torii_pki__chain_links(chain);
    TORII_TRY(pki_apply_derived(entity, &d, (X509_get_extension_flags(leaf) & EXFLAG_CA) != 0,
                                torii_pki__self_signed(leaf), valid));
out:
    ERR_clear_error();
    pki_derived_clear(&d);
    return rc;
}

int torii_pki__entity_parse(const json_t *entity, const struct torii_kek_ring *kek,
                            STACK_OF(X509) * *chain, EVP_PKEY **key, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const char *pk = json_string_value(json_object_get(entity, "privateKey"));

    *chain = NULL;
    *key = NULL;
    TORII_ENSURE(json_string_length(json_object_get(entity, "chain")) > 0,
                 torii_errf(eb, TORII_EINVAL, "chain: empty"));
    TORII_TRY(torii_pki__chain_parse_lazy(json_string_value(json_object_get(entity, "chain")),
                                          chain, eb));
    if (pk != NULL && pk[0] != '\0') {
        TORII_TRY(torii_pki_entity_key_open(kek, entity, key, eb));
    }
out:
    if (rc != TORII_OK) {
        sk_X509_pop_free(*chain, X509_free);
        *chain = NULL;
    }
    return rc;
}

int torii_cert_enrich(json_t *entity, int64_t now_ms, struct torii_errbuf *eb)
{
    return torii_cert_enrich_kek(entity, NULL, now_ms, eb);
}

int torii_cert_enrich_kek(json_t *entity, const struct torii_kek_ring *kek, int64_t now_ms,
                          struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;

    TORII_TRY(torii_cert_normalize(entity, eb));
    TORII_TRY(torii_pki__entity_parse(entity, kek, &chain, &key, eb));
    rc = torii_pki__enrich_from(entity, chain, key, now_ms, eb);
out:
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}
