/* The Cache-Control value of an issuer's JWKS answer (kh_cache_control_max_age()), on
 * arbitrary bytes. Invariants: the result is -1, 0 or a number of seconds up to INT32_MAX;
 * "no-store" put in front always wins (0); a valid max-age appended as a directive of its
 * own decides when nothing before it did. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "token/fetch.h"

#define FUZZ_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char no_store[] = "no-store, ";
        static const char max_age[] = ",max-age=5";
        char buf[sizeof(no_store) + FUZZ_MAX + sizeof(max_age)];
        int64_t r;

        if (size > FUZZ_MAX)
                return 0;
        r = kh_cache_control_max_age((const char *) data, size);
        CHECK(r >= -1 && r <= INT32_MAX);
        CHECK(kh_cache_control_max_age((const char *) data, size) == r);

        memcpy(buf, no_store, sizeof(no_store) - 1);
        memcpy(buf + sizeof(no_store) - 1, data, size);
        CHECK(kh_cache_control_max_age(buf, sizeof(no_store) - 1 + size) == 0);

        if (r == -1) {
                memcpy(buf, data, size);
                memcpy(buf + size, max_age, sizeof(max_age) - 1);
                CHECK(kh_cache_control_max_age(buf, size + sizeof(max_age) - 1) == 5);
        }
        return 0;
}
