"""Crash durability of keyholdd (issue "Harden keyholdd", part B).

1. kill -9 while writing: keep-alive writers PUT/POST random 32-byte keys for a fixed set of
   users in both tenants; keyholdd is SIGKILLed after a random 50-400 ms, restarted on the
   same data, and every user is read back. A write whose 200 was fully received must read
   back exactly; the one write in flight per writer at the kill may read back as its old or
   its new value and nothing else; users never written stay 404.
2. kill -9 during first start (empty database, empty key store), then a normal start: it
   must come up with exactly one DEK row per tenant for version 1, and keys written then
   must survive a restart (a DEK in memory that differs from the stored one would not).
3. Two keyholdd started at the same instant on one empty data folder: keyholdd owns its
   SQLite file exclusively while it runs, so exactly one comes up (one DEK per tenant) and
   the other does not serve while the first has the file; once the first stops, the other
   comes up (by itself, or after exiting 1 with "database is locked" and a restart) and
   reads what the first wrote.
4. An outside SQLite connection (sqlite3 shell, backup) on the running database is refused
   with "database is locked", leaves the WAL alone, and acknowledged writes before and after
   it survive kill -9.
5. A second keyholdd on a data folder a running keyholdd serves does not serve (it waits
   for the file, or exits 1 with "database is locked"), and the first keeps serving.

KEYHOLD_SOAK_RUNS=N runs N kill cycles in test 1 (and prints progress): scripts/soak-kill.
"""
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time

import pytest

import auditref
import harness
from harness import Keyholdd, new_key
import tokens

SOAK_RUNS = int(os.environ.get("KEYHOLD_SOAK_RUNS", "0") or 0)
KILL_CYCLES = SOAK_RUNS or 20
KILL_AFTER_S = (0.050, 0.400)
GUIDS_WRITTEN = 10        # per tenant; the same GUIDs in both tenants
GUIDS_UNTOUCHED = 3       # never written in either tenant: must stay 404
FIRST_START_RUNS = 6
TWIN_START_RUNS = 4
TENANTS = ("default", "acme")
PROBE_TIMEOUT_S = 1.0     # an HTTP probe of a keyholdd that must not be serving
OUTSIDE_TIMEOUT_S = 0.5   # busy timeout of an outside sqlite3 connection
LOCKED = "database is locked"

# Anything the client library may raise when the server dies under it.
CONN_ERRORS = (OSError, http.client.HTTPException, ssl.SSLError)


def _progress(msg: str) -> None:
    if SOAK_RUNS:
        print(msg, flush=True)


def _path(tenant: str) -> str:
    return "/user-keys" if tenant == "default" else f"/t/{tenant}/user-keys"


def _seed() -> int:
    seed = int(os.environ.get("KEYHOLD_SOAK_SEED", "0") or 0) or random.randrange(1, 1 << 31)
    print(f"random seed {seed} (KEYHOLD_SOAK_SEED={seed} repeats the kill delays)", flush=True)
    return seed


def _spawn(k: Keyholdd) -> subprocess.Popen:
    """Starts k's keyholdd without waiting for it (Keyholdd.start waits for the port)."""
    k.port_file.unlink(missing_ok=True)
    with open(k.log_path, "ab") as log:
        return subprocess.Popen(harness.keyholdd_cmd(k.config_path),
                                stdout=log, stderr=subprocess.STDOUT, env=k.child_env())


def _attach(k: Keyholdd, proc: subprocess.Popen) -> None:
    """Waits for a _spawn()ed keyholdd to listen and makes k its handle (k.client, k.stop)."""
    k.proc = proc
    k.port = harness.wait_port_file(k.port_file, proc, "keyholdd", k.log)
    k.client = harness.Client(k.port, harness.client_tls_context(k.pki.ca_pem))


def _sigkill(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    return proc.wait()


def _code(r) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def _tenant_key_rows(db_path) -> list[tuple]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT tenant, version, length(wrapped_dek) FROM tenant_keys "
                          "ORDER BY tenant, version").fetchall()
    finally:
        db.close()


def _assert_one_dek_per_tenant(db_path, where: str) -> None:
    rows = _tenant_key_rows(db_path)
    assert [(t, v) for t, v, _ in rows] == sorted((t, 1) for t in TENANTS), (where, rows)
    assert all(n > 0 for _, _, n in rows), (where, rows)


# keyholdd holds an exclusive lock on its SQLite file for as long as it runs (the "unix-excl"
# VFS): the tests read the database only while no keyholdd has it, and a second keyholdd on
# the same folder has to wait for it.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listen_on_free_port(k: Keyholdd) -> int:
    """Rewrites k's configuration to listen on a fixed free port instead of port 0, so that
    k can be probed before it writes its port file. Returns that port."""
    port = _free_port()
    text = k.config_text()
    assert "listen = 127.0.0.1:0\n" in text, text
    k.config_path.write_text(text.replace("listen = 127.0.0.1:0\n", f"listen = 127.0.0.1:{port}\n"))
    return port


def _share_data(first: Keyholdd, second: Keyholdd) -> int:
    """Points second at first's data folder and key store, listening on a fixed free port.
    Returns that port."""
    second.share_store(first)
    return _listen_on_free_port(second)


def _port_written(k: Keyholdd) -> bool:
    try:
        text = k.port_file.read_text()
    except FileNotFoundError:
        return False
    return text.endswith("\n") and text.strip().isdigit()


def _http_status(k: Keyholdd, port: int) -> int | None:
    """GET /health on port: its status, or None when nothing answers within PROBE_TIMEOUT_S
    (refused; or a socket bound by a process whose event loops do not run yet)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_S,
                                       context=harness.client_tls_context(k.pki.ca_pem))
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    except CONN_ERRORS:
        return None
    finally:
        conn.close()


def _has_open(pid: int, path) -> bool:
    """Whether process pid has path open (it got as far as opening the database)."""
    want = os.path.realpath(path)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                return True
        except OSError:
            pass
    return False


def _assert_locked_out(k: Keyholdd, rc: int, where: str, reasons=(LOCKED,)) -> None:
    """A keyholdd that gave up waiting for the database: exit 1 and the reason in its log."""
    log = k.log()
    assert rc == 1, f"{where}: keyholdd exited {rc}\n{log}"
    assert any(r in log for r in reasons), f"{where}: no {reasons} in the log\n{log}"
    assert "listening on" not in log, f"{where}: it was serving\n{log}"


def _assert_not_serving(k: Keyholdd, proc: subprocess.Popen, port: int, where: str,
                        reasons=(LOCKED,)) -> str:
    """k (started by _spawn, listening on the fixed port) does not serve: no port file, no
    "listening on" in its log, nothing answers HTTP on its port. It is either still waiting
    for the database or has exited 1 with one of reasons in its log. Returns which."""
    status = _http_status(k, port)
    assert status is None, f"{where}: the second keyholdd answered HTTP {status}\n{k.log()}"
    assert not _port_written(k), f"{where}: the second keyholdd wrote its port file\n{k.log()}"
    assert "listening on" not in k.log(), f"{where}: the second keyholdd is serving\n{k.log()}"
    rc = proc.poll()
    if rc is None:
        return "waiting"
    _assert_locked_out(k, rc, where, reasons)
    return "exited"


def _come_up_after_first_stopped(k: Keyholdd, proc: subprocess.Popen, where: str,
                                 reasons=(LOCKED,)) -> str:
    """The first keyholdd has stopped: k, if still waiting for the database, must come up by
    itself; if it had given up (exit 1, reason in its log), it must start cleanly now."""
    try:
        _attach(k, proc)  # bounded by harness.START_TIMEOUT_S; raises if proc exits
        return "came up by itself"
    except RuntimeError:
        _assert_locked_out(k, proc.wait(), where, reasons)
    k.start()
    return "gave up, then started"


def _created_dek_lines(*ks: Keyholdd) -> dict:
    logs = "".join(k.log() for k in ks)
    return {t: logs.count(f"tenant {t}: created tenant key version 1") for t in TENANTS}


# ------------------------------------------------------------------ 1. kill -9 while writing


class Slot:
    """One (tenant, user): what the server acknowledged, and the write in flight if any."""

    def __init__(self, tenant: str, guid: str, token: str, written: bool):
        self.tenant, self.guid, self.token, self.written = tenant, guid, token, written
        self.path = _path(tenant)
        self.acked: str | None = None     # last acknowledged value (None: no key)
        self.inflight: tuple[str, str] | None = None   # (method, value) sent, answer not seen

    def allowed_after_crash(self) -> set:
        if self.inflight is None:
            return {self.acked}
        method, value = self.inflight
        if method == "POST" and self.acked is not None:
            return {self.acked}          # a POST on an existing key never changes it
        return {self.acked, value}

    def __repr__(self) -> str:
        return f"{self.tenant}/{self.guid}"


class Writer(threading.Thread):
    """One keep-alive connection writing random keys to its slots until the kill."""

    def __init__(self, k: Keyholdd, slots: list[Slot], rng: random.Random, killed: threading.Event):
        super().__init__(daemon=True)
        self.k, self.slots, self.rng, self.killed = k, slots, rng, killed
        self.acked = 0
        self.failures: list[str] = []
        self.connected = threading.Event()

    def run(self) -> None:
        conn = self.k.client.connect()
        try:
            conn.connect()
        except CONN_ERRORS as e:
            if not self.killed.is_set():
                self.failures.append(f"cannot connect: {e!r}")
            self.connected.set()
            return
        self.connected.set()
        try:
            while True:
                s = self.rng.choice(self.slots)
                value = new_key()
                # POST creates; on an existing key it must be refused (key_exists) and change
                # nothing. PUT creates or replaces.
                method = "POST" if s.acked is None or self.rng.random() < 0.1 else "PUT"
                s.inflight = (method, value)
                try:
                    r = self.k.client.request(method, s.path, token=s.token,
                                              json_body={"key": value}, conn=conn)
                except CONN_ERRORS as e:
                    if not self.killed.is_set():
                        self.failures.append(f"{method} {s}: connection failed before the "
                                             f"kill: {e!r}")
                    return      # s.inflight stays: old or new value may have been committed
                if method == "POST" and s.acked is not None:
                    ok = r.status == 400 and _code(r) == "key_exists"
                else:
                    ok = r.status == 200 and r.body == b""
                    if ok:
                        s.acked = value   # the 200 was fully received: acknowledged
                        self.acked += 1
                s.inflight = None
                if not ok:
                    self.failures.append(f"{method} {s} (acked {s.acked}): unexpected {r!r}")
                    return
        finally:
            conn.close()


def _verify(k: Keyholdd, slots: list[Slot], untouched: list[Slot], violations: list[str],
            cycle: int) -> dict:
    """Reads every slot back; checks it against what was acknowledged, then makes the model
    match the server (a violation is recorded once, not again in every later cycle)."""
    stats = {"inflight_new": 0, "inflight_old": 0}
    conn = k.client.connect()
    try:
        for s in slots + untouched:
            r = k.client.get(s.path, token=s.token, conn=conn)
            if r.status == 200:
                try:
                    got = r.json()["key"]
                except (ValueError, KeyError, TypeError):
                    got = r.body
            elif r.status == 404 and _code(r) == "key_not_found":
                got = None
            else:
                violations.append(f"cycle {cycle}: GET {s}: unexpected {r!r}")
                continue
            allowed = s.allowed_after_crash() if s.written else {None}
            if got not in allowed:
                what = "LOST acknowledged write" if s.inflight is None else "unexpected value"
                violations.append(f"cycle {cycle}: {what} for {s}: read {got!r}, allowed "
                                  f"{sorted(map(str, allowed))}, in flight {s.inflight}")
            if s.inflight is not None:
                stats["inflight_new" if got == s.inflight[1] and got != s.acked
                      else "inflight_old"] += 1
            s.acked, s.inflight = got, None
    finally:
        conn.close()
    return stats


@pytest.mark.sqlite_only
def test_kill9_while_writing_loses_no_acknowledged_write(make_keyholdd, default_issuer,
                                                         acme_issuer):
    rng = random.Random(_seed())
    issuers = {"default": default_issuer, "acme": acme_issuer}
    k = make_keyholdd()
    guids = [tokens.new_guid() for _ in range(GUIDS_WRITTEN + GUIDS_UNTOUCHED)]
    slots = {t: [Slot(t, g, issuers[t].token(g), True) for g in guids[:GUIDS_WRITTEN]]
             for t in TENANTS}
    untouched = [Slot(t, g, issuers[t].token(g), False) for t in TENANTS
                 for g in guids[GUIDS_WRITTEN:]]
    all_slots = [s for t in TENANTS for s in slots[t]]
    violations: list[str] = []
    totals = {"acked": 0, "inflight_new": 0, "inflight_old": 0, "kills": 0}
    acked_by_tenant = {t: 0 for t in TENANTS}
    started = time.monotonic()

    for cycle in range(1, KILL_CYCLES + 1):
        killed = threading.Event()
        writers = [Writer(k, slots[t], random.Random(rng.random()), killed) for t in TENANTS]
        for w in writers:
            w.start()
        for w in writers:
            w.connected.wait(harness.REQUEST_TIMEOUT_S)
        delay = rng.uniform(*KILL_AFTER_S)
        time.sleep(delay)
        alive_at_kill = k.alive()
        killed.set()
        rc = _sigkill(k.proc)
        k.stop()  # closes the log handle; the process is gone
        totals["kills"] += 1
        for w in writers:
            w.join(harness.REQUEST_TIMEOUT_S)
            assert not w.is_alive(), f"cycle {cycle}: writer hung after the kill"
            violations += [f"cycle {cycle}: {f}" for f in w.failures]
        if not alive_at_kill or rc != -signal.SIGKILL:
            violations.append(f"cycle {cycle}: keyholdd had exited by itself (rc {rc})\n{k.log()}")
        acked = sum(w.acked for w in writers)
        totals["acked"] += acked
        for t, w in zip(TENANTS, writers):
            acked_by_tenant[t] += w.acked

        k.start()
        stats = _verify(k, all_slots, untouched, violations, cycle)
        for n in ("inflight_new", "inflight_old"):
            totals[n] += stats[n]
        _progress(f"run {cycle}/{KILL_CYCLES}: killed after {delay * 1000:.0f} ms, "
                  f"{acked} writes acknowledged, in flight read back new {stats['inflight_new']} "
                  f"old {stats['inflight_old']}, violations so far {len(violations)}")
        if violations and not SOAK_RUNS:
            break

    # Nothing else changed: the database holds exactly the keys the model says, and one DEK.
    pubs = {c: k.audit_public_pem(c) for c in (*TENANTS, "")}
    rc = k.stop()
    assert rc == 0, f"keyholdd exited {rc} on SIGTERM\n{k.log()}"
    db = sqlite3.connect(f"file:{k.db_path}?mode=ro", uri=True)
    try:
        rows = sorted(db.execute("SELECT tenant, owner FROM records").fetchall())
    finally:
        db.close()
    expected = sorted((s.tenant, s.guid) for s in all_slots if s.acked is not None)
    if rows != expected:
        violations.append(f"records table holds {rows}, expected {expected}")
    _assert_one_dek_per_tenant(k.db_path, "after the kill cycles")
    violations += _audit_chains_intact(k, acked_by_tenant, pubs)

    summary = (f"SUMMARY: {totals['kills']} kill -9 cycles in {time.monotonic() - started:.1f} s, "
               f"{totals['acked']} acknowledged writes, in-flight writes read back as new "
               f"{totals['inflight_new']} / old {totals['inflight_old']}, "
               f"{len(violations)} lost or corrupted")
    print(summary, flush=True)
    assert not violations, summary + "\n" + "\n".join(violations[:50])
    # The writers really wrote in every cycle (a test that acknowledges nothing proves nothing).
    assert totals["acked"] >= totals["kills"], summary


def _audit_chains_intact(k, acked_by_tenant, pubs) -> list[str]:
    """After the kill cycles, every audit chain read straight from the database goes on
    without a gap or a fork and verifies with its public key (pubs: chain -> PEM, as the
    server gives it to the operator), and each acknowledged write has its record
    (committed with it)."""
    problems = []
    db = sqlite3.connect(f"file:{k.db_path}?mode=ro", uri=True)
    try:
        chains = {c: [(r[0], bytes(r[1])) for r in db.execute(
                      "SELECT first_seq, data FROM audit_blocks WHERE chain = ? "
                      "ORDER BY first_seq", (c,))]
                  for c in (*TENANTS, "")}
    finally:
        db.close()
    for c, blocks in chains.items():
        try:  # stored blocks, read as docs/audit.md says (auditref: the doc alone)
            recs = [x for first, data in blocks for x in auditref.decode_block(data, first, c)]
        except auditref.BlockError as e:
            problems.append(f"audit chain {c!r} has a block that does not decode: {e}")
            continue
        lines = [json.dumps(x, separators=(",", ":"), ensure_ascii=False).encode()
                 for x in recs]
        if [r["seq"] for r in recs] != list(range(1, len(recs) + 1)):
            problems.append(f"audit chain {c!r} is not 1..{len(recs)} without gaps")
            continue
        pub = auditref.load_public_key(pubs[c].encode())
        verdict = auditref.verify_lines(lines, pub)
        if not verdict["ok"]:
            problems.append(f"audit chain {c!r} does not verify: {verdict}")
        if c:
            writes = sum(r["count"] for r in recs
                         if r["action"] in ("create", "replace") and r["outcome"] == "ok")
            if writes < acked_by_tenant[c]:
                problems.append(f"audit chain {c!r} holds {writes} write records for "
                                f"{acked_by_tenant[c]} acknowledged writes")
    return problems


# ---------------------------------------------------------- 2. kill -9 during first start


def _calibrate_start(make_keyholdd) -> float:
    """Seconds from exec to listening on an empty data folder (sets the range of delays)."""
    k = make_keyholdd(start=False)
    t0 = time.monotonic()
    k.start()
    elapsed = time.monotonic() - t0
    assert k.stop() == 0, k.log()
    return elapsed


def _state(k: Keyholdd) -> str:
    """What a killed first start left behind, for the failure message."""
    ks = k.data / "keystore"
    keys = sorted(str(p.relative_to(ks)) for p in ks.rglob("*") if p.is_file())
    try:
        deks = [(t, v) for t, v, _ in _tenant_key_rows(k.db_path)] if k.db_path.exists() \
            else "no db"
    except sqlite3.Error as e:
        deks = f"db: {e}"
    return f"key store {keys}, tenant_keys {deks}"


def _kill_when_exists(proc: subprocess.Popen, path, deadline: float) -> str:
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(path):
            proc.send_signal(signal.SIGKILL)
            return f"when {path.parent.name}/{path.name} appeared"
    return f"{path.parent.name}/{path.name} never appeared"


def _kill_when_key_made(proc: subprocess.Popen, k: Keyholdd, tenant: str, deadline: float) -> str:
    """Kills proc once its first start has made a key: on the file store tenant's key file;
    on a SoftHSM2 token the first key object file in the token's folder (which key is not
    told by its name)."""
    if k.keystore == "file":
        return _kill_when_exists(proc, k.data / "keystore" / tenant / "v1.key", deadline)
    def objects():
        return {p for p in k.hsm.tokendir.rglob("*.object") if p.name != "token.object"}
    before = objects()
    while time.monotonic() < deadline and proc.poll() is None:
        if objects() - before:
            proc.send_signal(signal.SIGKILL)
            return "when the first key object appeared in the token"
    return "no key object appeared in the token"


def _write_read_everywhere(writer: Keyholdd, reader: Keyholdd, issuers: dict) -> dict:
    written = {}
    for t in TENANTS:
        guid = tokens.new_guid()
        key = new_key()
        tok = issuers[t].token(guid)
        r = writer.client.post(_path(t), token=tok, json_body={"key": key})
        assert r.status == 200 and r.body == b"", r
        r = reader.client.get(_path(t), token=tok)
        assert r.status == 200 and r.json() == {"key": key}, r
        written[t] = (tok, key)
    return written


@pytest.mark.sqlite_only
def test_kill9_during_first_start_leaves_one_dek(make_keyholdd, default_issuer, acme_issuer):
    rng = random.Random(_seed())
    issuers = {"default": default_issuer, "acme": acme_issuer}
    start_s = _calibrate_start(make_keyholdd)
    # Stratified delays cover the whole start-up (config, key store, database, RSA key
    # generation, DEK insert, issuer discovery, listen) and a little beyond.
    span = max(0.300, 1.2 * start_s)
    kills: list[str] = []
    for run in range(FIRST_START_RUNS):
        k = make_keyholdd(start=False)
        for j in range(rng.randint(1, 2)):
            proc = _spawn(k)
            t0 = time.monotonic()
            if j == 0 and run % 2 == 1:
                # The narrowest window: a tenant's key file is in the key store but its DEK
                # is not yet in the database. Poll for the file and kill at once.
                what = _kill_when_key_made(proc, k, rng.choice(TENANTS), t0 + 2 * span + 5)
            else:
                delay = span * (run + rng.random()) / FIRST_START_RUNS if j == 0 else \
                    rng.uniform(0, span)
                time.sleep(delay)
                what = "timed"
            elapsed = time.monotonic() - t0
            rc = _sigkill(proc)
            assert rc == -signal.SIGKILL, \
                f"run {run}: keyholdd exited {rc} before the kill at {elapsed:.3f} s\n{k.log()}"
            kills.append(f"run {run} kill {j} ({what}) at {elapsed * 1000:.0f} ms: {_state(k)}")
        k.start()
        for t in TENANTS:  # (on a token: the writes and reads below show the keys are there)
            assert k.keystore != "file" or (k.data / "keystore" / t / "v1.key").is_file(), _state(k)
        written = _write_read_everywhere(k, k, issuers)
        # The database is read while no keyholdd has it (keyholdd owns it while it runs).
        assert k.stop() == 0, k.log()
        _assert_one_dek_per_tenant(k.db_path, "\n".join(kills[-3:]))
        # After a restart the DEK comes from the database: a process that had kept a DEK of
        # its own in memory would have sealed records nobody can open now.
        k.start()
        for t, (tok, key) in written.items():
            r = k.client.get(_path(t), token=tok)
            assert r.status == 200 and r.json() == {"key": key}, (r, kills[-3:])
        assert k.stop() == 0, k.log()
        _assert_one_dek_per_tenant(k.db_path, "after restart")
    print(f"first start takes {start_s * 1000:.0f} ms; {len(kills)} kills:\n" + "\n".join(kills))


# ---------------------------------------------- 3. two processes on one empty data folder


def _first_up(ks: list, procs: dict, where: str) -> Keyholdd:
    """Waits (bounded) until one of ks has written its port file and returns it."""
    deadline = time.monotonic() + harness.START_TIMEOUT_S
    while time.monotonic() < deadline:
        for k in ks:
            if _port_written(k):
                return k
        if all(procs[id(k)].poll() is not None for k in ks):
            break
        time.sleep(0.02)
    pytest.fail(f"{where}: neither keyholdd came up\n" + "\n".join(k.log() for k in ks))


@pytest.mark.sqlite_only
def test_two_processes_first_start_same_instant(make_keyholdd, default_issuer, acme_issuer):
    """Both start on one empty folder. keyholdd owns the SQLite file while it runs, so the
    second process to reach the database waits for it: exactly one serves, creates the DEKs
    and takes writes. When it stops, the other comes up by itself (or, had it already given
    up after KH_STORE_BUSY_TIMEOUT_MS, exited 1 with the reason and starts cleanly) and
    reads the keys the first wrote: both use the one DEK per tenant in the database."""
    issuers = {"default": default_issuer, "acme": acme_issuer}
    # Who gets the file first is a race; a process can also slip in while the first one
    # is still starting, so the one that waits may do so in its app or its worker stores.
    reasons = (LOCKED, "cannot open the database")
    outcomes = []
    for run in range(TWIN_START_RUNS):
        where = f"run {run}"
        a = make_keyholdd(start=False)
        b = make_keyholdd(start=False)
        ports = {id(a): _listen_on_free_port(a), id(b): _share_data(a, b)}
        t0 = time.monotonic()
        procs = {id(a): _spawn(a), id(b): _spawn(b)}
        a.proc, b.proc = procs[id(a)], procs[id(b)]  # the fixture stops them at teardown
        first = _first_up([a, b], procs, where)
        took = time.monotonic() - t0
        other = b if first is a else a
        _attach(first, procs[id(first)])
        _assert_not_serving(other, procs[id(other)], ports[id(other)], where, reasons)

        # The first serves (and creates one DEK per tenant) while the other keeps off the
        # file, for at least as long again as the first needed to come up.
        written = {}
        for t in TENANTS:
            guid = tokens.new_guid()
            tok, key = issuers[t].token(guid), new_key()
            r = first.client.post(_path(t), token=tok, json_body={"key": key})
            assert r.status == 200 and r.body == b"", (where, r)
            written[t] = (tok, key)
        deadline = time.monotonic() + max(0.5, took)
        while True:
            state = _assert_not_serving(other, procs[id(other)], ports[id(other)], where, reasons)
            r = first.client.get("/health")
            assert r.status == 200, (where, r)
            if state == "exited" or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        for t, (tok, key) in written.items():
            r = first.client.get(_path(t), token=tok)
            assert r.status == 200 and r.json() == {"key": key}, (where, r)

        assert first.stop() == 0, first.log()
        outcomes.append(_come_up_after_first_stopped(other, procs[id(other)], where, reasons))
        # Same DEK: what the first wrote, the other reads.
        for t, (tok, key) in written.items():
            r = other.client.get(_path(t), token=tok)
            assert r.status == 200 and r.json() == {"key": key}, (where, r)
        _write_read_everywhere(other, other, issuers)
        assert other.stop() == 0, other.log()

        # Nobody has the file now: exactly one DEK per tenant, created by one process once.
        _assert_one_dek_per_tenant(a.db_path, where)
        assert _created_dek_lines(a, b) == {t: 1 for t in TENANTS}, \
            f"{where}\n{a.log()}\n{b.log()}"
    print(f"the second process, once the first stopped: {outcomes}")


# ------------------------------------- 4. another SQLite connection on the running database


def _files(folder) -> dict:
    """Name -> (inode, size, mtime, content) of the plain files directly in folder."""
    out = {}
    for f in sorted(folder.iterdir()):
        if f.is_file():
            st = f.stat()
            out[f.name] = (st.st_ino, st.st_size, st.st_mtime_ns, f.read_bytes())
    return out


@pytest.mark.sqlite_only
def test_outside_sqlite_connection_is_locked_out_and_writes_survive_kill9(make_keyholdd,
                                                                         default_issuer):
    """An operator's `sqlite3 keyhold.db 'select ...'` (or a backup tool) on the database of
    a running keyholdd. keyholdd owns the file while it runs, so the outside connection gets
    "database is locked" and touches nothing: neither the database nor the WAL keyholdd
    writes to (an outside connection that closed could once delete that WAL, and every write
    acknowledged after it was gone after kill -9). Acknowledged writes from before and after
    it survive kill -9; once keyholdd has stopped, the same connection reads them all."""
    k = make_keyholdd()  # two workers: two connections in one process
    issued = []
    for _ in range(3):
        guid = tokens.new_guid()
        tok, key = default_issuer.token(guid), new_key()
        r = k.client.post("/user-keys", token=tok, json_body={"key": key})
        assert r.status == 200 and r.body == b"", r
        issued.append((tok, key))
    wal = k.db_path.with_name(k.db_path.name + "-wal")
    assert wal.exists()
    before = _files(k.data)
    # read-write, as the sqlite3 shell opens it; and read-only, as a backup might
    for target, uri in ((k.db_path, False), (f"file:{k.db_path}?mode=ro", True)):
        db = sqlite3.connect(target, uri=uri, timeout=OUTSIDE_TIMEOUT_S)
        try:
            with pytest.raises(sqlite3.OperationalError, match=LOCKED):
                db.execute("SELECT COUNT(*) FROM records").fetchone()
        finally:
            db.close()
    after_outside = _files(k.data)
    assert after_outside.keys() == before.keys(), (sorted(before), sorted(after_outside))
    changed = [n for n in before if after_outside[n] != before[n]]
    assert not changed, f"the outside connection changed {changed}"
    assert k.alive(), k.log()

    after = []
    for _ in range(3):
        guid = tokens.new_guid()
        tok, key = default_issuer.token(guid), new_key()
        r = k.client.put("/user-keys", token=tok, json_body={"key": key})
        assert r.status == 200 and r.body == b"", r
        after.append((tok, key))
    assert k.kill() == -signal.SIGKILL, k.log()
    k.start()
    lost = []
    for tok, key in issued + after:
        r = k.client.get("/user-keys", token=tok)
        if not (r.status == 200 and r.json() == {"key": key}):
            lost.append(r)
    assert not lost, f"{len(lost)} acknowledged writes lost after kill -9: {lost}"
    assert k.stop() == 0, k.log()
    db = sqlite3.connect(k.db_path, timeout=OUTSIDE_TIMEOUT_S)
    try:
        assert db.execute("SELECT COUNT(*) FROM records").fetchone() == (len(issued + after),)
    finally:
        db.close()


# ------------------------------------ 5. a second keyholdd beside a running one


@pytest.mark.sqlite_only
def test_second_keyholdd_on_a_served_folder_does_not_serve(make_keyholdd, default_issuer,
                                                           acme_issuer):
    """A second keyholdd started (by mistake, or by a supervisor that thinks the first is
    gone) on the data folder a running keyholdd serves must not serve beside it: it would
    not see the first one's revokes and rekeys. It waits for the database (up to
    KH_STORE_BUSY_TIMEOUT_MS, then exits 1 with "database is locked") while the first keeps
    serving; stopping the first lets it come up, with the first one's keys."""
    issuers = {"default": default_issuer, "acme": acme_issuer}
    a = make_keyholdd()
    written = {}
    for t in TENANTS:
        tok, key = issuers[t].token(tokens.new_guid()), new_key()
        r = a.client.post(_path(t), token=tok, json_body={"key": key})
        assert r.status == 200 and r.body == b"", r
        written[t] = (tok, key)
    # How long a start on this (initialised) folder takes: the second keyholdd is watched
    # for at least twice that, so that one not held back would have come up meanwhile.
    assert a.stop() == 0, a.log()
    t0 = time.monotonic()
    a.start()
    watch_s = max(1.0, 2 * (time.monotonic() - t0))

    b = make_keyholdd(start=False)
    port = _share_data(a, b)
    proc = b.proc = _spawn(b)  # b.proc: the fixture stops it at teardown
    # Bounded: it gets as far as opening the database file (or gives up).
    assert harness.poll_until(lambda: proc.poll() is not None or _has_open(proc.pid, b.db_path),
                              timeout=harness.START_TIMEOUT_S), b.log()
    deadline = time.monotonic() + watch_s
    rounds, state = 0, "waiting"
    while state == "waiting" and (rounds < 3 or time.monotonic() < deadline):
        state = _assert_not_serving(b, proc, port, f"round {rounds}")
        # The first serves correctly meanwhile: health, reads, replacements.
        r = a.client.get("/health")
        assert r.status == 200 and r.json() == {"status": "ready"}, r
        for t in TENANTS:
            tok, _ = written[t]
            key = new_key()
            r = a.client.put(_path(t), token=tok, json_body={"key": key})
            assert r.status == 200 and r.body == b"", r
            written[t] = (tok, key)
            r = a.client.get(_path(t), token=tok)
            assert r.status == 200 and r.json() == {"key": key}, r
        rounds += 1
    assert a.alive(), a.log()

    assert a.stop() == 0, a.log()
    outcome = _come_up_after_first_stopped(b, proc, "after the first stopped")
    r = b.client.get("/health")
    assert r.status == 200, (outcome, r)
    for t, (tok, key) in written.items():
        r = b.client.get(_path(t), token=tok)
        assert r.status == 200 and r.json() == {"key": key}, (outcome, r)
    assert b.stop() == 0, b.log()
    _assert_one_dek_per_tenant(a.db_path, outcome)
    print(f"second keyholdd: {state} for {rounds} rounds while the first served; {outcome}")
