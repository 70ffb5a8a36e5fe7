"""Several keyholdd replicas on one real PostgreSQL (docs/audit.md "Replicas"): each replica
appends to chains of its own, `audit export` writes every replica's chain of the tenant,
`audit verify` checks each one separately and names the chain and the first bad record of one
that was tampered with in the database, and a second keyholdd that claims a replica name in
use on that database refuses to start. The PostgreSQL server is the session's (the `pg`
fixture, pgserver.py), whatever KEYHOLD_TEST_STORAGE says, so this runs in every stage."""
import json
import re
import subprocess
import uuid

import pytest

import harness
from harness import new_key, poll_until

ADMINS = "role:keyhold-admin"
AUDIT_EXTRA = "\n[audit]\ncheckpoint_records = 5\n"


class Replica(harness.Keyholdd):
    """A Keyholdd on the PostgreSQL database `db` of pg, with [server] replica = name (None:
    no such line, the unnamed replica)."""

    def __init__(self, workdir, pki, tenants, pg, db, name, **kw):
        self.pg_lines = ["driver = postgresql",
                         f"url = postgresql://{pg.user}@{pg.host}:{pg.port}/{db}",
                         f"password_file = {workdir.parent / (db + '.password')}"]
        (workdir.parent / (db + ".password")).write_text(pg.password + "\n")
        (workdir.parent / (db + ".password")).chmod(0o600)
        self.replica = name
        super().__init__(workdir, pki, tenants, extra=AUDIT_EXTRA, **kw)

    def config_text(self) -> str:
        text = super().config_text()
        text = re.sub(r"\[storage\]\n.*?\n\n", lambda _: "[storage]\n" + "\n".join(self.pg_lines)
                      + "\n\n", text, count=1, flags=re.S)
        if self.replica is not None:
            text = text.replace("[server]\n", f"[server]\nreplica = {self.replica}\n", 1)
        return text


def cli(*args, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(harness.build_dir() / "src" / "cli" / "keyhold"), *args],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, p
    return p


def export(d, out) -> dict:
    p = cli("--socket", str(d.admin_socket), "--json", "audit", "export", str(out), "--force")
    return json.loads(p.stdout)


def verify(out, pem):
    p = cli("--json", "audit", "verify", str(out), "--public-key", str(pem), check=False)
    return p.returncode, json.loads(p.stdout)


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture
def cluster(pki, issuers, pg, tmp_path):
    """Two replicas, node-a and node-b, on one fresh database and one key store."""
    db = "kh_" + uuid.uuid4().hex[:16]
    pg.create_db(db)
    tenants = {"default": {"issuer": issuers["default"], "admins": ADMINS}}
    a = Replica(tmp_path / "a", pki, tenants, pg, db, "node-a")
    b = Replica(tmp_path / "b", pki, tenants, pg, db, "node-b")
    b.share_store(a)
    b.write_config()
    started = []
    try:
        for d in (a, b):   # one after the other: the first start makes the keys
            d.start()
            started.append(d)
        yield {"a": a, "b": b, "pg": pg, "db": db, "tenants": tenants, "tmp": tmp_path}
    finally:
        for d in started:
            d.stop()


def test_each_replica_keeps_its_chain_and_verify_checks_all(cluster, issuers):
    a, b, pg, db = cluster["a"], cluster["b"], cluster["pg"], cluster["db"]
    iss = issuers["default"]
    users = [str(uuid.uuid4()) for _ in range(6)]
    for i, u in enumerate(users):       # traffic on both: writes, reads, a refusal
        d = (a, b)[i % 2]
        assert d.client.post("/user-keys", token=iss.token(u), json_body={"key": new_key()}).status == 200
        assert d.client.get("/user-keys", token=iss.token(u)).status == 200
    assert b.client.get("/user-keys", token=iss.token(users[0], scope=["x"])).status == 403
    marked = str(uuid.uuid4())          # one write on node-b only, to tamper with below
    r = b.client.post("/user-keys", token=iss.token(marked), json_body={"key": new_key()})
    assert r.status == 200

    # either replica's admin route reads every replica's chain, each record saying whose
    page = a.operator.get("/admin/audit?since=1&limit=10000").json()
    assert sorted(page["replicas"]) == ["node-a", "node-b"]
    assert page["records"] == []        # no unnamed replica here
    for name, d in (("node-a", a), ("node-b", b)):
        recs = poll_until(lambda: [x for x in d.operator.get(
            f"/admin/audit?since=1&limit=10000&replica={name}").json()["records"]
            if x["action"] == "read"], timeout=10)
        assert recs and all(x["replica"] == name for x in recs)
    assert a.operator.get("/admin/audit?replica=Node").status == 400

    # audit tail merges both chains by time (then replica, seq), each record naming its own
    tail = [json.loads(x) for x in cli("--socket", str(b.admin_socket), "--json", "audit", "tail",
                                       "-n", "10000").stdout.splitlines()]
    assert {x["replica"] for x in tail} == {"node-a", "node-b"}
    assert tail == sorted(tail, key=lambda x: (x["time"], x["replica"], x["seq"]))
    assert {x["actor"] for x in tail if x["action"] == "create"} == set(users) | {marked}
    text = cli("--socket", str(b.admin_socket), "audit", "tail", "-n", "3").stdout.splitlines()
    assert len(text) == 3 and all(re.search(r"  replica=node-[ab]$", x) for x in text), text

    # the incident report counts the uses on every replica: each member's write and read
    report = json.loads(cli("--socket", str(a.admin_socket), "--json", "incident",
                            "unauthorized-use", "--version", "1").stdout)
    counts = {u["actor"]: u["count"] for u in report["uses"]}
    assert all(counts.get(u) == 2 for u in users), counts
    assert counts.get(marked) == 1, counts

    # the export holds both chains; their records are the traffic each replica served
    out = cluster["tmp"] / "export.jsonl"
    summary = export(a, out)
    assert {c["replica"] for c in summary["chains"]} == {"", "node-a", "node-b"}
    recs = lines(out)
    by = {}
    for x in recs:
        by.setdefault(x["replica"], []).append(x)
    assert set(by) == {"node-a", "node-b"}
    for name, chain in by.items():
        assert [x["seq"] for x in chain] == list(range(1, len(chain) + 1))
        assert all(x["tenant"] == "default" for x in chain)
    creates = {name: {x["actor"] for x in chain if x["action"] == "create"} for name, chain in by.items()}
    assert creates["node-a"] == set(users[0::2])
    assert creates["node-b"] == set(users[1::2]) | {marked}

    # one public key for the tenant's chains (the tenant's audit key, in the shared key store)
    pem = cluster["tmp"] / "audit.pem"
    pem.write_text(cli("--socket", str(b.admin_socket), "audit", "public-key").stdout)
    # checkpoints are signed by both replicas: stop them to sign their heads
    a.stop()
    b.stop()
    a.start()
    b.start()
    summary = export(a, out)
    rc, v = verify(out, pem)
    assert rc == 0 and v["ok"], v
    assert {c["replica"]: c["ok"] for c in v["chains"]} == {"node-a": True, "node-b": True}
    assert all(c["checkpoints"] >= 1 for c in v["chains"]), v
    assert v["records"] == sum(c["records"] for c in v["chains"]) == len(lines(out))

    # tamper with node-b's stored record of the marked write (its actor), with PostgreSQL's
    # own client: verify names node-b's chain and that record's seq, node-a's stays intact
    seq = next(x["seq"] for x in lines(out)
               if x.get("replica") == "node-b" and x["action"] == "create" and x["actor"] == marked)
    forged = "f" + marked[1:] if marked[0] != "f" else "e" + marked[1:]
    n = pg.execute(db, "UPDATE audit_blocks SET data = overlay(data placing convert_to(%s, 'UTF8') "
                       "from position(convert_to(%s, 'UTF8') in data)) "
                       "WHERE chain = 'default@node-b' AND position(convert_to(%s, 'UTF8') in data) > 0 "
                       "RETURNING first_seq", (forged, marked, marked))
    assert len(n) == 1
    export(a, out)
    rc, v = verify(out, pem)
    assert rc == 1 and not v["ok"], v
    assert v["replica"] == "node-b" and v["first_bad_seq"] == seq, v
    assert v["reason"] == "hash mismatch"
    assert "node-b" in v["message"] and f"seq {seq}" in v["message"]
    chains = {c["replica"]: c for c in v["chains"]}
    assert chains["node-a"]["ok"] and not chains["node-b"]["ok"]
    assert chains["node-b"]["failure"]["first_bad_seq"] == seq


def test_same_replica_name_twice_refuses_to_start(cluster):
    a, tmp = cluster["a"], cluster["tmp"]
    twin = Replica(tmp / "twin", a.pki, cluster["tenants"], cluster["pg"], cluster["db"], "node-a")
    twin.share_store(a)
    twin.write_config()
    with pytest.raises(RuntimeError, match="exited"):
        twin.start()
    assert "[server] replica" in twin.log() and "another keyholdd" in twin.log(), twin.log()
    assert a.alive() and a.client.get("/alive").status == 200
    # a replica that stopped releases its name; one killed (-9) on this host is known gone
    a.stop()
    twin.start()
    twin.kill()
    a.start()
    assert a.client.get("/alive").status == 200


def test_claim_of_another_host_holds_while_its_heartbeat_is_fresh(cluster):
    """A claim written by a replica on another host (its row as that replica writes it) keeps
    the name while it is renewed, and is taken over once 15 s old."""
    a, pg, db, tmp = cluster["a"], cluster["pg"], cluster["db"], cluster["tmp"]
    now_ms = int(pg.execute(db, "SELECT (extract(epoch FROM now()) * 1000)::bigint")[0][0])

    def claim(beat_ms):
        pg.execute(db, "INSERT INTO meta (key, value) VALUES ('audit.replica.node-c', %s) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                   (f"elsewhere.example 4242 00000000deadbeef {beat_ms}".encode(),))

    c = Replica(tmp / "c", a.pki, cluster["tenants"], pg, db, "node-c")
    c.share_store(a)
    c.write_config()
    claim(now_ms)
    with pytest.raises(RuntimeError, match="exited"):
        c.start()
    assert "[server] replica" in c.log()
    claim(now_ms - 20000)
    c.start()
    try:
        assert c.client.get("/alive").status == 200
        row = pg.execute(db, "SELECT value FROM meta WHERE key = 'audit.replica.node-c'")
        assert not bytes(row[0][0]).startswith(b"elsewhere.example "), row
    finally:
        c.stop()


def test_unnamed_replica_keeps_a_single_servers_chain_ids(pki, issuers, pg, tmp_path):
    """Without [server] replica the chains are stored under the ids a single server always
    used, and the export has no "replica" member: older exports and verifiers still apply."""
    db = "kh_" + uuid.uuid4().hex[:16]
    pg.create_db(db)
    tenants = {"default": {"issuer": issuers["default"], "admins": ADMINS}}
    d = Replica(tmp_path / "one", pki, tenants, pg, db, None)
    d.start()
    try:
        u = str(uuid.uuid4())
        assert d.client.post("/user-keys", token=issuers["default"].token(u),
                             json_body={"key": new_key()}).status == 200
        chains = {row[0] for row in pg.execute(db, "SELECT DISTINCT chain FROM audit_blocks")}
        assert chains == {"", "default"}, chains
        page = d.operator.get("/admin/audit?since=1&limit=10000").json()
        assert page["replicas"] == []
        assert page["records"] and all("replica" not in x for x in page["records"])
        twin = Replica(tmp_path / "twin", pki, tenants, pg, db, None)
        twin.share_store(d)
        twin.write_config()
        with pytest.raises(RuntimeError, match="exited"):
            twin.start()
    finally:
        d.stop()
