#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/errors.h"
#include "common/limits.h"
#include "token/jwks.h"
#include "token/jwt-sign.h"
#include "token-test.h"

static EVP_PKEY *rsa, *rsa1024, *ec, *ed, *p384;

static int setup(void **state) {
        (void) state;
        rsa = test_key("RSA");
        rsa1024 = test_key("RSA1024");
        ec = test_key("EC");
        ed = test_key("ED25519");
        p384 = test_key("P-384");
        return 0;
}

static int teardown(void **state) {
        (void) state;
        EVP_PKEY_free(rsa);
        EVP_PKEY_free(rsa1024);
        EVP_PKEY_free(ec);
        EVP_PKEY_free(ed);
        EVP_PKEY_free(p384);
        return 0;
}

static int parse(const char *json, struct kh_jwks **ret) {
        return kh_jwks_parse(json, strlen(json), ret);
}

/* JWK members written here from OpenSSL's own accessors (independent of jwt-sign.c). */
static char *rsa_jwk(EVP_PKEY *k, const char *extra) {
        char *n = test_bn_b64url(k, OSSL_PKEY_PARAM_RSA_N, 0);
        char *e = test_bn_b64url(k, OSSL_PKEY_PARAM_RSA_E, 0);
        size_t len = strlen(n) + strlen(e) + strlen(extra) + 64;
        char *s = malloc(len);

        snprintf(s, len, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s}", n, e, extra);
        free(n);
        free(e);
        return s;
}

static char *ec_jwk(EVP_PKEY *k, const char *extra) {
        char *x = test_bn_b64url(k, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        char *y = test_bn_b64url(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        size_t len = strlen(x) + strlen(y) + strlen(extra) + 64;
        char *s = malloc(len);

        snprintf(s, len, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"%s}", x, y,
                 extra);
        free(x);
        free(y);
        return s;
}

static char *ed_jwk(EVP_PKEY *k, const char *extra) {
        unsigned char raw[32];
        size_t n = sizeof(raw);
        char *x, *s;

        assert_int_equal(EVP_PKEY_get_raw_public_key(k, raw, &n), 1);
        x = test_b64url(raw, n);
        s = malloc(strlen(x) + strlen(extra) + 64);
        sprintf(s, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"%s}", x, extra);
        free(x);
        return s;
}

/* {"keys":[a,b,...]} from NULL-terminated JWK strings, which are freed. */
static char *jwks_of(char *first, ...) {
        char *doc = strdup("{\"keys\":[");
        va_list ap;

        va_start(ap, first);
        for (char *k = first; k; k = va_arg(ap, char *)) {
                size_t n = strlen(doc) + strlen(k) + 2;
                doc = realloc(doc, n);
                if (doc[strlen(doc) - 1] != '[')
                        strcat(doc, ",");
                strcat(doc, k);
                free(k);
        }
        va_end(ap);
        doc = realloc(doc, strlen(doc) + 3);
        strcat(doc, "]}");
        return doc;
}

static void test_parses_each_key_type_and_finds_the_same_key(void **state) {
        char *doc = jwks_of(rsa_jwk(rsa, ",\"kid\":\"r\",\"use\":\"sig\",\"alg\":\"RS256\""),
                            ec_jwk(ec, ",\"kid\":\"e\""), ed_jwk(ed, ",\"kid\":\"d\""), NULL);
        struct kh_jwks *j = NULL;
        (void) state;

        assert_int_equal(parse(doc, &j), 0);
        assert_int_equal(kh_jwks_count(j), 3);
        assert_int_equal(EVP_PKEY_eq(kh_jwks_find(j, "r", KH_JWT_ALG_RS256), rsa), 1);
        assert_int_equal(EVP_PKEY_eq(kh_jwks_find(j, "e", KH_JWT_ALG_ES256), ec), 1);
        assert_int_equal(EVP_PKEY_eq(kh_jwks_find(j, "d", KH_JWT_ALG_EDDSA), ed), 1);
        /* the RSA key says alg RS256: not usable for PS256 */
        assert_null(kh_jwks_find(j, "r", KH_JWT_ALG_PS256));
        /* kid matches, key type does not */
        assert_null(kh_jwks_find(j, "e", KH_JWT_ALG_RS256));
        assert_null(kh_jwks_find(j, "d", KH_JWT_ALG_ES256));
        assert_null(kh_jwks_find(j, "x", KH_JWT_ALG_ES256));
        assert_null(kh_jwks_find(j, "R", KH_JWT_ALG_RS256));
        assert_null(kh_jwks_find(j, "r", KH_JWT_ALG_NONE));
        /* no kid: the one key that fits */
        assert_ptr_equal(kh_jwks_find(j, NULL, KH_JWT_ALG_ES256),
                         kh_jwks_find(j, "e", KH_JWT_ALG_ES256));
        assert_ptr_equal(kh_jwks_find(j, NULL, KH_JWT_ALG_RS256),
                         kh_jwks_find(j, "r", KH_JWT_ALG_RS256));
        assert_null(kh_jwks_find(j, NULL, KH_JWT_ALG_PS256));
        kh_jwks_free(j);
        free(doc);
}

static void test_no_kid_ambiguous_is_null(void **state) {
        EVP_PKEY *ec2 = test_key("EC");
        char *doc = jwks_of(ec_jwk(ec, ",\"kid\":\"a\""), ec_jwk(ec2, ",\"kid\":\"b\""), NULL);
        struct kh_jwks *j = NULL;
        (void) state;

        assert_int_equal(parse(doc, &j), 0);
        assert_int_equal(kh_jwks_count(j), 2);
        assert_null(kh_jwks_find(j, NULL, KH_JWT_ALG_ES256));
        assert_int_equal(EVP_PKEY_eq(kh_jwks_find(j, "b", KH_JWT_ALG_ES256), ec2), 1);
        kh_jwks_free(j);
        free(doc);
        EVP_PKEY_free(ec2);
}

static void test_duplicate_kid_first_fitting_wins(void **state) {
        char *doc = jwks_of(ed_jwk(ed, ",\"kid\":\"k\""), ec_jwk(ec, ",\"kid\":\"k\""), NULL);
        struct kh_jwks *j = NULL;
        (void) state;

        assert_int_equal(parse(doc, &j), 0);
        assert_int_equal(EVP_PKEY_eq(kh_jwks_find(j, "k", KH_JWT_ALG_ES256), ec), 1);
        assert_int_equal(EVP_PKEY_eq(kh_jwks_find(j, "k", KH_JWT_ALG_EDDSA), ed), 1);
        kh_jwks_free(j);
        free(doc);
}

static void test_unusable_keys_skipped(void **state) {
        char *x = test_bn_b64url(ec, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        char *y = test_bn_b64url(ec, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        char off_curve[256];
        char *doc;
        struct kh_jwks *j = NULL;
        (void) state;

        /* y changed near its end: (almost surely) not on the curve */
        y[strlen(y) - 2] = y[strlen(y) - 2] == 'A' ? 'B' : 'A';
        snprintf(off_curve, sizeof(off_curve),
                 "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"oc\",\"x\":\"%s\",\"y\":\"%s\"}",
                 x, y);
        doc = jwks_of(rsa_jwk(rsa, ",\"use\":\"enc\",\"kid\":\"1\""),
                      rsa_jwk(rsa, ",\"alg\":\"RSA-OAEP\",\"kid\":\"2\""),
                      rsa_jwk(rsa, ",\"alg\":\"ES256\",\"kid\":\"3\""),
                      rsa_jwk(rsa1024, ",\"kid\":\"4\""),
                      rsa_jwk(rsa, ",\"kid\":5"),
                      ec_jwk(p384, ",\"kid\":\"6\""),
                      strdup("{\"kty\":\"oct\",\"k\":\"AAAA\",\"kid\":\"7\"}"),
                      strdup("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}"),
                      strdup("{\"kty\":\"RSA\",\"n\":\"+/+/\",\"e\":\"AQAB\"}"),
                      strdup("{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AAAA\"}"),
                      strdup("{\"n\":\"AQAB\",\"e\":\"AQAB\"}"), strdup("\"key\""), strdup("7"),
                      strdup(off_curve),
                      rsa_jwk(rsa, ",\"use\":\"sig\",\"kid\":\"good\""), NULL);
        assert_int_equal(parse(doc, &j), 0);
        assert_int_equal(kh_jwks_count(j), 1);
        assert_non_null(kh_jwks_find(j, "good", KH_JWT_ALG_RS256));
        assert_non_null(kh_jwks_find(j, "good", KH_JWT_ALG_PS256));
        assert_null(kh_jwks_find(j, "oc", KH_JWT_ALG_ES256));
        kh_jwks_free(j);
        free(doc);
        free(x);
        free(y);
}

static void test_rsa_leading_zero_and_bad_exponent_skipped(void **state) {
        char *n = test_bn_b64url(rsa, OSSL_PKEY_PARAM_RSA_N, 257); /* leading zero byte */
        char doc[2048];
        struct kh_jwks *j = NULL;
        (void) state;

        snprintf(doc, sizeof(doc), "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}]}", n);
        assert_int_equal(parse(doc, &j), 0);
        assert_int_equal(kh_jwks_count(j), 0);
        kh_jwks_free(j);
        free(n);
        n = test_bn_b64url(rsa, OSSL_PKEY_PARAM_RSA_N, 0);
        snprintf(doc, sizeof(doc), "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQ\"}]}", n);
        assert_int_equal(parse(doc, &j), 0);
        assert_int_equal(kh_jwks_count(j), 0); /* e = 1 */
        kh_jwks_free(j);
        snprintf(doc, sizeof(doc), "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}]}", n);
        assert_int_equal(parse(doc, &j), 0);
        assert_int_equal(kh_jwks_count(j), 1); /* the control */
        kh_jwks_free(j);
        free(n);
}

static void test_documents_refused(void **state) {
        const char *docs[] = {
                "", "[]", "{}", "{\"keys\":{}}", "{\"keys\":null}", "{\"keys\":[]", "not json",
                "{\"keys\":[],\"keys\":[]}", "\"keys\"",
        };
        struct kh_jwks *j = (struct kh_jwks *) 0x1;
        char *big;
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(docs); i++)
                assert_int_equal(parse(docs[i], &j), -EINVAL);
        assert_ptr_equal(j, (struct kh_jwks *) 0x1);

        big = malloc(KH_JWKS_MAX + 2);
        memset(big, ' ', KH_JWKS_MAX + 1);
        memcpy(big, "{\"keys\":[]}", 11);
        big[KH_JWKS_MAX + 1] = 0;
        assert_int_equal(kh_jwks_parse(big, KH_JWKS_MAX + 1, &j), -EINVAL);
        assert_int_equal(kh_jwks_parse(big, KH_JWKS_MAX, &j), 0); /* trailing spaces are JSON */
        assert_int_equal(kh_jwks_count(j), 0);
        kh_jwks_free(j);
        free(big);
}

static void test_at_most_keys_max(void **state) {
        char *one = ed_jwk(ed, "");
        size_t n = KH_JWKS_KEYS_MAX + 6, len = 16 + n * (strlen(one) + 1);
        char *doc = malloc(len);
        struct kh_jwks *j = NULL;
        (void) state;

        strcpy(doc, "{\"keys\":[");
        for (size_t i = 0; i < n; i++) {
                strcat(doc, one);
                strcat(doc, i + 1 < n ? "," : "]}");
        }
        assert_int_equal(parse(doc, &j), 0);
        assert_int_equal(kh_jwks_count(j), KH_JWKS_KEYS_MAX);
        assert_null(kh_jwks_find(j, NULL, KH_JWT_ALG_EDDSA)); /* 64 candidates: ambiguous */
        kh_jwks_free(j);
        free(doc);
        free(one);
}

/* kh_jwk_public_json() output is read back by the parser and by an independent check of
 * its members. */
static void test_public_json_roundtrip(void **state) {
        struct {
                EVP_PKEY **key;
                enum kh_jwt_alg alg;
                const char *kty;
        } cases[] = {
                { &rsa, KH_JWT_ALG_RS256, "\"kty\":\"RSA\"" },
                { &rsa, KH_JWT_ALG_PS256, "\"kty\":\"RSA\"" },
                { &ec, KH_JWT_ALG_ES256, "\"kty\":\"EC\"" },
                { &ed, KH_JWT_ALG_EDDSA, "\"kty\":\"OKP\"" },
        };
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(cases); i++) {
                char *json = NULL;
                struct kh_jwks *j = NULL;

                assert_int_equal(
                        kh_jwk_public_json(*cases[i].key, "dev-1", cases[i].alg, &json), 0);
                assert_non_null(strstr(json, cases[i].kty));
                assert_non_null(strstr(json, "\"use\":\"sig\""));
                assert_null(strstr(json, "\"d\"")); /* never the private part */
                assert_int_equal(parse(json, &j), 0);
                assert_int_equal(kh_jwks_count(j), 1);
                assert_int_equal(
                        EVP_PKEY_eq(kh_jwks_find(j, "dev-1", cases[i].alg), *cases[i].key), 1);
                kh_jwks_free(j);
                free(json);
        }
        /* EC members equal OpenSSL's own encoding */
        {
                char *json = NULL, *x = test_bn_b64url(ec, OSSL_PKEY_PARAM_EC_PUB_X, 32);
                char want[128];

                assert_int_equal(kh_jwk_public_json(ec, NULL, KH_JWT_ALG_ES256, &json), 0);
                snprintf(want, sizeof(want), "\"x\":\"%s\"", x);
                assert_non_null(strstr(json, want));
                assert_null(strstr(json, "kid"));
                free(json);
                free(x);
        }
        {
                char *json = (char *) 0x1;
                assert_int_equal(kh_jwk_public_json(ec, "k", KH_JWT_ALG_RS256, &json), -EINVAL);
                assert_int_equal(kh_jwk_public_json(rsa1024, "k", KH_JWT_ALG_RS256, &json),
                                 -EINVAL);
                assert_ptr_equal(json, (char *) 0x1);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parses_each_key_type_and_finds_the_same_key),
                cmocka_unit_test(test_no_kid_ambiguous_is_null),
                cmocka_unit_test(test_duplicate_kid_first_fitting_wins),
                cmocka_unit_test(test_unusable_keys_skipped),
                cmocka_unit_test(test_rsa_leading_zero_and_bad_exponent_skipped),
                cmocka_unit_test(test_documents_refused),
                cmocka_unit_test(test_at_most_keys_max),
                cmocka_unit_test(test_public_json_roundtrip),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
