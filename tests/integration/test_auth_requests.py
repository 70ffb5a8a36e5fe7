"""Login requests and admin approval on the real keyholdd (docs/trusted-devices.md "Login
requests and admin approval"; spec/trusted-devices.md sections 4-8): a new device asks, the
member's own device or the tenant's approvers answer, the requester polls with its access
code and decrypts the user key with its own private key. Keys are made here as Bitwarden
clients make them (RSA-OAEP SHA-1, EncString type 4) with the cryptography module.

Tenant "default": approval_quorum 1; tenant "acme": approval_quorum 2. Approvers are tokens
with role keyhold-approver (admins: role keyhold-admin). Time moves through the clock-offset
file, never by sleeping."""
import base64
import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import harness
from harness import assert_error

# Bitwarden's client-side formats, one implementation for every Python test (tests/interop)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "interop"))
from bwcrypto import b64, decrypt_type4, encrypt_type4 as type4  # noqa: E402,F401

ADMINS = "role:keyhold-admin"
APPROVERS = "role:keyhold-approver"
CLI_TIMEOUT_S = 60

# spec/encstring.md V5's public key; with "user@example.test"... the spec's vector material is
# "user@example.com" -> "imprudent-paramount-tidal-protector-reptile" (section 5)
V5_SPKI = ("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAl0Vawl/toXzkEvB82FEtqHP4xlU2ab/v0crqIfXfIoWF/"
           "XXdHGIdrZeilnRXPPJT1B9dTsasttEZNnua/0Rek/cjNDHtzT52irfoZYS7X6HNIfOi54Q+egPRQ1H7iNHVZz3K8Db9"
           "GCSKPeC8MbW6gVCzb15esCe1gGzg6wkMuWYDFYPoh/oBqcIqrGah7firqB1nDedzEjw32heP2DAffVN084iTDjiWrJNU"
           "xBJ2pDD5Z9dT3MzQ2s09ew1yMWK2z37rT3YerC7OgEDmo3WYo3xL3qYJznu3EO2nmrYjiRa40wKSjxsTlUcxDF+F0uMW"
           "8oR9EMUHgepdepfAtLsSAQIDAQAB")
V5_PHRASE = "imprudent-paramount-tidal-protector-reptile"


open4 = decrypt_type4


class Requester:
    """A new device's login request: its ephemeral RSA-2048 key pair and access code."""

    def __init__(self):
        self.priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.spki = b64(self.priv.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.code = base64.b32encode(os.urandom(15)).decode()[:25]


@pytest.fixture(scope="module")
def clock(tmp_path_factory):
    f = tmp_path_factory.mktemp("clock") / "offset"
    f.write_text("0")
    yield f
    f.write_text("0")


@pytest.fixture(scope="module")
def k(pki, issuers, tmp_path_factory, clock):
    d = harness.Keyholdd(tmp_path_factory.mktemp("keyholdd-auth-requests"), pki,
                         {"default": {"issuer": issuers["default"], "admins": ADMINS,
                                      "approvers": APPROVERS},
                          "acme": {"issuer": issuers["acme"], "admins": ADMINS,
                                   "approvers": APPROVERS, "approval_quorum": "2"}},
                         env={"KEYHOLD_TEST_CLOCK_OFFSET_FILE": str(clock)})
    yield from harness.serve(d)


@pytest.fixture(autouse=True)
def clock_reset(clock):
    clock.write_text("0")
    yield
    clock.write_text("0")


def auth(tok, **extra):
    return {"Authorization": f"Bearer {tok}", **extra}


class Member:
    def __init__(self, k, issuer, prefix="", email=None):
        self.k, self.prefix = k, prefix
        self.sub = str(uuid.uuid4())
        self.email = email or f"m-{self.sub[:8]}@Example.test"
        self.tok = issuer.token(self.sub, email=self.email)
        self.user_key = os.urandom(64)
        self.device = self.register()           # the trusted device that approves
        self.new_device = self.register("new")  # the device that asks

    def register(self, name="laptop"):
        ident = str(uuid.uuid4())
        r = self.k.client.post(self.prefix + "/devices", headers=auth(self.tok),
                               json_body={"type": 8, "name": name, "identifier": ident})
        assert r.status == 200, r
        return r.json()

    def create(self, req: Requester, type_=0, token=True, email=None, ident=None,
               path="/auth-requests", device_type="8"):
        body = {"email": email or self.email, "publicKey": req.spki,
                "deviceIdentifier": ident or self.new_device["identifier"],
                "accessCode": req.code, "type": type_}
        hdrs = {"Device-Type": device_type} if device_type is not None else {}
        if token:
            hdrs["Authorization"] = f"Bearer {self.tok}"
        return self.k.client.post(self.prefix + path, json_body=body, headers=hdrs)

    def create_ok(self, req, **kw) -> dict:
        r = self.create(req, **kw)
        assert r.status == 200, r
        return r.json()

    def answer(self, rid, req: Requester | None, approve=True, device=None, key=None):
        body = {"deviceIdentifier": device or self.device["identifier"], "requestApproved": approve,
                "key": key if key is not None else
                (type4(req.priv.public_key(), self.user_key) if approve else None)}
        return self.k.client.put(f"{self.prefix}/auth-requests/{rid}", json_body=body,
                                 headers=auth(self.tok))

    def enrol(self):
        org = self.prefix.split("/")[-1] if self.prefix else "default"
        r = self.k.client.get(f"{self.prefix}/organizations/{org}/public-key", headers=auth(self.tok))
        assert r.status == 200, r
        pub = serialization.load_der_public_key(base64.b64decode(r.json()["publicKey"]))
        r = self.k.client.put(f"{self.prefix}/organizations/{org}/users/{self.sub}/reset-password-enrollment",
                              json_body={"resetPasswordKey": type4(pub, self.user_key)},
                              headers=auth(self.tok))
        assert r.status == 200, r


def poll(k, rid, code, prefix=""):
    return k.client.get(f"{prefix}/auth-requests/{rid}/response?code={code}")


def bw_error(r, status, code):
    body = assert_error(r, status, code)
    assert body.get("object") == "error", r
    return body


@pytest.fixture
def member(k, default_issuer):
    return Member(k, default_issuer)


@pytest.fixture
def acme_member(k, issuers):
    return Member(k, issuers["acme"], prefix="/t/acme")


def admin_token(issuer, approver=True, sub=None):
    roles = ["keyhold-admin"] + (["keyhold-approver"] if approver else [])
    return issuer.token(sub or str(uuid.uuid4()), role=roles)


# ---------------------------------------------------------------- login with device

def test_create_poll_approve_and_deliver_once(k, member):
    req = Requester()
    doc = member.create_ok(req, token=False)
    assert doc["object"] == "auth-request" and doc["status"] == "pending", doc
    assert doc["requestApproved"] is False and doc["key"] is None and doc["responseDate"] is None
    assert doc["publicKey"] == req.spki and doc["requestDeviceTypeValue"] == 8
    assert "accessCode" not in json.dumps(doc) and "accessCodeHash" not in doc
    rid = doc["id"]
    r = poll(k, rid, req.code)
    assert r.status == 200 and r.json()["status"] == "pending" and r.json()["key"] is None, r
    pending = k.client.get("/auth-requests/pending", headers=auth(member.tok)).json()
    assert [d["id"] for d in pending["data"]] == [rid], pending
    assert pending["data"][0]["requestDeviceId"] == member.new_device["id"]

    r = member.answer(rid, req)
    assert r.status == 200 and r.json()["status"] == "approved", r
    assert r.json()["requestApproved"] is True and r.json()["responseDate"]
    r = poll(k, rid, req.code)
    assert r.status == 200 and r.json()["status"] == "approved", r
    assert open4(req.priv, r.json()["key"]) == member.user_key
    # delivered once: the request is spent
    bw_error(poll(k, rid, req.code), 404, "auth_request_not_found")
    # and no longer pending
    assert k.client.get("/auth-requests/pending", headers=auth(member.tok)).json()["data"] == []


def test_member_token_create_and_lists(k, member):
    req = Requester()
    doc = member.create_ok(req, type_=1)
    r = k.client.get(f"/auth-requests/{doc['id']}", headers=auth(member.tok))
    assert r.status == 200 and r.json()["id"] == doc["id"] and r.json()["type"] == 1, r
    all_ = k.client.get("/auth-requests", headers=auth(member.tok)).json()
    assert all_["object"] == "list" and [d["id"] for d in all_["data"]] == [doc["id"]]


def test_deny_is_distinguishable_from_pending(k, member):
    req = Requester()
    rid = member.create_ok(req, token=False)["id"]
    r = member.answer(rid, req, approve=False)
    assert r.status == 200 and r.json()["status"] == "denied", r
    r = poll(k, rid, req.code)
    assert r.status == 200, r
    d = r.json()
    assert d["status"] == "denied" and d["requestApproved"] is False and d["responseDate"], d
    assert d["key"] is None


def test_second_answer_is_refused(k, member):
    req = Requester()
    rid = member.create_ok(req, token=False)["id"]
    assert member.answer(rid, req).status == 200
    bw_error(member.answer(rid, req), 400, "request_answered")
    bw_error(member.answer(rid, req, approve=False), 400, "request_answered")
    r = poll(k, rid, req.code)
    assert open4(req.priv, r.json()["key"]) == member.user_key


def test_only_the_most_recent_request_of_a_device_is_approved(k, member):
    old, new = Requester(), Requester()
    old_id = member.create_ok(old, token=False)["id"]
    new_id = member.create_ok(new, token=False)["id"]
    pending = k.client.get("/auth-requests/pending", headers=auth(member.tok)).json()["data"]
    assert [d["id"] for d in pending] == [new_id]
    bw_error(member.answer(old_id, old), 400, "stale_request")
    assert member.answer(new_id, new).status == 200


def test_a_device_keeps_a_bounded_number_of_requests(k, member):
    ids = [member.create_ok(Requester(), token=False)["id"] for _ in range(7)]
    listed = [d["id"] for d in k.client.get("/auth-requests", headers=auth(member.tok)).json()["data"]]
    assert listed == ids[-5:]


def test_someone_elses_request_is_404(k, member, default_issuer):
    other = Member(k, default_issuer)
    req = Requester()
    rid = member.create_ok(req, token=False)["id"]
    bw_error(k.client.get(f"/auth-requests/{rid}", headers=auth(other.tok)), 404, "auth_request_not_found")
    bw_error(other.answer(rid, req), 404, "auth_request_not_found")
    bw_error(poll(k, rid, "wrong-code"), 404, "auth_request_not_found")
    bw_error(poll(k, str(uuid.uuid4()), req.code), 404, "auth_request_not_found")
    bw_error(poll(k, "not-a-guid", req.code), 404, "auth_request_not_found")
    # approving with someone else's device is no device of the caller
    bw_error(member.answer(rid, req, device=other.device["identifier"]), 400, "invalid_device")
    # and the other member's token cannot make a request for this member's device
    bw_error(other.create(req, email=member.email), 400, "unknown_user_or_device")
    assert poll(k, rid, req.code).json()["status"] == "pending"


def test_anonymous_create_needs_a_known_email_and_device(k, member):
    req = Requester()
    bw_error(member.create(req, token=False, email="nobody@example.test"), 400, "unknown_user_or_device")
    bw_error(member.create(req, token=False, ident=str(uuid.uuid4())), 400, "unknown_user_or_device")
    bw_error(member.create(req, token=False, type_=2), 400, "invalid_request_type")
    bw_error(member.create(req, token=False, device_type=None), 400, "device_headers_missing")
    bw_error(member.create(req, token=False, device_type="x"), 400, "device_headers_missing")
    # the e-mail is compared case-insensitively
    assert member.create(req, token=False, email=member.email.upper()).status == 200
    assert len(k.client.get("/auth-requests", headers=auth(member.tok)).json()["data"]) == 1


def test_expiry_follows_the_clock(k, member, clock):
    req = Requester()
    rid = member.create_ok(req, token=False)["id"]
    # 30 s short of the lifetime: the real clock also moves while the request is made and
    # polled (a second or more under the sanitizer build)
    clock.write_text("870")
    assert poll(k, rid, req.code).json()["status"] == "pending"
    clock.write_text("901")
    r = k.client.get(f"/auth-requests/{rid}", headers=auth(member.tok))
    assert r.status == 200 and r.json()["status"] == "expired", r
    bw_error(member.answer(rid, req), 404, "auth_request_not_found")
    assert k.client.get("/auth-requests/pending", headers=auth(member.tok)).json()["data"] == []
    bw_error(poll(k, rid, req.code), 404, "auth_request_not_found")
    # pruned when met: gone for good
    bw_error(k.client.get(f"/auth-requests/{rid}", headers=auth(member.tok)), 404, "auth_request_not_found")


def test_bad_bodies_change_nothing(k, member):
    req = Requester()
    good = {"email": member.email, "publicKey": req.spki, "deviceIdentifier": member.new_device["identifier"],
            "accessCode": req.code, "type": 0}
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    cases = [
        ({**good, "email": 5}, "invalid_request_body"),
        ({k_: v for k_, v in good.items() if k_ != "publicKey"}, "invalid_request_body"),
        ({**good, "publicKey": "not base64"}, "invalid_public_key"),
        ({**good, "publicKey": b64(small)}, "invalid_public_key"),
        ({**good, "publicKey": b64(b"\x30\x00")}, "invalid_public_key"),
        ({**good, "accessCode": "x" * 26}, "invalid_access_code"),
        ({**good, "accessCode": ""}, "invalid_request_body"),
        ({**good, "type": "0"}, "invalid_request_body"),
        ({**good, "type": 7}, "invalid_request_type"),
        ({**good, "deviceIdentifier": "a/b"}, "unknown_user_or_device"),
        ({**good, "Email": member.email}, "invalid_request_body"),   # twice, in two cases
    ]
    for body, code in cases:
        r = k.client.post("/auth-requests", json_body=body, headers={"Device-Type": "8"})
        bw_error(r, 400, code)
    bw_error(k.client.post("/auth-requests", body="{", headers={"Device-Type": "8",
                                                                 "Content-Type": "application/json"}),
             400, "invalid_request_body")
    bw_error(k.client.post("/auth-requests", body=json.dumps(good), headers={"Device-Type": "8"}),
             415, "unsupported_media_type")
    r = k.client.post("/auth-requests", json_body={**good, "pad": "x" * 5000}, headers={"Device-Type": "8"})
    bw_error(r, 413, "body_too_large")
    assert k.client.get("/auth-requests", headers=auth(member.tok)).json()["data"] == []

    rid = member.create_ok(req)["id"]
    put_cases = [
        ({"deviceIdentifier": member.device["identifier"], "requestApproved": "yes", "key": None}, 400, "invalid_request_body"),
        ({"deviceIdentifier": member.device["identifier"], "requestApproved": True, "key": "2.AAAA|AAAA|AAAA"}, 400, "invalid_encstring"),
        ({"deviceIdentifier": member.device["identifier"], "requestApproved": True, "key": "4." + b64(b"x" * 128)}, 400, "invalid_encstring"),
        ({"deviceIdentifier": member.device["identifier"], "requestApproved": True}, 400, "invalid_encstring"),
        ({"requestApproved": True, "key": type4(req.priv.public_key(), member.user_key)}, 400, "invalid_request_body"),
        ({"deviceIdentifier": str(uuid.uuid4()), "requestApproved": True, "key": type4(req.priv.public_key(), member.user_key)}, 400, "invalid_device"),
    ]
    for body, status, code in put_cases:
        bw_error(k.client.put(f"/auth-requests/{rid}", json_body=body, headers=auth(member.tok)), status, code)
    assert poll(k, rid, req.code).json()["status"] == "pending"
    bw_error(k.client.get(f"/auth-requests/{rid}/response"), 400, "invalid_parameter")
    bw_error(k.client.get(f"/auth-requests/{rid}/response?code={req.code}&x=1"), 404, "auth_request_not_found")
    assert k.alive()


def test_member_routes_need_a_member_token(k, member, default_issuer):
    bw_error(k.client.get("/auth-requests"), 401, "missing_token")
    bw_error(k.client.get("/auth-requests/pending"), 401, "missing_token")
    bw_error(member.create(Requester(), path="/auth-requests/admin-request", type_=2, token=False),
             401, "missing_token")
    bw_error(member.create(Requester(), path="/auth-requests/admin-request", type_=0),
             400, "invalid_request_type")


# ---------------------------------------------------------------- admin approval

def admin_request(member, req=None) -> dict:
    req = req or Requester()
    return member.create_ok(req, path="/auth-requests/admin-request", type_=2), req


def test_admin_list_shows_the_fingerprint_phrase(k, default_issuer):
    m = Member(k, default_issuer, email="user@example.com")
    class V5(Requester):
        def __init__(self):
            self.spki, self.code = V5_SPKI, "code-v5"
    doc, _ = admin_request(m, V5())
    r = k.client.get("/organizations/default/auth-requests", headers=auth(admin_token(default_issuer)))
    assert r.status == 200, r
    items = {d["id"]: d for d in r.json()["data"]}
    item = items[doc["id"]]
    assert item["object"] == "pending-org-auth-request" and item["userId"] == m.sub
    assert item["fingerprint"] == V5_PHRASE, item
    assert item["approvals"] == [] and item["needed"] == 1
    # an admin without the approver role lists, but may not answer
    r = k.client.get("/organizations/default/auth-requests",
                     headers=auth(admin_token(default_issuer, approver=False)))
    assert r.status == 200 and doc["id"] in {d["id"] for d in r.json()["data"]}
    bw_error(k.client.post(f"/organizations/default/auth-requests/{doc['id']}",
                           json_body={"requestApproved": False},
                           headers=auth(admin_token(default_issuer, approver=False))),
             403, "not_approver")
    bw_error(k.client.post("/organizations/default/auth-requests/deny", json_body={"ids": [doc["id"]]},
                           headers=auth(admin_token(default_issuer, approver=False))),
             403, "not_approver")
    # member tokens and other organisations
    bw_error(k.client.get("/organizations/default/auth-requests", headers=auth(m.tok)), 403, "not_admin")
    bw_error(k.client.post(f"/organizations/default/auth-requests/{doc['id']}",
                           json_body={"requestApproved": True}, headers=auth(m.tok)), 403, "not_admin")
    bw_error(k.client.get("/organizations/acme/auth-requests", headers=auth(admin_token(default_issuer))),
             404, "not_found")
    bw_error(k.client.get("/organizations/default/auth-requests"), 401, "missing_token")
    # member requests (types 0/1) are no admin requests
    other = m.create_ok(Requester())
    assert other["id"] not in items
    bw_error(k.client.post(f"/organizations/default/auth-requests/{other['id']}",
                           json_body={"requestApproved": True}, headers=auth(admin_token(default_issuer))),
             404, "auth_request_not_found")


def test_admin_approves_with_a_key(k, member, default_issuer):
    doc, req = admin_request(member)
    key = type4(req.priv.public_key(), member.user_key)
    r = k.client.post(f"/organizations/default/auth-requests/{doc['id']}",
                      json_body={"requestApproved": True, "encryptedUserKey": key},
                      headers=auth(admin_token(default_issuer)))
    assert r.status == 200 and r.json() == {"id": doc["id"], "status": "approved"}, r
    r = poll(k, doc["id"], req.code)
    assert r.json()["status"] == "approved" and open4(req.priv, r.json()["key"]) == member.user_key
    bw_error(k.client.post(f"/organizations/default/auth-requests/{doc['id']}",
                           json_body={"requestApproved": False}, headers=auth(admin_token(default_issuer))),
             400, "request_answered")


def test_server_side_approval_through_recovery(k, member, default_issuer, clock):
    doc, req = admin_request(member)
    adm = admin_token(default_issuer)
    path = f"/organizations/default/auth-requests/{doc['id']}"
    bw_error(k.client.post(path, json_body={"requestApproved": True}, headers=auth(adm)), 409, "not_enrolled")
    member.enrol()
    r = k.client.post(path, json_body={"requestApproved": True, "encryptedUserKey": None}, headers=auth(adm))
    assert r.status == 200 and r.json()["status"] == "approved", r
    # collectable for approved_request_lifetime after the approval
    clock.write_text(str(43200 - 60))
    r = poll(k, doc["id"], req.code)
    assert r.status == 200 and r.json()["status"] == "approved", r
    assert open4(req.priv, r.json()["key"]) == member.user_key


def test_admin_request_expires(k, member, default_issuer, clock):
    doc, req = admin_request(member)
    clock.write_text(str(604800 + 1))
    r = k.client.get("/organizations/default/auth-requests", headers=auth(admin_token(default_issuer)))
    assert doc["id"] not in {d["id"] for d in r.json()["data"]}
    bw_error(k.client.post(f"/organizations/default/auth-requests/{doc['id']}",
                           json_body={"requestApproved": True}, headers=auth(admin_token(default_issuer))),
             404, "auth_request_not_found")


def test_two_approvers_release_the_key(k, acme_member, issuers):
    acme = issuers["acme"]
    doc, req = admin_request(acme_member)
    path = f"/t/acme/organizations/acme/auth-requests/{doc['id']}"
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    key = type4(req.priv.public_key(), acme_member.user_key)
    body = {"requestApproved": True, "encryptedUserKey": key}
    r = k.client.post(path, json_body=body, headers=auth(admin_token(acme, sub=first)))
    assert r.status == 202 and r.json()["approvals"] == 1 and r.json()["needed"] == 2, r
    assert poll(k, doc["id"], req.code, "/t/acme").json()["status"] == "pending"
    listed = k.client.get("/t/acme/organizations/acme/auth-requests", headers=auth(admin_token(acme))).json()
    item = {d["id"]: d for d in listed["data"]}[doc["id"]]
    assert [a["by"] for a in item["approvals"]] == [first] and item["needed"] == 2
    # the same approver again, with a new token
    bw_error(k.client.post(path, json_body=body, headers=auth(admin_token(acme, sub=first))),
             409, "same_approver")
    r = k.client.post(path, json_body=body, headers=auth(admin_token(acme, sub=second)))
    assert r.status == 200 and r.json()["status"] == "approved", r
    r = poll(k, doc["id"], req.code, "/t/acme")
    assert open4(req.priv, r.json()["key"]) == acme_member.user_key


def test_two_approvers_a_deny_ends_it(k, acme_member, issuers):
    acme = issuers["acme"]
    doc, req = admin_request(acme_member)
    path = f"/t/acme/organizations/acme/auth-requests/{doc['id']}"
    acme_member.enrol()
    r = k.client.post(path, json_body={"requestApproved": True}, headers=auth(admin_token(acme)))
    assert r.status == 202, r
    r = k.client.post(path, json_body={"requestApproved": False}, headers=auth(admin_token(acme)))
    assert r.status == 200 and r.json()["status"] == "denied", r
    bw_error(k.client.post(path, json_body={"requestApproved": True}, headers=auth(admin_token(acme))),
             400, "request_answered")
    assert poll(k, doc["id"], req.code, "/t/acme").json()["status"] == "denied"


def test_two_approvers_server_side(k, acme_member, issuers):
    acme = issuers["acme"]
    acme_member.enrol()
    doc, req = admin_request(acme_member)
    path = f"/t/acme/organizations/acme/auth-requests/{doc['id']}"
    assert k.client.post(path, json_body={"requestApproved": True}, headers=auth(admin_token(acme))).status == 202
    r = k.client.post(path, json_body={"requestApproved": True}, headers=auth(admin_token(acme)))
    assert r.status == 200 and r.json()["status"] == "approved", r
    r = poll(k, doc["id"], req.code, "/t/acme")
    assert open4(req.priv, r.json()["key"]) == acme_member.user_key


def test_bulk_deny_and_bulk_answer(k, default_issuer):
    adm = auth(admin_token(default_issuer))
    ms = [Member(k, default_issuer) for _ in range(3)]
    reqs = [admin_request(m) for m in ms]
    ids = [d["id"] for d, _ in reqs]
    r = k.client.post("/organizations/default/auth-requests/deny",
                      json_body={"ids": [ids[0], str(uuid.uuid4())]}, headers=adm)
    assert r.status == 200, r
    res = {d["id"]: d for d in r.json()["data"]}
    assert res[ids[0]]["status"] == "denied" and list(res.values())[1]["code"] == "auth_request_not_found"
    ms[2].enrol()
    key1 = type4(reqs[1][1].priv.public_key(), ms[1].user_key)
    r = k.client.post("/organizations/default/auth-requests", headers=adm,
                      json_body=[{"id": ids[1], "approved": True, "key": key1},
                                 {"id": ids[2], "approved": True},
                                 {"id": ids[0], "approved": True, "key": key1}])
    assert r.status == 200, r
    res = [(d["id"], d.get("status"), d.get("code")) for d in r.json()["data"]]
    assert res == [(ids[1], "approved", None), (ids[2], "approved", None), (ids[0], None, "request_answered")]
    for (d, req), m in zip(reqs[1:], ms[1:]):
        assert open4(req.priv, poll(k, d["id"], req.code).json()["key"]) == m.user_key
    # malformed and oversized lists change nothing
    for body in ([], {"ids": []}, [{"id": ids[1]}], [{"id": 5, "approved": True}], "x"):
        bw_error(k.client.post("/organizations/default/auth-requests", json_body=body, headers=adm),
                 400, "invalid_request_body")
    bw_error(k.client.post("/organizations/default/auth-requests/deny", json_body={"ids": ["a"] * 101},
                           headers=adm), 400, "invalid_request_body")
    # (past 64 KiB h2o itself refuses any body: test_bounds.py); a single answer takes 4 KiB
    bw_error(k.client.post(f"/organizations/default/auth-requests/{ids[1]}",
                           json_body={"requestApproved": True, "pad": "x" * 5000}, headers=adm),
             413, "body_too_large")
    # a list of 100 long ids (over 4 KiB) is decoded: each is refused on its own
    r = k.client.post("/organizations/default/auth-requests/deny",
                      json_body={"ids": [str(uuid.uuid4()) + "x" * 20] * 100}, headers=adm)
    assert r.status == 200 and len(r.json()["data"]) == 100, r
    assert {d["code"] for d in r.json()["data"]} == {"auth_request_not_found"}
    bw_error(k.client.post(f"/organizations/default/auth-requests/{ids[1]}",
                           json_body={"requestApproved": "yes"}, headers=adm), 400, "invalid_request_body")


def test_approvals_are_audited_with_their_approver(k, acme_member, issuers):
    acme = issuers["acme"]
    doc, req = admin_request(acme_member)
    first = str(uuid.uuid4())
    path = f"/t/acme/organizations/acme/auth-requests/{doc['id']}"
    key = type4(req.priv.public_key(), acme_member.user_key)
    assert k.client.post(path, json_body={"requestApproved": True, "encryptedUserKey": key},
                         headers=auth(admin_token(acme, sub=first))).status == 202
    recs = harness.poll_until(lambda: [x for x in audit_records(k, "/t/acme")
                                       if x.get("action") == "approval.approve" and x.get("actor") == first])
    assert recs and recs[0]["outcome"] == "ok", recs


def audit_records(k, prefix="") -> list[dict]:
    out, since = [], 1
    while True:
        r = k.operator.get(f"{prefix}/admin/audit?since={since}&limit=10000")
        assert r.status == 200, r
        page = r.json()
        out += page["records"]
        if not page["records"]:
            return out
        since = page["next"]


# ---------------------------------------------------------------- admin CLI

def cli(k, *args, json_out=True):
    cmd = [str(harness.build_dir() / "src" / "cli" / "keyhold"), "--socket", str(k.admin_socket)]
    if json_out:
        cmd.append("--json")
    cmd += list(args)
    env = {n: v for n, v in os.environ.items() if not n.startswith("KEYHOLD_")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT_S,
                          stdin=subprocess.DEVNULL)


def test_cli_approvals_list_approve_deny(k, default_issuer):
    m1, m2 = Member(k, default_issuer), Member(k, default_issuer)
    m1.enrol()
    (d1, r1), (d2, r2) = admin_request(m1), admin_request(m2)
    p = cli(k, "approvals", "list")
    assert p.returncode == 0, p
    listed = {d["id"]: d for d in json.loads(p.stdout)}
    assert {d1["id"], d2["id"]} <= set(listed)
    # the phrase the admin API shows (its words are checked against a vector above; split on
    # "-" it cannot be counted: the word list has "t-shirt" and "felt-tip")
    r = k.client.get("/organizations/default/auth-requests", headers=auth(admin_token(default_issuer)))
    assert r.status == 200, r
    api = {d["id"]: d["fingerprint"] for d in r.json()["data"]}
    assert listed[d1["id"]]["fingerprint"] == api[d1["id"]] and api[d1["id"]].count("-") >= 4
    p = cli(k, "approvals", "list", json_out=False)
    assert p.returncode == 0 and d1["id"] in p.stdout and m1.email in p.stdout, p
    p = cli(k, "approvals", "approve", d1["id"])
    assert p.returncode == 0 and json.loads(p.stdout) == {"id": d1["id"], "status": "approved"}, p
    assert open4(r1.priv, poll(k, d1["id"], r1.code).json()["key"]) == m1.user_key
    p = cli(k, "approvals", "deny", d2["id"], json_out=False)
    assert p.returncode == 0 and "denied" in p.stdout, p
    assert poll(k, d2["id"], r2.code).json()["status"] == "denied"
    p = cli(k, "approvals", "approve", d2["id"])
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == "request_answered", p
    p = cli(k, "approvals", "approve")
    assert p.returncode == 2, p


def test_cli_approve_waits_for_a_second_approver(k, acme_member):
    acme_member.enrol()
    doc, req = admin_request(acme_member)
    p = cli(k, "--tenant", "acme", "approvals", "approve", doc["id"], json_out=False)
    assert p.returncode == 0 and "second approver" in p.stdout, p
    p = cli(k, "--tenant", "acme", "approvals", "approve", doc["id"])
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == "same_approver", p
