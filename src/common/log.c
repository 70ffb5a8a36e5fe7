#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/parse.h"

#define LOG_MESSAGE_MAX 1024
/* the JSON form of a message: at most 6 bytes (\u00XX) per byte, plus the other fields
 * (a tenant id is at most 63 bytes, a request id shorter) */
#define LOG_LINE_MAX (6 * LOG_MESSAGE_MAX + 2048)

static enum kh_log_level min_level = KH_LOG_INFO;
static enum kh_log_format format = KH_LOG_TEXT;
static bool journal;

void kh_log_set_level(enum kh_log_level level) {
        min_level = level;
}

void kh_log_set_format(enum kh_log_format f) {
        format = f;
}

void kh_log_set_journal(bool on) {
        journal = on;
}

struct line {
        char text[LOG_LINE_MAX];
        size_t len;
};

static void put(struct line *l, const char *s, size_t n) {
        if (n > sizeof(l->text) - 1 - l->len)
                n = sizeof(l->text) - 1 - l->len;
        memcpy(l->text + l->len, s, n);
        l->len += n;
}

static void puts_(struct line *l, const char *s) {
        put(l, s, strlen(s));
}

/* s as a JSON string, or null. A message that is not UTF-8 (a file name's bytes) has its
 * bytes above 0x7f replaced by '?', so that every line parses. */
static void put_json_string(struct line *l, const char *s) {
        bool utf8;

        if (!s) {
                puts_(l, "null");
                return;
        }
        utf8 = kh_utf8_is_valid(s, strlen(s));
        puts_(l, "\"");
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                char esc[8];

                if (*p == '"' || *p == '\\') {
                        esc[0] = '\\';
                        esc[1] = (char) *p;
                        put(l, esc, 2);
                } else if (*p < 0x20 || *p == 0x7f) {
                        put(l, esc, (size_t) snprintf(esc, sizeof(esc), "\\u%04x", *p));
                } else if (*p >= 0x80 && !utf8) {
                        puts_(l, "?");
                } else {
                        put(l, (const char *) p, 1);
                }
        }
        puts_(l, "\"");
}

void kh_log_ctx(enum kh_log_level level, const char *tenant, const char *request_id,
                const char *fmt, ...) {
        static const char *const names[] = { "debug", "info", "warning", "error" };
        static const char *const priorities[] = { "<7>", "<6>", "<4>", "<3>" };
        char message[LOG_MESSAGE_MAX], stamp[48], day[32];
        struct line l = { .len = 0 };
        struct timespec ts;
        struct tm tm;
        va_list ap;

        if (level < min_level)
                return;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        (void) gmtime_r(&ts.tv_sec, &tm);
        (void) strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
        (void) snprintf(stamp, sizeof(stamp), "%s.%03ldZ", day, ts.tv_nsec / 1000000);
        va_start(ap, fmt);
        (void) vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);

        if (journal)
                puts_(&l, priorities[level]);
        if (format == KH_LOG_JSON) {
                puts_(&l, "{\"time\":\"");
                puts_(&l, stamp);
                puts_(&l, "\",\"level\":\"");
                puts_(&l, names[level]);
                puts_(&l, "\",\"message\":");
                put_json_string(&l, message);
                puts_(&l, ",\"tenant\":");
                put_json_string(&l, tenant);
                puts_(&l, ",\"request_id\":");
                put_json_string(&l, request_id);
                puts_(&l, "}");
        } else {
                if (!journal) {
                        puts_(&l, stamp);
                        puts_(&l, " ");
                }
                puts_(&l, names[level]);
                puts_(&l, " ");
                puts_(&l, message);
                if (request_id) {
                        puts_(&l, " (request ");
                        puts_(&l, request_id);
                        puts_(&l, ")");
                }
        }
        puts_(&l, "\n");
        /* one write per line, so lines from several threads do not interleave */
        (void) fwrite(l.text, 1, l.len, stderr);
}
