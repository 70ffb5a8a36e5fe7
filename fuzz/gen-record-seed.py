#!/usr/bin/python3
"""Writes the seed corpus of fuzz-record: blobs sealed, independently of keyhold's C code,
for the fixed binding fuzz-record.c opens with, plus near misses. The binding follows
src/service/record.h ("keyhold:1" NUL | tenant NUL | kind byte | owner NUL | version as 4
big-endian bytes) and the blob src/crypto/aead.h (nonce(12) || ciphertext || tag(16),
AES-256-GCM). Nonces are fixed so the output is reproducible: these are test vectors,
never keys anyone uses. Run once; fuzz-record.c carries the bytes of valid-sealed and
checks on every run that it, and nothing else, opens (to the expected plaintext)."""
import pathlib

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DEK = bytes(range(32))
TENANT = b"acme"
KIND_USER_KEY = 1
OWNER = b"6f1c2a4e-0b7d-4c3e-9a85-2d4f6b8e1c07"
VERSION = 7
PLAINTEXT = b"keyhold fuzz record plaintext!!!"
NONCE = bytes.fromhex("000102030405060708090a0b")


def aad(tenant=TENANT, kind=KIND_USER_KEY, owner=OWNER, version=VERSION):
    return b"keyhold:1\0" + tenant + b"\0" + bytes([kind]) + owner + b"\0" + \
            version.to_bytes(4, "big")


def seal(key=DEK, nonce=NONCE, pt=PLAINTEXT, **binding):
    return nonce + AESGCM(key).encrypt(nonce, pt, aad(**binding))


assert len(PLAINTEXT) == 32
valid = seal()
tampered = bytearray(valid)
tampered[-1] ^= 1
seeds = {
    "valid-sealed": valid,
    "other-version": seal(version=8),
    "other-owner": seal(owner=OWNER.replace(b"6f1c", b"6f1d")),
    "other-tenant": seal(tenant=b"acme2"),
    "other-kind": seal(kind=2),
    "other-key": seal(key=bytes(32)),
    "tampered-tag": bytes(tampered),
    "truncated": valid[:-1],
    "overhead-only": valid[:12] + valid[-16:],
    "empty": b"",
    "large-other-version": seal(pt=bytes(4096), version=8),
}
out = pathlib.Path(__file__).resolve().parent / "corpus" / "record"
out.mkdir(parents=True, exist_ok=True)
for name, blob in seeds.items():
    (out / name).write_bytes(blob)
print("valid-sealed:", ", ".join(f"0x{b:02x}" for b in valid))
