#!/usr/bin/python3
"""A reference implementation of the audit log format, written from docs/audit.md alone (no
look at keyhold's C code): the canonical encoding and hash, the checkpoint signature, the
JSON Lines export, a verifier, the stored blocks of the database (decode_block, encode_block:
"How blocks are stored") and a chain generator. It writes the fixtures of
tests/unit/audit/data, which keyhold's own verifier (src/audit/verify.c) must judge the same
way (tests/unit/audit/test-audit-verify.c), and tests/integration/test_audit_format.py
cross-checks the two on many more inputs. Python standard library and python3-cryptography.

  auditref.py verify FILE --public-key PEM [--first-seq N] [--through-seq N]
        prints the verdict as `keyhold audit verify --json` does; exit 0 intact, 1 not
  auditref.py --generate DIR      writes DIR/*.jsonl, DIR/acme.pem, DIR/server.pem and
                                  DIR/expected.json (the verdict each case must get), signed
                                  with the committed test-only keys of DIR/keys/ (made if
                                  missing); only needed when the format or the cases change
  auditref.py selfcheck           the documented example, and every case verified as expected
                                  (exit 0 or 1)

Verdicts name the failing step of docs/audit.md "Verifying" (1-6; 0 for a file without
records), the line, and first_bad_seq: the seq the bad line carries, or the one it should have
carried (the previous seq + 1; 0 on the first line) when that field is what is wrong or
unreadable. The reasons are keyhold's (src/audit/verify.h), so verdicts compare exactly.

Two optional expectations go beyond what a file alone can show (docs/audit.md lets the first
record have any seq, and a shorter chain is still a chain): --first-seq N (the first record
must carry N: 1 for a whole chain, the --since value of an export) and --through-seq N (the
chain must reach N, e.g. the seq of a checkpoint obtained separately). Missing records at the
end then fail step 3 as "truncated", on the line after the last.
"""
import base64
import hashlib
import json
import math
import pathlib
import re
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

RECORD_LABEL = b"keyhold-audit:1\x00"
CHECKPOINT_LABEL = b"keyhold-audit-checkpoint:1\x00"
SEQ_MAX = 2**63 - 1
U32_MAX = 2**32 - 1
STR_MAX = 1024
ZERO = bytes(32)
STRINGS = ("tenant", "actor", "action", "target", "outcome", "request_id", "client")
# docs/audit.md "Records", in order; signature only on checkpoints.
FIELDS = ("seq", "time", "tenant", "actor", "action", "target", "outcome", "key_version",
          "request_id", "client", "count", "prev_hash", "hash", "signature")
TIME_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
                     r"\.[0-9]{3}Z")
# keyhold's bound on one line (its newline not counted), not the format's: about 45 KiB is
# the longest line a valid record needs (src/audit/json.h).
LINE_MAX = 64 * 1024
HEX_RE = re.compile(r"[0-9a-f]{64}")
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


# ---- the hash and the checkpoint digest ("The hash", "Checkpoints") ----

def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def enc_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return len(b).to_bytes(4, "big") + b


def encoding(rec: dict) -> bytes:
    """The canonical encoding the record's hash covers."""
    return (RECORD_LABEL + u64(rec["seq"]) + enc_str(rec["time"]) + enc_str(rec["tenant"]) +
            enc_str(rec["actor"]) + enc_str(rec["action"]) + enc_str(rec["target"]) +
            enc_str(rec["outcome"]) + u64(rec["key_version"]) + enc_str(rec["request_id"]) +
            enc_str(rec["client"]) + u64(rec["count"]) + rec["prev_hash"])


def record_hash(rec: dict) -> bytes:
    return hashlib.sha256(encoding(rec)).digest()


def checkpoint_message(tenant: str, seq: int, h: bytes) -> bytes:
    return CHECKPOINT_LABEL + enc_str(tenant) + u64(seq) + h


def sign_checkpoint(key, tenant: str, seq: int, h: bytes) -> bytes:
    """RSA-PSS (SHA-256, MGF1-SHA-256, salt 32) of the message: PSS hashes it once, so the
    digest it encodes is SHA-256(message)."""
    return key.sign(checkpoint_message(tenant, seq, h), PSS, hashes.SHA256())


def signature_ok(pub, tenant: str, seq: int, h: bytes, sig: bytes) -> bool:
    """By the key's type: ECDSA P-256 (DER) or RSA-PSS, both over SHA-256(message)."""
    digest = hashlib.sha256(checkpoint_message(tenant, seq, h)).digest()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        else:
            pub.verify(sig, digest, PSS, utils.Prehashed(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


# ---- the export ("Export") ----

def to_line(rec: dict) -> bytes:
    obj = {}
    for f in FIELDS:
        if f not in rec:
            continue
        v = rec[f]
        if f in ("prev_hash", "hash"):
            v = v.hex()
        elif f == "signature":
            v = base64.b64encode(v).decode("ascii")
        obj[f] = v
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


class Malformed(Exception):
    def __init__(self, what: str, seq=None):
        super().__init__(what)
        self.what = what
        self.seq = seq  # the line's seq when it could be read


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise Malformed("duplicate field")
        obj[k] = v
    return obj


def _no_constant(name):
    raise Malformed("not JSON")  # NaN, Infinity: not JSON numbers


# Where JSON leaves a choice to the reader, read as keyhold's (jansson) does, so that verdicts
# compare exactly: a number beyond a 64-bit integer or a double, a lone surrogate escape, or
# a NUL in a member name makes the line "not JSON", however well-formed the rest.
def _int64(text):
    v = int(text)
    if not -2**63 <= v < 2**63:
        raise Malformed("not JSON")
    return v


def _double(text):
    v = float(text)
    if math.isinf(v):
        raise Malformed("not JSON")
    return v


def _check_text(v):
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise Malformed("not JSON")
    elif isinstance(v, list):
        for x in v:
            _check_text(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            _check_text(k)
            if "\x00" in k:
                raise Malformed("not JSON")
            _check_text(x)


def _is_int(v, lo, hi) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _time_ok(s: str) -> bool:
    m = TIME_RE.fullmatch(s)
    if not m:
        return False
    y, mo, d, h, mi, sec = (int(g) for g in m.groups())
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return 1 <= mo <= 12 and 1 <= d <= days[mo - 1] and h <= 23 and mi <= 59 and sec <= 59


def _str_ok(v) -> bool:
    if not isinstance(v, str) or "\x00" in v:
        return False
    try:
        b = v.encode("utf-8")  # a lone surrogate ("\ud800") is no UTF-8
    except UnicodeEncodeError:
        return False
    return len(b) <= STR_MAX


def parse_line(line: bytes) -> dict:
    """Step 1: a JSON object with exactly the documented members, each of its type and
    range. Returns the record (hashes and signature as bytes) or raises Malformed."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if not line:
        raise Malformed("empty line")
    if len(line) > LINE_MAX:
        raise Malformed("line too long")
    try:
        text = line.decode("utf-8")
        kw = dict(parse_constant=_no_constant, parse_int=_int64, parse_float=_double)
        try:
            obj = json.loads(text, object_pairs_hook=_no_duplicates, **kw)
        except Malformed as e:
            if e.what != "duplicate field":
                raise
            _check_text(json.loads(text, **kw))  # a member twice, but is it JSON at all?
            raise
        _check_text(obj)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Malformed("not JSON")
    if not isinstance(obj, dict):
        raise Malformed("not an object")
    seq = obj.get("seq")
    seq = seq if _is_int(seq, 1, SEQ_MAX) else None

    def bad(what):
        raise Malformed(what, seq)

    rec = {}
    for f in FIELDS:
        if f not in obj:
            if f != "signature":
                bad(f)
            continue
        v = obj[f]
        if f == "seq":
            ok = seq is not None
        elif f == "time":
            ok = isinstance(v, str) and _time_ok(v)
        elif f in STRINGS:
            ok = _str_ok(v)
        elif f == "key_version":
            ok = _is_int(v, 0, U32_MAX)
        elif f == "count":
            ok = _is_int(v, 1, U32_MAX)
        elif f in ("prev_hash", "hash"):
            ok = isinstance(v, str) and HEX_RE.fullmatch(v) is not None
            if ok:
                v = bytes.fromhex(v)
        else:  # signature: standard padded base64, one spelling only
            ok = False
            if isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9+/=]+", v):
                try:
                    raw = base64.b64decode(v, validate=True)
                    ok = 1 <= len(raw) and base64.b64encode(raw).decode() == v
                    v = raw
                except ValueError:
                    ok = False
        if not ok:
            bad(f)
        rec[f] = v
    if set(obj) - set(FIELDS):
        bad("unknown field")
    if (rec["action"] == "checkpoint") != ("signature" in rec):
        bad("signature")
    return rec


# ---- the verifier ("Verifying") ----

def verify_lines(lines, pub, first_seq: int = 0, through_seq: int = 0) -> dict:
    """Checks each record in order (steps 1-6) and stops at the first that fails. first_seq
    and through_seq (0: none) are the optional expectations of the module's doc."""
    records = checkpoints = 0
    signed_through = signed_records = 0
    tenant = prev_seq = prev_hash = None
    position = 0

    def bad(step, seq, reason, line=None):
        return {"ok": False, "first_bad_seq": seq, "step": step,
                "line": position if line is None else line, "reason": reason}

    for line in lines:
        position += 1
        expected = prev_seq + 1 if records else first_seq
        try:
            rec = parse_line(line)
        except Malformed as e:
            return bad(1, e.seq if e.seq is not None else expected, "malformed: " + e.what)
        seq = rec["seq"]
        if records and rec["tenant"] != tenant:
            return bad(2, seq, "other tenant")
        if expected and seq != expected:
            return bad(3, expected, "seq gap" if seq > expected else "seq out of order")
        want_prev = prev_hash if records else (ZERO if seq == 1 else rec["prev_hash"])
        if rec["prev_hash"] != want_prev:
            return bad(4, seq, "prev_hash mismatch")
        if record_hash(rec) != rec["hash"]:
            return bad(5, seq, "hash mismatch")
        checkpoint = rec["action"] == "checkpoint"
        if checkpoint and not signature_ok(pub, rec["tenant"], seq, rec["hash"],
                                           rec["signature"]):
            return bad(6, seq, "bad signature")
        if not records:
            tenant, first = rec["tenant"], seq
        records += 1
        prev_seq, prev_hash = seq, rec["hash"]
        if checkpoint:
            checkpoints += 1
            signed_through, signed_records = seq, records
    if not records:
        return bad(0, 0, "no records", 0)
    if through_seq and prev_seq < through_seq:
        return bad(3, prev_seq + 1, "truncated", position + 1)
    return {"ok": True, "records": records, "checkpoints": checkpoints, "first_seq": first,
            "signed_through": signed_through, "unsigned": records - signed_records}


def split_lines(data: bytes) -> list:
    """JSON Lines: "\\n" ends a line; the last one may lack it."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def load_public_key(pem: bytes):
    pub = serialization.load_pem_public_key(pem)
    if isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, ec.SECP256R1):
        return pub
    if not isinstance(pub, rsa.RSAPublicKey):
        raise ValueError("not an audit public key (EC P-256 or RSA)")
    return pub


def verify_file(path, pem_path, first_seq: int = 0, through_seq: int = 0) -> dict:
    pub = load_public_key(pathlib.Path(pem_path).read_bytes())
    return verify_lines(split_lines(pathlib.Path(path).read_bytes()), pub, first_seq,
                        through_seq)


# ---- stored blocks ("How blocks are stored") ----

BLOCK_V1 = 0x01
F_ACTOR = 0x01              # actor is the previous record's
F_TARGET_IS_ACTOR = 0x02    # target is this record's actor
F_TARGET = 0x04             # target is the previous record's
F_ACTION = 0x08
F_OUTCOME = 0x10
F_CLIENT = 0x20
F_REQUEST_ID_HEX = 0x40     # request_id is 16 lower-case hex digits, stored as 8 bytes
F_SIGNATURE = 0x80          # a checkpoint: a signature follows the hash
REQUEST_ID_HEX_RE = re.compile(r"[0-9a-f]{16}")
TIME_MS_MIN = -62135596800000  # 0001-01-01T00:00:00.000Z: the first 4-digit year
TIME_MS_MAX = 253402300799999  # 9999-12-31T23:59:59.999Z: the last


class BlockError(ValueError):
    """A stored block that is neither form, or damaged: where and what."""

    def __init__(self, what: str, offset: int):
        super().__init__(f"{what} at byte {offset}")
        self.what = what
        self.offset = offset


class _BlockReader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def fail(self, what, at=None):
        raise BlockError(what, self.pos if at is None else at)

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            self.fail("truncated")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def uvarint(self) -> int:
        """Unsigned LEB128 of at most 10 bytes and 64 bits."""
        start, v = self.pos, 0
        for i in range(10):
            b = self.take(1)[0]
            v |= (b & 0x7f) << (7 * i)
            if not b & 0x80:
                if v >= 2**64:
                    self.fail("varint beyond 64 bits", start)
                return v
        self.fail("varint longer than 10 bytes", start)

    def svarint(self) -> int:
        z = self.uvarint()
        return z >> 1 if not z & 1 else -(z >> 1) - 1

    def string(self) -> str:
        start = self.pos
        n = self.uvarint()
        if n > STR_MAX:
            self.fail("string longer than 1024 bytes", start)
        b = self.take(n)
        if b"\x00" in b:
            self.fail("NUL in a string", start)
        try:
            return b.decode("utf-8")  # strict: no overlong forms, no surrogates
        except UnicodeDecodeError:
            self.fail("string not UTF-8", start)


def ms_of_time(s: str) -> int:
    """A record time as unix milliseconds (the inverse of fmt_time)."""
    import datetime
    if not _time_ok(s):
        raise ValueError(f"not a record time: {s!r}")
    t = datetime.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")
    epoch = datetime.datetime(1970, 1, 1)
    return (t - epoch) // datetime.timedelta(seconds=1) * 1000 + int(s[20:23])


def time_of_ms(ms: int) -> str:
    """fmt_time for every 4-digit year (strftime does not pad years before 1000)."""
    import datetime
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t.year, t.month, t.day, t.hour, t.minute,
                                                  t.second, ms % 1000)


def export_dict(rec: dict) -> dict:
    """A record (hashes and signature as bytes) as the export writes it: the documented
    fields in order, hashes in hex, the signature in base64 and only on checkpoints."""
    return json.loads(to_line(rec))


def _hash_bytes(v) -> bytes:
    return bytes.fromhex(v) if isinstance(v, str) else bytes(v)


def _decode_binary(data: bytes, first_seq: int, tenant: str) -> list:
    """(record, spans) per record: spans maps each stored field to its (start, end) in data."""
    r = _BlockReader(data)
    if r.take(1)[0] != BLOCK_V1:
        r.fail("unknown version", 0)
    prev_hash = r.take(32)
    prev = dict(actor="", target="", action="", outcome="", client="")
    time_ms = 0
    out = []
    while r.pos < len(data):
        start = r.pos
        spans = {}

        def field(name, read):
            s = r.pos
            v = read()
            spans[name] = (s, r.pos)
            return v

        flags = field("flags", lambda: r.take(1)[0])
        if flags & F_TARGET_IS_ACTOR and flags & F_TARGET:
            r.fail("both target flags", start)
        time_ms += field("time", r.svarint)
        if not TIME_MS_MIN <= time_ms <= TIME_MS_MAX:
            r.fail("time out of range", spans["time"][0])
        rec = dict(seq=first_seq + len(out), time=time_of_ms(time_ms), tenant=tenant)
        rec["actor"] = prev["actor"] if flags & F_ACTOR else field("actor", r.string)
        if flags & F_TARGET_IS_ACTOR:
            rec["target"] = rec["actor"]
        elif flags & F_TARGET:
            rec["target"] = prev["target"]
        else:
            rec["target"] = field("target", r.string)
        rec["action"] = prev["action"] if flags & F_ACTION else field("action", r.string)
        rec["outcome"] = prev["outcome"] if flags & F_OUTCOME else field("outcome", r.string)
        rec["key_version"] = field("key_version", r.uvarint)
        if rec["key_version"] > U32_MAX:
            r.fail("key_version out of range", spans["key_version"][0])
        if flags & F_REQUEST_ID_HEX:
            rec["request_id"] = field("request_id", lambda: r.take(8)).hex()
        else:
            rec["request_id"] = field("request_id", r.string)
        rec["client"] = prev["client"] if flags & F_CLIENT else field("client", r.string)
        rec["count"] = field("count", r.uvarint)
        if not 1 <= rec["count"] <= U32_MAX:
            r.fail("count out of range", spans["count"][0])
        rec["prev_hash"] = prev_hash
        rec["hash"] = field("hash", lambda: r.take(32))
        if flags & F_SIGNATURE:
            n = field("signature_len", r.uvarint)
            if n == 0:
                r.fail("empty signature", spans["signature_len"][0])
            rec["signature"] = field("signature", lambda: r.take(n))
        if (rec["action"] == "checkpoint") != bool(flags & F_SIGNATURE):
            r.fail("signature on a record that is not a checkpoint" if flags & F_SIGNATURE
                   else "checkpoint without a signature", start)
        if rec["seq"] > SEQ_MAX:
            r.fail("seq out of range", start)
        spans["record"] = (start, r.pos)
        out.append((rec, spans))
        prev = {k: rec[k] for k in prev}
        prev_hash = rec["hash"]
    return out


def _decode_json(data: bytes) -> list:
    out, offset = [], 0
    for line in split_lines(data):
        try:
            rec = parse_line(line)
        except Malformed as e:
            raise BlockError("export line malformed: " + e.what, offset)
        out.append((rec, {"record": (offset, offset + len(line))}))
        offset += len(line) + 1
    return out


def block_layout(data: bytes, first_seq: int, tenant: str) -> list:
    """Like decode_block, but (export record, spans) per record, spans mapping each field
    that is stored (flags, time, actor, ..., hash, signature; "record" for the whole) to
    its (start, end) in data: where a test edits a stored block."""
    data = bytes(data)
    recs = _decode_json(data) if data[:1] == b"{" else _decode_binary(data, first_seq, tenant)
    return [(export_dict(rec), spans) for rec, spans in recs]


def decode_block(data: bytes, first_seq: int, tenant: str) -> list:
    """The records of one stored block (a row of audit_blocks: its data, first_seq and
    chain) as the export dicts (docs/audit.md "Export"). Reads the binary form and the
    older JSON Lines one (data starting with '{', whose lines carry their own seq and
    tenant). Raises BlockError when data is neither or is damaged. The stored hashes are
    given as stored, not checked: that is the verifier's job."""
    return [rec for rec, _ in block_layout(data, first_seq, tenant)]


def encode_block(records: list) -> bytes:
    """The binary form of consecutive records of one chain (export dicts, or records with
    hashes and signature as bytes). Their seq, tenant and, but for the first, prev_hash
    are not stored: the reader derives them from the row and the position. The block's
    prev_hash is the first record's. Records are written as given (no check of their
    hashes), so that a test can store a forged chain."""
    if not records:
        raise ValueError("a block holds at least one record")
    out = bytearray([BLOCK_V1]) + _hash_bytes(records[0]["prev_hash"])
    prev = dict(actor="", target="", action="", outcome="", client="")
    time_ms = 0

    def uvarint(n: int) -> bytes:
        if not 0 <= n < 2**64:
            raise ValueError(f"{n} does not fit a uvarint")
        b = bytearray()
        while n >= 0x80:
            b.append(n & 0x7f | 0x80)
            n >>= 7
        b.append(n)
        return bytes(b)

    def string(s: str) -> bytes:
        b = s.encode("utf-8")
        return uvarint(len(b)) + b

    for rec in records:
        flags = 0
        body = bytearray()
        ms = ms_of_time(rec["time"])
        delta = ms - time_ms
        body += uvarint(2 * delta if delta >= 0 else -2 * delta - 1)
        time_ms = ms
        if rec["actor"] == prev["actor"]:
            flags |= F_ACTOR
        else:
            body += string(rec["actor"])
        if rec["target"] == rec["actor"]:
            flags |= F_TARGET_IS_ACTOR
        elif rec["target"] == prev["target"]:
            flags |= F_TARGET
        else:
            body += string(rec["target"])
        for name, bit in (("action", F_ACTION), ("outcome", F_OUTCOME)):
            if rec[name] == prev[name]:
                flags |= bit
            else:
                body += string(rec[name])
        body += uvarint(rec["key_version"])
        if REQUEST_ID_HEX_RE.fullmatch(rec["request_id"]):
            flags |= F_REQUEST_ID_HEX
            body += bytes.fromhex(rec["request_id"])
        else:
            body += string(rec["request_id"])
        if rec["client"] == prev["client"]:
            flags |= F_CLIENT
        else:
            body += string(rec["client"])
        body += uvarint(rec["count"]) + _hash_bytes(rec["hash"])
        sig = rec.get("signature")
        if sig is not None:
            flags |= F_SIGNATURE
            sig = base64.b64decode(sig, validate=True) if isinstance(sig, str) else bytes(sig)
            body += uvarint(len(sig)) + sig
        out += bytes([flags]) + body
        prev = {k: rec[k] for k in prev}
    return bytes(out)


# ---- the generator ----

T0_MS = 1796565600000  # 2026-12-06T14:00:00.000Z, the documented example's time


def fmt_time(ms: int) -> str:
    import datetime
    t = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def _event(i: int, tenant: str) -> dict:
    """The i-th event of a made-up but plausible day: start, member key operations, an
    aggregated refusal, an admin action; strings with escapes and non-ASCII."""
    member = "6f1c2a4e-0b7d-4c3e-9a85-2d4f6b8e1c%02x" % (i % 256)
    kinds = [
        dict(actor="keyhold", action="start", target="", outcome="ok", key_version=0,
             request_id="", client="", count=1),
        dict(actor=member, action="read", target=member, outcome="ok", key_version=1,
             request_id="req-%04d" % i, client="203.0.113.%d" % (i % 250), count=1),
        dict(actor="-", action="refused", target="/t/%s/user-keys" % tenant,
             outcome="invalid_token", key_version=0, request_id="req-%04d" % i,
             client="198.51.100.7", count=17),
        dict(actor=member, action="create", target=member, outcome="ok", key_version=2,
             request_id="req-%04d" % i, client="2001:db8::%x" % i, count=1),
        dict(actor="local:uid=0", action="key.list", target="Zürich \"quoted\" \\ tab\t",
             outcome="ok", key_version=0, request_id="req-%04d" % i, client="local", count=1),
        dict(actor=member, action="replace", target=member, outcome="key_not_found",
             key_version=1, request_id="req-%04d" % i, client="203.0.113.9", count=1),
    ]
    return kinds[0] if i == 1 else kinds[1 + i % (len(kinds) - 1)]


def make_chain(key, tenant: str, last: int, checkpoints, first: int = 1,
               prev_hash: bytes = ZERO) -> list:
    """Records first..last of a chain; those in checkpoints are signed checkpoints."""
    chain = []
    for seq in range(first, last + 1):
        if seq in checkpoints:
            ev = dict(actor="keyhold", action="checkpoint", target="", outcome="ok",
                      key_version=0, request_id="", client="", count=1)
        else:
            ev = _event(seq, tenant)
        rec = dict(seq=seq, time=fmt_time(T0_MS + 1234 * seq), tenant=tenant, **ev,
                   prev_hash=prev_hash)
        finish(rec, key)
        chain.append(rec)
        prev_hash = rec["hash"]
    return chain


def finish(rec: dict, key) -> dict:
    """(Re)computes hash, and the signature of a checkpoint, with key."""
    rec["hash"] = record_hash(rec)
    if rec["action"] == "checkpoint":
        rec["signature"] = sign_checkpoint(key, rec["tenant"], rec["seq"], rec["hash"])
    return rec


def rechain(chain: list, key, start: int, resign: bool = False) -> list:
    """From index start on, relinks prev_hash and recomputes hashes (and, if resign, the
    checkpoints' signatures with key): what a forger without the signing key can do,
    except for the signatures."""
    for i in range(start, len(chain)):
        rec = chain[i]
        rec["prev_hash"] = chain[i - 1]["hash"] if i else rec["prev_hash"]
        sig = rec.get("signature")
        finish(rec, key)
        if sig is not None and not resign:
            rec["signature"] = sig
    return chain


def _copy(chain):
    return [dict(r) for r in chain]


def _tweak(v):
    """v with one byte changed (a string's last byte, an integer +1, a hash's first byte)."""
    if isinstance(v, bytes):
        return bytes([v[0] ^ 0x01]) + v[1:]
    if isinstance(v, int):
        return v + 1
    return v[:-1] + chr(ord(v[-1]) ^ 0x01) if v else "x"


def cases(key, other_key, server_key) -> dict:
    """name -> dict(lines, key, verdict[, expect]). The acme chain: 1..12, checkpoints at 5
    and 10, so 11 and 12 are not yet signed; the server's: 1..6, checkpoints at 3 and 6."""
    acme = make_chain(key, "acme", 12, {5, 10})
    by_seq = {r["seq"]: r for r in acme}
    out = {}

    def lines(chain):
        return [to_line(r) for r in chain]

    def add(name, chain_or_lines, verdict, key_name="acme", **expect):
        ls = chain_or_lines
        if ls and isinstance(ls[0], dict):
            ls = lines(ls)
        out[name] = dict(lines=ls, key=key_name, verdict=verdict)
        if expect:
            out[name]["expect"] = expect

    def ok(records, checkpoints, first_seq, signed_through, unsigned):
        return {"ok": True, "records": records, "checkpoints": checkpoints,
                "first_seq": first_seq, "signed_through": signed_through, "unsigned": unsigned}

    def bad(seq, step, line, reason):
        return {"ok": False, "first_bad_seq": seq, "step": step, "line": line,
                "reason": reason}

    add("intact", acme, ok(12, 2, 1, 10, 2))
    add("intact-expected", acme, ok(12, 2, 1, 10, 2), first_seq=1, through_seq=12)
    add("intact-no-final-newline", [*lines(acme)[:-1], lines(acme)[-1].rstrip(b"\n")],
        ok(12, 2, 1, 10, 2))
    add("unsigned-only", acme[:4], ok(4, 0, 1, 0, 4))
    # export --since 4, or a chain pruned before 4: the first prev_hash is taken as given
    add("since-4", acme[3:], ok(9, 2, 4, 10, 2))
    add("since-4-expected", acme[3:], ok(9, 2, 4, 10, 2), first_seq=4)
    add("since-4-expected-3", acme[3:], bad(3, 3, 1, "seq gap"), first_seq=3)
    add("since-4-expected-5", acme[3:], bad(5, 3, 1, "seq out of order"), first_seq=5)
    server = make_chain(server_key, "", 6, {3, 6})
    add("server", server, ok(6, 2, 1, 6, 0), "server")
    add("server-with-acme-key", server, bad(3, 6, 3, "bad signature"))
    add("empty", [], bad(0, 0, 0, "no records"))

    # removed records. The first one looks like an export --since 2 (only first_seq shows
    # it) unless the verifier is told where the chain starts; the last ones look like a
    # shorter chain unless told where it ends: what was signed stays signed, what follows
    # the last checkpoint left is reported unsigned, never verified.
    add("removed-first", acme[1:], ok(11, 2, 2, 10, 2))
    add("removed-first-expected", acme[1:], bad(1, 3, 1, "seq gap"), first_seq=1)
    add("removed-7", acme[:6] + acme[7:], bad(7, 3, 7, "seq gap"))
    add("removed-checkpoint-5", acme[:4] + acme[5:], bad(5, 3, 5, "seq gap"))
    add("removed-checkpoint-10", acme[:9] + acme[10:], bad(10, 3, 10, "seq gap"))
    add("removed-last", acme[:-1], ok(11, 2, 1, 10, 1))
    add("removed-last-expected", acme[:-1], bad(12, 3, 12, "truncated"), through_seq=12)
    add("removed-after-checkpoint-10", acme[:10], ok(10, 2, 1, 10, 0))
    add("removed-after-checkpoint-10-expected", acme[:10], bad(11, 3, 11, "truncated"),
        through_seq=12)
    add("server-removed-last-checkpoint", server[:5], ok(5, 1, 1, 3, 2), "server")
    add("server-removed-last-checkpoint-expected", server[:5], bad(6, 3, 6, "truncated"),
        "server", through_seq=6)

    # inserted records. A copy fails where it stands (line 9 carries seq 3).
    add("inserted-copy", acme[:8] + [by_seq[3]] + acme[8:], bad(9, 3, 9, "seq out of order"))
    # A record forged to fit after 8 (seq 9, linked, hashed) passes itself, as an unsigned
    # record would; the real 9 after it then carries the wrong seq.
    forged = finish(dict(by_seq[8], seq=9, prev_hash=by_seq[8]["hash"], target="forged"), key)
    add("inserted-forged", acme[:8] + [forged] + acme[8:], bad(10, 3, 10, "seq out of order"))
    # ... and if the forger renumbers and rehashes everything after it, the next
    # checkpoint's signature (now at seq 11) no longer verifies.
    c = _copy(acme[:8]) + [dict(forged)] + _copy(acme[8:])
    for i in range(9, len(c)):
        c[i]["seq"] += 1
    add("inserted-rehashed", rechain(c, key, 9), bad(11, 6, 11, "bad signature"))
    add("swapped-6-7", acme[:5] + [acme[6], acme[5]] + acme[7:], bad(6, 3, 6, "seq gap"))
    add("swapped-10-11", acme[:9] + [acme[10], acme[9]] + acme[11:], bad(10, 3, 10, "seq gap"))

    # a changed byte in each field of record 7 (a member's key creation) and of checkpoint 10
    steps = dict(seq=(3, "seq gap"), tenant=(2, "other tenant"),
                 prev_hash=(4, "prev_hash mismatch"))
    for f in FIELDS[:-1]:
        c = _copy(acme)
        if f == "time":
            c[6][f] = c[6][f].replace("14:00:08", "14:00:09")  # still a valid time
        else:
            c[6][f] = _tweak(c[6][f])
        step, reason = steps.get(f, (5, "hash mismatch"))
        add(f"changed-{f.replace('_', '-')}-7", c, bad(7, step, 7, reason))
    c = _copy(acme)
    c[9]["signature"] = _tweak(c[9]["signature"])
    add("changed-signature-10", c, bad(10, 6, 10, "bad signature"))
    c = _copy(acme)
    c[9]["action"] = "checkpoinu"  # no longer a checkpoint, yet signed
    add("changed-action-10", c, bad(10, 1, 10, "malformed: signature"))
    c = _copy(acme)
    c[10]["count"] = 2  # after the last checkpoint: unsigned records are hash-checked too
    add("changed-count-11", c, bad(11, 5, 11, "hash mismatch"))

    # forged, foreign and rebound checkpoints
    c = _copy(acme)
    c[9]["signature"] = bytes(len(c[9]["signature"]))
    add("forged-signature-10", c, bad(10, 6, 10, "bad signature"))
    c = _copy(acme)
    c[9]["signature"] = sign_checkpoint(other_key, "acme", 10, c[9]["hash"])
    add("other-key-checkpoint-10", c, bad(10, 6, 10, "bad signature"))
    # another tenant's chain under the same key (one key for both: the tenant in the
    # signed message is what keeps them apart)
    beta = make_chain(key, "beta", 12, {5, 10})
    c = _copy(acme)
    c[9] = dict(beta[9])
    add("other-tenant-checkpoint", c, bad(10, 2, 10, "other tenant"))
    c[9]["tenant"] = "acme"
    c[9]["prev_hash"] = c[8]["hash"]
    c[9]["hash"] = record_hash(c[9])  # linked and hashed, but signed for beta
    add("other-tenant-checkpoint-rebound", c, bad(10, 6, 10, "bad signature"))
    c = _copy(acme)
    c[6] = dict(beta[6])
    add("other-tenant-record-7", c, bad(7, 2, 7, "other tenant"))
    # the whole chain relabelled as beta's and rehashed: consistent, but its checkpoints
    # were signed for acme
    c = _copy(acme)
    for r in c:
        r["tenant"] = "beta"
    add("rebound-chain", rechain(c, key, 0), bad(5, 6, 5, "bad signature"))
    start = make_chain(key, "acme", 3, set(), prev_hash=b"\x01" * 32)
    add("first-prev-hash", start, bad(1, 4, 1, "prev_hash mismatch"))

    # malformed lines
    def edit(i, old, new):
        ls = lines(acme)
        assert old in ls[i], (i, old)
        ls[i] = ls[i].replace(old, new, 1)
        return ls

    add("malformed-float-seq-6", edit(5, b'{"seq":6,', b'{"seq":6.0,'),
        bad(6, 1, 6, "malformed: seq"))
    h8 = by_seq[8]["hash"].hex().encode()
    add("malformed-upper-hex-8", edit(7, h8, h8.upper()), bad(8, 1, 8, "malformed: hash"))
    ls = lines(acme)
    ls.insert(4, b"\n")
    add("malformed-empty-line-after-4", ls, bad(5, 1, 5, "malformed: empty line"))
    sig = base64.b64encode(by_seq[10]["signature"])
    add("malformed-signature-on-7",
        edit(6, b'"}\n', b'","signature":"' + sig + b'"}\n'),
        bad(7, 1, 7, "malformed: signature"))
    add("malformed-no-signature-10", edit(9, b',"signature":"' + sig + b'"', b""),
        bad(10, 1, 10, "malformed: signature"))
    # padded base64 whose last digit carries bits the padding drops: another spelling
    assert sig.endswith(b"==")
    loose = sig[:-3] + bytes([sig[-3] ^ 0x01]) + b"=="
    add("malformed-base64-bits-10", edit(9, sig, loose), bad(10, 1, 10, "malformed: signature"))
    add("malformed-base64-alphabet-10", edit(9, sig, sig[:10] + b"-" + sig[11:]),
        bad(10, 1, 10, "malformed: signature"))
    add("malformed-unknown-field-7", edit(6, b'{"seq":7,', b'{"seq":7,"note":"",'),
        bad(7, 1, 7, "malformed: unknown field"))
    add("malformed-duplicate-field-7", edit(6, b'{"seq":7,', b'{"seq":7,"seq":7,'),
        bad(7, 1, 7, "malformed: duplicate field"))
    add("malformed-missing-client-7", edit(6, b',"client":"2001:db8::7"', b""),
        bad(7, 1, 7, "malformed: client"))
    add("malformed-string-count-7", edit(6, b'"count":1,', b'"count":"1",'),
        bad(7, 1, 7, "malformed: count"))
    add("malformed-zero-count-7", edit(6, b'"count":1,', b'"count":0,'),
        bad(7, 1, 7, "malformed: count"))
    add("malformed-big-key-version-7", edit(6, b'"key_version":2,', b'"key_version":4294967296,'),
        bad(7, 1, 7, "malformed: key_version"))
    add("malformed-negative-seq-7", edit(6, b'{"seq":7,', b'{"seq":-7,'),
        bad(7, 1, 7, "malformed: seq"))
    add("malformed-time-7", edit(6, b'T14:00:08.638Z', b'T14:00:08.638+00:00'),
        bad(7, 1, 7, "malformed: time"))
    add("malformed-invalid-utf8-7", edit(6, b'"outcome":"ok"', b'"outcome":"o\xc3"'),
        bad(7, 1, 7, "malformed: not JSON"))
    add("malformed-nul-7", edit(6, b'"outcome":"ok"', b'"outcome":"o\\u0000k"'),
        bad(7, 1, 7, "malformed: outcome"))
    add("malformed-not-object-7", edit(6, lines(acme)[6], b"[7]\n"),
        bad(7, 1, 7, "malformed: not an object"))
    add("malformed-truncated-line-7", edit(6, b'"}\n', b'"\n'),
        bad(7, 1, 7, "malformed: not JSON"))
    return out


def _load_key(path: pathlib.Path):
    return serialization.load_pem_private_key(path.read_bytes(), None)


TEST_KEY_NOTE = b"""TEST KEY, FOR keyhold's TESTS ONLY. NOT SECRET: it is committed on purpose so that
tests/integration/auditref.py --generate tests/unit/audit/data writes the same chains (up to
RSA-PSS's random salt). Never use it to sign anything but test fixtures.
"""


def test_keys(d: pathlib.Path) -> dict:
    """The committed test-only keys of d/keys/ (acme, other, server); any missing one is
    made and written there (commit it)."""
    keys = {}
    (d / "keys").mkdir(parents=True, exist_ok=True)
    for name in ("acme", "other", "server"):
        path = d / "keys" / f"test-only-{name}.key.pem"
        if not path.exists():
            k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.write_bytes(TEST_KEY_NOTE + k.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        keys[name] = _load_key(path)
    return keys


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def write_fixtures(d: pathlib.Path) -> dict:
    """Writes d/NAME.jsonl, d/acme.pem, d/server.pem and d/expected.json (one entry per
    case: file, key, optional expectations and the verdict); removes other d/*.jsonl.
    Returns the expectations."""
    keys = test_keys(d)
    (d / "acme.pem").write_bytes(public_pem(keys["acme"]))
    (d / "server.pem").write_bytes(public_pem(keys["server"]))
    expected = {}
    all_cases = cases(keys["acme"], keys["other"], keys["server"])
    files = {}  # content -> the first case's file: cases that differ only in the
    for name, c in all_cases.items():  # expectations share one
        files.setdefault(b"".join(c["lines"]), name + ".jsonl")
    for old in d.glob("*.jsonl"):
        if old.name not in files.values():
            old.unlink()
    for content, file in files.items():
        (d / file).write_bytes(content)
    for name, c in all_cases.items():
        entry = dict(file=files[b"".join(c["lines"])], key=c["key"] + ".pem", **c["verdict"])
        if "expect" in c:
            entry["expect"] = c["expect"]
        expected[name] = entry
    (d / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return expected


VERDICT_KEYS = ("ok", "records", "checkpoints", "first_seq", "signed_through", "unsigned",
                "first_bad_seq", "step", "line", "reason")


def check_fixtures(d: pathlib.Path) -> list:
    """Verifies every case of d/expected.json as it says. Returns the mismatches."""
    problems = []
    expected = json.loads((d / "expected.json").read_text())
    for name, want in sorted(expected.items()):
        exp = want.get("expect", {})
        got = verify_file(d / want["file"], d / want["key"], exp.get("first_seq", 0),
                          exp.get("through_seq", 0))
        w = {k: want[k] for k in VERDICT_KEYS if k in want}
        if got != w:
            problems.append(f"{name}: expected {w}, got {got}")
    return problems


# The record of docs/audit.md "The hash".
EXAMPLE = dict(seq=1, time="2026-12-06T14:00:00.000Z", tenant="acme", actor="keyhold",
               action="start", target="", outcome="ok", key_version=0, request_id="",
               client="", count=1, prev_hash=ZERO)


DATA = pathlib.Path(__file__).resolve().parent.parent / "unit" / "audit" / "data"


def _uvarint_hex(n: int) -> str:
    b = bytearray()
    while n >= 0x80:
        b.append(n & 0x7f | 0x80)
        n >>= 7
    return (bytes(b) + bytes([n])).hex()


def block_selfcheck() -> list:
    """The documented example as a block, spelt out byte by byte from "How blocks are
    stored"; generated chains through encode_block and decode_block and as legacy blocks."""
    problems = []
    ex = dict(EXAMPLE, hash=record_hash(EXAMPLE))
    want = ("01" + "00" * 32 +                     # version, prev_hash
            "24" +                                 # flags: target and client repeat ("")
            _uvarint_hex(2 * T0_MS) +              # time: zigzag of T0_MS - 0
            "07" + b"keyhold".hex() + "05" + b"start".hex() + "02" + b"ok".hex() +
            "00" + "00" +                          # key_version 0, request_id ""
            "01" + ex["hash"].hex())               # count 1, hash
    if encode_block([ex]).hex() != want:
        problems.append(f"example block is {encode_block([ex]).hex()}, not {want}")
    if decode_block(bytes.fromhex(want), 1, "acme") != [export_dict(ex)]:
        problems.append("example block does not decode to the example")
    keys = test_keys(DATA)
    for tenant, chain in (("acme", make_chain(keys["acme"], "acme", 12, {5, 10})),
                          ("", make_chain(keys["server"], "", 6, {3, 6}))):
        want = [export_dict(r) for r in chain]
        for i in range(0, len(chain), 5):          # blocks of 5 records, the last shorter
            part = chain[i:i + 5]
            got = decode_block(encode_block(part), part[0]["seq"], tenant)
            if got != want[i:i + 5]:
                problems.append(f"chain {tenant!r} block at {i + 1} does not round-trip")
            if encode_block(got) != encode_block(part):
                problems.append(f"chain {tenant!r} block at {i + 1} re-encodes differently")
            legacy = b"".join(to_line(r) for r in part)
            if decode_block(legacy, 99, "other") != want[i:i + 5]:
                problems.append(f"chain {tenant!r} legacy block at {i + 1} reads differently")
    return problems


def selfcheck() -> list:
    """The documented example; the committed cases of tests/unit/audit/data as their
    expected.json says; and the cases written afresh (with the same keys) likewise."""
    import shutil
    import tempfile
    problems = []
    if fmt_time(T0_MS) != EXAMPLE["time"]:
        problems.append("T0_MS is not the example's time")
    if len(encoding(EXAMPLE)) != 146:
        problems.append(f"example encoding is {len(encoding(EXAMPLE))} bytes, not 146")
    if record_hash(EXAMPLE).hex() != \
            "2e5c2522d0e8f2998d81387be4431b55b236e17710b47540e89e4e545bd89f49":
        problems.append("example hash differs from docs/audit.md")
    problems += block_selfcheck()
    problems += ["committed " + p for p in check_fixtures(DATA)]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(DATA / "keys", pathlib.Path(tmp) / "keys")
        written = write_fixtures(pathlib.Path(tmp))
        problems += ["regenerated " + p for p in check_fixtures(pathlib.Path(tmp))]
        committed = json.loads((DATA / "expected.json").read_text())
        if written != committed:
            problems.append("the committed expected.json is not what --generate writes")
    return problems


def main(argv) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--generate", metavar="DIR", type=pathlib.Path)
    ap.add_argument("command", nargs="?", choices=("verify", "selfcheck"))
    ap.add_argument("file", nargs="?")
    ap.add_argument("--public-key", metavar="PEM")
    ap.add_argument("--first-seq", type=int, default=0)
    ap.add_argument("--through-seq", type=int, default=0)
    args = ap.parse_args(argv[1:])
    if args.generate:
        expected = write_fixtures(args.generate)
        problems = check_fixtures(args.generate)
        print(f"{len(expected)} cases written to {args.generate}")
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    if args.command == "verify" and args.file and args.public_key:
        verdict = verify_file(args.file, args.public_key, args.first_seq, args.through_seq)
        print(json.dumps(verdict))
        return 0 if verdict["ok"] else 1
    if args.command == "selfcheck":
        problems = selfcheck()
        for p in problems:
            print(p, file=sys.stderr)
        print("selfcheck: " + ("FAILED" if problems else "ok"))
        return 1 if problems else 0
    ap.print_usage(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
