#include "route.h"

#include <string.h>

#include "common/errors.h"
#include "common/limits.h"
#include "common/parse.h"

static const struct kh_route routes[] = {
#define KH_ROUTE(id_, pattern_, auth_, scope_, ...)                                             \
        { .pattern = pattern_, .id = KH_ROUTE_##id_, .auth = KH_AUTH_##auth_,                 \
          .scope = KH_SCOPE_##scope_ },
#include "http/routes.def"
#undef KH_ROUTE
};

_Static_assert(sizeof(routes) / sizeof(routes[0]) == KH_ROUTE_NONE, "one row per route id");

const struct kh_route *kh_route_by_id(enum kh_route_id id) {
        return id < KH_ROUTE_NONE ? &routes[id] : NULL;
}

const char *kh_route_name(enum kh_route_id id) {
        return id < KH_ROUTE_NONE ? routes[id].pattern + 1 : "none";
}

/* The methods keyhold routes, in the order an Allow header lists them. */
static const struct {
        const char *name;
        unsigned bit;
} methods[] = {
        { "GET", KH_GET }, { "POST", KH_POST }, { "PUT", KH_PUT }, { "DELETE", KH_DELETE },
        { "PATCH", KH_PATCH },
};

unsigned kh_http_method_parse(const char *name, size_t len) {
        for (size_t i = 0; i < KH_ELEMENTSOF(methods); i++)
                if (strlen(methods[i].name) == len && memcmp(name, methods[i].name, len) == 0)
                        return methods[i].bit;
        return 0;
}

size_t kh_http_allow_format(unsigned mask, char buf[static KH_ALLOW_BUF]) {
        size_t n = 0;

        buf[0] = 0;
        for (size_t i = 0; i < KH_ELEMENTSOF(methods); i++) {
                size_t len = strlen(methods[i].name);
                if (!(mask & methods[i].bit))
                        continue;
                if (n) {
                        memcpy(buf + n, ", ", 2);
                        n += 2;
                }
                memcpy(buf + n, methods[i].name, len);
                n += len;
        }
        buf[n] = 0;
        return n;
}

/* RFC 3986 unreserved characters: what a path parameter may hold. */
static bool is_param_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '~';
}

bool kh_route_match(const char *pattern, const char *path, size_t len,
                    struct kh_request_target *t) {
        size_t i = 0, n = 0;
        const char *q = pattern;

        while (*q) {
                if (*q == '{') {
                        size_t start = i;
                        q = strchr(q, '}');
                        if (!q || n == KH_ROUTE_PARAMS_MAX)
                                return false;    /* a malformed row: never matches */
                        q++;
                        while (i < len && path[i] != '/') {
                                if (!is_param_char(path[i]))
                                        return false;
                                i++;
                        }
                        if (i == start || i - start > KH_ROUTE_PARAM_MAX)
                                return false;
                        t->params[n++] = (struct kh_slice) { path + start, i - start };
                        continue;
                }
                if (i == len || path[i] != *q)
                        return false;
                i++;
                q++;
        }
        if (i != len)
                return false;
        t->n_params = n;
        return true;
}

int kh_http_target_parse(const char *path, size_t len, struct kh_request_target *ret) {
        const char *rest = path, *slash;
        size_t rest_len = len;

        if (len > KH_PATH_MAX)
                return -KH_E_URI_TOO_LONG;
        *ret = (struct kh_request_target) { 0 };

        if (len >= 3 && memcmp(path, "/t/", 3) == 0) {
                slash = memchr(path + 3, '/', len - 3);
                ret->tenant = path + 3;
                ret->tenant_len = slash ? (size_t) (slash - path - 3) : len - 3;
                if (!kh_tenant_id_is_valid(ret->tenant, ret->tenant_len)) {
                        ret->tenant = NULL;
                        ret->tenant_len = 0;
                        return -KH_E_UNKNOWN_TENANT;
                }
                rest = path + 3 + ret->tenant_len;
                rest_len = len - 3 - ret->tenant_len;
        }

        for (size_t i = 0; i < KH_ELEMENTSOF(routes); i++) {
                if (ret->tenant && routes[i].scope != KH_SCOPE_TENANT)
                        continue;
                if (kh_route_match(routes[i].pattern, rest, rest_len, ret)) {
                        ret->route = &routes[i];
                        return 0;
                }
        }
        ret->n_params = 0;
        return -KH_E_NOT_FOUND;
}
