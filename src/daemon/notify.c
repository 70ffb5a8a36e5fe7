#include "notify.h"

#if KH_WITH_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

bool kh_notify_supported(void) {
        return KH_WITH_SYSTEMD;
}

void kh_notify(const char *state) {
#if KH_WITH_SYSTEMD
        (void) sd_notify(0, state);
#else
        (void) state;
#endif
}
