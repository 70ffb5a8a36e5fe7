/* Key Connector's stored Keys (ciphertext || tag || nonce, AES-256-GCM, no AAD) and the
 * operator's data-key file. The vector is the spec's (key-connector-storage.md section 3),
 * computed independently of this code. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/errors.h"
#include "crypto/encoding.h"
#include "crypto/kc-blob.h"

#include "../kc-test-data.h"

static const char spec_key_b64[] =
        "plk+bgGORPgqLM2YSzeOkSD9C0PG4hQ7xFd83SP2K14zwby0+3QQrdPoXhVroI5UoKGio6Slpqeoqaqr";

static struct kh_secret *data_key(uint8_t first) {
        struct kh_secret *s = NULL;
        uint8_t dk[32];

        for (unsigned i = 0; i < 32; i++)
                dk[i] = (uint8_t) (first + i);
        assert_int_equal(kh_secret_new_from(dk, sizeof(dk), &s), 0);
        return s;
}

static void spec_blob(struct kh_buf *b) {
        kh_buf_init(b, 1024, false);
        assert_int_equal(kh_base64_decode(spec_key_b64, strlen(spec_key_b64), b), 0);
        assert_int_equal(b->len, 60);
}

static void test_kc_blob_open_spec_vector(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk = data_key(0x00), *pt = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;
        uint8_t want[32];

        spec_blob(&b);
        /* the layout puts the nonce a0 .. ab last */
        for (unsigned i = 0; i < 12; i++)
                assert_int_equal(b.data[48 + i], 0xa0 + i);
        for (unsigned i = 0; i < 32; i++)
                want[i] = (uint8_t) (0x40 + i);

        assert_int_equal(kh_kc_blob_open(dk, b.data, b.len, &pt), 0);
        assert_int_equal(kh_secret_len(pt), 32);
        assert_memory_equal(kh_secret_bytes(pt), want, 32);
}

static void test_kc_blob_open_rejects_every_flipped_byte(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk = data_key(0x00);
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;

        spec_blob(&b);
        /* ciphertext, tag and nonce regions alike */
        for (size_t i = 0; i < b.len; i++) {
                struct kh_secret *pt = NULL;

                b.data[i] ^= 0x01;
                assert_int_equal(kh_kc_blob_open(dk, b.data, b.len, &pt), -KH_E_KC_DECRYPT);
                assert_null(pt);
                b.data[i] ^= 0x01;
        }
}

static void test_kc_blob_open_rejects_other_data_key(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk = data_key(0x01);
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;
        struct kh_secret *pt = NULL;

        spec_blob(&b);
        assert_int_equal(kh_kc_blob_open(dk, b.data, b.len, &pt), -KH_E_KC_DECRYPT);
        assert_null(pt);
}

static void test_kc_blob_open_rejects_short_blobs(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk = data_key(0x00);
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;
        struct kh_secret *pt = NULL;

        spec_blob(&b);
        /* 28 bytes is tag and nonce with nothing to decrypt; the spec's blob's last 28 */
        assert_int_equal(kh_kc_blob_open(dk, b.data + 32, 28, &pt), -KH_E_KC_BLOB_SHORT);
        assert_int_equal(kh_kc_blob_open(dk, b.data, 27, &pt), -KH_E_KC_BLOB_SHORT);
        assert_int_equal(kh_kc_blob_open(dk, b.data, 0, &pt), -KH_E_KC_BLOB_SHORT);
        /* one byte of ciphertext: long enough, and then the tag decides */
        assert_int_equal(kh_kc_blob_open(dk, b.data + 31, 29, &pt), -KH_E_KC_DECRYPT);
        assert_null(pt);
}

static void test_kc_blob_open_rejects_bad_data_key_length(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;
        struct kh_secret *pt = NULL;
        uint8_t k[33] = {0};

        spec_blob(&b);
        assert_int_equal(kh_secret_new_from(k, 31, &dk), 0);
        assert_int_equal(kh_kc_blob_open(dk, b.data, b.len, &pt), -EINVAL);
        dk = kh_secret_free(dk);
        assert_int_equal(kh_secret_new_from(k, 33, &dk), 0);
        assert_int_equal(kh_kc_blob_open(dk, b.data, b.len, &pt), -EINVAL);
        assert_int_equal(kh_kc_blob_open(NULL, b.data, b.len, &pt), -EINVAL);
        assert_null(pt);
}

/* base64 of 00 .. 1f */
static const char dk_b64[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

static int decode(const char *p, size_t n, struct kh_secret **ret) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *content = NULL;

        assert_int_equal(kh_secret_new_from(p, n, &content), 0);
        return kh_kc_data_key_decode(content, ret);
}

static void test_kc_data_key_decode_accepts_raw_and_base64(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *a = NULL, *b = NULL, *c = NULL;
        char line[64];
        uint8_t raw[32];

        kc_test_data_key(raw);
        raw[10] = '\n'; /* raw bytes are any bytes */
        assert_int_equal(decode((const char *) raw, 32, &a), 0);
        assert_int_equal(kh_secret_len(a), 32);
        assert_memory_equal(kh_secret_bytes(a), raw, 32);

        kc_test_data_key(raw);
        assert_int_equal(decode(dk_b64, 44, &b), 0);
        assert_int_equal(kh_secret_len(b), 32);
        assert_memory_equal(kh_secret_bytes(b), raw, 32);

        assert_int_equal(snprintf(line, sizeof(line), "%s\n", dk_b64), 45);
        assert_int_equal(decode(line, 45, &c), 0);
        assert_memory_equal(kh_secret_bytes(c), raw, 32);
}

static void test_kc_data_key_decode_rejects_the_rest(void **state) {
        (void) state;
        /* base64 of 31 bytes is 44 characters too */
        static const char b64_31[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==";
        static const char *const bad[] = {
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n",
                " AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= ",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=X",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=", /* non-zero trailing bits */
                b64_31,
                "0123456789012345678901234567890",   /* 31 raw */
                "012345678901234567890123456789012", /* 33 raw */
        };
        struct kh_secret *s = NULL;

        for (size_t i = 0; i < KH_ELEMENTSOF(bad); i++)
                assert_int_equal(decode(bad[i], strlen(bad[i]), &s), -KH_E_KC_DATA_KEY_FILE);
        assert_null(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_kc_blob_open_spec_vector),
                cmocka_unit_test(test_kc_blob_open_rejects_every_flipped_byte),
                cmocka_unit_test(test_kc_blob_open_rejects_other_data_key),
                cmocka_unit_test(test_kc_blob_open_rejects_short_blobs),
                cmocka_unit_test(test_kc_blob_open_rejects_bad_data_key_length),
                cmocka_unit_test(test_kc_data_key_decode_accepts_raw_and_base64),
                cmocka_unit_test(test_kc_data_key_decode_rejects_the_rest),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
