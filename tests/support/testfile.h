/* testfile.h - test-only helper: a temporary file holding a given text (configurations,
 * access logs), named /tmp/torii-test-<tag>-XXXXXX.
 * Threads: any thread. Ownership: the caller unlinks the file. */
#ifndef TORII_TESTFILE_H
#define TORII_TESTFILE_H

#include <stddef.h>

/** Create the file with text (may be ""); its path in path (cap bytes, 64 is enough for a
 * short tag). 0 on success, -1 when it cannot be named, created or written (errno set). */
int testfile_write(char *path, size_t cap, const char *tag, const char *text);

#endif
