/* The web console's files (console/), built into keyholdd by console/embed.py: the console
 * is served from the binary, with nothing on disk and no Node at run time (docs/console.md). */
#pragma once

#include <stddef.h>

struct kh_console_file {
        const char *name; /* "index.html": the last path segment under console/ */
        const char *content_type;
        const unsigned char *bytes;
        size_t len;
        const char *etag; /* strong, quoted: the start of the bytes' SHA-256 */
};

extern const struct kh_console_file kh_console_files[];
extern const size_t kh_console_n_files;
