/* jobgate.h - "may this node run job X now": the one question the renewal thread and the ACME
 * service ask before work that exactly one node of a fleet may do (docs/fleet.md, "Jobs").
 * They receive a gate in their option structs and never learn which mode they run in: a NULL
 * gate (a single node) always answers yes. In fleet mode the gate is the fleet's leader
 * election (fleet.h, torii_fleet_job_gate): yes while this node holds the job's lease.
 * Jobs: TORII_JOB_RENEWAL (the renewal cycle: re-issuing, expiry flags, copies),
 * TORII_JOB_ACME (ACME orders, ACME renewals, on-demand issuance), TORII_JOB_CRL,
 * TORII_JOB_TICKETS (session-ticket key rotation).
 * Threads: enter/leave on the thread that does the job's writes; held from any thread.
 * Ownership: ctx is borrowed and outlives every user of the gate. */
#ifndef TORII_JOBGATE_H
#define TORII_JOBGATE_H

#include <stddef.h>

#define TORII_JOB_RENEWAL "renewal"
#define TORII_JOB_ACME    "acme"
#define TORII_JOB_CRL     "crl"
#define TORII_JOB_TICKETS "tickets"

struct torii_job_gate {
    /* 1 when this node may run job now. Until leave, the calling thread's certificate writes
     * are fenced by the job: in a fleet they fail (TORII_ECONFLICT) once another node holds
     * it, so a deposed doer cannot write. */
    int (*enter)(void *ctx, const char *job);
    /* The calling thread's writes are no longer fenced. */
    void (*leave)(void *ctx);
    /* 1 when this node holds job now; no fencing. Any thread. */
    int (*held)(void *ctx, const char *job);
    void *ctx;
};

/** enter through g; NULL gate: 1. */
static inline int torii_job_enter(const struct torii_job_gate *g, const char *job)
{
    return g == NULL || g->enter == NULL || g->enter(g->ctx, job);
}

/** leave through g; NULL gate: nothing. */
static inline void torii_job_leave(const struct torii_job_gate *g)
{
    if (g != NULL && g->leave != NULL) {
        g->leave(g->ctx);
    }
}

/** held through g; NULL gate: 1. */
static inline int torii_job_held(const struct torii_job_gate *g, const char *job)
{
    return g == NULL || g->held == NULL || g->held(g->ctx, job);
}

#endif
