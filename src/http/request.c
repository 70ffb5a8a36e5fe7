#include "request.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "common/errors.h"
#include "common/limits.h"
#include "common/parse.h"

/* Whether line[0..len) is the field name (case-insensitive) followed by ':' (RFC 9112 5.1:
 * no whitespace between name and colon; a line with some is not that field, and h2o has
 * refused it already). */
static bool is_field(const char *line, size_t len, const char *name) {
        size_t n = strlen(name);

        return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

int kh_http_framing_check(const char *head, size_t len) {
        const char *p = head, *end = head + len;
        size_t content_lengths = 0, transfer_encodings = 0;
        bool first = true;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t line = (size_t) ((nl ? nl : end) - p);

                if (line > 0 && p[line - 1] == '\r')
                        line--;
                if (!first && line == 0)
                        break;                      /* the empty line ends the head */
                if (!first) {
                        /* the two names start differently: one compare per line */
                        if ((*p | 0x20) == 'c' && is_field(p, line, "content-length"))
                                content_lengths++;
                        else if ((*p | 0x20) == 't' && is_field(p, line, "transfer-encoding"))
                                transfer_encodings++;
                }
                first = false;
                if (!nl)
                        break;
                p = nl + 1;
        }
        if (transfer_encodings && !content_lengths)
                return -KH_E_LENGTH_REQUIRED;
        if (transfer_encodings || content_lengths > 1)
                return -KH_E_AMBIGUOUS_FRAMING;
        return 0;
}

/* RFC 7235 token68: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", then "=" padding.
 * A table, because this runs over every byte of every token on the hot path. */
#define T68(c) [(unsigned char) (c)] = 1
static const uint8_t token68_char[256] = {
        T68('-'), T68('.'), T68('_'), T68('~'), T68('+'), T68('/'),
        T68('0'), T68('1'), T68('2'), T68('3'), T68('4'), T68('5'), T68('6'), T68('7'), T68('8'), T68('9'),
        T68('A'), T68('B'), T68('C'), T68('D'), T68('E'), T68('F'), T68('G'), T68('H'), T68('I'), T68('J'),
        T68('K'), T68('L'), T68('M'), T68('N'), T68('O'), T68('P'), T68('Q'), T68('R'), T68('S'), T68('T'),
        T68('U'), T68('V'), T68('W'), T68('X'), T68('Y'), T68('Z'),
        T68('a'), T68('b'), T68('c'), T68('d'), T68('e'), T68('f'), T68('g'), T68('h'), T68('i'), T68('j'),
        T68('k'), T68('l'), T68('m'), T68('n'), T68('o'), T68('p'), T68('q'), T68('r'), T68('s'), T68('t'),
        T68('u'), T68('v'), T68('w'), T68('x'), T68('y'), T68('z'),
};
#undef T68

/* The "=" padding is stripped from the end first, so that the rest can be checked without
 * a branch per byte: a bearer token is about a kilobyte, and this runs for every request. */
static bool is_token68(const char *p, size_t len) {
        const unsigned char *u = (const unsigned char *) p;
        unsigned ok = 1;
        size_t i = 0;

        while (len > 0 && u[len - 1] == '=')
                len--;
        for (; i + 8 <= len; i += 8)
                ok &= token68_char[u[i]] & token68_char[u[i + 1]] & token68_char[u[i + 2]] &
                      token68_char[u[i + 3]] & token68_char[u[i + 4]] &
                      token68_char[u[i + 5]] & token68_char[u[i + 6]] & token68_char[u[i + 7]];
        for (; i < len; i++)
                ok &= token68_char[u[i]];
        return ok != 0;
}

int kh_http_bearer_parse(const char *authz, size_t len, const char **ret_token, size_t *ret_len) {
        static const char bearer[] = "Bearer ";
        const size_t n = sizeof(bearer) - 1;
        const char *token;

        if (!authz || len <= n || strncasecmp(authz, bearer, n) != 0)
                return -KH_E_MISSING_TOKEN;
        token = authz + n;
        len -= n;
        while (len > 0 && *token == ' ') {
                token++;
                len--;
        }
        if (len == 0)
                return -KH_E_MISSING_TOKEN;
        if (len > KH_TOKEN_MAX || !is_token68(token, len))
                return -KH_E_INVALID_TOKEN;
        *ret_token = token;
        *ret_len = len;
        return 0;
}

int kh_http_query_parse(const char *q, size_t len, struct kh_query_param *params, size_t n) {
        const char *p = q, *end = q + len;

        for (size_t i = 0; i < n; i++)
                params[i].present = false;
        while (p < end) {
                const char *amp = memchr(p, '&', (size_t) (end - p));
                const char *pair_end = amp ? amp : end;
                const char *eq = memchr(p, '=', (size_t) (pair_end - p));
                struct kh_query_param *param = NULL;

                if (!eq)
                        return -KH_E_INVALID_PARAMETER;
                for (size_t i = 0; i < n; i++)
                        if (strlen(params[i].name) == (size_t) (eq - p) &&
                            memcmp(params[i].name, p, (size_t) (eq - p)) == 0)
                                param = &params[i];
                if (!param || param->present)
                        return -KH_E_INVALID_PARAMETER;
                if (param->token_max) {
                        size_t vlen = (size_t) (pair_end - (eq + 1));

                        if (vlen == 0 || vlen > param->token_max)
                                return -KH_E_INVALID_PARAMETER;
                        for (size_t i = 0; i < vlen; i++) {
                                char c = eq[1 + i];

                                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                      c == '-' || c == '.' || c == '_'))
                                        return -KH_E_INVALID_PARAMETER;
                        }
                        param->token = eq + 1;
                        param->token_len = vlen;
                } else if (param->name_max) {
                        size_t vlen = (size_t) (pair_end - (eq + 1));

                        if (vlen == 0 || vlen > param->name_max || vlen >= sizeof(param->text) ||
                            eq[1] == '-')
                                return -KH_E_INVALID_PARAMETER;
                        for (size_t i = 0; i < vlen; i++) {
                                char c = eq[1 + i];

                                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
                                        return -KH_E_INVALID_PARAMETER;
                        }
                        memcpy(param->text, eq + 1, vlen);
                        param->text[vlen] = '\0';
                } else if (pair_end - (eq + 1) > 20 ||
                           kh_parse_u64(eq + 1, (size_t) (pair_end - (eq + 1)), param->max,
                                        &param->value) < 0) {
                        return -KH_E_INVALID_PARAMETER;
                }
                param->present = true;
                if (!amp)
                        break;
                p = amp + 1;
                if (p == end)
                        return -KH_E_INVALID_PARAMETER;  /* a trailing '&' */
        }
        return 0;
}
