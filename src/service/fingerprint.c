/* The server's use of libkeyhold's fingerprint (one implementation and one copy of the EFF
 * word list for the server and the client library). */
#include "service/fingerprint.h"

#include <errno.h>
#include <string.h>

#include "keyhold/fingerprint.h"

_Static_assert(KH_FINGERPRINT_MAX <= KEYHOLD_FINGERPRINT_MAX, "phrase buffer");
_Static_assert(KH_FINGERPRINT_MATERIAL_MAX == KEYHOLD_FINGERPRINT_MATERIAL_MAX, "material");

int kh_fingerprint_phrase(const char *material, const uint8_t *spki, size_t len,
                          char out[static KH_FINGERPRINT_MAX]) {
        char phrase[KEYHOLD_FINGERPRINT_MAX];
        size_t n;
        int r;

        if (!material || !spki || len == 0)
                return -EINVAL;
        r = keyhold_fingerprint(material, spki, len, phrase);
        if (r == KEYHOLD_E_INVALID)
                return -EINVAL;
        if (r != KEYHOLD_OK)
                return -EIO;
        n = strnlen(phrase, sizeof(phrase));
        if (n >= KH_FINGERPRINT_MAX)
                return -EIO;     /* not with the EFF list: at most 9 letters a word */
        memcpy(out, phrase, n + 1);
        return 0;
}
