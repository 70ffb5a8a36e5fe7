/* The request front end keyhold parses itself: target (tenant prefix + route), bearer
 * token, query string, content type and the user-key body. Input: path NUL authorization
 * NUL content-type NUL body; the path's query (after '?') goes to the query parser. Invariants: results point inside the input and respect the caps. */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "common/errors.h"
#include "common/limits.h"
#include "common/parse.h"
#include "common/secret.h"
#include "http/decode.h"
#include "http/request.h"

static const char *next_field(const char **p, const char *end, size_t *ret_len) {
        const char *start = *p, *nul = memchr(start, 0, (size_t) (end - start));

        *ret_len = nul ? (size_t) (nul - start) : (size_t) (end - start);
        *p = nul ? nul + 1 : end;
        return start;
}

/* strspn() over n bytes that need not end in a NUL. */
static size_t strspn_n(const char *s, size_t n, const char *accept) {
        size_t i = 0;

        while (i < n && s[i] && strchr(accept, s[i]))
                i++;
        return i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *p = (const char *) data, *end = p + size;
        size_t path_len, authz_len, ct_len, token_len = 0;
        const char *path = next_field(&p, end, &path_len);
        const char *authz = next_field(&p, end, &authz_len);
        const char *ct = next_field(&p, end, &ct_len);
        struct kh_request_target target;
        const char *token = NULL;
        int r;

        /* the whole input as a raw request head: any bytes, a verdict, never a crash */
        r = kh_http_framing_check((const char *) data, size);
        CHECK(r == 0 || r == -KH_E_LENGTH_REQUIRED || r == -KH_E_AMBIGUOUS_FRAMING);

        {
                const char *qm = memchr(path, '?', path_len);
                struct kh_query_param q[] = {
                        { .name = "since", .max = INT64_MAX }, { .name = "limit", .max = 10000 },
                        { .name = "last", .max = 10000 },
                        { .name = "replica", .name_max = KH_QUERY_NAME_MAX },
                        { .name = "before", .token_max = 64 },
                };
                const char *qs = qm ? qm + 1 : path;
                size_t qs_len = qm ? path_len - (size_t) (qm + 1 - path) : 0;

                r = kh_http_query_parse(qs, qs_len, q, 5);
                CHECK(r == 0 || r == -KH_E_INVALID_PARAMETER);
                for (size_t i = 0; r == 0 && i < 3; i++)
                        CHECK(!q[i].present || q[i].value <= q[i].max);
                if (r == 0 && q[3].present)
                        CHECK(q[3].text[0] && q[3].text[0] != '-' &&
                              strlen(q[3].text) <= KH_QUERY_NAME_MAX &&
                              strspn(q[3].text, "abcdefghijklmnopqrstuvwxyz0123456789-") ==
                                      strlen(q[3].text));
                /* a token: a slice of the query string, of its alphabet */
                if (r == 0 && q[4].present)
                        CHECK(q[4].token >= qs && q[4].token + q[4].token_len <= qs + qs_len &&
                              q[4].token_len >= 1 && q[4].token_len <= 64 &&
                              strspn_n(q[4].token, q[4].token_len,
                                       "abcdefghijklmnopqrstuvwxyz0123456789-._") ==
                                      q[4].token_len);
                if (qm)
                        path_len = (size_t) (qm - path);
        }

        r = kh_http_target_parse(path, path_len, &target);
        CHECK(r == 0 || r == -KH_E_NOT_FOUND || r == -KH_E_UNKNOWN_TENANT || r == -KH_E_URI_TOO_LONG);
        CHECK((r == 0) == (target.route != NULL) || r == -KH_E_URI_TOO_LONG);
        if (r != -KH_E_URI_TOO_LONG && target.tenant) {
                CHECK(target.tenant > path && target.tenant + target.tenant_len <= path + path_len);
                CHECK(kh_tenant_id_is_valid(target.tenant, target.tenant_len));
        }

        r = kh_http_bearer_parse(authz_len ? authz : NULL, authz_len, &token, &token_len);
        CHECK(r == 0 || r == -KH_E_MISSING_TOKEN || r == -KH_E_INVALID_TOKEN);
        if (r == 0)
                CHECK(token > authz && token + token_len == authz + authz_len &&
                       token_len > 0 && token_len <= KH_TOKEN_MAX);

        if (kh_req_content_type_is_json(ct, ct_len)) {
                KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
                r = kh_req_user_key_parse(p, (size_t) (end - p), &key);
                CHECK(r < 0 ? key == NULL : kh_secret_len(key) == KH_USER_KEY_LEN);
        }
        return 0;
}
