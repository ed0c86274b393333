/* fuzz_config.c - libFuzzer target: the configuration loader (JSON, every key's type and value
 * checks, addresses, routes, exporters). The loader reads a file, so the input goes through
 * one temporary file that the target rewrites each run. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "torii/conf.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int fd;

    (void)argc;
    (void)argv;
    snprintf(fuzz_path, sizeof(fuzz_path), "/tmp/torii-fuzz-config-XXXXXX");
    fd = mkstemp(fuzz_path);
    if (fd < 0) {
        abort(); /* the harness itself is broken: nothing to fuzz */
    }
    close(fd);
    /* The environment overrides the file: keep it out of the inputs' way. */
    unsetenv("TORII_ADMIN_TOKEN");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct torii_config *cfg = NULL;
    struct torii_errbuf eb;
    FILE *f = fopen(fuzz_path, "wb");

    if (f == NULL) {
        abort();
    }
    if (size > 0 && fwrite(data, 1, size, f) != size) {
        abort();
    }
    fclose(f);
    if (torii_config_load(fuzz_path, &cfg, &eb) == TORII_OK) {
        torii_config_free(cfg);
    }
    return 0;
}
