/* `keyholdd --dev`: a local trial with everything under one data folder. */
#pragma once

#include "common/cleanup.h"
#include "config/config.h"

/* Creates what cfg (from kh_config_dev) needs under cfg->data_dir when missing: the folder
 * (0700), a random master key (0600), a self-signed TLS certificate for 127.0.0.1 and
 * localhost, and the dev issuer's signing key and JWKS. Existing files are kept, so a
 * restart serves the same keys. Refuses (-EPERM) any listen address that is not loopback.
 * On failure ret_what names the file or check that failed. */
KH_MUST_CHECK int kh_dev_prepare(const struct kh_config *cfg, const char **ret_what);
