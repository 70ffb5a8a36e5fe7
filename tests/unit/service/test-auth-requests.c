/* The pure parts of login requests: the fingerprint phrase (spec/trusted-devices.md section 5
 * vectors), EncString type-4 checks, SPKI decoding, and the server-side encryption to a
 * request's public key (decrypted back here with the private key). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/x509.h>

#include "common/errors.h"
#include "crypto/encoding.h"
#include "crypto/rsa.h"
#include "service/auth-requests.h"
#include "service/fingerprint.h"

#define SDK_SPKI "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuyYs8W7NWf0Zv35Ueco93730dtRKi4Jhc6Snar+86drE+ruSfaCWMcbgsAoAj2Pm6KAzaJrTIVCqBERQ23OncpzjfcGAeyf+v3w/gSw/EjihMJ4AG5ICY4hLFYcGdgwa+7is+TVO0i6PEWjKQa3l2+mQo2XY7pg2ngHDMssV4gxSqq+qoBX3+FBhewCYdOV+3cebwsAzz7HwoFTxKViwNW8crbHonhZPhZgfIAzEkzo5MvzQg5azhLKW6vuPfaOQFC5HqPykVnh8OPzO0uzUi3+97CguAu4N2CgwVYXltZuw2fGamdVw3kjbxQPbOE1tL0j7gyTwYKkfUl2m8gMh1QIDAQAB"
#define V5_SPKI "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAl0Vawl/toXzkEvB82FEtqHP4xlU2ab/v0crqIfXfIoWF/XXdHGIdrZeilnRXPPJT1B9dTsasttEZNnua/0Rek/cjNDHtzT52irfoZYS7X6HNIfOi54Q+egPRQ1H7iNHVZz3K8Db9GCSKPeC8MbW6gVCzb15esCe1gGzg6wkMuWYDFYPoh/oBqcIqrGah7firqB1nDedzEjw32heP2DAffVN084iTDjiWrJNUxBJ2pDD5Z9dT3MzQ2s09ew1yMWK2z37rT3YerC7OgEDmo3WYo3xL3qYJznu3EO2nmrYjiRa40wKSjxsTlUcxDF+F0uMW8oR9EMUHgepdepfAtLsSAQIDAQAB"
#define V5_TYPE4 "4.DMD1D5r6BsDDd7C/FE1eZbMCKrmryvAsCKj6+bO54gJNUxisOI7SDcpPLRXf+JdhqY15pT+wimQ5cD9C+6OQ6s71LFQHewXPU29l9Pa1JxGeiKqp37KLYf+1IS6UB2K3ANN35C52ZUHh2TlzIS5RuntxnpCw7APbcfpcnmIdLPJBtuj/xbFd6eBwnI3GSe5qdS6/Ixdd0dgsZcpz3gHJBKmIlSo0YN60SweDq3kTJwox9xSqdCueIDg5U4khc7RhjYx8b33HXaNJj3DwgIH8iLj+lqpDekogr630OhHG3XRpvl4QzYO45bmHb8wAh67Dj70nsZcVg6bAEFHdSFohww=="

static void phrase_of(const char *material, const char *b64, char out[KH_FINGERPRINT_MAX]) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf spki;

        kh_buf_init(&spki, 4096, false);
        assert_int_equal(kh_auth_request_spki_decode(b64, strlen(b64), &spki), 0);
        assert_int_equal(kh_fingerprint_phrase(material, spki.data, spki.len, out), 0);
}

static void test_fingerprint_vectors(void **state) {
        char out[KH_FINGERPRINT_MAX];
        (void) state;

        phrase_of("a09726a0-9590-49d1-a5f5-afe300b6a515", SDK_SPKI, out);
        assert_string_equal(out, "turban-deftly-anime-chatroom-unselfish");
        phrase_of("user@example.com", V5_SPKI, out);
        assert_string_equal(out, "imprudent-paramount-tidal-protector-reptile");
        assert_int_equal(kh_fingerprint_phrase("x", (const uint8_t *) "", 0, out), -EINVAL);
}

static void test_type4_key_check(void **state) {
        char type3[sizeof(V5_TYPE4)];
        (void) state;

        memcpy(type3, V5_TYPE4, sizeof(type3));
        type3[0] = '3';
        assert_true(kh_auth_request_key_is_valid(V5_TYPE4, strlen(V5_TYPE4), false));
        assert_false(kh_auth_request_key_is_valid(type3, strlen(type3), false));
        assert_true(kh_auth_request_key_is_valid(type3, strlen(type3), true));
        assert_false(kh_auth_request_key_is_valid("4.AAAA", 6, false));
        assert_false(kh_auth_request_key_is_valid("2.AAAA|AAAA|AAAA", 16, true));
        assert_false(kh_auth_request_key_is_valid(V5_TYPE4 "|AA==", strlen(V5_TYPE4) + 5, false));
        assert_false(kh_auth_request_key_is_valid(V5_TYPE4, strlen(V5_TYPE4) - 1, false));
}

static void test_spki_decode_refuses_others(void **state) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf spki;
        (void) state;

        kh_buf_init(&spki, 4096, false);
        assert_int_equal(kh_auth_request_spki_decode("AAAA", 4, &spki), -KH_E_INVALID_PUBLIC_KEY);
        assert_int_equal(kh_auth_request_spki_decode("not base64", 10, &spki), -KH_E_INVALID_PUBLIC_KEY);
        assert_int_equal(kh_auth_request_spki_decode(V5_SPKI, strlen(V5_SPKI) - 4, &spki),
                         -KH_E_INVALID_PUBLIC_KEY);
        assert_int_equal(kh_auth_request_spki_decode(V5_SPKI, strlen(V5_SPKI), &spki), 0);
        assert_int_equal(spki.len, 294);
}

static void test_oaep_sha1_to_spki_round_trip(void **state) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = NULL, *back = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf ct;
        unsigned char *der = NULL;
        uint8_t msg[64];
        int n;
        (void) state;

        for (size_t i = 0; i < sizeof(msg); i++)
                msg[i] = (uint8_t) i;
        assert_int_equal(kh_rsa_generate(2048, &key), 0);
        n = i2d_PUBKEY(key, &der);
        assert_true(n > 0);
        assert_int_equal(kh_secret_new_from(msg, sizeof(msg), &pt), 0);
        kh_buf_init(&ct, 4096, false);
        assert_int_equal(kh_rsa_oaep_encrypt_spki(der, (size_t) n, KH_OAEP_SHA1, pt, &ct), 0);
        assert_int_equal(ct.len, 256);
        assert_int_equal(kh_rsa_oaep_decrypt_md(key, KH_OAEP_SHA1, ct.data, ct.len, &back), 0);
        assert_true(kh_secret_equal(pt, back));
        /* SHA-256 OAEP does not open it: the digest really is SHA-1 */
        kh_secret_free(back);
        back = NULL;
        assert_int_equal(kh_rsa_oaep_decrypt_md(key, KH_OAEP_SHA256, ct.data, ct.len, &back),
                         -KH_E_INTEGRITY);
        assert_int_equal(kh_rsa_oaep_encrypt_spki(der, (size_t) n - 1, KH_OAEP_SHA1, pt, &ct), -EINVAL);
        OPENSSL_free(der);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fingerprint_vectors),
                cmocka_unit_test(test_type4_key_check),
                cmocka_unit_test(test_spki_decode_refuses_others),
                cmocka_unit_test(test_oaep_sha1_to_spki_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
