/* A pool of sessions on one token, so that threads of one process use the token at once:
 * each operation borrows a session and gives it back. The pool starts with the session of
 * the kh_p11 it is made on (the primary: it holds the module and the login) and opens more
 * when every open one is lent out, up to its size (kh_p11_session_open(): PKCS#11 login is
 * per application and token, so they are all logged in by the primary's one C_Login). A
 * thread that finds size sessions lent out waits for one, KH_P11_POOL_WAIT_MS at most.
 * Only the key store backend (pkcs11-keystore.c) uses it. */
#pragma once

#include "keystore/pkcs11/module-internal.h"

struct kh_p11_pool;

#define KH_P11_POOL_SIZE_MAX 64
#define KH_P11_POOL_WAIT_MS 30000 /* a borrower waits this long for a session at most */

/* A pool of up to size (1..KH_P11_POOL_SIZE_MAX) sessions, the first being primary's (which
 * the pool borrows: the caller frees primary after the pool). Returns 0, -EINVAL or
 * -ENOMEM. */
KH_MUST_CHECK int kh_p11_pool_new(struct kh_p11 *primary, unsigned size,
                                  struct kh_p11_pool **ret);

/* Waits until every session is back, closes all but the primary's and frees the pool.
 * NULL-safe; returns NULL. */
struct kh_p11_pool *kh_p11_pool_free(struct kh_p11_pool *pool);
KH_DEFINE_CLEANUP(kh_p11_pool_free, struct kh_p11_pool *)

/* A session for one operation into *ret (one thread uses it until kh_p11_pool_put()).
 * Returns 0, -KH_E_BUSY (none came back within KH_P11_POOL_WAIT_MS), or an error of
 * kh_p11_session_open() (-KH_E_KEYSTORE_UNAVAILABLE: the token or its login is gone). */
KH_MUST_CHECK int kh_p11_pool_get(struct kh_p11_pool *pool, struct kh_p11 **ret);

/* Gives s back. */
void kh_p11_pool_put(struct kh_p11_pool *pool, struct kh_p11 *s);

/* Waits until every session is back and lends none until kh_p11_pool_resume(); closes every
 * session but the primary's, so that the primary may be reconnected (kh_p11_reconnect()).
 * Borrowers meanwhile wait (as for a session in use). One drain at a time: a second waits
 * for the first's resume. */
void kh_p11_pool_drain(struct kh_p11_pool *pool);
void kh_p11_pool_resume(struct kh_p11_pool *pool);

/* How many sessions are open now (tests). */
unsigned kh_p11_pool_open_count(struct kh_p11_pool *pool);
