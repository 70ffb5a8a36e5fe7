/* Internal to src/config/: the two sources of settings, called by the entry points (config.c)
 * in this order. Each sets keys through config-keys.h and calls nothing else in src/config/. */
#pragma once

#include <stddef.h>

#include "config-keys.h"

/* config-ini.c: the file's settings, text[0..len). Returns 0, -EINVAL (c->err set) or
 * -ENOMEM. */
int kh_cfg_ini_read(struct kh_cfg_ctx *c, const char *text, size_t len);

/* config-env.c: KEYHOLD_<SECTION>_<KEY> overrides; envp may be NULL. Same returns. */
int kh_cfg_env_read(struct kh_cfg_ctx *c, char *const *envp);

/**
 * kh_cfg_env_tenant_key() - which key a KEYHOLD_TENANT_<ID>_<KEY> variable sets.
 * @keys:   the table to look in (kh_cfg_keys; tests pass keys that do not exist yet);
 *          only its S_TENANT keys count.
 * @n_keys: its length.
 * @rest:   the name after "KEYHOLD_TENANT_", rest[0..len).
 *
 * The key is one whose name, upper-cased, ends rest after a '_' and at least one character of
 * id. Of several, the longest: with keys "issuer" and "admin_issuer", ACME_ADMIN_ISSUER is
 * admin_issuer of tenant acme, never issuer of tenant acme-admin. Returns the key's index in
 * @keys, or -ENOENT.
 */
int kh_cfg_env_tenant_key(const struct kh_cfg_key *keys, size_t n_keys, const char *rest,
                          size_t len);
