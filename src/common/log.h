/* Logging, for daemon/ and cli/ and the one HTTP error-reply function only. Library code
 * returns errors instead. Lines go to stderr as "time level message"; never pass a token,
 * body, key or passphrase. */
#pragma once

enum kh_log_level { KH_LOG_DEBUG, KH_LOG_INFO, KH_LOG_WARNING, KH_LOG_ERROR };

void kh_log_set_level(enum kh_log_level level);
void kh_log(enum kh_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define kh_log_debug(...) kh_log(KH_LOG_DEBUG, __VA_ARGS__)
#define kh_log_info(...) kh_log(KH_LOG_INFO, __VA_ARGS__)
#define kh_log_warning(...) kh_log(KH_LOG_WARNING, __VA_ARGS__)
#define kh_log_error(...) kh_log(KH_LOG_ERROR, __VA_ARGS__)
