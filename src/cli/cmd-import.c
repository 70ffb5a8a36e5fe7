/* keyhold import bitwarden-kc (docs/import.md): every member key of a Bitwarden Key Connector
 * database, moved into a keyhold tenant through the server, then read back and compared.
 *
 * The source is only read (src/import/). The data key is unwrapped with the PFX, an HSM or
 * a file the operator made; each record is opened here, and the server seals it under its
 * own envelope (POST /admin/import/user-keys), so the importer never writes keyhold's
 * database. The server's answer per key (imported, skipped: the same key is there already,
 * conflict: another one is) makes a run idempotent: run again after an interruption, and
 * what is done is skipped. The last pass asks the server to compare every key with the
 * source without sending any key back. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/errors.h"
#include "common/file.h"
#include "common/limits.h"
#include "common/secret.h"
#include "crypto/encoding.h"
#include "crypto/kc-blob.h"
#include "import/kc-source.h"
#include "import/kc-unwrap.h"

#define SECRET_FILE_MAX 4096          /* a PFX password, a PIN, a data-key file */
#define PFX_MAX (1024 * 1024)
#define IMPORT_PATH "/admin/import/user-keys"

/* What became of one source record. */
enum outcome {
        O_PENDING,     /* opened; not sent yet */
        O_IMPORTED, O_SKIPPED, O_CONFLICT, O_OVERWRITTEN,
        O_FAILED,      /* here (does not open, no GUID, ...) or at the server */
        O_DUPLICATE,   /* the same member again with the same key: one import covers both */
};

struct rec {
        const struct kh_kc_record *src;
        size_t data_key;               /* index into run.keys of the key that opens it */
        enum outcome outcome;
        const char *code;              /* O_FAILED: machine-readable reason */
        char reason[96];               /* O_FAILED: for a human */
};

struct run {
        struct kh_cli *cli;
        struct kh_kc_data *src;
        struct kh_secret **keys;       /* unwrapped data keys, by data-key row (NULL: none) */
        size_t *opened;                /* records each data-key row opened */
        struct rec *recs;              /* by source order */
        struct rec **order;            /* recs sorted by member */
        bool dry_run, overwrite, bar;
        size_t counts[O_DUPLICATE + 1];
        size_t verified, mismatched;
};

static void run_clear(struct run *r) {
        if (r->keys)
                for (size_t i = 0; i < r->src->n_wrapped; i++)
                        kh_secret_free(r->keys[i]);
        free(r->keys);
        free(r->opened);
        free(r->recs);
        free(r->order);
        kh_kc_data_free(r->src);
}

static void fail_rec(struct rec *rec, int err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void fail_rec(struct rec *rec, int err, const char *fmt, ...) {
        va_list ap;

        rec->outcome = O_FAILED;
        rec->code = kh_err_info(err)->code;
        va_start(ap, fmt);
        (void) vsnprintf(rec->reason, sizeof(rec->reason), fmt, ap);
        va_end(ap);
}

/* A secret file's content less one trailing newline (PFX password, PIN, data key). */
static int read_secret_file(struct kh_cli *cli, const char *path, bool allow_empty,
                            struct kh_secret **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b = { 0 };
        int r;

        kh_buf_init(&b, SECRET_FILE_MAX, true);
        r = kh_file_read(AT_FDCWD, path, 0, SECRET_FILE_MAX, &b);
        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot read %s: %s", path,
                                   r == -EFBIG ? "too large for a secret" : strerror(-r));
        if (b.len && b.data[b.len - 1] == '\n')
                b.len--;
        if (b.len == 0 && !allow_empty)
                return kh_cli_fail(cli, "bad_secret", "%s is empty", path);
        if (b.len == 0) {
                *ret = NULL;
                return 0;
        }
        if (kh_secret_new_from(b.data, b.len, ret) < 0)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        return 0;
}

static int unwrapper_pfx(struct kh_cli *cli, const char *pfx, struct kh_kc_unwrapper **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf der = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *password = NULL;
        const char *pw_file = kh_cli_value(cli, "pfx-password-file");
        int r;

        if (pw_file) {
                r = read_secret_file(cli, pw_file, true, &password);
                if (r != 0)
                        return r;
        }
        kh_buf_init(&der, PFX_MAX, true);
        r = kh_file_read(AT_FDCWD, pfx, 0, PFX_MAX, &der);
        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot read %s: %s", pfx,
                                   r == -EFBIG ? "larger than a PFX file" : strerror(-r));
        r = kh_kc_unwrapper_pfx(der.data, der.len, password, ret);
        if (r == -KH_E_PFX_PASSWORD)
                return kh_cli_fail(cli, kh_err_info(r)->code, "%s: %s%s", pfx,
                                   kh_err_info(r)->message,
                                   pw_file ? "" : " (give --pfx-password-file)");
        if (r < 0)
                return kh_cli_fail(cli, kh_err_info(r)->code, "%s: %s", pfx,
                                   r == -ENOMEM ? "out of memory" : kh_err_info(r)->message);
        return 0;
}

static int unwrapper_pkcs11(struct kh_cli *cli, const char *module, struct kh_kc_unwrapper **ret) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pin = NULL;
        const char *token = kh_cli_value(cli, "pkcs11-token");
        const char *label = kh_cli_value(cli, "pkcs11-key-label");
        const char *pin_file = kh_cli_value(cli, "pkcs11-pin-file");
        const char *pin_env = getenv("KEYHOLD_PKCS11_PIN");
        char detail[256] = "";
        int r;

        if (!token || !label)
                return kh_cli_usage_error(cli, "--pkcs11-module needs --pkcs11-token and "
                                               "--pkcs11-key-label");
        if (pin_file) {
                r = read_secret_file(cli, pin_file, false, &pin);
                if (r != 0)
                        return r;
        } else if (pin_env && *pin_env) {
                if (kh_secret_new_from(pin_env, strlen(pin_env), &pin) < 0)
                        return kh_cli_fail(cli, "internal_error", "out of memory");
        } else {
                return kh_cli_usage_error(cli, "the token's PIN: give --pkcs11-pin-file or set "
                                               "KEYHOLD_PKCS11_PIN");
        }
        r = kh_kc_unwrapper_pkcs11(module, token, pin, label, ret, detail, sizeof(detail));
        if (r < 0)
                return kh_cli_fail(cli, kh_err_info(r)->code, "%s%s%s",
                                   r == -ENOMEM ? "out of memory" : kh_err_info(r)->message,
                                   detail[0] ? " " : "", detail);
        return 0;
}

/* The one source of the data key the options name. */
static int unwrapper_new(struct kh_cli *cli, struct kh_kc_unwrapper **ret) {
        const char *pfx = kh_cli_value(cli, "pfx");
        const char *dk_file = kh_cli_value(cli, "data-key-file");
        const char *module = kh_cli_value(cli, "pkcs11-module");
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk = NULL;
        int r;

        if (!!pfx + !!dk_file + !!module != 1)
                return kh_cli_usage_error(cli, "give exactly one of --pfx, --data-key-file and "
                                               "--pkcs11-module");
        if (kh_cli_value(cli, "pfx-password-file") && !pfx)
                return kh_cli_usage_error(cli, "--pfx-password-file goes with --pfx");
        if (pfx)
                return unwrapper_pfx(cli, pfx, ret);
        if (module)
                return unwrapper_pkcs11(cli, module, ret);
        r = read_secret_file(cli, dk_file, false, &dk);
        if (r != 0)
                return r;
        r = kh_kc_unwrapper_data_key(dk, ret);
        if (r < 0)
                return kh_cli_fail(cli, kh_err_info(r)->code, "%s: %s", dk_file,
                                   kh_err_info(r)->message);
        return 0;
}

/* Unwraps every data-key row the source holds; at least one must open. */
static int unwrap_data_keys(struct run *run, struct kh_kc_unwrapper *u) {
        size_t n = run->src->n_wrapped, ok = 0;

        run->keys = calloc(n, sizeof(*run->keys));
        run->opened = calloc(n, sizeof(*run->opened));
        if (!run->keys || !run->opened)
                return kh_cli_fail(run->cli, "internal_error", "out of memory");
        for (size_t i = 0; i < n; i++) {
                const struct kh_kc_wrapped *w = &run->src->wrapped[i];
                int r = kh_kc_unwrap(u, w->p, w->len, &run->keys[i]);

                if (r == -KH_E_KC_UNWRAP)
                        continue;
                if (r < 0)
                        return kh_cli_fail(run->cli, kh_err_info(r)->code, "data-key row %zu: %s",
                                           i + 1, r == -ENOMEM ? "out of memory"
                                                               : kh_err_info(r)->message);
                /* an operator's data-key file "opens" every row alike: one is enough */
                for (size_t j = 0; j < i; j++)
                        if (run->keys[j] && kh_secret_equal(run->keys[j], run->keys[i]))
                                run->keys[i] = kh_secret_free(run->keys[i]);
                ok += run->keys[i] != NULL;
        }
        if (ok == 0)
                return kh_cli_fail(run->cli, "data_key_unwrap",
                                   "the key given does not unwrap the source's data key (%zu "
                                   "data-key row%s tried): wrong PFX, HSM key or data-key file",
                                   n, n == 1 ? "" : "s");
        return 0;
}

/* Opens rec with the data key found to open it, or, the first time, with the first that
 * does (rec->data_key is set then). Returns 0 with a 32-byte key; else the reason is set in
 * rec (O_FAILED) and returned. */
static int open_rec(struct run *run, struct rec *rec, struct kh_secret **ret) {
        const struct kh_kc_record *src = rec->src;

        for (size_t i = 0; i < run->src->n_wrapped; i++) {
                KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
                int r;

                if (!run->keys[i] || (rec->data_key != SIZE_MAX && i != rec->data_key))
                        continue;
                r = kh_kc_blob_open(run->keys[i], src->blob, src->blob_len, &key);
                if (r == -KH_E_KC_DECRYPT)
                        continue;
                if (r < 0) {
                        fail_rec(rec, r, "%s", r == -ENOMEM ? "out of memory" : kh_err_info(r)->message);
                        return r;
                }
                if (kh_secret_len(key) != KH_USER_KEY_LEN) {
                        fail_rec(rec, -KH_E_KC_KEY_LENGTH, "decrypts to %zu bytes, not %d",
                                 kh_secret_len(key), KH_USER_KEY_LEN);
                        return -KH_E_KC_KEY_LENGTH;
                }
                rec->data_key = i;
                *ret = KH_TAKE_PTR(key);
                return 0;
        }
        fail_rec(rec, -KH_E_KC_DECRYPT, "does not decrypt under any data key of the source");
        return -KH_E_KC_DECRYPT;
}

static int by_member(const void *a, const void *b) {
        const struct rec *x = *(const struct rec *const *) a, *y = *(const struct rec *const *) b;
        int c = strcmp(x->src->guid, y->src->guid);

        return c ? c : (x > y) - (x < y);        /* stable: source order within a member */
}

/* Opens every record once: the reasons of those that cannot be imported, and how many each
 * data key opened. A member the source holds twice is imported once when both records carry
 * the same key; with different keys, neither is (which one is the member's is unknowable). */
static int check_records(struct run *run) {
        size_t n = run->src->n_records;

        run->recs = calloc(n ? n : 1, sizeof(*run->recs));
        run->order = calloc(n ? n : 1, sizeof(*run->order));
        if (!run->recs || !run->order)
                return kh_cli_fail(run->cli, "internal_error", "out of memory");
        for (size_t i = 0; i < n; i++) {
                struct rec *rec = &run->recs[i];
                KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
                int r;

                *rec = (struct rec) { .src = &run->src->records[i], .data_key = SIZE_MAX };
                run->order[i] = rec;
                if (rec->src->error < 0) {
                        fail_rec(rec, rec->src->error, "%s", kh_err_info(rec->src->error)->message);
                        continue;
                }
                r = open_rec(run, rec, &key);
                if (r == -ENOMEM)
                        return kh_cli_fail(run->cli, "internal_error", "out of memory");
                if (r == 0)
                        run->opened[rec->data_key]++;
        }
        qsort(run->order, n, sizeof(*run->order), by_member);
        for (size_t i = 0; i < n;) {
                size_t j = i + 1;
                bool differ = false;

                while (j < n && run->order[i]->src->guid[0] &&
                       strcmp(run->order[j]->src->guid, run->order[i]->src->guid) == 0)
                        j++;
                for (size_t k = i + 1; k < j; k++) {
                        KH_CLEANUP(kh_secret_freep) struct kh_secret *a = NULL, *b = NULL;
                        struct rec *first = run->order[i], *other = run->order[k];

                        if (first->outcome != O_PENDING || other->outcome != O_PENDING) {
                                differ = true;
                                continue;
                        }
                        if (open_rec(run, first, &a) < 0 || open_rec(run, other, &b) < 0)
                                return kh_cli_fail(run->cli, "internal_error", "out of memory");
                        if (kh_secret_equal(a, b))
                                other->outcome = O_DUPLICATE;
                        else
                                differ = true;
                }
                for (size_t k = i; differ && k < j; k++)
                        if (run->order[k]->outcome != O_FAILED)
                                fail_rec(run->order[k], -KH_E_KC_DUPLICATE,
                                         "the source holds another key for this member too");
                i = j;
        }
        return 0;
}

static enum outcome outcome_of(const char *status) {
        static const struct { const char *name; enum outcome o; } map[] = {
                { "imported", O_IMPORTED }, { "skipped", O_SKIPPED }, { "conflict", O_CONFLICT },
                { "overwritten", O_OVERWRITTEN }, { "match", O_SKIPPED },
                { "missing", O_IMPORTED }, { "mismatch", O_CONFLICT },
        };
        for (size_t i = 0; status && i < sizeof(map) / sizeof(map[0]); i++)
                if (strcmp(status, map[i].name) == 0)
                        return map[i].o;
        return O_FAILED;
}

/* Sends recs batch[0..n) in one request (verify: only compare) and applies the answer to
 * each record: its outcome, or with check, whether it matches. */
static int send_batch(struct run *run, struct rec **batch, size_t n, bool verify, bool check) {
        json_auto_t *body = json_object(), *keys = json_array(), *answer = NULL;
        const json_t *results;
        int r = 0;

        if (!body || !keys || json_object_set(body, "keys", keys) < 0 ||
            (verify && json_object_set_new(body, "verify", json_true()) < 0) ||
            (run->overwrite && !verify && json_object_set_new(body, "overwrite", json_true()) < 0))
                return kh_cli_fail(run->cli, "internal_error", "out of memory");
        for (size_t i = 0; i < n && r == 0; i++) {
                KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
                KH_CLEANUP(kh_buf_freep) struct kh_buf b64 = { 0 };

                kh_buf_init(&b64, 64, true);
                if (open_rec(run, batch[i], &key) < 0 || kh_base64_encode_secret(key, &b64) < 0 ||
                    kh_buf_append(&b64, "", 1) < 0 ||
                    json_array_append_new(keys, json_pack("{ss ss}", "user", batch[i]->src->guid,
                                                          "key", (const char *) b64.data)) < 0)
                        r = kh_cli_fail(run->cli, "internal_error", "a record opened before "
                                                  "does not open again, or out of memory");
        }
        if (r == 0)
                r = kh_cli_post(run->cli, KH_CLIENT_TENANT, IMPORT_PATH, body, &answer);
        /* the keys' text goes as soon as the request has */
        for (size_t i = 0; i < json_array_size(keys); i++) {
                json_t *k = json_object_get(json_array_get(keys, i), "key");
                OPENSSL_cleanse((char *) (uintptr_t) json_string_value(k), json_string_length(k));
        }
        if (r != 0)
                return r;
        results = json_object_get(answer, "results");
        if (json_array_size(results) != n)
                return kh_cli_fail(run->cli, "bad_response", "the server's answer does not "
                                                             "list every key sent");
        for (size_t i = 0; i < n; i++) {
                const json_t *res = json_array_get(results, i);
                const char *user = json_string_value(json_object_get(res, "user"));
                const char *status = json_string_value(json_object_get(res, "status"));
                struct rec *rec = batch[i];

                if (!user || strcmp(user, rec->src->guid) != 0)
                        return kh_cli_fail(run->cli, "bad_response",
                                           "the server's answer is out of order");
                if (check) {
                        /* what the import left must be what the source holds, but for the
                         * conflicts it left alone */
                        bool want_match = rec->outcome != O_CONFLICT;
                        bool match = status && strcmp(status, "match") == 0;
                        if (match == want_match)
                                run->verified++;
                        else
                                run->mismatched++;
                        continue;
                }
                rec->outcome = outcome_of(status);
                if (rec->outcome == O_FAILED) {
                        const char *code = json_string_value(json_object_get(res, "code"));
                        fail_rec(rec, -KH_E_KC_DECRYPT, "keyholdd cannot open the key it holds "
                                                        "for this member (%s)", code ? code : "?");
                        rec->code = "stored_key_unreadable";
                }
        }
        return 0;
}

/* Every pending record, in batches, as the run says; a bar on a terminal. */
static int pass(struct run *run, const char *label, bool verify, bool check) {
        size_t n = run->src->n_records, todo = 0, done = 0;
        struct rec *batch[KH_IMPORT_BATCH_MAX];
        size_t nb = 0;
        time_t start = time(NULL);

        for (size_t i = 0; i < n; i++)
                todo += check ? run->recs[i].outcome >= O_IMPORTED && run->recs[i].outcome <= O_OVERWRITTEN
                              : run->recs[i].outcome == O_PENDING;
        /* in member order, whatever the source's: keyholdd's records are kept in that order,
         * and appending to a B-tree is cheaper than inserting all over it */
        for (size_t i = 0; i <= n; i++) {
                struct rec *rec = i < n ? run->order[i] : NULL;
                bool take = rec && (check ? rec->outcome >= O_IMPORTED && rec->outcome <= O_OVERWRITTEN
                                          : rec->outcome == O_PENDING);
                int r;

                if (take)
                        batch[nb++] = rec;
                if (nb == 0 || (nb < KH_IMPORT_BATCH_MAX && rec))
                        continue;
                if (kh_cli_interrupted())
                        return kh_cli_fail(run->cli, "interrupted", "stopped after %zu of %zu "
                                           "records; run the same command again to finish", done, todo);
                r = send_batch(run, batch, nb, verify, check);
                if (r != 0)
                        return r;
                done += nb;
                nb = 0;
                if (run->bar) {
                        time_t spent = time(NULL) - start;
                        kh_out_progress(label, done, todo,
                                        spent > 0 ? (int64_t) ((todo - done) * (size_t) spent / done) : -1,
                                        done == todo);
                }
        }
        return 0;
}

static json_t *summary(struct run *run) {
        json_auto_t *dks = json_array(), *problems = json_array(), *conflicts = json_array();
        json_t *o;

        for (size_t i = 0; i < run->src->n_wrapped; i++)
                json_array_append_new(dks, json_pack("{sI sb sI}", "row", (json_int_t) i + 1,
                                                     "unwrapped", run->keys[i] != NULL, "records",
                                                     (json_int_t) run->opened[i]));
        for (size_t i = 0; i < run->src->n_records; i++) {
                const struct rec *rec = &run->recs[i];
                if (rec->outcome == O_FAILED)
                        json_array_append_new(problems,
                                              json_pack("{ss ss ss}", "id", rec->src->id, "code",
                                                        rec->code, "reason", rec->reason));
                else if (rec->outcome == O_CONFLICT)
                        json_array_append_new(conflicts, json_string(rec->src->guid));
        }
        o = json_pack("{sI sI sI sI sI sI sI sb sO sO sO}",
                      "imported", (json_int_t) run->counts[O_IMPORTED],
                      "skipped", (json_int_t) run->counts[O_SKIPPED],
                      "conflicts", (json_int_t) run->counts[O_CONFLICT],
                      "failed", (json_int_t) run->counts[O_FAILED],
                      "overwritten", (json_int_t) run->counts[O_OVERWRITTEN],
                      "duplicates", (json_int_t) run->counts[O_DUPLICATE],
                      "records", (json_int_t) run->src->n_records,
                      "dry_run", run->dry_run, "data_keys", dks, "problems", problems,
                      "conflict_ids", conflicts);
        if (o && !run->dry_run)
                json_object_set_new(o, "verified", json_integer((json_int_t) run->verified));
        return o;
}

/* The source as output may name it: a PostgreSQL conninfo may hold a password. */
static const char *source_name(const char *spec) {
        return strncmp(spec, "postgresql:", 11) == 0 ? "postgresql" : spec;
}

static void print_human(struct run *run, const char *source) {
        const char *would = run->dry_run ? "would be " : "";

        printf("source %s: %zu records, %zu data-key row%s\n", source, run->src->n_records,
               run->src->n_wrapped, run->src->n_wrapped == 1 ? "" : "s");
        for (size_t i = 0; i < run->src->n_wrapped; i++)
                if (run->keys[i] || run->src->n_wrapped > 1)
                        printf("  data-key row %zu: %s, opened %zu records\n", i + 1,
                               run->keys[i] ? "unwrapped" : "does not unwrap", run->opened[i]);
        for (size_t i = 0; i < run->src->n_records; i++) {
                const struct rec *rec = &run->recs[i];
                KH_CLEANUP_FREE char *id = kh_out_printable(rec->src->id);

                if (rec->outcome == O_FAILED)
                        printf("failed    %s: %s\n", id ? id : "?", rec->reason);
                else if (rec->outcome == O_CONFLICT)
                        printf("conflict  %s: keyhold holds another key for this member%s\n",
                               rec->src->guid, run->dry_run ? "" : " (left as it is; --overwrite replaces it)");
        }
        printf("%simported %zu, already present %zu, conflicts %zu, failed %zu",
               would, run->counts[O_IMPORTED], run->counts[O_SKIPPED],
               run->counts[O_CONFLICT], run->counts[O_FAILED]);
        if (run->counts[O_OVERWRITTEN])
                printf(", overwritten %zu", run->counts[O_OVERWRITTEN]);
        if (run->counts[O_DUPLICATE])
                printf(", duplicate records %zu", run->counts[O_DUPLICATE]);
        printf("\n");
        if (run->dry_run)
                printf("dry run: nothing was written\n");
        else
                printf("verified: %zu keys read back through keyholdd match the source%s\n",
                       run->verified, run->counts[O_CONFLICT] ? " (conflicts excepted)" : "");
}

int kh_cmd_import_bitwarden_kc(struct kh_cli *cli) {
        const char *spec = kh_cli_value(cli, "database");
        struct run run __attribute__((cleanup(run_clear))) = { .cli = cli };
        KH_CLEANUP(kh_kc_unwrapper_freep) struct kh_kc_unwrapper *u = NULL;
        json_auto_t *out = NULL;
        char detail[256] = "";
        bool incomplete;
        int r;

        if (!spec)
                return kh_cli_usage_error(cli, "--database is required (json:PATH, sqlite:PATH "
                                               "or postgresql:CONNINFO)");
        run.dry_run = kh_cli_flag(cli, "dry-run");
        run.overwrite = kh_cli_flag(cli, "overwrite");
        run.bar = isatty(STDERR_FILENO) && !kh_cli_json(cli);
        if (run.dry_run && run.overwrite)
                return kh_cli_usage_error(cli, "--dry-run writes nothing: --overwrite has no "
                                               "meaning with it");
        r = unwrapper_new(cli, &u);
        if (r != 0)
                return r;
        r = kh_kc_read(spec, &run.src, detail, sizeof(detail));
        if (r < 0)
                return kh_cli_fail(cli, r == -ENOMEM ? "internal_error" : kh_err_info(r)->code,
                                   "%s%s%s", r == -ENOMEM ? "out of memory" : kh_err_info(r)->message,
                                   detail[0] ? " " : "", detail);
        r = unwrap_data_keys(&run, u);
        if (r == 0)
                r = check_records(&run);
        if (r != 0)
                return r;

        kh_cli_catch_signals();
        r = pass(&run, run.dry_run ? "comparing" : "importing", run.dry_run, false);
        if (r == 0 && !run.dry_run)
                r = pass(&run, "verifying", true, true);
        if (r != 0)
                return r;

        for (size_t i = 0; i < run.src->n_records; i++)
                run.counts[run.recs[i].outcome]++;
        incomplete = run.counts[O_FAILED] || run.counts[O_CONFLICT] || run.mismatched;
        if (kh_cli_json(cli)) {
                out = summary(&run);
                if (out && run.mismatched)
                        json_object_set_new(out, "mismatched", json_integer((json_int_t) run.mismatched));
                if (out && incomplete)
                        json_object_set_new(out, "code", json_string(run.mismatched ? "verify_failed"
                                                                                    : "import_incomplete"));
                if (!out)
                        return kh_cli_fail(cli, "internal_error", "out of memory");
                r = kh_cli_print_json(cli, out);
                return r != 0 ? r : incomplete;
        }
        print_human(&run, source_name(spec));
        if (run.mismatched)
                return kh_cli_fail(cli, "verify_failed", "%zu keys read back through keyholdd do "
                                   "not match the source", run.mismatched);
        if (incomplete && run.dry_run)
                return kh_cli_fail(cli, "import_incomplete", "%zu records would fail and %zu "
                                   "would be conflicts: see above", run.counts[O_FAILED],
                                   run.counts[O_CONFLICT]);
        if (incomplete)
                return kh_cli_fail(cli, "import_incomplete", "%zu records failed and %zu are "
                                   "conflicts: see above; fix and run again (what is done is skipped)",
                                   run.counts[O_FAILED], run.counts[O_CONFLICT]);
        return 0;
}
