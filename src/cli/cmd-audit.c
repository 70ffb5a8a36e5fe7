/* keyhold audit ...: the audit chain from the server (GET /admin/audit and its public key,
 * or /server/... for the server's own chain) and its offline verification. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "audit/json.h"
#include "audit/verify.h"
#include "cli/audit-line.h"
#include "cli/cli.h"
#include "cli/cmd-audit.h"
#include "cli/commands.h"
#include "cli/outfile.h"
#include "cli/output.h"
#include "common/buf.h"
#include "crypto/rsa.h"

#define AUDIT_PAGE_MAX     10000 /* the server's largest page (docs/admin-api.md) */
#define AUDIT_TAIL_DEFAULT 20
#define AUDIT_POLL_MS      1000

KH_DEFINE_CLEANUP(fclose, FILE *)

/* Where the chain's routes are: the tenant's /admin/audit or, with --server, the server's
 * /server/audit, which only the admin socket serves (the operator's chain spans tenants).
 * Returns 0 or the exit status after reporting why not. */
static int audit_scope(struct kh_cli *cli, enum kh_client_scope *ret_scope,
                       const char **ret_base) {
        struct kh_client *c;
        int r;

        r = kh_cli_connect(cli, &c);
        if (r != 0)
                return r;
        if (!kh_cli_flag(cli, "server")) {
                *ret_scope = KH_CLIENT_TENANT;
                *ret_base = "/admin/audit";
                return 0;
        }
        if (!kh_client_is_socket(c))
                return kh_cli_usage_error(cli, "--server: the server's chain is served only on "
                                               "the admin socket, not over --url");
        if (kh_cli_global(cli, KH_CLI_G_TENANT))
                return kh_cli_usage_error(cli, "--server and --tenant name two different chains");
        *ret_scope = KH_CLIENT_SERVER;
        *ret_base = "/server/audit";
        return 0;
}

/* One page of GET .../audit: {"records": [objects], "next": SEQ, "head": SEQ, "replicas":
 * [names]} (replicas: from servers that name them). */
struct page {
        json_t *body; /* owns what the others point into */
        json_t *records;
        uint64_t next, head;
};

/* The chains read by one command: the unnamed replica's first, then each named one's. */
#define EXPORT_CHAINS_MAX 64
struct export_chain {
        char replica[KH_AUDIT_REPLICA_MAX + 1];
        uint64_t records, first_seq, last_seq;
        uint64_t since; /* tail -f: the next seq to ask for */
};

static void page_clear(struct page *p) {
        json_decref(p->body);
        *p = (struct page) { 0 };
}

static bool get_seq(const json_t *o, const char *name, uint64_t *ret) {
        const json_t *v = json_object_get(o, name);

        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return false;
        *ret = (uint64_t) json_integer_value(v);
        return true;
}

/* GET base + query into p (cleared first). Returns 0 or the exit status. */
static int get_page(struct kh_cli *cli, enum kh_client_scope scope, const char *base,
                    const char *query, struct page *p) {
        char path[256];
        const json_t *rec;
        size_t i;
        int r;

        page_clear(p);
        (void) snprintf(path, sizeof(path), "%s?%s", base, query);
        r = kh_cli_get(cli, scope, path, &p->body);
        if (r != 0)
                return r;
        p->records = json_object_get(p->body, "records");
        if (!json_is_array(p->records) || !get_seq(p->body, "next", &p->next) ||
            !get_seq(p->body, "head", &p->head))
                return kh_cli_fail(cli, "bad_response", "the server's audit page lacks records, "
                                                        "next or head");
        json_array_foreach(p->records, i, rec)
                if (!json_is_object(rec))
                        return kh_cli_fail(cli, "bad_response",
                                           "the server's audit page holds a record that is no "
                                           "object");
        return 0;
}

/* Adds the names of the page's "replicas" to chains[1..*n) (those not there yet). Returns
 * 0 or the exit status. */
static int export_replicas(struct kh_cli *cli, const struct page *p,
                           struct export_chain *chains, size_t *n) {
        const json_t *names = json_object_get(p->body, "replicas"), *name;
        size_t i;

        if (!names)
                return 0; /* a server from before replicas had names: one chain */
        if (!json_is_array(names))
                return kh_cli_fail(cli, "bad_response", "the server's audit page's replicas "
                                                        "are no list");
        json_array_foreach(names, i, name) {
                const char *v = json_string_value(name);
                bool known = false;

                if (!v || !kh_audit_replica_is_valid(v))
                        return kh_cli_fail(cli, "bad_response", "the server names a replica "
                                                                "that cannot be one");
                for (size_t j = 0; j < *n; j++)
                        known = known || strcmp(chains[j].replica, v) == 0;
                if (known)
                        continue;
                if (*n == EXPORT_CHAINS_MAX)
                        return kh_cli_fail(cli, "bad_response", "the server names more than %d "
                                           "replicas", EXPORT_CHAINS_MAX - 1);
                chains[*n] = (struct export_chain) { 0 };
                (void) snprintf(chains[*n].replica, sizeof(chains[*n].replica), "%s", v);
                (*n)++;
        }
        return 0;
}

/* Prints the page's records: with --json each object as the server sent it (its members in
 * their order), else one line each. Returns 0 or the exit status. */
static int print_records(struct kh_cli *cli, const struct page *p) {
        const json_t *rec;
        size_t i;

        json_array_foreach(p->records, i, rec) {
                KH_CLEANUP(kh_freep) char *line = NULL;

                if (kh_cli_json(cli))
                        line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
                else
                        line = kh_audit_line_format(rec);
                if (!line)
                        return kh_cli_fail(cli, "internal_error", "out of memory");
                if (puts(line) < 0)
                        return 0; /* main reports a stdout that cannot be written, once */
        }
        (void) fflush(stdout); /* tail -f shows each record as it comes, even into a pipe */
        return 0;
}

/* Orders records of several chains as they happened: by time, then replica, then seq. */
static int record_order(const void *x, const void *y) {
        const json_t *a = *(const json_t *const *) x, *b = *(const json_t *const *) y;
        const char *ta = json_string_value(json_object_get(a, "time"));
        const char *tb = json_string_value(json_object_get(b, "time"));
        const char *ra = json_string_value(json_object_get(a, "replica"));
        const char *rb = json_string_value(json_object_get(b, "replica"));
        json_int_t sa = json_integer_value(json_object_get(a, "seq"));
        json_int_t sb = json_integer_value(json_object_get(b, "seq"));
        int c;

        /* record times are fixed-width UTC text: their byte order is their time order */
        c = strcmp(ta ? ta : "", tb ? tb : "");
        if (c == 0)
                c = strcmp(ra ? ra : "", rb ? rb : "");
        return c ? c : (sa > sb) - (sa < sb);
}

/* Prints the last (at most) keep records of all, in record_order(): the records of several
 * replicas' chains merged. Returns 0 or the exit status. */
static int print_merged(struct kh_cli *cli, json_t *all, size_t keep) {
        struct page p = { .records = all };
        size_t n = json_array_size(all);
        KH_CLEANUP(kh_freep) json_t **v = NULL;
        json_auto_t *sorted = json_array();

        if (n == 0)
                return 0;
        v = calloc(n, sizeof(*v));
        if (!v || !sorted)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        for (size_t i = 0; i < n; i++)
                v[i] = json_array_get(all, i);
        qsort(v, n, sizeof(*v), record_order);
        for (size_t i = n > keep ? n - keep : 0; i < n; i++)
                if (json_array_append(sorted, v[i]) < 0)
                        return kh_cli_fail(cli, "internal_error", "out of memory");
        p.records = sorted;
        return print_records(cli, &p);
}

/* Appends the page's records to all. Returns 0 or the exit status. */
static int gather(struct kh_cli *cli, json_t *all, const struct page *p) {
        if (json_array_extend(all, p->records) < 0)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        return 0;
}

/* One poll of tail -f: every chain's records since its last one (new replicas' from their
 * first), merged. Returns 0 or the exit status. */
static int tail_poll(struct kh_cli *cli, enum kh_client_scope scope, const char *base,
                     struct export_chain *chains, size_t *n, struct page *p) {
        json_auto_t *all = json_array();
        char query[128];
        int r;

        if (!all)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        for (size_t i = 0; i < *n; i++) {
                struct export_chain *c = &chains[i];

                do {
                        (void) snprintf(query, sizeof(query), "since=%" PRIu64 "&limit=%u%s%.32s",
                                        c->since, AUDIT_PAGE_MAX, c->replica[0] ? "&replica=" : "",
                                        c->replica);
                        r = get_page(cli, scope, base, query, p);
                        if (r == 0 && i == 0)
                                r = export_replicas(cli, p, chains, n); /* since 0: from 1 */
                        if (r != 0)
                                return r;
                        if (p->next < c->since)
                                return kh_cli_fail(cli, "bad_response",
                                                   "the server's audit chain went back from "
                                                   "seq %" PRIu64 " to %" PRIu64,
                                                   c->since, p->next);
                        c->since = p->next;
                        r = gather(cli, all, p);
                        if (r != 0)
                                return r;
                        /* a full page: more are waiting */
                } while (json_array_size(p->records) == AUDIT_PAGE_MAX && !kh_cli_interrupted());
        }
        return print_merged(cli, all, SIZE_MAX);
}

int kh_cmd_audit_tail(struct kh_cli *cli) {
        struct page p __attribute__((cleanup(page_clear))) = { 0 };
        struct export_chain chains[EXPORT_CHAINS_MAX] = { 0 };
        size_t n_chains = 1; /* [0]: the unnamed replica's */
        json_auto_t *all = json_array();
        enum kh_client_scope scope;
        const char *base;
        char query[128];
        uint64_t n;
        int r;

        if (!all)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        r = kh_cli_number(cli, "lines", 1, AUDIT_PAGE_MAX, AUDIT_TAIL_DEFAULT, &n);
        if (r == 0)
                r = audit_scope(cli, &scope, &base);
        if (r != 0)
                return r;
        /* the last n of every replica's chain: the last n of them all are among those */
        for (size_t i = 0; i < n_chains; i++) {
                (void) snprintf(query, sizeof(query), "last=%" PRIu64 "%s%.32s", n,
                                chains[i].replica[0] ? "&replica=" : "", chains[i].replica);
                r = get_page(cli, scope, base, query, &p);
                if (r == 0 && i == 0)
                        r = export_replicas(cli, &p, chains, &n_chains);
                if (r == 0)
                        r = gather(cli, all, &p);
                if (r != 0)
                        return r;
                chains[i].since = p.next;
        }
        r = print_merged(cli, all, (size_t) n);
        if (r != 0 || !kh_cli_flag(cli, "follow"))
                return r;

        /* Following ends only by a signal: SIGINT and SIGTERM are the normal way out, so
         * they stop the wait or the request in progress and exit 0. */
        kh_cli_catch_signals();
        while (kh_cli_sleep_ms(AUDIT_POLL_MS)) {
                r = tail_poll(cli, scope, base, chains, &n_chains, &p);
                if (r != 0)
                        return kh_cli_interrupted() ? 0 : r;
        }
        return 0;
}

/* What an export has written so far. */
struct export_state {
        FILE *out;
        struct kh_audit_parsed *parsed; /* 8 KiB: not on the stack */
        struct kh_buf line;
        uint64_t records, first_seq, last_seq, expected_total;
        bool progress;
        bool warned_gap;
};

/* Writes rec as its canonical line (audit/json.h): parsed and formatted again, so the file
 * holds exactly what `audit verify` reads, whatever spelling of JSON the server used, and a
 * record that is not one is refused here rather than written. Returns 0 or the exit status. */
static int export_record(struct kh_cli *cli, struct export_state *s, const json_t *rec) {
        KH_CLEANUP(kh_freep) char *text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
        const char *reason = NULL;
        uint64_t seq;
        int r;

        if (!text)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        r = kh_audit_json_parse(text, strlen(text), s->parsed, &reason);
        if (r == -ENOMEM)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        seq = s->parsed->rec.seq;
        if (r < 0)
                return kh_cli_fail(cli, "bad_response",
                                   "the server sent an audit record (seq %" PRIu64 ") that is "
                                   "not one: %s",
                                   seq, reason ? reason : "malformed");
        /* A gap or a step back is what the chain holds, not a fault of the answer: the
         * file keeps it as it is, for `audit verify` to name the first bad record (the
         * export is a copy, not a judge) */
        if (s->records > 0 && seq != s->last_seq + 1 && !s->warned_gap) {
                fprintf(stderr, "keyhold: warning: the server's audit chain goes from seq %"
                        PRIu64 " to %" PRIu64 "; written as it is: `keyhold audit verify` "
                        "names the first bad record\n", s->last_seq, seq);
                s->warned_gap = true;
        }
        kh_buf_reset(&s->line);
        r = kh_audit_json_format(&s->parsed->rec, &s->line);
        if (r < 0)
                return kh_cli_fail(cli, "internal_error", "cannot write record seq %" PRIu64
                                   ": %s", seq, strerror(-r));
        if (fwrite(s->line.data, 1, s->line.len, s->out) != s->line.len)
                return kh_cli_fail(cli, "file_error", "cannot write: %s", strerror(errno));
        if (s->records++ == 0)
                s->first_seq = seq;
        s->last_seq = seq;
        return 0;
}

static void show_progress(const struct export_state *s, bool done) {
        if (!s->progress)
                return;
        if (s->expected_total > 0)
                fprintf(stderr, "\rexporting: %" PRIu64 " of %" PRIu64 " records (%u%%)",
                        s->records, s->expected_total,
                        (unsigned) (s->records >= s->expected_total
                                            ? 100
                                            : s->records * 100 / s->expected_total));
        else
                fprintf(stderr, "\rexporting: %" PRIu64 " records", s->records);
        if (done)
                fputc('\n', stderr);
}

/* Pages through replica's chain ("" the unnamed one) from since into s->out, and learns
 * the names of the other replicas into chains (when not NULL). Returns 0 or the exit
 * status. */
static int export_pages(struct kh_cli *cli, enum kh_client_scope scope, const char *base,
                        const char *replica, uint64_t since, struct export_state *s,
                        struct export_chain *chains, size_t *n_chains) {
        struct page p __attribute__((cleanup(page_clear))) = { 0 };
        char query[128];
        const json_t *rec;
        size_t i;
        int r;

        for (;;) {
                (void) snprintf(query, sizeof(query), "since=%" PRIu64 "&limit=%u%s%.32s", since,
                                AUDIT_PAGE_MAX, replica[0] ? "&replica=" : "", replica);
                r = get_page(cli, scope, base, query, &p);
                if (r != 0)
                        return r;
                if (chains) {
                        r = export_replicas(cli, &p, chains, n_chains);
                        if (r != 0)
                                return r;
                }
                if (s->expected_total == 0 && p.head >= since)
                        s->expected_total = p.head - since + 1;
                json_array_foreach(p.records, i, rec) {
                        r = export_record(cli, s, rec);
                        if (r != 0)
                                return r;
                }
                show_progress(s, false);
                /* The export ends at the head the last page names, so that the summary's
                 * last seq is the chain's head (the --through-seq of a later verify). */
                if (p.next > p.head) {
                        if (s->records == 0 && since <= p.head)
                                return kh_cli_fail(cli, "bad_response",
                                                   "the server's audit chain reaches seq %" PRIu64
                                                   " but it sent no record from seq %" PRIu64,
                                                   p.head, since);
                        if (s->records > 0 && s->last_seq < p.head)
                                return kh_cli_fail(cli, "bad_response",
                                                   "the server's audit chain reaches seq %" PRIu64
                                                   " but the records it sent end at seq %" PRIu64,
                                                   p.head, s->last_seq);
                        return 0;
                }
                if (json_array_size(p.records) == 0)
                        return kh_cli_fail(cli, "bad_response",
                                           "the server's audit chain reaches seq %" PRIu64
                                           " but its page from seq %" PRIu64 " is empty",
                                           p.head, since);
                if (p.next <= since)
                        return kh_cli_fail(cli, "bad_response",
                                           "the server's audit paging does not advance (next "
                                           "%" PRIu64 " after since %" PRIu64 ")",
                                           p.next, since);
                since = p.next;
        }
}

/* Whether name can stand in a shell command line as it is. */
static bool shell_plain(const char *name) {
        if (!*name)
                return false;
        for (const char *p = name; *p; p++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                            "._/+-=,:@%", *p))
                        return false;
        return true;
}

/* The command that checks the export just written, with where its chain must start and
 * end: a later verify then catches records removed from either end of the file, which the
 * file alone cannot show (docs/audit.md "Verifying"). The file name is quoted for a shell
 * when it needs to be, and made safe for a terminal (a name with control characters
 * then shows, but will not paste as it is). Returns 0. */
static int print_verify_hint(FILE *f, const char *file, const struct export_state *s) {
        KH_CLEANUP(kh_freep) char *shown = kh_out_printable(strcmp(file, "-") == 0 ? "FILE" : file);
        bool plain = shown && shell_plain(shown);

        fputs("Check it: keyhold audit verify ", f);
        if (!shown)
                fputs("FILE", f);
        else if (plain)
                fputs(shown, f);
        else {
                fputc('\'', f);
                for (const char *p = shown; *p; p++)
                        if (*p == '\'')
                                fputs("'\\''", f);
                        else
                                fputc(*p, f);
                fputc('\'', f);
        }
        fprintf(f, " --public-key PEM --first-seq %" PRIu64 " --through-seq %" PRIu64 "\n",
                s->first_seq, s->last_seq);
        return 0;
}

/* s: the unnamed replica's chain; chains[1..n): the named ones' (none on a single server). */
static int print_export_summary(struct kh_cli *cli, const char *file,
                                const struct export_state *s, const struct export_chain *chains,
                                size_t n) {
        json_auto_t *out = NULL, *list = NULL;

        if (!kh_cli_json(cli)) {
                FILE *f = strcmp(file, "-") == 0 ? stderr : stdout; /* stdout holds records */

                for (size_t i = 1; i < n; i++)
                        fprintf(f, "Exported %" PRIu64 " records of replica %s's chain (seq %"
                                   PRIu64 " to %" PRIu64 ").\n",
                                chains[i].records, chains[i].replica, chains[i].first_seq,
                                chains[i].last_seq);
                if (s->records == 0) {
                        if (n <= 1)
                                fprintf(f, "Exported no records: the chain holds none from "
                                           "there.\n");
                        return 0;
                }
                fprintf(f, "Exported %" PRIu64 " records (seq %" PRIu64 " to %" PRIu64
                           ", the chain's head).\n",
                        s->records, s->first_seq, s->last_seq);
                return print_verify_hint(f, file, s);
        }
        out = json_pack("{s:s, s:I, s:o, s:o}", "file", file, "records", (json_int_t) s->records,
                        "first_seq", s->records ? json_integer((json_int_t) s->first_seq)
                                                : json_null(),
                        "last_seq", s->records ? json_integer((json_int_t) s->last_seq)
                                               : json_null());
        if (!out)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        if (n > 1) {
                /* records, first_seq and last_seq above stay the unnamed replica's chain's
                 * (what --first-seq and --through-seq of verify check); each chain here */
                list = json_array();
                for (size_t i = 0; list && i < n; i++) {
                        const struct export_chain *c = &chains[i];
                        json_t *o = json_pack("{s:s, s:I, s:o, s:o}", "replica", c->replica,
                                              "records", (json_int_t) c->records, "first_seq",
                                              c->records ? json_integer((json_int_t) c->first_seq)
                                                         : json_null(),
                                              "last_seq",
                                              c->records ? json_integer((json_int_t) c->last_seq)
                                                         : json_null());
                        if (!o || json_array_append_new(list, o) < 0)
                                return kh_cli_fail(cli, "internal_error", "out of memory");
                }
                if (!list || json_object_set(out, "chains", list) < 0)
                        return kh_cli_fail(cli, "internal_error", "out of memory");
        }
        return kh_cli_print_json(cli, out);
}

int kh_cmd_audit_export(struct kh_cli *cli) {
        const char *file = kh_cli_operand(cli, 0);
        bool to_stdout = strcmp(file, "-") == 0, force = kh_cli_flag(cli, "force");
        KH_CLEANUP(kh_outfile_freep) struct kh_outfile *o = NULL;
        KH_CLEANUP(kh_freep) struct kh_audit_parsed *parsed = NULL;
        struct export_state s = { 0 };
        struct export_chain chains[EXPORT_CHAINS_MAX] = { 0 };
        size_t n_chains = 1; /* [0]: the unnamed replica's */
        enum kh_client_scope scope;
        const char *base;
        struct stat st;
        uint64_t since;
        int r;

        r = kh_cli_number(cli, "since", 1, INT64_MAX, 1, &since);
        if (r != 0)
                return r;
        if (to_stdout && kh_cli_json(cli))
                return kh_cli_usage_error(cli, "--json would mix its summary into the records "
                                               "written to stdout ('-'); name a FILE");
        /* Checked now to fail before the download; kh_outfile_commit() checks again. */
        if (!to_stdout && !force && lstat(file, &st) == 0)
                return kh_cli_fail(cli, "file_exists", "%s exists; --force replaces it", file);
        r = audit_scope(cli, &scope, &base);
        if (r != 0)
                return r;
        parsed = malloc(sizeof(*parsed));
        if (!parsed)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        if (!to_stdout) {
                r = kh_outfile_open(file, &o);
                if (r < 0)
                        return kh_cli_fail(cli, "file_error", "cannot create a file beside %s: %s",
                                           file, strerror(-r));
        }

        /* An interrupted export must leave no partial file: the signal stops the transfer,
         * and the temporary file is removed on the way out. */
        kh_cli_catch_signals();
        s = (struct export_state) { .out = o ? kh_outfile_stream(o) : stdout, .parsed = parsed,
                                    .progress = !to_stdout && isatty(STDERR_FILENO) };
        kh_buf_init(&s.line, KH_AUDIT_LINE_MAX + 1, false);
        r = export_pages(cli, scope, base, "", since, &s, chains, &n_chains);
        /* then every named replica's chain, whole: --since is a seq of the first one */
        for (size_t i = 1; r == 0 && i < n_chains; i++) {
                struct export_state c = { .out = s.out, .parsed = s.parsed, .line = s.line,
                                          .progress = s.progress };

                r = export_pages(cli, scope, base, chains[i].replica, 1, &c, NULL, NULL);
                s.line = c.line; /* the buffer it may have grown */
                chains[i].records = c.records;
                chains[i].first_seq = c.first_seq;
                chains[i].last_seq = c.last_seq;
        }
        kh_buf_free(&s.line);
        if (kh_cli_interrupted()) /* between pages, or a request stopped unreported */
                r = kh_cli_fail(cli, "interrupted", "interrupted; nothing written");
        show_progress(&s, true);
        if (r != 0)
                return r;

        if (o) {
                r = kh_outfile_commit(o, force);
                if (r == -EEXIST)
                        return kh_cli_fail(cli, "file_exists",
                                           "%s appeared meanwhile; --force replaces it", file);
                if (r < 0)
                        return kh_cli_fail(cli, "file_error", "cannot write %s: %s", file,
                                           strerror(-r));
        } else if (fflush(stdout) != 0) {
                return kh_cli_fail(cli, "file_error", "cannot write to stdout: %s",
                                   strerror(errno));
        }
        return print_export_summary(cli, file, &s, chains, n_chains);
}

int kh_cmd_audit_public_key(struct kh_cli *cli) {
        json_auto_t *body = NULL;
        enum kh_client_scope scope;
        const char *base, *pem;
        char path[64];
        size_t len;
        int r;

        r = audit_scope(cli, &scope, &base);
        if (r != 0)
                return r;
        (void) snprintf(path, sizeof(path), "%s/public-key", base);
        r = kh_cli_get(cli, scope, path, &body);
        if (r != 0)
                return r;
        pem = json_string_value(json_object_get(body, "pem"));
        if (!pem || strncmp(pem, "-----BEGIN PUBLIC KEY-----", 26) != 0)
                return kh_cli_fail(cli, "bad_response", "the server's answer holds no PEM public "
                                                        "key");
        if (kh_cli_json(cli))
                return kh_cli_print_json(cli, body);
        len = strlen(pem);
        /* The PEM is printed as it came (a file to save), but only if it is plain text. */
        for (size_t i = 0; i < len; i++)
                if ((pem[i] < 0x20 && pem[i] != '\n') || pem[i] >= 0x7f)
                        return kh_cli_fail(cli, "bad_response",
                                           "the server's PEM holds characters no PEM has");
        fputs(pem, stdout);
        if (len > 0 && pem[len - 1] != '\n')
                putchar('\n');
        return 0;
}

int kh_cli_audit_verify_expect(struct kh_cli *cli, struct kh_audit_verify_expect *ret) {
        uint64_t first, through;
        int r;

        r = kh_cli_number(cli, "first-seq", 1, KH_AUDIT_SEQ_MAX, 0, &first);
        if (r == 0)
                r = kh_cli_number(cli, "through-seq", 1, KH_AUDIT_SEQ_MAX, 0, &through);
        if (r != 0)
                return r;
        if (first > 0 && through > 0 && through < first)
                return kh_cli_usage_error(cli, "--through-seq %" PRIu64 " is below --first-seq "
                                               "%" PRIu64 ": a chain cannot end before it "
                                               "starts",
                                          through, first);
        *ret = (struct kh_audit_verify_expect) { .first_seq = first, .through_seq = through };
        return 0;
}

/* What failed, in words: "FILE: record seq 7 (line 7) fails: hash mismatch; ...", or for a
 * file that does not start or end where the options say, which of them it contradicts. */
static void verify_message(char *buf, size_t len, const char *file,
                           const struct kh_audit_verify_result *v,
                           const struct kh_audit_verify_expect *e) {
        if (v->step == 0)
                (void) snprintf(buf, len, "%s: %s", file, v->reason);
        else if (strcmp(v->reason, "truncated") == 0)
                /* only an expected through_seq makes a chain "truncated" */
                (void) snprintf(buf, len,
                                "%s: record seq %" PRIu64 " is missing (truncated): the file "
                                "ends at seq %" PRIu64 " (line %" PRIu64 "), --through-seq says "
                                "the chain reaches seq %" PRIu64 "; the %" PRIu64 " records in "
                                "it are intact",
                                file, v->first_bad_seq, v->first_bad_seq - 1, v->line - 1,
                                e->through_seq, v->records);
        else if (v->step == 3 && v->line == 1)
                /* the first line may carry any seq unless --first-seq says which */
                (void) snprintf(buf, len,
                                "%s: record seq %" PRIu64 " (line 1) fails: %s: --first-seq "
                                "says the chain starts at seq %" PRIu64 ", the file starts %s",
                                file, v->first_bad_seq, v->reason, e->first_seq,
                                strcmp(v->reason, "seq gap") == 0
                                        ? "later (the records before it are missing)"
                                        : "earlier");
        else
                (void) snprintf(buf, len,
                                "%s: record seq %" PRIu64 " (line %" PRIu64 ") fails: %s; "
                                "the %" PRIu64 " records before it are intact",
                                file, v->first_bad_seq, v->line, v->reason, v->records);
}

/* Each chain's verdict, for --json of a file with several replicas' chains. */
static json_t *verify_chains_json(const struct kh_audit_verify_chain *chains, size_t n) {
        json_t *list = json_array();

        for (size_t i = 0; list && i < n; i++) {
                const struct kh_audit_verify_result *r = &chains[i].res;
                json_t *o = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I}", "replica",
                                      chains[i].replica, "ok", r->ok, "records",
                                      (json_int_t) r->records, "checkpoints",
                                      (json_int_t) r->checkpoints, "first_seq",
                                      (json_int_t) r->first_seq, "signed_through",
                                      (json_int_t) r->signed_through, "unsigned",
                                      (json_int_t) r->unsigned_records);

                if (o && !r->ok)
                        (void) json_object_set_new(
                                o, "failure",
                                json_pack("{s:I, s:s, s:I, s:I}", "first_bad_seq",
                                          (json_int_t) r->first_bad_seq, "reason",
                                          r->reason ? r->reason : "", "line",
                                          (json_int_t) r->line, "step", (json_int_t) r->step));
                if (!o || json_array_append_new(list, o) < 0) {
                        json_decref(list);
                        return NULL;
                }
        }
        return list;
}

/* The failure as verify_message() says it, and its JSON; exit 1. With several chains in
 * the file (chains[0..n), n > 1), the one that failed first is named, and its counts are
 * those said. */
static int verify_failed(struct kh_cli *cli, const char *file,
                         const struct kh_audit_verify_result *v,
                         const struct kh_audit_verify_expect *e,
                         const struct kh_audit_verify_chain *chains, size_t n) {
        const struct kh_audit_verify_chain *bad = NULL;
        json_auto_t *out = NULL;
        KH_CLEANUP(kh_freep) char *name = NULL;
        char message[600];

        for (size_t i = 0; n > 1 && i < n && !bad; i++)
                if (!chains[i].res.ok && chains[i].res.line == v->line)
                        bad = &chains[i];
        if (bad) {
                struct kh_audit_verify_result r = bad->res;

                if (asprintf(&name, "%s (chain of replica %s%s%s)", file,
                             bad->replica[0] ? "\"" : "",
                             bad->replica[0] ? bad->replica : "unnamed",
                             bad->replica[0] ? "\"" : "") < 0)
                        return kh_cli_fail(cli, "internal_error", "out of memory");
                verify_message(message, sizeof(message), name, &r, e);
        } else {
                verify_message(message, sizeof(message), file, v, e);
        }
        if (!kh_cli_json(cli))
                return kh_cli_fail(cli, "chain_broken", "%s", message);
        out = json_pack("{s:b, s:I, s:s, s:I, s:I, s:I, s:s, s:s}", "ok", 0, "first_bad_seq",
                        (json_int_t) v->first_bad_seq, "reason", v->reason, "line",
                        (json_int_t) v->line, "step", (json_int_t) v->step, "records",
                        (json_int_t) v->records, "code", "chain_broken", "message", message);
        if (!out)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        if (bad && (json_object_set_new(out, "replica", json_string(bad->replica)) < 0 ||
                    json_object_set_new(out, "chains", verify_chains_json(chains, n)) < 0))
                return kh_cli_fail(cli, "internal_error", "out of memory");
        (void) kh_cli_print_json(cli, out);
        return 1;
}

static int verify_passed(struct kh_cli *cli, const char *file,
                         const struct kh_audit_verify_result *v,
                         const struct kh_audit_verify_expect *e,
                         const struct kh_audit_verify_chain *chains, size_t n) {
        json_auto_t *out = NULL;
        uint64_t last = v->first_seq + v->records - 1;

        if (kh_cli_json(cli)) {
                out = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I}", "ok", 1, "records",
                                (json_int_t) v->records, "checkpoints",
                                (json_int_t) v->checkpoints, "first_seq",
                                (json_int_t) v->first_seq, "signed_through",
                                (json_int_t) v->signed_through, "unsigned",
                                (json_int_t) v->unsigned_records);
                if (!out || (n > 1 && json_object_set_new(out, "chains",
                                                          verify_chains_json(chains, n)) < 0))
                        return kh_cli_fail(cli, "internal_error", "out of memory");
                return kh_cli_print_json(cli, out);
        }
        if (n > 1) {
                /* several replicas' chains: each its own line, then the totals */
                KH_CLEANUP(kh_freep) char *shown = kh_out_printable(file);

                for (size_t i = 0; i < n; i++) {
                        const struct kh_audit_verify_result *r = &chains[i].res;

                        printf("%s: chain of replica %s%s%s: intact: %" PRIu64 " records (seq %"
                               PRIu64 " to %" PRIu64 "), %" PRIu64 " checkpoints, %" PRIu64
                               " not yet signed\n",
                               shown ? shown : "-", chains[i].replica[0] ? "\"" : "",
                               chains[i].replica[0] ? chains[i].replica : "unnamed",
                               chains[i].replica[0] ? "\"" : "", r->records, r->first_seq,
                               r->first_seq + r->records - 1, r->checkpoints,
                               r->unsigned_records);
                }
                printf("%s: intact: %zu chains, %" PRIu64 " records, %" PRIu64 " checkpoints\n",
                       shown ? shown : "-", n, v->records, v->checkpoints);
                return 0;
        }
        {
                KH_CLEANUP(kh_freep) char *shown = kh_out_printable(file);
                printf("%s: intact: %" PRIu64 " records (seq %" PRIu64 " to %" PRIu64 "), %" PRIu64
                       " checkpoints\n",
                       shown ? shown : "-", v->records, v->first_seq, last, v->checkpoints);
        }
        if (v->signed_through > 0)
                printf("%" PRIu64 " records verified through the checkpoint at seq %" PRIu64 "\n",
                       v->records - v->unsigned_records, v->signed_through);
        if (v->unsigned_records > 0)
                printf("%" PRIu64 " records after the last checkpoint are not yet signed (intact "
                       "as far as the chain shows, but no signature vouches for them yet)\n",
                       v->unsigned_records);
        /* What the file alone cannot show (audit/verify.h): said, so that "intact" is not
         * read as more than it is. A first record of seq 1 is the chain's start (its
         * prev_hash is zero), --first-seq or not. */
        if (e->first_seq == 0 && v->first_seq > 1)
                printf("Not checked: whether records before seq %" PRIu64 " were removed "
                       "(--first-seq states where the chain starts)\n",
                       v->first_seq);
        if (e->through_seq == 0)
                printf("Not checked: whether records after seq %" PRIu64 " were removed "
                       "(--through-seq states the seq it must reach: the head the export "
                       "printed)\n",
                       last);
        return 0;
}

int kh_cmd_audit_verify(struct kh_cli *cli) {
        const char *file = kh_cli_operand(cli, 0), *pem = kh_cli_value(cli, "public-key");
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        KH_CLEANUP(fclosep) FILE *f = NULL;
        KH_CLEANUP(kh_freep) struct kh_audit_verify_chain *chains = NULL;
        struct kh_audit_verify_expect e;
        struct kh_audit_verify_result v;
        size_t n = 0;
        int r;

        if (!pem)
                return kh_cli_usage_error(cli, "--public-key PEM is required (the key that "
                                               "`keyhold audit public-key` prints)");
        r = kh_cli_audit_verify_expect(cli, &e);
        if (r != 0)
                return r;
        /* Key and file are opened here, not by kh_audit_verify_file(), to say which failed. */
        r = kh_audit_public_key_load(pem, &pub);
        if (r == -EINVAL)
                return kh_cli_fail(cli, "invalid_public_key",
                                   "%s is not an audit public key in PEM (\"PUBLIC KEY\", as "
                                   "`keyhold audit public-key` prints it)",
                                   pem);
        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot read the public key %s: %s", pem,
                                   r == -EFBIG ? "too large for a public key" : strerror(-r));
        if (strcmp(file, "-") != 0) {
                f = fopen(file, "re");
                if (!f)
                        return kh_cli_fail(cli, "file_error", "cannot read %s: %s", file,
                                           strerror(errno));
        }
        chains = calloc(KH_AUDIT_VERIFY_CHAINS_MAX, sizeof(*chains));
        if (!chains)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        r = kh_audit_verify_stream_chains(f ? f : stdin, pub, &e, &v, chains, &n);
        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot verify %s: %s", file, strerror(-r));
        return v.ok ? verify_passed(cli, file, &v, &e, chains, n)
                    : verify_failed(cli, file, &v, &e, chains, n);
}
