#include "selfsigned.h"

#include <errno.h>
#include <fcntl.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/file.h"
#include "crypto/random.h"
#include "crypto/rsa.h"

KH_DEFINE_CLEANUP(X509_free, X509 *)
KH_DEFINE_CLEANUP(BIO_free, BIO *)

int kh_pem_write(const char *path, EVP_PKEY *key, X509 *cert, mode_t mode) {
        KH_CLEANUP(BIO_freep) BIO *bio = BIO_new(BIO_s_secmem());
        char *data;
        long len;
        int ok;

        if (!bio)
                return -ENOMEM;
        ok = cert ? PEM_write_bio_X509(bio, cert)
                  : PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
        if (!ok)
                return -EIO;
        len = BIO_get_mem_data(bio, &data);
        return kh_file_write_atomic(AT_FDCWD, path, data, (size_t) len, mode, 0);
}

static int add_ext(X509 *cert, int nid, const char *value) {
        X509V3_CTX ctx;
        X509_EXTENSION *ext;
        int ok;

        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
        if (!ext)
                return -EINVAL;
        ok = X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
        return ok ? 0 : -EIO;
}

int kh_selfsigned_write(const char *cn, const char *san, unsigned days, const char *key_path,
                        const char *cert_path) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        KH_CLEANUP(X509_freep) X509 *cert = NULL;
        X509_NAME *name;
        uint8_t serial[16];
        BIGNUM *bn;
        int r;

        key = EVP_EC_gen("P-256");
        cert = X509_new();
        if (!key || !cert)
                return -ENOMEM;
        r = kh_random_bytes(serial, sizeof(serial));
        if (r < 0)
                return r;
        serial[0] &= 0x7f;
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert))) {
                BN_free(bn);
                return -EIO;
        }
        BN_free(bn);
        (void) X509_set_version(cert, 2);
        (void) X509_gmtime_adj(X509_getm_notBefore(cert), -60);
        (void) X509_gmtime_adj(X509_getm_notAfter(cert), (long) days * 24 * 3600);
        (void) X509_set_pubkey(cert, key);
        name = X509_get_subject_name(cert);
        if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *) cn,
                                        -1, -1, 0))
                return -EINVAL;
        (void) X509_set_issuer_name(cert, name);
        r = add_ext(cert, NID_subject_alt_name, san);
        if (r >= 0)
                r = add_ext(cert, NID_basic_constraints, "critical,CA:FALSE");
        if (r >= 0)
                r = add_ext(cert, NID_ext_key_usage, "serverAuth");
        if (r < 0)
                return r;
        if (!X509_sign(cert, key, EVP_sha256()))
                return -EIO;
        r = kh_pem_write(key_path, key, NULL, 0600);
        if (r < 0)
                return r;
        return kh_pem_write(cert_path, NULL, cert, 0644);
}
