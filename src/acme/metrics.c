/* metrics.c - the ACME families of /metrics: orders by outcome and challenge failures by
 * type, from the service's atomic counters. Any thread. */
#include "torii/metrics.h"

#include "acme_int.h"

static const char *const acme_chal_types[] = {"http-01", "tls-alpn-01", "dns-01"};

/* Challenge answers this node's listeners gave (the CA reached this node). */
static void acme_answers_metrics(const struct torii_acme *a, struct torii_prom *p)
{
    uint64_t n[2];

    torii_acme_chal_answered(torii_acme__chal(a), n);
    TORII_ASSERT(torii_prom_family(p, "torii_acme_challenge_answers_total", "counter",
                                   "ACME challenge answers this node's listeners gave, by type")
                 == TORII_OK);
    for (size_t i = 0; i < 2; i++) {
        const char *const l[] = {"type", acme_chal_types[i]};
        TORII_ASSERT(torii_prom_sample(p, "torii_acme_challenge_answers_total", l, 1, (double)n[i])
                     == TORII_OK);
    }
}

void torii_acme_metrics_write(const struct torii_acme *a, struct torii_prom *p)
{
    struct torii_acme_counts c;
    static const char *const valid[] = {"outcome", "valid"};
    static const char *const invalid[] = {"outcome", "invalid"};

    if (a == NULL) {
        return; /* ACME not configured: no family */
    }
    torii_acme_counts_get(a, &c);
    /* Names and label keys are constants: formatting them cannot fail. */
    TORII_ASSERT(torii_prom_family(p, "torii_acme_orders_total", "counter",
                                   "ACME orders finished, by outcome")
                 == TORII_OK);
    TORII_ASSERT(torii_prom_sample(p, "torii_acme_orders_total", valid, 1, (double)c.orders_valid)
                 == TORII_OK);
    TORII_ASSERT(
        torii_prom_sample(p, "torii_acme_orders_total", invalid, 1, (double)c.orders_invalid)
        == TORII_OK);
    TORII_ASSERT(torii_prom_family(p, "torii_acme_challenge_failures_total", "counter",
                                   "ACME challenges the CA found invalid, by type")
                 == TORII_OK);
    for (size_t i = 0; i < 3; i++) {
        const char *const l[] = {"type", acme_chal_types[i]};
        TORII_ASSERT(torii_prom_sample(p, "torii_acme_challenge_failures_total", l, 1,
                                       (double)c.chal_failed[i])
                     == TORII_OK);
    }
    acme_answers_metrics(a, p);
    acme_od_metrics(torii_acme__od(a), p);
}
