#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/random.h"

static void check_sha256(const char *msg, const char *want_hex) {
        uint8_t d[KH_SHA256_LEN];
        char hex[2 * KH_SHA256_LEN + 1];

        kh_sha256(msg, strlen(msg), d);
        kh_hex_encode(d, sizeof(d), hex);
        assert_string_equal(hex, want_hex);
}

/* FIPS 180-2 appendix B.1 and B.2, and the empty message */
static void test_sha256_fips_vectors(void **state) {
        (void) state;
        check_sha256("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        check_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        check_sha256("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_random_bytes_fill_and_differ(void **state) {
        uint8_t a[64], b[64], zero[64] = { 0 };
        uint8_t guard[4] = { 0xAA, 0xAA, 0xAA, 0xAA };
        (void) state;

        assert_int_equal(kh_random_bytes(a, sizeof(a)), 0);
        assert_int_equal(kh_random_bytes(b, sizeof(b)), 0);
        /* 2^-512 chance of a false failure each */
        assert_memory_not_equal(a, b, sizeof(a));
        assert_memory_not_equal(a, zero, sizeof(a));
        assert_int_equal(kh_random_bytes(guard, 0), 0);
        assert_memory_equal(guard, "\xAA\xAA\xAA\xAA", 4);
}

static void test_random_secret(void **state) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *a = NULL, *b = NULL;
        struct kh_secret *none = NULL;
        (void) state;

        assert_int_equal(kh_random_secret(32, &a), 0);
        assert_int_equal(kh_random_secret(32, &b), 0);
        assert_int_equal(kh_secret_len(a), 32);
        assert_false(kh_secret_equal(a, b));
        assert_int_equal(kh_random_secret(0, &none), -EINVAL);
        assert_null(none);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sha256_fips_vectors),
                cmocka_unit_test(test_random_bytes_fill_and_differ),
                cmocka_unit_test(test_random_secret),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
