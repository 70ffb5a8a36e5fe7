/* keyhold login-request create | wait | approve | deny ("login with device" and admin
 * approval, spec/trusted-devices.md section 4): the requesting device keeps an ephemeral
 * RSA-2048 key and the access code in its state folder until the answer comes; an approving
 * device opens the user key with its own trust and encapsulates it to the request's key. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/member.h"
#include "cli/output.h"
#include "keyhold/encstring.h"
#include "keyhold/fingerprint.h"

#define POLL_MS 1000
#define WAIT_DEFAULT_S 900 /* a member request's lifetime by default */
#define WAIT_MAX_S 604800  /* an admin request's */
#define EMAIL_MAX 256
#define NAME_MAX_ 50

/* KEYHOLD_ACCESS_CODE_LEN characters of [A-Za-z0-9], uniformly (bytes >= 248 rejected). */
static int access_code(char out[static KEYHOLD_ACCESS_CODE_LEN + 1]) {
        static const char alphabet[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        size_t n = 0;

        while (n < KEYHOLD_ACCESS_CODE_LEN) {
                uint8_t b[32];
                if (RAND_bytes(b, sizeof(b)) != 1)
                        return -EIO;
                for (size_t i = 0; i < sizeof(b) && n < KEYHOLD_ACCESS_CODE_LEN; i++)
                        if (b[i] < 248)
                                out[n++] = alphabet[b[i] % 62];
                OPENSSL_cleanse(b, sizeof(b));
        }
        out[n] = 0;
        return 0;
}

/* The phrase for a base64 SPKI and an e-mail (lowercased here) into out; "" when either is
 * missing or malformed. */
static void phrase(const char *email, const char *spki_b64, char out[KEYHOLD_FINGERPRINT_MAX]) {
        char material[EMAIL_MAX + 1];
        uint8_t *spki = NULL;
        size_t len = 0, i;

        out[0] = 0;
        if (!email || !spki_b64 || strlen(email) > EMAIL_MAX)
                return;
        for (i = 0; email[i]; i++)
                material[i] = (char) tolower((unsigned char) email[i]);
        material[i] = 0;
        if (keyhold_base64_decode(spki_b64, strlen(spki_b64), &spki, &len) != 0)
                return;
        if (len == 0 || keyhold_fingerprint(material, spki, len, out) != 0)
                out[0] = 0;
        free(spki);
}

/* Registers this device unless the server knows it already (keeps a name given before). */
static int ensure_registered(struct kh_cli *cli, struct kh_member *m, const char *name) {
        struct keyhold_device *d = NULL;
        char host[64] = "", fallback[NAME_MAX_ + 1];
        int r;

        r = keyhold_device_get(m->client, NULL, &d);
        if (r == 0 && !name) {
                keyhold_device_free(d);
                return 0;
        }
        keyhold_device_free(d);
        d = NULL;
        if (r < 0 && r != KEYHOLD_E_NOT_FOUND)
                return kh_member_fail(cli, m, r, "looking this device up");
        if (!name) {
                if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
                        (void) snprintf(host, sizeof(host), "this machine");
                (void) snprintf(fallback, sizeof(fallback), "keyhold CLI on %s", host);
                name = fallback;
        }
        r = keyhold_device_register(m->client, name, &d);
        keyhold_device_free(d);
        return r < 0 ? kh_member_fail(cli, m, r, "registering this device") : 0;
}

int kh_cmd_login_request_create(struct kh_cli *cli) {
        const char *email_opt = kh_cli_value(cli, "email"), *name = kh_cli_value(cli, "name");
        bool admin = kh_cli_flag(cli, "admin");
        struct keyhold_auth_request_new req = { 0 };
        struct keyhold_auth_request *ar = NULL;
        char code[KEYHOLD_ACCESS_CODE_LEN + 1], fp[KEYHOLD_FINGERPRINT_MAX], file[128];
        uint8_t *spki = NULL, *pkcs8 = NULL;
        size_t spki_len = 0, pkcs8_len = 0;
        char *spki_b64 = NULL, *pkcs8_b64 = NULL, *email = NULL;
        json_t *saved = NULL;
        struct kh_member m;
        int r;

        if (name && (!*name || strlen(name) > NAME_MAX_))
                return kh_cli_usage_error(cli, "--name must be 1 to %d characters", NAME_MAX_);
        if (email_opt && (!*email_opt || strlen(email_opt) > EMAIL_MAX || !strchr(email_opt, '@')))
                return kh_cli_usage_error(cli, "--email must be an e-mail address");
        r = kh_member_open(cli, admin ? KH_MEMBER_TOKEN | KH_MEMBER_CREATE_DEVICE
                                      : KH_MEMBER_CREATE_DEVICE, &m);
        if (r != 0)
                goto out;
        email = email_opt ? strdup(email_opt) : kh_member_token_email(&m);
        if (!email) {
                r = kh_cli_usage_error(cli, "which account? --email EMAIL (the member token "
                                            "names no email)");
                goto out;
        }
        for (char *p = email; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        if (m.token) {
                r = ensure_registered(cli, &m, name);
                if (r != 0)
                        goto out;
        }
        r = keyhold_rsa_keypair(&spki, &spki_len, &pkcs8, &pkcs8_len);
        if (r == 0)
                r = keyhold_base64_encode(spki, spki_len, &spki_b64);
        if (r == 0)
                r = keyhold_base64_encode(pkcs8, pkcs8_len, &pkcs8_b64);
        if (r == 0)
                r = access_code(code) < 0 ? KEYHOLD_E_CRYPTO : 0;
        if (r < 0) {
                r = kh_cli_fail(cli, "crypto_error", "making the request's key failed: %s",
                                keyhold_strerror(r));
                goto out;
        }
        req = (struct keyhold_auth_request_new) {
                .email = email, .public_key = spki_b64, .access_code = code,
                .type = admin ? KEYHOLD_AUTH_REQUEST_ADMIN_APPROVAL
                              : KEYHOLD_AUTH_REQUEST_AUTHENTICATE_AND_UNLOCK,
        };
        r = keyhold_auth_request_create(m.client, &req, &ar);
        if (r < 0) {
                r = kh_member_fail(cli, &m, r, "creating the login request");
                goto out;
        }
        if (kh_state_request_name(ar->id, file, sizeof(file)) < 0) {
                r = kh_cli_fail(cli, "bad_response", "the server's request id is no id");
                goto out;
        }
        saved = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s}", "id", ar->id, "accessCode", code,
                          "privateKey", pkcs8_b64, "publicKey", spki_b64, "email", email, "type",
                          (int) req.type, "tenant", m.tenant);
        r = saved ? kh_state_write(m.state, file, saved) : -ENOMEM;
        if (r < 0) {
                r = kh_cli_fail(cli, "file_error", "cannot keep the request's key in %s: %s",
                                kh_state_path(m.state), strerror(-r));
                goto out;
        }
        phrase(email, spki_b64, fp);
        if (kh_cli_json(cli)) {
                json_auto_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", ar->id,
                                           "fingerprint", fp, "email", email, "type",
                                           admin ? "admin" : "device", "identifier",
                                           kh_member_identifier(&m));
                r = kh_cli_print_json(cli, o);
        } else {
                KH_CLEANUP(kh_freep) char *shown = kh_out_printable(email);
                printf("Login request %s for %s\n"
                       "Fingerprint phrase: %s\n"
                       "Check that the approver sees the same phrase, then wait for the answer:\n"
                       "  keyhold login-request wait %s\n",
                       ar->id, shown ? shown : "-", fp, ar->id);
                printf(admin ? "An approver answers it with: keyhold approvals approve %s\n"
                             : "Approve it from a trusted device with: keyhold login-request "
                               "approve %s\n",
                       ar->id);
                r = 0;
        }
out:
        OPENSSL_cleanse(code, sizeof(code));
        json_decref(saved);
        keyhold_auth_request_free(ar);
        free(spki);
        free(spki_b64);
        keyhold_wipe_free(pkcs8, pkcs8_len);
        if (pkcs8_b64)
                keyhold_wipe_free(pkcs8_b64, strlen(pkcs8_b64));
        free(email);
        kh_member_close(&m);
        return r;
}

/* The answer is final: the request's files go. */
static void forget(struct kh_member *m, const char *file) {
        (void) kh_state_remove(m->state, file);
}

/* The user key from an approved answer's key with the request's private key. */
static int open_answer(struct kh_cli *cli, const json_t *saved, const char *key,
                       uint8_t user_key[KEYHOLD_USER_KEY_LEN]) {
        const json_t *pk = json_object_get(saved, "privateKey");
        uint8_t *pkcs8 = NULL, *pt = NULL;
        size_t pkcs8_len = 0, pt_len = 0;
        int r;

        if (!json_is_string(pk) ||
            keyhold_base64_decode(json_string_value(pk), json_string_length(pk), &pkcs8,
                                  &pkcs8_len) != 0)
                return kh_cli_fail(cli, "file_error", "the request's file holds no private key");
        r = keyhold_rsa_decapsulate(pkcs8, pkcs8_len, key, strlen(key), &pt, &pt_len);
        keyhold_wipe_free(pkcs8, pkcs8_len);
        if (r == 0 && pt_len != KEYHOLD_USER_KEY_LEN)
                r = KEYHOLD_E_KEY;
        if (r == 0)
                memcpy(user_key, pt, KEYHOLD_USER_KEY_LEN);
        keyhold_wipe_free(pt, pt_len);
        if (r < 0)
                return kh_cli_fail(cli, "unlock_failed", "the approval's key does not open with "
                                   "this request's key: %s", keyhold_strerror(r));
        return 0;
}

static int deliver(struct kh_cli *cli, const char *id, const uint8_t user_key[KEYHOLD_USER_KEY_LEN]) {
        const char *out = kh_cli_value(cli, "out");
        char *text = kh_member_key_text(user_key);
        int r;

        if (!text)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        if (kh_cli_json(cli)) {
                json_auto_t *o = out ? json_pack("{s:s, s:s, s:s}", "id", id, "status", "approved",
                                                 "file", out)
                                     : json_pack("{s:s, s:s, s:s}", "id", id, "status",
                                                 "approved", "user_key", text);
                r = out ? kh_member_write_secret(cli, out, text) : 0;
                if (r == 0)
                        r = kh_cli_print_json(cli, o);
        } else {
                r = kh_member_write_secret(cli, out, text);
                if (r == 0 && out)
                        printf("Request %s approved: the user key is in %s (mode 0600).\n", id, out);
        }
        keyhold_wipe_free(text, strlen(text));
        return r;
}

int kh_cmd_login_request_wait(struct kh_cli *cli) {
        const char *given = kh_cli_operand(cli, 0);
        uint8_t user_key[KEYHOLD_USER_KEY_LEN];
        KH_CLEANUP(kh_freep) char *latest = NULL;
        json_t *saved = NULL;
        const char *id, *code;
        struct timespec start, now;
        char file[128];
        struct kh_member m;
        uint64_t timeout_s;
        int r;

        r = kh_cli_number(cli, "timeout", 0, WAIT_MAX_S, WAIT_DEFAULT_S, &timeout_s);
        if (r != 0)
                return r;
        r = kh_member_open(cli, 0, &m);
        if (r != 0)
                goto out;
        if (!given) {
                r = kh_state_latest_request(m.state, &latest);
                if (r < 0) {
                        r = kh_cli_fail(cli, "no_request", "this device has no login request "
                                        "waiting in %s (keyhold login-request create)",
                                        kh_state_path(m.state));
                        goto out;
                }
                given = latest;
        }
        if (kh_state_request_name(given, file, sizeof(file)) < 0) {
                r = kh_cli_usage_error(cli, "'%s' is no request id", given);
                goto out;
        }
        r = kh_state_read(m.state, file, &saved);
        if (r < 0) {
                r = kh_cli_fail(cli, "no_request", "this device made no request %s (or it was "
                                "answered already): %s/%s: %s", given, kh_state_path(m.state),
                                file, r == -EPERM ? "open to group or others" : strerror(-r));
                goto out;
        }
        id = json_string_value(json_object_get(saved, "id"));
        code = json_string_value(json_object_get(saved, "accessCode"));
        if (!id || !code) {
                r = kh_cli_fail(cli, "file_error", "%s/%s holds no request", kh_state_path(m.state),
                                file);
                goto out;
        }
        kh_cli_catch_signals();
        (void) clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                struct keyhold_auth_request *ar = NULL;
                enum keyhold_auth_request_status st;

                r = keyhold_auth_request_response(m.client, id, code, &ar);
                if (r == KEYHOLD_E_NOT_FOUND) {
                        forget(&m, file);
                        r = kh_cli_fail(cli, "expired", "request %s is gone: it expired, or its "
                                        "key was delivered already", id);
                        goto out;
                }
                if (r < 0) {
                        r = kh_member_fail(cli, &m, r, "asking for the answer");
                        goto out;
                }
                st = ar->status;
                if (st == KEYHOLD_AUTH_REQUEST_APPROVED && ar->key) {
                        r = open_answer(cli, saved, ar->key, user_key);
                        keyhold_auth_request_free(ar);
                        if (r == 0) {
                                forget(&m, file);
                                r = deliver(cli, id, user_key);
                                OPENSSL_cleanse(user_key, sizeof(user_key));
                        }
                        goto out;
                }
                keyhold_auth_request_free(ar);
                if (st == KEYHOLD_AUTH_REQUEST_DENIED || st == KEYHOLD_AUTH_REQUEST_EXPIRED) {
                        forget(&m, file);
                        r = st == KEYHOLD_AUTH_REQUEST_DENIED
                                    ? kh_cli_fail(cli, "denied", "request %s was denied", id)
                                    : kh_cli_fail(cli, "expired", "request %s expired", id);
                        goto out;
                }
                (void) clock_gettime(CLOCK_MONOTONIC, &now);
                if ((uint64_t) (now.tv_sec - start.tv_sec) >= timeout_s) {
                        r = kh_cli_fail(cli, "timeout", "request %s is still pending after %llu s; "
                                        "`keyhold login-request wait %s` waits again", id,
                                        (unsigned long long) timeout_s, id);
                        goto out;
                }
                if (!kh_cli_sleep_ms(POLL_MS)) {
                        r = kh_cli_fail(cli, "interrupted", "stopped waiting; the request stays "
                                        "(keyhold login-request wait %s)", id);
                        goto out;
                }
        }
out:
        json_decref(saved);
        kh_member_close(&m);
        return r;
}

/* Approve (with the user key this device unlocks) or deny the member's request. */
static int answer(struct kh_cli *cli, bool approve) {
        const char *id = kh_cli_operand(cli, 0), *expect = NULL;
        struct keyhold_auth_request *ar = NULL;
        uint8_t user_key[KEYHOLD_USER_KEY_LEN];
        char fp[KEYHOLD_FINGERPRINT_MAX] = "";
        uint8_t *spki = NULL;
        size_t spki_len = 0;
        char *key = NULL, *email = NULL;
        struct kh_member m;
        int r;

        if (approve)
                expect = kh_cli_value(cli, "fingerprint");
        r = kh_member_open(cli, KH_MEMBER_TOKEN, &m);
        if (r != 0)
                goto out;
        if (!kh_member_identifier(&m)) {
                r = kh_cli_fail(cli, "not_trusted", "this machine is no device of the member yet "
                                "(keyhold device trust)");
                goto out;
        }
        r = keyhold_auth_request_get(m.client, id, &ar);
        if (r < 0) {
                r = kh_member_fail(cli, &m, r, "reading the request");
                goto out;
        }
        if (ar->status != KEYHOLD_AUTH_REQUEST_PENDING) {
                r = kh_cli_fail(cli, "not_pending", "request %s is not pending any more", id);
                goto out;
        }
        email = ar->email ? strdup(ar->email) : kh_member_token_email(&m);
        phrase(email, ar->public_key, fp);
        if (expect && strcmp(expect, fp) != 0) {
                r = kh_cli_fail(cli, "fingerprint_mismatch", "request %s shows the phrase '%s', "
                                "not the one given: nothing was approved", id, fp[0] ? fp : "-");
                goto out;
        }
        if (approve) {
                r = kh_member_unlock(cli, &m, user_key);
                if (r != 0)
                        goto out;
                if (!ar->public_key ||
                    keyhold_base64_decode(ar->public_key, strlen(ar->public_key), &spki,
                                          &spki_len) != 0) {
                        OPENSSL_cleanse(user_key, sizeof(user_key));
                        r = kh_cli_fail(cli, "bad_response", "request %s carries no public key", id);
                        goto out;
                }
                r = keyhold_rsa_encapsulate(spki, spki_len, user_key, sizeof(user_key), &key);
                OPENSSL_cleanse(user_key, sizeof(user_key));
                if (r < 0) {
                        r = kh_cli_fail(cli, "invalid_key", "request %s's public key is no RSA-2048 "
                                        "key: %s", id, keyhold_strerror(r));
                        goto out;
                }
        }
        r = keyhold_auth_request_answer(m.client, id, approve, key, NULL);
        if (r < 0) {
                r = kh_member_fail(cli, &m, r, approve ? "approving" : "denying");
                goto out;
        }
        if (kh_cli_json(cli)) {
                json_auto_t *o = json_pack("{s:s, s:s, s:s}", "id", id, "status",
                                           approve ? "approved" : "denied", "fingerprint", fp);
                r = kh_cli_print_json(cli, o);
        } else {
                printf("Request %s %s (fingerprint phrase %s).\n", id,
                       approve ? "approved" : "denied", fp[0] ? fp : "-");
                r = 0;
        }
out:
        free(spki);
        free(key);
        free(email);
        keyhold_auth_request_free(ar);
        kh_member_close(&m);
        return r;
}

int kh_cmd_login_request_approve(struct kh_cli *cli) {
        return answer(cli, true);
}

int kh_cmd_login_request_deny(struct kh_cli *cli) {
        return answer(cli, false);
}
