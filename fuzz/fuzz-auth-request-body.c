/* The bodies and the access-code query of the login-request routes (http/decode-auth.h). Each
 * input goes to every decoder. Invariants: documented results only; on failure nothing is
 * handed out; on success every string is non-empty and NUL-free, item counts are within
 * 1..KH_REQ_AUTH_ITEMS_MAX, and the access code is 1..25 bytes without NUL. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "common/errors.h"
#include "http/decode-auth.h"

static void check_str(const char *s) {
        CHECK(s != NULL && s[0] != '\0');
}

static void check_answers(int r, struct kh_req_auth_answers *a, bool ids) {
        if (r < 0) {
                CHECK(r == -KH_E_BODY_TOO_LARGE || r == -KH_E_INVALID_REQUEST_BODY || r == -ENOMEM);
                CHECK(a->root == NULL && a->n == 0);
                return;
        }
        CHECK(r == 0 && a->n >= 1 && a->n <= KH_REQ_AUTH_ITEMS_MAX);
        for (size_t i = 0; i < a->n; i++) {
                if (ids)
                        check_str(a->items[i].id);
                if (a->items[i].key)
                        check_str(a->items[i].key);
        }
        kh_req_auth_clear(&a->root);
        *a = (struct kh_req_auth_answers) { 0 };
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *body = malloc(size ? size : 1);
        struct kh_req_auth_create c = { 0 };
        struct kh_req_auth_update u = { 0 };
        struct kh_req_auth_answers a = { 0 };
        char code[26];
        size_t code_len = 0;
        int r;

        if (!body)
                return 0;
        if (size)
                memcpy(body, data, size);
        r = kh_req_auth_create_parse(size ? body : NULL, size, &c);
        if (r == 0) {
                check_str(c.email);
                check_str(c.public_key);
                check_str(c.device_identifier);
                check_str(c.access_code);
                CHECK(c.type >= 0 && c.type <= 255);
                kh_req_auth_clear(&c.root);
        } else {
                CHECK(c.root == NULL);
        }
        r = kh_req_auth_update_parse(size ? body : NULL, size, &u);
        if (r == 0) {
                check_str(u.device_identifier);
                if (u.key)
                        check_str(u.key);
                kh_req_auth_clear(&u.root);
        } else {
                CHECK(u.root == NULL);
        }
        check_answers(kh_req_auth_answer_parse(size ? body : NULL, size, &a), &a, false);
        check_answers(kh_req_auth_deny_parse(size ? body : NULL, size, &a), &a, true);
        check_answers(kh_req_auth_bulk_parse(size ? body : NULL, size, &a), &a, true);
        r = kh_req_access_code_parse(size ? body : NULL, size, code, 25, &code_len);
        if (r == 0) {
                CHECK(code_len >= 1 && code_len <= 25 && code[code_len] == '\0');
                CHECK(memchr(code, 0, code_len) == NULL);
        } else {
                CHECK(r == -KH_E_INVALID_PARAMETER);
        }
        free(body);
        return 0;
}
