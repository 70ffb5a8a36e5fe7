"""Tests of the Key Connector test builders themselves (kcdb.py, pgserver.py, softhsm.py): a
database they write must be what Key Connector writes, read back here with plain Python
(json, sqlite3, psycopg2) and decrypted to the inputs; the servers and token stores they
start must come and go without leaving anything behind. No keyholdd is involved."""
import base64
import json
import os
import pathlib
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid

import psycopg2
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization

import harness
import kcdb
import pgserver
from pgserver import PgServer, PgServerError
from softhsm import SoftHsm, SoftHsmError

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module", autouse=True)
def keyholdd_survives_module():
    """conftest.py's check that keyholdd survives each module: nothing here starts one."""
    yield


@pytest.fixture(scope="module")
def rsa_priv():
    return kcdb.rsa_key()


def _guids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def _story(rsa_priv):
    """Two data keys (the creation race), 6 records: 4 under data key 0 (one corrupt), 2 under
    data key 1; one 16-byte key; extra rows with a NULL Key and a bad Key."""
    dks = [os.urandom(32), os.urandom(32)]
    g = _guids(6)
    records = [(g[0], os.urandom(32)), (g[1], os.urandom(32)), (g[2], os.urandom(16)),
               (g[3], os.urandom(32)), (g[4].upper(), os.urandom(32)), (g[5], os.urandom(32))]
    extra_g = _guids(2)
    db = kcdb.KcDatabase(records, dks, rsa_priv, assign={g[4]: 1, g[5]: 1}, corrupt=[g[3]],
                         extra_rows=[(extra_g[0], None), (extra_g[1], "not base64!")])
    return db, dks, records, g, extra_g


def _check_opens(db, dks, records, g, rows: dict[str, str | None], wrapped_values: list[str],
                 rsa_priv, json_only_one_key: bool = False):
    """rows {guid lower: stored Key}; every record opens under its data key to its input."""
    unwrapped = [kcdb.unwrap_data_key(rsa_priv, base64.b64decode(w)) for w in wrapped_values]
    assert unwrapped == (dks[:1] if json_only_one_key else dks)
    inputs = {str(uuid.UUID(i)): k for i, k in records}
    for guid, key in inputs.items():
        stored = rows[guid]
        assert len(base64.b64decode(stored)) == len(key) + 28
        i = db.data_key_of[guid]
        if guid == g[3]:
            with pytest.raises(InvalidTag):
                kcdb.open_user_key(unwrapped[0], stored)
            continue
        if i >= len(unwrapped):
            for dk in unwrapped:     # JSON: the other data key is lost, so is this record
                with pytest.raises(InvalidTag):
                    kcdb.open_user_key(dk, stored)
            continue
        assert kcdb.open_user_key(unwrapped[i], stored) == key
        for j, dk in enumerate(unwrapped):
            if j != i:
                with pytest.raises(InvalidTag):
                    kcdb.open_user_key(dk, stored)
    assert db.expected == {k: v for k, v in inputs.items() if k != g[3]}
    assert db.corrupted == {g[3]}


# ------------------------------------------------------------------------------ crypto


def test_the_spec_example_vector_reproduces_exactly():
    assert kcdb.seal_user_key(bytes(range(32)), bytes(range(0x40, 0x60)),
                              bytes(range(0xA0, 0xAC))) == \
        "plk+bgGORPgqLM2YSzeOkSD9C0PG4hQ7xFd83SP2K14zwby0+3QQrdPoXhVroI5UoKGio6Slpqeoqaqr"
    blob = base64.b64decode(kcdb.EXAMPLE_STORED)
    assert len(blob) == 60 and blob[-12:] == bytes(range(0xA0, 0xAC))
    assert kcdb.open_user_key(kcdb.EXAMPLE_DATA_KEY, kcdb.EXAMPLE_STORED) == kcdb.EXAMPLE_KEY
    assert base64.b64encode(kcdb.EXAMPLE_KEY).decode() == kcdb.EXAMPLE_KEY_B64


def test_sealing_uses_fresh_nonces_and_corruption_breaks_the_tag():
    dk, key = os.urandom(32), os.urandom(32)
    a, b = kcdb.seal_user_key(dk, key), kcdb.seal_user_key(dk, key)
    assert a != b and len(a) == 80
    assert kcdb.open_user_key(dk, a) == kcdb.open_user_key(dk, b) == key
    bad = kcdb.corrupt_stored(a)
    ra, rb = base64.b64decode(a), base64.b64decode(bad)
    assert [i for i in range(60) if ra[i] != rb[i]] == [32]     # first tag byte only
    with pytest.raises(InvalidTag):
        kcdb.open_user_key(dk, bad)
    with pytest.raises(InvalidTag):
        kcdb.open_user_key(os.urandom(32), a)


def test_data_keys_are_wrapped_with_oaep_sha1(rsa_priv):
    dk = os.urandom(32)
    w = kcdb.wrap_data_key(rsa_priv.public_key(), dk)
    assert len(w) == 256
    assert kcdb.unwrap_data_key(rsa_priv, w) == dk
    with pytest.raises(ValueError):
        kcdb.unwrap_data_key(rsa_priv, w, md="sha256")
    w256 = kcdb.wrap_data_key(rsa_priv, dk, md="sha256")
    assert kcdb.unwrap_data_key(rsa_priv, w256, md="sha256") == dk


# ------------------------------------------------------------------------------ databases


def test_json_database_reads_back_and_decrypts(tmp_path, rsa_priv):
    db, dks, records, g, extra_g = _story(rsa_priv)
    p = db.write_json(tmp_path / "data.json")
    doc = json.loads(p.read_text())
    assert set(doc) == {"symmetricKey", "userKey"}
    entries = doc["userKey"]
    assert [set(e) for e in entries] == \
        [{"id", "key", "creationDate", "revisionDate", "lastAccessDate"}] * 8
    assert [e["id"] for e in entries] == [str(uuid.UUID(i)) for i, _ in records] + extra_g
    assert entries[6]["key"] is None and entries[7]["key"] == "not base64!"
    assert entries[0]["creationDate"].endswith("Z") and entries[0]["revisionDate"] is None
    rows = {e["id"]: e["key"] for e in entries[:6]}
    _check_opens(db, dks, records, g, rows, [doc["symmetricKey"]], rsa_priv,
                 json_only_one_key=True)
    # The other data key of the race, as the last writer would have left it:
    doc1 = json.loads(db.write_json(tmp_path / "data1.json", data_key_index=1).read_text())
    assert kcdb.unwrap_data_key(rsa_priv, base64.b64decode(doc1["symmetricKey"])) == dks[1]
    assert [e["key"] for e in doc1["userKey"]] == [e["key"] for e in entries]


def test_sqlite_database_has_the_ef_schema_and_decrypts(tmp_path, rsa_priv):
    db, dks, records, g, extra_g = _story(rsa_priv)
    p = db.write_sqlite(tmp_path / "kc.db")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["kc.db"]
    conn = sqlite3.connect(f"file:{p}?immutable=1", uri=True)
    try:
        cols = {t: [(c[1], c[2], c[3], c[5]) for c in conn.execute(f'pragma table_info("{t}")')]
                for t in ("UserKeys", "ApplicationDatas", "__EFMigrationsHistory")}
        assert cols["UserKeys"] == [("Id", "TEXT", 1, 1), ("Key", "TEXT", 0, 0),
                                    ("CreationDate", "TEXT", 1, 0), ("RevisionDate", "TEXT", 0, 0),
                                    ("LastAccessDate", "TEXT", 0, 0)]
        assert cols["ApplicationDatas"] == [("Id", "INTEGER", 1, 1), ("SymmetricKey", "TEXT", 0, 0)]
        assert [c[0] for c in cols["__EFMigrationsHistory"]] == ["MigrationId", "ProductVersion"]
        assert conn.execute('SELECT * FROM "__EFMigrationsHistory"').fetchall() == \
            [("20210820155938_InitialCreate", "5.0.9")]
        ad = conn.execute('SELECT "Id", "SymmetricKey" FROM "ApplicationDatas" '
                          'ORDER BY "Id"').fetchall()
        assert [i for i, _ in ad] == [1, 2]
        ids = [r[0] for r in conn.execute('SELECT "Id" FROM "UserKeys" ORDER BY rowid')]
        assert ids[:6] == [str(uuid.UUID(i)).upper() for i, _ in records]
        assert ids[6:] == extra_g
        rows = dict(conn.execute('SELECT lower("Id"), "Key" FROM "UserKeys"'))
        assert rows[extra_g[0]] is None and rows[extra_g[1]] == "not base64!"
        created = conn.execute('SELECT "CreationDate", "RevisionDate" FROM "UserKeys" '
                               'LIMIT 1').fetchone()
        assert created == ("2023-05-17 09:30:00.123456", None)
    finally:
        conn.close()
    _check_opens(db, dks, records, g, rows, [w for _, w in ad], rsa_priv)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["kc.db"]


def test_sqlite_in_wal_mode_leaves_no_side_files(tmp_path, rsa_priv):
    db = kcdb.KcDatabase(kcdb.random_records(50, 7), [os.urandom(32)], rsa_priv)
    p = db.write_sqlite(tmp_path / "kc.db", wal=True)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["kc.db"]
    header = p.read_bytes()[:20]
    assert header[18:20] == b"\x02\x02"        # WAL mode persists in the file header
    conn = sqlite3.connect(f"file:{p}?immutable=1", uri=True)
    try:
        assert conn.execute('SELECT count(*) FROM "UserKeys"').fetchone() == (50,)
    finally:
        conn.close()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["kc.db"]


def test_postgresql_database_has_the_ef_schema_and_decrypts(pg, rsa_priv):
    db, dks, records, g, extra_g = _story(rsa_priv)
    conninfo = db.write_postgresql(pg, "kc_fixture_story")
    assert conninfo == pg.conninfo("kc_fixture_story")
    # Read as the importer will: read-only, one repeatable-read snapshot.
    conn = psycopg2.connect(conninfo, options="-c default_transaction_read_only=on")
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            cur.execute("SELECT table_name, column_name, data_type, is_nullable "
                        "FROM information_schema.columns WHERE table_schema = 'public' "
                        "ORDER BY table_name, ordinal_position")
            cols = cur.fetchall()
            assert cols == [
                ("ApplicationDatas", "Id", "integer", "NO"),
                ("ApplicationDatas", "SymmetricKey", "text", "YES"),
                ("UserKeys", "Id", "uuid", "NO"),
                ("UserKeys", "Key", "text", "YES"),
                ("UserKeys", "CreationDate", "timestamp without time zone", "NO"),
                ("UserKeys", "RevisionDate", "timestamp without time zone", "YES"),
                ("UserKeys", "LastAccessDate", "timestamp without time zone", "YES"),
                ("__EFMigrationsHistory", "MigrationId", "character varying", "NO"),
                ("__EFMigrationsHistory", "ProductVersion", "character varying", "NO"),
            ]
            cur.execute('SELECT "MigrationId", "ProductVersion" FROM "__EFMigrationsHistory"')
            assert cur.fetchall() == [("20210820160016_InitialCreate", "5.0.9")]
            cur.execute('SELECT "SymmetricKey" FROM "ApplicationDatas" ORDER BY "Id"')
            wrapped = [r[0] for r in cur.fetchall()]
            cur.execute('SELECT "Id"::text, "Key" FROM "UserKeys" ORDER BY "Id"')
            rows = dict(cur.fetchall())
            with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
                cur.execute('DELETE FROM "UserKeys"')
        conn.rollback()
    finally:
        conn.close()
    assert len(rows) == 8
    assert rows[extra_g[0]] is None and rows[extra_g[1]] == "not base64!"
    _check_opens(db, dks, records, g, rows, wrapped, rsa_priv)
    # identity column: a new row continues after the written ones
    pg.execute("kc_fixture_story", 'INSERT INTO "ApplicationDatas" ("SymmetricKey") VALUES (NULL)')
    assert pg.execute("kc_fixture_story", 'SELECT max("Id") FROM "ApplicationDatas"') == [(3,)]


def test_postgresql_refuses_an_id_that_is_no_uuid(pg, rsa_priv):
    db = kcdb.KcDatabase([], [os.urandom(32)], rsa_priv, extra_rows=[("nope", "x")])
    with pytest.raises(ValueError, match="no GUID"):
        db.write_postgresql(pg, "kc_fixture_bad_id")
    assert not pg.has_db("kc_fixture_bad_id")


def test_data_key_rows_are_written_verbatim(tmp_path, pg):
    recs = list(kcdb.random_records(3, 1))
    none = kcdb.KcDatabase(recs, [os.urandom(32)], data_key_rows=[])
    assert "symmetricKey" not in json.loads(none.write_json(tmp_path / "a.json").read_text())
    odd = kcdb.KcDatabase(recs, [os.urandom(32)], data_key_rows=[None, "", "%%%"])
    assert json.loads(odd.write_json(tmp_path / "b.json").read_text())["symmetricKey"] is None
    conn = sqlite3.connect(odd.write_sqlite(tmp_path / "b.db"))
    try:
        got = conn.execute('SELECT "SymmetricKey" FROM "ApplicationDatas" ORDER BY "Id"')
        assert got.fetchall() == [(None,), ("",), ("%%%",)]
    finally:
        conn.close()
    none.write_postgresql(pg, "kc_fixture_no_dk")
    assert pg.execute("kc_fixture_no_dk", 'SELECT count(*) FROM "ApplicationDatas"') == [(0,)]
    assert pg.execute("kc_fixture_no_dk", 'SELECT count(*) FROM "UserKeys"') == [(3,)]
    with pytest.raises(ValueError):
        kcdb.KcDatabase(recs, [os.urandom(32)])          # nothing to wrap the data key with
    with pytest.raises(ValueError, match="no record"):
        kcdb.KcDatabase(recs, [os.urandom(32)], data_key_rows=[], corrupt=[str(uuid.uuid4())])


def test_random_records_are_deterministic_and_bulk_writers_agree(tmp_path, pg, rsa_priv):
    a, b = list(kcdb.random_records(5000, 42)), list(kcdb.random_records(5000, 42))
    assert a == b and a != list(kcdb.random_records(5000, 43))
    assert len({g for g, _ in a}) == 5000 and all(len(k) == 32 for _, k in a)
    assert all(uuid.UUID(g).version == 4 and g == g.lower() for g, _ in a)
    db = kcdb.KcDatabase(iter(a), [os.urandom(32)], rsa_priv)
    doc = json.loads(db.write_json(tmp_path / "big.json").read_text())
    conn = sqlite3.connect(db.write_sqlite(tmp_path / "big.db"))
    try:
        sq = dict(conn.execute('SELECT lower("Id"), "Key" FROM "UserKeys"'))
    finally:
        conn.close()
    db.write_postgresql(pg, "kc_fixture_bulk")
    pq = dict(pg.execute("kc_fixture_bulk", 'SELECT "Id"::text, "Key" FROM "UserKeys"'))
    js = {e["id"]: e["key"] for e in doc["userKey"]}
    assert js == sq == pq and len(js) == 5000
    dk = kcdb.unwrap_data_key(rsa_priv, base64.b64decode(doc["symmetricKey"]))
    for g, k in a[::499]:
        assert kcdb.open_user_key(dk, pq[g]) == k


# ------------------------------------------------------------------------------ files


def _pkcs12_info(pfx, password, legacy):
    env = dict(os.environ, KC_PW=password)
    return subprocess.run(["openssl", "pkcs12", "-info", "-noout", "-in", str(pfx),
                           "-passin", "env:KC_PW", *(["-legacy"] if legacy else [])],
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("legacy", [False, True], ids=["openssl3", "legacy"])
def test_pfx_opens_with_the_right_password_only(tmp_path, legacy):
    pfx, priv = kcdb.make_rsa_pfx(tmp_path, "s3cret pass", legacy=legacy)
    assert pfx == tmp_path / "bwkc.pfx" and priv.key_size == 2048
    ok = _pkcs12_info(pfx, "s3cret pass", legacy)
    assert ok.returncode == 0, ok.stderr
    info = ok.stdout + ok.stderr
    if legacy:
        assert "MAC: sha1" in info and "pbeWithSHA1And40BitRC2-CBC" in info
        assert "pbeWithSHA1And3-KeyTripleDES-CBC" in info
    else:
        assert "MAC: sha256" in info and "AES-256-CBC" in info and "RC2" not in info
    bad = _pkcs12_info(pfx, "s3cret pasS", legacy)
    assert bad.returncode != 0 and "invalid password" in bad.stdout + bad.stderr
    assert _pkcs12_info(pfx, "", legacy).returncode != 0
    # The key inside is the key returned.
    out = subprocess.run(["openssl", "pkcs12", "-in", str(pfx), "-nocerts", "-nodes",
                          "-passin", "env:KC_PW", *(["-legacy"] if legacy else [])],
                         env=dict(os.environ, KC_PW="s3cret pass"), capture_output=True,
                         timeout=60, check=True).stdout
    start = out.index(b"-----BEGIN PRIVATE KEY-----")
    inner = serialization.load_pem_private_key(out[start:], password=None)
    assert inner.private_numbers() == priv.private_numbers()
    dk = os.urandom(32)
    assert kcdb.unwrap_data_key(inner, kcdb.wrap_data_key(priv.public_key(), dk)) == dk


def test_pfx_with_an_empty_password(tmp_path):
    pfx, _ = kcdb.make_rsa_pfx(tmp_path, "", name="empty")
    assert _pkcs12_info(pfx, "", False).returncode == 0
    assert _pkcs12_info(pfx, "x", False).returncode != 0


def test_data_key_files(tmp_path):
    dk = os.urandom(32)
    raw = kcdb.make_data_key_file(tmp_path / "raw", dk)
    assert raw.read_bytes() == dk and (raw.stat().st_mode & 0o777) == 0o600
    b = kcdb.make_data_key_file(tmp_path / "b64", dk, base64=True)
    assert b.read_bytes() == base64.b64encode(dk) + b"\n"
    n = kcdb.make_data_key_file(tmp_path / "b64n", dk, base64=True, newline=False)
    assert n.read_bytes() == base64.b64encode(dk)


# ------------------------------------------------------------------------------ SoftHSM


def test_softhsm_token_holds_the_imported_key(softhsm, rsa_priv):
    assert softhsm.token_labels() == []           # a fresh store: no token yet
    assert softhsm.env["SOFTHSM2_CONF"] == str(softhsm.conf)
    assert f"directories.tokendir = {softhsm.tokendir}" in softhsm.conf.read_text()
    assert softhsm.module == "/usr/lib/softhsm/libsofthsm2.so" and os.path.exists(softhsm.module)
    slot = softhsm.init_token("kc-token", so_pin="1234", pin="5678")
    assert slot >= 0
    softhsm.import_rsa_key(rsa_priv, "kc-key", "01")
    slots = softhsm.show_slots()
    assert "Label:            kc-token" in slots and f"Slot {slot}" in slots
    assert softhsm.token_labels() == ["kc-token"]
    # The key pair is in the token: two objects beside token.object (the public one carries
    # the label in clear), and the id is taken.
    objects = [o for o in softhsm.tokendir.rglob("*.object") if o.name != "token.object"]
    assert len(objects) == 2, objects
    assert sum(b"kc-key" in o.read_bytes() for o in objects) == 1
    with pytest.raises(SoftHsmError, match="already assigned"):
        softhsm.import_rsa_key(kcdb.rsa_key(), "other", "01")
    with pytest.raises(SoftHsmError) as e:
        softhsm.import_rsa_key(rsa_priv, "kc-key2", "02", pin="0000")
    assert "0000" not in str(e.value)               # PINs never appear in errors
    assert not list(softhsm.dir.glob("*.pem"))       # the PKCS#8 file is gone


def test_softhsm_stores_are_separate(tmp_path):
    with SoftHsm(tmp_path) as a, SoftHsm(tmp_path) as b:
        a.init_token("a")
        b.init_token("b")
        assert a.token_labels() == ["a"] and b.token_labels() == ["b"]
        d = a.dir
    assert not d.exists() and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ PgServer


def test_pg_server_needs_the_password_and_runs_unprivileged(pg):
    parts = dict(kv.split("=", 1) for kv in pg.conninfo("postgres").split())
    assert parts.keys() == {"host", "port", "dbname", "user", "password"}
    assert parts["host"] == "127.0.0.1" and parts["user"] == "keyhold_test"
    assert int(parts["port"]) == pg.port
    with psycopg2.connect(pg.uri("postgres")) as c, c.cursor() as cur:
        cur.execute("SELECT current_user, inet_server_addr()::text, current_setting('fsync')")
        assert cur.fetchone() == ("keyhold_test", "127.0.0.1/32", "off")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(pg.conninfo("postgres").replace(pg.password, "wrong"))
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(f"host=127.0.0.1 port={pg.port} dbname=postgres user=keyhold_test")
    # The Unix socket asks for the password too.
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(f"host={pg.socket_dir} port={pg.port} dbname=postgres "
                         f"user=keyhold_test password=wrong")
    pid = pg.postmaster_pid()
    uid = int(pathlib.Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
    assert uid != 0 and uid == (pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0
                                else os.geteuid())
    assert pg.create_db("kc_fixture_created") == \
        f"host=127.0.0.1 port={pg.port} dbname=kc_fixture_created user=keyhold_test " \
        f"password={pg.password}"
    assert pg.has_db("kc_fixture_created")
    assert pg.execute("kc_fixture_created", "SELECT %s::int + 1", (41,)) == [(42,)]
    assert pg.execute("kc_fixture_created", "CREATE TABLE t (a int)") == []
    pg.drop_db("kc_fixture_created")
    assert not pg.has_db("kc_fixture_created")


def _tree(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        todo.extend(pgserver._children(p))
    return out


def test_pg_server_stop_leaves_no_process_and_no_directory():
    s = PgServer().start()
    try:
        procs = _tree(s.proc.pid)
        assert len(procs) >= 4          # (runuser,) postmaster, checkpointer, writers...
        d = s.dir
        assert (d / "data" / "PG_VERSION").exists() and not (d / "pwfile").exists()
    finally:
        s.stop()
    assert not any(pgserver._alive(p) for p in procs)
    assert not d.exists()
    s.stop()                            # idempotent


def test_pg_server_that_cannot_start_fails_fast_with_its_log():
    s = PgServer(settings={"shared_buffers": "lots"}, start_timeout=60)
    t = time.monotonic()
    with pytest.raises(PgServerError) as e:
        s.start()
    assert time.monotonic() - t < 30
    assert "shared_buffers" in str(e.value) and "server log" in str(e.value)
    assert s.proc is None and s.dir is None


_CHILD = """
import os, sys, time
sys.path.insert(0, {here!r})
from pgserver import PgServer
s = PgServer().start()
print(s.postmaster_pid(), s.dir, flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)          # no stop(): the atexit hook must do it
time.sleep(120)          # killed with SIGKILL by the test
"""


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_pg_server_goes_away_with_its_owner(tmp_path, how):
    """An interpreter that ends without stop() (atexit) or is killed (PR_SET_PDEATHSIG) takes
    its server with it."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_CHILD.format(here=str(HERE))))
    p = subprocess.Popen([sys.executable, str(script), how], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        assert len(line) == 2, line
        pid, d = int(line[0]), pathlib.Path(line[1])
        assert pgserver._alive(pid)
        if how == "sigkill":
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    end = time.monotonic() + 20
    while pgserver._alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    assert not pgserver._alive(pid)
    if how == "exit":
        assert not d.exists()
    else:
        import shutil
        shutil.rmtree(d, ignore_errors=True)   # a killed owner cannot remove it


def test_pg_server_runs_for_a_user_that_is_not_root(tmp_path):
    """As root this runs the server from a process of user `nobody` (postgres then runs
    directly, no runuser); as another user the other tests already do."""
    if os.geteuid() != 0:
        with PgServer() as s:
            assert s.execute("postgres", "SELECT 1") == [(1,)]
        return
    os.chmod(tmp_path, 0o777)
    src = harness.public_copy(HERE / "pgserver.py")      # HERE may be root's only (CI)
    code = (f"import sys, os; sys.path.insert(0, {str(src)!r}); from pgserver import PgServer\n"
            "with PgServer() as s:\n"
            "    pid = s.postmaster_pid(); assert pid == s.proc.pid\n"
            "    print(s.execute('postgres', 'SELECT current_user')[0][0], os.geteuid(),\n"
            "          open(f'/proc/{pid}/status').read().split('Uid:')[1].split()[0])\n")
    try:
        r = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path,
                           env=dict(os.environ, TMPDIR=str(tmp_path), HOME=str(tmp_path)))
    finally:
        shutil.rmtree(src, ignore_errors=True)
    assert r.returncode == 0, r.stderr
    nobody = str(pwd.getpwnam("nobody").pw_uid)
    assert r.stdout.split() == ["keyhold_test", nobody, nobody]
    assert list(tmp_path.iterdir()) == []
