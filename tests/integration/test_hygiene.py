"""Secret hygiene of keyholdd (issue "Harden keyholdd", part B; docs/security.md).

A keyholdd with known user keys, tokens and master key serves every route, success and error
paths alike; then its log, every error response, /metrics, the database files (-wal, -shm)
and the key store files are searched for each secret in every usual encoding. Process
hardening is checked from outside through /proc: not dumpable (run as an unprivileged user,
where that is visible), no core files (RLIMIT_CORE 0), and secrets in locked, non-dumped,
wiped-on-fork pages.
"""
import base64
import grp
import json
import os
import pathlib
import pwd
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import types

import pytest

import harness
from conftest import SERVER_ORIGIN, _tenants
from harness import Keyholdd, new_key
import tokens

CORE_LIMIT = 4 << 20   # the core limit keyholdd inherits in the tests; it must lower it to 0

# the exercise corrupts a row in the SQLite file, and the search reads the files
pytestmark = pytest.mark.sqlite_only


# A keyholdd with extra arguments (--verbose), a command prefix (setpriv) and a pre-exec hook
# (resource limits): the harness's own, which takes all three.
HygieneKeyholdd = Keyholdd


# ------------------------------------------------------------------------------ searching


def encodings(raw: bytes) -> dict[str, bytes]:
    """The forms a 32-byte secret could take in a log, a body or a file."""
    b64 = base64.b64encode(raw)
    return {
        "raw": raw,
        "base64": b64,
        "base64 unpadded": b64.rstrip(b"="),
        "base64 JSON-escaped": b64.replace(b"/", b"\\/"),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "hex with colons": raw.hex(":").encode(),
    }


def token_forms(tok: str) -> dict[str, bytes]:
    """A bearer token and its signature (the part that makes it usable)."""
    parts = tok.split(".")
    forms = {"token": tok.encode()}
    if len(parts) == 3 and parts[2]:   # "alg none" forgeries have no signature
        forms["token signature"] = parts[2].encode()
    if len(parts) == 3:
        forms["token payload"] = parts[1].encode()
    return forms


def find(needles: dict[str, dict[str, bytes]], haystacks: dict[str, bytes]) -> list[str]:
    """Every (secret, encoding, where) found; the message names them, never the bytes."""
    hits = []
    for what, forms in needles.items():
        for form, needle in forms.items():
            assert len(needle) >= 16, (what, form)  # a short needle would match by chance
            for where, hay in haystacks.items():
                if needle in hay:
                    hits.append(f"{what} ({form}) in {where}")
    return hits


def data_files(k: Keyholdd) -> dict[str, bytes]:
    """Raw bytes of the database, its -wal/-shm/-journal files and the key store (on the
    pkcs11 store, the SoftHSM2 token's files, named keystore/token/...)."""
    out = {}
    for f in sorted(k.data.rglob("*")):
        if f.is_file():
            out[str(f.relative_to(k.data))] = f.read_bytes()
    if k.hsm is not None:
        for f in sorted(k.hsm.tokendir.rglob("*")):
            if f.is_file():
                out["keystore/token/" + str(f.relative_to(k.hsm.tokendir))] = f.read_bytes()
    return out


def response_bytes(r: harness.Response) -> bytes:
    head = "".join(f"{n}: {v}\r\n" for n, v in r.headers.items())
    return f"{r.status} {r.reason}\r\n{head}\r\n".encode() + r.body


# ------------------------------------------------------------------- the exercised daemon


class Exercise:
    """What the module's daemon was sent and answered."""

    def __init__(self):
        self.user_keys: dict[str, bytes] = {}   # name -> raw key bytes (stored or refused)
        self.tokens: dict[str, str] = {}        # name -> token sent
        self.responses: dict[str, bytes] = {}   # every answer except the legitimate key reads
        self.key_reads: list[tuple[str, harness.Response, str]] = []
        self.files_running: dict[str, bytes] = {}
        self.files_stopped: dict[str, bytes] = {}
        self.metrics = b""
        self.log = b""
        self.master_key = b""  # the key store's secret: master key, or the token's PIN
        self.keystore = "file"
        self.pid = 0
        self.smaps = ""


def _key(ex: Exercise, name: str) -> str:
    k = new_key()
    ex.user_keys[name] = base64.b64decode(k)
    return k


def _tok(ex: Exercise, name: str, tok: str) -> str:
    ex.tokens[name] = tok
    return tok


def _send(ex: Exercise, k: Keyholdd, name: str, method: str, path: str, status: int,
          token: str | None = None, body=None, headers=None, json_body=None) -> harness.Response:
    r = k.client.request(method, path, token=token, body=body, headers=headers,
                         json_body=json_body)
    assert r.status == status, (name, r)
    ex.responses[name] = response_bytes(r)
    return r


def _exercise(k: Keyholdd, issuers: dict, ex: Exercise) -> None:
    d, a = issuers["default"], issuers["acme"]
    A, B, C = tokens.new_guid(), tokens.new_guid(), tokens.new_guid()
    tA, tAa, tB, tC = (_tok(ex, "A default", d.token(A)), _tok(ex, "A acme", a.token(A)),
                       _tok(ex, "B default", d.token(B)), _tok(ex, "C default", d.token(C)))

    # A record that fails to open (500 record_integrity, the one error keyholdd logs).
    kC = _key(ex, "C stored (then corrupted)")
    _send(ex, k, "POST C", "POST", "/user-keys", 200, tC, json_body={"key": kC})
    assert k.stop() == 0, k.log()
    db = sqlite3.connect(k.db_path)
    try:
        blob = bytearray(db.execute("SELECT blob FROM records WHERE owner = ?", (C,)).fetchone()[0])
        blob[len(blob) // 2] ^= 0x01
        db.execute("UPDATE records SET blob = ? WHERE owner = ?", (bytes(blob), C))
        db.commit()
    finally:
        db.close()
    k.start()
    ex.pid = k.proc.pid

    # Success paths: both tenants, POST, PUT (replaced key included), GET.
    kA, kAa = _key(ex, "A default"), _key(ex, "A acme")
    kB1, kB2 = _key(ex, "B first (replaced)"), _key(ex, "B second")
    _send(ex, k, "POST A", "POST", "/user-keys", 200, tA, json_body={"key": kA})
    _send(ex, k, "POST A acme", "POST", "/t/acme/user-keys", 200, tAa, json_body={"key": kAa})
    _send(ex, k, "POST B", "POST", "/user-keys", 200, tB, json_body={"key": kB1})
    _send(ex, k, "PUT B", "PUT", "/user-keys", 200, tB, json_body={"key": kB2})
    for name, path, tok, key in (("GET A", "/user-keys", tA, kA),
                                 ("GET A acme", "/t/acme/user-keys", tAa, kAa),
                                 ("GET B", "/user-keys", tB, kB2),
                                 ("GET A explicit default", "/t/default/user-keys", tA, kA)):
        ex.key_reads.append((name, k.client.get(path, token=tok), key))
    r = k.client.get("/user-keys", token=tA, headers={"Origin": SERVER_ORIGIN})  # CORS read
    ex.key_reads.append(("GET A with Origin", r, kA))

    # The corrupted record, asked for with secrets in the query string (RFC 6750 allows
    # access_token there; a client may also misplace the key).
    kq = _key(ex, "key in a query string")
    r = _send(ex, k, "GET C corrupted", "GET", "/user-keys", 500, tC)
    assert json.loads(r.body)["code"] == "record_integrity", r
    _send(ex, k, "GET C corrupted, key in query", "GET", f"/user-keys?key={kq}", 500, tC)

    # Token errors, each carrying a key in its body.
    exp = tokens.claims(A, d.iss, exp=1_000_000_000, nbf=999_999_000, iat=999_999_000)
    bad = {
        "expired": (tokens.mint(exp, d.private_key(), "key-1"), 401),
        "bad signature": (tokens.bad_signature(d.token(A)), 401),
        "alg none": (tokens.alg_none(tokens.claims(A, d.iss)), 401),
        "other tenant's": (a.token(A), 401),
        "no api scope": (d.token(A, scope=["offline_access"]), 403),
        "garbage": ("not-a-jwt-" + base64.b64encode(os.urandom(24)).decode(), 401),
    }
    for name, (tok, status) in bad.items():
        _tok(ex, name, tok)
        for method in ("GET", "POST", "PUT"):
            body = None if method == "GET" else {"key": _key(ex, f"{method} with {name} token")}
            _send(ex, k, f"{method} {name} token", method, "/user-keys", status, tok,
                  json_body=body)
    _send(ex, k, "no token", "PUT", "/user-keys", 401, json_body={"key": _key(ex, "no token")})
    _send(ex, k, "Basic scheme", "PUT", "/user-keys", 401,
          headers={"Authorization": f"Basic {tA}", "Content-Type": "application/json"},
          body=json.dumps({"key": _key(ex, "Basic scheme")}))
    _send(ex, k, "default token on acme", "PUT", "/t/acme/user-keys", 401, tA,
          json_body={"key": _key(ex, "default token on acme")})

    # Body errors with a valid token.
    kx = _key(ex, "POST on existing key")
    _send(ex, k, "key_exists", "POST", "/user-keys", 400, tA, json_body={"key": kx})
    ky, kz = _key(ex, "key and Key 1"), _key(ex, "key and Key 2")
    raw_bad = {
        "key and Key": (json.dumps({"key": ky, "Key": kz}), 400),
        "misspelt member": (json.dumps({"kee": _key(ex, "misspelt member")}), 400),
        "key plus junk": (json.dumps({"key": _key(ex, "key plus junk") + "AAAA"}), 400),
        "key as hex": (json.dumps({"key": _key_hex(ex, "key as hex")}), 400),
        "truncated JSON": ('{"key":"' + _key(ex, "truncated JSON"), 400),
        "key in array": (json.dumps({"key": [_key(ex, "key in array")]}), 400),
        "too large": (json.dumps({"key": _key(ex, "too large"), "pad": "x" * 8000}), 413),
    }
    for name, (body, status) in raw_bad.items():
        _send(ex, k, name, "PUT", "/user-keys", status, tA, body=body,
              headers={"Content-Type": "application/json"})
    _send(ex, k, "text/plain", "PUT", "/user-keys", 415, tA,
          body=json.dumps({"key": _key(ex, "text/plain")}), headers={"Content-Type": "text/plain"})

    # Routing errors.
    _send(ex, k, "unknown tenant", "PUT", "/t/nosuch/user-keys", 404, tA,
          json_body={"key": _key(ex, "unknown tenant")})
    _send(ex, k, "key in path", "GET", f"/user-keys/{_key(ex, 'key in path')}", 404, tA)
    _send(ex, k, "DELETE", "DELETE", "/user-keys", 405, tA)
    _send(ex, k, "not found", "GET", "/nope", 404, tA)

    # Anonymous routes, CORS.
    for path in ("/alive", "/now", "/health", "/t/acme/alive"):
        _send(ex, k, f"GET {path}", "GET", path, 200, tA)
    acrh = "authorization,content-type"
    _send(ex, k, "preflight", "OPTIONS", "/user-keys", 204,
          headers={"Origin": SERVER_ORIGIN, "Access-Control-Request-Method": "PUT",
                   "Access-Control-Request-Headers": acrh})
    r = k.client.options("/user-keys", headers={"Origin": "https://evil.example",
                                                "Access-Control-Request-Method": "PUT"})
    assert r.status in (204, 403), r
    ex.responses["preflight from another origin"] = response_bytes(r)

    # Malformed at the HTTP level, secrets inside: a header too large, a bad request line.
    big = f"GET /user-keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tA}\r\n" \
          f"X-Pad: {'a' * 20000}\r\n\r\n".encode()
    ex.responses["header too large"] = k.client.raw(big)
    assert harness.raw_status(ex.responses["header too large"]) in (400, 413, 431), \
        ex.responses["header too large"][:200]
    line = f"PUT /user-keys {_key(ex, 'bad request line')}\r\n\r\n".encode()
    ex.responses["bad request line"] = k.client.raw(line)

    ex.metrics = k.operator.get("/metrics").body
    with open(f"/proc/{ex.pid}/smaps") as f:
        ex.smaps = f.read()


def _key_hex(ex: Exercise, name: str) -> str:
    raw = os.urandom(32)
    ex.user_keys[name] = raw
    return raw.hex()


@pytest.fixture(scope="module")
def exercised(pki, issuers, tmp_path_factory) -> Exercise:
    ex = Exercise()
    k = HygieneKeyholdd(tmp_path_factory.mktemp("keyholdd-hygiene"), pki, _tenants(issuers),
                        args=["--verbose"])
    ex.keystore = k.keystore
    ex.master_key = k.master_key.read_bytes() if k.keystore == "file" else k.pin.encode()
    try:
        k.start()
        _exercise(k, issuers, ex)
        ex.files_running = data_files(k)
    finally:
        rc = k.stop()
    assert rc == 0, f"keyholdd exited {rc} on SIGTERM\n{k.log()}"
    ex.files_stopped = data_files(k)
    ex.log = k.log_path.read_bytes()
    return ex


def _needles(ex: Exercise, keys=True, toks=True, master=True) -> dict:
    n = {}
    if keys:
        n.update({f"user key '{name}'": encodings(raw) for name, raw in ex.user_keys.items()})
    if toks:
        n.update({f"token '{name}'": token_forms(t) for name, t in ex.tokens.items()})
    if master:
        n["master key"] = encodings(ex.master_key)
    return n


def _files(ex: Exercise) -> dict[str, bytes]:
    out = {f"{name} (running)": b for name, b in ex.files_running.items()}
    out.update({f"{name} (stopped)": b for name, b in ex.files_stopped.items()})
    return out


# ---------------------------------------------------------------------------------- tests


def test_search_finds_planted_secrets(exercised):
    """The search itself works: every encoding of a key is found where it was planted, and
    the legitimate key reads (the one place a key must appear) contain their key."""
    ex = exercised
    raw = next(iter(ex.user_keys.values()))
    for form, needle in encodings(raw).items():
        hits = find({"planted": {form: needle}}, {"hay": b"xx" + needle + b"yy"})
        assert hits == [f"planted ({form}) in hay"], form
    assert len(ex.key_reads) == 5
    for name, r, key in ex.key_reads:
        assert r.status == 200 and r.json() == {"key": key}, (name, r)
        assert find({"k": {"base64": key.encode()}}, {"body": r.body}) == ["k (base64) in body"]
    # And the secrets exist at all: the master key file (or PIN), a token, the database files.
    assert len(ex.master_key) == 32 if ex.keystore == "file" else len(ex.master_key) >= 16
    assert len(ex.tokens) >= 10 and len(ex.user_keys) >= 30, (len(ex.tokens), len(ex.user_keys))
    assert "keyhold.db (stopped)" in _files(ex) and any("keystore" in f for f in _files(ex))


def test_no_secret_in_log(exercised):
    assert b"listening on" in exercised.log  # the log is the daemon's real output
    assert b"failed" in exercised.log        # ... including the logged 500s
    hits = find(_needles(exercised), {"keyholdd log": exercised.log})
    assert not hits, hits


def test_no_secret_in_error_responses(exercised):
    assert len(exercised.responses) >= 40, len(exercised.responses)
    hits = find(_needles(exercised), exercised.responses)
    assert not hits, hits


def test_no_secret_in_metrics(exercised):
    assert b"keyhold_requests_total" in exercised.metrics
    hits = find(_needles(exercised), {"/metrics": exercised.metrics})
    assert not hits, hits


def test_no_secret_in_database_or_key_store_files(exercised):
    files = _files(exercised)
    assert any(n.startswith("keyhold.db-wal") for n in files), sorted(files)
    hits = find(_needles(exercised), files)
    assert not hits, hits


# ------------------------------------------------------------------------- process checks


def _smaps(text: str) -> list[dict]:
    """/proc/PID/smaps as [{"range", "size_kb", "locked_kb", "flags"}]."""
    maps, cur = [], None
    for line in text.splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            cur = {"range": line.split()[0], "name": line.split()[-1] if len(line.split()) > 5
                   else "", "flags": set()}
            maps.append(cur)
        elif line.startswith("Size:"):
            cur["size_kb"] = int(line.split()[1])
        elif line.startswith("Locked:"):
            cur["locked_kb"] = int(line.split()[1])
        elif line.startswith("VmFlags:"):
            cur["flags"] = set(line.split()[1:])
    return maps


def test_secret_pages_locked_not_dumped_wiped_on_fork(exercised):
    maps = _smaps(exercised.smaps)
    assert maps and all("flags" in m for m in maps)
    locked = not harness.sanitized_build()  # ASan makes mlock() a no-op
    # struct kh_secret slab chunks: mlock + MADV_DONTDUMP + MADV_WIPEONFORK, 64 KiB each.
    slab = [m for m in maps if {"dd", "wf"} <= m["flags"]]
    assert slab, "no mapping is both non-dumpable (dd) and wiped on fork (wf)"
    for m in slab:
        assert m["size_kb"] % 64 == 0, m
        if locked:
            assert "lo" in m["flags"] and m["locked_kb"] == m["size_kb"], m
    # OpenSSL's secure heap (tenant private keys): locked (OpenSSL 3 locks on fault, "lf",
    # so only touched pages count as Locked) and not dumped, 1 MiB.
    heap = [m for m in maps if "dd" in m["flags"] and "wf" not in m["flags"]
            and m["size_kb"] >= 1024]
    assert heap, "no OpenSSL secure heap mapping (non-dumpable, >= 1 MiB)"
    if locked:
        assert any("lo" in m["flags"] and m["locked_kb"] > 0 for m in heap), heap


@pytest.fixture
def unprivileged(pki, issuers):
    """A keyholdd running as an unprivileged user (nobody when the tests run as root), with
    a core file limit it must lower, and a control process of the same user and limit."""
    if os.geteuid() == 0:
        uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    else:
        uid, gid, prefix = os.getuid(), os.getgid(), []
    core = min(CORE_LIMIT, resource.getrlimit(resource.RLIMIT_CORE)[1]) if os.geteuid() else \
        CORE_LIMIT

    def preexec():
        resource.setrlimit(resource.RLIMIT_CORE, (core, core))

    # pytest's tmp folders are private to root, and so may be the checkout (cloned into
    # `mktemp -d` or /root): everything that user's keyholdd reads (its binary, the LSan
    # suppressions, certificates, configuration) is copied into a folder it can reach.
    work = pathlib.Path(tempfile.mkdtemp(prefix="keyhold-hygiene-"))
    work.chmod(0o755)
    binary = work / "keyholdd"
    shutil.copy(harness.keyholdd_binary(), binary)
    env = {}
    lsan = os.environ.get("LSAN_OPTIONS", "")
    m = re.search(r"suppressions=([^:]+)", lsan)
    if m:
        shutil.copy(m.group(1), work / "lsan.supp")
        env["LSAN_OPTIONS"] = lsan.replace(m.group(0), f"suppressions={work / 'lsan.supp'}")
    k = HygieneKeyholdd(work / "k", pki, _tenants(issuers), prefix=prefix, preexec=preexec,
                        binary=binary, env=env)
    for attr in ("cert", "key"):
        dst = work / "k" / pathlib.Path(getattr(k, attr)).name
        shutil.copy(getattr(k, attr), dst)
        setattr(k, attr, dst)
    ca = work / "ca.pem"
    shutil.copy(pki.ca_pem, ca)
    k.pki = types.SimpleNamespace(ca_pem=ca)
    k.write_config()
    for p in [work, *work.rglob("*")]:
        os.chown(p, uid, gid)
    control = subprocess.Popen(prefix + ["sleep", "120"], preexec_fn=preexec)
    try:
        k.start()
        yield types.SimpleNamespace(k=k, uid=uid, gid=gid, prefix=prefix, core=core,
                                    control=control)
    finally:
        control.kill()
        control.wait()
        rc = k.stop()
        shutil.rmtree(work, ignore_errors=True)
        assert rc == 0, f"keyholdd exited {rc} on SIGTERM\n{k.log()}"


def _status_uids(pid: int) -> list[int]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")


def _core_limit(pid: int) -> tuple[str, str]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max core file size"):
                soft, hard = line[len("Max core file size"):].split()[:2]
                return soft, hard
    raise AssertionError("no core file size line")


def _read_environ_as(prefix: list[str], pid: int) -> int:
    """Exit status of the tests' user reading /proc/PID/environ: 0 read, 13 EACCES."""
    code = (f"import sys\ntry:\n open('/proc/{pid}/environ','rb').read()\n"
            f"except PermissionError:\n sys.exit(13)\n")
    return subprocess.run(prefix + [sys.executable, "-c", code], timeout=30).returncode


def test_not_dumpable(unprivileged):
    """With PR_SET_DUMPABLE 0 the kernel makes /proc/PID/* owned by root and refuses
    ptrace-mode access (environ, mem, maps) to the process's own user; the control process,
    same user, dumpable, stays readable."""
    u = unprivileged
    pid, cpid = u.k.proc.pid, u.control.pid
    r = u.k.client.get("/alive")
    assert r.status == 200, r
    assert _status_uids(pid) == [u.uid] * 4, "keyholdd does not run as the test user"
    assert _status_uids(cpid) == [u.uid] * 4
    # (/proc/PID itself keeps the user as owner; the entries in it follow dumpability.)
    for p in ("/status", "/environ", "/mem", "/maps"):
        assert os.stat(f"/proc/{cpid}{p}").st_uid == u.uid, p  # dumpable: the user's
        assert os.stat(f"/proc/{pid}{p}").st_uid == 0, p       # not dumpable: root's
    assert _read_environ_as(u.prefix, cpid) == 0
    assert _read_environ_as(u.prefix, pid) == 13


def test_no_core_files(unprivileged):
    u = unprivileged
    assert _core_limit(u.control.pid) == (str(u.core), str(u.core)) or u.core == 0
    assert _core_limit(u.k.proc.pid) == ("0", "0")
