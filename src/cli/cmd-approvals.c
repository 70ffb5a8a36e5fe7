/* keyhold approvals list | approve ID | deny ID (--all): the tenant's admin-approval requests
 * (docs/cli.md "approvals"; routes in docs/trusted-devices.md). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "common/cleanup.h"
#include "common/parse.h"

static const char *tenant_of(struct kh_cli *cli) {
        const char *t = kh_cli_global(cli, KH_CLI_G_TENANT);
        return t ? t : "default";
}

/* "/organizations/TENANT/auth-requests" + suffix, into buf. */
static int path_of(struct kh_cli *cli, const char *suffix, char *buf, size_t n) {
        int len = snprintf(buf, n, "/organizations/%s/auth-requests%s", tenant_of(cli), suffix);

        if (len < 0 || (size_t) len >= n)
                return kh_cli_fail(cli, "internal_error", "path too long");
        return 0;
}

/* The pending requests, the "data" of the server's list (a new reference). */
static int fetch(struct kh_cli *cli, json_t **ret) {
        json_auto_t *answer = NULL;
        char path[256];
        json_t *data;
        int r;

        r = path_of(cli, "", path, sizeof(path));
        if (r != 0)
                return r;
        r = kh_cli_get(cli, KH_CLIENT_TENANT, path, &answer);
        if (r != 0)
                return r;
        data = json_object_get(answer, "data");
        if (!json_is_array(data))
                return kh_cli_fail(cli, "bad_response", "the server's answer has no list");
        *ret = json_incref(data);
        return 0;
}

int kh_cmd_approvals_list(struct kh_cli *cli) {
        static const struct kh_table_column columns[] = {
                { "ID", NULL, false }, { "MEMBER", NULL, false }, { "DEVICE", NULL, false },
                { "CREATED", NULL, false }, { "FINGERPRINT", NULL, false },
                { "APPROVALS", NULL, true },
        };
        KH_CLEANUP(kh_table_freep) struct kh_table *table = NULL;
        json_auto_t *data = NULL;
        json_t *item;
        size_t i;
        int r;

        r = fetch(cli, &data);
        if (r != 0)
                return r;
        if (kh_cli_json(cli))
                return kh_cli_print_json(cli, data);
        if (json_array_size(data) == 0) {
                printf("No pending admin-approval requests in tenant %s.\n", tenant_of(cli));
                return 0;
        }
        if (kh_table_new(columns, KH_ELEMENTSOF(columns), &table) < 0)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        json_array_foreach(data, i, item) {
                char device[160], approvals[32];
                const char *cells[KH_ELEMENTSOF(columns)];
                const char *type = json_string_value(json_object_get(item, "requestDeviceType"));
                const char *ident = json_string_value(json_object_get(item, "requestDeviceIdentifier"));

                (void) snprintf(device, sizeof(device), "%s %s", type ? type : "-", ident ? ident : "-");
                (void) snprintf(approvals, sizeof(approvals), "%zu/%" JSON_INTEGER_FORMAT,
                                json_array_size(json_object_get(item, "approvals")),
                                json_integer_value(json_object_get(item, "needed")));
                cells[0] = json_string_value(json_object_get(item, "id"));
                cells[1] = json_string_value(json_object_get(item, "email"));
                cells[2] = device;
                cells[3] = json_string_value(json_object_get(item, "creationDate"));
                cells[4] = json_string_value(json_object_get(item, "fingerprint"));
                cells[5] = approvals;
                if (kh_table_add_row(table, cells) < 0)
                        return kh_cli_fail(cli, "internal_error", "out of memory");
        }
        if (kh_table_print(table, stdout) < 0)
                return 1;
        return 0;
}

static void print_outcome(const json_t *a) {
        const char *id = json_string_value(json_object_get(a, "id"));
        const char *status = json_string_value(json_object_get(a, "status"));
        const char *code = json_string_value(json_object_get(a, "code"));
        KH_CLEANUP(kh_freep) char *shown_id = kh_out_printable(id ? id : "-");

        if (code) {
                const char *m = json_string_value(json_object_get(a, "message"));
                KH_CLEANUP(kh_freep) char *msg = kh_out_printable(m ? m : code);
                printf("Request %s: refused: %s (%s)\n", shown_id ? shown_id : "-", msg ? msg : "-", code);
        } else if (status && strcmp(status, "pending") == 0) {
                printf("Request %s: approval %" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT
                       " recorded; it waits for a second approver.\n", shown_id ? shown_id : "-",
                       json_integer_value(json_object_get(a, "approvals")),
                       json_integer_value(json_object_get(a, "needed")));
        } else {
                KH_CLEANUP(kh_freep) char *s = kh_out_printable(status ? status : "-");
                printf("Request %s is %s.\n", shown_id ? shown_id : "-", s ? s : "-");
        }
}

/* Every pending request answered in one bulk call. */
static int answer_all(struct kh_cli *cli, bool approve) {
        json_auto_t *data = NULL, *body = json_array(), *answer = NULL;
        char path[256];
        json_t *item, *results;
        size_t i;
        int r;

        if (!body)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        r = fetch(cli, &data);
        if (r != 0)
                return r;
        json_array_foreach(data, i, item) {
                if (json_array_append_new(body, json_pack("{sO sb}", "id", json_object_get(item, "id"),
                                                          "approved", approve)) < 0)
                        return kh_cli_fail(cli, "internal_error", "out of memory");
        }
        if (json_array_size(body) == 0) {
                if (kh_cli_json(cli))
                        return kh_cli_print_json(cli, body);
                printf("No pending admin-approval requests in tenant %s.\n", tenant_of(cli));
                return 0;
        }
        r = path_of(cli, "", path, sizeof(path));
        if (r != 0)
                return r;
        r = kh_cli_post(cli, KH_CLIENT_TENANT, path, body, &answer);
        if (r != 0)
                return r;
        results = json_object_get(answer, "data");
        if (!json_is_array(results))
                return kh_cli_fail(cli, "bad_response", "the server's answer has no list");
        if (kh_cli_json(cli))
                return kh_cli_print_json(cli, results);
        json_array_foreach(results, i, item)
                print_outcome(item);
        return 0;
}

static int answer(struct kh_cli *cli, bool approve) {
        const char *id = kh_cli_operand(cli, 0);
        json_auto_t *body = NULL, *result = NULL;
        char canon[KH_GUID_BUF], suffix[64], path[256];
        int r;

        if (kh_cli_flag(cli, "all")) {
                if (id)
                        return kh_cli_usage_error(cli, "give an ID or --all, not both");
                return answer_all(cli, approve);
        }
        if (!id)
                return kh_cli_usage_error(cli, "which request? (keyhold approvals list)");
        if (kh_parse_guid(id, strlen(id), canon) < 0)
                return kh_cli_usage_error(cli, "a request id is a GUID (keyhold approvals list), not '%s'", id);
        (void) snprintf(suffix, sizeof(suffix), "/%s", canon);
        r = path_of(cli, suffix, path, sizeof(path));
        if (r != 0)
                return r;
        body = json_pack("{sb}", "requestApproved", approve);
        if (!body)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        r = kh_cli_post(cli, KH_CLIENT_TENANT, path, body, &result);
        if (r != 0)
                return r;
        if (!json_is_string(json_object_get(result, "status")))
                return kh_cli_fail(cli, "bad_response", "the server's answer names no status");
        if (kh_cli_json(cli))
                return kh_cli_print_json(cli, result);
        print_outcome(result);
        return 0;
}

int kh_cmd_approvals_approve(struct kh_cli *cli) {
        return answer(cli, true);
}

int kh_cmd_approvals_deny(struct kh_cli *cli) {
        return answer(cli, false);
}
