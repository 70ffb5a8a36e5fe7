/* What the two halves of `keyhold incident` share: cmd-incident.c (the playbooks that change
 * keys, options, the handler) and cmd-incident-report.c (unauthorized-use, which only reads
 * the audit chain). Internal to them; the handler itself is declared in commands.h. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "common/cleanup.h"

/* The records' time, YYYY-MM-DDTHH:MM:SS.mmmZ: fixed width, so that strcmp orders times and
 * --since/--until compare with the records' own text, without parsing each record. */
#define TIME_LEN 24

enum playbook { PB_LEAKED, PB_UNAUTHORIZED_USE, PB_HSM, PB_ALGORITHM, PB_N_ };

/* The playbooks' names as typed on the command line, which the JSON output repeats. */
extern const char *const kh_incident_playbook_names[PB_N_];

/* One run of the command, from its options (checked once, before any request). */
struct incident {
        struct kh_cli *cli;
        enum playbook pb;
        uint32_t version;
        const char *algorithm; /* the rekey's "algorithm", or NULL: the server's default */
        unsigned want_bits;    /* algorithm-weakness: the size the active version must have */
        bool execute, yes, refuse_writes;
        char since[TIME_LEN + 1], until[TIME_LEN + 1]; /* unauthorized-use; "" unbounded */
};

/* Inline so that each half reads the server's JSON the same way without a shared symbol. */

/* The tenant the requests go to: without --tenant, the bare routes reach the one called
 * "default", and the output names it so. */
static inline const char *tenant_of(struct kh_cli *cli) {
        const char *t = kh_cli_global(cli, KH_CLI_G_TENANT);
        return t ? t : "default";
}

/* NULL-safe, because the server's fields are read with json_string_value(), which gives NULL
 * for a missing or mistyped one: such a field equals nothing. */
static inline bool is(const char *s, const char *want) {
        return s && strcmp(s, want) == 0;
}

/* A count or number from the server; missing, mistyped or negative read as 0, which every
 * caller treats as "none". */
static inline uint64_t uint_of(const json_t *obj, const char *name) {
        json_int_t v = json_integer_value(json_object_get(obj, name));
        return v > 0 ? (uint64_t) v : 0;
}

/**
 * kh_incident_version_check() - refuses a version V the tenant never had, as every playbook
 * does before its first step (GET /admin/keys), so that unauthorized-use does not report "no
 * use" of a version that does not exist.
 *
 * Returns 0, or the exit status after reporting why not (1: also version_not_found).
 */
int kh_incident_version_check(struct incident *inc);

/**
 * kh_incident_time_parse() - an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SS[.f{1,3}]Z) or a date
 * (YYYY-MM-DD) as the records' time (TIME_LEN).
 * @end: false for the first millisecond it names (--since), true for the last (--until: a
 *       whole second, a whole day), so that both bounds include what the user typed.
 * @ret: written only on success.
 *
 * Returns 0 or -EINVAL.
 */
KH_MUST_CHECK int kh_incident_time_parse(const char *s, bool end, char ret[static TIME_LEN + 1]);

/**
 * kh_incident_unauthorized_use() - the unauthorized-use playbook: every use of inc->version
 * in the audit chain (within inc->since and inc->until), by actor, printed as text or JSON.
 * Reads only: it changes no key, whatever --execute says.
 *
 * Returns the exit status: 0, or 1 after reporting why not (too_many_actors, bad_response, a
 * failed request).
 */
int kh_incident_unauthorized_use(struct incident *inc);
