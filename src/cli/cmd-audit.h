/* What cmd-audit.c offers beside its handlers (commands.h): the parts of `keyhold audit ...`
 * that the unit tests check on their own. */
#pragma once

#include "audit/verify.h"
#include "common/cleanup.h"

struct kh_cli;

/**
 * kh_cli_audit_verify_expect() - what `audit verify --first-seq N --through-seq N` states
 * about the chain, as the verifier's expectations (audit/verify.h).
 * @ret: first_seq and through_seq, 0 for an option not given; written only on success.
 *
 * Each option is a seq, 1 to 2^63-1 (the largest a record carries); --through-seq below
 * --first-seq names no chain. Returns 0, or 2 after reporting a usage error.
 */
KH_MUST_CHECK int kh_cli_audit_verify_expect(struct kh_cli *cli,
                                             struct kh_audit_verify_expect *ret);
