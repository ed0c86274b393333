/* fill.c - bench helper: put N generated ECDSA P-256 certificates for h<i>.bench.test into a
 * torii data dir (one LMDB transaction per batch), as if created through the API.
 * With PEM_DIR, also writes <PEM_DIR>/h<i>.pem (chain + key) and <PEM_DIR>/list.txt for the
 * peers (HAProxy crt-list, nginx) to load the same certificates.
 * usage: torii-fill DATA_DIR COUNT [PEM_DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torii/clock.h"
#include "torii/pki.h"
#include "torii/store.h"

#define FILL_BATCH 500

int main(int argc, char **argv)
{
    struct torii_store_opts so = {0};
    struct torii_store *st = NULL;
    struct torii_errbuf eb = {{0}};
    struct torii_store_op ops[FILL_BATCH];
    char *jsons[FILL_BATCH];
    unsigned char *auxs[FILL_BATCH];
    size_t auxl[FILL_BATCH];
    char ids[FILL_BATCH][64];
    const char *pem_dir = argc == 4 ? argv[3] : NULL;
    FILE *list = NULL;
    long n;

    if (argc < 3 || argc > 4 || (n = atol(argv[2])) <= 0) {
        (void)fprintf(stderr, "usage: torii-fill DATA_DIR COUNT [PEM_DIR]\n");
        return 2;
    }
    if (pem_dir != NULL) {
        char path[4096];
        (void)snprintf(path, sizeof(path), "%s/list.txt", pem_dir);
        if ((list = fopen(path, "w")) == NULL) {
            perror(path);
            return 1;
        }
    }
    so.dir = argv[1];
    if (torii_store_open(&so, &st, &eb) != TORII_OK) {
        (void)fprintf(stderr, "fill: %s\n", eb.msg);
        return 1;
    }
    for (long base = 0; base < n; base += FILL_BATCH) {
        size_t k = 0;
        for (long i = base; i < n && i < base + FILL_BATCH; i++, k++) {
            char name[64];
            const char *names[1] = {name};
            json_t *ent = NULL;

            (void)snprintf(name, sizeof(name), "h%ld.bench.test", i);
            (void)snprintf(ids[k], sizeof(ids[k]), "bench-%ld", i);
            if (torii_cert_generate_selfsigned(ids[k], names, 1, torii_clock_now_ms(), 365, &ent,
                                               &eb)
                    != TORII_OK
                || torii_certrec_build(ent, &auxs[k], &auxl[k], &eb) != TORII_OK) {
                (void)fprintf(stderr, "fill: %s\n", eb.msg);
                return 1;
            }
            if (list != NULL) {
                char path[4096];
                FILE *f;
                (void)snprintf(path, sizeof(path), "%s/h%ld.pem", pem_dir, i);
                if ((f = fopen(path, "w")) == NULL) {
                    perror(path);
                    return 1;
                }
                (void)fprintf(f, "%s%s", json_string_value(json_object_get(ent, "chain")),
                              json_string_value(json_object_get(ent, "privateKey")));
                (void)fclose(f);
                (void)fprintf(list, "%s %s\n", path, name);
            }
            jsons[k] = json_dumps(ent, JSON_COMPACT);
            json_decref(ent);
            ops[k] = (struct torii_store_op){.kind = TORII_STORE_PUT,
                                             .bucket = TORII_STORE_CERTS,
                                             .rec = {.id = ids[k],
                                                     .id_len = strlen(ids[k]),
                                                     .json = jsons[k],
                                                     .json_len = strlen(jsons[k]),
                                                     .aux = auxs[k],
                                                     .aux_len = auxl[k]}};
        }
        if (torii_store_apply(st, ops, k, &eb) != TORII_OK) {
            (void)fprintf(stderr, "fill: %s\n", eb.msg);
            return 1;
        }
        for (size_t i = 0; i < k; i++) {
            free(jsons[i]);
            free(auxs[i]);
        }
    }
    torii_store_free(st);
    if (list != NULL) {
        (void)fclose(list);
    }
    (void)printf("fill: %ld certificates in %s\n", n, argv[1]);
    return 0;
}
