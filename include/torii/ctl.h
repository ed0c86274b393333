/* ctl.h - `torii ctl`: the command line client of the admin API (list, get, import, issue,
 * letsencrypt, renew, revoke, delete, export, watch). It speaks HTTP(S) to the admin listener
 * with libcurl, like any script would; it never opens the store.
 * The admin URL and token come from flags (--url, --token, --token-file), else the
 * environment (TORII_ADMIN_URL, TORII_ADMIN_TOKEN, TORII_ADMIN_TOKEN_FILE), else
 * http://127.0.0.1:9000 and no token. The token is never printed.
 * Exit codes (TORII_CTL_EXIT_*): 0 ok, 1 usage, 2 not found, 3 authentication or scope
 * refused (401, 403, 429), 4 conflict or any other API error, 5 cannot connect.
 * Threads: main thread only (it initializes libcurl).
 * Ownership: argv is borrowed; out and err are written, never closed. */
#ifndef TORII_CTL_H
#define TORII_CTL_H

#include <stdio.h>

enum torii_ctl_exit {
    TORII_CTL_EXIT_OK = 0,
    TORII_CTL_EXIT_USAGE = 1,
    TORII_CTL_EXIT_NOT_FOUND = 2,
    TORII_CTL_EXIT_AUTH = 3,
    TORII_CTL_EXIT_API = 4,
    TORII_CTL_EXIT_CONNECT = 5,
};

/** Run `torii ctl ...` (argv[0] is "ctl"); returns the process exit status. */
int torii_ctl_main(int argc, char **argv, FILE *out, FILE *err);

#endif
