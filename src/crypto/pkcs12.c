/* PKCS#12 files. The MAC is checked first, apart from parsing, so that a wrong password is
 * told from a damaged or unsupported file; PKCS12_parse() alone fails alike for both. */
#include "crypto/pkcs12.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

#include "common/errors.h"

KH_DEFINE_CLEANUP(PKCS12_free, PKCS12 *)
KH_DEFINE_CLEANUP(EVP_PKEY_free, EVP_PKEY *)
KH_DEFINE_CLEANUP(X509_free, X509 *)

static inline void x509_stack_freep(STACK_OF(X509) * *p) {
        sk_X509_pop_free(*p, X509_free);
}

/* Held for the life of the process (static, so reachable: no leak report). Loading a
 * provider explicitly stops OpenSSL from loading "default" on its own, hence both. */
static OSSL_PROVIDER *legacy_provider, *default_provider;
static pthread_once_t providers_once = PTHREAD_ONCE_INIT;

static void providers_load(void) {
        default_provider = OSSL_PROVIDER_load(NULL, "default");
        /* Without it (a system lacking legacy.so) modern files still open; legacy ones fail
         * as -KH_E_PFX_INVALID. */
        legacy_provider = OSSL_PROVIDER_load(NULL, "legacy");
        ERR_clear_error();
}

/* Checks the MAC, and which password opens the file into *ret_pass: for an empty password,
 * files differ in whether they were made with none (NULL) or "" (PKCS12_parse's rule). */
static int mac_check(PKCS12 *p12, const char *pass, const char **ret_pass) {
        if (!PKCS12_mac_present(p12)) {
                *ret_pass = pass; /* -nomac: nothing to check; a bad bag fails in parse */
                return 0;
        }
        if (pass[0] == '\0') {
                if (PKCS12_verify_mac(p12, NULL, 0) == 1) {
                        *ret_pass = NULL;
                        return 0;
                }
                ERR_clear_error();
        }
        if (PKCS12_verify_mac(p12, pass, -1) == 1) {
                *ret_pass = pass;
                return 0;
        }
        ERR_clear_error();
        return -KH_E_PFX_PASSWORD;
}

int kh_pkcs12_rsa_key(const uint8_t *der, size_t len, const struct kh_secret *password,
                      EVP_PKEY **ret) {
        KH_CLEANUP(PKCS12_freep) PKCS12 *p12 = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pass_z = NULL;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        KH_CLEANUP(X509_freep) X509 *cert = NULL;
        KH_CLEANUP(x509_stack_freep) STACK_OF(X509) *ca = NULL;
        const unsigned char *p = der;
        const char *pass = "";
        size_t pass_len = password ? kh_secret_len(password) : 0;
        int r;

        if (!der || !ret)
                return -EINVAL;
        (void) pthread_once(&providers_once, providers_load);

        if (len == 0 || len > LONG_MAX)
                return -KH_E_PFX_INVALID;
        p12 = d2i_PKCS12(NULL, &p, (long) len);
        if (!p12 || p != der + len) {
                ERR_clear_error();
                return -KH_E_PFX_INVALID;
        }

        if (pass_len > 0) {
                /* OpenSSL takes a C string: a NUL-terminated copy in locked memory. */
                if (memchr(kh_secret_bytes(password), 0, pass_len))
                        return -KH_E_PFX_PASSWORD;
                if (pass_len > INT_MAX - 1)
                        return -KH_E_PFX_PASSWORD;
                r = kh_secret_new(pass_len + 1, &pass_z);
                if (r < 0)
                        return r;
                memcpy(kh_secret_bytes_mut(pass_z), kh_secret_bytes(password), pass_len);
                pass = (const char *) kh_secret_bytes(pass_z);
        }

        r = mac_check(p12, pass, &pass);
        if (r < 0)
                return r;

        if (PKCS12_parse(p12, pass, &pkey, &cert, &ca) != 1) {
                unsigned long e = ERR_peek_last_error();

                ERR_clear_error();
                return ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE ? -ENOMEM : -KH_E_PFX_INVALID;
        }
        if (!pkey || !EVP_PKEY_is_a(pkey, "RSA"))
                return -KH_E_PFX_INVALID;

        *ret = KH_TAKE_PTR(pkey);
        return 0;
}
