#!/usr/bin/python3
"""keyholdd against nginx, in one run, on this machine. bench/run installs what is missing,
builds keyholdd (release) and runs this; docs/benchmarks.md describes the method.

Every process this starts gets its own session (process group); all of them are stopped on
exit, on error and on SIGINT/SIGTERM/SIGHUP. Every wrk run is bounded by -d and a timeout.

Settings (environment):
  BENCH_DURATION     seconds per measured wrk run (10)
  BENCH_WARMUP       seconds of warm-up before each measured run (2)
  BENCH_CONNECTIONS  wrk connections (64)
  BENCH_THREADS      keyholdd threads = nginx worker_processes = wrk threads (1)
  BENCH_USERS        users and distinct tokens (10000)
  BENCH_STARTS       start-up time samples (5)
  BENCH_REFERENCE    1: also a 2-thread, unpinned GET run (1)
  BENCH_PROFILE      1: profile keyholdd under the GET workload (1)
  BENCH_PROFILER     auto (perf if it works, else callgrind) | perf | callgrind
  BENCH_WAIT_QUIET   wait up to this many seconds for other processes to go quiet (0)
  BENCH_AUDIT        1: the audit log's workloads (GET with every read audited against
                     [audit] log_reads = false and against the baseline, PUT against the
                     baseline, bytes of audit log per request) (1)
  BENCH_AUDIT_ROUNDS rounds of the audit workloads: each round measures every server twice,
                     A B ... B A (3)
  BENCH_BASELINE_KEYHOLDD  an older keyholdd to compare with (bench/run builds 2b11f4e,
                     the last commit before the audit log); unset: no baseline runs
  BENCH_BASELINE_REV its commit, for the table
  BENCH_REV          the commit keyholdd was built from, if not the work tree (bench/run)
  BENCH_BUILD        meson build directory holding keyholdd (build-bench)
  BENCH_WORKDIR      scratch directory, emptied first (bench/.work)
  BENCH_RESULTS      where the table goes (bench/results/latest.md)
"""
import base64
import datetime
import http.client
import json
import multiprocessing
import os
import pathlib
import platform
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

import tokens as kh_tokens  # noqa: E402  (tests/integration/tokens.py)
from pki import TestPKI  # noqa: E402  (tests/integration/pki.py)


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


DURATION = env_int("BENCH_DURATION", 10)
WARMUP = env_int("BENCH_WARMUP", 2)
CONNS = env_int("BENCH_CONNECTIONS", 64)
THREADS = env_int("BENCH_THREADS", 1)
USERS = env_int("BENCH_USERS", 10000)
STARTS = env_int("BENCH_STARTS", 5)
REFERENCE = env_int("BENCH_REFERENCE", 1) != 0
PROFILE = env_int("BENCH_PROFILE", 1) != 0
PROFILER = os.environ.get("BENCH_PROFILER", "auto")  # auto | perf | callgrind
WAIT_QUIET = env_int("BENCH_WAIT_QUIET", 0)
AUDIT = env_int("BENCH_AUDIT", 1) != 0
AUDIT_ROUNDS = max(1, env_int("BENCH_AUDIT_ROUNDS", 3))
BASELINE = pathlib.Path(os.environ["BENCH_BASELINE_KEYHOLDD"]) \
    if os.environ.get("BENCH_BASELINE_KEYHOLDD") else None
BASELINE_REV = os.environ.get("BENCH_BASELINE_REV") or "baseline"
BUILD = pathlib.Path(os.environ.get("BENCH_BUILD") or REPO / "build-bench")
WORK = pathlib.Path(os.environ.get("BENCH_WORKDIR") or HERE / ".work")
RESULTS = pathlib.Path(os.environ.get("BENCH_RESULTS") or HERE / "results" / "latest.md")
KEYHOLDD = BUILD / "src" / "daemon" / "keyholdd"
LUA = HERE / "keyhold.lua"
ISS = "https://identity.bench.invalid/identity"
KID = "bench-1"
WRK_SLACK_S = 30          # a wrk run that overruns -d by this much is killed
START_BOUND_S = 30        # bound on waiting for a server to come up (not a measurement)

NCPU = len(os.sched_getaffinity(0))
PINNED = NCPU >= 2
SERVER_CPUS = {1} if PINNED else None
CLIENT_CPUS = {0} if PINNED else None


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ processes


def root_args(binary) -> list[str]:
    """--allow-root when running as root and binary knows it (a baseline built before the
    option would refuse it): keyholdd started as root without [server] user refuses to run."""
    if os.geteuid() != 0:
        return []
    text = subprocess.run([str(binary), "--help"], capture_output=True, text=True).stdout
    return ["--allow-root"] if "--allow-root" in text else []


class Procs:
    """Children, each in its own session so that stopping one stops all it forked."""

    def __init__(self):
        self.live: list[subprocess.Popen] = []

    def start(self, argv, cpus=None, **kw) -> subprocess.Popen:
        def pre():
            if cpus is not None:
                os.sched_setaffinity(0, cpus)
        p = subprocess.Popen(argv, start_new_session=True, preexec_fn=pre, **kw)
        self.live.append(p)
        return p

    def stop(self, p: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 10) -> int | None:
        if p is None:
            return None
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        else:
            # the leader is gone; make sure nothing it forked is left behind
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.live:
            self.live.remove(p)
        return p.returncode

    def stop_all(self) -> None:
        for p in list(reversed(self.live)):
            self.stop(p, timeout=5)


PROCS = Procs()
STOP_FAILURES: list[int] = []


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


def prepare() -> None:
    """A benchmark's first step: a signal stops it through run_main's clean-up, and WORK
    starts empty."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pids) -> int:
    """utime + stime of the given processes (all their threads), in clock ticks."""
    total = 0
    for pid in pids:
        try:
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total


def children(pid: int) -> list[int]:
    out = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except (FileNotFoundError, ValueError):
            pass
    return out


def proc_status(pid: int) -> dict:
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def kib(v: str) -> int:
    return int(v.split()[0])


# -------------------------------------------------------------------------------- tokens


def _mint_chunk(args):
    pem, subs, now = args
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(pem, password=None)
    out = []
    for sub in subs:
        c = kh_tokens.claims(sub, ISS, nbf=now - 60, iat=now - 60, auth_time=now - 60,
                             exp=now + 7200, scope=["api"], amr=["external"])
        out.append(kh_tokens.mint(c, key, KID, "RS256"))
    return out


def make_tokens(d: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """An RS256 issuer key (as a local JWKS for keyholdd) and USERS tokens, one per user,
    as Bitwarden's identity server would issue them. Returns (jwks file, tokens file)."""
    import uuid
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": KID, "use": "sig", "alg": "RS256"})
    jwks = d / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    subs = [str(uuid.uuid4()) for _ in range(USERS)]
    now = int(time.time())
    workers = max(1, NCPU)
    step = (len(subs) + workers - 1) // workers
    chunks = [(pem, subs[i:i + step], now) for i in range(0, len(subs), step)]
    # spawn, not fork: a forked child can inherit a lock some thread of this process held
    # (one run hung here for minutes with both processes idle)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        toks = [t for part in pool.map(_mint_chunk, chunks) for t in part]
    path = d / "tokens.tsv"
    with open(path, "w") as f:
        for sub, tok in zip(subs, toks):
            f.write(f"{sub}\t{tok}\t{base64.b64encode(os.urandom(32)).decode()}\n")
    return jwks, path


# ------------------------------------------------------------------------------- servers


class Keyholdd:
    def __init__(self, d: pathlib.Path, jwks: pathlib.Path, threads: int, tls=None,
                 binary: pathlib.Path | None = None, extra: list[str] | None = None):
        """binary: another keyholdd (the baseline); extra: more config lines, at the end."""
        self.d, self.jwks, self.threads, self.tls = d, jwks, threads, tls
        self.binary = binary or KEYHOLDD
        self.extra = extra or []
        self.proc = None
        self.port = self.metrics_port = 0
        self.data = d / "data"
        (self.data / "keystore").mkdir(parents=True, exist_ok=True)
        self.master = d / "master.key"
        if not self.master.exists():
            fd = os.open(self.master, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
        self.db = self.data / "keyhold.db"

    def write_config(self) -> pathlib.Path:
        # /metrics is operator data, not on the public listener: a plain metrics listener
        lines = ["[server]", f"listen = 127.0.0.1:{self.port}", f"threads = {self.threads}",
                 f"metrics_listen = 127.0.0.1:{self.metrics_port}",
                 f"admin_socket = {self.d / 'admin.sock'}"]
        if self.tls:
            lines += [f"tls_cert = {self.tls[0]}", f"tls_key = {self.tls[1]}"]
        lines += ["", "[storage]", "driver = sqlite", f"path = {self.db}",
                  "", "[keystore]", "driver = file", f"path = {self.data / 'keystore'}",
                  f"master_key_file = {self.master}",
                  "", "[tenant.default]", f"issuer = {ISS}", f"jwks_file = {self.jwks}", ""]
        if self.extra:
            lines += self.extra + [""]
        conf = self.d / "keyhold.conf"
        conf.write_text("\n".join(lines))
        return conf

    def start(self, cpus=SERVER_CPUS) -> float:
        """Starts keyholdd and returns the seconds from exec to the first /health 200."""
        assert self.proc is None
        self.port, self.metrics_port = free_port(), free_port()
        conf = self.write_config()
        logf = open(self.d / "keyholdd.log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHOLD_")}
        t0 = time.monotonic()
        self.proc = PROCS.start([str(self.binary), "--config", str(conf), *root_args(self.binary)],
                                cpus=cpus,
                                stdout=logf, stderr=subprocess.STDOUT, env=env)
        logf.close()
        ctx = None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cafile=str(self.tls[2]))
        deadline = t0 + START_BOUND_S
        while True:
            try:
                if status_of(self.port, "/health", ctx) == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"keyholdd exited with {self.proc.returncode}:\n"
                                   + (self.d / "keyholdd.log").read_text(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError("keyholdd did not become healthy")
            time.sleep(0.0005)

    def stop(self) -> None:
        rc = PROCS.stop(self.proc)
        self.proc = None
        if rc not in (0, None):
            log(f"keyholdd exited with {rc} on SIGTERM")
            STOP_FAILURES.append(rc)

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def metrics(self) -> dict:
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
        c.close()
        out = {}
        for line in body.splitlines():
            m = re.match(r"^(keyhold_token_cache_\w+|keyhold_token_rejections_total)\s+(\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out


def status_of(port: int, path: str, ctx=None, headers=None) -> int:
    if ctx is None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    else:
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


NGINX_BODY = '{"key":"H09o4pZHsVrCUKzREYGEUYqnRaf+lQIbJ8VAKhbDVks="}'


class Nginx:
    def __init__(self, d: pathlib.Path, workers: int, cert, key):
        self.d, self.workers, self.cert, self.key = d, workers, cert, key
        self.proc = None
        self.port = self.tls_port = 0

    def start(self, cpus=SERVER_CPUS) -> None:
        self.port, self.tls_port = free_port(), free_port()
        tmp = self.d / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o777)
        temps = "\n".join(f"    {k}_temp_path {tmp / k};" for k in
                          ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = self.d / "nginx.conf"
        conf.write_text(f"""\
worker_processes {self.workers};
daemon off;
master_process on;
pid {self.d / 'nginx.pid'};
error_log {self.d / 'error.log'} warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
{temps}
    server {{
        listen 127.0.0.1:{self.port} reuseport;
        listen 127.0.0.1:{self.tls_port} ssl reuseport;
        ssl_certificate {self.cert};
        ssl_certificate_key {self.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            default_type application/json;
            return 200 '{NGINX_BODY}';
        }}
    }}
}}
""")
        logf = open(self.d / "nginx.out", "ab")
        self.proc = PROCS.start(["nginx", "-p", str(self.d), "-e", str(self.d / "error.log"),
                                 "-c", str(conf)], cpus=cpus, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.monotonic() + START_BOUND_S
        while True:
            try:
                if status_of(self.port, "/") == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited:\n" + (self.d / "error.log").read_text()[-2000:])
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start")
            time.sleep(0.01)
        # all workers up before anyone measures
        while len(children(self.proc.pid)) < self.workers and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        PROCS.stop(self.proc, signal.SIGQUIT if self.proc and self.proc.poll() is None else signal.SIGTERM)
        self.proc = None

    def pids(self) -> list[int]:
        return [self.proc.pid] + children(self.proc.pid)

    def url(self, tls=False) -> str:
        return f"https://127.0.0.1:{self.tls_port}" if tls else f"http://127.0.0.1:{self.port}"


# ----------------------------------------------------------------------------------- wrk


def busy_ticks() -> int:
    """Non-idle CPU time of the whole machine, in clock ticks (all CPUs)."""
    f = [int(x) for x in pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    return sum(f[:8]) - idle


class WrkRun:
    def __init__(self, stats: dict, client_cpu: float, server_cpu: float, other_cpu: float,
                 wall: float):
        self.stats, self.client_cpu, self.server_cpu = stats, client_cpu, server_cpu
        self.other_cpu, self.wall = other_cpu, wall

    @property
    def rps(self) -> float:
        return self.stats["requests"] / (self.stats["duration_us"] / 1e6)

    @property
    def us_per_req(self) -> float:
        """Server CPU time per answered request, in microseconds."""
        return self.server_cpu * self.wall / self.stats["requests"] * 1e6

    @property
    def errors(self) -> int:
        return sum(self.stats["errors"].values())

    def lat_ms(self, key: str) -> float:
        return self.stats["latency_us"][key] / 1000.0


def wrk(url: str, mode: str, tokens: pathlib.Path, server_pids, *, threads: int = THREADS,
        conns: int = CONNS, duration: int = DURATION, rate: float | None = None,
        cpus=CLIENT_CPUS, name: str = "run", script: pathlib.Path | None = None) -> WrkRun:
    """script: another wrk Lua script than bench/keyhold.lua (bench/devices.lua), given
    the same environment (BENCH_TOKENS, BENCH_MODE, BENCH_STATS, BENCH_RATE)."""
    stats_path = WORK / f"wrk-{name}.json"
    stats_path.unlink(missing_ok=True)
    env = dict(os.environ, BENCH_TOKENS=str(tokens), BENCH_MODE=mode, BENCH_STATS=str(stats_path))
    env.pop("BENCH_RATE", None)
    if rate:
        env["BENCH_RATE"] = f"{rate / threads:.3f}"
    argv = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", "--timeout", "5s",
            "-s", str(script or LUA), url + "/user-keys"]
    out = open(WORK / f"wrk-{name}.out", "wb")
    srv0 = cpu_ticks(server_pids)
    busy0 = busy_ticks()
    t0 = time.monotonic()
    p = PROCS.start(argv, cpus=cpus, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = t0 + duration + WRK_SLACK_S
    ru = None
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            PROCS.stop(p, signal.SIGKILL)
            raise RuntimeError(f"wrk {name} overran its bound")
        time.sleep(0.05)
    wall = time.monotonic() - t0
    PROCS.live.remove(p)
    out.close()
    hz = os.sysconf("SC_CLK_TCK")
    srv = (cpu_ticks(server_pids) - srv0) / hz
    busy = (busy_ticks() - busy0) / hz
    if p.returncode != 0 or not stats_path.exists():
        raise RuntimeError(f"wrk {name} failed ({p.returncode}):\n"
                           + (WORK / f"wrk-{name}.out").read_text(errors="replace")[-2000:])
    stats = json.loads(stats_path.read_text())
    client = ru.ru_utime + ru.ru_stime
    other = max(0.0, busy - srv - client)
    return WrkRun(stats, client / wall, srv / wall, other / wall, wall)


def exec_baseline() -> dict:
    """What fork + exec + dynamic linking alone cost here: `keyholdd --version` (which
    returns before reading any configuration) and /bin/true, median of 5, same CPU."""
    out = {}
    for name, argv in (("keyholdd --version", [str(KEYHOLDD), "--version"]), ("/bin/true", ["true"])):
        samples = []
        for _ in range(5):
            t0 = time.monotonic()
            subprocess.run(argv, stdout=subprocess.DEVNULL, preexec_fn=(
                (lambda: os.sched_setaffinity(0, SERVER_CPUS)) if SERVER_CPUS else None), check=True)
            samples.append((time.monotonic() - t0) * 1000)
        out[name] = statistics.median(samples)
    return out


def fsync_latency_ms(n: int = 200) -> float:
    """Median time of a 4 KiB append + fdatasync in WORK: what one durable commit costs on
    this disk, so the ceiling of a writer that syncs once per request is 1000 / this."""
    path = WORK / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    samples = []
    try:
        block = os.urandom(4096)
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(samples)


def background_load(seconds: float = 1.0) -> float:
    """CPUs' worth of work other processes do while nothing of ours runs."""
    hz = os.sysconf("SC_CLK_TCK")
    b0 = busy_ticks()
    time.sleep(seconds)
    return (busy_ticks() - b0) / hz / seconds


def seed_users(k: "Keyholdd", tokens: pathlib.Path, mode: str = "seed") -> int:
    """seed: PUTs every user once; prime: GETs every user once, so that every token is
    verified and cached. The Lua script exits wrk once all are answered 200."""
    bound = 600
    env = dict(os.environ, BENCH_TOKENS=str(tokens), BENCH_MODE=mode)
    with open(WORK / f"wrk-{mode}.out", "wb") as out:
        p = PROCS.start(["wrk", "-t", "1", "-c", "16", "-d", f"{bound}s", "-s", str(LUA),
                         k.url() + "/user-keys"], cpus=CLIENT_CPUS, stdout=out,
                        stderr=subprocess.STDOUT, env=env)
        try:
            p.wait(timeout=bound + WRK_SLACK_S)
        finally:
            PROCS.stop(p, signal.SIGKILL)
    return p.returncode


# ----------------------------------------------------------------------------- audit log


def audit_stats(k: "Keyholdd") -> dict:
    """What k's audit log holds: the bytes of the stored records in audit_blocks, the
    records, the rows, and the size of the database files. Only while k is stopped (it owns the file)."""
    assert k.proc is None
    files = sum(f.stat().st_size for f in k.data.glob("keyhold.db*"))
    db = sqlite3.connect(k.db)
    try:
        b, r, n = db.execute("SELECT COALESCE(SUM(length(CAST(data AS BLOB))), 0), "
                             "COALESCE(SUM(last_seq - first_seq + 1), 0), COUNT(*) "
                             "FROM audit_blocks").fetchone()
    except sqlite3.OperationalError:
        b = r = n = 0  # no audit log (a keyholdd from before it)
    finally:
        db.close()
    return {"bytes": b, "records": r, "rows": n, "file_bytes": files}


def growth(before: dict, after: dict, requests: int) -> dict:
    """The audit log's growth per request served between two audit_stats()."""
    return {"requests": requests,
            "bytes": (after["bytes"] - before["bytes"]) / requests,
            "records": (after["records"] - before["records"]) / requests,
            "file_bytes": (after["file_bytes"] - before["file_bytes"]) / requests}


def ab_runs(label: str, mode: str, servers: list, tokens: pathlib.Path, served: dict) -> dict:
    """Each of servers [(name, Keyholdd)] measured twice per round, in the order A B ... B A,
    so that a machine whose speed drifts during the run hurts none of them more than another;
    AUDIT_ROUNDS rounds, since these machines' speed moves by 10-20% within a minute. Every
    request each server answered (warm-ups included) is added to served[name]."""
    order = (servers + list(reversed(servers))) * AUDIT_ROUNDS
    out = {name: [] for name, _ in servers}
    for i, (name, kk) in enumerate(order):
        if WARMUP:
            w = wrk(kk.url(), mode, tokens, kk.pids(), duration=WARMUP,
                    name=f"{label}-{name}-{i}-warmup")
            served[name] = served.get(name, 0) + w.stats["requests"]
        r = wrk(kk.url(), mode, tokens, kk.pids(), name=f"{label}-{name}-{i}")
        served[name] = served.get(name, 0) + r.stats["requests"]
        out[name].append(r)
        log(f"{label} {name}: {r.rps:,.0f} req/s, p99 {r.lat_ms('p99'):.2f} ms, errors {r.errors}")
    return out


def mean_rps(runs: list) -> float:
    return statistics.mean(r.rps for r in runs)


# ------------------------------------------------------------------------------- profile


def perf_works() -> bool:
    if not shutil.which("perf"):
        return False
    try:
        r = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", str(WORK / "perf-probe.data"),
                            "--", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def profile_perf(k: Keyholdd, tokens: pathlib.Path, seconds: int) -> dict:
    data = WORK / "perf.data"
    load = PROCS.start(["wrk", "-t", str(THREADS), "-c", str(CONNS), "-d", f"{seconds + 3}s",
                        "-s", str(LUA), k.url() + "/user-keys"], cpus=CLIENT_CPUS,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, BENCH_TOKENS=str(tokens), BENCH_MODE="get"))
    time.sleep(1)
    subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "4999", "-p", str(k.proc.pid),
                    "-o", str(data), "--", "sleep", str(seconds)],
                   capture_output=True, timeout=seconds + 60, check=True)
    PROCS.stop(load, signal.SIGKILL)

    def report(sort: str) -> list[tuple[float, str]]:
        r = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                            "--sort", sort, "--percent-limit", "0.5"],
                           capture_output=True, text=True, timeout=120)
        rows = []
        for line in r.stdout.splitlines():
            m = re.match(r"^\s+([\d.]+)%\s+(.*\S)\s*$", line)
            if m:
                rows.append((float(m.group(1)), re.sub(r"\s+", " ", m.group(2))))
        return rows

    return {"tool": "perf record -e cpu-clock -F 4999 (flat, self time)",
            "symbols": report("dso,sym")[:25], "dsos": report("dso")[:12]}


def profile_callgrind(k_factory, tokens: pathlib.Path, requests_s: int) -> dict:
    """Fallback without perf: keyholdd under callgrind for a bounded wrk run."""
    out = WORK / "callgrind.out"
    k = k_factory(valgrind=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
    try:
        wrk(k.url(), "get", tokens, k.pids(), duration=requests_s, conns=8, name="callgrind")
    finally:
        PROCS.stop(k.proc, timeout=120)  # callgrind writes its output on exit
    r = subprocess.run(["callgrind_annotate", "--inclusive=no", str(out)], capture_output=True,
                       text=True, timeout=300)
    rows = []
    total = None
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(.*\S)\s*$", line)
        if m:
            if total is None and "PROGRAM TOTALS" in m.group(3):
                total = m.group(1)
                continue
            rows.append((float(m.group(2)), m.group(3)))
    return {"tool": "valgrind --tool=callgrind (instructions, self)", "symbols": rows[:25], "dsos": []}


# ---------------------------------------------------------------------------------- main


def work_tree_rev() -> str:
    rev = "?"
    try:
        # read-only: --no-optional-locks keeps status from refreshing the index
        git = ["git", "--no-optional-locks", "-C", str(REPO)]
        rev = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or "?"
        if subprocess.run(git + ["status", "--porcelain", "--untracked-files=no", "--", "src"],
                          capture_output=True, text=True, timeout=10).stdout.strip():
            rev += " + uncommitted changes in src/"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return rev


def machine() -> dict:
    model = "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = "?"
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{kib(line.split(':')[1]) / 1024 / 1024:.1f} GiB"
    osname = "?"
    try:
        for line in pathlib.Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip('"')
    except FileNotFoundError:
        pass
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
    if os.environ.get("BENCH_REV"):
        rev = os.environ["BENCH_REV"] + " (built from `git archive`, apart from the work tree)"
    else:
        rev = work_tree_rev()
    return {"rev": rev, "cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "memory": mem,
            "os": osname, "nginx": nginx_v.replace("nginx version: ", ""), "wrk": wrk_v,
            "openssl": ssl.OPENSSL_VERSION,
            "fs": subprocess.run(["df", "-T", str(WORK)], capture_output=True,
                                 text=True).stdout.splitlines()[-1].split()[1]}


def fmt_ms(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def row(workload: str, server: str, r: WrkRun, ratio: str) -> str:
    err = r.errors
    return (f"| {workload} | {server} | {r.rps:,.0f} | {ratio} | {fmt_ms(r.lat_ms('p50'))} | "
            f"{fmt_ms(r.lat_ms('p99'))} | {fmt_ms(r.lat_ms('p999'))} | {r.server_cpu * 100:.0f}% | "
            f"{r.us_per_req:.1f} | "
            f"{r.client_cpu * 100:.0f}% | {r.other_cpu * 100:.0f}% | {err if err else 0} |")


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**MISSED**"


def main() -> int:
    if not KEYHOLDD.exists():
        log(f"{KEYHOLDD} is missing (bench/run builds it)")
        return 1
    prepare()
    if PINNED:
        os.sched_setaffinity(0, CLIENT_CPUS)  # this script stays off the server's core too
    t_begin = time.monotonic()
    res: dict = {"machine": machine(), "runs": {}}
    res["background"] = background_load()
    quiet_deadline = time.monotonic() + WAIT_QUIET
    while res["background"] > 0.1 and time.monotonic() < quiet_deadline:
        log(f"waiting for quiet: other processes use {res['background'] * 100:.0f}% of a CPU")
        time.sleep(4)
        res["background"] = background_load()
    if res["background"] > 0.1:
        log(f"warning: other processes keep {res['background'] * 100:.0f}% of a CPU busy; "
            "the numbers will be noisy")
    res["fsync_ms"] = fsync_latency_ms()
    log(f"4 KiB write + fdatasync on this disk: {res['fsync_ms']:.2f} ms (median)")

    log(f"minting {USERS} RS256 tokens")
    pki = TestPKI(WORK)
    cert, key = pki.leaf("bench-server")
    jwks, tokens = make_tokens(WORK)

    # 1. seed: a fresh database with USERS user keys, PUT once each through the API
    kdir = WORK / "keyholdd"
    k = Keyholdd(kdir, jwks, THREADS)
    log("starting keyholdd (first start creates the tenant key)")
    k.start()
    log(f"seeding {USERS} users with PUT /user-keys")
    t0 = time.monotonic()
    seed_rc = seed_users(k, tokens)
    res["seed"] = {"seconds": time.monotonic() - t0}
    k.stop()
    # closed before keyholdd starts again: keyholdd owns the file exclusively while it runs
    db = sqlite3.connect(k.db)
    try:
        n = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    finally:
        db.close()
    if n != USERS or seed_rc != 0:
        raise RuntimeError(f"seeding stored {n} of {USERS} users (wrk exit status {seed_rc}):\n"
                           + (WORK / "wrk-seed.out").read_text(errors="replace")[-2000:])
    res["db_bytes"] = sum(f.stat().st_size for f in k.data.glob("keyhold.db*"))
    # the same seeded state (database, key store, master key) for keyholdd with
    # [audit] log_reads = false, before the runs below add to this one's audit log
    offdir = WORK / "keyholdd-noreads"
    if AUDIT:
        shutil.copytree(kdir, offdir, ignore=shutil.ignore_patterns("*.log", "*.sock", "*.conf"))

    # 2. start-up time to /health 200 with USERS stored (the last start stays up)
    starts = []
    for i in range(STARTS):
        starts.append(k.start())
        if i < STARTS - 1:
            k.stop()
    res["startup_ms"] = [s * 1000 for s in starts]
    res["exec_ms"] = exec_baseline()
    log("start-up ms: " + ", ".join(f"{s * 1000:.1f}" for s in starts))

    ngx = Nginx(WORK / "nginx", THREADS, cert, key)
    ngx.start()

    def prime(kk: Keyholdd) -> None:
        rc = seed_users(kk, tokens, "prime")
        if rc != 0:
            raise RuntimeError(f"priming the token cache failed ({rc}):\n"
                               + (WORK / "wrk-prime.out").read_text(errors="replace")[-2000:])

    def pair(name: str, mode: str, kurl: str, nurl: str, kpids, npids, kk: Keyholdd):
        out = {}
        for who, url, pids in (("keyholdd", kurl, kpids), ("nginx", nurl, npids)):
            if WARMUP:
                wrk(url, mode, tokens, pids, duration=WARMUP, name=f"{name}-{who}-warmup")
            if who == "keyholdd":
                m0 = kk.metrics()
            out[who] = wrk(url, mode, tokens, pids, name=f"{name}-{who}")
            if who == "keyholdd":
                m1 = kk.metrics()
                h = (m1.get("keyhold_token_cache_hits_total", 0)
                     - m0.get("keyhold_token_cache_hits_total", 0))
                mi = (m1.get("keyhold_token_cache_misses_total", 0)
                      - m0.get("keyhold_token_cache_misses_total", 0))
                out["cache_hit_rate"] = h / (h + mi) if h + mi else 0.0
            log(f"{name} {who}: {out[who].rps:,.0f} req/s, p99 {out[who].lat_ms('p99'):.2f} ms, "
                f"errors {out[who].errors}")
        return out

    runs = res["runs"]
    prime(k)
    runs["get"] = pair("get", "get", k.url(), ngx.url(), k.pids(), ngx.pids(), k)
    runs["put"] = pair("put", "put", k.url(), ngx.url(), k.pids(), ngx.pids(), k)
    runs["mixed"] = pair("mixed", "mixed", k.url(), ngx.url(), k.pids(), ngx.pids(), k)
    res["cache_hit_rate"] = runs["get"]["cache_hit_rate"]

    # 3. p99 at half of keyholdd's peak GET rate (fixed-rate pacing), both servers
    half = runs["get"]["keyholdd"].rps / 2
    res["half_rate"] = half
    runs["half"] = {}
    for who, url, pids in (("keyholdd", k.url(), k.pids()), ("nginx", ngx.url(), ngx.pids())):
        runs["half"][who] = wrk(url, "get", tokens, pids, rate=half, name=f"half-{who}")
        log(f"half-load {who}: {runs['half'][who].rps:,.0f} req/s, "
            f"p99 {runs['half'][who].lat_ms('p99'):.2f} ms")

    # 4. memory: 10,000 users, every token verified and cached
    st = proc_status(k.proc.pid)
    res["mem"] = {"VmRSS": kib(st["VmRSS"]), "VmHWM": kib(st["VmHWM"])}
    log(f"keyholdd VmRSS {res['mem']['VmRSS']} KiB, VmHWM {res['mem']['VmHWM']} KiB")

    # 5. profile under the GET workload
    res["profile"] = None
    if PROFILE:
        if PROFILER in ("auto", "perf") and perf_works():
            log("profiling keyholdd with perf (GET workload)")
            try:
                res["profile"] = profile_perf(k, tokens, max(3, min(DURATION, 8)))
            except (subprocess.SubprocessError, OSError) as e:
                log(f"perf failed: {e}")
        k.stop()
        if res["profile"] is None and PROFILER in ("auto", "callgrind") and shutil.which("valgrind"):
            log("profiling keyholdd with callgrind (GET workload)")

            def factory(valgrind):
                kk = KeyholddUnder(kdir, jwks, THREADS, valgrind)
                kk.start()
                return kk
            res["profile"] = profile_callgrind(factory, tokens, 5)
    else:
        k.stop()

    # 6. TLS: the same GET run, keyholdd and nginx over TLS 1.3 with the same ECDSA P-256 cert
    kt = Keyholdd(kdir, jwks, THREADS, tls=(cert, key, pki.ca_pem))
    kt.start()
    prime(kt)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pki.ca_pem))
    with socket.create_connection(("127.0.0.1", kt.port)) as s, \
            ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
        res["tls_version"] = f"{t.version()} {t.cipher()[0]}"
    runs["get_tls"] = pair("get-tls", "get", kt.url(), ngx.url(tls=True), kt.pids(), ngx.pids(), kt)
    kt.stop()
    ngx.stop()

    # 7. the audit log (#12): GET with every read audited (this keyholdd, as above) against
    # the same build with [audit] log_reads = false (on a copy of the seeded database) and
    # against the baseline build from before the audit log (its own database, seeded the
    # same way); then PUT, whose records cannot be configured out, against the baseline.
    # All are up at once, pinned alike, and idle while another is measured; each is
    # measured twice (A B C C B A). The audit log's growth per request is read from the
    # database between the phases, with keyholdd stopped.
    if AUDIT:
        res["audit"] = audit_runs(kdir, offdir, jwks, tokens, prime)

    # 7. reference: 2 threads / 2 workers / 2 wrk threads, nobody pinned
    if REFERENCE and NCPU >= 2:
        k2 = Keyholdd(kdir, jwks, 2)
        k2.start(cpus=None)
        prime(k2)
        n2 = Nginx(WORK / "nginx2", 2, cert, key)
        n2.start(cpus=None)
        out = {}
        for who, url, pids in (("keyholdd", k2.url(), k2.pids()), ("nginx", n2.url(), n2.pids())):
            if WARMUP:
                wrk(url, "get", tokens, pids, threads=2, cpus=None, duration=WARMUP,
                    name=f"ref-{who}-warmup")
            out[who] = wrk(url, "get", tokens, pids, threads=2, cpus=None, name=f"ref-{who}")
            log(f"reference {who}: {out[who].rps:,.0f} req/s")
        runs["get_2t"] = out
        k2.stop()
        n2.stop()

    res["total_s"] = time.monotonic() - t_begin
    res["stop_failures"] = STOP_FAILURES
    text = render(res)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    log(f"done in {res['total_s']:.0f} s; table written to {RESULTS}")
    return 0


def audit_runs(kdir: pathlib.Path, offdir: pathlib.Path, jwks: pathlib.Path,
               tokens: pathlib.Path, prime) -> dict:
    out: dict = {}
    kon = Keyholdd(kdir, jwks, THREADS)
    koff = Keyholdd(offdir, jwks, THREADS, extra=["[audit]", "log_reads = false"])
    kbase = None
    if BASELINE:
        if not BASELINE.exists():
            raise RuntimeError(f"{BASELINE} is missing (bench/run builds it)")
        kbase = Keyholdd(WORK / "keyholdd-baseline", jwks, THREADS, binary=BASELINE)
        log(f"starting the baseline keyholdd ({BASELINE_REV}) and seeding {USERS} users")
        kbase.start()
        rc = seed_users(kbase, tokens)  # also fills its token cache
        if rc != 0:
            raise RuntimeError(f"seeding the baseline failed ({rc}):\n"
                               + (WORK / "wrk-seed.out").read_text(errors="replace")[-2000:])
    before_on, before_off = audit_stats(kon), audit_stats(koff)
    served = {"on": USERS, "off": USERS}     # the priming GETs are audited too
    kon.start()
    prime(kon)
    koff.start()
    prime(koff)
    servers = [("on", kon), ("off", koff)] + ([("base", kbase)] if kbase else [])
    out["get"] = ab_runs("audit-get", "get", servers, tokens, served)
    kon.stop()
    koff.stop()
    mid_on = audit_stats(kon)
    out["growth_get"] = growth(before_on, mid_on, served["on"])
    out["growth_get_off"] = growth(before_off, audit_stats(koff), served["off"])

    # PUT: a fresh start whose token cache is filled by PUTs (every user once), so that
    # every request between the two readings of the log is a PUT
    served = {"on": USERS}
    kon.start()
    rc = seed_users(kon, tokens)
    if rc != 0:
        raise RuntimeError(f"PUT priming failed ({rc})")
    servers = [("on", kon)] + ([("base", kbase)] if kbase else [])
    out["put"] = ab_runs("audit-put", "put", servers, tokens, served)
    kon.stop()
    if kbase:
        kbase.stop()
    out["growth_put"] = growth(mid_on, audit_stats(kon), served["on"])
    for name in ("growth_get", "growth_get_off", "growth_put"):
        g = out[name]
        log(f"audit log {name}: {g['bytes']:.0f} bytes/request in audit_blocks, "
            f"{g['records']:.4f} records/request, {g['file_bytes']:.0f} bytes/request on disk")
    return out


class KeyholddUnder(Keyholdd):
    """keyholdd under a wrapper (valgrind); start-up is not measured."""

    def __init__(self, d, jwks, threads, wrapper):
        super().__init__(d, jwks, threads)
        self.wrapper = wrapper

    def start(self, cpus=SERVER_CPUS) -> float:
        real = KEYHOLDD
        self.port, self.metrics_port = free_port(), free_port()
        conf = self.write_config()
        logf = open(self.d / "keyholdd-callgrind.log", "ab")
        self.proc = PROCS.start(self.wrapper + [str(real), "--config", str(conf), *root_args(real)],
                                cpus=cpus,
                                stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if status_of(self.port, "/health") == 200:
                    return 0.0
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("keyholdd under valgrind did not come up")


def render(res: dict) -> str:
    m = res["machine"]
    runs = res["runs"]
    L = []
    L.append(f"# keyholdd vs nginx ({datetime.date.today().isoformat()})")
    L.append("")
    L.append(f"keyhold {m['rev']}, release build (`meson --buildtype=release`).")
    L.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}, "
             f"{m['os']}; database on {m['fs']}. nginx {m['nginx']}, {m['wrk']}, {m['openssl']}.")
    pin = ("keyholdd/nginx pinned to CPU 1, wrk to CPU 0" if PINNED else "nothing pinned (1 CPU)")
    L.append(f"Setup: {THREADS} server thread(s) (keyholdd `threads`, nginx `worker_processes`), "
             f"wrk -t{THREADS} -c{CONNS} -d{DURATION}s after {WARMUP}s warm-up, {pin}; "
             f"{USERS:,} users, {USERS:,} distinct RS256 tokens picked at random per request. "
             f"Other processes kept {res['background'] * 100:.0f}% of a CPU busy just before the "
             "run (the `other CPU` column is the same during each run; 200% = both CPUs).")
    L.append("")
    L.append("| workload | server | req/s | ratio | p50 ms | p99 ms | p99.9 ms | server CPU "
             "| server µs CPU/req | wrk CPU | other CPU | errors |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    get_k = runs["get"]["keyholdd"].rps
    names = [("get", "GET /user-keys"), ("put", "PUT /user-keys"), ("mixed", "95% GET / 5% PUT"),
             ("get_tls", "GET /user-keys, TLS 1.3")]
    for key, label in names:
        k, n = runs[key]["keyholdd"], runs[key]["nginx"]
        L.append(row(label, "keyholdd", k, f"{k.rps / n.rps:.2f} × nginx"))
        L.append(row(label, "nginx", n, "1.00"))
    h = runs["half"]
    L.append(row(f"GET at fixed {res['half_rate']:,.0f} req/s (½ keyholdd peak)", "keyholdd",
                 h["keyholdd"], "—"))
    L.append(row(f"GET at fixed {res['half_rate']:,.0f} req/s", "nginx", h["nginx"], "—"))
    if "get_2t" in runs:
        k, n = runs["get_2t"]["keyholdd"], runs["get_2t"]["nginx"]
        L.append(row("GET, 2 threads, unpinned (reference)", "keyholdd", k,
                     f"{k.rps / n.rps:.2f} × nginx"))
        L.append(row("GET, 2 threads, unpinned (reference)", "nginx", n, "1.00"))
    L.append("")
    get_ratio = get_k / runs["get"]["nginx"].rps
    put_ratio = runs["put"]["keyholdd"].rps / get_k
    p99_half = h["keyholdd"].lat_ms("p99")
    st = res["startup_ms"]
    st_med, st_max = statistics.median(st), max(st)
    rss_mib, hwm_mib = res["mem"]["VmRSS"] / 1024, res["mem"]["VmHWM"] / 1024
    L.append("| target | measured | verdict |")
    L.append("|---|---|---|")
    cpu_ratio = runs["get"]["nginx"].us_per_req / runs["get"]["keyholdd"].us_per_req
    L.append(f"| GET ≥ 0.70 × nginx{' (every read audited)' if 'audit' in res else ''} | "
             f"{get_ratio:.2f} × (per CPU-second: {cpu_ratio:.2f} ×) | "
             f"{verdict(get_ratio >= 0.70)} |")
    a = res.get("audit")
    if a:
        g = a["get"]
        r = mean_rps(g["on"]) / mean_rps(g["off"])
        L.append(f"| GET, every read audited ≥ 0.90 × `log_reads = false` | {r:.2f} × "
                 f"({mean_rps(g['on']):,.0f} / {mean_rps(g['off']):,.0f} req/s) | "
                 f"{verdict(r >= 0.90)} |")
        if "base" in a["put"]:
            p = a["put"]
            r = mean_rps(p["on"]) / mean_rps(p["base"])
            L.append(f"| PUT, every write audited ≥ 0.90 × before the audit log ({BASELINE_REV}) | "
                     f"{r:.2f} × ({mean_rps(p['on']):,.0f} / {mean_rps(p['base']):,.0f} req/s) | "
                     f"{verdict(r >= 0.90)} |")
    L.append(f"| PUT ≥ 0.20 × GET | {put_ratio:.3f} × ({runs['put']['keyholdd'].rps:,.0f} req/s) | "
             f"{verdict(put_ratio >= 0.20)} |")
    L.append(f"| p99 ≤ 2 ms at half load | {p99_half:.2f} ms at {h['keyholdd'].rps:,.0f} req/s | "
             f"{verdict(p99_half <= 2.0)} |")
    L.append(f"| ready (/health 200) ≤ 100 ms with {USERS:,} users | median {st_med:.1f} ms, "
             f"max {st_max:.1f} ms of {len(st)} starts | {verdict(st_max <= 100)} |")
    L.append(f"| RSS ≤ 64 MiB, token cache full | VmRSS {rss_mib:.1f} MiB, VmHWM {hwm_mib:.1f} MiB | "
             f"{verdict(hwm_mib <= 64)} |")
    L.append("")
    ex = res["exec_ms"]
    L.append("Start-up is measured from just before fork/exec to the first `GET /health` 200 "
             "(polled every 0.5 ms). Of that, process creation and dynamic linking alone take "
             + ", ".join(f"{v:.1f} ms for `{k}`" for k, v in ex.items()) + " on this machine.")
    if res.get("stop_failures"):
        L.append("keyholdd exit statuses on SIGTERM other than 0: "
                 + ", ".join(str(x) for x in res["stop_failures"]) + " (see the report).")
    L.append("")
    L.append(f"A 4 KiB append + fdatasync takes {res['fsync_ms']:.2f} ms on this disk (median), so "
             f"a writer that commits each PUT on its own (`synchronous=FULL`) tops out near "
             f"{1000 / res['fsync_ms']:,.0f} PUT/s.")
    L.append("")
    L.append(f"Token cache hit rate during the GET run: {res['cache_hit_rate'] * 100:.2f}%. "
             f"TLS: {res.get('tls_version', '?')}. Seeding {USERS:,} users (PUT, wrk -c16): "
             f"{res['seed']['seconds']:.1f} s. Database with {USERS:,} users: "
             f"{res['db_bytes'] / 1048576:.1f} MiB. Whole run: {res['total_s']:.0f} s.")
    if a:
        L += render_audit(a)
    p = res.get("profile")
    if p:
        L.append("")
        L.append(f"Profile of keyholdd under the GET workload ({p['tool']}):")
        L.append("")
        if p["dsos"]:
            L.append("| share | object |")
            L.append("|---:|---|")
            for pct, name in p["dsos"]:
                L.append(f"| {pct:.1f}% | {name} |")
            L.append("")
        L.append("| self | symbol |")
        L.append("|---:|---|")
        for pct, name in p["symbols"][:20]:
            L.append(f"| {pct:.1f}% | `{name}` |")
    return "\n".join(L) + "\n"


def render_audit(a: dict) -> list[str]:
    L = ["", f"The audit log (#12): every server measured {2 * AUDIT_ROUNDS} times, in the order "
         + " ".join((list(a["get"]) + list(reversed(a["get"]))) * AUDIT_ROUNDS)
         + " for GET and " + " ".join((list(a["put"]) + list(reversed(a["put"]))) * AUDIT_ROUNDS)
         + " for PUT (all up at once, pinned alike, idle while another runs). `on`: this "
         "build, every read and write audited (the default); `off`: this build with "
         "`[audit] log_reads = false`, on a copy of the seeded database"
         + (f"; `base`: {BASELINE_REV}, the build from before the audit log, on its own "
            "database seeded the same way" if "base" in a["get"] else "") + ".", "",
         "| workload | keyholdd | req/s, each run | mean | ratio | p99 ms, each run "
         "| server µs CPU/req | other CPU | errors |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"on": "audit on", "off": "`log_reads = false`", "base": f"{BASELINE_REV} (no audit)"}
    for wl, label, ref in (("get", "GET /user-keys", "off"), ("put", "PUT /user-keys", "base")):
        runs = a[wl]
        for who, rr in runs.items():
            if who == ref or ref not in runs:
                ratio = "1.00" if who == ref else "—"
            else:
                ratio = f"{mean_rps(rr) / mean_rps(runs[ref]):.2f} × {ref}"
            us = statistics.mean(r.us_per_req for r in rr)
            other = max(r.other_cpu for r in rr)
            each = ", ".join(f"{r.rps:,.0f}" for r in rr)
            p99s = ", ".join(fmt_ms(r.lat_ms("p99")) for r in rr)
            L.append(f"| {label} | {names[who]} | {each} | "
                     f"{mean_rps(rr):,.0f} | {ratio} | {p99s} | {us:.1f} | "
                     f"{other * 100:.0f}% | {sum(r.errors for r in rr)} |")
    L.append("")
    L.append("Audit log growth (read from the database with keyholdd stopped; all requests "
             "the server answered in the phase, warm-ups and priming included, divided into "
             "what `audit_blocks` gained: the stored records (the binary block form of docs/audit.md), and the database files):")
    L.append("")
    L.append("| workload | requests | audit bytes/request | records/request | database file bytes/request |")
    L.append("|---|---:|---:|---:|---:|")
    for key, label in (("growth_get", "GET, audit on"), ("growth_get_off", "GET, `log_reads = false`"),
                       ("growth_put", "PUT, audit on")):
        g = a[key]
        L.append(f"| {label} | {g['requests']:,} | {g['bytes']:.0f} | {g['records']:.4f} | "
                 f"{g['file_bytes']:.0f} |")
    return L


def write_results(path: pathlib.Path, text: str, res: dict) -> None:
    """A benchmark's table to path (and stdout), its raw figures to WORK/results.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    (WORK / "results.json").write_text(json.dumps(res, indent=1, default=str))
    print(text)


def run_main(fn) -> None:
    """Runs a benchmark's main(), reports an exception, stops every process it started and
    exits with its status."""
    try:
        rc = fn()
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except Exception:  # noqa: BLE001  (report, then clean up below)
        import traceback
        traceback.print_exc()
        rc = 1
    finally:
        PROCS.stop_all()
    sys.exit(rc)


if __name__ == "__main__":
    run_main(main)
