/* The web console (docs/console.md): its files as built into the binary (console-files.h),
 * and config.json, which tells the console where its tenant's admins sign in. Only bytes are
 * served here: the console is a client of the admin routes like the command line, with the
 * admin's bearer token on every call, so it has no session and no state on the server. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/errors.h"
#include "http/console-files.h"
#include "http/http-internal.h"

#define CONSOLE_INDEX "index.html"
#define CONSOLE_CONFIG "config.json"
#define ORIGIN_MAX 300

/* Where the console's admins sign in: the tenant's admin_issuer, else its issuer. */
static const char *login_issuer(const struct kh_config_tenant *c) {
        return c->admin_issuer && c->admin_issuer[0] ? c->admin_issuer : c->issuer;
}

/* The origin (scheme://host[:port]) of an issuer URL, for the CSP's connect-src: the console
 * fetches the issuer's discovery document and its token endpoint. "" when the URL holds a
 * character that has no place in an origin (it would end the directive). */
static void origin_of(const char *url, char out[static ORIGIN_MAX]) {
        const char *host = url ? strstr(url, "://") : NULL;
        size_t n;

        out[0] = '\0';
        if (!host)
                return;
        host += 3;
        n = (size_t) (host - url) + strcspn(host, "/?#");
        if (n >= ORIGIN_MAX)
                return;
        for (const char *c = host; c < url + n; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                      (*c >= '0' && *c <= '9') || strchr(".-:[]_~", *c)))
                        return;
        memcpy(out, url, n);
        out[n] = '\0';
}

/* Headers of every console answer: a Content-Security-Policy that lets the page run only its
 * own files (no inline script or style, no eval), talk only to keyholdd and the issuer, and
 * sit in no frame; no Referer (the login redirect carries a code in the URL); no sniffing. */
static void add_console_headers(struct kh_http_req *req) {
        const struct kh_config_tenant *c = req->tenant->config;
        char issuer[ORIGIN_MAX], other[ORIGIN_MAX], csp[2 * ORIGIN_MAX + 320];
        int n;
        h2o_iovec_t v;

        origin_of(login_issuer(c), issuer);
        origin_of(c->issuer, other);
        if (strcmp(issuer, other) == 0)
                other[0] = '\0';
        n = snprintf(csp, sizeof(csp),
                     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                     "connect-src 'self'%s%s%s%s; object-src 'none'; frame-ancestors 'none'; "
                     "base-uri 'none'; form-action 'self'",
                     issuer[0] ? " " : "", issuer, other[0] ? " " : "", other);
        v = h2o_strdup(&req->h2o->pool, csp, (size_t) n);
        kh_http_add_header_str(req, "content-security-policy", v.base, v.len);
        kh_http_add_header_str(req, "referrer-policy", H2O_STRLIT("no-referrer"));
        kh_http_add_header_str(req, "x-content-type-options", H2O_STRLIT("nosniff"));
        kh_http_add_header_str(req, "x-frame-options", H2O_STRLIT("DENY"));
        kh_http_add_header_str(req, "cross-origin-opener-policy", H2O_STRLIT("same-origin"));
}

static bool etag_matches(const struct kh_http_req *req, const char *etag) {
        const h2o_iovec_t *inm = kh_http_header(req, H2O_TOKEN_IF_NONE_MATCH);
        size_t n = strlen(etag);

        return inm && inm->len == n && memcmp(inm->base, etag, n) == 0;
}

/* The tenant's sign-in settings, for the console's OIDC login (docs/console.md). */
static int reply_config(struct kh_http_req *req) {
        const struct kh_config_tenant *c = req->tenant->config;
        const char *issuer = login_issuer(c);
        json_auto_t *body = json_pack(
                "{s:s, s:o, s:o, s:o}", "tenant", req->tenant->id, "issuer",
                issuer && issuer[0] ? json_string(issuer) : json_null(), "client_id",
                c->console_client_id && c->console_client_id[0] ? json_string(c->console_client_id)
                                                                : json_null(),
                "audience", c->audience && c->audience[0] ? json_string(c->audience) : json_null());
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

        if (!text)
                return -ENOMEM;
        add_console_headers(req);
        /* the configuration may change with a restart: ask each time */
        kh_http_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
        kh_http_reply(req, 200, "application/json", text, strlen(text), false);
        free(text);
        return 0;
}

static int reply_file(struct kh_http_req *req, const char *name, size_t len) {
        const struct kh_console_file *f = NULL;

        for (size_t i = 0; i < kh_console_n_files && !f; i++)
                if (strlen(kh_console_files[i].name) == len &&
                    memcmp(kh_console_files[i].name, name, len) == 0)
                        f = &kh_console_files[i];
        if (!f)
                return -KH_E_NOT_FOUND;
        add_console_headers(req);
        /* names carry no hash, so a cache revalidates each time; the ETag makes that cheap */
        kh_http_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-cache"));
        kh_http_add_header(req, H2O_TOKEN_ETAG, f->etag, strlen(f->etag));
        if (etag_matches(req, f->etag)) {
                kh_http_reply(req, 304, NULL, NULL, 0, false);
                return 0;
        }
        kh_http_reply(req, 200, f->content_type, f->bytes, f->len, false);
        return 0;
}

int kh_route_console(struct kh_http_req *req, const struct kh_principal *who) {
        const struct kh_slice *file = req->target->n_params ? &req->target->params[0] : NULL;

        (void) who;
        if (!req->tenant)
                return -KH_E_UNKNOWN_TENANT;
        if (!file)
                return reply_file(req, H2O_STRLIT(CONSOLE_INDEX));
        if (file->len == strlen(CONSOLE_CONFIG) && memcmp(file->p, CONSOLE_CONFIG, file->len) == 0)
                return reply_config(req);
        return reply_file(req, file->p, file->len);
}

/* "/console" without its slash: the console's relative links and its redirect URI need the
 * slash, so send the browser there (relative: the same under /t/{tenant}/). */
int kh_route_console_bare(struct kh_http_req *req, const struct kh_principal *who) {
        (void) who;
        kh_http_add_header(req, H2O_TOKEN_LOCATION, H2O_STRLIT("console/"));
        kh_http_reply(req, 308, NULL, NULL, 0, false);
        return 0;
}
