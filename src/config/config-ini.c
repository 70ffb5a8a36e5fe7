/* The INI file, through libinih: a reader that feeds it one line at a time (so that every
 * error has its line, and no line is split), section headers tracked here in full, each
 * key checked against its section and set once. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <ini.h>

#include "common/parse.h"
#include "config-readers.h"

#ifndef KH_INIH_RUNTIME_OPTIONS
#define KH_INIH_RUNTIME_OPTIONS 0
#endif

/* Room for a KH_CONFIG_VALUE_MAX value, its key and a comment. */
#define KH_CONFIG_LINE_MAX (2 * KH_CONFIG_VALUE_MAX)

/* The INI text, fed to inih one line at a time so that we know the line. */
struct ini_reader {
        struct kh_cfg_ctx *c;
        const char *text;
        size_t len, pos;
        unsigned line;
        enum sect sect; /* current section, tracked here: inih truncates long names */
        size_t tenant;  /* index of the current section's tenant */
};

static void section_enter(struct ini_reader *in, const char *name, size_t len) {
        struct kh_cfg_ctx *c = in->c;
        const char *tenant = kh_cfg_sections[S_TENANT].name;
        size_t tlen = strlen(tenant);
        int r;

        for (size_t s = 0; s < S_TENANT; s++)
                if (strlen(kh_cfg_sections[s].name) == len &&
                    memcmp(kh_cfg_sections[s].name, name, len) == 0) {
                        in->sect = (enum sect) s;
                        return;
                }
        if (len > tlen + 1 && memcmp(name, tenant, tlen) == 0 && name[tlen] == '.') {
                const char *id = name + tlen + 1;
                size_t id_len = len - tlen - 1;

                if (!kh_tenant_id_is_valid(id, id_len)) {
                        (void) kh_cfg_fail(c, in->line, name, len,
                                           "a tenant id is 1 to 63 characters of a-z, 0-9 and '-', "
                                           "not starting with '-'");
                        return;
                }
                r = kh_cfg_tenant_get(c, id, id_len, &in->tenant);
                if (r == -E2BIG)
                        (void) kh_cfg_fail(c, in->line, name, len, "at most 256 tenants");
                else if (r < 0)
                        c->r = r;
                else {
                        in->sect = S_TENANT;
                        if (c->tenant_origins[in->tenant].section_line == 0)
                                c->tenant_origins[in->tenant].section_line = in->line;
                }
                return;
        }
        (void) kh_cfg_fail(c, in->line, name, len,
                           "unknown section (expected server, storage, keystore or tenant.<id>)");
}

/* Sees section headers exactly as inih does: "[", then up to "]" unless an inline comment
 * (whitespace then ';') comes first, in which case inih reports the line as malformed. */
static void track_section(struct ini_reader *in, const char *line) {
        const char *s = line, *e;
        bool was_space = false;

        while (isspace((unsigned char) *s))
                s++;
        if (*s != '[')
                return;
        for (e = s + 1; *e && *e != ']' && !(was_space && *e == ';'); e++)
                was_space = isspace((unsigned char) *e);
        if (*e == ']')
                section_enter(in, s + 1, (size_t) (e - s - 1));
}

/* Fails naming the section the reader is in ("" before any). */
__attribute__((format(printf, 3, 4))) static int
fail_in_section(struct ini_reader *in, unsigned line, const char *fmt, ...) {
        char label[128], reason[256];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        kh_cfg_section_label(in->c, in->sect, in->tenant, label);
        return kh_cfg_fail(in->c, line, label, strlen(label), "%s", reason);
}

/* An fgets()-like reader over the text, one line per call, so that in->line is the line inih
 * is on. Lines longer than inih's buffer would be split silently; they are refused. */
static char *ini_read_line(char *str, int num, void *stream) {
        struct ini_reader *in = stream;
        size_t n = 0, cap;

        if (in->c->r < 0 || in->pos >= in->len || num < 4)
                return NULL;
        cap = (size_t) num - 1;
        in->line++;
        if (in->line == 1 && in->len >= 3 && memcmp(in->text, "\xEF\xBB\xBF", 3) == 0)
                in->pos = 3; /* UTF-8 byte order mark */
        while (in->pos < in->len) {
                char ch = in->text[in->pos];

                if (ch == 0) {
                        (void) fail_in_section(in, in->line, "contains a NUL byte");
                        return NULL;
                }
                if (n == cap) {
                        (void) fail_in_section(in, in->line, "line is longer than %zu bytes",
                                               cap - 2);
                        return NULL;
                }
                str[n++] = ch;
                in->pos++;
                if (ch == '\n')
                        break;
        }
        str[n] = 0;
        track_section(in, str);
        return in->c->r < 0 ? NULL : str;
}

/* Sets one key of the current section; inih goes on only while this returns 1. */
static int on_ini_key(void *user, const char *section, const char *name, const char *value) {
        struct ini_reader *in = user;
        struct kh_cfg_ctx *c = in->c;
        const char *reason = NULL;
        struct kh_cfg_origin *o;
        char label[128], env[128];
        int k, r;

        (void) section; /* truncated by inih past 49 bytes; in->sect is exact */
        if (c->r < 0)
                return 0;
        if (in->sect == S_NONE) {
                (void) kh_cfg_fail(c, in->line, name, strlen(name), "key outside of a [section]");
                return 0;
        }
        kh_cfg_key_label(c, in->sect, in->tenant, name, label);
        k = kh_cfg_key_find(in->sect, name, strlen(name));
        if (k < 0) {
                (void) kh_cfg_fail(c, in->line, label, strlen(label), "unknown key");
                return 0;
        }
        if (kh_cfg_keys[k].type == KH_CFG_T_SECRET) {
                kh_cfg_env_label(c, in->tenant, (enum kh_cfg_key_id) k, env);
                (void) kh_cfg_fail(c, in->line, label, strlen(label),
                                   "secrets don't belong in config files: set %s in the "
                                   "environment instead",
                                   env);
                return 0;
        }
        o = kh_cfg_origin_of(c, in->tenant, (enum kh_cfg_key_id) k);
        if (o->line) {
                (void) kh_cfg_fail(c, in->line, label, strlen(label),
                                   "duplicate key (first set on line %u)", o->line);
                return 0;
        }
        r = kh_cfg_set(c, in->tenant, (enum kh_cfg_key_id) k, value, &reason);
        if (r == -EINVAL) {
                (void) kh_cfg_fail(c, in->line, label, strlen(label), "%s", reason);
                return 0;
        }
        if (r < 0) {
                c->r = r;
                return 0;
        }
        o->line = in->line;
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

int kh_cfg_ini_read(struct kh_cfg_ctx *c, const char *text, size_t len) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        struct ini_reader in = { .c = c, .text = text, .len = len, .sect = S_NONE };
        int r;

        (void) pthread_once(&once, inih_configure);
        r = ini_parse_stream(ini_read_line, &in, on_ini_key, &in);
        if (c->r == -ENOMEM || r == -2)
                return -ENOMEM;
        /* inih reports the first malformed line; ours may be a later one. */
        if (r > 0 && (c->r == 0 || (unsigned) r < c->err->line)) {
                c->r = 0;
                /* Stopping there, inih leaves in.sect as the malformed line's section; a stock
                 * inih reads on, so the section we are in says nothing about that line. */
                if (!KH_INIH_RUNTIME_OPTIONS)
                        in.sect = S_NONE;
                return fail_in_section(&in, (unsigned) r,
                                       "expected [section], key = value or a comment");
        }
        return c->r;
}
