#!/usr/bin/python3
"""The trusted-device benchmark, in one run, on this machine; bench/run runs it after
lifecycle.py (BENCH_DEVICES=0 leaves it out; BENCH_MAIN=0 BENCH_LIFECYCLE=0 runs it alone) and
docs/benchmarks.md ("Trusted devices") describes the method. Every figure is given as a ratio
to a reference measured in the same run, on the same server.

1. The unlock read: BENCH_DEVICE_MEMBERS members (2000), each with its own token, its own
   user key and one trusted device. wrk (keep-alive, bench.py's threads and connections)
   sends `POST /devices/{identifier}/retrieve-keys` as each member's trusted device, against
   keyholdd and against nginx `return 200`, and `GET /user-keys` of the same members against
   keyholdd: req/s and p99 as ratios to both.
2. The device list: each member gets two more trusted devices (three each); `GET /devices`
   against `GET /user-keys` (and the unlock read again, with three devices each).
3. Login with a device over HTTPS (keyholdd restarted with TLS on the same data), Python,
   one keep-alive connection for the new device and one for the trusted device:
   create (`POST /auth-requests`, anonymous) -> poll while pending -> approve from the trusted
   device (`PUT /auth-requests/{id}`) -> poll (the key is delivered); BENCH_LOGIN_ROUNDS
   rounds (300). Reference, each round: `GET /user-keys` on the trusted device's connection
   and nginx `return 200` over TLS on a keep-alive connection of its own.
4. Admin approval through the recovery key, over the admin socket (one keep-alive
   connection): `POST /organizations/default/auth-requests/{id}` with no key, so keyholdd
   decrypts the member's recovery enrolment in the key store (RSA-2048) and encrypts the user
   key to the request (RSA-2048), BENCH_APPROVALS times (200); reference, alternated with
   it: the same route with the approver's own `encryptedUserKey` (no key-store work).

Each phase is bounded: wrk by -d (and bench.py's kill after 30 s of overrun), the latency
phases by their count and by BENCH_DEVICES_BOUND seconds each (300), every request by a 30 s
timeout. Loopback only.

Settings (environment), besides bench.py's (BENCH_DURATION, BENCH_WARMUP, BENCH_THREADS,
BENCH_CONNECTIONS, BENCH_BUILD):
  BENCH_DEVICE_MEMBERS   members with a token and trusted devices (2000)
  BENCH_LOGIN_ROUNDS     login-with-device rounds (300)
  BENCH_APPROVALS        server-side admin approvals, and as many with the approver's key (200)
  BENCH_DEVICES_ROUNDS   rounds of the wrk workloads: each round measures each of them twice,
                         A B C C B A (1)
  BENCH_DEVICES_BOUND    seconds after which a latency phase stops short of its count (300)
  BENCH_DEVICES_RESULTS  where the table goes (bench/results/devices.md)
  BENCH_WORKDIR_DEVICES  scratch directory, emptied first (bench/.work-devices)
"""
import base64
import concurrent.futures
import http.client
import json
import math
import os
import pathlib
import shutil
import signal
import socket
import ssl
import statistics
import sys
import threading
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench as B  # noqa: E402  (bench/bench.py: servers, wrk, tokens)

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

MEMBERS = max(1, B.env_int("BENCH_DEVICE_MEMBERS", 2000))
LOGIN_ROUNDS = max(1, B.env_int("BENCH_LOGIN_ROUNDS", 300))
APPROVALS = max(1, B.env_int("BENCH_APPROVALS", 200))
ROUNDS = max(1, B.env_int("BENCH_DEVICES_ROUNDS", 1))
BOUND_S = max(1, B.env_int("BENCH_DEVICES_BOUND", 300))
RESULTS = pathlib.Path(os.environ.get("BENCH_DEVICES_RESULTS") or HERE / "results" / "devices.md")
SCRIPT = HERE / "devices.lua"
LIST_DEVICES = 3           # trusted devices per member for GET /devices
SETUP_CONNS = 8            # connections that register and trust devices (not measured)
KEY_POOL = 8               # RSA-2048 key pairs reused as device and requester keys
REQUEST_TIMEOUT_S = 30
ORG = "default"


# ------------------------------------------------------------------------ client crypto
# As tests/integration/test_devices.py and test_auth_requests.py make them: a Bitwarden
# client's EncStrings (type 4: RSA-OAEP SHA-1; type 2: AES-256-CBC + HMAC-SHA256).

sys.path.insert(0, str(HERE.parent / "tests" / "interop"))
from bwcrypto import b64, decrypt_type4 as open4, encrypt_type2 as type2, encrypt_type4 as type4  # noqa: E402,E501


class KeyPair:
    """An RSA-2048 key pair as a device or a login request has one. Making one takes about
    0.1 s here, so a pool of KEY_POOL is reused (the server only ever sees public keys and
    ciphertexts, and cannot tell)."""

    def __init__(self):
        self.priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pub = self.priv.public_key()
        self.spki = self.pub.public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        self.pkcs8 = self.priv.private_bytes(serialization.Encoding.DER,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
        self.spki_b64 = b64(self.spki)


def trust_values(user_key: bytes, kp: KeyPair) -> dict:
    """encryptedUserKey (type 4 to the device key), encryptedPublicKey (type 2 under the user
    key), encryptedPrivateKey (type 2 under the device key)."""
    device_key = os.urandom(64)
    return {"encryptedUserKey": type4(kp.pub, user_key),
            "encryptedPublicKey": type2(user_key, kp.spki),
            "encryptedPrivateKey": type2(device_key, kp.pkcs8)}


def access_code() -> str:
    return base64.b32encode(os.urandom(15)).decode()


# -------------------------------------------------------------------------------- members


class Member:
    def __init__(self, sub: str, token: str):
        self.sub, self.token = sub, token
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        self.email = claims["email"]
        self.user_key = os.urandom(64)
        self.trusted: list[str] = []    # identifiers of the trusted devices, the first is "this one"
        self.new_device: str | None = None

    def auth(self, **extra) -> dict:
        return {"Authorization": f"Bearer {self.token}", **extra}


# ----------------------------------------------------------------------------------- HTTP


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Conn:
    """One keep-alive connection (HTTP, HTTPS or the admin socket). A request on a connection
    the server has closed is sent again once on a new one; reconnects are counted."""

    def __init__(self, port: int = 0, ctx: ssl.SSLContext | None = None, unix: str | None = None):
        self.port, self.ctx, self.unix = port, ctx, unix
        self.c = None
        self.reconnects = -1   # the first connect is not a reconnect

    def _new(self):
        self.reconnects += 1
        if self.unix:
            return UnixConnection(self.unix, REQUEST_TIMEOUT_S)
        if self.ctx:
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                               timeout=REQUEST_TIMEOUT_S)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
        headers = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        for attempt in (0, 1):
            if self.c is None:
                self.c = self._new()
            try:
                self.c.request(method, path, body=body, headers=headers)
                r = self.c.getresponse()
                data = r.read()
                if r.will_close:
                    self.close()
                return r.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    ssl.SSLEOFError, http.client.CannotSendRequest):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def ok(status: int, data: bytes, what: str) -> dict:
    if status != 200:
        raise RuntimeError(f"{what}: {status} {data[:500]!r}")
    return json.loads(data) if data else {}


def parallel(port: int, ctx, members: list[Member], fn, what: str) -> None:
    """fn(conn, member) for every member over SETUP_CONNS keep-alive connections (setup,
    not measured)."""
    local = threading.local()
    conns: list[Conn] = []
    lock = threading.Lock()

    def one(m: Member):
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = Conn(port, ctx)
            with lock:
                conns.append(c)
        fn(c, m)

    t0 = time.monotonic()
    ex = concurrent.futures.ThreadPoolExecutor(SETUP_CONNS)
    try:
        deadline = t0 + BOUND_S
        for f in [ex.submit(one, m) for m in members]:
            f.result(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        # on an error, what has not started yet is dropped (a running request ends by its
        # timeout at the latest)
        ex.shutdown(wait=True, cancel_futures=True)
        for c in conns:
            c.close()
    B.log(f"{what}: {len(members)} members in {time.monotonic() - t0:.1f} s")


def register(c: Conn, m: Member, name: str) -> str:
    ident = str(uuid.uuid4())
    ok(*c.request("POST", "/devices", {"type": 8, "name": name, "identifier": ident},
                  m.auth()), "POST /devices")
    return ident


def add_trusted(pool: list[KeyPair], n: int):
    def fn(c: Conn, m: Member):
        for _ in range(n):
            ident = register(c, m, f"device-{len(m.trusted) + 1}")
            kp = pool[hash(ident) % len(pool)]
            d = ok(*c.request("PUT", f"/devices/{ident}/keys", trust_values(m.user_key, kp),
                              m.auth()), "PUT /devices/{identifier}/keys")
            if d.get("isTrusted") is not True:
                raise RuntimeError(f"device not trusted after PUT keys: {d}")
            m.trusted.append(ident)
    return fn


# ----------------------------------------------------------------------------------- wrk


def wrk_round(label: str, seq: list[tuple], results: dict) -> None:
    """seq: [(name, url, pids, script, mode, tokens)], measured in the order
    A B C ... C B A, ROUNDS times, each after a warm-up: a machine whose speed drifts
    weighs on each alike."""
    order = (seq + list(reversed(seq))) * ROUNDS
    for i, (name, url, pids, script, mode, tokens) in enumerate(order):
        if B.WARMUP:
            B.wrk(url, mode, tokens, pids, duration=B.WARMUP, script=script,
                  name=f"{label}-{name}-{i}-warmup")
        r = B.wrk(url, mode, tokens, pids, script=script, name=f"{label}-{name}-{i}")
        results.setdefault(name, []).append(r)
        B.log(f"{label} {name}: {r.rps:,.0f} req/s, p99 {r.lat_ms('p99'):.2f} ms, "
              f"errors {r.errors}")


def mean_rps(runs) -> float:
    return statistics.mean(r.rps for r in runs)


def mean_lat(runs, key: str) -> float:
    return statistics.mean(r.lat_ms(key) for r in runs)


# ------------------------------------------------------------------------ latency phases


def pct(samples: list[float], p: float) -> float:
    """Nearest-rank percentile: the ceil(p% of n)-th smallest (p99 of 300 samples is the 4th
    largest, of 200 the 3rd)."""
    s = sorted(samples)
    rank = math.ceil(p * len(s) / 100 - 1e-9)
    return s[max(0, min(len(s) - 1, rank - 1))]


def summary(samples: list[float]) -> dict:
    return {"n": len(samples), "median": statistics.median(samples), "p99": pct(samples, 99),
            "max": max(samples), "mean": statistics.mean(samples)}


def timed(conn: Conn, *args) -> tuple[float, int, bytes]:
    t0 = time.perf_counter()
    status, data = conn.request(*args)
    return (time.perf_counter() - t0) * 1000, status, data


def login_rounds(kt: B.Keyholdd, ngx: B.Nginx, ctx, members: list[Member],
                 pool: list[KeyPair]) -> dict:
    requester, approver = Conn(kt.port, ctx), Conn(kt.port, ctx)
    nginx = Conn(ngx.tls_port, ctx)
    steps = {k: [] for k in ("create", "pending", "approve", "deliver", "total",
                             "ref_user_keys", "ref_nginx")}
    deadline = time.monotonic() + BOUND_S
    done = 0
    tls = None
    try:
        for i in range(LOGIN_ROUNDS):
            if time.monotonic() > deadline:
                B.log(f"login rounds: bound of {BOUND_S} s reached after {done} rounds")
                break
            m = members[i % len(members)]
            kp = pool[i % len(pool)]
            code = access_code()
            body = {"email": m.email, "publicKey": kp.spki_b64, "deviceIdentifier": m.new_device,
                    "accessCode": code, "type": 0}
            ms, st, data = timed(requester, "POST", "/auth-requests", body, {"Device-Type": "8"})
            rid = ok(st, data, "POST /auth-requests")["id"]
            steps["create"].append(ms)
            if tls is None and requester.c is not None and requester.c.sock is not None:
                tls = f"{requester.c.sock.version()} {requester.c.sock.cipher()[0]}"
            poll = f"/auth-requests/{rid}/response?code={code}"
            ms, st, data = timed(requester, "GET", poll)
            if ok(st, data, "poll (pending)").get("status") != "pending":
                raise RuntimeError(f"poll before approval: {data[:300]!r}")
            steps["pending"].append(ms)
            # the trusted device's own work (not timed): the user key to the request's key
            answer = {"deviceIdentifier": m.trusted[0], "requestApproved": True,
                      "key": type4(kp.pub, m.user_key)}
            ms, st, data = timed(approver, "PUT", f"/auth-requests/{rid}", answer, m.auth())
            if ok(st, data, "PUT /auth-requests/{id}").get("status") != "approved":
                raise RuntimeError(f"approval: {data[:300]!r}")
            steps["approve"].append(ms)
            ms, st, data = timed(requester, "GET", poll)
            got = ok(st, data, "poll (approved)")
            steps["deliver"].append(ms)
            steps["total"].append(steps["create"][-1] + steps["approve"][-1] + ms)
            if open4(kp.priv, got.get("key")) != m.user_key:
                raise RuntimeError("the delivered key does not open as the member's user key")
            # references, same round: a plain authenticated read, and nginx over TLS
            ms, st, data = timed(approver, "GET", "/user-keys", None, m.auth(Accept="application/json"))
            ok(st, data, "GET /user-keys")
            steps["ref_user_keys"].append(ms)
            ms, st, data = timed(nginx, "GET", "/")
            ok(st, data, "nginx")
            steps["ref_nginx"].append(ms)
            done += 1
    finally:
        reconnects = requester.reconnects + approver.reconnects + nginx.reconnects
        for c in (requester, approver, nginx):
            c.close()
    out = {k: summary(v) for k, v in steps.items() if v}
    out["rounds"] = done
    out["tls"] = tls or "?"
    out["reconnects"] = max(0, reconnects)
    return out


def admin_request(c: Conn, m: Member, kp: KeyPair) -> tuple[str, str]:
    code = access_code()
    body = {"email": m.email, "publicKey": kp.spki_b64, "deviceIdentifier": m.new_device,
            "accessCode": code, "type": 2}
    d = ok(*c.request("POST", "/auth-requests/admin-request", body,
                      m.auth(**{"Device-Type": "8"})), "POST /auth-requests/admin-request")
    return d["id"], code


def approvals(kt: B.Keyholdd, ctx, members: list[Member], pool: list[KeyPair]) -> dict:
    """Server-side approvals (no key: the recovery key in the key store) alternated with
    approvals carrying the approver's encryptedUserKey (the same route without key-store
    work), each on a request just made; only the approval is timed. Every delivered key is
    checked, untimed."""
    member_conn = Conn(kt.port, ctx)
    sock = Conn(unix=str(kt.d / "admin.sock"))
    samples = {"server": [], "client": []}
    deadline = time.monotonic() + BOUND_S
    try:
        for i in range(APPROVALS):
            if time.monotonic() > deadline:
                B.log(f"approvals: bound of {BOUND_S} s reached after {i} pairs")
                break
            m = members[i % len(members)]
            for kind in (("server", "client") if i % 2 == 0 else ("client", "server")):
                kp = pool[(2 * i + (kind == "client")) % len(pool)]
                rid, code = admin_request(member_conn, m, kp)
                body = {"requestApproved": True}
                if kind == "client":
                    body["encryptedUserKey"] = type4(kp.pub, m.user_key)
                ms, st, data = timed(sock, "POST", f"/organizations/{ORG}/auth-requests/{rid}", body)
                if ok(st, data, f"approval ({kind})").get("status") != "approved":
                    raise RuntimeError(f"approval ({kind}): {st} {data[:300]!r}")
                samples[kind].append(ms)
                got = ok(*member_conn.request("GET", f"/auth-requests/{rid}/response?code={code}"),
                         "poll (admin-approved)")
                if open4(kp.priv, got.get("key")) != m.user_key:
                    raise RuntimeError(f"the {kind}-side approval's key does not open as the "
                                       "member's user key")
    finally:
        reconnects = member_conn.reconnects + sock.reconnects
        member_conn.close()
        sock.close()
    out = {k: summary(v) for k, v in samples.items() if v}
    out["reconnects"] = max(0, reconnects)
    return out


def enrol(recovery_pub):
    def fn(c: Conn, m: Member):
        ok(*c.request("PUT", f"/organizations/{ORG}/users/{m.sub}/reset-password-enrollment",
                      {"resetPasswordKey": type4(recovery_pub, m.user_key)}, m.auth()),
           "PUT reset-password-enrollment")
    return fn


def new_device(c: Conn, m: Member):
    m.new_device = register(c, m, "new")


# ---------------------------------------------------------------------------------- main


def check_routes(k: B.Keyholdd, m: Member) -> bool:
    """False if this keyholdd has no device routes (an older BENCH_REV)."""
    c = Conn(k.port)
    try:
        st, data = c.request("GET", "/devices", None, m.auth())
    finally:
        c.close()
    return st == 200


def main() -> int:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, B.on_signal)
    if not B.KEYHOLDD.exists():
        B.log(f"{B.KEYHOLDD} is missing (bench/run builds it)")
        return 1
    B.WORK = pathlib.Path(os.environ.get("BENCH_WORKDIR_DEVICES") or HERE / ".work-devices")
    if B.WORK.exists():
        shutil.rmtree(B.WORK)
    B.WORK.mkdir(parents=True)
    if B.PINNED:
        os.sched_setaffinity(0, B.CLIENT_CPUS)
    t_begin = time.monotonic()
    res: dict = {"machine": B.machine()}
    res["background"] = B.background_load()
    if res["background"] > 0.1:
        B.log(f"warning: other processes keep {res['background'] * 100:.0f}% of a CPU busy; "
              "the numbers will be noisy")

    B.log(f"minting {MEMBERS} RS256 tokens; {KEY_POOL} RSA-2048 key pairs")
    B.USERS = MEMBERS
    jwks, tokens = B.make_tokens(B.WORK)
    pki = B.TestPKI(B.WORK)
    cert, key = pki.leaf("bench-server")
    pool = [KeyPair() for _ in range(KEY_POOL)]
    members = []
    for line in tokens.read_text().splitlines():
        sub, tok, _ = line.split("\t")
        members.append(Member(sub, tok))

    kdir = B.WORK / "keyholdd"
    k = B.Keyholdd(kdir, jwks, B.THREADS)
    B.log("starting keyholdd")
    k.start()
    if not check_routes(k, members[0]):
        B.log(f"{B.KEYHOLDD} has no device routes: nothing to measure")
        k.stop()
        return 0
    B.log(f"storing {MEMBERS} user keys (PUT /user-keys, wrk)")
    rc = B.seed_users(k, tokens)
    if rc != 0:
        raise RuntimeError(f"seeding user keys failed ({rc}):\n"
                           + (B.WORK / "wrk-seed.out").read_text(errors="replace")[-2000:])
    parallel(k.port, None, members, add_trusted(pool, 1), "one trusted device each")
    devices_tsv = B.WORK / "devices.tsv"
    devices_tsv.write_text("".join(f"{m.sub}\t{m.token}\t{m.trusted[0]}\n" for m in members))
    # one unlock read by hand: the answer is the device's, as stored
    m = members[0]
    c = Conn(k.port)
    d = ok(*c.request("POST", f"/devices/{m.trusted[0]}/retrieve-keys", b"", m.auth()),
           "retrieve-keys")
    c.close()
    if d.get("object") != "protectedDevice" or not str(d.get("encryptedUserKey", "")).startswith("4."):
        raise RuntimeError(f"retrieve-keys answered {d}")

    ngx = B.Nginx(B.WORK / "nginx", B.THREADS, cert, key)
    ngx.start()

    wrk1: dict = {}
    B.log("1. unlock read: retrieve-keys (keyholdd, nginx) and GET /user-keys")
    wrk_round("unlock", [
        ("retrieve", k.url(), k.pids(), SCRIPT, "retrieve", devices_tsv),
        ("nginx", ngx.url(), ngx.pids(), SCRIPT, "retrieve", devices_tsv),
        ("user_keys", k.url(), k.pids(), None, "get", tokens),
    ], wrk1)

    parallel(k.port, None, members, add_trusted(pool, LIST_DEVICES - 1),
             f"{LIST_DEVICES - 1} more trusted devices each")
    c = Conn(k.port)
    listed = ok(*c.request("GET", "/devices", None, members[0].auth()), "GET /devices")["data"]
    c.close()
    if len(listed) != LIST_DEVICES or not all(x.get("isTrusted") for x in listed):
        raise RuntimeError(f"GET /devices listed {listed}")
    wrk2: dict = {}
    B.log(f"2. GET /devices ({LIST_DEVICES} devices each) and GET /user-keys")
    wrk_round("list", [
        ("list", k.url(), k.pids(), SCRIPT, "list", devices_tsv),
        ("user_keys", k.url(), k.pids(), None, "get", tokens),
        ("retrieve", k.url(), k.pids(), SCRIPT, "retrieve", devices_tsv),
    ], wrk2)
    res["wrk"] = {"unlock": wrk1, "list": wrk2}
    k.stop()

    # 3 and 4 over HTTPS: the same data, keyholdd restarted with the nginx certificate
    kt = B.Keyholdd(kdir, jwks, B.THREADS, tls=(cert, key, pki.ca_pem))
    kt.start()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pki.ca_pem))
    n_login = min(len(members), LOGIN_ROUNDS)
    login_members = members[:n_login]
    # the approvals' members follow the login ones when there are enough
    rest = members[n_login:] or members
    approval_members = rest[:min(len(rest), APPROVALS)]
    need_device = {m.sub: m for m in login_members + approval_members}
    parallel(kt.port, ctx, list(need_device.values()), new_device, "a new (untrusted) device each")
    c = Conn(kt.port, ctx)
    pk = ok(*c.request("GET", f"/organizations/{ORG}/public-key", None, members[0].auth()),
            "GET public-key")
    c.close()
    recovery_pub = serialization.load_der_public_key(base64.b64decode(pk["publicKey"]))
    parallel(kt.port, ctx, approval_members, enrol(recovery_pub), "account-recovery enrolment")

    B.log(f"3. login with a device: {LOGIN_ROUNDS} rounds over HTTPS")
    res["login"] = login_rounds(kt, ngx, ctx, login_members, pool)
    B.log("login: " + ", ".join(f"{s} {v['median']:.2f} ms" for s, v in res["login"].items()
                                if isinstance(v, dict)))
    B.log(f"4. admin approval over the admin socket: {APPROVALS} server-side, {APPROVALS} with a key")
    res["approvals"] = approvals(kt, ctx, approval_members, pool)
    B.log("approvals: " + ", ".join(f"{s} {v['median']:.2f} ms" for s, v in res["approvals"].items()
                                    if isinstance(v, dict)))
    kt.stop()
    ngx.stop()

    res["total_s"] = time.monotonic() - t_begin
    res["stop_failures"] = B.STOP_FAILURES
    text = report(res)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    (B.WORK / "results.json").write_text(json.dumps(res, indent=1, default=lambda o: getattr(o, "stats", str(o))))
    print(text)
    B.log(f"done in {res['total_s']:.0f} s; table written to {RESULTS}")
    return 0


# -------------------------------------------------------------------------------- report


def each(runs, fn) -> str:
    return ", ".join(fn(r) for r in runs)


def wrk_row(label: str, server: str, runs, ratio: str, p99_ratio: str) -> str:
    return (f"| {label} | {server} | {each(runs, lambda r: f'{r.rps:,.0f}')} | "
            f"{mean_rps(runs):,.0f} | {ratio} | {B.fmt_ms(mean_lat(runs, 'p50'))} | "
            f"{each(runs, lambda r: B.fmt_ms(r.lat_ms('p99')))} | {p99_ratio} | "
            f"{statistics.mean(r.us_per_req for r in runs):.1f} | "
            f"{sum(r.stats['bytes'] for r in runs) / sum(r.stats['requests'] for r in runs):,.0f} | "
            f"{max(r.other_cpu for r in runs) * 100:.0f}% | {sum(r.errors for r in runs)} |")


def report(res: dict) -> str:
    m = res["machine"]
    u, li = res["wrk"]["unlock"], res["wrk"]["list"]
    pin = ("keyholdd/nginx pinned to CPU 1, wrk and this script to CPU 0" if B.PINNED
           else "nothing pinned (1 CPU)")
    L = [
        f"# keyhold trusted-device benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"keyhold {m['rev']}, release build. Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['memory']}, Linux {m['kernel']}; database on {m['fs']}. nginx {m['nginx']}, "
        f"{m['wrk']}, {m['openssl']}.",
        f"Setup: {B.THREADS} server thread(s), {pin}; wrk -t{B.THREADS} -c{B.CONNS} "
        f"-d{B.DURATION}s after {B.WARMUP}s warm-up, keep-alive, plain HTTP on loopback; "
        f"{MEMBERS:,} members, each with its own RS256 token picked at random per request. "
        f"Other processes kept {res['background'] * 100:.0f}% of a CPU busy just before the run.",
        "",
        "## Unlock read and device list (wrk)",
        "",
        f"Each workload measured {2 * ROUNDS} times, in the order A B C C B A"
        + (f" ({ROUNDS} rounds)" if ROUNDS > 1 else "") + "; ratios are of the means (p99: "
        "of the mean p99s). `bytes/answer`: what wrk read per answer, headers included "
        "(nginx answers every request with the same small body).",
        "",
        "| workload | server | req/s, each run | mean | ratio | p50 ms | p99 ms, each run "
        "| p99 ratio | server µs CPU/req | bytes/answer | other CPU | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rk, ng, uk = u["retrieve"], u["nginx"], u["user_keys"]
    lbl = "`POST /devices/{identifier}/retrieve-keys`"
    L.append(wrk_row(f"{lbl}, 1 trusted device each", "keyholdd", rk,
                     f"**{mean_rps(rk) / mean_rps(ng):.2f} × nginx**, "
                     f"**{mean_rps(rk) / mean_rps(uk):.2f} × GET /user-keys**",
                     f"{mean_lat(rk, 'p99') / mean_lat(ng, 'p99'):.2f} × nginx, "
                     f"{mean_lat(rk, 'p99') / mean_lat(uk, 'p99'):.2f} × GET /user-keys"))
    L.append(wrk_row("the same requests", "nginx `return 200`", ng, "1.00", "1.00"))
    L.append(wrk_row("`GET /user-keys`, the same members", "keyholdd", uk,
                     f"{mean_rps(uk) / mean_rps(ng):.2f} × nginx",
                     f"{mean_lat(uk, 'p99') / mean_lat(ng, 'p99'):.2f} × nginx"))
    ls, uk2, rk3 = li["list"], li["user_keys"], li["retrieve"]
    L.append(wrk_row(f"`GET /devices`, {LIST_DEVICES} trusted devices each", "keyholdd", ls,
                     f"**{mean_rps(ls) / mean_rps(uk2):.2f} × GET /user-keys**",
                     f"{mean_lat(ls, 'p99') / mean_lat(uk2, 'p99'):.2f} × GET /user-keys"))
    L.append(wrk_row("`GET /user-keys` (same phase)", "keyholdd", uk2, "1.00", "1.00"))
    L.append(wrk_row(f"{lbl}, {LIST_DEVICES} trusted devices each", "keyholdd", rk3,
                     f"{mean_rps(rk3) / mean_rps(uk2):.2f} × GET /user-keys",
                     f"{mean_lat(rk3, 'p99') / mean_lat(uk2, 'p99'):.2f} × GET /user-keys"))
    lg = res["login"]
    ref = lg["ref_user_keys"]["median"]
    L += [
        "",
        f"## Login with a device (HTTPS, keep-alive, Python client, {lg['rounds']} rounds)",
        "",
        "Each round: a new device creates a login request (anonymous), polls once while it is "
        "pending, the member's trusted device approves it (`PUT`, the user key encrypted to "
        "the request's key beforehand, untimed), the new device polls and gets the key (checked "
        "to open as the member's user key, untimed). Then, as references in the same round, "
        "`GET /user-keys` on the trusted device's connection and nginx `return 200` over TLS "
        "on a connection of its own. Each step is one request's round trip from the client "
        f"(Python `http.client`, {lg['tls']}). Reconnects: " + str(lg["reconnects"]) + ".",
        "",
        "| step | median ms | p99 ms | max ms | median × GET /user-keys |",
        "|---|---:|---:|---:|---:|",
    ]
    names = [("create", "create: `POST /auth-requests` (anonymous)"),
             ("pending", "poll while pending: `GET /auth-requests/{id}/response`"),
             ("approve", "approve from the trusted device: `PUT /auth-requests/{id}`"),
             ("deliver", "poll, the key delivered"),
             ("total", "**create + approve + poll (delivered)**"),
             ("ref_user_keys", "reference: `GET /user-keys`, same connection as approve"),
             ("ref_nginx", "reference: nginx `return 200` over TLS")]
    for key_, label in names:
        s = lg.get(key_)
        if s:
            L.append(f"| {label} | {s['median']:.2f} | {s['p99']:.2f} | {s['max']:.2f} | "
                     f"{s['median'] / ref:.2f} × |")
    ap = res["approvals"]
    sv, cl = ap.get("server"), ap.get("client")
    L += [
        "",
        f"## Admin approval through the recovery key (admin socket, {sv['n'] if sv else 0} "
        "requests each)",
        "",
        "`POST /organizations/default/auth-requests/{id}` from the operator socket, one at a "
        "time on one keep-alive connection, each on an admin request the member had just made "
        "(untimed). Server-side: `{\"requestApproved\": true}`, keyholdd opens the member's "
        "recovery enrolment with the tenant's recovery key in the key store (RSA-2048 OAEP) and "
        "encrypts the user key to the request's public key (RSA-2048 OAEP). Reference, "
        "alternated with it: the same route with the approver's own `encryptedUserKey`. Every "
        "delivered key was checked to open as the member's user key. Reconnects: "
        + str(ap["reconnects"]) + ".",
        "",
        "| approval | median ms | p99 ms | max ms | approvals/s, one at a time | median ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s, label, ratio in ((sv, "server-side, through the recovery key", "server" if cl else None),
                            (cl, "with the approver's `encryptedUserKey` (reference)", None)):
        if not s:
            continue
        r = f"**{s['median'] / cl['median']:.2f} ×** the reference" if ratio else "1.00"
        L.append(f"| {label} | {s['median']:.2f} | {s['p99']:.2f} | {s['max']:.2f} | "
                 f"{1000 / s['mean']:,.0f} | {r} |")
    if sv and cl:
        L += ["", f"The key-store work of a server-side approval: {sv['median'] - cl['median']:.2f} ms "
              "(difference of the medians)."]
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
    sys.exit(rc)
