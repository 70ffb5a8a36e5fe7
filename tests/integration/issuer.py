#!/usr/bin/python3
"""A test OpenID Connect issuer, run as its own process by the integration tests.

Serves over HTTPS (the test CA's leaf certificate):
  GET  <prefix>/.well-known/openid-configuration        discovery document
  GET  <prefix>/.well-known/openid-configuration/jwks   JWKS (RS256 key(s), one ES256 key)
  POST <prefix>/_test/rotate   body {"kid": "..."}       adds a new RS256 key to the JWKS
  POST <prefix>/_test/withdraw body {"kid": "..."}       removes the key with that kid
  GET  <prefix>/_test/stats                              {"discovery": n, "jwks": n} fetch counts

Like Bitwarden's identity server, the discovery document's "issuer" may differ from the
URL it is served at (--issuer http://identity while served at https://127.0.0.1:P/identity);
--issuer auto makes it the served URL. Private keys are written as PEM to --keys-dir
(<kid>.pem) so that the test process can mint tokens itself; a key's file exists before
the key appears in the JWKS. The bound port is written (decimal + newline, atomically) to
--port-file once the server accepts connections.
"""
import argparse
import base64
import json
import os
import pathlib
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm


def atomic_write(path: pathlib.Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ec_jwk(public_key) -> dict:
    """A P-256 public key as a JWK, x and y always 32 bytes (RFC 7518 6.2.1.2). Not
    ECAlgorithm.to_jwk: Debian's PyJWT 2.6 drops a coordinate's leading zero bytes (1 key in
    128), and keyholdd rightly skips such a key, which made this issuer's ES256 tokens fail
    now and then."""
    n = public_key.public_numbers()
    b64 = lambda v: base64.urlsafe_b64encode(v.to_bytes(32, "big")).rstrip(b"=").decode()  # noqa: E731
    return {"kty": "EC", "crv": "P-256", "x": b64(n.x), "y": b64(n.y)}


class State:
    def __init__(self, keys_dir: pathlib.Path):
        self.keys_dir = keys_dir
        self.lock = threading.Lock()
        self.jwks: list[dict] = []
        self.stats = {"discovery": 0, "jwks": 0}

    def add_rsa(self, kid: str) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._save(kid, key)
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
        with self.lock:
            self.jwks.append(jwk)

    def add_ec(self, kid: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self._save(kid, key)
        jwk = ec_jwk(key.public_key())
        jwk.update({"kid": kid, "use": "sig", "alg": "ES256"})
        with self.lock:
            self.jwks.append(jwk)

    def _save(self, kid: str, key) -> None:
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        atomic_write(self.keys_dir / f"{kid}.pem", pem)


def make_handler(state: State, prefix: str, issuer_ref: list):
    disc_path = prefix + "/.well-known/openid-configuration"
    jwks_path = disc_path + "/jwks"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet unless asked
            if os.environ.get("ISSUER_VERBOSE"):
                sys.stderr.write("issuer: " + fmt % args + "\n")

        def _send(self, status: int, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            base = issuer_ref[1]
            if path == disc_path:
                with state.lock:
                    state.stats["discovery"] += 1
                self._send(200, {
                    "issuer": issuer_ref[0],
                    "jwks_uri": base + "/.well-known/openid-configuration/jwks",
                    "authorization_endpoint": base + "/connect/authorize",
                    "token_endpoint": base + "/connect/token",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["api", "offline_access"],
                })
            elif path == jwks_path:
                with state.lock:
                    state.stats["jwks"] += 1
                    keys = list(state.jwks)
                self._send(200, {"keys": keys})
            elif path == prefix + "/_test/stats":
                with state.lock:
                    self._send(200, dict(state.stats))
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            if self.path == prefix + "/_test/rotate":
                kid = json.loads(raw or b"{}").get("kid")
                if not isinstance(kid, str) or not kid:
                    self._send(400, {"error": "kid required"})
                    return
                state.add_rsa(kid)
                self._send(200, {"kid": kid})
            elif self.path == prefix + "/_test/withdraw":
                kid = json.loads(raw or b"{}").get("kid")
                with state.lock:
                    before = len(state.jwks)
                    state.jwks = [k for k in state.jwks if k.get("kid") != kid]
                    gone = before - len(state.jwks)
                self._send(200 if gone else 404, {"removed": gone})
            else:
                self._send(404, {"error": "not_found"})

    return Handler


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--issuer", required=True, help='"iss" value, or "auto" for the served URL')
    ap.add_argument("--path-prefix", default="/identity")
    ap.add_argument("--port", type=int, default=0, help="the port to listen on (0: any free one)")
    ap.add_argument("--keys-dir", required=True)
    ap.add_argument("--kid", default="key-1", help="kid of the initial RS256 key")
    ap.add_argument("--ec-kid", default="ec-1", help="kid of an ES256 key ('' for none)")
    args = ap.parse_args()

    keys_dir = pathlib.Path(args.keys_dir)
    keys_dir.mkdir(parents=True, exist_ok=True)
    state = State(keys_dir)
    state.add_rsa(args.kid)
    if args.ec_kid:
        state.add_ec(args.ec_kid)

    prefix = args.path_prefix.rstrip("/")
    issuer_ref = [args.issuer, ""]
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state, prefix, issuer_ref))
    server.daemon_threads = True
    port = server.server_address[1]
    issuer_ref[1] = f"https://127.0.0.1:{port}{prefix}"
    if args.issuer == "auto":
        issuer_ref[0] = issuer_ref[1]

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)

    # The socket is listening (bound and listen() done by the server constructor), so the
    # port file may appear now.
    atomic_write(pathlib.Path(args.port_file), f"{port}\n".encode(), 0o644)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
