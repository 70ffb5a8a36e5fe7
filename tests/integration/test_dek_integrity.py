"""Wrapped DEKs are authenticated (issue #11, item 5): each row of tenant_keys carries a
signature by the tenant key version that wraps it, checked at start-up before the DEK is
unwrapped. The attacker here can write the database (while keyholdd is stopped: it holds
the SQLite file exclusively while it runs) and read the tenant's public key (from
<keystore>/<tenant>/v1.pub, or the token's public key object), and plants a DEK of their choosing, wrapped independently with
the `cryptography` package. keyholdd must refuse to start and say which tenant and version
failed; with the original row back it serves the stored keys again."""
import os
import re

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from harness import assert_empty_200, assert_key, new_key
import storage
import tokens

TENANT = "acme"          # not the first tenant, so that blaming the first one would show
VERSION = 1
INTEGRITY = "record_integrity"   # kh_strerror(-KH_E_INTEGRITY)


def _row(k) -> tuple[bytes, bytes | None]:
    with storage.edit(k.db_path) as db:
        rows = db.execute("SELECT wrapped_dek, signature FROM tenant_keys "
                          "WHERE tenant = ? AND version = ?", (TENANT, VERSION)).fetchall()
    assert len(rows) == 1, rows
    wrapped, sig = rows[0]
    return bytes(wrapped), None if sig is None else bytes(sig)


def _set_row(k, wrapped: bytes, sig: bytes | None) -> None:
    with storage.edit(k.db_path) as db:
        cur = db.execute("UPDATE tenant_keys SET wrapped_dek = ?, signature = ? "
                         "WHERE tenant = ? AND version = ?", (wrapped, sig, TENANT, VERSION))
        assert cur.rowcount == 1


def _planted_wrap(k) -> bytes:
    """A random 32-byte DEK wrapped under the tenant's public key as the key store wraps:
    RSA-OAEP, SHA-256 and MGF1-SHA-256 (SHA-1 for both on a SoftHSM2 token), no label."""
    pub = serialization.load_pem_public_key(k.data_public_pem(TENANT, VERSION))
    md = hashes.SHA1() if k.oaep_sha1() else hashes.SHA256()
    return pub.encrypt(os.urandom(32), padding.OAEP(mgf=padding.MGF1(md), algorithm=md,
                                                    label=None))


def _start_refused(k) -> str:
    """Starts k, which must exit non-zero before serving; returns what it logged then."""
    before = len(k.log_path.read_bytes()) if k.log_path.exists() else 0
    with pytest.raises(RuntimeError, match="exited with"):
        k.start()
    rc = k.stop()
    assert rc not in (None, 0), (rc, k.log())
    return k.log_path.read_bytes()[before:].decode(errors="replace")


def _serving_with_key(make_keyholdd, acme_issuer):
    k = make_keyholdd()
    user = tokens.new_guid()
    key = new_key()
    assert_empty_200(k.client.post("/t/acme/user-keys", token=acme_issuer.token(user),
                                   json_body={"key": key}))
    assert k.stop() == 0, k.log()
    return k, user, key


@pytest.mark.parametrize("signature", ["old", "none"])
def test_planted_dek_is_refused_at_start(make_keyholdd, acme_issuer, signature):
    """The planted DEK keeps the row's old signature, or has none (clearing it must not get
    it signed): either way keyholdd refuses to start and names the tenant."""
    k, user, key = _serving_with_key(make_keyholdd, acme_issuer)
    wrapped, sig = _row(k)
    assert sig is not None and len(sig) == 256  # keyholdd signed the DEK it created

    planted = _planted_wrap(k)
    assert planted != wrapped and len(planted) == len(wrapped)
    _set_row(k, planted, sig if signature == "old" else None)
    log = _start_refused(k)
    assert re.search(rf"tenant {TENANT}: .*: {re.escape(INTEGRITY)}", log), log
    assert "tenant default:" not in log, log
    assert _row(k) == (planted, sig if signature == "old" else None)  # not signed on the way

    _set_row(k, wrapped, sig)
    k.start()
    assert_key(k.client.get("/t/acme/user-keys", token=acme_issuer.token(user)), key)


def test_refusal_names_the_version(make_keyholdd, acme_issuer):
    k, _, _ = _serving_with_key(make_keyholdd, acme_issuer)
    _, sig = _row(k)
    _set_row(k, _planted_wrap(k), sig)
    log = _start_refused(k)
    assert re.search(rf"tenant {TENANT}: [^\n]*\bversion {VERSION}\b[^\n]*: "
                     rf"{re.escape(INTEGRITY)}", log), log


def test_database_from_before_signatures_needs_the_operator(make_keyholdd, acme_issuer):
    """A database as a build before signatures left it (schema 2: no signature column, no
    meta table) looks exactly like one whose signatures an attacker cleared, so keyholdd
    refuses it, naming the version and the way out; started once with --sign-unsigned-deks
    it signs the rows as they are and serves; later starts need no flag, and a signature
    cleared afterwards is refused again instead of being signed."""
    k, user, key = _serving_with_key(make_keyholdd, acme_issuer)
    wrapped, _ = _row(k)
    # back to schema 2: schema 6's triggers first (they name meta and the signature column)
    if storage.KIND == "postgresql":
        v6 = ("DROP TABLE job_leases", "DROP TRIGGER key_epoch_insert ON tenant_keys",
              "DROP TRIGGER key_epoch_update ON tenant_keys", "DROP TRIGGER key_epoch_seal ON meta",
              "DROP FUNCTION keyhold_key_epoch_bump()", "DROP TABLE key_epoch")
    else:
        v6 = ("DROP TRIGGER key_epoch_insert", "DROP TRIGGER key_epoch_update",
              "DROP TRIGGER key_epoch_seal_insert", "DROP TRIGGER key_epoch_seal_update",
              "DROP TABLE key_epoch", "DROP TABLE job_leases")
    with storage.edit(k.db_path) as db:
        for sql in v6 + ("DELETE FROM schema_migrations WHERE version = 6",
                         "ALTER TABLE tenant_keys DROP COLUMN prior_state",
                         "DELETE FROM schema_migrations WHERE version = 5",
                         "DROP TABLE audit_blocks", "ALTER TABLE tenant_keys DROP COLUMN encrypts",
                         "ALTER TABLE tenant_keys DROP COLUMN decrypts",
                         "DELETE FROM schema_migrations WHERE version = 4",
                         "ALTER TABLE tenant_keys DROP COLUMN signature", "DROP TABLE meta",
                         "DELETE FROM schema_migrations WHERE version = 3"):
            db.execute(sql)

    log = _start_refused(k)
    assert re.search(r"tenant default: tenant key version 1 has a DEK without a signature "
                     r"[^\n]*--sign-unsigned-deks: " + re.escape(INTEGRITY), log), log
    assert _row(k) == (wrapped, None)   # refusing signs nothing

    k.args = ["--sign-unsigned-deks"]
    k.start()
    assert_key(k.client.get("/t/acme/user-keys", token=acme_issuer.token(user)), key)
    assert k.stop() == 0, k.log()
    signed, sig = _row(k)
    assert signed == wrapped and sig is not None and len(sig) == 256

    k.args = []
    k.start()
    assert_key(k.client.get("/t/acme/user-keys", token=acme_issuer.token(user)), key)
    assert k.stop() == 0, k.log()

    _set_row(k, wrapped, None)
    log = _start_refused(k)
    assert re.search(rf"tenant {TENANT}: tenant key version 1 has a DEK without a signature "
                     rf"[^\n]*: {re.escape(INTEGRITY)}", log), log
    _set_row(k, wrapped, sig)
    k.start()
    assert_key(k.client.get("/t/acme/user-keys", token=acme_issuer.token(user)), key)
