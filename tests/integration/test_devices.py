"""Trusted devices on the real keyholdd: Bitwarden's device routes (spec/trusted-devices.md
sections 3 and 8), account-recovery enrolment, and the admin routes for a member's devices
and a member leaving. Trust values are made here as a Bitwarden client makes them (type 4
to the device key, type 2 under the user and device keys) with the cryptography module."""
import base64
import os
import pathlib
import sys
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import harness
import storage
from harness import assert_error

# Bitwarden's client-side formats, one implementation for every Python test (tests/interop)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "interop"))
from bwcrypto import encrypt_type2 as type2, encrypt_type4 as type4  # noqa: E402,F401

ADMINS = "role:keyhold-admin"


def trust_values(user_key: bytes) -> dict:
    device_key = os.urandom(64)
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = priv.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs8 = priv.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    return {"encryptedUserKey": type4(priv.public_key(), user_key),
            "encryptedPublicKey": type2(user_key, spki),
            "encryptedPrivateKey": type2(device_key, pkcs8)}


@pytest.fixture(scope="module")
def k(pki, issuers, tmp_path_factory):
    d = harness.Keyholdd(tmp_path_factory.mktemp("keyholdd-devices"), pki,
                         {"default": {"issuer": issuers["default"], "admins": ADMINS},
                          "acme": {"issuer": issuers["acme"], "admins": ADMINS}})
    yield from harness.serve(d)


@pytest.fixture
def member(default_issuer):
    sub = str(uuid.uuid4())
    email = f"m-{sub[:8]}@Example.test"
    return sub, default_issuer.token(sub, email=email), email


def auth(tok, **extra):
    return {"Authorization": f"Bearer {tok}", **extra}


def register(k, tok, identifier=None, name="laptop", type_=8, prefix=""):
    identifier = identifier or str(uuid.uuid4())
    r = k.client.post(prefix + "/devices", json_body={"type": type_, "name": name, "identifier": identifier},
                      headers=auth(tok))
    assert r.status == 200, r
    return r.json()


def bw_error(r, status, code):
    body = assert_error(r, status, code)
    assert body.get("object") == "error", r
    return body


# ----------------------------------------------------------------------------- register, trust

def test_register_then_again_keeps_the_id(k, member):
    _, tok, _ = member
    d = register(k, tok, name="one", type_=8)
    assert d["object"] == "device" and d["name"] == "one" and d["type"] == 8
    assert d["isTrusted"] is False and d["encryptedUserKey"] is None
    assert str(uuid.UUID(d["id"])) == d["id"]
    assert d["creationDate"].endswith("Z") and "encryptedPrivateKey" not in d
    again = register(k, tok, identifier=d["identifier"], name="two", type_=9)
    assert again["id"] == d["id"] and again["name"] == "two" and again["type"] == 9
    r = k.client.get("/devices", headers=auth(tok))
    assert r.status == 200, r
    body = r.json()
    assert body["object"] == "list" and body["continuationToken"] is None
    assert [x["id"] for x in body["data"]] == [d["id"]]


def test_trust_and_read_back(k, member):
    _, tok, _ = member
    d = register(k, tok)
    vals = trust_values(os.urandom(64))
    r = k.client.put(f"/devices/{d['identifier']}/keys", json_body=vals, headers=auth(tok))
    assert r.status == 200, r
    m = r.json()
    assert m["isTrusted"] is True
    assert m["encryptedUserKey"] == vals["encryptedUserKey"]
    assert m["encryptedPublicKey"] == vals["encryptedPublicKey"]
    assert "encryptedPrivateKey" not in m
    r = k.client.get(f"/devices/identifier/{d['identifier']}", headers=auth(tok))
    assert r.status == 200 and r.json()["id"] == d["id"], r
    r = k.client.get(f"/devices/{d['id']}", headers=auth(tok))
    assert r.status == 200 and r.json()["isTrusted"] is True, r
    r = k.client.post(f"/devices/{d['identifier']}/retrieve-keys", headers=auth(tok))
    assert r.status == 200, r
    p = r.json()
    assert p["object"] == "protectedDevice" and p["encryptedUserKey"] == vals["encryptedUserKey"]
    # POST (the obsolete form) sets keys too
    vals2 = trust_values(os.urandom(64))
    r = k.client.post(f"/devices/{d['identifier']}/keys", json_body=vals2, headers=auth(tok))
    assert r.status == 200 and r.json()["encryptedUserKey"] == vals2["encryptedUserKey"], r


def test_trust_values_are_sealed_in_the_database(make_keyholdd, default_issuer):
    k = make_keyholdd({"default": {"issuer": default_issuer}})
    tok = default_issuer.token(str(uuid.uuid4()))
    d = register(k, tok)
    vals = trust_values(os.urandom(64))
    assert k.client.put(f"/devices/{d['identifier']}/keys", json_body=vals, headers=auth(tok)).status == 200
    k.stop()   # the daemon keeps its database to itself while it runs
    blobs = [b for (b,) in storage.query(k.db_path, "SELECT blob FROM records WHERE kind = 2")]
    assert len(blobs) == 1
    needle = vals["encryptedUserKey"][2:40].encode()
    assert not any(needle in b for b in blobs)
    assert not any(d["identifier"].encode() in b for b in blobs)


def test_bad_trust_bodies_change_nothing(k, member):
    _, tok, _ = member
    d = register(k, tok)
    good = trust_values(os.urandom(64))
    bad = [
        ({**good, "encryptedUserKey": good["encryptedPublicKey"]}, "invalid_encstring"),  # type 2 for RSA
        ({**good, "encryptedPrivateKey": good["encryptedUserKey"]}, "invalid_encstring"),
        ({**good, "encryptedPublicKey": "2.AAAA|BBBB"}, "invalid_encstring"),
        ({**good, "encryptedPublicKey": "0." + good["encryptedPublicKey"][2:].rsplit("|", 1)[0]},
         "invalid_encstring"),  # type 0: no MAC, a downgrade
        ({**good, "encryptedUserKey": "4.not base64!"}, "invalid_encstring"),
        ({k_: v for k_, v in good.items() if k_ != "encryptedPrivateKey"}, "invalid_request_body"),
        ({**good, "encryptedUserKey": 5}, "invalid_request_body"),
        ([good], "invalid_request_body"),
    ]
    for body, code in bad:
        r = k.client.put(f"/devices/{d['identifier']}/keys", json_body=body, headers=auth(tok))
        bw_error(r, 400, code)
    r = k.client.put(f"/devices/{d['identifier']}/keys", body="{", headers=auth(tok, **{"Content-Type": "application/json"}))
    bw_error(r, 400, "invalid_request_body")
    r = k.client.put(f"/devices/{d['identifier']}/keys", json_body={**good, "x": "y" * 5000}, headers=auth(tok))
    bw_error(r, 413, "body_too_large")
    r = k.client.get(f"/devices/identifier/{d['identifier']}", headers=auth(tok))
    assert r.json()["isTrusted"] is False, r


def test_unknown_and_foreign_devices_are_404(k, member, default_issuer):
    _, tok, _ = member
    other = default_issuer.token(str(uuid.uuid4()))
    d = register(k, other)
    vals = trust_values(os.urandom(64))
    bw_error(k.client.put(f"/devices/{d['identifier']}/keys", json_body=vals, headers=auth(tok)), 404,
             "device_not_found")
    bw_error(k.client.get(f"/devices/{d['id']}", headers=auth(tok)), 404, "device_not_found")
    bw_error(k.client.get(f"/devices/identifier/{d['identifier']}", headers=auth(tok)), 404,
             "device_not_found")
    bw_error(k.client.delete(f"/devices/{d['id']}", headers=auth(tok)), 404, "device_not_found")
    bw_error(k.client.post("/devices/untrust", json_body={"devices": [d["id"]]}, headers=auth(tok)), 404,
             "device_not_found")
    bw_error(k.client.get("/devices/not-a-guid", headers=auth(tok)), 404, "device_not_found")
    # the owner still has it, untouched
    r = k.client.get(f"/devices/{d['id']}", headers=auth(other))
    assert r.status == 200 and r.json()["name"] == "laptop", r


def test_no_token_and_admin_token_are_refused(k, default_issuer):
    bw_error(k.client.get("/devices"), 401, "missing_token")
    admin = default_issuer.token("admin@example.test", role="keyhold-admin")
    r = k.client.get("/devices", headers=auth(admin))
    assert r.status == 403 and r.json()["object"] == "error", r


def test_register_refuses_bad_bodies(k, member):
    _, tok, _ = member
    for body in ({"type": 8, "name": "x"}, {"type": "8", "name": "x", "identifier": "a"},
                 {"type": 8, "name": "x", "identifier": "has space"},
                 {"type": 8, "name": "x", "identifier": "a" * 51},
                 {"type": 8, "name": "n" * 51, "identifier": "a"},
                 {"type": 8, "name": "", "identifier": "a"}, {"type": -1, "name": "x", "identifier": "a"}):
        bw_error(k.client.post("/devices", json_body=body, headers=auth(tok)), 400, "invalid_request_body")
    assert k.client.get("/devices", headers=auth(tok)).json()["data"] == []


# ----------------------------------------------------------------------------- untrust, update, delete

def trusted_device(k, tok, user_key=None):
    d = register(k, tok)
    r = k.client.put(f"/devices/{d['identifier']}/keys", json_body=trust_values(user_key or os.urandom(64)),
                     headers=auth(tok))
    assert r.status == 200, r
    return r.json()


def trusted(k, tok, d):
    return k.client.get(f"/devices/{d['id']}", headers=auth(tok)).json()["isTrusted"]


def test_untrust_all_or_nothing(k, member):
    _, tok, _ = member
    a, b = trusted_device(k, tok), trusted_device(k, tok)
    bw_error(k.client.post("/devices/untrust", json_body={"devices": [a["id"], str(uuid.uuid4())]},
                           headers=auth(tok)), 404, "device_not_found")
    assert trusted(k, tok, a) and trusted(k, tok, b)
    r = k.client.post("/devices/untrust", json_body={"devices": [a["id"]]}, headers=auth(tok))
    assert r.status == 200 and r.body == b"", r
    assert not trusted(k, tok, a) and trusted(k, tok, b)
    for body in ({}, {"devices": "x"}, {"devices": ["not-a-guid"]}, {"devices": [1]}):
        bw_error(k.client.post("/devices/untrust", json_body=body, headers=auth(tok)), 400, "invalid_request_body")


def test_update_trust_changes_only_named_devices(k, member):
    _, tok, _ = member
    user_key = os.urandom(64)
    cur, other, third = (trusted_device(k, tok, user_key) for _ in range(3))
    new_key = os.urandom(64)
    v_cur, v_other = trust_values(new_key), trust_values(new_key)
    body = {"masterPasswordHash": "ignored",
            "currentDevice": {"encryptedUserKey": v_cur["encryptedUserKey"],
                              "encryptedPublicKey": v_cur["encryptedPublicKey"]},
            "otherDevices": [{"deviceId": other["id"], "encryptedUserKey": v_other["encryptedUserKey"],
                              "encryptedPublicKey": v_other["encryptedPublicKey"]}]}
    bw_error(k.client.post("/devices/update-trust", json_body=body, headers=auth(tok)), 400,
             "device_headers_missing")
    r = k.client.post("/devices/update-trust", json_body=body,
                      headers=auth(tok, **{"Device-Identifier": cur["identifier"]}))
    assert r.status == 200, r
    got = {d["id"]: d for d in k.client.get("/devices", headers=auth(tok)).json()["data"]}
    assert got[cur["id"]]["encryptedUserKey"] == v_cur["encryptedUserKey"]
    assert got[other["id"]]["encryptedUserKey"] == v_other["encryptedUserKey"]
    # keyhold's rule: the third device, not named, keeps its trust (Bitwarden would untrust it)
    assert got[third["id"]]["isTrusted"] is True
    assert got[third["id"]]["encryptedUserKey"] == third["encryptedUserKey"]
    # the explicit extension untrusts the unlisted ones
    r = k.client.post("/devices/update-trust", json_body={**body, "otherDevices": [], "untrustUnlisted": True},
                      headers=auth(tok, **{"Device-Identifier": cur["identifier"]}))
    assert r.status == 200, r
    got = {d["id"]: d for d in k.client.get("/devices", headers=auth(tok)).json()["data"]}
    assert got[cur["id"]]["isTrusted"] and not got[other["id"]]["isTrusted"]
    assert not got[third["id"]]["isTrusted"]


def test_update_trust_refusals_change_nothing(k, member):
    _, tok, _ = member
    cur, other = trusted_device(k, tok), trusted_device(k, tok)
    v = trust_values(os.urandom(64))
    cd = {"encryptedUserKey": v["encryptedUserKey"], "encryptedPublicKey": v["encryptedPublicKey"]}
    hdr = auth(tok, **{"Device-Identifier": cur["identifier"]})
    cases = [
        ({"currentDevice": cd, "otherDevices": [{**cd, "deviceId": cur["id"]}]}, hdr, 400, "bad_request"),
        ({"currentDevice": cd, "otherDevices": [{**cd, "deviceId": str(uuid.uuid4())}]}, hdr, 404,
         "device_not_found"),
        ({"currentDevice": cd}, auth(tok, **{"Device-Identifier": "unknown-device"}), 404, "device_not_found"),
        ({"currentDevice": {**cd, "encryptedUserKey": "x"}}, hdr, 400, "invalid_encstring"),
        ({"otherDevices": []}, hdr, 400, "invalid_request_body"),
        ({"currentDevice": cd, "untrustUnlisted": "yes"}, hdr, 400, "invalid_request_body"),
    ]
    for body, headers, status, code in cases:
        bw_error(k.client.post("/devices/update-trust", json_body=body, headers=headers), status, code)
    got = {d["id"]: d for d in k.client.get("/devices", headers=auth(tok)).json()["data"]}
    assert got[cur["id"]]["encryptedUserKey"] == cur["encryptedUserKey"]
    assert got[other["id"]]["encryptedUserKey"] == other["encryptedUserKey"]


def test_delete_and_deactivate(k, member):
    _, tok, _ = member
    a, b = trusted_device(k, tok), trusted_device(k, tok)
    r = k.client.delete(f"/devices/{a['id']}", headers=auth(tok))
    assert r.status == 200 and r.body == b"", r
    r = k.client.post(f"/devices/{b['id']}/deactivate", headers=auth(tok))
    assert r.status == 200, r
    assert k.client.get("/devices", headers=auth(tok)).json()["data"] == []
    bw_error(k.client.delete(f"/devices/{a['id']}", headers=auth(tok)), 404, "device_not_found")


def test_lost_trust_needs_the_device_headers(k, member):
    _, tok, _ = member
    bw_error(k.client.post("/devices/lost-trust", headers=auth(tok)), 400, "device_headers_missing")
    r = k.client.post("/devices/lost-trust",
                      headers=auth(tok, **{"Device-Identifier": "abc", "Device-Type": "8"}))
    assert r.status == 200, r


def test_known_device(k, member, default_issuer):
    _, tok, email = member
    d = register(k, tok)

    def known(mail, ident, pad=False):
        e = base64.urlsafe_b64encode(mail.encode()).decode()
        if not pad:
            e = e.rstrip("=")
        r = k.client.get("/devices/knowndevice",
                         headers={"X-Request-Email": e, "X-Device-Identifier": ident})
        assert r.status == 200, r
        return r.json()

    assert known(email, d["identifier"]) is True
    assert known(email.upper(), d["identifier"], pad=True) is True
    assert known(email, str(uuid.uuid4())) is False
    assert known("someone@else.test", d["identifier"]) is False
    assert known(email, "bad identifier!") is False
    # the member's e-mail changes at the identity provider: only the new one finds the device
    sub, _, _ = member
    new_tok = default_issuer.token(sub, email="renamed-" + email)
    assert register(k, new_tok, identifier=d["identifier"])["id"] == d["id"]
    assert known("renamed-" + email, d["identifier"]) is True
    assert known(email, d["identifier"]) is False
    # deleted: found no more
    assert k.client.delete(f"/devices/{d['id']}", headers=auth(tok)).status == 200
    assert known("renamed-" + email, d["identifier"]) is False
    # a member who leaves is found no more either
    d2 = register(k, new_tok)
    assert known("renamed-" + email, d2["identifier"]) is True
    assert k.operator.post(f"/admin/members/{sub}/remove").status == 200
    assert known("renamed-" + email, d2["identifier"]) is False
    bw_error(k.client.get("/devices/knowndevice", headers={"X-Device-Identifier": "x"}), 400,
             "device_headers_missing")
    bw_error(k.client.get("/devices/knowndevice",
                          headers={"X-Request-Email": "%%%", "X-Device-Identifier": "x"}), 400,
             "bad_request")


def test_device_limit(k, member, monkeypatch):
    _, tok, _ = member
    for _ in range(100):
        register(k, tok)
    bw_error(k.client.post("/devices", json_body={"type": 8, "name": "x", "identifier": "one-too-many"},
                           headers=auth(tok)), 409, "too_many_devices")


# ----------------------------------------------------------------------------- account recovery

def public_key(k, tok, prefix="", org="default"):
    r = k.client.get(f"{prefix}/organizations/{org}/public-key", headers=auth(tok))
    assert r.status == 200, r
    body = r.json()
    assert body["object"] == "organizationPublicKey"
    return serialization.load_der_public_key(base64.b64decode(body["publicKey"]))


def test_recovery_public_key_is_rsa_2048_per_tenant(k, member, acme_issuer):
    _, tok, _ = member
    a, b = public_key(k, tok), public_key(k, tok)
    assert a.key_size == 2048 and a.public_numbers() == b.public_numbers()
    c = public_key(k, acme_issuer.token(str(uuid.uuid4())), prefix="/t/acme", org="acme")
    assert c.public_numbers() != a.public_numbers()
    bw_error(k.client.get("/organizations/acme/public-key", headers=auth(tok)), 404, "not_found")
    bw_error(k.client.get("/organizations/default/public-key"), 401, "missing_token")


def test_recovery_enrolment(k, member, default_issuer):
    sub, tok, _ = member
    pub = public_key(k, tok)
    key = type4(pub, os.urandom(64))
    path = f"/organizations/default/users/{sub}/reset-password-enrollment"
    bw_error(k.client.put(f"/organizations/default/users/{uuid.uuid4()}/reset-password-enrollment",
                          json_body={"resetPasswordKey": key}, headers=auth(tok)), 403, "not_your_account")
    other_pub = rsa.generate_private_key(public_exponent=65537, key_size=3072).public_key()
    for bad in ("2.AAAA", type4(other_pub, os.urandom(64)), "4.!!", 7):
        r = k.client.put(path, json_body={"resetPasswordKey": bad}, headers=auth(tok))
        assert r.status == 400, r

    def enrolled():
        # removing a member says what there was; nothing else of this member exists
        r = k.operator.post(f"/admin/members/{sub}/remove")
        assert r.status == 200, r
        return r.json()["removed"]["enrolments"]

    assert enrolled() == 0
    r = k.client.put(path, json_body={"resetPasswordKey": key, "masterPasswordHash": "x"}, headers=auth(tok))
    assert r.status == 200 and r.body == b"", r
    assert enrolled() == 1
    for withdraw in (None, ""):
        r = k.client.put(path, json_body={"resetPasswordKey": key}, headers=auth(tok))
        assert r.status == 200, r
        r = k.client.put(path, json_body={"resetPasswordKey": withdraw}, headers=auth(tok))
        assert r.status == 200, r
        assert enrolled() == 0


# ----------------------------------------------------------------------------- admin

def test_admin_lists_and_untrusts_a_members_device(k, member, default_issuer):
    sub, tok, _ = member
    d = trusted_device(k, tok)
    admin = default_issuer.token("admin@example.test", role="keyhold-admin")
    r = k.client.get(f"/admin/members/{sub}/devices", headers=auth(admin))
    assert r.status == 200, r
    body = r.json()
    assert body["user"] == sub and [x["id"] for x in body["devices"]] == [d["id"]]
    assert body["devices"][0]["isTrusted"] is True
    assert_error(k.client.get(f"/admin/members/{sub}/devices", headers=auth(tok)), 403, "not_admin")
    r = k.operator.post(f"/admin/members/{sub}/devices/{d['id']}/untrust")
    assert r.status == 200 and r.json() == {"user": sub, "device": d["id"], "trusted": False}, r
    assert not trusted(k, tok, d)
    assert_error(k.operator.post(f"/admin/members/{sub}/devices/{uuid.uuid4()}/untrust"), 404,
                 "device_not_found")


def test_member_remove(k, member, default_issuer):
    sub, tok, _ = member
    assert k.client.post("/user-keys", json_body={"key": harness.new_key()}, headers=auth(tok)).status == 200
    trusted_device(k, tok)
    register(k, tok)
    key = type4(public_key(k, tok), os.urandom(64))
    assert k.client.put(f"/organizations/default/users/{sub}/reset-password-enrollment",
                        json_body={"resetPasswordKey": key}, headers=auth(tok)).status == 200
    bystander_sub = str(uuid.uuid4())
    bystander = default_issuer.token(bystander_sub)
    trusted_device(k, bystander)
    r = k.operator.post(f"/admin/members/{sub}/remove")
    assert r.status == 200, r
    assert r.json() == {"user": sub, "removed": {"keys": 1, "devices": 2, "requests": 0, "enrolments": 1}}
    assert_error(k.client.get("/user-keys", headers=auth(tok)), 404, "key_not_found")
    assert k.client.get("/devices", headers=auth(tok)).json()["data"] == []
    assert len(k.client.get("/devices", headers=auth(bystander)).json()["data"]) == 1
    r = k.operator.post(f"/admin/members/{sub}/remove")
    assert r.json()["removed"] == {"keys": 0, "devices": 0, "requests": 0, "enrolments": 0}, r
    assert_error(k.operator.post("/admin/members/not-a-guid/remove"), 403, "invalid_subject")


def test_device_events_are_audited(k, member):
    sub, tok, _ = member
    d = trusted_device(k, tok)
    k.client.post("/devices/untrust", json_body={"devices": [d["id"]]}, headers=auth(tok))

    def actions():
        out, since = [], 1
        while True:
            page = k.operator.get(f"/admin/audit?since={since}&limit=10000").json()
            out += page["records"]
            if not page["records"]:
                return out
            since = page["records"][-1]["seq"] + 1

    def mine():
        return [r["action"] for r in actions() if r.get("actor") == sub]

    got = harness.poll_until(lambda: (lambda a: a if "device.untrust" in a else None)(mine()), timeout=10)
    assert "device.register" in got and "device.trust" in got and "device.untrust" in got


# ----------------------------------------------------------------------------- lifecycle

def test_devices_and_enrolments_move_with_a_rekey_and_survive_backup_and_restore(
        make_keyholdd, default_issuer, tmp_path):
    from test_cli import run_cli
    k = make_keyholdd({"default": {"issuer": default_issuer}})
    sub = str(uuid.uuid4())
    tok = default_issuer.token(sub, email="r@example.test")
    d = trusted_device(k, tok)
    pub = public_key(k, tok)
    key = type4(pub, os.urandom(64))
    assert k.client.put(f"/organizations/default/users/{sub}/reset-password-enrollment",
                        json_body={"resetPasswordKey": key}, headers=auth(tok)).status == 200
    r = k.operator.post("/admin/keys/rekey")
    assert r.status == 200, r

    def moved():
        st = k.operator.get("/admin/keys").json()
        v1 = [v for v in st["versions"] if v["version"] == 1][0]
        return st if v1["records"] == 0 else None

    harness.poll_until(moved, timeout=30)
    got = k.client.get(f"/devices/{d['id']}", headers=auth(tok)).json()
    assert got["encryptedUserKey"] == d["encryptedUserKey"] and got["isTrusted"]

    backup = tmp_path / "b.khb"
    p = run_cli("backup", "create", backup, "--socket", k.admin_socket, "--json")
    assert p.returncode == 0, p
    p = run_cli("backup", "verify", backup, "--json", *k.backup_args(), env=k.store_env())
    assert p.returncode == 0, p
    k.stop()
    w = tmp_path / "restored"
    from test_backup import restore_into   # on PostgreSQL: --into-storage, a new database
    p = restore_into(k, backup, w)
    assert p.returncode == 0, p
    if k.keystore == "file":
        import shutil
        shutil.copyfile(k.master_key, w / "master.key")
        os.chmod(w / "master.key", 0o600)
    k2 = harness.Keyholdd(w, k.pki, {"default": {"issuer": default_issuer}}, **k.same_keystore())
    k2.start()
    try:
        got = k2.client.get(f"/devices/{d['id']}", headers=auth(tok)).json()
        assert got["encryptedUserKey"] == d["encryptedUserKey"]
        assert public_key(k2, tok).public_numbers() == pub.public_numbers()
        r = k2.operator.post(f"/admin/members/{sub}/remove")
        assert r.json()["removed"]["enrolments"] == 1, r
    finally:
        k2.stop()


def test_concurrent_first_registrations_make_one_device(k, member):
    """Several workers registering one identifier at once: one inserts, the others update it."""
    import threading
    _, tok, _ = member
    ident = str(uuid.uuid4())
    ids, errors = [], []

    def reg():
        try:
            r = k.client.post("/devices", json_body={"type": 8, "name": "x", "identifier": ident},
                              headers=auth(tok))
            (ids if r.status == 200 else errors).append(r.json().get("id") if r.status == 200 else r)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reg) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(ids)) == 1, ids
    assert [d["id"] for d in k.client.get("/devices", headers=auth(tok)).json()["data"]] == ids[:1]
