"""Token forgery against the real keyholdd (issue "Harden keyholdd", part A), completing
test_tokens.py: every forged, tampered or ill-formed bearer token is refused with the exact
status and code of spec 5.2, never a 5xx; every refusal by the token verifier is counted in
keyhold_token_rejections_total; no forged token ever reads a key; valid tokens only ever
read their own user's key in their own tenant.

Most forgeries here carry a signature that really verifies (made with the issuer's own
private key), so that the one thing wrong is the thing under test."""
import base64
import datetime
import hashlib
import hmac
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

import rawhttp
import tokens
from harness import assert_error, new_key
from tokens import b64url, b64url_decode

# The order of P-256 (SEC 2): ES256 r and s must lie in [1, n-1].
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
KH_TOKEN_MAX = 16 * 1024
KH_HEADER_MAX = 8 * 1024


# ------------------------------------------------------------------------------ helpers


def _count_5xx(keyholdd) -> float:
    return keyholdd.metrics().sum("keyhold_requests_total",
                                  pred=lambda lb: lb.get("status", "").startswith("5"))


@pytest.fixture(scope="module", autouse=True)
def fivexx_before(keyholdd):
    """5xx answers of the main keyholdd before this module ran (autouse: taken first)."""
    return _count_5xx(keyholdd)


def rejections(keyholdd) -> float:
    return keyholdd.metrics().sum("keyhold_token_rejections_total")


def sign(signing_input: bytes, key, alg: str) -> bytes:
    """A JWS signature over signing_input, made with the cryptography private key."""
    if alg == "RS256":
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        return key.sign(signing_input, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    raise ValueError(alg)


def jws(header, payload, key, alg: str = "RS256") -> str:
    """A compact JWS whose header and payload are given as dicts or verbatim JSON text
    (str/bytes: duplicates, arrays, anything), validly signed with key."""
    def seg(v) -> str:
        if isinstance(v, dict):
            v = json.dumps(v, separators=(",", ":"))
        if isinstance(v, str):
            v = v.encode()
        return b64url(v)
    si = seg(header) + "." + seg(payload)
    return si + "." + b64url(sign(si.encode(), key, alg))


def hdr(alg="RS256", kid="key-1", **extra) -> dict:
    h = {"alg": alg, "typ": "at+jwt"}
    if kid is not None:
        h["kid"] = kid
    h.update(extra)
    return h


def with_sig(token: str, sig: bytes) -> str:
    h, p, _ = token.split(".")
    return f"{h}.{p}.{b64url(sig)}"


def sig_of(token: str) -> bytes:
    return b64url_decode(token.split(".")[2])


@pytest.fixture
def stored(client, default_issuer, user):
    """user has a key in the default tenant; returns the key."""
    k = new_key()
    r = client.post("/user-keys", token=default_issuer.token(user), json_body={"key": k})
    assert r.status == 200, r
    return k


@pytest.fixture
def refused(client, keyholdd, stored, user):
    """refused(token, status, code, path): the GET is refused exactly so, the refusal is
    counted once in keyhold_token_rejections_total, and the stored key is not in the body."""
    def check(tok, status=401, code="invalid_token", path="/user-keys", headers=None, counted=True):
        before = rejections(keyholdd)
        hdrs = dict(headers or {})
        if tok is not None:
            hdrs["Authorization"] = "Bearer " + tok if isinstance(tok, str) else b"Bearer " + tok
        r = client.get(path, headers=hdrs)
        assert_error(r, status, code)
        assert stored.encode() not in r.body, r
        if status == 401 and code == "invalid_token":
            www = r.header("WWW-Authenticate") or ""
            assert www.startswith("Bearer") and 'error="invalid_token"' in www, r
        if counted:
            assert rejections(keyholdd) - before == 1, f"refusal not counted once: {r}"
        return r
    return check


@pytest.fixture
def accepted(client, keyholdd, stored):
    def check(tok, path="/user-keys"):
        before = rejections(keyholdd)
        r = client.get(path, token=tok)
        assert r.status == 200 and r.json() == {"key": stored}, r
        assert rejections(keyholdd) == before
        return r
    return check


@pytest.fixture(scope="module")
def attacker_rsa():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def attacker_ec():
    return ec.generate_private_key(ec.SECP256R1())


def test_valid_rs256_and_es256_controls(default_issuer, user, accepted):
    accepted(default_issuer.token(user))
    accepted(default_issuer.token(user, kid="ec-1", alg="ES256"))
    # Hand-made signatures verify too, so the forgeries below differ only where intended.
    c = tokens.claims(user, default_issuer.iss)
    accepted(jws(hdr(), c, default_issuer.private_key()))
    accepted(jws(hdr("ES256", "ec-1"), c, default_issuer.private_key("ec-1"), "ES256"))


# ------------------------------------------------------------------- algorithm confusion


@pytest.mark.parametrize("alg", ["nOnE", "none ", " none", "", "NoNe"])
def test_alg_none_other_spellings(default_issuer, user, refused, alg):
    # "none", "None", "NONE" are in test_tokens.py
    c = tokens.claims(user, default_issuer.iss)
    refused(tokens.alg_none(c, alg=alg))
    refused(tokens.alg_none(c, alg=alg, signature=b64url(sig_of(default_issuer.token(user)))))


@pytest.mark.parametrize("alg", [None, 0, ["RS256"], {"RS256": True}, "rs256", "RS256 ", "RS512",
                                 "RS384", "PS384", "ES384", "ES256K", "ES512", "EdDSA", "Ed25519",
                                 "RSA-OAEP", "dir", "RS256\u0000"])
def test_alg_not_allowed_though_signature_is_rs256(default_issuer, user, refused, alg):
    """The header names a wrong, unknown or ill-typed alg; the RS256 signature by the real
    key is valid for the bytes."""
    c = tokens.claims(user, default_issuer.iss)
    h = hdr()
    h["alg"] = alg
    refused(jws(h, c, default_issuer.private_key()))


def test_alg_missing(default_issuer, user, refused):
    h = hdr()
    del h["alg"]
    refused(jws(h, tokens.claims(user, default_issuer.iss), default_issuer.private_key()))


def _public_secrets(issuer) -> dict:
    pub = issuer.private_key().public_key()
    n = pub.public_numbers().n
    return {
        "spki_pem": pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "spki_der": pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "pkcs1_pem": pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        "jwk_n_bytes": n.to_bytes((n.bit_length() + 7) // 8, "big"),
        "jwk_n_text": b64url(n.to_bytes((n.bit_length() + 7) // 8, "big")).encode(),
        "jwk_json": RSAAlgorithm.to_jwk(pub).encode(),
    }


_HMACS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


# HS256 keyed with the SPKI PEM is test_tokens.py's test_hs256_with_public_key_as_secret
@pytest.mark.parametrize("alg,secret", [(a, s) for a in _HMACS
                                        for s in ("spki_pem", "spki_der", "pkcs1_pem", "jwk_n_bytes",
                                                  "jwk_n_text", "jwk_json")
                                        if (a, s) != ("HS256", "spki_pem")])
def test_hmac_keyed_with_public_key(default_issuer, user, refused, alg, secret):
    digest = _HMACS[alg]
    si = (b64url(json.dumps(hdr(alg)).encode()) + "." +
          b64url(json.dumps(tokens.claims(user, default_issuer.iss)).encode()))
    key = _public_secrets(default_issuer)[secret]
    refused(si + "." + b64url(hmac.new(key, si.encode(), digest).digest()))


def test_ps256_with_key_published_for_rs256(default_issuer, user, refused):
    # The JWKS says "alg": "RS256" for key-1: a PS256 signature by the same key is refused.
    refused(default_issuer.token(user, alg="PS256"))


def test_es256_header_naming_the_rsa_key(default_issuer, user, refused):
    c = tokens.claims(user, default_issuer.iss)
    refused(jws(hdr("ES256", "key-1"), c, default_issuer.private_key("ec-1"), "ES256"))


# ----------------------------------------------------------------------------- kid


@pytest.mark.parametrize("kid", ["../../etc/passwd", "/dev/zero", "file:///etc/passwd",
                                 "' OR '1'='1", "key-1' --", "key-1\"", "%s%s%s%n", "key-1 ",
                                 " key-1", "KEY-1", "key-1\n", "key-1\t", "", "k" * 4500,
                                 "key-\u0131", "\ud83d\udd11"])
def test_hostile_kid_string(default_issuer, user, refused, kid):
    """Signed by key-1, but the kid names no key of the issuer (or not exactly key-1)."""
    refused(jws(hdr(kid=kid), tokens.claims(user, default_issuer.iss), default_issuer.private_key()))


@pytest.mark.parametrize("kid_json", ['"key-1\\u0000"', '"key-1\\u0000x"', '"\\u0000"', "1", "null",
                                      '["key-1"]', '{"kid":"key-1"}', "true", '"key-1\\ud800"'])
def test_kid_not_a_plain_string(default_issuer, user, refused, kid_json):
    header = '{"alg":"RS256","typ":"at+jwt","kid":' + kid_json + "}"
    refused(jws(header, tokens.claims(user, default_issuer.iss), default_issuer.private_key()))


def test_kid_of_10_kib_is_too_large_a_header(client, default_issuer, user, stored):
    tok = jws(hdr(kid="k" * 10240), tokens.claims(user, default_issuer.iss), default_issuer.private_key())
    assert len(tok) > KH_HEADER_MAX
    r = client.get("/user-keys", token=tok)
    assert_error(r, 431, "header_too_large")


def test_no_kid_with_valid_signature_is_accepted(default_issuer, user, accepted):
    # RFC 7515: kid is optional; keyhold then tries the issuer's keys that fit the alg.
    accepted(jws(hdr(kid=None), tokens.claims(user, default_issuer.iss), default_issuer.private_key()))


def test_no_kid_signed_by_attacker(default_issuer, user, refused, attacker_rsa):
    refused(jws(hdr(kid=None), tokens.claims(user, default_issuer.iss), attacker_rsa))


# ------------------------------------------------------------- embedded / referenced keys


def _self_signed_cert(key) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = time.time()
    t0 = datetime.datetime.fromtimestamp(now - 60, datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(t0).not_valid_after(t0 + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("param", ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"])
def test_embedded_or_referenced_key_with_attackers_signature(default_issuer, user, refused,
                                                             attacker_rsa, param):
    der = _self_signed_cert(attacker_rsa)
    values = {
        "jwk": dict(json.loads(RSAAlgorithm.to_jwk(attacker_rsa.public_key())), kid="key-1"),
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": [base64.b64encode(der).decode()],
        "x5t": b64url(hashlib.sha1(der).digest()),
        "x5t#S256": b64url(hashlib.sha256(der).digest()),
    }
    refused(jws(hdr(**{param: values[param]}), tokens.claims(user, default_issuer.iss), attacker_rsa))


@pytest.mark.parametrize("param", ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"])
def test_embedded_or_referenced_key_refused_even_with_issuers_signature(default_issuer, user,
                                                                        refused, param):
    """The header parameters are refused outright (docs/configuration.md), not just
    ignored: even with a signature by the real key."""
    pub = default_issuer.private_key().public_key()
    values = {
        "jwk": dict(json.loads(RSAAlgorithm.to_jwk(pub)), kid="key-1"),
        "jku": default_issuer.url + "/.well-known/openid-configuration/jwks",
        "x5u": default_issuer.url + "/cert.pem", "x5c": ["MIIB"],
        "x5t": b64url(b"\x00" * 20), "x5t#S256": b64url(b"\x00" * 32),
    }
    refused(jws(hdr(**{param: values[param]}), tokens.claims(user, default_issuer.iss),
                default_issuer.private_key()))


@pytest.mark.parametrize("crit", [["exp"], ["kid"], ["alg"], ["b64"], [], ["x-unknown"], "exp",
                                  None])
def test_crit_header_refused(default_issuer, user, refused, crit):
    extra = {"crit": crit}
    if crit == ["b64"]:
        extra["b64"] = False
    if crit == ["x-unknown"]:
        extra["x-unknown"] = 1
    refused(jws(hdr(**extra), tokens.claims(user, default_issuer.iss), default_issuer.private_key()))


# ------------------------------------------------------------------ time claims


def test_far_future_exp_is_refused(default_issuer, user, refused):
    """RFC 7519 4.1.4 alone would accept any exp in the future; keyhold caps token lifetime
    per tenant (max_token_lifetime, default 24 h), so a leaked far-future token is not
    honoured for years. INT64_MAX must not overflow into "expired long ago" either."""
    refused(default_issuer.token(user, exp=253402300799))   # 9999-12-31T23:59:59Z
    refused(default_issuer.token(user, exp=2 ** 63 - 1))    # INT64_MAX


def test_far_future_iat_is_refused(default_issuer, user, refused):
    # RFC 7519 makes iat informational and ASP.NET ignores it, but a token "issued" in the
    # year 9999 was minted by a wrong clock or in advance with a stolen key: refused.
    refused(default_issuer.token(user, iat=253402300799))


def test_exp_as_real_is_accepted(default_issuer, user, accepted):
    accepted(default_issuer.token(user, exp=int(time.time()) + 600.5))


@pytest.mark.parametrize("claims", [
    {"exp": 2 ** 64}, {"exp": 1e300}, {"exp": -1}, {"exp": 0}, {"exp": True}, {"exp": None},
    {"exp": "4102444800"}, {"exp": [4102444800]}, {"exp": {"t": 4102444800}},
    {"nbf": None}, {"nbf": "0"}, {"nbf": 2 ** 64}, {"nbf": 253402300799}, {"nbf": True},
    {"exp": 1e308 * 10},
], ids=lambda c: json.dumps(c) if "Infinity" not in json.dumps(c) else "exp-infinity")
def test_bad_time_claims(default_issuer, user, refused, claims):
    c = tokens.claims(user, default_issuer.iss, **claims)
    # json.dumps writes 1e309 as "Infinity", which is no JSON: refused at parse time
    refused(jws(hdr(), json.dumps(c), default_issuer.private_key()))


def test_expired_token_already_cached_is_refused_after_expiry(client, keyholdd, default_issuer,
                                                              user, stored):
    """A token accepted (and cached) while valid is refused once exp + skew has passed:
    the cache must not outlive exp. exp is set so that it is within the skew for one more
    second."""
    now = int(time.time())
    tok = default_issuer.token(user, exp=now - 299, nbf=now - 3600, iat=now - 3600)
    r = client.get("/user-keys", token=tok)
    assert r.status == 200 and r.json() == {"key": stored}, r
    while int(time.time()) < now + 2:   # exp + skew = now + 1 is then in the past
        time.sleep(0.1)
    assert_error(client.get("/user-keys", token=tok), 401, "invalid_token")


# ----------------------------------------------------------------------------- issuer


@pytest.mark.parametrize("iss", ["https://identity", "HTTP://identity", "http://Identity",
                                 "http://identity ", " http://identity", "http://identity/.",
                                 "http://identity:80", "http://identity%2F", "http://\u0456dentity",
                                 "http://identit\u0443", "http://identity\u200b", "http://identity#",
                                 "http://identity?", "http:/identity", "", "identity"])
def test_issuer_near_miss_default(default_issuer, user, refused, iss):
    assert default_issuer.iss == "http://identity"
    refused(default_issuer.token(user, iss=iss))


def test_issuer_near_miss_acme(default_issuer, acme_issuer, user, refused):
    u = acme_issuer.iss
    assert u.startswith("https://127.0.0.1:")
    for iss in (u.replace("https://", "http://", 1), u.upper(), u.replace("127.0.0.1", "localhost"),
                u + "/.", u.rstrip("/") + "/identity", u.replace("/identity", "/Identity")):
        refused(acme_issuer.token(user, iss=iss), path="/t/acme/user-keys")


@pytest.mark.parametrize("iss_json", ['"http://identity\\u0000"', '["http://identity"]', "null",
                                      "1", '{"iss":"http://identity"}'])
def test_issuer_not_a_plain_string(default_issuer, user, refused, iss_json):
    c = json.dumps(tokens.claims(user, "ISS"))
    refused(jws(hdr(), c.replace('"ISS"', iss_json), default_issuer.private_key()))


# ------------------------------------------------------------------------- claims


@pytest.mark.parametrize("claim", ["nbf", "iat", "jti", "client_id", "auth_time", "idp", "email",
                                   "email_verified", "sstamp", "name", "orgowner", "device",
                                   "premium"])
def test_optional_claim_missing_accepted(default_issuer, user, accepted, claim):
    accepted(default_issuer.token(user, **{claim: tokens.DELETE}))


@pytest.mark.parametrize("claim,value", [
    ("sub", 42), ("sub", None), ("sub", True), ("sub", ["GUID"]), ("sub", {"id": "GUID"}),
    ("scope", {"api": True}), ("scope", ["api", 1]), ("scope", [["api"]]), ("scope", 1),
    ("amr", 1), ("amr", ["Application", None]), ("amr", {"Application": 1}),
    ("aud", 5), ("aud", {"a": 1}), ("roles", {"admin": 1}), ("roles", [1]),
])
def test_claim_of_wrong_type_is_invalid_token(default_issuer, user, refused, claim, value):
    """Exact: a claim of the wrong JSON type makes the token invalid (401), before any
    question of rights (test_tokens.py accepts 401 or 403 for some of these)."""
    if value == ["GUID"]:
        value = [user]
    elif value == {"id": "GUID"}:
        value = {"id": user}
    refused(default_issuer.token(user, **{claim: value}))


@pytest.mark.parametrize("sub", ["{GUID}", "GUIDUPPER", "GUID\u0000", "GUID ", " GUID",
                                 "urn:uuid:GUID", "GUIDNODASH"])
def test_subject_spellings_never_reach_another_user(client, keyholdd, default_issuer, user, stored,
                                                    sub):
    """Other spellings of the GUID: either the same user (same key) or refused as a subject;
    never another user's record, never a 5xx."""
    s = (sub.replace("GUIDUPPER", user.upper()).replace("GUIDNODASH", user.replace("-", ""))
         .replace("GUID", user))
    r = client.get("/user-keys", token=default_issuer.token(user, sub=s))
    if r.status == 200:
        assert r.json() == {"key": stored}, r
    else:
        body = assert_error(r, r.status, r.json().get("code"))
        assert (r.status, body["code"]) in ((403, "invalid_subject"), (401, "invalid_token")), r


# ------------------------------------------------------------------ other signers


def test_resigned_by_attacker_rsa_with_same_kid(default_issuer, user, refused, attacker_rsa):
    refused(tokens.mint(tokens.claims(user, default_issuer.iss), attacker_rsa, "key-1"))


def test_resigned_by_attacker_ec_with_same_kid(default_issuer, user, refused, attacker_ec):
    refused(tokens.mint(tokens.claims(user, default_issuer.iss), attacker_ec, "ec-1", "ES256"))


def test_resigned_by_attacker_rsa_4096(default_issuer, user, refused):
    k = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    refused(tokens.mint(tokens.claims(user, default_issuer.iss), k, "key-1"))


def test_default_claims_signed_by_acme_key(default_issuer, acme_issuer, user, refused):
    # acme's key has the same kid "key-1"; the claims are the default tenant's
    refused(tokens.mint(tokens.claims(user, default_issuer.iss), acme_issuer.private_key(), "key-1"))


# ------------------------------------------------------------------------ signatures


def _rs_sig_variants(sig: bytes) -> dict:
    def flip(i):
        b = bytearray(sig)
        b[i] ^= 0x80
        return bytes(b)
    return {
        "flip_first": flip(0), "flip_last": flip(len(sig) - 1), "truncated_1": sig[:-1],
        "truncated_half": sig[:len(sig) // 2], "extended_0": sig + b"\x00",
        "leading_0": b"\x00" + sig, "zeros": bytes(len(sig)), "ones": b"\xff" * len(sig),
        "one": b"\x00" * (len(sig) - 1) + b"\x01", "single_byte": b"\x01",
    }


@pytest.mark.parametrize("variant", sorted(_rs_sig_variants(bytes(256))))
def test_rs256_signature_tampered(default_issuer, user, refused, variant):
    tok = default_issuer.token(user)
    refused(with_sig(tok, _rs_sig_variants(sig_of(tok))[variant]))


def test_rs256_signature_equal_to_modulus(default_issuer, user, refused):
    n = default_issuer.private_key().public_key().public_numbers().n
    tok = default_issuer.token(user)
    refused(with_sig(tok, n.to_bytes(256, "big")))
    refused(with_sig(tok, (n - 1).to_bytes(256, "big")))


def _noncanonical_last_char(seg: str) -> str:
    """The same bytes in a lenient decoder: set unused low bits of the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    rem = len(seg) % 4
    assert rem in (2, 3), "needs leftover bits"
    unused = 4 if rem == 2 else 2
    v = alphabet.index(seg[-1])
    assert v & ((1 << unused) - 1) == 0
    return seg[:-1] + alphabet[v | 1]


def test_noncanonical_base64url_signature(default_issuer, user, refused):
    # A 256-byte RSA or 64-byte ES256 signature leaves 4 unused bits in its last character:
    # a decoder that ignores them would accept a second spelling of a real token.
    for tok in (default_issuer.token(user), default_issuer.token(user, kid="ec-1", alg="ES256")):
        h, p, s = tok.split(".")
        bad = f"{h}.{p}.{_noncanonical_last_char(s)}"
        assert b64url_decode(bad.split(".")[2]) == b64url_decode(s)  # Python is lenient
        refused(bad)


def _es_sig(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.mark.parametrize("variant", ["r0", "s0", "rs0", "rn", "sn", "rn1", "sn1", "rmax", "smax",
                                     "zero64", "der", "der_zero", "len63", "len65", "len32",
                                     "len0", "r_only", "swapped"])
def test_es256_signature_forged(default_issuer, user, refused, variant):
    tok = default_issuer.token(user, kid="ec-1", alg="ES256")
    raw = sig_of(tok)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    variants = {
        "r0": lambda: _es_sig(0, s), "s0": lambda: _es_sig(r, 0), "rs0": lambda: _es_sig(0, 0),
        "rn": lambda: _es_sig(P256_N, s), "sn": lambda: _es_sig(r, P256_N),
        "rn1": lambda: _es_sig(P256_N + 1, s), "sn1": lambda: _es_sig(r, P256_N + 1),
        "rmax": lambda: _es_sig(2 ** 256 - 1, s), "smax": lambda: _es_sig(r, 2 ** 256 - 1),
        "zero64": lambda: bytes(64), "der": lambda: encode_dss_signature(r, s),
        "der_zero": lambda: encode_dss_signature(0, 0), "len63": lambda: raw[:63],
        "len65": lambda: raw + b"\x00", "len32": lambda: raw[:32], "len0": lambda: b"",
        "r_only": lambda: raw[:32] + bytes(32), "swapped": lambda: raw[32:] + raw[:32],
    }
    forged = variants[variant]()
    assert forged != raw
    if variant == "len0":
        # "h.p." is an unsigned token
        h, p, _ = tok.split(".")
        refused(f"{h}.{p}.")
    else:
        refused(with_sig(tok, forged))


# --------------------------------------------------------------- malformed encodings


def _token_with_chars(issuer, user, chars: set):
    """A valid token whose three segments each contain one of chars (- or _), so that the
    standard-alphabet variant differs in every segment."""
    for i in range(200):
        tok = jws(hdr(x="?" * (i % 7) + ">" * (i // 7 % 5)),
                  tokens.claims(user, issuer.iss, pad="?>" * (i % 11)), issuer.private_key())
        if all(set(seg) & chars for seg in tok.split(".")):
            return tok
    raise AssertionError("no token with url-safe characters in every segment")


@pytest.mark.parametrize("segment", [0, 1, 2])
def test_standard_alphabet_instead_of_base64url(default_issuer, user, refused, accepted, segment):
    tok = _token_with_chars(default_issuer, user, {"-", "_"})
    accepted(tok)
    segs = tok.split(".")
    segs[segment] = segs[segment].replace("-", "+").replace("_", "/")
    refused(".".join(segs))


def _token_needing_padding(issuer, user) -> str:
    """A valid token whose header and payload segments both have a length that base64
    would pad."""
    for i in range(30):
        tok = jws(hdr(x="y" * (i % 3)), tokens.claims(user, issuer.iss, pad="z" * (i // 3)),
                  issuer.private_key())
        if all(len(seg) % 4 for seg in tok.split(".")[:2]):
            return tok
    raise AssertionError("unreachable: lengths cycle through every residue")


@pytest.mark.parametrize("segment", [0, 1])
def test_padding_inside_token(default_issuer, user, refused, accepted, segment):
    tok = _token_needing_padding(default_issuer, user)
    accepted(tok)
    segs = tok.split(".")
    segs[segment] += "=" * (-len(segs[segment]) % 4)
    refused(".".join(segs), counted=False)


def test_padding_on_signature(default_issuer, user, refused):
    tok = default_issuer.token(user)
    assert len(tok.split(".")[2]) % 4 != 0
    refused(tok + "=")
    refused(tok + "==")
    refused(tok + "===")


@pytest.mark.parametrize("segment", [0, 1, 2])
@pytest.mark.parametrize("junk", [" ", "\t", "%20", "*", "!", "\\"])
def test_junk_character_inside_segment(default_issuer, user, refused, segment, junk):
    tok = default_issuer.token(user)
    segs = tok.split(".")
    segs[segment] = segs[segment][:10] + junk + segs[segment][10:]
    refused(".".join(segs), counted=False)


@pytest.mark.parametrize("segment", [0, 1, 2])
@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
def test_non_ascii_inside_segment(default_issuer, user, refused, segment, encoding):
    tok = default_issuer.token(user)
    segs = tok.split(".")
    segs[segment] = segs[segment][:10] + "\u00e9" + segs[segment][10:]
    refused(".".join(segs).encode(encoding), counted=False)


@pytest.mark.parametrize("seg_json", ["[]", '["alg","RS256"]', '"RS256"', "1", "null", "true",
                                      "{}", '{"alg":"RS256","kid":"key-1"} x',
                                      '{"alg":"RS256","kid":"key-1",}', "\ufeff{}",
                                      '{"alg":"RS256"/*c*/,"kid":"key-1"}'])
def test_header_not_a_json_object(default_issuer, user, refused, seg_json):
    refused(jws(seg_json, tokens.claims(user, default_issuer.iss), default_issuer.private_key()))


@pytest.mark.parametrize("seg_json", ["[]", "[PAYLOAD]", '"PAYLOAD"', "1", "null", "{} {}",
                                      "PAYLOAD x", "\ufeffPAYLOAD"])
def test_payload_not_a_json_object(default_issuer, user, refused, seg_json):
    payload = json.dumps(tokens.claims(user, default_issuer.iss))
    refused(jws(hdr(), seg_json.replace("PAYLOAD", payload), default_issuer.private_key()))


def test_payload_invalid_utf8(default_issuer, user, refused):
    payload = json.dumps(tokens.claims(user, default_issuer.iss)).encode()
    refused(jws(hdr(), payload.replace(b'"Test User"', b'"Test \xff User"'), default_issuer.private_key()))


def test_payload_deeply_nested_extra_claim(default_issuer, user, refused, accepted):
    def nested(depth):
        return (json.dumps(tokens.claims(user, default_issuer.iss))[:-1] + ',"x":' + "[" * depth +
                "]" * depth + "}")
    # An unknown claim is ignored, however nested, while the parser can hold it ...
    accepted(jws(hdr(), nested(1000), default_issuer.private_key()))
    # ... and past jansson's depth limit (2048) it is a parse error, not a stack overflow
    # (2100 levels still fit the 8 KiB header limit)
    refused(jws(hdr(), nested(2100), default_issuer.private_key()))


@pytest.mark.parametrize("header", [
    '{"alg":"RS256","kid":"key-1","alg":"none"}', '{"alg":"none","kid":"key-1","alg":"RS256"}',
    '{"alg":"RS256","kid":"nope","kid":"key-1"}', '{"alg":"RS256","kid":"key-1","kid":"key-1"}',
    '{"alg":"RS256","kid":"key-1","typ":"at+jwt","typ":"JWT"}'])
def test_duplicate_header_members(default_issuer, user, refused, header):
    refused(jws(header, tokens.claims(user, default_issuer.iss), default_issuer.private_key()))


@pytest.mark.parametrize("dup", ["sub", "iss", "exp", "scope"])
def test_duplicate_claims(default_issuer, user, refused, stored, dup):
    c = tokens.claims(user, default_issuer.iss)
    other = {"sub": tokens.new_guid(), "iss": "http://evil", "exp": 1, "scope": ["api"]}[dup]
    text = json.dumps(c)[:-1] + f', "{dup}": {json.dumps(other)}}}'
    refused(jws(hdr(), text, default_issuer.private_key()))


# -------------------------------------------------------------------- sizes, schemes


def test_token_of_16_kib_plus_1_and_100_kib(client, default_issuer, user, stored):
    for n in (KH_TOKEN_MAX + 1, 100 * 1024):
        tok = default_issuer.token(user, padding="x" * n)
        tok = tok[:n] if len(tok) > n else tok
        r = client.get("/user-keys", headers={"Authorization": "Bearer " + tok})
        # over the 8 KiB header limit long before the 16 KiB token limit
        assert_error(r, 431, "header_too_large")
    r = client.get("/user-keys", token=default_issuer.token(user))
    assert r.status == 200 and r.json() == {"key": stored}, r


def test_garbage_token_just_under_header_limit(default_issuer, user, refused):
    refused("a" * 3000 + "." + "b" * 3000 + "." + "c" * 1500)
    refused("a" * 7500)


@pytest.mark.parametrize("authz", ["BEARER {t}", "bEaReR {t}", "Bearer  {t}", "Bearer   {t}"])
def test_bearer_scheme_spellings_accepted(client, default_issuer, user, stored, authz):
    # RFC 7235: the scheme is case-insensitive and 1*SP separates it from the token68
    r = client.get("/user-keys", headers={"Authorization": authz.format(t=default_issuer.token(user))})
    assert r.status == 200 and r.json() == {"key": stored}, r


@pytest.mark.parametrize("authz", ["Bearer\t{t}", "Bearer{t}", "Bearer:{t}", "Bearer: {t}",
                                   "Bearer", "Bearer ", "Bearer,{t}", "JWT {t}", "Bearer-{t}",
                                   "{t}", "Basic {t}", "MAC {t}", "DPoP {t}"])
def test_bearer_scheme_misspellings_are_missing_token(client, default_issuer, user, stored, authz):
    r = client.get("/user-keys", headers={"Authorization": authz.format(t=default_issuer.token(user))})
    assert_error(r, 401, "missing_token")
    assert (r.header("WWW-Authenticate") or "").startswith("Bearer"), r


def test_bearer_token_with_trailing_whitespace(client, default_issuer, user, stored):
    # Trailing OWS is not part of a field value (RFC 7230 3.2); refusing it is safe too.
    for ws in (" ", "\t", "  "):
        r = client.get("/user-keys", headers={"Authorization": "Bearer " + default_issuer.token(user) + ws})
        if r.status == 200:
            assert r.json() == {"key": stored}, r
        else:
            assert_error(r, 401, "invalid_token")


@pytest.mark.parametrize("order", ["valid_then_junk", "junk_then_valid", "valid_then_other_user",
                                   "valid_twice"])
def test_two_authorization_headers_are_refused(keyholdd, default_issuer, user, stored, order):
    """Authorization is not a list header (RFC 7230 3.2.2): two of them are ambiguous (a
    proxy in front may have checked the other one) and must be refused, 400 or 401."""
    valid = default_issuer.token(user)
    other = default_issuer.token(tokens.new_guid())
    pair = {"valid_then_junk": (valid, "junk"), "junk_then_valid": ("junk", valid),
            "valid_then_other_user": (valid, other), "valid_twice": (valid, valid)}[order]
    req = rawhttp.request_bytes("GET", "/user-keys", [("Authorization", "Bearer " + t) for t in pair])
    ex = rawhttp.exchange(keyholdd.port, req, tls=keyholdd.client.ctx)
    assert len(ex.responses) == 1, ex
    r = ex.responses[0]
    assert r.status in (400, 401), r
    assert stored.encode() not in r.body, r


def test_every_invalid_token_is_counted_also_bearer_syntax(client, keyholdd, default_issuer, user,
                                                           stored):
    """Tokens refused for their syntax before the verifier (whitespace, '=' inside, non-ASCII)
    are refusals of a bearer token like any other: keyhold_token_rejections_total counts
    each one (spec: every rejection is counted)."""
    tok = default_issuer.token(user)
    h, p, s = tok.split(".")
    cases = [f"{h}=.{p}.{s}", f"{h}. {p}.{s}", f"{h}.{p}.{s} x", (f"{h}\u00e9.{p}.{s}").encode("latin-1"),
             "a" * (KH_TOKEN_MAX + 1)]
    missed = []
    for c in cases:
        before = rejections(keyholdd)
        hv = b"Bearer " + c if isinstance(c, bytes) else "Bearer " + c
        r = client.get("/user-keys", headers={"Authorization": hv})
        assert r.status in (401, 431), r
        if r.status == 401 and rejections(keyholdd) - before != 1:
            missed.append(repr(c[:40]))
    assert not missed, f"401 invalid_token not counted in keyhold_token_rejections_total: {missed}"


# ------------------------------------------------------------- cross-user / cross-tenant


def test_cross_user_and_cross_tenant_isolation(client, keyholdd, default_issuer, acme_issuer):
    """Users A and B each have distinct keys in tenants default and acme. Every token reads
    only its own user's key in its own tenant, from every spelling of that tenant's path,
    and is refused by the other tenant, also right after it was cached."""
    a, b = tokens.new_guid(), tokens.new_guid()
    issuers = {"default": default_issuer, "acme": acme_issuer}
    paths = {"default": ["/user-keys", "/t/default/user-keys"], "acme": ["/t/acme/user-keys"]}
    keys = {}
    for tenant, iss in issuers.items():
        for u in (a, b):
            keys[(tenant, u)] = new_key()
            r = client.post(paths[tenant][0], token=iss.token(u), json_body={"key": keys[(tenant, u)]})
            assert r.status == 200, r
    assert len(set(keys.values())) == 4

    for tenant, iss in issuers.items():
        for u in (a, b):
            tok = iss.token(u)
            for path in paths[tenant]:
                r = client.get(path, token=tok)
                assert r.status == 200 and r.json() == {"key": keys[(tenant, u)]}, (tenant, u, path, r)
            for other_tenant in issuers:
                if other_tenant == tenant:
                    continue
                for path in paths[other_tenant]:
                    before = rejections(keyholdd)
                    r = client.get(path, token=tok)  # the token is in the cache now
                    assert_error(r, 401, "invalid_token")
                    assert rejections(keyholdd) - before == 1
                    for k in keys.values():
                        assert k.encode() not in r.body
                    # nor can it write there
                    r = client.put(path, token=tok, json_body={"key": new_key()})
                    assert_error(r, 401, "invalid_token")
    # A's token with B's sub is a different token: only with a valid signature, i.e. B's own.
    for tenant, iss in issuers.items():
        for (t2, u), k in keys.items():
            if t2 == tenant:
                r = client.get(paths[tenant][0], token=iss.token(u))
                assert r.json() == {"key": k}, r


def test_token_for_acme_via_default_tenant_prefix_spelling(client, acme_issuer, user):
    """/t/default/user-keys is the default tenant, whatever the token says about acme."""
    k = new_key()
    assert client.post("/t/acme/user-keys", token=acme_issuer.token(user), json_body={"key": k}).status == 200
    for path in ("/user-keys", "/t/default/user-keys", "/t/ACME/user-keys", "/t/acme/../user-keys"):
        r = client.get(path, token=acme_issuer.token(user))
        assert r.status in (401, 404), r
        assert k.encode() not in r.body, r
        assert r.json()["code"] in ("invalid_token", "unknown_tenant", "not_found"), r


# ------------------------------------------------------------------------------ end


def test_zz_still_serves_after_forgeries(keyholdd, client, default_issuer, acme_issuer, fivexx_before):
    assert keyholdd.alive(), keyholdd.log()
    for path, iss in (("/user-keys", default_issuer), ("/t/acme/user-keys", acme_issuer)):
        u = tokens.new_guid()
        tok = iss.token(u)
        assert_error(client.get(path, token=tok), 404, "key_not_found")
        k = new_key()
        assert client.post(path, token=tok, json_body={"key": k}).status == 200
        r = client.get(path, token=tok)
        assert r.status == 200 and r.json() == {"key": k}, r
    r = client.get("/health")
    assert r.status == 200, r
    assert _count_5xx(keyholdd) == fivexx_before  # no 5xx answered during this module
