/* keyhold device trust | unlock | rotate | list | untrust, and keyhold member remove: this machine
 * as a trusted device of its member (libkeyhold's client and device.h, state in --state),
 * and the admin's view of a member's devices (/admin/members/{user}/...). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/member.h"
#include "cli/output.h"
#include "cli/rotate.h"
#include "common/parse.h"
#include "keyhold/device.h"

#define DEVICE_NAME_MAX 50

/* "keyhold on HOST", cut to Bitwarden's 50 characters. */
static void default_name(char out[static DEVICE_NAME_MAX + 1]) {
        char host[64] = "";

        if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
                (void) snprintf(host, sizeof(host), "this machine");
        (void) snprintf(out, DEVICE_NAME_MAX + 1, "keyhold CLI on %s", host);
}

int kh_cmd_device_trust(struct kh_cli *cli) {
        const char *file = kh_cli_value(cli, "user-key-file"), *name = kh_cli_value(cli, "name");
        struct keyhold_device_trust *t = NULL;
        struct keyhold_device *d = NULL;
        uint8_t user_key[KEYHOLD_USER_KEY_LEN];
        char name_buf[DEVICE_NAME_MAX + 1];
        KH_CLEANUP(kh_freep) char *dk = NULL;
        struct kh_member m;
        json_t *saved;
        int r;

        if (!file)
                return kh_cli_usage_error(cli, "--user-key-file FILE is required (the member's "
                                               "user key, base64; - reads stdin)");
        if (name && (!*name || strlen(name) > DEVICE_NAME_MAX))
                return kh_cli_usage_error(cli, "--name must be 1 to %d characters", DEVICE_NAME_MAX);
        r = kh_member_open(cli, KH_MEMBER_TOKEN | KH_MEMBER_CREATE_DEVICE, &m);
        if (r != 0)
                goto out;
        r = kh_member_read_user_key(cli, file, user_key);
        if (r != 0)
                goto out;
        if (!name) {
                /* a device the server knows keeps its name */
                r = keyhold_device_get(m.client, NULL, &d);
                if (r < 0 && r != KEYHOLD_E_NOT_FOUND) {
                        r = kh_member_fail(cli, &m, r, "looking this device up");
                        goto out;
                }
                if (d && d->name && strlen(d->name) <= DEVICE_NAME_MAX)
                        (void) snprintf(name_buf, sizeof(name_buf), "%s", d->name);
                else
                        default_name(name_buf);
                keyhold_device_free(d);
                d = NULL;
                name = name_buf;
        }
        r = keyhold_device_register(m.client, name, &d);
        if (r < 0) {
                r = kh_member_fail(cli, &m, r, "registering this device");
                goto out;
        }
        r = keyhold_device_trust_new(user_key, &t);
        if (r < 0) {
                r = kh_cli_fail(cli, "crypto_error", "making this device's keys failed: %s",
                                keyhold_strerror(r));
                goto out;
        }
        r = keyhold_device_keys_put(m.client, t, NULL);
        if (r < 0) {
                r = kh_member_fail(cli, &m, r, "storing this device's trust");
                goto out;
        }
        r = keyhold_base64_encode(t->device_key, sizeof(t->device_key), &dk);
        saved = r == 0 ? json_pack("{s:s, s:s, s:s, s:s, s:s}", "identifier",
                                   kh_member_identifier(&m), "id", d->id, "name", name,
                                   "deviceKey", dk, "encryptedPrivateKey",
                                   t->encrypted_private_key)
                       : NULL;
        if (!saved) {
                r = kh_cli_fail(cli, "internal_error", "out of memory");
                goto out;
        }
        r = kh_state_write(m.state, "device.json", saved);
        json_decref(saved);
        if (r < 0) {
                r = kh_cli_fail(cli, "file_error",
                                "the server trusts this device now, but its device key could not "
                                "be saved in %s (%s): run the command again",
                                kh_state_path(m.state), strerror(-r));
                goto out;
        }
        if (kh_cli_json(cli)) {
                json_auto_t *o = json_pack("{s:s, s:s, s:s, s:b, s:s}", "id", d->id, "identifier",
                                           kh_member_identifier(&m), "name", name, "trusted", 1,
                                           "state", kh_state_path(m.state));
                r = kh_cli_print_json(cli, o);
        } else {
                KH_CLEANUP(kh_freep) char *shown = kh_out_printable(name);
                printf("This device is trusted: %s (identifier %s, id %s).\n"
                       "Its device key is in %s/device.json; `keyhold device unlock` gives the "
                       "user key.\n",
                       shown ? shown : "-", kh_member_identifier(&m), d->id,
                       kh_state_path(m.state));
                r = 0;
        }
out:
        if (dk)
                OPENSSL_cleanse(dk, strlen(dk));
        OPENSSL_cleanse(user_key, sizeof(user_key));
        keyhold_device_trust_free(t);
        keyhold_device_free(d);
        kh_member_close(&m);
        return r;
}

int kh_cmd_device_unlock(struct kh_cli *cli) {
        const char *out = kh_cli_value(cli, "out");
        uint8_t user_key[KEYHOLD_USER_KEY_LEN];
        struct kh_member m;
        char *text = NULL;
        int r;

        r = kh_member_open(cli, KH_MEMBER_TOKEN, &m);
        if (r == 0)
                r = kh_member_unlock(cli, &m, user_key);
        if (r != 0) {
                kh_member_close(&m);
                return r;
        }
        text = kh_member_key_text(user_key);
        OPENSSL_cleanse(user_key, sizeof(user_key));
        if (!text)
                r = kh_cli_fail(cli, "internal_error", "out of memory");
        else if (kh_cli_json(cli) && !out) {
                json_auto_t *o = json_pack("{s:s}", "user_key", text);
                r = kh_cli_print_json(cli, o);
        } else {
                r = kh_member_write_secret(cli, out, text);
                if (r == 0 && out && kh_cli_json(cli)) {
                        json_auto_t *o = json_pack("{s:s}", "file", out);
                        r = kh_cli_print_json(cli, o);
                } else if (r == 0 && out) {
                        printf("The user key is in %s (mode 0600).\n", out);
                }
        }
        if (text)
                keyhold_wipe_free(text, strlen(text));
        kh_member_close(&m);
        return r;
}

/* The new values of a rotation: this device's, and those of the other trusted devices
 * that could be re-wrapped (up[0..n), their strings owned by uk[] and pk[]). */
struct rotation {
        char *cur_uk, *cur_pk;
        struct keyhold_device_trust_update *up;
        char **uk, **pk;
        size_t n;
        json_t *skipped; /* [{"id", "name", "reason"}]: trusted devices left out */
};

static void rotation_done(struct rotation *x) {
        for (size_t i = 0; i < x->n; i++) {
                free(x->uk[i]);
                free(x->pk[i]);
        }
        free(x->up);
        free(x->uk);
        free(x->pk);
        free(x->cur_uk);
        free(x->cur_pk);
        json_decref(x->skipped);
        *x = (struct rotation) { 0 };
}

/* Re-wraps every other trusted device of l (not me) for new_key; the ones whose public key
 * does not open under old_key go to x->skipped. Returns 0 or 1 after reporting. */
static int rewrap_others(struct kh_cli *cli, const struct keyhold_device_list *l,
                         const struct keyhold_device *me,
                         const uint8_t old_key[KEYHOLD_USER_KEY_LEN],
                         const uint8_t new_key[KEYHOLD_USER_KEY_LEN], struct rotation *x) {
        x->up = calloc(l->n ? l->n : 1, sizeof(*x->up));
        x->uk = calloc(l->n ? l->n : 1, sizeof(*x->uk));
        x->pk = calloc(l->n ? l->n : 1, sizeof(*x->pk));
        x->skipped = json_array();
        if (!x->up || !x->uk || !x->pk || !x->skipped)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        for (size_t i = 0; i < l->n; i++) {
                const struct keyhold_device *d = &l->items[i];
                json_t *row;
                int r;

                if (d == me || !d->is_trusted || !d->id)
                        continue;
                r = d->encrypted_public_key
                            ? kh_rotate_rewrap(old_key, new_key, d->encrypted_public_key,
                                               &x->uk[x->n], &x->pk[x->n])
                            : KEYHOLD_E_INVALID;
                if (r == KEYHOLD_E_NOMEM || r == KEYHOLD_E_CRYPTO)
                        return kh_cli_fail(cli, r == KEYHOLD_E_NOMEM ? "internal_error"
                                                                      : "crypto_error",
                                           "re-wrapping device %s failed: %s", d->id,
                                           keyhold_strerror(r));
                if (r < 0) {
                        row = json_pack("{s:s, s:s?, s:s}", "id", d->id, "name", d->name,
                                        "reason", kh_rotate_reason(r));
                        if (!row || json_array_append_new(x->skipped, row) < 0)
                                return kh_cli_fail(cli, "internal_error", "out of memory");
                        continue;
                }
                x->up[x->n] = (struct keyhold_device_trust_update) {
                        .device_id = d->id,
                        .encrypted_user_key = x->uk[x->n],
                        .encrypted_public_key = x->pk[x->n],
                };
                x->n++;
        }
        return 0;
}

/* This device's new values, checked: they must open new_key before anything is sent. */
static int rewrap_this_device(struct kh_cli *cli, const uint8_t device_key[KEYHOLD_USER_KEY_LEN],
                              const char *priv, const uint8_t new_key[KEYHOLD_USER_KEY_LEN],
                              struct rotation *x) {
        uint8_t check[KEYHOLD_USER_KEY_LEN];
        int r;

        r = keyhold_device_rotate(device_key, priv, new_key, &x->cur_uk, &x->cur_pk);
        if (r == 0)
                r = keyhold_device_unlock(device_key, priv, x->cur_uk, check);
        if (r == 0 && CRYPTO_memcmp(check, new_key, sizeof(check)) != 0)
                r = KEYHOLD_E_CRYPTO;
        OPENSSL_cleanse(check, sizeof(check));
        if (r < 0)
                return kh_cli_fail(cli, "crypto_error", "re-wrapping this device's trust failed: %s",
                                   keyhold_strerror(r));
        return 0;
}

static int print_rotation(struct kh_cli *cli, const struct rotation *x, bool untrust) {
        const json_t *v;
        size_t i;

        if (kh_cli_json(cli)) {
                json_auto_t *ids = json_array(), *o = NULL;

                json_array_foreach(x->skipped, i, v)
                        if (!ids || json_array_append(ids, json_object_get(v, "id")) < 0)
                                return kh_cli_fail(cli, "internal_error", "out of memory");
                o = json_pack("{s:I, s:O, s:b}", "rotated", (json_int_t) (x->n + 1), "skipped",
                              ids, "untrusted_unlisted", untrust);
                return kh_cli_print_json(cli, o);
        }
        printf("Rotated: %zu device%s now open%s the new user key (this device and %zu other%s).\n",
               x->n + 1, x->n ? "s" : "", x->n ? "" : "s", x->n, x->n == 1 ? "" : "s");
        json_array_foreach(x->skipped, i, v) {
                KH_CLEANUP(kh_freep) char *id =
                        kh_out_printable(json_string_value(json_object_get(v, "id")));
                const char *given = json_string_value(json_object_get(v, "name"));
                KH_CLEANUP(kh_freep) char *name = kh_out_printable(given ? given : "-");
                printf("Left out: device %s (%s): %s; %s.\n", id ? id : "-", name ? name : "-",
                       json_string_value(json_object_get(v, "reason")),
                       untrust ? "it was untrusted (--untrust-unlisted)"
                               : "it keeps its trust under the old user key (untrust it, or "
                                 "rotate with --untrust-unlisted)");
        }
        return 0;
}

int kh_cmd_device_rotate(struct kh_cli *cli) {
        const char *file = kh_cli_value(cli, "new-user-key-file");
        bool untrust = kh_cli_flag(cli, "untrust-unlisted");
        uint8_t old_key[KEYHOLD_USER_KEY_LEN] = { 0 }, new_key[KEYHOLD_USER_KEY_LEN] = { 0 };
        uint8_t device_key[KEYHOLD_USER_KEY_LEN] = { 0 };
        const struct keyhold_device *me = NULL;
        struct keyhold_device_list *l = NULL;
        struct rotation x = { 0 };
        KH_CLEANUP(kh_freep) char *priv = NULL;
        const char *ident;
        struct kh_member m;
        int r;

        if (!file)
                return kh_cli_usage_error(cli, "--new-user-key-file FILE is required (the new "
                                               "user key, base64 of 64 bytes; - reads stdin)");
        r = kh_member_open(cli, KH_MEMBER_TOKEN, &m);
        if (r == 0)
                r = kh_member_read_user_key(cli, file, new_key);
        if (r == 0)
                r = kh_member_unlock_trust(cli, &m, old_key, device_key, &priv);
        if (r != 0)
                goto out;
        if (CRYPTO_memcmp(old_key, new_key, sizeof(old_key)) == 0) {
                r = kh_cli_fail(cli, "same_key", "%s holds the current user key: nothing to "
                                "rotate", strcmp(file, "-") == 0 ? "stdin" : file);
                goto out;
        }
        r = keyhold_devices_list(m.client, &l);
        if (r < 0) {
                r = kh_member_fail(cli, &m, r, "listing the devices");
                goto out;
        }
        ident = kh_member_identifier(&m);
        for (size_t i = 0; ident && i < l->n; i++)
                if (l->items[i].identifier && strcmp(l->items[i].identifier, ident) == 0)
                        me = &l->items[i];
        if (!me || !me->id) {
                r = kh_cli_fail(cli, "not_trusted", "the server does not list this device (%s) "
                                "among the member's devices", ident ? ident : "-");
                goto out;
        }
        r = rewrap_this_device(cli, device_key, priv, new_key, &x);
        if (r == 0)
                r = rewrap_others(cli, l, me, old_key, new_key, &x);
        if (r != 0)
                goto out;
        r = keyhold_devices_update_trust(m.client, x.cur_uk, x.cur_pk, x.up, x.n, untrust);
        if (r < 0) {
                r = kh_member_fail(cli, &m, r, "sending the new trust values (update-trust)");
                goto out;
        }
        r = print_rotation(cli, &x, untrust);
out:
        OPENSSL_cleanse(old_key, sizeof(old_key));
        OPENSSL_cleanse(new_key, sizeof(new_key));
        OPENSSL_cleanse(device_key, sizeof(device_key));
        rotation_done(&x);
        keyhold_device_list_free(l);
        kh_member_close(&m);
        return r;
}

static const struct kh_table_column device_columns[] = {
        { "ID", "id", false },         { "IDENTIFIER", "identifier", false },
        { "NAME", "name", false },     { "TYPE", "type", true },
        { "TRUSTED", "trusted", false }, { "CREATED", "created", false },
};

/* The list as one table (or JSON array) of {"id", "identifier", "name", "type", "trusted",
 * "created"}. */
static int print_devices(struct kh_cli *cli, const json_t *rows) {
        KH_CLEANUP(kh_table_freep) struct kh_table *t = NULL;
        const json_t *v;
        size_t i;
        int r;

        if (kh_cli_json(cli))
                return kh_cli_print_json(cli, rows);
        r = kh_table_new(device_columns, KH_ELEMENTSOF(device_columns), &t);
        json_array_foreach(rows, i, v) {
                if (r < 0)
                        break;
                r = kh_table_add_object(t, v);
        }
        if (r == 0)
                r = kh_table_print(t, stdout);
        return r < 0 ? kh_cli_fail(cli, "internal_error", "cannot print the table") : 0;
}

/* A GUID operand or option, canonical, into out. Returns 0 or 2 after a usage error. */
static int guid_arg(struct kh_cli *cli, const char *what, const char *s, char out[KH_GUID_BUF]) {
        if (!s || kh_parse_guid(s, strlen(s), out) < 0)
                return kh_cli_usage_error(cli, "%s must be a GUID such as "
                                               "3fa85f64-5717-4562-b3fc-2c963f66afa6", what);
        return 0;
}

/* The field name of an admin device object under camelCase or snake_case. */
static const json_t *admin_field(const json_t *d, const char *camel, const char *snake) {
        const json_t *v = json_object_get(d, camel);
        return v ? v : json_object_get(d, snake);
}

/* The devices of an admin answer: {"data": [...]} or {"devices": [...]}, as table rows. */
static int admin_rows(struct kh_cli *cli, const json_t *answer, json_t **ret) {
        const json_t *list = json_object_get(answer, "data"), *d;
        json_t *rows = json_array();
        size_t i;

        if (!json_is_array(list))
                list = json_object_get(answer, "devices");
        if (!json_is_array(list) || !rows) {
                json_decref(rows);
                return kh_cli_fail(cli, "bad_response", "the server's answer lists no devices");
        }
        json_array_foreach(list, i, d) {
                const json_t *given = admin_field(d, "isTrusted", "trusted");
                json_t *row, *trusted;

                trusted = json_boolean(json_is_boolean(given)
                                               ? json_is_true(given)
                                               : json_is_string(json_object_get(d, "encryptedUserKey")));
                row = json_pack("{s:O?, s:O?, s:O?, s:O?, s:o, s:O?}", "id",
                                json_object_get(d, "id"), "identifier",
                                json_object_get(d, "identifier"), "name", json_object_get(d, "name"),
                                "type", json_object_get(d, "type"), "trusted", trusted,
                                "created", admin_field(d, "creationDate", "created"));
                if (!row || json_array_append_new(rows, row) < 0) {
                        json_decref(rows);
                        return kh_cli_fail(cli, "internal_error", "out of memory");
                }
        }
        *ret = rows;
        return 0;
}

/* The devices of user through the admin routes (socket or --url with an admin token). */
static int admin_devices(struct kh_cli *cli, const char *user, json_t **ret) {
        json_auto_t *answer = NULL;
        char path[128];
        int r;

        (void) snprintf(path, sizeof(path), "/admin/members/%s/devices", user);
        r = kh_cli_get(cli, KH_CLIENT_TENANT, path, &answer);
        if (r != 0)
                return r;
        return admin_rows(cli, answer, ret);
}

/* The member's own devices as table rows, this device marked. */
static int member_devices(struct kh_cli *cli, struct kh_member *m, json_t **ret) {
        struct keyhold_device_list *l = NULL;
        json_t *rows;
        int r;

        r = keyhold_devices_list(m->client, &l);
        if (r < 0)
                return kh_member_fail(cli, m, r, "listing the devices");
        rows = json_array();
        for (size_t i = 0; rows && i < l->n; i++) {
                const struct keyhold_device *d = &l->items[i];
                const char *me = kh_member_identifier(m);
                json_t *row = json_pack("{s:s, s:s, s:s?, s:i, s:b, s:s?, s:b}", "id", d->id,
                                        "identifier", d->identifier, "name", d->name, "type",
                                        d->type, "trusted", d->is_trusted, "created",
                                        d->creation_date, "this_device",
                                        me && strcmp(me, d->identifier) == 0);
                if (!row || json_array_append_new(rows, row) < 0) {
                        json_decref(rows);
                        rows = NULL;
                }
        }
        keyhold_device_list_free(l);
        if (!rows)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        *ret = rows;
        return 0;
}

int kh_cmd_device_list(struct kh_cli *cli) {
        const char *user = kh_cli_value(cli, "user");
        json_auto_t *rows = NULL;
        char guid[KH_GUID_BUF];
        struct kh_member m;
        int r;

        if (user) {
                r = guid_arg(cli, "--user", user, guid);
                if (r == 0)
                        r = admin_devices(cli, guid, &rows);
                return r != 0 ? r : print_devices(cli, rows);
        }
        r = kh_member_open(cli, KH_MEMBER_TOKEN, &m);
        if (r == 0)
                r = member_devices(cli, &m, &rows);
        kh_member_close(&m);
        return r != 0 ? r : print_devices(cli, rows);
}

/* The id of the device named by its id or its identifier among rows; NULL if none. */
static const char *find_device(const json_t *rows, const char *name) {
        const json_t *v;
        size_t i;

        json_array_foreach(rows, i, v) {
                const char *id = json_string_value(json_object_get(v, "id"));
                const char *ident = json_string_value(json_object_get(v, "identifier"));
                if (id && (strcasecmp(id, name) == 0 || (ident && strcmp(ident, name) == 0)))
                        return id;
        }
        return NULL;
}

static int print_untrusted(struct kh_cli *cli, const char *id, const char *user) {
        if (kh_cli_json(cli)) {
                json_auto_t *o = json_pack("{s:s, s:s?, s:b}", "id", id, "user", user, "trusted", 0);
                return kh_cli_print_json(cli, o);
        }
        printf("Device %s%s%s is no longer trusted: it cannot unlock the user key.\n", id,
               user ? " of member " : "", user ? user : "");
        return 0;
}

int kh_cmd_device_untrust(struct kh_cli *cli) {
        const char *user = kh_cli_value(cli, "user"), *device = kh_cli_operand(cli, 0);
        json_auto_t *rows = NULL, *answer = NULL;
        char guid[KH_GUID_BUF], path[256];
        const char *id;
        struct kh_member m;
        int r;

        if (user) {
                r = guid_arg(cli, "--user", user, guid);
                if (r == 0)
                        r = admin_devices(cli, guid, &rows);
                if (r != 0)
                        return r;
                id = find_device(rows, device);
                if (!id)
                        return kh_cli_fail(cli, "device_not_found",
                                           "member %s has no device %s (keyhold device list "
                                           "--user %s)", guid, device, guid);
                (void) snprintf(path, sizeof(path), "/admin/members/%s/devices/%s/untrust", guid,
                                id);
                r = kh_cli_post(cli, KH_CLIENT_TENANT, path, NULL, &answer);
                return r != 0 ? r : print_untrusted(cli, id, guid);
        }
        r = kh_member_open(cli, KH_MEMBER_TOKEN, &m);
        if (r == 0)
                r = member_devices(cli, &m, &rows);
        if (r == 0) {
                id = find_device(rows, device);
                if (!id) {
                        r = kh_cli_fail(cli, "device_not_found",
                                        "you have no device %s (keyhold device list)", device);
                } else {
                        r = keyhold_devices_untrust(m.client, &id, 1);
                        r = r < 0 ? kh_member_fail(cli, &m, r, "untrusting the device")
                                  : print_untrusted(cli, id, NULL);
                }
        }
        kh_member_close(&m);
        return r;
}

static const char *count(const json_t *removed, const char *name, char buf[static 32]) {
        const char *s = kh_out_cell(json_object_get(removed, name), buf, 32);
        return s ? s : "0";
}

int kh_cmd_member_remove(struct kh_cli *cli) {
        json_auto_t *answer = NULL;
        char guid[KH_GUID_BUF], path[128];
        const json_t *removed;
        char n[4][32];
        int r;

        r = guid_arg(cli, "the member", kh_cli_operand(cli, 0), guid);
        if (r != 0)
                return r;
        (void) snprintf(path, sizeof(path), "/admin/members/%s/remove", guid);
        r = kh_cli_post(cli, KH_CLIENT_TENANT, path, NULL, &answer);
        if (r != 0)
                return r;
        if (kh_cli_json(cli))
                return kh_cli_print_json(cli, answer);
        removed = json_object_get(answer, "removed");
        printf("Member %s removed: %s key, %s devices, %s requests, %s recovery enrolment "
               "deleted.\n",
               guid, count(removed, "keys", n[0]), count(removed, "devices", n[1]),
               count(removed, "requests", n[2]), count(removed, "enrolments", n[3]));
        return 0;
}
