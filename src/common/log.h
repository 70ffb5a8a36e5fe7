/* Logging, for daemon/ and cli/ and the one HTTP error-reply function only. Library code
 * returns errors instead. Never pass a token, body, key or passphrase.
 *
 * Lines go to stderr, one write each, in one of two formats (kh_log_set_format()):
 *   text  "2024-05-01T12:00:00.000Z info message", with " (request R)" when a request id is
 *         known; the tenant, where it matters, is in the message itself;
 *   json  one object per line, always the same five fields in this order:
 *         {"time": "2024-05-01T12:00:00.000Z", "level": "debug|info|warning|error",
 *          "message": "...", "tenant": "acme" | null, "request_id": "..." | null}
 *         (docs/configuration.md, [server] log_format).
 * When stderr is the journal (kh_log_set_journal()), each line starts with the sd-daemon
 * priority prefix "<3>" (error), "<4>" (warning), "<6>" (info) or "<7>" (debug), which
 * journald takes as the entry's priority and strips; text lines then carry no time stamp
 * (the journal stamps every entry). */
#pragma once

#include <stdbool.h>

enum kh_log_level { KH_LOG_DEBUG, KH_LOG_INFO, KH_LOG_WARNING, KH_LOG_ERROR };
enum kh_log_format { KH_LOG_TEXT, KH_LOG_JSON };

void kh_log_set_level(enum kh_log_level level);
void kh_log_set_format(enum kh_log_format format);
void kh_log_set_journal(bool journal);

/* A line with what it concerns: tenant and request_id may each be NULL (unknown). */
void kh_log_ctx(enum kh_log_level level, const char *tenant, const char *request_id,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define kh_log(level, ...) kh_log_ctx((level), NULL, NULL, __VA_ARGS__)
#define kh_log_debug(...) kh_log(KH_LOG_DEBUG, __VA_ARGS__)
#define kh_log_info(...) kh_log(KH_LOG_INFO, __VA_ARGS__)
#define kh_log_warning(...) kh_log(KH_LOG_WARNING, __VA_ARGS__)
#define kh_log_error(...) kh_log(KH_LOG_ERROR, __VA_ARGS__)
