/* kh-seed-records: fills a stopped keyholdd's database with N member records sealed under the
 * tenant's active version, as PUT /user-keys would have stored them (same sealing code, same
 * binding), so that the lifecycle benchmark can re-encrypt a million records without minting a
 * million tokens. Benchmarks only: it writes the database behind the server's back, which is
 * safe only while no keyholdd has it open (SQLite's lock refuses otherwise).
 *
 *   kh-seed-records CONFIG N [GUIDS_FILE]
 *
 * The first records belong to the GUIDs of GUIDS_FILE (the first tab-separated field of each
 * line: bench.py's tokens file), the rest to random GUIDs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/errors.h"
#include "config/config.h"
#include "crypto/random.h"
#include "keystore/keystore.h"
#include "service/keyring.h"
#include "service/record.h"
#include "store/store.h"

#define TX_RECORDS 20000

static void random_guid(char out[37]) {
        uint8_t b[16];

        if (kh_random_bytes(b, sizeof(b)) < 0)
                abort();
        b[6] = (uint8_t) ((b[6] & 0x0f) | 0x40);
        b[8] = (uint8_t) ((b[8] & 0x3f) | 0x80);
        (void) snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                        b[12], b[13], b[14], b[15]);
}

int main(int argc, char **argv) {
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = NULL;
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *ks = NULL;
        KH_CLEANUP(kh_store_closep) struct kh_store *store = NULL;
        KH_CLEANUP(kh_keys_unrefp) struct kh_keys *keys = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf blob = { 0 };
        struct kh_config_error err;
        struct kh_keys_failure failed;
        const struct kh_key_version *v;
        const char *tenant;
        FILE *guids = NULL;
        char line[8192];
        unsigned long n;
        int r;

        if (argc < 3 || argc > 4) {
                fprintf(stderr, "usage: %s CONFIG N [GUIDS_FILE]\n", argv[0]);
                return 2;
        }
        n = strtoul(argv[2], NULL, 10);
        r = kh_config_load(argv[1], NULL, &cfg, &err);
        if (r < 0) {
                fprintf(stderr, "config: %s: %s\n", err.key, err.reason);
                return 1;
        }
        tenant = cfg->tenants[0].id;
        r = kh_keystore_open(&cfg->keystore, &ks);
        if (r >= 0)
                r = kh_store_open(&cfg->storage, &store);
        if (r >= 0)
                r = kh_keys_load(store, ks, &tenant, 1, 0, &keys, &failed);
        if (r < 0) {
                fprintf(stderr, "cannot open the key store, database or keys: %s\n", kh_strerror(r));
                return 1;
        }
        v = keys->tenants[0].active;
        if (!v || !v->dek) {
                fprintf(stderr, "the tenant has no active version\n");
                return 1;
        }
        if (argc == 4 && !(guids = fopen(argv[3], "r"))) {
                perror(argv[3]);
                return 1;
        }
        kh_buf_init(&blob, KH_SEALED_MAX, false);
        for (unsigned long i = 0; i < n; i++) {
                KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
                char owner[37];

                if (i % TX_RECORDS == 0 && (r = kh_store_tx_begin(store)) < 0)
                        break;
                if (guids && fgets(line, sizeof(line), guids) && strlen(line) >= 36 &&
                    line[36] == '\t') {
                        memcpy(owner, line, 36);
                        owner[36] = 0;
                } else {
                        random_guid(owner);
                }
                kh_buf_reset(&blob);
                r = kh_random_secret(KH_USER_KEY_LEN, &key);
                if (r >= 0)
                        r = kh_record_seal(v->dek, tenant, KH_RECORD_USER_KEY, owner, v->version, key,
                                           &blob);
                if (r >= 0)
                        r = kh_store_record_put(store, tenant, KH_RECORD_USER_KEY, owner, v->version,
                                                blob.data, blob.len);
                if (r < 0)
                        break;
                if ((i + 1) % TX_RECORDS == 0 || i + 1 == n)
                        if ((r = kh_store_tx_commit(store)) < 0)
                                break;
        }
        if (guids)
                fclose(guids);
        if (r < 0) {
                fprintf(stderr, "seeding failed: %s\n", kh_strerror(r));
                return 1;
        }
        printf("%lu records under version %u of tenant %s\n", n, v->version, tenant);
        return 0;
}
