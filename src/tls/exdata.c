/* exdata.c - the tls module's OpenSSL ex_data slots (registered once per process) and the
 * verification clock of a connection. Depends on nothing else in the module but the
 * certificate reference release (table.c), so every file of the module may use it. The slot
 * of the upstream connection state is upstream.c's own (its free callback lives there). */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/ssl.h>

#include "tls_int.h"
#include "torii/clock.h"
#include "torii/table.h"

/* ex_data slots, registered once (any thread, through pthread_once; read-only after). */
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static struct torii_tls__ex tls_ex = {-1, -1, -1, -1, -1, -1};
static int tls_ex_ok;

/* argl tells which slot a free callback serves (one callback for all SSL slots). */
enum tls_ex_kind {
    TLS_EX_CERT = 1,
    TLS_EX_CLIENT = 2,
    TLS_EX_HELLO = 3,
    TLS_EX_ONDEMAND = 4,
};

static void tls_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argp;
    switch ((enum tls_ex_kind)argl) {
    case TLS_EX_CERT:
        torii_tls_cert_unref(ptr);
        break;
    case TLS_EX_CLIENT: /* the client-auth state is one flat allocation (clientauth.c) */
    case TLS_EX_HELLO:
    case TLS_EX_ONDEMAND:
        free(ptr);
        break;
    default:
        break;
    }
}

static void tls_init_once(void)
{
    tls_ex.ctx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    tls_ex.cert = SSL_get_ex_new_index(TLS_EX_CERT, NULL, NULL, NULL, tls_ex_free);
    tls_ex.client = SSL_get_ex_new_index(TLS_EX_CLIENT, NULL, NULL, NULL, tls_ex_free);
    tls_ex.up_ctx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    tls_ex.hello = SSL_get_ex_new_index(TLS_EX_HELLO, NULL, NULL, NULL, tls_ex_free);
    tls_ex.od = SSL_get_ex_new_index(TLS_EX_ONDEMAND, NULL, NULL, NULL, tls_ex_free);
    tls_ex_ok = tls_ex.ctx >= 0 && tls_ex.cert >= 0 && tls_ex.client >= 0 && tls_ex.up_ctx >= 0
                && tls_ex.hello >= 0 && tls_ex.od >= 0;
}

const struct torii_tls__ex *torii_tls__ex(void)
{
    (void)pthread_once(&tls_once, tls_init_once);
    return tls_ex_ok ? &tls_ex : NULL;
}

void torii_tls__set_verify_time(SSL *ssl)
{
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);

    if (param != NULL) {
        X509_VERIFY_PARAM_set_time(param, (time_t)(torii_clock_now_ms() / 1000));
    }
}
