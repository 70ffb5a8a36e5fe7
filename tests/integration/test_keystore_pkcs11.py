"""keyholdd on the pkcs11 key store ([keystore] driver = pkcs11) with a fresh SoftHSM2 token:
keys written and read back through HTTP, the same after a restart, and an audit chain signed
in the token that `keyhold audit verify` accepts. The store's own cases (attributes of the
keys, what the token refuses) are in tests/unit/keystore/test-keystore-pkcs11.c."""
import json
import os
import subprocess

import harness
import storage
from harness import assert_empty_200, assert_key, new_key, poll_until

PIN = "hsm-Pin-4711-q"
TOKEN = "keyhold-it"


class Pkcs11Keyholdd(harness.Keyholdd):
    """A Keyholdd whose key store is token TOKEN of hsm (made by the test, or by the harness
    with a random PIN if the test has not), keys labelled "it-...", the PIN from pin_file if
    given, else from KEYHOLD_KEYSTORE_PIN in env. A thin wrapper over the harness's
    Keyholdd(keystore="pkcs11", hsm=...), kept for the tests that use it."""

    def __init__(self, workdir, pki, tenants, hsm, pin_file=None, **kw):
        kw.setdefault("token", TOKEN)
        kw.setdefault("label_prefix", "it-")
        super().__init__(workdir, pki, tenants, keystore="pkcs11", hsm=hsm, pin_file=pin_file,
                         **kw)


def _cli(*args):
    p = subprocess.run([str(harness.build_dir() / "src" / "cli" / "keyhold"), *args],
                       capture_output=True, text=True, timeout=60)
    return p


def test_keyholdd_on_softhsm(pki, issuers, softhsm, tmp_path):
    softhsm.init_token(TOKEN, so_pin="1234", pin=PIN)
    tenants = {"default": {"issuer": issuers["default"], "admins": "role:keyhold-admin"}}
    env = {"SOFTHSM2_CONF": str(softhsm.conf), "KEYHOLD_KEYSTORE_PIN": PIN}
    d = Pkcs11Keyholdd(tmp_path / "k", pki, tenants, softhsm, env=env,
                       extra="\n[audit]\ncheckpoint_records = 3\n")
    users = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(4)]
    keys = {u: new_key() for u in users}

    d.start()
    try:
        for u in users:
            tok = issuers["default"].token(u)
            assert_empty_200(d.client.post("/user-keys", token=tok, json_body={"key": keys[u]}))
        for u in users:
            assert_key(d.client.get("/user-keys", token=issuers["default"].token(u)), keys[u])
        # the tenant key is in the token, not in a key file
        assert not any((d.data / "keystore").rglob("*.key"))
        r = poll_until(lambda: (lambda x: x if x.status == 200 else None)(
            d.operator.get("/admin/audit/public-key")))
        assert r and r.status == 200, r
        doc = r.json()
        assert doc["algorithm"] == "ecdsa-p256-sha256", doc  # SoftHSM2 has CKM_ECDSA
    finally:
        assert d.stop() == 0, d.log()

    # restart, now with the PIN from a file: the same key versions, the same DEKs
    pin_file = tmp_path / "hsm.pin"
    pin_file.write_text(PIN + "\n")
    os.chmod(pin_file, 0o600)
    d.pin_file = pin_file
    d.env = {"SOFTHSM2_CONF": str(softhsm.conf)}
    d.write_config()
    d.start()
    try:
        for u in users:
            assert_key(d.client.get("/user-keys", token=issuers["default"].token(u)), keys[u])
        keys_doc = d.operator.get("/admin/keys")
        assert keys_doc.status == 200, keys_doc
        pem = tmp_path / "audit.pem"
        pem.write_text(doc["pem"])
        out = tmp_path / "chain.jsonl"

        def exported_signed():
            p = _cli("--socket", str(d.admin_socket), "--json", "audit", "export", str(out),
                     "--force")
            assert p.returncode == 0, p
            lines = [json.loads(x) for x in out.read_bytes().splitlines()]
            return lines if any("signature" in x for x in lines) else None
        assert poll_until(exported_signed, timeout=20), "no signed checkpoint in the chain"
        p = _cli("--json", "audit", "verify", str(out), "--public-key", str(pem))
        verdict = json.loads(p.stdout)
        assert p.returncode == 0 and verdict["ok"] is True, (p, verdict)
        assert verdict["records"] >= 2 * len(users), verdict
    finally:
        assert d.stop() == 0, d.log()
    assert PIN not in d.log()


def test_keyholdd_refuses_a_wrong_pin(pki, issuers, softhsm, tmp_path):
    softhsm.init_token(TOKEN, so_pin="1234", pin=PIN)
    tenants = {"default": {"issuer": issuers["default"]}}
    d = Pkcs11Keyholdd(tmp_path / "k", pki, tenants, softhsm,
                       env={"SOFTHSM2_CONF": str(softhsm.conf), "KEYHOLD_KEYSTORE_PIN": "wrong-pin-zz9"})
    try:
        d.start()
        raise AssertionError("keyholdd started with a wrong PIN")
    except Exception as e:  # wait_port_file fails once the process exits
        if isinstance(e, AssertionError) and "wrong PIN" in str(e):
            raise
    finally:
        d.stop()
    log = d.log()
    assert "C_Login: CKR_PIN_INCORRECT" in log, log
    assert "wrong-pin-zz9" not in log, log


def test_half_a_key_pair_left_by_a_killed_first_start_is_made_again(pki, issuers, tmp_path):
    """kill -9 inside C_GenerateKeyPair can leave one object of a tenant key's pair in the
    token and no DEK in the database. The next start must make the version again, not fail
    on the half for ever (test_durability's kill -9 during first start found it)."""
    tenants = {"default": {"issuer": issuers["default"]}, "acme": {"issuer": issuers["acme"]}}
    for half in ("pubkey", "privkey"):
        d = harness.Keyholdd(tmp_path / half, pki, tenants, keystore="pkcs11")
        d.start()
        assert d.stop() == 0, d.log()
        p = subprocess.run(["pkcs11-tool", "--module", d.hsm.module, "--token-label", d.token,
                            "--login", "--pin", d.pin, "--delete-object", "--type", half,
                            "--label", f"{d.label_prefix}acme-data-v1"],
                           env=d.cli_env(), capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p
        storage.wipe(d.db_path)  # as if killed before the DEK was stored
        d.start()
        try:
            tok, key = issuers["acme"].token(f"00000000-0000-4000-8000-0000000000a{len(half)}"), new_key()
            assert_empty_200(d.client.post("/t/acme/user-keys", token=tok, json_body={"key": key}))
            assert_key(d.client.get("/t/acme/user-keys", token=tok), key)
        finally:
            assert d.stop() == 0, d.log()
