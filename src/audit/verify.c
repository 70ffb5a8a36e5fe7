/* The streaming verifier of an exported audit chain (verify.h). */
#include "audit/verify.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "audit/json.h"
#include "common/errors.h"
#include "crypto/ecdsa.h"
#include "crypto/rsa.h"

KH_DEFINE_CLEANUP(fclose, FILE *)
KH_DEFINE_CLEANUP(BIO_free, BIO *)

struct kh_audit_verifier {
        EVP_PKEY *pub;
        struct kh_audit_verify_expect expect;
        struct kh_audit_verify_result res; /* counters so far; the verdict once failed */
        bool failed;
        uint64_t position;       /* records fed, the current one included */
        uint64_t last_seq;       /* of the last record that passed */
        uint8_t last_hash[KH_AUDIT_HASH_LEN];
        uint64_t records_signed; /* records up to and including the last checkpoint */
        char tenant[KH_AUDIT_STR_MAX + 1];
        char replica[KH_AUDIT_REPLICA_MAX + 1];
        struct kh_audit_parsed parsed; /* add_line's storage: too large for a stack frame */
};

/* A PEM block's parts, as PEM_read_bio() hands them out. */
struct pem_block {
        char *name;
        char *header;
        unsigned char *data;
        long len;
};

static void pem_block_clear(struct pem_block *b) {
        OPENSSL_free(b->name);
        OPENSSL_free(b->header);
        OPENSSL_free(b->data);
        *b = (struct pem_block) { 0 };
}

int kh_audit_public_key_load(const char *pem_path, EVP_PKEY **ret) {
        KH_CLEANUP(fclosep) FILE *f = NULL;
        KH_CLEANUP(BIO_freep) BIO *bio = NULL;
        KH_CLEANUP(pem_block_clear) struct pem_block block = { 0 }, extra = { 0 };
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        char text[KH_AUDIT_PUBKEY_PEM_MAX + 1];
        const unsigned char *p;
        size_t n;

        f = fopen(pem_path, "re");
        if (!f)
                return -errno;
        n = fread(text, 1, sizeof(text), f);
        if (ferror(f))
                return -EIO;
        if (n > KH_AUDIT_PUBKEY_PEM_MAX)
                return -EFBIG;

        bio = BIO_new_mem_buf(text, (int) n);
        if (!bio)
                return -ENOMEM;
        if (PEM_read_bio(bio, &block.name, &block.header, &block.data, &block.len) != 1) {
                ERR_clear_error();
                return -EINVAL;
        }
        /* Exactly one block, an SPKI public key: a private key or a certificate given by
         * mistake is refused, not quietly reduced to its public half. */
        if (PEM_read_bio(bio, &extra.name, &extra.header, &extra.data, &extra.len) == 1)
                return -EINVAL;
        ERR_clear_error();
        if (strcmp(block.name, PEM_STRING_PUBLIC) != 0 || block.header[0] != '\0')
                return -EINVAL;

        p = block.data;
        pkey = d2i_PUBKEY(NULL, &p, block.len);
        if (!pkey || p != block.data + block.len) {
                ERR_clear_error();
                return -EINVAL;
        }
        if (!kh_audit_key_algorithm(pkey))
                return -EINVAL;

        *ret = KH_TAKE_PTR(pkey);
        return 0;
}

const char *kh_audit_key_algorithm(EVP_PKEY *pub) {
        int bits;

        if (!pub)
                return NULL;
        if (kh_ec_is_p256(pub))
                return KH_AUDIT_ALG_ECDSA;
        bits = EVP_PKEY_get_bits(pub);
        if (EVP_PKEY_is_a(pub, "RSA") && bits >= 2048 && bits <= 8192)
                return KH_AUDIT_ALG_RSA_PSS;
        return NULL;
}

int kh_audit_signature_verify(EVP_PKEY *pub, const uint8_t digest[static KH_AUDIT_HASH_LEN],
                              const uint8_t *sig, size_t sig_len) {
        if (kh_ec_is_p256(pub))
                return kh_ecdsa_verify(pub, digest, sig, sig_len);
        return kh_rsa_pss_verify(pub, digest, sig, sig_len);
}

int kh_audit_verifier_new(EVP_PKEY *pub, struct kh_audit_verifier **ret) {
        struct kh_audit_verifier *v;

        if (!kh_audit_key_algorithm(pub))
                return -EINVAL;
        v = calloc(1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        if (EVP_PKEY_up_ref(pub) != 1) {
                free(v);
                return -ENOMEM;
        }
        v->pub = pub;
        *ret = v;
        return 0;
}

struct kh_audit_verifier *kh_audit_verifier_free(struct kh_audit_verifier *v) {
        if (v) {
                EVP_PKEY_free(v->pub);
                free(v);
        }
        return NULL;
}

void kh_audit_verifier_expect(struct kh_audit_verifier *v, const struct kh_audit_verify_expect *e) {
        assert(v->position == 0); /* before the first record */
        v->expect = *e;
}

/* The seq the current record should carry; 0 when it is the first and no first seq is
 * expected (any would do). */
static uint64_t next_seq(const struct kh_audit_verifier *v) {
        return v->res.records ? v->last_seq + 1 : v->expect.first_seq;
}

static int fail(struct kh_audit_verifier *v, unsigned step, uint64_t seq, const char *reason) {
        v->failed = true;
        v->res.first_bad_seq = seq;
        v->res.step = step;
        v->res.line = v->position;
        v->res.reason = reason;
        return -KH_E_INTEGRITY;
}

/* Steps 2-6 on a well-formed record, at v->position. */
static int check(struct kh_audit_verifier *v, const struct kh_audit_record *rec) {
        static const uint8_t zero[KH_AUDIT_HASH_LEN];
        const bool first = v->res.records == 0;
        const bool checkpoint = strcmp(rec->action, KH_AUDIT_ACTION_CHECKPOINT) == 0;
        const uint64_t want = next_seq(v);
        uint8_t h[KH_AUDIT_HASH_LEN];

        if (!first && strcmp(rec->tenant, v->tenant) != 0)
                return fail(v, 2, rec->seq, "other tenant");
        if (!first && strcmp(rec->replica ? rec->replica : "", v->replica) != 0)
                return fail(v, 2, rec->seq, "other replica");
        if (want != 0 && rec->seq != want)
                return fail(v, 3, want, rec->seq > want ? "seq gap" : "seq out of order");
        /* The first record of an export --since, or of a pruned chain, links to a record
         * the file does not hold: its prev_hash is taken as given (the next checkpoint's
         * signature covers it through this record's hash). */
        if (first ? rec->seq == 1 && memcmp(rec->prev_hash, zero, sizeof(zero)) != 0
                  : memcmp(rec->prev_hash, v->last_hash, sizeof(v->last_hash)) != 0)
                return fail(v, 4, rec->seq, "prev_hash mismatch");
        kh_audit_record_hash(rec, h);
        if (memcmp(h, rec->hash, sizeof(h)) != 0)
                return fail(v, 5, rec->seq, "hash mismatch");
        if (checkpoint) {
                uint8_t digest[KH_AUDIT_HASH_LEN];
                int r;

                kh_audit_checkpoint_digest(rec->tenant, rec->replica, rec->seq, rec->hash, digest);
                r = kh_audit_signature_verify(v->pub, digest, rec->signature, rec->signature_len);
                if (r == -KH_E_INTEGRITY)
                        return fail(v, 6, rec->seq, "bad signature");
                if (r < 0) {
                        v->position--; /* not checked: as if never fed */
                        return r;
                }
        }

        if (first) {
                memcpy(v->tenant, rec->tenant, strlen(rec->tenant) + 1);
                (void) snprintf(v->replica, sizeof(v->replica), "%s",
                                rec->replica ? rec->replica : "");
                v->res.first_seq = rec->seq;
        }
        v->res.records++;
        v->last_seq = rec->seq;
        memcpy(v->last_hash, rec->hash, sizeof(v->last_hash));
        if (checkpoint) {
                v->res.checkpoints++;
                v->res.signed_through = rec->seq;
                v->records_signed = v->res.records;
        }
        return 0;
}

int kh_audit_verifier_add(struct kh_audit_verifier *v, const struct kh_audit_record *rec) {
        if (v->failed)
                return -KH_E_INTEGRITY;
        v->position++;
        if (!kh_audit_record_is_valid(rec))
                return fail(v, 1,
                            rec->seq >= 1 && rec->seq <= KH_AUDIT_SEQ_MAX ? rec->seq
                                                                          : next_seq(v),
                            "malformed: record");
        return check(v, rec);
}

int kh_audit_verifier_add_line(struct kh_audit_verifier *v, const char *line, size_t len) {
        const char *reason = NULL;
        int r;

        if (v->failed)
                return -KH_E_INTEGRITY;
        v->position++;
        r = kh_audit_json_parse(line, len, &v->parsed, &reason);
        if (r == -EINVAL) /* the seq the line carries, if it could be read */
                return fail(v, 1, v->parsed.rec.seq ? v->parsed.rec.seq : next_seq(v), reason);
        if (r < 0) {
                v->position--;
                return r;
        }
        return check(v, &v->parsed.rec);
}

void kh_audit_verifier_result(const struct kh_audit_verifier *v,
                              struct kh_audit_verify_result *ret) {
        struct kh_audit_verify_result res = v->res;

        res.unsigned_records = res.records - v->records_signed;
        res.ok = !v->failed && res.records > 0;
        if (!v->failed && res.records == 0)
                res.reason = "no records"; /* step, line and first_bad_seq stay 0 */
        if (res.ok && v->last_seq < v->expect.through_seq) {
                res.ok = false;
                res.first_bad_seq = v->last_seq + 1;
                res.step = 3;
                res.line = v->position + 1;
                res.reason = "truncated";
        }
        *ret = res;
}

/* Lines of a stream, each at most KH_AUDIT_LINE_MAX bytes, through one fixed buffer. */
struct reader {
        FILE *f;
        char *buf; /* KH_AUDIT_LINE_MAX + 1 bytes: a whole line and its newline */
        size_t start, end;
        bool eof;
};

/* The next line, without its newline: returns 1 and sets *line and *len; 0 at the end;
 * -E2BIG for a line longer than KH_AUDIT_LINE_MAX (*line then holds its first
 * KH_AUDIT_LINE_MAX + 1 bytes); -EIO on a read error. */
static int next_line(struct reader *rd, const char **line, size_t *len) {
        for (;;) {
                char *s = rd->buf + rd->start;
                size_t have = rd->end - rd->start, n;
                char *nl = memchr(s, '\n', have);

                if (nl) {
                        *line = s;
                        *len = (size_t) (nl - s);
                        rd->start += *len + 1;
                        return 1;
                }
                if (have > KH_AUDIT_LINE_MAX) {
                        *line = s;
                        *len = have;
                        return -E2BIG;
                }
                if (rd->eof) {
                        if (have == 0)
                                return 0;
                        *line = s; /* the last line, without a newline */
                        *len = have;
                        rd->start = rd->end;
                        return 1;
                }
                memmove(rd->buf, s, have);
                rd->start = 0;
                rd->end = have;
                n = fread(rd->buf + rd->end, 1, KH_AUDIT_LINE_MAX + 1 - rd->end, rd->f);
                rd->end += n;
                if (n == 0) {
                        if (ferror(rd->f))
                                return -EIO;
                        rd->eof = true;
                }
        }
}

/* One replica's chain in a file: its own verifier, and where in the file it failed. */
struct chain_state {
        char replica[KH_AUDIT_REPLICA_MAX + 1];
        struct kh_audit_verifier *v;
        uint64_t fail_line; /* the file's line of its first failure; 0 while none */
};

struct chains {
        struct chain_state *c;
        size_t n;
        EVP_PKEY *pub;
        const struct kh_audit_verify_expect *expect;
        struct kh_audit_parsed parsed; /* the dispatcher's parse of each line */
};

static void chains_clear(struct chains *cs) {
        for (size_t i = 0; i < cs->n; i++)
                kh_audit_verifier_free(cs->c[i].v);
        free(cs->c);
}

/* The verifier of replica's chain, made at its first record. NULL with *ret_err set
 * (-ENOMEM, -EINVAL) or, past KH_AUDIT_VERIFY_CHAINS_MAX chains, with *ret_err 0. */
static struct chain_state *chain_get(struct chains *cs, const char *replica, int *ret_err) {
        struct chain_state *c;

        *ret_err = 0;
        for (size_t i = 0; i < cs->n; i++)
                if (strcmp(cs->c[i].replica, replica) == 0)
                        return &cs->c[i];
        if (cs->n == KH_AUDIT_VERIFY_CHAINS_MAX)
                return NULL;
        c = realloc(cs->c, (cs->n + 1) * sizeof(*c));
        if (!c) {
                *ret_err = -ENOMEM;
                return NULL;
        }
        cs->c = c;
        c = &cs->c[cs->n];
        *c = (struct chain_state) { 0 };
        (void) snprintf(c->replica, sizeof(c->replica), "%s", replica);
        *ret_err = kh_audit_verifier_new(cs->pub, &c->v);
        if (*ret_err < 0)
                return NULL;
        /* the expectations come from one server's export (--first-seq after a key store
         * move, --through-seq its head): the unnamed replica's chain */
        if (cs->expect && !replica[0])
                kh_audit_verifier_expect(c->v, cs->expect);
        cs->n++;
        return c;
}

/* The result of every chain into chains[] (if not NULL) and their sum into ret. */
static void chains_result(const struct chains *cs, uint64_t lines,
                          struct kh_audit_verify_chain *chains, size_t *ret_n,
                          struct kh_audit_verify_result *ret) {
        uint64_t bad_line = UINT64_MAX;

        *ret = (struct kh_audit_verify_result) { .ok = cs->n > 0 };
        if (cs->n == 0)
                ret->reason = "no records";
        for (size_t i = 0; i < cs->n; i++) {
                struct kh_audit_verify_result r;

                kh_audit_verifier_result(cs->c[i].v, &r);
                /* the chain's verifier counts its own records: the file's line is ours */
                r.line = cs->c[i].fail_line ? cs->c[i].fail_line : r.ok ? 0 : lines + 1;
                ret->records += r.records;
                ret->checkpoints += r.checkpoints;
                ret->unsigned_records += r.unsigned_records;
                if (i == 0) {
                        ret->first_seq = r.first_seq;
                        ret->signed_through = r.signed_through;
                }
                if (!r.ok) {
                        ret->ok = false;
                        if (r.line < bad_line) {
                                bad_line = r.line;
                                ret->first_bad_seq = r.first_bad_seq;
                                ret->step = r.step;
                                ret->line = r.line;
                                ret->reason = r.reason;
                        }
                }
                if (chains) {
                        chains[i] = (struct kh_audit_verify_chain) { .res = r };
                        memcpy(chains[i].replica, cs->c[i].replica, sizeof(chains[i].replica));
                }
        }
        if (ret_n)
                *ret_n = cs->n;
}

int kh_audit_verify_stream_chains(FILE *f, EVP_PKEY *pub, const struct kh_audit_verify_expect *e,
                                  struct kh_audit_verify_result *ret,
                                  struct kh_audit_verify_chain *chains, size_t *ret_n) {
        KH_CLEANUP_FREE char *buf = NULL;
        KH_CLEANUP_FREE struct chains *cs = NULL;
        struct reader rd = { .f = f };
        char last[KH_AUDIT_REPLICA_MAX + 1] = ""; /* the replica of the line before */
        uint64_t lines = 0;
        bool too_many = false;
        int r = 0;

        if (!kh_audit_key_algorithm(pub))
                return -EINVAL;
        buf = malloc(KH_AUDIT_LINE_MAX + 1);
        cs = calloc(1, sizeof(*cs));
        if (!buf || !cs)
                return -ENOMEM;
        cs->pub = pub;
        cs->expect = e;
        rd.buf = buf;

        for (bool too_long = false; !too_long;) {
                struct chain_state *c;
                const char *line, *reason = NULL;
                size_t len;
                int err;

                r = next_line(&rd, &line, &len);
                if (r == 0)
                        break;
                if (r < 0 && r != -E2BIG)
                        goto out;
                /* the reader cannot step over a line too long: it ends the file here */
                too_long = r == -E2BIG;
                lines++;
                /* A line that does not parse names no chain: it is the failure of the chain
                 * of the line before (the one it interrupts), whose verifier reads it again
                 * and gives the reason. A line too long (-E2BIG) is handed over as its first
                 * KH_AUDIT_LINE_MAX + 1 bytes, which the parser refuses as such. */
                r = kh_audit_json_parse(line, len, &cs->parsed, &reason);
                if (r == -ENOMEM)
                        goto out;
                if (r == 0)
                        (void) snprintf(last, sizeof(last), "%s",
                                        cs->parsed.rec.replica ? cs->parsed.rec.replica : "");
                c = chain_get(cs, last, &err);
                if (!c && err < 0) {
                        r = err;
                        goto out;
                }
                if (!c) {
                        too_many = true; /* more chains than an export holds */
                        break;
                }
                if (c->fail_line)
                        continue; /* that chain's verdict is in: the others go on */
                r = r == 0 ? kh_audit_verifier_add(c->v, &cs->parsed.rec)
                           : kh_audit_verifier_add_line(c->v, line, len);
                if (r == -KH_E_INTEGRITY) {
                        c->fail_line = lines;
                        continue;
                }
                if (r < 0)
                        goto out;
        }
        chains_result(cs, lines, chains, ret_n, ret);
        if (too_many) {
                ret->ok = false;
                ret->step = 1;
                ret->line = lines;
                ret->first_bad_seq = cs->parsed.rec.seq;
                ret->reason = "malformed: too many chains";
        }
        r = 0;
out:
        chains_clear(cs);
        return r;
}

int kh_audit_verify_stream_expect(FILE *f, EVP_PKEY *pub, const struct kh_audit_verify_expect *e,
                                  struct kh_audit_verify_result *ret) {
        return kh_audit_verify_stream_chains(f, pub, e, ret, NULL, NULL);
}

int kh_audit_verify_stream(FILE *f, EVP_PKEY *pub, struct kh_audit_verify_result *ret) {
        return kh_audit_verify_stream_expect(f, pub, NULL, ret);
}

int kh_audit_verify_file_expect(const char *path, const char *pubkey_pem_path,
                                const struct kh_audit_verify_expect *e,
                                struct kh_audit_verify_result *ret) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        KH_CLEANUP(fclosep) FILE *f = NULL;
        int r;

        r = kh_audit_public_key_load(pubkey_pem_path, &pub);
        if (r < 0)
                return r;
        f = fopen(path, "re");
        if (!f)
                return -errno;
        return kh_audit_verify_stream_expect(f, pub, e, ret);
}

int kh_audit_verify_file(const char *path, const char *pubkey_pem_path,
                         struct kh_audit_verify_result *ret) {
        return kh_audit_verify_file_expect(path, pubkey_pem_path, NULL, ret);
}
