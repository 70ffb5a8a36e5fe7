/* Cases every key store must pass. Each case gets a new, empty store from the backend. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "common/errors.h"
#include "crypto/ecdsa.h"
#include "crypto/rsa.h"
#include "conformance.h"

KH_DEFINE_CLEANUP(EVP_PKEY_CTX_free, EVP_PKEY_CTX *)

static const struct kh_ks_conformance *backend;

static const uint8_t dek_bytes[32] = {
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff, 0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2,
        0xe1, 0xf0,
};

static int case_setup(void **state) {
        struct kh_keystore *ks = NULL;

        if (backend->open_empty(backend->ctx, &ks) < 0)
                return -1;
        *state = ks;
        return 0;
}

static int case_teardown(void **state) {
        (void) kh_keystore_close(*state);
        backend->cleanup(backend->ctx);
        return 0;
}

static void generate(struct kh_keystore *ks, const char *tenant, uint32_t version) {
        const struct kh_key_spec spec = { tenant, version, KH_KS_TEST_BITS, KH_KEY_DATA, KH_KEY_ALG_RSA };
        struct kh_key_ref ref;

        memset(&ref, 0xaa, sizeof(ref));
        assert_int_equal(kh_keystore_generate(ks, &spec, &ref), 0);
        assert_string_equal(ref.tenant, tenant);
        assert_int_equal(ref.version, version);
}

static struct kh_key_ref key_ref(const char *tenant, uint32_t version) {
        struct kh_key_ref ref = { .version = version };

        strcpy(ref.tenant, tenant);
        return ref;
}

static struct kh_secret *test_dek(void) {
        struct kh_secret *dek = NULL;

        assert_int_equal(kh_secret_new_from(dek_bytes, sizeof(dek_bytes), &dek), 0);
        return dek;
}

/* Wraps the test DEK under ref into out (initialised here). */
static void wrap_test_dek(struct kh_keystore *ks, const struct kh_key_ref *ref,
                          struct kh_buf *out) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = test_dek();

        kh_buf_init(out, KH_WRAPPED_DEK_MAX, false);
        assert_int_equal(kh_keystore_wrap(ks, ref, dek, out), 0);
        assert_int_equal(out->len, KH_KS_TEST_BITS / 8);
}

struct versions {
        uint32_t v[8];
        size_t n;
        char tenant[KH_TENANT_ID_MAX + 1];
        int stop_at; /* return 7 after this many calls; 0 = never */
};

static int collect(const struct kh_key_ref *ref, void *userdata) {
        struct versions *vs = userdata;

        if (vs->n >= KH_ELEMENTSOF(vs->v))
                return -ERANGE;
        strcpy(vs->tenant, ref->tenant);
        vs->v[vs->n++] = ref->version;
        return vs->stop_at > 0 && (int) vs->n == vs->stop_at ? 7 : 0;
}

static void test_generate_then_list_ascending(void **state) {
        struct kh_keystore *ks = *state;
        struct versions vs = { 0 }, other = { 0 }, stopped = { .stop_at = 1 };

        generate(ks, "acme", 2); /* created out of order: list sorts */
        generate(ks, "acme", 1);
        generate(ks, "acme", 10);

        assert_int_equal(kh_keystore_list(ks, "acme", collect, &vs), 0);
        assert_int_equal(vs.n, 3);
        assert_int_equal(vs.v[0], 1);
        assert_int_equal(vs.v[1], 2);
        assert_int_equal(vs.v[2], 10);
        assert_string_equal(vs.tenant, "acme");

        assert_int_equal(kh_keystore_list(ks, "other", collect, &other), 0);
        assert_int_equal(other.n, 0);

        assert_int_equal(kh_keystore_list(ks, "acme", collect, &stopped), 7);
        assert_int_equal(stopped.n, 1);
        assert_int_equal(stopped.v[0], 1);
}

static void test_generate_existing_version_is_eexist(void **state) {
        struct kh_keystore *ks = *state;
        const struct kh_key_spec spec = { "acme", 1, KH_KS_TEST_BITS, KH_KEY_DATA, KH_KEY_ALG_RSA };
        const struct kh_key_ref ref1 = key_ref("acme", 1);
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *before = NULL, *after = NULL;
        struct kh_key_ref ref = { .version = 99 };

        generate(ks, "acme", 1);
        assert_int_equal(kh_keystore_public_key(ks, &ref1, &before), 0);
        assert_int_equal(kh_keystore_generate(ks, &spec, &ref), -EEXIST);
        assert_int_equal(ref.version, 99); /* untouched on failure */
        assert_int_equal(kh_keystore_public_key(ks, &ref1, &after), 0);
        assert_int_equal(EVP_PKEY_eq(before, after), 1);
}

static void test_generate_rejects_bad_spec(void **state) {
        struct kh_keystore *ks = *state;
        struct kh_key_ref ref;
        struct versions vs = { 0 };

        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) { "Acme", 1, 2048, KH_KEY_DATA, KH_KEY_ALG_RSA }, &ref),
                         -EINVAL);
        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) { "../x", 1, 2048, KH_KEY_DATA, KH_KEY_ALG_RSA }, &ref),
                         -EINVAL);
        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) { "acme", 0, 2048, KH_KEY_DATA, KH_KEY_ALG_RSA }, &ref),
                         -EINVAL);
        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) { "acme", 1, 1024, KH_KEY_DATA, KH_KEY_ALG_RSA }, &ref),
                         -EINVAL);
        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) { "acme", 1, 2500, KH_KEY_DATA, KH_KEY_ALG_RSA }, &ref),
                         -EINVAL);
        assert_int_equal(kh_keystore_list(ks, "-acme", collect, &vs), -EINVAL);
        assert_int_equal(kh_keystore_list(ks, "acme", collect, &vs), 0);
        assert_int_equal(vs.n, 0);
}

static void test_wrap_unwrap_round_trip(void **state) {
        struct kh_keystore *ks = *state;
        const struct kh_key_ref ref = key_ref("acme", 1);
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 }, again = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;

        generate(ks, "acme", 1);
        wrap_test_dek(ks, &ref, &wrapped);
        wrap_test_dek(ks, &ref, &again);
        /* OAEP is randomised: the same DEK never wraps to the same bytes. */
        assert_memory_not_equal(wrapped.data, again.data, wrapped.len);

        assert_int_equal(kh_keystore_unwrap(ks, &ref, wrapped.data, wrapped.len, &dek), 0);
        assert_int_equal(kh_secret_len(dek), sizeof(dek_bytes));
        assert_memory_equal(kh_secret_bytes(dek), dek_bytes, sizeof(dek_bytes));
}

static void test_unwrap_tampered_is_integrity(void **state) {
        struct kh_keystore *ks = *state;
        const struct kh_key_ref ref = key_ref("acme", 1);
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 };
        struct kh_secret *dek = NULL;
        uint8_t big[KH_WRAPPED_DEK_MAX + 1] = { 0 };
        const size_t positions[] = { 0, 1, 100, 255 };

        generate(ks, "acme", 1);
        wrap_test_dek(ks, &ref, &wrapped);
        for (size_t i = 0; i < KH_ELEMENTSOF(positions); i++) {
                wrapped.data[positions[i]] ^= 0x01;
                assert_int_equal(kh_keystore_unwrap(ks, &ref, wrapped.data, wrapped.len, &dek),
                                 -KH_E_INTEGRITY);
                assert_null(dek);
                wrapped.data[positions[i]] ^= 0x01;
        }
        assert_int_equal(kh_keystore_unwrap(ks, &ref, wrapped.data, wrapped.len - 1, &dek),
                         -KH_E_INTEGRITY);
        assert_int_equal(kh_keystore_unwrap(ks, &ref, wrapped.data, 0, &dek), -KH_E_INTEGRITY);
        assert_int_equal(kh_keystore_unwrap(ks, &ref, big, sizeof(big), &dek), -KH_E_INTEGRITY);
        assert_null(dek);

        /* Untampered, it still unwraps: the failures above were the tampering. */
        assert_int_equal(kh_keystore_unwrap(ks, &ref, wrapped.data, wrapped.len, &dek), 0);
        assert_memory_equal(kh_secret_bytes(dek), dek_bytes, sizeof(dek_bytes));
        dek = kh_secret_free(dek);
}

static void test_unwrap_under_other_version_is_integrity(void **state) {
        struct kh_keystore *ks = *state;
        const struct kh_key_ref v1 = key_ref("acme", 1), v2 = key_ref("acme", 2);
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 };
        struct kh_secret *dek = NULL;

        generate(ks, "acme", 1);
        generate(ks, "acme", 2);
        wrap_test_dek(ks, &v1, &wrapped);
        assert_int_equal(kh_keystore_unwrap(ks, &v2, wrapped.data, wrapped.len, &dek),
                         -KH_E_INTEGRITY);
        assert_null(dek);
}

/* Verifies sig over digest with RSA-PSS, SHA-256, MGF1-SHA-256 and salt length salt. */
static bool pss_verifies(EVP_PKEY *pub, const struct kh_buf *sig, const uint8_t digest[32],
                         int salt) {
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;

        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
        assert_non_null(ctx);
        assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
        assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) > 0);
        assert_true(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0);
        assert_true(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) > 0);
        assert_true(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, salt) > 0);
        return EVP_PKEY_verify(ctx, sig->data, sig->len, digest, 32) == 1;
}

static void test_sign_verifies_with_public_key(void **state) {
        struct kh_keystore *ks = *state;
        const struct kh_key_ref ref = key_ref("acme", 1);
        KH_CLEANUP(kh_buf_freep) struct kh_buf sig = { 0 };
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        static const char msg[] = "keyhold audit checkpoint";
        uint8_t digest[32];
        unsigned digest_len = 0;

        generate(ks, "acme", 1);
        assert_int_equal(EVP_Digest(msg, strlen(msg), digest, &digest_len, EVP_sha256(), NULL), 1);
        assert_int_equal(digest_len, 32);

        kh_buf_init(&sig, 1024, false);
        assert_int_equal(kh_keystore_sign(ks, &ref, digest, 31, &sig), -EINVAL);
        assert_int_equal(kh_keystore_sign(ks, &ref, digest, sizeof(digest), &sig), 0);
        assert_int_equal(sig.len, KH_KS_TEST_BITS / 8);
        assert_int_equal(kh_keystore_public_key(ks, &ref, &pub), 0);

        assert_true(pss_verifies(pub, &sig, digest, 32));
        assert_false(pss_verifies(pub, &sig, digest, 20)); /* the salt is exactly 32 bytes */
        digest[0] ^= 1;
        assert_false(pss_verifies(pub, &sig, digest, 32));
}

static void test_public_key_wraps_for_keystore(void **state) {
        struct kh_keystore *ks = *state;
        const struct kh_key_ref ref = key_ref("acme", 1);
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 };
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = test_dek(), *out = NULL;
        enum kh_oaep_md md = (enum kh_oaep_md) 99;

        generate(ks, "acme", 1);
        assert_int_equal(kh_keystore_public_key(ks, &ref, &pub), 0);
        assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_RSA);
        assert_int_equal(EVP_PKEY_get_bits(pub), KH_KS_TEST_BITS);

        /* the key's own OAEP digest (SHA-256 in a file store; a token may do SHA-1 only) */
        assert_int_equal(kh_keystore_oaep(ks, &ref, &md), 0);
        assert_true(md == KH_OAEP_SHA256 || md == KH_OAEP_SHA1);
        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
        assert_int_equal(kh_rsa_oaep_encrypt_md(pub, md, dek, &wrapped), 0);
        assert_int_equal(kh_keystore_unwrap(ks, &ref, wrapped.data, wrapped.len, &out), 0);
        assert_true(kh_secret_equal(out, dek));
}

static void test_unknown_key_is_enoent(void **state) {
        struct kh_keystore *ks = *state;
        const struct kh_key_ref v3 = key_ref("acme", 3), other = key_ref("nobody", 1);
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 }, wrapped = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = test_dek();
        struct kh_secret *got = NULL;
        EVP_PKEY *pub = NULL;
        uint8_t digest[32] = { 0 };

        generate(ks, "acme", 1);
        wrap_test_dek(ks, &(struct kh_key_ref) { "acme", 1, KH_KEY_DATA }, &wrapped);
        kh_buf_init(&out, 2048, false);

        const struct kh_key_ref *refs[] = { &v3, &other };
        for (size_t i = 0; i < KH_ELEMENTSOF(refs); i++) {
                assert_int_equal(kh_keystore_wrap(ks, refs[i], dek, &out), -ENOENT);
                assert_int_equal(kh_keystore_unwrap(ks, refs[i], wrapped.data, wrapped.len, &got),
                                 -ENOENT);
                assert_int_equal(kh_keystore_sign(ks, refs[i], digest, sizeof(digest), &out),
                                 -ENOENT);
                assert_int_equal(kh_keystore_public_key(ks, refs[i], &pub), -ENOENT);
                assert_int_equal(kh_keystore_oaep(ks, refs[i], &(enum kh_oaep_md) { 0 }),
                                 -ENOENT);
        }
        assert_int_equal(out.len, 0);
        assert_null(got);
        assert_null(pub);

        assert_int_equal(kh_keystore_wrap(ks, &(struct kh_key_ref) { "acme", 0, KH_KEY_DATA }, dek, &out),
                         -EINVAL);
        assert_int_equal(kh_keystore_wrap(ks, &(struct kh_key_ref) { "ac/me", 1, KH_KEY_DATA }, dek, &out),
                         -EINVAL);
}


/* An audit key is a key of its own: another key than the tenant key of the same version,
 * not listed among the tenant's versions, and the server's chain ("") has one too. */
static void test_audit_keys_are_apart(void **state) {
        struct kh_keystore *ks = *state;
        struct kh_key_ref data = key_ref("acme", 1), audit = key_ref("acme", 1),
                          server = key_ref("", 1), got;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pd = NULL;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pa = NULL;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *ps = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf sig = { 0 };
        uint8_t digest[32] = { 7 };
        struct versions vs = { 0 };

        audit.purpose = server.purpose = KH_KEY_AUDIT;
        generate(ks, "acme", 1);
        assert_int_equal(kh_keystore_public_key(ks, &audit, &pa), -ENOENT);
        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) { "acme", 1, 0, KH_KEY_AUDIT, KH_KEY_ALG_EC_P256 }, &got), 0);
        assert_int_equal(got.purpose, KH_KEY_AUDIT);
        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) { "", 1, KH_KS_TEST_BITS, KH_KEY_AUDIT, KH_KEY_ALG_RSA }, &got), 0);
        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) { "", 1, KH_KS_TEST_BITS, KH_KEY_DATA, KH_KEY_ALG_RSA }, &got), -EINVAL);

        assert_int_equal(kh_keystore_public_key(ks, &data, &pd), 0);
        assert_int_equal(kh_keystore_public_key(ks, &audit, &pa), 0);
        assert_int_equal(kh_keystore_public_key(ks, &server, &ps), 0);
        assert_int_not_equal(EVP_PKEY_eq(pd, pa), 1);
        assert_int_not_equal(EVP_PKEY_eq(ps, pa), 1);

        /* the tenant's audit key is ECDSA P-256 (what keyholdd makes), the server's RSA (what
         * keyholdd made before): each signs with its own algorithm */
        assert_true(kh_ec_is_p256(pa));
        assert_int_equal(EVP_PKEY_get_base_id(ps), EVP_PKEY_RSA);
        kh_buf_init(&sig, 1024, false);
        assert_int_equal(kh_keystore_sign(ks, &audit, digest, sizeof(digest), &sig), 0);
        assert_int_equal(kh_ecdsa_verify(pa, digest, sig.data, sig.len), 0);
        digest[1] ^= 1;
        assert_int_equal(kh_ecdsa_verify(pa, digest, sig.data, sig.len), -KH_E_INTEGRITY);
        digest[1] ^= 1;
        assert_int_equal(kh_ecdsa_verify(ps, digest, sig.data, sig.len), -EINVAL);
        kh_buf_reset(&sig);
        assert_int_equal(kh_keystore_sign(ks, &server, digest, sizeof(digest), &sig), 0);
        assert_true(pss_verifies(ps, &sig, digest, 32));
        assert_false(pss_verifies(pd, &sig, digest, 32));
        /* a tenant key wraps DEKs: never an EC key */
        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) { "acme", 2, 0, KH_KEY_DATA, KH_KEY_ALG_EC_P256 }, &got), -EINVAL);

        assert_int_equal(kh_keystore_list(ks, "acme", collect, &vs), 0);
        assert_int_equal(vs.n, 1);
}

/* A store that is there probes fine, and a reconnect (new session and login on a device;
 * nothing on a file store) leaves every key usable: found again by its name. */
static void test_probe_and_reconnect_keep_keys(void **state) {
        struct kh_keystore *ks = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = test_dek(), *back = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped;
        struct kh_key_ref ref = key_ref("acme", 1);
        char detail[128];

        generate(ks, "acme", 1);
        wrap_test_dek(ks, &ref, &wrapped);
        assert_int_equal(kh_keystore_probe(ks, detail, sizeof(detail)), 0);
        assert_string_equal(detail, "");
        assert_false(kh_keystore_is_lost(ks));
        assert_int_equal(kh_keystore_reconnect(ks, detail, sizeof(detail)), 0);
        assert_false(kh_keystore_is_lost(ks));
        assert_int_equal(kh_keystore_probe(ks, detail, sizeof(detail)), 0);
        assert_int_equal(kh_keystore_unwrap(ks, &ref, wrapped.data, wrapped.len, &back), 0);
        assert_true(kh_secret_equal(dek, back));
        generate(ks, "acme", 2); /* the new session writes too */
}

/* ---- operations from several threads at once (keystore.h "Threads") ---- */

#define CONCURRENT_THREADS 4
#define CONCURRENT_ROUNDS 40

struct concurrent {
        struct kh_keystore *ks;
        struct kh_key_ref data, recovery;
        EVP_PKEY *data_pub;               /* verifies the signatures */
        const struct kh_buf *wrapped;     /* the test DEK under data */
        const struct kh_buf *encrypted;   /* the test DEK to recovery, OAEP SHA-1 */
        atomic_uint done, failed;
};

/* One round: unwrap, decrypt, sign and verify, wrap and unwrap again. No cmocka assertion
 * here (they longjmp, and only the test's thread may): failures are counted. */
static bool concurrent_round(struct concurrent *c, unsigned i) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL, *back = NULL, *again = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *want = test_dek();
        KH_CLEANUP(kh_buf_freep) struct kh_buf sig = { 0 }, wrapped = { 0 };
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        uint8_t digest[32] = { (uint8_t) i, (uint8_t) (i >> 8), 0x5a };

        if (kh_keystore_unwrap(c->ks, &c->data, c->wrapped->data, c->wrapped->len, &dek) < 0 ||
            !kh_secret_equal(dek, want))
                return false;
        if (kh_keystore_decrypt(c->ks, &c->recovery, KH_OAEP_SHA1, c->encrypted->data,
                                c->encrypted->len, &back) < 0 ||
            !kh_secret_equal(back, want))
                return false;
        kh_buf_init(&sig, 1024, false);
        if (kh_keystore_sign(c->ks, &c->data, digest, sizeof(digest), &sig) < 0)
                return false;
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, c->data_pub, NULL);
        if (!ctx || EVP_PKEY_verify_init(ctx) != 1 ||
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) <= 0 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32) <= 0 ||
            EVP_PKEY_verify(ctx, sig.data, sig.len, digest, sizeof(digest)) != 1)
                return false;
        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
        return kh_keystore_wrap(c->ks, &c->data, want, &wrapped) == 0 &&
               kh_keystore_unwrap(c->ks, &c->data, wrapped.data, wrapped.len, &again) == 0 &&
               kh_secret_equal(again, want);
}

static void *concurrent_thread(void *userdata) {
        struct concurrent *c = userdata;

        for (unsigned i = 0; i < CONCURRENT_ROUNDS; i++) {
                if (!concurrent_round(c, i))
                        atomic_fetch_add(&c->failed, 1);
                atomic_fetch_add(&c->done, 1);
        }
        return NULL;
}

/* Threads unwrap, decrypt, sign and wrap at once on one store, many times: every answer is
 * right (a token store lends each its own session; a file store shares no state). */
static void test_concurrent_operations(void **state) {
        struct kh_keystore *ks = *state;
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 }, encrypted = { 0 };
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *data_pub = NULL, *recovery_pub = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = test_dek();
        struct concurrent c = { .ks = ks, .data = key_ref("acme", 1), .recovery = key_ref("acme", 1) };
        pthread_t threads[CONCURRENT_THREADS];
        struct kh_key_ref got;

        c.recovery.purpose = KH_KEY_RECOVERY;
        generate(ks, "acme", 1);
        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) { "acme", 1, KH_KS_TEST_BITS, KH_KEY_RECOVERY, KH_KEY_ALG_RSA }, &got), 0);
        wrap_test_dek(ks, &c.data, &wrapped);
        assert_int_equal(kh_keystore_public_key(ks, &c.data, &data_pub), 0);
        assert_int_equal(kh_keystore_public_key(ks, &c.recovery, &recovery_pub), 0);
        kh_buf_init(&encrypted, KH_WRAPPED_DEK_MAX, false);
        assert_int_equal(kh_rsa_oaep_encrypt_md(recovery_pub, KH_OAEP_SHA1, dek, &encrypted), 0);
        c.data_pub = data_pub;
        c.wrapped = &wrapped;
        c.encrypted = &encrypted;

        for (size_t i = 0; i < CONCURRENT_THREADS; i++)
                assert_int_equal(pthread_create(&threads[i], NULL, concurrent_thread, &c), 0);
        for (size_t i = 0; i < CONCURRENT_THREADS; i++)
                assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(atomic_load(&c.done), CONCURRENT_THREADS * CONCURRENT_ROUNDS);
        assert_int_equal(atomic_load(&c.failed), 0);
        assert_false(kh_keystore_is_lost(ks));

        /* and the store goes on as before: a reconnect, then one thread again */
        assert_int_equal(kh_keystore_reconnect(ks, NULL, 0), 0);
        assert_true(concurrent_round(&c, 0));
}

int kh_ks_conformance_run(const struct kh_ks_conformance *c) {
#define CASE(f) cmocka_unit_test_setup_teardown(f, case_setup, case_teardown)
        const struct CMUnitTest tests[] = {
                CASE(test_generate_then_list_ascending),
                CASE(test_generate_existing_version_is_eexist),
                CASE(test_generate_rejects_bad_spec),
                CASE(test_wrap_unwrap_round_trip),
                CASE(test_unwrap_tampered_is_integrity),
                CASE(test_unwrap_under_other_version_is_integrity),
                CASE(test_sign_verifies_with_public_key),
                CASE(test_public_key_wraps_for_keystore),
                CASE(test_unknown_key_is_enoent),
                CASE(test_audit_keys_are_apart),
                CASE(test_probe_and_reconnect_keep_keys),
                CASE(test_concurrent_operations),
        };
#undef CASE

        backend = c;
        return _cmocka_run_group_tests(c->name, tests, KH_ELEMENTSOF(tests), NULL, NULL);
}
