/* The claim policy on arbitrary claim JSON. fuzz-jwt reaches kh_jwt_check_claims() only
 * through base64url, which mutations rarely keep valid; here the input is the payload's
 * JSON text itself, wrapped by the harness into a token with a fixed ES256 header and a
 * syntactically valid signature (kh_jwt_parse() does not verify it). Each input is checked
 * under five policies. Invariants: parse accepts exactly the payloads jansson reads as an
 * object; results are documented ones; an accepted principal agrees with the claims as read
 * independently here; a stricter policy never accepts what a looser one refuses. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "fuzz.h"
#include "common/errors.h"
#include "common/limits.h"
#include "crypto/encoding.h"
#include "token/jwt.h"

/* Leaves room for the header and signature segments within KH_TOKEN_MAX. */
#define FUZZ_MAX (8u * 1024)

#define ISSUER "https://issuer.test"
#define NOW INT64_C(1700000000)

#define CAP_S 86400

enum { LOOSE, ARRAY_ONLY, AUDIENCE, NO_ADMIN, CAPPED, N_POLICIES };

static const struct kh_claim_matcher admins[] = {
        { "roles", "keyhold-admin" }, { "groups", "security" },
};

static const struct kh_claims_policy policies[N_POLICIES] = {
        [LOOSE] = { .issuer = ISSUER, .now = NOW, .skew_s = KH_CLOCK_SKEW_S,
                    .admins = admins, .n_admins = 2 },
        [ARRAY_ONLY] = { .issuer = ISSUER, .now = NOW, .skew_s = KH_CLOCK_SKEW_S,
                         .admins = admins, .n_admins = 2, .scope_array_only = true },
        [AUDIENCE] = { .issuer = ISSUER, .audience = "keyhold", .now = NOW,
                       .skew_s = KH_CLOCK_SKEW_S, .admins = admins, .n_admins = 2 },
        [NO_ADMIN] = { .issuer = ISSUER, .now = NOW, .skew_s = KH_CLOCK_SKEW_S },
        [CAPPED] = { .issuer = ISSUER, .now = NOW, .skew_s = KH_CLOCK_SKEW_S,
                     .admins = admins, .n_admins = 2, .max_lifetime_s = CAP_S },
};

/* The string v, or one string of the array v, is exactly want. */
static bool claim_has(const json_t *v, const char *want) {
        size_t i;
        json_t *e;

        if (json_is_string(v))
                return json_string_length(v) == strlen(want) &&
                       memcmp(json_string_value(v), want, strlen(want)) == 0;
        json_array_foreach(v, i, e)
                if (json_is_string(e) && claim_has(e, want))
                        return true;
        return false;
}

/* "api" as the RFC 8693 space-delimited scope string has it, split here with strtok_r. */
static bool scope_words_have_api(const json_t *scope) {
        char *copy, *save = NULL;
        bool found = false;

        if (!json_is_string(scope))
                return false;
        copy = strndup(json_string_value(scope), json_string_length(scope));
        CHECK(copy);
        for (char *w = strtok_r(copy, " ", &save); w && !found; w = strtok_r(NULL, " ", &save))
                found = strcmp(w, "api") == 0;
        free(copy);
        return found;
}

/* What every valid token's principal must show: a sub only as sent (or its canonical GUID),
 * admin exactly when a matcher holds and there is a sub. */
static void check_valid(const json_t *c, const struct kh_claims_policy *pol,
                        const struct kh_principal *p) {
        const json_t *sub = json_object_get(c, "sub");
        bool matched = false;

        CHECK(p->member_refusal == 0 || p->member_refusal == -KH_E_INSUFFICIENT_SCOPE ||
              p->member_refusal == -KH_E_INVALID_SUBJECT);
        if (p->sub[0])
                CHECK(json_is_string(sub) &&
                      (strcmp(json_string_value(sub), p->sub) == 0 ||
                       (is_canonical_guid(p->sub) && strcasecmp(json_string_value(sub), p->sub) == 0)));
        CHECK(strlen(p->sub) <= KH_SUB_MAX);
        for (size_t i = 0; i < pol->n_admins; i++)
                matched |= claim_has(json_object_get(c, pol->admins[i].claim), pol->admins[i].value);
        CHECK(p->admin == (matched && p->sub[0]));
}

/* What every token accepted as a member's must show, read straight from the JSON. */
static void check_accepted(const json_t *c, const struct kh_claims_policy *pol,
                           const struct kh_principal *p, const struct kh_jwt *jwt) {
        const json_t *iss = json_object_get(c, "iss"), *sub = json_object_get(c, "sub"),
                     *exp = json_object_get(c, "exp");

        CHECK(json_is_string(iss) && claim_has(iss, ISSUER));
        CHECK(json_is_number(exp));
        /* an accepted iat is a number no further ahead than the skew */
        const json_t *iat = json_object_get(c, "iat");
        CHECK(!iat || (json_is_number(iat) && json_number_value(iat) <= (double) (NOW + KH_CLOCK_SKEW_S)));
        CHECK(json_is_string(sub) && json_string_length(sub) == 36 &&
              strcasecmp(json_string_value(sub), p->sub) == 0);
        CHECK(is_canonical_guid(p->sub));
        CHECK(p->tenant[0] == 0);
        CHECK(memcmp(p->token_hash, kh_jwt_token_hash(jwt), sizeof(p->token_hash)) == 0);
        int64_t limit;
        CHECK(__builtin_add_overflow(p->exp, KH_CLOCK_SKEW_S, &limit) || limit >= NOW);
        if (pol->scope_array_only)
                CHECK(claim_has(json_object_get(c, "scope"), "api"));
        else
                CHECK(claim_has(json_object_get(c, "scope"), "api") ||
                      scope_words_have_api(json_object_get(c, "scope")));
        CHECK(claim_has(json_object_get(c, "amr"), "Application") ||
              claim_has(json_object_get(c, "amr"), "external"));
        if (pol->audience)
                CHECK(claim_has(json_object_get(c, "aud"), pol->audience));
        bool admin = false;
        for (size_t i = 0; i < pol->n_admins; i++)
                admin |= claim_has(json_object_get(c, pol->admins[i].claim), pol->admins[i].value);
        CHECK(p->admin == admin);
}

static int make_token(const uint8_t *payload, size_t len, struct kh_buf *tok) {
        static const char header[] = "{\"alg\":\"ES256\",\"kid\":\"k\"}";
        uint8_t sig[64];

        memset(sig, 0x5a, sizeof(sig));
        if (kh_base64url_encode((const uint8_t *) header, sizeof(header) - 1, tok) < 0 ||
            kh_buf_append(tok, ".", 1) < 0 || kh_base64url_encode(payload, len, tok) < 0 ||
            kh_buf_append(tok, ".", 1) < 0 || kh_base64url_encode(sig, sizeof(sig), tok) < 0)
                return -ENOMEM;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf tok;
        KH_CLEANUP(kh_jwt_freep) struct kh_jwt *jwt = NULL;
        struct kh_principal p[N_POLICIES];
        json_t *claims;
        int r, res[N_POLICIES];

        if (size > FUZZ_MAX)
                return 0;
        kh_buf_init(&tok, KH_TOKEN_MAX, false);
        CHECK(make_token(data, size, &tok) == 0);

        claims = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
        r = kh_jwt_parse((const char *) tok.data, tok.len, &jwt);
        CHECK(r == 0 || r == -KH_E_INVALID_TOKEN || r == -ENOMEM);
        if (r != -ENOMEM)
                CHECK((r == 0) == json_is_object(claims));
        if (r < 0) {
                CHECK(!jwt);
                json_decref(claims);
                return 0;
        }
        CHECK(kh_jwt_alg(jwt) == KH_JWT_ALG_ES256);
        CHECK(kh_jwt_kid(jwt) && strcmp(kh_jwt_kid(jwt), "k") == 0);

        for (size_t i = 0; i < N_POLICIES; i++) {
                /* res: the verdict for a member route */
                res[i] = kh_jwt_check_claims(jwt, &policies[i], &p[i]);
                CHECK(res[i] == 0 || res[i] == -KH_E_INVALID_TOKEN);
                if (res[i] == 0) {
                        check_valid(claims, &policies[i], &p[i]);
                        res[i] = p[i].member_refusal;
                }
                if (res[i] == 0)
                        check_accepted(claims, &policies[i], &p[i], jwt);
        }

        /* Stricter policies accept a subset; the admin role changes only the admin bit. */
        CHECK(res[ARRAY_ONLY] != 0 || res[LOOSE] == 0);
        CHECK(res[AUDIENCE] != 0 || res[LOOSE] == 0);
        CHECK(res[NO_ADMIN] == res[LOOSE]);
        /* The lifetime cap refuses exactly the tokens LOOSE accepts with exp too far ahead. */
        if (res[LOOSE] == 0)
                CHECK((res[CAPPED] == 0) == (p[LOOSE].exp <= NOW + CAP_S + KH_CLOCK_SKEW_S));
        else
                CHECK(res[CAPPED] == res[LOOSE] || res[CAPPED] == -KH_E_INVALID_TOKEN);
        if (res[LOOSE] == 0) {
                CHECK(!p[NO_ADMIN].admin);
                CHECK(strcmp(p[NO_ADMIN].sub, p[LOOSE].sub) == 0);
                CHECK(p[NO_ADMIN].exp == p[LOOSE].exp);
        }
        json_decref(claims);
        return 0;
}
