"""Interoperability with a real OpenID Connect provider: panva's oidc-provider (npm, version
pinned in tests/js/package-lock.json), run by tests/js/oidc-provider.mjs over HTTPS on the
pinned Node.js (harness.pinned_node).

keyholdd discovers the provider from its issuer URL, fetches its JWKS, and verifies access
tokens the provider issued through the client_credentials grant: JWT access tokens (typ
at+jwt, RS256) for resource urn:keyhold, sub = the client id (one client per user GUID),
scope "api", amr ["external"]. The tenant is configured with audience = urn:keyhold, so the
aud claim is checked as well.

This module overrides the `keyholdd` fixture with its own daemon (one tenant, the provider),
so conftest's per-module liveness check applies to that daemon.
"""
import base64
import json
import pathlib
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

import harness
from harness import Keyholdd, assert_empty_200, assert_error, assert_key, client_tls_context, new_key, stop_process, wait_port_file

PROVIDER = harness.JS_DIR / "oidc-provider.mjs"
RESOURCE = "urn:keyhold"

# One client per user; carol authenticates with client_secret_post, the others with
# client_secret_basic.
USERS = ("alice", "bob", "carol", "dave", "erin", "frank")


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token: str) -> tuple[dict, dict]:
    h, p, _ = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p))


class OidcProvider:
    """server.mjs as a child process, with a token endpoint client."""

    def __init__(self, workdir: pathlib.Path, pki, accounts: dict | None = None):
        """accounts: people who sign in through the login form (test_console.py),
        {"<username>": {"password", "claims"}}; see oidc-provider.mjs."""
        self.workdir = workdir
        self.pki = pki
        self.cert, self.key = pki.leaf("oidc-provider")
        self.port_file = workdir / "port"
        self.log_path = workdir / "oidc-provider.log"
        self.clients = {}
        for name in USERS:
            self.clients[name] = {
                "client_id": str(uuid.uuid4()),
                "client_secret": base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).decode(),
                "token_endpoint_auth_method":
                    "client_secret_post" if name == "carol" else "client_secret_basic",
            }
        self.clients_file = workdir / "clients.json"
        self.clients_file.write_text(json.dumps(list(self.clients.values())))
        self.accounts_args = []
        if accounts is not None:
            accounts_file = workdir / "accounts.json"
            accounts_file.write_text(json.dumps(accounts))
            self.accounts_args = ["--accounts-file", str(accounts_file)]
        self.ctx = client_tls_context(pki.ca_pem)
        self.proc = None
        self._log = None
        self.port = 0

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def start(self) -> "OidcProvider":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(harness.pinned_node()), str(PROVIDER), "--cert", str(self.cert),
             "--key", str(self.key), "--port-file", str(self.port_file),
             "--clients-file", str(self.clients_file), "--resource", RESOURCE,
             *self.accounts_args],
            cwd=harness.JS_DIR, stdout=self._log, stderr=subprocess.STDOUT)
        self.port = wait_port_file(self.port_file, self.proc, "oidc-provider", self.log)
        return self

    def stop(self) -> None:
        try:
            stop_process(self.proc)
        finally:
            if self._log:
                self._log.close()
                self._log = None

    @property
    def url(self) -> str:
        """The issuer URL: keyholdd's tenant `issuer`, and the tokens' iss."""
        return f"https://127.0.0.1:{self.port}"

    def get_json(self, url: str) -> dict:
        with urllib.request.urlopen(url, context=self.ctx, timeout=harness.REQUEST_TIMEOUT_S) as r:
            assert r.status == 200
            return json.load(r)

    def token_response(self, user: str, scope: str | None = "api",
                       resource: str | None = None) -> tuple[int, dict]:
        """POSTs a client_credentials request for user's client to the token endpoint."""
        c = self.clients[user]
        form = {"grant_type": "client_credentials"}
        if scope is not None:
            form["scope"] = scope
        if resource is not None:
            form["resource"] = resource
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if c["token_endpoint_auth_method"] == "client_secret_post":
            form.update(client_id=c["client_id"], client_secret=c["client_secret"])
        else:
            # RFC 6749 2.3.1: id and secret are form-urlencoded before Basic encoding.
            cred = (urllib.parse.quote(c["client_id"], safe="") + ":" +
                    urllib.parse.quote(c["client_secret"], safe=""))
            headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        endpoint = self.get_json(self.url + "/.well-known/openid-configuration")["token_endpoint"]
        req = urllib.request.Request(endpoint, data=urllib.parse.urlencode(form).encode(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, context=self.ctx,
                                        timeout=harness.REQUEST_TIMEOUT_S) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def token(self, user: str, **kw) -> str:
        status, body = self.token_response(user, **kw)
        assert status == 200, (status, body, self.log())
        assert body["token_type"] == "Bearer", body
        return body["access_token"]

    def sub(self, user: str) -> str:
        return self.clients[user]["client_id"]


def serve_provider(workdir: pathlib.Path, pki, accounts: dict | None = None):
    """A started OidcProvider for a fixture to yield from; stopped at teardown."""
    p = OidcProvider(workdir, pki, accounts)
    try:
        p.start()
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def op(pki, tmp_path_factory) -> OidcProvider:
    yield from serve_provider(tmp_path_factory.mktemp("oidc-provider"), pki)


@pytest.fixture(scope="module")
def keyholdd(pki, op, tmp_path_factory):
    """Overrides conftest's session daemon for this module: one tenant, the provider."""
    binary = harness.keyholdd_binary()
    if not binary.exists():
        pytest.fail(f"keyholdd not built: {binary} (set KEYHOLD_BUILD to a meson build dir)",
                    pytrace=False)
    k = Keyholdd(tmp_path_factory.mktemp("keyholdd-oidc-provider"), pki,
                 {"default": {"issuer": op, "audience": RESOURCE,
                              # oidc-provider sends scope as one RFC 8693 string
                              "accept_scope_string": "true"}})
    yield from harness.serve(k)


@pytest.fixture
def kc(keyholdd) -> harness.Client:
    return keyholdd.client






# ------------------------------------------------------------------------ preconditions


def test_provider_issues_what_keyhold_expects(op):
    """The provider's discovery and tokens are what the rest of this module relies on, so a
    change in oidc-provider's behaviour shows up here rather than as a puzzling 401/403."""
    disc = op.get_json(op.url + "/.well-known/openid-configuration")
    assert disc["issuer"] == op.url
    assert disc["jwks_uri"] == op.url + "/jwks"
    jwks = op.get_json(disc["jwks_uri"])
    assert [(k["kty"], k["alg"], k["use"]) for k in jwks["keys"]] == [("RSA", "RS256", "sig")]
    assert "d" not in jwks["keys"][0]  # public half only

    status, body = op.token_response("alice")
    assert status == 200, body
    assert (body["token_type"], body["scope"], body["expires_in"]) == ("Bearer", "api", 600)
    header, claims = jwt_parts(body["access_token"])
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": jwks["keys"][0]["kid"]}
    assert claims["iss"] == op.url
    assert claims["sub"] == op.sub("alice")
    assert claims["client_id"] == op.sub("alice")
    assert claims["aud"] == RESOURCE
    assert claims["scope"] == "api"
    assert claims["amr"] == ["external"]
    assert claims["exp"] - claims["iat"] == 600


def test_provider_refuses_a_wrong_client_secret(op):
    op.clients["frank"]["client_secret"], good = "wrong", op.clients["frank"]["client_secret"]
    try:
        status, body = op.token_response("frank")
    finally:
        op.clients["frank"]["client_secret"] = good
    assert (status, body.get("error")) == (401, "invalid_client")


# --------------------------------------------------------------------------- keyholdd


def test_health_ready(kc):
    r = kc.get("/health")
    assert r.status == 200, r
    assert r.json()["status"] == "ready", r


def test_user_key_round_trip(kc, op):
    tok = op.token("alice")
    assert_error(kc.get("/user-keys", token=tok), 404, "key_not_found")
    k1 = new_key()
    assert_empty_200(kc.post("/user-keys", token=tok, json_body={"key": k1}))
    assert_key(kc.get("/user-keys", token=tok), k1)
    # A second token for the same client is the same user.
    tok2 = op.token("alice", resource=RESOURCE)
    assert tok2 != tok
    assert_key(kc.get("/user-keys", token=tok2), k1)
    assert_error(kc.post("/user-keys", token=tok2, json_body={"key": new_key()}), 400, "key_exists")
    k2 = new_key()
    assert_empty_200(kc.put("/user-keys", token=tok2, json_body={"key": k2}))
    assert_key(kc.get("/user-keys", token=tok), k2)


def test_another_user_has_its_own_key(kc, op):
    bob, dave = op.token("bob"), op.token("dave")
    kb = new_key()
    assert_empty_200(kc.post("/user-keys", token=bob, json_body={"key": kb}))
    assert_error(kc.get("/user-keys", token=dave), 404, "key_not_found")
    kd = new_key()
    assert_empty_200(kc.post("/user-keys", token=dave, json_body={"key": kd}))
    assert_key(kc.get("/user-keys", token=dave), kd)
    assert_key(kc.get("/user-keys", token=bob), kb)


def test_client_secret_post_client(kc, op):
    tok = op.token("carol")
    assert jwt_parts(tok)[1]["sub"] == op.sub("carol")
    k = new_key()
    assert_empty_200(kc.post("/user-keys", token=tok, json_body={"key": k}))
    assert_key(kc.get("/user-keys", token=tok), k)


def test_tampered_signature_is_invalid(kc, op):
    tok = op.token("erin")
    assert_error(kc.get("/user-keys", token=tok), 404, "key_not_found")  # the original is good
    h, p, s = tok.split(".")
    sig = bytearray(b64url_decode(s))
    sig[len(sig) // 2] ^= 0x01
    bad = f"{h}.{p}.{base64.urlsafe_b64encode(bytes(sig)).rstrip(b'=').decode()}"
    assert_error(kc.get("/user-keys", token=bad), 401, "invalid_token")


def test_tampered_payload_is_invalid(kc, op):
    """Erin's signed token with its sub changed to bob's: the signature no longer matches."""
    tok = op.token("erin")
    h, p, s = tok.split(".")
    claims = json.loads(b64url_decode(p))
    claims["sub"] = op.sub("bob")
    p2 = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode())
    bad = f"{h}.{p2.rstrip(b'=').decode()}.{s}"
    assert_error(kc.get("/user-keys", token=bad), 401, "invalid_token")


def test_token_without_api_scope_is_forbidden(kc, op):
    status, body = op.token_response("frank", scope=None)
    assert status == 200, body
    assert "scope" not in body, body
    claims = jwt_parts(body["access_token"])[1]
    assert "scope" not in claims and claims["sub"] == op.sub("frank"), claims
    assert_error(kc.get("/user-keys", token=body["access_token"]), 403, "insufficient_scope")
    assert_error(kc.post("/user-keys", token=body["access_token"], json_body={"key": new_key()}),
                 403, "insufficient_scope")
    # Nothing was stored by the refused POST.
    assert_error(kc.get("/user-keys", token=op.token("frank")), 404, "key_not_found")


def test_audience_is_checked_against_real_tokens(op, pki, tmp_path):
    """The same provider with a tenant expecting another audience: 401 for its tokens."""
    k = Keyholdd(tmp_path / "keyholdd-aud", pki, {"default": {"issuer": op, "audience": "urn:other"}})
    try:
        k.start()
        assert k.client.get("/health").status == 200
        assert_error(k.client.get("/user-keys", token=op.token("alice")), 401, "invalid_token")
    finally:
        rc = k.stop()
    assert rc == 0, k.log()
