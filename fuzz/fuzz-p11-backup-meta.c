/* The pkcs11 key store's backup header meta (keystore/pkcs11/backup.h,
 * kh_p11_backup_meta_parse) on arbitrary bytes: a backup file's clear header carries it, so
 * anyone can hand one to `keyhold backup verify`. Invariants: -EBADMSG or -ENOMEM on
 * refusal with nothing handed out; on success 1..KH_P11_BACKUP_KEYS_MAX labels, each
 * starting with the prefix, the backup key "<prefix>_server-backup-v1" among them. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "keystore/pkcs11/backup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct kh_p11_backup_meta *m = NULL;
        char want[160];
        bool has = false;
        int r;

        r = kh_p11_backup_meta_parse(data, size, &m);
        if (r < 0) {
                CHECK(r == -EBADMSG || r == -ENOMEM);
                CHECK(m == NULL);
                return 0;
        }
        CHECK(m && m->n_keys >= 1 && m->n_keys <= KH_P11_BACKUP_KEYS_MAX);
        (void) snprintf(want, sizeof(want), "%s_server-backup-v1", m->prefix);
        CHECK(strcmp(want, m->backup_key) == 0);
        for (size_t i = 0; i < m->n_keys; i++) {
                CHECK(strncmp(m->keys[i], m->prefix, strlen(m->prefix)) == 0);
                has |= strcmp(m->keys[i], m->backup_key) == 0;
        }
        CHECK(has);
        (void) kh_p11_backup_meta_free(m);
        return 0;
}
