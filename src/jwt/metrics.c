/* metrics.c - torii_jwt_verifications_total{route,outcome} (jwt.h): one relaxed atomic counter
 * per (route index, outcome), bumped by the worker threads, read by the admin /metrics route.
 * The table is static, so it survives a reload that swaps the routes (a route keeps its index
 * label). */
#include "torii/metrics.h"

#include <stdatomic.h>
#include <stdio.h>

#include "torii/jwt.h"

#define JWT_METRIC_ROWS (TORII_JWT_METRIC_ROUTES + 1u) /* the last row: route="other" */

static _Atomic uint64_t jwt_counts[JWT_METRIC_ROWS][TORII_JWT_OUTCOMES];

const char *torii_jwt_outcome_name(unsigned outcome)
{
    if (outcome == TORII_JWT_OUTCOME_MISSING) {
        return "missing";
    }
    if (outcome == TORII_JWT_OUTCOME_BAD_CLAIM) {
        return "bad_claim";
    }
    return torii_jwt_verdict_name((enum torii_jwt_verdict)outcome);
}

static unsigned jwt_metric_row(unsigned route)
{
    return route < TORII_JWT_METRIC_ROUTES ? route : TORII_JWT_METRIC_ROUTES;
}

void torii_jwt_metrics_count(unsigned route, unsigned outcome)
{
    if (outcome < TORII_JWT_OUTCOMES) {
        atomic_fetch_add_explicit(&jwt_counts[jwt_metric_row(route)][outcome], 1,
                                  memory_order_relaxed);
    }
}

uint64_t torii_jwt_metrics_get(unsigned route, unsigned outcome)
{
    if (outcome >= TORII_JWT_OUTCOMES) {
        return 0;
    }
    return atomic_load_explicit(&jwt_counts[jwt_metric_row(route)][outcome], memory_order_relaxed);
}

static void jwt_metrics_row(struct torii_prom *p, unsigned row, const uint64_t *v)
{
    char route[16];
    const char *labels[4] = {"route", route, "outcome", NULL};

    if (row < TORII_JWT_METRIC_ROUTES) {
        (void)snprintf(route, sizeof(route), "%u", row);
    } else {
        (void)snprintf(route, sizeof(route), "other");
    }
    for (unsigned o = 0; o < TORII_JWT_OUTCOMES; o++) {
        labels[3] = torii_jwt_outcome_name(o);
        /* constant names and keys: cannot fail */
        TORII_ASSERT(torii_prom_sample(p, "torii_jwt_verifications_total", labels, 2, (double)v[o])
                     == TORII_OK);
    }
}

void torii_jwt_metrics_write(struct torii_prom *p)
{
    uint64_t v[TORII_JWT_OUTCOMES];

    TORII_ASSERT(torii_prom_family(p, "torii_jwt_verifications_total", "counter",
                                   "JWT checks of routes with jwt, by route index and outcome")
                 == TORII_OK);
    for (unsigned row = 0; row < JWT_METRIC_ROWS; row++) {
        uint64_t any = 0;
        for (unsigned o = 0; o < TORII_JWT_OUTCOMES; o++) {
            v[o] = atomic_load_explicit(&jwt_counts[row][o], memory_order_relaxed);
            any |= v[o];
        }
        if (any != 0) {
            jwt_metrics_row(p, row, v);
        }
    }
}
