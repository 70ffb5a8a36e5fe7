/* The member-route client of libkeyhold: one libcurl easy handle per client, JSON with
 * jansson, the answers decoded by client-json.c. Bodies that carry keys (requests and
 * answers alike) are wiped once used. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "client-internal.h"

#define URL_MAX 2048
#define HEADER_VALUE_MAX 16384 /* a bearer token, as keyholdd's KH_TOKEN_MAX */
#define MESSAGE_MAX 512
#define CODE_MAX 64
#define CONNECT_TIMEOUT_MS 10000L
#define ORG_ID_MAX 64

struct keyhold_client {
        CURL *curl;
        char *base;       /* the url without a trailing '/' */
        char *token;      /* or NULL; wiped when freed */
        char *identifier; /* or NULL */
        char org_id[ORG_ID_MAX];
        int device_type;
        long http_status;
        char message[MESSAGE_MAX];
        char code[CODE_MAX];
        char errbuf[CURL_ERROR_SIZE];
};

/* A growable buffer for an answer, capped, wiped when freed. */
struct answer {
        char *data;
        size_t len, cap;
        bool too_big;
};

static void answer_free(struct answer *a) {
        keyhold_wipe_free(a->data, a->cap);
        *a = (struct answer) { 0 };
}

static size_t on_data(char *p, size_t size, size_t n, void *userdata) {
        struct answer *a = userdata;
        size_t len = size * n;

        if (len > KEYHOLD_CLIENT_ANSWER_MAX - a->len) {
                a->too_big = true;
                return 0;
        }
        if (a->len + len + 1 > a->cap) {
                size_t cap = a->cap ? a->cap : 4096;
                char *d;

                while (cap < a->len + len + 1)
                        cap *= 2;
                d = malloc(cap);
                if (!d)
                        return 0;
                if (a->data)
                        memcpy(d, a->data, a->len);
                keyhold_wipe_free(a->data, a->cap);
                a->data = d;
                a->cap = cap;
        }
        memcpy(a->data + a->len, p, len);
        a->len += len;
        a->data[a->len] = 0;
        return len;
}

/* Characters a header value may hold here: visible ASCII (a token68, a GUID). */
static bool header_safe(const char *s) {
        size_t n = strnlen(s, HEADER_VALUE_MAX + 1);

        if (n == 0 || n > HEADER_VALUE_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] <= 0x20 || s[i] >= 0x7f)
                        return false;
        return true;
}

/* https://, or http:// to a loopback host; no query or fragment; not too long. */
static bool url_acceptable(const char *url) {
        static const char *const loopback[] = { "localhost", "127.", "[::1]" };
        const char *host;

        if (strnlen(url, URL_MAX) >= URL_MAX || strpbrk(url, "?# \t\r\n"))
                return false;
        if (strncasecmp(url, "https://", 8) == 0)
                return url[8] != 0;
        if (strncasecmp(url, "http://", 7) != 0)
                return false;
        host = url + 7;
        for (size_t i = 0; i < KHL_ELEMENTSOF(loopback); i++) {
                size_t n = strlen(loopback[i]);
                if (strncasecmp(host, loopback[i], n) == 0 &&
                    (loopback[i][n - 1] == '.' || host[n] == 0 || host[n] == ':' ||
                     host[n] == '/'))
                        return true;
        }
        return false;
}

/* The tenant id of a url whose path ends in /t/ID, else "default". */
static void org_from_url(const char *base, char out[static ORG_ID_MAX]) {
        const char *t = NULL;

        for (const char *p = strstr(base, "/t/"); p; p = strstr(p + 1, "/t/"))
                t = p + 3;
        if (t && *t && !strchr(t, '/') && strlen(t) < ORG_ID_MAX)
                (void) snprintf(out, ORG_ID_MAX, "%s", t);
        else
                (void) snprintf(out, ORG_ID_MAX, "default");
}

void keyhold_client_free(struct keyhold_client *c) {
        if (!c)
                return;
        if (c->curl)
                curl_easy_cleanup(c->curl);
        if (c->token)
                keyhold_wipe_free(c->token, strlen(c->token));
        free(c->base);
        free(c->identifier);
        free(c);
}
KHL_DEFINE_CLEANUP(keyhold_client_free, struct keyhold_client *)

int keyhold_client_new(const struct keyhold_client_options *o, struct keyhold_client **ret) {
        KHL_CLEANUP(keyhold_client_freep) struct keyhold_client *c = NULL;
        size_t len;

        if (!o || !ret || !o->url || !url_acceptable(o->url))
                return KEYHOLD_E_INVALID;
        if ((o->token && !header_safe(o->token)) ||
            (o->device_identifier && !header_safe(o->device_identifier)) ||
            (o->organization_id && (!header_safe(o->organization_id) ||
                                    strlen(o->organization_id) >= ORG_ID_MAX)) ||
            o->device_type < 0 || o->timeout_ms < 0)
                return KEYHOLD_E_INVALID;
        c = calloc(1, sizeof(*c));
        if (!c)
                return KEYHOLD_E_NOMEM;
        len = strlen(o->url);
        while (len > 0 && o->url[len - 1] == '/')
                len--;
        c->base = strndup(o->url, len);
        c->token = o->token ? strdup(o->token) : NULL;
        c->identifier = o->device_identifier ? strdup(o->device_identifier) : NULL;
        if (!c->base || (o->token && !c->token) || (o->device_identifier && !c->identifier))
                return KEYHOLD_E_NOMEM;
        c->device_type = o->device_type ? o->device_type : KEYHOLD_DEVICE_TYPE_LINUX_CLI;
        if (o->organization_id)
                (void) snprintf(c->org_id, sizeof(c->org_id), "%s", o->organization_id);
        else
                org_from_url(c->base, c->org_id);

        c->curl = curl_easy_init(); /* initialises libcurl if the program has not */
        if (!c->curl)
                return KEYHOLD_E_NOMEM;
        /* Each value is valid; a failure would show in curl_easy_perform(). */
        (void) curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
        (void) curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        (void) curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L); /* no redirect takes the token */
        (void) curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
        (void) curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS,
                                o->timeout_ms ? o->timeout_ms : KEYHOLD_CLIENT_TIMEOUT_MS_DEFAULT);
        (void) curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "libkeyhold");
        (void) curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
        (void) curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 1L);
        (void) curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 2L);
        (void) curl_easy_setopt(c->curl, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
        if (o->cacert) {
                /* this file's CAs and no others: not the system bundle, nor its folder */
                (void) curl_easy_setopt(c->curl, CURLOPT_CAINFO, o->cacert);
                (void) curl_easy_setopt(c->curl, CURLOPT_CAPATH, NULL);
        }
        *ret = KHL_TAKE_PTR(c);
        return KEYHOLD_OK;
}

int keyhold_client_http_status(const struct keyhold_client *c) {
        return c ? (int) c->http_status : 0;
}

const char *keyhold_client_error_message(const struct keyhold_client *c) {
        return c ? c->message : "";
}

const char *keyhold_client_error_code(const struct keyhold_client *c) {
        return c ? c->code : "";
}

/* A message made here (no answer, or not the documented one); no code. */
static void __attribute__((format(printf, 2, 3))) set_error(struct keyhold_client *c,
                                                            const char *fmt, ...) {
        va_list ap;

        c->code[0] = 0;
        va_start(ap, fmt);
        (void) vsnprintf(c->message, sizeof(c->message), fmt, ap);
        va_end(ap);
}

/* Appends "Name: value" to *list. */
static int header(struct curl_slist **list, const char *name, const char *value) {
        char line[HEADER_VALUE_MAX + 64];
        struct curl_slist *h;
        int n = snprintf(line, sizeof(line), "%s: %s", name, value);

        if (n < 0 || (size_t) n >= sizeof(line))
                return KEYHOLD_E_INVALID;
        h = curl_slist_append(*list, line);
        OPENSSL_cleanse(line, sizeof(line));
        if (!h)
                return KEYHOLD_E_NOMEM;
        *list = h;
        return KEYHOLD_OK;
}

static void headers_free(struct curl_slist *list) {
        for (struct curl_slist *h = list; h; h = h->next)
                OPENSSL_cleanse(h->data, strlen(h->data));
        curl_slist_free_all(list);
}

static int make_headers(const struct keyhold_client *c, bool body, struct curl_slist **ret) {
        struct curl_slist *list = NULL;
        char type[16];
        int r;

        (void) snprintf(type, sizeof(type), "%d", c->device_type);
        r = header(&list, "Accept", "application/json");
        if (r == KEYHOLD_OK && c->token) {
                char bearer[HEADER_VALUE_MAX + 16];
                (void) snprintf(bearer, sizeof(bearer), "Bearer %s", c->token);
                r = header(&list, "Authorization", bearer);
                OPENSSL_cleanse(bearer, sizeof(bearer));
        }
        if (r == KEYHOLD_OK)
                r = header(&list, "Device-Type", type);
        if (r == KEYHOLD_OK && c->identifier)
                r = header(&list, "Device-Identifier", c->identifier);
        if (r == KEYHOLD_OK && body)
                r = header(&list, "Content-Type", "application/json");
        if (r == KEYHOLD_OK)
                r = header(&list, "Expect", ""); /* no 100-continue round trip */
        if (r != KEYHOLD_OK) {
                headers_free(list);
                return r;
        }
        *ret = list;
        return KEYHOLD_OK;
}

/**
 * request() - method path (absolute, already escaped) with body (NULL: none) and its
 * answer: *ret the 2xx answer's JSON (NULL for an empty body), when ret is not NULL.
 * Returns KEYHOLD_OK, a status for the refusal, KEYHOLD_E_HTTP, KEYHOLD_E_RESPONSE or
 * KEYHOLD_E_NOMEM; c's error fields tell more.
 */
static int request(struct keyhold_client *c, const char *method, const char *path,
                   const json_t *body, json_t **ret) {
        struct curl_slist *headers = NULL;
        struct answer a = { 0 };
        char url[URL_MAX * 2];
        char *text = NULL;
        json_t *answer = NULL;
        bool had_body;
        CURLcode rc;
        int r, n;

        c->http_status = 0;
        c->message[0] = c->code[0] = c->errbuf[0] = 0;
        n = snprintf(url, sizeof(url), "%s%s", c->base, path);
        if (n < 0 || (size_t) n >= sizeof(url))
                return KEYHOLD_E_INVALID;
        if (body) {
                text = json_dumps(body, JSON_COMPACT);
                if (!text)
                        return KEYHOLD_E_NOMEM;
        }
        r = make_headers(c, body != NULL, &headers);
        if (r != KEYHOLD_OK) {
                if (text)
                        keyhold_wipe_free(text, strlen(text));
                return r;
        }
        (void) curl_easy_setopt(c->curl, CURLOPT_URL, url);
        (void) curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
        (void) curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &a);
        if (strcmp(method, "GET") == 0) {
                (void) curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
                (void) curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, NULL);
        } else {
                (void) curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
                (void) curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, text ? text : "");
                (void) curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                                        (curl_off_t) (text ? strlen(text) : 0));
                (void) curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST,
                                        strcmp(method, "POST") == 0 ? NULL : method);
        }
        rc = curl_easy_perform(c->curl);
        (void) curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
        (void) curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, NULL);
        (void) curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, NULL);
        headers_free(headers);
        if (text)
                keyhold_wipe_free(text, strlen(text));
        if (rc != CURLE_OK) {
                bool too_big = a.too_big;

                answer_free(&a);
                if (too_big)
                        set_error(c, "the answer of %s is larger than %u bytes", path,
                                  KEYHOLD_CLIENT_ANSWER_MAX);
                else
                        set_error(c, "%s: %s", c->base,
                                  c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
                return too_big ? KEYHOLD_E_RESPONSE : KEYHOLD_E_HTTP;
        }
        (void) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->http_status);
        had_body = a.len > 0;
        if (had_body)
                answer = json_loadb(a.data, a.len, JSON_REJECT_DUPLICATES, NULL);
        answer_free(&a);
        if (c->http_status >= 200 && c->http_status <= 299) {
                if (had_body && !answer) {
                        set_error(c, "%s %s: the answer is not JSON", method, path);
                        return KEYHOLD_E_RESPONSE;
                }
                if (ret)
                        *ret = answer;
                else
                        json_decref(answer);
                return KEYHOLD_OK;
        }
        if (c->http_status >= 400 && c->http_status <= 599) {
                khl_error_decode(answer, c->message, sizeof(c->message), c->code,
                                 sizeof(c->code));
                if (!c->message[0])
                        (void) snprintf(c->message, sizeof(c->message), "HTTP %ld",
                                        c->http_status);
                json_decref(answer);
                return khl_status_for_http(c->http_status);
        }
        json_decref(answer);
        set_error(c, "%s %s: unexpected HTTP status", method, path);
        return KEYHOLD_E_RESPONSE;
}

/* s escaped for a path segment into out. */
static int segment(struct keyhold_client *c, const char *s, char *out, size_t len) {
        char *e;
        int n;

        if (!s || !*s || strnlen(s, URL_MAX) >= URL_MAX)
                return KEYHOLD_E_INVALID;
        e = curl_easy_escape(c->curl, s, 0);
        if (!e)
                return KEYHOLD_E_NOMEM;
        n = snprintf(out, len, "%s", e);
        curl_free(e);
        return n < 0 || (size_t) n >= len ? KEYHOLD_E_INVALID : KEYHOLD_OK;
}

static void answer_mismatch(struct keyhold_client *c, const char *path) {
        set_error(c, "%s: the answer is not what the route documents", path);
}

/* ---- JWT claims ---- */

int keyhold_token_claim(const char *token, const char *name, char **ret) {
        const char *dot1, *dot2;
        uint8_t *payload = NULL;
        size_t plen = 0, seg, padded;
        char *b64;
        json_t *claims, *v;
        int r;

        if (!token || !name || !ret)
                return KEYHOLD_E_INVALID;
        dot1 = strchr(token, '.');
        dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        if (!dot1 || !dot2 || dot2 == dot1 + 1)
                return KEYHOLD_E_FORMAT;
        seg = (size_t) (dot2 - dot1 - 1);
        if (seg > HEADER_VALUE_MAX)
                return KEYHOLD_E_FORMAT;
        padded = (seg + 3) / 4 * 4;
        b64 = malloc(padded + 1);
        if (!b64)
                return KEYHOLD_E_NOMEM;
        for (size_t i = 0; i < seg; i++) {
                char ch = dot1[1 + i];
                b64[i] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
        }
        for (size_t i = seg; i < padded; i++)
                b64[i] = '=';
        b64[padded] = 0;
        r = keyhold_base64_decode(b64, padded, &payload, &plen);
        free(b64);
        if (r != KEYHOLD_OK)
                return r == KEYHOLD_E_NOMEM ? r : KEYHOLD_E_FORMAT;
        claims = json_loadb((const char *) payload, plen, JSON_REJECT_DUPLICATES, NULL);
        free(payload);
        if (!json_is_object(claims)) {
                json_decref(claims);
                return KEYHOLD_E_FORMAT;
        }
        v = json_object_get(claims, name);
        if (!json_is_string(v)) {
                json_decref(claims);
                return KEYHOLD_E_NOT_FOUND;
        }
        *ret = strdup(json_string_value(v));
        json_decref(claims);
        return *ret ? KEYHOLD_OK : KEYHOLD_E_NOMEM;
}

/* ---- user keys ---- */

int keyhold_user_key_get(struct keyhold_client *c, char **ret) {
        json_t *answer = NULL, *key;
        int r;

        if (!c || !ret)
                return KEYHOLD_E_INVALID;
        r = request(c, "GET", "/user-keys", NULL, &answer);
        if (r != KEYHOLD_OK)
                return r;
        key = json_object_get(answer, "key");
        if (!json_is_string(key)) {
                json_decref(answer);
                answer_mismatch(c, "/user-keys");
                return KEYHOLD_E_RESPONSE;
        }
        *ret = strdup(json_string_value(key));
        json_decref(answer); /* jansson does not wipe: the key text stays in freed memory */
        return *ret ? KEYHOLD_OK : KEYHOLD_E_NOMEM;
}

static int user_key_send(struct keyhold_client *c, const char *method, const char *key) {
        json_t *body;
        int r;

        if (!c || !key)
                return KEYHOLD_E_INVALID;
        body = json_pack("{s:s}", "key", key);
        if (!body)
                return KEYHOLD_E_NOMEM;
        r = request(c, method, "/user-keys", body, NULL);
        json_decref(body);
        return r;
}

int keyhold_user_key_post(struct keyhold_client *c, const char *key) {
        return user_key_send(c, "POST", key);
}

int keyhold_user_key_put(struct keyhold_client *c, const char *key) {
        return user_key_send(c, "PUT", key);
}

/* ---- devices ---- */

/* Decodes answer (consumed) as one device into a new *ret. */
static int device_answer(struct keyhold_client *c, const char *path, json_t *answer,
                         struct keyhold_device **ret) {
        struct keyhold_device *d;
        int r;

        d = calloc(1, sizeof(*d));
        if (!d) {
                json_decref(answer);
                return KEYHOLD_E_NOMEM;
        }
        r = khl_device_decode(answer, d);
        json_decref(answer);
        if (r != KEYHOLD_OK) {
                free(d);
                if (r == KEYHOLD_E_RESPONSE)
                        answer_mismatch(c, path);
                return r;
        }
        *ret = d;
        return KEYHOLD_OK;
}

int keyhold_device_register(struct keyhold_client *c, const char *name,
                            struct keyhold_device **ret) {
        json_t *body, *answer = NULL;
        int r;

        if (!c || !name || !ret || !c->identifier)
                return KEYHOLD_E_INVALID;
        body = json_pack("{s:i, s:s, s:s}", "type", c->device_type, "name", name, "identifier",
                         c->identifier);
        if (!body)
                return KEYHOLD_E_INVALID; /* name not UTF-8 */
        r = request(c, "POST", "/devices", body, &answer);
        json_decref(body);
        if (r != KEYHOLD_OK)
                return r;
        return device_answer(c, "/devices", answer, ret);
}

int keyhold_devices_list(struct keyhold_client *c, struct keyhold_device_list **ret) {
        json_t *answer = NULL;
        int r;

        if (!c || !ret)
                return KEYHOLD_E_INVALID;
        r = request(c, "GET", "/devices", NULL, &answer);
        if (r != KEYHOLD_OK)
                return r;
        r = khl_device_list_decode(answer, ret);
        json_decref(answer);
        if (r == KEYHOLD_E_RESPONSE)
                answer_mismatch(c, "/devices");
        return r;
}

int keyhold_device_get(struct keyhold_client *c, const char *identifier,
                       struct keyhold_device **ret) {
        char seg[URL_MAX], path[URL_MAX + 32];
        json_t *answer = NULL;
        int r;

        if (!c || !ret)
                return KEYHOLD_E_INVALID;
        r = segment(c, identifier ? identifier : c->identifier, seg, sizeof(seg));
        if (r != KEYHOLD_OK)
                return r;
        (void) snprintf(path, sizeof(path), "/devices/identifier/%s", seg);
        r = request(c, "GET", path, NULL, &answer);
        if (r != KEYHOLD_OK)
                return r;
        return device_answer(c, path, answer, ret);
}

int keyhold_device_keys_put(struct keyhold_client *c, const struct keyhold_device_trust *t,
                            struct keyhold_device **ret) {
        char seg[URL_MAX], path[URL_MAX + 32];
        json_t *body, *answer = NULL;
        int r;

        if (!c || !t || !t->encrypted_user_key || !t->encrypted_public_key ||
            !t->encrypted_private_key)
                return KEYHOLD_E_INVALID;
        r = segment(c, c->identifier, seg, sizeof(seg));
        if (r != KEYHOLD_OK)
                return r;
        (void) snprintf(path, sizeof(path), "/devices/%s/keys", seg);
        body = json_pack("{s:s, s:s, s:s}", "encryptedUserKey", t->encrypted_user_key,
                         "encryptedPublicKey", t->encrypted_public_key, "encryptedPrivateKey",
                         t->encrypted_private_key);
        if (!body)
                return KEYHOLD_E_NOMEM;
        r = request(c, "PUT", path, body, &answer);
        json_decref(body);
        if (r != KEYHOLD_OK)
                return r;
        if (!ret || !answer) {
                json_decref(answer);
                if (ret)
                        return keyhold_device_get(c, NULL, ret);
                return KEYHOLD_OK;
        }
        return device_answer(c, path, answer, ret);
}

int keyhold_device_retrieve_keys(struct keyhold_client *c, struct keyhold_device **ret) {
        char seg[URL_MAX], path[URL_MAX + 32];
        json_t *answer = NULL;
        int r;

        if (!c || !ret)
                return KEYHOLD_E_INVALID;
        r = segment(c, c->identifier, seg, sizeof(seg));
        if (r != KEYHOLD_OK)
                return r;
        (void) snprintf(path, sizeof(path), "/devices/%s/retrieve-keys", seg);
        r = request(c, "POST", path, NULL, &answer);
        if (r != KEYHOLD_OK)
                return r;
        return device_answer(c, path, answer, ret);
}

int keyhold_devices_untrust(struct keyhold_client *c, const char *const *ids, size_t n) {
        json_t *body, *list;
        int r;

        if (!c || (!ids && n > 0))
                return KEYHOLD_E_INVALID;
        list = json_array();
        body = json_pack("{s:o}", "devices", list);
        if (!body)
                return KEYHOLD_E_NOMEM;
        for (size_t i = 0; i < n; i++)
                if (!ids[i] || json_array_append_new(list, json_string(ids[i])) < 0) {
                        json_decref(body);
                        return ids[i] ? KEYHOLD_E_NOMEM : KEYHOLD_E_INVALID;
                }
        r = request(c, "POST", "/devices/untrust", body, NULL);
        json_decref(body);
        return r;
}

int keyhold_device_delete(struct keyhold_client *c, const char *id) {
        char seg[URL_MAX], path[URL_MAX + 32];
        int r;

        if (!c)
                return KEYHOLD_E_INVALID;
        r = segment(c, id, seg, sizeof(seg));
        if (r != KEYHOLD_OK)
                return r;
        (void) snprintf(path, sizeof(path), "/devices/%s", seg);
        return request(c, "DELETE", path, NULL, NULL);
}

int keyhold_devices_update_trust(struct keyhold_client *c, const char *encrypted_user_key,
                                 const char *encrypted_public_key,
                                 const struct keyhold_device_trust_update *others, size_t n,
                                 bool untrust_unlisted) {
        json_t *body, *list;
        int r;

        if (!c || !encrypted_user_key || !encrypted_public_key || (!others && n > 0) ||
            !c->identifier)
                return KEYHOLD_E_INVALID;
        list = json_array();
        body = json_pack("{s:{s:s, s:s}, s:o, s:b}", "currentDevice", "encryptedUserKey",
                         encrypted_user_key, "encryptedPublicKey", encrypted_public_key,
                         "otherDevices", list, "untrustUnlisted", untrust_unlisted);
        if (!body)
                return KEYHOLD_E_NOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *o = json_pack("{s:s?, s:s?, s:s?}", "deviceId", others[i].device_id,
                                      "encryptedUserKey", others[i].encrypted_user_key,
                                      "encryptedPublicKey", others[i].encrypted_public_key);
                if (!o || json_array_append_new(list, o) < 0) {
                        json_decref(body);
                        return KEYHOLD_E_NOMEM;
                }
        }
        r = request(c, "POST", "/devices/update-trust", body, NULL);
        json_decref(body);
        return r;
}

/* ---- auth requests ---- */

static int auth_request_answer(struct keyhold_client *c, const char *path, json_t *answer,
                               struct keyhold_auth_request **ret) {
        struct keyhold_auth_request *x;
        int r;

        x = calloc(1, sizeof(*x));
        if (!x) {
                json_decref(answer);
                return KEYHOLD_E_NOMEM;
        }
        r = khl_auth_request_decode(answer, x);
        json_decref(answer);
        if (r != KEYHOLD_OK) {
                free(x);
                if (r == KEYHOLD_E_RESPONSE)
                        answer_mismatch(c, path);
                return r;
        }
        *ret = x;
        return KEYHOLD_OK;
}

int keyhold_auth_request_create(struct keyhold_client *c,
                                const struct keyhold_auth_request_new *req,
                                struct keyhold_auth_request **ret) {
        const char *path;
        json_t *body, *answer = NULL;
        int r;

        if (!c || !req || !ret || !req->email || !req->public_key || !req->access_code ||
            !c->identifier || (unsigned) req->type > KEYHOLD_AUTH_REQUEST_ADMIN_APPROVAL)
                return KEYHOLD_E_INVALID;
        path = req->type == KEYHOLD_AUTH_REQUEST_ADMIN_APPROVAL ? "/auth-requests/admin-request"
                                                               : "/auth-requests";
        body = json_pack("{s:s, s:s, s:s, s:s, s:i}", "email", req->email, "publicKey",
                         req->public_key, "deviceIdentifier", c->identifier, "accessCode",
                         req->access_code, "type", (int) req->type);
        if (!body)
                return KEYHOLD_E_INVALID;
        r = request(c, "POST", path, body, &answer);
        json_decref(body);
        if (r != KEYHOLD_OK)
                return r;
        return auth_request_answer(c, path, answer, ret);
}

int keyhold_auth_request_response(struct keyhold_client *c, const char *id,
                                  const char *access_code, struct keyhold_auth_request **ret) {
        char seg[URL_MAX], code[URL_MAX], path[URL_MAX * 2 + 48];
        json_t *answer = NULL;
        int r;

        if (!c || !ret)
                return KEYHOLD_E_INVALID;
        r = segment(c, id, seg, sizeof(seg));
        if (r == KEYHOLD_OK)
                r = segment(c, access_code, code, sizeof(code));
        if (r != KEYHOLD_OK)
                return r;
        (void) snprintf(path, sizeof(path), "/auth-requests/%s/response?code=%s", seg, code);
        r = request(c, "GET", path, NULL, &answer);
        OPENSSL_cleanse(code, sizeof(code));
        if (r != KEYHOLD_OK) {
                OPENSSL_cleanse(path, sizeof(path));
                return r;
        }
        r = auth_request_answer(c, "/auth-requests/{id}/response", answer, ret);
        OPENSSL_cleanse(path, sizeof(path));
        return r;
}

int keyhold_auth_request_get(struct keyhold_client *c, const char *id,
                             struct keyhold_auth_request **ret) {
        char seg[URL_MAX], path[URL_MAX + 32];
        json_t *answer = NULL;
        int r;

        if (!c || !ret)
                return KEYHOLD_E_INVALID;
        r = segment(c, id, seg, sizeof(seg));
        if (r != KEYHOLD_OK)
                return r;
        (void) snprintf(path, sizeof(path), "/auth-requests/%s", seg);
        r = request(c, "GET", path, NULL, &answer);
        if (r != KEYHOLD_OK)
                return r;
        return auth_request_answer(c, path, answer, ret);
}

int keyhold_auth_requests_pending(struct keyhold_client *c,
                                  struct keyhold_auth_request_list **ret) {
        json_t *answer = NULL;
        int r;

        if (!c || !ret)
                return KEYHOLD_E_INVALID;
        r = request(c, "GET", "/auth-requests/pending", NULL, &answer);
        if (r != KEYHOLD_OK)
                return r;
        r = khl_auth_request_list_decode(answer, ret);
        json_decref(answer);
        if (r == KEYHOLD_E_RESPONSE)
                answer_mismatch(c, "/auth-requests/pending");
        return r;
}

int keyhold_auth_request_answer(struct keyhold_client *c, const char *id, bool approve,
                                const char *key, struct keyhold_auth_request **ret) {
        char seg[URL_MAX], path[URL_MAX + 32];
        json_t *body, *answer = NULL;
        int r;

        if (!c || !c->identifier || (approve && !key))
                return KEYHOLD_E_INVALID;
        r = segment(c, id, seg, sizeof(seg));
        if (r != KEYHOLD_OK)
                return r;
        (void) snprintf(path, sizeof(path), "/auth-requests/%s", seg);
        body = json_pack("{s:s?, s:s, s:b}", "key", approve ? key : NULL, "deviceIdentifier",
                         c->identifier, "requestApproved", approve);
        if (!body)
                return KEYHOLD_E_NOMEM;
        r = request(c, "PUT", path, body, &answer);
        json_decref(body);
        if (r != KEYHOLD_OK)
                return r;
        if (!ret || !answer) {
                json_decref(answer);
                if (ret)
                        return keyhold_auth_request_get(c, id, ret);
                return KEYHOLD_OK;
        }
        return auth_request_answer(c, path, answer, ret);
}

/* ---- account recovery ---- */

int keyhold_organization_public_key(struct keyhold_client *c, uint8_t **ret, size_t *ret_len) {
        char seg[URL_MAX], path[URL_MAX + 48];
        json_t *answer = NULL;
        int r;

        if (!c || !ret || !ret_len)
                return KEYHOLD_E_INVALID;
        r = segment(c, c->org_id, seg, sizeof(seg));
        if (r != KEYHOLD_OK)
                return r;
        (void) snprintf(path, sizeof(path), "/organizations/%s/public-key", seg);
        r = request(c, "GET", path, NULL, &answer);
        if (r != KEYHOLD_OK)
                return r;
        r = khl_public_key_decode(answer, ret, ret_len);
        json_decref(answer);
        if (r == KEYHOLD_E_RESPONSE)
                answer_mismatch(c, path);
        return r;
}

int keyhold_recovery_enrol(struct keyhold_client *c, const char *user_id,
                           const char *reset_password_key) {
        char org[URL_MAX], user[URL_MAX], path[URL_MAX * 2 + 64];
        json_t *body;
        int r;

        if (!c)
                return KEYHOLD_E_INVALID;
        r = segment(c, c->org_id, org, sizeof(org));
        if (r == KEYHOLD_OK)
                r = segment(c, user_id, user, sizeof(user));
        if (r != KEYHOLD_OK)
                return r;
        (void) snprintf(path, sizeof(path), "/organizations/%s/users/%s/reset-password-enrollment",
                        org, user);
        body = json_pack("{s:s?}", "resetPasswordKey", reset_password_key);
        if (!body)
                return KEYHOLD_E_NOMEM;
        r = request(c, "PUT", path, body, NULL);
        json_decref(body);
        return r;
}
