/* The offline verifier (src/audit/verify.c) on the cases of tests/unit/audit/data: chains
 * and tampered copies written by tests/integration/auditref.py, an implementation of
 * docs/audit.md independent of this C code, with the verdict each must get in
 * expected.json (one cmocka test per case, named after it). Then what the files cannot
 * show: the streaming API, a line too long, read and key errors, the public key loader.
 * Usage: test-audit-verify DATA_DIR. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/pem.h>

#include "audit/json.h"
#include "audit/verify.h"
#include "common/errors.h"
#include "crypto/rsa.h"

/* The cases cover every tampering docs/audit.md names, and keep doing so. */
#define CASES_MIN 60

static const char *data_dir;

static char *data_path(const char *name) {
        char *p = NULL;

        assert_true(asprintf(&p, "%s/%s", data_dir, name) > 0);
        return p;
}

static uint64_t member_u64(const json_t *c, const char *name) {
        const json_t *v = json_object_get(c, name);

        assert_true(json_is_integer(v));
        assert_true(json_integer_value(v) >= 0);
        return (uint64_t) json_integer_value(v);
}

/* One case of expected.json: verify its file with its key and expectations. */
static void test_case(void **state) {
        const json_t *c = *state, *expect = json_object_get(c, "expect");
        struct kh_audit_verify_expect e = { 0 };
        struct kh_audit_verify_result res;
        char *file = data_path(json_string_value(json_object_get(c, "file")));
        char *key = data_path(json_string_value(json_object_get(c, "key")));

        if (expect) {
                if (json_object_get(expect, "first_seq"))
                        e.first_seq = member_u64(expect, "first_seq");
                if (json_object_get(expect, "through_seq"))
                        e.through_seq = member_u64(expect, "through_seq");
        }
        memset(&res, 0xa5, sizeof(res));
        assert_int_equal(kh_audit_verify_file_expect(file, key, &e, &res), 0);
        assert_int_equal(res.ok, json_is_true(json_object_get(c, "ok")));
        if (res.ok) {
                assert_int_equal(res.records, member_u64(c, "records"));
                assert_int_equal(res.checkpoints, member_u64(c, "checkpoints"));
                assert_int_equal(res.first_seq, member_u64(c, "first_seq"));
                assert_int_equal(res.signed_through, member_u64(c, "signed_through"));
                assert_int_equal(res.unsigned_records, member_u64(c, "unsigned"));
                assert_null(res.reason);
                assert_int_equal(res.step, 0);
        } else {
                assert_non_null(res.reason);
                assert_string_equal(res.reason, json_string_value(json_object_get(c, "reason")));
                assert_int_equal(res.first_bad_seq, member_u64(c, "first_bad_seq"));
                assert_int_equal(res.step, member_u64(c, "step"));
                assert_int_equal(res.line, member_u64(c, "line"));
        }
        /* without expectations, the old entry point judges the same */
        if (!expect) {
                struct kh_audit_verify_result plain;

                assert_int_equal(kh_audit_verify_file(file, key, &plain), 0);
                assert_int_equal(plain.ok, res.ok);
                assert_int_equal(plain.records, res.records);
                assert_int_equal(plain.checkpoints, res.checkpoints);
                assert_int_equal(plain.first_seq, res.first_seq);
                assert_int_equal(plain.signed_through, res.signed_through);
                assert_int_equal(plain.unsigned_records, res.unsigned_records);
                assert_int_equal(plain.first_bad_seq, res.first_bad_seq);
                assert_int_equal(plain.step, res.step);
                assert_int_equal(plain.line, res.line);
                assert_ptr_equal(plain.reason, res.reason);
        }
        free(file);
        free(key);
}

static int load_key(const char *name, EVP_PKEY **ret) {
        char *path = data_path(name);
        int r = kh_audit_public_key_load(path, ret);

        free(path);
        return r;
}

static FILE *memfile(const char *s, size_t n) {
        FILE *f = fmemopen((void *) (uintptr_t) s, n, "r");

        assert_non_null(f);
        return f;
}

static char *read_data(const char *name, size_t *ret_len) {
        char *path = data_path(name), *buf = malloc(1 << 20);
        FILE *f = fopen(path, "re");

        assert_non_null(f);
        assert_non_null(buf);
        *ret_len = fread(buf, 1, 1 << 20, f);
        buf[*ret_len] = 0;
        fclose(f);
        free(path);
        return buf;
}

/* Fed line by line, the verifier stops at the first failure and ignores what follows,
 * good or bad; before any record the verdict is "no records". */
static void test_stops_at_the_first_failure(void **state) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        KH_CLEANUP(kh_audit_verifier_freep) struct kh_audit_verifier *v = NULL;
        struct kh_audit_verify_result res;
        size_t len;
        char *text = read_data("intact.jsonl", &len), *line, *save = NULL;
        unsigned n = 0;
        (void) state;

        assert_int_equal(load_key("acme.pem", &pub), 0);
        assert_int_equal(kh_audit_verifier_new(pub, &v), 0);
        kh_audit_verifier_result(v, &res);
        assert_false(res.ok);
        assert_string_equal(res.reason, "no records");
        assert_int_equal(res.step, 0);
        assert_int_equal(res.line, 0);

        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                n++;
                if (n == 3) {
                        assert_int_equal(kh_audit_verifier_add_line(v, "{}", 2), -KH_E_INTEGRITY);
                        continue;
                }
                assert_int_equal(kh_audit_verifier_add_line(v, line, strlen(line)),
                                 n < 3 ? 0 : -KH_E_INTEGRITY);
        }
        assert_int_equal(n, 12);
        kh_audit_verifier_result(v, &res);
        assert_false(res.ok);
        assert_int_equal(res.records, 2);
        assert_int_equal(res.first_bad_seq, 3);
        assert_int_equal(res.line, 3);
        assert_int_equal(res.step, 1);
        assert_string_equal(res.reason, "malformed: seq");
        free(text);
}

/* kh_audit_verifier_add() takes parsed records (steps 2-6) and refuses invalid ones. */
static void test_add_parsed_records(void **state) {
        static struct kh_audit_parsed p;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        KH_CLEANUP(kh_audit_verifier_freep) struct kh_audit_verifier *v = NULL;
        struct kh_audit_verify_result res;
        size_t len;
        char *text = read_data("intact.jsonl", &len), *line, *save = NULL;
        const char *reason;
        unsigned n = 0;
        (void) state;

        assert_int_equal(load_key("acme.pem", &pub), 0);
        assert_int_equal(kh_audit_verifier_new(pub, &v), 0);
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                assert_int_equal(kh_audit_json_parse(line, strlen(line), &p, &reason), 0);
                if (++n == 12)
                        p.rec.count = 0; /* invalid */
                assert_int_equal(kh_audit_verifier_add(v, &p.rec), n < 12 ? 0 : -KH_E_INTEGRITY);
        }
        kh_audit_verifier_result(v, &res);
        assert_false(res.ok);
        assert_int_equal(res.records, 11);
        assert_int_equal(res.checkpoints, 2);
        assert_int_equal(res.signed_through, 10);
        assert_int_equal(res.unsigned_records, 1);
        assert_int_equal(res.first_bad_seq, 12);
        assert_int_equal(res.step, 1);
        assert_string_equal(res.reason, "malformed: record");
        free(text);
}

/* A line longer than KH_AUDIT_LINE_MAX is refused without being read whole; one of exactly
 * that length (JSON whitespace is allowed) is read. */
static void test_stream_line_length(void **state) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        struct kh_audit_verify_result res;
        size_t len, first_len;
        char *text = read_data("intact.jsonl", &len);
        char *big = malloc(len + KH_AUDIT_LINE_MAX + 2);
        FILE *f;
        (void) state;

        assert_non_null(big);
        assert_int_equal(load_key("acme.pem", &pub), 0);
        first_len = (size_t) (strchr(text, '\n') - text); /* without its newline */

        /* line 1 padded with spaces to exactly KH_AUDIT_LINE_MAX bytes */
        memcpy(big, text, first_len);
        memset(big + first_len, ' ', KH_AUDIT_LINE_MAX - first_len);
        memcpy(big + KH_AUDIT_LINE_MAX, text + first_len, len - first_len);
        f = memfile(big, KH_AUDIT_LINE_MAX + len - first_len);
        assert_int_equal(kh_audit_verify_stream(f, pub, &res), 0);
        fclose(f);
        assert_true(res.ok);
        assert_int_equal(res.records, 12);

        /* one byte more */
        memcpy(big, text, first_len);
        memset(big + first_len, ' ', KH_AUDIT_LINE_MAX + 1 - first_len);
        memcpy(big + KH_AUDIT_LINE_MAX + 1, text + first_len, len - first_len);
        f = memfile(big, KH_AUDIT_LINE_MAX + 1 + len - first_len);
        assert_int_equal(kh_audit_verify_stream(f, pub, &res), 0);
        fclose(f);
        assert_false(res.ok);
        assert_int_equal(res.line, 1);
        assert_int_equal(res.step, 1);
        assert_int_equal(res.first_bad_seq, 0);
        assert_string_equal(res.reason, "malformed: line too long");

        /* ... and in the middle, after a good line, without a final newline */
        memcpy(big, text, first_len + 1);
        memset(big + first_len + 1, 'x', KH_AUDIT_LINE_MAX + 5);
        f = memfile(big, first_len + 1 + KH_AUDIT_LINE_MAX + 5);
        assert_int_equal(kh_audit_verify_stream(f, pub, &res), 0);
        fclose(f);
        assert_false(res.ok);
        assert_int_equal(res.line, 2);
        assert_int_equal(res.first_bad_seq, 2);
        assert_string_equal(res.reason, "malformed: line too long");
        free(big);
        free(text);
}

/* Lines end at "\n" only: a "\r" before it is JSON whitespace; a NUL byte is not JSON. */
static void test_stream_line_ends(void **state) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        struct kh_audit_verify_result res;
        size_t len, n = 0;
        char *text = read_data("intact.jsonl", &len), *crlf = malloc(2 * len);
        FILE *f;
        (void) state;

        assert_int_equal(load_key("acme.pem", &pub), 0);
        for (size_t i = 0; i < len; i++) {
                if (text[i] == '\n')
                        crlf[n++] = '\r';
                crlf[n++] = text[i];
        }
        f = memfile(crlf, n);
        assert_int_equal(kh_audit_verify_stream(f, pub, &res), 0);
        fclose(f);
        assert_true(res.ok);
        assert_int_equal(res.records, 12);

        *strchr(strchr(text, '\n') + 1, '}') = '\0'; /* line 2 */
        f = memfile(text, len);
        assert_int_equal(kh_audit_verify_stream(f, pub, &res), 0);
        fclose(f);
        assert_false(res.ok);
        assert_int_equal(res.line, 2);
        assert_string_equal(res.reason, "malformed: not JSON");
        free(crlf);
        free(text);
}

static void test_verify_file_errors(void **state) {
        struct kh_audit_verify_result res;
        char *intact = data_path("intact.jsonl"), *acme = data_path("acme.pem");
        char *priv = data_path("keys/test-only-acme.key.pem");
        (void) state;

        assert_int_equal(kh_audit_verify_file("/nonexistent/x.jsonl", acme, &res), -ENOENT);
        assert_int_equal(kh_audit_verify_file(intact, "/nonexistent/k.pem", &res), -ENOENT);
        assert_int_equal(kh_audit_verify_file(intact, intact, &res), -EINVAL);
        assert_int_equal(kh_audit_verify_file(intact, priv, &res), -EINVAL);
        assert_int_equal(kh_audit_verify_file(data_dir, acme, &res), -EIO);
        free(intact);
        free(acme);
        free(priv);
}

static char *write_temp(const void *p, size_t n) {
        char *path = strdup("/tmp/test-audit-verify-XXXXXX");
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, p, n), (ssize_t) n);
        close(fd);
        return path;
}

static char *pem_of(EVP_PKEY *k, bool private) {
        BIO *b = BIO_new(BIO_s_mem());
        char *data, *copy;
        long n;

        assert_non_null(b);
        assert_int_equal(private ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
                                 : PEM_write_bio_PUBKEY(b, k),
                         1);
        n = BIO_get_mem_data(b, &data);
        copy = malloc((size_t) n + 1); /* data has no NUL */
        assert_non_null(copy);
        memcpy(copy, data, (size_t) n);
        copy[n] = 0;
        BIO_free(b);
        return copy;
}

static void assert_key_refused(const char *text, size_t n, int want) {
        EVP_PKEY *k = NULL;
        char *path = write_temp(text, n);

        assert_int_equal(kh_audit_public_key_load(path, &k), want);
        assert_null(k);
        unlink(path);
        free(path);
}

/* Exactly one SPKI PEM block of an EC P-256 key or an RSA key of 2048..8192 bits. */
static void test_public_key_load(void **state) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *acme = NULL;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *loaded = NULL;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA",
                                                                       (size_t) 1024);
        struct kh_audit_verifier *v = NULL;
        char *pem, *two, *big, *path;
        size_t n;
        (void) state;

        assert_int_equal(load_key("acme.pem", &acme), 0);
        assert_true(EVP_PKEY_is_a(acme, "RSA"));
        assert_int_equal(EVP_PKEY_get_bits(acme), 2048);

        pem = pem_of(acme, false);
        n = strlen(pem);
        two = malloc(2 * n + 1);
        memcpy(two, pem, n);
        memcpy(two + n, pem, n + 1);
        assert_key_refused(two, 2 * n, -EINVAL);                /* two blocks */
        assert_key_refused(pem, n - 30, -EINVAL);               /* cut short */
        assert_key_refused("", 0, -EINVAL);
        free(pem);
        free(two);

        /* P-256 is what keyholdd makes now; other curves are not audit keys */
        assert_non_null(ec);
        pem = pem_of(ec, false);
        path = write_temp(pem, strlen(pem));
        assert_int_equal(kh_audit_public_key_load(path, &loaded), 0);
        assert_int_equal(EVP_PKEY_eq(loaded, ec), 1);
        assert_string_equal(kh_audit_key_algorithm(loaded), KH_AUDIT_ALG_ECDSA);
        assert_string_equal(kh_audit_key_algorithm(acme), KH_AUDIT_ALG_RSA_PSS);
        unlink(path);
        free(path);
        free(pem);
        assert_int_equal(kh_audit_verifier_new(ec, &v), 0);
        kh_audit_verifier_free(v);
        v = NULL;
        assert_non_null(p384);
        pem = pem_of(p384, false);
        assert_key_refused(pem, strlen(pem), -EINVAL);          /* not P-256 */
        free(pem);
        assert_int_equal(kh_audit_verifier_new(p384, &v), -EINVAL);
        assert_null(v);

        assert_non_null(small);
        pem = pem_of(small, false);
        assert_key_refused(pem, strlen(pem), -EINVAL);          /* 1024 bits */
        free(pem);
        pem = pem_of(acme, false);
        big = malloc(KH_AUDIT_PUBKEY_PEM_MAX + 2);
        memset(big, '#', KH_AUDIT_PUBKEY_PEM_MAX + 1);
        memcpy(big + KH_AUDIT_PUBKEY_PEM_MAX + 1 - strlen(pem), pem, strlen(pem));
        assert_key_refused(big, KH_AUDIT_PUBKEY_PEM_MAX + 1, -EFBIG);
        free(big);
        free(pem);
}

static int cases_setup(void **state) {
        json_error_t err;
        char *path = data_path("expected.json");

        *state = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
        free(path);
        return *state ? 0 : -1;
}

int main(int argc, char **argv) {
        const struct CMUnitTest api[] = {
                cmocka_unit_test(test_stops_at_the_first_failure),
                cmocka_unit_test(test_add_parsed_records),
                cmocka_unit_test(test_stream_line_length),
                cmocka_unit_test(test_stream_line_ends),
                cmocka_unit_test(test_verify_file_errors),
                cmocka_unit_test(test_public_key_load),
        };
        struct CMUnitTest *tests;
        const char *name;
        json_t *cases = NULL, *c;
        size_t n = 0;
        int failed;

        if (argc != 2) {
                fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
                return 2;
        }
        data_dir = argv[1];
        if (cases_setup((void **) &cases) < 0 || !json_is_object(cases)) {
                fprintf(stderr, "test-audit-verify: cannot read %s/expected.json\n", data_dir);
                return 1;
        }
        if (json_object_size(cases) < CASES_MIN) {
                fprintf(stderr, "test-audit-verify: %zu cases, fewer than %d\n",
                        json_object_size(cases), CASES_MIN);
                return 1;
        }
        tests = calloc(json_object_size(cases), sizeof(*tests));
        json_object_foreach(cases, name, c) {
                tests[n] = (struct CMUnitTest) { .name = name, .test_func = test_case,
                                                 .initial_state = c };
                n++;
        }
        failed = _cmocka_run_group_tests("audit-verify-cases", tests, n, NULL, NULL);
        failed += cmocka_run_group_tests(api, NULL, NULL);
        free(tests);
        json_decref(cases);
        return failed;
}
