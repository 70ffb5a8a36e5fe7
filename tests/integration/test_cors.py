"""CORS (spec sections 4 and 5.4). The main keyholdd allows https://vault.example.test for
every tenant ([server] cors_origins) and https://vault.acme.test only for tenant acme
(configured with a trailing '/', which keyhold removes before its exact comparison)."""
import pytest

from conftest import ACME_ORIGIN, SERVER_ORIGIN
from harness import assert_error, new_key

REQ_HEADERS = "authorization,content-type,bitwarden-client-name,bitwarden-client-version,cache-control,pragma"


def preflight(client, path, origin, method="GET", headers=REQ_HEADERS):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=h)


def acx_headers(r) -> dict:
    return {k.lower(): v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def vary_has_origin(r) -> bool:
    return any(v.strip().lower() == "origin"
               for line in r.header_all("Vary") for v in line.split(","))


def split_list(v: str | None) -> list[str]:
    return [x.strip().lower() for x in (v or "").split(",") if x.strip()]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_preflight_allowed_origin(client, method):
    r = preflight(client, "/user-keys", SERVER_ORIGIN, method)
    assert r.status == 204, r
    assert r.header("Access-Control-Allow-Origin") == SERVER_ORIGIN, r
    assert r.header("Access-Control-Allow-Credentials") == "true", r
    assert split_list(r.header("Access-Control-Allow-Methods")) == [method.lower()], r
    assert split_list(r.header("Access-Control-Allow-Headers")) == split_list(REQ_HEADERS), r
    assert vary_has_origin(r), r
    assert r.header("Access-Control-Max-Age") is None, r
    assert r.body == b"", r


def test_preflight_needs_no_token_and_no_tenant_auth(client):
    r = preflight(client, "/t/acme/user-keys", SERVER_ORIGIN, "POST", "authorization,content-type")
    assert r.status == 204, r
    assert r.header("Access-Control-Allow-Origin") == SERVER_ORIGIN, r
    assert split_list(r.header("Access-Control-Allow-Headers")) == ["authorization", "content-type"], r


def test_preflight_without_request_headers(client):
    r = preflight(client, "/user-keys", SERVER_ORIGIN, "GET", headers=None)
    assert r.status == 204, r
    assert r.header("Access-Control-Allow-Origin") == SERVER_ORIGIN, r
    assert r.header("Access-Control-Allow-Credentials") == "true", r


@pytest.mark.parametrize("origin", [
    "https://evil.example",
    "http://vault.example.test",              # scheme differs
    "https://vault.example.test:443",         # exact string compare: port spelled out differs
    "https://vault.example.test.evil.example",
    "https://evilvault.example.test",
    "https://VAULT.EXAMPLE.TEST",
    "null",
    "https://vault.example.tes",
])
def test_preflight_disallowed_origin(client, origin):
    r = preflight(client, "/user-keys", origin, "POST")
    assert r.status == 204, r
    assert acx_headers(r) == {}, r


def test_tenant_origin_only_on_its_tenant(client):
    # acme's origin (configured as "https://vault.acme.test/") works on /t/acme ...
    r = preflight(client, "/t/acme/user-keys", ACME_ORIGIN, "GET")
    assert r.status == 204, r
    assert r.header("Access-Control-Allow-Origin") == ACME_ORIGIN, r
    assert r.header("Access-Control-Allow-Credentials") == "true", r
    # ... and not on the default tenant's routes
    r = preflight(client, "/user-keys", ACME_ORIGIN, "GET")
    assert r.status == 204, r
    assert acx_headers(r) == {}, r


def test_origin_with_trailing_slash_is_not_the_origin(client):
    # Config strips one trailing '/'; a request Origin is compared exactly.
    r = preflight(client, "/t/acme/user-keys", ACME_ORIGIN + "/", "GET")
    assert r.status == 204, r
    assert acx_headers(r) == {}, r


def _assert_cors_actual(r, origin):
    assert r.header("Access-Control-Allow-Origin") == origin, r
    assert r.header("Access-Control-Allow-Credentials") == "true", r
    assert vary_has_origin(r), r


def test_actual_requests_from_allowed_origin_carry_cors_on_every_status(client, default_issuer, user):
    o = {"Origin": SERVER_ORIGIN}
    r = client.get("/user-keys", headers=o)
    assert_error(r, 401, "missing_token")
    _assert_cors_actual(r, SERVER_ORIGIN)
    tok = default_issuer.token(user)
    r = client.get("/user-keys", headers=o, token=tok)
    assert_error(r, 404, "key_not_found")
    _assert_cors_actual(r, SERVER_ORIGIN)
    k = new_key()
    r = client.post("/user-keys", headers=o, token=tok, json_body={"key": k})
    assert r.status == 200 and r.body == b"", r
    _assert_cors_actual(r, SERVER_ORIGIN)
    r = client.get("/user-keys", headers=o, token=tok)
    assert r.status == 200 and r.json() == {"key": k}, r
    _assert_cors_actual(r, SERVER_ORIGIN)
    r = client.post("/user-keys", headers=o, token=tok, json_body={"key": k})
    assert_error(r, 400, "key_exists")
    _assert_cors_actual(r, SERVER_ORIGIN)
    r = client.get("/user-keys", headers=o, token=default_issuer.token(user, scope=["offline_access"]))
    assert_error(r, 403, "insufficient_scope")
    _assert_cors_actual(r, SERVER_ORIGIN)
    r = client.get("/alive", headers=o)
    assert r.status == 200, r
    _assert_cors_actual(r, SERVER_ORIGIN)


def test_actual_request_on_acme_from_acme_origin(client, acme_issuer, user):
    r = client.get("/t/acme/user-keys", headers={"Origin": ACME_ORIGIN}, token=acme_issuer.token(user))
    assert_error(r, 404, "key_not_found")
    _assert_cors_actual(r, ACME_ORIGIN)


def test_actual_requests_from_disallowed_origin_get_no_cors(client, default_issuer, user):
    for origin in ("https://evil.example", ACME_ORIGIN):  # acme's origin is not the default's
        r = client.get("/user-keys", headers={"Origin": origin})
        assert_error(r, 401, "missing_token")
        assert acx_headers(r) == {}, r
        assert vary_has_origin(r), r  # spec 5.4: Vary: Origin always
        r = client.get("/user-keys", headers={"Origin": origin}, token=default_issuer.token(user))
        assert_error(r, 404, "key_not_found")
        assert acx_headers(r) == {}, r


def test_response_without_origin_has_no_acao(client):
    r = client.get("/alive")
    assert r.status == 200, r
    assert r.header("Access-Control-Allow-Origin") is None, r
