#!/usr/bin/python3
"""GET and PUT /user-keys through HAProxy to 1 and 2 keyholdd replicas on PostgreSQL (the
cluster of deploy/cluster/cluster), beside one keyholdd on SQLite, in one run, with the CPU
time per request of each part: keyholdd, PostgreSQL, HAProxy and the load generator (wrk),
read from /proc/PID/stat before and after each run. docs/benchmarks.md ("Cluster") turns
these into a model of the rate with replicas on separate hosts: on this 2-core machine every
part shares the same two cores, so the rate here shows no scaling.

Every request is HTTPS (the cluster's own CA): client to HAProxy, HAProxy to a replica on
kept-alive connections; the SQLite node is HTTPS too. PostgreSQL runs with the script's
settings (fsync on). Uses bench.py's pieces and settings (BENCH_DURATION, BENCH_CONNECTIONS,
BENCH_THREADS, BENCH_WORKDIR, ...); BENCH_USERS defaults to 2000 here. Writes
bench/results/cluster.md (BENCH_RESULTS_CLUSTER)."""
import json
import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("BENCH_USERS", "2000")
import bench  # noqa: E402
from bench import Keyholdd, cpu_ticks, log, seed_users, wrk  # noqa: E402

import tokens as kh_tokens  # noqa: E402  (tests/integration, put on sys.path by bench)

SCRIPT = bench.REPO / "deploy" / "cluster" / "cluster"
DEV_ISSUER = "https://keyhold.dev.invalid/dev-issuer"
DEV_KID = "keyhold-dev-1"
RESULTS = pathlib.Path(os.environ.get("BENCH_RESULTS_CLUSTER")
                       or bench.HERE / "results" / "cluster.md")
SETTLE_S = 4           # HAProxy's checks (inter 1s, rise/fall 2) see a replica go or come


def cluster(*args) -> str:
    r = subprocess.run([sys.executable, str(SCRIPT), *args, "--dir", str(bench.WORK / "cluster")],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"cluster {' '.join(args)}: {r.stdout}{r.stderr}")
    return r.stdout


def status() -> dict:
    return json.loads(cluster("status", "--json"))


def make_tokens(shared: pathlib.Path) -> pathlib.Path:
    """bench/keyhold.lua's token file, signed by the cluster's dev issuer."""
    import base64
    import uuid
    key = (shared / "dev-issuer.key").read_bytes()
    now = int(time.time())
    path = bench.WORK / "tokens.tsv"
    with open(path, "w") as f:
        for _ in range(bench.USERS):
            sub = str(uuid.uuid4())
            c = kh_tokens.claims(sub, DEV_ISSUER, nbf=now - 60, iat=now - 60, exp=now + 7200,
                                 scope=["api"], amr=["external"])
            f.write(f"{sub}\t{kh_tokens.mint(c, key, DEV_KID, 'ES256')}\t"
                    f"{base64.b64encode(os.urandom(32)).decode()}\n")
    return path


class SqliteNode(Keyholdd):
    """One keyholdd on SQLite, HTTPS with the cluster's certificate, the cluster's issuer."""

    def __init__(self, d, shared: pathlib.Path, threads: int):
        super().__init__(d, shared / "dev-issuer.jwks", threads,
                         tls=(shared / "tls.crt", shared / "tls.key", shared / "ca.crt"))

    def write_config(self) -> pathlib.Path:
        conf = super().write_config()
        conf.write_text(conf.read_text().replace(f"issuer = {bench.ISS}", f"issuer = {DEV_ISSUER}"))
        return conf


class Front:
    """The cluster seen as one server for bench.py's helpers."""

    def __init__(self, url: str):
        self._url = url

    def url(self) -> str:
        return self._url


def pg_pids(postmaster: int) -> list[int]:
    out = [postmaster]
    for p in pathlib.Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                st = (p / "stat").read_text()
            except OSError:
                continue
            if st[st.rfind(")") + 2:].split()[1] == str(postmaster):
                out.append(int(p.name))
    return out


def measure(url: str, mode: str, toks: pathlib.Path, parts: dict, name: str) -> dict:
    """One wrk run; CPU seconds per request of each part (lists of pids)."""
    hz = os.sysconf("SC_CLK_TCK")
    every = [p for pids in parts.values() for p in pids]
    if bench.WARMUP:
        wrk(url, mode, toks, every, duration=bench.WARMUP, cpus=None, name=f"w-{name}")
    before = {k: cpu_ticks(v) for k, v in parts.items()}
    r = wrk(url, mode, toks, every, cpus=None, name=name)
    n = r.stats["requests"]
    out = {"rps": r.rps, "p99": r.lat_ms("p99"), "errors": r.errors,
           "status": r.stats.get("status", {}),
           "us": {k: (cpu_ticks(parts[k]) - before[k]) / hz / n * 1e6 for k in parts}}
    out["us"]["wrk"] = r.client_cpu * r.wall / n * 1e6
    log(f"{name}: {r.rps:,.0f} req/s, p99 {r.lat_ms('p99'):.2f} ms, errors {r.errors}, CPU µs/req "
        + ", ".join(f"{k} {v:.0f}" for k, v in out["us"].items()))
    return out


def main() -> int:
    bench.prepare()
    res = {}
    idle = bench.background_load(2.0)
    log(f"other processes' load before the run: {idle:.2f} CPUs")
    try:
        cluster("start", "--replicas", "2", "--threads", str(bench.THREADS),
                "--keyholdd", str(bench.KEYHOLDD))
        st = status()
        shared = bench.WORK / "cluster" / "shared"
        log(f"minting {bench.USERS} tokens")
        toks = make_tokens(shared)
        front = Front(st["url"])
        node = SqliteNode(bench.WORK / "sqlite", shared, bench.THREADS)
        node.start(cpus=None)
        # One replica first: seeding through two would interleave their writes.
        cluster("replica", "stop", "2")
        time.sleep(SETTLE_S)
        for k in (front, node):
            if seed_users(k, toks) or seed_users(k, toks, "prime"):
                raise RuntimeError("seeding failed")
        for mode in ("get", "put"):
            res[(mode, "sqlite")] = measure(node.url(), mode, toks, {"keyholdd": node.pids()},
                                            f"{mode}-sqlite")
        for n in (1, 2):
            if n == 2:
                cluster("replica", "start", "2")
                time.sleep(SETTLE_S)
            st = status()
            parts = {"keyholdd": [r["pid"] for r in st["replicas"].values() if r["pid"]],
                     "postgres": pg_pids(st["postgresql"]["pid"]),
                     "haproxy": [st["haproxy"]["pid"]]}
            assert len(parts["keyholdd"]) == n, st
            for mode in ("get", "put"):
                res[(mode, f"pg{n}")] = measure(front.url(), mode, toks, parts, f"{mode}-pg{n}")
        node.stop()
    finally:
        try:
            cluster("stop")
        except Exception as e:  # noqa: BLE001 - report, then stop what bench started
            log(f"cluster stop: {e}")
    label = {"sqlite": "keyholdd on SQLite (direct)", "pg1": "HAProxy + 1 replica on PostgreSQL",
             "pg2": "HAProxy + 2 replicas on PostgreSQL"}
    lines = ["| workload | setup | req/s | / SQLite | p99 ms | non-2xx | CPU µs/request: keyholdd | postgres | haproxy | wrk |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for mode in ("get", "put"):
        base = res[(mode, "sqlite")]["rps"]
        for s in ("sqlite", "pg1", "pg2"):
            r = res[(mode, s)]
            u = r["us"]
            lines.append(f"| {mode.upper()} | {label[s]} | {r['rps']:,.0f} | {r['rps'] / base:.2f} | "
                         f"{r['p99']:.2f} | {r['errors']} | {u['keyholdd']:.0f} | "
                         f"{u.get('postgres', 0):.0f} | {u.get('haproxy', 0):.0f} | {u['wrk']:.0f} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    day = time.strftime("%Y-%m-%d")
    RESULTS.write_text(f"# Cluster: HAProxy and keyholdd replicas on PostgreSQL ({day})\n\n"
                       f"{bench.USERS} users, {bench.CONNS} connections, {bench.THREADS} "
                       f"thread(s) per keyholdd, {bench.DURATION} s per run, every process on "
                       f"the same {bench.NCPU} CPUs (not pinned), other processes using "
                       f"{idle:.2f} CPUs before the run. HTTPS throughout. non-2xx: wrk's count "
                       "of errors and non-2xx answers.\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    bench.run_main(main)
