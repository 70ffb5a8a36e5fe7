/* The test vectors of spec/encstring.md section 8 and spec/trusted-devices.md sections
 * 2.3 and 5, and helpers that compute with OpenSSL directly, so that no check of the
 * library goes through the library's own codec or key loading. */
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

/* V1 */
#define V1_KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="
#define V1_IV "2NokAMS6llUxk26oueMqrA=="
#define V1_PT "Bitwarden SDK test vector"
#define V1_CT "6k0QD71SJLy2WEBDkV4esiTrgkP/z7eoSedSesGLGYE="
#define V1_MAC "PE4sb0jpAwZW+tnyPuW43eeWvSxjvdw3xMJlPGbDlYI="
#define V1_ENC "2." V1_IV "|" V1_CT "|" V1_MAC
#define V1_BUFFER                                                                                \
        "AtjaJADEupZVMZNuqLnjKqw8TixvSOkDBlb62fI+5bjd55a9LGO93DfEwmU8ZsOVgupNEA+9UiS8tlhAQ5FeHrIk" \
        "64JD/8+3qEnnUnrBixmB"
#define V1_CBC_IV "PgDvL4lfQNZ/W7joHwmloQ=="
#define V1_CBC_PT "EncryptMe!"
#define V1_CBC_CT "1ky7YTqS1IxfpLHMs4WslA=="

/* V2 */
#define V2_KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define V2_IV "AAECAwQFBgcICQoLDA0ODw=="
#define V2_ENC "0.AAECAwQFBgcICQoLDA0ODw==|bxAhj8/9alk6NJHwjNWVU6i8ejmCHCO2cuPX+q+2qWY="
#define V2_CASE2_CT "ByUF8vhyX4ddU9gcooznwA=="

/* V3 */
#define V3_ENC                                                                                   \
        "2.pMS6/icTQABtulw52pq2lg==|XXbxKxDTh+mWiN1HjH2N1w==|"                                   \
        "Q6PkuT+KX/axrgN9ubD5Ajk2YNwxQkgs3WJM0S0wtG8="
#define V3_HEX                                                                                   \
        "02a4c4bafe271340006dba5c39da9ab69643a3e4b93f8a5ff6b1ae037db9b0f902393660dc3142482cdd62" \
        "4cd12d30b46f5d76f12b10d387e99688dd478c7d8dd7"

/* V4 */
#define V4_KEY_HEX "1f4f68e29647b15ac250acd1118184518aa745a7fe95021b27c5402a16c3564b"
#define V4_KEY_B64 "H09o4pZHsVrCUKzREYGEUYqnRaf+lQIbJ8VAKhbDVks="
#define V4_ENC_HEX "6f1fb22dee9825728fd77c5387adc3178e8678f93d84a3b671c5bdccbc15ed60"
#define V4_MAC_HEX "dd7fceea651bca265634221c4e1cb910303d7fa6d1f7c257e81a3055c1f9b39b"
#define V4_PRK_HEX "17987829d6109c8547e2b287d0ff4265bd46ad1e27d7afec26b4b43ec4049f46"
#define V4_OKM_HEX                                                                               \
        "06722a2657e71e6d1eff6881ff5e5c6c7c91d7d0113c8716469e28352db6083f4157efeab9e3997a73cd9038" \
        "66955c8bd96677392539fbb212345e4d84d7ef64"

/* V5 */
#define V5_KEY "fSfkd76R0EZKfOLOPlTkjzll9Et5qRCs0DMMv5O/56n6SWhLgTwe7DOrufLppwxRXUnAY+1D7jsmVG8wO5JdhA=="
#define V5_PEM                                                                                   \
        "-----BEGIN PRIVATE KEY-----\n"                                                          \
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCXRVrCX+2hfOQS\n"                     \
        "8HzYUS2oc/jGVTZpv+/Ryuoh9d8ihYX9dd0cYh2tl6KWdFc88lPUH11Oxqy20Rk2\n"                     \
        "e5r/RF6T9yM0Me3NPnaKt+hlhLtfoc0h86LnhD56A9FDUfuI0dVnPcrwNv0YJIo9\n"                     \
        "4LwxtbqBULNvXl6wJ7WAbODrCQy5ZgMVg+iH+gGpwiqsZqHt+KuoHWcN53MSPDfa\n"                     \
        "F4/YMB99U3TziJMOOJask1TEEnakMPln11PczNDazT17DXIxYrbPfutPdh6sLs6A\n"                     \
        "QOajdZijfEvepgnOe7cQ7aeatiOJFrjTApKPGxOVRzEMX4XS4xbyhH0QxQeB6l16\n"                     \
        "l8C0uxIBAgMBAAECggEASaWfeVDA3cVzOPFSpvJm20OTE+R6uGOU+7vh36TX/POq\n"                     \
        "92qBuwbd0h0oMD32FxsXywd2IxtBDUSiFM9699qufTVuM0Q3tZw6lHDTOVG08+tP\n"                     \
        "dr8qSbMtw7PGFxN79fHLBxejjO4IrM9lapjWpxEF+11x7r+wM+0xRZQ8sNFYG46a\n"                     \
        "PfIaty4BGbL0I2DQ2y8I57iBCAy69eht59NLMm27fRWGJIWCuBIjlpfzET1j2HLX\n"                     \
        "UIh5bTBNzqaN039WH49HczGE3mQKVEJZc/efk3HaVd0a1Sjzyn0QY+N1jtZN3jTR\n"                     \
        "buDWA1AknkX1LX/0tUhuS3/7C3ejHxjw4Dk1ZLo5/QKBgQDIWvqFn0+IKRSu6Ua2\n"                     \
        "hDsufIHHUNLelbfLUMmFthxabcUn4zlvIscJO00Tq/ezopSRRvbGiqnxjv/mYxuc\n"                     \
        "vOUBeZtlus0Q9RTACBtw9TGoNTmQbEunJ2FOSlqbQxkBBAjgGEppRPt30iGj/VjA\n"                     \
        "hCATq2MYOa/X4dVR51BqQAFIEwKBgQDBSIfTFKC/hDk6FKZlgwvupWYJyU9Rkyfs\n"                     \
        "tPErZFmzoKhPkQ3YORo2oeAYmVUbS9I2iIYpYpYQJHX8jMuCbCz4ONxTCuSIXYQY\n"                     \
        "UcUq4PglCKp31xBAE6TN8SvhfME9/MvuDssnQinAHuF0GDAhF646T3LLS1not6Vs\n"                     \
        "zv7brwSoGwKBgQC88v/8cGfi80ssQZeMnVvq1UTXIeQcQnoY5lGHJl3K8mbS3TnX\n"                     \
        "E6c9j417Fdz+rj8KWzBzwWXQB5pSPflWcdZO886Xu/mVGmy9RWgLuVFhXwCwsVEP\n"                     \
        "jNX5ramRb0/vY0yzenUCninBsIxFSbIfrPtLUYCc4hpxr+sr2Mg/y6jpvQKBgBez\n"                     \
        "MRRs3xkcuXepuI2R+BCXL1/b02IJTUf1F+1eLLGd7YV0H+J3fgNc7gGWK51hOrF9\n"                     \
        "JBZHBGeOUPlaukmPwiPdtQZpu4QNE3l37VlIpKTF30E6mb+BqR+nht3rUjarnMXg\n"                     \
        "AoEZ18y6/KIjpSMpqC92Nnk/EBM9EYe6Cf4eA9ApAoGAeqEUg46UTlJySkBKURGp\n"                     \
        "Is3v1kkf5I0X8DnOhwb+HPxNaiEdmO7ckm8+tPVgppLcG0+tMdLjigFQiDUQk2y3\n"                     \
        "WjyxP5ZvXu7U96jaJRI8PFMoE06WeVYcdIzrID2HvqH+w0UQJFrLJ/0Mn4stFAEz\n"                     \
        "XKZBokBGnjFnTnKcs7nv/O8=\n"                                                             \
        "-----END PRIVATE KEY-----\n"
#define V5_SPKI                                                                                  \
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAl0Vawl/toXzkEvB82FEtqHP4xlU2ab/v0crqIfXfIoWF" \
        "/XXdHGIdrZeilnRXPPJT1B9dTsasttEZNnua/0Rek/cjNDHtzT52irfoZYS7X6HNIfOi54Q+egPRQ1H7iNHVZz3K" \
        "8Db9GCSKPeC8MbW6gVCzb15esCe1gGzg6wkMuWYDFYPoh/oBqcIqrGah7firqB1nDedzEjw32heP2DAffVN084iT" \
        "DjiWrJNUxBJ2pDD5Z9dT3MzQ2s09ew1yMWK2z37rT3YerC7OgEDmo3WYo3xL3qYJznu3EO2nmrYjiRa40wKSjxsT" \
        "lUcxDF+F0uMW8oR9EMUHgepdepfAtLsSAQIDAQAB"
#define V5_CT3                                                                                   \
        "SUx5gWrgmAKs/S1BoQrqOmx2Hl5fPVBVHokW17Flvm4TpBnJJRkfoitp7Jc4dfazPYjWGlckJz6X+qe+/AWilS1m" \
        "xtzS0PmDy7tS5xP0GRlB39dstCd5jDw1wPmTbXiLcQ5VTvzpRAfRMEYVveTsEvVTByvEYAGSn4TnCsUDykyhRbD0" \
        "YcJ4r1KHLs1b3BCBy2M1Gl5nmwckH08CAXaf8VfuBFStAGRKueovqp4euneQla+4G4fXdVvb8qKPnu0iVuALIE6n" \
        "UNmeOiA3xN3d+akMxbbGxrQ1Ca4TYWjHVdj9C6abngQHkjKNYQwGUXrYo160hP4LIHn/huK6bZe5dQ=="
#define V5_CT4                                                                                   \
        "DMD1D5r6BsDDd7C/FE1eZbMCKrmryvAsCKj6+bO54gJNUxisOI7SDcpPLRXf+JdhqY15pT+wimQ5cD9C+6OQ6s71" \
        "LFQHewXPU29l9Pa1JxGeiKqp37KLYf+1IS6UB2K3ANN35C52ZUHh2TlzIS5RuntxnpCw7APbcfpcnmIdLPJBtuj/" \
        "xbFd6eBwnI3GSe5qdS6/Ixdd0dgsZcpz3gHJBKmIlSo0YN60SweDq3kTJwox9xSqdCueIDg5U4khc7RhjYx8b33H" \
        "XaNJj3DwgIH8iLj+lqpDekogr630OhHG3XRpvl4QzYO45bmHb8wAh67Dj70nsZcVg6bAEFHdSFohww=="
#define V5_ENC3 "3." V5_CT3
#define V5_ENC4 "4." V5_CT4
#define V5_ENC5 "5." V5_CT3 "|AA=="
#define V5_ENC6 "6." V5_CT4 "|AA=="

/* V6 = trusted-devices.md 2.3 */
#define V6_DEVICE_KEY "cus8c6ycy5HDgtf6WJLX5gxt9d422f/T3Wnm7EE00YVM0HH+wticE+Y+IF1XB5CcdY76ILZ2uwj3B8vJQZPO9w=="
#define V6_USER_KEY "bYCsk857hl8QJJtxyRK65tjUrbxKC4aDifJpsml+NIv4W9cVgFvi3qVD+yJTUU2T4UwNKWYtt9pqWf7Q+2WCCg=="
#define V6_ENC_USER_KEY                                                                          \
        "4.f+VbbacRhO2q4MOUSdt1AIjQ2FuLAvg4aDxJMXAh3VxvbmUADj8Ct/R7XEpPUqApmbRS566jS0eRVy8Sk08ogoCd" \
        "j1IFN9VsIky2i2X1WHK1fUnr3UBmXE3tl2NPBbx56U+h73S2jNTSyet2W18Jg2q7/w8KIhR3J41QrG9aGoOTN93to3" \
        "hb5W4z6rdrSI0e7GkizbwcIA0NH7Z1JyAhrjPm9+tjRjg060YbEbGaWTAOkZWfgbLjr8bY455DteO2xxG139cOx7EBo" \
        "66N+YhjsLi0ozkeUyPQkoWBdKMcQllS7jCfB4fDyJA05ALTbk74syKkvqFxqwmQbg+aVn+dcw=="
#define V6_ENC_PRIVATE_KEY \
        "2.GyQfUYWW6Byy4UV5icFLxg==|EMiU7OTF79N6tfv3+YUs5zJhBAgqv6sa5YCoPl6yAETh7Tfk+JmbeizxXFPj5" \
        "Q1X/tcVpDZl/3fGcxtnIxg1YtvDFn7j8uPnoApOWhCKmwcvJSIkt+qvX3lELNBwZXozSiy7PbQ0JbCMe2d4MkimR" \
        "5k8+lE9FB3208yYK7nOJhlrsUCnOekCYEU9/4NCMA8tz8SpITx/MN4JJ1TQ/KjPJYLt+3JNUxK47QlgREWQvyVzC" \
        "Rt7ZGtcgIJ/U1qycAWMpEg9NkuV8j5QRA1S7VBsA6qliJwys5+dmTuIOmOMwdKFZDc4ZvWoRkPp2TSJBu7L8sSAg" \
        "U6mmDWac8iQ+9Ka/drdfwYLrH8GAZvURk79tSpRrT7+PAFe2QdUtliUIyiqkh8iJVjZube4hRnEsRuX9V9b+UdtA" \
        "r6zAj7mugO/VAu5T9J38V79V2ohG3NtXysDeKLXpAlkhjllWXeq/wret2fD4WiwqEDj0G2A/PY3F3OziIgp0UKc0" \
        "0AfqrPq8OVK3A+aowwVqdYadgxyoVCKWJ8unJeAXG7MrMQ9tHpzF6COoaEy7Wwoc17qko33zazwLZbfAjB4oc8Ea" \
        "26jRKnJZP56sVZAjOSQQMziAsA08MRaa/DQhgRea1+Ygba0gMft8Dww8anN2gQBveTZRBWyqXYgN3U0Ity5gNauT" \
        "8RnFk9faqVFt2Qxnp0JgJ+PsqEt5Hn4avBRZQQ7o8VvPnxYLDKFe3I2m6HFYFWRhOGeDYxexIuaiF2iIAYFVUmnD" \
        "uWpgnUiL4XJ3KHDsjkPzcV3z4D2Knr/El2VVXve8jhDjETfovmmN28+i2e29PXvKIymTskMFpFCQPc7wBY/Id7pm" \
        "gb3SujKYNpkAS2sByDoRir0my49DDGfta0dENssJhFd3x+87fZbEj3cMiikg2pBwpTLgmfIUa5cVZU2s8JZ9wu7g" \
        "aioYzvX+elHa3EHLcnEUoJTtSf9kjb+Nbq4ktMgYAO2wIC96t1LvmqK4Qn2cOdw5QNlRqALhqe5V31kyIcwRMK0A" \
        "yIoOPhnSqtpYdFiR3LDTvZA8dU0vSsuchCwHNMeRUtKvdzN/tk+oeznyY/mpakUESN501lEKd/QFLtJZsDZTtNlc" \
        "A8fU3kDtws4ZIMR0O5+PFmgQFSU8OMobf9ClUzy/wHTvYGyDuSwbOoPeS955QKkUKXCNMj33yrPr+ioHQ1BNwLX3" \
        "VmMF4bNRBY/vr+CG0/EZi0Gwl0kyHGl0yWEtpQuu+/PaROJeOraWy5D1UoZZhY4n0zJZBt1eg3FZ2rhKv4gdUc50" \
        "nZpeNWE8pIqZ6RQ7qPJuqfF1Z+G73iOSnLYCHDiiFmhD5ivf9IGkTAcWcBsQ/2wcSj9bFJr4DrKfsbQ4CkSWICWV" \
        "n/W+InKkO6BTsBbYmvte5SvbaN+UOtiUSkHLBCCr8273VNgcB/hgtbUires3noxYZJxoczr+i7vdlEgQnWEKrpo0" \
        "CifsFxGwYS3Yy2K79iwvDMaLPDf73zLSbuoUl6602F2Mzcjnals67f+gSpaDvWt7Kg9c/ZfGjq8oNxVaXJnX3gSD" \
        "sO+fhwVAtnDApL+tL8cFfxGerW4KGi9/74woH+C3MMIViBtNnrpEuvxUW97Dg5nd40oGDeyi/q+8HdcxkneyFY=|" \
        "JYdol19Yi+n1r7M+06EwK5JCi2s/CWqKui2Cy6hEb3k="

/* Fingerprints (trusted-devices.md section 5) */
#define FP_SDK_MATERIAL "a09726a0-9590-49d1-a5f5-afe300b6a515"
#define FP_SDK_SPKI                                                                              \
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuyYs8W7NWf0Zv35Ueco93730dtRKi4Jhc6Snar+86drE" \
        "+ruSfaCWMcbgsAoAj2Pm6KAzaJrTIVCqBERQ23OncpzjfcGAeyf+v3w/gSw/EjihMJ4AG5ICY4hLFYcGdgwa+7is" \
        "+TVO0i6PEWjKQa3l2+mQo2XY7pg2ngHDMssV4gxSqq+qoBX3+FBhewCYdOV+3cebwsAzz7HwoFTxKViwNW8crbHon" \
        "hZPhZgfIAzEkzo5MvzQg5azhLKW6vuPfaOQFC5HqPykVnh8OPzO0uzUi3+97CguAu4N2CgwVYXltZuw2fGamdVw3k" \
        "jbxQPbOE1tL0j7gyTwYKkfUl2m8gMh1QIDAQAB"
#define FP_SDK_PHRASE "turban-deftly-anime-chatroom-unselfish"
#define FP_KH_MATERIAL "user@example.com"
#define FP_KH_PHRASE "imprudent-paramount-tidal-protector-reptile"

/* Base64 decoded by OpenSSL (EVP_DecodeBlock), not by the library under test; NULL if s
 * is not valid. The caller frees. */
static inline uint8_t *ossl_b64(const char *s, size_t *len) {
        size_t n = strlen(s), pad = 0;
        uint8_t *out = malloc(n / 4 * 3 + 1);
        int r;

        if (!out)
                return NULL;
        r = EVP_DecodeBlock(out, (const unsigned char *) s, (int) n);
        if (r < 0) {
                free(out);
                return NULL;
        }
        if (n >= 1 && s[n - 1] == '=')
                pad++;
        if (n >= 2 && s[n - 2] == '=')
                pad++;
        *len = (size_t) r - pad;
        return out;
}

/* Hex to bytes; len the byte count. The caller frees. */
static inline uint8_t *hex(const char *s, size_t *len) {
        size_t n = strlen(s) / 2;
        uint8_t *out = malloc(n + 1);

        for (size_t i = 0; out && i < n; i++) {
                unsigned v;
                char byte[3] = { s[2 * i], s[2 * i + 1], 0 };
                v = (unsigned) strtoul(byte, NULL, 16);
                out[i] = (uint8_t) v;
        }
        *len = n;
        return out;
}

/* The DER PKCS#8 inside the V5 PEM, read by OpenSSL's PEM reader. The caller frees. */
static inline uint8_t *v5_pkcs8(size_t *len) {
        BIO *bio = BIO_new_mem_buf(V5_PEM, -1);
        unsigned char *der = NULL;
        long n = 0;
        uint8_t *out = NULL;

        if (bio && PEM_bytes_read_bio(&der, &n, NULL, "PRIVATE KEY", bio, NULL, NULL) == 1) {
                out = malloc((size_t) n);
                if (out) {
                        memcpy(out, der, (size_t) n);
                        *len = (size_t) n;
                }
        }
        OPENSSL_free(der);
        BIO_free(bio);
        return out;
}
