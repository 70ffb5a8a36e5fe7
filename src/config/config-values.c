#include "config-values.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse.h"

/* One entry of a comma-separated list, with spaces and tabs around it removed. */
struct item {
        const char *p;
        size_t len;
};

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

/* Splits value at ',' into at most max items. Returns the number of items, or -EINVAL with
 * *ret_reason too_many (more than max) or malformed (an empty entry). */
static int split_list(const char *value, struct item *items, size_t max, const char *too_many,
                      const char *malformed, const char **ret_reason) {
        size_t n = 0;
        const char *p = value;

        for (;;) {
                const char *end = strchr(p, ',');
                const char *stop = end ? end : p + strlen(p);
                const char *s = p;

                while (s < stop && is_blank(*s))
                        s++;
                while (stop > s && is_blank(stop[-1]))
                        stop--;
                if (s == stop) {
                        *ret_reason = malformed;
                        return -EINVAL;
                }
                if (n == max) {
                        *ret_reason = too_many;
                        return -EINVAL;
                }
                items[n].p = s;
                items[n].len = (size_t) (stop - s);
                n++;
                if (!end)
                        return (int) n;
                p = end + 1;
        }
}

/* s[0..len) is a numeric address of family af (AF_INET or AF_INET6). */
static bool ip_is_valid(int af, const char *s, size_t len) {
        char buf[INET6_ADDRSTRLEN];
        struct in6_addr a; /* room for either */

        if (len >= sizeof(buf))
                return false;
        memcpy(buf, s, len);
        buf[len] = 0;
        return inet_pton(af, buf, &a) == 1;
}

static int listen_item_parse(const struct item *it, struct kh_config_listen *out,
                             const char **ret_reason) {
        const char *host, *port;
        size_t host_len, port_len;
        uint64_t v;

        if (it->p[0] == '[') {
                const char *close = memchr(it->p, ']', it->len);
                if (!close || close + 1 == it->p + it->len || close[1] != ':') {
                        *ret_reason = "must be host:port, an IPv6 address as [::1]:8443";
                        return -EINVAL;
                }
                host = it->p + 1;
                host_len = (size_t) (close - host);
                port = close + 2;
                if (!ip_is_valid(AF_INET6, host, host_len)) {
                        *ret_reason = "the host in brackets must be a numeric IPv6 address";
                        return -EINVAL;
                }
        } else {
                const char *colon = NULL;
                for (size_t i = 0; i < it->len; i++)
                        if (it->p[i] == ':')
                                colon = it->p + i;
                if (!colon) {
                        *ret_reason = "must be host:port, e.g. 127.0.0.1:8443";
                        return -EINVAL;
                }
                host = it->p;
                host_len = (size_t) (colon - host);
                port = colon + 1;
                if (memchr(host, ':', host_len)) {
                        *ret_reason = "an IPv6 address must be in brackets, e.g. [::1]:8443";
                        return -EINVAL;
                }
                bool localhost = host_len == strlen("localhost") &&
                                 memcmp(host, "localhost", host_len) == 0;
                if (!localhost && !ip_is_valid(AF_INET, host, host_len)) {
                        *ret_reason = "the host must be a numeric IPv4 address, [IPv6] or "
                                      "localhost";
                        return -EINVAL;
                }
        }
        port_len = (size_t) (it->p + it->len - port);
        if (kh_parse_u64(port, port_len, UINT16_MAX, &v) < 0) {
                *ret_reason = "the port must be a number between 0 and 65535";
                return -EINVAL;
        }
        /* Both forms were checked by inet_pton against buffers smaller than host[]. */
        memcpy(out->host, host, host_len);
        out->host[host_len] = 0;
        out->port = (uint16_t) v;
        return 0;
}

int kh_config_listen_parse(const char *value, struct kh_config_listen out[static KH_LISTEN_MAX],
                           size_t *ret_n, const char **ret_reason) {
        struct kh_config_listen parsed[KH_LISTEN_MAX] = { 0 };
        struct item items[KH_LISTEN_MAX];
        int n, r;

        n = split_list(value, items, KH_LISTEN_MAX, "at most 8 listen addresses",
                       "must be host:port, comma-separated, without empty entries", ret_reason);
        if (n < 0)
                return n;
        for (int i = 0; i < n; i++) {
                r = listen_item_parse(&items[i], &parsed[i], ret_reason);
                if (r < 0)
                        return r;
        }
        memcpy(out, parsed, sizeof(parsed));
        *ret_n = (size_t) n;
        return 0;
}

static bool is_host_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

/* http(s)://host[:port], the trailing '/' already removed. */
static int origin_item_check(const char *s, size_t len, const char **ret_reason) {
        static const char *const form = "must be an origin: http(s)://host[:port], no path";
        size_t i;
        uint64_t v;

        if (len > 8 && memcmp(s, "https://", 8) == 0)
                i = 8;
        else if (len > 7 && memcmp(s, "http://", 7) == 0)
                i = 7;
        else {
                *ret_reason = "must start with http:// or https:// (lower case)";
                return -EINVAL;
        }

        if (s[i] == '[') {
                const char *close = memchr(s + i, ']', len - i);
                if (!close || !ip_is_valid(AF_INET6, s + i + 1, (size_t) (close - s - i - 1))) {
                        *ret_reason = form;
                        return -EINVAL;
                }
                i = (size_t) (close - s) + 1;
        } else {
                size_t start = i;
                for (; i < len && s[i] != ':'; i++) {
                        if (s[i] >= 'A' && s[i] <= 'Z') {
                                *ret_reason = "the host must be lower case, as browsers send it";
                                return -EINVAL;
                        }
                        if (!is_host_char(s[i])) {
                                *ret_reason = form;
                                return -EINVAL;
                        }
                }
                if (i == start) {
                        *ret_reason = form;
                        return -EINVAL;
                }
        }
        if (i == len)
                return 0;
        if (s[i] != ':' || kh_parse_u64(s + i + 1, len - i - 1, UINT16_MAX, &v) < 0 || v == 0) {
                *ret_reason = "must be an origin: http(s)://host[:port], port 1..65535, no path";
                return -EINVAL;
        }
        return 0;
}

int kh_config_origins_parse(const char *value, char *out[static KH_CORS_ORIGINS_MAX],
                            size_t *ret_n, const char **ret_reason) {
        char *parsed[KH_CORS_ORIGINS_MAX] = { 0 };
        struct item items[KH_CORS_ORIGINS_MAX];
        int n, r = 0;

        n = split_list(value, items, KH_CORS_ORIGINS_MAX, "at most 16 origins",
                       "must be origins, comma-separated, without empty entries", ret_reason);
        if (n < 0)
                return n;
        for (int i = 0; i < n; i++) {
                size_t len = items[i].len;

                if (items[i].p[len - 1] == '/')
                        len--;
                r = origin_item_check(items[i].p, len, ret_reason);
                if (r < 0)
                        break;
                parsed[i] = strndup(items[i].p, len);
                if (!parsed[i]) {
                        r = -ENOMEM;
                        break;
                }
        }
        if (r < 0) {
                for (int i = 0; i < n; i++)
                        free(parsed[i]);
                return r;
        }
        memcpy(out, parsed, sizeof(parsed));
        *ret_n = (size_t) n;
        return 0;
}

static bool is_claim_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-' || c == '.';
}

int kh_config_matchers_parse(const char *value,
                             struct kh_config_matcher out[static KH_ADMIN_MATCHERS_MAX],
                             size_t *ret_n, const char **ret_reason) {
        static const char form[] = "must be CLAIM:VALUE matchers, comma-separated "
                                   "(e.g. role:keyhold-admin, groups:security)";
        struct kh_config_matcher parsed[KH_ADMIN_MATCHERS_MAX] = { 0 };
        struct item items[KH_ADMIN_MATCHERS_MAX];
        int n, r = 0;

        n = split_list(value, items, KH_ADMIN_MATCHERS_MAX, "at most 16 matchers", form,
                       ret_reason);
        if (n < 0)
                return n;
        for (int i = 0; i < n && r == 0; i++) {
                const char *colon = memchr(items[i].p, ':', items[i].len);
                size_t claim_len = colon ? (size_t) (colon - items[i].p) : 0;
                size_t value_len = colon ? items[i].len - claim_len - 1 : 0;

                r = -EINVAL;
                if (claim_len == 0 || claim_len > KH_CLAIM_NAME_MAX || value_len == 0)
                        break;
                for (size_t j = 0; j < claim_len; j++)
                        if (!is_claim_char(items[i].p[j]))
                                goto out;
                parsed[i].claim = strndup(items[i].p, claim_len);
                parsed[i].value = strndup(colon + 1, value_len);
                r = parsed[i].claim && parsed[i].value ? 0 : -ENOMEM;
        }
out:
        if (r < 0) {
                if (r == -EINVAL)
                        *ret_reason = form;
                for (int i = 0; i < n; i++) {
                        free(parsed[i].claim);
                        free(parsed[i].value);
                }
                return r;
        }
        memcpy(out, parsed, sizeof(parsed));
        *ret_n = (size_t) n;
        return 0;
}

bool kh_config_issuer_is_valid(const char *value) {
        size_t i;

        if (strncmp(value, "https://", 8) == 0)
                i = 8;
        else if (strncmp(value, "http://", 7) == 0)
                i = 7;
        else
                return false;
        if (value[i] == 0)
                return false;
        for (; value[i]; i++)
                if (value[i] <= ' ' || value[i] > '~')
                        return false;
        return true;
}
