/* The INI file, through libinih: a reader that feeds it one line at a time (so that every
 * error has its line, and no line is split), section headers tracked here in full, each
 * key checked against its section and set once. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include <ini.h>

#include "common/parse.h"
#include "config-internal.h"

#ifndef KH_INIH_RUNTIME_OPTIONS
#define KH_INIH_RUNTIME_OPTIONS 0
#endif

static void section_enter(struct kh_cfg_ctx *c, const char *name, size_t len) {
        static const char *const fixed[] = {
                [S_SERVER] = "server", [S_STORAGE] = "storage", [S_KEYSTORE] = "keystore"
        };
        int r;

        for (size_t s = 0; s < KH_ELEMENTSOF(fixed); s++)
                if (strlen(fixed[s]) == len && memcmp(fixed[s], name, len) == 0) {
                        c->sect = (enum sect) s;
                        return;
                }
        if (len > 7 && memcmp(name, "tenant.", 7) == 0) {
                if (!kh_tenant_id_is_valid(name + 7, len - 7)) {
                        (void) kh_cfg_fail(c, c->line, name, len,
                                           "a tenant id is 1 to 63 characters of a-z, 0-9 and '-', "
                                           "not starting with '-'");
                        return;
                }
                r = kh_cfg_tenant_get(c, name + 7, len - 7, &c->tenant);
                if (r == -E2BIG)
                        (void) kh_cfg_fail(c, c->line, name, len, "at most 256 tenants");
                else if (r < 0)
                        c->r = r;
                else {
                        c->sect = S_TENANT;
                        if (c->tenant_origins[c->tenant].section_line == 0)
                                c->tenant_origins[c->tenant].section_line = c->line;
                }
                return;
        }
        (void) kh_cfg_fail(c, c->line, name, len,
                           "unknown section (expected server, storage, keystore or tenant.<id>)");
}

/* Sees section headers exactly as inih does: "[", then up to "]" unless an inline comment
 * (whitespace then ';') comes first, in which case inih reports the line as malformed. */
static void track_section(struct kh_cfg_ctx *c, const char *line) {
        const char *s = line, *e;
        bool was_space = false;

        while (isspace((unsigned char) *s))
                s++;
        if (*s != '[')
                return;
        for (e = s + 1; *e && *e != ']' && !(was_space && *e == ';'); e++)
                was_space = isspace((unsigned char) *e);
        if (*e == ']')
                section_enter(c, s + 1, (size_t) (e - s - 1));
}

/* An fgets()-like reader over the text, one line per call, so that c->line is the line inih
 * is on. Lines longer than inih's buffer would be split silently; they are refused. */
static char *ini_read_line(char *str, int num, void *stream) {
        struct kh_cfg_ctx *c = stream;
        size_t n = 0, cap;
        char label[128];

        if (c->r < 0 || c->pos >= c->len || num < 4)
                return NULL;
        cap = (size_t) num - 1;
        c->line++;
        if (c->line == 1 && c->len >= 3 && memcmp(c->text, "\xEF\xBB\xBF", 3) == 0)
                c->pos = 3; /* UTF-8 byte order mark */
        while (c->pos < c->len) {
                char ch = c->text[c->pos];

                if (ch == 0 || n == cap) {
                        kh_cfg_section_label(c, c->sect, c->tenant, label);
                        if (ch == 0)
                                (void) kh_cfg_fail(c, c->line, label, strlen(label),
                                                   "contains a NUL byte");
                        else
                                (void) kh_cfg_fail(c, c->line, label, strlen(label),
                                                   "line is longer than %zu bytes", cap - 2);
                        return NULL;
                }
                str[n++] = ch;
                c->pos++;
                if (ch == '\n')
                        break;
        }
        str[n] = 0;
        track_section(c, str);
        return c->r < 0 ? NULL : str;
}

static int on_ini_key(void *user, const char *section, const char *name, const char *value) {
        struct kh_cfg_ctx *c = user;
        const char *reason = NULL;
        struct kh_cfg_origin *o;
        char label[128];
        size_t k;
        int r;

        (void) section; /* truncated by inih past 49 bytes; c->sect is exact */
        if (c->r < 0)
                return 0;
        if (c->sect == S_NONE) {
                (void) kh_cfg_fail(c, c->line, name, strlen(name), "key outside of a [section]");
                return 0;
        }
        kh_cfg_key_label(c, c->sect, c->tenant, name, label);
        for (k = 0; k < kh_cfg_sections[c->sect].n_keys; k++)
                if (strcmp(kh_cfg_sections[c->sect].keys[k], name) == 0)
                        break;
        if (k == kh_cfg_sections[c->sect].n_keys) {
                (void) kh_cfg_fail(c, c->line, label, strlen(label), "unknown key");
                return 0;
        }
        if (c->sect == S_KEYSTORE && k == KS_PASSPHRASE) {
                (void) kh_cfg_fail(c, c->line, label, strlen(label),
                                   "secrets don't belong in config files: set "
                                   "KEYHOLD_KEYSTORE_PASSPHRASE in the environment instead");
                return 0;
        }
        o = kh_cfg_origin_of(c, c->sect, c->tenant, k);
        if (o->line) {
                (void) kh_cfg_fail(c, c->line, label, strlen(label),
                                   "duplicate key (first set on line %u)", o->line);
                return 0;
        }
        r = kh_cfg_apply(c, c->sect, c->tenant, k, value, &reason);
        if (r == -EINVAL) {
                (void) kh_cfg_fail(c, c->line, label, strlen(label), "%s", reason);
                return 0;
        }
        if (r < 0) {
                c->r = r;
                return 0;
        }
        o->line = c->line;
        return 1;
}

static void inih_configure(void) {
#if KH_INIH_RUNTIME_OPTIONS
        /* Debian's libinih turns its compile-time options into globals. Values up to
         * KH_CONFIG_VALUE_MAX need a longer line than the default 200 bytes; multi-line values
         * would make an indented line part of the previous value, which nobody expects. */
        ini_use_stack = false;
        ini_allow_realloc = false;
        ini_max_line = KH_CONFIG_LINE_MAX;
        ini_initial_alloc = KH_CONFIG_LINE_MAX;
        ini_allow_multiline = false;
        ini_stop_on_first_error = true;
#endif
}

int kh_cfg_parse_ini(struct kh_cfg_ctx *c, const char *text, size_t len) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        char label[128];
        int r;

        (void) pthread_once(&once, inih_configure);
        c->text = text;
        c->len = len;
        c->sect = S_NONE;
        r = ini_parse_stream(ini_read_line, c, on_ini_key, c);
        if (c->r == -ENOMEM || r == -2)
                return -ENOMEM;
        /* inih reports the first malformed line; ours may be a later one. */
        if (r > 0 && (c->r == 0 || (unsigned) r < c->err->line)) {
                c->r = 0;
                /* Stopping there, inih leaves c->sect as the malformed line's section. */
                if (KH_INIH_RUNTIME_OPTIONS)
                        kh_cfg_section_label(c, c->sect, c->tenant, label);
                else
                        label[0] = 0;
                return kh_cfg_fail(c, (unsigned) r, label, strlen(label),
                                   "expected [section], key = value or a comment");
        }
        return c->r;
}
