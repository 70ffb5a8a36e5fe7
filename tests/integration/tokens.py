"""Minting Bitwarden-style access tokens with a test issuer's private key, and forging bad
ones. Good tokens go through PyJWT; forgeries PyJWT refuses to make (alg none, HS256 keyed
with the RSA public key PEM) are assembled by hand with the standard library."""
import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt

DELETE = object()  # claim override meaning "leave this claim out"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def new_guid() -> str:
    return str(uuid.uuid4())


def claims(sub: str, iss: str, /, **overrides) -> dict:
    """The claims of a Bitwarden access token (spec 3.2), with overrides; DELETE drops one."""
    now = int(time.time())
    c = {
        "nbf": now - 10,
        "exp": now + 3600,
        "iss": iss,
        "client_id": "web",
        "sub": sub,
        "auth_time": now - 10,
        "idp": "bitwarden",
        "premium": False,
        "email": f"{sub[:8]}@example.test",
        "email_verified": True,
        "sstamp": "8e9f0e0a-5a80-4f5c-9a4b-6f0f3b0a2e11",
        "name": "Test User",
        "orgowner": [],
        "device": "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9",
        "jti": uuid.uuid4().hex,
        "iat": now - 10,
        "scope": ["api", "offline_access"],
        "amr": ["Application"],
    }
    for k, v in overrides.items():
        if v is DELETE:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def mint(claims_: dict, key, kid: str | None, alg: str = "RS256", headers: dict | None = None) -> str:
    """A JWS signed with key (a cryptography private key or PEM bytes)."""
    h = {"typ": "at+jwt"}
    if kid is not None:
        h["kid"] = kid
    if headers:
        h.update(headers)
    return jwt.encode(claims_, key, algorithm=alg, headers=h)


def _segments(header: dict, claims_: dict) -> str:
    return (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
            b64url(json.dumps(claims_, separators=(",", ":")).encode()))


def alg_none(claims_: dict, kid: str | None = "key-1", alg: str = "none", signature: str = "") -> str:
    """Unsigned token ("alg": "none", or any spelling), with an empty or junk signature."""
    h = {"alg": alg, "typ": "at+jwt"}
    if kid is not None:
        h["kid"] = kid
    return _segments(h, claims_) + "." + signature


def hs256_with_public_key(claims_: dict, public_pem: bytes, kid: str) -> str:
    """Algorithm-confusion forgery: HMAC-SHA256 keyed with the issuer's RSA public key PEM."""
    signing_input = _segments({"alg": "HS256", "typ": "at+jwt", "kid": kid}, claims_)
    sig = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def bad_signature(token: str) -> str:
    """The same token with one bit of its signature flipped."""
    h, p, s = token.split(".")
    sig = bytearray(b64url_decode(s))
    sig[len(sig) // 2] ^= 0x01
    return f"{h}.{p}.{b64url(bytes(sig))}"


def tamper_claims(token: str, **changes) -> str:
    """The token's header and signature with modified claims (signature no longer matches)."""
    h, p, s = token.split(".")
    c = json.loads(b64url_decode(p))
    c.update(changes)
    return f"{h}.{b64url(json.dumps(c, separators=(',', ':')).encode())}.{s}"


def swap_header(token: str, **changes) -> str:
    """The token with header fields changed and the old signature kept."""
    h, p, s = token.split(".")
    hd = json.loads(b64url_decode(h))
    hd.update(changes)
    return f"{b64url(json.dumps(hd, separators=(',', ':')).encode())}.{p}.{s}"
