#include "cli/client.h"

#include <errno.h>
#include <stdarg.h>
#include <strings.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "common/buf.h"
#include "common/limits.h"
#include "common/parse.h"
#include "token/fetch.h"

#define SOCKET_BASE_URL "http://localhost"
#define URL_MAX 4096

struct kh_client {
        CURL *curl;
        struct curl_slist *headers; /* Accept, and Authorization: wiped before it is freed */
        char *target;               /* the socket path or the url, for messages */
        char *base;                 /* the url without a trailing '/', or SOCKET_BASE_URL */
        char *tenant_prefix;        /* "" or "/t/TENANT" */
        bool socket;
        const volatile sig_atomic_t *cancel;
        char errbuf[CURL_ERROR_SIZE];
};

struct answer {
        struct kh_buf body;
        bool too_big;
};

static size_t on_data(char *p, size_t size, size_t n, void *userdata) {
        struct answer *a = userdata;

        if (kh_buf_append(&a->body, p, size * n) < 0) {
                a->too_big = true;
                return 0; /* aborts with CURLE_WRITE_ERROR */
        }
        return size * n;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
        const volatile sig_atomic_t *cancel = userdata;

        (void) dltotal, (void) dlnow, (void) ultotal, (void) ulnow;
        return cancel && *cancel ? 1 : 0;
}

static void wipe_headers(struct curl_slist *h) {
        for (; h; h = h->next)
                OPENSSL_cleanse(h->data, strlen(h->data));
}

struct kh_client *kh_client_free(struct kh_client *c) {
        if (!c)
                return NULL;
        if (c->curl)
                curl_easy_cleanup(c->curl);
        wipe_headers(c->headers);
        curl_slist_free_all(c->headers);
        free(c->target);
        free(c->base);
        free(c->tenant_prefix);
        free(c);
        return NULL;
}

static int add_header(struct kh_client *c, const char *fmt, const char *value) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf line = { 0 };
        struct curl_slist *h;
        int r;

        kh_buf_init(&line, KH_TOKEN_MAX + 64, true);
        r = kh_buf_append_str(&line, fmt);
        if (r == 0 && value)
                r = kh_buf_append_str(&line, value);
        if (r < 0)
                return r == -E2BIG ? -EINVAL : r;
        h = curl_slist_append(c->headers, (const char *) line.data);
        if (!h)
                return -ENOMEM;
        c->headers = h;
        return 0;
}

/* The url as a base for paths: https (or http to loopback), no query or fragment, no
 * trailing '/'. */
static int url_base(const char *url, char **ret) {
        size_t len = strlen(url);

        if (!kh_fetch_url_is_acceptable(url) || strpbrk(url, "?#") || len >= URL_MAX)
                return -EINVAL;
        while (len > 0 && url[len - 1] == '/')
                len--;
        *ret = strndup(url, len);
        return *ret ? 0 : -ENOMEM;
}

static int setup_curl(struct kh_client *c, const struct kh_client_config *cfg) {
        CURL *e = c->curl;

        /* Every value below is valid, so results are not checked one by one: a failure would
         * show in curl_easy_perform(). */
        (void) curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
        (void) curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        (void) curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* no redirect takes the token */
        (void) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, KH_CLIENT_CONNECT_TIMEOUT_MS);
        (void) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, KH_CLIENT_TIMEOUT_MS);
        (void) curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) KH_CLIENT_ANSWER_MAX);
        (void) curl_easy_setopt(e, CURLOPT_USERAGENT, "keyhold/" KH_VERSION);
        (void) curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        (void) curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        (void) curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
        (void) curl_easy_setopt(e, CURLOPT_XFERINFODATA, cfg->cancel);
        if (c->socket) {
                (void) curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, cfg->socket_path);
                (void) curl_easy_setopt(e, CURLOPT_PROXY, ""); /* no proxy from the environment */
        } else {
                (void) curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
                (void) curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
                (void) curl_easy_setopt(e, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
                if (cfg->cacert) {
                        /* this file's CAs and no others: not the system bundle, nor its folder */
                        (void) curl_easy_setopt(e, CURLOPT_CAINFO, cfg->cacert);
                        (void) curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
                }
        }
        return 0;
}

int kh_client_new(const struct kh_client_config *cfg, struct kh_client **ret) {
        KH_CLEANUP(kh_client_freep) struct kh_client *c = NULL;
        int r;

        if (cfg->tenant && !kh_tenant_id_is_valid(cfg->tenant, strlen(cfg->tenant)))
                return -EINVAL;
        if (!cfg->url && !cfg->socket_path)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->socket = !cfg->url;
        c->cancel = cfg->cancel;
        if (c->socket) {
                c->base = strdup(SOCKET_BASE_URL);
                c->target = strdup(cfg->socket_path);
        } else {
                r = url_base(cfg->url, &c->base);
                if (r < 0)
                        return r;
                c->target = strdup(c->base);
        }
        if (!cfg->tenant || strcmp(cfg->tenant, "default") == 0)
                c->tenant_prefix = strdup("");
        else if (asprintf(&c->tenant_prefix, "/t/%s", cfg->tenant) < 0)
                c->tenant_prefix = NULL;
        if (!c->base || !c->target || !c->tenant_prefix)
                return -ENOMEM;

        r = add_header(c, "Accept: application/json", NULL);
        if (r == 0 && !c->socket && cfg->token)
                r = add_header(c, "Authorization: Bearer ", cfg->token);
        if (r < 0)
                return r;
        c->curl = curl_easy_init();
        if (!c->curl)
                return -ENOMEM;
        (void) curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
        r = setup_curl(c, cfg);
        if (r < 0)
                return r;
        *ret = KH_TAKE_PTR(c);
        return 0;
}

const char *kh_client_target(const struct kh_client *c) {
        return c->target;
}

bool kh_client_is_socket(const struct kh_client *c) {
        return c->socket;
}

static json_t *__attribute__((format(printf, 2, 3))) local_error(const char *code,
                                                                 const char *fmt, ...) {
        char message[1024];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        return json_pack("{s:s, s:s}", "code", code, "message", message);
}

/* Why the admin socket did not connect, as connect(2) says it: curl only says "Couldn't
 * connect to server" about "localhost port 80", which names neither the socket nor the cause. */
static int socket_errno(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        KH_CLEANUP(kh_closep) int fd = -1;

        if (strlen(path) >= sizeof(sa.sun_path))
                return ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return errno;
        if (connect(fd, (const struct sockaddr *) &sa, sizeof(sa)) < 0)
                return errno;
        return ECONNRESET; /* it connects now: it was busy or restarting */
}

/* What to check when the admin socket does not connect, by what connect(2) said. */
static json_t *socket_error(const char *path) {
        int e = socket_errno(path);
        const char *hint;

        switch (e) {
        case ENOENT:
                hint = "is keyholdd running on this host, with this [server] admin_socket? "
                       "--socket PATH names another, --url URL a remote server";
                break;
        case EACCES:
        case EPERM:
                hint = "the socket is mode 0600: is your user allowed to open it (the user "
                       "keyholdd runs as, or root)?";
                break;
        case ECONNREFUSED:
                hint = "nothing listens on it: is keyholdd running? (a stale socket file)";
                break;
        default:
                hint = "is keyholdd running? is your user allowed to open it (mode 0600)?";
                break;
        }
        return local_error("unreachable", "cannot reach keyholdd on its admin socket %s: %s (%s)",
                           path, strerror(e), hint);
}

static int transfer_error(struct kh_client *c, CURLcode rc, const struct answer *a,
                          json_t **ret_error) {
        const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);

        switch (rc) {
        case CURLE_ABORTED_BY_CALLBACK:
                *ret_error = local_error("interrupted", "interrupted");
                return -ECANCELED;
        case CURLE_OPERATION_TIMEDOUT:
                *ret_error = local_error("timeout", "%s did not answer in time: %s", c->target, why);
                return -ETIMEDOUT;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_ISSUER_ERROR:
                *ret_error = local_error("tls_error",
                                         "the TLS connection to %s failed: %s (--cacert PEM names "
                                         "the CA that signed the server's certificate)",
                                         c->target, why);
                return -EKEYREJECTED;
        case CURLE_WRITE_ERROR:
        case CURLE_FILESIZE_EXCEEDED:
                if (a->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
                        *ret_error = local_error("bad_response",
                                                 "the answer of %s is larger than %u bytes",
                                                 c->target, KH_CLIENT_ANSWER_MAX);
                        return -EBADMSG;
                }
                break;
        default:
                break;
        }
        if (c->socket && rc == CURLE_COULDNT_CONNECT)
                *ret_error = socket_error(c->target);
        else
                *ret_error = local_error("unreachable",
                                         "cannot reach keyholdd at %s: %s (is it running and "
                                         "reachable from here? is the URL right?)",
                                         c->target, why);
        return -ECONNREFUSED;
}

/* A keyhold error: an object with a string "code" and a string "message". */
static bool is_keyhold_error(const json_t *v) {
        return json_is_object(v) && json_is_string(json_object_get(v, "code")) &&
               json_is_string(json_object_get(v, "message"));
}

/* The headers of a POST with a JSON body: the client's, and its Content-Type. */
static struct curl_slist *post_headers(const struct kh_client *c) {
        struct curl_slist *list = NULL, *h;

        for (h = c->headers; h; h = h->next) {
                struct curl_slist *n = curl_slist_append(list, h->data);
                if (!n)
                        goto fail;
                list = n;
        }
        h = curl_slist_append(list, "Content-Type: application/json");
        if (h)
                return h;
fail:
        wipe_headers(list);
        curl_slist_free_all(list);
        return NULL;
}

/* GET path, or POST it with body[0..len) (NULL: an empty POST) when post is true. */
static int perform(struct kh_client *c, enum kh_client_scope scope, const char *path, bool post,
                   const char *body_text, size_t len, json_t **ret_body, json_t **ret_error);

int kh_client_get(struct kh_client *c, enum kh_client_scope scope, const char *path,
                  json_t **ret_body, json_t **ret_error) {
        return perform(c, scope, path, false, NULL, 0, ret_body, ret_error);
}

int kh_client_post(struct kh_client *c, enum kh_client_scope scope, const char *path,
                   const json_t *body, json_t **ret_body, json_t **ret_error) {
        char *text = NULL;
        int r;

        *ret_error = NULL;
        if (body) {
                text = json_dumps(body, JSON_COMPACT);
                if (!text)
                        return -ENOMEM;
        }
        r = perform(c, scope, path, true, text, text ? strlen(text) : 0, ret_body, ret_error);
        if (text) {
                OPENSSL_cleanse(text, strlen(text));   /* an unseal secret */
                free(text);
        }
        return r;
}

static int perform(struct kh_client *c, enum kh_client_scope scope, const char *path, bool post,
                   const char *body_text, size_t len, json_t **ret_body, json_t **ret_error) {
        struct curl_slist *headers = NULL;
        KH_CLEANUP(kh_freep) char *url = NULL;
        struct answer a = { .too_big = false };
        json_t *body;
        long status = 0;
        CURLcode rc;
        int r;

        *ret_error = NULL;
        kh_buf_init(&a.body, KH_CLIENT_ANSWER_MAX, false);
        if (asprintf(&url, "%s%s%s", c->base, scope == KH_CLIENT_TENANT ? c->tenant_prefix : "",
                     path) < 0) {
                url = NULL;
                return -ENOMEM;
        }
        c->errbuf[0] = 0;
        (void) curl_easy_setopt(c->curl, CURLOPT_URL, url);
        (void) curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &a);
        if (post) {
                headers = body_text ? post_headers(c) : NULL;
                if (body_text && !headers) {
                        kh_buf_free(&a.body);
                        return -ENOMEM;
                }
                (void) curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
                (void) curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
                (void) curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body_text ? body_text : "");
                (void) curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers ? headers : c->headers);
        } else {
                (void) curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
        }
        rc = curl_easy_perform(c->curl);
        if (headers) {
                (void) curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
                wipe_headers(headers);
                curl_slist_free_all(headers);
        }
        if (post)
                (void) curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, NULL);
        if (rc != CURLE_OK) {
                r = transfer_error(c, rc, &a, ret_error);
                kh_buf_free(&a.body);
                return r;
        }
        (void) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        body = json_loadb((const char *) a.body.data, a.body.len, JSON_REJECT_DUPLICATES, NULL);
        kh_buf_free(&a.body);
        /* 202: accepted and waiting (an approval that needs a second approver) */
        if ((status == 200 || status == 202) && json_is_object(body)) {
                *ret_body = body;
                return 0;
        }
        if (status >= 400 && status <= 599 && is_keyhold_error(body)) {
                *ret_error = body; /* passed on as the server sent it */
                return -EPROTO;
        }
        json_decref(body);
        *ret_error = local_error("bad_response",
                                 "%s answered %s with HTTP %ld and no keyhold answer (is it keyholdd?)",
                                 c->target, path, status);
        return -EBADMSG;
}

struct download {
        CURL *curl;
        kh_client_sink_fn sink;
        void *userdata;
        struct kh_client_header *headers;
        size_t n_headers;
        long status;              /* once known */
        struct kh_buf error;      /* a refusal's body */
        bool sink_failed, too_big;
};

static size_t dl_on_data(char *p, size_t size, size_t n, void *userdata) {
        struct download *d = userdata;

        if (d->status == 0)
                (void) curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &d->status);
        if (d->status == 200) {
                if (d->sink((const uint8_t *) p, size * n, d->userdata) != 0) {
                        d->sink_failed = true;
                        return 0;
                }
                return size * n;
        }
        if (kh_buf_append(&d->error, p, size * n) < 0) {
                d->too_big = true;
                return 0;
        }
        return size * n;
}

/* "Name: value\r\n": keeps the value of the headers asked for (a new status line, as after
 * a 100 Continue, starts over). */
static size_t dl_on_header(char *p, size_t size, size_t n, void *userdata) {
        struct download *d = userdata;
        size_t len = size * n, name_len;
        const char *colon = memchr(p, ':', len);

        if (len >= 5 && memcmp(p, "HTTP/", 5) == 0)
                for (size_t i = 0; i < d->n_headers; i++)
                        d->headers[i].value[0] = 0;
        if (!colon)
                return len;
        name_len = (size_t) (colon - p);
        for (size_t i = 0; i < d->n_headers; i++) {
                struct kh_client_header *h = &d->headers[i];
                const char *v = colon + 1, *end = p + len;

                if (strlen(h->name) != name_len || strncasecmp(h->name, p, name_len) != 0)
                        continue;
                while (v < end && (*v == ' ' || *v == '\t'))
                        v++;
                while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                        end--;
                if ((size_t) (end - v) < sizeof(h->value)) {
                        memcpy(h->value, v, (size_t) (end - v));
                        h->value[end - v] = 0;
                }
        }
        return len;
}

int kh_client_download(struct kh_client *c, enum kh_client_scope scope, const char *path,
                       kh_client_sink_fn sink, void *userdata, struct kh_client_header *headers,
                       size_t n_headers, json_t **ret_error) {
        KH_CLEANUP(kh_freep) char *url = NULL;
        struct download d = { .curl = c->curl, .sink = sink, .userdata = userdata,
                              .headers = headers, .n_headers = n_headers };
        struct answer a = { .too_big = false };
        json_t *body;
        CURLcode rc;
        int r;

        *ret_error = NULL;
        for (size_t i = 0; i < n_headers; i++)
                headers[i].value[0] = 0;
        if (asprintf(&url, "%s%s%s", c->base, scope == KH_CLIENT_TENANT ? c->tenant_prefix : "",
                     path) < 0) {
                url = NULL;
                return -ENOMEM;
        }
        kh_buf_init(&d.error, KH_CLIENT_ERROR_ANSWER_MAX, false);
        c->errbuf[0] = 0;
        (void) curl_easy_setopt(c->curl, CURLOPT_URL, url);
        (void) curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
        (void) curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, "");
        (void) curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, 0L);
        (void) curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, 0L);
        (void) curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) 0);
        (void) curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, dl_on_data);
        (void) curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &d);
        (void) curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, dl_on_header);
        (void) curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &d);
        rc = curl_easy_perform(c->curl);
        /* back to what kh_client_get() expects */
        (void) curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
        (void) curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, KH_CLIENT_TIMEOUT_MS);
        (void) curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE,
                                (curl_off_t) KH_CLIENT_ANSWER_MAX);
        (void) curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
        (void) curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, NULL);
        (void) curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, NULL);

        if (rc == CURLE_WRITE_ERROR && d.sink_failed) {
                kh_buf_free(&d.error);
                return -EIO;
        }
        if (rc != CURLE_OK) {
                a.too_big = d.too_big;
                r = transfer_error(c, rc, &a, ret_error);
                kh_buf_free(&d.error);
                return r;
        }
        (void) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &d.status);
        if (d.status == 200) {
                kh_buf_free(&d.error);
                return 0;
        }
        body = json_loadb((const char *) d.error.data, d.error.len, JSON_REJECT_DUPLICATES, NULL);
        kh_buf_free(&d.error);
        if (d.status >= 400 && d.status <= 599 && is_keyhold_error(body)) {
                *ret_error = body;
                return -EPROTO;
        }
        json_decref(body);
        *ret_error = local_error("bad_response",
                                 "%s answered %s with HTTP %ld and no keyhold answer (is it keyholdd?)",
                                 c->target, path, d.status);
        return -EBADMSG;
}
