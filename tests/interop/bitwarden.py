"""A Bitwarden server stand-in for the interop suite: just enough of Bitwarden's identity and
api services, over HTTPS with the test CA, for a real Bitwarden CLI to log in, unlock through
keyholdd and decrypt a vault. Test equipment, not a product feature.

It runs in the test process (threads), so a test reads its state and request log directly.
One instance is one Bitwarden installation and so one keyhold tenant: its identity service is
the tenant's `issuer`, with its own RS256 signing key, and like Bitwarden's it names itself
`http://identity` in discovery and in tokens while being served at https://127.0.0.1:P/identity.

The CLI is pointed at a *variant* base URL, https://127.0.0.1:P/<variant>, under which the
same api (`/<variant>/api/...`) and identity (`/<variant>/identity/...`) are served; the
variant only chooses the feature flags of GET /api/config:

  legacy   no flags: the CLI's TypeScript Key Connector code (GET/POST {url}/user-keys)
  sdk      use-unlock-service-for-key-connector-login and use-sdk-for-key-connector-migration:
           the Bitwarden SDK (Rust, WASM) calls Key Connector itself

Routes, and the fields the CLI reads (learnt from the CLI's own sources, which its npm package
ships as source maps):

  identity  GET  /.well-known/openid-configuration[/jwks]       discovery, JWKS
            POST /connect/token   client_credentials (API key: client_id user.<guid>)
                                  authorization_code + PKCE S256 (SSO; amr ["external"])
                                  refresh_token (of an SSO login)
  api       GET  /config                         version, environment, feature flags
            GET  /sync                           profile, organisation, ciphers, decryption
            GET  /accounts/profile, /accounts/revision-date
            POST /accounts/verify-password       (older CLIs check the password at unlock)
            POST /accounts/convert-to-key-connector   (legacy migration)
            POST /accounts/key-connector/enroll       (SDK migration: a new wrapped user key)
  test      POST /_test/sso   {"member", "state", "code_challenge", "redirect_uri"} -> {"code"}:
                 the SSO login a browser would go through (web vault, IdP), made by the
                 suite's xdg-open stand-in for the CLI's browser

Every request is logged ("METHOD path -> status"), and a test failure prints the log.
"""
import base64
import dataclasses
import datetime
import hashlib
import json
import os
import secrets
import ssl
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

import bwcrypto

VARIANTS = {
    "legacy": {},
    "sdk": {"use-unlock-service-for-key-connector-login": True,
            "use-sdk-for-key-connector-migration": True},
}
SERVER_VERSION = "2026.6.0"
TOKEN_LIFETIME_S = 3600
CLIENT_SECRET_LEN = 30


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass
class Item:
    """A vault item's plaintext, as the test made it; the server holds only its ciphertext."""
    id: str
    name: str
    username: str
    password: str
    uri: str
    notes: str

    @staticmethod
    def random() -> "Item":
        tag = secrets.token_hex(6)
        return Item(id=str(uuid.uuid4()), name=f"item {tag}", username=f"user-{tag}@example.test",
                    password=secrets.token_urlsafe(18), uri=f"https://{tag}.example.test/login",
                    notes=f"notes for {tag}: {secrets.token_hex(12)}")


class Member:
    """One Bitwarden account. Either a Key Connector member (kc_key: its key connector key,
    the user key wrapped under it) or a master-password member (password: the user key
    wrapped under its PBKDF2 master key), who becomes a Key Connector member by converting.

    kc_key is what the test made; the server never serves it (Bitwarden never sees a key
    connector key), and after an SDK conversion, whose key the client made, it is None."""

    def __init__(self, name: str, kc_key: bytes | None = None, password: str | None = None,
                 items: int = 3, member_id: str | None = None, kc_url: str | None = None):
        self.id = member_id or str(uuid.uuid4())
        self.kc_url = kc_url  # None: the installation's Key Connector URL
        self.name = name
        self.email = f"{name}-{self.id[:8]}@example.test"
        self.client_id = "user." + self.id
        self.client_secret = secrets.token_urlsafe(CLIENT_SECRET_LEN)[:CLIENT_SECRET_LEN]
        self.user_key = os.urandom(64)
        self.keypair = bwcrypto.KeyPair()
        self.security_stamp = str(uuid.uuid4())
        self.password = password
        self.kc_key = kc_key
        self.uses_key_connector = kc_key is not None
        if kc_key is not None:
            self.wrapped_user_key = bwcrypto.encrypt_type2(bwcrypto.stretch(kc_key), self.user_key)
        else:
            assert password is not None
            mkey = bwcrypto.master_key(password, self.email)
            self.wrapped_user_key = bwcrypto.encrypt_type2(bwcrypto.stretch(mkey), self.user_key)
        self.items = [Item.random() for _ in range(items)]
        self.wrapped_private_key = self.keypair.wrapped_private(self.user_key)
        self.converted = 0   # convert-to-key-connector calls
        self.syncs = 0       # GET /api/sync calls (a CLI login ends with one)

    def rewrap(self, new_kc_key: bytes) -> None:
        """Server-side rotation of the key connector key: the same user key (so the same
        vault) wrapped under a new key connector key."""
        self.kc_key = new_kc_key
        self.wrapped_user_key = bwcrypto.encrypt_type2(bwcrypto.stretch(new_kc_key),
                                                       self.user_key)

    def cipher(self, item: Item) -> dict:
        def enc(s: str) -> str:
            return bwcrypto.encrypt_type2(self.user_key, s.encode())
        stamp = _now_iso()
        return {
            "Object": "cipherDetails", "Id": item.id, "OrganizationId": None, "FolderId": None,
            "Type": 1, "Name": enc(item.name), "Notes": enc(item.notes),
            "Login": {"Username": enc(item.username), "Password": enc(item.password),
                      "Uris": [{"Uri": enc(item.uri), "Match": None}], "Totp": None,
                      "PasswordRevisionDate": None, "Fido2Credentials": None},
            "Fields": None, "Attachments": None, "PasswordHistory": None,
            "CollectionIds": [], "Favorite": False, "Edit": True, "ViewPassword": True,
            "Permissions": {"Delete": True, "Restore": True},
            "OrganizationUseTotp": False, "Reprompt": 0, "Key": None,
            "RevisionDate": stamp, "CreationDate": stamp, "DeletedDate": None,
            "ArchivedDate": None,
        }


class Org:
    """The organisation that requires Key Connector for its members (its URL is keyholdd)."""

    def __init__(self, name: str):
        self.id = str(uuid.uuid4())
        self.name = name
        self.identifier = name
        self.key = os.urandom(64)


class BitwardenServer:
    """One stand-in installation; key_connector_url is set once keyholdd is up."""

    def __init__(self, pki, name: str, iss: str = "http://identity"):
        self.name = name
        self.iss = iss
        self.cert, self.keyfile = pki.leaf(f"bitwarden-{name}")
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8).upper()
        self.org = Org(f"org-{name}")
        self.key_connector_url = ""
        self.members: dict[str, Member] = {}
        self.lock = threading.Lock()
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.log: list[str] = []
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "BitwardenServer":
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.keyfile))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self.server, self.port = server, server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True, name=f"bitwarden-{self.name}").start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        """The identity authority keyholdd discovers (tenant `issuer`)."""
        return f"https://127.0.0.1:{self.port}/identity"

    def base_url(self, variant: str) -> str:
        """The server URL a CLI is configured with (`bw config server`)."""
        assert variant in VARIANTS
        return f"https://127.0.0.1:{self.port}/{variant}"

    def add(self, member: Member) -> Member:
        with self.lock:
            self.members[member.id] = member
        return member

    def kc_url(self, m: Member) -> str:
        return m.kc_url or self.key_connector_url

    def log_tail(self, n: int = 60) -> str:
        with self.lock:
            return "\n".join(self.log[-n:])

    # ------------------------------------------------------------------ tokens

    def token(self, member: Member, amr: str = "Application", device: str = "") -> str:
        """An access token as Bitwarden's identity server issues it (at+jwt, RS256)."""
        now = int(time.time())
        claims = {
            "iss": self.iss, "nbf": now, "iat": now, "exp": now + TOKEN_LIFETIME_S,
            "scope": ["api"] if amr == "Application" else ["api", "offline_access"],
            "amr": [amr], "client_id": "cli" if amr == "external" else member.client_id,
            "sub": member.id, "auth_time": now, "idp": "bitwarden", "premium": False,
            "email": member.email, "email_verified": True, "name": member.name,
            "sstamp": member.security_stamp, "device": device or str(uuid.uuid4()),
            "jti": secrets.token_hex(16).upper(),
        }
        return jwt.encode(claims, self.signing_key, algorithm="RS256",
                          headers={"kid": self.kid, "typ": "at+jwt"})

    def member_for(self, authorization: str | None) -> Member | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        try:
            claims = jwt.decode(authorization[7:], self.signing_key.public_key(),
                                algorithms=["RS256"], options={"verify_aud": False},
                                issuer=self.iss)
        except jwt.PyJWTError:
            return None
        with self.lock:
            return self.members.get(claims.get("sub"))

    def jwks(self) -> dict:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.signing_key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    # ------------------------------------------------------------------ responses

    def _kdf(self) -> dict:
        return {"Kdf": 0, "KdfIterations": bwcrypto.PBKDF2_ITERATIONS, "KdfMemory": None,
                "KdfParallelism": None}

    def _account_keys(self, m: Member) -> dict:
        return {"publicKeyEncryptionKeyPair": {"wrappedPrivateKey": m.wrapped_private_key,
                                               "publicKey": m.keypair.public_b64,
                                               "signedPublicKey": None},
                "signatureKeyPair": None, "securityState": None, "object": "privateKeys"}

    def _master_password_unlock(self, m: Member) -> dict | None:
        if m.uses_key_connector:
            return None
        return {"Kdf": {"KdfType": 0, "Iterations": bwcrypto.PBKDF2_ITERATIONS,
                        "Memory": None, "Parallelism": None},
                "MasterKeyEncryptedUserKey": m.wrapped_user_key, "Salt": m.email.lower()}

    def token_response(self, m: Member, amr: str, device: str) -> dict:
        options = {"HasMasterPassword": not m.uses_key_connector, "Object": "userDecryptionOptions"}
        if m.uses_key_connector:
            options["KeyConnectorOption"] = {"KeyConnectorUrl": self.kc_url(m)}
        else:
            options["MasterPasswordUnlock"] = self._master_password_unlock(m)
        body = {
            "access_token": self.token(m, amr, device), "expires_in": TOKEN_LIFETIME_S,
            "token_type": "Bearer", "scope": "api offline_access" if amr == "external" else "api",
            "Key": m.wrapped_user_key, "PrivateKey": m.wrapped_private_key,
            "AccountKeys": self._account_keys(m),
            "ForcePasswordReset": False, "ResetMasterPassword": False,
            "ApiUseKeyConnector": m.uses_key_connector,
            "MasterPasswordPolicy": {"Object": "masterPasswordPolicy"},
            "UserDecryptionOptions": options,
        }
        body.update(self._kdf())
        if amr == "external":
            body["refresh_token"] = secrets.token_hex(32)
            with self.lock:
                self.refresh_tokens[body["refresh_token"]] = m.id
        return body

    def profile(self, m: Member) -> dict:
        org = self.org
        return {
            "Object": "profile", "Id": m.id, "Name": m.name, "Email": m.email,
            "EmailVerified": True, "Premium": False, "PremiumFromOrganization": False,
            "Culture": "en-US", "TwoFactorEnabled": False, "Key": m.wrapped_user_key,
            "PrivateKey": m.wrapped_private_key, "AccountKeys": self._account_keys(m),
            "SecurityStamp": m.security_stamp, "ForcePasswordReset": False,
            "UsesKeyConnector": m.uses_key_connector, "AvatarColor": None,
            "CreationDate": _now_iso(), "VerifyDevices": False,
            "Organizations": [{
                "Object": "profileOrganization", "Id": org.id, "Name": org.name,
                "Identifier": org.identifier, "Key": bwcrypto.encrypt_type4(
                    m.keypair.private.public_key(), org.key),
                "Status": 2, "Type": 2, "Enabled": True, "Seats": 100, "MaxCollections": None,
                "UsePolicies": True, "UseSso": True, "UseKeyConnector": True,
                "KeyConnectorEnabled": True, "KeyConnectorUrl": self.kc_url(m),
                "UseGroups": False, "UseDirectory": False, "UseEvents": False,
                "UseTotp": True, "Use2fa": True, "UseApi": True, "UseResetPassword": False,
                "UseSecretsManager": False, "UsePasswordManager": True, "SelfHost": True,
                "UsersGetPremium": False, "HasPublicAndPrivateKeys": False,
                "ResetPasswordEnrolled": False, "SsoBound": True, "SsoEnabled": True,
                "SsoMemberDecryptionType": 1, "UserId": m.id,
                "OrganizationUserId": str(uuid.UUID(int=uuid.UUID(m.id).int ^ 1)),
                "ProductTierType": 3, "AccessSecretsManager": False,
                "LimitCollectionCreation": False, "LimitCollectionDeletion": False,
                "LimitItemDeletion": False, "AllowAdminAccessToAllCollectionItems": True,
                "UserIsManagedByOrganization": True, "UserIsClaimedByOrganization": True,
                "permissions": {k: False for k in (
                    "accessEventLogs", "accessImportExport", "accessReports",
                    "createNewCollections", "editAnyCollection", "deleteAnyCollection",
                    "manageGroups", "managePolicies", "manageSso", "manageUsers",
                    "manageResetPassword", "manageScim")},
            }],
            "Providers": [], "ProviderOrganizations": [],
        }

    def sync(self, m: Member) -> dict:
        decryption = {"Object": "userDecryption"}
        unlock = self._master_password_unlock(m)
        if unlock:
            decryption["MasterPasswordUnlock"] = unlock
        return {
            "Object": "sync", "Profile": self.profile(m), "Folders": [], "Collections": [],
            "Ciphers": [m.cipher(i) for i in m.items],
            "Domains": {"Object": "domains", "EquivalentDomains": [],
                        "GlobalEquivalentDomains": []},
            "Policies": [], "Sends": [], "UserDecryption": decryption,
        }

    def config(self, variant: str) -> dict:
        base = self.base_url(variant)
        return {
            "Object": "config", "Version": SERVER_VERSION, "GitHash": "keyhold-test",
            "Server": None, "Environment": {
                "CloudRegion": None, "Vault": base, "Api": base + "/api",
                "Identity": base + "/identity", "Notifications": base + "/notifications",
                "Sso": base + "/sso"},
            "FeatureStates": dict(VARIANTS[variant]),
            "Push": {"PushTechnology": 0, "VapidPublicKey": None},
            "Settings": {"DisableUserRegistration": True},
        }

    # ------------------------------------------------------------------ SSO

    def sso_code(self, member_id: str, state: str, challenge: str, redirect_uri: str) -> str:
        code = secrets.token_urlsafe(24)
        with self.lock:
            if member_id not in self.members:
                raise KeyError(member_id)
            self.codes[code] = {"member": member_id, "challenge": challenge,
                                "redirect_uri": redirect_uri, "state": state}
        return code

    def redeem(self, code: str, verifier: str, redirect_uri: str) -> Member | None:
        with self.lock:
            c = self.codes.pop(code, None)
            if c is None or c["redirect_uri"] != redirect_uri:
                return None
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != c["challenge"]:
                return None
            return self.members.get(c["member"])


def _handler(bw: BitwardenServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def _send(self, status: int, obj=None) -> None:
            body = b"" if obj is None else json.dumps(obj).encode()
            self.send_response(status)
            if obj is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            with bw.lock:
                bw.log.append(f"{time.strftime('%H:%M:%S')} {self.command} "
                              f"{self.path.split('?', 1)[0]} -> {status}")

        def _route(self) -> tuple[str, str, str]:
            """(variant, service, rest): /<variant>/<service>/<rest>; variant may be ''."""
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            variant = parts.pop(0) if parts and parts[0] in VARIANTS else ""
            service = parts.pop(0) if parts else ""
            return variant, service, "/" + "/".join(parts)

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def do_GET(self):
            variant, service, rest = self._route()
            if service == "identity" and rest == "/.well-known/openid-configuration":
                base = f"https://127.0.0.1:{bw.port}/identity"
                return self._send(200, {
                    "issuer": bw.iss, "jwks_uri": base + "/.well-known/openid-configuration/jwks",
                    "authorization_endpoint": base + "/connect/authorize",
                    "token_endpoint": base + "/connect/token",
                    "response_types_supported": ["code"], "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["api", "offline_access"]})
            if service == "identity" and rest == "/.well-known/openid-configuration/jwks":
                return self._send(200, bw.jwks())
            if service == "api" and rest == "/config" and variant:
                return self._send(200, bw.config(variant))
            m = bw.member_for(self.headers.get("Authorization"))
            if service != "api" or m is None:
                return self._send(401 if service == "api" else 404, None)
            if rest == "/sync":
                with bw.lock:
                    m.syncs += 1
                return self._send(200, bw.sync(m))
            if rest == "/accounts/profile":
                return self._send(200, bw.profile(m))
            if rest == "/accounts/revision-date":
                return self._send(200, int(time.time() * 1000))
            return self._send(404, None)

        def do_POST(self):
            variant, service, rest = self._route()
            raw = self._body()
            if service == "identity" and rest == "/connect/token":
                return self._token(urllib.parse.parse_qs(raw.decode()))
            if service == "_test" and rest == "/sso":
                req = json.loads(raw)
                try:
                    code = bw.sso_code(req["member"], req["state"], req["code_challenge"],
                                       req["redirect_uri"])
                except KeyError:
                    return self._send(404, {"error": "unknown member"})
                return self._send(200, {"code": code})
            m = bw.member_for(self.headers.get("Authorization"))
            if service != "api" or m is None:
                return self._send(401 if service == "api" else 404, None)
            if rest == "/accounts/verify-password":
                sent = (json.loads(raw or b"{}").get("masterPasswordHash") or "")
                if m.password is None or m.uses_key_connector or not secrets.compare_digest(
                        sent, bwcrypto.master_password_hash(
                            bwcrypto.master_key(m.password, m.email), m.password)):
                    return self._send(400, {"message": "Invalid password.", "object": "error"})
                return self._send(200, {"Object": "masterPasswordPolicy"})
            if rest == "/accounts/convert-to-key-connector":
                # Legacy: the client posted its master key to Key Connector; the user key
                # stays wrapped under it.
                with bw.lock:
                    m.uses_key_connector, m.converted = True, m.converted + 1
                return self._send(200, None)
            if rest == "/accounts/key-connector/enroll":
                # SDK: the client made a new key connector key, posted it to Key Connector,
                # and sends the user key wrapped under it.
                wrapped = json.loads(raw or b"{}").get("keyConnectorKeyWrappedUserKey")
                if not isinstance(wrapped, str) or not wrapped.startswith("2."):
                    return self._send(400, {"message": "bad wrapped key", "object": "error"})
                with bw.lock:
                    m.uses_key_connector, m.converted = True, m.converted + 1
                    m.wrapped_user_key, m.kc_key = wrapped, None
                return self._send(200, None)
            return self._send(404, None)

        def do_PUT(self):
            self._body()
            self._send(404, None)

        def _token(self, form: dict) -> None:
            def field(name: str) -> str:
                return (form.get(name) or [""])[0]
            grant, device = field("grant_type"), field("deviceIdentifier")
            if grant == "client_credentials":
                cid = field("client_id")
                with bw.lock:
                    m = bw.members.get(cid[5:]) if cid.startswith("user.") else None
                if m is None or not secrets.compare_digest(field("client_secret"),
                                                           m.client_secret):
                    return self._send(400, {"error": "invalid_client"})
                return self._send(200, bw.token_response(m, "Application", device))
            if grant == "authorization_code":
                m = bw.redeem(field("code"), field("code_verifier"), field("redirect_uri"))
                if m is None:
                    return self._send(400, {"error": "invalid_grant"})
                return self._send(200, bw.token_response(m, "external", device))
            if grant == "refresh_token":
                with bw.lock:
                    m = bw.members.get(bw.refresh_tokens.pop(field("refresh_token"), ""))
                if m is None:
                    return self._send(400, {"error": "invalid_grant"})
                return self._send(200, bw.token_response(m, "external", device))
            return self._send(400, {"error": "unsupported_grant_type"})

    return Handler
