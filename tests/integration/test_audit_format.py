"""keyhold's audit format code (src/audit: JSON Lines codec, verifier) against auditref.py, a
reading of docs/audit.md written without looking at it, in both directions:

  - chains and tampered copies that auditref.py writes get the same verdict from the C
    verifier as from auditref.py (ok, counts, or first_bad_seq, step, line and reason);
  - chains that the C code writes (hashes, checkpoint signatures, JSON) verify in
    auditref.py, and both readers take them for the same records;
  - every single-byte change of a chain is caught by both, on the line that was changed;
  - both readers accept and refuse the same lines, for the same reason.

The C side is driven through tests/unit/audit/audit-tool (built with the unit tests), since
`keyhold audit verify` is a separate piece of work.
"""
import json
import pathlib
import random
import subprocess

import pytest

import auditref
import harness

DATA = auditref.DATA
TOOL = harness.build_dir() / "tests" / "unit" / "audit" / "audit-tool"
ACME_KEY = DATA / "keys" / "test-only-acme.key.pem"
SERVER_KEY = DATA / "keys" / "test-only-server.key.pem"


@pytest.fixture(scope="module", autouse=True)
def keyholdd_survives_module():
    """conftest.py's check that keyholdd survives each module: nothing here starts one."""
    yield


@pytest.fixture(scope="module")
def tool():
    if not TOOL.exists():
        pytest.fail(f"{TOOL} not built (the unit tests need cmocka; set KEYHOLD_BUILD)",
                    pytrace=False)
    return TOOL


def c_verify(tool, pem, files, first_seq=0, through_seq=0) -> list:
    """The C verifier's verdict on each file, in auditref.py's shape."""
    out = subprocess.run([str(tool), "verify", str(pem), str(first_seq), str(through_seq),
                          *map(str, files)], check=True, capture_output=True).stdout
    verdicts = [json.loads(line) for line in out.decode().splitlines()]
    assert len(verdicts) == len(files)
    return verdicts


def c_format(tool, lines) -> list:
    """The C reader on each line: ("ok", its canonical line without the newline) or
    ("error", reason, seq)."""
    assert all(b"\n" not in line for line in lines)
    out = subprocess.run([str(tool), "format"], input=b"".join(x + b"\n" for x in lines),
                         check=True, capture_output=True).stdout
    results = []
    for line in out.split(b"\n")[:-1]:
        obj = json.loads(line)
        if "error" in obj and len(obj) == 2:
            results.append(("error", obj["error"], obj["seq"]))
        else:
            results.append(("ok", line))
    assert len(results) == len(lines)
    return results


def py_read(line: bytes):
    try:
        return ("ok", auditref.parse_line(line))
    except auditref.Malformed as e:
        return ("error", "malformed: " + e.what, e.seq or 0)


def test_reference_agrees_with_the_doc_and_the_committed_cases():
    assert auditref.selfcheck() == []


def test_c_judges_freshly_generated_cases_as_the_reference(tool, tmp_path):
    """New signatures (RSA-PSS is randomized), same verdicts, from both verifiers."""
    import shutil
    shutil.copytree(DATA / "keys", tmp_path / "keys")
    expected = auditref.write_fixtures(tmp_path)
    assert len(expected) >= 60
    for name, want in sorted(expected.items()):
        exp = want.get("expect", {})
        first, through = exp.get("first_seq", 0), exp.get("through_seq", 0)
        py = auditref.verify_file(tmp_path / want["file"], tmp_path / want["key"], first,
                                  through)
        [c] = c_verify(tool, tmp_path / want["key"], [tmp_path / want["file"]], first, through)
        verdict = {k: want[k] for k in auditref.VERDICT_KEYS if k in want}
        assert (name, py) == (name, verdict)
        assert (name, c) == (name, verdict)


@pytest.mark.parametrize("tenant,last,checkpoints,key,pem", [
    ("acme", 23, [5, 10, 23], ACME_KEY, DATA / "acme.pem"),
    ("acme", 12, [4, 8], ACME_KEY, DATA / "acme.pem"),
    ("", 7, [7], SERVER_KEY, DATA / "server.pem"),
    ("t\u00e9nant \"x\"", 3, [], SERVER_KEY, DATA / "server.pem"),
])
def test_reference_verifies_chains_written_by_c(tool, tmp_path, tenant, last, checkpoints,
                                                key, pem):
    chain = subprocess.run([str(tool), "chain", str(key), tenant, str(last),
                            *map(str, checkpoints)], check=True, capture_output=True).stdout
    path = tmp_path / "c-chain.jsonl"
    path.write_bytes(chain)
    signed = max(checkpoints, default=0)
    want = {"ok": True, "records": last, "checkpoints": len(checkpoints), "first_seq": 1,
            "signed_through": signed, "unsigned": last - signed}
    assert auditref.verify_file(path, pem) == want
    assert c_verify(tool, pem, [path]) == [want]
    # the C writer's lines are read by both as the same records: Python's own spelling of
    # each record is read by the C reader and written back as the C line
    lines = auditref.split_lines(chain)
    respelled = [auditref.to_line(auditref.parse_line(x)).rstrip(b"\n") for x in lines]
    assert [r[0] for r in c_format(tool, respelled)] == ["ok"] * len(lines)
    assert [r[1] for r in c_format(tool, respelled)] == lines
    # and the C writer is a fixed point of the C reader
    assert [r[1] for r in c_format(tool, lines)] == lines


def _intact():
    return auditref.split_lines((DATA / "intact.jsonl").read_bytes())


def test_every_single_byte_change_is_caught_on_its_line(tool, tmp_path):
    """Each byte of line 1 (the first), 7 (a key creation), 8 (escapes), 10 (the last
    checkpoint) and 12 (not yet signed), flipped in its lowest bit and in its case bit."""
    lines = _intact()
    files, where = [], []
    for index in (0, 6, 7, 9, 11):
        for pos in range(len(lines[index])):
            for bit in (0x01, 0x20):
                changed = list(lines)
                b = bytearray(changed[index])
                b[pos] ^= bit
                if bytes(b) == lines[index]:
                    continue
                changed[index] = bytes(b)
                path = tmp_path / f"{index}-{pos}-{bit}.jsonl"
                path.write_bytes(b"\n".join(changed) + b"\n")
                files.append(path)
                where.append(index + 1)
    assert len(files) > 4000
    pem = DATA / "acme.pem"
    c = c_verify(tool, pem, files)
    pub = auditref.load_public_key(pem.read_bytes())
    for path, line, cv in zip(files, where, c):
        py = auditref.verify_lines(auditref.split_lines(path.read_bytes()), pub)
        assert (path.name, py) == (path.name, cv)
        # a "\n" made of a byte (0x0b ^ 0x01) splits the line: then the next one is bad
        assert not cv["ok"] and cv["line"] in (line, line + 1), (path.name, cv)


def _mutations(lines, count, seed):
    """Lines with random small edits: deletions, duplications, insertions, replacements."""
    rng = random.Random(seed)
    alphabet = b'{}[]":,0123456789abcdefABCDEF-+.eE \\u/=xyz\x00\x01\x7f\xc3\xa9\xed\xa0\x80\xff'
    out = []
    for _ in range(count):
        b = bytearray(rng.choice(lines))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(b) + 1)
            op = rng.randrange(4)
            if op == 0 and pos < len(b):
                del b[pos]
            elif op == 1:
                b[pos:pos] = b[pos:pos + rng.randint(1, 12)]
            elif op == 2:
                b[pos:pos] = bytes([rng.choice(alphabet)])
            elif pos < len(b):
                b[pos] = rng.choice(alphabet)
        out.append(bytes(b).replace(b"\n", b" "))
    return out


def test_both_readers_accept_and_refuse_the_same_lines(tool):
    """Line by line: the same records from accepted lines, the same reason and seq for
    refused ones. The lines: every line of every committed case, and random edits of them."""
    seeds = []
    for path in sorted(DATA.glob("*.jsonl")):
        seeds += [x for x in auditref.split_lines(path.read_bytes()) if b"\n" not in x]
    seeds = sorted(set(seeds))
    lines = seeds + _mutations(seeds, 4000, 12)
    c = c_format(tool, lines)
    accepted = 0
    for line, cr in zip(lines, c):
        py = py_read(line)
        if cr[0] == "ok":
            assert py[0] == "ok", (line, py)
            assert auditref.parse_line(cr[1]) == py[1], line
            accepted += 1
        else:
            assert py == cr, line
    assert 100 < accepted < len(lines) - 1000  # both kinds are well represented
