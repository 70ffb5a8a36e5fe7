/* kh-bench-keystore: raw key store operations per second, through the key-store interface
 * (keystore/keystore.h), for bench/hsm.py: the same program against a file store and a
 * pkcs11 store (SoftHSM2) compares the two in one run. Benchmarks only: it generates keys of
 * tenant "bench" in the store the configuration names, so point it at a throw-away store.
 *
 *   kh-bench-keystore CONFIG SECONDS [RSA_BITS...]
 *
 * For each RSA size (default 2048 3072 4096) it generates a tenant key version and measures,
 * each for SECONDS (and at most OPS_MAX operations): the OAEP unwrap of a 32-byte DEK it
 * wrapped once (what keyholdd does for each key version at start and unseal) and an RSA-PSS
 * signature over a SHA-256 digest (a DEK's signature); then an ECDSA P-256 audit key and its
 * signature (an audit checkpoint). One JSON object per line on stdout:
 *   {"op": "unwrap", "key": "rsa-2048", "ops": N, "seconds": S, "per_second": R,
 *    "generate_ms": G}
 * The secret (master key, passphrase or PIN) comes from the configuration and KEYHOLD_*
 * environment, as for keyholdd. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/errors.h"
#include "config/config.h"
#include "crypto/random.h"
#include "keystore/keystore.h"

#define TENANT "bench"
#define OPS_MAX 1000000UL
#define DEK_LEN 32
#define SIG_MAX 2048

extern char **environ;

enum op { OP_UNWRAP, OP_SIGN };

static double now_s(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* One operation of kind op with key ref: an unwrap of wrapped, or a signature of digest. */
static int run_once(struct kh_keystore *ks, const struct kh_key_ref *ref, enum op op,
                    const struct kh_buf *wrapped, const uint8_t digest[static 32]) {
        if (op == OP_UNWRAP) {
                KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;

                return kh_keystore_unwrap(ks, ref, wrapped->data, wrapped->len, &dek);
        }
        KH_CLEANUP(kh_buf_freep) struct kh_buf sig = { 0 };

        kh_buf_init(&sig, SIG_MAX, false);
        return kh_keystore_sign(ks, ref, digest, 32, &sig);
}

/* Runs op for seconds (at least one operation) and prints its line. */
static int measure(struct kh_keystore *ks, const struct kh_key_ref *ref, enum op op,
                   const char *key, double seconds, double generate_ms) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        uint8_t digest[32];
        unsigned long n = 0;
        double t0, t;
        int r;

        kh_buf_init(&wrapped, SIG_MAX, false);
        r = kh_random_bytes(digest, sizeof(digest));
        if (r >= 0 && op == OP_UNWRAP) {
                r = kh_random_secret(DEK_LEN, &dek);
                if (r >= 0)
                        r = kh_keystore_wrap(ks, ref, dek, &wrapped);
        }
        if (r < 0)
                return r;
        t0 = now_s();
        do {
                r = run_once(ks, ref, op, &wrapped, digest);
                if (r < 0)
                        return r;
                n++;
                t = now_s() - t0;
        } while (t < seconds && n < OPS_MAX);
        printf("{\"op\": \"%s\", \"key\": \"%s\", \"ops\": %lu, \"seconds\": %.6f, "
               "\"per_second\": %.1f, \"generate_ms\": %.1f}\n",
               op == OP_UNWRAP ? "unwrap" : "sign", key, n, t, (double) n / t, generate_ms);
        fflush(stdout);
        return 0;
}

static int generate(struct kh_keystore *ks, const struct kh_key_spec *spec,
                    struct kh_key_ref *ref, double *ms) {
        double t0 = now_s();
        int r = kh_keystore_generate(ks, spec, ref);

        *ms = (now_s() - t0) * 1000;
        return r;
}

int main(int argc, char **argv) {
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = NULL;
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *ks = NULL;
        struct kh_config_error err;
        struct kh_key_ref ref;
        char detail[256], name[32];
        double seconds, ms;
        uint32_t version = 0;
        int r;

        if (argc < 3) {
                fprintf(stderr, "usage: %s CONFIG SECONDS [RSA_BITS...]\n", argv[0]);
                return 2;
        }
        seconds = strtod(argv[2], NULL);
        if (!(seconds > 0 && seconds <= 600)) {
                fprintf(stderr, "SECONDS must be more than 0 and at most 600\n");
                return 2;
        }
        r = kh_config_load(argv[1], environ, &cfg, &err);
        if (r < 0) {
                fprintf(stderr, "config: %s: %s\n", err.key, err.reason);
                return 1;
        }
        r = kh_keystore_open_detail(&cfg->keystore, &ks, detail, sizeof(detail));
        if (r < 0) {
                fprintf(stderr, "cannot open the key store: %s %s\n", kh_strerror(r), detail);
                return 1;
        }
        for (int i = 3; i < argc || (argc == 3 && i < 6); i++) {
                unsigned bits = argc == 3 ? 2048u + 1024u * (unsigned) (i - 3) :
                                            (unsigned) strtoul(argv[i], NULL, 10);
                struct kh_key_spec spec = { .tenant = TENANT, .version = ++version,
                                            .rsa_bits = bits, .purpose = KH_KEY_DATA,
                                            .alg = KH_KEY_ALG_RSA };

                (void) snprintf(name, sizeof(name), "rsa-%u", bits);
                r = generate(ks, &spec, &ref, &ms);
                if (r >= 0)
                        r = measure(ks, &ref, OP_UNWRAP, name, seconds, ms);
                if (r >= 0)
                        r = measure(ks, &ref, OP_SIGN, name, seconds, ms);
                if (r < 0) {
                        fprintf(stderr, "%s: %s\n", name, kh_strerror(r));
                        return 1;
                }
        }
        struct kh_key_spec audit = { .tenant = TENANT, .version = 1, .purpose = KH_KEY_AUDIT,
                                     .alg = KH_KEY_ALG_EC_P256 };

        r = generate(ks, &audit, &ref, &ms);
        if (r >= 0)
                r = measure(ks, &ref, OP_SIGN, "ecdsa-p256", seconds, ms);
        if (r < 0) {
                fprintf(stderr, "ecdsa-p256: %s\n", kh_strerror(r));
                return 1;
        }
        return 0;
}
