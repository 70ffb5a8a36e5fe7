"""The HSM goes away while keyholdd serves, and comes back (docs/keystore.md "When the HSM
goes away"). The token is a real SoftHSM2 token exported by p11-kit's server over a Unix
socket; keyholdd loads p11-kit's client module as its [keystore] module, like a network HSM.
Stopping the server (its whole process group: it forks a p11-kit-remote per connection) is
the HSM going away; the client module then answers CKR_DEVICE_ERROR to every call. Starting
it again brings the token back, and keyholdd must reconnect on its own.

Checked: /health 503 (the reason only on the admin socket) and 200 again; with
cache_deks_while_unavailable = true keys written before are read and new keys written while
the token is gone; recovery decryption (server-side admin approval) and rekey answer 503
keystore_unavailable; with false every key route answers 503 keystore_unavailable; after the
return every acknowledged write reads back, a rekey works, the audit chain verifies with its
signed checkpoints, the loss and the return are logged once each, and the PIN is in no log."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import harness
from harness import assert_empty_200, assert_error, assert_key, new_key, poll_until
from test_auth_requests import Member, Requester, admin_token, auth, open4
from test_keystore_pkcs11 import PIN, TOKEN, Pkcs11Keyholdd

CLIENT_MODULES = ["/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
                  "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
                  "/usr/lib64/pkcs11/p11-kit-client.so"]
P11KIT = shutil.which("p11-kit")
# bounds on waits for the monitor (probe every 1 s, reconnect at least every 2 s): generous
# for a loaded CI machine, not a performance claim
LOSS_SEEN_S = 30
BACK_S = 60
CLI_TIMEOUT_S = 60


def client_module() -> str | None:
    return next((m for m in CLIENT_MODULES if os.path.exists(m)), None)


class P11KitServer:
    """`p11-kit server` exporting token `token` of SoftHSM2 store hsm on a Unix socket, in a
    process group of its own so that stop() also ends the p11-kit-remote it forks for each
    client connection (the one keyholdd talks to)."""

    def __init__(self, hsm, token: str):
        self.hsm, self.token = hsm, token
        # a short path: a Unix socket's name has at most 107 bytes
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="khp11-", dir="/tmp"))
        self.socket = self.dir / "sock"
        self.log_path = self.dir / "p11-kit-server.log"
        self.proc = None

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def start(self) -> None:
        assert self.proc is None
        self.socket.unlink(missing_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [P11KIT, "server", "-f", "-n", str(self.socket), "--provider", self.hsm.module,
             f"pkcs11:token={self.token}"],
            env=self.hsm.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        assert poll_until(lambda: self.socket.exists() or self.proc.poll() is not None,
                          timeout=30), "p11-kit server did not create its socket"
        assert self.proc.poll() is None, self.log_path.read_text()

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        # the per-connection children are in the same group; wait until none is left
        def group_gone():
            try:
                os.killpg(self.proc.pid, 0)
                return False
            except ProcessLookupError:
                return True
        assert poll_until(group_gone, timeout=30), "p11-kit-remote outlived its server"
        self.proc = None
        self.socket.unlink(missing_ok=True)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class LossKeyholdd(Pkcs11Keyholdd):
    """Pkcs11Keyholdd whose module is p11-kit's client, pointed at server."""

    def __init__(self, workdir, pki, tenants, hsm, server, module, cache=True, **kw):
        env = {"SOFTHSM2_CONF": str(hsm.conf), "KEYHOLD_KEYSTORE_PIN": PIN,
               "P11_KIT_SERVER_ADDRESS": server.address,
               "KEYHOLD_KEYSTORE_CACHE_DEKS_WHILE_UNAVAILABLE": "true" if cache else "false"}
        self.client_module = module
        super().__init__(workdir, pki, tenants, hsm, env=env, **kw)

    def config_text(self) -> str:
        text = super().config_text()
        line = f"module = {self.hsm.module}\n"
        assert line in text
        return text.replace(line, f"module = {self.client_module}\n")

    def full_log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def p11(softhsm):
    if P11KIT is None or client_module() is None:
        pytest.skip("p11-kit and p11-kit-modules are needed (scripts/install-deps --test)")
    softhsm.init_token(TOKEN, so_pin="1234", pin=PIN)
    server = P11KitServer(softhsm, TOKEN)
    server.start()
    try:
        yield server
    finally:
        server.close()


def users(n, tag):
    return [f"00000000-0000-4000-8{tag:03d}-{i:012d}" for i in range(n)]


def write_keys(d, issuer, subs) -> dict:
    keys = {}
    for u in subs:
        keys[u] = new_key()
        assert_empty_200(d.client.post("/user-keys", token=issuer.token(u),
                                       json_body={"key": keys[u]}))
    return keys


def read_all(d, issuer, keys):
    for u, k in keys.items():
        assert_key(d.client.get("/user-keys", token=issuer.token(u)), k)


def health(d):
    return d.operator.get("/health"), d.client.get("/health")


def wait_unavailable(d):
    def gone():
        op, _ = health(d)
        return op if op.status == 503 else None
    op = poll_until(gone, timeout=LOSS_SEEN_S, interval=0.1)
    assert op, f"/health stayed 200 with the token gone:\n{d.log()}"
    assert op.json()["reason"].startswith("keystore unavailable"), op
    _, public = health(d)
    assert public.status == 503 and "reason" not in public.json(), public
    assert "keystore" not in public.body.decode(), public


def wait_back(d):
    ok = poll_until(lambda: health(d)[0].status == 200, timeout=BACK_S, interval=0.1)
    assert ok, f"/health did not come back after the token returned:\n{d.log()}"
    assert health(d)[1].status == 200


def cli(d, *args):
    return subprocess.run([str(harness.build_dir() / "src" / "cli" / "keyhold"), "--socket",
                           str(d.admin_socket), *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S)


def audit_verifies(d, tmp_path, since_seq=0) -> dict:
    """Exports the default tenant's chain once a checkpoint after since_seq is signed, and
    verifies it offline; returns the verdict."""
    r = d.operator.get("/admin/audit/public-key")
    assert r.status == 200, r
    pem = tmp_path / "audit.pem"
    pem.write_text(r.json()["pem"])
    out = tmp_path / "chain.jsonl"

    def signed_after():
        p = cli(d, "--json", "audit", "export", str(out), "--force")
        assert p.returncode == 0, p
        lines = [json.loads(x) for x in out.read_bytes().splitlines()]
        return lines if any("signature" in x and x["seq"] > since_seq for x in lines) else None
    lines = poll_until(signed_after, timeout=BACK_S, interval=0.2)
    assert lines, "no checkpoint signed after the token came back"
    p = cli(d, "--json", "audit", "verify", str(out), "--public-key", str(pem))
    verdict = json.loads(p.stdout)
    assert p.returncode == 0 and verdict["ok"] is True, (p, verdict)
    return {"verdict": verdict, "last_seq": max(x["seq"] for x in lines)}


def test_token_lost_and_back_with_cached_deks(pki, issuers, softhsm, p11, tmp_path):
    iss = issuers["default"]
    tenants = {"default": {"issuer": iss, "admins": "role:keyhold-admin",
                           "approvers": "role:keyhold-approver"}}
    d = LossKeyholdd(tmp_path / "k", pki, tenants, softhsm, p11, client_module(), cache=True,
                     extra="\n[audit]\ncheckpoint_records = 3\n")
    d.start()
    try:
        before = write_keys(d, iss, users(4, 1))
        read_all(d, iss, before)
        # a member enrolled in account recovery, whose admin request only the token can open
        m = Member(d, iss)
        m.enrol()
        req = Requester()
        doc = m.create_ok(req, path="/auth-requests/admin-request", type_=2)
        approve = f"/organizations/default/auth-requests/{doc['id']}"
        adm = admin_token(iss)
        audit_before = audit_verifies(d, tmp_path)

        assert d.metrics().sum("keyhold_keystore_unavailable") == 0
        p11.stop()
        wait_unavailable(d)
        assert d.metrics().sum("keyhold_keystore_unavailable") == 1

        # what needs only the DEKs in memory goes on
        read_all(d, iss, before)
        during = write_keys(d, iss, users(3, 2))
        read_all(d, iss, during)
        # what needs the token does not, and says why
        assert_error(d.client.post(approve, json_body={"requestApproved": True,
                                                       "encryptedUserKey": None},
                                   headers=auth(adm)), 503, "keystore_unavailable")
        assert_error(d.operator.post("/admin/keys/rekey", json_body={"algorithm": "rsa-3072"}),
                     503, "keystore_unavailable")
        # the admin request is untouched: still pending
        r = d.client.get(f"/auth-requests/{doc['id']}/response?code={req.code}")
        assert r.status == 200 and r.json()["status"] == "pending", r
        assert r.json()["key"] is None, r
        time.sleep(2.5)  # a few probes and reconnects: the log must not repeat the loss

        p11.start()
        wait_back(d)
        assert d.metrics().sum("keyhold_keystore_unavailable") == 0

        read_all(d, iss, {**before, **during})
        after = write_keys(d, iss, users(2, 3))
        r = d.operator.post("/admin/keys/rekey", json_body={"algorithm": "rsa-3072"})
        assert r.status == 200 and r.json()["state"] == "active", r
        version = r.json()["version"]
        assert version == 2, r
        read_all(d, iss, {**before, **during, **after})
        r = d.client.post(approve, json_body={"requestApproved": True, "encryptedUserKey": None},
                          headers=auth(adm))
        assert r.status == 200 and r.json()["status"] == "approved", r
        r = d.client.get(f"/auth-requests/{doc['id']}/response?code={req.code}")
        assert r.status == 200 and open4(req.priv, r.json()["key"]) == m.user_key, r

        v = audit_verifies(d, tmp_path, since_seq=audit_before["last_seq"])
        assert v["verdict"]["records"] > audit_before["verdict"]["records"], v
    finally:
        assert d.stop() == 0, d.log()
    log = d.full_log()
    assert log.count("keystore unavailable:") == 1, log
    assert log.count("keystore available again") == 1, log
    assert PIN not in log, log


def test_token_lost_and_back_without_cached_deks(pki, issuers, softhsm, p11, tmp_path):
    iss = issuers["default"]
    tenants = {"default": {"issuer": iss, "admins": "role:keyhold-admin"}}
    d = LossKeyholdd(tmp_path / "k", pki, tenants, softhsm, p11, client_module(), cache=False)
    d.start()
    try:
        before = write_keys(d, iss, users(3, 4))
        read_all(d, iss, before)

        p11.stop()
        wait_unavailable(d)
        # the DEKs are dropped: every key route answers 503 keystore_unavailable
        u = next(iter(before))
        poll_until(lambda: d.client.get("/user-keys", token=iss.token(u)).status == 503,
                   timeout=LOSS_SEEN_S, interval=0.1)
        assert_error(d.client.get("/user-keys", token=iss.token(u)), 503, "keystore_unavailable")
        assert_error(d.client.put("/user-keys", token=iss.token(u), json_body={"key": new_key()}),
                     503, "keystore_unavailable")
        fresh = users(1, 5)[0]
        assert_error(d.client.post("/user-keys", token=iss.token(fresh),
                                   json_body={"key": new_key()}), 503, "keystore_unavailable")

        p11.start()
        wait_back(d)
        read_all(d, iss, before)  # nothing refused was written
        assert_error(d.client.get("/user-keys", token=iss.token(fresh)), 404, "key_not_found")
        after = write_keys(d, iss, users(2, 6))
        read_all(d, iss, {**before, **after})
    finally:
        assert d.stop() == 0, d.log()
    log = d.full_log()
    assert log.count("keystore unavailable:") == 1, log
    assert "DEKs dropped" in log, log
    assert log.count("keystore available again") == 1, log
    assert PIN not in log, log
