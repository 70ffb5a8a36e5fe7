"""keyhold keystore migrate (docs/keystores.md "Moving to another key store"): every tenant key
version that keeps a DEK moves from one key store to another, offline, with real SoftHSM2
tokens and the real keyholdd before and after:

1. file store -> token, with versions active, archived, revoked and retired and members'
   keys: refused while keyholdd runs and for a bad --to (no PIN, wrong token, unknown
   driver), changing nothing; then keyholdd on the new config serves every key the same
   (revoked ones refused as before), records the move in the audit chain, and the
   hsm-vulnerability playbook rekeys in the token, re-encrypts and destroys the old versions.
2. token A -> token B, killed with SIGKILL after the first row changed, then run again: it
   finishes, and what was moved before is recognised and skipped; then token B -> a file
   store.
"""
import json
import os
import pty
import select
import signal
import subprocess
import uuid

import pytest

import harness
import storage
from harness import new_key, poll_until
from test_keystore_pkcs11 import Pkcs11Keyholdd

PIN = "hsm-Pin-4711-q"
TOKEN = "keyhold-it"       # the label Pkcs11Keyholdd configures
CLI_TIMEOUT_S = 300


def keyhold(*args, env=None, timeout=CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    e = {n: v for n, v in os.environ.items() if not n.startswith("KEYHOLD_")}
    e.update(env or {})
    return subprocess.run([str(harness.build_dir() / "src" / "cli" / "keyhold"), *map(str, args)],
                          capture_output=True, text=True, env=e, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def migrate(old, new, *extra, env=None, json_out=True):
    args = (["--json"] if json_out else []) + ["keystore", "migrate", "--config",
                                               old.config_path, "--to", new.config_path, *extra]
    return keyhold(*args, env=env)


def rows(db) -> dict:
    return {(t, v): (s, w, sig) for t, v, s, w, sig in storage.query(
        db, "SELECT tenant, version, state, wrapped_dek, signature FROM tenant_keys")}


class Member:
    def __init__(self, issuer, tenant):
        self.guid = str(uuid.uuid4())
        self.token = issuer.token(self.guid)
        self.path = "/user-keys" if tenant == "default" else f"/t/{tenant}/user-keys"
        self.key = new_key()


def write(k, m):
    r = k.client.put(m.path, token=m.token, json_body={"key": m.key})
    assert r.status == 200, r


def answers(k, members) -> dict:
    """Each member's read: (status, key or error code)."""
    out = {}
    for m in members:
        r = k.client.get(m.path, token=m.token)
        out[m.guid] = (r.status, r.json().get("key") if r.status == 200 else r.json().get("code"))
    return out


def admin(k, tenant):
    return "" if tenant == "default" else f"/t/{tenant}"


def keys(k, tenant="default"):
    r = k.operator.get(admin(k, tenant) + "/admin/keys")
    assert r.status == 200, r
    return r.json()


def states(k, tenant="default"):
    return {v["version"]: v["state"] for v in keys(k, tenant)["versions"]}


def post(k, path, tenant="default", body=None):
    r = k.operator.post(admin(k, tenant) + path, json_body=body)
    assert r.status == 200, r
    return r.json()


def rekey_and_wait(k, tenant="default"):
    post(k, "/admin/keys/rekey", tenant, {})
    assert poll_until(lambda: keys(k, tenant)["job"]["state"] != "running" and all(
        v["records"] == 0 for v in keys(k, tenant)["versions"] if v["state"] == "archived"),
        timeout=60), keys(k, tenant)


def enrol(k, issuer, tenant="default"):
    """A member's account-recovery enrolment to the tenant's recovery key."""
    import base64
    import pathlib
    import sys
    from cryptography.hazmat.primitives import serialization
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "interop"))
    from bwcrypto import encrypt_type4
    sub = str(uuid.uuid4())
    tok = issuer.token(sub)
    r = k.client.get(f"/organizations/{tenant}/public-key",
                     headers={"Authorization": f"Bearer {tok}"})
    assert r.status == 200, r
    pub = serialization.load_der_public_key(base64.b64decode(r.json()["publicKey"]))
    r = k.client.put(f"/organizations/{tenant}/users/{sub}/reset-password-enrollment",
                     json_body={"resetPasswordKey": encrypt_type4(pub, os.urandom(64))},
                     headers={"Authorization": f"Bearer {tok}"})
    assert r.status == 200, r


def token_keyholdd(tmp_path, name, pki, tenants, hsm, db, extra=""):
    pin_file = tmp_path / f"{name}.pin"
    pin_file.write_text(PIN + "\n")
    os.chmod(pin_file, 0o600)
    d = Pkcs11Keyholdd(tmp_path / name, pki, tenants, hsm, pin_file=pin_file,
                       env={"SOFTHSM2_CONF": str(hsm.conf)}, extra=extra)
    d.db_path = db          # the database of the server it takes over
    d.write_config()
    return d


# file_keystore: its old (and last) store is the file store by design; the tokens it needs
# it makes itself, so the pkcs11 run (KEYHOLD_TEST_KEYSTORE=pkcs11) leaves it out
@pytest.mark.file_keystore
def test_file_to_token_then_hsm_vulnerability_playbook(pki, issuers, softhsm, tmp_path):
    softhsm.init_token(TOKEN, so_pin="1234", pin=PIN)
    tenants = {"default": {"issuer": issuers["default"], "admins": "role:keyhold-admin"}}
    old = harness.Keyholdd(tmp_path / "old", pki, tenants)
    iss = issuers["default"]
    members = []
    old.start()
    try:
        # v1: retired; v2: revoked with 5 records; v3: archived; v4 active
        members += [Member(iss, "default") for _ in range(2)]
        for m in members:
            write(old, m)
        rekey_and_wait(old)
        post(old, "/admin/keys/1/retire")
        more = [Member(iss, "default") for _ in range(3)]
        for m in more:
            write(old, m)
        members += more
        post(old, "/admin/keys/revoke-all")     # the kill switch: version 2 with its records
        post(old, "/admin/keys/rekey", body={})  # 3 active, 2 stays revoked (the job skips it)
        more = [Member(iss, "default") for _ in range(2)]
        for m in more:
            write(old, m)
        members += more
        assert poll_until(lambda: keys(old)["job"]["state"] != "running", timeout=60)
        post(old, "/admin/keys/rekey", body={})
        for _ in range(2):
            m = Member(iss, "default")
            write(old, m)
            members.append(m)
        enrol(old, iss)
        enrol(old, iss)
        assert states(old) == {1: "retired", 2: "revoked", 3: "archived", 4: "active"}
        before = answers(old, members)
        assert sum(v == (403, "key_revoked") for v in before.values()) == 5, before
        new = token_keyholdd(tmp_path, "new", pki, tenants, softhsm, old.db_path)

        # refused while keyholdd serves the database (the migrate below moves all 3: this
        # one moved nothing)
        p = migrate(old, new, env=new.env)
        assert p.returncode == 1 and json.loads(p.stdout)["code"] == "server_running", p
        assert "stop it" in json.loads(p.stdout)["message"], p
    finally:
        assert old.stop() == 0, old.log()

    # a bad --to is a clear error and changes nothing
    snap = rows(old.db_path)
    for name, edit, code in (
            # (refused by the config's check, or, where a PIN-less config is a sealed start,
            # by migrate itself)
            ("nopin", lambda t: t.replace(f"pin_file = {new.pin_file}\n", ""),
             ("bad_config", "no_secret")),
            ("wrongtoken", lambda t: t.replace(f"token_label = {TOKEN}", "token_label = nope"),
             ("keystore_error",)),
            ("nodriver", lambda t: t.replace("driver = pkcs11", "driver = tpm"),
             ("bad_config",))):
        bad = tmp_path / f"{name}.conf"
        bad.write_text(edit(new.config_text()))
        p = keyhold("--json", "keystore", "migrate", "--config", old.config_path, "--to", bad,
                    env=new.env)
        assert p.returncode == 1, (name, p)
        err = json.loads(p.stdout)
        assert err["code"] in code and err["message"], (name, p)
        assert rows(old.db_path) == snap, name
    p = keyhold("keystore", "migrate", "--config", old.config_path)
    assert p.returncode == 2 and "--to" in p.stderr, p

    audit_dir = tmp_path / "old-audit-keys"
    audit_dir.mkdir()
    p = migrate(old, new, "--audit-keys", audit_dir, env=new.env)
    assert p.returncode == 0, p
    out = json.loads(p.stdout)
    assert (out["tenants"], out["versions"], out["moved"], out["skipped"], out["no_key"]) == \
        (1, 3, 3, 0, 1), out
    assert out["recovery_enrolments_affected"] == 2, out
    assert (out["from"], out["to"]) == ("file", "pkcs11"), out
    assert (audit_dir / "server.pem").exists() and (audit_dir / "tenant-default.pem").exists()
    after = rows(old.db_path)
    for (t, v), (s, w, sig) in snap.items():
        assert after[(t, v)][0] == s
        assert (after[(t, v)][1] != w) == (s in (1, 2, 4)), (v, s)  # active, archived, revoked

    # again: everything is there already
    p = migrate(old, new, env=new.env, json_out=False)
    assert p.returncode == 0 and "0 moved" in p.stdout and "3 there already" in p.stdout, p
    assert "2 member enrolment(s)" in p.stdout and "enrol again" in p.stdout, p
    assert rows(old.db_path) == after

    new.start()
    try:
        assert answers(new, members) == before
        doc = keys(new)
        assert doc["keystore"]["driver"] == "pkcs11", doc
        assert doc["keystore"]["migration"]["versions"] == [2, 3, 4], doc
        assert doc["keystore"]["migration"]["finished"], doc
        r = new.operator.get("/admin/audit?since=1&limit=10000")
        moved = [x for x in r.json()["records"] if x["action"] == "keystore.migrate"]
        assert sorted(x["key_version"] for x in moved) == [2, 3, 4], moved
        assert all(x["target"] == "pkcs11" and x["actor"].startswith("local:uid=")
                   for x in moved), moved

        # the playbook: rekey in the token, re-encrypt, retire and destroy 2, 3, 4
        p = keyhold("--socket", new.admin_socket, "--json", "incident", "hsm-vulnerability",
                    "--version", "3")
        dry = json.loads(p.stdout)
        assert [(s["step"], s["status"]) for s in dry["steps"]] == [
            ("refuse-writes", "done"), ("keystore-migrate", "done"),
            ("rekey-in-new-store", "to_do"), ("reencrypt", "to_do"),
            ("retire-old-store", "to_do")], dry
        p = keyhold("--socket", new.admin_socket, "--json", "incident", "hsm-vulnerability",
                    "--version", "3", "--execute", "--yes")
        assert p.returncode == 0, p
        got = json.loads(p.stdout)
        assert all(s["status"] == "done" for s in got["steps"]), got
        assert states(new) == {1: "retired", 2: "destroyed", 3: "destroyed", 4: "destroyed",
                               5: "active"}
        for m in members:
            r = new.client.get(m.path, token=m.token)
            assert r.status == 200 and r.json()["key"] == m.key, r
        assert keys(new)["versions"][-1]["records"] == len(members) + 2  # + the enrolments
    finally:
        assert new.stop() == 0, new.log()


@pytest.mark.file_keystore
def test_token_to_token_killed_then_resumed(pki, issuers, softhsm, tmp_path):
    softhsm.init_token(TOKEN, so_pin="1234", pin=PIN)
    tenants = {"default": {"issuer": issuers["default"], "admins": "role:keyhold-admin"},
               "acme": {"issuer": issuers["acme"], "admins": "role:keyhold-admin"}}
    a = token_keyholdd(tmp_path, "a", pki, tenants, softhsm, tmp_path / "a" / "data" / "keyhold.db")
    members = []
    a.start()
    try:
        for tenant, iss in (("default", issuers["default"]), ("acme", issuers["acme"])):
            for _ in range(3):
                m = Member(iss, tenant)
                write(a, m)
                members.append(m)
                rekey_and_wait(a, tenant)
        before = answers(a, members)
        assert all(s == 200 for s, _ in before.values()), before
    finally:
        assert a.stop() == 0, a.log()

    # token B: another SoftHSM2 token in the same module (its own label); the kill leaves a
    # half-moved database, which neither server would start on, and the rerun finishes it
    softhsm.init_token("keyhold-b", so_pin="1234", pin=PIN)
    b = token_keyholdd(tmp_path, "b", pki, tenants, softhsm, a.db_path)
    b.config_path.write_text(b.config_text().replace(f"token_label = {TOKEN}",
                                                     "token_label = keyhold-b"))
    snap = rows(a.db_path)
    # the progress lines (stderr on a terminal) come after each version's commit: killed
    # right after the first "moved", the database holds one moved row and the rest not
    e = {n: v for n, v in os.environ.items() if not n.startswith("KEYHOLD_")}
    e.update(b.env)
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(harness.build_dir() / "src" / "cli" / "keyhold"), "--json",
                             "keystore", "migrate", "--config", str(a.config_path), "--to",
                             str(b.config_path)], stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL, env=e)
    os.close(slave)
    seen = b""
    try:
        while b": moved" not in seen:
            r, _, _ = select.select([master], [], [], 120)
            assert r, seen
            try:
                chunk = os.read(master, 4096)
            except OSError:   # EIO: the child's end is closed (it exited)
                chunk = b""
            assert chunk, (seen, proc.wait(), proc.stdout.read())
            seen += chunk
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        os.close(master)
    assert proc.returncode == -signal.SIGKILL, seen
    now = rows(a.db_path)
    n = sum(now[k][1] != snap[k][1] for k in snap)
    assert 1 <= n < len(snap), (n, seen)       # killed part-way

    # neither configuration serves a half-moved database, and keyholdd says why
    p = subprocess.run(harness.keyholdd_cmd(b.config_path), capture_output=True, text=True,
                       env=e, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 1 and "did not finish" in p.stdout + p.stderr, p
    # and keyholdd does not start while a migrate holds the database's lock (the lock file
    # beside SQLite, the advisory lock on PostgreSQL)
    with storage.users_lock(a.db_path, exclusive=True):
        p = subprocess.run(harness.keyholdd_cmd(a.config_path), capture_output=True, text=True,
                           env=e, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 1 and "keystore migrate" in p.stdout + p.stderr, p
    # nor does a migrate start while a keyholdd holds it shared, even one that answers on no
    # admin socket here (another host's replica)
    with storage.users_lock(a.db_path, exclusive=False):
        p = migrate(a, b, env=b.env)
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == "server_running", p
    assert rows(a.db_path) == now
    p = migrate(a, b, env=b.env)
    assert p.returncode == 0, p
    out = json.loads(p.stdout)
    assert out["tenants"] == 2 and out["versions"] == 8, out
    assert out["skipped"] >= n and out["moved"] + out["skipped"] == 8, (n, out)
    assert out["recovery_enrolments_affected"] == 0, out

    # a second move before keyholdd has recorded the first in the audit chain is refused
    c = harness.Keyholdd(tmp_path / "c", pki, tenants)
    c.db_path = a.db_path
    c.write_config()
    snap = rows(a.db_path)
    p = migrate(b, c, env=b.env)
    assert p.returncode == 1 and "start keyholdd once" in json.loads(p.stdout)["message"], p
    assert rows(a.db_path) == snap

    b.start()
    try:
        assert answers(b, members) == before
        for tenant in ("default", "acme"):
            assert keys(b, tenant)["keystore"]["migration"]["versions"] == [1, 2, 3, 4], tenant
    finally:
        assert b.stop() == 0, b.log()

    # and back out of the HSM, into a file store
    p = migrate(b, c, env=b.env)
    assert p.returncode == 0, p
    out = json.loads(p.stdout)
    assert (out["moved"], out["skipped"], out["from"], out["to"]) == (8, 0, "pkcs11", "file"), out
    assert len(list((c.data / "keystore").rglob("*"))) > 0
    c.start()
    try:
        assert answers(c, members) == before
        assert keys(c, "acme")["keystore"]["migration"]["from"] == "pkcs11"
    finally:
        assert c.stop() == 0, c.log()
