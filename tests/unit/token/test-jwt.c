#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/limits.h"
#include "token/jwt-sign.h"
#include "token/jwt.h"
#include "token-test.h"

static EVP_PKEY *rsa, *rsa2, *rsa1024, *ec, *ec2, *ed;

static int setup(void **state) {
        (void) state;
        rsa = test_key("RSA");
        rsa2 = test_key("RSA");
        rsa1024 = test_key("RSA1024");
        ec = test_key("EC");
        ec2 = test_key("EC");
        ed = test_key("ED25519");
        return 0;
}

static int teardown(void **state) {
        (void) state;
        EVP_PKEY_free(rsa);
        EVP_PKEY_free(rsa2);
        EVP_PKEY_free(rsa1024);
        EVP_PKEY_free(ec);
        EVP_PKEY_free(ec2);
        EVP_PKEY_free(ed);
        return 0;
}

static int parse(const char *t, struct kh_jwt **ret) {
        return kh_jwt_parse(t, strlen(t), ret);
}

/* parse must refuse t, and leave *ret alone */
static void assert_refused(const char *t) {
        struct kh_jwt *jwt = (struct kh_jwt *) 0x1;

        assert_int_equal(parse(t, &jwt), -KH_E_INVALID_TOKEN);
        assert_ptr_equal(jwt, (struct kh_jwt *) 0x1);
}

static const struct kh_claim_matcher roles_admin = { "roles", "keyhold-admin" };

static const struct kh_claims_policy default_policy = {
        .issuer = TEST_ISS, .now = TEST_NOW, .skew_s = KH_CLOCK_SKEW_S,
};

/* ---- round trips ---- */

static void roundtrip(EVP_PKEY *key, enum kh_jwt_alg alg, const char *alg_name) {
        struct kh_buf tok;
        struct kh_jwt *jwt = NULL;
        struct kh_principal p = { 0 };
        uint8_t want_hash[32];
        char *claims = test_claims(TEST_ISS, "\"roles\":[\"keyhold-admin\"]");
        char header_want[128];
        struct kh_claims_policy pol = default_policy;
        const char *dot;
        char *header_b64;

        kh_buf_init(&tok, KH_TOKEN_MAX, true);
        assert_int_equal(kh_jwt_sign(key, alg, "k1", claims, &tok), 0);

        /* header as specified, compared through an independent encoding */
        snprintf(header_want, sizeof(header_want),
                 "{\"alg\":\"%s\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}", alg_name);
        header_b64 = test_b64url_str(header_want);
        dot = strchr((const char *) tok.data, '.');
        assert_non_null(dot);
        assert_int_equal((size_t) (dot - (const char *) tok.data), strlen(header_b64));
        assert_memory_equal(tok.data, header_b64, strlen(header_b64));
        free(header_b64);

        assert_int_equal(kh_jwt_parse((const char *) tok.data, tok.len, &jwt), 0);
        assert_int_equal(kh_jwt_alg(jwt), alg);
        assert_string_equal(kh_jwt_kid(jwt), "k1");
        assert_int_equal(kh_jwt_verify_signature(jwt, key), 0);

        pol.admins = &roles_admin;
        pol.n_admins = 1;
        assert_int_equal(kh_jwt_check_claims(jwt, &pol, &p), 0);
        assert_string_equal(p.sub, TEST_SUB_CANON);
        assert_string_equal(p.tenant, "");
        assert_int_equal(p.exp, TEST_NOW + 600);
        assert_true(p.admin);
        SHA256(tok.data, tok.len, want_hash);
        assert_memory_equal(p.token_hash, want_hash, 32);
        assert_memory_equal(kh_jwt_token_hash(jwt), want_hash, 32);

        kh_jwt_free(jwt);
        kh_buf_free(&tok);
        free(claims);
}

static void test_sign_roundtrip_all_algs(void **state) {
        (void) state;
        roundtrip(rsa, KH_JWT_ALG_RS256, "RS256");
        roundtrip(rsa, KH_JWT_ALG_PS256, "PS256");
        roundtrip(ec, KH_JWT_ALG_ES256, "ES256");
        roundtrip(ed, KH_JWT_ALG_EDDSA, "EdDSA");
}

/* Tokens signed by OpenSSL directly (not kh_jwt_sign) verify: no symmetric bug. */
static void independent(EVP_PKEY *key, const char *alg, enum kh_jwt_alg want) {
        char header[96];
        char *claims = test_claims(TEST_ISS, NULL), *t;
        struct kh_jwt *jwt = NULL;
        struct kh_principal p;

        snprintf(header, sizeof(header), "{\"typ\":\"at+jwt\",\"alg\":\"%s\",\"kid\":\"x\"}", alg);
        t = test_sign(key, alg, header, claims);
        assert_int_equal(parse(t, &jwt), 0);
        assert_int_equal(kh_jwt_alg(jwt), want);
        assert_int_equal(kh_jwt_verify_signature(jwt, key), 0);
        assert_int_equal(kh_jwt_check_claims(jwt, &default_policy, &p), 0);
        assert_string_equal(p.sub, TEST_SUB_CANON);
        assert_false(p.admin);
        kh_jwt_free(jwt);
        free(t);
        free(claims);
}

static void test_independently_signed_tokens_verify(void **state) {
        (void) state;
        independent(rsa, "RS256", KH_JWT_ALG_RS256);
        independent(rsa, "PS256", KH_JWT_ALG_PS256);
        independent(ec, "ES256", KH_JWT_ALG_ES256);
        independent(ed, "EdDSA", KH_JWT_ALG_EDDSA);
}

static void test_no_kid_is_null(void **state) {
        struct kh_jwt *jwt = NULL;
        char *t = test_sign(ec, "ES256", "{\"alg\":\"ES256\"}", "{}");
        (void) state;

        assert_int_equal(parse(t, &jwt), 0);
        assert_null(kh_jwt_kid(jwt));
        kh_jwt_free(jwt);
        free(t);
}

/* ---- parse rejections ---- */

static void test_alg_none_in_any_spelling_refused(void **state) {
        const char *names[] = { "none", "None", "NONE", "nOnE", "" };
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(names); i++) {
                char header[64], *t;

                snprintf(header, sizeof(header), "{\"alg\":\"%s\"}", names[i]);
                t = test_token(header, "{\"sub\":\"x\"}", "");
                assert_refused(t);
                free(t);
                t = test_token(header, "{\"sub\":\"x\"}", "AAAA");
                assert_refused(t);
                free(t);
        }
}

/* The classic confusion: HS256 with the RSA public key (PEM) as the HMAC secret. */
static void test_hs256_with_public_key_as_secret_refused(void **state) {
        BIO *bio = BIO_new(BIO_s_mem());
        char *pem, *t, *sig_b64, *full;
        long pem_len;
        unsigned char mac[32];
        unsigned int mac_len = 0;
        struct kh_jwt *jwt = (struct kh_jwt *) 0x1;
        (void) state;

        assert_int_equal(PEM_write_bio_PUBKEY(bio, rsa), 1);
        pem_len = BIO_get_mem_data(bio, &pem);
        t = test_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"sub\":\"x\"}", "");
        t[strlen(t) - 1] = 0;
        assert_non_null(HMAC(EVP_sha256(), pem, (int) pem_len, (unsigned char *) t, strlen(t),
                             mac, &mac_len));
        sig_b64 = test_b64url(mac, mac_len);
        full = malloc(strlen(t) + strlen(sig_b64) + 2);
        sprintf(full, "%s.%s", t, sig_b64);
        assert_int_equal(parse(full, &jwt), -KH_E_INVALID_TOKEN);
        assert_ptr_equal(jwt, (struct kh_jwt *) 0x1);
        free(full);
        free(sig_b64);
        free(t);
        BIO_free(bio);
}

static void test_other_algs_refused(void **state) {
        const char *headers[] = {
                "{\"alg\":\"HS256\"}", "{\"alg\":\"HS512\"}", "{\"alg\":\"RS512\"}",
                "{\"alg\":\"ES384\"}", "{\"alg\":\"rs256\"}", "{\"alg\":\"RS256 \"}",
                "{\"alg\":\"Ed25519\"}", "{\"alg\":256}", "{\"alg\":null}", "{\"alg\":[\"RS256\"]}",
                "{\"typ\":\"JWT\"}", "{\"alg\":\"RS256\",\"kid\":7}",
        };
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(headers); i++) {
                char *t = test_token(headers[i], "{}", "AAAA");
                assert_refused(t);
                free(t);
        }
}

static void test_key_carrying_headers_and_crit_refused(void **state) {
        const char *headers[] = {
                "{\"alg\":\"RS256\",\"jwk\":{\"kty\":\"RSA\"}}",
                "{\"alg\":\"RS256\",\"jku\":\"https://evil/jwks\"}",
                "{\"alg\":\"RS256\",\"x5u\":\"https://evil/cert\"}",
                "{\"alg\":\"RS256\",\"x5c\":[\"MIIB\"]}",
                "{\"alg\":\"RS256\",\"x5t\":\"abc\"}",
                "{\"alg\":\"RS256\",\"x5t#S256\":\"abc\"}",
                "{\"alg\":\"RS256\",\"crit\":[\"exp\"]}",
                "{\"alg\":\"RS256\",\"crit\":[]}",
                "{\"alg\":\"RS256\",\"jku\":null}",
        };
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(headers); i++) {
                /* properly signed, so only the header can be the reason */
                char *t = test_sign(rsa, "RS256", headers[i], "{}");
                assert_refused(t);
                free(t);
        }
}

static void test_malformed_structure_refused(void **state) {
        char *good = test_sign(ec, "ES256", "{\"alg\":\"ES256\"}", "{\"a\":1}");
        size_t n = strlen(good);
        char buf[1024];
        struct kh_jwt *jwt = NULL;
        (void) state;

        assert_int_equal(parse(good, &jwt), 0); /* the baseline is fine */
        kh_jwt_free(jwt);

        /* trailing garbage */
        const char *suffixes[] = { ".", ".AAAA", "=", "==", " ", "\n", "*", "\x01" };
        for (size_t i = 0; i < KH_ELEMENTSOF(suffixes); i++) {
                snprintf(buf, sizeof(buf), "%s%s", good, suffixes[i]);
                assert_refused(buf);
        }
        /* leading garbage */
        snprintf(buf, sizeof(buf), " %s", good);
        assert_refused(buf);
        snprintf(buf, sizeof(buf), "Bearer %s", good);
        assert_refused(buf);

        /* 2 segments, 4 segments, 5 (JWE shape), empty segments */
        memcpy(buf, good, n + 1);
        *strrchr(buf, '.') = 0;
        assert_refused(buf);
        snprintf(buf, sizeof(buf), "%s.AAAA.AAAA", good);
        assert_refused(buf);
        assert_refused("..");
        assert_refused("");
        assert_refused("abc");
        snprintf(buf, sizeof(buf), ".%s", strchr(good, '.') + 1);
        assert_refused(buf);

        /* bad base64url in each segment: std alphabet, padding, whitespace */
        for (size_t seg = 0; seg < 3; seg++) {
                const char bad[] = { '+', '/', '=', ' ', '\0' };
                for (size_t b = 0; b < KH_ELEMENTSOF(bad); b++) {
                        char *p;
                        memcpy(buf, good, n + 1);
                        p = buf;
                        for (size_t k = 0; k < seg; k++)
                                p = strchr(p, '.') + 1;
                        p[1] = bad[b];
                        assert_int_equal(kh_jwt_parse(buf, n, &jwt), -KH_E_INVALID_TOKEN);
                }
        }
        free(good);
}

static void test_length_limits(void **state) {
        char *big = malloc(KH_TOKEN_MAX + 2);
        struct kh_jwt *jwt = NULL;
        (void) state;

        memset(big, 'A', KH_TOKEN_MAX + 1);
        big[10] = '.';
        big[20] = '.';
        big[KH_TOKEN_MAX + 1] = 0;
        assert_int_equal(kh_jwt_parse(big, KH_TOKEN_MAX + 1, &jwt), -KH_E_INVALID_TOKEN);
        assert_int_equal(kh_jwt_parse("a.b.c", 0, &jwt), -KH_E_INVALID_TOKEN);
        assert_null(jwt);
        free(big);
}

static void test_non_object_json_refused(void **state) {
        const char *cases[][2] = {
                { "[\"alg\",\"ES256\"]", "{}" },
                { "{\"alg\":\"ES256\"}", "[1,2]" },
                { "{\"alg\":\"ES256\"}", "\"sub\"" },
                { "{\"alg\":\"ES256\"}", "42" },
                { "{\"alg\":\"ES256\"}", "null" },
                { "{\"alg\":\"ES256\"}", "{\"a\":1" },
                { "{\"alg\":\"ES256\"}", "{\"a\":1} x" },
                { "{\"alg\":\"ES256\"}", "" },
                { "{\"alg\":\"ES256\"}", "{\"sub\":\"a\\u0000b\"}" },
                /* duplicate keys: a verifier and a client must never read different values */
                { "{\"alg\":\"ES256\",\"alg\":\"none\"}", "{}" },
                { "{\"alg\":\"ES256\"}", "{\"sub\":\"a\",\"sub\":\"b\"}" },
                { "{\"alg\":\"ES256\",\"kid\":\"a\",\"kid\":\"a\"}", "{}" },
        };
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(cases); i++) {
                char *t = test_sign(ec, "ES256", cases[i][0], cases[i][1]);
                assert_refused(t);
                free(t);
        }
}

/* ---- signatures ---- */

static void flip_and_verify(EVP_PKEY *key, enum kh_jwt_alg alg) {
        struct kh_buf tok, other;
        struct kh_jwt *jwt = NULL;
        char *claims = test_claims(TEST_ISS, NULL);
        char *claims2 = test_claims("https://issuer.tesT", NULL);
        char spliced[4096];
        const char *d1, *d2, *o1, *o2;
        size_t first;
        uint8_t saved;

        kh_buf_init(&tok, KH_TOKEN_MAX, true);
        kh_buf_init(&other, KH_TOKEN_MAX, true);
        assert_int_equal(kh_jwt_sign(key, alg, "k", claims, &tok), 0);
        assert_int_equal(kh_jwt_sign(key, alg, "k", claims2, &other), 0);

        /* flip bits in the first signature character (not the last: its low bits are
         * padding, which the decoder must refuse on its own) */
        first = strrchr((const char *) tok.data, '.') - (const char *) tok.data + 1;
        saved = tok.data[first];
        tok.data[first] = saved == 'A' ? 'B' : 'A';
        assert_int_equal(kh_jwt_parse((const char *) tok.data, tok.len, &jwt), 0);
        assert_int_equal(kh_jwt_verify_signature(jwt, key), -KH_E_INVALID_TOKEN);
        kh_jwt_free(jwt);
        tok.data[first] = saved;
        assert_int_equal(kh_jwt_parse((const char *) tok.data, tok.len, &jwt), 0);
        assert_int_equal(kh_jwt_verify_signature(jwt, key), 0); /* restored */
        kh_jwt_free(jwt);

        /* another valid payload under this token's header and signature */
        d1 = strchr((const char *) tok.data, '.');
        d2 = strrchr((const char *) tok.data, '.');
        o1 = strchr((const char *) other.data, '.');
        o2 = strrchr((const char *) other.data, '.');
        snprintf(spliced, sizeof(spliced), "%.*s%.*s%s", (int) (d1 - (const char *) tok.data),
                 (const char *) tok.data, (int) (o2 - o1), o1, d2);
        assert_int_equal(parse(spliced, &jwt), 0);
        assert_int_equal(kh_jwt_verify_signature(jwt, key), -KH_E_INVALID_TOKEN);
        kh_jwt_free(jwt);

        kh_buf_free(&tok);
        kh_buf_free(&other);
        free(claims);
        free(claims2);
}

static void test_tampered_signature_or_payload_fails(void **state) {
        (void) state;
        flip_and_verify(rsa, KH_JWT_ALG_RS256);
        flip_and_verify(rsa, KH_JWT_ALG_PS256);
        flip_and_verify(ec, KH_JWT_ALG_ES256);
        flip_and_verify(ed, KH_JWT_ALG_EDDSA);
}

static int verify_token(const char *t, EVP_PKEY *key) {
        struct kh_jwt *jwt = NULL;
        int r = parse(t, &jwt);

        if (r < 0)
                return r;
        r = kh_jwt_verify_signature(jwt, key);
        kh_jwt_free(jwt);
        return r;
}

static void test_wrong_key_type_or_other_key_fails(void **state) {
        char *rs = test_sign(rsa, "RS256", "{\"alg\":\"RS256\",\"kid\":\"k\"}", "{}");
        char *ps = test_sign(rsa, "PS256", "{\"alg\":\"PS256\",\"kid\":\"k\"}", "{}");
        char *es = test_sign(ec, "ES256", "{\"alg\":\"ES256\",\"kid\":\"k\"}", "{}");
        char *eds = test_sign(ed, "EdDSA", "{\"alg\":\"EdDSA\",\"kid\":\"k\"}", "{}");
        /* same kid, signed by an attacker's key */
        char *rs_other = test_sign(rsa2, "RS256", "{\"alg\":\"RS256\",\"kid\":\"k\"}", "{}");
        char *es_other = test_sign(ec2, "ES256", "{\"alg\":\"ES256\",\"kid\":\"k\"}", "{}");
        /* a PS256 signature presented as RS256 and vice versa */
        char *ps_as_rs = test_sign(rsa, "PS256", "{\"alg\":\"RS256\"}", "{}");
        char *rs_as_ps = test_sign(rsa, "RS256", "{\"alg\":\"PS256\"}", "{}");
        (void) state;

        assert_int_equal(verify_token(rs, rsa), 0);
        assert_int_equal(verify_token(rs, ec), -KH_E_INVALID_TOKEN);
        assert_int_equal(verify_token(rs, ed), -KH_E_INVALID_TOKEN);
        assert_int_equal(verify_token(ps, ec), -KH_E_INVALID_TOKEN);
        assert_int_equal(verify_token(es, rsa), -KH_E_INVALID_TOKEN);
        assert_int_equal(verify_token(es, ed), -KH_E_INVALID_TOKEN);
        assert_int_equal(verify_token(eds, ec), -KH_E_INVALID_TOKEN);
        assert_int_equal(verify_token(eds, rsa), -KH_E_INVALID_TOKEN);
        assert_int_equal(verify_token(rs_other, rsa), -KH_E_INVALID_TOKEN);
        assert_int_equal(verify_token(rs_other, rsa2), 0);
        assert_int_equal(verify_token(es_other, ec), -KH_E_INVALID_TOKEN);
        assert_int_equal(verify_token(ps_as_rs, rsa), -KH_E_INVALID_TOKEN);
        assert_int_equal(verify_token(rs_as_ps, rsa), -KH_E_INVALID_TOKEN);
        assert_int_equal(verify_token(rs, NULL), -KH_E_INVALID_TOKEN);

        free(rs), free(ps), free(es), free(eds), free(rs_other), free(es_other);
        free(ps_as_rs), free(rs_as_ps);
}

static void test_small_rsa_key_refused(void **state) {
        char *t = test_sign(rsa1024, "RS256", "{\"alg\":\"RS256\"}", "{}");
        struct kh_buf tok;
        (void) state;

        assert_int_equal(verify_token(t, rsa1024), -KH_E_INVALID_TOKEN);
        assert_false(kh_jwt_key_fits_alg(rsa1024, KH_JWT_ALG_RS256));
        assert_true(kh_jwt_key_fits_alg(rsa, KH_JWT_ALG_RS256));
        kh_buf_init(&tok, KH_TOKEN_MAX, true);
        assert_int_equal(kh_jwt_sign(rsa1024, KH_JWT_ALG_RS256, NULL, "{}", &tok), -EINVAL);
        assert_int_equal(tok.len, 0);
        free(t);
}

static void test_es256_p384_key_refused(void **state) {
        EVP_PKEY *p384 = test_key("P-384");
        (void) state;

        assert_false(kh_jwt_key_fits_alg(p384, KH_JWT_ALG_ES256));
        assert_true(kh_jwt_key_fits_alg(ec, KH_JWT_ALG_ES256));
        EVP_PKEY_free(p384);
}

/* ES256 r||s with chosen r and s (hex, 64 chars each). */
static char *es256_with(const char *r_hex, const char *s_hex) {
        unsigned char sig[64];
        char *u = test_token("{\"alg\":\"ES256\"}", "{}", ""), *b, *t;

        for (size_t i = 0; i < 32; i++) {
                unsigned v;
                sscanf(r_hex + 2 * i, "%2x", &v);
                sig[i] = (unsigned char) v;
                sscanf(s_hex + 2 * i, "%2x", &v);
                sig[32 + i] = (unsigned char) v;
        }
        b = test_b64url(sig, sizeof(sig));
        t = malloc(strlen(u) + strlen(b) + 1);
        sprintf(t, "%s%s", u, b);
        free(b);
        free(u);
        return t;
}

#define HEX_ZERO "0000000000000000000000000000000000000000000000000000000000000000"
#define HEX_ONE "0000000000000000000000000000000000000000000000000000000000000001"
#define HEX_N "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"
#define HEX_N_PLUS_1 "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632552"
#define HEX_MAX "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"

static void test_es256_degenerate_signatures_refused(void **state) {
        const char *cases[][2] = {
                { HEX_ZERO, HEX_ONE }, { HEX_ONE, HEX_ZERO }, { HEX_ZERO, HEX_ZERO },
                { HEX_ONE, HEX_N },    { HEX_N, HEX_ONE },    { HEX_N_PLUS_1, HEX_ONE },
                { HEX_ONE, HEX_MAX },
        };
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(cases); i++) {
                char *t = es256_with(cases[i][0], cases[i][1]);
                assert_int_equal(verify_token(t, ec), -KH_E_INVALID_TOKEN);
                free(t);
        }
}

static void test_es256_wrong_length_or_der_refused(void **state) {
        unsigned char sig[1024], der[128];
        char *u = test_token("{\"alg\":\"ES256\"}", "{}", ""), *b, *t;
        size_t ulen = strlen(u) - 1, n;
        ECDSA_SIG *es;
        unsigned char *dp = der;
        int dn;
        (void) state;

        n = test_sign_bytes(ec, "ES256", u, ulen, sig);
        assert_int_equal(n, 64);
        t = malloc(ulen + 300);

        /* 63 and 65 bytes */
        for (size_t len = 63; len <= 65; len += 2) {
                sig[64] = 0;
                b = test_b64url(sig, len);
                sprintf(t, "%s%s", u, b);
                assert_int_equal(verify_token(t, ec), -KH_E_INVALID_TOKEN);
                free(b);
        }
        /* the same signature in DER form, as OpenSSL would produce it */
        es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
        dn = i2d_ECDSA_SIG(es, &dp);
        ECDSA_SIG_free(es);
        b = test_b64url(der, (size_t) dn);
        sprintf(t, "%s%s", u, b);
        assert_int_equal(verify_token(t, ec), -KH_E_INVALID_TOKEN);
        free(b);
        /* and the raw form verifies (so the cases above failed for their shape) */
        b = test_b64url(sig, 64);
        sprintf(t, "%s%s", u, b);
        assert_int_equal(verify_token(t, ec), 0);
        free(b);
        free(t);
        free(u);
}

static void test_rsa_signature_length_must_match_modulus(void **state) {
        unsigned char sig[1024];
        char *u = test_token("{\"alg\":\"RS256\"}", "{}", ""), *b, *t;
        size_t ulen = strlen(u) - 1, n;
        (void) state;

        n = test_sign_bytes(rsa, "RS256", u, ulen, sig);
        assert_int_equal(n, 256);
        t = malloc(ulen + 600);
        memmove(sig + 1, sig, n);
        sig[0] = 0; /* same integer, one byte longer */
        b = test_b64url(sig, n + 1);
        sprintf(t, "%s%s", u, b);
        assert_int_equal(verify_token(t, rsa), -KH_E_INVALID_TOKEN);
        free(b);
        b = test_b64url(sig + 1, n);
        sprintf(t, "%s%s", u, b);
        assert_int_equal(verify_token(t, rsa), 0);
        free(b);
        free(t);
        free(u);
}

/* ---- claims ---- */

/* Claim values as JSON text: NULL takes the default, OMIT leaves the claim out. */
struct cl {
        int none_;
        const char *iss, *sub, *exp, *nbf, *aud, *scope, *amr, *roles;
        const char *extra;      /* more members, as JSON text ("name":value,...) */
};

#define DEF_ISS "\"" TEST_ISS "\""
#define DEF_SUB "\"" TEST_SUB "\""
#define DEF_EXP "1700000600"
#define DEF_SCOPE "[\"api\",\"offline_access\"]"
#define DEF_AMR "[\"Application\"]"
#define CL(...) ((struct cl) { .none_ = 0, __VA_ARGS__ })
#define OMIT "" /* a member set to OMIT is left out */

static void add(char *buf, size_t size, const char *name, const char *v) {
        if (!v || !*v)
                return;
        snprintf(buf + strlen(buf), size - strlen(buf), "%s\"%s\":%s",
                 strlen(buf) > 1 ? "," : "", name, v);
}

/* kh_jwt_check_claims() as it answers: 0 for any valid token. */
static int check_raw(struct cl c, const struct kh_claims_policy *p, struct kh_principal *ret) {
        char json[2048] = "{";
        struct kh_jwt *jwt = NULL;
        char *t;
        int r;

        add(json, sizeof(json), "iss", c.iss ? c.iss : DEF_ISS);
        add(json, sizeof(json), "sub", c.sub ? c.sub : DEF_SUB);
        add(json, sizeof(json), "exp", c.exp ? c.exp : DEF_EXP);
        add(json, sizeof(json), "nbf", c.nbf);
        add(json, sizeof(json), "aud", c.aud);
        add(json, sizeof(json), "scope", c.scope ? c.scope : DEF_SCOPE);
        add(json, sizeof(json), "amr", c.amr ? c.amr : DEF_AMR);
        add(json, sizeof(json), "roles", c.roles);
        if (c.extra)
                snprintf(json + strlen(json), sizeof(json) - strlen(json), ",%s", c.extra);
        strcat(json, "}");

        t = test_sign(ec, "ES256", "{\"alg\":\"ES256\"}", json);
        assert_int_equal(parse(t, &jwt), 0);
        assert_int_equal(kh_jwt_verify_signature(jwt, ec), 0);
        r = kh_jwt_check_claims(jwt, p, ret);
        kh_jwt_free(jwt);
        free(t);
        return r;
}

/* The verdict for a member route: a valid token that is no member's gives its refusal. */
static int check_with(struct cl c, const struct kh_claims_policy *p, struct kh_principal *ret) {
        int r = check_raw(c, p, ret);

        return r == 0 ? ret->member_refusal : r;
}

static int check(struct cl c) {
        struct kh_principal p;
        return check_with(c, &default_policy, &p);
}

#define INVALID -KH_E_INVALID_TOKEN
#define SCOPE -KH_E_INSUFFICIENT_SCOPE
#define SUBJECT -KH_E_INVALID_SUBJECT

static void test_claims_baseline_and_principal(void **state) {
        struct kh_principal p;
        (void) state;

        memset(&p, 0x5a, sizeof(p));
        assert_int_equal(check_with(CL(.exp = OMIT), &default_policy, &p), INVALID);
        assert_int_equal(p.exp, 0x5a5a5a5a5a5a5a5a); /* untouched on failure */
        assert_int_equal(check_with(CL(), &default_policy, &p), 0);
        assert_string_equal(p.sub, TEST_SUB_CANON);
        assert_int_equal(p.exp, 1700000600);
        assert_false(p.admin);
}

static void test_claims_issuer(void **state) {
        (void) state;
        assert_int_equal(check(CL(.iss = "\"https://other.test\"")), INVALID);
        assert_int_equal(check(CL(.iss = "\"https://issuer.test/\"")), INVALID); /* near miss */
        assert_int_equal(check(CL(.iss = "\"HTTPS://issuer.test\"")), INVALID);
        assert_int_equal(check(CL(.iss = "\"https://issuer.tes\"")), INVALID);
        assert_int_equal(check(CL(.iss = OMIT)), INVALID);
        assert_int_equal(check(CL(.iss = "[\"https://issuer.test\"]")), INVALID);
        assert_int_equal(check(CL(.iss = "null")), INVALID);
}

static void test_claims_lifetime_boundaries(void **state) {
        char exp_edge[32], exp_past[32], nbf_edge[32], nbf_future[32];
        (void) state;

        /* valid while now <= exp + skew */
        snprintf(exp_edge, sizeof(exp_edge), "%lld", (long long) (TEST_NOW - KH_CLOCK_SKEW_S));
        snprintf(exp_past, sizeof(exp_past), "%lld", (long long) (TEST_NOW - KH_CLOCK_SKEW_S - 1));
        /* valid while now + skew >= nbf */
        snprintf(nbf_edge, sizeof(nbf_edge), "%lld", (long long) (TEST_NOW + KH_CLOCK_SKEW_S));
        snprintf(nbf_future, sizeof(nbf_future), "%lld",
                 (long long) (TEST_NOW + KH_CLOCK_SKEW_S + 1));

        assert_int_equal(check(CL(.exp = exp_edge)), 0);
        assert_int_equal(check(CL(.exp = exp_past)), INVALID);
        assert_int_equal(check(CL(.nbf = nbf_edge)), 0);
        assert_int_equal(check(CL(.nbf = nbf_future)), INVALID);
        assert_int_equal(check(CL(.exp = "1")), INVALID);
        assert_int_equal(check(CL(.exp = "-1")), INVALID);
        assert_int_equal(check(CL(.exp = "9223372036854775807")), 0); /* no overflow */
        assert_int_equal(check(CL(.nbf = "-9223372036854775807")), 0);
}

/* iat ahead of the clock (beyond the skew): minted by a wrong clock or in advance. */
static void test_claims_iat_in_the_future(void **state) {
        char edge[40], future[40], decade[40];
        (void) state;

        snprintf(edge, sizeof(edge), "\"iat\":%lld", (long long) (TEST_NOW + KH_CLOCK_SKEW_S));
        snprintf(future, sizeof(future), "\"iat\":%lld",
                 (long long) (TEST_NOW + KH_CLOCK_SKEW_S + 1));
        snprintf(decade, sizeof(decade), "\"iat\":%lld", (long long) (TEST_NOW + 315360000));
        assert_int_equal(check(CL(.extra = "\"iat\":1699999000")), 0);
        assert_int_equal(check(CL(.extra = edge)), 0);
        assert_int_equal(check(CL(.extra = future)), INVALID);
        assert_int_equal(check(CL(.extra = decade)), INVALID);
        assert_int_equal(check(CL(.extra = "\"iat\":1700000300.01")), INVALID); /* rounds up */
        assert_int_equal(check(CL(.extra = "\"iat\":\"1700000000\"")), INVALID);
        assert_int_equal(check(CL(.extra = "\"iat\":-9223372036854775807")), 0);
}

static void test_claims_lifetime_types(void **state) {
        struct kh_principal p;
        (void) state;

        assert_int_equal(check(CL(.exp = OMIT)), INVALID);
        assert_int_equal(check(CL(.exp = "\"1700000600\"")), INVALID);
        assert_int_equal(check(CL(.exp = "true")), INVALID);
        assert_int_equal(check(CL(.exp = "null")), INVALID);
        assert_int_equal(check(CL(.exp = "[1700000600]")), INVALID);
        assert_int_equal(check(CL(.exp = "1e300")), INVALID);
        assert_int_equal(check(CL(.nbf = "\"0\"")), INVALID);
        /* reals: exp rounds down, nbf up */
        assert_int_equal(check_with(CL(.exp = "1700000600.9"), &default_policy, &p), 0);
        assert_int_equal(p.exp, 1700000600);
        assert_int_equal(check(CL(.exp = "1699999700.5")), 0);    /* floor = now - skew */
        assert_int_equal(check(CL(.exp = "1699999699.99")), INVALID);
        assert_int_equal(check(CL(.nbf = "1700000300.0")), 0);
        assert_int_equal(check(CL(.nbf = "1700000300.01")), INVALID);
}

/* A capped tenant refuses a token whose exp lies further ahead than now + cap + skew; the
 * default policy (cap 0) has no cap. */
static void test_claims_lifetime_cap(void **state) {
        struct kh_claims_policy pol = default_policy;
        struct kh_principal p;
        char edge[32], beyond[32];
        (void) state;

        pol.max_lifetime_s = 3600;
        snprintf(edge, sizeof(edge), "%lld", (long long) (TEST_NOW + 3600 + KH_CLOCK_SKEW_S));
        snprintf(beyond, sizeof(beyond), "%lld", (long long) (TEST_NOW + 3600 + KH_CLOCK_SKEW_S + 1));
        assert_int_equal(check_with(CL(.exp = edge), &pol, &p), 0);
        assert_int_equal(p.exp, TEST_NOW + 3600 + KH_CLOCK_SKEW_S);
        assert_int_equal(check_with(CL(.exp = beyond), &pol, &p), INVALID);
        assert_int_equal(check_with(CL(.exp = "9223372036854775807"), &pol, &p), INVALID);
        assert_int_equal(check_with(CL(.exp = "1e18"), &pol, &p), INVALID);
        assert_int_equal(check(CL(.exp = beyond)), 0);
        /* a cap too large to add to now caps nothing */
        pol.max_lifetime_s = INT64_MAX;
        assert_int_equal(check_with(CL(.exp = "9223372036854775807"), &pol, &p), 0);
}

static void test_claims_audience(void **state) {
        struct kh_claims_policy pol = default_policy;
        struct kh_principal p;
        (void) state;

        /* not checked by default (Bitwarden), but its type is */
        assert_int_equal(check(CL(.aud = "\"anything\"")), 0);
        assert_int_equal(check(CL(.aud = "[\"a\",\"b\"]")), 0);
        assert_int_equal(check(CL(.aud = "5")), INVALID);
        assert_int_equal(check(CL(.aud = "[\"a\",5]")), INVALID);

        pol.audience = "keyhold";
        assert_int_equal(check_with(CL(.aud = "\"keyhold\""), &pol, &p), 0);
        assert_int_equal(check_with(CL(.aud = "[\"api\",\"keyhold\"]"), &pol, &p), 0);
        assert_int_equal(check_with(CL(.aud = "\"keyhold2\""), &pol, &p), INVALID);
        assert_int_equal(check_with(CL(.aud = "[\"Keyhold\"]"), &pol, &p), INVALID);
        assert_int_equal(check_with(CL(.aud = "[]"), &pol, &p), INVALID);
        assert_int_equal(check_with(CL(), &pol, &p), INVALID);
}

static void test_claims_scope(void **state) {
        struct kh_claims_policy strict = default_policy;
        struct kh_principal p;
        (void) state;

        assert_int_equal(check(CL(.scope = "[\"api\"]")), 0);
        assert_int_equal(check(CL(.scope = "[\"offline_access\",\"api\"]")), 0);
        assert_int_equal(check(CL(.scope = "[\"offline_access\"]")), SCOPE);
        assert_int_equal(check(CL(.scope = "[\"API\"]")), SCOPE);
        assert_int_equal(check(CL(.scope = "[\"api offline_access\"]")), SCOPE);
        assert_int_equal(check(CL(.scope = "[]")), SCOPE);
        assert_int_equal(check(CL(.scope = OMIT)), SCOPE);
        /* space-delimited string (other OIDC providers) */
        assert_int_equal(check(CL(.scope = "\"api offline_access\"")), 0);
        assert_int_equal(check(CL(.scope = "\"offline_access api\"")), 0);
        assert_int_equal(check(CL(.scope = "\"api\"")), 0);
        assert_int_equal(check(CL(.scope = "\"apix offline_access\"")), SCOPE);
        assert_int_equal(check(CL(.scope = "\"xapi\"")), SCOPE);
        assert_int_equal(check(CL(.scope = "\"\"")), SCOPE);
        /* Bitwarden's exact behaviour (spec 3.3) when asked for */
        strict.scope_array_only = true;
        assert_int_equal(check_with(CL(.scope = "\"api offline_access\""), &strict, &p), SCOPE);
        assert_int_equal(check_with(CL(.scope = "\"api\""), &strict, &p), 0);
        assert_int_equal(check_with(CL(.scope = "[\"api\",\"x\"]"), &strict, &p), 0);
        /* wrong types */
        assert_int_equal(check(CL(.scope = "1")), INVALID);
        assert_int_equal(check(CL(.scope = "[\"api\",1]")), INVALID);
        assert_int_equal(check(CL(.scope = "{\"api\":true}")), INVALID);
}

static void test_claims_amr(void **state) {
        (void) state;
        assert_int_equal(check(CL(.amr = "[\"external\"]")), 0);
        assert_int_equal(check(CL(.amr = "[\"pwd\",\"Application\"]")), 0);
        assert_int_equal(check(CL(.amr = "\"external\"")), 0);
        assert_int_equal(check(CL(.amr = "\"Application\"")), 0);
        assert_int_equal(check(CL(.amr = "\"Application external\"")), SCOPE);
        assert_int_equal(check(CL(.amr = "[\"application\"]")), SCOPE);
        assert_int_equal(check(CL(.amr = "[\"pwd\"]")), SCOPE);
        assert_int_equal(check(CL(.amr = OMIT)), SCOPE);
        assert_int_equal(check(CL(.amr = "true")), INVALID);
}

static void test_claims_subject(void **state) {
        struct kh_principal p;
        (void) state;

        assert_int_equal(check(CL(.sub = OMIT)), SUBJECT);
        assert_int_equal(check(CL(.sub = "\"not-a-guid\"")), SUBJECT);
        assert_int_equal(check(CL(.sub = "\"0a1b2c3d4e5f60718293a4b5c6d7e8f9\"")), SUBJECT);
        assert_int_equal(check(CL(.sub = "\"{0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9}\"")), SUBJECT);
        assert_int_equal(check(CL(.sub = "\"\"")), SUBJECT);
        assert_int_equal(check(CL(.sub = "12")), INVALID);
        assert_int_equal(check_with(CL(.sub = "\"0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9\""),
                                    &default_policy, &p), 0);
        assert_string_equal(p.sub, TEST_SUB_CANON);
}

static void test_claims_order(void **state) {
        (void) state;
        /* 401 before 403, scope before sub */
        assert_int_equal(check(CL(.iss = "\"x\"", .scope = OMIT, .sub = OMIT)), INVALID);
        assert_int_equal(check(CL(.exp = "1", .amr = OMIT)), INVALID);
        assert_int_equal(check(CL(.scope = OMIT, .sub = "\"x\"")), SCOPE);
        assert_int_equal(check(CL(.amr = "[\"pwd\"]", .sub = OMIT)), SCOPE);
        /* a type error anywhere is 401 even if scope is missing */
        assert_int_equal(check(CL(.scope = OMIT, .sub = "1")), INVALID);
}

static void test_claims_admin_role(void **state) {
        struct kh_claims_policy pol = default_policy;
        struct kh_principal p;
        (void) state;

        pol.admins = &roles_admin;
        pol.n_admins = 1;
        assert_int_equal(check_with(CL(.roles = "[\"keyhold-admin\"]"), &pol, &p), 0);
        assert_true(p.admin);
        assert_int_equal(check_with(CL(.roles = "\"keyhold-admin\""), &pol, &p), 0);
        assert_true(p.admin);
        assert_int_equal(check_with(CL(.roles = "[\"user\"]"), &pol, &p), 0);
        assert_false(p.admin);
        assert_int_equal(check_with(CL(), &pol, &p), 0);
        assert_false(p.admin);
        assert_int_equal(check_with(CL(.roles = "[\"keyhold-admin\"]"), &default_policy, &p), 0);
        assert_false(p.admin);
        assert_int_equal(check_with(CL(.roles = "[1]"), &pol, &p), INVALID);
}

/* CLAIM:VALUE matchers on any claim: one match is enough; a named claim of the wrong type
 * makes the token invalid, as the checked claims do. */
static void test_claims_admin_matchers(void **state) {
        static const struct kh_claim_matcher m[] = {
                { "groups", "security" }, { "sub", TEST_SUB_CANON }, { "tid", "t1" },
        };
        struct kh_claims_policy pol = default_policy;
        struct kh_principal p;
        (void) state;

        pol.admins = m;
        pol.n_admins = 3;
        assert_int_equal(check_with(CL(.extra = "\"groups\":[\"dev\",\"security\"]"), &pol, &p), 0);
        assert_true(p.admin);
        assert_int_equal(check_with(CL(.extra = "\"groups\":[\"dev\"]"), &pol, &p), 0);
        assert_false(p.admin);
        assert_int_equal(check_with(CL(.extra = "\"tid\":\"t1\""), &pol, &p), 0);
        assert_true(p.admin);
        assert_int_equal(check_with(CL(.extra = "\"tid\":\"T1\""), &pol, &p), 0);
        assert_false(p.admin);                  /* exact, case-sensitive */
        assert_int_equal(check_with(CL(.sub = "\"" TEST_SUB_CANON "\""), &pol, &p), 0);
        assert_true(p.admin);
        assert_int_equal(check_with(CL(.extra = "\"groups\":{\"a\":1}"), &pol, &p), INVALID);
        assert_int_equal(check_with(CL(.extra = "\"tid\":7"), &pol, &p), INVALID);
        pol.n_admins = 0;
        assert_int_equal(check_with(CL(.extra = "\"tid\":7"), &pol, &p), 0);  /* not named */
        assert_false(p.admin);
}

/* An admin token needs none of the member claims: no scope, no amr, any printable sub. It
 * is valid (0), no member's (the refusal says why), admin when a matcher holds, and its sub
 * is kept as sent for the audit log; a sub that cannot name an actor makes nobody admin. */
static void test_claims_admin_token_without_member_claims(void **state) {
        static const struct kh_claim_matcher m[] = { { "groups", "security" } };
        struct kh_claims_policy pol = default_policy;
        struct kh_principal p;
        char long_sub[80];
        (void) state;

        pol.admins = m;
        pol.n_admins = 1;
        assert_int_equal(check_raw(CL(.scope = OMIT, .amr = OMIT, .sub = "\"alice@corp\"",
                                      .extra = "\"groups\":\"security\""), &pol, &p), 0);
        assert_int_equal(p.member_refusal, SCOPE);
        assert_true(p.admin);
        assert_string_equal(p.sub, "alice@corp");
        /* scope and amr right, sub not a GUID: no member either, still an admin */
        assert_int_equal(check_raw(CL(.sub = "\"alice@corp\"", .extra = "\"groups\":\"security\""),
                                   &pol, &p), 0);
        assert_int_equal(p.member_refusal, SUBJECT);
        assert_true(p.admin);
        /* a member who is also an admin: both */
        assert_int_equal(check_raw(CL(.extra = "\"groups\":\"security\""), &pol, &p), 0);
        assert_int_equal(p.member_refusal, 0);
        assert_true(p.admin);
        assert_string_equal(p.sub, TEST_SUB_CANON);
        /* no usable sub: nobody to name in the audit log, so no admin */
        assert_int_equal(check_raw(CL(.sub = OMIT, .extra = "\"groups\":\"security\""), &pol, &p), 0);
        assert_false(p.admin);
        assert_string_equal(p.sub, "");
        assert_int_equal(check_raw(CL(.sub = "\"a\\u0001b\"", .extra = "\"groups\":\"security\""),
                                   &pol, &p), 0);
        assert_false(p.admin);
        snprintf(long_sub, sizeof(long_sub), "\"%064d\"", 0);      /* 64 bytes: one too many */
        assert_int_equal(check_raw(CL(.sub = long_sub, .extra = "\"groups\":\"security\""), &pol, &p), 0);
        assert_false(p.admin);
        snprintf(long_sub, sizeof(long_sub), "\"%063d\"", 0);      /* 63: the most */
        assert_int_equal(check_raw(CL(.sub = long_sub, .extra = "\"groups\":\"security\""), &pol, &p), 0);
        assert_true(p.admin);
        /* still a valid token first: an expired admin token is 401 */
        assert_int_equal(check_raw(CL(.exp = "1", .scope = OMIT, .extra = "\"groups\":\"security\""),
                                   &pol, &p), INVALID);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sign_roundtrip_all_algs),
                cmocka_unit_test(test_claims_admin_token_without_member_claims),
                cmocka_unit_test(test_independently_signed_tokens_verify),
                cmocka_unit_test(test_no_kid_is_null),
                cmocka_unit_test(test_alg_none_in_any_spelling_refused),
                cmocka_unit_test(test_hs256_with_public_key_as_secret_refused),
                cmocka_unit_test(test_other_algs_refused),
                cmocka_unit_test(test_key_carrying_headers_and_crit_refused),
                cmocka_unit_test(test_malformed_structure_refused),
                cmocka_unit_test(test_length_limits),
                cmocka_unit_test(test_non_object_json_refused),
                cmocka_unit_test(test_tampered_signature_or_payload_fails),
                cmocka_unit_test(test_wrong_key_type_or_other_key_fails),
                cmocka_unit_test(test_small_rsa_key_refused),
                cmocka_unit_test(test_es256_p384_key_refused),
                cmocka_unit_test(test_es256_degenerate_signatures_refused),
                cmocka_unit_test(test_es256_wrong_length_or_der_refused),
                cmocka_unit_test(test_rsa_signature_length_must_match_modulus),
                cmocka_unit_test(test_claims_baseline_and_principal),
                cmocka_unit_test(test_claims_issuer),
                cmocka_unit_test(test_claims_lifetime_boundaries),
                cmocka_unit_test(test_claims_lifetime_types),
                cmocka_unit_test(test_claims_lifetime_cap),
                cmocka_unit_test(test_claims_audience),
                cmocka_unit_test(test_claims_scope),
                cmocka_unit_test(test_claims_amr),
                cmocka_unit_test(test_claims_subject),
                cmocka_unit_test(test_claims_order),
                cmocka_unit_test(test_claims_iat_in_the_future),
                cmocka_unit_test(test_claims_admin_role),
                cmocka_unit_test(test_claims_admin_matchers),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
