"""Issue #17's story through the `keyhold` binary against the real keyholdd (tokens from the
test issuer, --cacert the test CA, the admin being the operator on the admin socket): a
member's first device is trusted, a second device asks and the first approves, the member
enrols in recovery, a third device asks the approvers and the admin approves, and an
untrusted device can no longer unlock. Then the CLI's failures (exit 1 with a code), the
mode of every state file, and examples/trusted-devices.sh itself against `keyholdd --dev`.

Every user key the CLI prints or writes is compared with the one the test made."""
import base64
import json
import os
import pathlib
import stat
import subprocess
import sys
import time
import uuid

import pytest

import harness
from test_cli import cli_env, commands, json_error, run_cli

ADMINS = "role:keyhold-admin"


@pytest.fixture(scope="module")
def k(pki, issuers, tmp_path_factory):
    d = harness.Keyholdd(tmp_path_factory.mktemp("keyholdd-story"), pki,
                         {"default": {"issuer": issuers["default"], "admins": ADMINS},
                          "acme": {"issuer": issuers["acme"], "admins": ADMINS}})
    yield from harness.serve(d)


class Member:
    """A member with a token file and a user key, and the CLI as each of their devices."""

    def __init__(self, k, issuer, pki, tmp: pathlib.Path, tenant: str | None = None):
        self.k, self.tmp, self.tenant = k, tmp, tenant
        self.id = str(uuid.uuid4())
        self.email = f"Member-{self.id[:8]}@Example.test"
        self.token_file = tmp / f"{self.id}.jwt"
        self.token_file.write_text(issuer.token(self.id, email=self.email))
        self.token_file.chmod(0o600)
        self.user_key = base64.b64encode(os.urandom(64)).decode()
        self.key_file = tmp / f"{self.id}.key"
        self.key_file.write_text(self.user_key + "\n")
        self.key_file.chmod(0o600)
        self.ca = pki.ca_pem

    def state(self, device: str) -> pathlib.Path:
        return self.tmp / f"state-{self.id[:8]}-{device}"

    def on(self, device: str, *args, token: bool = True) -> subprocess.CompletedProcess:
        extra = ["--tenant", self.tenant] if self.tenant else []
        tok = ["--token-file", self.token_file] if token else []
        return run_cli("--url", f"https://127.0.0.1:{self.k.port}", "--cacert", self.ca, *tok,
                       "--state", self.state(device), *extra, *args)

    def on_json(self, device: str, *args, **kw) -> dict:
        p = self.on(device, *args, "--json", **kw)
        assert p.returncode == 0, p
        return json.loads(p.stdout)

    def admin(self, *args) -> subprocess.CompletedProcess:
        extra = ["--tenant", self.tenant] if self.tenant else []
        return run_cli("--socket", self.k.admin_socket, *extra, *args)

    def trust(self, device: str) -> dict:
        return self.on_json(device, "device", "trust", "--user-key-file", self.key_file,
                            "--name", device)

    def identifier(self, device: str) -> str:
        return json.loads((self.state(device) / "device.json").read_text())["identifier"]


@pytest.fixture
def alice(k, default_issuer, pki, tmp_path) -> Member:
    return Member(k, default_issuer, pki, tmp_path)


def admin_approve(m: Member, request: str) -> None:
    """The admin approves: `keyhold approvals approve` when the CLI has it, else the
    operator's admin route that command calls."""
    if "approvals approve" in commands():
        p = m.admin("approvals", "approve", request)
        assert p.returncode == 0, p
        return
    org = m.tenant or "default"
    prefix = f"/t/{org}" if m.tenant else ""
    r = m.k.operator.post(f"{prefix}/organizations/{org}/auth-requests/{request}",
                          json_body={"requestApproved": True})
    assert r.status == 200, r


def wait_in_background(m: Member, device: str, request: str, out: pathlib.Path) -> subprocess.Popen:
    args = [str(harness.build_dir() / "src" / "cli" / "keyhold"), "--url",
            f"https://127.0.0.1:{m.k.port}", "--cacert", str(m.ca), "--state", str(m.state(device)),
            *(["--tenant", m.tenant] if m.tenant else []),
            "login-request", "wait", request, "--timeout", "60", "--out", str(out), "--json"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env())


# ----------------------------------------------------------------------------- the story

@pytest.mark.parametrize("tenant", [None, "acme"])
def test_the_whole_story(k, issuers, pki, tmp_path, tenant):
    m = Member(k, issuers[tenant or "default"], pki, tmp_path, tenant)

    # 1. the first device is trusted and unlocks the user key
    laptop = m.trust("laptop")
    assert laptop["identifier"] == m.identifier("laptop")
    assert m.on_json("laptop", "device", "unlock") == {"user_key": m.user_key}

    # 2. a second device asks (anonymously waiting), the first approves with the same phrase
    req = m.on_json("desktop", "login-request", "create", "--name", "desktop")
    assert req["type"] == "device" and req["email"] == m.email.lower()
    assert len(req["fingerprint"].split("-")) == 5
    out = tmp_path / "desktop.key"
    waiter = wait_in_background(m, "desktop", req["id"], out)
    approved = m.on_json("laptop", "login-request", "approve", req["id"],
                         "--fingerprint", req["fingerprint"])
    assert approved == {"id": req["id"], "status": "approved", "fingerprint": req["fingerprint"]}
    stdout, stderr = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, (stdout, stderr)
    assert json.loads(stdout) == {"id": req["id"], "status": "approved", "file": str(out)}
    assert out.read_text() == m.user_key + "\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not list(m.state("desktop").glob("request-*")), "the answered request's files stay"
    # ... and the desktop trusts itself with the key it got
    m.on_json("desktop", "device", "trust", "--user-key-file", out)
    assert m.on_json("desktop", "device", "unlock") == {"user_key": m.user_key}

    # 3. recovery enrolment from the laptop's trust
    enrolled = m.on_json("laptop", "recovery", "enrol")
    assert enrolled == {"user": m.id, "tenant": tenant or "default", "enrolled": True}

    # 4. a third device asks the approvers; the admin approves through the recovery key
    req = m.on_json("phone", "login-request", "create", "--admin", "--name", "phone")
    assert req["type"] == "admin"
    admin_approve(m, req["id"])
    got = m.on_json("phone", "login-request", "wait", "--timeout", "30")  # the latest request
    assert got == {"id": req["id"], "status": "approved", "user_key": m.user_key}

    # 5. the member untrusts the desktop (by its identifier); its unlock fails
    devices = m.on_json("laptop", "device", "list")
    assert {d["name"] for d in devices} >= {"laptop", "desktop", "phone"}
    assert [d["this_device"] for d in devices if d["name"] == "laptop"] == [True]
    m.on_json("laptop", "device", "untrust", m.identifier("desktop"))
    err = json_error(m.on("desktop", "device", "unlock", "--json"), "not_trusted")
    assert "untrusted" in err["message"]
    assert m.on_json("laptop", "device", "unlock") == {"user_key": m.user_key}

    # the admin sees it too
    p = m.admin("device", "list", "--user", m.id, "--json")
    assert p.returncode == 0, p
    rows = {d["identifier"]: d["trusted"] for d in json.loads(p.stdout)}
    assert rows[m.identifier("desktop")] is False and rows[m.identifier("laptop")] is True


def test_admin_untrusts_and_removes_a_member(alice):
    alice.trust("laptop")
    p = alice.admin("device", "untrust", "--user", alice.id, alice.identifier("laptop"), "--json")
    assert p.returncode == 0, p
    assert json.loads(p.stdout)["trusted"] is False
    json_error(alice.on("laptop", "device", "unlock", "--json"), "not_trusted")

    alice.trust("laptop")  # trusts again
    p = alice.admin("member", "remove", alice.id, "--json")
    assert p.returncode == 0, p
    removed = json.loads(p.stdout)
    assert removed["user"] == alice.id and removed["removed"]["devices"] == 1, removed
    err = json_error(alice.on("laptop", "device", "unlock", "--json"), "not_trusted")
    assert "knows no device" in err["message"]


# ------------------------------------------------------------------------------ failures

def test_unlock_on_a_device_never_trusted(alice):
    p = alice.on("fresh", "device", "unlock")
    assert p.returncode == 1 and p.stdout == "", p
    assert "not trusted" in p.stderr and "(not_trusted)" in p.stderr, p
    json_error(alice.on("fresh", "device", "unlock", "--json"), "not_trusted")


def test_unlock_with_another_members_token(alice, k, default_issuer, pki, tmp_path):
    alice.trust("laptop")
    bob = Member(k, default_issuer, pki, tmp_path)
    p = run_cli("--url", f"https://127.0.0.1:{k.port}", "--cacert", pki.ca_pem, "--token-file",
                bob.token_file, "--state", alice.state("laptop"), "device", "unlock", "--json")
    json_error(p, "not_trusted")


def test_wait_on_a_denied_request_exits_1(alice):
    alice.trust("laptop")
    req = alice.on_json("desktop", "login-request", "create")
    assert len(list(alice.state("desktop").glob("request-*.json"))) == 1
    denied = alice.on_json("laptop", "login-request", "deny", req["id"])
    assert denied["status"] == "denied"
    p = alice.on("desktop", "login-request", "wait", req["id"], token=False)
    assert p.returncode == 1 and p.stdout == "", p
    assert "denied" in p.stderr
    assert not list(alice.state("desktop").glob("request-*")), "a denied request's files stay"
    # answered already: approving now is refused, and nothing waits any more
    json_error(alice.on("laptop", "login-request", "approve", req["id"], "--json"), "not_pending")
    json_error(alice.on("desktop", "login-request", "wait", "--json"), "no_request")


def test_wait_times_out_and_keeps_the_request(alice):
    req = alice.on_json("desktop", "login-request", "create", "--email", alice.email)
    start = time.monotonic()
    err = json_error(alice.on("desktop", "login-request", "wait", "--timeout", "0", "--json"),
                     "timeout")
    assert time.monotonic() - start < 10
    assert req["id"] in err["message"]
    assert len(list(alice.state("desktop").glob("request-*.json"))) == 1


def test_approve_refuses_another_phrase(alice):
    alice.trust("laptop")
    req = alice.on_json("desktop", "login-request", "create")
    err = json_error(alice.on("laptop", "login-request", "approve", req["id"], "--fingerprint",
                              "abacus-abacus-abacus-abacus-abacus", "--json"),
                     "fingerprint_mismatch")
    assert req["fingerprint"] in err["message"]
    # nothing was answered: the request is still pending
    json_error(alice.on("desktop", "login-request", "wait", "--timeout", "0", "--json"), "timeout")


def test_admin_request_without_enrolment_is_refused_by_the_approver(alice):
    alice.trust("laptop")
    req = alice.on_json("phone", "login-request", "create", "--admin")
    r = alice.k.operator.post(f"/organizations/default/auth-requests/{req['id']}",
                              json_body={"requestApproved": True})
    assert r.status >= 400, r
    json_error(alice.on("phone", "login-request", "wait", "--timeout", "0", "--json"), "timeout")


def test_bad_user_key_files_and_usage(alice, tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text(base64.b64encode(os.urandom(32)).decode())
    json_error(alice.on("laptop", "device", "trust", "--user-key-file", bad, "--json"), "invalid_key")
    p = alice.on("laptop", "device", "trust")
    assert p.returncode == 2 and "--user-key-file" in p.stderr, p
    # the member commands need --url; --user needs a GUID
    p = run_cli("device", "unlock", "--state", tmp_path / "s")
    assert p.returncode == 2 and "--url" in p.stderr, p
    p = alice.admin("device", "list", "--user", "not-a-guid")
    assert p.returncode == 2, p
    # no token, no email: the account is unknown
    p = alice.on("desktop", "login-request", "create", token=False)
    assert p.returncode == 2 and "--email" in p.stderr, p


def test_user_key_from_stdin(alice):
    p = run_cli("--url", f"https://127.0.0.1:{alice.k.port}", "--cacert", alice.ca,
                "--token-file", alice.token_file, "--state", alice.state("laptop"),
                "device", "trust", "--user-key-file", "-", stdin=open(alice.key_file))
    assert p.returncode == 0, p
    assert alice.on("laptop", "device", "unlock").stdout == alice.user_key + "\n"


def test_state_files_are_0600_in_a_0700_folder(alice, tmp_path):
    alice.trust("laptop")
    alice.on_json("desktop", "login-request", "create")
    out = tmp_path / "unlocked.key"
    assert alice.on("laptop", "device", "unlock", "--out", out).returncode == 0
    assert out.read_text() == alice.user_key + "\n"
    files = [alice.state("laptop") / "device.json", alice.state("desktop") / "device.json",
             *alice.state("desktop").glob("request-*.json"), out]
    assert len(files) == 4
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for d in (alice.state("laptop"), alice.state("desktop")):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    saved = json.loads((alice.state("laptop") / "device.json").read_text())
    assert set(saved) >= {"identifier", "id", "deviceKey", "encryptedPrivateKey"}
    assert alice.user_key not in (alice.state("laptop") / "device.json").read_text()
    # a state file opened to others is refused, not used
    (alice.state("laptop") / "device.json").chmod(0o644)
    err = json_error(alice.on("laptop", "device", "unlock", "--json"), "file_error")
    assert "chmod 600" in err["message"]


def test_default_state_folder_follows_xdg(alice, tmp_path):
    xdg = tmp_path / "xdg"
    p = run_cli("--url", f"https://127.0.0.1:{alice.k.port}", "--cacert", alice.ca,
                "--token-file", alice.token_file, "device", "trust",
                "--user-key-file", alice.key_file, env={"XDG_STATE_HOME": str(xdg)})
    assert p.returncode == 0, p
    assert (xdg / "keyhold" / "device.json").exists()
    home = tmp_path / "home"
    p = run_cli("--url", f"https://127.0.0.1:{alice.k.port}", "--cacert", alice.ca,
                "--token-file", alice.token_file, "device", "unlock",
                env={"HOME": str(home), "XDG_STATE_HOME": ""})
    assert p.returncode == 1, p  # a new folder: a device never trusted
    assert (home / ".local" / "state" / "keyhold" / "device.json").exists() is False


# ------------------------------------------------------------------ the example, dev mode

@pytest.fixture
def dev_server(tmp_path):
    data = tmp_path / "dev"
    port_file = tmp_path / "port"
    log = open(tmp_path / "dev.log", "ab")
    env = {kk: v for kk, v in os.environ.items() if not kk.startswith("KEYHOLD_")}
    env.update(KEYHOLD_SERVER_LISTEN="127.0.0.1:0", KEYHOLD_SERVER_PORT_FILE=str(port_file))
    proc = subprocess.Popen([str(harness.keyholdd_binary()), "--dev", "--data", str(data)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        port = harness.wait_port_file(port_file, proc, "keyholdd --dev")
        yield data, port
    finally:
        rc = harness.stop_process(proc)
        log.close()
        assert rc in (None, 0), (tmp_path / "dev.log").read_text()


def test_example_script_against_dev_mode(dev_server):
    data, port = dev_server
    script = harness.REPO / "examples" / "trusted-devices.sh"
    p = subprocess.run(["bash", str(script), str(data)], capture_output=True, text=True,
                       timeout=300, env=cli_env({
                           "KEYHOLD": str(harness.build_dir() / "src" / "cli" / "keyhold"),
                           "KEYHOLD_URL": f"https://127.0.0.1:{port}"}))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "The story played as told." in p.stdout
    assert "(not_trusted)" in p.stderr  # the untrusted desktop's refusal, step 5
