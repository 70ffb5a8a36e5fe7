/* The HTTP half of libkeyhold: a client for a keyhold server's member routes (Key
 * Connector user keys, trusted devices, login requests, account-recovery enrolment), with
 * the JSON shapes of keyhold's spec/trusted-devices.md decoded into small C structs.
 *
 * Conventions are those of keyhold.h: KEYHOLD_OK or a negative status, out-parameters last
 * and written only on success, objects freed by their own _free() function (NULL-safe).
 * Nothing is logged or printed. One struct keyhold_client is one connection (libcurl easy
 * handle): use it from one thread at a time; different clients are independent.
 *
 * When the server refuses a request, the function returns the status named after the HTTP
 * status (KEYHOLD_E_NOT_FOUND for a 404, ...) and keyhold_client_error_message() /
 * keyhold_client_error_code() give the server's own "message" and "code" fields. When no
 * answer came (connection, TLS, timeout) it returns KEYHOLD_E_HTTP and the message says
 * why. */
#ifndef KEYHOLD_CLIENT_H
#define KEYHOLD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyhold/device.h"
#include "keyhold/keyhold.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Statuses of the client functions, below those of keyhold.h (keyhold_strerror() knows
 * them too). */
enum keyhold_client_status {
        KEYHOLD_E_HTTP = -20,         /* no answer: connection, TLS, timeout, a cut transfer */
        KEYHOLD_E_BAD_REQUEST = -21,  /* 400: the server refused the request's content */
        KEYHOLD_E_UNAUTHORIZED = -22, /* 401: no token, or a token the server does not accept */
        KEYHOLD_E_FORBIDDEN = -23,    /* 403: the token may not do this */
        KEYHOLD_E_NOT_FOUND = -24,    /* 404 */
        KEYHOLD_E_CONFLICT = -25,     /* 409 */
        KEYHOLD_E_SERVER = -26,       /* any other refusal (413, 5xx, 503 sealed, ...) */
        KEYHOLD_E_RESPONSE = -27,     /* an answer that is not what the route documents */
        KEYHOLD_E_DENIED = -28,       /* the login request was denied */
        KEYHOLD_E_EXPIRED = -29,      /* the login request expired (or was already used) */
        KEYHOLD_E_UNTRUSTED = -30,    /* the device holds no trust on the server */
};

#define KEYHOLD_CLIENT_ANSWER_MAX (1024u * 1024) /* largest answer body read */
#define KEYHOLD_CLIENT_TIMEOUT_MS_DEFAULT 30000L
#define KEYHOLD_DEVICE_TYPE_LINUX_CLI 25      /* Bitwarden's DeviceType.LinuxCLI */
#define KEYHOLD_ACCESS_CODE_LEN 25            /* a login request's access code, in characters */

struct keyhold_client_options {
        /* https://host[:port] with an optional base path (".../t/acme" for tenant acme);
         * http:// only to a loopback address. Required. */
        const char *url;
        const char *token;              /* the member's bearer token; NULL: anonymous calls only */
        const char *cacert;             /* a PEM file: then its CAs are the only ones trusted */
        const char *device_identifier;  /* this device (header Device-Identifier; routes
                                         * that name "this device"); NULL: none */
        int device_type;                /* header Device-Type; 0 = KEYHOLD_DEVICE_TYPE_LINUX_CLI */
        const char *organization_id;    /* the {orgId} of organization routes; NULL: the
                                         * tenant named by a url ending in /t/ID, else "default" */
        long timeout_ms;                /* per request, answer included; 0: the default */
};

struct keyhold_client;

/**
 * keyhold_client_new() - a client for o; nothing is connected yet. Every string is copied.
 * Returns KEYHOLD_OK, KEYHOLD_E_INVALID (no url, a url that is neither https nor http to
 * loopback, or that carries a query; a token or identifier with characters a header cannot
 * hold) or KEYHOLD_E_NOMEM.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_client_new(const struct keyhold_client_options *o,
                                                         struct keyhold_client **ret);

/* Closes the connection, wipes the token and frees c. NULL does nothing. */
KEYHOLD_PUBLIC void keyhold_client_free(struct keyhold_client *c);

/* About the last request of c: its HTTP status (0: none, or no answer), and the server's
 * "message" and "code" of a refusal (or for KEYHOLD_E_HTTP / KEYHOLD_E_RESPONSE a message
 * made here and code ""). Never NULL; valid until the next request on c. */
KEYHOLD_PUBLIC int keyhold_client_http_status(const struct keyhold_client *c);
KEYHOLD_PUBLIC const char *keyhold_client_error_message(const struct keyhold_client *c);
KEYHOLD_PUBLIC const char *keyhold_client_error_code(const struct keyhold_client *c);

/**
 * keyhold_token_claim() - a string claim of a JWT's payload, read without verifying the
 * token (for what a client shows or sends back to the server that verifies it: the "sub"
 * for enrolment, the "email" for a login request).
 * @ret: on success a new NUL-terminated string; free() it.
 * Returns KEYHOLD_OK, KEYHOLD_E_INVALID, KEYHOLD_E_FORMAT (not a JWT, or payload not a
 * JSON object), KEYHOLD_E_NOT_FOUND (no such claim, or not a string) or KEYHOLD_E_NOMEM.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_token_claim(const char *token, const char *name,
                                                          char **ret);

/* ---- Key Connector: GET/POST/PUT /user-keys ---- */

/* The member's stored key: base64 of 32 bytes. *ret is secret: keyhold_wipe_free(*ret,
 * strlen(*ret)). KEYHOLD_E_NOT_FOUND when none is stored. */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_user_key_get(struct keyhold_client *c, char **ret);
/* Stores the member's first key (POST) / replaces it (PUT); key is base64 of 32 bytes. */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_user_key_post(struct keyhold_client *c,
                                                            const char *key);
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_user_key_put(struct keyhold_client *c,
                                                           const char *key);

/* ---- Devices ---- */

/* A device as the server shows it (DeviceResponseModel, ProtectedDeviceResponseModel).
 * Absent or null fields are NULL; dates are the server's text. */
struct keyhold_device {
        char *id;                 /* the server's GUID */
        char *name;
        char *identifier;         /* the app id the device chose */
        int type;                 /* Bitwarden DeviceType number */
        bool is_trusted;          /* all three trust values are set */
        char *creation_date;
        char *last_activity_date;
        char *encrypted_user_key;    /* type 4 */
        char *encrypted_public_key;  /* type 2 */
        char *encrypted_private_key; /* type 2; only where the server hands it out */
};

struct keyhold_device_list {
        size_t n;
        struct keyhold_device *items; /* n devices (each owned by the list) */
};

KEYHOLD_PUBLIC void keyhold_device_free(struct keyhold_device *d);
KEYHOLD_PUBLIC void keyhold_device_list_free(struct keyhold_device_list *l);

/* Registers this device (the options' identifier and type) as name (POST /devices); the
 * same identifier again updates name and type and gives the same id. */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_device_register(struct keyhold_client *c,
                                                              const char *name,
                                                              struct keyhold_device **ret);
/* The member's devices (GET /devices). */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_devices_list(struct keyhold_client *c,
                                                           struct keyhold_device_list **ret);
/* The member's device with this identifier (NULL: this device) (GET
 * /devices/identifier/{identifier}). KEYHOLD_E_NOT_FOUND when not registered. */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_device_get(struct keyhold_client *c,
                                                         const char *identifier,
                                                         struct keyhold_device **ret);
/* Establishes trust for this device: PUT /devices/{identifier}/keys with t's three
 * values (t->device_key is not sent). @ret may be NULL. */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_device_keys_put(struct keyhold_client *c,
                                                              const struct keyhold_device_trust *t,
                                                              struct keyhold_device **ret);
/* This device's trust values (POST /devices/{identifier}/retrieve-keys). */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_device_retrieve_keys(struct keyhold_client *c,
                                                                   struct keyhold_device **ret);
/* Clears the trust values of the member's devices ids[0..n) (POST /devices/untrust); all
 * must be the member's, else nothing changes. */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_devices_untrust(struct keyhold_client *c,
                                                              const char *const *ids, size_t n);
/* Removes the member's device id with its trust (DELETE /devices/{id}). */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_device_delete(struct keyhold_client *c,
                                                            const char *id);

/* One device's new values in a key rotation. */
struct keyhold_device_trust_update {
        const char *device_id;            /* the device's server id */
        const char *encrypted_user_key;   /* type 4 of the new user key */
        const char *encrypted_public_key; /* type 2 of the device SPKI under the new user key */
};

/**
 * keyhold_devices_update_trust() - after a user-key rotation (keyhold_device_rotate()):
 * POST /devices/update-trust with this device's new values and others[0..n)'s. Only the
 * devices named change unless untrust_unlisted, which also untrusts every other one.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_devices_update_trust(
        struct keyhold_client *c, const char *encrypted_user_key,
        const char *encrypted_public_key, const struct keyhold_device_trust_update *others,
        size_t n, bool untrust_unlisted);

/* ---- Login requests ("login with device", admin approval) ---- */

enum keyhold_auth_request_type {
        KEYHOLD_AUTH_REQUEST_AUTHENTICATE_AND_UNLOCK = 0,
        KEYHOLD_AUTH_REQUEST_UNLOCK = 1,
        KEYHOLD_AUTH_REQUEST_ADMIN_APPROVAL = 2,
};

enum keyhold_auth_request_status {
        KEYHOLD_AUTH_REQUEST_PENDING = 0,
        KEYHOLD_AUTH_REQUEST_APPROVED = 1,
        KEYHOLD_AUTH_REQUEST_DENIED = 2,
        KEYHOLD_AUTH_REQUEST_EXPIRED = 3,
};

/* A login request as the server shows it (AuthRequestResponseModel and the pending
 * models). Absent or null fields are NULL. */
struct keyhold_auth_request {
        char *id;
        char *user_id;                   /* pending models only */
        char *email;                     /* where the server includes it */
        char *public_key;                /* the requester's base64 SPKI */
        char *request_device_identifier;
        int request_device_type;         /* requestDeviceTypeValue (-1 when absent) */
        char *request_ip_address;
        char *key;                       /* type 4 of the user key, once approved */
        char *creation_date;
        char *response_date;
        bool request_approved;           /* Bitwarden's field: false for pending and denied */
        enum keyhold_auth_request_status status; /* keyhold's "status"; else derived */
        char *fingerprint;               /* keyhold's phrase, where the server includes it */
};

struct keyhold_auth_request_list {
        size_t n;
        struct keyhold_auth_request *items;
};

KEYHOLD_PUBLIC void keyhold_auth_request_free(struct keyhold_auth_request *r);
KEYHOLD_PUBLIC void keyhold_auth_request_list_free(struct keyhold_auth_request_list *l);

/* What a new login request carries (AuthRequestCreateRequestModel). */
struct keyhold_auth_request_new {
        const char *email;       /* the account's e-mail */
        const char *public_key;  /* base64 SPKI of the requester's RSA-2048 key */
        const char *access_code; /* 1..25 characters the requester keeps */
        enum keyhold_auth_request_type type;
};

/* Creates a login request for this device (its identifier is the options'): POST
 * /auth-requests for types 0 and 1, POST /auth-requests/admin-request (a token needed) for
 * type 2. */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_auth_request_create(
        struct keyhold_client *c, const struct keyhold_auth_request_new *req,
        struct keyhold_auth_request **ret);
/* The request as its requester sees it (GET /auth-requests/{id}/response?code=...;
 * anonymous). An approved key is delivered once; after that the server answers 404. */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_auth_request_response(
        struct keyhold_client *c, const char *id, const char *access_code,
        struct keyhold_auth_request **ret);
/* The member's request id (GET /auth-requests/{id}). */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_auth_request_get(struct keyhold_client *c,
                                                               const char *id,
                                                               struct keyhold_auth_request **ret);
/* The member's pending requests (GET /auth-requests/pending). */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_auth_requests_pending(
        struct keyhold_client *c, struct keyhold_auth_request_list **ret);
/**
 * keyhold_auth_request_answer() - approves (with key, the type-4 EncString of the user key
 * to the request's public key) or denies (key NULL) the member's request id from this
 * device (PUT /auth-requests/{id}). @ret may be NULL.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_auth_request_answer(
        struct keyhold_client *c, const char *id, bool approve, const char *key,
        struct keyhold_auth_request **ret);

/* ---- Account recovery ---- */

/* The organization's (tenant's) recovery public key, DER SPKI (GET
 * /organizations/{orgId}/public-key). *ret: free(). */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_organization_public_key(struct keyhold_client *c,
                                                                      uint8_t **ret,
                                                                      size_t *ret_len);
/* Enrols user_id (the token's sub) in account recovery with reset_password_key (a type-4
 * EncString of the user key to the organization key), or withdraws with NULL (PUT
 * /organizations/{orgId}/users/{userId}/reset-password-enrollment). */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_recovery_enrol(struct keyhold_client *c,
                                                             const char *user_id,
                                                             const char *reset_password_key);

#ifdef __cplusplus
}
#endif

#endif
