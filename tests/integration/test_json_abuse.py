"""JSON body abuse on POST/PUT /user-keys (issue "Harden keyholdd", part A), completing
test_errors.py (which has the basic invalid bodies, keys and content types): every bad body
gets the exact 4xx of spec 5.2 with a JSON {"message","code"}, never a 5xx, and nothing is
stored: a fresh user stays 404 after a refused POST, and a refused PUT leaves the old key."""
import base64
import json

import pytest

import rawhttp
import tokens
from harness import assert_error, new_key

K = new_key()  # a valid key, spliced into bodies that are wrong elsewhere
KB = K.encode()
KH_BODY_MAX = 4 * 1024
_K32 = bytes(range(32))
_K32_B64 = base64.b64encode(_K32).decode()  # "AAECAwQF...": starts with "A", no "+" or "/"


def _count_5xx(keyholdd) -> float:
    return keyholdd.metrics().sum("keyhold_requests_total",
                                  pred=lambda lb: lb.get("status", "").startswith("5"))


@pytest.fixture(scope="module", autouse=True)
def fivexx_before(keyholdd):
    """5xx answers of the main keyholdd before this module ran (autouse: taken first)."""
    return _count_5xx(keyholdd)


@pytest.fixture
def refused_write(client, default_issuer):
    """refused_write(body, status, code, content_type): POST for a fresh user and PUT over
    an existing key are both refused exactly so, and nothing changes."""
    def check(body: bytes, status: int, code: str, content_type="application/json", path="/user-keys",
              issuer=None):
        iss = issuer or default_issuer
        hdrs = {} if content_type is None else {"Content-Type": content_type}
        fresh = iss.token(tokens.new_guid())
        r = client.post(path, token=fresh, body=body, headers=hdrs)
        assert_error(r, status, code)
        assert_error(client.get(path, token=fresh), 404, "key_not_found")

        owner = iss.token(tokens.new_guid())
        old = new_key()
        assert client.post(path, token=owner, json_body={"key": old}).status == 200
        r = client.put(path, token=owner, body=body, headers=hdrs)
        assert_error(r, status, code)
        r = client.get(path, token=owner)
        assert r.status == 200 and r.json() == {"key": old}, r
    return check


@pytest.fixture
def accepted_write(client, default_issuer):
    """accepted_write(body, expect_key): the body is a valid request for expect_key."""
    def check(body: bytes, expect_key: str, content_type="application/json"):
        tok = default_issuer.token(tokens.new_guid())
        r = client.post("/user-keys", token=tok, body=body, headers={"Content-Type": content_type})
        assert r.status == 200 and r.body == b"", r
        r = client.get("/user-keys", token=tok)
        assert r.status == 200 and r.json() == {"key": expect_key}, r
    return check


# ------------------------------------------------------------------ invalid JSON


INVALID_BODIES = {
    # nesting: an unterminated or too deep document is a parse error, never a stack overflow
    "deep_arrays_3000": b"[" * 3000,
    "deep_arrays_2049_closed": b"[" * 2049 + b"]" * 2047,  # 4096 bytes, over jansson's 2048
    "deep_objects": b'{"":' * 1000,
    "deep_in_key_member": b'{"key":' + b"[" * 2000 + b'"' + KB + b'"' + b"]" * 2000 + b"}",
    # numbers jansson cannot hold make the whole document invalid, even with a good key
    "key_huge_real": b'{"key":1e999999}',
    "key_huge_int": b'{"key":123456789012345678901234567890}',
    "other_huge_real": b'{"key":"' + KB + b'","n":1e400}',
    "other_huge_negative_real": b'{"key":"' + KB + b'","n":-1e400}',
    "other_huge_int": b'{"key":"' + KB + b'","n":123456789012345678901234567890}',
    "other_nan": b'{"key":"' + KB + b'","n":NaN}',
    "other_infinity": b'{"key":"' + KB + b'","n":Infinity}',
    "other_hex": b'{"key":"' + KB + b'","n":0x10}',
    "other_leading_zero": b'{"key":"' + KB + b'","n":012}',
    # types
    "key_true": b'{"key":true}',
    "key_false": b'{"key":false}',
    "key_real": b'{"key":1.5}',
    "Key_number": b'{"Key":1}',
    # duplicates (JSON_REJECT_DUPLICATES): the stored value must not depend on the parser
    "key_twice_different": b'{"key":"' + KB + b'","key":"' + new_key().encode() + b'"}',
    "key_twice_same": b'{"key":"' + KB + b'","key":"' + KB + b'"}',
    "Key_twice": b'{"Key":"' + KB + b'","Key":"' + new_key().encode() + b'"}',
    "other_member_twice": b'{"key":"' + KB + b'","x":1,"x":2}',
    "key_twice_escaped": b'{"key":"' + KB + b'","\\u006bey":"' + new_key().encode() + b'"}',
    # not JSON, though some parsers take it
    "single_quotes": b"{'key':'" + KB + b"'}",
    "unquoted_member": b'{key:"' + KB + b'"}',
    "trailing_comma": b'{"key":"' + KB + b'",}',
    "line_comment": b'{"key":"' + KB + b'"} // c',
    "block_comment": b'/*c*/{"key":"' + KB + b'"}',
    "two_documents": b'{"key":"' + KB + b'"}{"key":"' + KB + b'"}',
    "whitespace_only": b"   \r\n\t ",
    "bom_prefix": b'\xef\xbb\xbf{"key":"' + KB + b'"}',
    "nul_after_document": b'{"key":"' + KB + b'"}\x00',
    "nul_before_document": b'\x00{"key":"' + KB + b'"}',
    "raw_nul_in_string": b'{"key":"' + KB[:10] + b"\x00" + KB[10:] + b'"}',
    "raw_newline_in_string": b'{"key":"' + KB[:10] + b"\n" + KB[10:] + b'"}',
    "raw_tab_in_string": b'{"key":"' + KB[:10] + b"\t" + KB[10:] + b'"}',
    "bad_escape": b'{"key":"\\q' + KB[2:] + b'"}',
    # NUL and lone surrogates, escaped (jansson refuses \u0000 without JSON_ALLOW_NUL)
    "escaped_nul_in_key": b'{"key":"' + KB + b'\\u0000"}',
    "escaped_nul_in_key_middle": b'{"key":"' + KB[:20] + b'\\u0000' + KB[20:] + b'"}',
    "escaped_nul_in_member_name": b'{"key\\u0000":"' + KB + b'"}',
    "escaped_nul_in_other_member": b'{"key":"' + KB + b'","x":"\\u0000"}',
    "lone_high_surrogate": b'{"key":"' + KB + b'","x":"\\ud800"}',
    "lone_low_surrogate": b'{"key":"' + KB + b'","x":"\\udc00"}',
    # invalid UTF-8 anywhere in the document ("\xff\xfe" in key is in test_errors.py)
    "utf8_overlong_slash": b'{"key":"' + KB + b'","x":"\xc0\xaf"}',
    "utf8_encoded_surrogate": b'{"key":"' + KB + b'","x":"\xed\xa0\x80"}',
    "utf8_lone_continuation": b'{"key":"' + KB + b'","x":"\x80"}',
    "utf8_truncated": b'{"key":"' + KB + b'","x":"\xe2\x82"}',
    "utf8_beyond_u10ffff": b'{"key":"' + KB + b'","x":"\xf4\x90\x80\x80"}',
    "utf8_five_bytes": b'{"key":"' + KB + b'","x":"\xf8\x88\x80\x80\x80"}',
    "utf8_in_member_name": b'{"k\xffey":"' + KB + b'"}',
    "latin1_in_key": b'{"key":"' + KB[:43] + b'\xe9"}',
}


@pytest.mark.parametrize("name", sorted(INVALID_BODIES))
def test_invalid_body(refused_write, name):
    body = INVALID_BODIES[name]
    assert len(body) <= KH_BODY_MAX, len(body)
    refused_write(body, 400, "invalid_body")


def test_invalid_body_on_acme_tenant(refused_write, acme_issuer):
    refused_write(INVALID_BODIES["key_twice_different"], 400, "invalid_body", path="/t/acme/user-keys",
                  issuer=acme_issuer)
    refused_write(INVALID_BODIES["deep_arrays_3000"], 400, "invalid_body", path="/t/acme/user-keys",
                  issuer=acme_issuer)


def test_ten_thousand_brackets_is_too_large(refused_write):
    refused_write(b"[" * 10000, 413, "body_too_large")


def test_deep_nesting_within_the_limit_in_an_ignored_member_is_accepted(accepted_write):
    # Control for the nesting cases: unknown members are ignored (as ASP.NET does), however
    # nested, as long as the parser can hold them; the body is still <= 4 KiB.
    body = b'{"key":"' + KB + b'","x":' + b"[" * 1990 + b"]" * 1990 + b"}"
    assert len(body) <= KH_BODY_MAX
    accepted_write(body, K)


_KS = base64.b64encode(bytes([0xfb, 0xff] * 16)).decode()  # has "+" and "/"


@pytest.mark.parametrize("body,key", [
    (b'{"key":"\\u0041' + _K32_B64[1:].encode() + b'"}', _K32_B64),
    (b'{"\\u006bey":"' + KB + b'"}', K),
    (b'  {"key":"' + KB + b'"}  \r\n', K),
    (b'{"key":"' + _KS.replace("/", "\\/").encode() + b'"}', _KS),
    (b'{"key":"' + KB + b'","extra":{"nested":[1,2,{"k":null}]},"Other":"x"}', K),
], ids=["escaped_first_char", "escaped_member_name", "surrounding_whitespace", "escaped_slashes",
        "extra_members"])
def test_legitimate_json_spellings_are_accepted(accepted_write, body, key):
    accepted_write(body, key)


# ----------------------------------------------------------------------- keys


def _noncanonical(key_b64: str) -> str:
    """The same 32 bytes in a lenient decoder: the last data character before '=' carries
    2 unused bits; set one."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert key_b64.endswith("=") and not key_b64.endswith("==")
    c = key_b64[-2]
    v = alphabet.index(c)
    assert v & 3 == 0
    return key_b64[:-2] + alphabet[v | 1] + "="


INVALID_KEYS = {
    "tab_inside": _K32_B64[:20] + "\t" + _K32_B64[20:],
    "crlf_at_end": _K32_B64 + "\r\n",
    "mime_line_break": _K32_B64[:40] + "\r\n" + _K32_B64[40:],
    "leading_space": " " + _K32_B64,
    "trailing_space": _K32_B64 + " ",
    "padding_in_middle": _K32_B64[:20] + "=" + _K32_B64[21:],
    "non_ascii": _K32_B64[:43] + "\u00e9",
    "all_padding": "=" * 44,
    "double_padding": _K32_B64[:-1] + "==",
    "noncanonical_last_char": _noncanonical(_K32_B64),
    "44_chars_no_padding": "A" * 44,
    "43_chars": _K32_B64[:43],
    "45_chars": _K32_B64 + "A",
    "48_bytes": base64.b64encode(bytes(48)).decode(),
    "0_bytes_padded": "====",
    "hex_64": _K32.hex(),
    "base32": base64.b32encode(_K32).decode(),
    "percent_encoded": _K32_B64.replace("=", "%3D"),
    "dot_instead_of_padding": _K32_B64[:-1] + ".",
    "fullwidth_A": "\uff21" + _K32_B64[1:],
}


@pytest.mark.parametrize("name", sorted(INVALID_KEYS))
def test_invalid_key(refused_write, name):
    refused_write(json.dumps({"key": INVALID_KEYS[name]}).encode(), 400, "invalid_key")


def test_noncanonical_key_is_not_the_same_as_canonical(accepted_write, refused_write):
    # control: the canonical spelling of the same 32 bytes is accepted
    accepted_write(json.dumps({"key": _K32_B64}).encode(), _K32_B64)
    refused_write(json.dumps({"key": _noncanonical(_K32_B64)}).encode(), 400, "invalid_key")


def test_key_member_named_Key_is_read(accepted_write):
    # Bitwarden's ASP.NET binder is case-insensitive; keyhold reads "key" or "Key".
    accepted_write(json.dumps({"Key": K}).encode(), K)


# --------------------------------------------------------------- content types


@pytest.mark.parametrize("ctype", ["application/jsonp", "application/json-patch+json",
                                   "application/problem+json", "application/json5",
                                   "application/json, text/plain", "application/json text/plain",
                                   "application/", "application", "json", "*/*", "",
                                   "text/plain; charset=application/json", "application/javascript",
                                   "application/x-json", "application/json\t+x"])
def test_unsupported_media_type(refused_write, ctype):
    refused_write(json.dumps({"key": new_key()}).encode(), 415, "unsupported_media_type",
                  content_type=ctype)


@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8", "APPLICATION/JSON",
                                   "Application/Json;Charset=UTF-8", "application/json ; charset=utf-8",
                                   "application/json;", " application/json"])
def test_json_media_type_spellings_accepted(accepted_write, ctype):
    k = new_key()
    accepted_write(json.dumps({"key": k}).encode(), k, content_type=ctype)


def test_missing_content_type_with_empty_body(refused_write):
    refused_write(b"", 415, "unsupported_media_type", content_type=None)


def test_form_body_with_form_content_type(refused_write):
    refused_write(b"key=" + KB.replace(b"+", b"%2B").replace(b"/", b"%2F").replace(b"=", b"%3D"),
                  415, "unsupported_media_type", content_type="application/x-www-form-urlencoded")


def test_two_content_type_headers(client, default_issuer):
    """Two Content-Type headers are ambiguous: refused as a bad request, nothing stored."""
    tok = default_issuer.token(tokens.new_guid())
    k = new_key()
    body = json.dumps({"key": k}).encode()
    req = rawhttp.request_bytes("POST", "/user-keys", [("Authorization", "Bearer " + tok),
                                                      ("Content-Type", "text/plain"),
                                                      ("Content-Type", "application/json")], body)
    port = client.port
    ex = rawhttp.exchange(port, req, tls=client.ctx)
    assert len(ex.responses) == 1, ex
    rawhttp.assert_keyhold_error(ex.responses[0], 400, "bad_request")
    assert_error(client.get("/user-keys", token=tok), 404, "key_not_found")


def test_oversized_body_with_wrong_content_type(refused_write):
    # either refusal is fine by the spec; keyhold checks the size first (recorded exactly)
    refused_write(b"x" * (KH_BODY_MAX + 1), 413, "body_too_large", content_type="text/plain")


# ------------------------------------------------------------------------------ end


def test_zz_still_serves_after_json_abuse(keyholdd, client, default_issuer, fivexx_before):
    assert keyholdd.alive(), keyholdd.log()
    tok = default_issuer.token(tokens.new_guid())
    assert_error(client.get("/user-keys", token=tok), 404, "key_not_found")
    k = new_key()
    assert client.post("/user-keys", token=tok, json_body={"key": k}).status == 200
    k2 = new_key()
    assert client.put("/user-keys", token=tok, json_body={"key": k2}).status == 200
    r = client.get("/user-keys", token=tok)
    assert r.status == 200 and r.json() == {"key": k2}, r
    assert _count_5xx(keyholdd) == fivexx_before  # no 5xx answered during this module
