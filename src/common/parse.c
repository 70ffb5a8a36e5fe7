#include "parse.h"

#include <errno.h>
#include <string.h>

#include "limits.h"

int kh_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                if (__builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t) (s[i] - '0'), &v))
                        return -ERANGE;
        }
        if (v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

int kh_parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "true", "yes", "1", "on" };
        static const char *const no[] = { "false", "no", "0", "off" };

        for (size_t i = 0; i < KH_ELEMENTSOF(yes); i++) {
                if (strcmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

int kh_parse_guid(const char *s, size_t len, char ret[static KH_GUID_BUF]) {
        char out[KH_GUID_BUF];

        if (len != KH_GUID_LEN)
                return -EINVAL;
        for (size_t i = 0; i < KH_GUID_LEN; i++) {
                char c = s[i];
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (c != '-')
                                return -EINVAL;
                } else if (c >= '0' && c <= '9') {
                        /* kept */
                } else if (c >= 'a' && c <= 'f') {
                        /* kept */
                } else if (c >= 'A' && c <= 'F') {
                        c = (char) (c - 'A' + 'a');
                } else {
                        return -EINVAL;
                }
                out[i] = c;
        }
        out[KH_GUID_LEN] = 0;
        memcpy(ret, out, sizeof(out));
        return 0;
}

bool kh_tenant_id_is_valid(const char *s, size_t len) {
        if (len == 0 || len > KH_TENANT_ID_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && c == '-');
                if (!ok)
                        return false;
        }
        return true;
}

bool kh_utf8_is_valid(const char *s, size_t len) {
        const unsigned char *p = (const unsigned char *) s;
        size_t i = 0;

        while (i < len) {
                unsigned c = p[i];
                unsigned lo = 0x80, hi = 0xbf;   /* the second byte's range */
                size_t n;

                if (c == 0)
                        return false;
                if (c < 0x80) {
                        i++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf)
                        n = 1;
                else if (c >= 0xe0 && c <= 0xef) {
                        n = 2;
                        if (c == 0xe0)
                                lo = 0xa0;       /* no overlong 3-byte forms */
                        else if (c == 0xed)
                                hi = 0x9f;       /* no surrogates */
                } else if (c >= 0xf0 && c <= 0xf4) {
                        n = 3;
                        if (c == 0xf0)
                                lo = 0x90;       /* no overlong 4-byte forms */
                        else if (c == 0xf4)
                                hi = 0x8f;       /* nothing above U+10FFFF */
                } else {
                        return false;            /* 0x80..0xc1 and 0xf5..0xff never lead */
                }
                if (len - i <= n || p[i + 1] < lo || p[i + 1] > hi)
                        return false;
                for (size_t k = 2; k <= n; k++)
                        if (p[i + k] < 0x80 || p[i + k] > 0xbf)
                                return false;
                i += n + 1;
        }
        return true;
}
