/* The cursor of GET /user-keys/history (service/history.h, kh_history_cursor_parse) on
 * arbitrary bytes, as a member sends it in ?before=; the first byte chooses how many chains
 * the tenant has. Invariants: only the documented results; on success every position is 0
 * or 1..INT64_MAX and at least one is not 0; the cursor formats to text of [0-9_.] that
 * parses back to the same positions (nothing guessed, nothing dropped), and formats again
 * to the same text. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "common/errors.h"
#include "service/history.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static uint64_t before[KH_HISTORY_CHAINS_MAX], again[KH_HISTORY_CHAINS_MAX];
        struct kh_buf text, text2;
        size_t n;
        bool any = false;
        int r;

        if (size < 1)
                return 0;
        n = 1 + data[0] % 40;
        memset(before, 0xa5, sizeof(before));
        r = kh_history_cursor_parse((const char *) data + 1, size - 1, n, before);
        CHECK(r == 0 || r == -KH_E_INVALID_PARAMETER);
        if (r < 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                CHECK(before[i] <= INT64_MAX);
                any = any || before[i];
        }
        CHECK(any);

        kh_buf_init(&text, KH_HISTORY_CURSOR_MAX * 2, false);
        kh_buf_init(&text2, KH_HISTORY_CURSOR_MAX * 2, false);
        if (kh_history_cursor_format(n, before, &text) == 0 && text.len <= KH_HISTORY_CURSOR_MAX) {
                CHECK(text.len > 0);
                for (size_t i = 0; i < text.len; i++)
                        CHECK((text.data[i] >= '0' && text.data[i] <= '9') || text.data[i] == '_' ||
                              text.data[i] == '.');
                memset(again, 0x5a, sizeof(again));
                CHECK(kh_history_cursor_parse((const char *) text.data, text.len, n, again) == 0);
                CHECK(memcmp(again, before, n * sizeof(before[0])) == 0);
                CHECK(kh_history_cursor_format(n, again, &text2) == 0);
                CHECK(text2.len == text.len && memcmp(text2.data, text.data, text.len) == 0);
        }
        kh_buf_free(&text);
        kh_buf_free(&text2);
        return 0;
}
