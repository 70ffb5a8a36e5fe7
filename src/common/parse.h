/* Strict, total parsers for configuration and protocol values. One accepted spelling:
 * no sign, no whitespace, no base prefix. Return 0, -EINVAL (malformed) or -ERANGE. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "limits.h"

/* Decimal digits only, at most max. */
KH_MUST_CHECK int kh_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *ret);

/* "true"/"false"/"yes"/"no"/"1"/"0"/"on"/"off" (lower case). */
KH_MUST_CHECK int kh_parse_bool(const char *s, bool *ret);

#define KH_GUID_BUF 37 /* 36 characters and a NUL */

/* A GUID in 8-4-4-4-12 hex form, either case. On success writes the canonical lower-case
 * form (36 chars + NUL) to ret. */
KH_MUST_CHECK int kh_parse_guid(const char *s, size_t len, char ret[static KH_GUID_BUF]);

/* A tenant id: [a-z0-9][a-z0-9-]{0,62}. */
bool kh_tenant_id_is_valid(const char *s, size_t len);

/* Whether s[0..len) is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF) without NUL bytes. */
bool kh_utf8_is_valid(const char *s, size_t len);
