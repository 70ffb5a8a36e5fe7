/* A test driver for src/audit, so that tests/integration/test_audit_format.py can cross-check
 * keyhold's C code against tests/integration/auditref.py (an independent reading of
 * docs/audit.md) without the `keyhold` CLI. Not installed; not a test by itself.
 *
 *   audit-tool verify PEM FIRST_SEQ THROUGH_SEQ FILE...
 *        kh_audit_verify_file_expect() of each FILE (0: no expectation), one JSON verdict
 *        a line, in auditref.py's shape
 *   audit-tool format
 *        kh_audit_json_parse() of each stdin line; prints kh_audit_json_format() of the
 *        record, or {"error": REASON, "seq": SEQ} when it is refused
 *   audit-tool chain KEY.pem TENANT LAST CHECKPOINT...
 *        writes records 1..LAST of a chain made here (kh_audit_record_hash(),
 *        kh_audit_checkpoint_digest(), RSA-PSS with the test-only private KEY.pem through
 *        OpenSSL, kh_audit_json_format()); the seqs listed are checkpoints. Its strings
 *        exercise the writer: control characters, quotes, non-ASCII, 1024-byte fields.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>

#include "audit/json.h"
#include "audit/verify.h"
#include "common/buf.h"

static int parse_u64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
                        return -EINVAL;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return 0;
}

static void print_json(json_t *obj) {
        char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);

        if (!s)
                abort();
        puts(s);
        free(s);
        json_decref(obj);
}

static int cmd_verify(int argc, char **argv) {
        struct kh_audit_verify_expect e;

        if (argc < 4 || parse_u64(argv[1], &e.first_seq) < 0 ||
            parse_u64(argv[2], &e.through_seq) < 0)
                return 2;
        for (int i = 3; i < argc; i++) {
                struct kh_audit_verify_result res;
                int r = kh_audit_verify_file_expect(argv[i], argv[0], &e, &res);

                if (r < 0) {
                        fprintf(stderr, "audit-tool: %s: error %d\n", argv[i], r);
                        return 1;
                }
                if (res.ok)
                        print_json(json_pack("{s:b, s:I, s:I, s:I, s:I, s:I}", "ok", 1, "records",
                                             (json_int_t) res.records, "checkpoints",
                                             (json_int_t) res.checkpoints, "first_seq",
                                             (json_int_t) res.first_seq, "signed_through",
                                             (json_int_t) res.signed_through, "unsigned",
                                             (json_int_t) res.unsigned_records));
                else
                        print_json(json_pack("{s:b, s:I, s:i, s:I, s:s}", "ok", 0, "first_bad_seq",
                                             (json_int_t) res.first_bad_seq, "step", (int) res.step,
                                             "line", (json_int_t) res.line, "reason", res.reason));
        }
        return 0;
}

static int cmd_format(void) {
        static struct kh_audit_parsed p;
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;

        while ((n = getline(&line, &cap, stdin)) >= 0) {
                KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
                const char *reason = NULL;
                int r;

                kh_buf_init(&out, KH_AUDIT_LINE_MAX + 1, false);
                r = kh_audit_json_parse(line, (size_t) n, &p, &reason);
                if (r == -EINVAL) {
                        print_json(json_pack("{s:s, s:I}", "error", reason, "seq",
                                             (json_int_t) p.rec.seq));
                        continue;
                }
                if (r < 0 || kh_audit_json_format(&p.rec, &out) < 0)
                        abort();
                fwrite(out.data, 1, out.len, stdout);
        }
        free(line);
        return ferror(stdin) ? 1 : 0;
}

static EVP_PKEY *load_private(const char *path) {
        FILE *f = fopen(path, "re");
        EVP_PKEY *k;

        if (!f)
                return NULL;
        k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        return k;
}

static size_t sign(EVP_PKEY *key, const uint8_t digest[static 32], uint8_t *sig, size_t max) {
        char pad[] = OSSL_PKEY_RSA_PAD_MODE_PSS, md[] = "SHA256";
        int salt = 32;
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, pad, 0),
                OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, md, 0),
                OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, md, 0),
                OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, &salt),
                OSSL_PARAM_construct_end(),
        };
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
        size_t n = max;

        if (!ctx || EVP_PKEY_sign_init_ex(ctx, params) != 1 ||
            EVP_PKEY_sign(ctx, sig, &n, digest, 32) != 1)
                abort();
        EVP_PKEY_CTX_free(ctx);
        return n;
}

static int cmd_chain(int argc, char **argv) {
        static char long_target[KH_AUDIT_STR_MAX + 1], ctl_client[KH_AUDIT_STR_MAX + 1];
        static const char *const actors[] = { "keyhold", "-", "local:uid=0",
                                              "6f1c2a4e-0b7d-4c3e-9a85-2d4f6b8e1c07" };
        static const char *const targets[] = { "", "Zürich \"quoted\" \\ / tab\t nl\n",
                                               "\x01\x1f\x7f \xe2\x80\xa8 \xf0\x9f\x94\x91",
                                               long_target };
        uint8_t prev[KH_AUDIT_HASH_LEN] = { 0 }, sig[KH_AUDIT_SIG_MAX];
        EVP_PKEY *key;
        uint64_t last;

        if (argc < 3 || parse_u64(argv[2], &last) < 0 || last < 1 || last > 100000)
                return 2;
        key = load_private(argv[0]);
        if (!key)
                return 1;
        memset(long_target, 'x', KH_AUDIT_STR_MAX);
        for (size_t i = 0; i < KH_AUDIT_STR_MAX; i++)
                ctl_client[i] = (char) (1 + i % 31); /* every control character, \u-escaped */

        for (uint64_t seq = 1; seq <= last; seq++) {
                KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
                struct kh_audit_record rec = {
                        .seq = seq, .tenant = argv[1], .actor = actors[seq % 4],
                        .action = seq % 3 ? "read" : "refused", .target = targets[seq % 4],
                        .outcome = seq % 3 ? "ok" : "invalid_token",
                        .key_version = (uint32_t) (seq % 3 ? seq : 0), .request_id = "req-é",
                        .client = seq % 5 == 0 ? ctl_client : "203.0.113.9",
                        .count = seq % 7 == 0 ? UINT32_MAX : 1,
                };
                bool checkpoint = false;

                for (int i = 3; i < argc; i++) {
                        uint64_t cp;
                        if (parse_u64(argv[i], &cp) < 0)
                                return 2;
                        checkpoint |= cp == seq;
                }
                if (kh_audit_time_format(1796565600000LL + 1000 * (int64_t) seq, rec.time) < 0)
                        abort();
                if (checkpoint) {
                        rec.actor = KH_AUDIT_ACTOR_SERVER;
                        rec.action = KH_AUDIT_ACTION_CHECKPOINT;
                        rec.target = rec.request_id = rec.client = "";
                        rec.outcome = "ok";
                        rec.key_version = 0;
                        rec.count = 1;
                }
                memcpy(rec.prev_hash, prev, sizeof(prev));
                kh_audit_record_hash(&rec, rec.hash);
                if (checkpoint) {
                        uint8_t digest[KH_AUDIT_HASH_LEN];

                        kh_audit_checkpoint_digest(rec.tenant, rec.replica, rec.seq, rec.hash, digest);
                        rec.signature = sig;
                        rec.signature_len = sign(key, digest, sig, sizeof(sig));
                }
                kh_buf_init(&out, KH_AUDIT_LINE_MAX + 1, false);
                if (kh_audit_json_format(&rec, &out) < 0)
                        abort();
                fwrite(out.data, 1, out.len, stdout);
                memcpy(prev, rec.hash, sizeof(prev));
        }
        EVP_PKEY_free(key);
        return 0;
}

int main(int argc, char **argv) {
        if (argc >= 2 && strcmp(argv[1], "verify") == 0)
                return cmd_verify(argc - 2, argv + 2);
        if (argc == 2 && strcmp(argv[1], "format") == 0)
                return cmd_format();
        if (argc >= 2 && strcmp(argv[1], "chain") == 0)
                return cmd_chain(argc - 2, argv + 2);
        fprintf(stderr, "usage: audit-tool verify PEM FIRST THROUGH FILE... | format | "
                        "chain KEY TENANT LAST CHECKPOINT...\n");
        return 2;
}
