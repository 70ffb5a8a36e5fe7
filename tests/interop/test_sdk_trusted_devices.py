"""Trusted devices between libkeyhold and Bitwarden's own SDK (issue #17: "a device bundle or
approval made by libkeyhold must open in Bitwarden's own SDK and the reverse").

Two line-protocol helpers do the cryptography, each with one library only:

  kh-tde      (kh-tde.c, built by meson)  libkeyhold's public API (include/keyhold/)
  sdk-tde.mjs (on the pinned Node)        the PureCrypto functions of @bitwarden/sdk-internal,
                                          loaded from the pinned Bitwarden CLI's bundle
                                          (SDK_CLI below): its WebAssembly, unmodified

Every check compares values (keys, plaintexts, public keys), never just an exit status:

  a  a device bundle libkeyhold makes opens in the SDK (device key -> private key -> user
     key), and its encryptedPublicKey is the public half of that private key
  b  a device bundle the SDK makes opens in libkeyhold
  c  approvals (the user key encapsulated to a requester's public key), both ways
  d  EncString type 2, both ways, several lengths; a flipped MAC byte is refused both ways
  e  the trusted-device vector of spec/trusted-devices.md 2.3 opens in both
"""
import base64
import json
import os
import pathlib
import select
import subprocess
import time

import pytest

import harness

SDK_CLI = "2026.6.0"  # the pinned CLI release (bwcli.VERSIONS) whose bundled SDK is used
CALL_TIMEOUT_S = 60   # bound on one operation, SDK loading included (not a performance check)

HERE = pathlib.Path(__file__).resolve().parent

# spec/trusted-devices.md 2.3: bitwarden/sdk-internal crates/bitwarden-crypto/src/keys/
# device_key.rs, test_decrypt_user_key ("example keys from desktop app").
VECTOR_DEVICE_KEY = ("cus8c6ycy5HDgtf6WJLX5gxt9d422f/T3Wnm7EE00YVM0HH+wticE+Y+IF1XB5CcdY76ILZ2uwj3"
                     "B8vJQZPO9w==")
VECTOR_USER_KEY = ("bYCsk857hl8QJJtxyRK65tjUrbxKC4aDifJpsml+NIv4W9cVgFvi3qVD+yJTUU2T4UwNKWYtt9pq"
                   "Wf7Q+2WCCg==")
VECTOR_ENC_USER_KEY = (
    "4.f+VbbacRhO2q4MOUSdt1AIjQ2FuLAvg4aDxJMXAh3VxvbmUADj8Ct/R7XEpPUqApmbRS566jS0eRVy8Sk08ogoCdj1"
    "IFN9VsIky2i2X1WHK1fUnr3UBmXE3tl2NPBbx56U+h73S2jNTSyet2W18Jg2q7/w8KIhR3J41QrG9aGoOTN93to3hb5W"
    "4z6rdrSI0e7GkizbwcIA0NH7Z1JyAhrjPm9+tjRjg060YbEbGaWTAOkZWfgbLjr8bY455DteO2xxG139cOx7EBo66N+Y"
    "hjsLi0ozkeUyPQkoWBdKMcQllS7jCfB4fDyJA05ALTbk74syKkvqFxqwmQbg+aVn+dcw==")
VECTOR_ENC_PRIVATE_KEY = (
    "2.GyQfUYWW6Byy4UV5icFLxg==|EMiU7OTF79N6tfv3+YUs5zJhBAgqv6sa5YCoPl6yAETh7Tfk+JmbeizxXFPj5Q1X"
    "/tcVpDZl/3fGcxtnIxg1YtvDFn7j8uPnoApOWhCKmwcvJSIkt+qvX3lELNBwZXozSiy7PbQ0JbCMe2d4MkimR5k8+lE9"
    "FB3208yYK7nOJhlrsUCnOekCYEU9/4NCMA8tz8SpITx/MN4JJ1TQ/KjPJYLt+3JNUxK47QlgREWQvyVzCRt7ZGtcgIJ/"
    "U1qycAWMpEg9NkuV8j5QRA1S7VBsA6qliJwys5+dmTuIOmOMwdKFZDc4ZvWoRkPp2TSJBu7L8sSAgU6mmDWac8iQ+9Ka"
    "/drdfwYLrH8GAZvURk79tSpRrT7+PAFe2QdUtliUIyiqkh8iJVjZube4hRnEsRuX9V9b+UdtAr6zAj7mugO/VAu5T9J3"
    "8V79V2ohG3NtXysDeKLXpAlkhjllWXeq/wret2fD4WiwqEDj0G2A/PY3F3OziIgp0UKc00AfqrPq8OVK3A+aowwVqdYa"
    "dgxyoVCKWJ8unJeAXG7MrMQ9tHpzF6COoaEy7Wwoc17qko33zazwLZbfAjB4oc8Ea26jRKnJZP56sVZAjOSQQMziAsA0"
    "8MRaa/DQhgRea1+Ygba0gMft8Dww8anN2gQBveTZRBWyqXYgN3U0Ity5gNauT8RnFk9faqVFt2Qxnp0JgJ+PsqEt5Hn4"
    "avBRZQQ7o8VvPnxYLDKFe3I2m6HFYFWRhOGeDYxexIuaiF2iIAYFVUmnDuWpgnUiL4XJ3KHDsjkPzcV3z4D2Knr/El2V"
    "VXve8jhDjETfovmmN28+i2e29PXvKIymTskMFpFCQPc7wBY/Id7pmgb3SujKYNpkAS2sByDoRir0my49DDGfta0dENss"
    "JhFd3x+87fZbEj3cMiikg2pBwpTLgmfIUa5cVZU2s8JZ9wu7gaioYzvX+elHa3EHLcnEUoJTtSf9kjb+Nbq4ktMgYAO2"
    "wIC96t1LvmqK4Qn2cOdw5QNlRqALhqe5V31kyIcwRMK0AyIoOPhnSqtpYdFiR3LDTvZA8dU0vSsuchCwHNMeRUtKvdzN"
    "/tk+oeznyY/mpakUESN501lEKd/QFLtJZsDZTtNlcA8fU3kDtws4ZIMR0O5+PFmgQFSU8OMobf9ClUzy/wHTvYGyDuSw"
    "bOoPeS955QKkUKXCNMj33yrPr+ioHQ1BNwLX3VmMF4bNRBY/vr+CG0/EZi0Gwl0kyHGl0yWEtpQuu+/PaROJeOraWy5D"
    "1UoZZhY4n0zJZBt1eg3FZ2rhKv4gdUc50nZpeNWE8pIqZ6RQ7qPJuqfF1Z+G73iOSnLYCHDiiFmhD5ivf9IGkTAcWcBs"
    "Q/2wcSj9bFJr4DrKfsbQ4CkSWICWVn/W+InKkO6BTsBbYmvte5SvbaN+UOtiUSkHLBCCr8273VNgcB/hgtbUires3nox"
    "YZJxoczr+i7vdlEgQnWEKrpo0CifsFxGwYS3Yy2K79iwvDMaLPDf73zLSbuoUl6602F2Mzcjnals67f+gSpaDvWt7Kg9"
    "c/ZfGjq8oNxVaXJnX3gSDsO+fhwVAtnDApL+tL8cFfxGerW4KGi9/74woH+C3MMIViBtNnrpEuvxUW97Dg5nd40oGDey"
    "i/q+8HdcxkneyFY=|JYdol19Yi+n1r7M+06EwK5JCi2s/CWqKui2Cy6hEb3k=")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


class OpFailed(Exception):
    """The helper answered {"error": ...}: the library refused the operation."""


class LineTool:
    """One helper process: a JSON object per line in, one per line out."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None):
        self.name = name
        self.argv = argv
        self.env = env
        self.calls: list[str] = []

    def start(self, tmp) -> "LineTool":
        self.stderr_path = tmp / f"{self.name}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, bufsize=0, env=self.env)
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def __call__(self, op: str, **args) -> dict:
        self.calls.append(op)
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + CALL_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                pytest.fail(f"{self.name}: no answer to {op} in {CALL_TIMEOUT_S} s\n"
                            f"{self.stderr()}", pytrace=False)
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                pytest.fail(f"{self.name} exited ({self.proc.wait()}) during {op}:\n"
                            f"{self.stderr()}", pytrace=False)
            line += chunk
        res = json.loads(line)
        if "error" in res:
            raise OpFailed(f"{self.name} {op}: {res['error']}")
        return res

    def close(self) -> int:
        self.proc.stdin.close()
        try:
            rc = self.proc.wait(timeout=CALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._stderr.close()
        return rc


@pytest.fixture(scope="module")
def kh(tmp_path_factory):
    binary = harness.build_dir() / "tests" / "interop" / "kh-tde"
    if not binary.exists():
        pytest.fail(f"kh-tde not built: {binary} (set KEYHOLD_BUILD to a meson build dir)",
                    pytrace=False)
    tool = LineTool("kh-tde", [str(binary)]).start(tmp_path_factory.mktemp("kh-tde"))
    yield tool
    rc = tool.close()
    # Under ASan, LeakSanitizer reports at exit: a leak or an error fails the module here.
    assert rc == 0, f"kh-tde exited {rc}:\n{tool.stderr()}"


@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    cli_pkg = harness.JS_DIR / "node_modules" / f"bw-{SDK_CLI}"
    tool = LineTool("sdk-tde", [str(harness.pinned_node()), str(HERE / "sdk-tde.mjs"),
                                str(cli_pkg)]).start(tmp_path_factory.mktemp("sdk-tde"))
    v = tool("version")
    assert v["cli"] == SDK_CLI
    tool.version = v["sdk"]
    yield tool
    rc = tool.close()
    assert rc == 0, f"sdk-tde exited {rc}:\n{tool.stderr()}"


def test_sdk_loaded(sdk):
    """The SDK's own client reports its build (sdk-internal's version string)."""
    assert sdk.version, "the SDK did not report a version"


# --- a: libkeyhold's device bundle in the SDK -------------------------------------------

def test_libkeyhold_device_bundle_opens_in_sdk(kh, sdk):
    user_key = os.urandom(64)
    t = kh("trust", user_key=b64(user_key))
    assert t["encrypted_user_key"].startswith("4.")
    assert t["encrypted_public_key"].startswith("2.")
    assert t["encrypted_private_key"].startswith("2.")
    assert len(unb64(t["device_key"])) == 64

    # The SDK unlocks as a Bitwarden client on that device would.
    opened = sdk("unlock", device_key=t["device_key"],
                 encrypted_private_key=t["encrypted_private_key"],
                 encrypted_user_key=t["encrypted_user_key"])
    assert unb64(opened["user_key"]) == user_key

    # encryptedPublicKey, opened by the SDK with the user key, is the public half of the
    # private key the device key opened.
    spki = unb64(sdk("unwrap_public_key", key=b64(user_key),
                     enc=t["encrypted_public_key"])["spki"])
    assert spki == unb64(sdk("public_key", pkcs8=opened["pkcs8"])["spki"])
    # The user key also decapsulates step by step, with that private key.
    assert unb64(sdk("decapsulate", pkcs8=opened["pkcs8"],
                     enc=t["encrypted_user_key"])["data"]) == user_key


def test_libkeyhold_device_bundle_wrong_device_key_refused_by_sdk(kh, sdk):
    t = kh("trust", user_key=b64(os.urandom(64)))
    with pytest.raises(OpFailed):
        sdk("unlock", device_key=b64(os.urandom(64)),
            encrypted_private_key=t["encrypted_private_key"],
            encrypted_user_key=t["encrypted_user_key"])


# --- b: the SDK's device bundle in libkeyhold -------------------------------------------

def test_sdk_device_bundle_opens_in_libkeyhold(kh, sdk):
    user_key = os.urandom(64)
    s = sdk("trust", user_key=b64(user_key))
    assert len(unb64(s["device_key"])) == 64
    assert s["encrypted_user_key"].startswith("4.")

    got = kh("unlock", device_key=s["device_key"],
             encrypted_private_key=s["encrypted_private_key"],
             encrypted_user_key=s["encrypted_user_key"])
    assert unb64(got["user_key"]) == user_key

    # The pieces, each opened by libkeyhold: the private key under the device key, the
    # public key under the user key.
    assert unb64(kh("decrypt", key=s["device_key"],
                    enc=s["encrypted_private_key"])["data"]) == unb64(s["pkcs8"])
    assert unb64(kh("decrypt", key=b64(user_key),
                    enc=s["encrypted_public_key"])["data"]) == unb64(s["spki"])


def test_sdk_device_bundle_wrong_device_key_refused_by_libkeyhold(kh, sdk):
    s = sdk("trust", user_key=b64(os.urandom(64)))
    with pytest.raises(OpFailed, match="integrity check failed"):
        kh("unlock", device_key=b64(os.urandom(64)),
           encrypted_private_key=s["encrypted_private_key"],
           encrypted_user_key=s["encrypted_user_key"])


# --- c: approvals (an approving device encapsulates the user key to a request's key) ----

def test_libkeyhold_approval_opens_in_sdk(kh, sdk):
    """The requester is an SDK client; the approver uses libkeyhold."""
    user_key = os.urandom(64)
    requester = sdk("keypair")
    approval = kh("encapsulate", spki=requester["spki"], data=b64(user_key))["enc"]
    assert approval.startswith("4.")
    assert unb64(sdk("decapsulate", pkcs8=requester["pkcs8"], enc=approval)["data"]) == user_key


def test_sdk_approval_opens_in_libkeyhold(kh, sdk):
    """The requester uses libkeyhold; the approver is an SDK client."""
    user_key = os.urandom(64)
    requester = kh("keypair")
    # The SDK reads libkeyhold's private key and derives exactly libkeyhold's public key.
    assert unb64(sdk("public_key", pkcs8=requester["pkcs8"])["spki"]) == unb64(requester["spki"])
    approval = sdk("encapsulate", spki=requester["spki"], data=b64(user_key))["enc"]
    assert approval.startswith("4.")
    assert unb64(kh("decapsulate", pkcs8=requester["pkcs8"], enc=approval)["data"]) == user_key


def test_approval_to_another_key_refused(kh, sdk):
    user_key = os.urandom(64)
    requester, other = kh("keypair"), sdk("keypair")
    approval = kh("encapsulate", spki=requester["spki"], data=b64(user_key))["enc"]
    with pytest.raises(OpFailed):
        sdk("decapsulate", pkcs8=other["pkcs8"], enc=approval)
    approval = sdk("encapsulate", spki=other["spki"], data=b64(user_key))["enc"]
    with pytest.raises(OpFailed):
        kh("decapsulate", pkcs8=requester["pkcs8"], enc=approval)


# --- d: EncString type 2 ----------------------------------------------------------------

LENGTHS = [0, 1, 15, 16, 17, 64, 1218, 5000]


@pytest.mark.parametrize("n", LENGTHS)
def test_type2_libkeyhold_to_sdk(kh, sdk, n):
    key, data = os.urandom(64), os.urandom(n)
    enc = kh("encrypt", key=b64(key), data=b64(data))["enc"]
    assert enc.startswith("2.")
    assert unb64(sdk("decrypt", key=b64(key), enc=enc)["data"]) == data


@pytest.mark.parametrize("n", LENGTHS)
def test_type2_sdk_to_libkeyhold(kh, sdk, n):
    key, data = os.urandom(64), os.urandom(n)
    enc = sdk("encrypt", key=b64(key), data=b64(data))["enc"]
    assert enc.startswith("2.")
    assert unb64(kh("decrypt", key=b64(key), enc=enc)["data"]) == data


def flip_mac(enc: str) -> str:
    head, ct, mac = enc.split("|")
    raw = bytearray(unb64(mac))
    raw[0] ^= 1
    return f"{head}|{ct}|{b64(bytes(raw))}"


def test_type2_tampered_refused_both_ways(kh, sdk):
    key, data = os.urandom(64), b"a vault field"
    enc = kh("encrypt", key=b64(key), data=b64(data))["enc"]
    with pytest.raises(OpFailed):
        sdk("decrypt", key=b64(key), enc=flip_mac(enc))
    enc = sdk("encrypt", key=b64(key), data=b64(data))["enc"]
    with pytest.raises(OpFailed, match="integrity check failed"):
        kh("decrypt", key=b64(key), enc=flip_mac(enc))


# --- e: the spec's vector ---------------------------------------------------------------

@pytest.mark.parametrize("side", ["libkeyhold", "sdk"])
def test_spec_vector_opens(kh, sdk, side):
    tool = kh if side == "libkeyhold" else sdk
    got = tool("unlock", device_key=VECTOR_DEVICE_KEY,
               encrypted_private_key=VECTOR_ENC_PRIVATE_KEY,
               encrypted_user_key=VECTOR_ENC_USER_KEY)
    assert unb64(got["user_key"]) == unb64(VECTOR_USER_KEY)


def test_spec_vector_private_key_same_in_both(kh, sdk):
    """Both read the vector's private key to the same 1218 bytes of PKCS#8."""
    mine = unb64(kh("decrypt", key=VECTOR_DEVICE_KEY, enc=VECTOR_ENC_PRIVATE_KEY)["data"])
    theirs = unb64(sdk("unlock", device_key=VECTOR_DEVICE_KEY,
                       encrypted_private_key=VECTOR_ENC_PRIVATE_KEY,
                       encrypted_user_key=VECTOR_ENC_USER_KEY)["pkcs8"])
    assert len(mine) == 1218 and mine == theirs
