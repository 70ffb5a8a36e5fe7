/* Login requests ("login with device") and admin-approval requests (spec/trusted-devices.md
 * sections 4, 7 and 8): a new device asks for the member's user key, encrypted to a public
 * key it made; one of the member's trusted devices, or the tenant's approvers, answer.
 *
 * One record per request (KH_RECORD_AUTH_REQUEST, owner = the request id), sealed like every
 * record (service/member-data.h), in the stored form of the tde-contract. Lifetimes follow
 * the tenant's settings and kh_mdata_now(): a member request (types 0 and 1) lives
 * auth_request_lifetime from its creation, an admin request (type 2)
 * admin_request_lifetime from its creation while pending or denied and
 * approved_request_lifetime from its approval. An expired request is deleted when a listing
 * or a poll meets it.
 *
 * keyhold is stricter than Bitwarden (spec section 7): documents carry "status"
 * (pending, approved, denied, expired); lists never show expired requests; an approved key
 * is delivered to the requester once, then the request is spent.
 *
 * Every function runs on the worker's loop with its own store (loop-local) and may also
 * return what kh_mdata_*() return. Documents handed out are new JSON objects in the stored
 * form plus "status" (never "accessCodeHash"); http/ makes Bitwarden's models of them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/buf.h"
#include "crypto/rsa.h"
#include "service/service.h"

#define KH_AUTH_REQUEST_ACCESS_CODE_MAX 25   /* Bitwarden's AccessCode column */
#define KH_AUTH_REQUESTS_PER_DEVICE_MAX 5    /* a device's newer requests push out the oldest */
#define KH_AUTH_REQUEST_EMAIL_MAX 256
#define KH_AUTH_REQUEST_IP_MAX 50
#define KH_AUTH_REQUEST_DEVICE_TYPE_MAX 64   /* highest DeviceType number accepted */
#define KH_AUTH_REQUEST_BULK_MAX 100         /* ids in one admin bulk answer */
#define KH_AUTH_REQUEST_BODY_MAX (64 * 1024) /* bodies of the routes that take lists */

enum kh_auth_request_type {
        KH_AUTH_REQUEST_AUTHENTICATE_AND_UNLOCK = 0,
        KH_AUTH_REQUEST_UNLOCK = 1,
        KH_AUTH_REQUEST_ADMIN_APPROVAL = 2,
};

/* A new request as the client sent it (strings NUL-terminated, borrowed). */
struct kh_auth_request_new {
        int type;                       /* 0, 1 or 2 */
        const char *email;
        const char *public_key;         /* base64 of the SPKI DER */
        const char *device_identifier;
        const char *access_code;
        int device_type;                /* the Device-Type header */
        const char *ip;                 /* the client's address, "" if unknown */
};

/**
 * kh_auth_requests_create() - records a new pending request.
 * @user: the member token's subject, or NULL (anonymous POST /auth-requests).
 * @admin: true for POST /auth-requests/admin-request (type must be 2), false for
 *         POST /auth-requests (type 0 or 1).
 * The device must be a registered device of the member (with a token: under @user, and an
 * e-mail it kept must equal @in->email; anonymous: a device of that identifier registered
 * with that e-mail). A newer request of one device leaves at most
 * KH_AUTH_REQUESTS_PER_DEVICE_MAX of its requests (the oldest go).
 * Returns 0 with *ret the document, -KH_E_INVALID_REQUEST_TYPE, -KH_E_INVALID_PUBLIC_KEY,
 * -KH_E_INVALID_ACCESS_CODE, -KH_E_INVALID_BODY (e-mail or identifier malformed),
 * -KH_E_UNKNOWN_USER_OR_DEVICE.
 */
KH_MUST_CHECK int kh_auth_requests_create(struct kh_service *svc, const struct kh_tenant *t,
                                          const char *user, bool admin,
                                          const struct kh_auth_request_new *in, json_t **ret);

/* The member's request @id (any state; "expired" shown): -KH_E_AUTH_REQUEST_NOT_FOUND
 * unless it exists and is the member's. */
KH_MUST_CHECK int kh_auth_requests_get(struct kh_service *svc, const struct kh_tenant *t,
                                       const char *user, const char *id, json_t **ret);

/* The member's unexpired requests (a new array, oldest first). @pending_only: types 0 and 1,
 * pending, the most recent per requesting device only (GET /auth-requests/pending). */
KH_MUST_CHECK int kh_auth_requests_list(struct kh_service *svc, const struct kh_tenant *t,
                                        const char *user, bool pending_only, json_t **ret);

/**
 * kh_auth_requests_answer() - the member answers their own request @id from their device
 * @device_identifier (PUT /auth-requests/{id}). An approval carries @key (a type-4 EncString
 * of the user key to the request's public key) and must be for the most recent pending
 * request of its requesting device. One answer only: of two at once, one wins.
 * Returns 0 with *ret the answered document, -KH_E_AUTH_REQUEST_NOT_FOUND (not the member's,
 * or expired), -KH_E_REQUEST_ANSWERED, -KH_E_STALE_REQUEST, -KH_E_INVALID_DEVICE,
 * -KH_E_INVALID_ENCSTRING.
 */
KH_MUST_CHECK int kh_auth_requests_answer(struct kh_service *svc, const struct kh_tenant *t,
                                          const char *user, const char *id, bool approve,
                                          const char *key, const char *device_identifier,
                                          json_t **ret);

/**
 * kh_auth_requests_response() - the requester polls @id with its access code (anonymous
 * GET /auth-requests/{id}/response?code=). The code is compared as its SHA-256, in constant
 * time. An approved request hands out its key once: the document returned then carries
 * the key, and the stored one no longer does ("delivered").
 * Returns 0 with *ret, or -KH_E_AUTH_REQUEST_NOT_FOUND (no such id, another code, expired
 * or spent).
 */
KH_MUST_CHECK int kh_auth_requests_response(struct kh_service *svc, const struct kh_tenant *t,
                                            const char *id, const char *code, size_t code_len,
                                            json_t **ret);

/* ---- admin approval ---- */

/* The tenant's pending, unexpired admin requests (a new array, oldest first), each with
 * "fingerprint" (the phrase of its public key for its lowercased e-mail). */
KH_MUST_CHECK int kh_approvals_list(struct kh_service *svc, const struct kh_tenant *t,
                                    json_t **ret);

/* What an approver's answer came to. */
enum kh_approval_outcome {
        KH_APPROVAL_DONE,        /* answered: approved (the key stored) or denied */
        KH_APPROVAL_RECORDED,    /* an approval recorded; more approvers needed (quorum) */
        KH_APPROVAL_NEEDS_KEY,   /* this approval releases the key, and none was given:
                                  * make it from the member's enrolment, then call again */
};

struct kh_approval_result {
        enum kh_approval_outcome outcome;
        const char *status;      /* DONE: "approved" or "denied" */
        unsigned approvals, needed;  /* RECORDED */
        /* NEEDS_KEY: the member's enrolment ciphertext (OAEP digest md) and the request's
         * public key (SPKI DER), for kh_approval_make_key() */
        enum kh_oaep_md md;
        struct kh_buf enrolment; /* kh_approval_result_clear() frees both */
        struct kh_buf spki;
};

void kh_approval_result_clear(struct kh_approval_result *r);

/**
 * kh_approvals_answer() - approver @approver (an actor name: a token's sub, or the operator)
 * answers admin request @id. A deny ends the request at once. An approval is recorded; once
 * the tenant's approval_quorum different approvers approved, the key is released: @key
 * (a type-4 EncString to the request's public key) when given, else
 * KH_APPROVAL_NEEDS_KEY with the member's recovery enrolment, and the caller calls again
 * with the key it made. Compare-and-set: of two answers at once, one wins.
 * Returns 0 with @ret set, -KH_E_AUTH_REQUEST_NOT_FOUND (no such admin request, or expired),
 * -KH_E_REQUEST_ANSWERED, -KH_E_SAME_APPROVER, -KH_E_NOT_ENROLLED,
 * -KH_E_INVALID_ENCSTRING, -ESTALE (changed meanwhile).
 */
KH_MUST_CHECK int kh_approvals_answer(struct kh_service *svc, const struct kh_tenant *t,
                                      const char *approver, const char *id, bool approve,
                                      const char *key, struct kh_approval_result *ret);

/**
 * kh_approval_make_key() - the server-side approval: decrypts the member's enrolment with
 * the tenant's recovery key (a 64-byte user key, else -KH_E_INTEGRITY) and encrypts it to
 * the request's public key as RSA-OAEP SHA-1, appending "4.<base64>" (NUL-terminated) to
 * @out. The user key exists only in a kh_secret, wiped before return. Blocks on the key
 * store: job pool only, never a loop.
 * Returns 0, -KH_E_NOT_ENROLLED (the enrolment does not open as a user key), -KH_E_INVALID_PUBLIC_KEY, -KH_E_SEALED, -ENOMEM, -EIO.
 */
KH_MUST_CHECK int kh_approval_make_key(struct kh_app *app, const struct kh_tenant *t,
                                       const struct kh_approval_result *need,
                                       struct kh_buf *out);

/* ---- pure helpers (unit-tested) ---- */

/* Whether s is a type-4 EncString: "4." and strict base64 of exactly 256 bytes (an
 * RSA-2048 ciphertext). With @allow_type3, "3." too (enrolments). */
bool kh_auth_request_key_is_valid(const char *s, size_t len, bool allow_type3);

/* Decodes base64 text of an RSA-2048 SubjectPublicKeyInfo into spki (DER, re-encoded
 * canonically must equal the input). Returns 0 or -KH_E_INVALID_PUBLIC_KEY. */
KH_MUST_CHECK int kh_auth_request_spki_decode(const char *b64, size_t len, struct kh_buf *spki);
