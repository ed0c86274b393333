/* err.c - error codes and errbuf helpers. */
#include "torii/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "torii/log.h"

const char *torii_strerror(int code)
{
    switch (code) {
#define TORII_ERR_CASE(name, val, text)                                                            \
    case (val):                                                                                    \
        return (text);
        TORII_ERR_LIST(TORII_ERR_CASE)
#undef TORII_ERR_CASE
    default:
        return "unknown error";
    }
}

struct torii_errno_text torii_errno_text(int err)
{
    struct torii_errno_text t;

    if (strerror_r(err, t.s, sizeof(t.s)) != 0) {
        (void)snprintf(t.s, sizeof(t.s), "errno %d", err);
    }
    return t;
}

int torii_errf(struct torii_errbuf *eb, int code, const char *fmt, ...)
{
    va_list ap;

    if (eb == NULL) {
        return code;
    }
    va_start(ap, fmt);
    (void)vsnprintf(eb->msg, sizeof(eb->msg), fmt, ap);
    va_end(ap);
    return code;
}

void torii_ossl_errors(char *buf, size_t len)
{
    size_t used = 0;
    unsigned long e;

    if (len == 0) {
        return;
    }
    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        int n;

        ERR_error_string_n(e, one, sizeof(one));
        n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", one);
        if (n < 0 || (size_t)n >= len - used) {
            ERR_clear_error();
            break;
        }
        used += (size_t)n;
    }
}

int torii_errbuf_ossl(struct torii_errbuf *eb, const char *what)
{
    char errs[200];

    torii_ossl_errors(errs, sizeof(errs));
    if (eb != NULL) {
        (void)snprintf(eb->msg, sizeof(eb->msg), "%s%s%s", what, errs[0] ? ": " : "", errs);
    }
    return TORII_ETLS;
}

void torii__assert_fail(const char *expr, const char *file, int line)
{
    torii_log(TORII_LOG_ERR, "assertion failed: %s (%s:%d)", expr, file, line);
    abort();
}
