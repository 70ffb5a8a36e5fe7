#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/limits.h"
#include "token/fetch.h"
#include "token/issuer.h"
#include "token/jwt-sign.h"
#include "token-test.h"
#include "../test-loop.h"

static EVP_PKEY *key_a, *key_b;

static int setup(void **state) {
        (void) state;
        key_a = test_key("EC");
        key_b = test_key("RSA");
        return 0;
}

static int teardown(void **state) {
        (void) state;
        EVP_PKEY_free(key_a);
        EVP_PKEY_free(key_b);
        return 0;
}

/* ---- helpers ---- */

static char *jwks_a(void) {
        char *j = NULL;
        assert_int_equal(kh_jwk_public_json(key_a, "a", KH_JWT_ALG_ES256, &j), 0);
        return j;
}

/* JWKS with both keys: splice the two one-key documents. */
static char *jwks_ab(void) {
        char *a = NULL, *b = NULL, *doc;

        assert_int_equal(kh_jwk_public_json(key_a, "a", KH_JWT_ALG_ES256, &a), 0);
        assert_int_equal(kh_jwk_public_json(key_b, "b", KH_JWT_ALG_RS256, &b), 0);
        /* {"keys":[A]} + {"keys":[B]} -> {"keys":[A,B]} */
        doc = malloc(strlen(a) + strlen(b) + 4);
        a[strlen(a) - 2] = 0;
        sprintf(doc, "%s,%s", a, b + strlen("{\"keys\":["));
        free(a);
        free(b);
        return doc;
}

static void write_file(const char *path, const char *s) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fputs(s, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

/* A token from key (kid, alg) for issuer iss. */
static char *token(EVP_PKEY *key, enum kh_jwt_alg alg, const char *kid, const char *iss) {
        struct kh_buf b;
        char *claims = test_claims(iss, NULL), *t;

        kh_buf_init(&b, KH_TOKEN_MAX, false);
        assert_int_equal(kh_jwt_sign(key, alg, kid, claims, &b), 0);
        t = strdup((const char *) b.data);
        kh_buf_free(&b);
        free(claims);
        return t;
}

static int verify(struct kh_issuer *iss, const char *t, int64_t now, struct kh_principal *p) {
        return kh_issuer_verify(iss, t, strlen(t), now, p);
}

/* Waits (up to 10 s; the time is never asserted) until the refresh count reaches n, which
 * the issuer bumps once the new keys are in place; then checks that it is exactly n. */
static void wait_refreshes(struct kh_issuer *iss, uint64_t n) {
        for (int i = 0; i < 1000 && kh_issuer_refresh_count(iss) < n; i++)
                usleep(10000);
        usleep(20000); /* room for an unwanted extra refresh to show up */
        assert_int_equal(kh_issuer_refresh_count(iss), n);
}

/* ---- jwks_file ---- */

static const struct kh_claim_matcher roles_admin = { "roles", "keyhold-admin" };

static void test_file_verify_and_principal(void **state) {
        char dir[] = "/tmp/kh-issuer-XXXXXX", path[64];
        char *jw = jwks_a(), *t, *t_wrong_iss, *t_wrong_key;
        struct kh_issuer_config cfg = { .tenant = "acme", .issuer_url = "https://idp.test",
                                        .admins = &roles_admin, .n_admins = 1 };
        struct kh_issuer *iss = NULL;
        struct kh_principal p, untouched;
        uint8_t hash[32];
        (void) state;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/jwks.json", dir);
        write_file(path, jw);
        cfg.jwks_file = path;

        assert_int_equal(kh_issuer_open(&cfg, &iss), 0);
        assert_string_equal(kh_issuer_expected_issuer(iss), "https://idp.test");
        assert_true(kh_issuer_has_keys(iss));
        assert_int_equal(kh_issuer_refresh_count(iss), 1);

        t = token(key_a, KH_JWT_ALG_ES256, "a", "https://idp.test");
        assert_int_equal(verify(iss, t, TEST_NOW, &p), 0);
        assert_string_equal(p.tenant, "acme");
        assert_string_equal(p.sub, TEST_SUB_CANON);
        assert_int_equal(p.exp, TEST_NOW + 600);
        assert_false(p.admin);
        SHA256((const unsigned char *) t, strlen(t), hash);
        assert_memory_equal(p.token_hash, hash, 32);

        /* expired by the caller's clock */
        memset(&untouched, 0x11, sizeof(untouched));
        p = untouched;
        assert_int_equal(verify(iss, t, TEST_NOW + 600 + KH_CLOCK_SKEW_S + 1, &p),
                         -KH_E_INVALID_TOKEN);
        assert_memory_equal(&p, &untouched, sizeof(p));

        t_wrong_iss = token(key_a, KH_JWT_ALG_ES256, "a", "https://idp.test/");
        assert_int_equal(verify(iss, t_wrong_iss, TEST_NOW, &p), -KH_E_INVALID_TOKEN);
        /* same kid, another key type: no key of the set fits (kid, alg), as for an unknown
         * kid: the request waits for one load of the keys */
        t_wrong_key = token(key_b, KH_JWT_ALG_RS256, "a", "https://idp.test");
        assert_int_equal(verify(iss, t_wrong_key, TEST_NOW, &p), KH_ISSUER_WAIT);
        assert_int_equal(verify(iss, "garbage", TEST_NOW, &p), -KH_E_INVALID_TOKEN);

        kh_issuer_close(iss);
        free(t);
        free(t_wrong_iss);
        free(t_wrong_key);
        free(jw);
        unlink(path);
        rmdir(dir);
}

static void test_file_rotation_and_rate_limit(void **state) {
        char dir[] = "/tmp/kh-issuer-XXXXXX", path[64];
        char *ja = jwks_a(), *jab = jwks_ab(), *ta, *tb;
        struct kh_issuer_config cfg = { .tenant = "acme", .issuer_url = "https://idp.test" };
        struct kh_issuer *iss = NULL;
        struct kh_principal p;
        (void) state;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/jwks.json", dir);
        write_file(path, ja);
        cfg.jwks_file = path;
        assert_int_equal(kh_issuer_open(&cfg, &iss), 0);
        ta = token(key_a, KH_JWT_ALG_ES256, "a", "https://idp.test");
        tb = token(key_b, KH_JWT_ALG_RS256, "b", "https://idp.test");

        /* unknown kid: wait for the one refresh it asks for (the file still lacks b) ... */
        assert_int_equal(verify(iss, tb, TEST_NOW, &p), KH_ISSUER_WAIT);
        wait_refreshes(iss, 2);
        /* ... then, with a fresh key set that still lacks it, refused at once */
        assert_int_equal(verify(iss, tb, TEST_NOW, &p), -KH_E_INVALID_TOKEN);

        /* the issuer rotates; within the interval no new fetch happens */
        write_file(path, jab);
        assert_int_equal(verify(iss, tb, TEST_NOW + KH_JWKS_REFRESH_MIN_INTERVAL_S - 1, &p),
                         -KH_E_INVALID_TOKEN);
        /* once the interval has passed, the next unknown kid fetches exactly once */
        assert_int_equal(verify(iss, tb, TEST_NOW + KH_JWKS_REFRESH_MIN_INTERVAL_S, &p),
                         KH_ISSUER_WAIT);
        wait_refreshes(iss, 3);
        assert_int_equal(verify(iss, tb, TEST_NOW + KH_JWKS_REFRESH_MIN_INTERVAL_S, &p), 0);
        assert_int_equal(verify(iss, ta, TEST_NOW + KH_JWKS_REFRESH_MIN_INTERVAL_S, &p), 0);
        assert_int_equal(kh_issuer_refresh_count(iss), 3);
        assert_int_equal(kh_issuer_refresh_failures(iss), 0);

        /* the source breaks: a failed refresh keeps the cached keys */
        write_file(path, "{not json");
        assert_int_equal(verify(iss, "eyJhbGciOiJFUzI1NiIsImtpZCI6InoifQ.e30.AAAA",
                                TEST_NOW + 2 * KH_JWKS_REFRESH_MIN_INTERVAL_S, &p),
                         KH_ISSUER_WAIT);
        wait_refreshes(iss, 4);
        assert_int_equal(kh_issuer_refresh_failures(iss), 1);
        assert_true(kh_issuer_has_keys(iss));
        assert_int_equal(verify(iss, tb, TEST_NOW, &p), 0);

        /* a clock that jumped back allows a request at once */
        write_file(path, ja);
        assert_int_equal(verify(iss, "eyJhbGciOiJFUzI1NiIsImtpZCI6InoifQ.e30.AAAA",
                                TEST_NOW - 1000, &p), KH_ISSUER_WAIT);
        wait_refreshes(iss, 5);

        kh_issuer_close(iss);
        free(ta);
        free(tb);
        free(ja);
        free(jab);
        unlink(path);
        rmdir(dir);
}

static void test_open_refuses_bad_config(void **state) {
        struct kh_issuer *iss = (struct kh_issuer *) 0x1;
        struct kh_issuer_config cfg = { .tenant = "Acme", .issuer_url = "https://idp.test",
                                        .jwks_file = "/nonexistent/jwks.json" };
        (void) state;

        assert_int_equal(kh_issuer_open(&cfg, &iss), -EINVAL); /* tenant syntax */
        cfg.tenant = "acme";
        assert_int_equal(kh_issuer_open(&cfg, &iss), -ENOENT);
        cfg.jwks_file = NULL;
        cfg.issuer_url = "http://example.com"; /* plain http off loopback */
        assert_int_equal(kh_issuer_open(&cfg, &iss), -EINVAL);
        cfg.issuer_url = "ftp://127.0.0.1/";
        assert_int_equal(kh_issuer_open(&cfg, &iss), -EINVAL);
        cfg.issuer_url = "not a url";
        assert_int_equal(kh_issuer_open(&cfg, &iss), -EINVAL);
        assert_ptr_equal(iss, (struct kh_issuer *) 0x1);
}

/* ---- discovery over a loopback HTTP server ---- */

struct server {
        int fd;
        uint16_t port;
        pthread_t thread;
        pthread_mutex_t lock;
        char discovery[512];
        char *jwks;           /* owned */
        int discovery_status; /* 200 unless a test says otherwise */
        unsigned discovery_hits, jwks_hits;
        size_t jwks_padding;  /* bytes of whitespace appended to the JWKS */
};

static void send_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
                if (w <= 0)
                        return;
                p += w;
                n -= (size_t) w;
        }
}

static void reply(int fd, int status, const char *body, size_t padding) {
        char head[256];
        size_t len = strlen(body) + padding;
        char *pad;

        snprintf(head, sizeof(head),
                 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n", status, len);
        send_all(fd, head, strlen(head));
        send_all(fd, body, strlen(body));
        if (padding) {
                pad = malloc(padding);
                memset(pad, ' ', padding);
                send_all(fd, pad, padding);
                free(pad);
        }
}

static void *serve(void *userdata) {
        struct server *s = userdata;

        for (;;) {
                char req[4096];
                size_t n = 0;
                int c = accept(s->fd, NULL, NULL);

                if (c < 0)
                        return NULL; /* shut down */
                while (n < sizeof(req) - 1) {
                        ssize_t r = recv(c, req + n, sizeof(req) - 1 - n, 0);
                        if (r <= 0)
                                break;
                        n += (size_t) r;
                        req[n] = 0;
                        if (strstr(req, "\r\n\r\n"))
                                break;
                }
                req[n] = 0;
                pthread_mutex_lock(&s->lock);
                if (strncmp(req, "GET /.well-known/openid-configuration ", 38) == 0) {
                        s->discovery_hits++;
                        reply(c, s->discovery_status, s->discovery, 0);
                } else if (strncmp(req, "GET /jwks ", 10) == 0) {
                        s->jwks_hits++;
                        reply(c, 200, s->jwks, s->jwks_padding);
                } else
                        reply(c, 404, "{}", 0);
                pthread_mutex_unlock(&s->lock);
                close(c);
        }
}

static void server_start(struct server *s, const char *issuer, const char *jwks_host) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);

        memset(s, 0, sizeof(*s));
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(s->fd >= 0);
        assert_int_equal(bind(s->fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(listen(s->fd, 16), 0);
        assert_int_equal(getsockname(s->fd, (struct sockaddr *) &a, &len), 0);
        s->port = ntohs(a.sin_port);
        pthread_mutex_init(&s->lock, NULL);
        s->discovery_status = 200;
        snprintf(s->discovery, sizeof(s->discovery),
                 "{\"issuer\":\"%s\",\"jwks_uri\":\"http://%s:%u/jwks\","
                 "\"authorization_endpoint\":\"http://x/authorize\"}",
                 issuer, jwks_host, s->port);
        s->jwks = jwks_a();
        assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_set_jwks(struct server *s, char *jwks) {
        pthread_mutex_lock(&s->lock);
        free(s->jwks);
        s->jwks = jwks;
        pthread_mutex_unlock(&s->lock);
}

static void server_stop(struct server *s) {
        shutdown(s->fd, SHUT_RDWR);
        pthread_join(s->thread, NULL);
        close(s->fd);
        free(s->jwks);
        pthread_mutex_destroy(&s->lock);
}

static void test_discovery_issuer_from_document_and_refresh(void **state) {
        struct server s;
        char url[64];
        struct kh_issuer_config cfg = { .tenant = "bw" };
        struct kh_issuer *iss = NULL;
        struct kh_principal p;
        char *ta, *ta_url_iss, *tb, *tc;
        (void) state;

        server_start(&s, "http://identity", "127.0.0.1");
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/", s.port); /* trailing slash */
        cfg.issuer_url = url;
        assert_int_equal(kh_issuer_open(&cfg, &iss), 0);
        assert_string_equal(kh_issuer_expected_issuer(iss), "http://identity");
        assert_int_equal(s.discovery_hits, 1);
        assert_int_equal(s.jwks_hits, 1);
        assert_int_equal(kh_issuer_refresh_count(iss), 1);

        ta = token(key_a, KH_JWT_ALG_ES256, "a", "http://identity");
        ta_url_iss = token(key_a, KH_JWT_ALG_ES256, "a", url);
        tb = token(key_b, KH_JWT_ALG_RS256, "b", "http://identity");
        tc = token(key_b, KH_JWT_ALG_RS256, "c", "http://identity");
        assert_int_equal(verify(iss, ta, TEST_NOW, &p), 0);
        assert_string_equal(p.tenant, "bw");
        /* the authority URL is not the issuer (spec section 3) */
        assert_int_equal(verify(iss, ta_url_iss, TEST_NOW, &p), -KH_E_INVALID_TOKEN);

        /* rotation on the server: the unknown kid triggers one fetch, and waits for it */
        server_set_jwks(&s, jwks_ab());
        assert_int_equal(verify(iss, tb, TEST_NOW, &p), KH_ISSUER_WAIT);
        wait_refreshes(iss, 2);
        assert_int_equal(kh_issuer_refresh_failures(iss), 0);
        assert_int_equal(verify(iss, tb, TEST_NOW + 2, &p), 0);
        assert_int_equal(verify(iss, ta, TEST_NOW + 2, &p), 0);

        /* a kid nobody has: one fetch per interval, however many tokens ask */
        for (int i = 0; i < 5; i++)
                assert_int_equal(verify(iss, tc, TEST_NOW + KH_JWKS_REFRESH_MIN_INTERVAL_S - 1, &p),
                                 -KH_E_INVALID_TOKEN);
        wait_refreshes(iss, 2);
        /* the first asks for a load and waits; the others wait for the same load while it
         * runs, or are refused once it is done: either way one fetch */
        assert_int_equal(verify(iss, tc, TEST_NOW + KH_JWKS_REFRESH_MIN_INTERVAL_S, &p),
                         KH_ISSUER_WAIT);
        for (int i = 0; i < 4; i++) {
                int r = verify(iss, tc, TEST_NOW + KH_JWKS_REFRESH_MIN_INTERVAL_S, &p);
                assert_true(r == KH_ISSUER_WAIT || r == -KH_E_INVALID_TOKEN);
        }
        wait_refreshes(iss, 3);
        pthread_mutex_lock(&s.lock);
        assert_int_equal(s.jwks_hits, 3);
        assert_int_equal(s.discovery_hits, 1); /* refresh goes straight to jwks_uri */
        pthread_mutex_unlock(&s.lock);

        kh_issuer_close(iss);
        server_stop(&s);
        free(ta);
        free(ta_url_iss);
        free(tb);
        free(tc);
}

static void test_discovery_failures(void **state) {
        struct server s;
        char url[64];
        struct kh_issuer_config cfg = { .tenant = "bw" };
        struct kh_issuer *iss = (struct kh_issuer *) 0x1;
        (void) state;

        /* jwks_uri on plain http off loopback */
        server_start(&s, "http://identity", "example.com");
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", s.port);
        cfg.issuer_url = url;
        assert_int_equal(kh_issuer_open(&cfg, &iss), -EBADMSG);
        server_stop(&s);

        server_start(&s, "http://identity", "127.0.0.1");
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", s.port);
        /* discovery answers 404: the issuer is not there (yet) */
        s.discovery_status = 404;
        assert_int_equal(kh_issuer_open(&cfg, &iss), -EPROTO);
        s.discovery_status = 200;
        /* a JWKS past KH_JWKS_MAX */
        s.jwks_padding = KH_JWKS_MAX;
        assert_int_equal(kh_issuer_open(&cfg, &iss), -E2BIG);
        s.jwks_padding = 0;
        /* JWKS that is not one */
        server_set_jwks(&s, strdup("[]"));
        assert_int_equal(kh_issuer_open(&cfg, &iss), -EBADMSG);
        assert_ptr_equal(iss, (struct kh_issuer *) 0x1);
        server_stop(&s);

        /* nobody listening: the port of the stopped server */
        assert_int_equal(kh_issuer_open(&cfg, &iss), -ECONNREFUSED);
        assert_ptr_equal(iss, (struct kh_issuer *) 0x1);
}

/* ---- waiting for a load, periodic loads, removed keys ---- */

static int woken;

static void on_woken(struct kh_loop_task *task) {
        (void) task;
        woken++;
}

static void test_a_waiting_request_is_woken_after_the_load(void **state) {
        char dir[] = "/tmp/kh-issuer-XXXXXX", path[64];
        char *ja = jwks_a(), *jab = jwks_ab(), *tb;
        struct kh_issuer_config cfg = { .tenant = "acme", .issuer_url = "https://idp.test" };
        struct test_loop l;
        struct kh_issuer_waiter w = { .task = { .run = on_woken }, .loop = &l.base };
        struct kh_issuer *iss = NULL;
        struct kh_principal p;
        uint64_t seen;
        (void) state;

        tl_init(&l);
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/jwks.json", dir);
        write_file(path, ja);
        cfg.jwks_file = path;
        assert_int_equal(kh_issuer_open(&cfg, &iss), 0);
        tb = token(key_b, KH_JWT_ALG_RS256, "b", "https://idp.test");

        write_file(path, jab);                  /* the issuer rotated in key b */
        woken = 0;
        seen = kh_issuer_refresh_count(iss);
        assert_int_equal(verify(iss, tb, TEST_NOW, &p), KH_ISSUER_WAIT);
        kh_issuer_wait(iss, &w, seen);
        tl_run_until(&l, 1);
        assert_int_equal(l.n_posted, 1);   /* one post per wake-up, no more */
        assert_int_equal(woken, 1);
        assert_int_equal(verify(iss, tb, TEST_NOW, &p), 0);   /* the rotation did not log b out */

        /* a waiter that comes after the load it waited for is posted at once */
        kh_issuer_wait(iss, &w, seen);
        tl_run_until(&l, 2);
        assert_int_equal(l.n_posted, 2);   /* one post per wake-up, no more */
        assert_int_equal(woken, 2);

        kh_issuer_close(iss);
        free(tb);
        free(ja);
        free(jab);
        unlink(path);
        rmdir(dir);
}

static void test_periodic_refresh_drops_a_removed_key(void **state) {
        char dir[] = "/tmp/kh-issuer-XXXXXX", path[64];
        char *ja = jwks_a(), *jab = jwks_ab(), *tb;
        struct kh_issuer_config cfg = { .tenant = "acme", .issuer_url = "https://idp.test",
                                        .refresh_interval_s = 1 };
        struct kh_issuer *iss = NULL;
        struct kh_principal p;
        uint64_t gen;
        (void) state;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/jwks.json", dir);
        write_file(path, jab);
        cfg.jwks_file = path;
        assert_int_equal(kh_issuer_open(&cfg, &iss), 0);
        tb = token(key_b, KH_JWT_ALG_RS256, "b", "https://idp.test");
        assert_int_equal(verify(iss, tb, TEST_NOW, &p), 0);
        gen = kh_issuer_key_generation(iss);
        assert_int_equal(p.key_generation, gen);

        /* no token asks, yet the keys are reloaded: the same set changes no generation */
        for (int i = 0; i < 500 && kh_issuer_refresh_count(iss) < 2; i++)
                usleep(10000);
        assert_true(kh_issuer_refresh_count(iss) >= 2);
        assert_int_equal(kh_issuer_key_generation(iss), gen);

        /* the issuer withdraws key b: the next periodic load drops it */
        write_file(path, ja);
        uint64_t n = kh_issuer_refresh_count(iss);
        for (int i = 0; i < 500 && kh_issuer_refresh_count(iss) < n + 2; i++)
                usleep(10000);
        assert_true(kh_issuer_key_generation(iss) > gen);
        assert_int_not_equal(verify(iss, tb, TEST_NOW, &p), 0);

        kh_issuer_close(iss);
        free(tb);
        free(ja);
        free(jab);
        unlink(path);
        rmdir(dir);
}

static void test_cache_control_max_age(void **state) {
        (void) state;
#define MA(s) kh_cache_control_max_age(s, strlen(s))
        assert_int_equal(MA("max-age=60"), 60);
        assert_int_equal(MA("public, MAX-AGE=3600, must-revalidate"), 3600);
        assert_int_equal(MA("max-age=\"120\""), 120);
        assert_int_equal(MA("no-store"), 0);
        assert_int_equal(MA("max-age=60, no-cache"), 0);
        assert_int_equal(MA("private"), -1);
        assert_int_equal(MA(""), -1);
        assert_int_equal(MA("max-age="), -1);
        assert_int_equal(MA("max-age=-5"), -1);
        assert_int_equal(MA("max-age=1x"), -1);
        assert_int_equal(MA("max-age=99999999999999999999"), INT32_MAX);
        assert_int_equal(MA("s-maxage=10"), -1);
#undef MA
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_a_waiting_request_is_woken_after_the_load),
                cmocka_unit_test(test_periodic_refresh_drops_a_removed_key),
                cmocka_unit_test(test_cache_control_max_age),
                cmocka_unit_test(test_file_verify_and_principal),
                cmocka_unit_test(test_file_rotation_and_rate_limit),
                cmocka_unit_test(test_open_refuses_bad_config),
                cmocka_unit_test(test_discovery_issuer_from_document_and_refresh),
                cmocka_unit_test(test_discovery_failures),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
