/* pki.h - certificate entities and X.509, the umbrella of the pki module's public headers,
 * one per topic (each states its own threads and ownership):
 *   pki_entity.h   - the entity JSON: template, normalize, enrich, redaction, first-start cert
 *   pki_certrec.h  - the compact TLS record stored next to the JSON (the TLS table reads it)
 *   pki_identity.h - a stored certificate as a TLS client identity
 *   pki_issue.h    - issuing: CAs, leaves, key pairs, CSRs (the PKI API)
 *   pki_import.h   - PKCS#12 and PEM imports, certificate data, validity, serial
 *   pki_revoke.h   - revocation reasons, CRLs, the OCSP responder
 *   pki_jwk.h      - JWKS and JWTs signed/verified with an entity's key
 *   pki_renew.h    - renewing a certificate
 *   pki_prep.h     - key material at rest and the one-parse preparation for the store (certdb)
 *   pki_kek.h      - keys at rest: the KEK envelope and the KEK ring
 *   pki_acme.h     - the ACME client's key material: account key, JWS, CSR, TLS-ALPN-01 cert
 * The served PKI view (JWKS, CRLs, OCSP, staples from a snapshot) is pkistate.h.
 * Private keys are decoded only in src/pki. Including pki.h gives all of the above; a file
 * that needs one topic may include only that header. */
#ifndef TORII_PKI_H
#define TORII_PKI_H

#include "torii/pki_acme.h"
#include "torii/pki_certrec.h"
#include "torii/pki_entity.h"
#include "torii/pki_identity.h"
#include "torii/pki_import.h"
#include "torii/pki_issue.h"
#include "torii/pki_jwk.h"
#include "torii/pki_kek.h"
#include "torii/pki_prep.h"
#include "torii/pki_renew.h"
#include "torii/pki_revoke.h"

#endif
