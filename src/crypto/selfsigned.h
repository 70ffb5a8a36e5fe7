/* Self-signed TLS certificates: keyholdd --dev's, and `keyhold init --self-signed`'s. */
#pragma once

#include <sys/types.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/cleanup.h"

/**
 * kh_selfsigned_write() - a new P-256 key and a certificate for it, signed by itself: subject
 * CN=@cn, subjectAltName @san (OpenSSL's syntax: "DNS:host,IP:127.0.0.1"), CA:FALSE,
 * serverAuth, valid from a minute ago for @days. Writes the key (PEM, mode 0600) to
 * @key_path and the certificate (PEM, mode 0644) to @cert_path, each atomically.
 * Returns 0, -EINVAL (a bad @san), -EIO (OpenSSL), -ENOMEM or a file error.
 */
KH_MUST_CHECK int kh_selfsigned_write(const char *cn, const char *san, unsigned days,
                                      const char *key_path, const char *cert_path);

/* Writes cert (if not NULL) or else the private key as PEM to path, atomically, with mode.
 * The PEM text passes through OpenSSL's secure heap only. Returns 0, -EIO, -ENOMEM or a file
 * error. */
KH_MUST_CHECK int kh_pem_write(const char *path, EVP_PKEY *key, X509 *cert, mode_t mode);
