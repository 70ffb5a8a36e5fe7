#include "token/fetch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "common/net.h"

KH_DEFINE_CLEANUP(curl_url_cleanup, CURLU *)
KH_DEFINE_CLEANUP(curl_easy_cleanup, CURL *)

#define FETCH_TIMEOUT_MS 5000L
#define FETCH_REDIRECTS_MAX 3L

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void) {
        curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* 1: https; 0: http to loopback; -EINVAL otherwise. */
static int classify(const char *url) {
        KH_CLEANUP(curl_url_cleanupp) CURLU *u = NULL;
        char *scheme = NULL, *host = NULL;
        int r = -EINVAL;

        u = curl_url();
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
                goto out;
        if (strcmp(scheme, "https") == 0)
                r = 1;
        else if (strcmp(scheme, "http") == 0 && kh_host_is_loopback(host))
                r = 0;
out:
        curl_free(scheme);
        curl_free(host);
        return r;
}

bool kh_fetch_url_is_acceptable(const char *url) {
        return url && classify(url) >= 0;
}

struct sink {
        struct kh_buf *out;
        bool too_big;
        int64_t max_age;       /* of the last response's Cache-Control, -1 if none */
};

int64_t kh_cache_control_max_age(const char *v, size_t len) {
        int64_t max_age = -1;
        size_t i = 0;

        while (i < len) {
                size_t start, end;

                while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
                        i++;
                start = i;
                while (i < len && v[i] != ',')
                        i++;
                end = i;
                while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
                        end--;
                if ((end - start == 8 && strncasecmp(v + start, "no-store", 8) == 0) ||
                    (end - start == 8 && strncasecmp(v + start, "no-cache", 8) == 0))
                        return 0;
                if (end - start > 8 && strncasecmp(v + start, "max-age=", 8) == 0) {
                        int64_t n = 0;
                        size_t j = start + 8;
                        if (j < end && v[j] == '"' && end - j >= 2 && v[end - 1] == '"') {
                                j++;                    /* max-age="60" (quoted form) */
                                end--;
                        }
                        if (j == end)
                                continue;
                        for (; j < end; j++) {
                                if (v[j] < '0' || v[j] > '9') {
                                        n = -1;
                                        break;
                                }
                                if (n < INT32_MAX)
                                        n = n * 10 + (v[j] - '0');
                        }
                        if (n >= 0)
                                max_age = n > INT32_MAX ? INT32_MAX : n;
                }
        }
        return max_age;
}

/* Response header lines: only Cache-Control matters (a new response after a redirect
 * starts over). */
static size_t on_header(char *p, size_t size, size_t n, void *userdata) {
        struct sink *s = userdata;
        size_t len = size * n;
        static const char name[] = "cache-control:";

        if (len > 5 && strncmp(p, "HTTP/", 5) == 0)
                s->max_age = -1;
        else if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
                int64_t m = kh_cache_control_max_age(p + sizeof(name) - 1, len - (sizeof(name) - 1));
                if (m >= 0)
                        s->max_age = m;
        }
        return len;
}

static size_t on_data(char *p, size_t size, size_t n, void *userdata) {
        struct sink *s = userdata;
        size_t len = size * n; /* libcurl guarantees size == 1 */

        if (kh_buf_append(s->out, p, len) < 0) {
                s->too_big = true;
                return 0; /* aborts with CURLE_WRITE_ERROR */
        }
        return len;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
        const atomic_bool *cancel = userdata;

        (void) dltotal, (void) dlnow, (void) ultotal, (void) ulnow;
        return cancel && atomic_load(cancel) ? 1 : 0;
}

/* What an operator can act on, told apart for the log: the rest is "no answer". */
static int curl_error(CURLcode rc) {
        switch (rc) {
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
                return -EKEYREJECTED;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        default:
                return -EHOSTUNREACH;
        }
}

int kh_fetch(const char *url, const char *ca_file, atomic_bool *cancel,
             struct kh_buf *out, int64_t *ret_max_age) {
        KH_CLEANUP(curl_easy_cleanupp) CURL *c = NULL;
        struct sink s = { .out = out, .max_age = -1 };
        long status = 0;
        CURLcode rc;
        int kind;

        kind = classify(url);
        if (kind < 0)
                return kind;
        (void) pthread_once(&curl_once, curl_init);
        if (curl_init_result != CURLE_OK)
                return -ENOMEM;
        c = curl_easy_init();
        if (!c)
                return -ENOMEM;

        /* Every setopt below takes a valid value, so their results are not checked one by
         * one: a failure would show in curl_easy_perform(). */
        (void) curl_easy_setopt(c, CURLOPT_URL, url);
        (void) curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, kind == 1 ? "https" : "http");
        /* a redirect may never downgrade to plain http (nor reach a non-loopback http host) */
        (void) curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        (void) curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
        (void) curl_easy_setopt(c, CURLOPT_MAXREDIRS, FETCH_REDIRECTS_MAX);
        (void) curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, FETCH_TIMEOUT_MS);
        (void) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, FETCH_TIMEOUT_MS);
        (void) curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS */
        (void) curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        (void) curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
        (void) curl_easy_setopt(c, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
        (void) curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) out->max);
        (void) curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        (void) curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
        (void) curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        (void) curl_easy_setopt(c, CURLOPT_HEADERDATA, &s);
        (void) curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        (void) curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        (void) curl_easy_setopt(c, CURLOPT_XFERINFODATA, cancel);
        if (ca_file) {
                /* pinned: this file's CAs and no others (the system directory too is off) */
                (void) curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
                (void) curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
        }

        rc = curl_easy_perform(c);
        if (s.too_big || rc == CURLE_FILESIZE_EXCEEDED)
                return -E2BIG;
        if (rc == CURLE_ABORTED_BY_CALLBACK)
                return -ECANCELED;
        if (rc == CURLE_OUT_OF_MEMORY)
                return -ENOMEM;
        if (rc != CURLE_OK)
                return curl_error(rc);
        if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200)
                return -EPROTO;
        if (ret_max_age)
                *ret_max_age = s.max_age;
        return 0;
}
