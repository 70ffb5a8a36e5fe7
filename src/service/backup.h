/* Backups while serving (POST /server/backup): a job on the app's pool builds the encrypted
 * backup file (backup/format.h) into an unlinked temporary file beside the database, and the
 * loop that asked sends it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/jobs.h"
#include "service/service.h"

struct kh_backup_job {
        struct kh_job job;               /* the service's */
        struct kh_app *app;              /* the service's */
        /* Runs on the loop that started the job. result 0: fd is the whole backup (open for
         * reading at offset 0, already unlinked: closing it frees its space), and done owns
         * it; otherwise fd is -1 and result one of kh_service_backup_start()'s errors. */
        void (*done)(struct kh_backup_job *b, int result);
        int fd;
        uint64_t size;                   /* bytes of the file */
        size_t tenants;
        uint64_t records;
        char error[256];                 /* why it failed, for the operator's log (no secret) */
};

/**
 * kh_service_backup_start() - starts building a backup of the whole server on the app's job
 * pool; b->done runs on svc's loop once it is built or failed. b lives until then. Loop
 * thread only.
 * Returns 0, or -KH_E_BUSY (the pool's queue is full) or -ESHUTDOWN, and then done never
 * runs. done's result is 0, -KH_E_INSUFFICIENT_STORAGE (no space for the temporary files),
 * -KH_E_BACKUP_UNSUPPORTED (a key store that makes no backup key) or -KH_E_BACKUP_FAILED (anything else; the daemon's log says what). A failed backup
 * leaves no file behind.
 */
KH_MUST_CHECK int kh_service_backup_start(struct kh_service *svc, struct kh_backup_job *b);

/* Removes what a backup killed while building (kill -9, a power cut) left beside the SQLite
 * database cfg names, or for PostgreSQL in $TMPDIR (those of processes that are gone): its
 * database snapshot (.keyhold-backup-*; the backup file itself is unlinked as soon as it is
 * created, so it never outlives the process). Called at start-up,
 * before anything could be building a backup. Returns how many it removed, or -errno of
 * reading the folder. */
int kh_service_backup_leftovers_remove(const struct kh_config_storage *cfg);
