/* testfile.c - see testfile.h. */
#include "testfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int testfile_write(char *path, size_t cap, const char *tag, const char *text)
{
    int n = snprintf(path, cap, "/tmp/torii-test-%s-XXXXXX", tag);
    FILE *f;
    int fd;
    int rc = 0;

    if (n <= 0 || (size_t)n >= cap) {
        return -1;
    }
    fd = mkstemp(path);
    if (fd < 0) {
        return -1;
    }
    f = fdopen(fd, "w");
    if (f == NULL) {
        (void)close(fd);
        (void)unlink(path);
        return -1;
    }
    if (fputs(text, f) < 0) {
        rc = -1;
    }
    if (fclose(f) != 0) {
        rc = -1;
    }
    if (rc != 0) {
        (void)unlink(path);
    }
    return rc;
}
