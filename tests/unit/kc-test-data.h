/* The Key Connector fixtures of tests/unit/crypto/data/ (see its README), for the tests of
 * crypto/, keystore/ and import/: meson passes the directory in KH_TEST_DATA. Include after
 * <cmocka.h>. */
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/buf.h"
#include "common/file.h"

#define KC_TEST_FILE_MAX (64 * 1024)

/* The fixture's content appended to out (initialised here; the caller frees it). */
static inline void kc_test_data_read(const char *name, struct kh_buf *out) {
        const char *dir = getenv("KH_TEST_DATA");
        char path[4096];

        assert_non_null(dir);
        assert_true(snprintf(path, sizeof(path), "%s/%s", dir, name) < (int) sizeof(path));
        kh_buf_init(out, KC_TEST_FILE_MAX, false);
        assert_int_equal(kh_file_read(AT_FDCWD, path, 0, KC_TEST_FILE_MAX, out), 0);
        assert_true(out->len > 0);
}

/* The data key of the spec's example (section 3), which data-key.wrapped wraps: 00 .. 1f. */
static inline void kc_test_data_key(uint8_t dk[static 32]) {
        for (unsigned i = 0; i < 32; i++)
                dk[i] = (uint8_t) i;
}
