/* keyhold key ...: the tenant key's versions and the re-encryption job (GET /admin/keys). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/output.h"

static const struct kh_table_column version_columns[] = {
        { "VERSION", "version", true },    { "STATE", "state", false },
        { "ALGORITHM", "algorithm", false }, { "CREATED", "created", false },
        { "RECORDS", "records", true },    { "ENCRYPTS", "encrypts", true },
        { "DECRYPTS", "decrypts", true },
};

/* GET /admin/keys: {"active", "versions": [...], "job": {...}}, versions checked to be an
 * array of objects (what both commands read). Returns 0 or the exit status. */
static int get_keys(struct kh_cli *cli, json_t **ret) {
        json_auto_t *keys = NULL;
        json_t *versions, *v;
        size_t i;
        int r;

        r = kh_cli_get(cli, KH_CLIENT_TENANT, "/admin/keys", &keys);
        if (r != 0)
                return r;
        versions = json_object_get(keys, "versions");
        if (!json_is_array(versions))
                return kh_cli_fail(cli, "bad_response", "the server's key list has no versions");
        json_array_foreach(versions, i, v)
                if (!json_is_object(v))
                        return kh_cli_fail(cli, "bad_response",
                                           "the server's key list holds a version that is no object");
        *ret = json_incref(keys);
        return 0;
}

static int print_versions(struct kh_cli *cli, const json_t *versions) {
        KH_CLEANUP(kh_table_freep) struct kh_table *t = NULL;
        const json_t *v;
        size_t i;
        int r;

        r = kh_table_new(version_columns, KH_ELEMENTSOF(version_columns), &t);
        json_array_foreach(versions, i, v) {
                if (r < 0)
                        break;
                r = kh_table_add_object(t, v);
        }
        if (r == 0)
                r = kh_table_print(t, stdout);
        return r < 0 ? kh_cli_fail(cli, "internal_error", "cannot print the table") : 0;
}

int kh_cmd_key_list(struct kh_cli *cli) {
        json_auto_t *keys = NULL;
        int r;

        r = get_keys(cli, &keys);
        if (r != 0)
                return r;
        if (kh_cli_json(cli))
                return kh_cli_print_json(cli, json_object_get(keys, "versions"));
        return print_versions(cli, json_object_get(keys, "versions"));
}

/* The text of job's field name, "-" when it has none (kh_out_cell()). */
static const char *job_field(const json_t *job, const char *name, char *buf, size_t len) {
        const char *s = kh_out_cell(json_object_get(job, name), buf, len);
        return s ? s : "-";
}

/* "running: 1200 of 5000 records moved, 3 skipped (revoked), 350 records/s, about 11 s left" */
static void print_job(const json_t *job) {
        char moved[32], total[32], skipped[32], rate[32], eta[32];
        const char *state = json_string_value(json_object_get(job, "state"));
        KH_CLEANUP(kh_freep) char *shown = kh_out_printable(state ? state : "-");

        printf("Re-encryption: %s", shown ? shown : "-");
        if (state && strcmp(state, "none") != 0) {
                printf(": %s of %s records moved, %s skipped (revoked)",
                       job_field(job, "moved", moved, sizeof(moved)),
                       job_field(job, "total", total, sizeof(total)),
                       job_field(job, "skipped", skipped, sizeof(skipped)));
                if (strcmp(state, "running") == 0)
                        printf(", %s records/s, about %s s left",
                               job_field(job, "rate", rate, sizeof(rate)),
                               job_field(job, "eta_s", eta, sizeof(eta)));
        }
        putchar('\n');
}

int kh_cmd_key_status(struct kh_cli *cli) {
        json_auto_t *keys = NULL;
        char active[32];
        const char *a;
        int r;

        r = get_keys(cli, &keys);
        if (r != 0)
                return r;
        if (kh_cli_json(cli))
                return kh_cli_print_json(cli, keys);
        a = kh_out_cell(json_object_get(keys, "active"), active, sizeof(active));
        {
                KH_CLEANUP(kh_freep) char *shown = kh_out_printable(a ? a : "none");
                printf("Active version: %s\n\n", shown ? shown : "-");
        }
        r = print_versions(cli, json_object_get(keys, "versions"));
        if (r != 0)
                return r;
        putchar('\n');
        print_job(json_object_get(keys, "job"));
        return 0;
}
