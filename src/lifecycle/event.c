/* event.c - what alert.c, exporter.c and renewer.c share below them: alert type names, the
 * AlertEvent envelope (redacted), the per-thread "lifecycle write" flag and loading an entity
 * from the store. Depends on no other file of the module. */
#include <stdlib.h>
#include <string.h>

#include "lifecycle_int.h"
#include "torii/alert.h"
#include "torii/certdb.h"
#include "torii/mem.h"
#include "torii/pki.h"

static const char *const alert_names[TORII_ALERT_TYPES] = {
    "CertAlmostExpiredAlert", "CertExpiredAlert", "CertRenewalAlert", "CertRenewalFailedAlert",
    "CertCreatedAlert",       "CertUpdatedAlert", "CertDeletedAlert",
};

/* Set while this thread applies lifecycle writes (renewal, validity watch); its thread. */
static _Thread_local int lifecycle_writing;

void torii_lifecycle_write_begin(void)
{
    lifecycle_writing++;
}

void torii_lifecycle_write_end(void)
{
    if (lifecycle_writing > 0) {
        lifecycle_writing--;
    }
}

int torii_lifecycle__writing(void)
{
    return lifecycle_writing > 0;
}

const char *torii_alert_type_name(enum torii_alert_type t)
{
    if ((unsigned)t >= TORII_ALERT_TYPES) {
        return NULL;
    }
    return alert_names[t];
}

int torii_alert_type_parse(const char *name, enum torii_alert_type *out)
{
    for (unsigned i = 0; name != NULL && i < TORII_ALERT_TYPES; i++) {
        if (strcmp(alert_names[i], name) == 0) {
            *out = (enum torii_alert_type)i;
            return TORII_OK;
        }
    }
    return TORII_EINVAL;
}

json_t *torii_alert_envelope(enum torii_alert_type t, const json_t *entity, const json_t *extra,
                             int64_t now_ms)
{
    json_t *env = NULL;
    json_t *cert = NULL;
    char uuid[40];
    const char *k;
    json_t *v;

    if ((unsigned)t >= TORII_ALERT_TYPES || torii_uuid_id("", uuid, sizeof(uuid)) != TORII_OK) {
        return NULL;
    }
    if (entity != NULL) {
        cert = torii_cert_redacted(entity);
        if (cert == NULL) {
            return NULL;
        }
    } else {
        cert = json_null();
    }
    env = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "@id", uuid, "@timestamp",
                    (json_int_t)now_ms, "@type", "AlertEvent", "@product", "torii", "@serviceId",
                    "--", "@service", "torii", "@env", "prod", "alert", alert_names[t],
                    "certificate", cert);
    if (env == NULL) {
        return NULL;
    }
    if (json_is_object(extra)) {
        json_object_foreach ((json_t *)(uintptr_t)extra, k, v) {
            if (json_object_get(env, k) == NULL && strcmp(k, "privateKey") != 0
                && strcmp(k, "password") != 0) {
                (void)json_object_set(env, k, v);
            }
        }
    }
    return env;
}

int torii_lifecycle__load(struct torii_store *store, const char *id, json_t **out)
{
    return torii_certdb_load(store, id, out, NULL);
}
