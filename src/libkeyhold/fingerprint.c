/* The fingerprint phrase (spec/trusted-devices.md section 5): HKDF-Expand of the public
 * key bytes with the material as info, read as a big-endian number and written in base
 * 7776, least significant digit first, one EFF word per digit. Five words: ceil(64 /
 * log2(7776)) = 5, as the clients compute it. */
#include <string.h>

#include <openssl/crypto.h>

#include "keyhold/fingerprint.h"
#include "internal.h"

#define OKM_LEN 32
#define WORDS 5

/* n = n div d in place (big-endian bytes); returns n mod d. d * 256 fits in 32 bits. */
static uint32_t divmod(uint8_t *n, size_t len, uint32_t d) {
        uint32_t rem = 0;

        for (size_t i = 0; i < len; i++) {
                uint32_t cur = rem << 8 | n[i];
                n[i] = (uint8_t) (cur / d);
                rem = cur % d;
        }
        return rem;
}

int keyhold_fingerprint(const char *material, const uint8_t *spki, size_t spki_len,
                        char out[KEYHOLD_FINGERPRINT_MAX]) {
        uint8_t okm[OKM_LEN];
        char phrase[KEYHOLD_FINGERPRINT_MAX];
        size_t material_len, o = 0;
        int r;

        if (!material || !spki || spki_len == 0 || !out)
                return KEYHOLD_E_INVALID;
        material_len = strnlen(material, KEYHOLD_FINGERPRINT_MATERIAL_MAX + 1);
        if (material_len > KEYHOLD_FINGERPRINT_MATERIAL_MAX)
                return KEYHOLD_E_INVALID;

        r = khl_hkdf_expand(spki, spki_len, (const uint8_t *) material, material_len, okm,
                            sizeof(okm));
        if (r < 0)
                return r;
        for (size_t w = 0; w < WORDS; w++) {
                const char *word = khl_eff_wordlist[divmod(okm, sizeof(okm), KHL_EFF_WORDS)];
                size_t len = strlen(word);

                /* Nine letters at most: 5 * 10 bytes fit with room to spare. */
                if (o + len + 1 >= sizeof(phrase))
                        return KEYHOLD_E_CRYPTO; /* unreachable with the EFF list */
                if (w > 0)
                        phrase[o++] = '-';
                memcpy(phrase + o, word, len);
                o += len;
        }
        phrase[o] = '\0';
        OPENSSL_cleanse(okm, sizeof(okm));
        memcpy(out, phrase, o + 1);
        return KEYHOLD_OK;
}
