/* The key store migration marker (service/ksmigrate.h, kh_ksmigrate_marker_parse) on
 * arbitrary bytes, as keyholdd reads it from the database's meta table. Invariants: only the
 * documented results; on success a valid tenant id, driver names within their bound,
 * versions ascending from 1, a start time, and the marker formats back to bytes that parse
 * to the same marker (nothing guessed, nothing dropped). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "common/parse.h"
#include "service/ksmigrate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct kh_ksmigrate_marker m, again;
        char *text = NULL;
        int r;

        memset(&m, 0xa5, sizeof(m));
        r = kh_ksmigrate_marker_parse(data, size, &m);
        CHECK(r == 0 || r == -EINVAL);
        if (r < 0)
                return 0;
        CHECK(kh_tenant_id_is_valid(m.tenant, strlen(m.tenant)));
        CHECK(strlen(m.from) >= 1 && strlen(m.from) <= KH_KSMIGRATE_DRIVER_MAX);
        CHECK(strlen(m.to) >= 1 && strlen(m.to) <= KH_KSMIGRATE_DRIVER_MAX);
        CHECK(m.started >= 1 && m.finished >= 0 && m.n <= KH_KEY_VERSIONS_MAX);
        for (size_t i = 0; i < m.n; i++)
                CHECK(m.versions[i] >= 1 && (i == 0 || m.versions[i] > m.versions[i - 1]));

        if (kh_ksmigrate_marker_format(&m, &text) < 0)
                return 0;   /* out of memory only */
        memset(&again, 0x5a, sizeof(again));
        if (strlen(text) <= 1024) {
                CHECK(kh_ksmigrate_marker_parse((const uint8_t *) text, strlen(text), &again) == 0);
                CHECK(strcmp(again.tenant, m.tenant) == 0 && strcmp(again.from, m.from) == 0 &&
                      strcmp(again.to, m.to) == 0 && again.started == m.started &&
                      again.finished == m.finished && again.uid == m.uid &&
                      again.audited == m.audited && again.n == m.n &&
                      memcmp(again.versions, m.versions, m.n * sizeof(m.versions[0])) == 0);
        }
        free(text);
        return 0;
}
