/* A member's devices and their trust (spec/trusted-devices.md sections 2, 3 and 8), the
 * member's account-recovery enrolment, and a member leaving the tenant. The server keeps
 * the trust values as the client made them (EncStrings it cannot open) in a device record
 * per (member, device identifier), sealed like every record (service/member-data.h).
 *
 * Documents handed out are the stored form (tde-contract: "id", "name", "type",
 * "identifier", "creationDate", "lastActivityDate", the three trust values or null, and
 * "email" when the member's token named one); http/ turns them into Bitwarden's models.
 * Every function may also return what kh_mdata_*() return. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "service/service.h"

#define KH_DEVICE_IDENTIFIER_MAX 50  /* Bitwarden's DeviceRequestModel */
#define KH_DEVICE_NAME_MAX 50
#define KH_DEVICES_PER_MEMBER_MAX 100 /* a bound on what one member can make the server keep */

/* Whether s[0..len) is a device identifier keyhold keeps: 1..50 of [A-Za-z0-9._-] (an app id
 * GUID in practice; the character set keeps it usable in a record owner). */
bool kh_device_identifier_is_valid(const char *s, size_t len);

/* The three trust values of a device, each a valid EncString (checked by the caller). */
struct kh_device_keys {
        const char *encrypted_user_key;     /* type 4 (3 accepted): the user key to the device */
        const char *encrypted_public_key;   /* type 2 (or 7): the device public key, wrapped */
        const char *encrypted_private_key;  /* type 2 (or 7): the device private key, wrapped;
                                             * NULL in update-trust (it does not change) */
};

/**
 * kh_devices_register() - registers the caller's device @identifier, or updates the name
 * and type of the one registered before (same id). @email: the member's e-mail from the
 * token, kept for anonymous login requests (NULL: keep what is stored).
 * Returns 0 with *ret the stored document (caller decrefs), or -KH_E_TOO_MANY_DEVICES.
 */
KH_MUST_CHECK int kh_devices_register(struct kh_service *svc, const struct kh_tenant *t,
                                      const char *user, const char *identifier,
                                      const char *name, int type, const char *email,
                                      json_t **ret);

/* The member's devices, in identifier order, as a new JSON array. */
KH_MUST_CHECK int kh_devices_list(struct kh_service *svc, const struct kh_tenant *t,
                                  const char *user, json_t **ret);

/* The member's device by identifier, or by id (@by_id). -KH_E_DEVICE_NOT_FOUND. */
KH_MUST_CHECK int kh_devices_get(struct kh_service *svc, const struct kh_tenant *t,
                                 const char *user, const char *key, bool by_id, json_t **ret);

/* Establishes trust: sets the three values of the member's device @identifier (and its
 * last activity). -KH_E_DEVICE_NOT_FOUND. *ret as for register. */
KH_MUST_CHECK int kh_devices_set_keys(struct kh_service *svc, const struct kh_tenant *t,
                                      const char *user, const char *identifier,
                                      const struct kh_device_keys *keys, json_t **ret);

/* One device named in update-trust: by id (others) or identifier (the current one). */
struct kh_device_trust_update {
        const char *device_id;              /* NULL for the current device */
        struct kh_device_keys keys;         /* user and public key only */
};

/**
 * kh_devices_update_trust() - key rotation: new user-key and public-key values for the
 * current device (@current, by identifier) and the @n others (by id). Only the devices named
 * change, unless @untrust_unlisted, which also untrusts every other trusted device of the
 * member. All are checked before anything changes: an unknown current device or other id is
 * -KH_E_DEVICE_NOT_FOUND, the current device among the others -KH_E_BAD_REQUEST; an other
 * device that is not trusted is -KH_E_DEVICE_NOT_TRUSTED.
 */
KH_MUST_CHECK int kh_devices_update_trust(struct kh_service *svc, const struct kh_tenant *t,
                                          const char *user, const char *current,
                                          const struct kh_device_keys *current_keys,
                                          const struct kh_device_trust_update *others,
                                          size_t n, bool untrust_unlisted);

/* Clears the trust values of the member's devices ids[0..n) (by id). Every id must be one of
 * the member's devices, else -KH_E_DEVICE_NOT_FOUND and nothing changed. */
KH_MUST_CHECK int kh_devices_untrust(struct kh_service *svc, const struct kh_tenant *t,
                                     const char *user, const char *const *ids, size_t n);

/* Deletes the member's device @id with its trust values. -KH_E_DEVICE_NOT_FOUND. */
KH_MUST_CHECK int kh_devices_delete(struct kh_service *svc, const struct kh_tenant *t,
                                    const char *user, const char *id);

/**
 * kh_devices_find_member() - the member (into user[37]) who registered a device @identifier
 * with the e-mail @email (compared case-insensitively), for the anonymous routes (knowndevice,
 * a login request without a token). Returns 1 found, 0 not.
 */
KH_MUST_CHECK int kh_devices_find_member(struct kh_service *svc, const struct kh_tenant *t,
                                         const char *email, const char *identifier,
                                         char user[static 37]);

/* The member's account-recovery enrolment: @reset_password_key (a type-4 or type-3 EncString
 * of the user key to the tenant recovery key) stored, or withdrawn when NULL. */
KH_MUST_CHECK int kh_recovery_enrol(struct kh_service *svc, const struct kh_tenant *t,
                                    const char *user, const char *reset_password_key);

/* What kh_member_remove() deleted. */
struct kh_member_removed {
        unsigned keys, devices, requests, enrolments;
};

/* A member leaves the tenant: their Key Connector key, devices, login and approval requests
 * and recovery enrolment are deleted at once. */
KH_MUST_CHECK int kh_member_remove(struct kh_service *svc, const struct kh_tenant *t,
                                   const char *user, struct kh_member_removed *ret);
