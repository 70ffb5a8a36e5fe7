"""`keyhold` against the real keyholdd's admin routes (docs/admin-api.md).

Records that keyholdd writes asynchronously (a read's audit record may trail its answer by
one batch) are awaited with harness.poll_until, a bound on waiting, not a timing claim."""
import json
import os

import pytest

import harness
from harness import assert_empty_200, new_key
from test_cli import json_error, run_cli

VERSION_FIELDS = {"version", "state", "algorithm", "created", "records", "encrypts", "decrypts"}
JOB_FIELDS = {"state", "moved", "skipped", "total", "rate", "eta_s"}
RECORD_FIELDS = {"seq", "time", "tenant", "actor", "action", "target", "outcome", "key_version",
                 "request_id", "client", "count", "prev_hash", "hash"}


def op(keyholdd, *args, **kw):
    return run_cli(*args, "--socket", keyholdd.admin_socket, **kw)


def versions(keyholdd, *args) -> list[dict]:
    p = op(keyholdd, "key", "list", "--json", *args)
    assert p.returncode == 0, p
    return json.loads(p.stdout)


def test_key_list_fields(keyholdd):
    vs = versions(keyholdd)
    assert vs and all(set(v) >= VERSION_FIELDS for v in vs), vs
    assert [v["version"] for v in vs] == sorted(v["version"] for v in vs)
    assert sum(v["state"] == "active" for v in vs) == 1

    p = op(keyholdd, "key", "list")
    assert p.returncode == 0, p
    assert p.stdout.splitlines()[0].split() == ["VERSION", "STATE", "ALGORITHM", "CREATED",
                                                "RECORDS", "ENCRYPTS", "DECRYPTS"]
    assert len(p.stdout.splitlines()) == 1 + len(vs)


def test_key_status_fields(keyholdd):
    p = op(keyholdd, "--json", "key", "status")
    assert p.returncode == 0, p
    st = json.loads(p.stdout)
    assert set(st) >= {"active", "versions", "job"}
    assert set(st["job"]) >= JOB_FIELDS
    assert st["job"]["state"] in ("none", "running", "done", "failed")
    active = [v for v in st["versions"] if v["state"] == "active"]
    assert [v["version"] for v in active] == [st["active"]]
    p = op(keyholdd, "key", "status")
    assert p.returncode == 0 and p.stdout.startswith(f"Active version: {st['active']}\n"), p


def test_counters_follow_member_writes_and_reads(keyholdd, default_issuer, user):
    before = {v["version"]: v for v in versions(keyholdd)}
    tok = default_issuer.token(user)
    assert_empty_200(keyholdd.client.post("/user-keys", token=tok, json_body={"key": new_key()}))
    r = keyholdd.client.get("/user-keys", token=tok)
    assert r.status == 200, r
    after = {v["version"]: v for v in versions(keyholdd)}
    active = next(v for v in after.values() if v["state"] == "active")["version"]
    assert after[active]["records"] == before[active]["records"] + 1
    assert after[active]["encrypts"] == before[active]["encrypts"] + 1
    assert after[active]["decrypts"] == before[active]["decrypts"] + 1


def test_tenant_option_reaches_another_tenant(keyholdd):
    assert versions(keyholdd, "--tenant", "acme")  # acme has its own key
    obj = json_error(op(keyholdd, "--json", "key", "list", "--tenant", "nosuch"), "unknown_tenant")
    assert obj["message"]


def test_audit_tail_shows_a_member_read(keyholdd, default_issuer, user):
    tok = default_issuer.token(user)
    assert_empty_200(keyholdd.client.post("/user-keys", token=tok, json_body={"key": new_key()}))
    assert keyholdd.client.get("/user-keys", token=tok).status == 200

    def read_record():
        p = op(keyholdd, "--json", "audit", "tail", "-n", "50")
        assert p.returncode == 0, p
        recs = [json.loads(l) for l in p.stdout.splitlines()]
        assert all(set(r) >= RECORD_FIELDS for r in recs), recs
        return next((r for r in recs if r["action"] == "read" and r["target"] == user), None)
    rec = harness.poll_until(read_record)
    assert rec["outcome"] == "ok" and rec["actor"] == user and rec["tenant"] == "default"


def test_admin_actions_are_audited_with_the_operator(keyholdd):
    assert op(keyholdd, "key", "list").returncode == 0

    def key_list_record():
        p = op(keyholdd, "--json", "audit", "tail", "-n", "50")
        recs = [json.loads(l) for l in p.stdout.splitlines()]
        return next((r for r in reversed(recs) if r["action"] == "key.status"), None)
    rec = harness.poll_until(key_list_record)
    assert rec["actor"] == f"local:uid={os.getuid()}" and rec["client"] == "local"


@pytest.mark.parametrize("chain", [[], ["--tenant", "acme"], ["--server"]])
def test_export_and_verify_round_trip(keyholdd, tmp_path, chain):
    out, pem = tmp_path / "chain.jsonl", tmp_path / "chain.pem"
    # something in every chain first (the server's has its start record): an admin read,
    # whose record trails its answer by a batch
    if "--server" not in chain:
        assert op(keyholdd, "key", "list", *chain).returncode == 0

    def exported():
        p = op(keyholdd, "--json", "audit", "export", out, "--force", *chain)
        assert p.returncode == 0, p
        return p if json.loads(p.stdout)["records"] > 0 else None
    p = harness.poll_until(exported)
    assert p, "nothing exported"
    summary = json.loads(p.stdout)
    lines = out.read_text().splitlines()
    assert summary["records"] == len(lines) > 0
    assert summary["first_seq"] == json.loads(lines[0])["seq"]
    assert summary["last_seq"] == json.loads(lines[-1])["seq"]

    p = harness.poll_until(lambda: (lambda p: p if p.returncode == 0 else None)(
        op(keyholdd, "audit", "public-key", *chain)))
    assert p and p.stdout.startswith("-----BEGIN PUBLIC KEY-----"), p
    pem.write_text(p.stdout)

    p = run_cli("--json", "audit", "verify", out, "--public-key", pem)
    assert p.returncode == 0, p
    v = json.loads(p.stdout)
    assert v["ok"] is True and v["records"] == len(lines)

    # where the export says the chain starts and ends, as a later verify states it: met by
    # the file, and a file missing its last record fails it
    first, last = str(summary["first_seq"]), str(summary["last_seq"])
    assert summary["first_seq"] == 1  # a whole chain
    p = run_cli("--json", "audit", "verify", out, "--public-key", pem, "--first-seq", first,
                "--through-seq", last)
    assert p.returncode == 0, p
    short = tmp_path / "short.jsonl"
    short.write_text("".join(l + "\n" for l in lines[:-1]))
    p = run_cli("--json", "audit", "verify", short, "--public-key", pem, "--first-seq", first,
                "--through-seq", last)
    assert p.returncode == 1, p
    v = json.loads(p.stdout)
    assert (v["reason"], v["first_bad_seq"]) == ("truncated" if lines[:-1] else "no records",
                                                 summary["last_seq"] if lines[:-1] else 0), v


def test_export_summary_names_the_head_tail_shows(keyholdd, tmp_path):
    """The human summary of an export gives the verify command with the seqs it exported,
    the last one being the chain's head (what `audit tail` shows last, absent new records)."""
    out = tmp_path / "server.jsonl"
    p = op(keyholdd, "audit", "export", out, "--server")
    assert p.returncode == 0, p
    first_line, hint = p.stdout.splitlines()
    last = json.loads(out.read_text().splitlines()[-1])["seq"]
    assert first_line.endswith(f" to {last}, the chain's head).")
    assert hint == (f"Check it: keyhold audit verify {out} --public-key PEM --first-seq 1 "
                    f"--through-seq {last}")


def test_tenant_chain_does_not_verify_under_the_server_key(make_keyholdd, issuers, tmp_path):
    # a checkpoint every two records, so the acme chain has one after a few refusals
    k = make_keyholdd(tenants={"default": {"issuer": issuers["default"]},
                               "acme": {"issuer": issuers["acme"]}},
                      extra="\n[audit]\ncheckpoint_records = 2\n")
    out, pem = tmp_path / "acme.jsonl", tmp_path / "server.pem"
    for _ in range(3):
        assert op(k, "key", "list", "--tenant", "acme").returncode == 0

    def exported_checkpoint():
        assert op(k, "audit", "export", out, "--tenant", "acme", "--force").returncode == 0
        return [l for l in out.read_text().splitlines() if '"checkpoint"' in l]
    assert harness.poll_until(exported_checkpoint), out.read_text()
    # a chain's signing key is made in the background at the first start: wait for it
    key = harness.poll_until(lambda: (lambda p: p.stdout if p.returncode == 0 else None)(
        op(k, "audit", "public-key", "--server")))
    assert key, "no server key"
    pem.write_text(key)
    p = run_cli("--json", "audit", "verify", out, "--public-key", pem)
    assert p.returncode == 1
    assert json.loads(p.stdout).get("reason") == "bad signature", (p.stdout, p.stderr)


# ----------------------------------------------------------------------------- over HTTPS

@pytest.fixture
def admin_keyholdd(make_keyholdd, issuers):
    return make_keyholdd(tenants={
        "default": {"issuer": issuers["default"], "admins": "role:keyhold-admin"},
        "acme": {"issuer": issuers["acme"], "admins": "groups:security"}})


def https(k, token, *args):
    return run_cli("--url", f"https://127.0.0.1:{k.port}", "--cacert", k.pki.ca_pem,
                   "--token", token, *args)


def test_admin_token_over_https(admin_keyholdd, default_issuer):
    k = admin_keyholdd
    tok = default_issuer.token("ops-admin", role="keyhold-admin")
    p = https(k, tok, "--json", "key", "list")
    assert p.returncode == 0, p
    assert json.loads(p.stdout)[0].keys() >= VERSION_FIELDS


def test_member_token_is_not_admin(admin_keyholdd, default_issuer, user):
    obj = json_error(https(admin_keyholdd, default_issuer.token(user), "--json", "key", "list"),
                     "not_admin")
    assert obj["message"]


def test_admin_of_one_tenant_only(admin_keyholdd, acme_issuer):
    k = admin_keyholdd
    tok = acme_issuer.token("sec-admin", groups=["security"])
    assert https(k, tok, "key", "list", "--tenant", "acme").returncode == 0
    p = https(k, tok, "--json", "key", "list")  # the default tenant: another issuer
    assert p.returncode == 1 and json.loads(p.stdout)["code"] in ("invalid_token", "not_admin")


def test_server_chain_is_not_served_over_https(admin_keyholdd, default_issuer):
    tok = default_issuer.token("ops-admin", role="keyhold-admin")
    p = https(admin_keyholdd, tok, "audit", "tail", "--server")
    assert p.returncode == 2
