/* Every resource a client or the environment can make keyhold allocate has a named bound
 * here. The configuration may lower a limit, never raise it. */
#pragma once

#define KH_HEADER_MAX        (8 * 1024)   /* one request's headers, bytes */
#define KH_HEADER_COUNT_MAX  64           /* headers per request */
#define KH_PATH_MAX          1024         /* request path, bytes */
#define KH_BODY_MAX          (4 * 1024)   /* request body, bytes */
#define KH_TOKEN_MAX         (16 * 1024)  /* bearer token, bytes */
#define KH_JWKS_MAX          (256 * 1024) /* discovery document or JWKS, bytes */
#define KH_JWKS_KEYS_MAX     64           /* keys kept from one JWKS */
#define KH_TOKEN_CACHE_MAX   16384        /* verified tokens cached per worker */
#define KH_JWKS_REFRESH_MIN_INTERVAL_S 30 /* unknown kid: at most one JWKS fetch per interval */
#define KH_JWKS_REFRESH_DEFAULT_S 300     /* periodic JWKS refresh ([tenant.*] jwks_refresh) */
#define KH_JWKS_RETRY_S      60           /* after a failed refresh, look again this soon */
#define KH_CLOCK_SKEW_S      300          /* exp/nbf leeway, as ASP.NET's default */
#define KH_TOKEN_LIFETIME_DEFAULT_S 86400 /* [tenant.*] max_token_lifetime: longest "exp - now" */
#define KH_TOKEN_LIFETIME_MAX_S 315360000 /* the largest cap one may configure (10 years) */
#define KH_TENANTS_MAX       256
#define KH_TENANT_ID_MAX     63           /* [a-z0-9][a-z0-9-]{0,62} */
#define KH_CORS_ORIGINS_MAX  16
#define KH_ADMIN_MATCHERS_MAX 16          /* CLAIM:VALUE matchers of a tenant's admins */
#define KH_CLAIM_NAME_MAX    64           /* bytes of a claim name in a matcher */
#define KH_LISTEN_MAX        8            /* listen addresses */
#define KH_THREADS_MAX       256
#define KH_USER_KEY_LEN      32           /* Bitwarden key connector key */
#define KH_DEK_LEN           32           /* AES-256 */
#define KH_MASTER_KEY_LEN    32           /* the file key store's master key */
#define KH_WRAPPED_DEK_MAX   1024         /* RSA-8192 OAEP output is 1024 bytes */
#define KH_SEALED_MAX        4096         /* one sealed record */
#define KH_GUID_LEN          36           /* 8-4-4-4-12 */
#define KH_IMPORT_BATCH_MAX  256          /* member keys in one import request */
#define KH_CONFIG_VALUE_MAX  4096
/* `keyhold import bitwarden-kc` (import/kc-source.h): what one Key Connector source may hold */
#define KH_KC_RECORDS_MAX    10000000     /* user-key rows */
#define KH_KC_DATA_KEYS_MAX  1000         /* ApplicationDatas rows (normally 1, 2 after a race) */
#define KH_KC_JSON_MAX       ((size_t) 4 << 30) /* a JSON source file, bytes (4 GiB) */
#define KH_KC_KEY_TEXT_MAX   (64 * 1024)  /* base64 text of one Key or SymmetricKey */
#define KH_KC_ID_MAX         255          /* bytes of an Id kept for the report (a GUID is 36) */
