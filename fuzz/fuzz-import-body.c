/* The body of POST /admin/import/user-keys (http/decode.h). Invariants: documented results
 * only; on failure nothing is handed out; on success 1..KH_IMPORT_BATCH_MAX entries, each a
 * canonical lower-case GUID, distinct, with a 32-byte key. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "common/errors.h"
#include "common/limits.h"
#include "common/parse.h"
#include "http/decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *body = malloc(size ? size : 1);
        struct kh_req_import imp;
        int r;

        if (!body)
                return 0;
        if (size)
                memcpy(body, data, size);
        r = kh_req_import_parse(size ? body : NULL, size, &imp);
        if (r < 0) {
                CHECK(r == -KH_E_BODY_TOO_LARGE || r == -KH_E_INVALID_IMPORT ||
                      r == -KH_E_INVALID_KEY || r == -ENOMEM);
                CHECK(imp.entries == NULL && imp.n == 0);
        } else {
                CHECK(r == 0 && imp.n >= 1 && imp.n <= KH_IMPORT_BATCH_MAX);
                for (size_t i = 0; i < imp.n; i++) {
                        char canon[KH_GUID_BUF];
                        CHECK(kh_parse_guid(imp.entries[i].user, strlen(imp.entries[i].user), canon) == 0);
                        CHECK(strcmp(canon, imp.entries[i].user) == 0);
                        CHECK(kh_secret_len(imp.entries[i].key) == KH_USER_KEY_LEN);
                        for (size_t j = 0; j < i; j++)
                                CHECK(strcmp(imp.entries[j].user, imp.entries[i].user) != 0);
                }
                kh_req_import_free(&imp);
        }
        free(body);
        return 0;
}
