/* keys_cmd.c - the `torii keys migrate|rotate` command line (docs/operations.md, Keys at
 * rest): arguments, configuration, KEK ring, instance lock, then torii_certdb_rekey (the walk:
 * a cursor over ids, one durable transaction per batch, resumable) and the compaction of the
 * data file (LMDB keeps replaced bytes in free pages, and those bytes are the clear keys).
 * The daemon must be stopped (the instance lock is taken). Main thread of the command. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torii/acme.h"
#include "torii/admin.h"
#include "torii/certdb.h"
#include "torii/conf.h"
#include "torii/daemon.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/store.h"

#define KEYS_BATCH_DEFAULT 64
#define KEYS_BATCH_MAX     10000

/* --test-crash-after-batches N (tests only): SIGKILL once N batches are committed. */
static void keys_crash_seam(unsigned batches, void *arg)
{
    if (batches == *(const unsigned *)arg) {
        (void)raise(SIGKILL);
    }
}

int torii_admin_kek_load(const struct torii_config *cfg, struct torii_kek_ring **out,
                         struct torii_errbuf *eb)
{
    struct torii_kek_sources s = {
        .file = cfg->keys_kek_file,
        .credential = cfg->keys_kek_credential,
        .previous_files = cfg->keys_previous_kek_files,
        .previous_credentials = cfg->keys_previous_kek_credentials,
        /* NOLINTNEXTLINE(concurrency-mt-unsafe): torii never calls setenv, so getenv only reads */
        .credentials_dir = getenv("CREDENTIALS_DIRECTORY"),
    };

    return torii_kek_ring_load(&s, out, eb);
}

static int keys_usage(FILE *err)
{
    (void)fprintf(err, "usage: torii keys migrate|rotate [-c FILE] [--batch N]\n");
    return 2;
}

struct keys_args {
    const char *conf;
    int rewrap;
    unsigned long batch;
    unsigned long crash_after;
};

static int keys_parse_num(const char *s, unsigned long max, unsigned long *out)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);

    if (s[0] < '0' || s[0] > '9' || *end != '\0' || v == 0 || v > max) {
        return TORII_EINVAL;
    }
    *out = v;
    return TORII_OK;
}

/* One option and its value: -c FILE, --batch N, --test-crash-after-batches N. */
static int keys_parse_opt(const char *name, const char *v, struct keys_args *a)
{
    if (v == NULL) {
        return TORII_EINVAL;
    }
    if (strcmp(name, "-c") == 0) {
        a->conf = v;
        return TORII_OK;
    }
    if (strcmp(name, "--batch") == 0) {
        return keys_parse_num(v, KEYS_BATCH_MAX, &a->batch);
    }
    if (strcmp(name, "--test-crash-after-batches") == 0) {
        return keys_parse_num(v, 1000000, &a->crash_after);
    }
    return TORII_EINVAL;
}

static int keys_parse(int argc, char **argv, struct keys_args *a, FILE *err)
{
    a->batch = KEYS_BATCH_DEFAULT;
    if (argc < 2 || (strcmp(argv[1], "migrate") != 0 && strcmp(argv[1], "rotate") != 0)) {
        return keys_usage(err);
    }
    a->rewrap = strcmp(argv[1], "rotate") == 0;
    for (int i = 2; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (keys_parse_opt(argv[i], v, a) != TORII_OK) {
            (void)fprintf(err, "torii keys: bad argument '%s'\n", argv[i]);
            return keys_usage(err);
        }
        i++;
    }
    return 0;
}

/* The walk over the store (certdb), the store closed before the compaction. */
static int keys_rekey(const struct torii_config *cfg, const struct keys_args *a,
                      const struct torii_kek_ring *ring, size_t *done, size_t *accounts,
                      struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_store *st = NULL;
    struct torii_store_opts so = {.dir = cfg->data_dir, .certidx = torii_certdb_idx_derive};
    unsigned crash_after = (unsigned)a->crash_after;
    struct torii_certdb_rekey_opts ro = {.kek = ring,
                                         .rewrap = a->rewrap,
                                         .batch = a->batch,
                                         .after_batch = crash_after > 0 ? keys_crash_seam : NULL,
                                         .after_batch_arg = &crash_after};

    TORII_TRY(torii_store_open(&so, &st, eb));
    TORII_TRY(torii_certdb_rekey(st, &ro, done, eb));
    rc = torii_acme_accounts_rekey(st, ring, a->rewrap, accounts, eb);
out:
    torii_store_free(st);
    return rc;
}

static void keys_report(FILE *out, const char *cmd, size_t done, size_t accounts,
                        const char *kek_id)
{
    (void)fprintf(out,
                  "torii keys %s: %zu record%s sealed under KEK %s (and %zu ACME account key%s); "
                  "data file compacted\n",
                  cmd, done, done == 1 ? "" : "s", kek_id, accounts, accounts == 1 ? "" : "s");
}

/* Ring, lock, walk, compact. */
static int keys_exec(const struct torii_config *cfg, const struct keys_args *a, FILE *out,
                     struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_kek_ring *ring = NULL;
    struct torii_daemon *d = NULL;
    char cur[2 * TORII_KEK_ID_LEN + 1];
    size_t done = 0;
    size_t accounts = 0;

    TORII_TRY(torii_admin_kek_load(cfg, &ring, eb));
    TORII_ENSURE(ring != NULL, torii_errf(eb, TORII_EINVAL,
                                          "no KEK configured: set keys.kek_file or "
                                          "keys.kek_credential (docs/operations.md)"));
    TORII_TRY(torii_daemon_new(cfg, &d, eb));
    TORII_TRY(torii_daemon_lock(d, cfg->data_dir, eb));
    TORII_TRY(keys_rekey(cfg, a, ring, &done, &accounts, eb));
    TORII_TRY(torii_store_compact(cfg->data_dir, eb));
    TORII_TRY(torii_kek_ring_current_id(ring, cur));
    keys_report(out, a->rewrap ? "rotate" : "migrate", done, accounts, cur);
out:
    torii_daemon_free(d);
    torii_kek_ring_free(ring);
    return rc;
}

int torii_admin_keys_cmd(int argc, char **argv, FILE *out, FILE *err)
{
    struct keys_args a = {0};
    struct torii_conf_errs errs = {NULL, 0};
    struct torii_config *cfg = NULL;
    struct torii_errbuf eb = {{0}};
    int status = keys_parse(argc, argv, &a, err);

    if (status != 0) {
        return status;
    }
    if (torii_config_check(a.conf, &cfg, &errs) != TORII_OK) {
        for (size_t i = 0; i < errs.n; i++) {
            (void)fprintf(err, "torii: %s\n", errs.msgs[i]);
        }
        status = 1;
    } else if (keys_exec(cfg, &a, out, &eb) != TORII_OK) {
        (void)fprintf(err, "torii keys %s: %s\n", argv[1], eb.msg);
        status = 1;
    }
    torii_conf_errs_free(&errs);
    torii_config_free(cfg);
    return status;
}
