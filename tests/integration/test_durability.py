"""Crash durability of keyholdd (issue "Harden keyholdd", part B).

1. kill -9 while writing: keep-alive writers PUT/POST random 32-byte keys for a fixed set of
   users in both tenants; keyholdd is SIGKILLed after a random 50-400 ms, restarted on the
   same data, and every user is read back. A write whose 200 was fully received must read
   back exactly; the one write in flight per writer at the kill may read back as its old or
   its new value and nothing else; users never written stay 404.
2. kill -9 during first start (empty database, empty key store), then a normal start: it
   must come up with exactly one DEK row per tenant for version 1, and keys written then
   must survive a restart (a DEK in memory that differs from the stored one would not).
3. Two keyholdd started at the same instant on one empty data folder: both come up (or one
   fails cleanly), exactly one DEK per tenant, and what one writes the other reads.
4. An outside SQLite connection (sqlite3 shell, backup) opened and closed on the running
   database must not delete the WAL keyholdd writes to.

KEYHOLD_SOAK_RUNS=N runs N kill cycles in test 1 (and prints progress): scripts/soak-kill.
"""
import http.client
import os
import random
import signal
import sqlite3
import ssl
import subprocess
import threading
import time

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
    env = {n: v for n, v in os.environ.items() if not n.startswith("KEYHOLD_")}
    env.update(k.env)
    with open(k.log_path, "ab") as log:
        return subprocess.Popen([str(harness.keyholdd_binary()), "--config", str(k.config_path)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)


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

    summary = (f"SUMMARY: {totals['kills']} kill -9 cycles in {time.monotonic() - started:.1f} s, "
               f"{totals['acked']} acknowledged writes, in-flight writes read back as new "
               f"{totals['inflight_new']} / old {totals['inflight_old']}, "
               f"{len(violations)} lost or corrupted")
    print(summary, flush=True)
    assert not violations, summary + "\n" + "\n".join(violations[:50])
    # The writers really wrote in every cycle (a test that acknowledges nothing proves nothing).
    assert totals["acked"] >= totals["kills"], summary


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
                what = _kill_when_exists(proc, k.data / "keystore" / rng.choice(TENANTS) / "v1.key",
                                         t0 + 2 * span + 5)
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
        _assert_one_dek_per_tenant(k.db_path, "\n".join(kills[-3:]))
        for t in TENANTS:
            assert (k.data / "keystore" / t / "v1.key").is_file(), _state(k)
        written = _write_read_everywhere(k, k, issuers)
        # After a restart the DEK comes from the database: a process that had kept a DEK of
        # its own in memory would have sealed records nobody can open now.
        assert k.stop() == 0, k.log()
        k.start()
        for t, (tok, key) in written.items():
            r = k.client.get(_path(t), token=tok)
            assert r.status == 200 and r.json() == {"key": key}, (r, kills[-3:])
        _assert_one_dek_per_tenant(k.db_path, "after restart")
        assert k.stop() == 0, k.log()
    print(f"first start takes {start_s * 1000:.0f} ms; {len(kills)} kills:\n" + "\n".join(kills))


# ---------------------------------------------- 3. two processes on one empty data folder


def test_two_processes_first_start_same_instant(make_keyholdd, default_issuer, acme_issuer):
    issuers = {"default": default_issuer, "acme": acme_issuer}
    outcomes = []
    for run in range(TWIN_START_RUNS):
        a = make_keyholdd(start=False)
        b = make_keyholdd(start=False)
        b.data, b.db_path, b.master_key = a.data, a.db_path, a.master_key
        b.write_config()
        procs = {id(a): _spawn(a), id(b): _spawn(b)}
        up = []
        for k in (a, b):
            try:
                _attach(k, procs[id(k)])
                up.append(k)
            except RuntimeError:
                # Failing cleanly: exit status 1 with a reason in the log, no crash.
                rc = procs[id(k)].wait()
                assert rc == 1, f"run {run}: keyholdd exited {rc}\n{k.log()}"
                assert "start-up failed" in k.log() or "cannot" in k.log(), k.log()
        assert up, f"run {run}: neither keyholdd came up\n{a.log()}\n{b.log()}"
        outcomes.append(len(up))
        _assert_one_dek_per_tenant(a.db_path, f"run {run}")
        for k in (a, b):
            if k not in up:
                k.start()  # the one that failed cleanly starts on the now-initialised folder
        w1 = _write_read_everywhere(a, b, issuers)
        w2 = _write_read_everywhere(b, a, issuers)
        # And both survive a restart with the keys readable (the DEK in the database is the
        # one both used).
        for k in (a, b):
            assert k.stop() == 0, k.log()
        a.start()
        for t, (tok, key) in list(w1.items()) + list(w2.items()):
            r = a.client.get(_path(t), token=tok)
            assert r.status == 200 and r.json() == {"key": key}, r
        _assert_one_dek_per_tenant(a.db_path, f"run {run} after restart")
        assert a.stop() == 0, a.log()
    print(f"processes up per run: {outcomes}")


# ------------------------------------- 4. another SQLite connection on the running database


def test_external_sqlite_reader_does_not_lose_later_writes(make_keyholdd, default_issuer):
    """An operator's `sqlite3 keyhold.db 'select ...'` (or a backup tool) opens and closes the
    database while keyholdd runs. SQLite deletes the WAL on closing the last connection, and
    decides "last" by taking an exclusive lock on the database file; keyholdd's connections
    must hold their shared locks so that this fails. If it succeeds, keyholdd keeps writing
    into an unlinked WAL, and every write acknowledged after that is gone after kill -9."""
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
    db = sqlite3.connect(k.db_path)  # read-write, as the sqlite3 shell opens it
    try:
        assert db.execute("SELECT COUNT(*) FROM records").fetchone() == (3,)
    finally:
        db.close()
    wal_kept = wal.exists()
    after = []
    for _ in range(3):
        guid = tokens.new_guid()
        tok, key = default_issuer.token(guid), new_key()
        r = k.client.put("/user-keys", token=tok, json_body={"key": key})
        assert r.status == 200 and r.body == b"", r
        after.append((tok, key))
    k.kill()
    k.start()
    lost = []
    for tok, key in issued + after:
        r = k.client.get("/user-keys", token=tok)
        if not (r.status == 200 and r.json() == {"key": key}):
            lost.append(r)
    assert not lost, (f"{len(lost)} acknowledged writes lost after an outside connection "
                      f"closed (WAL file kept: {wal_kept}): {lost}")
    assert wal_kept, "the outside connection deleted the WAL keyholdd was writing to"
