#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/net.h"

static void test_loopback_names_and_addresses(void **state) {
        static const char *const yes[] = {
                "localhost", "127.0.0.1", "127.255.0.9", "::1", "[::1]", "0:0:0:0:0:0:0:1",
                "::ffff:127.0.0.1",
        };
        static const char *const no[] = {
                "", "localhost.", "LOCALHOST", "128.0.0.1", "10.0.0.1", "0.0.0.0", "::", "[::2]",
                "::ffff:10.0.0.1", "127.1", "example.com", "[127.0.0.1]", "[::1", "::1]",
                "127.0.0.1 ",
        };
        (void) state;

        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
                assert_true(kh_host_is_loopback(yes[i]));
        for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
                assert_false(kh_host_is_loopback(no[i]));
        assert_false(kh_host_is_loopback(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_loopback_names_and_addresses),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
