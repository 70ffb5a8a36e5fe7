#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/encoding.h"

#define MAX 4096

/* Decodes text with kh_base64_decode and checks it yields exactly want[0..n). */
static void check_decode(const char *text, const void *want, size_t n) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;

        kh_buf_init(&b, MAX, false);
        assert_int_equal(kh_base64_decode(text, strlen(text), &b), 0);
        assert_int_equal(b.len, n);
        if (n > 0)
                assert_memory_equal(b.data, want, n);
}

static void check_encode(const void *p, size_t n, const char *want) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;

        kh_buf_init(&b, MAX, false);
        assert_int_equal(kh_base64_encode(p, n, &b), 0);
        assert_int_equal(b.len, strlen(want));
        assert_memory_equal(b.data, want, b.len);
}

static void check_rejected(const char *text, size_t len) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;

        kh_buf_init(&b, MAX, false);
        assert_int_equal(kh_base64_decode(text, len, &b), -EINVAL);
        assert_int_equal(b.len, 0); /* nothing appended on failure */
}

static void check_url_rejected(const char *text) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;

        kh_buf_init(&b, MAX, false);
        assert_int_equal(kh_base64url_decode(text, strlen(text), &b), -EINVAL);
        assert_int_equal(b.len, 0);
}

static const struct {
        const char *plain, *b64, *b64url;
} rfc4648[] = {
        /* RFC 4648 section 10 */
        { "", "", "" },
        { "f", "Zg==", "Zg" },
        { "fo", "Zm8=", "Zm8" },
        { "foo", "Zm9v", "Zm9v" },
        { "foob", "Zm9vYg==", "Zm9vYg" },
        { "fooba", "Zm9vYmE=", "Zm9vYmE" },
        { "foobar", "Zm9vYmFy", "Zm9vYmFy" },
};

static void test_base64_rfc4648_vectors(void **state) {
        (void) state;
        for (size_t i = 0; i < KH_ELEMENTSOF(rfc4648); i++) {
                check_encode(rfc4648[i].plain, strlen(rfc4648[i].plain), rfc4648[i].b64);
                check_decode(rfc4648[i].b64, rfc4648[i].plain, strlen(rfc4648[i].plain));
        }
}

static void test_base64url_rfc4648_vectors(void **state) {
        (void) state;
        for (size_t i = 0; i < KH_ELEMENTSOF(rfc4648); i++) {
                KH_CLEANUP(kh_buf_freep) struct kh_buf e, d;
                const char *plain = rfc4648[i].plain;

                kh_buf_init(&e, MAX, false);
                kh_buf_init(&d, MAX, false);
                assert_int_equal(kh_base64url_encode((const uint8_t *) plain, strlen(plain), &e), 0);
                assert_int_equal(e.len, strlen(rfc4648[i].b64url));
                assert_memory_equal(e.data, rfc4648[i].b64url, e.len);
                assert_int_equal(kh_base64url_decode(rfc4648[i].b64url,
                                                     strlen(rfc4648[i].b64url), &d), 0);
                assert_int_equal(d.len, strlen(plain));
                assert_memory_equal(d.data, plain, d.len);
        }
}

/* sdk-internal key_connector_key.rs, spec/key-connector-api.md section 1 */
static const uint8_t bw_key[32] = {
        0x1f, 0x4f, 0x68, 0xe2, 0x96, 0x47, 0xb1, 0x5a, 0xc2, 0x50, 0xac, 0xd1, 0x11, 0x81, 0x84, 0x51,
        0x8a, 0xa7, 0x45, 0xa7, 0xfe, 0x95, 0x02, 0x1b, 0x27, 0xc5, 0x40, 0x2a, 0x16, 0xc3, 0x56, 0x4b,
};
#define BW_KEY_B64 "H09o4pZHsVrCUKzREYGEUYqnRaf+lQIbJ8VAKhbDVks="

static void test_base64_secret_bitwarden_vector(void **state) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *s = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;
        (void) state;

        assert_int_equal(kh_base64_decode_secret(BW_KEY_B64, strlen(BW_KEY_B64), 32, &s), 0);
        assert_int_equal(kh_secret_len(s), 32);
        assert_memory_equal(kh_secret_bytes(s), bw_key, 32);

        kh_buf_init(&b, MAX, true);
        assert_int_equal(kh_base64_encode_secret(s, &b), 0);
        assert_int_equal(b.len, 44);
        assert_memory_equal(b.data, BW_KEY_B64, 44);

        check_encode(bw_key, 32, BW_KEY_B64);
        check_decode(BW_KEY_B64, bw_key, 32);
}

static void test_base64_secret_rejects_other_lengths(void **state) {
        /* 31 and 33 bytes of 0x41 ('A'), from Python's base64.b64encode */
        const char b31[] = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQQ==";
        const char b33[] = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB";
        struct kh_secret *s = NULL;
        (void) state;

        assert_int_equal(kh_base64_decode_secret(b31, strlen(b31), 32, &s), -EINVAL);
        assert_null(s);
        assert_int_equal(kh_base64_decode_secret(b33, strlen(b33), 32, &s), -EINVAL);
        assert_null(s);
        /* the same texts are fine when their own length is asked for */
        assert_int_equal(kh_base64_decode_secret(b31, strlen(b31), 31, &s), 0);
        assert_int_equal(kh_secret_len(s), 31);
        assert_int_equal(kh_secret_bytes(s)[30], 'A');
        s = kh_secret_free(s);
        assert_int_equal(kh_base64_decode_secret(b33, strlen(b33), 33, &s), 0);
        assert_int_equal(kh_secret_len(s), 33);
        s = kh_secret_free(s);
        /* 45 characters, one too many; and want_len 0 */
        assert_int_equal(kh_base64_decode_secret(BW_KEY_B64 "=", 45, 32, &s), -EINVAL);
        assert_int_equal(kh_base64_decode_secret("", 0, 0, &s), -EINVAL);
        assert_null(s);
}

static void test_base64_secret_rejects_each_bad_character(void **state) {
        (void) state;
        /* Every position of the Bitwarden text, replaced by each byte value outside the
         * standard alphabet (except '=' where '=' belongs), must be rejected. */
        for (size_t pos = 0; pos < 44; pos++) {
                for (unsigned c = 0; c < 256; c++) {
                        struct kh_secret *s = NULL;
                        char t[45];
                        int r;

                        memcpy(t, BW_KEY_B64, 45);
                        if (c == (unsigned char) t[pos])
                                continue;
                        t[pos] = (char) c;
                        r = kh_base64_decode_secret(t, 44, 32, &s);
                        if (r == 0) {
                                /* only another alphabet character, before the padding,
                                 * whose low bits keep the trailing bits zero, is valid */
                                assert_true(pos < 43);
                                assert_true((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                            (c >= '0' && c <= '9') || c == '+' || c == '/');
                                s = kh_secret_free(s);
                        } else {
                                assert_int_equal(r, -EINVAL);
                                assert_null(s);
                        }
                        if (c == 0 || c == ' ' || c == '\n' || c == '-' || c == '_' ||
                            c == '=' || c >= 0x80)
                                assert_int_equal(r, -EINVAL);
                }
        }
}

static void test_base64_rejects_non_canonical(void **state) {
        (void) state;
        const uint8_t a = 'A';
        struct kh_secret *s = NULL;

        check_decode("QQ==", &a, 1);
        check_decode("QUE=", "AA", 2);
        check_rejected("QR==", 4);   /* non-zero trailing bits */
        check_rejected("QUF=", 4);   /* "AA" is QUE=; F leaves bits set */
        check_rejected("QQ=", 3);    /* missing padding */
        check_rejected("QQ", 2);
        check_rejected("QQ===", 5);  /* extra padding */
        check_rejected("QQ==QQ==", 8); /* padding in the middle */
        check_rejected("Q===", 4);
        check_rejected("====", 4);
        check_rejected("QQ=A", 4);
        check_rejected("Q=Q=", 4);
        check_rejected("Zm9v\n", 5); /* whitespace */
        check_rejected(" Zm9v", 5);
        check_rejected("Zm 9v", 5);
        check_rejected("Zm9\0", 4);  /* NUL */
        check_rejected("Zm9vYg=\0", 8);
        check_rejected("Z", 1);
        check_rejected("Zm9vY", 5);
        check_rejected("Zm-v", 4);   /* url alphabet in standard text */
        check_rejected("Zm_v", 4);
        assert_int_equal(kh_base64_decode_secret("QR==", 4, 1, &s), -EINVAL);
        assert_int_equal(kh_base64_decode_secret("QQ", 2, 1, &s), -EINVAL);
        assert_int_equal(kh_base64_decode_secret("QQ=\0", 4, 1, &s), -EINVAL);
        assert_null(s);
}

static void test_base64_alphabets_are_separate(void **state) {
        static const uint8_t p[] = { 0xfb, 0xff, 0xbf }; /* 111110 111111 111110 111111 */
        KH_CLEANUP(kh_buf_freep) struct kh_buf std, url, d;
        (void) state;

        kh_buf_init(&std, MAX, false);
        kh_buf_init(&url, MAX, false);
        kh_buf_init(&d, MAX, false);
        assert_int_equal(kh_base64_encode(p, 3, &std), 0);
        assert_string_equal((const char *) std.data, "+/+/");
        assert_int_equal(kh_base64url_encode(p, 3, &url), 0);
        assert_string_equal((const char *) url.data, "-_-_");

        assert_int_equal(kh_base64url_decode("-_-_", 4, &d), 0);
        assert_int_equal(d.len, 3);
        assert_memory_equal(d.data, p, 3);
        check_url_rejected("+/+/");
        check_url_rejected("-_-/");
        check_rejected("-_-_", 4);
        check_rejected("+/+_", 4);
        check_decode("+/+/", p, 3);
}

static void test_base64url_rejects_non_canonical(void **state) {
        (void) state;
        check_url_rejected("Zg==");  /* no padding in base64url */
        check_url_rejected("Zg=");
        check_url_rejected("Zh");    /* trailing bits */
        check_url_rejected("Zm9");   /* Zm8 is "fo"; 9 leaves bits set */
        check_url_rejected("Z");     /* a length no encoding has */
        check_url_rejected("Zm9vY");
        check_url_rejected("Zm 9v");
        check_url_rejected("Zm9v\n");
}

static void test_base64_round_trips_all_lengths(void **state) {
        uint8_t p[300];
        (void) state;

        for (size_t i = 0; i < sizeof(p); i++)
                p[i] = (uint8_t) (i * 167 + 13);
        for (size_t n = 0; n <= sizeof(p); n++) {
                KH_CLEANUP(kh_buf_freep) struct kh_buf e, d, ue, ud;

                kh_buf_init(&e, MAX, false);
                kh_buf_init(&d, MAX, false);
                kh_buf_init(&ue, MAX, false);
                kh_buf_init(&ud, MAX, false);
                assert_int_equal(kh_base64_encode(p, n, &e), 0);
                assert_int_equal(e.len, (n + 2) / 3 * 4);
                assert_int_equal(kh_base64_decode((const char *) e.data, e.len, &d), 0);
                assert_int_equal(d.len, n);
                if (n)
                        assert_memory_equal(d.data, p, n);
                assert_int_equal(kh_base64url_encode(p, n, &ue), 0);
                assert_int_equal(ue.len, (n * 4 + 2) / 3);
                assert_int_equal(kh_base64url_decode((const char *) ue.data, ue.len, &ud), 0);
                assert_int_equal(ud.len, n);
                if (n)
                        assert_memory_equal(ud.data, p, n);
                if (n > 0) {
                        KH_CLEANUP(kh_secret_freep) struct kh_secret *s = NULL;
                        KH_CLEANUP(kh_buf_freep) struct kh_buf se;

                        kh_buf_init(&se, MAX, true);
                        assert_int_equal(kh_base64_decode_secret((const char *) e.data, e.len,
                                                                 n, &s), 0);
                        assert_memory_equal(kh_secret_bytes(s), p, n);
                        assert_int_equal(kh_base64_encode_secret(s, &se), 0);
                        assert_int_equal(se.len, e.len);
                        assert_memory_equal(se.data, e.data, e.len);
                }
        }
}

static void test_base64_respects_buffer_maximum(void **state) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;
        (void) state;

        kh_buf_init(&b, 7, false);
        assert_int_equal(kh_base64_encode((const uint8_t *) "foob", 4, &b), -E2BIG);
        assert_int_equal(b.len, 0);
        assert_int_equal(kh_base64_decode("Zm9vYmFy", 8, &b), 0);
        assert_int_equal(kh_base64_decode("Zm9v", 4, &b), -E2BIG);
        assert_int_equal(b.len, 6);
        assert_memory_equal(b.data, "foobar", 6);
}

static void test_hex_encode(void **state) {
        static const uint8_t p[] = { 0x00, 0x09, 0x0a, 0x0f, 0x10, 0x9f, 0xa0, 0xff, 0x5c };
        char out[2 * sizeof(p) + 1];
        (void) state;

        memset(out, 'x', sizeof(out));
        kh_hex_encode(p, sizeof(p), out);
        assert_string_equal(out, "00090a0f109fa0ff5c");
        kh_hex_encode(p, 0, out);
        assert_string_equal(out, "");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_base64_rfc4648_vectors),
                cmocka_unit_test(test_base64url_rfc4648_vectors),
                cmocka_unit_test(test_base64_secret_bitwarden_vector),
                cmocka_unit_test(test_base64_secret_rejects_other_lengths),
                cmocka_unit_test(test_base64_secret_rejects_each_bad_character),
                cmocka_unit_test(test_base64_rejects_non_canonical),
                cmocka_unit_test(test_base64_alphabets_are_separate),
                cmocka_unit_test(test_base64url_rejects_non_canonical),
                cmocka_unit_test(test_base64_round_trips_all_lengths),
                cmocka_unit_test(test_base64_respects_buffer_maximum),
                cmocka_unit_test(test_hex_encode),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
