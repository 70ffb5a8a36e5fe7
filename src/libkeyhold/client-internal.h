/* What client.c and client-json.c share and the unit tests reach (never exported): the
 * decoders from the server's JSON into the structs of keyhold/client.h. Each is total: any
 * JSON value gives a struct or KEYHOLD_E_RESPONSE, never a guess. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "keyhold/client.h"
#include "internal.h"

/* A device object (DeviceResponseModel, ProtectedDeviceResponseModel or keyhold's stored
 * shape): "id" and "identifier" strings are required, the rest optional. Field names are
 * matched as Bitwarden binds them: camelCase, or PascalCase. Returns KEYHOLD_OK,
 * KEYHOLD_E_RESPONSE or KEYHOLD_E_NOMEM; on failure d is left empty (all NULL). */
KHL_MUST_CHECK int khl_device_decode(const json_t *v, struct keyhold_device *d);
/* {"object": "list", "data": [device...]} (or a bare array). */
KHL_MUST_CHECK int khl_device_list_decode(const json_t *v, struct keyhold_device_list **ret);

/* An auth-request object: "id" required. The status is keyhold's "status" when present
 * ("pending", "approved", "denied", "expired"; anything else is KEYHOLD_E_RESPONSE), else
 * Bitwarden's reading: approved when requestApproved, denied when answered
 * (responseDate set) without approval, else pending. */
KHL_MUST_CHECK int khl_auth_request_decode(const json_t *v, struct keyhold_auth_request *r);
KHL_MUST_CHECK int khl_auth_request_list_decode(const json_t *v,
                                                struct keyhold_auth_request_list **ret);

/* {"object": "organizationPublicKey", "publicKey": base64 SPKI}: the decoded DER. */
KHL_MUST_CHECK int khl_public_key_decode(const json_t *v, uint8_t **ret, size_t *ret_len);

/* The fields of a keyhold or Bitwarden error body: message and code copied into the
 * buffers (truncated; "" when absent). */
void khl_error_decode(const json_t *v, char *message, size_t message_len, char *code,
                      size_t code_len);

/* The enum status for an HTTP error status. */
int khl_status_for_http(long http_status);

/* Empties d / r (frees the fields, keeps the struct). */
void khl_device_clear(struct keyhold_device *d);
void khl_auth_request_clear(struct keyhold_auth_request *r);
