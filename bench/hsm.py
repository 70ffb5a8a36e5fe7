#!/usr/bin/python3
"""The HSM key store benchmark (issue 15): the pkcs11 key store on a SoftHSM2 token against
the file key store, in the same run, on this machine. bench/run runs it after import.py
(BENCH_HSM=0 leaves it out); docs/benchmarks.md describes the method. Every figure is a
ratio to the file store measured in the same run, round by round.

1. GET /user-keys: one keyholdd per store (bench.py's: one thread pinned to the server CPU,
   SQLite, a 3072-bit tenant key, the same users and tokens), wrk as bench.py runs it, in
   the order file pkcs11 pkcs11 file per round. Target: pkcs11 within 10% of file (DEKs are
   unwrapped once, at start; a GET never reaches the token).
2. Unseal and start with 10 key versions: each server is rekeyed 9 times; then, alternately,
   seal + POST /server/unseal over the admin socket (the file store's master key, the
   token's PIN) and a restart to the first /health 200.
3. Raw token operations per second through the key-store interface (kh-bench-keystore,
   bench/tools/keystore-ops.c, pinned to the server CPU): OAEP unwrap and RSA-PSS signature
   with RSA-2048/3072/4096 tenant keys, and the ECDSA P-256 audit signature, on a fresh file
   store and a fresh token.
Each of the three runs BENCH_HSM_ROUNDS times (3); the table gives every round's ratio and
the median.

Settings (environment), besides bench.py's (BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS,
BENCH_USERS, BENCH_THREADS, BENCH_BUILD):
  BENCH_HSM_ROUNDS       rounds of each measurement (3)
  BENCH_HSM_OPS_SECONDS  seconds per key store operation and round (2)
  BENCH_HSM_RSA_BITS     RSA sizes of the raw operations (2048,3072,4096)
  BENCH_HSM_RESULTS      where the table goes (bench/results/hsm.md)
  BENCH_WORKDIR_HSM      scratch directory, emptied first (bench/.work-hsm)
"""
import base64
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench as B  # noqa: E402  (bench/bench.py: servers, wrk, tokens)
import lifecycle as L  # noqa: E402  (bench/lifecycle.py: admin socket, CLI, job wait)
from softhsm import SoftHsm  # noqa: E402  (tests/integration/softhsm.py)

ROUNDS = max(1, B.env_int("BENCH_HSM_ROUNDS", 3))
OPS_SECONDS = max(1, B.env_int("BENCH_HSM_OPS_SECONDS", 2))
RSA_BITS = [b.strip() for b in os.environ.get("BENCH_HSM_RSA_BITS", "2048,3072,4096").split(",")
            if b.strip()]
RESULTS = pathlib.Path(os.environ.get("BENCH_HSM_RESULTS") or HERE / "results" / "hsm.md")
TOOL = B.BUILD / "kh-bench-keystore"
OPS_BOUND_S = 600          # bound on one kh-bench-keystore run (not a measurement)
VERSIONS = 10
STORES = ("file", "pkcs11")
PIN = "bench-" + os.urandom(6).hex()


class Tokens:
    """One SoftHSM2 token store for the run (SOFTHSM2_CONF in this process's environment,
    which every child inherits); a token per user of it."""

    def __init__(self, d: pathlib.Path):
        self.hsm = SoftHsm(path=d)
        os.environ["SOFTHSM2_CONF"] = str(self.hsm.conf)
        self.pin_file = d.parent / "hsm.pin"
        fd = os.open(self.pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(PIN + "\n")

    def token(self, label: str) -> list[str]:
        """Makes token label; returns the [keystore] lines that use it."""
        self.hsm.init_token(label, so_pin="1234", pin=PIN)
        return ["[keystore]", "driver = pkcs11", f"module = {self.hsm.module}",
                f"token_label = {label}", f"pin_file = {self.pin_file}",
                "key_label_prefix = bench-"]


class StoreKeyholdd(B.Keyholdd):
    """bench.py's keyholdd, on the file store or on a token of its own."""

    def __init__(self, d: pathlib.Path, jwks, store: str, tokens: Tokens):
        super().__init__(d, jwks, B.THREADS)
        self.store = store
        self.p11 = tokens.token(d.name) if store == "pkcs11" else None

    def write_config(self) -> pathlib.Path:
        conf = super().write_config()
        if self.p11:
            text = conf.read_text()
            file_store = "\n".join(["[keystore]", "driver = file", f"path = {self.data / 'keystore'}",
                                    f"master_key_file = {self.master}"]) + "\n"
            assert file_store in text, text
            conf.write_text(text.replace(file_store, "\n".join(self.p11) + "\n"))
        return conf

    def unseal_body(self) -> dict:
        if self.p11:
            return {"passphrase": PIN}
        return {"master_key": base64.b64encode(self.master.read_bytes()).decode()}


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ------------------------------------------------------------------------------- 1. GET


def get_rate(res: dict, servers: dict, tokens: pathlib.Path) -> None:
    per = {s: [] for s in STORES}
    ratios = []
    for rnd in range(ROUNDS):
        runs = {s: [] for s in STORES}
        for i, s in enumerate(list(STORES) + list(reversed(STORES))):
            k = servers[s]
            if B.WARMUP:
                B.wrk(k.url(), "get", tokens, k.pids(), duration=B.WARMUP, name=f"get-{s}-{rnd}-{i}-w")
            r = B.wrk(k.url(), "get", tokens, k.pids(), name=f"get-{s}-{rnd}-{i}")
            if r.errors:
                raise RuntimeError(f"GET on the {s} store: {r.errors} errors")
            runs[s].append(r)
            B.log(f"GET {s} round {rnd + 1}: {r.rps:,.0f} req/s, p99 {r.lat_ms('p99'):.2f} ms, "
                  f"{r.us_per_req:.1f} us CPU/req")
        for s in STORES:
            per[s].append({"rps": B.mean_rps(runs[s]),
                           "us": statistics.mean(r.us_per_req for r in runs[s]),
                           "p99": statistics.mean(r.lat_ms("p99") for r in runs[s])})
        ratios.append(per["pkcs11"][-1]["rps"] / per["file"][-1]["rps"])
    res["get"] = {"rounds": per, "ratios": ratios, "median": median(ratios)}


# --------------------------------------------------------------------- 2. unseal, start


def rekey_to(k: StoreKeyholdd, n: int) -> int:
    for _ in range(n - 1):
        v = L.cli(k, "key", "rekey")["version"]
        L.wait_job(k, v)
    status, keys = L.admin(k, "GET", "/admin/keys")
    if status != 200:
        raise RuntimeError(f"GET /admin/keys: {status} {keys}")
    return len(keys["versions"])


def unseal_and_start(res: dict, servers: dict) -> None:
    out = {s: {"unseal_ms": [], "start_ms": []} for s in STORES}
    out["versions"] = {s: rekey_to(servers[s], VERSIONS) for s in STORES}
    for rnd in range(ROUNDS):
        order = STORES if rnd % 2 == 0 else tuple(reversed(STORES))
        for s in order:
            k = servers[s]
            status, body = L.admin(k, "POST", "/server/seal")
            if status != 200:
                raise RuntimeError(f"seal on {s}: {status} {body}")
            t0 = time.perf_counter()
            status, body = L.admin(k, "POST", "/server/unseal", k.unseal_body())
            out[s]["unseal_ms"].append((time.perf_counter() - t0) * 1000)
            if status != 200 or body.get("sealed") is not False:
                raise RuntimeError(f"unseal on {s}: {status} {body}")
        for s in order:
            k = servers[s]
            k.stop()
            out[s]["start_ms"].append(k.start() * 1000)
        B.log("unseal " + ", ".join(f"{s} {out[s]['unseal_ms'][-1]:.1f} ms" for s in STORES)
              + "; start " + ", ".join(f"{s} {out[s]['start_ms'][-1]:.1f} ms" for s in STORES))
    res["unseal"] = out


# --------------------------------------------------------------------- 3. token operations


def store_config(d: pathlib.Path, store: str, tokens: Tokens) -> pathlib.Path:
    d.mkdir(parents=True)
    if store == "file":
        (d / "keystore").mkdir()
        master = d / "master.key"
        fd = os.open(master, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
        ks = ["[keystore]", "driver = file", f"path = {d / 'keystore'}", f"master_key_file = {master}"]
    else:
        ks = tokens.token(d.name)
    conf = d / "keyhold.conf"
    conf.write_text("\n".join(["[storage]", "driver = sqlite", f"path = {d / 'unused.db'}", "",
                               *ks, "", "[tenant.default]", f"issuer = {B.ISS}", ""]))
    return conf


def token_ops(res: dict, tokens: Tokens) -> None:
    rows: dict = {}   # (op, key) -> {store: [per_second per round]}
    gen: dict = {}    # key -> {store: [generate_ms]}
    for rnd in range(ROUNDS):
        order = STORES if rnd % 2 == 0 else tuple(reversed(STORES))
        for s in order:
            conf = store_config(B.WORK / f"ops-{s}-{rnd}", s, tokens)
            env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHOLD_")}
            p = B.PROCS.start([str(TOOL), str(conf), str(OPS_SECONDS), *RSA_BITS],
                              cpus=B.SERVER_CPUS, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, text=True)
            try:
                out, err = p.communicate(timeout=OPS_BOUND_S)
            finally:
                B.PROCS.stop(p, signal.SIGKILL)
            if p.returncode != 0:
                raise RuntimeError(f"kh-bench-keystore on {s} failed ({p.returncode}): {err}")
            for line in out.splitlines():
                o = json.loads(line)
                rows.setdefault((o["op"], o["key"]), {x: [] for x in STORES})[s].append(o["per_second"])
                if o["op"] == "sign":
                    gen.setdefault(o["key"], {x: [] for x in STORES})[s].append(o["generate_ms"])
            B.log(f"token operations on {s}, round {rnd + 1}: done")
    res["ops"] = {"rows": {f"{op} {key}": v for (op, key), v in rows.items()},
                  "generate": gen}


# ---------------------------------------------------------------------------------- table


def fmt_rounds(xs, f="{:,.0f}") -> str:
    return ", ".join(f.format(x) for x in xs)


def report(res: dict) -> str:
    g, u, o = res["get"], res["unseal"], res["ops"]
    gf, gp = g["rounds"]["file"], g["rounds"]["pkcs11"]
    L_ = [
        "# keyhold HSM key store benchmark (pkcs11 on SoftHSM2 vs the file store)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {B.work_tree_rev()}, "
        f"{B.NCPU} CPUs (shared, noisy: other processes kept "
        f"{res['background'] * 100:.0f}% of a CPU busy just before the run), "
        f"{B.THREADS} worker thread(s), {B.USERS:,} users, SoftHSM2 {res['softhsm']}. "
        f"{ROUNDS} rounds; each ratio is pkcs11 / file within one round; the verdict is on "
        "the median.",
        "",
        "| what | file store (per round) | pkcs11, SoftHSM2 (per round) | ratio pkcs11/file (per round) | median ratio | target |",
        "|---|---|---|---|---:|---|",
        f"| GET /user-keys, req/s (wrk -t{B.THREADS} -c{B.CONNS} -d{B.DURATION}s, mean of 2 runs a round) "
        f"| {fmt_rounds(x['rps'] for x in gf)} | {fmt_rounds(x['rps'] for x in gp)} "
        f"| {fmt_rounds(g['ratios'], '{:.2f}')} | **{g['median']:.2f} x** "
        f"| >= 0.90 x: {'**met**' if g['median'] >= 0.9 else '**not met**'} |",
        f"| GET, keyholdd µs CPU/request | {fmt_rounds((x['us'] for x in gf), '{:.1f}')} "
        f"| {fmt_rounds((x['us'] for x in gp), '{:.1f}')} "
        f"| {fmt_rounds((p['us'] / f['us'] for f, p in zip(gf, gp)), '{:.2f}')} "
        f"| {median([p['us'] / f['us'] for f, p in zip(gf, gp)]):.2f} x | |",
    ]
    for what, key in (("unseal (POST /server/unseal)", "unseal_ms"),
                      ("start to /health 200", "start_ms")):
        f, p = u["file"][key], u["pkcs11"][key]
        ratios = [b / a for a, b in zip(f, p)]
        L_.append(f"| {what} with {u['versions']['pkcs11']} key versions, ms "
                  f"| {fmt_rounds(f, '{:.1f}')} | {fmt_rounds(p, '{:.1f}')} "
                  f"| {fmt_rounds(ratios, '{:.2f}')} | {median(ratios):.2f} x "
                  f"(pkcs11 median {median(p):.1f} ms) | {'<= 100 ms (#13)' if key == 'unseal_ms' else ''} |")
    for name, v in o["rows"].items():
        f, p = v["file"], v["pkcs11"]
        ratios = [b / a for a, b in zip(f, p)]
        L_.append(f"| {name}, operations/s | {fmt_rounds(f)} | {fmt_rounds(p)} "
                  f"| {fmt_rounds(ratios, '{:.2f}')} | {median(ratios):.2f} x | |")
    for key, v in o["generate"].items():
        f, p = v["file"], v["pkcs11"]
        L_.append(f"| generate {key}, ms (one key a round: noisy) | {fmt_rounds(f, '{:.0f}')} "
                  f"| {fmt_rounds(p, '{:.0f}')} | {fmt_rounds((b / a for a, b in zip(f, p)), '{:.2f}')} "
                  f"| {median([b / a for a, b in zip(f, p)]):.2f} x | |")
    L_ += ["", f"Raw operations: `kh-bench-keystore` (bench/tools/keystore-ops.c) through "
           f"`keystore/keystore.h`, one thread pinned to the server CPU, {OPS_SECONDS} s per "
           "operation and round; unwrap = RSA-OAEP of a 32-byte DEK (the file store: SHA-256; "
           "SoftHSM2: SHA-1, the only OAEP it has), sign = RSA-PSS SHA-256 / ECDSA P-256 over a "
           "SHA-256 digest. Whole run: " f"{res['seconds']:.0f} s.", ""]
    return "\n".join(L_)


def main() -> int:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, B.on_signal)
    for p in (B.KEYHOLDD, L.KEYHOLD, TOOL):
        if not p.exists():
            B.log(f"{p} is missing (bench/run builds it)")
            return 1
    t_begin = time.monotonic()
    B.WORK = pathlib.Path(os.environ.get("BENCH_WORKDIR_HSM") or HERE / ".work-hsm")
    if B.WORK.exists():
        shutil.rmtree(B.WORK)
    B.WORK.mkdir(parents=True)
    if B.PINNED:
        os.sched_setaffinity(0, B.CLIENT_CPUS)
    res: dict = {"background": B.background_load()}
    tokens = Tokens(B.WORK / "softhsm")
    res["softhsm"] = subprocess.run(["softhsm2-util", "--version"], capture_output=True,
                                    text=True).stdout.strip()
    B.log(f"minting {B.USERS} RS256 tokens")
    jwks, toks = B.make_tokens(B.WORK)
    servers = {s: StoreKeyholdd(B.WORK / f"keyholdd-{s}", jwks, s, tokens) for s in STORES}
    try:
        for s, k in servers.items():
            B.log(f"starting keyholdd on the {s} store, storing {B.USERS:,} keys")
            k.start()
            for mode in ("seed", "prime"):
                if B.seed_users(k, toks, mode) != 0:
                    raise RuntimeError(f"{mode} on the {s} store failed")
        get_rate(res, servers, toks)
        unseal_and_start(res, servers)
    finally:
        for k in servers.values():
            k.stop()
    token_ops(res, tokens)
    res["seconds"] = time.monotonic() - t_begin
    text = report(res)
    B.write_results(RESULTS, text, res)
    return 1 if B.STOP_FAILURES else 0


if __name__ == "__main__":
    B.run_main(main)
