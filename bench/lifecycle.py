#!/usr/bin/python3
"""The key lifecycle benchmark (issue 13), in one run, on this machine; bench/run runs it after
bench.py (BENCH_LIFECYCLE=0 leaves it out) and docs/benchmarks.md describes the method.

1. Re-encryption: BENCH_RECORDS member records (1,000,000) are sealed straight into a stopped
   keyholdd's database under version 1 (bench/tools/seed-records.c: the server's own sealing
   code; minting a token per record would take an hour), of which the BENCH_USERS users that
   wrk has tokens for. Then, with keyholdd serving:
   - the idle GET rate (wrk, as bench.py measures it);
   - a rekey with no load: the job's time alone;
   - a second rekey under that same GET load (wrk runs for 80% of the job's time alone, from
     the rekey's answer on, so inside the job): the job's time (target <= 20 s for 1,000,000)
     and the GET rate while it ran, as a ratio of the idle rate (target >= 0.80).
2. Unseal with 10 key versions: a server whose tenant has 10 versions is sealed and unsealed
   over the admin socket (POST /server/unseal with the master key), median of 5 (target
   <= 100 ms).
3. Backup of the 1,000,000-record server while it serves: `keyhold backup create` time and
   size, then `keyhold backup verify` time.

Settings (environment), besides bench.py's (BENCH_DURATION, BENCH_USERS, BENCH_THREADS,
BENCH_CONNECTIONS, BENCH_BUILD):
  BENCH_RECORDS          records re-encrypted and backed up (1000000)
  BENCH_LIFECYCLE_CPUS   pinned: keyholdd (its worker and the job's thread) on bench.py's server
                         CPU, wrk on the other, as bench.py measures (default); all: keyholdd may
                         use every CPU (then the job competes with wrk, the client, as much as
                         with the server)
  BENCH_LIFECYCLE_RESULTS  where the table goes (bench/results/lifecycle.md)
"""
import http.client
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench as B  # noqa: E402  (bench/bench.py: servers, wrk, tokens)

RECORDS = B.env_int("BENCH_RECORDS", 1000000)
CPUS_MODE = os.environ.get("BENCH_LIFECYCLE_CPUS", "pinned")
RESULTS = pathlib.Path(os.environ.get("BENCH_LIFECYCLE_RESULTS") or HERE / "results" / "lifecycle.md")
KEYHOLD = B.BUILD / "src" / "cli" / "keyhold"
SEEDER = B.BUILD / "kh-seed-records"
JOB_BOUND_S = 600          # bound on waiting for a job (not a measurement)
# every CPU this script may use, taken before it pins itself to the client's
SERVER_CPUS = set(os.sched_getaffinity(0)) if CPUS_MODE == "all" else B.SERVER_CPUS


class Socket(http.client.HTTPConnection):
    """HTTP/1.1 over the admin socket."""

    def __init__(self, path: str, timeout: float = 120):
        super().__init__("localhost", timeout=timeout)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path_)


def admin(k: B.Keyholdd, method: str, path: str, body=None) -> tuple[int, dict]:
    c = Socket(str(k.d / "admin.sock"))
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers=headers)
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        c.close()


def cli(k: B.Keyholdd, *args: str) -> dict:
    out = subprocess.run([str(KEYHOLD), "--socket", str(k.d / "admin.sock"), "--json", *args],
                         capture_output=True, text=True, timeout=JOB_BOUND_S)
    if out.returncode != 0:
        raise RuntimeError(f"keyhold {' '.join(args)} failed ({out.returncode}): "
                           f"{out.stdout} {out.stderr}")
    return json.loads(out.stdout)


def wait_job(k: B.Keyholdd, version: int) -> tuple[float, dict]:
    """Polls key status (twice a second: each poll is work for the worker that the GET load
    shares) until the job moving records to version is done; returns the job's own duration
    (moved / rate, both the server's, measured from its start to its end) and the job."""
    t0 = time.monotonic()
    while True:
        status, keys = admin(k, "GET", "/admin/keys")
        job = keys.get("job", {})
        if status == 200 and job.get("state") == "done" and job.get("target") == version:
            secs = job["moved"] / job["rate"] if job.get("rate") else time.monotonic() - t0
            return secs, job
        if job.get("state") == "failed":
            raise RuntimeError(f"the re-encryption job failed: {job}")
        if time.monotonic() - t0 > JOB_BOUND_S:
            raise RuntimeError(f"the re-encryption job did not finish in {JOB_BOUND_S} s: {job}")
        time.sleep(0.5)


def seeded_server(d: pathlib.Path, jwks, tokens, n: int) -> B.Keyholdd:
    k = B.Keyholdd(d, jwks, B.THREADS)
    B.log("starting keyholdd once (it creates tenant key version 1)")
    k.start(cpus=SERVER_CPUS)
    k.stop()
    B.log(f"sealing {n:,} records into its database")
    t0 = time.monotonic()
    subprocess.run([str(SEEDER), str(k.d / "keyhold.conf"), str(n), str(tokens)], check=True,
                   timeout=JOB_BOUND_S, stdout=subprocess.DEVNULL)
    B.log(f"seeded in {time.monotonic() - t0:.1f} s")
    k.start(cpus=SERVER_CPUS)
    rc = B.seed_users(k, tokens, "prime")
    if rc != 0:
        raise RuntimeError(f"priming the token cache failed ({rc})")
    return k


def reencryption(res: dict, jwks, tokens) -> B.Keyholdd:
    k = seeded_server(B.WORK / "reencrypt", jwks, tokens, RECORDS)
    pids = k.pids()
    B.log("GET, idle")
    B.wrk(k.url(), "get", tokens, pids, duration=B.WARMUP, name="warm")
    idle = B.wrk(k.url(), "get", tokens, pids, name="idle")
    res["idle_rps"] = idle.rps

    # the job alone first: how long the GET run under load may last and stay inside the job
    B.log("rekey with no load")
    v = cli(k, "key", "rekey")["version"]
    secs, job = wait_job(k, v)
    res["alone"] = {"seconds": secs, "job": job}
    B.log(f"job alone: {job['moved']:,} records in {secs:.1f} s")

    # rekey under load: the rekey is answered (its job has started), then wrk runs for 80% of
    # the job's time alone; the job takes at least that long under load, so every request of
    # the run is served while the job runs
    window = max(2, min(B.DURATION, int(res["alone"]["seconds"] * 0.8)))
    B.log(f"rekey under GET load ({window} s of GETs inside the job)")
    v = cli(k, "key", "rekey")["version"]
    run = B.wrk(k.url(), "get", tokens, pids, duration=window, name="during")
    secs, job = wait_job(k, v)
    res["loaded"] = {"seconds": secs, "job": job, "rps": run.rps, "window": window,
                     "overlap": min(1.0, secs / window)}
    B.log(f"job under load: {job['moved']:,} records in {secs:.1f} s; GET {run.rps:,.0f}/s "
          f"({run.rps / idle.rps:.2f} x idle)")
    # the two old versions can go now: the retire gate opens
    for old in (1, 2):
        cli(k, "key", "retire", str(old))
    return k


def unseal(res: dict, jwks) -> None:
    k = B.Keyholdd(B.WORK / "unseal", jwks, B.THREADS)
    k.start(cpus=SERVER_CPUS)
    for _ in range(9):
        v = cli(k, "key", "rekey")["version"]
        wait_job(k, v)
    master = base64_of(k.master.read_bytes())
    samples = []
    for _ in range(5):
        assert admin(k, "POST", "/server/seal")[0] == 200
        t0 = time.perf_counter()
        status, body = admin(k, "POST", "/server/unseal", {"master_key": master})
        samples.append((time.perf_counter() - t0) * 1000)
        if status != 200 or body.get("sealed") is not False:
            raise RuntimeError(f"unseal answered {status} {body}")
    status, keys = admin(k, "GET", "/admin/keys")
    res["unseal"] = {"versions": len(keys["versions"]), "median_ms": statistics.median(samples),
                     "max_ms": max(samples)}
    B.log(f"unseal with {len(keys['versions'])} versions: {res['unseal']['median_ms']:.1f} ms median")
    k.stop()


def base64_of(b: bytes) -> str:
    import base64
    return base64.b64encode(b).decode()


def backup(res: dict, k: B.Keyholdd) -> None:
    out = B.WORK / "backup.khb"
    t0 = time.monotonic()
    made = cli(k, "backup", "create", str(out))
    create_s = time.monotonic() - t0
    t0 = time.monotonic()
    v = subprocess.run([str(KEYHOLD), "--json", "backup", "verify", str(out), "--master-key-file",
                        str(k.master)], capture_output=True, text=True, timeout=JOB_BOUND_S)
    verify_s = time.monotonic() - t0
    if v.returncode != 0:
        raise RuntimeError(f"backup verify failed: {v.stdout} {v.stderr}")
    res["backup"] = {"records": made["records"], "bytes": out.stat().st_size,
                     "create_s": create_s, "verify_s": verify_s}
    B.log(f"backup of {made['records']:,} records: {create_s:.1f} s, "
          f"{out.stat().st_size / 1e6:.0f} MB; verify {verify_s:.1f} s")


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def report(res: dict) -> str:
    idle = res["idle_rps"]
    lo, al, un, bk = res["loaded"], res["alone"], res["unseal"], res["backup"]
    ratio = lo["rps"] / idle
    L = [
        "# keyhold lifecycle benchmark",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {B.work_tree_rev()}, "
        f"{B.NCPU} CPUs, keyholdd CPUs: {CPUS_MODE}, {B.THREADS} worker thread(s), "
        f"{RECORDS:,} records, {B.USERS:,} users with tokens.",
        "",
        "| what | measured | target | |",
        "|---|---|---|---|",
        f"| re-encryption of {lo['job']['moved']:,} records under GET load | {lo['seconds']:.1f} s "
        f"({lo['job']['moved'] / lo['seconds']:,.0f} records/s) | <= 20 s for 1,000,000 | "
        f"{verdict(lo['seconds'] * 1000000 / max(1, lo['job']['moved']) <= 20)} |",
        f"| GET rate while that job ran | {lo['rps']:,.0f}/s = **{ratio:.2f} x** the idle "
        f"{idle:,.0f}/s | >= 0.80 x | {verdict(ratio >= 0.8)} |",
        f"| re-encryption of {al['job']['moved']:,} records, no load | {al['seconds']:.1f} s "
        f"({al['job']['moved'] / al['seconds']:,.0f} records/s) | (for reference) | |",
        f"| unseal with {un['versions']} key versions | {un['median_ms']:.1f} ms median, "
        f"{un['max_ms']:.1f} ms max of 5 | <= 100 ms | {verdict(un['median_ms'] <= 100)} |",
        f"| backup create of {bk['records']:,} records, serving | {bk['create_s']:.1f} s, "
        f"{bk['bytes'] / 1e6:.0f} MB | (measured) | |",
        f"| backup verify | {bk['verify_s']:.1f} s | (measured) | |",
        "",
        f"The GET run under load lasted {lo['window']} s, started once the rekey was answered "
        f"(the job running), and the job {lo['seconds']:.1f} s: "
        + ("every request of the run was served while the job ran." if lo['seconds'] >= lo['window']
           else "the job ended first, so part of the run was at the idle rate (ratio flattered)."),
        "",
    ]
    return "\n".join(L)


def main() -> int:
    for p in (B.KEYHOLDD, KEYHOLD, SEEDER):
        if not p.exists():
            B.log(f"{p} is missing (bench/run builds it)")
            return 1
    B.WORK = pathlib.Path(os.environ.get("BENCH_WORKDIR_LIFECYCLE") or HERE / ".work-lifecycle")
    if B.WORK.exists():
        shutil.rmtree(B.WORK)
    B.WORK.mkdir(parents=True)
    if B.PINNED:
        os.sched_setaffinity(0, B.CLIENT_CPUS)
    res: dict = {}
    B.log(f"minting {B.USERS} RS256 tokens")
    jwks, tokens = B.make_tokens(B.WORK)
    k = reencryption(res, jwks, tokens)
    backup(res, k)
    k.stop()
    unseal(res, jwks)
    text = report(res)
    B.write_results(RESULTS, text, res)
    return 0


if __name__ == "__main__":
    B.run_main(main)
