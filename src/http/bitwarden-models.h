/* Bitwarden's response models of the trusted-device routes, made from the documents the
 * services keep: devices (service/devices.h, spec/trusted-devices.md section 3) and login
 * requests (service/auth-requests.h, section 4.1, plus keyhold's "status"). */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "http/http-internal.h"

/* Replies status with doc as an AuthRequestResponseModel ("object": "auth-request"). Returns
 * 0 or -ENOMEM. */
int kh_http_reply_auth_request(struct kh_http_req *req, int status, const json_t *doc);

/* Replies 200 with docs as {"object": "list", "data": [...], "continuationToken": null}; with
 * @pending each item is a PendingAuthRequestResponseModel (its "requestDeviceId" too). */
int kh_http_reply_auth_request_list(struct kh_http_req *req, const json_t *docs, bool pending);

/* Replies 200 with the admin list: PendingOrganizationAuthRequestResponseModel items
 * ("object": "pending-org-auth-request") plus "fingerprint", "approvals" and "needed". */
int kh_http_reply_approvals(struct kh_http_req *req, const json_t *docs);

/* Replies status with v (a JSON value; its reference is taken). Returns 0 or -ENOMEM. */
int kh_http_reply_json_new(struct kh_http_req *req, int status, json_t *v);

/* A stored device as Bitwarden's DeviceResponseModel ("object": "device"), or with
 * @protected_ its ProtectedDeviceResponseModel ("protectedDevice"); never the encrypted
 * private key. NULL when out of memory. */
json_t *kh_http_device_model(const json_t *doc, bool protected_);

/* {"object": "list", "data": data, "continuationToken": null}; takes data's reference.
 * NULL (data NULL, or out of memory). */
json_t *kh_http_list_of(json_t *data);
