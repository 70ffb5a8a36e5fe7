/* Parsers for the structured configuration values (listen addresses, CORS origins, issuer
 * URLs). Internal to src/config/. Each fills *ret_reason with a human reason on -EINVAL. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/cleanup.h"
#include "config/config.h"

/* "host:port[, host:port...]": host is a dotted IPv4 address, "localhost" or a bracketed IPv6
 * address ([::1]:8443, stored without brackets); port 0..65535. Writes out[] and *ret_n only
 * on success. Returns 0 or -EINVAL. */
KH_MUST_CHECK int kh_config_listen_parse(const char *value,
                                         struct kh_config_listen out[static KH_LISTEN_MAX],
                                         size_t *ret_n, const char **ret_reason);

/* "origin[, origin...]", each http(s)://host[:port] with an optional trailing '/' (removed).
 * On success the caller owns the new strings in out[0..*ret_n). Returns 0, -EINVAL or
 * -ENOMEM; nothing is left allocated on failure. */
KH_MUST_CHECK int kh_config_origins_parse(const char *value,
                                          char *out[static KH_CORS_ORIGINS_MAX],
                                          size_t *ret_n, const char **ret_reason);

/* "CLAIM:VALUE[, CLAIM:VALUE...]": CLAIM of [A-Za-z0-9_.-] (1..KH_CLAIM_NAME_MAX bytes),
 * VALUE everything after the first ':' (not empty). On success the caller owns the new
 * strings in out[0..*ret_n). Returns 0, -EINVAL or -ENOMEM; nothing is left allocated on
 * failure. */
KH_MUST_CHECK int kh_config_matchers_parse(const char *value,
                                           struct kh_config_matcher out[static KH_ADMIN_MATCHERS_MAX],
                                           size_t *ret_n, const char **ret_reason);

/* An issuer URL: http:// or https:// followed by printable ASCII without spaces. */
bool kh_config_issuer_is_valid(const char *value);
