/* Errors: functions return >= 0 on success, -errno or -KH_E_* on failure. */
#pragma once

enum kh_err {
        KH_E_FIRST_ = 4096, /* above every errno, so -r tells them apart */
#define KH_ERR(name, status, code, message) name,
#include "errors.def"
#undef KH_ERR
        KH_E_LAST_
};

struct kh_err_info {
        int status;          /* HTTP status */
        const char *code;    /* machine-readable, stable */
        const char *message; /* human text, never contains request data */
};

/* The client-facing description of r (negative). Anything that is not a keyhold error
 * (-EIO, -ENOMEM, a bug) maps to 500 internal_error. Never returns NULL. */
const struct kh_err_info *kh_err_info(int r);

/* Text for logs: the keyhold message or strerror(-r). Thread-safe, static storage. */
const char *kh_strerror(int r);
