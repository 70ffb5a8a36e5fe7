/* Base64 decoders: strictness means every accepted text is the one canonical spelling of
 * its bytes, so decode-then-encode must give the input back, byte for byte. The secret
 * decoder must agree with the plain one exactly, and encoding arbitrary bytes must decode
 * to them again. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "crypto/encoding.h"

#define FUZZ_MAX (1u << 20)

static void check_std(const char *text, size_t size) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf dec, enc;
        int r;

        kh_buf_init(&dec, FUZZ_MAX, false);
        kh_buf_init(&enc, FUZZ_MAX, false);
        r = kh_base64_decode(text, size, &dec);
        CHECK(r == 0 || r == -EINVAL);
        if (r == 0) {
                CHECK(kh_base64_encode(dec.data, dec.len, &enc) == 0);
                CHECK(enc.len == size && (size == 0 || memcmp(enc.data, text, size) == 0));
        }

        /* The secret decoder accepts exactly what the plain one does, at its length. */
        for (size_t want = size / 4 * 3 > 2 ? size / 4 * 3 - 2 : 1; want <= size / 4 * 3 + 1;
             want++) {
                KH_CLEANUP(kh_secret_freep) struct kh_secret *s = NULL;
                KH_CLEANUP(kh_buf_freep) struct kh_buf senc;
                int rs = kh_base64_decode_secret(text, size, want, &s);

                kh_buf_init(&senc, FUZZ_MAX, true);
                CHECK(rs == 0 || rs == -EINVAL);
                if (r == 0 && dec.len == want && want > 0) {
                        CHECK(rs == 0);
                        CHECK(kh_secret_len(s) == want);
                        CHECK(memcmp(kh_secret_bytes(s), dec.data, want) == 0);
                        CHECK(kh_base64_encode_secret(s, &senc) == 0);
                        CHECK(senc.len == size && memcmp(senc.data, text, size) == 0);
                } else {
                        CHECK(rs == -EINVAL && s == NULL);
                }
        }
}

static void check_url(const char *text, size_t size) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf dec, enc;
        int r;

        kh_buf_init(&dec, FUZZ_MAX, false);
        kh_buf_init(&enc, FUZZ_MAX, false);
        r = kh_base64url_decode(text, size, &dec);
        CHECK(r == 0 || r == -EINVAL);
        if (r == 0) {
                CHECK(kh_base64url_encode(dec.data, dec.len, &enc) == 0);
                CHECK(enc.len == size && (size == 0 || memcmp(enc.data, text, size) == 0));
                /* the url alphabet has neither '+', '/' nor '=' */
                CHECK(!memchr(text, '+', size) && !memchr(text, '/', size) &&
                      !memchr(text, '=', size));
        }
}

/* Any bytes encode, and decode back to themselves. */
static void check_encode(const uint8_t *data, size_t size) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf enc, dec, uenc, udec;

        kh_buf_init(&enc, FUZZ_MAX * 2, false);
        kh_buf_init(&dec, FUZZ_MAX, false);
        kh_buf_init(&uenc, FUZZ_MAX * 2, false);
        kh_buf_init(&udec, FUZZ_MAX, false);
        CHECK(kh_base64_encode(data, size, &enc) == 0);
        CHECK(enc.len == (size + 2) / 3 * 4);
        CHECK(kh_base64_decode((const char *) enc.data, enc.len, &dec) == 0);
        CHECK(dec.len == size && (size == 0 || memcmp(dec.data, data, size) == 0));
        CHECK(kh_base64url_encode(data, size, &uenc) == 0);
        CHECK(kh_base64url_decode((const char *) uenc.data, uenc.len, &udec) == 0);
        CHECK(udec.len == size && (size == 0 || memcmp(udec.data, data, size) == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > FUZZ_MAX)
                return 0;
        check_std((const char *) data, size);
        check_url((const char *) data, size);
        check_encode(data, size);
        return 0;
}
