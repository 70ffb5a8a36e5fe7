#!/usr/bin/python3
"""The Key Connector import benchmark, in one run, on this machine; bench/run runs it after
devices.py (BENCH_IMPORT=0 leaves it out; BENCH_MAIN=0 BENCH_LIFECYCLE=0 BENCH_DEVICES=0 runs
it alone) and docs/benchmarks.md ("Import") describes the method. The import rate is given as
a ratio to ordinary member writes measured in the same run, on the same server.

For each source (SQLite, JSON, PostgreSQL), a fresh keyholdd (bench.py's: release build, one
thread, SQLite, the file key store, pinned to the server CPU) and a real Key Connector
database of the same records (tests/integration/kcdb.py: each key AES-256-GCM under a data
key, the data key RSA-OAEP under the key of a PFX made by openssl):

0. Reference A: BENCH_USERS members (bench.py's tokens) store their key once (PUT, wrk, not
   measured: this also fills the token cache), then `PUT /user-keys` with distinct member
   tokens through wrk (bench.py's threads, connections, warm-up and duration): writes/s.
1. Set-up cost: the same command as 2., pointed at an admin socket that does not exist: it
   reads the source, unwraps the data key, opens every record, builds the first batch and
   fails to connect. Wall time.
2. The import: `keyhold --json import bitwarden-kc` over the admin socket, its wall time from
   just before the fork to its exit (the verification pass included) -> records/s; the
   importer's own CPU time (wait4 rusage), keyholdd's (/proc), and everything else's; the
   server's request time (keyholdd's /metrics). The summary must say every record was
   imported and verified.
3. `--dry-run` of the same command on the imported data: a compare-only pass, which is what
   the verification pass costs (every key sent with "verify": true). So, roughly:
   verification = dry-run - set-up, import pass = import - dry-run.
4. The same import again: everything is skipped (the cost of resuming a finished import),
   verification included.
5. Reference B: `PUT /user-keys` again, as in 0.; the ratio is to the mean of A and B.

Then (BENCH_IMPORT_PROFILE=1), on the SQLite server, the same source into a second tenant
under `perf record -e cpu-clock` (the importer, and keyholdd by pid): the flat profile of each.

Every phase is bounded: each importer run by BENCH_IMPORT_BOUND seconds (then killed), wrk
by -d (and bench.py's kill after 30 s of overrun), PostgreSQL's start by pgserver.py's own
bound. Loopback and the admin socket only. Every process is in bench.py's process list (or
is pgserver.py's, stopped by it) and is stopped on exit, error and SIGINT/SIGTERM/SIGHUP.

Settings (environment), besides bench.py's (BENCH_DURATION, BENCH_WARMUP, BENCH_THREADS,
BENCH_CONNECTIONS, BENCH_USERS, BENCH_BUILD):
  BENCH_IMPORT_RECORDS        records of the SQLite source (100000)
  BENCH_IMPORT_RECORDS_OTHER  records of the JSON and PostgreSQL sources (100000)
  BENCH_IMPORT_SOURCES        which sources, in this order (sqlite,json,postgresql); also
                              json-sorted: the JSON file with its userKey entries sorted by
                              id (the SQLite and PostgreSQL readers ORDER BY "Id"; a JSON
                              file is sent in file order, random member order)
  BENCH_IMPORT_BOUND          seconds after which one importer run is killed (600)
  BENCH_IMPORT_PROFILE        1: the perf profile above, if perf works (1)
  BENCH_IMPORT_RESULTS        where the table goes (bench/results/import.md)
  BENCH_WORKDIR_IMPORT        scratch directory, emptied first (bench/.work-import)
"""
import json
import os
import pathlib
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench as B  # noqa: E402  (bench/bench.py: servers, wrk, tokens, processes)

import kcdb  # noqa: E402  (tests/integration/kcdb.py, on bench.py's path)
import pgserver  # noqa: E402  (tests/integration/pgserver.py)
from pgserver import PgServer  # noqa: E402

RECORDS = max(1, B.env_int("BENCH_IMPORT_RECORDS", 100000))
RECORDS_OTHER = max(1, B.env_int("BENCH_IMPORT_RECORDS_OTHER", 100000))
SOURCES = [s.strip() for s in os.environ.get("BENCH_IMPORT_SOURCES", "sqlite,json,postgresql")
           .split(",") if s.strip()]
BOUND_S = max(1, B.env_int("BENCH_IMPORT_BOUND", 600))
PROFILE = B.env_int("BENCH_IMPORT_PROFILE", 1) != 0
RESULTS = pathlib.Path(os.environ.get("BENCH_IMPORT_RESULTS") or HERE / "results" / "import.md")
KEYHOLD = B.BUILD / "src" / "cli" / "keyhold"
TENANT = "default"
PROFILE_TENANT = "profile"
PFX_PASSWORD = "bench-kc-pfx"
BATCH = 256                # the importer's batch (KH_IMPORT_BATCH_MAX)
PG: PgServer | None = None


# --------------------------------------------------------------------------- the importer


class CliRun:
    def __init__(self, name, rc, wall, user, sys_, server_cpu, other_cpu, out, err, metrics):
        self.name, self.rc, self.wall = name, rc, wall
        self.user, self.sys, self.server_cpu, self.other_cpu = user, sys_, server_cpu, other_cpu
        self.out, self.err, self.metrics = out, err, metrics

    @property
    def cpu(self) -> float:
        """The importer's CPU seconds (user + system)."""
        return self.user + self.sys

    def summary(self) -> dict:
        lines = self.out.strip().splitlines()
        if len(lines) != 1:
            raise RuntimeError(f"importer run {self.name}: not one JSON line on stdout "
                               f"(exit {self.rc}): {self.out[-1000:]!r} {self.err[-1000:]!r}")
        return json.loads(lines[0])


def request_time(k: B.Keyholdd) -> tuple[float, float]:
    """keyholdd's keyhold_request_duration_seconds (sum, count): every request it answered,
    the admin socket's included."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", k.metrics_port, timeout=10)
    try:
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
    finally:
        c.close()
    s = n = 0.0
    for line in body.splitlines():
        m = re.match(r"^keyhold_request_duration_seconds_(sum|count)\s+(\S+)$", line)
        if m:
            if m.group(1) == "sum":
                s = float(m.group(2))
            else:
                n = float(m.group(2))
    return s, n


def run_import(k: B.Keyholdd, args: list[str], name: str, *, socket: str | None = None,
               tenant: str = TENANT, wrapper: list[str] | None = None) -> CliRun:
    """`keyhold --json import bitwarden-kc ARGS` on the client CPU; wall time from just before
    the fork to the exit (a pidfd says when, no polling), CPU from wait4. Killed after
    BOUND_S seconds."""
    sock = socket or str(k.d / "admin.sock")
    argv = (wrapper or []) + [str(KEYHOLD), "--socket", sock, "--tenant", tenant, "--json",
                              "import", "bitwarden-kc", *args]
    env = {n: v for n, v in os.environ.items() if not n.startswith("KEYHOLD_")}
    outp, errp = B.WORK / f"cli-{name}.out", B.WORK / f"cli-{name}.err"
    pids = k.pids() if k.proc else []
    m0 = request_time(k) if k.proc else (0.0, 0.0)
    with open(outp, "wb") as out, open(errp, "wb") as err:
        srv0, busy0 = B.cpu_ticks(pids), B.busy_ticks()
        t0 = time.monotonic()
        p = B.PROCS.start(argv, cpus=B.CLIENT_CPUS, stdout=out, stderr=err, env=env,
                          stdin=subprocess.DEVNULL)
        fd = os.pidfd_open(p.pid)
        try:
            ready, _, _ = select.select([fd], [], [], BOUND_S)
        finally:
            os.close(fd)
        wall = time.monotonic() - t0
        if not ready:
            B.PROCS.stop(p, signal.SIGKILL)
            raise RuntimeError(f"importer run {name} overran its bound of {BOUND_S} s")
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        B.PROCS.live.remove(p)   # reaped (the importer forks nothing)
    hz = os.sysconf("SC_CLK_TCK")
    srv = (B.cpu_ticks(pids) - srv0) / hz
    busy = (B.busy_ticks() - busy0) / hz
    # with a wrapper (perf), wait4 counts the wrapper and the importer it reaped
    user, sys_ = ru.ru_utime, ru.ru_stime
    other = max(0.0, busy - srv - user - sys_)
    m1 = request_time(k) if k.proc else (0.0, 0.0)
    # the first /metrics read is counted in the second: one request less
    run = CliRun(name, p.returncode, wall, user, sys_, srv, other, outp.read_text(errors="replace"),
                 errp.read_text(errors="replace"),
                 {"seconds": m1[0] - m0[0], "requests": max(0.0, m1[1] - m0[1] - 1)})
    B.log(f"{name}: exit {run.rc}, {wall:.2f} s wall, importer CPU {run.cpu:.2f} s, keyholdd CPU "
          f"{srv:.2f} s, other {other:.2f} s, {run.metrics['requests']:.0f} requests taking "
          f"{run.metrics['seconds']:.2f} s in keyholdd")
    return run


def expect(run: CliRun, rc: int, **want) -> dict:
    s = run.summary()
    bad = {k: (s.get(k), v) for k, v in want.items() if s.get(k) != v}
    if run.rc != rc or bad:
        raise RuntimeError(f"importer run {run.name}: exit {run.rc} (want {rc}), "
                           f"{bad or ''} {json.dumps(s)[:1500]} {run.err[-1000:]}")
    return s


# ------------------------------------------------------------------------------- sources


def make_sources(res: dict) -> dict:
    """Builds the sources (not measured): {kind: (spec, n)}. One KcDatabase for the SQLite
    source and one for the others (the same one if the counts agree), sealed under one data
    key, wrapped under the PFX's key."""
    d = B.WORK / "kc"
    d.mkdir()
    t0 = time.monotonic()
    pfx, priv = kcdb.make_rsa_pfx(d, PFX_PASSWORD)
    pw = d / "pfx.pass"
    pw.write_text(PFX_PASSWORD + "\n")
    pw.chmod(0o600)
    res["pfx_args"] = ["--pfx", str(pfx), "--pfx-password-file", str(pw)]
    dk = os.urandom(32)
    dbs: dict[int, kcdb.KcDatabase] = {}

    def db(n: int) -> kcdb.KcDatabase:
        if n not in dbs:
            dbs[n] = kcdb.KcDatabase(kcdb.random_records(n, seed=n), [dk], priv)
        return dbs[n]

    out = {}
    for kind in SOURCES:
        n = RECORDS if kind == "sqlite" else RECORDS_OTHER
        if kind == "sqlite":
            out[kind] = ("sqlite:" + str(db(n).write_sqlite(d / "keyconnector.db")), n)
        elif kind == "json":
            out[kind] = ("json:" + str(db(n).write_json(d / "data.json")), n)
        elif kind == "json-sorted":
            doc = db(n).json_document()
            doc["userKey"].sort(key=lambda e: e["id"])
            (d / "data-sorted.json").write_text(json.dumps(doc))
            out[kind] = ("json:" + str(d / "data-sorted.json"), n)
        elif kind == "postgresql":
            global PG
            try:
                import psycopg2  # noqa: F401
                pgserver.pg_bin_dir()
            except (ImportError, pgserver.PgServerError) as e:
                B.log(f"no PostgreSQL source: {e}")
                res["skipped"] = f"PostgreSQL (not installed here: {e})"
                continue
            PG = PgServer().start()       # on this script's (the client's) CPU
            out[kind] = ("postgresql:" + db(n).write_postgresql(PG, "kc_bench"), n)
        else:
            raise RuntimeError(f"BENCH_IMPORT_SOURCES: unknown source {kind!r}")
    sizes = {"sqlite": d / "keyconnector.db", "json": d / "data.json",
             "json-sorted": d / "data-sorted.json"}
    res["source_bytes"] = {k: sizes[k].stat().st_size for k in out if k in sizes}
    if PG:
        res["pg_version"] = PG.execute("postgres", "SHOW server_version")[0][0].split()[0]
        res["source_bytes"]["postgresql"] = PG.execute(
            "kc_bench", "SELECT pg_database_size(current_database())")[0][0]
    B.log(f"sources built in {time.monotonic() - t0:.1f} s: "
          + ", ".join(f"{k} {n:,} records" for k, (_, n) in out.items()))
    return out


# -------------------------------------------------------------------------------- phases


def put_reference(k: B.Keyholdd, tokens: pathlib.Path, label: str) -> B.WrkRun:
    if B.WARMUP:
        B.wrk(k.url(), "put", tokens, k.pids(), duration=B.WARMUP, name=f"{label}-warmup")
    r = B.wrk(k.url(), "put", tokens, k.pids(), name=label)
    B.log(f"{label}: {r.rps:,.0f} PUT/s, p99 {r.lat_ms('p99'):.2f} ms, errors {r.errors}")
    if r.errors:
        raise RuntimeError(f"{label}: {r.errors} errors (wrk-{label}.out)")
    return r


def measure_source(kind: str, spec: str, n: int, jwks: pathlib.Path, tokens: pathlib.Path,
                   pfx_args: list[str], profile: bool) -> dict:
    out: dict = {"records": n}
    extra = []
    if profile:
        extra = [f"[tenant.{PROFILE_TENANT}]", "issuer = https://identity.profile.invalid/identity",
                 f"jwks_file = {jwks}"]
    k = B.Keyholdd(B.WORK / f"keyholdd-{kind}", jwks, B.THREADS, extra=extra)
    B.log(f"[{kind}] starting a fresh keyholdd; {B.USERS:,} members store their key (PUT, wrk)")
    k.start()
    try:
        rc = B.seed_users(k, tokens)
        if rc != 0:
            raise RuntimeError(f"seeding failed ({rc}):\n"
                               + (B.WORK / "wrk-seed.out").read_text(errors="replace")[-2000:])
        out["put_before"] = put_reference(k, tokens, f"{kind}-put-before")
        args = ["--database", spec, *pfx_args]

        setup = run_import(k, args, f"{kind}-setup", socket=str(B.WORK / "no-such.sock"))
        if setup.rc == 0:
            raise RuntimeError(f"the set-up run reached a server: {setup.out[:500]}")
        out["setup"] = setup
        run = run_import(k, args, f"{kind}-import")
        out["summary"] = expect(run, 0, imported=n, skipped=0, conflicts=0, failed=0, verified=n,
                                records=n)
        out["import"] = run
        dry = run_import(k, args + ["--dry-run"], f"{kind}-dry-run")
        expect(dry, 0, imported=0, skipped=n, conflicts=0, failed=0, dry_run=True)
        out["dry_run"] = dry
        again = run_import(k, args, f"{kind}-again")
        expect(again, 0, imported=0, skipped=n, conflicts=0, failed=0, verified=n)
        out["again"] = again
        out["put_after"] = put_reference(k, tokens, f"{kind}-put-after")
        if profile:
            out["profile"] = profile_import(k, args, n)
    finally:
        k.stop()
    out["db_bytes"] = sum(f.stat().st_size for f in k.data.glob("keyhold.db*"))
    return out


# ------------------------------------------------------------------------------- profile


def perf_report(data: pathlib.Path, sort: str, limit: int) -> list[tuple[float, str]]:
    r = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                        "--sort", sort, "--percent-limit", "0.5"],
                       capture_output=True, text=True, timeout=120)
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"^\s+([\d.]+)%\s+(.*\S)\s*$", line)
        if m:
            rows.append((float(m.group(1)), re.sub(r"\s+", " ", m.group(2))))
    return rows[:limit]


def profile_import(k: B.Keyholdd, args: list[str], n: int) -> dict | None:
    """The same source into the (empty) profile tenant, the importer under perf record and
    keyholdd sampled by pid for as long as the importer runs."""
    if not B.perf_works():
        B.log("perf does not work here: no profile")
        return None
    cli_data, srv_data = B.WORK / "perf-importer.data", B.WORK / "perf-keyholdd.data"
    B.log("profiling an import into a second tenant (perf, importer and keyholdd)")
    srv = B.PROCS.start(["perf", "record", "-e", "cpu-clock", "-F", "999", "-p", str(k.proc.pid),
                         "-o", str(srv_data)], cpus=B.CLIENT_CPUS, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        run = run_import(k, args, "profile", tenant=PROFILE_TENANT,
                         wrapper=["perf", "record", "-e", "cpu-clock", "-F", "999", "-o",
                                  str(cli_data), "--"])
    finally:
        B.PROCS.stop(srv, signal.SIGINT, timeout=60)      # perf writes its data on SIGINT
    expect(run, 0, imported=n, verified=n)
    return {"wall": run.wall,
            "importer": {"dsos": perf_report(cli_data, "dso", 8),
                         "symbols": perf_report(cli_data, "dso,sym", 14)},
            "keyholdd": {"dsos": perf_report(srv_data, "dso", 8),
                         "symbols": perf_report(srv_data, "dso,sym", 14)}}


# ---------------------------------------------------------------------------------- main


def main() -> int:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, B.on_signal)
    for p in (B.KEYHOLDD, KEYHOLD):
        if not p.exists():
            B.log(f"{p} is missing (bench/run builds it)")
            return 1
    B.WORK = pathlib.Path(os.environ.get("BENCH_WORKDIR_IMPORT") or HERE / ".work-import")
    if B.WORK.exists():
        shutil.rmtree(B.WORK)
    B.WORK.mkdir(parents=True)
    if B.PINNED:
        os.sched_setaffinity(0, B.CLIENT_CPUS)
    t_begin = time.monotonic()
    res: dict = {"machine": B.machine(), "sources": {}}
    res["background"] = B.background_load()
    if res["background"] > 0.1:
        B.log(f"warning: other processes keep {res['background'] * 100:.0f}% of a CPU busy; "
              "the numbers will be noisy")
    res["fsync_ms"] = B.fsync_latency_ms()
    B.log(f"4 KiB write + fdatasync here: {res['fsync_ms']:.2f} ms (median)")
    B.log(f"minting {B.USERS} RS256 tokens")
    jwks, tokens = B.make_tokens(B.WORK)
    sources = make_sources(res)
    for i, (kind, (spec, n)) in enumerate(sources.items()):
        res["sources"][kind] = measure_source(kind, spec, n, jwks, tokens, res["pfx_args"],
                                              PROFILE and i == 0)
        if kind == "postgresql" and PG:
            PG.stop()
    res["total_s"] = time.monotonic() - t_begin
    res["finished"] = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    res["stop_failures"] = B.STOP_FAILURES
    text = report(res)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    (B.WORK / "results.json").write_text(json.dumps(res, indent=1, default=lambda o: vars(o)
                                                    if hasattr(o, "__dict__") else str(o)))
    print(text)
    B.log(f"done in {res['total_s']:.0f} s; table written to {RESULTS}")
    return 0


# -------------------------------------------------------------------------------- report


def put_rate(s: dict) -> float:
    return statistics.mean([s["put_before"].rps, s["put_after"].rps])


def us(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:.1f}"


def report(res: dict) -> str:
    m = res["machine"]
    pin = ("keyholdd pinned to CPU 1; the importer, wrk, this script and PostgreSQL to CPU 0"
           if B.PINNED else "nothing pinned (1 CPU)")
    names = {"sqlite": "SQLite", "json": "JSON", "json-sorted": "JSON, sorted by id",
             "postgresql": f"PostgreSQL {res.get('pg_version', '')}".strip()}
    L = [
        f"# keyhold import benchmark ({res['finished']})",
        "",
        f"keyhold {m['rev']}, release build. Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['memory']}, Linux {m['kernel']}; databases on {m['fs']} (4 KiB write + fdatasync: "
        f"{res['fsync_ms']:.2f} ms). {m['wrk']}.",
        f"Setup: a fresh keyholdd per source, {B.THREADS} server thread(s), SQLite, the file key "
        f"store; {pin}. `keyhold --json import bitwarden-kc --pfx ...` over the admin socket, "
        f"batches of {BATCH}. Reference: `PUT /user-keys` on the same server, wrk -t{B.THREADS} "
        f"-c{B.CONNS} -d{B.DURATION}s after {B.WARMUP}s warm-up, {B.USERS:,} members with "
        "distinct RS256 tokens picked at random per request, measured before and after the "
        f"source's runs. Other processes kept {res['background'] * 100:.0f}% of a CPU busy just "
        "before the run.",
        "",
        "## Import rate",
        "",
        "Wall time of the importer from fork to exit, verification pass included. CPU: the "
        "importer's (user + system), keyholdd's, and what every other process used meanwhile "
        "(100% = one CPU; on a 2-CPU machine, other CPU well above 0 means something else took "
        "CPU time from the importer or keyholdd, or from wrk and keyholdd during the PUT runs: "
        "read those figures as noisy).",
        "",
        "| source | records | import s | **records/s** | PUT /user-keys req/s: mean (before, after) "
        "| **import ÷ PUT** | importer CPU | keyholdd CPU | other CPU | importer µs CPU/record "
        "| keyholdd µs CPU/record | other CPU during PUT (before, after) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, s in res["sources"].items():
        r, n = s["import"], s["records"]
        rate = n / r.wall
        pr = put_rate(s)
        L.append(f"| {names[kind]} | {n:,} | {r.wall:.2f} | **{rate:,.0f}** | {pr:,.0f} "
                 f"({s['put_before'].rps:,.0f}, {s['put_after'].rps:,.0f}) | "
                 f"**{rate / pr:.2f} ×** | {r.cpu / r.wall * 100:.0f}% | "
                 f"{r.server_cpu / r.wall * 100:.0f}% | {r.other_cpu / r.wall * 100:.0f}% | "
                 f"{us(r.cpu, n)} | {us(r.server_cpu, n)} | "
                 f"{s['put_before'].other_cpu * 100:.0f}%, {s['put_after'].other_cpu * 100:.0f}% |")
    L += [
        "",
        "## Where the time goes",
        "",
        "Set-up: the same command against an admin socket that does not exist (it reads the "
        "source, unwraps the data key, opens every record, builds the first batch, fails to "
        "connect). `--dry-run` on the imported data: a compare-only pass (every key sent with "
        "`\"verify\": true`), what the verification pass costs. So the verification pass ≈ "
        "dry-run − set-up and the import pass ≈ import − dry-run. Re-run: the same import "
        "again, everything skipped (verification included): the cost of resuming a finished "
        "import. keyholdd s: the server's own time answering the run's requests "
        "(`keyhold_request_duration_seconds`), waits for the group commit included.",
        "",
        "| source | set-up s | dry-run s (keyholdd s) | ≈ verification pass s (share of the "
        "import) | ≈ import pass s (records/s) | import: keyholdd s over requests | re-run s "
        "(× the import) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, s in res["sources"].items():
        n = s["records"]
        st, im, dr, ag = s["setup"].wall, s["import"], s["dry_run"], s["again"]
        verify = max(0.0, dr.wall - st)
        ipass = max(1e-9, im.wall - dr.wall)
        L.append(f"| {names[kind]} | {st:.2f} | {dr.wall:.2f} ({dr.metrics['seconds']:.2f}) | "
                 f"{verify:.2f} ({verify / im.wall * 100:.0f}%) | {ipass:.2f} "
                 f"({n / ipass:,.0f}) | {im.metrics['seconds']:.2f} over "
                 f"{im.metrics['requests']:.0f} | {ag.wall:.2f} ({ag.wall / im.wall:.2f} ×) |")
    L += ["", "Sources: " + ", ".join(
        f"{names[k]} {b / 1e6:.1f} MB" for k, b in res["source_bytes"].items())
        + "; keyhold's database after the import and the PUT runs: " + ", ".join(
        f"{names[k]} server {s['db_bytes'] / 1e6:.1f} MB" for k, s in res["sources"].items())
        + "."]
    prof = next((s.get("profile") for s in res["sources"].values() if s.get("profile")), None)
    if prof:
        L += ["", f"## Profile (perf record -e cpu-clock -F 999, flat, self time; the SQLite "
              f"source into a second tenant, {prof['wall']:.2f} s under perf)", ""]
        for who in ("importer", "keyholdd"):
            p = prof[who]
            L += [f"{who}: " + ", ".join(f"{name} {pct:.1f}%" for pct, name in p["dsos"]), "",
                  "| self | symbol |", "|---:|---|"]
            L += [f"| {pct:.1f}% | `{name}` |" for pct, name in p["symbols"]]
            L.append("")
    if res.get("skipped"):
        L += ["", f"Left out: {res['skipped']}."]
    if res.get("stop_failures"):
        L += ["", "keyholdd exit statuses on SIGTERM other than 0: "
              + ", ".join(str(x) for x in res["stop_failures"]) + "."]
    L += ["", f"Whole run: {res['total_s']:.0f} s.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    try:
        rc = main()
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except Exception:  # noqa: BLE001  (report, then clean up below)
        import traceback
        traceback.print_exc()
        rc = 1
    finally:
        B.PROCS.stop_all()
        if PG:
            PG.stop()
    sys.exit(rc)
