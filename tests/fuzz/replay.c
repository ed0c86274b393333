/* replay.c - a main() for the fuzz targets when they are built without libFuzzer (gcc, the
 * ordinary test builds): runs LLVMFuzzerTestOneInput once on every file named on the command
 * line, or on every regular file of a directory named there. ctest uses it to replay the
 * committed corpora (seeds and the regression inputs of fixed crashes) in the release and
 * ASan+UBSan builds, so a fixed crash stays fixed without clang.
 * Threads: single-threaded test program. */
#include <sys/stat.h>

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define REPLAY_MAX (1024 * 1024)

/* 0 when the file was read and run. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t n;
    int rc = 1;

    if (f == NULL) {
        perror(path);
        return 1;
    }
    buf = malloc(REPLAY_MAX);
    if (buf == NULL) {
        goto out;
    }
    n = fread(buf, 1, REPLAY_MAX, f);
    if (ferror(f)) {
        perror(path);
        goto out;
    }
    /* A copy of exactly n bytes, so that ASan sees reads past the input's end. */
    {
        uint8_t *exact = malloc(n > 0 ? n : 1);
        if (exact == NULL) {
            goto out;
        }
        memcpy(exact, buf, n);
        LLVMFuzzerTestOneInput(exact, n);
        free(exact);
    }
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

static int replay_dir(const char *dir, unsigned *count)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = 0;

    if (d == NULL) {
        perror(dir);
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;
        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            continue;
        }
        rc |= replay_file(path);
        (*count)++;
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned count = 0;
    int rc = 0;

    if (LLVMFuzzerInitialize != NULL) {
        LLVMFuzzerInitialize(&argc, &argv);
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            rc |= replay_dir(argv[i], &count);
        } else {
            rc |= replay_file(argv[i]);
            count++;
        }
    }
    printf("%s: %u inputs replayed\n", argc > 0 ? argv[0] : "replay", count);
    if (count == 0) {
        fprintf(stderr, "no input found\n");
        return 1;
    }
    return rc;
}
