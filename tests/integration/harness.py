"""Process and HTTP helpers for the integration tests: the test issuer and keyholdd as child
processes, and a small HTTP(S) client that returns status, headers and body."""
import base64
import http.client
import json
import os
import pathlib
import re
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest

import storage
import tokens

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
START_TIMEOUT_S = 30      # bound on waiting for a port file (not a performance assertion)
REQUEST_TIMEOUT_S = 15


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("KEYHOLD_BUILD", REPO / "build-release")).resolve()


def keyholdd_binary() -> pathlib.Path:
    return build_dir() / "src" / "daemon" / "keyholdd"


def root_args() -> list[str]:
    """--allow-root when the tests run as root (CI on a throwaway machine): keyholdd started
    as root without [server] user refuses to run otherwise. Harmless when the daemon ends up
    as another user (a prefix such as setpriv)."""
    return ["--allow-root"] if os.geteuid() == 0 else []


def keyholdd_cmd(config_path, *args) -> list[str]:
    """The command line that runs the built keyholdd with config_path, as root too."""
    return [str(keyholdd_binary()), "--config", str(config_path), *root_args(), *args]


def sanitized_build() -> bool:
    """Whether the keyholdd under test is an ASan/UBSan build (meson's b_sanitize)."""
    intro = build_dir() / "meson-info" / "intro-buildoptions.json"
    opts = {o["name"]: o["value"] for o in json.loads(intro.read_text())}
    return opts.get("b_sanitize", "none") not in ("none", "")


KEYSTORES = ("file", "pkcs11")


def test_keystore() -> str:
    """The key store every Keyholdd of this run uses unless told otherwise:
    KEYHOLD_TEST_KEYSTORE=file (the default) or pkcs11 (each Keyholdd on its own fresh
    SoftHSM2 token; scripts/test runs the suite both ways)."""
    v = os.environ.get("KEYHOLD_TEST_KEYSTORE", "").strip() or "file"
    if v not in KEYSTORES:
        raise ValueError(f"KEYHOLD_TEST_KEYSTORE={v!r}: must be one of {', '.join(KEYSTORES)}")
    return v


def new_key() -> str:
    """A fresh 32-byte key connector key, standard base64 with padding (44 chars)."""
    return base64.b64encode(os.urandom(32)).decode()


def client_tls_context(ca_pem: pathlib.Path) -> ssl.SSLContext:
    # Trust ONLY the test CA: no system store, no SSL_CERT_FILE/SSL_CERT_DIR defaults
    # (ssl.create_default_context() would load those). Hostname checking stays on, so the
    # server certificate must carry the IP SAN 127.0.0.1.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca_pem))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def wait_port_file(path: pathlib.Path, proc: subprocess.Popen, what: str, log=None) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if text.endswith("\n") and text.strip().isdigit():
                return int(text)
        rc = proc.poll()
        if rc is not None:
            tail = log() if log else ""
            raise RuntimeError(f"{what} exited with {rc} before writing its port file\n{tail}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} wrote no port file within {START_TIMEOUT_S}s")


def stop_process(proc: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 10) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


# --------------------------------------------------------------------------------- HTTP


class Response:
    def __init__(self, status: int, reason: str, headers: http.client.HTTPMessage, body: bytes,
                 request: str):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.request = request

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        hdrs = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"<{self.request} -> {self.status} [{hdrs}] {self.body[:300]!r}>"


def assert_error(r: Response, status: int, code: str) -> dict:
    """A keyhold error: exact status, JSON {"message": str, "code": code}, application/json."""
    assert r.status == status, r
    ctype = (r.header("Content-Type") or "").split(";")[0].strip().lower()
    assert ctype == "application/json", r
    body = r.json()
    assert isinstance(body, dict), r
    assert body.get("code") == code, r
    assert isinstance(body.get("message"), str) and body["message"], r
    return body


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket (keyholdd's admin socket)."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Client:
    """HTTP(S) client for one server; every call opens its own connection unless a
    keep-alive session from session() is used. With unix_path, the server's admin socket."""

    def __init__(self, port: int, ctx: ssl.SSLContext | None, host: str = "127.0.0.1",
                 unix_path: str | None = None):
        self.host, self.port, self.ctx, self.unix_path = host, port, ctx, unix_path

    def connect(self) -> http.client.HTTPConnection:
        if self.unix_path is not None:
            return UnixHTTPConnection(self.unix_path, REQUEST_TIMEOUT_S)
        if self.ctx is not None:
            return http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                               timeout=REQUEST_TIMEOUT_S)
        return http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                token: str | None = None, json_body=None, conn=None) -> Response:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        own = conn is None
        c = self.connect() if own else conn
        try:
            c.putrequest(method, path, skip_accept_encoding=True)
            for k, v in hdrs.items():
                c.putheader(k, v)
            if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                            for k in hdrs):
                c.putheader("Content-Length", str(len(body)))
            c.endheaders(body)
            resp = c.getresponse()
            data = resp.read()
            return Response(resp.status, resp.reason, resp.headers, data, f"{method} {path}")
        finally:
            if own:
                c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def options(self, path, **kw):
        return self.request("OPTIONS", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def raw(self, data: bytes, read_limit: int = 1 << 20) -> bytes:
        """Sends raw bytes on a fresh connection and returns everything the server sends
        until it closes (or goes quiet for a second after answering)."""
        s = socket.create_connection((self.host, self.port), timeout=REQUEST_TIMEOUT_S)
        if self.ctx is not None:
            s = self.ctx.wrap_socket(s, server_hostname=self.host)
        try:
            s.sendall(data)
            out = b""
            while len(out) < read_limit:
                try:
                    if out:
                        s.settimeout(1.0)
                    chunk = s.recv(65536)
                except (socket.timeout, TimeoutError):
                    break
                except (ConnectionResetError, ssl.SSLError):
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            s.close()


def raw_status(data: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.[01] (\d{3})[ \r]", data)
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------------------ issuer


class Issuer:
    """A test OIDC issuer process (issuer.py)."""

    def __init__(self, workdir: pathlib.Path, pki, name: str, iss: str, prefix: str = "/identity",
                 port: int = 0):
        self.workdir = workdir
        self.want_port = port  # 0: any free port
        self.name = name
        self.keys_dir = workdir / "keys"
        self.port_file = workdir / "port"
        self.log_path = workdir / "issuer.log"
        self.prefix = prefix
        self.cert, self.key = pki.leaf(f"issuer-{name}")
        self.ca_pem = pki.ca_pem
        self._iss_arg = iss
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._keys: dict[str, object] = {}

    def start(self) -> "Issuer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "issuer.py"), "--port-file", str(self.port_file),
             "--cert", str(self.cert), "--key", str(self.key), "--issuer", self._iss_arg,
             "--path-prefix", self.prefix, "--keys-dir", str(self.keys_dir),
             "--port", str(self.want_port)],
            stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def wait(self) -> "Issuer":
        self.port = wait_port_file(self.port_file, self.proc, f"issuer {self.name}",
                                   lambda: self.log_path.read_text(errors="replace"))
        self.client = Client(self.port, client_tls_context(self.ca_pem))
        disc = self.client.get(self.prefix + "/.well-known/openid-configuration")
        assert disc.status == 200, disc
        self.iss = disc.json()["issuer"]
        return self

    @property
    def url(self) -> str:
        """The authority URL keyholdd is configured with (discovery lives under it)."""
        return f"https://127.0.0.1:{self.port}{self.prefix}"

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()

    def private_key(self, kid: str = "key-1"):
        if kid not in self._keys:
            from cryptography.hazmat.primitives import serialization
            pem = (self.keys_dir / f"{kid}.pem").read_bytes()
            self._keys[kid] = serialization.load_pem_private_key(pem, password=None)
        return self._keys[kid]

    def public_pem(self, kid: str = "key-1") -> bytes:
        from cryptography.hazmat.primitives import serialization
        return self.private_key(kid).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def token(self, sub: str, /, kid: str = "key-1", alg: str = "RS256", headers=None, **overrides) -> str:
        """A valid Bitwarden-style access token for sub (claims overridable)."""
        return tokens.mint(tokens.claims(sub, self.iss, **overrides), self.private_key(kid), kid,
                           alg, headers)

    def rotate(self, kid: str) -> None:
        r = self.client.post(self.prefix + "/_test/rotate", json_body={"kid": kid})
        assert r.status == 200, r

    def withdraw(self, kid: str) -> None:
        r = self.client.post(self.prefix + "/_test/withdraw", json_body={"kid": kid})
        assert r.status == 200, r

    def stats(self) -> dict:
        r = self.client.get(self.prefix + "/_test/stats")
        assert r.status == 200, r
        return r.json()


# ---------------------------------------------------------------------------- keyholdd


HSM_TOKEN = "keyhold-it"   # the token label of a Keyholdd's own SoftHSM2 token
HSM_SO_PIN = "1234"
_AUTO = object()


class Keyholdd:
    """One keyholdd process with its own data directory (database, key store, master key).

    tenants: {tenant id: {"issuer": Issuer, "cors_origins": "..." (optional), ...extra keys}}

    keystore: "file" (tenant keys in data/keystore under workdir/master.key) or "pkcs11"
    (tenant keys in a SoftHSM2 token); None: "pkcs11" if hsm is given, else
    KEYHOLD_TEST_KEYSTORE (test_keystore()). On pkcs11:
      hsm         a softhsm.SoftHsm (the `softhsm` fixture) whose token `token` is used (made
                  if that store has none by that label); None: the Keyholdd's own token store
                  in workdir/softhsm (its own SOFTHSM2_CONF and token directory, kept across
                  Keyholdds made on the same workdir), made on first use
      token       the token label (HSM_TOKEN)
      pin         the user PIN of a token made here (default: random)
      pin_file    the [keystore] pin_file; default workdir/hsm.pin (0600, the PIN and a
                  newline); None: no pin_file line (then the PIN must come from env,
                  KEYHOLD_KEYSTORE_PIN, or the server starts sealed)
      label_prefix  [keystore] key_label_prefix (default: per instance, from workdir's name)
    The secret that unseals either store: unseal_args(); the environment a CLI that opens
    the key store needs: cli_env().
    """

    def __init__(self, workdir: pathlib.Path, pki, tenants: dict, tls: bool = True,
                 threads: int = 2, cors_origins: str = "https://vault.example.test",
                 extra: str = "", env: dict | None = None, listen_port: int = 0,
                 args=(), prefix=(), preexec=None, binary=None, keystore: str | None = None,
                 hsm=None, token: str = HSM_TOKEN, pin: str | None = None, pin_file=_AUTO,
                 label_prefix: str | None = None, storage_lines: list[str] | None = None):
        self.workdir = workdir
        # the [storage] section's lines; None: the run's database (storage.config_lines())
        self.storage_lines = storage_lines
        # started as prefix + [binary, --config, file] + args, preexec run in the child
        self.args, self.prefix, self.preexec = list(args), list(prefix), preexec
        self.binary = binary
        self.listen_port = listen_port  # 0: the kernel picks one at each start
        self.pki = pki
        self.tenants = tenants
        self.tls = tls
        self.threads = threads
        self.cors_origins = cors_origins
        self.extra = extra
        self.env = env or {}
        self.data = workdir / "data"
        self.db_path = self.data / "keyhold.db"
        self.config_path = workdir / "keyhold.conf"
        self.port_file = workdir / "port"
        self.log_path = workdir / "keyholdd.log"
        self.admin_socket = workdir / "admin.sock"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.client: Client | None = None
        self._log = None
        self.data.mkdir(parents=True, exist_ok=True)
        (self.data / "keystore").mkdir(exist_ok=True)
        self.master_key = workdir / "master.key"
        if not self.master_key.exists():
            fd = os.open(self.master_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
        self.keystore = keystore or ("pkcs11" if hsm is not None else test_keystore())
        if self.keystore not in KEYSTORES:
            raise ValueError(f"keystore={self.keystore!r}")
        self.hsm = None
        self.pin_file = None
        self.secret_file = self.master_key  # what unseal_args() names
        if self.keystore == "pkcs11":
            self._setup_token(hsm, token, pin, pin_file, label_prefix)
        if tls:
            self.cert, self.key = pki.leaf(f"keyholdd-{workdir.name}")
        self.write_config()

    def _setup_token(self, hsm, token, pin, pin_file, label_prefix) -> None:
        from softhsm import SoftHsm
        self.token = token
        # one token per Keyholdd: the label prefix tells its keys apart when a test puts
        # several servers on one token of its own
        self.label_prefix = label_prefix or \
            "it-" + re.sub(r"[^A-Za-z0-9-]", "-", self.workdir.name)[-24:] + "-"
        self.secret_file = self.workdir / "hsm.pin"
        if hsm is None:
            hsm = SoftHsm(path=self.workdir / "softhsm")
            if self.secret_file.exists() and token in hsm.token_labels():
                # a Keyholdd made again on this workdir (a restart as a new object): same token
                hsm.tokens[token] = (HSM_SO_PIN, self.secret_file.read_text().rstrip("\n"))
        self.hsm = hsm
        if token not in hsm.tokens:
            hsm.init_token(token, so_pin=HSM_SO_PIN, pin=pin or "it-" + os.urandom(9).hex())
        self.pin = hsm.tokens[token][1]
        if not self.secret_file.exists():
            fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.pin + "\n")
        self.pin_file = self.secret_file if pin_file is _AUTO else pin_file

    def unseal_args(self) -> list[str]:
        """The `keyhold unseal` (and backup verify/restore) options that give this server's
        key store secret: the master key file, or the token's PIN for a pkcs11 store."""
        if self.keystore == "pkcs11":
            return ["--passphrase-file", str(self.secret_file)]
        return ["--master-key-file", str(self.master_key)]

    def backup_args(self) -> list[str]:
        """The `keyhold backup verify|restore` options that open this server's backups: the
        master key file, or for a pkcs11 store --config (the module, token, label prefix and
        pin_file of keyholdd's own configuration; run the CLI with store_env())."""
        if self.keystore == "pkcs11":
            return ["--config", str(self.config_path)]
        return self.unseal_args()

    def same_keystore(self) -> dict:
        """Keyholdd keyword arguments for another server on this one's key store: nothing for
        a file store (its master key is a file to copy), the same token, PIN and key labels
        for a pkcs11 store (a restored server needs the keys the backup names)."""
        if self.keystore != "pkcs11":
            return {}
        return {"keystore": "pkcs11", "hsm": self.hsm, "token": self.token,
                "label_prefix": self.label_prefix}

    def store_env(self) -> dict:
        """What a process opening this key store needs in its environment (SOFTHSM2_CONF)."""
        return {"SOFTHSM2_CONF": str(self.hsm.conf)} if self.hsm is not None else {}

    def cli_env(self) -> dict:
        """os.environ for a CLI that opens this key store offline (--config)."""
        return {**os.environ, **self.store_env()}

    def child_env(self) -> dict:
        """The environment keyholdd runs with: this one without KEYHOLD_*, the key store's
        (store_env()), then env."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHOLD_")}
        env.update(self.store_env())
        env.update(self.env)
        return env

    def share_store(self, other: "Keyholdd") -> None:
        """Points this Keyholdd at other's data folder and key store (the same master key,
        or the same token, PIN and key labels), for two processes on one folder. Call
        write_config() (or rewrite the config) afterwards."""
        self.data, self.db_path, self.master_key = other.data, other.db_path, other.master_key
        self.keystore, self.secret_file = other.keystore, other.secret_file
        if other.keystore == "pkcs11":
            self.hsm, self.token, self.pin = other.hsm, other.token, other.pin
            self.pin_file, self.label_prefix = other.pin_file, other.label_prefix

    def audit_public_pem(self, chain: str = "") -> str:
        """The public key (PEM) of an audit chain, as the running server gives it to the
        operator: tenant chain's, or the server's own for chain "" (made in the background
        at a chain's first start: awaited, bounded)."""
        path = "/server/audit/public-key" if chain == "" else \
            ("" if chain == "default" else f"/t/{chain}") + "/admin/audit/public-key"
        r = poll_until(lambda: (lambda x: x if x.status == 200 else None)(self.operator.get(path)),
                       timeout=10)
        assert r and r.status == 200, r
        return r.json()["pem"]

    def data_public_pem(self, tenant: str, version: int = 1) -> bytes:
        """The public half of a tenant key version, as anyone who can read the key store
        gets it: the file store's .pub file, or the token's public key object (readable
        without the PIN; pkcs11-tool, Debian's opensc)."""
        if self.keystore == "file":
            return (self.data / "keystore" / tenant / f"v{version}.pub").read_bytes()
        from cryptography.hazmat.primitives import serialization
        out = self.workdir / f"pub-{tenant}-v{version}.der"
        r = subprocess.run(["pkcs11-tool", "--module", self.hsm.module, "--token-label", self.token,
                            "--read-object", "--type", "pubkey", "--label",
                            f"{self.label_prefix}{tenant}-data-v{version}", "-o", str(out)],
                           env=self.cli_env(), capture_output=True, text=True,
                           timeout=REQUEST_TIMEOUT_S)
        assert r.returncode == 0 and out.exists(), r
        pub = serialization.load_der_public_key(out.read_bytes())
        return pub.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo)

    def key_present(self, tenant: str, version: int = 1) -> bool:
        """Whether the key store holds tenant key version `version` (its private key): the
        file store's key file, or the token's private key object (pkcs11-tool, logged in)."""
        if self.keystore == "file":
            return (self.data / "keystore" / tenant / f"v{version}.key").exists()
        r = subprocess.run(["pkcs11-tool", "--module", self.hsm.module, "--token-label", self.token,
                            "--login", "--pin", self.pin, "--list-objects", "--type", "privkey"],
                           env=self.cli_env(), capture_output=True, text=True,
                           timeout=REQUEST_TIMEOUT_S)
        assert r.returncode == 0, r
        want = f"{self.label_prefix}{tenant}-data-v{version}"
        return want in re.findall(r"^\s*label:\s*(.*?)\s*$", r.stdout, re.M)

    def oaep_sha1(self) -> bool:
        """Whether DEKs are wrapped with OAEP SHA-1 (SoftHSM2 2.6 has only that), not SHA-256."""
        return self.keystore == "pkcs11"

    def no_secret_config_text(self) -> str:
        """config_text() without the key store's secret (master_key_file, pin_file): a
        server that starts sealed until an operator unseals it."""
        return "\n".join(line for line in self.config_text().splitlines()
                         if not line.startswith(("master_key_file =", "pin_file ="))) + "\n"

    def keystore_config(self) -> list[str]:
        """The [keystore] section's lines."""
        if self.keystore == "file":
            return ["[keystore]", "driver = file", f"path = {self.data / 'keystore'}",
                    f"master_key_file = {self.master_key}", "rsa_bits = 2048"]
        lines = ["[keystore]", "driver = pkcs11", f"path = {self.data / 'keystore'}",
                 f"module = {self.hsm.module}", f"token_label = {self.token}",
                 f"key_label_prefix = {self.label_prefix}", "rsa_bits = 2048"]
        if self.pin_file is not None:
            lines.append(f"pin_file = {self.pin_file}")
        return lines

    # [server] replica (docs/audit.md "Replicas"); None: no such line, the unnamed replica.
    # One server restarted under other names leaves several chains per tenant in its
    # database, on either backend.
    server_replica: str | None = None

    def config_text(self) -> str:
        lines = ["[server]", f"listen = 127.0.0.1:{self.listen_port}", f"threads = {self.threads}",
                 f"port_file = {self.port_file}", f"admin_socket = {self.admin_socket}"]
        if self.server_replica is not None:
            lines.append(f"replica = {self.server_replica}")
        if self.tls:
            lines += [f"tls_cert = {self.cert}", f"tls_key = {self.key}"]
        if self.cors_origins:
            lines.append(f"cors_origins = {self.cors_origins}")
        lines += ["", "[storage]", *(self.storage_lines if self.storage_lines is not None
                                     else storage.config_lines(self.data, self.db_path)), ""]
        lines += self.keystore_config()
        for tid, t in self.tenants.items():
            # issuer_ca defaults to the test CA; a tenant's own value (None: unset) wins
            ca = t.get("issuer_ca", self.pki.ca_pem)
            lines += ["", f"[tenant.{tid}]", f"issuer = {t['issuer'].url}"]
            if ca is not None:
                lines.append(f"issuer_ca = {ca}")
            for k, v in t.items():
                if k not in ("issuer", "issuer_ca"):
                    lines.append(f"{k} = {v}")
        return "\n".join(lines) + "\n" + self.extra

    def write_config(self) -> None:
        self.config_path.write_text(self.config_text())

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def start(self) -> "Keyholdd":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.port_file.unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")
        env = self.child_env()
        self.started_env = env
        cmd = self.prefix + [str(self.binary or keyholdd_binary()), "--config",
                             str(self.config_path)] + root_args() + self.args
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=self.preexec)
        self.port = wait_port_file(self.port_file, self.proc, "keyholdd", self.log)
        ctx = client_tls_context(self.pki.ca_pem) if self.tls else None
        self.client = Client(self.port, ctx)
        self.operator = Client(0, None, unix_path=str(self.admin_socket))
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM) -> int | None:
        try:
            return stop_process(self.proc, sig)
        finally:
            if self._log:
                self._log.close()
                self._log = None

    def kill(self) -> int | None:
        return self.stop(signal.SIGKILL)

    def metrics(self) -> "Metrics":
        """/metrics, which only the operator (the admin socket) and metrics_listen serve."""
        r = self.operator.get("/metrics")
        assert r.status == 200, r
        return Metrics(r.body.decode())


# ----------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def serve(k: "Keyholdd", what: str = "keyholdd"):
    """Body of a fixture that owns a daemon: starts k, yields it, stops it with SIGTERM and
    fails unless it exits 0 (a crash or a sanitizer report shows up as another status).
    Use as `yield from serve(k)`."""
    try:
        k.start()
        yield k
    finally:
        rc = k.stop()
        if rc not in (None, 0):
            pytest.fail(f"{what} exited with {rc} on SIGTERM\n{k.log()}", pytrace=False)


def assert_key(r: Response, key: str) -> None:
    """A GET /user-keys success: 200, JSON, exactly {"key": key}."""
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").split(";")[0].strip() == "application/json", r
    assert r.json() == {"key": key}, r


def assert_empty_200(r: Response) -> None:
    """A POST/PUT /user-keys success: exactly 200 (Bitwarden clients reject 204), empty body."""
    assert r.status == 200, r
    assert r.body == b"", r


class Metrics:
    """Parsed Prometheus text exposition: samples as (name, labels dict, value)."""

    def __init__(self, text: str):
        self.text = text
        self.samples: list[tuple[str, dict, float]] = []
        self.types: dict[str, str] = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("# TYPE "):
                parts = line.split()
                if len(parts) >= 4:
                    self.types[parts[2]] = parts[3]
                continue
            if line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            assert m, f"unparsable metrics line: {line!r}"
            labels = dict(_LABEL.findall(m.group(2) or ""))
            self.samples.append((m.group(1), labels, float(m.group(3))))

    def select(self, name: str, **labels) -> list[tuple[dict, float]]:
        return [(lb, v) for n, lb, v in self.samples
                if n == name and all(lb.get(k) == v2 for k, v2 in labels.items())]

    def sum(self, name: str, pred=None, **labels) -> float:
        return sum(v for lb, v in self.select(name, **labels) if pred is None or pred(lb))

    def has(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.samples)


def poll_until(fn, timeout: float = 5.0, interval: float = 0.05):
    """Calls fn until it returns a truthy value or the bound expires; returns the last value.
    Used to wait for counters that are updated after the response is sent."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------- JavaScript

JS_DIR = REPO / "tests" / "js"
JS_INSTALL_TIMEOUT_S = 600
_node: list[pathlib.Path] = []


def pinned_node() -> pathlib.Path:
    """The Node.js binary pinned in tests/js/package-lock.json, installed on first use by
    tests/js/install.sh (scripts/test runs it up front). JavaScript test tools run on it, not
    on the machine's Node, so a bare Debian 12 (Node 18) runs them as this machine does."""
    if not _node:
        r = subprocess.run([str(JS_DIR / "install.sh")], capture_output=True, text=True,
                           timeout=JS_INSTALL_TIMEOUT_S)
        if r.returncode != 0:
            pytest.fail(f"tests/js/install.sh failed ({r.returncode}):\n{r.stdout}{r.stderr}",
                        pytrace=False)
        _node.append(pathlib.Path(r.stdout.strip().splitlines()[-1]))
    return _node[0]


def public_copy(*files) -> pathlib.Path:
    """Copies files into a fresh directory any user can read (0755), for tests that run a
    program as another user (nobody): the build and test trees may sit in a directory only
    their owner can enter (CI runs from a mktemp folder, mode 0700). The caller removes it
    (shutil.rmtree). Returns the directory; each file keeps its name."""
    import shutil
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix="kh-public-"))
    d.chmod(0o755)
    for f in map(pathlib.Path, files):
        dst = d / f.name
        shutil.copy2(f, dst)
        dst.chmod(0o755 if os.access(f, os.X_OK) else 0o644)
    return d
