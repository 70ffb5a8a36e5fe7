"""Key Connector user-key routes: the Bitwarden-visible success paths, tenants, durability."""
import base64
import json
import threading

import storage
from harness import assert_empty_200, assert_error, assert_key, new_key

SPEC_VECTOR = "H09o4pZHsVrCUKzREYGEUYqnRaf+lQIbJ8VAKhbDVks="  # spec section 1 (32 bytes)

# What a Bitwarden web client sends (spec 2.3).
CLIENT_HEADERS = {"Accept": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache",
                  "Bitwarden-Client-Name": "web", "Bitwarden-Client-Version": "2026.11.0"}






def test_happy_path_get_post_get_post_put_get(client, default_issuer, user):
    tok = default_issuer.token(user)
    assert_error(client.get("/user-keys", token=tok), 404, "key_not_found")
    k1 = new_key()
    assert_empty_200(client.post("/user-keys", token=tok, json_body={"key": k1}))
    assert_key(client.get("/user-keys", token=tok), k1)
    assert_error(client.post("/user-keys", token=tok, json_body={"key": new_key()}), 400, "key_exists")
    assert_key(client.get("/user-keys", token=tok), k1)  # the refused POST changed nothing
    k2 = new_key()
    assert_empty_200(client.put("/user-keys", token=tok, json_body={"key": k2}))
    assert_key(client.get("/user-keys", token=tok), k2)


def test_get_body_is_exactly_one_key_member(client, default_issuer, user):
    tok = default_issuer.token(user)
    k = new_key()
    assert_empty_200(client.post("/user-keys", token=tok, json_body={"key": k}))
    r = client.get("/user-keys", token=tok)
    assert r.status == 200, r
    obj = json.loads(r.body)
    assert list(obj.keys()) == ["key"], r  # lowercase "key", nothing else
    assert base64.b64decode(obj["key"], validate=True) == base64.b64decode(k)


def test_spec_test_vector_round_trips(client, default_issuer, user):
    tok = default_issuer.token(user)
    assert_empty_200(client.post("/user-keys", token=tok, json_body={"key": SPEC_VECTOR}))
    assert_key(client.get("/user-keys", token=tok), SPEC_VECTOR)


def test_put_creates_missing_key(client, default_issuer, user):
    tok = default_issuer.token(user)
    k = new_key()
    assert_empty_200(client.put("/user-keys", token=tok, json_body={"key": k}))
    assert_key(client.get("/user-keys", token=tok), k)


def test_capitalised_Key_accepted_on_post_and_put(client, default_issuer, user):
    tok = default_issuer.token(user)
    k1, k2 = new_key(), new_key()
    assert_empty_200(client.post("/user-keys", token=tok, json_body={"Key": k1}))
    assert_key(client.get("/user-keys", token=tok), k1)
    assert_empty_200(client.put("/user-keys", token=tok, json_body={"Key": k2}))
    assert_key(client.get("/user-keys", token=tok), k2)  # response always lowercase "key"


def test_key_and_Key_together_is_invalid_body(client, default_issuer, user):
    tok = default_issuer.token(user)
    body = {"key": new_key(), "Key": new_key()}
    assert_error(client.post("/user-keys", token=tok, json_body=body), 400, "invalid_body")
    assert_error(client.put("/user-keys", token=tok, json_body=body), 400, "invalid_body")
    assert_error(client.get("/user-keys", token=tok), 404, "key_not_found")  # nothing stored


def test_bitwarden_client_headers_and_charset(client, default_issuer, user):
    tok = default_issuer.token(user)
    k = new_key()
    hdrs = dict(CLIENT_HEADERS, **{"Content-Type": "application/json; charset=utf-8"})
    assert_empty_200(client.post("/user-keys", token=tok, body=json.dumps({"key": k}), headers=hdrs))
    assert_key(client.get("/user-keys", token=tok, headers=CLIENT_HEADERS), k)


def test_sso_user_amr_external(client, default_issuer, user):
    tok = default_issuer.token(user, amr=["external"])
    k = new_key()
    assert_empty_200(client.post("/user-keys", token=tok, json_body={"key": k}))
    assert_key(client.get("/user-keys", token=tok), k)


def test_users_are_isolated(client, default_issuer):
    from tokens import new_guid
    a, b = new_guid(), new_guid()
    ta, tb = default_issuer.token(a), default_issuer.token(b)
    ka = new_key()
    assert_empty_200(client.post("/user-keys", token=ta, json_body={"key": ka}))
    assert_error(client.get("/user-keys", token=tb), 404, "key_not_found")
    kb = new_key()
    assert_empty_200(client.post("/user-keys", token=tb, json_body={"key": kb}))
    assert_key(client.get("/user-keys", token=ta), ka)
    assert_key(client.get("/user-keys", token=tb), kb)


def test_tenants_hold_independent_keys_for_same_guid(client, default_issuer, acme_issuer, user):
    td, ta = default_issuer.token(user), acme_issuer.token(user)
    ka = new_key()
    assert_empty_200(client.post("/t/acme/user-keys", token=ta, json_body={"key": ka}))
    assert_error(client.get("/user-keys", token=td), 404, "key_not_found")
    kd = new_key()
    assert_empty_200(client.post("/user-keys", token=td, json_body={"key": kd}))
    assert_key(client.get("/t/acme/user-keys", token=ta), ka)
    assert_key(client.get("/user-keys", token=td), kd)
    ka2 = new_key()
    assert_empty_200(client.put("/t/acme/user-keys", token=ta, json_body={"key": ka2}))
    assert_key(client.get("/t/acme/user-keys", token=ta), ka2)
    assert_key(client.get("/user-keys", token=td), kd)


def test_explicit_default_tenant_path_is_bare_route(client, default_issuer, user):
    # "default" serves the bare routes; /t/default/... must reach the same tenant if routed.
    tok = default_issuer.token(user)
    k = new_key()
    assert_empty_200(client.post("/user-keys", token=tok, json_body={"key": k}))
    assert_key(client.get("/t/default/user-keys", token=tok), k)


def test_acme_token_rejected_on_default_tenant(client, default_issuer, acme_issuer, user):
    ta = acme_issuer.token(user)
    assert_empty_200(client.post("/t/acme/user-keys", token=ta, json_body={"key": new_key()}))
    for method in ("GET", "POST", "PUT"):
        body = None if method == "GET" else {"key": new_key()}
        assert_error(client.request(method, "/user-keys", token=ta, json_body=body),
                     401, "invalid_token")
    assert_error(client.get("/user-keys", token=default_issuer.token(user)), 404, "key_not_found")


def test_default_token_rejected_on_acme_tenant(client, default_issuer, acme_issuer, user):
    td = default_issuer.token(user)
    assert_empty_200(client.post("/user-keys", token=td, json_body={"key": new_key()}))
    for method in ("GET", "POST", "PUT"):
        body = None if method == "GET" else {"key": new_key()}
        assert_error(client.request(method, "/t/acme/user-keys", token=td, json_body=body),
                     401, "invalid_token")
    assert_error(client.get("/t/acme/user-keys", token=acme_issuer.token(user)), 404, "key_not_found")


def test_token_signed_by_acme_key_with_default_iss_rejected(client, default_issuer, acme_issuer, user):
    # Same kid "key-1", the default tenant's iss, but acme's private key: only the signature
    # check can refuse it.
    from tokens import claims, mint
    tok = mint(claims(user, default_issuer.iss), acme_issuer.private_key("key-1"), "key-1")
    assert_error(client.get("/user-keys", token=tok), 401, "invalid_token")


def test_unknown_tenant_is_404_before_auth(client, default_issuer, user):
    assert_error(client.get("/t/nosuch/user-keys"), 404, "unknown_tenant")  # no token at all
    assert_error(client.post("/t/nosuch/user-keys", json_body={"key": new_key()}), 404, "unknown_tenant")
    assert_error(client.get("/t/nosuch/user-keys", token=default_issuer.token(user)),
                 404, "unknown_tenant")


def test_concurrent_posts_exactly_one_wins(keyholdd, default_issuer, user):
    tok = default_issuer.token(user)
    keys = [new_key() for _ in range(8)]
    results: list = [None] * len(keys)
    barrier = threading.Barrier(len(keys))

    def post(i):
        conn = keyholdd.client.connect()
        conn.connect()  # TLS handshake before the barrier, so the POSTs really overlap
        barrier.wait()
        results[i] = keyholdd.client.post("/user-keys", token=tok, json_body={"key": keys[i]},
                                          conn=conn)
        conn.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(keys))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [i for i, r in enumerate(results) if r is not None and r.status == 200]
    assert len(winners) == 1, results
    for i, r in enumerate(results):
        if i != winners[0]:
            assert_error(r, 400, "key_exists")
    assert_key(keyholdd.client.get("/user-keys", token=tok), keys[winners[0]])


def test_keys_survive_kill_9_after_acknowledged_put(make_keyholdd, default_issuer, acme_issuer, user):
    k = make_keyholdd()
    td, ta = default_issuer.token(user), acme_issuer.token(user)
    kd1, kd2, ka = new_key(), new_key(), new_key()
    assert_empty_200(k.client.post("/user-keys", token=td, json_body={"key": kd1}))
    assert_empty_200(k.client.post("/t/acme/user-keys", token=ta, json_body={"key": ka}))
    assert_empty_200(k.client.put("/user-keys", token=td, json_body={"key": kd2}))
    k.kill()  # SIGKILL right after the acknowledged PUT: it must already be durable
    k.start()
    assert_key(k.client.get("/user-keys", token=td), kd2)
    assert_key(k.client.get("/t/acme/user-keys", token=ta), ka)


def test_sigterm_exits_zero_and_restart_keeps_keys(make_keyholdd, default_issuer, user):
    k = make_keyholdd()
    tok = default_issuer.token(user)
    key = new_key()
    assert_empty_200(k.client.post("/user-keys", token=tok, json_body={"key": key}))
    assert k.stop() == 0, k.log()
    k.start()
    assert_key(k.client.get("/user-keys", token=tok), key)
    assert_error(k.client.post("/user-keys", token=tok, json_body={"key": new_key()}), 400, "key_exists")


def test_database_holds_no_plaintext_key(make_keyholdd, default_issuer, user):
    k = make_keyholdd()
    tok = default_issuer.token(user)
    key = new_key()
    raw = base64.b64decode(key)
    assert_empty_200(k.client.post("/user-keys", token=tok, json_body={"key": key}))
    k.stop()  # exit status checked by test_sigterm_exits_zero_and_restart_keeps_keys
    rows = storage.query(k.db_path, "SELECT owner, blob FROM records")
    blobs = [bytes(b) for o, b in rows if o == user]
    assert len(blobs) == 1, rows
    assert raw not in blobs[0] and key.encode() not in blobs[0]
    for f in k.data.rglob("*"):  # also not in the WAL, journal or key store files
        if f.is_file():
            data = f.read_bytes()
            assert raw not in data and key.encode() not in data, f


def _no_store(r) -> None:
    assert r.header("Cache-Control") == "no-store", r
    assert r.header("Pragma") == "no-cache", r


def test_every_user_keys_answer_forbids_caching(client, default_issuer, acme_issuer, user):
    """A member's key, or why there is none, must not stay in any cache on the way: every
    answer of an authenticated route says no-store (and Pragma no-cache for old proxies),
    errors and deferred write replies included."""
    tok = default_issuer.token(user)
    k = new_key()
    _no_store(client.get("/user-keys"))                                        # 401
    _no_store(client.get("/user-keys", token=tok))                             # 404
    _no_store(client.post("/user-keys", token=tok, json_body={"key": k}))      # 200 after commit
    _no_store(client.post("/user-keys", token=tok, json_body={"key": k}))      # 400 key_exists
    _no_store(client.put("/user-keys", token=tok, json_body={"key": k}))
    r = client.get("/user-keys", token=tok)
    assert_key(r, k)
    _no_store(r)
    _no_store(client.delete("/user-keys", token=tok))                          # 405
    _no_store(client.get("/t/acme/user-keys", token=acme_issuer.token(user)))  # another tenant
    assert client.get("/alive").header("Cache-Control") is None                # public: untouched
