/* One audit record as `keyhold audit tail` shows it to a human: one line, the fields that
 * say what happened first, the optional ones only when they carry something. Every string
 * from the server is made safe for a terminal (output.h). */
#pragma once

#include <jansson.h>

/**
 * kh_audit_line_format() - rec (a record object as GET /admin/audit answers it) as one line
 * without its newline:
 *
 *     SEQ  TIME  ACTOR  ACTION  TARGET  OUTCOME[  key_version=N][  client=C][  request_id=R][  count=N][  replica=NAME]
 *
 * An empty or missing target shows "-", as does any other missing field; key_version only
 * when not 0, count only when not 1, client, request_id and replica only when not empty
 * (replica: a named replica's chain, docs/audit.md "Replicas"). A checkpoint's
 * signature is not shown. Returns a new string (the caller frees it), or NULL when out of
 * memory.
 */
char *kh_audit_line_format(const json_t *rec);
