/* What the member side (auth-requests.c) and the admin side (approvals.c) of login requests
 * share. Loop thread only, as auth-requests.h. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "config/config.h"
#include "service/member-data.h"
#include "service/service.h"

/* Whether id is a request id as keyhold makes them: a lower-case GUID. */
bool kh_ar_id_is_valid(const char *id);

/* When the stored request doc expires (unix s), by the tenant's lifetimes. */
int64_t kh_ar_expiry(const struct kh_config_tenant *c, const json_t *doc);

/* "pending", "approved", "denied" or "expired" at now. */
const char *kh_ar_status(const struct kh_config_tenant *c, const json_t *doc, int64_t now);

/* A new copy of doc as handed out: no access-code hash, with "status". NULL: no memory. */
json_t *kh_ar_public(const struct kh_config_tenant *c, const json_t *doc, int64_t now);

/* Every unexpired request of the tenant (of @user; NULL: of every member) as a new array,
 * oldest first; the expired ones met are deleted. */
KH_MUST_CHECK int kh_ar_scan(struct kh_service *svc, const struct kh_tenant *t,
                             const char *user, json_t **ret);

/* The stored request id into ret (clear it after): -KH_E_AUTH_REQUEST_NOT_FOUND if there is
 * none (or id is no request id). */
KH_MUST_CHECK int kh_ar_read(struct kh_service *svc, const struct kh_tenant *t, const char *id,
                             struct kh_mdata *ret);
