/* Telling the service manager how keyholdd is doing (sd_notify(3)): READY=1 once /health
 * would answer 200, STATUS= lines, STOPPING=1. A no-op without $NOTIFY_SOCKET, and in a
 * build without libsystemd (meson -Dsystemd=disabled). */
#pragma once

#include <stdbool.h>

/* Whether this build can notify at all (libsystemd was found). */
bool kh_notify_supported(void);

/* Sends state ("READY=1", "STATUS=serving", ...; several separated by newlines). */
void kh_notify(const char *state);
