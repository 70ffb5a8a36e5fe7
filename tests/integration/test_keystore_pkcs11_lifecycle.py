"""The key lifecycle, seal/unseal and backups of keyholdd on the pkcs11 key store, end to end on
a fresh SoftHSM2 token (issue 15): the PIN given by `keyhold unseal` (a server without one
starts sealed), a wrong PIN refused like a wrong master key, a locked PIN said apart; rekey,
revoke, reinstate, retire and destroy, the destroyed key checked gone with an independent
tool (OpenSC's pkcs11-tool) and the destroy in the audit chain; a backup whose key only the
token derives, verified and restored against the same token (every member key served by a
keyholdd on the restored folder), and a missing token key named by `backup verify`."""
import json
import os
import shutil
import subprocess

import pytest

import harness
from harness import assert_error, new_key, poll_until
from test_keystore_pkcs11 import PIN, TOKEN, Pkcs11Keyholdd
from test_lifecycle import (ALG, Member, audit_records, cli_binary, keys, read, seed, states,
                            wait_job_done)

ADMINS = "role:keyhold-admin"
PKCS11_TOOL = shutil.which("pkcs11-tool")
CLI_TIMEOUT_S = 120     # a hang guard only


def tenants(issuers) -> dict:
    return {"default": {"issuer": issuers["default"], "admins": ADMINS},
            "acme": {"issuer": issuers["acme"], "admins": ADMINS}}


def run(hsm, *args, socket=None, json_out=True) -> subprocess.CompletedProcess:
    """The keyhold CLI with the token store's SOFTHSM2_CONF and no KEYHOLD_* variable."""
    cmd = [str(cli_binary())] + (["--socket", str(socket)] if socket else [])
    cmd += (["--json"] if json_out else []) + [str(a) for a in args]
    env = {n: v for n, v in hsm.env.items() if not n.startswith("KEYHOLD_")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT_S,
                          stdin=subprocess.DEVNULL)


def ok(p) -> dict:
    assert p.returncode == 0, p
    return json.loads(p.stdout) if p.stdout.strip() else None


def refused(p, code) -> dict:
    assert p.returncode == 1, p
    obj = json.loads(p.stdout.splitlines()[0])
    assert obj["code"] == code, p
    return obj


def token_objects(hsm) -> str:
    """What OpenSC's pkcs11-tool lists on the token (logged in): an independent reader."""
    assert PKCS11_TOOL, "pkcs11-tool missing (scripts/install-deps --test installs opensc)"
    p = subprocess.run([PKCS11_TOOL, "--module", hsm.module, "--token-label", TOKEN, "--login",
                        "--pin", PIN, "--list-objects"], capture_output=True, text=True,
                       env=hsm.env, timeout=CLI_TIMEOUT_S)
    assert p.returncode == 0, p
    return p.stdout


def labels(hsm) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in token_objects(hsm).splitlines()
            if line.strip().startswith("label:")]


def write_secret(path, text: str):
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def make(tmp_path, name, pki, issuers, hsm, pin_file=None, **kw) -> Pkcs11Keyholdd:
    return Pkcs11Keyholdd(tmp_path / name, pki, tenants(issuers), hsm, pin_file=pin_file,
                          env={"SOFTHSM2_CONF": str(hsm.conf)}, **kw)


# ------------------------------------------------------------------------ PIN, seal, unseal


def test_pin_file_is_the_whole_file_minus_one_newline(pki, issuers, softhsm, tmp_path):
    softhsm.init_token(TOKEN, so_pin="1234", pin=PIN)
    empty = write_secret(tmp_path / "empty.pin", "")
    k = make(tmp_path, "k", pki, issuers, softhsm, pin_file=empty)
    with pytest.raises(Exception):
        k.start()
    k.stop()
    assert "pin_file: is empty" in k.log(), k.log()
    # a second line is part of the PIN (the first-line reading took it for the PIN)
    k.pin_file = write_secret(tmp_path / "two.pin", PIN + "\n\n")
    k.write_config()
    with pytest.raises(Exception):
        k.start()
    k.stop()
    assert "C_Login: CKR_PIN_INCORRECT" in k.log() and PIN not in k.log(), k.log()
    k.pin_file = write_secret(tmp_path / "bare.pin", PIN)     # no newline at all
    k.write_config()
    k.start()
    assert k.client.get("/health").status == 200
    assert k.stop() == 0


def test_no_pin_starts_sealed_and_unseal_gives_the_pin(pki, issuers, softhsm, tmp_path):
    softhsm.init_token(TOKEN, so_pin="1234", pin=PIN)
    k = make(tmp_path, "k", pki, issuers, softhsm)       # neither pin_file nor the variable
    k.start()
    try:
        assert k.client.get("/health").status == 503
        assert keys(k)["sealed"] is True
        m = Member(issuers["default"], "default")
        r = k.client.put(m.path, token=m.token, json_body={"key": new_key()})
        assert_error(r, 503, "sealed")
        assert not [x for x in labels(softhsm) if x.startswith("it-default-data")]

        wrong = write_secret(tmp_path / "wrong.pin", "not-the-pin-77\n")
        refused(run(softhsm, "unseal", "--passphrase-file", wrong, socket=k.admin_socket),
                "wrong_secret")
        refused(run(softhsm, "unseal", "--master-key-file", wrong, socket=k.admin_socket),
                "wrong_secret")
        assert keys(k)["sealed"] is True
        # the PIN in a --master-key-file (DESIGN.md: "the PIN for an HSM store")
        good = write_secret(tmp_path / "hsm.pin", PIN + "\n")
        p = run(softhsm, "unseal", "--master-key-file", good, socket=k.admin_socket)
        assert ok(p) == {"sealed": False}
        # the first key versions were made in the token, as on an empty file store
        assert states(k) == {1: "active"}
        assert "it-default-data-v1" in labels(softhsm) and "it-acme-data-v1" in labels(softhsm)
        v = new_key()
        assert k.client.put(m.path, token=m.token, json_body={"key": v}).status == 200

        # seal: every DEK and the login dropped; unseal with --passphrase-file
        assert ok(run(softhsm, "seal", socket=k.admin_socket)) == {"sealed": True}
        r, _ = read(k, m)
        assert_error(r, 503, "sealed")
        assert ok(run(softhsm, "unseal", "--passphrase-file", good,
                      socket=k.admin_socket)) == {"sealed": False}
        r, got = read(k, m)
        assert r.status == 200 and got == v, r
    finally:
        assert k.stop() == 0, k.log()
    assert PIN not in k.log() and "not-the-pin-77" not in k.log(), k.log()


def test_locked_pin_is_said_apart(pki, issuers, softhsm, tmp_path):
    """SoftHSM2 2.6 never locks a user PIN, so the token is SoftHSM2 behind a module whose
    C_Login answers CKR_PIN_LOCKED as a real HSM does after too many wrong PINs
    (tests/integration/p11/pin-locked.c); every other call is SoftHSM2's."""
    softhsm.init_token(TOKEN, so_pin="1234", pin=PIN)
    shim = harness.build_dir() / "tests" / "integration" / "p11" / "libkh-p11-pin-locked.so"
    assert shim.exists(), shim
    k = make(tmp_path, "k", pki, issuers, softhsm)
    k.config_text = lambda base=k.config_text: base().replace(
        f"module = {softhsm.module}", f"module = {shim}")
    k.write_config()
    k.start()
    try:
        good = write_secret(tmp_path / "hsm.pin", PIN + "\n")
        obj = refused(run(softhsm, "unseal", "--passphrase-file", good, socket=k.admin_socket),
                      "pkcs11_pin_locked")
        assert "locked" in obj["message"] and PIN not in obj["message"], obj
        assert_error(k.operator.post("/server/unseal", json_body={"passphrase": PIN}), 403,
                     "pkcs11_pin_locked")
        assert keys(k)["sealed"] is True
    finally:
        assert k.stop() == 0, k.log()
    assert PIN not in k.log()


# ------------------------------------------------------------------------------ lifecycle


def test_rekey_revoke_reinstate_retire_destroy_in_the_token(pki, issuers, softhsm, tmp_path):
    softhsm.init_token(TOKEN, so_pin="1234", pin=PIN)
    pin = write_secret(tmp_path / "hsm.pin", PIN + "\n")
    k = make(tmp_path, "k", pki, issuers, softhsm, pin_file=pin)
    k.start()
    sock = k.admin_socket
    try:
        members = seed(k, issuers["default"], 6)
        assert ok(run(softhsm, "key", "rekey", "--algorithm", "rsa-3072", "--wait",
                      socket=sock))["version"] == 2
        listing = token_objects(softhsm)
        assert "it-default-data-v2" in listing, listing
        wait_job_done(k)
        for m in members:
            r, got = read(k, m)
            assert r.status == 200 and got == m.acked, r

        # revoke and reinstate the archived version: nothing is under it any more
        assert ok(run(softhsm, "key", "revoke", "1", socket=sock)) == {"version": 1,
                                                                        "state": "revoked"}
        assert ok(run(softhsm, "key", "reinstate", "1", socket=sock)) == {
            "version": 1, "state": "archived"}
        refused(run(softhsm, "key", "revoke", "2", socket=sock), "last_active")
        assert ok(run(softhsm, "key", "retire", "1", socket=sock)) == {"version": 1,
                                                                        "state": "retired"}
        assert "it-default-data-v1" in labels(softhsm)
        refused(run(softhsm, "key", "destroy", "1", socket=sock), "confirmation_required")
        assert ok(run(softhsm, "key", "destroy", "1", "--yes", socket=sock)) == {
            "version": 1, "state": "destroyed"}
        # both halves gone from the token, as another PKCS#11 reader sees it
        after = labels(softhsm)
        assert "it-default-data-v1" not in after and "it-default-data-v2" in after, after
        assert states(k) == {1: "destroyed", 2: "active"}
        recs = poll_until(lambda: [x for x in audit_records(k)
                                   if x["action"] == "key.destroy" and x["outcome"] == "ok"],
                          timeout=10)
        assert recs and recs[0]["key_version"] == 1, recs
        for m in members:
            r, got = read(k, m)
            assert r.status == 200 and got == m.acked, r
    finally:
        assert k.stop() == 0, k.log()
    assert PIN not in k.log()


# -------------------------------------------------------------------------------- backups


@pytest.mark.sqlite_only  # restores into the SQLite file it names; PostgreSQL with the token:
#                           test_backup.py with KEYHOLD_TEST_KEYSTORE=pkcs11
def test_backup_verify_restore_against_the_token(pki, issuers, softhsm, tmp_path):
    softhsm.init_token(TOKEN, so_pin="1234", pin=PIN)
    pin = write_secret(tmp_path / "hsm.pin", PIN + "\n")
    k = make(tmp_path, "src", pki, issuers, softhsm, pin_file=pin)
    k.start()
    path = tmp_path / "hsm.khb"
    try:
        members = seed(k, issuers["default"], 8) + seed(k, issuers["acme"], 5, tenant="acme")
        assert ok(run(softhsm, "key", "rekey", "--algorithm", "rsa-3072", "--wait",
                      socket=k.admin_socket))["version"] == 2
        created = ok(run(softhsm, "backup", "create", path, socket=k.admin_socket))
        assert created["tenants"] == 2 and created["records"] == len(members), created
    finally:
        assert k.stop() == 0, k.log()
    raw = path.read_bytes()
    assert PIN.encode() not in raw
    assert raw[:8] == b"KHBACKUP" and b"it-_server-backup-v1" in raw[:4096]
    assert "it-_server-backup-v1" in labels(softhsm)

    # verify: the configuration's token, PIN from its pin_file ...
    v = ok(run(softhsm, "backup", "verify", path, "--config", k.config_path))
    assert v["ok"] is True and v["records"] == len(members), v
    # ... or given apart (the configuration then needs none)
    k.pin_file = None
    k.write_config()
    ok(run(softhsm, "backup", "verify", path, "--config", k.config_path, "--passphrase-file", pin))
    ok(run(softhsm, "backup", "verify", path, "--config", k.config_path, "--master-key-file", pin))
    wrong = write_secret(tmp_path / "wrong.pin", "0000-not-it\n")
    refused(run(softhsm, "backup", "verify", path, "--config", k.config_path,
                "--passphrase-file", wrong), "wrong_secret")
    # without the token's configuration there is nothing to open it with
    refused(run(softhsm, "backup", "verify", path, "--master-key-file", pin), "wrong_keystore")
    k.pin_file = pin
    k.write_config()

    # restore onto a fresh folder; a keyholdd there, on the same token, serves every key
    dest = tmp_path / "restored"
    ok(run(softhsm, "backup", "restore", path, "--data", dest, "--config", k.config_path))
    assert (dest / "keyhold.db").is_file()
    r2 = make(tmp_path, "restored-run", pki, issuers, softhsm, pin_file=pin)
    r2.db_path = dest / "keyhold.db"
    r2.write_config()
    r2.start()
    try:
        for m in members:
            got_r, got = read(r2, m)
            assert got_r.status == 200 and got == m.acked, (m.path, got_r)
        assert {v["version"]: v["state"] for v in keys(r2)["versions"]} == {1: "archived",
                                                                             2: "active"}
    finally:
        assert r2.stop() == 0, r2.log()

    # a key the backup needs, gone from the token: named, with a code
    p = subprocess.run([PKCS11_TOOL, "--module", softhsm.module, "--token-label", TOKEN,
                        "--login", "--pin", PIN, "--delete-object", "--type", "privkey",
                        "--label", "it-default-data-v1"], capture_output=True, text=True,
                       env=softhsm.env, timeout=CLI_TIMEOUT_S)
    assert p.returncode == 0, p
    obj = refused(run(softhsm, "backup", "verify", path, "--config", k.config_path),
                  "missing_key")
    assert "it-default-data-v1" in obj["message"], obj
    p = run(softhsm, "backup", "verify", path, "--config", k.config_path, json_out=False)
    assert p.returncode == 1 and "it-default-data-v1" in p.stderr, p
