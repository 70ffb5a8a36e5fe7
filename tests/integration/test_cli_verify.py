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
    """The cases with verdict ok. Those with "expect" verify against an expected first or
    last seq, given as --first-seq and --through-seq (expect_options)."""
    return sorted(name for name, e in expected().items() if e["ok"] == ok)


def expect_options(e: dict) -> list[str]:
    """The options that state case e's expectations, none for plain verification."""
    x = e.get("expect", {})
    return ([f"--first-seq={x['first_seq']}"] if x.get("first_seq") else []) + \
        (["--through-seq", str(x["through_seq"])] if x.get("through_seq") else [])


def verify(name: str, *args, **kw):
    e = expected()[name]
    return run_cli("audit", "verify", chain(name), "--public-key", DATA / e["key"],
                   *expect_options(e), *args, **kw)


def chain(name: str) -> pathlib.Path:
    """The export file of case name (expected.json's "file", else the name itself)."""
    return DATA / expected()[name].get("file", name)


def intact() -> str:
    return next(n for n in cases(True)
                if expected()[n].get("file", n) == "intact.jsonl" and "expect" not in expected()[n])


def test_cases_with_expectations_are_among_them():
    """The data holds both verdicts under stated expectations, and they run here."""
    with_expect = [n for n in cases(True) + cases(False) if "expect" in expected()[n]]
    assert any(expected()[n]["ok"] for n in with_expect), with_expect
    assert any(expected()[n].get("reason") == "truncated" for n in with_expect), with_expect
    assert any(expected()[n].get("reason") == "seq gap" for n in with_expect), with_expect


@pytest.mark.parametrize("name", cases(True))
def test_intact_chains_verify(name):
    e = expected()[name]
    p = verify(name, "--json")
    assert p.returncode == 0, p
    out = json.loads(p.stdout)
    assert out == {"ok": True, "records": e["records"], "checkpoints": e["checkpoints"],
                   "first_seq": e["first_seq"], "signed_through": e["signed_through"],
                   "unsigned": e["unsigned"]}


@pytest.mark.parametrize("name", cases(False))
def test_damaged_chains_name_the_first_bad_record(name):
    e = expected()[name]
    p = verify(name, "--json")
    assert p.returncode == 1, p
    out = json.loads(p.stdout)
    assert out["ok"] is False
    assert out["first_bad_seq"] == e["first_bad_seq"]
    assert out["step"] == e["step"]
    assert out["reason"] == e["reason"]
    assert out["line"] == e["line"]

    p = verify(name)
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


# ------------------------------------------------------------------ stated start and end

def test_expectations_catch_what_the_file_alone_cannot():
    """Records cut from either end verify without expectations (the format allows a chain
    to start anywhere and to be short) and fail with them."""
    e = expected()[intact()]
    key = DATA / e["key"]
    for name, options, reason in [("removed-first.jsonl", ["--first-seq", "1"], "seq gap"),
                                  ("removed-last.jsonl", ["--through-seq", "12"], "truncated")]:
        p = run_cli("--json", "audit", "verify", DATA / name, "--public-key", key)
        assert p.returncode == 0 and json.loads(p.stdout)["ok"] is True, p
        p = run_cli("--json", "audit", "verify", DATA / name, "--public-key", key, *options)
        assert p.returncode == 1, p
        assert json.loads(p.stdout)["reason"] == reason


def test_human_messages_name_the_option_contradicted():
    p = run_cli("audit", "verify", DATA / "removed-last.jsonl", "--public-key", DATA / "acme.pem",
                "--first-seq", "1", "--through-seq", "12")
    assert p.returncode == 1 and p.stdout == "", p
    assert "record seq 12 is missing (truncated): the file ends at seq 11 (line 11), " \
        "--through-seq says the chain reaches seq 12" in p.stderr, p.stderr
    p = run_cli("audit", "verify", DATA / "removed-first.jsonl", "--public-key", DATA / "acme.pem",
                "--first-seq", "1")
    assert p.returncode == 1 and p.stdout == "", p
    assert "record seq 1 (line 1) fails: seq gap: --first-seq says the chain starts at seq 1, " \
        "the file starts later" in p.stderr, p.stderr


def test_human_output_says_what_was_not_checked():
    e = expected()[intact()]
    key = DATA / e["key"]
    p = run_cli("audit", "verify", DATA / "since-4.jsonl", "--public-key", key)
    assert p.returncode == 0, p
    not_checked = [l for l in p.stdout.splitlines() if l.startswith("Not checked: ")]
    assert len(not_checked) == 2, p.stdout
    assert "records before seq 4" in not_checked[0] and "--first-seq" in not_checked[0]
    assert "records after seq 12" in not_checked[1] and "--through-seq" in not_checked[1]

    # a chain from seq 1 shows its own start (prev_hash zero): only the end is open
    p = run_cli("audit", "verify", DATA / "intact.jsonl", "--public-key", key)
    assert [l for l in p.stdout.splitlines() if l.startswith("Not checked: ")] == [
        "Not checked: whether records after seq 12 were removed (--through-seq states the seq "
        "it must reach: the head the export printed)"]

    p = run_cli("audit", "verify", DATA / "since-4.jsonl", "--public-key", key,
                "--first-seq", "4", "--through-seq", "12")
    assert p.returncode == 0, p
    assert "Not checked" not in p.stdout


def test_through_seq_below_the_end_is_met():
    """--through-seq is the seq the chain must reach at least: a longer file passes."""
    p = run_cli("--json", "audit", "verify", DATA / "intact.jsonl", "--public-key",
                DATA / "acme.pem", "--through-seq", "5")
    assert p.returncode == 0, p
    assert json.loads(p.stdout)["records"] == 12


@pytest.mark.parametrize("options", [["--first-seq", "0"], ["--through-seq", "x"],
                                     ["--first-seq", "5", "--through-seq", "4"],
                                     ["--first-seq", "9223372036854775808"]])
def test_bad_expectations_are_usage_errors(options):
    p = run_cli("--json", "audit", "verify", DATA / "intact.jsonl", "--public-key",
                DATA / "acme.pem", *options)
    assert p.returncode == 2, p
    assert json.loads(p.stdout)["code"] == "usage"
    assert "Run 'keyhold audit verify --help' for usage." in p.stderr
