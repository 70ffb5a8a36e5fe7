/* JWKS parsing on arbitrary bytes. Invariants: documented results only; at most
 * KH_JWKS_KEYS_MAX keys; whatever kh_jwks_find() returns fits the algorithm asked for. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz.h"
#include "common/limits.h"
#include "token/jwks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KH_CLEANUP(kh_jwks_freep) struct kh_jwks *j = NULL;
        static const enum kh_jwt_alg algs[] = { KH_JWT_ALG_RS256, KH_JWT_ALG_PS256,
                                                KH_JWT_ALG_ES256, KH_JWT_ALG_EDDSA };
        static const char *const kids[] = { NULL, "1", "k", "" };
        int r;

        r = kh_jwks_parse((const char *) data, size, &j);
        CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
        if (r < 0) {
                CHECK(!j);
                return 0;
        }
        CHECK(size <= KH_JWKS_MAX);
        CHECK(kh_jwks_count(j) <= KH_JWKS_KEYS_MAX);
        for (size_t a = 0; a < KH_ELEMENTSOF(algs); a++)
                for (size_t k = 0; k < KH_ELEMENTSOF(kids); k++) {
                        EVP_PKEY *key = kh_jwks_find(j, kids[k], algs[a]);
                        CHECK(!key || kh_jwt_key_fits_alg(key, algs[a]));
                }
        CHECK(!kh_jwks_find(j, NULL, KH_JWT_ALG_NONE));
        return 0;
}
