#!/usr/bin/python3
"""GET and PUT /user-keys with keyholdd on PostgreSQL against keyholdd on SQLite, in one run
(issue 16's target: GET through one keyholdd on PostgreSQL >= 0.5 x keyholdd on SQLite).

Uses bench.py's pieces (tokens, keyholdd, wrk, CPU accounting) and its settings
(BENCH_DURATION, BENCH_CONNECTIONS, BENCH_USERS, BENCH_THREADS, BENCH_BUILD, ...); PostgreSQL
is a throw-away server (tests/integration/pgserver.py: fsync off, as in the tests, so the PUT
figures flatter PostgreSQL). Rounds A B B A per workload (BENCH_ROUNDS, 2); BENCH_STORAGE_MODES
("get put") picks the workloads. GET on PostgreSQL goes through each worker's pipelined read
connection (docs/storage.md), so keyholdd serves it at a rate the round trip does not cap; the
table's CPU column shows where the time goes. Prints a markdown table and writes it to
bench/results/storage.md (BENCH_RESULTS_STORAGE)."""
import os
import pathlib
import sys
import time

import bench
from bench import Keyholdd, log, make_tokens, seed_users, wrk

from pgserver import PgServer  # noqa: E402  (tests/integration, put on sys.path by bench)

ROUNDS = max(1, bench.env_int("BENCH_ROUNDS", 2))
MODES = [m for m in os.environ.get("BENCH_STORAGE_MODES", "get put").split()
         if m in ("get", "put")] or ["get", "put"]
RESULTS = pathlib.Path(os.environ.get("BENCH_RESULTS_STORAGE")
                       or bench.HERE / "results" / "storage.md")


class PgKeyholdd(Keyholdd):
    """keyholdd with [storage] driver = postgresql on database db of server pg."""

    def __init__(self, d, jwks, threads, pg: PgServer, db: str):
        super().__init__(d, jwks, threads)
        self.pg, self.pgdb = pg, db
        self.pwfile = d / "db.password"
        fd = os.open(self.pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pg.password + "\n")

    def write_config(self) -> pathlib.Path:
        conf = super().write_config()
        pg = self.pg
        text = conf.read_text().replace(
            f"driver = sqlite\npath = {self.db}\n",
            f"driver = postgresql\nurl = postgresql://{pg.user}@{pg.host}:{pg.port}/{self.pgdb}\n"
            f"password_file = {self.pwfile}\n")
        conf.write_text(text)
        return conf

    def pids(self) -> list[int]:
        return [self.proc.pid]


def main() -> int:
    bench.prepare()
    log(f"minting {bench.USERS} tokens")
    jwks, tokens = make_tokens(bench.WORK)
    with PgServer(settings={"max_connections": "100"}) as pg:
        pg.create_db("bench")
        servers = {"sqlite": Keyholdd(bench.WORK / "k-sqlite", jwks, bench.THREADS),
                   "postgresql": PgKeyholdd(bench.WORK / "k-pg", jwks, bench.THREADS, pg,
                                            "bench")}
        pg_pids = lambda: [pg.postmaster_pid()] + bench.children(pg.postmaster_pid())  # noqa: E731
        for name, k in servers.items():
            k.start()
            t0 = time.monotonic()
            rc = seed_users(k, tokens)
            log(f"{name}: seeded {bench.USERS} users in {time.monotonic() - t0:.1f} s (wrk {rc})")
            rc2 = seed_users(k, tokens, "prime")
            if rc or rc2:
                raise RuntimeError(f"seeding {name} failed ({rc}, {rc2})")
        res: dict = {}
        for mode in MODES:
            order = ["sqlite", "postgresql", "postgresql", "sqlite"] * ROUNDS
            for i, name in enumerate(order[:2 * ROUNDS]):
                k = servers[name]
                pids = k.pids() + (pg_pids() if name == "postgresql" else [])
                if bench.WARMUP:
                    wrk(k.url(), mode, tokens, pids, duration=bench.WARMUP, name=f"w-{mode}-{i}")
                r = wrk(k.url(), mode, tokens, pids, name=f"{mode}-{name}-{i}")
                log(f"{mode} {name}: {r.rps:,.0f} req/s, p99 {r.lat_ms('p99'):.2f} ms, "
                    f"errors {r.errors}, server CPU {r.server_cpu * 100:.0f}% "
                    f"(keyholdd{' + PostgreSQL' if name == 'postgresql' else ''})")
                res.setdefault((mode, name), []).append(r)
        for k in servers.values():
            k.stop()
    lines = ["| workload | storage | req/s (mean of runs) | p99 ms | server CPU per request (µs) | PostgreSQL / SQLite |",
             "|---|---|---|---|---|---|"]
    for mode in MODES:
        base = bench.mean_rps(res[(mode, "sqlite")])
        for name in ("sqlite", "postgresql"):
            runs = res[(mode, name)]
            rps = bench.mean_rps(runs)
            p99 = max(r.lat_ms("p99") for r in runs)
            us = sum(r.us_per_req for r in runs) / len(runs)
            ratio = f"{rps / base:.2f}" if name == "postgresql" else ""
            lines.append(f"| {mode.upper()} /user-keys | {name} | {rps:,.0f} | {p99:.2f} | "
                         f"{us:.0f} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# keyholdd on PostgreSQL against SQLite ({time.strftime('%Y-%m-%d')})\n\n"
                       f"{bench.USERS} users, {bench.CONNS} connections, {bench.THREADS} keyholdd "
                       f"thread(s), {bench.DURATION} s per run, {ROUNDS} runs per row, in the order "
                       "A B B A. Server CPU: keyholdd's, plus PostgreSQL's processes on its "
                       "rows.\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        bench.PROCS.stop_all()
    sys.exit(rc)
