/* POST/PUT /user-keys body decoding. Invariant: success yields exactly a 32-byte secret. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz.h"
#include "common/errors.h"
#include "common/secret.h"
#include "http/decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
        int r = kh_req_user_key_parse((const char *) data, size, &key);

        if (r < 0) {
                CHECK(key == NULL);
                CHECK(r == -KH_E_INVALID_BODY || r == -KH_E_INVALID_KEY ||
                       r == -KH_E_BODY_TOO_LARGE);
                return 0;
        }
        CHECK(kh_secret_len(key) == 32);
        (void) kh_req_content_type_is_json((const char *) data, size);
        return 0;
}
