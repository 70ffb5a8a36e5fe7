/* The re-encryption job: after a rekey, every record sealed under an archived version of a
 * tenant key is opened with that version's DEK and sealed again under the active version,
 * in batches, on a thread of its own at a low priority, while serving goes on.
 *
 * What is left to do is exactly the records still under an archived version, so a job killed
 * at any point (kill -9) is resumed by the next start from the database alone. Of several
 * replicas on one database, the one holding the tenant's job lease (a row with its progress,
 * renewed while it runs) runs the job; another takes it over once the lease expired. Each record moves in one compare-and-set
 * (kh_store_record_move(): only if the row still holds the bytes that were read), in
 * batches committed as one transaction each, so no record is lost, skipped, half-written or
 * sealed twice, and a member who writes meanwhile keeps their write. Records under a revoked
 * version are not touched (they cannot be opened) and are counted as skipped. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"

struct kh_app;
struct kh_reencrypt;

enum kh_job_state {
        KH_JOB_NONE,     /* no job ran since the start */
        KH_JOB_RUNNING,
        KH_JOB_DONE,     /* nothing is left under an archived version (revoked: skipped) */
        KH_JOB_FAILED,   /* stopped on an error; tried again at the next wake-up */
};

/* A tenant's job, as key status shows it. */
struct kh_job_progress {
        enum kh_job_state state;
        uint32_t target;         /* the version records are moved to */
        uint64_t moved;          /* records moved since the job (re)started */
        uint64_t skipped;        /* records under revoked versions, left where they are */
        uint64_t failed;         /* records that did not open under their version (damaged) */
        uint64_t total;          /* records under older versions when the job (re)started */
        double rate;             /* records per second so far */
        int64_t eta_s;           /* seconds left at that rate; -1: not known */
};

/* Starts the job's thread, which looks for work at once (a job a crash interrupted) and then
 * whenever woken. Returns 0, -ENOMEM or an error of pthread_create. */
KH_MUST_CHECK int kh_reencrypt_start(struct kh_app *app, struct kh_reencrypt **ret);

/* Stops the thread between two batches (the work left stays for the next start). NULL-safe. */
void kh_reencrypt_stop(struct kh_reencrypt *job);

/* There may be work: a rekey, a reinstate, an unseal. Any thread. */
void kh_reencrypt_wake(struct kh_reencrypt *job);

/* A rekey of tenant index @tenant made @version active: its job is running from now on (so
 * that key status and a second rekey see it before the thread has looked), and wakes the
 * thread. Any thread. */
void kh_reencrypt_begin(struct kh_reencrypt *job, size_t tenant, uint32_t version);

/* The progress of tenant index @tenant's job. Any thread. */
void kh_reencrypt_progress(struct kh_reencrypt *job, size_t tenant, struct kh_job_progress *ret);

/* The state name: "none", "running", "done" or "failed". */
const char *kh_job_state_name(enum kh_job_state s);
