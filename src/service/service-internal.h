/* Fields of struct kh_service, for the service/ files only. */
#pragma once

#include "common/buf.h"
#include "service/service.h"
#include "store/store.h"
#include "token/token-cache.h"

struct kh_service {
        struct kh_app *app;
        struct kh_store *store;
        struct kh_token_cache *tokens;
        struct kh_buf blob;        /* reused for sealed records: no allocation per request */
        struct kh_service_counters counters;
};
