/* Wrapped DEKs are authenticated (keyring.h): each carries a signature by the tenant key
 * version that wraps it, checked by kh_keys_load() before it is unwrapped. On a real
 * app (SQLite file, file key store, two tenants whose issuer keys come from a local JWKS
 * file), the database is tampered with the way an attacker who can write it and holds the
 * tenants' public keys would: a DEK of the test's choosing wrapped under the public key
 * alone, with the old signature, none, one of another version or by another version's
 * key. Signatures are checked here with OpenSSL directly, over a message this file frames
 * itself, so that the format is pinned independently of the code that makes it. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <sqlite3.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/limits.h"
#include "common/secret.h"
#include "config/config.h"
#include "crypto/random.h"
#include "crypto/rsa.h"
#include "keystore/keystore.h"
#include "service/app.h"
#include "service/keyring.h"
#include "store/store.h"

#include "app-test.h"

/* Tenant 1 ("acme") is the one tampered with, so that a report naming index 0 or the
 * first tenant by default would be caught. */
static const char *const tenants[] = { "default", "acme" };
#define N_TENANTS 2
#define ACME 1

struct fixture {
        char dir[64];
        struct kh_config *cfg;
        struct kh_keystore *ks;
        struct kh_store *store;
        sqlite3 *raw; /* our own connection, to tamper with rows as an attacker would */
};

/* One tenant_keys row as the database holds it. */
struct row {
        uint8_t wrapped[KH_WRAPPED_DEK_MAX];
        size_t wrapped_len;
        uint8_t sig[KH_STORE_SIGNATURE_MAX];
        size_t sig_len; /* 0: NULL */
};

static void open_store(struct fixture *f) {
        assert_int_equal(kh_store_open(&f->cfg->storage, &f->store), 0);
}

/* The app creates version 1 of both tenant keys, with signed DEKs, and is closed again; the
 * tests then work on the store and key store directly. */
static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        struct kh_app *app = NULL;
        char db[96];

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/kh-test-dek-XXXXXX");
        f->cfg = app_test_config(f->dir, tenants, N_TENANTS);
        assert_int_equal(kh_app_open(f->cfg, NULL, NULL, &app), 0);
        app = kh_app_close(app);

        assert_int_equal(kh_keystore_open(&f->cfg->keystore, &f->ks), 0);
        open_store(f);
        snprintf(db, sizeof(db), "%s/keyhold.db", f->dir);
        assert_int_equal(sqlite3_open_v2(db, &f->raw, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_busy_timeout(f->raw, 10000), SQLITE_OK);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        char cmd[128];

        f->store = kh_store_close(f->store);
        (void) sqlite3_close(f->raw);
        f->ks = kh_keystore_close(f->ks);
        kh_config_free(f->cfg);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static void raw_exec(struct fixture *f, const char *sql) {
        assert_int_equal(sqlite3_exec(f->raw, sql, NULL, NULL, NULL), SQLITE_OK);
}

/* sql on the fixture's own connection, ?1 and ?2 bound to tenant and version. */
static sqlite3_stmt *row_statement(struct fixture *f, const char *sql, const char *tenant,
                                   uint32_t version) {
        sqlite3_stmt *st = NULL;

        assert_int_equal(sqlite3_prepare_v2(f->raw, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC), SQLITE_OK);
        assert_int_equal(sqlite3_bind_int64(st, 2, version), SQLITE_OK);
        return st;
}

static void row_get(struct fixture *f, const char *tenant, uint32_t version, struct row *r) {
        sqlite3_stmt *st = row_statement(f,
                                         "SELECT wrapped_dek, signature FROM tenant_keys "
                                         "WHERE tenant = ?1 AND version = ?2",
                                         tenant, version);

        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        *r = (struct row) { .wrapped_len = (size_t) sqlite3_column_bytes(st, 0),
                            .sig_len = (size_t) sqlite3_column_bytes(st, 1) };
        assert_in_range(r->wrapped_len, 1, sizeof(r->wrapped));
        assert_in_range(r->sig_len, 0, sizeof(r->sig));
        memcpy(r->wrapped, sqlite3_column_blob(st, 0), r->wrapped_len);
        if (r->sig_len)
                memcpy(r->sig, sqlite3_column_blob(st, 1), r->sig_len);
        else
                assert_int_equal(sqlite3_column_type(st, 1), SQLITE_NULL);
        (void) sqlite3_finalize(st);
}

static void row_put(struct fixture *f, const char *tenant, uint32_t version, const struct row *r) {
        sqlite3_stmt *st = row_statement(f,
                                         "UPDATE tenant_keys SET wrapped_dek = ?3, signature = ?4 "
                                         "WHERE tenant = ?1 AND version = ?2",
                                         tenant, version);

        assert_int_equal(sqlite3_bind_blob(st, 3, r->wrapped, (int) r->wrapped_len,
                                           SQLITE_STATIC),
                         SQLITE_OK);
        if (r->sig_len)
                assert_int_equal(sqlite3_bind_blob(st, 4, r->sig, (int) r->sig_len,
                                                   SQLITE_STATIC),
                                 SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        assert_int_equal(sqlite3_changes(f->raw), 1);
        (void) sqlite3_finalize(st);
}

/* SHA-256 of the message a DEK signature covers, framed here independently of keyring.c:
 * "keyhold-dek:1" NUL | u8 tenant length | tenant | u32 version | u16 length | wrapped,
 * integers big-endian. */
static void dek_digest(const char *tenant, uint32_t version, const uint8_t *wrapped, size_t len,
                       uint8_t digest[32]) {
        const uint8_t tenant_len = (uint8_t) strlen(tenant);
        const uint8_t be_version[4] = { version >> 24, (version >> 16) & 0xff,
                                        (version >> 8) & 0xff, version & 0xff };
        const uint8_t be_len[2] = { (len >> 8) & 0xff, len & 0xff };
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned digest_len = 0;

        assert_non_null(md);
        assert_int_equal(EVP_DigestInit_ex(md, EVP_sha256(), NULL), 1);
        assert_int_equal(EVP_DigestUpdate(md, "keyhold-dek:1", 14), 1); /* with the NUL */
        assert_int_equal(EVP_DigestUpdate(md, &tenant_len, 1), 1);
        assert_int_equal(EVP_DigestUpdate(md, tenant, tenant_len), 1);
        assert_int_equal(EVP_DigestUpdate(md, be_version, sizeof(be_version)), 1);
        assert_int_equal(EVP_DigestUpdate(md, be_len, sizeof(be_len)), 1);
        assert_int_equal(EVP_DigestUpdate(md, wrapped, len), 1);
        assert_int_equal(EVP_DigestFinal_ex(md, digest, &digest_len), 1);
        assert_int_equal(digest_len, 32);
        EVP_MD_CTX_free(md);
}

static EVP_PKEY *public_key(struct fixture *f, const char *tenant, uint32_t version) {
        struct kh_key_ref ref = { .version = version };
        EVP_PKEY *pub = NULL;

        snprintf(ref.tenant, sizeof(ref.tenant), "%s", tenant);
        assert_int_equal(kh_keystore_public_key(f->ks, &ref, &pub), 0);
        return pub;
}

/* RSA-PSS, SHA-256, MGF1-SHA-256, salt 32, checked with OpenSSL directly. */
static bool verifies(EVP_PKEY *pub, const uint8_t digest[32], const uint8_t *sig, size_t len) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
        int ok;

        assert_non_null(ctx);
        assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32), 1);
        ok = EVP_PKEY_verify(ctx, sig, len, digest, 32);
        EVP_PKEY_CTX_free(ctx);
        return ok == 1;
}

static bool row_verifies(struct fixture *f, const char *tenant, uint32_t version,
                         const struct row *r) {
        uint8_t digest[32];
        EVP_PKEY *pub = public_key(f, tenant, version);
        bool ok;

        dek_digest(tenant, version, r->wrapped, r->wrapped_len, digest);
        ok = r->sig_len > 0 && verifies(pub, digest, r->sig, r->sig_len);
        EVP_PKEY_free(pub);
        return ok;
}

/* What an attacker can make: a DEK of their choosing, RSA-OAEP-wrapped under the public key
 * of acme's version 1 (no private key involved). r is that version's row with the planted
 * bytes instead of its own (the old signature still in it); the DEK is returned. */
static struct kh_secret *plant(struct fixture *f, struct row *r) {
        struct kh_secret *dek = NULL;
        EVP_PKEY *pub = public_key(f, "acme", 1);
        struct kh_buf wrapped;

        row_get(f, "acme", 1, r);

        assert_int_equal(kh_random_secret(KH_DEK_LEN, &dek), 0);
        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
        assert_int_equal(kh_rsa_oaep_encrypt(pub, dek, &wrapped), 0);
        memcpy(r->wrapped, wrapped.data, wrapped.len);
        r->wrapped_len = wrapped.len;
        kh_buf_free(&wrapped);
        EVP_PKEY_free(pub);
        return dek;
}

/* Row r's signature becomes sig's bytes. */
static void set_sig(struct row *r, const struct kh_buf *sig) {
        assert_in_range(sig->len, 1, sizeof(r->sig));
        memcpy(r->sig, sig->data, sig->len);
        r->sig_len = sig->len;
}

/* Row r gets the signature kh_dek_sign() makes for its bytes as (tenant, version). */
static void sign_row(struct fixture *f, const char *tenant, uint32_t version, struct row *r) {
        struct kh_buf sig;

        kh_buf_init(&sig, KH_STORE_SIGNATURE_MAX, false);
        assert_int_equal(kh_dek_sign(f->ks, tenant, version, r->wrapped, r->wrapped_len, &sig), 0);
        set_sig(r, &sig);
        kh_buf_free(&sig);
}

/* kh_keys_load() on the fixture's store: its result, with the snapshot dropped. */
static int load_flags(struct fixture *f, unsigned flags, struct kh_keys_failure *failed) {
        struct kh_keys *keys = NULL;
        int r;

        *failed = (struct kh_keys_failure) { .tenant = 99, .version = 99, .unsigned_dek = true };
        r = kh_keys_load(f->store, f->ks, tenants, N_TENANTS, flags, &keys, failed);
        if (r < 0)
                assert_null(keys);
        kh_keys_unref(keys);
        return r;
}

static int load(struct fixture *f, struct kh_keys_failure *failed) {
        return load_flags(f, 0, failed);
}

/* The snapshot of a load that must succeed, with an active version for every tenant. */
static struct kh_keys *loaded(struct fixture *f) {
        struct kh_keys_failure failed;
        struct kh_keys *keys;

        assert_int_equal(kh_keys_load(f->store, f->ks, tenants, N_TENANTS, 0, &keys, &failed), 0);
        for (size_t t = 0; t < N_TENANTS; t++)
                assert_non_null(keys->tenants[t].active);
        return keys;
}

/* Writes r as acme's version 1 and expects the load to succeed. */
static void expect_loads(struct fixture *f, const struct row *r) {
        struct kh_keys_failure failed;

        row_put(f, "acme", 1, r);
        assert_int_equal(load(f, &failed), 0);
}

/* Writes r as acme's version 1 and expects the load to refuse exactly that version, and
 * to say whether it was for a missing signature. */
static void expect_refused(struct fixture *f, const struct row *r) {
        struct kh_keys_failure failed;

        row_put(f, "acme", 1, r);
        assert_int_equal(load(f, &failed), -KH_E_INTEGRITY);
        assert_int_equal(failed.tenant, ACME);
        assert_int_equal(failed.version, 1);
        assert_int_equal(failed.unsigned_dek, r->sig_len == 0);
}

/* A second version of acme's key, archived, with a DEK signed as kh_keys_load()
 * expects (what a rekey will write). */
static void add_version_2(struct fixture *f) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        struct kh_key_spec spec = { .tenant = "acme", .version = 2, .rsa_bits = 2048 };
        struct kh_key_ref ref;
        struct kh_buf wrapped, sig;

        assert_int_equal(kh_keystore_generate(f->ks, &spec, &ref), 0);
        assert_int_equal(kh_random_secret(KH_DEK_LEN, &dek), 0);
        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
        kh_buf_init(&sig, KH_STORE_SIGNATURE_MAX, false);
        assert_int_equal(kh_keystore_wrap(f->ks, &ref, dek, &wrapped), 0);
        assert_int_equal(kh_dek_sign(f->ks, "acme", 2, wrapped.data, wrapped.len, &sig), 0);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->store, "acme", 2,
                                                              KH_KEY_ARCHIVED, wrapped.data,
                                                              wrapped.len, sig.data, sig.len),
                         1);
        kh_buf_free(&wrapped);
        kh_buf_free(&sig);
}

/* The database as a build before signatures left it: schema 2, no signature column, no
 * meta table (and nothing of the schemas after it). The store is reopened on it, which migrates it again. */
static void make_legacy(struct fixture *f) {
        f->store = kh_store_close(f->store);
        raw_exec(f, "DROP TRIGGER key_epoch_insert; DROP TRIGGER key_epoch_update;"
                    "DROP TRIGGER key_epoch_seal_insert; DROP TRIGGER key_epoch_seal_update;"
                    "DROP TABLE key_epoch; DROP TABLE job_leases;"
                    "DELETE FROM schema_migrations WHERE version = 6;"
                    "ALTER TABLE tenant_keys DROP COLUMN prior_state;"
                    "DELETE FROM schema_migrations WHERE version = 5;"
                    "DROP TABLE audit_blocks;"
                    "ALTER TABLE tenant_keys DROP COLUMN encrypts;"
                    "ALTER TABLE tenant_keys DROP COLUMN decrypts;"
                    "DELETE FROM schema_migrations WHERE version = 4;"
                    "ALTER TABLE tenant_keys DROP COLUMN signature;"
                    "DROP TABLE meta;"
                    "DELETE FROM schema_migrations WHERE version = 3");
        open_store(f);
        assert_int_equal(kh_store_schema_version(f->store), 6);
}

/* The app's first start signed each DEK it created, over exactly the documented message:
 * the label, the tenant, the version and the wrapped bytes. */
static void test_dek_signature_covers_label_tenant_version_and_bytes(void **state) {
        struct fixture *f = *state;
        EVP_PKEY *pub = public_key(f, "acme", 1);
        uint8_t digest[32];
        struct kh_buf sig;
        struct row r;

        row_get(f, "acme", 1, &r);
        assert_int_equal(r.sig_len, 256);
        dek_digest("acme", 1, r.wrapped, r.wrapped_len, digest);
        assert_true(verifies(pub, digest, r.sig, r.sig_len));
        dek_digest("default", 1, r.wrapped, r.wrapped_len, digest);
        assert_false(verifies(pub, digest, r.sig, r.sig_len));
        dek_digest("acme", 2, r.wrapped, r.wrapped_len, digest);
        assert_false(verifies(pub, digest, r.sig, r.sig_len));
        r.wrapped[r.wrapped_len - 1] ^= 1;
        dek_digest("acme", 1, r.wrapped, r.wrapped_len, digest);
        assert_false(verifies(pub, digest, r.sig, r.sig_len));

        /* kh_dek_sign() makes the same kind of signature for any bytes */
        kh_buf_init(&sig, KH_STORE_SIGNATURE_MAX, false);
        assert_int_equal(kh_dek_sign(f->ks, "acme", 1, r.wrapped, r.wrapped_len, &sig), 0);
        assert_true(verifies(pub, digest, sig.data, sig.len));
        kh_buf_reset(&sig);
        assert_int_equal(kh_dek_sign(f->ks, "acme", 0, r.wrapped, r.wrapped_len, &sig), -EINVAL);
        assert_int_equal(kh_dek_sign(f->ks, "Acme", 1, r.wrapped, r.wrapped_len, &sig), -EINVAL);
        assert_int_equal(kh_dek_sign(f->ks, "acme", 1, r.wrapped, 0, &sig), -EINVAL);
        assert_int_equal(kh_dek_sign(f->ks, "acme", 1, r.wrapped, KH_WRAPPED_DEK_MAX + 1, &sig),
                         -EINVAL);
        assert_int_equal(kh_dek_sign(f->ks, "acme", 7, r.wrapped, r.wrapped_len, &sig), -ENOENT);
        assert_int_equal(sig.len, 0);
        kh_buf_free(&sig);
        EVP_PKEY_free(pub);

        /* the other tenant's DEK too, by its own key */
        row_get(f, "default", 1, &r);
        assert_true(row_verifies(f, "default", 1, &r));
        assert_false(row_verifies(f, "acme", 1, &r));
}

/* Correctly signed rows load; so does a DEK of the test's choosing once the key store
 * itself has signed it, and the snapshot then holds exactly that DEK. */
static void test_signed_deks_load(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        struct kh_keys_failure failed;
        struct kh_keys *keys = NULL;
        struct row r;

        assert_int_equal(load(f, &failed), 0);

        dek = plant(f, &r);
        sign_row(f, "acme", 1, &r);
        row_put(f, "acme", 1, &r);

        keys = loaded(f);
        assert_true(kh_secret_equal(keys->tenants[ACME].active->dek, dek));
        kh_keys_unref(keys);
}

/* The attack of issue #11: a DEK wrapped under the public key alone, the row's signature
 * left as it was. Refused, naming tenant and version; the original row loads again. */
static void test_planted_dek_with_the_old_signature_is_refused(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        struct row original, r;

        row_get(f, "acme", 1, &original);
        dek = plant(f, &r);
        expect_refused(f, &r);

        expect_loads(f, &original);
}

/* Without a signature: refused, and not signed on the way. */
static void test_planted_dek_without_signature_is_refused(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        struct row r;

        dek = plant(f, &r);
        r.sig_len = 0;
        expect_refused(f, &r);
        expect_refused(f, &r);
        row_get(f, "acme", 1, &r);
        assert_int_equal(r.sig_len, 0);
}

/* Version 2's row (its DEK and valid signature) copied into version 1, and a planted DEK
 * carrying a signature made for version 2: both refused as version 1. */
static void test_row_or_signature_of_another_version_is_refused(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        struct kh_keys *keys = NULL;
        struct row v1, v2, r;

        add_version_2(f);
        keys = loaded(f);
        assert_int_equal(keys->tenants[ACME].n_versions, 2);
        assert_non_null(keys->tenants[ACME].versions[1].dek);
        kh_keys_unref(keys);

        row_get(f, "acme", 1, &v1);
        row_get(f, "acme", 2, &v2);
        expect_refused(f, &v2);

        dek = plant(f, &r);
        sign_row(f, "acme", 2, &r);
        expect_refused(f, &r);

        expect_loads(f, &v1);
}

/* A signature over exactly the right message (tenant acme, version 1, the planted bytes),
 * but made by another key the key store holds: acme's version 2, or default's version 1. */
static void test_signature_by_another_key_is_refused(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        static const struct {
                const char *tenant;
                uint32_t version;
        } signers[] = { { "acme", 2 }, { "default", 1 } };
        uint8_t digest[32];
        struct row r;

        add_version_2(f);
        dek = plant(f, &r);
        dek_digest("acme", 1, r.wrapped, r.wrapped_len, digest);
        for (size_t i = 0; i < sizeof(signers) / sizeof(signers[0]); i++) {
                struct kh_key_ref ref = { .version = signers[i].version };
                EVP_PKEY *pub = public_key(f, signers[i].tenant, signers[i].version);
                struct kh_buf sig;

                snprintf(ref.tenant, sizeof(ref.tenant), "%s", signers[i].tenant);
                kh_buf_init(&sig, KH_STORE_SIGNATURE_MAX, false);
                assert_int_equal(kh_keystore_sign(f->ks, &ref, digest, sizeof(digest), &sig), 0);
                assert_true(verifies(pub, digest, sig.data, sig.len)); /* a real signature */
                set_sig(&r, &sig);
                kh_buf_free(&sig);
                EVP_PKEY_free(pub);

                expect_refused(f, &r);
        }
}

/* A database from before signatures: refused, naming the first unsigned version, until the
 * operator vouches for it (KH_KEYS_SIGN_UNSIGNED); that load signs its rows, later ones
 * need no flag, and a signature cleared afterwards is refused again, not signed. */
static void test_unsigned_rows_are_refused_until_the_operator_signs_them(void **state) {
        struct fixture *f = *state;
        struct kh_keys_failure failed;
        struct row before[N_TENANTS], after;

        for (size_t t = 0; t < N_TENANTS; t++)
                row_get(f, tenants[t], 1, &before[t]);
        make_legacy(f);
        for (size_t t = 0; t < N_TENANTS; t++) {
                row_get(f, tenants[t], 1, &after);
                assert_int_equal(after.sig_len, 0);
        }

        assert_int_equal(load(f, &failed), -KH_E_INTEGRITY);
        assert_int_equal(failed.tenant, 0);
        assert_int_equal(failed.version, 1);
        assert_true(failed.unsigned_dek);
        for (size_t t = 0; t < N_TENANTS; t++) {
                row_get(f, tenants[t], 1, &after);
                assert_int_equal(after.sig_len, 0);   /* refusing signs nothing */
        }

        assert_int_equal(load_flags(f, KH_KEYS_SIGN_UNSIGNED, &failed), 0);
        for (size_t t = 0; t < N_TENANTS; t++) {
                row_get(f, tenants[t], 1, &after);
                assert_int_equal(after.wrapped_len, before[t].wrapped_len);
                assert_memory_equal(after.wrapped, before[t].wrapped, after.wrapped_len);
                assert_true(row_verifies(f, tenants[t], 1, &after));
                /* PSS signatures are randomised: a new one, not the old one restored */
                assert_memory_not_equal(after.sig, before[t].sig, after.sig_len);
        }

        /* a second load signs nothing again */
        row_get(f, "acme", 1, &before[ACME]);
        assert_int_equal(load(f, &failed), 0);
        row_get(f, "acme", 1, &after);
        assert_memory_equal(after.sig, before[ACME].sig, after.sig_len);

        /* an attacker clears the signature to have a planted DEK signed: refused */
        after.sig_len = 0;
        expect_refused(f, &after);
        row_get(f, "acme", 1, &after);
        assert_int_equal(after.sig_len, 0);
}

#define BACKFILLERS 2
#define BACKFILL_ROUNDS 4

struct backfiller {
        pthread_barrier_t *barrier;
        struct kh_store *store;
        struct kh_keystore *ks;
        struct kh_keys_failure failed;
        int r;
};

static void *backfill_thread(void *p) {
        struct backfiller *b = p;
        struct kh_keys *keys = NULL;

        (void) pthread_barrier_wait(b->barrier);
        b->r = kh_keys_load(b->store, b->ks, tenants, N_TENANTS, KH_KEYS_SIGN_UNSIGNED, &keys,
                            &b->failed);
        kh_keys_unref(keys);
        return NULL;
}

/* Two processes (here: two connections and two key store handles) starting at once on a
 * legacy database both succeed, and every row ends with one valid signature. */
static void test_legacy_rows_signed_by_two_at_once(void **state) {
        struct fixture *f = *state;
        struct kh_keys_failure failed;
        struct row r;

        make_legacy(f);
        for (int round = 0; round < BACKFILL_ROUNDS; round++) {
                struct backfiller b[BACKFILLERS];
                pthread_t t[BACKFILLERS];
                pthread_barrier_t barrier;

                raw_exec(f, "UPDATE tenant_keys SET signature = NULL");
                assert_int_equal(pthread_barrier_init(&barrier, NULL, BACKFILLERS), 0);
                for (int i = 0; i < BACKFILLERS; i++) {
                        b[i] = (struct backfiller) { .barrier = &barrier, .r = 1 };
                        assert_int_equal(kh_store_open(&f->cfg->storage, &b[i].store), 0);
                        assert_int_equal(kh_keystore_open(&f->cfg->keystore, &b[i].ks), 0);
                }
                for (int i = 0; i < BACKFILLERS; i++)
                        assert_int_equal(pthread_create(&t[i], NULL, backfill_thread, &b[i]), 0);
                for (int i = 0; i < BACKFILLERS; i++)
                        assert_int_equal(pthread_join(t[i], NULL), 0);
                (void) pthread_barrier_destroy(&barrier);
                for (int i = 0; i < BACKFILLERS; i++) {
                        assert_int_equal(b[i].r, 0);
                        b[i].store = kh_store_close(b[i].store);
                        b[i].ks = kh_keystore_close(b[i].ks);
                }

                for (size_t i = 0; i < N_TENANTS; i++) {
                        row_get(f, tenants[i], 1, &r);
                        assert_true(row_verifies(f, tenants[i], 1, &r));
                }
                assert_int_equal(load(f, &failed), 0);
        }
}

/* Through the app: start-up refuses a planted DEK (naming the tenant to the caller's
 * log), and a reload refuses it while the current snapshot stays. */
struct events {
        char tenant[KH_TENANT_ID_MAX + 1];
        int r;
};

static void on_event(const char *tenant, const char *what, int r, void *userdata) {
        struct events *e = userdata;

        (void) what;
        if (r < 0) {
                snprintf(e->tenant, sizeof(e->tenant), "%s", tenant ? tenant : "");
                e->r = r;
        }
}

static void test_app_refuses_a_planted_dek_at_start_and_reload(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        struct events e = { .r = 0 };
        struct kh_app *app = NULL;
        const struct kh_keys *current;
        struct row original, r;

        row_get(f, "acme", 1, &original);
        dek = plant(f, &r);
        row_put(f, "acme", 1, &r);
        assert_int_equal(kh_app_open(f->cfg, on_event, &e, &app), -KH_E_INTEGRITY);
        assert_null(app);
        assert_string_equal(e.tenant, "acme");
        assert_int_equal(e.r, -KH_E_INTEGRITY);

        row_put(f, "acme", 1, &original);
        assert_int_equal(kh_app_open(f->cfg, on_event, &e, &app), 0);
        current = kh_keyring_get(kh_app_keyring(app));
        row_put(f, "acme", 1, &r);
        assert_int_equal(kh_app_reload_keys(app), -KH_E_INTEGRITY);
        assert_ptr_equal(kh_keyring_get(kh_app_keyring(app)), current);
        assert_false(kh_secret_equal(current->tenants[ACME].active->dek, dek));
        app = kh_app_close(app);
}

/* keyholdd --sign-unsigned-deks: kh_app_open() refuses a legacy database without it (the
 * event names the tenant), signs it with it; a reload never signs. */
static void test_app_signs_unsigned_deks_only_when_told(void **state) {
        struct fixture *f = *state;
        struct events e = { .r = 0 };
        struct kh_app *app = NULL;
        struct row r;

        make_legacy(f);
        assert_int_equal(kh_app_open(f->cfg, on_event, &e, &app), -KH_E_INTEGRITY);
        assert_null(app);
        assert_string_equal(e.tenant, tenants[0]);

        f->cfg->sign_unsigned_deks = true;
        assert_int_equal(kh_app_open(f->cfg, on_event, &e, &app), 0);
        f->cfg->sign_unsigned_deks = false;
        for (size_t t = 0; t < N_TENANTS; t++) {
                row_get(f, tenants[t], 1, &r);
                assert_true(row_verifies(f, tenants[t], 1, &r));
        }
        row_get(f, "acme", 1, &r);
        r.sig_len = 0;
        row_put(f, "acme", 1, &r);
        f->cfg->sign_unsigned_deks = true; /* even when the app was opened with it */
        assert_int_equal(kh_app_reload_keys(app), -KH_E_INTEGRITY);
        row_get(f, "acme", 1, &r);
        assert_int_equal(r.sig_len, 0);
        f->cfg->sign_unsigned_deks = false;
        app = kh_app_close(app);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
                T(test_dek_signature_covers_label_tenant_version_and_bytes),
                T(test_signed_deks_load),
                T(test_planted_dek_with_the_old_signature_is_refused),
                T(test_planted_dek_without_signature_is_refused),
                T(test_row_or_signature_of_another_version_is_refused),
                T(test_signature_by_another_key_is_refused),
                T(test_unsigned_rows_are_refused_until_the_operator_signs_them),
                T(test_app_signs_unsigned_deks_only_when_told),
                T(test_legacy_rows_signed_by_two_at_once),
                T(test_app_refuses_a_planted_dek_at_start_and_reload),
#undef T
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
