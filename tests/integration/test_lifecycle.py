"""The tenant key lifecycle through the real keyholdd and the real `keyhold` CLI (issue 13,
DESIGN.md "Tenant key states", "Administration (interface contract)"):

1. rekey under concurrent reads and writes with kill -9 at a random moment of the
   re-encryption job (KILL_RUNS runs; one more killed right after the rekey answer): after a
   restart on the same data every record reads back with its last acknowledged value (the
   write in flight at the kill: old or new, never anything else), every record is under the
   new version, the old version retires, and the tenant's audit chain exports and verifies;
2. every refusal code, over HTTP (socket and, for not_admin, a member token on TLS) and the
   CLI (exit 1 with {"code", "message"}; usage errors exit 2);
3. revoke/reinstate: 403 key_revoked for records under the revoked version only, the job
   skips them and moves them after reinstate;
4. the kill switch (revoke --all / reinstate --all) and another tenant untouched;
5. seal/unseal with reads and writes in flight, a wrong secret, a seal that survives a
   restart, a server without a configured secret (master key file, passphrase store);
6. destroy: key file gone, wrapped DEK row empty, audited; refused without --yes off a
   terminal;
7. no export: every output of every lifecycle command and route, the log, the audit export,
   the database and the key store searched for the tenant private keys (decrypted here from
   the key files: src/keystore/file/file-keystore.c), the DEKs (unwrapped here with them) and
   the master key, raw, base64, hex and PEM.

The re-encryption job moves 500 records per batch (one transaction) and sleeps after each as
[jobs] reencrypt_rate asks: REKEY_RECORDS records at REKEY_RATE make a job of three batches
over ~1.4 s, so a kill lands before, between or after batches.

KEYHOLD_SOAK_RUNS=N runs N kill runs in test 1 (scripts/soak-rekey)."""
import base64
import http.client
import json
import os
import random
import signal
import sqlite3
import ssl
import subprocess
import threading
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import harness
import tokens
from harness import assert_error, new_key, poll_until

ADMINS = "role:keyhold-admin"
CLI_TIMEOUT_S = 120           # a hang guard only
JOB_TIMEOUT_S = 90            # bound on waiting for a re-encryption job (not a performance claim)
CONN_ERRORS = (OSError, http.client.HTTPException, ssl.SSLError)

SOAK_RUNS = int(os.environ.get("KEYHOLD_SOAK_RUNS", "0") or 0)
KILL_RUNS = SOAK_RUNS or 20
BATCH = 500                   # src/service/reencrypt.c
REKEY_RECORDS = 1100          # three batches
REKEY_RATE = 800              # records/s: ~1.4 s of job
KILL_WINDOW_S = (0.0, 1.8)
WRITE_SLOTS = 24              # records the writers keep replacing during the job
ALG = {"algorithm": "rsa-3072"}   # the harness's rsa_bits = 2048 is no rekey algorithm


def _seed_rng() -> random.Random:
    seed = int(os.environ.get("KEYHOLD_SOAK_SEED", "0") or 0) or random.randrange(1, 1 << 31)
    print(f"random seed {seed} (KEYHOLD_SOAK_SEED={seed} repeats the kill delays)", flush=True)
    return random.Random(seed)


def tenants(issuers) -> dict:
    return {"default": {"issuer": issuers["default"], "admins": ADMINS},
            "acme": {"issuer": issuers["acme"], "admins": ADMINS}}


def jobs(rate: int) -> str:
    return f"\n[jobs]\nreencrypt_rate = {rate}\n"


# ------------------------------------------------------------------------------- helpers


def cli_binary():
    return harness.build_dir() / "src" / "cli" / "keyhold"


def cli(k, *args, json_out=True, socket=True, stdin=None, log=None) -> subprocess.CompletedProcess:
    """keyhold on k's admin socket (--json unless told); stdin is /dev/null (no terminal)."""
    cmd = [str(cli_binary())]
    if socket:
        cmd += ["--socket", str(k.admin_socket)]
    if json_out:
        cmd.append("--json")
    cmd += [str(a) for a in args]
    env = {n: v for n, v in os.environ.items() if not n.startswith("KEYHOLD_")}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT_S,
                       stdin=stdin if stdin is not None else subprocess.DEVNULL)
    if log is not None:
        log.append(p.stdout.encode() + p.stderr.encode())
    return p


def cli_ok(k, *args, **kw):
    p = cli(k, *args, **kw)
    assert p.returncode == 0, p
    return json.loads(p.stdout) if p.stdout.strip() else None


def cli_refused(k, code, *args, **kw) -> dict:
    """Exit 1 and exactly one JSON line {"code": code, "message": ...} on stdout."""
    p = cli(k, *args, **kw)
    assert p.returncode == 1, p
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p
    obj = json.loads(lines[0])
    assert obj["code"] == code, p
    assert isinstance(obj["message"], str) and obj["message"], p
    return obj


def keys(k, prefix="") -> dict:
    r = k.operator.get(prefix + "/admin/keys")
    assert r.status == 200, r
    return r.json()


def states(k, prefix="") -> dict:
    return {v["version"]: v["state"] for v in keys(k, prefix)["versions"]}


def records_of(doc) -> dict:
    return {v["version"]: v["records"] for v in doc["versions"]}


def post_ok(k, path, body=None) -> dict:
    r = k.operator.post(path, json_body=body) if body is not None else k.operator.post(path)
    assert r.status == 200, r
    return r.json()


def rekey(k, prefix="") -> int:
    doc = post_ok(k, prefix + "/admin/keys/rekey", ALG)
    assert doc["state"] == "active", doc
    return doc["version"]


def wait_job_done(k, prefix="", timeout=JOB_TIMEOUT_S) -> dict:
    """key status once nothing is left under an archived version and the job is not running."""
    def done():
        doc = keys(k, prefix)
        left = sum(v["records"] for v in doc["versions"] if v["state"] == "archived")
        return doc if left == 0 and doc["job"]["state"] in ("none", "done") else None
    doc = poll_until(done, timeout=timeout, interval=0.1)
    assert doc, f"job not done within {timeout} s: {keys(k, prefix)}"
    return doc


def path_of(tenant: str) -> str:
    return "/user-keys" if tenant == "default" else f"/t/{tenant}/user-keys"


class Member:
    """One member record: its token, the last acknowledged value, the write in flight."""

    def __init__(self, issuer, tenant="default"):
        self.guid = tokens.new_guid()
        self.token = issuer.token(self.guid)
        self.path = path_of(tenant)
        self.acked: str | None = None
        self.inflight: str | None = None
        self.seen: set = set()      # every value ever sent (a read may see any of them)

    def allowed(self) -> set:
        return {self.acked} if self.inflight is None else {self.acked, self.inflight}


def seed(k, issuer, n, tenant="default", threads=4) -> list[Member]:
    """n members with a record each, written over keep-alive connections."""
    members = [Member(issuer, tenant) for _ in range(n)]
    errors = []

    def work(part):
        conn = k.client.connect()
        try:
            for m in part:
                v = new_key()
                r = k.client.put(m.path, token=m.token, json_body={"key": v}, conn=conn)
                if r.status != 200:
                    errors.append(r)
                    return
                m.acked = v
                m.seen.add(v)
        finally:
            conn.close()

    ts = [threading.Thread(target=work, args=(members[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]
    return members


def read(k, m, conn=None):
    r = k.client.get(m.path, token=m.token, conn=conn)
    return r, (r.json().get("key") if r.status == 200 else None)


def assert_all_read_back(k, members, where=""):
    """Every member reads back its acknowledged value (or the in-flight one, which then
    becomes the acknowledged one)."""
    bad = []
    conn = k.client.connect()
    try:
        for m in members:
            r, got = read(k, m, conn)
            if r.status != 200 or got not in m.allowed():
                bad.append(f"{m.guid}: {r!r}, allowed {m.allowed()}, in flight {m.inflight}")
                continue
            m.acked, m.inflight = got, None
    finally:
        conn.close()
    assert not bad, f"{where}: {len(bad)} records wrong:\n" + "\n".join(bad[:20])


class Load:
    """Writer threads replacing the keys of `writes`, reader threads reading `reads`, until
    stop(); a failure before stop() (or a wrong value at any time) is recorded."""

    def __init__(self, k, writes, reads, rng, writers=2, readers=1, accept=()):
        self.k, self.rng = k, rng
        self.stopped = threading.Event()
        self.failures: list[str] = []
        self.acked = self.reads = 0
        self.accept = accept           # (status, code) answers that are no failure
        self.refused = 0
        self.threads = [threading.Thread(target=self.write, args=(writes[i::writers],), daemon=True)
                        for i in range(writers)]
        self.threads += [threading.Thread(target=self.read, args=(reads,), daemon=True)
                         for _ in range(readers)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopped.set()
        for t in self.threads:
            t.join(harness.REQUEST_TIMEOUT_S + 5)
            assert not t.is_alive(), "a load thread hung"

    def _refused(self, r) -> bool:
        try:
            code = r.json().get("code")
        except ValueError:
            code = None
        if (r.status, code) in self.accept:
            self.refused += 1
            return True
        return False

    def write(self, part):
        if not part:
            return
        conn = self.k.client.connect()
        try:
            while not self.stopped.is_set():
                m = self.rng.choice(part)
                v = new_key()
                m.seen.add(v)
                m.inflight = v
                try:
                    r = self.k.client.put(m.path, token=m.token, json_body={"key": v}, conn=conn)
                except CONN_ERRORS as e:
                    if not self.stopped.is_set():
                        self.failures.append(f"PUT {m.guid}: {e!r}")
                    return          # m.inflight stays: either value may be stored
                if r.status == 200 and r.body == b"":
                    m.acked = v
                    self.acked += 1
                elif not self._refused(r):
                    self.failures.append(f"PUT {m.guid}: {r!r}")
                    return
                m.inflight = None   # refused: the old value stays (checked after)
        finally:
            conn.close()

    def read(self, members):
        conn = self.k.client.connect()
        try:
            while not self.stopped.is_set():
                m = self.rng.choice(members)
                try:
                    r, got = read(self.k, m, conn)
                except CONN_ERRORS as e:
                    if not self.stopped.is_set():
                        self.failures.append(f"GET {m.guid}: {e!r}")
                    return
                if r.status == 200:
                    self.reads += 1
                    if got not in m.seen:
                        self.failures.append(f"GET {m.guid}: a value never written: {got!r}")
                elif not self._refused(r):
                    self.failures.append(f"GET {m.guid}: {r!r}")
                    return
        finally:
            conn.close()


def audit_export_verify(k, tmp, tenant="default", log=None) -> dict:
    """`keyhold audit public-key`, `audit export` and `audit verify` of a tenant's chain."""
    pem = tmp / f"audit-{tenant}.pem"
    out = tmp / f"audit-{tenant}.jsonl"
    p = cli(k, "--tenant", tenant, "audit", "public-key", json_out=False, log=log)
    assert p.returncode == 0 and "BEGIN PUBLIC KEY" in p.stdout, p
    pem.write_text(p.stdout)
    p = cli(k, "--tenant", tenant, "audit", "export", out, "--force", log=log)
    assert p.returncode == 0, p
    p = cli(k, "audit", "verify", out, "--public-key", pem, socket=False, log=log)
    assert p.returncode == 0, p
    verdict = json.loads(p.stdout)
    assert verdict["ok"] is True and verdict["records"] > 0, verdict
    return verdict


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


def restart(k):
    if k.alive():
        rc = k.stop()
        assert rc == 0, f"keyholdd exited {rc} on SIGTERM\n{k.log()}"
    k.start()


# ------------------------------------------------------- 1. rekey under load with kill -9


@pytest.fixture(scope="module")
def rekey_env(pki, issuers, tmp_path_factory):
    """One daemon per test worker with REKEY_RECORDS records in the default tenant; each run
    rekeys it once (versions accumulate: KH_KEY_VERSIONS_MAX is 64)."""
    k = harness.Keyholdd(tmp_path_factory.mktemp("keyholdd-rekey"), pki, tenants(issuers),
                         extra=jobs(REKEY_RATE))
    k.start()
    members = seed(k, issuers["default"], REKEY_RECORDS)
    env = {"k": k, "members": members, "rng": _seed_rng(), "tmp": k.workdir, "runs": [],
           "writes": members[:WRITE_SLOTS]}
    yield env
    rc = k.stop()
    if SOAK_RUNS or env["runs"]:
        acked = sum(r["acked"] for r in env["runs"])
        print(f"SUMMARY: {len(env['runs'])} kill -9 rekey runs, {acked} acknowledged writes "
              f"during jobs, job state at the kill: "
              f"{sorted(set(r['at_kill'] for r in env['runs']))}", flush=True)
    assert rc in (None, 0), f"keyholdd exited {rc} on SIGTERM\n{k.log()}"


def _kill_run(env, delay: float | None):
    k, members = env["k"], env["members"]
    rng = env["rng"]
    if not k.alive():
        k.start()
    before = keys(k)
    old = before["active"]
    assert records_of(before)[old] == len(members), before

    load = Load(k, env["writes"], members, random.Random(rng.random())).start()
    new = rekey(k)
    assert new == old + 1
    if delay is None:
        delay = rng.uniform(*KILL_WINDOW_S)
    if delay:
        time.sleep(delay)
        at_kill = keys(k)["job"]["state"]
    else:
        at_kill = "right after the answer"
    load.stopped.set()
    k.proc.send_signal(signal.SIGKILL)
    rc = k.proc.wait()
    k.stop()
    load.stop()
    assert rc == -signal.SIGKILL, f"keyholdd had exited by itself ({rc})\n{k.log()}"
    assert not load.failures, load.failures[:10]

    k.start()
    doc = wait_job_done(k)
    assert doc["active"] == new, doc
    recs = records_of(doc)
    assert recs[new] == len(members), doc
    assert all(n == 0 for v, n in recs.items() if v != new), doc
    st = {v["version"]: v["state"] for v in doc["versions"]}
    assert st[old] == "archived" and st[new] == "active", doc

    assert_all_read_back(k, members, f"after the kill at {delay:.3f} s ({at_kill})")
    assert cli_ok(k, "key", "retire", old) == {"version": old, "state": "retired"}
    assert states(k)[old] == "retired"
    audit_export_verify(k, env["tmp"])
    env["runs"].append({"delay": delay, "at_kill": at_kill, "acked": load.acked})
    print(f"run {len(env['runs'])}: killed {delay * 1000:.0f} ms after the rekey answer "
          f"(job {at_kill}), {load.acked} writes and {load.reads} reads acknowledged",
          flush=True)


@pytest.mark.parametrize("run", range(1, KILL_RUNS + 1))
def test_kill9_during_rekey_loses_nothing(rekey_env, run):
    _kill_run(rekey_env, None)


def test_kill9_right_after_the_rekey_answer(rekey_env):
    _kill_run(rekey_env, 0.0)


def test_rekey_while_members_write_fails_nobody(make_keyholdd, issuers):
    """A rekey with member writes in flight: every rekey and every write answers 200 (no
    500 from a database lock the rekey and the writers wait on each other for)."""
    k = make_keyholdd(tenants(issuers))
    members = seed(k, issuers["default"], 30)
    load = Load(k, members, members, random.Random(3), writers=3, readers=1).start()
    answers = []
    try:
        for _ in range(3):
            time.sleep(0.1)
            r = k.operator.post("/admin/keys/rekey", json_body=ALG)
            answers.append(r)
            if r.status != 200:
                break
            wait_job_done(k)
    finally:
        load.stop()
    assert all(r.status == 200 for r in answers), answers
    assert not load.failures, load.failures[:5]
    assert keys(k)["active"] == 4
    assert_all_read_back(k, members, "after rekeys under writes")


def test_rekey_without_algorithm_takes_the_configured_size(make_keyholdd, issuers):
    """`key rekey` with no --algorithm: the CLI help says the default is [keystore] rsa_bits,
    a valid configuration value (here 2048, the harness's)."""
    k = make_keyholdd(tenants(issuers))
    got = cli_ok(k, "key", "rekey")
    assert got == {"version": 2}, got
    assert keys(k)["versions"][1]["algorithm"] == "rsa-2048"


# -------------------------------------------------------------------- 2. refusal codes


@pytest.fixture
def window(make_keyholdd, issuers):
    """A daemon whose job moved its first batch and then sleeps: BATCH + 10 records at
    20 records/s leave 10 records under archived version 1 for ~25 s."""
    def make(rate=20):
        k = make_keyholdd(tenants(issuers), extra=jobs(rate))
        members = seed(k, issuers["default"], BATCH + 10)
        assert rekey(k) == 2
        # the record counts are the database's, the job's progress what its thread published
        # just after its commit: a busy machine may show the commit first (the thread runs
        # at idle priority), so both are waited for, in one answer
        doc = poll_until(lambda: (lambda d: d if records_of(d)[1] == 10 and
                                  d["job"]["moved"] == BATCH else None)(keys(k)),
                         timeout=JOB_TIMEOUT_S)
        assert doc, keys(k)
        assert doc["job"]["state"] == "running", doc
        # the job moves in (kind, owner) order: the last 10 owners are still under version 1
        members.sort(key=lambda m: m.guid)
        return k, members
    return make


def test_refusals_over_http_and_the_cli(window, issuers, user):
    k, members = window()

    # records_remain, with the count, over HTTP and the CLI
    body = assert_error(k.operator.post("/admin/keys/1/retire"), 409, "records_remain")
    assert body["records"] == 10, body
    cli_refused(k, "records_remain", "key", "retire", "1")
    p = cli(k, "key", "retire", "1", json_out=False)
    assert p.returncode == 1 and "10" in p.stderr, p

    # job_running: a rekey while records of the last one are still to move
    assert_error(k.operator.post("/admin/keys/rekey", json_body=ALG), 409, "job_running")
    cli_refused(k, "job_running", "key", "rekey", "--algorithm", "rsa-3072")

    # last_active: retire or revoke the active version
    for op in ("retire", "revoke"):
        assert_error(k.operator.post(f"/admin/keys/2/{op}"), 409, "last_active")
        cli_refused(k, "last_active", "key", op, "2")

    # not_retired: destroy an archived or the active version
    for v in (1, 2):
        assert_error(k.operator.post(f"/admin/keys/{v}/destroy"), 409, "not_retired")
        cli_refused(k, "not_retired", "key", "destroy", v, "--yes")

    # not_revoked
    for v in (1, 2):
        assert_error(k.operator.post(f"/admin/keys/{v}/reinstate"), 409, "not_revoked")
        cli_refused(k, "not_revoked", "key", "reinstate", v)

    # version_not_found: a number the tenant never had, and things that are no version
    for op in ("retire", "destroy", "revoke", "reinstate"):
        for v in ("3", "99", "4294967295", "0", "4294967296", "x", "-1"):
            assert_error(k.operator.post(f"/admin/keys/{v}/{op}"), 404, "version_not_found")
        args = ["key", op, "99"] + (["--yes"] if op == "destroy" else [])
        cli_refused(k, "version_not_found", *args)
        # not a version at all: a usage error of the CLI
        p = cli(k, "key", op, "x")
        assert p.returncode == 2, p

    # invalid_algorithm over HTTP; the CLI refuses it itself (usage error, exit 2)
    for alg in ("rsa-1024", "rsa-2048", "RSA-3072", "ec-p256", 3072, None):
        assert_error(k.operator.post("/admin/keys/rekey", json_body={"algorithm": alg}), 400,
                     "invalid_algorithm")
    p = cli(k, "key", "rekey", "--algorithm", "rsa-1024")
    assert p.returncode == 2, p
    assert json.loads(p.stdout)["code"] == "usage", p

    # a revoked version retires only once nothing is under it (the leaked-key playbook
    # revokes, then retires): its 10 records hold it back
    assert cli_ok(k, "key", "revoke", "1") == {"version": 1, "state": "revoked"}
    body = assert_error(k.operator.post("/admin/keys/1/retire"), 409, "records_remain")
    assert body["records"] == 10, body
    cli_refused(k, "records_remain", "key", "retire", "1")
    assert cli_ok(k, "key", "reinstate", "1") == {"version": 1, "state": "archived"}

    # a member token on every lifecycle route: not_admin; nothing changed
    tok = issuers["default"].token(user)
    for path in ("/admin/keys/rekey", "/admin/keys/1/retire", "/admin/keys/1/destroy",
                 "/admin/keys/1/revoke", "/admin/keys/1/reinstate", "/admin/keys/revoke-all",
                 "/admin/keys/reinstate-all"):
        assert_error(k.client.post(path, token=tok), 403, "not_admin")
    # the server routes are not on the TLS listener at all
    admin = issuers["default"].token("admin@example.test", role="keyhold-admin")
    for path in ("/server/seal", "/server/unseal"):
        assert_error(k.client.post(path, token=admin, json_body={}), 404, "not_found")
    # seal/unseal over --url (with an admin token): refused, the server stays unsealed
    url = ["--url", f"https://127.0.0.1:{k.port}", "--cacert", k.pki.ca_pem, "--token", admin]
    p = cli(k, *url, "seal", socket=False)
    assert p.returncode == 1, p
    p = cli(k, *url, "unseal", *k.unseal_args(), socket=False)
    assert p.returncode == 1, p
    # ... while the admin token does administer the tenant over --url
    assert cli_ok(k, *url, "key", "list", socket=False)[0]["version"] == 1

    doc = keys(k)
    assert doc["sealed"] is False and states(k) == {1: "archived", 2: "active"}, doc
    assert records_of(doc)[1] == 10, doc
    r, got = read(k, members[-1])
    assert r.status == 200 and got == members[-1].acked, r


def test_every_refusal_is_audited(window):
    k, _ = window()
    assert_error(k.operator.post("/admin/keys/1/retire"), 409, "records_remain")
    assert_error(k.operator.post("/admin/keys/2/revoke"), 409, "last_active")
    assert_error(k.operator.post("/admin/keys/99/destroy"), 404, "version_not_found")

    def found():
        recs = audit_records(k)
        want = {("refused", "records_remain", "admin/keys/{version}/retire"),
                ("refused", "last_active", "admin/keys/{version}/revoke"),
                ("refused", "version_not_found", "admin/keys/{version}/destroy"),
                ("key.rekey", "ok", None)}
        have = {(x["action"], x["outcome"], x["target"] if x["action"] == "refused" else None)
                for x in recs}
        return want <= have
    assert poll_until(found, timeout=10), [(x["action"], x["outcome"]) for x in audit_records(k)]


# ------------------------------------------------------------- 3. revoke / reinstate


def test_revoke_and_reinstate_round_trip(window):
    k, members = window(rate=60)       # the job sleeps ~8 s after its first batch
    under_v1, moved = members[-10:], members[:-10]

    assert cli_ok(k, "key", "revoke", "1") == {"version": 1, "state": "revoked"}
    for m in under_v1:
        r, _ = read(k, m)
        assert_error(r, 403, "key_revoked")
    for m in moved[:20] + moved[-20:]:
        r, got = read(k, m)
        assert r.status == 200 and got == m.acked, r

    # the job wakes, finds version 1 revoked and reports its records as skipped
    doc = poll_until(lambda: (lambda d: d if d["job"]["state"] == "done" else None)(keys(k)),
                     timeout=JOB_TIMEOUT_S)
    assert doc, keys(k)
    assert doc["job"]["skipped"] == 10 and doc["job"]["target"] == 2, doc
    assert records_of(doc) == {1: 10, 2: BATCH}, doc
    assert states(k) == {1: "revoked", 2: "active"}

    # a member writes a new key while its old record is under the revoked version
    fresh = under_v1[0]
    v = new_key()
    r = k.client.put(fresh.path, token=fresh.token, json_body={"key": v})
    if r.status == 200:
        fresh.acked = v
    else:
        assert_error(r, 403, "key_revoked")

    assert cli_ok(k, "key", "reinstate", "1") == {"version": 1, "state": "archived"}
    for m in under_v1:
        r, got = read(k, m)
        assert r.status == 200 and got == m.acked, r
    doc = wait_job_done(k)
    assert doc["job"]["skipped"] == 0, doc
    left = 9 if fresh.acked == v else 10
    assert doc["job"]["moved"] == left and doc["job"]["target"] == 2, doc
    assert records_of(doc) == {1: 0, 2: BATCH + 10}, doc
    assert_all_read_back(k, members, "after reinstate")
    assert cli_ok(k, "key", "retire", "1") == {"version": 1, "state": "retired"}


# ----------------------------------------------------------------------- 4. kill switch


def test_kill_switch(make_keyholdd, issuers, tmp_path):
    k = make_keyholdd(tenants(issuers))
    members = seed(k, issuers["default"], 6)
    others = seed(k, issuers["acme"], 3, tenant="acme")
    assert rekey(k) == 2
    wait_job_done(k)
    assert cli_ok(k, "key", "retire", "1") == {"version": 1, "state": "retired"}
    assert rekey(k) == 3
    wait_job_done(k)
    before = states(k)
    assert before == {1: "retired", 2: "archived", 3: "active"}

    got = cli_ok(k, "key", "revoke", "--all")
    assert sorted((v["version"], v["state"]) for v in got["versions"]) == \
        [(2, "revoked"), (3, "revoked")], got
    assert states(k) == {1: "retired", 2: "revoked", 3: "revoked"}

    newcomer = Member(issuers["default"])
    for m in members:
        r, _ = read(k, m)
        assert_error(r, 403, "key_revoked")
        assert_error(k.client.put(m.path, token=m.token, json_body={"key": new_key()}), 403,
                     "key_revoked")
    for method in ("PUT", "POST"):
        assert_error(k.client.request(method, newcomer.path, token=newcomer.token,
                                      json_body={"key": new_key()}), 403, "key_revoked")
    # another tenant is untouched
    for m in others:
        r, got = read(k, m)
        assert r.status == 200 and got == m.acked, r
        m.acked = new_key()
        assert k.client.put(m.path, token=m.token, json_body={"key": m.acked}).status == 200
    assert set(states(k, "/t/acme").values()) == {"active"}
    # a second kill switch changes nothing; reinstating one version of it works as well
    assert cli_ok(k, "key", "revoke", "--all")["versions"] == []

    got = cli_ok(k, "key", "reinstate", "--all")
    assert sorted((v["version"], v["state"]) for v in got["versions"]) == \
        [(2, "archived"), (3, "active")], got
    assert states(k) == before
    assert_all_read_back(k, members, "after reinstate --all")
    assert_all_read_back(k, others, "acme")
    # nothing was written while the switch was on
    r, _ = read(k, newcomer)
    assert_error(r, 404, "key_not_found")
    m = members[0]
    m.acked = new_key()
    assert k.client.put(m.path, token=m.token, json_body={"key": m.acked}).status == 200
    assert records_of(keys(k))[3] == 6
    # the HTTP routes do the same
    doc = post_ok(k, "/admin/keys/revoke-all")
    assert len(doc["versions"]) == 2
    doc = post_ok(k, "/admin/keys/reinstate-all")
    assert states(k) == before
    acts = {x["action"] for x in audit_records(k)}
    assert {"key.revoke-all", "key.reinstate-all"} <= acts, acts


# ---------------------------------------------------------------------- 5. seal / unseal


def test_seal_and_unseal_with_reads_and_writes_in_flight(make_keyholdd, issuers, tmp_path):
    k = make_keyholdd(tenants(issuers))
    members = seed(k, issuers["default"], 40)
    rng = random.Random(7)
    load = Load(k, members[:20], members, rng, writers=2, readers=2,
                accept={(503, "sealed")}).start()
    for cycle in range(3):
        time.sleep(0.2)
        assert cli_ok(k, "seal") == {"sealed": True}
        # every key route answers 503 sealed now
        for m in members[:5]:
            r, _ = read(k, m)
            assert_error(r, 503, "sealed")
            assert_error(k.client.put(m.path, token=m.token, json_body={"key": new_key()}),
                         503, "sealed")
        assert k.client.get("/health").status == 503
        assert k.client.get("/alive").status == 200
        assert keys(k)["sealed"] is True
        assert_error(k.operator.post("/admin/keys/rekey", json_body=ALG), 503, "sealed")
        time.sleep(0.1)
        assert cli_ok(k, "unseal", *k.unseal_args()) == {"sealed": False}
    time.sleep(0.2)
    load.stop()
    assert not load.failures, load.failures[:10]
    assert load.refused > 0 and load.acked > 0, (load.refused, load.acked)
    # none half-applied: a write answered 503 left the old value, an answered one is there
    for m in members:
        m.inflight = None
    assert_all_read_back(k, members, "after seal/unseal cycles")


def test_wrong_secret_keeps_it_sealed_and_the_seal_survives_restarts(make_keyholdd, issuers,
                                                                     tmp_path):
    k = make_keyholdd(tenants(issuers))
    (m,) = seed(k, issuers["default"], 1)
    assert cli_ok(k, "seal") == {"sealed": True}
    assert cli_ok(k, "seal") == {"sealed": True}        # sealed already: fine
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(os.urandom(32))
    cli_refused(k, "wrong_secret", "unseal", "--master-key-file", wrong)
    assert_error(k.operator.post("/server/unseal", json_body={"passphrase": "nope"}), 403,
                 "wrong_secret")
    assert_error(k.operator.post("/server/unseal", json_body={
        "master_key": base64.b64encode(os.urandom(32)).decode()}), 403, "wrong_secret")
    short = tmp_path / "short.key"
    short.write_bytes(os.urandom(31))
    p = cli(k, "unseal", "--master-key-file", short)
    assert p.returncode == 1, p
    r, _ = read(k, m)
    assert_error(r, 503, "sealed")
    assert keys(k)["sealed"] is True

    # a seal persists: the restarted server (its master key file configured) is sealed
    restart(k)
    r, _ = read(k, m)
    assert_error(r, 503, "sealed")
    assert k.client.get("/health").status == 503 and k.client.get("/alive").status == 200
    assert keys(k)["sealed"] is True
    assert cli_ok(k, "unseal", *k.unseal_args()) == {"sealed": False}
    r, got = read(k, m)
    assert r.status == 200 and got == m.acked, r
    restart(k)
    r, got = read(k, m)
    assert r.status == 200 and got == m.acked, r
    recs = []
    def server_chain():
        out, since = [], 1
        while True:
            page = k.operator.get(f"/server/audit?since={since}&limit=10000").json()
            out += page["records"]
            if not page["records"]:
                return out
            since = page["next"]
    recs = poll_until(lambda: (lambda c: c if {"seal", "unseal"} <= {x["action"] for x in c}
                               else None)(server_chain()), timeout=10)
    assert recs, server_chain()[-10:]
    # a refused request is a "refused" record naming its route (docs/audit.md)
    outcomes = [(x["action"], x["outcome"]) for x in recs
                if x["action"] in ("seal", "unseal") or x["target"] == "server/unseal"]
    assert ("refused", "wrong_secret") in outcomes and ("unseal", "ok") in outcomes, outcomes


def _no_secret_config(k):
    k.config_path.write_text(k.no_secret_config_text())


def test_no_secret_configured_starts_sealed_and_unseals_with_the_master_key_file(
        make_keyholdd, issuers):
    k = make_keyholdd(tenants(issuers))
    (m,) = seed(k, issuers["default"], 1)
    assert k.stop() == 0
    _no_secret_config(k)
    k.start()
    r, _ = read(k, m)
    assert_error(r, 503, "sealed")
    assert k.client.get("/health").status == 503
    assert keys(k)["sealed"] is True
    assert cli_ok(k, "unseal", *k.unseal_args()) == {"sealed": False}
    r, got = read(k, m)
    assert r.status == 200 and got == m.acked, r
    v = new_key()
    assert k.client.put(m.path, token=m.token, json_body={"key": v}).status == 200
    # not sealed on purpose, but without a secret: the next start is sealed again
    restart(k)
    r, _ = read(k, m)
    assert_error(r, 503, "sealed")
    assert cli_ok(k, "unseal", *k.unseal_args()) == {"sealed": False}
    r, got = read(k, m)
    assert r.status == 200 and got == v, r


@pytest.mark.file_keystore
def test_passphrase_store_starts_sealed_and_unseals_with_the_passphrase_file(
        make_keyholdd, issuers, tmp_path):
    phrase = "correct horse battery staple " + os.urandom(4).hex()
    k = make_keyholdd(tenants(issuers), start=False,
                      env={"KEYHOLD_KEYSTORE_PASSPHRASE": phrase})
    _no_secret_config(k)
    k.start()
    (m,) = seed(k, issuers["default"], 1)
    assert k.stop() == 0
    k.env = {}
    k.start()
    r, _ = read(k, m)
    assert_error(r, 503, "sealed")
    bad = tmp_path / "bad-phrase"
    bad.write_text("not it\n")
    cli_refused(k, "wrong_secret", "unseal", "--passphrase-file", bad)
    cli_refused(k, "wrong_secret", "unseal", *k.unseal_args())
    r, _ = read(k, m)
    assert_error(r, 503, "sealed")
    good = tmp_path / "phrase"
    good.write_text(phrase + "\n")
    good.chmod(0o600)
    assert cli_ok(k, "unseal", "--passphrase-file", good) == {"sealed": False}
    r, got = read(k, m)
    assert r.status == 200 and got == m.acked, r
    # a rekey works on the unsealed passphrase store too, and survives a restart + unseal
    assert rekey(k) == 2
    wait_job_done(k)
    restart(k)
    assert cli_ok(k, "unseal", "--passphrase-file", good) == {"sealed": False}
    assert keys(k)["active"] == 2
    r, got = read(k, m)
    assert r.status == 200 and got == m.acked, r


# --------------------------------------------------------------------------- 6. destroy


def _dek_rows(db_path, tenant="default") -> dict:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {v: (bytes(w) if w is not None else None, bytes(s) if s is not None else None, st)
                for v, w, s, st in db.execute(
                    "SELECT version, wrapped_dek, signature, state FROM tenant_keys "
                    "WHERE tenant = ? ORDER BY version", (tenant,))}
    finally:
        db.close()


@pytest.mark.sqlite_only
def test_destroy(make_keyholdd, issuers):
    k = make_keyholdd(tenants(issuers))
    members = seed(k, issuers["default"], 5)
    assert rekey(k) == 2
    wait_job_done(k)
    assert cli_ok(k, "key", "retire", "1") == {"version": 1, "state": "retired"}
    assert k.key_present("default", 1)

    # no terminal and no --yes: refused, nothing changed
    cli_refused(k, "confirmation_required", "key", "destroy", "1")
    p = cli(k, "key", "destroy", "1", json_out=False)
    assert p.returncode == 1 and p.stdout == "", p
    assert states(k)[1] == "retired" and k.key_present("default", 1)

    assert cli_ok(k, "key", "destroy", "1", "--yes") == {"version": 1, "state": "destroyed"}
    assert not k.key_present("default", 1)
    assert states(k) == {1: "destroyed", 2: "active"}
    # destroyed already: the same answer; a destroyed version is no way back
    assert cli_ok(k, "key", "destroy", "1", "--yes") == {"version": 1, "state": "destroyed"}
    assert_error(k.operator.post("/admin/keys/1/reinstate"), 409, "not_revoked")
    assert_error(k.operator.post("/admin/keys/1/revoke"), 409, "invalid_state")
    recs = poll_until(lambda: (lambda x: x if len(x) >= 2 else None)(
        [x for x in audit_records(k) if x["action"] == "key.destroy" and x["outcome"] == "ok"]),
        timeout=10)
    assert len(recs) == 2 and recs[0]["key_version"] == 1, recs
    refused = [x for x in audit_records(k) if x["action"] == "key.destroy"]
    assert len(refused) == 2     # the CLI's refusals never reached the server

    assert k.stop() == 0
    rows = _dek_rows(k.db_path)
    wrapped, sig, _ = rows[1]
    assert not wrapped and not sig, rows[1]        # the version's DEK row is empty
    assert rows[2][0], rows[2]
    assert not k.key_present("default", 1)
    if k.keystore == "file":  # the whole key file goes (the .pub may stay)
        key_dir = k.data / "keystore" / "default"
        assert sorted(p.name for p in key_dir.iterdir() if p.name.startswith("v1.")) in \
            ([], ["v1.pub"])
    k.start()
    assert states(k) == {1: "destroyed", 2: "active"}
    assert_all_read_back(k, members, "after destroy and restart")
    # the version number is never used again
    assert rekey(k) == 3


# ------------------------------------------------------------------------- 7. no export


def _key_file_private(path, master: bytes):
    """The PKCS#8 DER inside a tenant key file (file-keystore.c's header, then AES-256-GCM
    nonce || ciphertext || tag under the master key, aad "keyhold-keystore:1" || header)."""
    data = path.read_bytes()
    assert data[:4] == b"KHKS" and data[4] == 1 and data[5] == 1, data[:8]
    i = 4 + 1 + 1 + 2 + 4
    tlen = data[i]
    i += 1 + tlen
    plen = int.from_bytes(data[i:i + 2], "big")
    i += 2 + plen
    header, sealed = data[:i], data[i:]
    der = AESGCM(master).decrypt(sealed[:12], sealed[12:], b"keyhold-keystore:1" + header)
    return serialization.load_der_private_key(der, password=None), der


def _forms(secret: bytes) -> dict:
    out = {"raw": secret, "hex": secret.hex().encode(), "HEX": secret.hex().upper().encode(),
           "base64": base64.b64encode(secret), "base64url": base64.urlsafe_b64encode(secret)}
    out["base64-nopad"] = out["base64"].rstrip(b"=")
    out["base64url-nopad"] = out["base64url"].rstrip(b"=")
    if len(secret) > 64:   # long keys: also any 48-byte window of the base64 (line-wrapped)
        out["base64-part"] = out["base64"][-120:-60]   # the private CRT values
    return out


def _key_forms(key, der: bytes) -> dict:
    forms = {f"pkcs8-der-{n}": v for n, v in _forms(der).items()}
    for name, fmt in (("pkcs8", serialization.PrivateFormat.PKCS8),
                      ("pkcs1", serialization.PrivateFormat.TraditionalOpenSSL)):
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        forms[f"{name}-pem"] = pem
        forms[f"{name}-pem-body-line"] = pem.splitlines()[3]
        if name == "pkcs1":
            d1 = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
            forms.update({f"pkcs1-der-{n}": v for n, v in _forms(d1).items()})
    nums = key.private_numbers()
    for n in ("d", "p", "q"):
        x = getattr(nums, n)
        b = x.to_bytes((x.bit_length() + 7) // 8, "big")
        forms[f"{n}-raw"] = b
        forms[f"{n}-hex"] = b.hex().encode()
        forms[f"{n}-decimal"] = str(x).encode()
    return forms


def _secrets(k, db_rows: dict, key_files: dict) -> dict:
    """{label: bytes} of every form of every tenant private key, DEK and the master key."""
    master = k.master_key.read_bytes()
    out = {f"master-{n}": v for n, v in _forms(master).items()}
    for (tenant, version), path_bytes in key_files.items():
        path = k.workdir / f"copy-{tenant}-v{version}.key"
        path.write_bytes(path_bytes)
        key, der = _key_file_private(path, master)
        for n, v in _key_forms(key, der).items():
            out[f"{tenant}-v{version}-key-{n}"] = v
        wrapped = db_rows.get((tenant, version))
        assert wrapped, (tenant, version, "no wrapped DEK to unwrap")
        dek = key.decrypt(wrapped, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                algorithm=hashes.SHA256(), label=None))
        assert len(dek) == 32
        for n, v in _forms(dek).items():
            out[f"{tenant}-v{version}-dek-{n}"] = v
    return out


def _snapshot(k) -> tuple[dict, dict]:
    """Wrapped DEKs from the database and tenant key files (k stopped)."""
    db = sqlite3.connect(f"file:{k.db_path}?mode=ro", uri=True)
    try:
        rows = {(t, v): bytes(w) for t, v, w in db.execute(
            "SELECT tenant, version, wrapped_dek FROM tenant_keys") if w}
    finally:
        db.close()
    files = {}
    for tdir in (k.data / "keystore").iterdir():
        if tdir.is_dir() and not tdir.name.startswith("_"):
            for f in tdir.glob("v*.key"):
                files[(tdir.name, int(f.name[1:-4]))] = f.read_bytes()
    return rows, files


@pytest.mark.file_keystore  # it opens the key files with the master key to know what to look for
@pytest.mark.sqlite_only
def test_no_command_route_log_or_file_yields_a_private_key_or_dek(make_keyholdd, issuers,
                                                                  tmp_path, user):
    k = make_keyholdd(tenants(issuers))
    out: list[bytes] = []
    members = seed(k, issuers["default"], 4)
    seed(k, issuers["acme"], 2, tenant="acme")
    member_tok = issuers["default"].token(user)

    def http(method, path, **kw):
        r = k.operator.request(method, path, **kw)
        out.append(r.body + str(r.headers).encode())
        return r

    def run(*args, **kw):
        return cli(k, *args, log=out, **kw)

    # every command and route on a tenant with versions 1 (to be destroyed) and 2
    assert run("key", "rekey", "--algorithm", "rsa-3072", "--wait").returncode == 0
    run("key", "rekey", "--algorithm", "rsa-3072", "--wait", json_out=False)  # job_running or ok
    wait_job_done(k)
    http("POST", "/t/acme/admin/keys/rekey", json_body={"algorithm": "rsa-4096"})
    wait_job_done(k, "/t/acme")
    versions = sorted(states(k))
    first, last = versions[0], versions[-1]
    assert run("key", "retire", first).returncode == 0
    assert k.stop() == 0
    rows, files = _snapshot(k)      # before the destroy: its key and DEK are searched too
    k.start()
    for json_out in (True, False):
        run("key", "list", json_out=json_out)
        run("key", "status", json_out=json_out)
        run("--tenant", "acme", "key", "list", json_out=json_out)
        run("key", "retire", last, json_out=json_out)              # last_active
        run("key", "destroy", last, "--yes", json_out=json_out)    # not_retired
        run("key", "revoke", last, json_out=json_out)              # last_active
        run("key", "reinstate", last, json_out=json_out)           # not_revoked
        run("key", "retire", 77, json_out=json_out)                # version_not_found
        run("key", "rekey", "--algorithm", "dsa", json_out=json_out)
        run("key", "destroy", first, json_out=json_out)            # confirmation_required
        run("seal", "--url", "https://127.0.0.1:1", json_out=json_out, socket=False)
    for json_out in (True, False):
        if json_out:
            assert run("key", "revoke", first + 1).returncode in (0, 1)
        run("key", "reinstate", first + 1, json_out=json_out)
        run("key", "revoke", "--all", json_out=json_out)
        run("key", "reinstate", "--all", json_out=json_out)
        run("seal", json_out=json_out)
        wrong = tmp_path / "wrong.key"
        wrong.write_bytes(os.urandom(32))
        run("unseal", "--master-key-file", wrong, json_out=json_out)
        run("unseal", "--passphrase-file", wrong, json_out=json_out)
        run("key", "list", json_out=json_out)
        assert run("unseal", *k.unseal_args(),
                   json_out=json_out).returncode == 0
    assert run("key", "destroy", first, "--yes").returncode == 0
    run("key", "destroy", first, "--yes", json_out=False)
    for path in ("/admin/keys", "/t/acme/admin/keys", "/admin/audit?last=100",
                 "/server/audit?last=100", "/admin/audit/public-key", "/metrics", "/health"):
        http("GET", path)
    for path in ("/admin/keys/rekey", f"/admin/keys/{first}/retire",
                 f"/admin/keys/{first}/destroy", f"/admin/keys/{last}/revoke",
                 f"/admin/keys/{last}/reinstate", "/admin/keys/revoke-all",
                 "/admin/keys/reinstate-all", "/server/seal"):
        http("POST", path, json_body={"algorithm": "x"} if path.endswith("rekey") else None)
        r = k.client.post(path, token=member_tok)
        out.append(r.body)
    http("POST", "/server/unseal", json_body={"passphrase": "wrong"})
    http("POST", "/server/unseal", json_body={"master_key": "bm90IGEga2V5"})
    http("POST", "/server/unseal", json_body={
        "master_key": base64.b64encode(k.master_key.read_bytes()).decode()})
    for m in members:
        r, _ = read(k, m)
        out.append(r.body)
    run("audit", "tail", "-n", "1000", json_out=True)
    run("audit", "tail", "-n", "1000", json_out=False)
    run("audit", "tail", "--server", "-n", "1000")
    audit_export_verify(k, tmp_path, log=out)
    audit_export_verify(k, tmp_path, tenant="acme", log=out)
    p = run("audit", "export", "--server", tmp_path / "server.jsonl", "--force")
    assert p.returncode == 0, p
    assert k.stop() == 0
    rows2, files2 = _snapshot(k)
    rows.update(rows2)
    files.update(files2)
    assert ("default", first) in files and ("acme", 2) in files

    secrets = _secrets(k, rows, files)
    haystack = {f"output {i}": b for i, b in enumerate(out)}
    haystack["server log"] = k.log_path.read_bytes()
    for f in tmp_path.glob("*.jsonl"):
        haystack[f.name] = f.read_bytes()
    for f in k.data.rglob("*"):
        if f.is_file():
            haystack[str(f.relative_to(k.data))] = f.read_bytes()
    found = [(what, where) for what, needle in secrets.items() for where, hay in haystack.items()
             if needle in hay]
    assert not found, found[:20]
    # the search would have found them (a search that looks at nothing proves nothing)
    assert sum(len(h) for h in haystack.values()) > 100000
    assert len([s for s in secrets if "-dek-raw" in s]) == len(rows) >= 4


# ------------------------------------------------------------------------------- metrics


def test_job_progress_and_seal_in_metrics(make_keyholdd, issuers):
    """/metrics shows each tenant's job as key status does, and whether the server is sealed."""
    k = make_keyholdd(tenants(issuers), extra=jobs(400))
    seed(k, issuers["default"], 600)
    m = k.metrics()
    assert m.sum("keyhold_reencrypt_running", tenant="default") == 0
    assert m.sum("keyhold_sealed") == 0
    assert rekey(k) == 2
    # the job moves its first batch of 500, then sleeps: running, with 500 moved of 600
    got = poll_until(lambda: (lambda mm: mm if mm.sum("keyhold_reencrypt_moved", tenant="default")
                              >= BATCH else None)(k.metrics()), timeout=JOB_TIMEOUT_S)
    assert got, k.metrics()
    assert got.sum("keyhold_reencrypt_total", tenant="default") == 600
    assert got.sum("keyhold_reencrypt_running", tenant="default") == 1
    # the other tenant has no job
    assert got.sum("keyhold_reencrypt_running", tenant="acme") == 0
    job = wait_job_done(k)["job"]
    m = k.metrics()
    assert m.sum("keyhold_reencrypt_running", tenant="default") == 0
    assert m.sum("keyhold_reencrypt_moved", tenant="default") == job["moved"] == 600
    assert m.sum("keyhold_reencrypt_eta_seconds", tenant="default") == 0
    assert post_ok(k, "/server/seal") == {"sealed": True}
    assert k.metrics().sum("keyhold_sealed") == 1
