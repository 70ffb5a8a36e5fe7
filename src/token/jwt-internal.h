/* struct kh_jwt, shared by jwt.c and jwt-claims.c only. */
#pragma once

#include <jansson.h>

#include "common/buf.h"
#include "crypto/hash.h"
#include "token/jwt.h"

struct kh_jwt {
        enum kh_jwt_alg alg;
        const char *kid;   /* inside header, or NULL */
        json_t *header;    /* JSON object */
        json_t *payload;   /* JSON object */
        char *text;        /* the signing input "header.payload", NUL-terminated; wiped */
        size_t text_len;
        struct kh_buf sig; /* decoded signature */
        uint8_t token_hash[KH_SHA256_LEN];
};

/* KH_JWT_ALG_NONE unless name is exactly one of the accepted algorithm names. */
enum kh_jwt_alg kh_jwt_alg_from_name(const char *name);
