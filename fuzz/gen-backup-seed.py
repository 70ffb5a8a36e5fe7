#!/usr/bin/env python3
"""Writes the seed corpus of fuzz-backup-reader: backups under the key 00 01 .. 1f, made here
with Python's `cryptography`, independently of keyhold's C writer (docs/backup.md, format.h).
Run from the repository root: /usr/bin/python3 fuzz/gen-backup-seed.py"""
import hashlib
import pathlib
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY = bytes(range(32))
CHUNK = 64 * 1024
OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "backup-reader"


def header(meta: bytes = b"M" * 96, driver: bytes = b"file") -> bytes:
    body = (struct.pack(">QI", 1700000000, CHUNK) + bytes(range(0xa0, 0xc0)) +
            bytes([len(driver)]) + driver + struct.pack(">H", len(meta)) + meta)
    total = 16 + len(body)
    return b"KHBACKUP" + bytes([1, 0, 0, 0]) + struct.pack(">I", total) + body


def entry(kind: int, name: bytes, data: bytes) -> bytes:
    return bytes([kind]) + struct.pack(">H", len(name)) + name + struct.pack(">Q", len(data)) + data


def backup(payload: bytes, hdr: bytes | None = None) -> bytes:
    hdr = hdr or header()
    hh = hashlib.sha256(hdr).digest()
    chunks = [payload[i:i + CHUNK] for i in range(0, len(payload), CHUNK)] or [b""]
    out = bytearray(hdr)
    for i, c in enumerate(chunks):
        flags = 1 if i == len(chunks) - 1 else 0
        frame = bytes([flags]) + struct.pack(">I", len(c))
        nonce = struct.pack(">Q", i) + bytes([flags, 0, 0, 0])
        ct = AESGCM(KEY).encrypt(nonce, c, b"keyhold-backup:1" + hh + frame)
        out += frame + ct
    return bytes(out)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    end = entry(0, b"", b"")
    small = entry(1, b"", b'{"format":1}') + entry(2, b"keyhold.db", b"db bytes") + \
        entry(2, b"keystore/keystore.meta", b"m" * 96) + end
    (OUT / "valid-small").write_bytes(backup(small))
    big = entry(1, b"", b"{}") + entry(2, b"keyhold.db", bytes(i % 251 for i in range(70000))) + end
    (OUT / "valid-two-chunks").write_bytes(backup(big))
    (OUT / "manifest-only").write_bytes(backup(entry(1, b"", b"{}") + end))
    (OUT / "file-before-manifest").write_bytes(backup(entry(2, b"a", b"x") + end))
    (OUT / "bad-name").write_bytes(backup(entry(1, b"", b"{}") + entry(2, b"../x", b"x") + end))
    (OUT / "no-end-entry").write_bytes(backup(entry(1, b"", b"{}")))
    (OUT / "truncated").write_bytes(backup(small)[:-5])
    (OUT / "header-only").write_bytes(header())


if __name__ == "__main__":
    main()
