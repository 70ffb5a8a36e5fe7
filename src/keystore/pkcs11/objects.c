/* Objects on a PKCS#11 token: find, read, generate, sign, destroy. What the pkcs11 key store
 * asks of a token, with every CK_RV mapped to a keyhold error. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/param_build.h>

#include "common/errors.h"
#include "keystore/pkcs11/module-internal.h"

#define FIND_BATCH 64
#define OBJECTS_MAX 65536 /* objects of one class listed: a bound on what a token makes us hold */
#define LABEL_MAX 256
#define MODULUS_MAX 1024  /* bytes: RSA-8192, the largest key the store makes */
#define EC_POINT_MAX 80

/* DER of the OID prime256v1 (1.2.840.10045.3.1.7): CKA_EC_PARAMS of a P-256 key */
static const uint8_t p256_oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };

KH_DEFINE_CLEANUP(BN_free, BIGNUM *)
KH_DEFINE_CLEANUP(OSSL_PARAM_BLD_free, OSSL_PARAM_BLD *)
KH_DEFINE_CLEANUP(OSSL_PARAM_free, OSSL_PARAM *)
KH_DEFINE_CLEANUP(EVP_PKEY_CTX_free, EVP_PKEY_CTX *)
KH_DEFINE_CLEANUP(ECDSA_SIG_free, ECDSA_SIG *)

int kh_p11_mechanism_has(struct kh_p11 *p, CK_MECHANISM_TYPE m, CK_FLAGS flags) {
        CK_MECHANISM_INFO info;
        CK_RV rv;

        rv = p->f->C_GetMechanismInfo(p->slot, m, &info);
        if (rv == CKR_MECHANISM_INVALID || (rv == CKR_OK && (info.flags & flags) != flags))
                return -KH_E_PKCS11_MECHANISM;
        return rv == CKR_OK ? 0 : kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
}

static int find_init(struct kh_p11 *p, CK_ATTRIBUTE *tmpl, CK_ULONG n) {
        CK_RV rv = p->f->C_FindObjectsInit(p->session, tmpl, n);

        return rv == CKR_OK ? 0 : kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
}

int kh_p11_find(struct kh_p11 *p, CK_OBJECT_CLASS cls, const char *label, CK_OBJECT_HANDLE *hs,
                size_t max, size_t *n) {
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_LABEL, (void *) (uintptr_t) label, strlen(label) },
        };
        CK_ULONG got = 0;
        CK_RV rv;
        int r;

        r = find_init(p, tmpl, KH_ELEMENTSOF(tmpl));
        if (r < 0)
                return r;
        rv = p->f->C_FindObjects(p->session, hs, max, &got);
        (void) p->f->C_FindObjectsFinal(p->session);
        if (rv != CKR_OK)
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        if (got > max)
                return -KH_E_PKCS11_MODULE;
        *n = got;
        return 0;
}

int kh_p11_attr(struct kh_p11 *p, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t, void *buf, size_t cap,
                size_t *len) {
        CK_ATTRIBUTE a = { t, buf, cap };
        CK_RV rv;

        rv = p->f->C_GetAttributeValue(p->session, h, &a, 1);
        switch (rv) {
        case CKR_OK:
                if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > cap)
                        return -KH_E_PKCS11_KEY;
                *len = a.ulValueLen;
                return 0;
        case CKR_ATTRIBUTE_SENSITIVE:
        case CKR_ATTRIBUTE_TYPE_INVALID:
        case CKR_BUFFER_TOO_SMALL:
        case CKR_OBJECT_HANDLE_INVALID:
                return -KH_E_PKCS11_KEY;
        default:
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        }
}

int kh_p11_attr_set(struct kh_p11 *p, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t, const void *v,
                    size_t len) {
        CK_ATTRIBUTE a = { t, (void *) (uintptr_t) v, len };
        CK_RV rv = p->f->C_SetAttributeValue(p->session, h, &a, 1);

        return rv == CKR_OK ? 0 : kh_p11_rv_error(rv, -KH_E_PKCS11_KEY);
}

/* All handles of class cls into a new array. */
static int handles_all(struct kh_p11 *p, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE **ret,
                       size_t *ret_n) {
        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof(cls) } };
        KH_CLEANUP_FREE CK_OBJECT_HANDLE *hs = NULL;
        size_t n = 0, cap = 0;
        int r;

        r = find_init(p, tmpl, KH_ELEMENTSOF(tmpl));
        if (r < 0)
                return r;
        for (;;) {
                CK_ULONG got = 0;
                CK_RV rv;

                if (cap - n < FIND_BATCH) {
                        size_t ncap = cap + 4 * FIND_BATCH;
                        CK_OBJECT_HANDLE *nhs;

                        if (ncap > OBJECTS_MAX) {
                                r = -E2BIG;
                                break;
                        }
                        nhs = reallocarray(hs, ncap, sizeof(*hs));
                        if (!nhs) {
                                r = -ENOMEM;
                                break;
                        }
                        hs = nhs;
                        cap = ncap;
                }
                rv = p->f->C_FindObjects(p->session, hs + n, FIND_BATCH, &got);
                if (rv != CKR_OK || got > FIND_BATCH) {
                        r = kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
                        break;
                }
                if (got == 0)
                        break;
                n += got;
        }
        (void) p->f->C_FindObjectsFinal(p->session);
        if (r < 0)
                return r;
        *ret = KH_TAKE_PTR(hs);
        *ret_n = n;
        return 0;
}

int kh_p11_labels(struct kh_p11 *p, CK_OBJECT_CLASS cls, kh_p11_label_fn fn, void *userdata) {
        KH_CLEANUP_FREE CK_OBJECT_HANDLE *hs = NULL;
        size_t n = 0;
        int r;

        r = handles_all(p, cls, &hs, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                char label[LABEL_MAX];
                size_t len;

                r = kh_p11_attr(p, hs[i], CKA_LABEL, label, sizeof(label), &len);
                if (r == -KH_E_PKCS11_KEY)
                        continue; /* no label, or longer than any of ours */
                if (r < 0)
                        return r;
                r = fn(label, len, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

static int generate_rv(CK_RV rv) {
        switch (rv) {
        case CKR_OK:
                return 0;
        case CKR_HOST_MEMORY:
        case CKR_DEVICE_MEMORY:
                return -ENOMEM;
        case CKR_MECHANISM_INVALID:
        case CKR_MECHANISM_PARAM_INVALID:
        case CKR_KEY_SIZE_RANGE:
        case CKR_TEMPLATE_INCONSISTENT:
                return -KH_E_PKCS11_MECHANISM;
        default:
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        }
}

int kh_p11_generate_rsa(struct kh_p11 *p, const char *label, const void *id, size_t id_len,
                        unsigned bits, CK_OBJECT_HANDLE *ret_pub, CK_OBJECT_HANDLE *ret_priv) {
        CK_MECHANISM mech = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ULONG mod_bits = bits;
        CK_BYTE e[] = { 0x01, 0x00, 0x01 };
        void *lbl = (void *) (uintptr_t) label, *idv = (void *) (uintptr_t) id;
        CK_ATTRIBUTE pub[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &no, sizeof(no) },
                { CKA_ENCRYPT, &yes, sizeof(yes) },
                { CKA_VERIFY, &yes, sizeof(yes) },
                { CKA_WRAP, &no, sizeof(no) },
                { CKA_MODULUS_BITS, &mod_bits, sizeof(mod_bits) },
                { CKA_PUBLIC_EXPONENT, e, sizeof(e) },
                { CKA_LABEL, lbl, strlen(label) },
                { CKA_ID, idv, id_len },
        };
        CK_ATTRIBUTE priv[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &no, sizeof(no) },
                { CKA_DECRYPT, &yes, sizeof(yes) },
                { CKA_SIGN, &yes, sizeof(yes) },
                { CKA_UNWRAP, &no, sizeof(no) },
                { CKA_LABEL, lbl, strlen(label) },
                { CKA_ID, idv, id_len },
        };

        return generate_rv(p->f->C_GenerateKeyPair(p->session, &mech, pub, KH_ELEMENTSOF(pub),
                                                   priv, KH_ELEMENTSOF(priv), ret_pub, ret_priv));
}

int kh_p11_generate_ec_p256(struct kh_p11 *p, const char *label, const void *id, size_t id_len,
                            CK_OBJECT_HANDLE *ret_pub, CK_OBJECT_HANDLE *ret_priv) {
        CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        void *lbl = (void *) (uintptr_t) label, *idv = (void *) (uintptr_t) id;
        CK_ATTRIBUTE pub[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &no, sizeof(no) },
                { CKA_VERIFY, &yes, sizeof(yes) },
                { CKA_EC_PARAMS, (void *) (uintptr_t) p256_oid, sizeof(p256_oid) },
                { CKA_LABEL, lbl, strlen(label) },
                { CKA_ID, idv, id_len },
        };
        CK_ATTRIBUTE priv[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &no, sizeof(no) },
                { CKA_SIGN, &yes, sizeof(yes) },
                { CKA_LABEL, lbl, strlen(label) },
                { CKA_ID, idv, id_len },
        };

        return generate_rv(p->f->C_GenerateKeyPair(p->session, &mech, pub, KH_ELEMENTSOF(pub),
                                                   priv, KH_ELEMENTSOF(priv), ret_pub, ret_priv));
}

static int key_type(struct kh_p11 *p, CK_OBJECT_HANDLE h, CK_KEY_TYPE *ret) {
        size_t len;
        int r;

        r = kh_p11_attr(p, h, CKA_KEY_TYPE, ret, sizeof(*ret), &len);
        if (r < 0)
                return r;
        return len == sizeof(*ret) ? 0 : -KH_E_PKCS11_KEY;
}

static int pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **ret) {
        KH_CLEANUP(OSSL_PARAM_freep) OSSL_PARAM *params = NULL;
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        EVP_PKEY *pkey = NULL;

        params = OSSL_PARAM_BLD_to_param(bld);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
        if (!params || !ctx) {
                ERR_clear_error();
                return -ENOMEM;
        }
        if (EVP_PKEY_fromdata_init(ctx) != 1 ||
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
                ERR_clear_error();
                return -KH_E_PKCS11_KEY;
        }
        *ret = pkey;
        return 0;
}

static int rsa_public(struct kh_p11 *p, CK_OBJECT_HANDLE h, EVP_PKEY **ret) {
        KH_CLEANUP(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = NULL;
        KH_CLEANUP(BN_freep) BIGNUM *n = NULL;
        KH_CLEANUP(BN_freep) BIGNUM *e = NULL;
        uint8_t nb[MODULUS_MAX], eb[16];
        size_t n_len, e_len;
        int r;

        r = kh_p11_attr(p, h, CKA_MODULUS, nb, sizeof(nb), &n_len);
        if (r < 0)
                return r;
        r = kh_p11_attr(p, h, CKA_PUBLIC_EXPONENT, eb, sizeof(eb), &e_len);
        if (r < 0)
                return r;
        n = BN_bin2bn(nb, (int) n_len, NULL);
        e = BN_bin2bn(eb, (int) e_len, NULL);
        bld = OSSL_PARAM_BLD_new();
        if (!n || !e || !bld || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1) {
                ERR_clear_error();
                return -ENOMEM;
        }
        return pkey_fromdata("RSA", bld, ret);
}

static int ec_public(struct kh_p11 *p, CK_OBJECT_HANDLE h, EVP_PKEY **ret) {
        KH_CLEANUP(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = NULL;
        uint8_t params[32], point[EC_POINT_MAX];
        const uint8_t *q = point;
        size_t params_len, point_len;
        int r;

        r = kh_p11_attr(p, h, CKA_EC_PARAMS, params, sizeof(params), &params_len);
        if (r < 0)
                return r;
        if (params_len != sizeof(p256_oid) || memcmp(params, p256_oid, params_len) != 0)
                return -KH_E_PKCS11_KEY;
        r = kh_p11_attr(p, h, CKA_EC_POINT, point, sizeof(point), &point_len);
        if (r < 0)
                return r;
        /* PKCS#11 wants the point DER-wrapped in an OCTET STRING; some modules give it bare */
        if (point_len == 67 && point[0] == 0x04 && point[1] == 65) {
                q = point + 2;
                point_len = 65;
        }
        if (point_len != 65 || q[0] != 0x04)
                return -KH_E_PKCS11_KEY;
        bld = OSSL_PARAM_BLD_new();
        if (!bld ||
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, q, point_len) != 1) {
                ERR_clear_error();
                return -ENOMEM;
        }
        return pkey_fromdata("EC", bld, ret);
}

int kh_p11_public_key(struct kh_p11 *p, CK_OBJECT_HANDLE pub, EVP_PKEY **ret) {
        CK_KEY_TYPE type;
        int r;

        r = key_type(p, pub, &type);
        if (r < 0)
                return r;
        switch (type) {
        case CKK_RSA:
                return rsa_public(p, pub, ret);
        case CKK_EC:
                return ec_public(p, pub, ret);
        default:
                return -KH_E_PKCS11_KEY;
        }
}

static int sign_rv(CK_RV rv) {
        switch (rv) {
        case CKR_OK:
                return 0;
        case CKR_HOST_MEMORY:
                return -ENOMEM;
        case CKR_MECHANISM_INVALID:
        case CKR_MECHANISM_PARAM_INVALID:
        case CKR_ARGUMENTS_BAD:
                return -KH_E_PKCS11_MECHANISM;
        case CKR_KEY_FUNCTION_NOT_PERMITTED:
        case CKR_KEY_TYPE_INCONSISTENT:
        case CKR_KEY_HANDLE_INVALID:
                return -KH_E_PKCS11_KEY;
        default:
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        }
}

/* r || s (32 bytes each) as a DER ECDSA-Sig-Value, appended to sig. */
static int ecdsa_der(const uint8_t rs[64], struct kh_buf *sig) {
        KH_CLEANUP(ECDSA_SIG_freep) ECDSA_SIG *s = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(rs, 32, NULL), *sv = BN_bin2bn(rs + 32, 32, NULL);
        unsigned char *der = NULL;
        int len, ret;

        if (!s || !r || !sv || ECDSA_SIG_set0(s, r, sv) != 1) {
                BN_free(r);
                BN_free(sv);
                ERR_clear_error();
                return -ENOMEM;
        }
        len = i2d_ECDSA_SIG(s, &der);
        if (len <= 0) {
                ERR_clear_error();
                return -EIO;
        }
        ret = kh_buf_append(sig, der, (size_t) len);
        OPENSSL_free(der);
        return ret;
}

int kh_p11_sign(struct kh_p11 *p, CK_OBJECT_HANDLE h, const uint8_t digest[32],
                struct kh_buf *sig) {
        CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
        CK_MECHANISM mech;
        CK_KEY_TYPE type;
        uint8_t out[MODULUS_MAX];
        CK_ULONG out_len = sizeof(out);
        int r;

        r = key_type(p, h, &type);
        if (r < 0)
                return r;
        if (type == CKK_RSA)
                mech = (CK_MECHANISM) { CKM_RSA_PKCS_PSS, &pss, sizeof(pss) };
        else if (type == CKK_EC)
                mech = (CK_MECHANISM) { CKM_ECDSA, NULL, 0 };
        else
                return -KH_E_PKCS11_KEY;

        r = sign_rv(p->f->C_SignInit(p->session, &mech, h));
        if (r < 0)
                return r;
        /* out fits any signature of a key this store makes (RSA-8192): one call, and the
         * operation always ends here */
        r = sign_rv(p->f->C_Sign(p->session, (CK_BYTE *) (uintptr_t) digest, 32, out, &out_len));
        if (r < 0)
                return r;
        if (type == CKK_EC)
                return out_len == 64 ? ecdsa_der(out, sig) : -KH_E_PKCS11_MODULE;
        return out_len <= sizeof(out) ? kh_buf_append(sig, out, out_len) : -KH_E_PKCS11_MODULE;
}

int kh_p11_destroy(struct kh_p11 *p, CK_OBJECT_HANDLE h) {
        CK_RV rv = p->f->C_DestroyObject(p->session, h);

        return rv == CKR_OK ? 0 : kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
}
