#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

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

static int nonce_cmp(const void *a, const void *b) {
        return memcmp(a, b, KH_NONCE_LEN);
}

/* Nonces from the pool: none repeats across several refills, and none is all zeros (the
 * pool zeroes what it handed out: a bug reusing a slot would show as zeros). */
static void test_random_nonces_never_repeat(void **state) {
        enum { N = 5000 };                      /* about 15 refills of the pool */
        static uint8_t n[N][KH_NONCE_LEN];
        static const uint8_t zero[KH_NONCE_LEN];

        (void) state;
        for (size_t i = 0; i < N; i++) {
                assert_int_equal(kh_random_nonce(n[i]), 0);
                assert_memory_not_equal(n[i], zero, KH_NONCE_LEN);
        }
        qsort(n, N, KH_NONCE_LEN, nonce_cmp);
        for (size_t i = 1; i < N; i++)
                assert_memory_not_equal(n[i - 1], n[i], KH_NONCE_LEN);
}

/* A forked child does not hand out the nonces its parent has in its pool. */
static void test_random_nonce_after_fork(void **state) {
        uint8_t first[KH_NONCE_LEN], parent[KH_NONCE_LEN], child[KH_NONCE_LEN];
        int fds[2], status;
        pid_t pid;

        (void) state;
        assert_int_equal(kh_random_nonce(first), 0);   /* the pool is filled */
        assert_int_equal(pipe(fds), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                uint8_t c[KH_NONCE_LEN];
                _exit(kh_random_nonce(c) == 0 && write(fds[1], c, sizeof(c)) == (ssize_t) sizeof(c)
                              ? 0 : 1);
        }
        assert_int_equal(kh_random_nonce(parent), 0);
        assert_int_equal(read(fds[0], child, sizeof(child)), (ssize_t) sizeof(child));
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_memory_not_equal(parent, child, KH_NONCE_LEN);
        close(fds[0]);
        close(fds[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sha256_fips_vectors),
                cmocka_unit_test(test_random_bytes_fill_and_differ),
                cmocka_unit_test(test_random_secret),
                cmocka_unit_test(test_random_nonces_never_repeat),
                cmocka_unit_test(test_random_nonce_after_fork),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
