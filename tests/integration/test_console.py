"""The web console (docs/console.md) in a real browser: Debian's chromium, headless, driven by
playwright-core (tests/js/console-e2e.mjs, one scenario per test), against the real keyholdd
and a real OpenID provider (panva's oidc-provider with a login form, tests/js/oidc-provider.mjs).

The tenant's members come from the test issuer (the member API is called here, as their
devices would); its admins sign in to the console at the provider, the tenant's admin_issuer,
as the public client keyhold-console with PKCE. The provider's "admin" has the role
keyhold-admin, "visitor" none. A scenario fails on any console error or Content-Security-Policy
violation the browser reports. Screenshots of every page go to build-results/console-screenshots
(scripts/test keeps that folder as CI's artifacts)."""
import json
import os
import pathlib
import re
import subprocess
import urllib.request
import uuid

import pytest

import harness
from harness import assert_error
from test_auth_requests import Member, Requester, admin_request, open4, poll
from test_cli import run_cli
from test_oidc_provider import OidcProvider, serve_provider

# the console is one more admin client: the suite's backends change nothing for it
pytestmark = pytest.mark.default_backends

SCRIPT = harness.JS_DIR / "console-e2e.mjs"
CLIENT_ID = "keyhold-console"
ACCOUNTS = {
    "admin": {"password": "admin-pass", "claims": {"role": ["keyhold-admin"], "email": "admin@corp.test"}},
    "visitor": {"password": "visitor-pass", "claims": {"role": ["staff"]}},
}
SCENARIO_TIMEOUT_S = 300   # a hung browser ends the test (not a performance assertion)


def results_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("KEYHOLD_RESULTS", harness.REPO / "build-results"))


@pytest.fixture(scope="module")
def op(pki, tmp_path_factory) -> OidcProvider:
    yield from serve_provider(tmp_path_factory.mktemp("console-provider"), pki, ACCOUNTS)


@pytest.fixture(scope="module")
def k(pki, issuers, op, tmp_path_factory):
    d = harness.Keyholdd(tmp_path_factory.mktemp("keyholdd-console"), pki, {
        "default": {"issuer": issuers["default"], "admins": "role:keyhold-admin",
                    "admin_issuer": op.url, "admin_issuer_ca": pki.ca_pem,
                    "console_client_id": CLIENT_ID},
        "acme": {"issuer": issuers["acme"]},
    })
    yield from harness.serve(d)


@pytest.fixture(scope="module")
def console(k, op) -> str:
    """The console's URL, registered at the provider as the public client's redirect URI."""
    url = f"https://127.0.0.1:{k.port}/console/"
    register(op, CLIENT_ID, url)
    return url


def register(op, client_id, url):
    """Registers the console at url as the public client client_id."""
    body = json.dumps({"client_name": client_id, "redirect_uris": [url],
                       "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"],
                       "response_types": ["code"], "application_type": "web"}).encode()
    req = urllib.request.Request(op.url + "/reg", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=op.ctx, timeout=harness.REQUEST_TIMEOUT_S) as r:
        assert r.status == 201 and json.load(r)["client_id"] == client_id


def run_scenario(name: str, url: str, tmp_path, user="admin", allow_http=(),
                 **fields) -> subprocess.CompletedProcess:
    """Runs one scenario of console-e2e.mjs."""
    sc = {"name": name, "url": url, "user": user, "password": ACCOUNTS[user]["password"],
          "screenshots": str(results_dir() / "console-screenshots"), "downloads": str(tmp_path),
          "allow_http": list(allow_http), **fields}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(sc))
    return subprocess.run([str(harness.pinned_node()), str(SCRIPT), str(path)],
                          cwd=harness.JS_DIR, capture_output=True, text=True,
                          timeout=SCENARIO_TIMEOUT_S)


def run(name: str, url: str, tmp_path, **kw) -> dict:
    """Runs one scenario, which must pass; returns what it found."""
    p = run_scenario(name, url, tmp_path, **kw)
    assert p.returncode == 0, f"{name}:\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------- serving (no browser)


def test_console_is_served_with_strict_headers(k, op, issuers):
    r = k.client.get("/console/")
    assert r.status == 200 and r.header("Content-Type") == "text/html; charset=utf-8", r
    csp = r.header("Content-Security-Policy")
    directives = dict((d.split(" ", 1) + [""])[:2] for d in csp.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    # the admin issuer (where the console signs in) and the tenant's issuer, as origins
    assert directives["connect-src"] == \
        f"'self' {op.url} https://127.0.0.1:{issuers['default'].port}", csp
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert "unsafe" not in csp
    assert r.header("Referrer-Policy") == "no-referrer"
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert b'<script type="module" src="app.js">' in r.body and b"<style" not in r.body
    etag = r.header("ETag")
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag), etag
    # a cache revalidates and gets 304 with the same ETag
    assert r.header("Cache-Control") == "no-cache"
    r2 = k.client.get("/console/", headers={"If-None-Match": etag})
    assert r2.status == 304 and r2.body == b"" and r2.header("ETag") == etag, r2
    for name, ctype in (("app.js", "text/javascript"), ("console.css", "text/css"),
                        ("index.html", "text/html")):
        r = k.client.get("/console/" + name)
        assert r.status == 200 and r.header("Content-Type").startswith(ctype), r
        assert r.header("Content-Security-Policy") == csp
    # the same files under another tenant, with that tenant's issuer in connect-src
    r = k.client.get("/t/acme/console/")
    assert r.status == 200 and r.header("ETag") == etag
    assert f"connect-src 'self' https://127.0.0.1:{issuers['acme'].port};" in \
        r.header("Content-Security-Policy")


def test_unknown_console_paths_are_404_json(k):
    for path in ("/console/nope.js", "/console/a/b", "/console/..%2Fkeyhold.conf",
                 "/t/acme/console/x.html", "/console/.env"):
        assert_error(k.client.get(path), 404, "not_found")
    assert_error(k.client.get("/t/nosuch/console/"), 404, "unknown_tenant")
    r = k.client.post("/console/", body=b"")
    assert r.status == 405 and r.header("Allow") == "GET", r
    # without the slash: a redirect to the console (relative, so the tenant prefix stays)
    for prefix in ("", "/t/acme"):
        r = k.client.get(prefix + "/console")
        assert r.status == 308 and r.header("Location") == "console/", r


def test_config_json_names_the_issuer_and_the_client(k, op):
    r = k.client.get("/console/config.json")
    assert r.status == 200 and r.header("Cache-Control") == "no-store", r
    assert r.json() == {"tenant": "default", "issuer": op.url, "client_id": CLIENT_ID,
                        "audience": None}
    # a tenant without console_client_id: the console says it is not configured
    c = k.client.get("/t/acme/console/config.json").json()
    assert c["tenant"] == "acme" and c["client_id"] is None and c["issuer"].startswith("https://")


# ------------------------------------------------------------------------------- in chromium


def test_admin_signs_in_sees_keys_and_rekeys(k, issuers, console, tmp_path):
    tok = [issuers["default"].token(str(uuid.uuid4())) for _ in range(40)]
    for t in tok:
        r = k.client.post("/user-keys", json_body={"key": harness.new_key()},
                          headers={"Authorization": f"Bearer {t}"})
        assert r.status == 200, r
    found = run("keys", console, tmp_path)
    assert found["records_v1"] >= 40
    assert found["progress_value"] == "100"
    assert "100" in found["progress"], found
    # the server agrees: version 1 destroyed, 2 active with every record
    r = k.operator.get("/admin/keys").json()
    states = {v["version"]: v["state"] for v in r["versions"]}
    assert states[1] == "destroyed" and states[2] == "active", r
    assert r["job"]["state"] == "done"


def test_approvals_approve_deny_and_bulk(k, issuers, console, tmp_path):
    m = Member(k, issuers["default"], email="user@example.com")
    m.enrol()
    docs = [admin_request(m, Requester()) for _ in range(5)]
    # V5's phrase is the spec's; here each request has its own key: read the phrase the API lists
    listed = {d["id"]: d for d in k.operator.get("/organizations/default/auth-requests").json()["data"]}
    (a, ra), (b, rb), (c, rc), (d, rd), (e, re_) = docs
    run("approvals", console, tmp_path, approve=a["id"], fingerprint=listed[a["id"]]["fingerprint"],
        deny=b["id"], bulk_deny=[c["id"], d["id"]], bulk_approve=[e["id"]])
    # the approved devices unlock: the key they collect opens to the member's user key
    for doc, req in ((a, ra), (e, re_)):
        r = poll(k, doc["id"], req.code)
        assert r.status == 200 and r.json()["status"] == "approved", r
        assert open4(req.priv, r.json()["key"]) == m.user_key
    for doc, req in ((b, rb), (c, rc), (d, rd)):
        r = poll(k, doc["id"], req.code)
        assert r.json()["status"] == "denied", r
    assert k.operator.get("/organizations/default/auth-requests").json()["data"] == []


def test_untrust_a_device(k, issuers, console, tmp_path):
    from test_devices import trusted_device
    m = Member(k, issuers["default"])
    dev = trusted_device(k, m.tok)
    found = run("devices", console, tmp_path, allow_http=[404], member=m.sub, device=dev["id"])
    r = k.client.get(f"/devices/{dev['id']}", headers={"Authorization": f"Bearer {m.tok}"})
    assert r.status == 200 and r.json()["isTrusted"] is False, r
    assert "No such route." in found["error"], found


def test_audit_filter_and_export_verifies(k, console, tmp_path):
    found = run("audit", console, tmp_path, action="key.status")
    assert found["export_name"] == "audit-default.jsonl"
    pem = tmp_path / "audit.pem"
    pem.write_text(k.audit_public_pem("default"))
    p = run_cli("audit", "verify", found["export"], "--public-key", pem, "--first-seq", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = pathlib.Path(found["export"]).read_text().splitlines()
    assert len(lines) >= found["filtered"] and json.loads(lines[0])["seq"] == 1


def test_audit_page_merges_every_replicas_chain(pki, issuers, op, tmp_path):
    """One database with the unnamed replica's chain and node-a's (one server restarted under
    that name): the page lists both chains' records by time, each naming its replica, and
    its export holds both chains and verifies."""
    client = CLIENT_ID + "-replicas"
    d = harness.Keyholdd(tmp_path / "k", pki, {
        "default": {"issuer": issuers["default"], "admins": "role:keyhold-admin",
                    "admin_issuer": op.url, "admin_issuer_ca": pki.ca_pem,
                    "console_client_id": client}})
    d.write_config()
    d.start()
    member = str(uuid.uuid4())
    tok = issuers["default"].token(member)
    try:
        assert d.client.post("/user-keys", token=tok, json_body={"key": harness.new_key()}).status == 200
    finally:
        assert d.stop() == 0
    d.server_replica = "node-a"
    d.write_config()
    d.start()
    try:
        assert d.client.get("/user-keys", token=tok).status == 200
        url = f"https://127.0.0.1:{d.port}/console/"
        register(op, client, url)
        # the member's read is in node-a's chain before the page is read
        assert harness.poll_until(lambda: any(
            x["action"] == "read" for x in d.operator.get(
                "/admin/audit?last=100&replica=node-a").json()["records"]), timeout=10)
        found = run("audit_replicas", url, tmp_path)
        pem = tmp_path / "audit.pem"
        pem.write_text(d.audit_public_pem("default"))
    finally:
        assert d.stop() == 0
    # both chains, newest first by time; the unnamed one's rows say so
    assert "Replica" in found["header"], found
    replicas = {r["replica"] for r in found["rows"]}
    assert replicas == {"", "node-a"}, found
    assert all(r["shown"] == (r["replica"] or "unnamed") for r in found["rows"]), found
    assert "node-a" in found["checkpoint"] and "unnamed" in found["checkpoint"], found
    recs = [json.loads(x) for x in pathlib.Path(found["export"]).read_text().splitlines()]
    by = {}
    for x in recs:
        by.setdefault(x.get("replica", ""), []).append(x)
    assert set(by) == {"", "node-a"}
    for chain in by.values():
        assert [x["seq"] for x in chain] == list(range(1, len(chain) + 1))
    order = {(x.get("replica", ""), x["seq"]): (x["time"], x.get("replica", ""), x["seq"]) for x in recs}
    keys = [order[(r["replica"], r["seq"])] for r in found["rows"]]
    assert keys == sorted(keys, reverse=True), found
    p = run_cli("audit", "verify", found["export"], "--public-key", pem)
    assert p.returncode == 0, p.stdout + p.stderr


def test_non_admin_is_refused(console, tmp_path):
    found = run("not_admin", console, tmp_path, user="visitor", allow_http=[403])
    assert "Not an administrator" in found["text"]


def test_a_csp_violation_fails_the_scenario(console, tmp_path):
    """The guard of every scenario above: an inline script is blocked by the policy, and the
    browser's report of it fails the run."""
    p = run_scenario("csp_probe", console, tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "CSP violation: script-src" in p.stderr, p.stderr
    assert "inline ran" not in p.stdout


def test_every_page_at_desktop_and_phone_width(console, op, tmp_path):
    found = run("tour", console, tmp_path)
    assert found["health"] == "ready" and found["issuer"] == op.url
    assert "signed out" in found["signed_out"]
