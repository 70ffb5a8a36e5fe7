/* keyhold incident PLAYBOOK --version V [--execute [--yes]]: the breach-response playbooks of
 * DESIGN.md ("Tenant key states"), built from the admin routes that exist (docs/incident.md).
 *
 * A playbook is a short list of steps, each one admin route that the server audits itself.
 * Whether a step is done is decided from the server's state (GET /admin/keys) each time it is
 * needed, never from anything kept here: a run that was stopped (Ctrl-C, kill -9, a lost
 * connection) is simply run again and goes on from the first step that is not done.
 * unauthorized-use has no steps, only a report from the audit chain: cmd-incident-report.c. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/incident.h"
#include "cli/output.h"
#include "common/parse.h"

#define STEPS_MAX        5
#define KH_INCIDENT_VERSIONS_MAX 64 /* versions of a tenant (service/keyring.h) */
#define DETAIL_MAX       320
#define POLL_MS          500   /* each poll is a key.status audit record */
#define STALL_POLLS      20    /* 10 s of records left under V and no job running: stuck */
#define DEFAULT_STRONG   "rsa-4096" /* algorithm-weakness without --algorithm */

const char *const kh_incident_playbook_names[PB_N_] = {
        [PB_LEAKED] = "leaked",
        [PB_UNAUTHORIZED_USE] = "unauthorized-use",
        [PB_HSM] = "hsm-vulnerability",
        [PB_ALGORITHM] = "algorithm-weakness",
};

enum step_kind {
        S_REKEY,
        S_REENCRYPT,
        S_REVOKE,
        S_RETIRE,
        S_DESTROY,
        S_REFUSE_WRITES,
        S_MIGRATE,
        S_REKEY_NEW_STORE,
        S_RETIRE_OLD_STORE,
};

static const char *const step_names[] = {
        [S_REKEY] = "rekey",
        [S_REENCRYPT] = "reencrypt",
        [S_REVOKE] = "revoke",
        [S_RETIRE] = "retire",
        [S_DESTROY] = "destroy",
        [S_REFUSE_WRITES] = "refuse-writes",
        [S_MIGRATE] = "keystore-migrate",
        [S_REKEY_NEW_STORE] = "rekey-in-new-store",
        [S_RETIRE_OLD_STORE] = "retire-old-store",
};

enum step_status { ST_DONE, ST_TODO, ST_NOT_POSSIBLE };
static const char *const status_json[] = { "done", "to_do", "not_possible" };
static const char *const status_text[] = { "done", "to do", "not possible" };

/* What a run did with a step (--execute). */
enum outcome { OUT_NOT_RUN, OUT_DONE_BEFORE, OUT_RAN };
static const char *const outcome_json[] = { "not_run", "done_before", "ran" };

struct step {
        enum step_kind kind;
        enum step_status status;
        char detail[DETAIL_MAX];
};

struct plan {
        struct step steps[STEPS_MAX];
        size_t n;
};

/* The tenant's keys as GET /admin/keys shows them, seen from version V. */
struct view {
        json_t *doc;         /* the answer; owned */
        const char *state;   /* V's */
        uint64_t records;    /* under V now */
        uint32_t active;     /* the version that encrypts; 0: none (the kill switch is on) */
        unsigned active_bits;
        uint32_t newest;     /* the highest version: a rekey makes newest + 1 */
        size_t open;         /* versions active or archived: what the kill switch revokes */
        uint64_t pending;    /* records under archived versions: the job's work left */
        const char *job;     /* the job's state */
};

static void view_done(struct view *v) {
        json_decref(v->doc);
        *v = (struct view) { 0 };
}

/* "rsa-3072" → 3072; 0 for anything else. */
static unsigned rsa_bits(const char *alg) {
        uint64_t bits;

        if (!alg || strncmp(alg, "rsa-", 4) != 0 ||
            kh_parse_u64(alg + 4, strlen(alg + 4), 65536, &bits) < 0)
                return 0;
        return (unsigned) bits;
}

/* ---- the server's state ---- */

/* GET /admin/keys into *ret, V's row found. Returns 0 or the exit status (1: also for a V
 * the tenant never had, version_not_found). */
static int view_get(struct incident *inc, struct view *ret) {
        json_auto_t *doc = NULL;
        const json_t *versions, *row, *found = NULL;
        struct view v = { 0 };
        size_t i;
        int r;

        r = kh_cli_get(inc->cli, KH_CLIENT_TENANT, "/admin/keys", &doc);
        if (r != 0)
                return r;
        versions = json_object_get(doc, "versions");
        if (!json_is_array(versions) || !json_is_object(json_object_get(doc, "job")))
                return kh_cli_fail(inc->cli, "bad_response",
                                   "the server's key list has no versions");
        json_array_foreach(versions, i, row) {
                const char *state = json_string_value(json_object_get(row, "state"));
                uint64_t n = uint_of(row, "version");

                if (!state || n == 0 || n > UINT32_MAX)
                        return kh_cli_fail(inc->cli, "bad_response",
                                           "the server's key list holds a version without a "
                                           "number or state");
                if (n > v.newest)
                        v.newest = (uint32_t) n;
                if (is(state, "active") || is(state, "archived"))
                        v.open++;
                if (is(state, "archived"))
                        v.pending += uint_of(row, "records");
                if (is(state, "active")) {
                        v.active = (uint32_t) n;
                        v.active_bits =
                                rsa_bits(json_string_value(json_object_get(row, "algorithm")));
                }
                if (n == inc->version)
                        found = row;
        }
        if (!found)
                return kh_cli_fail(inc->cli, "version_not_found",
                                   "tenant %s has no key version %" PRIu32 " (keyhold key list)",
                                   tenant_of(inc->cli), inc->version);
        v.state = json_string_value(json_object_get(found, "state"));
        v.records = uint_of(found, "records");
        v.job = json_string_value(json_object_get(json_object_get(doc, "job"), "state"));
        if (!v.job)
                return kh_cli_fail(inc->cli, "bad_response", "the server's key status has no job");
        v.doc = json_incref(doc);
        *ret = v;
        return 0;
}

int kh_incident_version_check(struct incident *inc) {
        struct view v;
        int r;

        r = view_get(inc, &v);
        if (r != 0)
                return r;
        view_done(&v);
        return 0;
}

/* ---- plans: the steps and their status, from the server's state alone ---- */

static struct step *add(struct plan *p, enum step_kind kind, enum step_status status,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static struct step *add(struct plan *p, enum step_kind kind, enum step_status status,
                        const char *fmt, ...) {
        struct step *s = &p->steps[p->n++];
        va_list ap;

        s->kind = kind;
        s->status = status;
        va_start(ap, fmt);
        (void) vsnprintf(s->detail, sizeof(s->detail), fmt, ap);
        va_end(ap);
        return s;
}

static bool state_in(const char *s, const char *a, const char *b, const char *c) {
        return is(s, a) || (b && is(s, b)) || (c && is(s, c));
}

/* Moving every record off V: the job does it once V is not active; a revoked V's records
 * are skipped by the job, so the step reinstates V first (it is revoked again next). */
static void plan_reencrypt(const struct incident *inc, const struct view *v, struct plan *p) {
        uint32_t V = inc->version;

        if (v->records == 0)
                add(p, S_REENCRYPT, ST_DONE, "no record is sealed under version %" PRIu32, V);
        else if (is(v->state, "revoked"))
                add(p, S_REENCRYPT, ST_TODO,
                    "%" PRIu64 " records are under version %" PRIu32 ", which is revoked: the "
                    "job skips them, so it is reinstated (archived, it decrypts again) until "
                    "they have moved, then revoked again", v->records, V);
        else
                add(p, S_REENCRYPT, ST_TODO,
                    "the re-encryption job moves the %" PRIu64 " records under version %" PRIu32
                    " to the active version; reads go on meanwhile", v->records, V);
}

static void plan_leaked(const struct incident *inc, const struct view *v, struct plan *p) {
        uint32_t V = inc->version;
        const char *alg = inc->algorithm ? inc->algorithm : "the server's default algorithm";

        if (is(v->state, "destroyed")) {
                static const enum step_kind all[] = { S_REKEY, S_REENCRYPT, S_REVOKE, S_RETIRE,
                                                      S_DESTROY };
                for (size_t i = 0; i < KH_ELEMENTSOF(all); i++)
                        add(p, all[i], ST_DONE, "version %" PRIu32 " is destroyed", V);
                return;
        }
        /* V must stop encrypting, and its records need an active version to move to */
        if (is(v->state, "active"))
                add(p, S_REKEY, ST_TODO,
                    "version %" PRIu32 " is active: version %" PRIu32 " becomes active (%s), new "
                    "records are sealed under it, version %" PRIu32 " is archived",
                    V, v->newest + 1, alg, V);
        else if (v->active == 0 && v->records > 0)
                add(p, S_REKEY, ST_TODO,
                    "no version is active (the kill switch is on) and %" PRIu64 " records are "
                    "under version %" PRIu32 ": version %" PRIu32 " becomes active (%s) for them",
                    v->records, V, v->newest + 1, alg);
        else if (v->active == 0)
                add(p, S_REKEY, ST_DONE, "version %" PRIu32 " is %s and no record is under it", V,
                    v->state);
        else
                add(p, S_REKEY, ST_DONE, "version %" PRIu32 " is active, not %" PRIu32,
                    v->active, V);
        plan_reencrypt(inc, v, p);
        if (state_in(v->state, "revoked", "retired", NULL))
                add(p, S_REVOKE, ST_DONE, "version %" PRIu32 " is %s: it decrypts nothing", V,
                    v->state);
        else
                add(p, S_REVOKE, ST_TODO,
                    "version %" PRIu32 " stops decrypting: a record still under it would get "
                    "403 key_revoked", V);
        if (is(v->state, "retired"))
                add(p, S_RETIRE, ST_DONE, "version %" PRIu32 " is retired", V);
        else
                add(p, S_RETIRE, ST_TODO,
                    "version %" PRIu32 " is retired (the server checks that no record is "
                    "under it)", V);
        add(p, S_DESTROY, ST_TODO,
            "the tenant key of version %" PRIu32 " is deleted from the key store and its "
            "wrapped DEK from the database: irreversible", V);
}

static void plan_algorithm(const struct incident *inc, const struct view *v, struct plan *p) {
        uint32_t V = inc->version;
        bool strong_active = v->active != 0 && v->active_bits >= inc->want_bits;

        if (strong_active)
                add(p, S_REKEY, ST_DONE, "the active version %" PRIu32 " uses rsa-%u", v->active,
                    v->active_bits);
        else if (v->active != 0 && v->active_bits != 0)
                add(p, S_REKEY, ST_TODO,
                    "the active version %" PRIu32 " uses rsa-%u: version %" PRIu32 " becomes "
                    "active with %s; new records are sealed under it", v->active, v->active_bits,
                    v->newest + 1, inc->algorithm);
        else
                add(p, S_REKEY, ST_TODO,
                    "version %" PRIu32 " becomes active with %s; new records are sealed under it",
                    v->newest + 1, inc->algorithm);
        if (strong_active && v->active == V) {
                add(p, S_REENCRYPT, ST_DONE,
                    "version %" PRIu32 " is the active version and uses rsa-%u: its records stay",
                    V, v->active_bits);
                add(p, S_RETIRE, ST_DONE,
                    "not needed: version %" PRIu32 " is the active version", V);
                return;
        }
        plan_reencrypt(inc, v, p);
        if (state_in(v->state, "retired", "destroyed", NULL))
                add(p, S_RETIRE, ST_DONE, "version %" PRIu32 " is %s", V, v->state);
        else
                add(p, S_RETIRE, ST_TODO,
                    "version %" PRIu32 " stops decrypting for good; then `keyhold key destroy %"
                    PRIu32 "` can delete it", V, V);
}

/* The versions the vulnerable key store held: those the tenant's last `keyhold keystore
 * migrate` moved (GET /admin/keys "keystore": "migration"), with their state and records. */
struct moved {
        bool finished;       /* a migration finished onto the store the server uses */
        size_t n;
        uint32_t highest;
        uint64_t records;    /* under them now */
        size_t revoked_with_records, not_destroyed;
        char list[DETAIL_MAX / 2];
};

static void moved_of(const struct view *v, struct moved *ret) {
        const json_t *mig = json_object_get(json_object_get(v->doc, "keystore"), "migration");
        const json_t *versions = json_object_get(v->doc, "versions"), *x, *row;
        size_t i, j, len = 0;

        *ret = (struct moved) { .finished = json_is_string(json_object_get(mig, "finished")) };
        json_array_foreach(json_object_get(mig, "versions"), i, x) {
                uint64_t n = json_is_integer(x) && json_integer_value(x) > 0
                                     ? (uint64_t) json_integer_value(x) : 0;
                if (n == 0 || n > UINT32_MAX)
                        continue;
                ret->n++;
                if (n > ret->highest)
                        ret->highest = (uint32_t) n;
                if (len < sizeof(ret->list))
                        len += (size_t) snprintf(ret->list + len, sizeof(ret->list) - len, "%s%" PRIu64,
                                                 ret->n > 1 ? ", " : "", n);
                json_array_foreach(versions, j, row) {
                        const char *state = json_string_value(json_object_get(row, "state"));
                        if (uint_of(row, "version") != n)
                                continue;
                        ret->records += uint_of(row, "records");
                        if (is(state, "revoked") && uint_of(row, "records") > 0)
                                ret->revoked_with_records++;
                        if (!is(state, "destroyed"))
                                ret->not_destroyed++;
                }
        }
}

static bool moved_has(const struct view *v, uint32_t version) {
        const json_t *mig = json_object_get(json_object_get(v->doc, "keystore"), "migration"), *x;
        size_t i;

        json_array_foreach(json_object_get(mig, "versions"), i, x)
                if (json_is_integer(x) && json_integer_value(x) == (json_int_t) version)
                        return true;
        return false;
}

/* Moving to another key store is offline (keyhold keystore migrate, with keyholdd stopped);
 * once the server runs on the new store, it shows the migration, and the online steps
 * follow: a version made in the new store, the records moved to it, and every version the
 * old store held retired and destroyed. */
static void plan_hsm(const struct incident *inc, const struct view *v, struct plan *p) {
        uint32_t V = inc->version;
        const char *driver;
        struct moved m;
        bool migrated;

        moved_of(v, &m);
        migrated = m.finished && (moved_has(v, V) || state_in(v->state, "retired", "destroyed",
                                                               NULL));
        if (v->open == 0)
                add(p, S_REFUSE_WRITES, ST_DONE,
                    "the kill switch is on: no version is active or archived, every key read and "
                    "write is refused (keyhold key reinstate --all undoes it)");
        else if (inc->refuse_writes)
                add(p, S_REFUSE_WRITES, ST_TODO,
                    "with --refuse-writes: the kill switch revokes every active and archived "
                    "version (POST /admin/keys/revoke-all); it refuses key reads as well as "
                    "writes (403 key_revoked) until keyhold key reinstate --all");
        else
                add(p, S_REFUSE_WRITES, ST_DONE,
                    "not asked for: --refuse-writes engages the kill switch, which refuses key "
                    "reads as well as writes until keyhold key reinstate --all");
        if (!migrated) {
                add(p, S_MIGRATE, ST_TODO,
                    "offline, by the operator: stop keyholdd, run `keyhold keystore migrate "
                    "--config OLDCONF --to NEWCONF` (every version of the key store holding "
                    "version %" PRIu32 " moves to the new one), start keyholdd with NEWCONF, "
                    "then run this again", V);
                add(p, S_REKEY_NEW_STORE, ST_TODO,
                    "after keystore-migrate: a new version made in the new key store becomes "
                    "active");
                add(p, S_REENCRYPT, ST_TODO,
                    "after keystore-migrate: the re-encryption job moves every record to it");
                add(p, S_RETIRE_OLD_STORE, ST_TODO,
                    "after keystore-migrate: every version the old key store held is retired "
                    "and destroyed");
                return;
        }
        driver = json_string_value(json_object_get(json_object_get(v->doc, "keystore"), "driver"));
        add(p, S_MIGRATE, ST_DONE,
            "the server runs on the %s key store, which holds the versions moved from the old "
            "one (%s)", driver ? driver : "new", m.n ? m.list : "none");
        if (v->active > m.highest)
                add(p, S_REKEY_NEW_STORE, ST_DONE,
                    "the active version %" PRIu32 " was made in the new key store", v->active);
        else
                add(p, S_REKEY_NEW_STORE, ST_TODO,
                    "version %" PRIu32 " is made in the new key store and becomes active; new "
                    "records are sealed under it", v->newest + 1);
        if (m.records == 0)
                add(p, S_REENCRYPT, ST_DONE, "no record is sealed under a version the old key "
                                             "store held");
        else
                add(p, S_REENCRYPT, ST_TODO,
                    "the re-encryption job moves the %" PRIu64 " records under versions %s to "
                    "the active version%s", m.records, m.list,
                    m.revoked_with_records ? " (revoked ones are reinstated for it first: the "
                                             "job skips revoked versions)" : "");
        if (m.not_destroyed == 0)
                add(p, S_RETIRE_OLD_STORE, ST_DONE, "versions %s are destroyed", m.n ? m.list : "-");
        else
                add(p, S_RETIRE_OLD_STORE, ST_TODO,
                    "versions %s are retired and destroyed: their keys deleted from the new key "
                    "store, their DEKs from the database; wipe the old key store yourself", m.list);
}

static void plan_make(const struct incident *inc, const struct view *v, struct plan *ret) {
        *ret = (struct plan) { 0 };
        switch (inc->pb) {
        case PB_LEAKED:
                plan_leaked(inc, v, ret);
                break;
        case PB_ALGORITHM:
                plan_algorithm(inc, v, ret);
                break;
        case PB_HSM:
                plan_hsm(inc, v, ret);
                break;
        default:
                break;
        }
}

/* DESIGN.md's line for the playbook. */
static void print_summary(const struct incident *inc) {
        uint32_t V = inc->version;

        switch (inc->pb) {
        case PB_LEAKED:
                printf("Key material of version %" PRIu32 " leaked: rekey, re-encrypt every "
                       "record, revoke, retire and destroy version %" PRIu32 ".\n", V, V);
                break;
        case PB_HSM:
                printf("The key store holding version %" PRIu32 " is vulnerable: move the tenant "
                       "keys to another key store, then retire and destroy the versions it "
                       "held.\n", V);
                break;
        case PB_ALGORITHM:
                printf("The algorithm or size of version %" PRIu32 " is weak: rekey to %s, "
                       "re-encrypt every record, retire version %" PRIu32 ".\n", V,
                       inc->algorithm, V);
                break;
        default:
                break;
        }
}

/* The plan as text (stdout) or, at the end, as the JSON object of the contract. */
static int plan_print(struct incident *inc, const struct plan *p, const enum outcome *outcomes) {
        if (kh_cli_json(inc->cli)) {
                json_auto_t *out = NULL, *steps = json_array();

                for (size_t i = 0; steps && i < p->n; i++) {
                        const struct step *s = &p->steps[i];
                        json_t *o = json_pack("{ss ss ss}", "step", step_names[s->kind], "status",
                                              status_json[s->status], "detail", s->detail);
                        if (o && outcomes)
                                (void) json_object_set_new(o, "outcome",
                                                           json_string(outcome_json[outcomes[i]]));
                        if (!o || json_array_append_new(steps, o) < 0) {
                                json_decref(steps);
                                steps = NULL;
                        }
                }
                if (steps)
                        out = json_pack("{ss sI ss sO sb}", "playbook",
                                        kh_incident_playbook_names[inc->pb], "version",
                                        (json_int_t) inc->version, "tenant", tenant_of(inc->cli),
                                        "steps", steps, "executed", outcomes != NULL);
                if (!out)
                        return kh_cli_fail(inc->cli, "internal_error", "out of memory");
                return kh_cli_print_json(inc->cli, out);
        }
        printf("Playbook %s, version %" PRIu32 " of tenant %s%s\n",
               kh_incident_playbook_names[inc->pb], inc->version, tenant_of(inc->cli),
               outcomes ? "" : " (dry run: nothing changed)");
        print_summary(inc);
        putchar('\n');
        for (size_t i = 0; i < p->n; i++)
                printf("  %zu. %-18s %-13s %s\n", i + 1, step_names[p->steps[i].kind],
                       status_text[p->steps[i].status], p->steps[i].detail);
        return 0;
}

/* ---- running steps ---- */

/* Asks on the terminal for the version number unless --yes; refuses without a terminal.
 * Returns 0 (go on) or 1 after reporting why not; nothing has changed then. */
static int confirm(struct incident *inc, const struct plan *p) {
        char line[32], want[16];
        size_t len;

        if (inc->yes)
                return 0;
        if (!isatty(STDIN_FILENO))
                return kh_cli_fail(inc->cli, "confirmation_required",
                                   "incident --execute changes the tenant's keys: run it on a "
                                   "terminal to confirm, or pass --yes; nothing was changed");
        fprintf(stderr, "This runs on tenant %s:\n", tenant_of(inc->cli));
        for (size_t i = 0; i < p->n; i++)
                if (p->steps[i].status == ST_TODO)
                        fprintf(stderr, "  %s: %s\n", step_names[p->steps[i].kind],
                                p->steps[i].detail);
        fprintf(stderr, "Type the version number (%" PRIu32 ") to go on: ", inc->version);
        fflush(stderr);
        if (!fgets(line, sizeof(line), stdin))
                line[0] = 0;
        len = strlen(line);
        if (len && line[len - 1] == '\n')
                line[--len] = 0;
        (void) snprintf(want, sizeof(want), "%" PRIu32, inc->version);
        if (strcmp(line, want) != 0)
                return kh_cli_fail(inc->cli, "not_confirmed", "not confirmed; nothing was changed");
        return 0;
}

/* A POST whose answer is {"version", "state"} (or {"versions"}); prints it as it goes. */
static int post(struct incident *inc, const char *path, const json_t *body, const char *what) {
        json_auto_t *answer = NULL;
        int r = kh_cli_post(inc->cli, KH_CLIENT_TENANT, path, body, &answer);

        if (r != 0)
                return kh_cli_interrupted()
                               ? kh_cli_fail(inc->cli, "interrupted", "stopped; run the same "
                                             "command again to go on")
                               : r;
        if (!kh_cli_json(inc->cli)) {
                json_int_t v = json_integer_value(json_object_get(answer, "version"));
                const char *state = json_string_value(json_object_get(answer, "state"));
                KH_CLEANUP(kh_freep) char *shown = kh_out_printable(state ? state : "changed");

                if (json_object_get(answer, "versions"))
                        printf("     %s: %zu version(s) revoked\n", what,
                               json_array_size(json_object_get(answer, "versions")));
                else
                        printf("     %s: version %" JSON_INTEGER_FORMAT " is now %s\n", what, v,
                               shown ? shown : "-");
        }
        return 0;
}

static int post_version_n(struct incident *inc, uint32_t version, const char *op) {
        char path[64];

        (void) snprintf(path, sizeof(path), "/admin/keys/%" PRIu32 "/%s", version, op);
        return post(inc, path, NULL, op);
}

static int post_version(struct incident *inc, const char *op) {
        return post_version_n(inc, inc->version, op);
}

/* Polls GET /admin/keys until done(view) says so; progress on stderr on a terminal.
 * Returns 0 or the exit status. */
static int wait_until(struct incident *inc, bool (*done)(const struct view *, uint64_t *ret_left),
                      const char *what) {
        bool bar = isatty(STDERR_FILENO);
        unsigned stalled = 0;
        int r = 0;

        kh_cli_catch_signals();
        for (;;) {
                struct view v;
                uint64_t left;

                r = view_get(inc, &v);
                if (r != 0)
                        break;
                if (done(&v, &left)) {
                        view_done(&v);
                        break;
                }
                if (bar) {
                        fprintf(stderr, "\r%s: %" PRIu64 " records left, job %s   ", what, left,
                                v.job);
                        fflush(stderr);
                }
                if (is(v.job, "failed")) {
                        view_done(&v);
                        r = kh_cli_fail(inc->cli, "reencrypt_failed",
                                        "the re-encryption job stopped on an error (see the "
                                        "server's log); it resumes at the server's next start, "
                                        "then run this again");
                        break;
                }
                stalled = is(v.job, "running") ? 0 : stalled + 1;
                view_done(&v);
                if (stalled > STALL_POLLS) {
                        r = kh_cli_fail(inc->cli, "reencrypt_stalled",
                                        "%s: %" PRIu64 " records are left and no re-encryption "
                                        "job runs (keyhold key status)", what, left);
                        break;
                }
                if (!kh_cli_sleep_ms(POLL_MS)) {
                        r = 1;
                        break;
                }
        }
        if (bar)
                fputc('\n', stderr);
        if (r != 0 && kh_cli_interrupted())
                return kh_cli_fail(inc->cli, "interrupted",
                                   "stopped waiting; the job goes on. Run the same command again "
                                   "to go on from this step");
        return r;
}

/* The earlier job is over: nothing left under archived versions and no job running. */
static bool nothing_pending(const struct view *v, uint64_t *ret_left) {
        *ret_left = v->pending;
        return v->pending == 0 && !is(v->job, "running");
}

/* No record is sealed under V any more. */
static bool nothing_under_v(const struct view *v, uint64_t *ret_left) {
        *ret_left = v->records;
        return v->records == 0;
}

/* No record is sealed under a version the old key store held. */
static bool nothing_under_old_store(const struct view *v, uint64_t *ret_left) {
        struct moved m;

        moved_of(v, &m);
        *ret_left = m.records;
        return m.records == 0;
}

/* The migrated versions of v in state state (NULL: any but destroyed) with records (or
 * not), into ret; returns how many. */
static size_t moved_in(const struct view *v, const char *state, bool with_records,
                       uint32_t ret[static KH_INCIDENT_VERSIONS_MAX]) {
        const json_t *row;
        size_t i, n = 0;

        json_array_foreach(json_object_get(v->doc, "versions"), i, row) {
                const char *s = json_string_value(json_object_get(row, "state"));
                uint64_t version = uint_of(row, "version");

                if (n == KH_INCIDENT_VERSIONS_MAX || version > UINT32_MAX ||
                    !moved_has(v, (uint32_t) version) || (state && !is(s, state)) ||
                    (!state && is(s, "destroyed")) || (with_records && uint_of(row, "records") == 0))
                        continue;
                ret[n++] = (uint32_t) version;
        }
        return n;
}

/* reencrypt of hsm-vulnerability: revoked old versions with records reinstated (the job
 * skips revoked ones), then the wait until no record is under an old version. */
static int run_hsm_reencrypt(struct incident *inc, const struct view *v) {
        uint32_t versions[KH_INCIDENT_VERSIONS_MAX];
        size_t n = moved_in(v, "revoked", true, versions);
        int r;

        for (size_t i = 0; i < n; i++) {
                r = post_version_n(inc, versions[i], "reinstate");
                if (r != 0)
                        return r;
        }
        r = wait_until(inc, nothing_under_old_store, "re-encrypting the old key store's versions");
        if (r == 0 && !kh_cli_json(inc->cli))
                printf("     reencrypt: no record is left under a version of the old key store\n");
        return r;
}

/* retire-old-store: each old version retired (unless it is), then destroyed. */
static int run_retire_old_store(struct incident *inc, const struct view *v) {
        uint32_t versions[KH_INCIDENT_VERSIONS_MAX];
        size_t n = moved_in(v, NULL, false, versions);
        const json_t *row;
        size_t j;
        int r;

        for (size_t i = 0; i < n; i++) {
                bool retired = false;

                json_array_foreach(json_object_get(v->doc, "versions"), j, row)
                        if (uint_of(row, "version") == versions[i])
                                retired = is(json_string_value(json_object_get(row, "state")),
                                             "retired");
                if (!retired) {
                        r = post_version_n(inc, versions[i], "retire");
                        if (r != 0)
                                return r;
                }
                r = post_version_n(inc, versions[i], "destroy");
                if (r != 0)
                        return r;
        }
        return 0;
}

static int run_rekey(struct incident *inc, const struct view *v) {
        json_auto_t *body = NULL;
        int r;

        if (v->pending > 0 || is(v->job, "running")) {
                /* an earlier rekey's records still move: a rekey now is refused (job_running) */
                r = wait_until(inc, nothing_pending, "waiting for the earlier re-encryption job");
                if (r != 0)
                        return r;
        }
        if (inc->algorithm) {
                body = json_pack("{ss}", "algorithm", inc->algorithm);
                if (!body)
                        return kh_cli_fail(inc->cli, "internal_error", "out of memory");
        }
        return post(inc, "/admin/keys/rekey", body, "rekey");
}

static int run_step(struct incident *inc, const struct view *v, const struct step *s) {
        char what[64];
        int r;

        if (inc->pb == PB_HSM && s->kind == S_REENCRYPT)
                return run_hsm_reencrypt(inc, v);
        switch (s->kind) {
        case S_REKEY:
        case S_REKEY_NEW_STORE:
                return run_rekey(inc, v);
        case S_RETIRE_OLD_STORE:
                return run_retire_old_store(inc, v);
        case S_REENCRYPT:
                if (is(v->state, "revoked")) {
                        r = post_version(inc, "reinstate");
                        if (r != 0)
                                return r;
                }
                (void) snprintf(what, sizeof(what), "re-encrypting version %" PRIu32, inc->version);
                r = wait_until(inc, nothing_under_v, what);
                if (r == 0 && !kh_cli_json(inc->cli))
                        printf("     reencrypt: no record is left under version %" PRIu32 "\n",
                               inc->version);
                return r;
        case S_REVOKE:
                return post_version(inc, "revoke");
        case S_RETIRE:
                return post_version(inc, "retire");
        case S_DESTROY:
                return post_version(inc, "destroy");
        case S_REFUSE_WRITES:
                return post(inc, "/admin/keys/revoke-all", NULL, "kill switch");
        default:
                return kh_cli_fail(inc->cli, "not_available", "%s", s->detail);
        }
}

static bool plan_done(const struct plan *p, size_t *ret_first) {
        for (size_t i = 0; i < p->n; i++)
                if (p->steps[i].status != ST_DONE) {
                        *ret_first = i;
                        return false;
                }
        return true;
}

/* --execute: each step not done, in order, the state read again before each. A step that
 * ran and still is not done stops the run (rather than a loop). */
static int execute(struct incident *inc) {
        enum outcome outcomes[STEPS_MAX] = { 0 };
        struct plan p;
        size_t first;
        int r;

        for (unsigned round = 0;; round++) {
                struct view v;

                r = view_get(inc, &v);
                if (r != 0)
                        return r;
                plan_make(inc, &v, &p);
                if (round == 0)
                        for (size_t i = 0; i < p.n; i++)
                                outcomes[i] = p.steps[i].status == ST_DONE ? OUT_DONE_BEFORE
                                                                          : OUT_NOT_RUN;
                if (plan_done(&p, &first)) {
                        view_done(&v);
                        break;
                }
                if (p.steps[first].kind == S_MIGRATE) {
                        /* offline: the operator's step, with keyholdd stopped */
                        view_done(&v);
                        if (inc->refuse_writes)
                                break;  /* what --refuse-writes asked for is done */
                        return kh_cli_fail(inc->cli, "offline_step", "step %s: %s; nothing was "
                                           "changed", step_names[S_MIGRATE],
                                           p.steps[first].detail);
                }
                if (outcomes[first] == OUT_RAN) {
                        view_done(&v);
                        return kh_cli_fail(inc->cli, "step_failed",
                                           "step %s ran but the server does not show it done: %s",
                                           step_names[p.steps[first].kind], p.steps[first].detail);
                }
                if (p.steps[first].status == ST_NOT_POSSIBLE) {
                        view_done(&v);
                        return kh_cli_fail(inc->cli, "not_possible", "step %s: %s",
                                           step_names[p.steps[first].kind], p.steps[first].detail);
                }
                if (round == 0) {
                        r = confirm(inc, &p);
                        if (r != 0) {
                                view_done(&v);
                                return r;
                        }
                        if (!kh_cli_json(inc->cli))
                                printf("Running playbook %s on version %" PRIu32 " of tenant %s:\n",
                                       kh_incident_playbook_names[inc->pb], inc->version,
                                       tenant_of(inc->cli));
                }
                if (!kh_cli_json(inc->cli))
                        printf("  %zu. %s: %s\n", first + 1, step_names[p.steps[first].kind],
                               p.steps[first].detail);
                fflush(stdout);
                r = run_step(inc, &v, &p.steps[first]);
                view_done(&v);
                if (r != 0)
                        return r;
                outcomes[first] = OUT_RAN;
        }
        /* a step not done at the start and done now was done by this run, even when the
         * step before did its work (the wait is over once the rekey's job has finished
         * before the wait step looked) */
        for (size_t i = 0; i < p.n; i++)
                if (outcomes[i] == OUT_NOT_RUN && p.steps[i].status == ST_DONE)
                        outcomes[i] = OUT_RAN;
        if (!kh_cli_json(inc->cli))
                putchar('\n');
        return plan_print(inc, &p, outcomes);
}

/* ---- options ---- */

/* Options that only some playbooks take. Returns 0, or 2 after a usage error. */
static int check_options(struct incident *inc) {
        struct kh_cli *cli = inc->cli;
        const char *since = kh_cli_value(cli, "since"), *until = kh_cli_value(cli, "until");

        if (inc->yes && !inc->execute)
                return kh_cli_usage_error(cli, "--yes goes with --execute");
        if (inc->refuse_writes && inc->pb != PB_HSM)
                return kh_cli_usage_error(cli, "--refuse-writes is an option of hsm-vulnerability");
        if (inc->algorithm && inc->pb != PB_LEAKED && inc->pb != PB_ALGORITHM)
                return kh_cli_usage_error(cli, "--algorithm is an option of leaked and "
                                               "algorithm-weakness");
        if (inc->algorithm && !is(inc->algorithm, "rsa-3072") && !is(inc->algorithm, "rsa-4096"))
                return kh_cli_usage_error(cli, "--algorithm must be rsa-3072 or rsa-4096");
        if ((since || until) && inc->pb != PB_UNAUTHORIZED_USE)
                return kh_cli_usage_error(cli, "--since and --until are options of "
                                               "unauthorized-use");
        if (since && kh_incident_time_parse(since, false, inc->since) < 0)
                return kh_cli_usage_error(cli, "--since: '%s' is no UTC time "
                                               "(2026-12-06T14:03:11Z, 2026-12-06T14:03:11.042Z) "
                                               "or date (2026-12-06)", since);
        if (until && kh_incident_time_parse(until, true, inc->until) < 0)
                return kh_cli_usage_error(cli, "--until: '%s' is no UTC time "
                                               "(2026-12-06T14:03:11Z, 2026-12-06T14:03:11.042Z) "
                                               "or date (2026-12-06)", until);
        if (since && until && strcmp(inc->since, inc->until) > 0)
                return kh_cli_usage_error(cli, "--since is after --until");
        if (inc->pb == PB_ALGORITHM) {
                if (!inc->algorithm)
                        inc->algorithm = DEFAULT_STRONG;
                inc->want_bits = rsa_bits(inc->algorithm);
        }
        return 0;
}

static int parse(struct kh_cli *cli, struct incident *ret) {
        const char *name = kh_cli_operand(cli, 0), *v = kh_cli_value(cli, "version");
        struct incident inc = { .cli = cli, .pb = PB_N_ };
        uint64_t n;
        int r;

        for (size_t i = 0; i < PB_N_; i++)
                if (is(name, kh_incident_playbook_names[i]))
                        inc.pb = (enum playbook) i;
        if (inc.pb == PB_N_)
                return kh_cli_usage_error(cli, "unknown playbook '%s' (leaked, unauthorized-use, "
                                               "hsm-vulnerability, algorithm-weakness)",
                                          name ? name : "");
        if (!v)
                return kh_cli_usage_error(cli, "which key version? --version V (keyhold key list)");
        if (kh_parse_u64(v, strlen(v), UINT32_MAX, &n) < 0 || n == 0)
                return kh_cli_usage_error(cli, "--version: a key version is a number from 1 "
                                               "(keyhold key list), not '%s'", v);
        inc.version = (uint32_t) n;
        inc.algorithm = kh_cli_value(cli, "algorithm");
        inc.execute = kh_cli_flag(cli, "execute");
        inc.yes = kh_cli_flag(cli, "yes");
        inc.refuse_writes = kh_cli_flag(cli, "refuse-writes");
        r = check_options(&inc);
        if (r != 0)
                return r;
        *ret = inc;
        return 0;
}

int kh_cmd_incident(struct kh_cli *cli) {
        struct incident inc;
        struct plan p;
        struct view v;
        int r;

        r = parse(cli, &inc);
        if (r != 0)
                return r;
        if (inc.pb == PB_UNAUTHORIZED_USE)
                return kh_incident_unauthorized_use(&inc);
        if (inc.execute)
                return execute(&inc);
        r = view_get(&inc, &v);
        if (r != 0)
                return r;
        plan_make(&inc, &v, &p);
        view_done(&v);
        r = plan_print(&inc, &p, NULL);
        if (r != 0 || kh_cli_json(cli) || p.steps[0].status == ST_NOT_POSSIBLE)
                return r;
        if (inc.pb == PB_HSM && p.steps[1].kind == S_MIGRATE && p.steps[1].status == ST_TODO)
                printf("\nFirst move the keys offline (keyhold keystore migrate --help). To refuse "
                       "every key read and write meanwhile: keyhold incident hsm-vulnerability "
                       "--version %" PRIu32 " --refuse-writes --execute\n", inc.version);
        else if (!plan_done(&p, &(size_t) { 0 }))
                printf("\nRun it: keyhold incident %s --version %" PRIu32 " --execute\n",
                       kh_incident_playbook_names[inc.pb], inc.version);
        return r;
}
