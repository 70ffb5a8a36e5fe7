#include "backup/manifest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backup/format.h"
#include "common/parse.h"
#include "store/store.h"

static const char *state_name(enum kh_key_state s) {
        switch (s) {
        case KH_KEY_ACTIVE: return "active";
        case KH_KEY_ARCHIVED: return "archived";
        case KH_KEY_RETIRED: return "retired";
        case KH_KEY_REVOKED: return "revoked";
        case KH_KEY_DESTROYED: return "destroyed";
        }
        return "unknown";
}

struct count_state {
        json_t *tenants;
        json_t *tenant;       /* the last one, in tenants */
};

static int on_version(const char *tenant, uint32_t version, enum kh_key_state state,
                      uint64_t records, void *userdata) {
        struct count_state *c = userdata;
        json_t *t = c->tenant;

        if (!t || strcmp(json_string_value(json_object_get(t, "id")), tenant) != 0) {
                t = json_pack("{ss sI s[]}", "id", tenant, "records", (json_int_t) 0,
                              "key_versions");
                if (!t || json_array_append_new(c->tenants, t) < 0)
                        return -ENOMEM;
                c->tenant = t;
        }
        if (json_array_append_new(json_object_get(t, "key_versions"),
                                  json_pack("{sI ss sI}", "version", (json_int_t) version, "state",
                                            state_name(state), "records", (json_int_t) records)) < 0 ||
            json_object_set_new(t, "records",
                                json_integer(json_integer_value(json_object_get(t, "records")) +
                                             (json_int_t) records)) < 0)
                return -ENOMEM;
        return 0;
}

int kh_backup_manifest_count(const char *db_path, json_t **ret_tenants, uint64_t *ret_records,
                             int *ret_schema, char *error, size_t n) {
        struct count_state c = { .tenants = json_array() };
        struct kh_store_snapshot_info info;
        int r;

        if (!c.tenants)
                return -ENOMEM;
        r = kh_store_snapshot_inspect(db_path, on_version, &c, &info, error, n);
        if (r != 0) {
                json_decref(c.tenants);
                if (r == -ENOMEM)
                        (void) snprintf(error, n, "out of memory");
                return r;
        }
        *ret_tenants = c.tenants;
        *ret_records = info.records;
        *ret_schema = info.schema_version;
        return 0;
}

static int __attribute__((format(printf, 3, 4))) bad(char *error, size_t n, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(error, n, fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

static bool is_count(const json_t *v) {
        return json_is_integer(v) && json_integer_value(v) >= 0;
}

int kh_backup_manifest_check(const json_t *m, char *error, size_t n) {
        const json_t *tenants = json_object_get(m, "tenants"), *files = json_object_get(m, "files");
        json_int_t total = 0;
        size_t i, j;
        const json_t *t, *f;

        if (!json_is_object(m))
                return bad(error, n, "the manifest is not a JSON object");
        if (!json_is_integer(json_object_get(m, "format")) ||
            json_integer_value(json_object_get(m, "format")) != KH_BACKUP_FORMAT)
                return bad(error, n, "manifest: unknown \"format\"");
        if (!json_is_string(json_object_get(m, "keyhold_version")) ||
            !json_is_string(json_object_get(m, "created")) ||
            !json_is_string(json_object_get(m, "keystore_driver")) ||
            !is_count(json_object_get(m, "schema_version")) ||
            !is_count(json_object_get(m, "records")) || !json_is_array(tenants) ||
            !json_is_array(files))
                return bad(error, n, "manifest: a member is missing or of the wrong type");
        json_array_foreach(tenants, i, t) {
                const char *id = json_string_value(json_object_get(t, "id"));
                const json_t *versions = json_object_get(t, "key_versions"), *v;
                json_int_t sum = 0;

                if (!id || !kh_tenant_id_is_valid(id, strlen(id)) ||
                    !is_count(json_object_get(t, "records")) || !json_is_array(versions))
                        return bad(error, n, "manifest: tenant %zu is malformed", i + 1);
                json_array_foreach(versions, j, v) {
                        if (!is_count(json_object_get(v, "version")) ||
                            !json_is_string(json_object_get(v, "state")) ||
                            !is_count(json_object_get(v, "records")))
                                return bad(error, n, "manifest: tenant %s: key version %zu is "
                                           "malformed", id, j + 1);
                        sum += json_integer_value(json_object_get(v, "records"));
                }
                if (sum != json_integer_value(json_object_get(t, "records")))
                        return bad(error, n, "manifest: tenant %s: its records do not add up", id);
                total += sum;
        }
        if (total != json_integer_value(json_object_get(m, "records")))
                return bad(error, n, "manifest: the tenants' records do not add up to \"records\"");
        json_array_foreach(files, i, f) {
                const char *name = json_string_value(json_object_get(f, "name"));

                if (!name || !kh_backup_name_is_valid(name, strlen(name)) ||
                    !is_count(json_object_get(f, "size")))
                        return bad(error, n, "manifest: file %zu is malformed", i + 1);
                for (j = 0; j < i; j++)
                        if (strcmp(name, json_string_value(json_object_get(
                                                 json_array_get(files, j), "name"))) == 0)
                                return bad(error, n, "manifest: file %s is listed twice", name);
        }
        return 0;
}
