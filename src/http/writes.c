/* Group commit of PUT/POST /user-keys. A synchronous commit costs a disk flush (0.2-0.4 ms
 * here), which would cap writes at a few thousand per second and stall the loop for each.
 * Instead a worker queues the writes it decodes during one pass of its loop and commits
 * them together on the loop's zero timeout, which h2o runs once that pass has read every
 * ready request; each request is answered only after the commit. The longer a flush
 * takes, the more requests the next pass finds waiting, so the batch grows with load.
 * Until the commit no reply has been sent, so a crash loses only unacknowledged writes. */
#include <string.h>

#include "common/errors.h"
#include "http/http-internal.h"
#include "service/user-keys.h"

static void on_flush(h2o_timeout_entry_t *entry) {
        kh_http_writes_flush(kh_container_of(entry, struct kh_http_worker, flush_entry));
}

int kh_http_write_enqueue(struct kh_http_req *req, const struct kh_principal *who,
                          struct kh_secret *key, bool replace) {
        struct kh_http_worker *w = req->worker;
        struct kh_pending_write *p;

        if (w->n_pending == KH_WRITE_BATCH_MAX)
                kh_http_writes_flush(w);
        p = &w->pending[w->n_pending++];
        *p = (struct kh_pending_write) {
                .h2o = req->h2o, .who = *who, .key = key, .replace = replace,
                .start_ns = kh_http_now_ns(),
        };
        if (!h2o_timeout_is_linked(&w->flush_entry)) {
                w->flush_entry.cb = on_flush;
                h2o_timeout_link(w->ctx.loop, &w->ctx.zero_timeout, &w->flush_entry);
        }
        return KH_HTTP_DEFERRED;
}

void kh_http_writes_flush(struct kh_http_worker *w) {
        int results[KH_WRITE_BATCH_MAX];
        size_t n = w->n_pending;
        int r;

        if (h2o_timeout_is_linked(&w->flush_entry))
                h2o_timeout_unlink(&w->flush_entry);
        if (n == 0)
                return;

        r = kh_service_batch_begin(w->svc);
        for (size_t i = 0; i < n; i++) {
                struct kh_pending_write *p = &w->pending[i];
                if (r < 0)
                        results[i] = r;
                else if (p->replace)
                        results[i] = kh_user_keys_put(w->svc, &p->who, p->key);
                else
                        results[i] = kh_user_keys_post(w->svc, &p->who, p->key);
        }
        if (r >= 0) {
                r = kh_service_batch_commit(w->svc);
                if (r < 0) {
                        kh_service_batch_abort(w->svc);
                        for (size_t i = 0; i < n; i++)
                                if (results[i] >= 0)
                                        results[i] = r;   /* none of them happened */
                }
        }

        for (size_t i = 0; i < n; i++) {
                struct kh_pending_write *p = &w->pending[i];
                struct kh_http_req req = { .h2o = p->h2o, .worker = w };

                if (results[i] < 0)
                        kh_http_reply_error(&req, results[i]);
                else
                        kh_http_reply(&req, 200, NULL, NULL, 0, false);
                kh_http_metrics_observe(&w->metrics, KH_ROUTE_USER_KEYS, req.status,
                                        kh_http_now_ns() - p->start_ns);
                p->key = kh_secret_free(p->key);
        }
        w->n_pending = 0;
}
