/* Helpers of the body decoders of Bitwarden's routes (decode-devices.c, decode-auth.c), for
 * the files of the front library only. Bitwarden binds member names case-insensitively
 * (spec/trusted-devices.md section 1): two spellings of one name are ambiguous. Every error
 * is -KH_E_INVALID_REQUEST_BODY unless said otherwise. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Parses body[0..len) (at most max bytes: else -KH_E_BODY_TOO_LARGE) into *ret. With
 * @object, anything but a JSON object is refused. */
int kh_json_load(const char *body, size_t len, size_t max, bool object, json_t **ret);

/* The member of obj named name in any case into *ret (NULL when absent). */
int kh_json_member(const json_t *obj, const char *name, json_t **ret);

#define KH_JSON_OPTIONAL (1u << 0)  /* absent or null gives NULL */
#define KH_JSON_EMPTY_OK (1u << 1)  /* "" is allowed */

/* A string member of at most max bytes without NUL inside (max 0: no limit of its own). */
int kh_json_string(const json_t *obj, const char *name, unsigned flags, size_t max,
                   const char **ret);

/* A boolean member (required). */
int kh_json_bool(const json_t *obj, const char *name, bool *ret);
