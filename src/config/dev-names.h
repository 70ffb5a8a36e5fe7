/* Files of a `keyholdd --dev` data folder, shared by keyholdd (which creates them) and
 * `keyhold dev-token` (which signs with the dev issuer key). */
#pragma once

#define KH_DEV_DATA_DEFAULT      "./keyhold-dev"
#define KH_DEV_ISSUER_KEY_FILE   "dev-issuer.key"   /* EC P-256 private key, PEM, 0600 */
#define KH_DEV_ISSUER_JWKS_FILE  "dev-issuer.jwks"  /* its public JWKS */
#define KH_DEV_ISSUER_KID        "keyhold-dev-1"
#define KH_DEV_TLS_CERT_FILE     "tls.crt"
#define KH_DEV_TLS_KEY_FILE      "tls.key"
#define KH_DEV_MASTER_KEY_FILE   "master.key"
#define KH_DEV_ADMIN_SOCKET_FILE "admin.sock"
