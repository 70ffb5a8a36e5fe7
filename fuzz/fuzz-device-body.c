/* The bodies of the trusted-device routes (http/decode.h, decode-devices.c). Each input is
 * given to every decoder. Invariants: documented results only; on success every string
 * returned is NUL-terminated text of its documented size, trust values pass the EncString
 * check again, identifiers are of [A-Za-z0-9._-], device ids are canonical GUIDs; on failure
 * nothing is left allocated (ASan's leak check). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keyhold/encstring.h>
#include <keyhold/keyhold.h>

#include "fuzz.h"
#include "common/errors.h"
#include "common/parse.h"
#include "http/decode.h"

static bool documented(int r) {
        return r == 0 || r == -KH_E_BODY_TOO_LARGE || r == -KH_E_INVALID_REQUEST_BODY ||
               r == -KH_E_INVALID_ENCSTRING || r == -ENOMEM;
}

static void check_value(const char *s, unsigned types) {
        CHECK(s != NULL);
        CHECK(keyhold_encstring_check(s, strlen(s), types) == KEYHOLD_OK);
}

static void check_guid(const char *id) {
        char canon[KH_GUID_BUF];

        CHECK(kh_parse_guid(id, strlen(id), canon) == 0);
        CHECK(strcmp(canon, id) == 0);
}

static void check_trust(const struct kh_req_trust *t, bool with_private) {
        check_value(t->user_key, (1u << 3) | (1u << 4));
        check_value(t->public_key, (1u << 2) | (1u << 7));
        if (with_private)
                check_value(t->private_key, (1u << 2) | (1u << 7));
}

static void check_device(const char *body, size_t size) {
        struct kh_req_doc doc;
        struct kh_req_device d;
        int r = kh_req_device_parse(body, size, &doc, &d);

        CHECK(documented(r));
        if (r < 0)
                return;
        CHECK(d.type >= 0 && d.type <= 1000);
        CHECK(strlen(d.name) >= 1 && strlen(d.name) <= 50);
        CHECK(strlen(d.identifier) >= 1 && strlen(d.identifier) <= 50);
        CHECK(strspn(d.identifier, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
              strlen(d.identifier));
        kh_req_doc_free(&doc);
}

static void check_keys(const char *body, size_t size) {
        struct kh_req_doc doc;
        struct kh_req_trust t;
        int r = kh_req_device_keys_parse(body, size, &doc, &t);

        CHECK(documented(r));
        if (r < 0)
                return;
        check_trust(&t, true);
        kh_req_doc_free(&doc);
}

static void check_update(const char *body, size_t size) {
        struct kh_req_doc doc;
        struct kh_req_update_trust u;
        int r = kh_req_update_trust_parse(body, size, &doc, &u);

        CHECK(documented(r));
        if (r < 0) {
                CHECK(u.others == NULL);
                return;
        }
        check_trust(&u.current, false);
        CHECK(u.n_others <= KH_REQ_DEVICES_MAX);
        for (size_t i = 0; i < u.n_others; i++) {
                check_trust(&u.others[i], false);
                check_guid(u.others[i].device_id);
        }
        kh_req_update_trust_free(&u);
        kh_req_doc_free(&doc);
}

static void check_untrust(const char *body, size_t size) {
        static char ids[KH_REQ_DEVICES_MAX][37];
        size_t n = 99999;
        int r = kh_req_untrust_parse(body, size, ids, &n);

        CHECK(documented(r) && r != -KH_E_INVALID_ENCSTRING);
        if (r < 0) {
                CHECK(n == 0);
                return;
        }
        CHECK(n <= KH_REQ_DEVICES_MAX);
        for (size_t i = 0; i < n; i++)
                check_guid(ids[i]);
}

static void check_enrol(const char *body, size_t size) {
        struct kh_req_doc doc;
        const char *key = (const char *) 1;
        int r = kh_req_enrol_parse(body, size, &doc, &key);

        CHECK(documented(r));
        if (r < 0) {
                CHECK(key == NULL);
                return;
        }
        if (key)
                check_value(key, (1u << 3) | (1u << 4));
        kh_req_doc_free(&doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* the decoders take (pointer, length): a copy without a terminating NUL lets ASan
         * see any read past the end */
        char *body = malloc(size ? size : 1);

        if (!body)
                return 0;
        if (size)
                memcpy(body, data, size);
        check_device(size ? body : NULL, size);
        check_keys(size ? body : NULL, size);
        check_update(size ? body : NULL, size);
        check_untrust(size ? body : NULL, size);
        check_enrol(size ? body : NULL, size);
        free(body);
        return 0;
}
