"""A cluster as deploy/cluster/cluster starts it (real PostgreSQL 15, real keyholdd replicas,
real HAProxy with the configuration docs/cluster.md recommends), and its failures with a
bounded client load running: a replica killed with SIGKILL, PostgreSQL restarted,
PostgreSQL unreachable when a replica starts, a database that does not answer (a lock held
on the records table). Every write the load saw acknowledged must be readable afterwards;
the error rate is printed (pytest -s shows it), not bounded: it depends on the machine.

The second half runs the request-framing attacks of test_http_abuse.py through HAProxy's
front: each must be refused there, before a replica sees it, and store nothing."""
import http.client
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import tokens
from harness import REPO, client_tls_context, keyholdd_binary, new_key, poll_until
from rawhttp import exchange, request_bytes

SCRIPT = REPO / "deploy" / "cluster" / "cluster"
DEV_ISSUER = "https://keyhold.dev.invalid/dev-issuer"
DEV_KID = "keyhold-dev-1"
SCRIPT_TIMEOUT_S = 180          # bound on one script run (start waits for every part)
RECOVERY_S = 30                 # bound on a wait for the cluster to serve again (not a target)
LOAD_MAX_OPS = 3000             # the load stops after this many member writes at the latest
READ_PAUSE_S = 0.005            # between two reads of a read-only load

# The cluster brings its own PostgreSQL and file key store whatever the suite's backends are:
# the pkcs11 and postgresql passes would run the very same clusters again.
pytestmark = pytest.mark.default_backends

class Cluster:
    def __init__(self, d: pathlib.Path, replicas: int):
        self.dir = d
        self.replicas = replicas

    def run(self, *args, check=True) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, str(SCRIPT), *args, "--dir", str(self.dir)],
                           capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)
        if check and r.returncode != 0:
            pytest.fail(f"cluster {' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}"
                        f"\n{self.logs()}", pytrace=False)
        return r

    def start(self) -> "Cluster":
        r = self.run("start", "--replicas", str(self.replicas), "--keyholdd",
                     str(keyholdd_binary()), "--json")
        self.info = json.loads(r.stdout)
        self.port = self.info["haproxy"]["port"]
        self.ctx = client_tls_context(pathlib.Path(self.info["ca"]))
        self.issuer_key = (self.dir / "shared" / "dev-issuer.key").read_bytes()
        return self

    def status(self) -> dict:
        return json.loads(self.run("status", "--json").stdout)

    def stop(self) -> None:
        self.run("stop", check=False)

    def logs(self) -> str:
        out = []
        for p in sorted(self.dir.glob("replica-*/keyholdd.log")) + [self.dir / "supervisor.log",
                                                                   self.dir / "haproxy" / "haproxy.log"]:
            try:
                out.append(f"--- {p.relative_to(self.dir)}\n{p.read_text(errors='replace')[-2500:]}")
            except OSError:
                pass
        return "\n".join(out)

    def token(self, sub: str) -> str:
        return tokens.mint(tokens.claims(sub, DEV_ISSUER), self.issuer_key, DEV_KID, "ES256")

    def conn(self, port: int | None = None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", port or self.port, context=self.ctx,
                                           timeout=20)

    def request(self, method, path, token=None, body=None, port=None):
        c = self.conn(port)
        try:
            hdrs = {"Authorization": f"Bearer {token}"} if token else {}
            if body is not None:
                hdrs["Content-Type"] = "application/json"
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def replica_health(self, i: int) -> int | None:
        try:
            return self.request("GET", "/health", port=self.info["replicas"][str(i)]["port"])[0]
        except OSError:
            return None

    def wait_health(self, i: int, want: int | None) -> None:
        got = poll_until(lambda: self.replica_health(i) == want, timeout=RECOVERY_S, interval=0.2)
        assert got, f"replica {i} /health never became {want}\n{self.logs()}"


class Load:
    """One thread storing a key for a new member and reading it back, through HAProxy on one
    keep-alive connection (a new one after any error), until stopped or LOAD_MAX_OPS."""

    def __init__(self, cluster: Cluster, reads: dict | None = None):
        """reads: {member: (token, key)} stored before: the thread only reads those, in
        turn, instead of writing new members."""
        self.c = cluster
        self.acked: dict[str, tuple[str, str]] = {}   # member -> (token, key) once POST said 200
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.stop_flag = threading.Event()
        self.reads = list((reads or {}).values())
        self.thread = threading.Thread(target=self._read if reads else self._run, daemon=True)

    def _error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def _run(self) -> None:
        conn = None
        for _ in range(LOAD_MAX_OPS):
            if self.stop_flag.is_set():
                break
            member, key = tokens.new_guid(), new_key()
            tok = self.c.token(member)
            hdrs = {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}
            try:
                conn = conn or self.c.conn()
                conn.request("POST", "/user-keys", body=json.dumps({"key": key}), headers=hdrs)
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    self._error(f"POST {r.status} {_code(body)}")
                    if r.will_close:
                        conn.close()
                        conn = None
                    time.sleep(0.05)
                    continue
                self.acked[member] = (tok, key)
                conn = self._get(conn, tok, key)
            except (OSError, http.client.HTTPException) as e:
                conn = self._dropped(conn, e)
        if conn is not None:
            conn.close()

    def _dropped(self, conn, e: Exception) -> None:
        """A round trip that raised: counted by the exception's name, the connection closed
        (None: the next one opens another)."""
        self._error(type(e).__name__)
        if conn is not None:
            conn.close()
        time.sleep(0.05)
        return None

    def _get(self, conn, tok: str, key: str):
        """One GET /user-keys on conn, counted; returns conn, or None once it closed."""
        conn.request("GET", "/user-keys", headers={"Authorization": f"Bearer {tok}"})
        r = conn.getresponse()
        body = r.read()
        if r.status == 200:
            assert json.loads(body) == {"key": key}
            self.ok += 1
        else:
            self._error(f"GET {r.status} {_code(body)}")
            time.sleep(0.05)
        if r.will_close:
            conn.close()
            return None
        return conn

    def _read(self) -> None:
        conn = None
        for n in range(LOAD_MAX_OPS * 4):
            if self.stop_flag.is_set():
                break
            tok, key = self.reads[n % len(self.reads)]
            try:
                conn = conn or self.c.conn()
                conn = self._get(conn, tok, key)
                # at most ~200 reads/s: LOAD_MAX_OPS then outlasts the test's waits
                time.sleep(READ_PAUSE_S)
            except (OSError, http.client.HTTPException) as e:
                conn = self._dropped(conn, e)
        if conn is not None:
            conn.close()

    def __enter__(self) -> "Load":
        self.thread.start()
        return self

    def wait_ok(self, more: int) -> None:
        """Until `more` further round trips succeed (bounded)."""
        want = self.ok + more
        assert poll_until(lambda: self.ok >= want or not self.thread.is_alive(),
                          timeout=RECOVERY_S, interval=0.05), \
            f"the load made no progress: {self.report()}\n{self.c.logs()}"
        assert self.ok >= want, f"the load ended early: {self.report()}"

    def __exit__(self, *exc) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=60)

    def report(self) -> str:
        total = self.ok + sum(self.errors.values())
        rate = sum(self.errors.values()) / total if total else 0.0
        return (f"{total} round trips, {self.ok} ok, {len(self.acked)} writes acknowledged, "
                f"errors {rate:.1%}: {self.errors}")

    def verify(self) -> None:
        """Every acknowledged write is readable through HAProxy now."""
        lost = []
        conn = self.c.conn()
        try:
            for member, (tok, key) in self.acked.items():
                conn.request("GET", "/user-keys", headers={"Authorization": f"Bearer {tok}"})
                r = conn.getresponse()
                body = r.read()
                if r.status != 200 or json.loads(body) != {"key": key}:
                    lost.append((member, r.status, body[:200]))
        finally:
            conn.close()
        assert not lost, f"{len(lost)} acknowledged writes not readable: {lost[:5]}"


def _code(body: bytes) -> str:
    try:
        return json.loads(body).get("code", "?")
    except (ValueError, AttributeError):
        return "non-json"


def cluster_dir() -> pathlib.Path:
    """A fresh folder for a cluster, outside pytest's temporary tree: a later pytest session
    (any user's run on this machine) makes /tmp/pytest-of-USER 0700 again, and the cluster's
    PostgreSQL runs as the `postgres` user when we are root, so it must stay reachable."""
    return pathlib.Path(tempfile.mkdtemp(prefix="khcl-")) / "c"


def running(replicas: int):
    """Body of a fixture: a cluster of `replicas` started, yielded, stopped and removed."""
    c = Cluster(cluster_dir(), replicas)
    try:
        yield c.start()
    finally:
        c.stop()
        shutil.rmtree(c.dir.parent, ignore_errors=True)


@pytest.fixture
def cluster():
    yield from running(2)


# ------------------------------------------------------------------------------- script


def test_start_status_stop():
    """start prints the URL, PIDs and paths; every part serves; stop ends every process it
    started and keeps the data, and a second start serves the keys stored before."""
    c = Cluster(cluster_dir(), 2)
    try:
        c.start()
        s = c.status()
        assert s["url"] == f"https://127.0.0.1:{c.port}"
        assert s["haproxy"]["health"] == 200 and s["haproxy"]["pid"]
        assert s["postgresql"]["pid"]
        assert [r["health"] for r in s["replicas"].values()] == [200, 200]
        text = c.run("status").stdout
        assert s["url"] in text and str(s["replicas"]["1"]["pid"]) in text
        member = tokens.new_guid()
        key = new_key()
        st, _ = c.request("POST", "/user-keys", c.token(member), json.dumps({"key": key}))
        assert st == 200
        # the same key through each replica's own port: they share one database
        for i in ("1", "2"):
            st, body = c.request("GET", "/user-keys", c.token(member),
                                 port=s["replicas"][i]["port"])
            assert (st, json.loads(body)) == (200, {"key": key})
        pids = [s["haproxy"]["pid"], s["postgresql"]["pid"], s["supervisor"]["pid"]] + \
            [r["pid"] for r in s["replicas"].values()]
    finally:
        c.stop()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z", pid
    try:
        c.start()
        st, body = c.request("GET", "/user-keys", c.token(member))
        assert (st, json.loads(body)) == (200, {"key": key})
    finally:
        c.stop()
        shutil.rmtree(c.dir.parent, ignore_errors=True)


def test_help_names_every_command():
    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0
    for word in ("start", "status", "stop", "db", "replica"):
        assert word in r.stdout
    r = subprocess.run([sys.executable, str(SCRIPT), "start", "--help"], capture_output=True,
                       text=True, timeout=30)
    assert "--replicas" in r.stdout and "--dir" in r.stdout


# ------------------------------------------------------------------------------ failures


def test_replica_killed_reads_go_on(cluster):
    """kill -9 of the replica that serves the load (HAProxy's leastconn sends one client's
    requests to the first replica): reads go on through the other one; the error rate is
    printed. Reads only: see the next test for writes."""
    stored = {}
    port1 = cluster.info["replicas"]["1"]["port"]
    for _ in range(20):
        member, key = tokens.new_guid(), new_key()
        tok = cluster.token(member)
        st, _ = cluster.request("POST", "/user-keys", tok, json.dumps({"key": key}), port=port1)
        assert st == 200
        stored[member] = (tok, key)
    with Load(cluster, reads=stored) as load:
        load.wait_ok(50)
        cluster.run("replica", "kill", "1", "--hold")   # SIGKILL, left down until `start`
        cluster.wait_health(1, None)
        load.wait_ok(200)                                # served by replica 2 alone
        cluster.run("replica", "start", "1")
        cluster.wait_health(1, 200)
        load.wait_ok(50)
    print(f"\nkill -9 of one replica of 2, reads: {load.report()}")
    assert load.ok >= 300


def test_replica_killed_haproxy_routes_around_it(cluster):
    with Load(cluster) as load:
        load.wait_ok(20)
        cluster.run("replica", "kill", "1", "--hold")   # SIGKILL, left down until `start`
        cluster.wait_health(1, None)
        load.wait_ok(100)                                # served by replica 2 alone
        cluster.run("replica", "start", "1")
        cluster.wait_health(1, 200)
        load.wait_ok(50)
    print(f"\nkill -9 of one replica of 2: {load.report()}")
    load.verify()


def test_replica_killed_is_restarted_by_the_supervisor(cluster):
    old = cluster.status()["replicas"]["2"]["pid"]
    cluster.run("replica", "kill", "2")
    assert poll_until(lambda: cluster.status()["replicas"]["2"]["pid"] not in (None, old),
                      timeout=RECOVERY_S, interval=0.2), cluster.logs()
    cluster.wait_health(2, 200)
    assert "exited with status -9" in (cluster.dir / "supervisor.log").read_text()


def _postgresql_restart(cluster: Cluster) -> Load:
    replicas = range(1, cluster.replicas + 1)
    with Load(cluster) as load:
        load.wait_ok(20)
        t0 = time.monotonic()
        cluster.run("db", "stop")
        for i in replicas:
            cluster.wait_health(i, 503)                  # not ready while the database is away
        down = time.monotonic() - t0
        t0 = time.monotonic()
        cluster.run("db", "start")
        for i in replicas:
            cluster.wait_health(i, 200)
        back = time.monotonic() - t0
        load.wait_ok(100)
    print(f"\nPostgreSQL restart under load, {cluster.replicas} replica(s): not ready "
          f"{down:.1f} s after the stop began, ready {back:.1f} s after the start began; "
          f"{load.report()}")
    load.verify()
    return load


def test_postgresql_restart(cluster):
    """Two replicas: no acknowledged write lost. The errors are printed, not checked: while
    the replicas share one audit chain (issue 16) a write moved to the other replica by a
    health check can fail with 500 (see the one-replica test for the error codes)."""
    _postgresql_restart(cluster)


def test_postgresql_restart_one_replica_errors_are_503():
    """One replica: every failed request during the outage is a 503 with a clear code, from
    the replica (storage_unavailable) or from HAProxy (replica_unavailable), never a 500."""
    for c in running(1):
        load = _postgresql_restart(c)
    # an exception's name (a connection reset, a timeout) has no status: it fails this too
    assert set(k.partition(" ")[2] for k in load.errors) <= \
        {"503 storage_unavailable", "503 replica_unavailable"}, load.report()


def test_postgresql_unreachable_at_start(cluster):
    """keyholdd exits 1 with an error naming [storage] url (no crash, no password); the
    supervisor (systemd's Restart=on-failure in production) starts it again every 2 s until
    the database is back, then it serves."""
    cluster.run("db", "stop")
    log = cluster.dir / "replica-2" / "keyholdd.log"
    before = log.read_text(errors="replace")
    cluster.run("replica", "kill", "2")
    sup = cluster.dir / "supervisor.log"
    assert poll_until(lambda: sup.read_text().count("replica-2 (pid") >= 3
                      and sup.read_text().count("exited with status 1;") >= 2,
                      timeout=RECOVERY_S, interval=0.2), sup.read_text()
    new = log.read_text(errors="replace")[len(before):]
    assert "[storage] url: cannot reach the PostgreSQL server" in new, new
    password = (cluster.dir / "shared" / "db.password").read_text().strip()
    assert password not in new
    for bad in ("status -6", "status -11", "status 134", "status 139", "AddressSanitizer"):
        assert bad not in sup.read_text() + new
    cluster.run("db", "start")
    cluster.wait_health(2, 200)
    member, key = tokens.new_guid(), new_key()
    st, _ = cluster.request("POST", "/user-keys", cluster.token(member), json.dumps({"key": key}),
                            port=cluster.info["replicas"]["2"]["port"])
    assert st == 200, cluster.logs()


def test_slow_database_gets_503_not_a_hung_connection(cluster):
    """A session holds an exclusive lock on the records table: requests through HAProxy wait
    for keyholdd's 5 s bound and get 503 storage_unavailable (HAProxy's server timeout is
    longer, so the replica's answer arrives); once the lock goes, they are served again."""
    import psycopg2
    member, key = tokens.new_guid(), new_key()
    tok = cluster.token(member)
    assert cluster.request("POST", "/user-keys", tok, json.dumps({"key": key}))[0] == 200
    pg = psycopg2.connect(host=str(cluster.dir / "pg"), port=cluster.info["postgresql"]["port"],
                          user="postgres", dbname="keyhold", connect_timeout=10)
    try:
        cur = pg.cursor()
        cur.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
        t0 = time.monotonic()
        st, body = cluster.request("GET", "/user-keys", tok)
        took = time.monotonic() - t0
        assert st == 503, body
        assert json.loads(body)["code"] == "storage_unavailable", body
        st, body = cluster.request("POST", "/user-keys", cluster.token(tokens.new_guid()),
                                   json.dumps({"key": new_key()}))
        assert st == 503 and json.loads(body)["code"] == "storage_unavailable", body
        print(f"\nslow database: 503 storage_unavailable after {took:.2f} s")
        assert took >= 3.5, took           # the replica waited for its bound (reads: 4 s), not HAProxy
    finally:
        pg.rollback()
        pg.close()
    st, body = cluster.request("GET", "/user-keys", tok)
    assert (st, json.loads(body)) == (200, {"key": key})


# ------------------------------------------------------------------ framing through HAProxy


@pytest.fixture(scope="module")
def front():
    yield from running(1)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _attacks(authz):
    body = json.dumps({"key": new_key()}).encode()
    ct = ("Content-Type", "application/json")
    chunked = _chunk(body) + b"0\r\n\r\n"
    smuggled = request_bytes("GET", "/alive")
    return {
        "cl_and_te": request_bytes("POST", "/user-keys", [authz, ct, ("Content-Length", "5"),
                                                          ("Transfer-Encoding", "chunked")], chunked),
        "te_and_cl": request_bytes("POST", "/user-keys", [authz, ct, ("Transfer-Encoding", "chunked"),
                                                          ("Content-Length", "5")], chunked),
        "cl_and_te_smuggle": request_bytes("POST", "/user-keys", [
            authz, ct, ("Content-Length", str(len(chunked))), ("Transfer-Encoding", "chunked")],
            chunked + smuggled),
        "two_cl_full_first": request_bytes("POST", "/user-keys", [
            authz, ct, ("Content-Length", str(len(body))), ("Content-Length", "5")], body),
        "two_cl_short_first": request_bytes("POST", "/user-keys", [
            authz, ct, ("Content-Length", "5"), ("Content-Length", str(len(body)))], body),
        "cl_list": request_bytes("POST", "/user-keys", [
            authz, ct, ("Content-Length", f"{len(body)}, 5")], body),
        "chunked_only": request_bytes("POST", "/user-keys", [authz, ct, ("Transfer-Encoding", "chunked")],
                                      chunked),
        "te_obfuscated": request_bytes("POST", "/user-keys", [authz, ct, ("Content-Length", "5"),
                                                              ("Transfer-Encoding", " chunked")],
                                       chunked),
        "te_identity": request_bytes("POST", "/user-keys", [authz, ct, ("Content-Length", str(len(body))),
                                                            ("Transfer-Encoding", "identity")], body),
    }


# refused by HAProxy's parser itself; the others by the frontend's Transfer-Encoding rule
PARSER_REFUSES = {"two_cl_full_first": 400, "two_cl_short_first": 400, "cl_list": 400,
                  "te_identity": 400}
ATTACKS = ["cl_and_te", "te_and_cl", "cl_and_te_smuggle", "two_cl_full_first", "two_cl_short_first",
           "cl_list", "chunked_only", "te_obfuscated", "te_identity"]


IGNORED = ("health", "/health", "metrics", "/metrics")


def _replica_requests(c: Cluster) -> float:
    """Requests the replicas have answered, /health aside (their /metrics on the admin
    sockets)."""
    from harness import Client, Metrics
    total = 0.0
    for r in c.status()["replicas"].values():
        m = Metrics(Client(0, None, unix_path=r["admin_socket"]).get("/metrics").body.decode())
        # HAProxy's health checks and these /metrics reads count too: every other route
        total += m.sum("keyhold_requests_total", lambda lb: lb.get("route") not in IGNORED)
    return total


@pytest.mark.parametrize("name", ATTACKS)
def test_ambiguous_framing_is_refused_by_haproxy(front, name):
    """Refused by HAProxy with a 4xx, the connection closed so that nothing after the head
    is read as a second request, no replica answered anything, nothing stored."""
    member = tokens.new_guid()
    authz = ("Authorization", "Bearer " + front.token(member))
    before = _replica_requests(front)
    ex = exchange(front.port, _attacks(authz)[name], tls=front.ctx, expect=2, timeout=3)
    assert len(ex.responses) == 1, ex
    r = ex.responses[0]
    assert r.status == PARSER_REFUSES.get(name, 411), ex
    if name in PARSER_REFUSES:
        # HAProxy's HTTP parser: its built-in text/html 400, which no errorfile or http-error
        # replaces in HAProxy 2.6 (docs/cluster.md)
        assert r.content_type() == "text/html", ex
    else:
        # the configuration's Transfer-Encoding rule: keyhold's JSON error format
        assert r.content_type() == "application/json", ex
        assert r.json()["code"] == "length_required", ex
        assert set(r.json()) == {"message", "code"}, ex
    assert (r.header("connection") or "").lower() == "close", ex
    assert ex.closed, ex
    assert _replica_requests(front) == before, "a replica saw the request"
    st, body = front.request("GET", "/user-keys", front.token(member))
    assert st == 404 and json.loads(body)["code"] == "key_not_found", body


def test_well_framed_request_passes_haproxy(front):
    """The control: the same request with one Content-Length is served."""
    member, key = tokens.new_guid(), new_key()
    body = json.dumps({"key": key}).encode()
    authz = ("Authorization", "Bearer " + front.token(member))
    ex = exchange(front.port, request_bytes("POST", "/user-keys", [
        authz, ("Content-Type", "application/json")], body), tls=front.ctx)
    assert ex.statuses == [200], ex
    st, got = front.request("GET", "/user-keys", front.token(member))
    assert (st, json.loads(got)) == (200, {"key": key})
