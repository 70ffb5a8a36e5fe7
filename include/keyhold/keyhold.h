/* libkeyhold: the client library of keyhold. This header holds what every other
 * keyhold/ header shares: status codes, the wipe-and-free rule for secret outputs, and a
 * strict base64 codec.
 *
 * Conventions of the whole library:
 *  - A function that can fail returns an int: KEYHOLD_OK (0) or a negative enum
 *    keyhold_status. Out-parameters (always last) are written only on success.
 *  - A "const T *" argument is borrowed for the call. A "T **ret" hands the caller a new
 *    object: a string from malloc (free() it), a secret buffer (free it with
 *    keyhold_wipe_free() and its length), or an object with its own _free() function.
 *  - Text arguments come with a length and need not be NUL-terminated, unless the
 *    prototype has no length argument: then they are NUL-terminated strings.
 *  - The library never logs, prints, exits or reads the environment, keeps no global
 *    state of its own and may be called from any thread.
 *  - Every buffer of the library that held a key or a plaintext is wiped before it is
 *    freed. */
#ifndef KEYHOLD_KEYHOLD_H
#define KEYHOLD_KEYHOLD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define KEYHOLD_PUBLIC __attribute__((visibility("default")))
#define KEYHOLD_MUST_CHECK __attribute__((warn_unused_result))
#else
#define KEYHOLD_PUBLIC
#define KEYHOLD_MUST_CHECK
#endif

enum keyhold_status {
        KEYHOLD_OK = 0,
        KEYHOLD_E_INVALID = -1, /* a bad argument (NULL, wrong length) */
        KEYHOLD_E_FORMAT = -2,  /* malformed EncString, base64, or key encoding */
        KEYHOLD_E_TYPE = -3,    /* an EncString type not accepted here (e.g. type 0 for a
                                 * 64-byte key: downgrade) */
        KEYHOLD_E_MAC = -4,     /* integrity check failed */
        KEYHOLD_E_DECRYPT = -5, /* decryption or padding failed */
        KEYHOLD_E_KEY = -6,     /* wrong key size or kind (e.g. not RSA-2048) */
        KEYHOLD_E_NOMEM = -7,
        KEYHOLD_E_CRYPTO = -8,  /* the crypto library failed */
};

/**
 * keyhold_strerror() - a short English description of a status.
 * @status: a value returned by any keyhold_ function.
 *
 * Returns a static string, never NULL: "success" for KEYHOLD_OK, "unknown error" for a
 * value this version of the library does not know.
 */
KEYHOLD_PUBLIC const char *keyhold_strerror(int status);

/**
 * keyhold_wipe_free() - wipes p[0..len) and frees p.
 * @p:   a secret buffer this library returned (a plaintext or a private key), or NULL.
 * @len: the length the library returned with it.
 *
 * The wipe cannot be optimised away. NULL does nothing.
 */
KEYHOLD_PUBLIC void keyhold_wipe_free(void *p, size_t len);

/**
 * keyhold_base64_encode() - standard base64 (RFC 4648 section 4, "+/", "=" padding).
 * @in:  len bytes (may be NULL when len is 0).
 * @ret: on success a new NUL-terminated string; free() it (it is not secret unless in is).
 *
 * Runs in time independent of the bytes' values. Returns KEYHOLD_OK, KEYHOLD_E_INVALID
 * (a NULL pointer, or len too large to encode) or KEYHOLD_E_NOMEM.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_base64_encode(const uint8_t *in, size_t len,
                                                            char **ret);

/**
 * keyhold_base64_decode() - strict standard base64.
 * @in:      len characters (need not be NUL-terminated; may be NULL when len is 0).
 * @ret:     on success a new buffer of *ret_len bytes (not NULL, even for 0 bytes). If it
 *           may hold a secret, free it with keyhold_wipe_free(*ret, *ret_len).
 * @ret_len: the decoded length.
 *
 * Accepts only the one canonical spelling of some bytes: length a multiple of 4, the
 * standard alphabet, "=" padding present, unused bits zero, no whitespace. Runs in time
 * independent of the characters' values. Returns KEYHOLD_OK, KEYHOLD_E_INVALID (NULL
 * pointer), KEYHOLD_E_FORMAT or KEYHOLD_E_NOMEM.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_base64_decode(const char *in, size_t len,
                                                            uint8_t **ret, size_t *ret_len);

#ifdef __cplusplus
}
#endif

#endif
