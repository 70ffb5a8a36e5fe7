"""Sealed records are bound to (tenant, kind, owner, key version) by AES-GCM associated data
(DESIGN "Keys and envelope encryption"): ciphertext moved between rows must fail to open,
with a JSON "record_integrity" error, a counted failure, and never another user's key."""
import base64

from harness import assert_error, new_key, poll_until
import storage
import tokens


def _integrity_failures(k) -> float:
    return k.metrics().sum("keyhold_integrity_failures_total")


def _post(k, issuer, user, path="/user-keys") -> str:
    key = new_key()
    r = k.client.post(path, token=issuer.token(user), json_body={"key": key})
    assert r.status == 200 and r.body == b"", r
    return key


def _edit_db(k, fn) -> None:
    # The exit status of a SIGTERM stop is checked by test_user_keys and the session
    # teardown; here only the database matters.
    k.stop()
    with storage.edit(k.db_path) as db:
        fn(db)
    k.start()


def _blob(db, tenant, owner) -> bytes:
    rows = db.execute("SELECT blob FROM records WHERE tenant = ? AND owner = ?", (tenant, owner)).fetchall()
    assert len(rows) == 1, rows
    return bytes(rows[0][0])


def _set_blob(db, tenant, owner, blob) -> None:
    cur = db.execute("UPDATE records SET blob = ? WHERE tenant = ? AND owner = ?", (blob, tenant, owner))
    assert cur.rowcount == 1


def _assert_integrity_error(r, *forbidden_keys) -> None:
    assert_error(r, 500, "record_integrity")
    for key in forbidden_keys:
        assert key.encode() not in r.body, r
        assert base64.b64decode(key) not in r.body, r


def test_swapped_blobs_between_users(make_keyholdd, default_issuer):
    k = make_keyholdd()
    a, b, c = tokens.new_guid(), tokens.new_guid(), tokens.new_guid()
    ka, kb, kc = _post(k, default_issuer, a), _post(k, default_issuer, b), _post(k, default_issuer, c)

    def swap(db):
        ba, bb = _blob(db, "default", a), _blob(db, "default", b)
        assert ba != bb
        _set_blob(db, "default", a, bb)
        _set_blob(db, "default", b, ba)
    _edit_db(k, swap)

    before = _integrity_failures(k)
    assert before == 0
    _assert_integrity_error(k.client.get("/user-keys", token=default_issuer.token(a)), ka, kb)
    _assert_integrity_error(k.client.get("/user-keys", token=default_issuer.token(b)), ka, kb)
    after = poll_until(lambda: (v := _integrity_failures(k)) >= before + 2 and v)
    assert after == before + 2, (before, after)
    # The untouched user still reads their key, and the server keeps serving.
    r = k.client.get("/user-keys", token=default_issuer.token(c))
    assert r.status == 200 and r.json() == {"key": kc}, r
    assert k.alive()


def test_blob_copied_across_tenants(make_keyholdd, default_issuer, acme_issuer):
    k = make_keyholdd()
    u = tokens.new_guid()
    kd = _post(k, default_issuer, u)
    ka = _post(k, acme_issuer, u, "/t/acme/user-keys")

    def copy(db):
        _set_blob(db, "default", u, _blob(db, "acme", u))
    _edit_db(k, copy)

    _assert_integrity_error(k.client.get("/user-keys", token=default_issuer.token(u)), ka, kd)
    r = k.client.get("/t/acme/user-keys", token=acme_issuer.token(u))
    assert r.status == 200 and r.json() == {"key": ka}, r
    assert poll_until(lambda: _integrity_failures(k) == 1), k.metrics().text


def test_row_moved_to_another_owner(make_keyholdd, default_issuer):
    k = make_keyholdd()
    a, b = tokens.new_guid(), tokens.new_guid()
    ka = _post(k, default_issuer, a)

    def move(db):
        cur = db.execute("UPDATE records SET owner = ? WHERE tenant = 'default' AND owner = ?", (b, a))
        assert cur.rowcount == 1
    _edit_db(k, move)

    _assert_integrity_error(k.client.get("/user-keys", token=default_issuer.token(b)), ka)
    assert_error(k.client.get("/user-keys", token=default_issuer.token(a)), 404, "key_not_found")


def test_flipped_ciphertext_bit(make_keyholdd, default_issuer):
    k = make_keyholdd()
    u = tokens.new_guid()
    key = _post(k, default_issuer, u)

    def flip(db):
        blob = bytearray(_blob(db, "default", u))
        blob[len(blob) // 2] ^= 0x80
        _set_blob(db, "default", u, bytes(blob))
    _edit_db(k, flip)

    _assert_integrity_error(k.client.get("/user-keys", token=default_issuer.token(u)), key)
    # PUT replaces the damaged record; the user can store a new key.
    k2 = new_key()
    r = k.client.put("/user-keys", token=default_issuer.token(u), json_body={"key": k2})
    assert r.status == 200, r
    r = k.client.get("/user-keys", token=default_issuer.token(u))
    assert r.status == 200 and r.json() == {"key": k2}, r
