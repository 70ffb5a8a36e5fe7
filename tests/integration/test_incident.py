"""`keyhold incident` (DESIGN.md "Tenant key states", docs/incident.md) through the real
keyholdd and the real CLI, on a test tenant with member records:

1. leaked: the dry run changes nothing and lists five steps to do; --execute --yes rekeys,
   waits for the re-encryption job, revokes, retires and destroys the version (key file
   gone, every record readable under the new version, the four admin actions audited,
   another tenant untouched); a second run finds everything done; unknown versions and
   usage errors are refused;
2. leaked --execute killed (SIGKILL) while it waits for a slow job ([jobs] reencrypt_rate),
   run again: it goes on from the wait step without a second rekey and finishes;
3. --execute with neither a terminal nor --yes: refused (confirmation_required), nothing
   changed; on a terminal (a pty) the wrong number is refused and the right one runs;
4. algorithm-weakness: rekey to rsa-4096, wait, retire;
5. hsm-vulnerability: before the offline `keyhold keystore migrate`, --execute alone is
   refused (offline_step); --refuse-writes engages the kill switch;
6. unauthorized-use: the report counts exactly the uses of the version that members made
   (reads, writes, refused reads), by actor, and --since/--until leave out what is outside.
"""
import json
import os
import pty
import signal
import subprocess
import threading
import time

import harness
import tokens
from harness import assert_error, new_key, poll_until

ADMINS = "role:keyhold-admin"
CLI_TIMEOUT_S = 120           # a hang guard only
JOB_TIMEOUT_S = 90            # bound on waiting for a job or an audit record (no timing claim)
BATCH = 500                   # src/service/reencrypt.c: records per batch
STEPS_LEAKED = ["rekey", "reencrypt", "revoke", "retire", "destroy"]


# ------------------------------------------------------------------ helpers (test_lifecycle)


def tenants(issuers) -> dict:
    return {"default": {"issuer": issuers["default"], "admins": ADMINS},
            "acme": {"issuer": issuers["acme"], "admins": ADMINS}}


def jobs(rate: int) -> str:
    return f"\n[jobs]\nreencrypt_rate = {rate}\n"


def cli_cmd(k, *args, json_out=True) -> list[str]:
    cmd = [str(harness.build_dir() / "src" / "cli" / "keyhold"), "--socket", str(k.admin_socket)]
    if json_out:
        cmd.append("--json")
    return cmd + [str(a) for a in args]


def cli_env() -> dict:
    return {n: v for n, v in os.environ.items() if not n.startswith("KEYHOLD_")}


def cli(k, *args, json_out=True, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """keyhold on k's admin socket (--json unless told); stdin is /dev/null (no terminal)."""
    return subprocess.run(cli_cmd(k, *args, json_out=json_out), capture_output=True, text=True,
                          env=cli_env(), timeout=CLI_TIMEOUT_S, stdin=stdin)


def cli_ok(k, *args, **kw):
    p = cli(k, *args, **kw)
    assert p.returncode == 0, p
    return json.loads(p.stdout)


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


def path_of(tenant: str) -> str:
    return "/user-keys" if tenant == "default" else f"/t/{tenant}/user-keys"


class Member:
    def __init__(self, issuer, tenant="default"):
        self.guid = tokens.new_guid()
        self.token = issuer.token(self.guid)
        self.path = path_of(tenant)
        self.acked: str | None = None


def seed(k, issuer, n, tenant="default", threads=4) -> list[Member]:
    """n members with a record each (PUT), written over keep-alive connections."""
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
        finally:
            conn.close()

    ts = [threading.Thread(target=work, args=(members[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]
    return members


def read(k, m):
    r = k.client.get(m.path, token=m.token)
    return r, (r.json().get("key") if r.status == 200 else None)


def assert_all_read_back(k, members):
    bad = []
    for m in members:
        r, got = read(k, m)
        if r.status != 200 or got != m.acked:
            bad.append(f"{m.guid}: {r!r}")
    assert not bad, f"{len(bad)} records wrong:\n" + "\n".join(bad[:20])


def steps(doc) -> list[tuple]:
    return [(s["step"], s["status"]) for s in doc["steps"]]


def audited(k, pred, n, prefix="") -> list[dict]:
    """The audit records matching pred once there are n of them (a record may trail its
    answer by a batch: docs/audit.md "When records are durable")."""
    got = poll_until(lambda: (lambda x: x if len(x) >= n else None)(
        [x for x in audit_records(k, prefix) if pred(x)]), timeout=JOB_TIMEOUT_S, interval=0.1)
    assert got, [x for x in audit_records(k, prefix) if pred(x)]
    return got


# ------------------------------------------------------------------------------ 1. leaked


def test_leaked_dry_run_then_execute(make_keyholdd, issuers):
    k = make_keyholdd(tenants(issuers))
    members = seed(k, issuers["default"], 12)
    others = seed(k, issuers["acme"], 3, tenant="acme")
    key_file = k.data / "keystore" / "default" / "v1.key"
    assert key_file.exists()

    dry = cli_ok(k, "incident", "leaked", "--version", "1")
    assert dry["playbook"] == "leaked" and dry["version"] == 1 and dry["executed"] is False, dry
    assert steps(dry) == [(s, "to_do") for s in STEPS_LEAKED], dry
    assert "12 records" in dry["steps"][1]["detail"], dry
    assert all("outcome" not in s for s in dry["steps"]), dry
    p = cli(k, "incident", "leaked", "--version", "1", json_out=False)
    assert p.returncode == 0 and "dry run" in p.stdout, p
    assert [line.split()[1:3] for line in p.stdout.splitlines() if line.startswith("  ")][:5] == \
        [[s, "to"] for s in STEPS_LEAKED], p.stdout
    assert states(k) == {1: "active"}            # a dry run changes nothing

    got = cli_ok(k, "incident", "leaked", "--version", "1", "--execute", "--yes")
    assert got["executed"] is True, got
    assert steps(got) == [(s, "done") for s in STEPS_LEAKED], got
    assert [s["outcome"] for s in got["steps"]] == ["ran"] * 5, got

    doc = keys(k)
    assert states(k) == {1: "destroyed", 2: "active"}, doc
    assert records_of(doc) == {1: 0, 2: 12}, doc
    assert not key_file.exists()
    assert_all_read_back(k, members)
    assert states(k, "/t/acme") == {1: "active"}
    assert_all_read_back(k, others)

    # the server audited each step itself
    def ok(action, version):
        return lambda x: x["action"] == action and x["outcome"] == "ok" and \
            x["key_version"] == version
    audited(k, ok("key.rekey", 2), 1)
    for action in ("key.revoke", "key.retire", "key.destroy"):
        assert len(audited(k, ok(action, 1), 1)) == 1, action

    # run again, without --yes and without a terminal: nothing is left to confirm or do
    again = cli_ok(k, "incident", "leaked", "--version", "1", "--execute")
    assert steps(again) == [(s, "done") for s in STEPS_LEAKED], again
    assert [s["outcome"] for s in again["steps"]] == ["done_before"] * 5, again
    dry = cli_ok(k, "incident", "leaked", "--version", "1")
    assert steps(dry) == [(s, "done") for s in STEPS_LEAKED], dry
    assert states(k) == {1: "destroyed", 2: "active"}
    assert len([x for x in audit_records(k) if x["action"] == "key.rekey"]) == 1


def test_refusals_and_usage_errors(make_keyholdd, issuers):
    k = make_keyholdd(tenants(issuers))
    seed(k, issuers["default"], 2)
    for pb in ("leaked", "unauthorized-use", "hsm-vulnerability", "algorithm-weakness"):
        cli_refused(k, "version_not_found", "incident", pb, "--version", "7")
    cli_refused(k, "version_not_found", "incident", "leaked", "--version", "7", "--execute",
                "--yes")
    usage = [
        ("incident",),
        ("incident", "stolen", "--version", "1"),
        ("incident", "leaked"),
        ("incident", "leaked", "--version", "0"),
        ("incident", "leaked", "--version", "one"),
        ("incident", "leaked", "--version=-1"),
        ("incident", "leaked", "--version", "4294967296"),
        ("incident", "leaked", "--version", "1", "--yes"),
        ("incident", "leaked", "--version", "1", "--refuse-writes", "--execute"),
        ("incident", "leaked", "--version", "1", "--algorithm", "rsa-1024", "--execute"),
        ("incident", "leaked", "--version", "1", "--since", "2026-01-01"),
        ("incident", "hsm-vulnerability", "--version", "1", "--algorithm", "rsa-4096"),
        ("incident", "unauthorized-use", "--version", "1", "--since", "yesterday"),
        ("incident", "unauthorized-use", "--version", "1", "--since", "2026-02-30"),
        ("incident", "unauthorized-use", "--version", "1", "--until", "2026-01-01T10:00:00+01:00"),
        ("incident", "unauthorized-use", "--version", "1", "--since", "2026-01-02",
         "--until", "2026-01-01"),
        ("incident", "leaked", "extra", "--version", "1"),
    ]
    for args in usage:
        p = cli(k, *args, json_out=False)
        assert p.returncode == 2, (args, p)
        assert "Run 'keyhold incident --help'" in p.stderr, (args, p)
    assert states(k) == {1: "active"}
    assert not [x for x in audit_records(k) if x["action"].startswith("key.") and
                x["action"] != "key.status"]
    # --help: a description and an example; `keyhold --version` is still keyhold's
    p = cli(k, "incident", "--help", json_out=False)
    assert p.returncode == 0 and "Example:\n  keyhold incident" in p.stdout, p
    assert "--refuse-writes" in p.stdout and "keystore migrate" in p.stdout, p
    p = cli(k, "--version", json_out=False)
    assert p.returncode == 0 and p.stdout.startswith("keyhold "), p


def test_leaked_after_the_kill_switch(make_keyholdd, issuers):
    """The first reaction was `key revoke --all`: no version is active and the job skips the
    records of a revoked version. The playbook rekeys, reinstates version 1 so that its
    records move, then revokes, retires and destroys it."""
    k = make_keyholdd(tenants(issuers))
    members = seed(k, issuers["default"], 6)
    cli_ok(k, "key", "revoke", "--all")
    assert states(k) == {1: "revoked"}
    dry = cli_ok(k, "incident", "leaked", "--version", "1")
    assert steps(dry) == [("rekey", "to_do"), ("reencrypt", "to_do"), ("revoke", "done"),
                          ("retire", "to_do"), ("destroy", "to_do")], dry
    assert "kill switch" in dry["steps"][0]["detail"], dry
    assert "reinstated" in dry["steps"][1]["detail"], dry

    got = cli_ok(k, "incident", "leaked", "--version", "1", "--execute", "--yes")
    assert steps(got) == [(s, "done") for s in STEPS_LEAKED], got
    assert [s["outcome"] for s in got["steps"]] == ["ran", "ran", "ran", "ran", "ran"], got
    doc = keys(k)
    assert states(k) == {1: "destroyed", 2: "active"}, doc
    assert records_of(doc) == {1: 0, 2: 6}, doc
    assert_all_read_back(k, members)
    assert len(audited(k, lambda x: x["action"] == "key.reinstate" and x["outcome"] == "ok"
                       and x["key_version"] == 1, 1)) == 1


# --------------------------------------------------------- 2. leaked, interrupted and re-run


def test_leaked_execute_killed_while_waiting_continues_when_run_again(make_keyholdd, issuers):
    """1100 records at 400 records/s: the job moves a batch of 500, sleeps 1.25 s, moves the
    next, ... The CLI is killed once version 1 is archived with records still under it
    (it is then in the wait step), and run again."""
    k = make_keyholdd(tenants(issuers), extra=jobs(400))
    n = 2 * BATCH + 100
    members = seed(k, issuers["default"], n)
    proc = subprocess.Popen(cli_cmd(k, "incident", "leaked", "--version", "1", "--execute",
                                    "--yes"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env())
    try:
        def waiting():
            doc = keys(k)
            st, recs = {v["version"]: v["state"] for v in doc["versions"]}, records_of(doc)
            return doc if st.get(1) == "archived" and 0 < recs[1] < n else None
        doc = poll_until(waiting, timeout=JOB_TIMEOUT_S, interval=0.02)
        assert doc, keys(k)
    finally:
        proc.kill()
        out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, out, err)

    # stopped mid-way: rekeyed, not revoked; the job goes on without the CLI
    assert states(k) == {1: "archived", 2: "active"}
    dry = cli_ok(k, "incident", "leaked", "--version", "1")
    assert steps(dry)[0] == ("rekey", "done"), dry
    assert [s for _, s in steps(dry)[2:]] == ["to_do"] * 3, dry

    got = cli_ok(k, "incident", "leaked", "--version", "1", "--execute", "--yes")
    assert steps(got) == [(s, "done") for s in STEPS_LEAKED], got
    outcomes = [s["outcome"] for s in got["steps"]]
    assert outcomes[0] == "done_before" and outcomes[2:] == ["ran"] * 3, got
    assert outcomes[1] in ("ran", "done_before"), got   # the job may have finished meanwhile

    doc = keys(k)
    assert states(k) == {1: "destroyed", 2: "active"}, doc    # one rekey, not two
    assert records_of(doc) == {1: 0, 2: n}, doc
    assert len([x for x in audit_records(k) if x["action"] == "key.rekey"]) == 1
    assert_all_read_back(k, members[:50] + members[-50:])


# ----------------------------------------------------------------------- 3. confirmation


def test_execute_without_terminal_or_yes_is_refused_and_changes_nothing(make_keyholdd, issuers):
    k = make_keyholdd(tenants(issuers))
    members = seed(k, issuers["default"], 4)
    for args in (("leaked",), ("algorithm-weakness",), ("hsm-vulnerability", "--refuse-writes")):
        cli_refused(k, "confirmation_required", "incident", *args, "--version", "1", "--execute")
        p = cli(k, "incident", *args, "--version", "1", "--execute", json_out=False)
        assert p.returncode == 1 and p.stdout == "" and "confirmation_required" in p.stderr, p
    assert states(k) == {1: "active"}
    assert_all_read_back(k, members)
    changes = [x for x in audit_records(k) if x["action"].startswith("key.") and
               x["action"] != "key.status"]
    assert changes == [], changes


def _on_a_terminal(k, typed: str, *args) -> subprocess.CompletedProcess:
    """The CLI with a pty as stdin, `typed` already waiting on it."""
    master, slave = pty.openpty()
    try:
        os.write(master, typed.encode())
        return subprocess.run(cli_cmd(k, *args), stdin=slave, capture_output=True, text=True,
                              env=cli_env(), timeout=CLI_TIMEOUT_S)
    finally:
        os.close(slave)
        os.close(master)


def test_execute_on_a_terminal_asks_for_the_version_number(make_keyholdd, issuers):
    k = make_keyholdd(tenants(issuers))
    seed(k, issuers["default"], 2)
    args = ("incident", "hsm-vulnerability", "--version", "1", "--execute", "--refuse-writes")
    p = _on_a_terminal(k, "2\n", *args)
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == "not_confirmed", p
    assert "Type the version number (1)" in p.stderr, p
    assert states(k) == {1: "active"}
    p = _on_a_terminal(k, "1\n", *args)
    assert p.returncode == 0, p
    assert steps(json.loads(p.stdout))[0] == ("refuse-writes", "done"), p
    assert states(k) == {1: "revoked"}


# --------------------------------------------------------------------- 4. algorithm-weakness


def test_algorithm_weakness(make_keyholdd, issuers):
    k = make_keyholdd(tenants(issuers))       # the harness's keys are rsa-2048
    members = seed(k, issuers["default"], 8)
    dry = cli_ok(k, "incident", "algorithm-weakness", "--version", "1")
    assert steps(dry) == [("rekey", "to_do"), ("reencrypt", "to_do"), ("retire", "to_do")], dry
    assert "rsa-4096" in dry["steps"][0]["detail"], dry
    assert keys(k)["versions"][0]["algorithm"] == "rsa-2048"
    assert states(k) == {1: "active"}

    got = cli_ok(k, "incident", "algorithm-weakness", "--version", "1", "--execute", "--yes")
    assert steps(got) == [("rekey", "done"), ("reencrypt", "done"), ("retire", "done")], got
    doc = keys(k)
    # (a retired version's algorithm shows as "rsa": the server no longer holds its key)
    assert {v["version"]: (v["state"], v["algorithm"]) for v in doc["versions"]}[2] == \
        ("active", "rsa-4096"), doc
    assert states(k) == {1: "retired", 2: "active"}, doc
    assert records_of(doc) == {1: 0, 2: 8}, doc
    assert_all_read_back(k, members)

    again = cli_ok(k, "incident", "algorithm-weakness", "--version", "1", "--execute")
    assert [s["outcome"] for s in again["steps"]] == ["done_before"] * 3, again
    # the strong version itself: nothing to do
    dry = cli_ok(k, "incident", "algorithm-weakness", "--version", "2")
    assert [s for _, s in steps(dry)] == ["done"] * 3, dry
    # a size weaker than the active one's asks for nothing either
    dry = cli_ok(k, "incident", "algorithm-weakness", "--version", "1", "--algorithm", "rsa-3072")
    assert [s for _, s in steps(dry)] == ["done"] * 3, dry
    assert states(k) == {1: "retired", 2: "active"}


# ---------------------------------------------------------------------- 5. hsm-vulnerability


def test_hsm_vulnerability(make_keyholdd, issuers):
    k = make_keyholdd(tenants(issuers))
    members = seed(k, issuers["default"], 3)
    others = seed(k, issuers["acme"], 2, tenant="acme")
    dry = cli_ok(k, "incident", "hsm-vulnerability", "--version", "1")
    assert steps(dry) == [("refuse-writes", "done"), ("keystore-migrate", "to_do"),
                          ("rekey-in-new-store", "to_do"), ("reencrypt", "to_do"),
                          ("retire-old-store", "to_do")], dry
    assert "keyhold keystore migrate" in dry["steps"][1]["detail"], dry
    assert "offline" in dry["steps"][1]["detail"], dry
    assert "reads" in dry["steps"][0]["detail"], dry
    dry = cli_ok(k, "incident", "hsm-vulnerability", "--version", "1", "--refuse-writes")
    assert steps(dry)[0] == ("refuse-writes", "to_do"), dry

    # the move itself is offline (test_keystore_migrate.py runs the whole playbook)
    err = cli_refused(k, "offline_step", "incident", "hsm-vulnerability", "--version", "1",
                      "--execute", "--yes")
    assert "keyhold keystore migrate" in err["message"], err
    assert states(k) == {1: "active"}
    assert_all_read_back(k, members)

    got = cli_ok(k, "incident", "hsm-vulnerability", "--version", "1", "--execute",
                 "--refuse-writes", "--yes")
    assert got["executed"] is True and steps(got)[0] == ("refuse-writes", "done"), got
    assert [s["outcome"] for s in got["steps"]] == ["ran"] + ["not_run"] * 4, got
    assert states(k) == {1: "revoked"}
    for m in members:
        r, _ = read(k, m)
        assert_error(r, 403, "key_revoked")
        assert_error(k.client.put(m.path, token=m.token, json_body={"key": new_key()}), 403,
                     "key_revoked")
    assert_all_read_back(k, others)             # another tenant untouched
    again = cli_ok(k, "incident", "hsm-vulnerability", "--version", "1", "--execute",
                   "--refuse-writes")
    assert again["steps"][0]["outcome"] == "done_before", again
    assert len(audited(k, lambda x: x["action"] == "key.revoke-all", 1)) == 1
    cli_ok(k, "key", "reinstate", "--all")
    assert_all_read_back(k, members)


# ----------------------------------------------------------------------- 6. unauthorized-use


def _uses(doc) -> dict:
    return {u["actor"]: u["count"] for u in doc["uses"]}


def test_unauthorized_use_report(make_keyholdd, issuers):
    k = make_keyholdd(tenants(issuers))
    a, b, c = seed(k, issuers["default"], 3)       # each a write (create) under version 1
    seed(k, issuers["acme"], 2, tenant="acme")      # another tenant's chain

    read(k, a)                                      # phase 1: a reads once
    time.sleep(0.01)                                # so that phase 2 starts a later millisecond
    for m in (a, a, a, b, b):                       # phase 2: a three times, b twice
        assert read(k, m)[0].status == 200
    time.sleep(0.01)
    cli_ok(k, "key", "revoke", "--all")             # phase 3: a refused under version 1
    assert_error(read(k, a)[0], 403, "key_revoked")
    cli_ok(k, "key", "reinstate", "--all")
    assert cli_ok(k, "key", "rekey", "--wait")["version"] == 2
    for m in (a, b, c):                             # uses of version 2, not of version 1
        assert read(k, m)[0].status == 200

    def member_uses(x):
        return x["actor"] in (a.guid, b.guid, c.guid) and x["key_version"] == 1
    recs = audited(k, member_uses, 3 + 6 + 1)       # the refusal is written once its second is over
    reads = [x for x in recs if x["action"] == "read"]
    assert len(reads) == 6, recs
    phase2 = reads[1:]
    since, until = phase2[0]["time"], phase2[-1]["time"]
    assert reads[0]["time"] < since, reads

    full = cli_ok(k, "incident", "unauthorized-use", "--version", "1")
    assert full["playbook"] == "unauthorized-use" and full["version"] == 1, full
    assert full["since"] is None and full["until"] is None, full
    assert _uses(full) == {a.guid: 1 + 4 + 1, b.guid: 1 + 2, c.guid: 1}, full
    assert full["total"] == 10, full
    ua = next(u for u in full["uses"] if u["actor"] == a.guid)
    assert ua["clients"] == ["127.0.0.1"], ua
    assert ua["first"] == min(x["time"] for x in recs if x["actor"] == a.guid), ua
    assert ua["last"] == max(x["time"] for x in recs if x["actor"] == a.guid), ua
    assert ua["actions"]["read"] == 4 and ua["actions"]["refused"] == 1, ua
    assert full["uses"][0]["actor"] == a.guid        # most uses first

    window = cli_ok(k, "incident", "unauthorized-use", "--version", "1", "--since", since,
                    "--until", until)
    assert window["since"] == since and window["until"] == until, window
    assert _uses(window) == {a.guid: 3, b.guid: 2} and window["total"] == 5, window
    # --execute means the same report; whole days and far bounds
    day = since[:10]
    same = cli_ok(k, "incident", "unauthorized-use", "--version", "1", "--execute",
                  "--since", day, "--until", day)
    assert _uses(same) == _uses(full) and same["since"] == day + "T00:00:00.000Z", same
    assert same["until"] == day + "T23:59:59.999Z", same
    none = cli_ok(k, "incident", "unauthorized-use", "--version", "1", "--until", "2000-01-01")
    assert none["uses"] == [] and none["total"] == 0, none
    v2 = cli_ok(k, "incident", "unauthorized-use", "--version", "2")
    assert _uses(v2) == {a.guid: 1, b.guid: 1, c.guid: 1}, v2

    p = cli(k, "incident", "unauthorized-use", "--version", "1", json_out=False)
    assert p.returncode == 0, p
    rows = {line.split()[0]: line.split()[1] for line in p.stdout.splitlines()
            if line.split() and line.split()[0] in (a.guid, b.guid, c.guid)}
    assert rows == {a.guid: "6", b.guid: "3", c.guid: "1"}, p.stdout
    assert "keyhold incident leaked --version 1" in p.stdout, p.stdout
