"""Every error of spec section 5.2 (and the transport-level ones of errors.def): exact status,
JSON {"message","code"} with Content-Type application/json, and the server keeps serving
correctly afterwards."""
import base64
import json

import pytest

from harness import assert_error, new_key, raw_status
import tokens


@pytest.fixture
def still_serves(client, default_issuer):
    """Run after an error case: a fresh user's GET -> 404, POST -> 200, GET -> the key."""
    def check():
        u = tokens.new_guid()
        tok = default_issuer.token(u)
        assert_error(client.get("/user-keys", token=tok), 404, "key_not_found")
        k = new_key()
        r = client.post("/user-keys", token=tok, json_body={"key": k})
        assert r.status == 200 and r.body == b"", r
        r = client.get("/user-keys", token=tok)
        assert r.status == 200 and r.json() == {"key": k}, r
    return check


def test_missing_token(client, still_serves):
    for method in ("GET", "POST", "PUT"):
        body = None if method == "GET" else {"key": new_key()}
        r = client.request(method, "/user-keys", json_body=body)
        assert_error(r, 401, "missing_token")
        www = r.header("WWW-Authenticate") or ""
        assert www.split(" ")[0].split(",")[0] == "Bearer", r
        assert "invalid_token" not in www, r
    still_serves()


def test_non_bearer_scheme_is_missing_token(client, default_issuer, user, still_serves):
    tok = default_issuer.token(user)
    r = client.get("/user-keys", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_error(r, 401, "missing_token")
    assert (r.header("WWW-Authenticate") or "").startswith("Bearer"), r
    # A valid JWT behind another scheme is still no bearer token.
    assert_error(client.get("/user-keys", headers={"Authorization": f"Token {tok}"}), 401, "missing_token")
    still_serves()


def test_invalid_token(client, still_serves):
    r = client.get("/user-keys", token="not-a-jwt")
    assert_error(r, 401, "invalid_token")
    www = r.header("WWW-Authenticate") or ""
    assert www.startswith("Bearer") and 'error="invalid_token"' in www, r
    still_serves()


def test_insufficient_scope(client, default_issuer, user, still_serves):
    assert_error(client.get("/user-keys", token=default_issuer.token(user, scope=["offline_access"])),
                 403, "insufficient_scope")
    assert_error(client.post("/user-keys", token=default_issuer.token(user, amr=["pwd"]),
                             json_body={"key": new_key()}), 403, "insufficient_scope")
    still_serves()


def test_invalid_subject(client, default_issuer, still_serves):
    assert_error(client.get("/user-keys", token=default_issuer.token("not-a-guid")), 403, "invalid_subject")
    still_serves()


def test_key_not_found(client, default_issuer, user, still_serves):
    r = client.get("/user-keys", token=default_issuer.token(user))
    assert_error(r, 404, "key_not_found")
    still_serves()


def test_key_exists(client, default_issuer, user, still_serves):
    tok = default_issuer.token(user)
    k = new_key()
    assert client.post("/user-keys", token=tok, json_body={"key": k}).status == 200
    assert_error(client.post("/user-keys", token=tok, json_body={"key": new_key()}), 400, "key_exists")
    assert_error(client.post("/user-keys", token=tok, json_body={"key": k}), 400, "key_exists")
    still_serves()


INVALID_BODIES = {
    "empty": b"",
    "not_json": b"key=abc",
    "truncated": b'{"key":"' + new_key().encode(),
    "trailing_garbage": b'{"key":"' + new_key().encode() + b'"} x',
    "array": b'["' + new_key().encode() + b'"]',
    "string": b'"' + new_key().encode() + b'"',
    "number": b"42",
    "null": b"null",
    "empty_object": b"{}",
    "other_member_only": b'{"kee":"' + new_key().encode() + b'"}',
    "key_null": b'{"key":null}',
    "key_number": b'{"key":12345}',
    "key_array": b'{"key":["' + new_key().encode() + b'"]}',
    "key_object": b'{"key":{"key":"' + new_key().encode() + b'"}}',
    "key_and_Key": json.dumps({"key": new_key(), "Key": new_key()}).encode(),
    "invalid_utf8": b'{"key":"\xff\xfe"}',
}


@pytest.mark.parametrize("name", sorted(INVALID_BODIES))
def test_invalid_body(client, default_issuer, user, still_serves, name):
    tok = default_issuer.token(user)
    for method in ("POST", "PUT"):
        r = client.request(method, "/user-keys", token=tok, body=INVALID_BODIES[name],
                           headers={"Content-Type": "application/json"})
        assert_error(r, 400, "invalid_body")
    assert_error(client.get("/user-keys", token=tok), 404, "key_not_found")
    still_serves()


_K32 = base64.b64encode(bytes(range(32))).decode()  # contains no '+' or '/'
_K32_URLSAFE = base64.b64encode(bytes([0xfb, 0xff] * 16)).decode()  # has '+' and '/'
INVALID_KEYS = {
    "empty": "",
    "not_base64": "this is not base64!!",
    "31_bytes": base64.b64encode(bytes(31)).decode(),
    "33_bytes": base64.b64encode(bytes(33)).decode(),
    "64_bytes": base64.b64encode(bytes(64)).decode(),
    "23_bytes_bitwarden_test_value": "dGVzdC1rZXktY29ubmVjdG9yLWtleQo=",
    "unpadded": _K32.rstrip("="),
    "urlsafe_alphabet": _K32_URLSAFE.replace("+", "-").replace("/", "_"),
    "embedded_newline": _K32[:20] + "\n" + _K32[20:],
    "embedded_space": _K32[:20] + " " + _K32[20:],
    "extra_padding": _K32 + "=",
    "trailing_junk": _K32 + "AAAA",
}


@pytest.mark.parametrize("name", sorted(INVALID_KEYS))
def test_invalid_key(client, default_issuer, user, still_serves, name):
    tok = default_issuer.token(user)
    for method in ("POST", "PUT"):
        r = client.request(method, "/user-keys", token=tok, json_body={"key": INVALID_KEYS[name]})
        assert_error(r, 400, "invalid_key")
    assert_error(client.get("/user-keys", token=tok), 404, "key_not_found")
    still_serves()


def test_valid_key_with_plus_and_slash_accepted(client, default_issuer, user):
    # Control for the url-safe case above: the same bytes in the standard alphabet work.
    assert "+" in _K32_URLSAFE and "/" in _K32_URLSAFE
    tok = default_issuer.token(user)
    assert client.post("/user-keys", token=tok, json_body={"key": _K32_URLSAFE}).status == 200
    assert client.get("/user-keys", token=tok).json() == {"key": _K32_URLSAFE}


def _padded_body(key: str, total: int) -> bytes:
    core = json.dumps({"key": key}).encode()
    assert len(core) < total
    return core[:-1] + b" " * (total - len(core)) + b"}"


def test_body_of_exactly_4096_bytes_accepted(client, default_issuer, user):
    tok = default_issuer.token(user)
    k = new_key()
    body = _padded_body(k, 4096)
    assert len(body) == 4096
    r = client.post("/user-keys", token=tok, body=body, headers={"Content-Type": "application/json"})
    assert r.status == 200 and r.body == b"", r
    assert client.get("/user-keys", token=tok).json() == {"key": k}


def test_body_too_large(client, default_issuer, user, still_serves):
    tok = default_issuer.token(user)
    for size in (4097, 64 * 1024):
        r = client.post("/user-keys", token=tok, body=_padded_body(new_key(), size),
                        headers={"Content-Type": "application/json"})
        assert_error(r, 413, "body_too_large")
    assert_error(client.get("/user-keys", token=tok), 404, "key_not_found")
    still_serves()


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/jsonx", "multipart/form-data; boundary=x",
                                   "text/json"])
def test_unsupported_media_type(client, default_issuer, user, still_serves, ctype):
    tok = default_issuer.token(user)
    hdrs = {} if ctype is None else {"Content-Type": ctype}
    for method in ("POST", "PUT"):
        r = client.request(method, "/user-keys", token=tok, headers=hdrs,
                           body=json.dumps({"key": new_key()}))
        assert_error(r, 415, "unsupported_media_type")
    assert_error(client.get("/user-keys", token=tok), 404, "key_not_found")
    still_serves()


def _allow(r) -> set:
    return {m.strip().upper() for m in (r.header("Allow") or "").split(",") if m.strip()}


@pytest.mark.parametrize("method", ["DELETE", "PATCH"])
def test_method_not_allowed_on_user_keys(client, default_issuer, acme_issuer, user, still_serves,
                                        method):
    tok = default_issuer.token(user)
    k = new_key()
    assert client.post("/user-keys", token=tok, json_body={"key": k}).status == 200
    for path, t in (("/user-keys", tok), ("/t/acme/user-keys", acme_issuer.token(user))):
        r = client.request(method, path, token=t, json_body={"key": new_key()})
        assert_error(r, 405, "method_not_allowed")
        allow = _allow(r)
        assert {"GET", "POST", "PUT"} <= allow <= {"GET", "POST", "PUT", "OPTIONS", "HEAD"}, r
    assert client.get("/user-keys", token=tok).json() == {"key": k}  # DELETE deleted nothing
    still_serves()


@pytest.mark.parametrize("path", ["/alive", "/now", "/health"])
def test_method_not_allowed_on_read_only_routes(client, still_serves, path):
    r = client.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in _allow(r) and not ({"POST", "PUT", "DELETE"} & _allow(r)), r
    still_serves()


@pytest.mark.parametrize("path", ["/", "/nope", "/user-keys/extra", "/user-key",
                                  "/t/acme/nope", "/t/acme/user-keys/x", "/t/acme"])
def test_not_found(client, default_issuer, user, still_serves, path):
    r = client.get(path, token=default_issuer.token(user))
    assert_error(r, 404, "not_found")
    still_serves()


@pytest.mark.parametrize("path", ["/t/nosuch/user-keys", "/t/nosuch/alive", "/t/nosuch/now",
                                  "/t/zz-top/user-keys"])
def test_unknown_tenant(client, still_serves, path):
    assert_error(client.get(path), 404, "unknown_tenant")
    still_serves()


def test_bad_tenant_syntax_is_404_never_5xx(client, still_serves):
    for path in ("/t/ACME/user-keys", "/t/-acme/user-keys", "/t/" + "a" * 64 + "/user-keys",
                 "/t/ac%2Fme/user-keys", "/t//user-keys"):
        r = client.get(path)
        assert r.status == 404, r
        assert r.json()["code"] in ("unknown_tenant", "not_found"), r
    still_serves()


def test_header_too_large(client, still_serves):
    r = client.get("/alive", headers={"X-Padding": "a" * (12 * 1024)})
    assert r.status == 431, r
    if r.body:  # the server may answer before reading everything; if it has a body, it's JSON
        assert r.json()["code"] == "header_too_large", r
    still_serves()


def test_too_many_headers(client, still_serves):
    hdrs = {f"X-H{i}": "v" for i in range(100)}
    r = client.get("/alive", headers=hdrs)
    assert r.status in (400, 431), r
    still_serves()


def test_uri_too_long(client, still_serves):
    r = client.get("/user-keys/" + "a" * 2048)
    assert_error(r, 414, "uri_too_long")
    still_serves()


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET /alive\r\n\r\n",
    b"GET /alive HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /user-keys HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"GET /alive HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET /alive HTTP/1.1\r\nHost: x\r\n\x00: y\r\n\r\n",
])
def test_malformed_requests_are_4xx(client, still_serves, raw):
    out = client.raw(raw)
    status = raw_status(out)
    # The server may also just close the connection on garbage; it must never answer 5xx.
    assert status is None or 400 <= status < 500, out[:300]
    still_serves()


def test_chunked_body_never_5xx(client, default_issuer, user, still_serves):
    k = new_key()
    body = json.dumps({"key": k}).encode()
    tok = default_issuer.token(user)
    req = (b"POST /user-keys HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + tok.encode() +
           b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
           f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    status = raw_status(client.raw(req))
    assert status is not None and status < 500, status
    if status == 200:  # chunked bodies are optional; if accepted, the key must be stored
        assert client.get("/user-keys", token=tok).json() == {"key": k}
    still_serves()


def test_error_bodies_keep_connection_usable(keyholdd, default_issuer, user):
    """A keep-alive connection keeps working after 401/404/400 answers (error responses
    carry a correct Content-Length)."""
    c = keyholdd.client
    conn = c.connect()
    try:
        tok = default_issuer.token(user)
        assert_error(c.get("/user-keys", conn=conn), 401, "missing_token")
        assert_error(c.get("/user-keys", token=tok, conn=conn), 404, "key_not_found")
        assert_error(c.post("/user-keys", token=tok, json_body={"key": "x"}, conn=conn), 400, "invalid_key")
        k = new_key()
        r = c.post("/user-keys", token=tok, json_body={"key": k}, conn=conn)
        assert r.status == 200, r
        assert c.get("/user-keys", token=tok, conn=conn).json() == {"key": k}
    finally:
        conn.close()
