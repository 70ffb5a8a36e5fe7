"""keyhold import bitwarden-kc against real Key Connector databases (kcdb.py builds them from
the spec: JSON, SQLite, PostgreSQL on a real server; PFX files made by openssl; a SoftHSM2
token) and the real keyholdd: after each import every member's key comes back through
GET /user-keys with that member's token, equal to the key Key Connector held."""
import base64
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import time
import uuid

import pytest

import harness
import kcdb
from harness import assert_error, new_key

CLI_TIMEOUT_S = 300       # a hang guard only
TENANT = "acme"
ADMINS = "role:keyhold-admin"


def cli_path() -> str:
    return str(harness.build_dir() / "src" / "cli" / "keyhold")


def import_cmd(k, *args, json_out=True) -> list[str]:
    cmd = [cli_path(), "--socket", str(k.admin_socket), "--tenant", TENANT]
    if json_out:
        cmd.append("--json")
    return cmd + ["import", "bitwarden-kc", *map(str, args)]


def cli_env(extra=None) -> dict:
    env = {n: v for n, v in os.environ.items() if not n.startswith("KEYHOLD_")}
    env.update(extra or {})
    return env


def run_import(k, *args, json_out=True, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(import_cmd(k, *args, json_out=json_out), capture_output=True, text=True,
                          env=cli_env(env), timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)


def summary(p: subprocess.CompletedProcess, rc: int) -> dict:
    assert p.returncode == rc, p
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p
    return json.loads(lines[0])


def refused(p: subprocess.CompletedProcess, code: str) -> dict:
    """A failure before anything was sent: exit 1 and one {"code", "message"} object."""
    obj = summary(p, 1)
    assert obj["code"] == code, obj
    assert obj["message"], obj
    return obj


def key_of(k, issuer, guid: str):
    """The member's key as keyholdd serves it to the member, or None (404)."""
    r = k.client.get(f"/t/{TENANT}/user-keys", token=issuer.token(guid))
    if r.status == 404:
        assert r.json()["code"] == "key_not_found", r
        return None
    assert r.status == 200, r
    return base64.b64decode(r.json()["key"])


def assert_served(k, issuer, expected: dict) -> None:
    for guid, key in expected.items():
        assert key_of(k, issuer, guid) == key, guid


def assert_none_served(k, issuer, guids) -> None:
    for guid in guids:
        assert key_of(k, issuer, guid) is None, guid


def store(k, issuer, guid: str, key: bytes) -> None:
    r = k.client.post(f"/t/{TENANT}/user-keys", token=issuer.token(guid),
                      json_body={"key": base64.b64encode(key).decode()})
    assert r.status == 200, r


def records(n: int):
    return [(str(uuid.uuid4()), os.urandom(32)) for _ in range(n)]


@pytest.fixture(scope="module")
def pfx(tmp_path_factory):
    """The Key Connector's certificate: a PFX made by OpenSSL 3 (AES), its password file."""
    d = tmp_path_factory.mktemp("kc-pfx")
    path, priv = kcdb.make_rsa_pfx(d, "kc-pfx-password")
    pw = d / "pfx.pass"
    pw.write_text("kc-pfx-password\n")
    pw.chmod(0o600)
    return path, priv, pw


def src(kind: str, db: kcdb.KcDatabase, tmp_path, pg=None) -> str:
    if kind == "json":
        return "json:" + str(db.write_json(tmp_path / "data.json"))
    if kind == "sqlite":
        return "sqlite:" + str(db.write_sqlite(tmp_path / "keyconnector.db"))
    return "postgresql:" + db.write_postgresql(pg, "kc_" + uuid.uuid4().hex[:12])


# ------------------------------------------------------------------ the whole story

@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_data_keys_a_corrupt_record_and_keys_already_present(kind, keyholdd, acme_issuer,
                                                                  pfx, tmp_path, request):
    """Key Connector's data-key race left two rows: each record opens with one of them. One
    record is corrupt, one member's key is in keyhold already (the same), another's is in
    keyhold with a different value: imported, skipped, conflict, failed; then the second run
    finds everything done, and --overwrite settles the conflict."""
    pg = request.getfixturevalue("pg") if kind == "postgresql" else None
    path, priv, pw = pfx
    recs = records(30)
    dk1, dk2 = os.urandom(32), os.urandom(32)
    assign = {g: 1 for g, _ in recs[:11]}
    corrupt = recs[29][0]
    db = kcdb.KcDatabase(recs, [dk1, dk2], priv, assign=assign, corrupt=[corrupt])
    same, other = recs[12], recs[13]
    store(keyholdd, acme_issuer, same[0], same[1])
    keyhold_own = os.urandom(32)
    store(keyholdd, acme_issuer, other[0], keyhold_own)
    source = src(kind, db, tmp_path, pg)
    before = source_digest(kind, source, pg)

    s = summary(run_import(keyholdd, "--database", source, "--pfx", path,
                           "--pfx-password-file", pw), 1)
    assert (s["imported"], s["skipped"], s["conflicts"], s["failed"]) == (27, 1, 1, 1), s
    assert s["code"] == "import_incomplete" and s["records"] == 30, s
    assert [d["records"] for d in s["data_keys"]] == [18, 11], s   # each row opened its own
    assert s["verified"] == 29, s            # all but the corrupt one, the conflict as left
    assert [p["id"].lower() for p in s["problems"]] == [corrupt], s
    assert s["problems"][0]["code"] == "kc_decrypt", s
    assert s["conflict_ids"] == [other[0]], s
    expected = dict(db.expected)
    expected[other[0]] = keyhold_own          # a conflict is never overwritten
    assert_served(keyholdd, acme_issuer, expected)
    assert_none_served(keyholdd, acme_issuer, [corrupt])

    s = summary(run_import(keyholdd, "--database", source, "--pfx", path,
                           "--pfx-password-file", pw), 1)
    assert (s["imported"], s["skipped"], s["conflicts"], s["failed"]) == (0, 28, 1, 1), s

    s = summary(run_import(keyholdd, "--database", source, "--pfx", path,
                           "--pfx-password-file", pw, "--overwrite"), 1)
    assert (s["imported"], s["overwritten"], s["conflicts"], s["failed"]) == (0, 1, 0, 1), s
    assert_served(keyholdd, acme_issuer, db.expected)
    assert source_digest(kind, source, pg) == before     # three imports only read it


def source_digest(kind, source, pg) -> str:
    """What the source holds, as one hash: every row of both tables (and, for SQLite, the
    file's bytes and the folder's listing)."""
    if kind == "sqlite":
        f = pathlib.Path(source[len("sqlite:"):])
        return hashlib.sha256(f.read_bytes() + repr(sorted(os.listdir(f.parent))).encode()).hexdigest()
    dbname = dict(kv.split("=", 1) for kv in source[len("postgresql:"):].split())["dbname"]
    rows = pg.execute(dbname, 'SELECT md5(string_agg("Id"::text || coalesce("Key", \'-\') || '
                      '"CreationDate"::text || coalesce("LastAccessDate"::text, \'-\'), \',\' '
                      'ORDER BY "Id")) FROM "UserKeys"')
    rows += pg.execute(dbname, 'SELECT md5(string_agg("Id"::text || coalesce("SymmetricKey", \'-\'), '
                       '\',\' ORDER BY "Id")) FROM "ApplicationDatas"')
    return repr(rows)


def test_json_file_and_human_output(keyholdd, acme_issuer, pfx, tmp_path):
    path, priv, pw = pfx
    db = kcdb.KcDatabase(records(12), [os.urandom(32)], priv)
    source = src("json", db, tmp_path)
    before = pathlib.Path(source[5:]).read_bytes()
    p = run_import(keyholdd, "--database", source, "--pfx", path, "--pfx-password-file", pw,
                   json_out=False)
    assert p.returncode == 0, p
    assert "imported 12, already present 0, conflicts 0, failed 0" in p.stdout, p
    assert "verified: 12 keys" in p.stdout, p
    assert "\r" not in p.stderr, p            # no progress bar without a terminal
    assert_served(keyholdd, acme_issuer, db.expected)
    assert pathlib.Path(source[5:]).read_bytes() == before     # never rewritten


def test_spec_example_vector_with_an_operator_unwrapped_data_key(keyholdd, acme_issuer, tmp_path):
    """The spec's example (data key 00..1f, stored Key plk+bg...) imports as client key 40..5f;
    the data key comes from a file the operator made (raw bytes, then base64)."""
    guid = str(uuid.uuid4())
    doc = {"symmetricKey": base64.b64encode(os.urandom(256)).decode(),   # no RSA key needed
           "userKey": [{"id": guid.upper(), "key": kcdb.EXAMPLE_STORED,
                        "creationDate": "2024-01-02T03:04:05Z", "revisionDate": None,
                        "lastAccessDate": None}]}
    f = tmp_path / "data.json"
    f.write_text(json.dumps(doc))
    for b64 in (False, True):
        dkf = kcdb.make_data_key_file(tmp_path / f"dk-{b64}", kcdb.EXAMPLE_DATA_KEY, base64=b64)
        s = summary(run_import(keyholdd, "--database", f"json:{f}", "--data-key-file", dkf), 0)
        assert (s["imported"], s["skipped"]) == ((0, 1) if b64 else (1, 0)), s
    assert key_of(keyholdd, acme_issuer, guid) == kcdb.EXAMPLE_KEY


def test_legacy_pfx_and_a_sqlite_source_left_untouched(keyholdd, acme_issuer, tmp_path):
    """A PFX from OpenSSL 1.1 days (RC2/3DES, SHA-1 MAC), and a source in WAL mode: the
    importer leaves no -wal/-shm/-journal file and changes no byte or time of it."""
    path, priv = kcdb.make_rsa_pfx(tmp_path, "old-secret", legacy=True)
    pw = tmp_path / "pw"
    pw.write_text("old-secret")
    db = kcdb.KcDatabase(records(20), [os.urandom(32)], priv)
    d = tmp_path / "kc"
    d.mkdir()
    f = db.write_sqlite(d / "keyconnector.db", wal=True)
    listing = sorted(os.listdir(d))
    digest, mtime = hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns
    s = summary(run_import(keyholdd, "--database", f"sqlite:{f}", "--pfx", path,
                           "--pfx-password-file", pw), 0)
    assert s["imported"] == 20 and s["verified"] == 20, s
    assert sorted(os.listdir(d)) == listing
    assert hashlib.sha256(f.read_bytes()).hexdigest() == digest and f.stat().st_mtime_ns == mtime
    assert_served(keyholdd, acme_issuer, db.expected)


def test_pkcs11_unwrap_on_softhsm(keyholdd, acme_issuer, softhsm, tmp_path):
    """Key Connector's pkcs11 provider: the RSA key lives in the HSM; the importer unwraps the
    data key there (CKM_RSA_PKCS_OAEP with SHA-1)."""
    priv = kcdb.rsa_key()
    softhsm.init_token("kc-token", pin="5678")
    softhsm.import_rsa_key(priv, "kc-key", "01")
    db = kcdb.KcDatabase(records(8), [os.urandom(32)], priv)
    source = src("sqlite", db, tmp_path)
    pin = tmp_path / "pin"
    pin.write_text("5678\n")
    args = ["--database", source, "--pkcs11-module", softhsm.module, "--pkcs11-token",
            "kc-token", "--pkcs11-key-label", "kc-key"]
    env = {"SOFTHSM2_CONF": str(softhsm.conf)}
    s = summary(run_import(keyholdd, *args, "--pkcs11-pin-file", pin, env=env), 0)
    assert s["imported"] == 8, s
    assert_served(keyholdd, acme_issuer, db.expected)
    # the PIN from the environment; a wrong one is refused by the token
    s = summary(run_import(keyholdd, *args, env={**env, "KEYHOLD_PKCS11_PIN": "5678"}), 0)
    assert s["skipped"] == 8, s
    refused(run_import(keyholdd, *args, env={**env, "KEYHOLD_PKCS11_PIN": "0000"}), "pkcs11_pin")


# ------------------------------------------------------------------ nothing written

def test_dry_run_decrypts_compares_and_writes_nothing(keyholdd, acme_issuer, pfx, tmp_path):
    path, priv, pw = pfx
    recs = records(10)
    db = kcdb.KcDatabase(recs, [os.urandom(32)], priv, corrupt=[recs[9][0]])
    store(keyholdd, acme_issuer, recs[0][0], recs[0][1])          # would be skipped
    store(keyholdd, acme_issuer, recs[1][0], os.urandom(32))      # would be a conflict
    source = src("sqlite", db, tmp_path)
    audit_before = audit_count(keyholdd, "member.import")
    s = summary(run_import(keyholdd, "--database", source, "--pfx", path,
                           "--pfx-password-file", pw, "--dry-run"), 1)
    assert s["dry_run"] is True, s
    assert (s["imported"], s["skipped"], s["conflicts"], s["failed"]) == (7, 1, 1, 1), s
    assert_none_served(keyholdd, acme_issuer, [g for g, _ in recs[2:]])
    assert audit_count(keyholdd, "member.import") == audit_before


def audit_count(k, action: str) -> int:
    r = k.operator.get(f"/t/{TENANT}/admin/audit?limit=10000")
    assert r.status == 200, r
    return sum(1 for rec in r.json()["records"] if rec["action"] == action)


@pytest.mark.parametrize("case", ["wrong-password", "no-password", "other-key", "not-a-pfx",
                                  "unknown-layout", "truncated-json", "missing-file",
                                  "no-data-key", "bad-scheme"])
def test_refusals_name_the_cause_and_write_nothing(case, keyholdd, acme_issuer, pfx, tmp_path):
    path, priv, pw = pfx
    db = kcdb.KcDatabase(records(3), [os.urandom(32)], priv)
    source = src("sqlite", db, tmp_path)
    args = ["--database", source, "--pfx", path, "--pfx-password-file", pw]
    bad = tmp_path / "bad"
    if case == "wrong-password":
        bad.write_text("not-the-password\n")
        args[-1], code = bad, "pfx_password"
    elif case == "no-password":
        args, code = args[:4], "pfx_password"
    elif case == "other-key":
        other, _ = kcdb.make_rsa_pfx(tmp_path / "o", "kc-pfx-password")
        args[3], code = other, "data_key_unwrap"
    elif case == "not-a-pfx":
        bad.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
        args[3], code = bad, "pfx_invalid"
    elif case == "unknown-layout":
        import sqlite3
        c = sqlite3.connect(bad)
        c.executescript('CREATE TABLE "UserKey" ("Id" TEXT, "Key" TEXT);'
                        'CREATE TABLE "ApplicationDatas" ("Id" INTEGER, "SymmetricKey" TEXT);')
        c.close()
        args[1], code = f"sqlite:{bad}", "kc_layout"
    elif case == "truncated-json":
        text = json.dumps(db.json_document())
        bad.write_text(text[: len(text) // 2])
        args[1], code = f"json:{bad}", "kc_json"
    elif case == "missing-file":
        args[1], code = f"sqlite:{tmp_path / 'nope.db'}", "kc_source_open"
    elif case == "no-data-key":
        nodk = kcdb.KcDatabase(records(2), [os.urandom(32)], priv, data_key_rows=[])
        args[1], code = "json:" + str(nodk.write_json(bad)), "kc_no_data_key"
    else:
        args[1], code = f"mysql:{source}", "kc_source_spec"
    obj = refused(run_import(keyholdd, *args), code)
    assert "kc-pfx-password" not in json.dumps(obj)
    assert_none_served(keyholdd, acme_issuer, db.expected)


def test_usage_errors(keyholdd, pfx, tmp_path):
    path, _, pw = pfx
    for args in ([], ["--database", "json:x"], ["--database", "json:x", "--pfx", path,
                                                 "--data-key-file", pw],
                 ["--database", "json:x", "--data-key-file", pw, "--pfx-password-file", pw],
                 ["--database", "json:x", "--pkcs11-module", "/m.so"],
                 ["--database", "json:x", "--pfx", path, "--dry-run", "--overwrite"]):
        p = run_import(keyholdd, *args, json_out=False)
        assert p.returncode == 2, (args, p)
        assert "keyhold import bitwarden-kc" in p.stderr or "--help" in p.stderr, p
    p = subprocess.run([cli_path(), "import", "bitwarden-kc", "--help"], capture_output=True,
                       text=True, env=cli_env(), timeout=CLI_TIMEOUT_S)
    assert p.returncode == 0 and "--pfx-password-file" in p.stdout and "--dry-run" in p.stdout, p


# ------------------------------------------------------------------ interrupted, resumed

def test_killed_halfway_then_run_again_finishes_without_duplicates(keyholdd, acme_issuer, pfx,
                                                                   tmp_path):
    path, priv, pw = pfx
    n = 20000
    db = kcdb.KcDatabase(records(n), [os.urandom(32)], priv)
    source = src("sqlite", db, tmp_path)
    args = ["--database", source, "--pfx", path, "--pfx-password-file", pw]
    p = subprocess.Popen(import_cmd(keyholdd, *args), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=cli_env())
    guids = sorted(db.expected)               # the order the importer reads them (ORDER BY Id)
    try:
        # kill -9 once a few batches are in, long before the last one
        harness.poll_until(lambda: key_of(keyholdd, acme_issuer, guids[600]) is not None
                           or p.poll() is not None, timeout=120, interval=0.005)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert key_of(keyholdd, acme_issuer, guids[0]) is not None
    assert key_of(keyholdd, acme_issuer, guids[-1]) is None, "the kill must land halfway"
    s = summary(run_import(keyholdd, *args), 0)
    assert s["imported"] + s["skipped"] == n and s["skipped"] >= 600, s
    assert s["imported"] > 0 and s["conflicts"] == 0 and s["verified"] == n, s
    assert_served(keyholdd, acme_issuer, {g: db.expected[g] for g in guids[::97]})


# ------------------------------------------------------------------ the route itself

def test_route_refuses_members_and_bad_bodies(make_keyholdd, issuers, acme_issuer):
    k = make_keyholdd({"default": {"issuer": issuers["default"]},
                       "acme": {"issuer": acme_issuer, "admins": ADMINS}})
    g, key = str(uuid.uuid4()), new_key()
    body = {"keys": [{"user": g, "key": key}]}
    route = f"/t/{TENANT}/admin/import/user-keys"
    assert_error(k.client.post(route, json_body=body), 401, "missing_token")
    assert_error(k.client.post(route, json_body=body, token=acme_issuer.token(g)), 403, "not_admin")
    admin = acme_issuer.token("admin@example.test", role="keyhold-admin")
    for bad in ({}, {"keys": []}, {"keys": [{"user": "x", "key": key}]},
                {"keys": [{"user": g, "key": key}, {"user": g.upper(), "key": key}]},
                {"keys": [{"user": g, "key": key}], "force": True},
                {"keys": [{"user": str(uuid.uuid4()), "key": key}] * 257}):
        assert_error(k.client.post(route, json_body=bad, token=admin), 400, "invalid_import_body")
    assert_error(k.client.post(route, json_body={"keys": [{"user": g, "key": "AAAA"}]}, token=admin),
                 400, "invalid_key")
    r = k.client.post(route, body=json.dumps(body), token=admin)
    assert_error(r, 415, "unsupported_media_type")
    assert k.client.get(f"/t/{TENANT}/user-keys", token=acme_issuer.token(g)).status == 404
    # an admin over HTTPS may import, and verifying never answers with a key
    r = k.client.post(route, json_body=body, token=admin)
    assert r.status == 200 and r.json()["results"] == [{"user": g, "status": "imported"}], r
    r = k.client.post(route, json_body={**body, "verify": True}, token=admin)
    assert r.status == 200 and r.json()["results"] == [{"user": g, "status": "match"}], r
    assert key not in r.body.decode()
    assert k.client.get(f"/t/{TENANT}/user-keys", token=acme_issuer.token(g)).json()["key"] == key


def test_cli_over_https_with_an_admin_token(make_keyholdd, issuers, acme_issuer, pki, pfx,
                                            tmp_path):
    """Not only the operator: an admin of the tenant imports from another host (--url)."""
    k = make_keyholdd({"default": {"issuer": issuers["default"]},
                       "acme": {"issuer": acme_issuer, "admins": ADMINS}})
    path, priv, pw = pfx
    db = kcdb.KcDatabase(records(5), [os.urandom(32)], priv)
    source = src("json", db, tmp_path)
    tok = tmp_path / "admin.jwt"
    tok.write_text(acme_issuer.token("admin@example.test", role="keyhold-admin"))
    tok.chmod(0o600)
    cmd = [cli_path(), "--url", f"https://127.0.0.1:{k.port}", "--cacert", str(pki.ca_pem),
           "--token-file", str(tok), "--tenant", TENANT, "--json", "import", "bitwarden-kc",
           "--database", source, "--pfx", str(path), "--pfx-password-file", str(pw)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=CLI_TIMEOUT_S)
    s = summary(p, 0)
    assert s["imported"] == 5 and s["verified"] == 5, s
    assert_served(k, acme_issuer, db.expected)
    # a member's token is refused before anything is written
    tok.write_text(acme_issuer.token(str(uuid.uuid4())))
    other = kcdb.KcDatabase(records(2), [os.urandom(32)], priv)
    cmd[cmd.index("--database") + 1] = src("sqlite", other, tmp_path)
    p = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=CLI_TIMEOUT_S)
    refused(p, "not_admin")
    assert_none_served(k, acme_issuer, other.expected)


def test_progress_bar_on_a_terminal(keyholdd, pfx, tmp_path):
    """stderr a terminal: the import and verification passes draw a bar that ends at 100 %."""
    import pty
    path, priv, pw = pfx
    db = kcdb.KcDatabase(records(600), [os.urandom(32)], priv)
    source = src("sqlite", db, tmp_path)
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(import_cmd(keyholdd, "--database", source, "--pfx", path,
                                        "--pfx-password-file", pw, json_out=False),
                             stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                             env=cli_env())
        os.close(slave)
        slave = -1
        err = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:                   # EIO: the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        out, _ = p.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert p.returncode == 0, (out, err)
    text = err.decode(errors="replace")
    assert "\rimporting [" in text and "\rverifying [" in text, text
    assert "100%  600/600" in text, text
    assert b"imported 600" in out
