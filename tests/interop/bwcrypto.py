"""Bitwarden's client-side key formats, as far as the Bitwarden server stand-in needs them to
make accounts a real Bitwarden CLI can open (../shared/spec/encstring.md):

  - EncString type 2 (AES-256-CBC, PKCS#7, HMAC-SHA256 over iv | ciphertext) under a 64-byte
    key (enc_key | mac_key): user keys wrapped by a stretched 32-byte key, vault fields and
    the private key under the user key;
  - EncString type 4 (RSA-2048 OAEP SHA-1): organisation keys for a member's public key (and,
    for the trusted-device tests and bench/devices.py, user keys for a device or a request);
  - stretch: HKDF-Expand(key32, "enc" / "mac") to 64 bytes (master key, key connector key);
  - the master key: PBKDF2-SHA256(password, salt = email lower-cased, iterations).

The test checks its own round trip (decrypt_type2) and the vector of encstring.md V4, so a
mistake here shows up as a failed self-test, not as a puzzling CLI error."""
import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

PBKDF2_ITERATIONS = 600000  # Bitwarden's default for new accounts


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def stretch(key32: bytes) -> bytes:
    """32-byte master key or key connector key -> 64-byte enc_key | mac_key."""
    assert len(key32) == 32
    enc = HKDFExpand(hashes.SHA256(), 32, b"enc").derive(key32)
    mac = HKDFExpand(hashes.SHA256(), 32, b"mac").derive(key32)
    return enc + mac


def master_key(password: str, email: str, iterations: int = PBKDF2_ITERATIONS) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), email.strip().lower().encode(),
                               iterations, 32)


def master_password_hash(mkey: bytes, password: str) -> str:
    """What a client sends as the password in a password grant (one more PBKDF2 round)."""
    return b64(hashlib.pbkdf2_hmac("sha256", mkey, password.encode(), 1, 32))


def encrypt_type2(key64: bytes, plaintext: bytes) -> str:
    assert len(key64) == 64
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(key64[:32]), modes.CBC(iv)).encryptor()
    ct = enc.update(padded) + enc.finalize()
    mac = hmac.new(key64[32:], iv + ct, hashlib.sha256).digest()
    return f"2.{b64(iv)}|{b64(ct)}|{b64(mac)}"


def decrypt_type2(key64: bytes, encstring: str) -> bytes:
    kind, rest = encstring.split(".", 1)
    assert kind == "2", encstring
    iv, ct, mac = (base64.b64decode(p) for p in rest.split("|"))
    want = hmac.new(key64[32:], iv + ct, hashlib.sha256).digest()
    if not hmac.compare_digest(want, mac):
        raise ValueError("EncString MAC mismatch")
    dec = Cipher(algorithms.AES(key64[:32]), modes.CBC(iv)).decryptor()
    padded = dec.update(ct) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def encrypt_type4(public_key, plaintext: bytes) -> str:
    ct = public_key.encrypt(plaintext, asym_padding.OAEP(
        mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    return f"4.{b64(ct)}"


def decrypt_type4(private_key, encstring: str) -> bytes:
    """Opens a type 4 (what an approver encrypts a user key to a requester's key with)."""
    if not isinstance(encstring, str) or not encstring.startswith("4."):
        raise ValueError(f"not a type 4 EncString: {encstring!r}")
    return private_key.decrypt(base64.b64decode(encstring[2:]), asym_padding.OAEP(
        mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))


class KeyPair:
    """A member's RSA-2048 key pair: public key as base64 SPKI DER, private key as PKCS#8 DER
    wrapped (type 2) under the user key, as Bitwarden stores them."""

    def __init__(self):
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_b64 = b64(self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))

    def wrapped_private(self, user_key: bytes) -> str:
        der = self.private.private_bytes(serialization.Encoding.DER,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        return encrypt_type2(user_key, der)


def self_test() -> None:
    # encstring.md V4: stretching the sdk-internal key connector key vector.
    k = bytes.fromhex("1f4f68e29647b15ac250acd1118184518aa745a7fe95021b27c5402a16c3564b")
    assert stretch(k) == bytes.fromhex(
        "6f1fb22dee9825728fd77c5387adc3178e8678f93d84a3b671c5bdccbc15ed60"
        "dd7fceea651bca265634221c4e1cb910303d7fa6d1f7c257e81a3055c1f9b39b")
    s = stretch(os.urandom(32))
    user_key = os.urandom(64)
    assert decrypt_type2(s, encrypt_type2(s, user_key)) == user_key
