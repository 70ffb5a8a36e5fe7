"""`keyhold audit verify FILE --public-key PEM`, offline, on the signed test chains of
tests/unit/audit/data: expected.json gives each file's verdict, computed by the reference
implementation (tests/integration/auditref.py), not by the C code under test."""
import json
import pathlib
import shutil

import pytest

import harness
from test_cli import json_error, run_cli

DATA = harness.REPO / "tests" / "unit" / "audit" / "data"


def expected() -> dict:
    return json.loads((DATA / "expected.json").read_text())


def cases(ok: bool) -> list[str]:
    """The cases of plain verification. Those with "expect" verify against an expected first
    or last seq, which `keyhold audit verify` has no option for (yet)."""
    return sorted(name for name, e in expected().items() if e["ok"] == ok and "expect" not in e)


def chain(name: str) -> pathlib.Path:
    """The export file of case name (expected.json's "file", else the name itself)."""
    return DATA / expected()[name].get("file", name)


def intact() -> str:
    return next(n for n in cases(True) if expected()[n].get("file", n) == "intact.jsonl")


@pytest.mark.parametrize("name", cases(True))
def test_intact_chains_verify(name):
    e = expected()[name]
    p = run_cli("audit", "verify", chain(name), "--public-key", DATA / e["key"], "--json")
    assert p.returncode == 0, p
    out = json.loads(p.stdout)
    assert out == {"ok": True, "records": e["records"], "checkpoints": e["checkpoints"],
                   "first_seq": e["first_seq"], "signed_through": e["signed_through"],
                   "unsigned": e["unsigned"]}


@pytest.mark.parametrize("name", cases(False))
def test_damaged_chains_name_the_first_bad_record(name):
    e = expected()[name]
    p = run_cli("audit", "verify", chain(name), "--public-key", DATA / e["key"], "--json")
    assert p.returncode == 1, p
    out = json.loads(p.stdout)
    assert out["ok"] is False
    assert out["first_bad_seq"] == e["first_bad_seq"]
    assert out["step"] == e["step"]
    assert out["reason"] == e["reason"]
    assert out["line"] == e["line"]

    p = run_cli("audit", "verify", chain(name), "--public-key", DATA / e["key"])
    assert p.returncode == 1, p
    assert p.stdout == ""
    assert p.stderr.endswith("(chain_broken)\n"), p.stderr
    if e["step"]:
        assert f"record seq {e['first_bad_seq']} " in p.stderr, p.stderr


def test_human_output_tells_unsigned_records_apart():
    e = expected()[intact()]
    assert e["unsigned"] > 0  # the data this test relies on
    p = run_cli("audit", "verify", DATA / "intact.jsonl", "--public-key", DATA / e["key"])
    assert p.returncode == 0, p
    lines = p.stdout.splitlines()
    assert lines[0].endswith(f"intact: {e['records']} records (seq {e['first_seq']} to "
                             f"{e['first_seq'] + e['records'] - 1}), {e['checkpoints']} "
                             f"checkpoints")
    assert lines[1] == (f"{e['records'] - e['unsigned']} records verified through the "
                        f"checkpoint at seq {e['signed_through']}")
    assert lines[2].startswith(f"{e['unsigned']} records after the last checkpoint are not yet "
                               f"signed")


def test_verify_reads_stdin_and_needs_no_server():
    e = expected()[intact()]
    with open(DATA / "intact.jsonl", "rb") as f:
        p = run_cli("--json", "--socket", "/nonexistent.sock", "audit", "verify", "-",
                    "--public-key", DATA / e["key"], stdin=f)
    assert p.returncode == 0, p
    assert json.loads(p.stdout)["records"] == e["records"]


def test_other_chains_key_fails_at_the_first_checkpoint():
    """The server's key on a tenant's chain: the first checkpoint's signature fails."""
    e = expected()[intact()]
    other = "server.pem" if e["key"] != "server.pem" else "acme.pem"
    p = run_cli("--json", "audit", "verify", DATA / "intact.jsonl", "--public-key", DATA / other)
    assert p.returncode == 1, p
    out = json.loads(p.stdout)
    assert out["ok"] is False and out["step"] == 6


def test_missing_file_and_bad_key(tmp_path):
    e = expected()[intact()]
    obj = json_error(run_cli("--json", "audit", "verify", tmp_path / "nope.jsonl",
                             "--public-key", DATA / e["key"]), "file_error")
    assert "nope.jsonl" in obj["message"]
    obj = json_error(run_cli("--json", "audit", "verify", DATA / "intact.jsonl",
                             "--public-key", tmp_path / "nope.pem"), "file_error")
    assert "nope.pem" in obj["message"]
    not_a_key = tmp_path / "not-a-key.pem"
    shutil.copy(DATA / "intact.jsonl", not_a_key)
    obj = json_error(run_cli("--json", "audit", "verify", DATA / "intact.jsonl",
                             "--public-key", not_a_key), "invalid_public_key")
