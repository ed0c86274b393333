/* chain.c - the certificate chain to keep (RFC 8555 7.4.2): the CA's default chain, or with
 * acme.preferred_chain the first of the default and its alternates (Link rel="alternate")
 * whose topmost certificate is issued by that CN. Only public certificates are parsed here.
 * ACME thread only. */
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "acme_int.h"
#include "torii/mem.h"

/* 1 when the issuer CN of the last certificate of pem is cn. */
static int acme_chain_top_is(const char *pem, const char *cn)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *last = NULL;
    X509 *x;
    char buf[256] = "";
    int match = 0;

    while (bio != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        X509_free(last);
        last = x;
    }
    if (last != NULL
        && X509_NAME_get_text_by_NID(X509_get_issuer_name(last), NID_commonName, buf, sizeof(buf))
               > 0) {
        match = strcmp(buf, cn) == 0;
    }
    X509_free(last);
    BIO_free(bio);
    return match;
}

int acme_chain_pick(struct acme_client *c, struct acme_resp *r, char **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const char *cn = c->conf->preferred_chain;
    struct acme_resp alt = {.retry_after_s = -1};

    if (cn == NULL || acme_chain_top_is(r->body, cn)) {
        *out = torii_xstrdup(r->body);
        return TORII_OK;
    }
    for (size_t i = 0; i < r->n_links; i++) {
        TORII_TRY(acme_post(c, "alternate chain", r->links[i], NULL, 0, &alt, eb));
        if (alt.status == 200 && acme_chain_top_is(alt.body, cn)) {
            *out = torii_xstrdup(alt.body);
            goto out;
        }
    }
    /* No chain matches: the default one, as other clients do. */
    *out = torii_xstrdup(r->body);
out:
    acme_resp_clear(&alt);
    return rc;
}
