/* Helpers for the token tests. Everything here is computed independently of src/token
 * (OpenSSL's own base64 and signing calls), so a bug shared by signer and verifier in
 * src/token cannot make a test pass. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#define TEST_NOW INT64_C(1700000000)
#define TEST_ISS "https://issuer.test"
#define TEST_SUB "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"
#define TEST_SUB_CANON "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"

static inline EVP_PKEY *test_key(const char *type) {
        EVP_PKEY *k;

        if (strcmp(type, "RSA") == 0)
                k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
        else if (strcmp(type, "RSA1024") == 0)
                k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 1024);
        else if (strcmp(type, "EC") == 0)
                k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        else if (strcmp(type, "P-384") == 0)
                k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        else
                k = EVP_PKEY_Q_keygen(NULL, NULL, type);
        if (!k)
                abort();
        return k;
}

/* base64url without padding via OpenSSL's base64 encoder; caller frees. */
static inline char *test_b64url(const void *p, size_t n) {
        char *s = malloc(4 * ((n + 2) / 3) + 1);
        int len;

        if (!s)
                abort();
        len = EVP_EncodeBlock((unsigned char *) s, p, (int) n);
        while (len > 0 && s[len - 1] == '=')
                len--;
        s[len] = 0;
        for (char *c = s; *c; c++)
                *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
        return s;
}

static inline char *test_b64url_str(const char *s) {
        return test_b64url(s, strlen(s));
}

static inline char *test_concat3(const char *a, const char *b, const char *c) {
        size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
        char *s = malloc(n);

        if (!s)
                abort();
        snprintf(s, n, "%s.%s.%s", a, b, c);
        return s;
}

/* header.payload with both given as JSON text, and the signature segment sig (may be ""). */
static inline char *test_token(const char *header, const char *payload, const char *sig) {
        char *h = test_b64url_str(header), *p = test_b64url_str(payload);
        char *t = test_concat3(h, p, sig);

        free(h);
        free(p);
        return t;
}

/* Signature bytes over input, computed with EVP_DigestSign: "RS256", "PS256", "ES256"
 * (converted to r||s here), "EdDSA". Returns the length; sig holds up to 1024 bytes. */
static inline size_t test_sign_bytes(EVP_PKEY *key, const char *alg, const void *input,
                                     size_t len, unsigned char sig[1024]) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        unsigned char der[1024];
        size_t n = sizeof(der);
        bool ed = strcmp(alg, "EdDSA") == 0;

        if (!ctx || EVP_DigestSignInit(ctx, &pctx, ed ? NULL : EVP_sha256(), NULL, key) != 1)
                abort();
        if (strcmp(alg, "PS256") == 0 &&
            (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1))
                abort();
        if (EVP_DigestSign(ctx, der, &n, input, len) != 1)
                abort();
        EVP_MD_CTX_free(ctx);
        if (strcmp(alg, "ES256") == 0) {
                const unsigned char *q = der;
                ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long) n);

                if (!es || BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) != 32 ||
                    BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) != 32)
                        abort();
                ECDSA_SIG_free(es);
                return 64;
        }
        memcpy(sig, der, n);
        return n;
}

/* A compact JWS signed independently of src/token. */
static inline char *test_sign(EVP_PKEY *key, const char *alg, const char *header,
                              const char *payload) {
        char *unsigned_token = test_token(header, payload, ""), *sig_b64, *t;
        unsigned char sig[1024];
        size_t n, in_len = strlen(unsigned_token) - 1; /* without the last '.' */

        n = test_sign_bytes(key, alg, unsigned_token, in_len, sig);
        sig_b64 = test_b64url(sig, n);
        t = malloc(in_len + 1 + strlen(sig_b64) + 1);
        if (!t)
                abort();
        memcpy(t, unsigned_token, in_len + 1);
        strcpy(t + in_len + 1, sig_b64);
        free(sig_b64);
        free(unsigned_token);
        return t;
}

/* A claim set that passes the default policy, with exp/nbf relative to TEST_NOW. */
static inline char *test_claims(const char *iss, const char *extra) {
        char *s = malloc(1024);

        if (!s)
                abort();
        snprintf(s, 1024,
                 "{\"iss\":\"%s\",\"sub\":\"" TEST_SUB "\",\"exp\":%lld,\"nbf\":%lld,"
                 "\"scope\":[\"api\",\"offline_access\"],\"amr\":[\"Application\"]%s%s}",
                 iss, (long long) (TEST_NOW + 600), (long long) (TEST_NOW - 10),
                 extra ? "," : "", extra ? extra : "");
        return s;
}

/* base64url of a public key parameter (RSA n/e, EC x/y padded to 32). */
static inline char *test_bn_b64url(EVP_PKEY *key, const char *name, int pad) {
        BIGNUM *bn = NULL;
        unsigned char buf[1024];
        int n;
        char *s;

        if (EVP_PKEY_get_bn_param(key, name, &bn) != 1)
                abort();
        n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
        BN_free(bn);
        s = test_b64url(buf, (size_t) n);
        return s;
}
