/* The claim policy of the Key Connector API (spec section 3.1, 3.3 and 5.2). */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "common/errors.h"
#include "common/parse.h"
#include "token/jwt-internal.h"
#include "token/jwt.h"

/* Reals beyond 2^53 are not exact integers; no real NumericDate is anywhere near. */
#define NUMERIC_DATE_REAL_MAX 9007199254740992.0

/* A claim that is a string or an array of strings ("aud", "scope", "amr", "roles"); NULL
 * (absent) is fine too. */
static bool is_string_or_strings(const json_t *v) {
        size_t i;
        json_t *e;

        if (!v || json_is_string(v))
                return true;
        if (!json_is_array(v))
                return false;
        json_array_foreach(v, i, e)
                if (!json_is_string(e))
                        return false;
        return true;
}

/* Whether the string or one element of the array equals want exactly. */
static bool has_value(const json_t *v, const char *want) {
        size_t i;
        json_t *e;

        if (json_is_string(v))
                return strcmp(json_string_value(v), want) == 0;
        json_array_foreach(v, i, e)
                if (strcmp(json_string_value(e), want) == 0)
                        return true;
        return false;
}

/* Whether a space-delimited list (RFC 8693 "scope") holds the word want. */
static bool has_word(const char *list, const char *want) {
        size_t n = strlen(want);

        for (const char *p = list; *p;) {
                size_t w = strcspn(p, " ");

                if (w == n && memcmp(p, want, n) == 0)
                        return true;
                p += w;
                p += strspn(p, " ");
        }
        return false;
}

/* A NumericDate (RFC 7519 2): an integer, or a finite real rounded towards the strict
 * side (round_up for nbf, down for exp). */
static int numeric_date(const json_t *v, bool round_up, int64_t *ret) {
        double d;

        if (json_is_integer(v)) {
                *ret = (int64_t) json_integer_value(v);
                return 0;
        }
        if (!json_is_real(v))
                return -KH_E_INVALID_TOKEN;
        d = json_real_value(v);
        if (!isfinite(d) || d > NUMERIC_DATE_REAL_MAX || d < -NUMERIC_DATE_REAL_MAX)
                return -KH_E_INVALID_TOKEN;
        *ret = (int64_t) (round_up ? ceil(d) : floor(d));
        return 0;
}

static bool scope_has_api(const json_t *scope, bool array_only) {
        if (json_is_array(scope))
                return has_value(scope, "api");
        /* Bitwarden emits an array; a lone string is one claim value, which ASP.NET compares
         * whole (spec 3.3). Other OIDC providers send the RFC 8693 space-delimited form. */
        if (json_is_string(scope))
                return array_only ? strcmp(json_string_value(scope), "api") == 0
                                  : has_word(json_string_value(scope), "api");
        return false;
}

/* Whether a matcher's claim has a valid type (absent counts as valid: it matches nothing). */
static bool matchers_typed(const json_t *c, const struct kh_claim_matcher *m, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!is_string_or_strings(json_object_get(c, m[i].claim)))
                        return false;
        return true;
}

static bool matcher_claims_typed(const json_t *c, const struct kh_claims_policy *p) {
        return matchers_typed(c, p->admins, p->n_admins) &&
               matchers_typed(c, p->approvers, p->n_approvers);
}

static bool matches_any(const json_t *c, const struct kh_claim_matcher *m, size_t n) {
        for (size_t i = 0; i < n; i++) {
                const json_t *v = json_object_get(c, m[i].claim);
                if (v && has_value(v, m[i].value))
                        return true;
        }
        return false;
}

static bool is_admin(const json_t *c, const struct kh_claims_policy *p) {
        return matches_any(c, p->admins, p->n_admins);
}

static bool is_approver(const json_t *c, const struct kh_claims_policy *p) {
        return p->n_approvers ? matches_any(c, p->approvers, p->n_approvers) : is_admin(c, p);
}

/* The "sub" of a token that is not a member's, kept as sent when it can name an actor in
 * the audit log: 1..KH_SUB_MAX bytes of UTF-8 without control characters. A member's is
 * the canonical GUID (kh_parse_guid()) instead. */
static void admin_sub(const json_t *sub, char out[static KH_SUB_MAX + 1]) {
        const char *s = json_string_value(sub);
        size_t n = json_string_length(sub);

        if (n == 0 || n > KH_SUB_MAX || !kh_utf8_is_valid(s, n))
                return;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return;
        memcpy(out, s, n);
        out[n] = 0;
}

int kh_jwt_check_claims(const struct kh_jwt *jwt, const struct kh_claims_policy *p,
                        struct kh_principal *ret) {
        const json_t *c = jwt->payload;
        json_t *iss = json_object_get(c, "iss"), *exp = json_object_get(c, "exp"),
               *nbf = json_object_get(c, "nbf"), *aud = json_object_get(c, "aud"),
               *scope = json_object_get(c, "scope"), *amr = json_object_get(c, "amr"),
               *roles = json_object_get(c, "roles"), *sub = json_object_get(c, "sub"),
               *iat = json_object_get(c, "iat");
        struct kh_principal pr = { .tenant = "" };
        int64_t exp_s, nbf_s = INT64_MIN, iat_s = INT64_MIN, limit;

        /* 401 class first: a token that is not valid here says nothing about its rights */
        if (!json_is_string(iss) || !exp || !is_string_or_strings(aud) ||
            !is_string_or_strings(scope) || !is_string_or_strings(amr) ||
            !is_string_or_strings(roles) || (sub && !json_is_string(sub)) ||
            !matcher_claims_typed(c, p))
                return -KH_E_INVALID_TOKEN;
        if (numeric_date(exp, false, &exp_s) < 0 || (nbf && numeric_date(nbf, true, &nbf_s) < 0) ||
            (iat && numeric_date(iat, true, &iat_s) < 0))
                return -KH_E_INVALID_TOKEN;

        if (strcmp(json_string_value(iss), p->issuer) != 0)
                return -KH_E_INVALID_TOKEN;
        /* now > exp + skew; an exp so large that adding overflows is simply not expired */
        if (!__builtin_add_overflow(exp_s, p->skew_s, &limit) && p->now > limit)
                return -KH_E_INVALID_TOKEN;
        /* now + skew < nbf */
        if (nbf && !__builtin_add_overflow(p->now, p->skew_s, &limit) && limit < nbf_s)
                return -KH_E_INVALID_TOKEN;
        /* now + skew < iat: minted by a wrong clock, or in advance with a stolen key */
        if (iat && !__builtin_add_overflow(p->now, p->skew_s, &limit) && limit < iat_s)
                return -KH_E_INVALID_TOKEN;
        /* now + cap + skew < exp: a leaked token would stay good for longer than the tenant
         * allows (a limit too large for int64 caps nothing) */
        if (p->max_lifetime_s > 0 && !__builtin_add_overflow(p->now, p->max_lifetime_s, &limit) &&
            !__builtin_add_overflow(limit, p->skew_s, &limit) && exp_s > limit)
                return -KH_E_INVALID_TOKEN;
        if (p->audience && (!aud || !has_value(aud, p->audience)))
                return -KH_E_INVALID_TOKEN;

        /* A valid token. Is it a member's? Policy "Application" (spec 3.1), then the subject. */
        if (!scope || !scope_has_api(scope, p->scope_array_only) || !amr ||
            (!has_value(amr, "Application") && !has_value(amr, "external")))
                pr.member_refusal = -KH_E_INSUFFICIENT_SCOPE;
        else if (!sub || kh_parse_guid(json_string_value(sub), json_string_length(sub), pr.sub) < 0)
                pr.member_refusal = -KH_E_INVALID_SUBJECT;
        if (!pr.sub[0] && sub)
                admin_sub(sub, pr.sub);

        pr.exp = exp_s;
        pr.admin = pr.sub[0] && is_admin(c, p);
        pr.approver = pr.sub[0] && is_approver(c, p);
        memcpy(pr.token_hash, jwt->token_hash, sizeof(pr.token_hash));
        *ret = pr;
        return 0;
}
