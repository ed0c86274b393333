/* policy.c - pure rules of the lifecycle: expiry state, due-ness, retry backoff. */
#include <string.h>

#include "torii/renew.h"

void torii_renew_policy_from_config(const struct torii_config *cfg, struct torii_renew_policy *p)
{
    p->threshold_pct = cfg->renewal_threshold_pct >= 1 && cfg->renewal_threshold_pct <= 99
                           ? cfg->renewal_threshold_pct
                           : 20;
    p->almost_expired_ms = (int64_t)cfg->alerts_almost_expired_days * 86400 * 1000;
}

int torii_renew_in_last_pct(int64_t from_ms, int64_t to_ms, int64_t now_ms, unsigned pct)
{
    __int128 left;
    __int128 total;

    if (now_ms >= to_ms) {
        return 0;
    }
    if (to_ms <= from_ms) {
        return 1;
    }
    left = (__int128)to_ms - now_ms;
    total = (__int128)to_ms - from_ms;
    return left * 100 < (__int128)pct * total;
}

enum torii_renew_state torii_renew_state_of(int64_t from_ms, int64_t to_ms, int64_t now_ms,
                                            const struct torii_renew_policy *p)
{
    if (now_ms >= to_ms) {
        return TORII_RENEW_STATE_EXPIRED;
    }
    if (now_ms < from_ms) {
        return TORII_RENEW_STATE_NOT_YET_VALID;
    }
    if (torii_renew_in_last_pct(from_ms, to_ms, now_ms, p->threshold_pct)
        || (p->almost_expired_ms > 0 && to_ms - now_ms <= p->almost_expired_ms)) {
        return TORII_RENEW_STATE_ALMOST_EXPIRED;
    }
    return TORII_RENEW_STATE_OK;
}

static int policy_flag(const json_t *e, const char *k)
{
    return json_is_true(json_object_get(e, k));
}

int torii_renew_is_copy(const json_t *entity)
{
    const json_t *v = json_object_get(json_object_get(entity, "metadata"), "untilExpiration");

    return json_is_true(v) || (json_is_string(v) && strcmp(json_string_value(v), "true") == 0);
}

enum torii_renew_due torii_renew_due_of(const json_t *entity, int64_t now_ms,
                                        const struct torii_renew_policy *p)
{
    const json_t *from = json_object_get(entity, "from");
    const json_t *to = json_object_get(entity, "to");

    if (!json_is_object(entity) || !policy_flag(entity, "autoRenew")
        || policy_flag(entity, "revoked") || torii_renew_is_copy(entity) || !json_is_integer(from)
        || !json_is_integer(to)) {
        return TORII_RENEW_NOT_DUE;
    }
    if (!torii_renew_in_last_pct(json_integer_value(from), json_integer_value(to), now_ms,
                                 p->threshold_pct)) {
        return TORII_RENEW_NOT_DUE; /* also: expired certificates are never auto-renewed */
    }
    return policy_flag(entity, "letsEncrypt") ? TORII_RENEW_DUE_ACME : TORII_RENEW_DUE;
}

int64_t torii_renew_backoff_ms(unsigned attempt, int64_t min_ms, int64_t max_ms)
{
    int64_t d = min_ms;

    if (attempt == 0) {
        return 0;
    }
    if (min_ms <= 0) {
        return 0;
    }
    for (unsigned i = 1; i < attempt; i++) {
        if (d >= max_ms / 2) {
            return max_ms;
        }
        d *= 2;
    }
    return d < max_ms ? d : max_ms;
}
