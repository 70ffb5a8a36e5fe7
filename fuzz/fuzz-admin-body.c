/* The bodies of POST /admin/keys/rekey and POST /server/unseal (http/decode.h). Each input is
 * given to both decoders. Invariants: documented results only; rekey's answer does not depend
 * on its default except when the body names no algorithm (then it is the default), and it is
 * always 3072 or 4096 otherwise; unseal yields exactly one secret on success, a master key of
 * exactly 32 bytes or a passphrase that is NUL-terminated text without NUL inside, and
 * nothing on failure. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "common/errors.h"
#include "common/secret.h"
#include "http/decode.h"

#define DEFAULT_A 2048u
#define DEFAULT_B 8192u

static void check_rekey(const char *body, size_t size) {
        unsigned a = 0, b = 0;
        int ra = kh_req_rekey_parse(body, size, DEFAULT_A, &a);
        int rb = kh_req_rekey_parse(body, size, DEFAULT_B, &b);

        CHECK(ra == rb);
        if (ra < 0) {
                CHECK(ra == -KH_E_BODY_TOO_LARGE || ra == -KH_E_INVALID_BODY ||
                      ra == -KH_E_INVALID_ALGORITHM);
                return;
        }
        CHECK(ra == 0);
        if (a == DEFAULT_A) {
                CHECK(b == DEFAULT_B);           /* no algorithm named: the default */
        } else {
                CHECK(a == 3072 || a == 4096);
                CHECK(a == b);
        }
        if (size == 0)
                CHECK(a == DEFAULT_A);
}

static void check_unseal(const char *body, size_t size) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pass = NULL;
        int r = kh_req_unseal_parse(body, size, &key, &pass);

        if (r < 0) {
                CHECK(key == NULL && pass == NULL);
                CHECK(r == -KH_E_BODY_TOO_LARGE || r == -KH_E_INVALID_BODY ||
                      r == -KH_E_INVALID_KEY || r == -ENOMEM);
                return;
        }
        CHECK(r == 0);
        CHECK((key == NULL) != (pass == NULL));  /* exactly one secret */
        CHECK(size > 0);                          /* no body unseals nothing */
        if (key) {
                CHECK(kh_secret_len(key) == 32);
        } else {
                size_t len = kh_secret_len(pass);
                const uint8_t *p = kh_secret_bytes(pass);

                CHECK(len >= 2);                  /* at least one character and its NUL */
                CHECK(p[len - 1] == 0);
                CHECK(memchr(p, 0, len - 1) == NULL);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* the decoders take (pointer, length): a copy without a terminating NUL lets ASan
         * see any read past the end */
        char *body = malloc(size ? size : 1);

        if (!body)
                return 0;
        if (size)
                memcpy(body, data, size);
        check_rekey(size ? body : NULL, size);
        check_unseal(size ? body : NULL, size);
        free(body);
        return 0;
}
