#include "errors.h"

#include <string.h>

static const struct kh_err_info infos[] = {
#define KH_ERR(name, status, code, message) [name - KH_E_FIRST_ - 1] = { status, code, message },
#include "errors.def"
#undef KH_ERR
};

static const struct kh_err_info internal = { 500, "internal_error", "An internal error occurred." };

const struct kh_err_info *kh_err_info(int r) {
        int e = -r;

        if (e > KH_E_FIRST_ && e < KH_E_LAST_)
                return &infos[e - KH_E_FIRST_ - 1];
        return &internal;
}

const char *kh_strerror(int r) {
        int e = -r;

        if (e > KH_E_FIRST_ && e < KH_E_LAST_)
                return infos[e - KH_E_FIRST_ - 1].code;
        if (e <= 0)
                return "unknown error";
        return strerrordesc_np(e) ? strerrordesc_np(e) : "unknown error";
}
