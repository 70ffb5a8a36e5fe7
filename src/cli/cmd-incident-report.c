/* keyhold incident unauthorized-use --version V [--since T] [--until T]: who used version V,
 * read from the audit chain (GET /admin/audit), by actor. Unlike the other playbooks it only
 * reads, so it lives apart from their steps (cmd-incident.c); docs/incident.md describes the
 * report. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/incident.h"
#include "cli/output.h"
#include "common/parse.h"

#define AUDIT_PAGE       10000 /* GET /admin/audit's largest page */
#define ACTORS_MAX       100000
#define CLIENTS_MAX      32    /* listed per actor; beyond, "clients_truncated" */

/* ---- the report ---- */

/* obj's integer field name, plus n. */
static void bump(json_t *obj, const char *name, json_int_t n) {
        json_int_t was = json_integer_value(json_object_get(obj, name));

        (void) json_object_set_new(obj, name, json_integer(was + n));
}

/* One actor's uses of V, kept as the JSON object of the report. */
static int use_add(json_t *uses, const json_t *rec, size_t *n_actors) {
        const char *actor = json_string_value(json_object_get(rec, "actor"));
        const char *time = json_string_value(json_object_get(rec, "time"));
        const char *client = json_string_value(json_object_get(rec, "client"));
        const char *action = json_string_value(json_object_get(rec, "action"));
        json_int_t count = json_integer_value(json_object_get(rec, "count"));
        json_t *u = json_object_get(uses, actor), *clients, *c, *actions;
        bool seen = false;
        size_t i;

        if (count < 1)
                count = 1;
        if (!u) {
                if (*n_actors >= ACTORS_MAX)
                        return -E2BIG;
                u = json_pack("{ss sI ss ss s[] sb s{}}", "actor", actor, "count", (json_int_t) 0,
                              "first", time, "last", time, "clients", "clients_truncated", false,
                              "actions");
                if (!u || json_object_set_new(uses, actor, u) < 0)
                        return -ENOMEM;
                (*n_actors)++;
        }
        bump(u, "count", count);
        if (strcmp(time, json_string_value(json_object_get(u, "first"))) < 0)
                (void) json_object_set_new(u, "first", json_string(time));
        if (strcmp(time, json_string_value(json_object_get(u, "last"))) > 0)
                (void) json_object_set_new(u, "last", json_string(time));
        actions = json_object_get(u, "actions");
        bump(actions, action, count);
        clients = json_object_get(u, "clients");
        json_array_foreach(clients, i, c)
                if (strcmp(json_string_value(c), client) == 0)
                        seen = true;
        if (!seen && *client) {
                if (json_array_size(clients) < CLIENTS_MAX)
                        (void) json_array_append_new(clients, json_string(client));
                else
                        (void) json_object_set_new(u, "clients_truncated", json_true());
        }
        return 0;
}

/* Whether record rec is a use of version V: a member's read or write under it, or a
 * member's request refused on a record under it (key_revoked: its target is the member). */
static bool is_use(const struct incident *inc, const json_t *rec) {
        const char *action = json_string_value(json_object_get(rec, "action"));
        const char *actor = json_string_value(json_object_get(rec, "actor"));
        const char *target = json_string_value(json_object_get(rec, "target"));
        const char *time = json_string_value(json_object_get(rec, "time"));

        if (uint_of(rec, "key_version") != inc->version || !action || !actor || !target || !time ||
            !json_is_string(json_object_get(rec, "client")))
                return false;
        if (inc->since[0] && strcmp(time, inc->since) < 0)
                return false;
        if (inc->until[0] && strcmp(time, inc->until) > 0)
                return false;
        return is(action, "read") || is(action, "create") || is(action, "replace") ||
               (is(action, "refused") && strcmp(target, actor) == 0);
}

static int by_count(const void *a, const void *b) {
        const json_t *x = *(const json_t *const *) a, *y = *(const json_t *const *) b;
        json_int_t cx = json_integer_value(json_object_get(x, "count"));
        json_int_t cy = json_integer_value(json_object_get(y, "count"));

        if (cx != cy)
                return cx > cy ? -1 : 1;
        return strcmp(json_string_value(json_object_get(x, "actor")),
                      json_string_value(json_object_get(y, "actor")));
}

static int report_print(struct incident *inc, json_t *uses, uint64_t total, uint64_t scanned,
                        uint64_t head) {
        json_t **sorted = NULL;
        json_auto_t *list = json_array();
        const char *name;
        json_t *u;
        size_t n = 0, i;
        int r = 0;

        sorted = calloc(json_object_size(uses) + 1, sizeof(*sorted));
        if (!sorted || !list) {
                free(sorted);
                return kh_cli_fail(inc->cli, "internal_error", "out of memory");
        }
        json_object_foreach(uses, name, u)
                sorted[n++] = u;
        qsort(sorted, n, sizeof(*sorted), by_count);
        for (i = 0; i < n; i++)
                if (json_array_append(list, sorted[i]) < 0)
                        r = -ENOMEM;
        free(sorted);
        if (r < 0)
                return kh_cli_fail(inc->cli, "internal_error", "out of memory");
        if (kh_cli_json(inc->cli)) {
                json_auto_t *out = json_pack(
                        "{ss sI so so sO sI sI sI sb}", "playbook",
                        kh_incident_playbook_names[inc->pb], "version", (json_int_t) inc->version,
                        "since", inc->since[0] ? json_string(inc->since) : json_null(),
                        "until", inc->until[0] ? json_string(inc->until) : json_null(),
                        "uses", list, "total", (json_int_t) total, "records_read",
                        (json_int_t) scanned,
                        "through_seq", (json_int_t) head, "executed", inc->execute);
                return out ? kh_cli_print_json(inc->cli, out)
                           : kh_cli_fail(inc->cli, "internal_error", "out of memory");
        }
        printf("Playbook unauthorized-use, version %" PRIu32 " of tenant %s: every use of it in "
               "the audit chain (seq 1 to %" PRIu64 ")", inc->version, tenant_of(inc->cli), head);
        if (inc->since[0] || inc->until[0])
                printf(", from %s to %s", inc->since[0] ? inc->since : "the start",
                       inc->until[0] ? inc->until : "now");
        printf(".\n\n");
        if (n == 0) {
                puts("No use of this version in that window.");
        } else {
                static const struct kh_table_column cols[] = {
                        { "ACTOR", NULL, false }, { "COUNT", NULL, true }, { "FIRST", NULL, false },
                        { "LAST", NULL, false },  { "CLIENTS", NULL, false },
                };
                KH_CLEANUP(kh_table_freep) struct kh_table *t = NULL;
                const json_t *row;

                r = kh_table_new(cols, KH_ELEMENTSOF(cols), &t);
                json_array_foreach(list, i, row) {
                        char count[32], clients[512] = "";
                        const json_t *c;
                        size_t j, used = 0;

                        if (r < 0)
                                break;
                        (void) snprintf(count, sizeof(count), "%" JSON_INTEGER_FORMAT,
                                        json_integer_value(json_object_get(row, "count")));
                        json_array_foreach(json_object_get(row, "clients"), j, c) {
                                int w = snprintf(clients + used, sizeof(clients) - used, "%s%s",
                                                 j ? "," : "", json_string_value(c));
                                if (w < 0 || (size_t) w >= sizeof(clients) - used)
                                        break;
                                used += (size_t) w;
                        }
                        r = kh_table_add_row(t, (const char *const[]) {
                                json_string_value(json_object_get(row, "actor")), count,
                                json_string_value(json_object_get(row, "first")),
                                json_string_value(json_object_get(row, "last")), clients });
                }
                if (r == 0)
                        r = kh_table_print(t, stdout);
                if (r < 0)
                        return kh_cli_fail(inc->cli, "internal_error", "cannot print the table");
        }
        printf("\n%" PRIu64 " uses by %zu actors (reads, writes, and requests refused on a record "
               "under version %" PRIu32 "), from %" PRIu64 " audit records.\n", total, n,
               inc->version, scanned);
        printf("If any is not legitimate, treat the key as leaked: keyhold incident leaked "
               "--version %" PRIu32 "\n", inc->version);
        return 0;
}

/* What one scan of the chains gathers. */
struct scan {
        json_t *uses;
        size_t n_actors;
        uint64_t total, scanned;
        json_t *replicas; /* the first page's "replicas" (NULL: a server without them) */
};

/* Pages through replica's chain ("" the unnamed one's) of GET /admin/audit up to the head the
 * first page names (the chain grows while it is read: this run's own reads are records
 * too), adding the uses of the version to sc. Returns 0 or the exit status. */
static int scan_chain(struct incident *inc, const char *replica, struct scan *sc,
                      uint64_t *ret_head) {
        uint64_t since = 1, head = 0;
        int r;

        for (bool first = true;; first = false) {
                json_auto_t *page = NULL;
                const json_t *records, *rec;
                char path[160];
                uint64_t next;
                size_t i;

                (void) snprintf(path, sizeof(path), "/admin/audit?since=%" PRIu64 "&limit=%u%s%.32s",
                                since, AUDIT_PAGE, replica[0] ? "&replica=" : "", replica);
                r = kh_cli_get(inc->cli, KH_CLIENT_TENANT, path, &page);
                if (r != 0)
                        return r;
                records = json_object_get(page, "records");
                next = uint_of(page, "next");
                if (!json_is_array(records) || !json_is_integer(json_object_get(page, "head")))
                        return kh_cli_fail(inc->cli, "bad_response",
                                           "the server's audit page has no records");
                if (first) {
                        head = uint_of(page, "head");
                        if (!replica[0] && !sc->replicas)
                                sc->replicas = json_incref(json_object_get(page, "replicas"));
                }
                json_array_foreach(records, i, rec) {
                        if (uint_of(rec, "seq") > head)
                                break;
                        sc->scanned++;
                        if (!is_use(inc, rec))
                                continue;
                        r = use_add(sc->uses, rec, &sc->n_actors);
                        if (r == -E2BIG)
                                return kh_cli_fail(inc->cli, "too_many_actors",
                                                   "more than %d actors used version %" PRIu32
                                                   ": narrow the window (--since, --until)",
                                                   ACTORS_MAX, inc->version);
                        if (r < 0)
                                return kh_cli_fail(inc->cli, "internal_error", "out of memory");
                        sc->total += uint_of(rec, "count") > 1 ? uint_of(rec, "count") : 1;
                }
                if (json_array_size(records) == 0 || next > head)
                        break;
                if (next <= since)
                        return kh_cli_fail(inc->cli, "bad_response",
                                           "the server's audit pages do not move on (next %"
                                           PRIu64 ")", next);
                since = next;
        }
        *ret_head = head;
        return 0;
}

/* The unnamed replica's chain, then every named replica's (docs/audit.md "Replicas"): the
 * uses of a cluster are spread over its replicas' chains. */
int kh_incident_unauthorized_use(struct incident *inc) {
        struct scan sc = { .uses = json_object() };
        uint64_t head = 0, other;
        const json_t *name;
        size_t i;
        int r;

        if (!sc.uses)
                return kh_cli_fail(inc->cli, "internal_error", "out of memory");
        r = kh_incident_version_check(inc);
        if (r == 0)
                r = scan_chain(inc, "", &sc, &head);
        json_array_foreach(sc.replicas, i, name) {
                const char *v = json_string_value(name);

                if (r != 0)
                        break;
                if (!v || strlen(v) > 32 || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
                                                    strlen(v) || !v[0])
                        r = kh_cli_fail(inc->cli, "bad_response",
                                        "the server names a replica that cannot be one");
                else
                        r = scan_chain(inc, v, &sc, &other);
        }
        if (r == 0)
                r = report_print(inc, sc.uses, sc.total, sc.scanned, head);
        json_decref(sc.replicas);
        json_decref(sc.uses);
        return r;
}

/* ---- --since, --until ---- */

static bool digits(const char *s, size_t n, unsigned min, unsigned max, unsigned *ret) {
        uint64_t v;

        if (kh_parse_u64(s, n, max, &v) < 0 || v < min)
                return false;
        *ret = (unsigned) v;
        return true;
}

/* Checks every field's range here, not just its digits, so that --since 2026-02-30 is a usage
 * error rather than a window that silently matches nothing. */
int kh_incident_time_parse(const char *s, bool end, char ret[static TIME_LEN + 1]) {
        static const unsigned days[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        unsigned y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
        size_t len = strlen(s);

        if (len < 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4, 0, 9999, &y) ||
            !digits(s + 5, 2, 1, 12, &mo) || !digits(s + 8, 2, 1, days[mo - 1], &d) ||
            (mo == 2 && d == 29 && (y % 4 != 0 || (y % 100 == 0 && y % 400 != 0))))
                return -EINVAL;
        if (len == 10) {
                if (end)
                        h = 23, mi = 59, sec = 59, ms = 999;
        } else {
                size_t frac;

                if (len < 20 || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[len - 1] != 'Z' ||
                    !digits(s + 11, 2, 0, 23, &h) || !digits(s + 14, 2, 0, 59, &mi) ||
                    !digits(s + 17, 2, 0, 59, &sec))
                        return -EINVAL;
                frac = len - 20;
                if (frac == 0) {
                        ms = end ? 999 : 0;
                } else {
                        static const unsigned scale[] = { 0, 100, 10, 1 };
                        if (s[19] != '.' || frac < 2 || frac > 4 ||
                            !digits(s + 20, frac - 1, 0, 999, &ms))
                                return -EINVAL;
                        ms *= scale[frac - 1];
                        if (end && frac - 1 < 3)
                                ms += scale[frac - 1] - 1; /* .5 up to .599 */
                }
        }
        (void) snprintf(ret, TIME_LEN + 1, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", y, mo, d, h, mi,
                        sec, ms);
        return 0;
}
