#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum kh_log_level min_level = KH_LOG_INFO;

void kh_log_set_level(enum kh_log_level level) {
        min_level = level;
}

void kh_log(enum kh_log_level level, const char *fmt, ...) {
        static const char *const names[] = { "debug", "info", "warning", "error" };
        char line[1024], stamp[32];
        struct timespec ts;
        struct tm tm;
        va_list ap;

        if (level < min_level)
                return;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        (void) gmtime_r(&ts.tv_sec, &tm);
        (void) strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        va_start(ap, fmt);
        (void) vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        /* one write per line, so lines from several threads do not interleave */
        (void) fprintf(stderr, "%s.%03ldZ %s %s\n", stamp, ts.tv_nsec / 1000000, names[level], line);
}
