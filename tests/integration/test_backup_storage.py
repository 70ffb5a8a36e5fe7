"""Backups across storage backends (issue 16, docs/backup.md "PostgreSQL"), with real
keyholdd processes on a PostgreSQL server of the tests' own (the session's `pg` fixture,
whatever KEYHOLD_TEST_STORAGE says) and on SQLite:

1. a backup of a server on PostgreSQL verifies and `backup restore --into-storage` loads
   it into an empty PostgreSQL database, on which a fresh keyholdd serves every member's
   key; a restore killed with SIGKILL in the middle of the load (held at a lock the test
   takes) leaves the database without a row, and running it again works; one killed after
   its commit, just before the rename that puts DIR/keystore in place (strace's fault
   injection), leaves the database marked `restore.pending`: keyholdd refuses to start on
   it, another backup file is refused, and running the same command again finishes it
   ("resumed") and the server serves; so does one whose DIR was filled during the load;
2. a target database that holds keyhold data, or that a keyholdd serves, is refused
   (exit 1, nothing written: neither the database nor DIR);
3. a PostgreSQL backup restores to SQLite (--data alone) and an SQLite backup into
   PostgreSQL, both served;
4. the scratch snapshot of a backup on PostgreSQL goes to $TMPDIR and does not stay;
5. a backup through one replica while another writes is one consistent snapshot."""
import json
import os
import shutil
import signal
import threading
import subprocess
import uuid

import pytest

import harness
from harness import Keyholdd, poll_until
from test_backup import fill, get_key, put_key, tenants_of
from test_cli import cli_binary, cli_env, json_error, run_cli
from test_storage_startup import start_fails

pytestmark = [pytest.mark.file_keystore, pytest.mark.default_backends]



class Store:
    """A storage for a Keyholdd: an SQLite file (the default) or a new PostgreSQL database."""

    def __init__(self, pg, tmp_path, kind):
        self.kind, self.pg = kind, pg
        self.db = None
        if kind == "postgresql":
            self.db = "kh_bk_" + uuid.uuid4().hex[:12]
            pg.create_db(self.db)
            pw = tmp_path / f"{self.db}.password"
            pw.write_text(pg.password + "\n")
            pw.chmod(0o600)
            self.lines = ["driver = postgresql",
                          f"url = postgresql://{pg.user}@{pg.host}:{pg.port}/{self.db}",
                          f"password_file = {pw}"]
        else:
            self.lines = None   # set per Keyholdd: its own data folder

    def server(self, workdir, pki, issuers, **kw) -> Keyholdd:
        lines = self.lines or ["driver = sqlite", f"path = {workdir / 'data' / 'keyhold.db'}"]
        return Keyholdd(workdir, pki, tenants_of(issuers), storage_lines=lines, **kw)

    def rows(self, table) -> int:
        return self.pg.execute(self.db, f"SELECT COUNT(*) FROM {table}")[0][0]


def backup_of(k, path):
    p = run_cli("backup", "create", path, "--socket", k.admin_socket, "--json")
    assert p.returncode == 0, p
    p = run_cli("backup", "verify", path, "--json", *k.unseal_args())
    assert p.returncode == 0, p
    return p


def prepare_target(k_src, workdir):
    """workdir ready for a restored Keyholdd: the source's master key."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(k_src.master_key, workdir / "master.key")
    os.chmod(workdir / "master.key", 0o600)


def pg_target(pg, pki, issuers, tmp_path, k_src):
    """A new empty PostgreSQL database and a Keyholdd (not started) on it with k_src's
    master key, in tmp_path/restored."""
    store = Store(pg, tmp_path, "postgresql")
    work = tmp_path / "restored"
    prepare_target(k_src, work)
    return store, store.server(work, pki, issuers)


def restore_cmd(path, target: Keyholdd, *extra):
    """backup restore into target's data folder, --into-storage with target's configuration
    (its [storage] and master key)."""
    if target.data.exists():            # Keyholdd() made it; restore wants it absent or empty
        shutil.rmtree(target.data)
    return ["backup", "restore", str(path), "--data", str(target.data), "--json",
            "--into-storage", "--config", str(target.config_path), *extra]


def serves_all(k, issuers, keys):
    for guid, (tenant, key) in keys.items():
        assert get_key(k, issuers[tenant], guid, tenant) == key, guid


def serves_all_started(k, issuers, keys):
    """Starts k, checks it serves every key, stops it."""
    k.start()
    try:
        serves_all(k, issuers, keys)
    finally:
        k.stop()


@pytest.fixture
def pg_source(pg, pki, issuers, tmp_path):
    """A keyholdd on PostgreSQL with N_KEYS keys, its backup, and the keys."""
    store = Store(pg, tmp_path, "postgresql")
    k = store.server(tmp_path / "src", pki, issuers, env={"TMPDIR": str(tmp_path / "src")})
    k.start()
    try:
        keys = fill(k, issuers, 40)
        path = tmp_path / "pg.khb"
        backup_of(k, path)
        # the scratch snapshot went to $TMPDIR and is gone
        assert [p.name for p in (tmp_path / "src").iterdir()
                if p.name.startswith(".keyhold-backup")] == []
        yield k, path, keys, store
    finally:
        k.stop()


def test_postgresql_backup_restores_into_an_empty_postgresql_database_and_serves(
        pg, pki, issuers, tmp_path, pg_source):
    k, path, keys, src_store = pg_source
    target_store, r = pg_target(pg, pki, issuers, tmp_path, k)
    p = run_cli(*restore_cmd(path, r))
    assert p.returncode == 0, p
    out = json.loads(p.stdout)
    assert out["records"] >= len(keys) and out["tenants"] == 2 and out["storage"] == "postgresql"
    assert not (r.data / "keyhold.db").exists()           # the database went into PostgreSQL
    assert (r.data / "keystore" / "keystore.meta").is_file()
    assert target_store.rows("records") == out["records"]
    # the same rows as the source's database; of the audit chains, every block the source
    # had then (it went on appending: the backup's own record)
    for table, cols in (("tenant_keys", "tenant, version, state, wrapped_dek, signature"),
                        ("records", "tenant, kind, owner, key_version, blob"),
                        ("audit_blocks", "chain, first_seq, last_seq, head_hash, data")):
        q = f"SELECT {cols} FROM {table} ORDER BY 1, 2, 3"
        got, want = target_store.pg.execute(target_store.db, q), pg.execute(src_store.db, q)
        assert got and (got == want if table != "audit_blocks" else set(got) <= set(want)), table
    r.start()
    try:
        serves_all(r, issuers, keys)
        # and it writes on: a new member's key
        guid, key = str(uuid.uuid4()), harness.new_key()
        assert put_key(r, issuers["default"], guid, key) == 200
        assert get_key(r, issuers["default"], guid) == key
        # a target that now holds keyhold data is refused, and a running keyholdd too
        again = tmp_path / "again"
        p = run_cli("backup", "restore", str(path), "--data", str(again), "--json",
                    "--into-storage", "--config", str(r.config_path))
        json_error(p, "server_running")
        assert not again.exists()
    finally:
        r.stop()
    n = target_store.rows("records")
    p = run_cli("backup", "restore", str(path), "--data", str(again), "--json",
                "--into-storage", "--config", str(r.config_path))
    obj = json_error(p, "not_empty")
    assert "tenant_keys" in obj["message"] or "records" in obj["message"], obj
    assert not again.exists()
    assert target_store.rows("records") == n
    assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".again")) == []


def test_restore_killed_during_the_load_leaves_the_database_empty(
        pg, pki, issuers, tmp_path, pg_source):
    k, path, keys, _ = pg_source
    target_store, r = pg_target(pg, pki, issuers, tmp_path, k)
    # a refused restore (another master key) makes the schema and writes no row
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    json_error(run_cli(*restore_cmd(path, r, "--master-key-file", other)), "wrong_secret")
    assert target_store.rows("tenant_keys") == 0 and not r.data.exists()

    # hold key_epoch, which the load writes after copying the records (the trigger of
    # meta and tenant_keys): the restore stops inside its transaction
    lock = pg.connect(target_store.db)
    try:
        with lock.cursor() as cur:
            cur.execute("LOCK TABLE key_epoch IN EXCLUSIVE MODE")
        cli = subprocess.Popen([str(harness.build_dir() / "src" / "cli" / "keyhold"),
                                *map(str, restore_cmd(path, r))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def waiting():
            rows = pg.execute(target_store.db,
                              "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                              "WHERE c.relname = 'key_epoch' AND NOT l.granted")
            assert cli.poll() is None, cli.communicate()
            return rows[0][0] if rows else None

        backend = poll_until(waiting, timeout=60)
        # it waits in the COPY of a table after records (its first): the records are in,
        # uncommitted
        stats = pg.execute(target_store.db, "SELECT query, xact_start IS NOT NULL FROM "
                           f"pg_stat_activity WHERE pid = {backend}")
        assert stats and stats[0][1], stats
        assert stats[0][0].startswith(("COPY meta", "COPY tenant_keys")), stats
        cli.send_signal(signal.SIGKILL)
        cli.communicate()
    finally:
        lock.rollback()
        lock.close()
    # the server rolls the transaction back once it finds its client gone
    poll_until(lambda: not pg.execute(target_store.db, "SELECT 1 FROM pg_stat_activity "
                                      f"WHERE pid = {backend}"), timeout=60)
    for table in ("tenant_keys", "records", "audit_blocks", "meta"):
        assert target_store.rows(table) == 0, table
    assert not r.data.exists()
    leftovers = [x for x in r.workdir.iterdir() if x.name.startswith(".data.restore-")]
    for x in leftovers:                    # what docs/backup.md says to delete
        shutil.rmtree(x)
    # run again: it works, and the server serves
    p = run_cli(*restore_cmd(path, r))
    assert p.returncode == 0, p
    serves_all_started(r, issuers, keys)


def pending_mark(store):
    return store.pg.execute(store.db, "SELECT convert_from(value, 'UTF8') FROM meta "
                            "WHERE key = 'restore.pending'")


def restore_folders(r):
    return [x for x in r.workdir.iterdir() if x.name.startswith(".data.restore-")]


def finishes_when_run_again(path, r, target_store, issuers, keys, pg_source_path):
    """The database is loaded and marked, DIR has no key store: keyholdd refuses to start,
    another backup is refused, the same command finishes the restore, and it serves."""
    assert target_store.rows("records") > 0
    mark = pending_mark(target_store)
    folders = restore_folders(r)
    assert len(folders) == 1 and (folders[0] / "keystore" / "keystore.meta").is_file(), folders
    assert mark and mark[0][0].endswith(" " + str(folders[0].resolve())), mark
    out = start_fails(r)
    assert "backup restore" in out and "did not finish" in out, out
    other = pg_source_path.parent / "other.khb"
    obj = json_error(run_cli(*restore_cmd(other, r)), "restore_pending")
    assert "another backup" in obj["message"] and str(folders[0].resolve()) in obj["message"], obj
    assert pending_mark(target_store) == mark and restore_folders(r) == folders
    p = run_cli(*restore_cmd(path, r))
    assert p.returncode == 0, p
    out = json.loads(p.stdout)
    assert out["resumed"] is True and out["records"] == target_store.rows("records"), out
    assert out["tenants"] == 2, out
    assert (r.data / "keystore" / "keystore.meta").is_file() and not (r.data / "keyhold.db").exists()
    assert pending_mark(target_store) == [] and restore_folders(r) == []
    serves_all_started(r, issuers, keys)
    # a finished restore is not resumed again: the database now holds data
    json_error(run_cli(*restore_cmd(path, r)), "not_empty")


def test_restore_killed_after_its_commit_finishes_when_run_again(
        pg, pki, issuers, tmp_path, pg_source):
    k, path, keys, _ = pg_source
    strace = shutil.which("strace")
    assert strace, "needs strace (scripts/install-deps --test installs it): SIGKILL at the rename"
    backup_of(k, tmp_path / "other.khb")
    target_store, r = pg_target(pg, pki, issuers, tmp_path, k)
    # the rename that makes DIR appear is the restore's first: strace fails it and kills the
    # process there, after the database committed (production code has no hook for this)
    calls = "rename,renameat,renameat2"
    p = subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", "-e", f"trace={calls}",
                        "-e", f"inject={calls}:error=EIO:signal=SIGKILL",
                        str(cli_binary()), *map(str, restore_cmd(path, r))],
                       capture_output=True, text=True, env=cli_env(None),
                       stdin=subprocess.DEVNULL)
    assert p.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL) and p.stdout == "", p
    assert not r.data.exists()
    finishes_when_run_again(path, r, target_store, issuers, keys, path)


def test_restore_whose_dir_filled_during_the_load_keeps_its_key_store(
        pg, pki, issuers, tmp_path, pg_source):
    k, path, keys, _ = pg_source
    backup_of(k, tmp_path / "other.khb")
    target_store, r = pg_target(pg, pki, issuers, tmp_path, k)
    other = tmp_path / "other.key"      # a refused restore makes the schema (as above)
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    json_error(run_cli(*restore_cmd(path, r, "--master-key-file", other)), "wrong_secret")
    lock = pg.connect(target_store.db)
    try:
        with lock.cursor() as cur:      # holds the load inside its transaction, as above
            cur.execute("LOCK TABLE key_epoch IN EXCLUSIVE MODE")
        cli = subprocess.Popen([str(cli_binary()), *map(str, restore_cmd(path, r))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cli_env(None), stdin=subprocess.DEVNULL)
        poll_until(lambda: cli.poll() is None and pg.execute(
            target_store.db, "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'key_epoch' AND NOT l.granted"), timeout=60)
        r.data.mkdir()
        (r.data / "late").write_text("x")
    finally:
        lock.rollback()
        lock.close()
    out, err = cli.communicate()
    obj = json_error(subprocess.CompletedProcess(cli.args, cli.returncode, out, err), "not_empty")
    assert "run the command again" in obj["message"], obj
    (r.data / "late").unlink()
    finishes_when_run_again(path, r, target_store, issuers, keys, path)


def test_postgresql_backup_restores_to_sqlite(pg, pki, issuers, tmp_path, pg_source):
    k, path, keys, _ = pg_source
    work = tmp_path / "sqlite"
    prepare_target(k, work)
    p = run_cli("backup", "restore", path, "--data", work / "data", "--json",
                *k.unseal_args())
    assert p.returncode == 0, p
    assert (work / "data" / "keyhold.db").is_file()
    r = Store(pg, tmp_path, "sqlite").server(work, pki, issuers)
    serves_all_started(r, issuers, keys)


def test_sqlite_backup_restores_into_postgresql(pg, pki, issuers, tmp_path):
    src = Store(pg, tmp_path, "sqlite").server(tmp_path / "src", pki, issuers)
    src.start()
    try:
        keys = fill(src, issuers, 10)
        path = tmp_path / "sqlite.khb"
        backup_of(src, path)
    finally:
        src.stop()
    target_store, r = pg_target(pg, pki, issuers, tmp_path, src)
    p = run_cli(*restore_cmd(path, r))
    assert p.returncode == 0, p
    assert json.loads(p.stdout)["records"] == target_store.rows("records") >= 10
    serves_all_started(r, issuers, keys)


def test_into_storage_needs_a_postgresql_config(pg, pki, issuers, tmp_path, pg_source):
    k, path, _, _ = pg_source
    sq = Store(pg, tmp_path, "sqlite").server(tmp_path / "sq", pki, issuers)
    p = run_cli("backup", "restore", path, "--data", tmp_path / "d", "--into-storage",
                "--config", sq.config_path)
    assert p.returncode == 2 and "PostgreSQL" in p.stderr, p
    p = run_cli("backup", "restore", path, "--data", tmp_path / "d", "--into-storage",
                *k.unseal_args())
    assert p.returncode == 2 and "--config" in p.stderr, p
    assert not (tmp_path / "d").exists()


def test_backup_on_one_replica_while_another_writes(pg, pki, issuers, tmp_path):
    """Two replicas on one database: a backup made through B while A takes writes restores
    every key A acknowledged before the backup began, and for those written meanwhile the old
    or the new value: the snapshot is one transaction, whatever replica writes."""
    from test_replicas import Replica
    store = Store(pg, tmp_path, "postgresql")
    a = Replica(tmp_path / "a", pki, tenants_of(issuers), store.lines)
    b = Replica(tmp_path / "b", pki, tenants_of(issuers), store.lines)
    b.share_store(a)
    b.write_config()
    a.start()
    b.start()
    try:
        before = fill(a, issuers, 20)
        during, stop, failures = {}, threading.Event(), []

        def writer():
            while not stop.is_set():
                guid, key = str(uuid.uuid4()), harness.new_key()
                during[guid] = key               # noted before the write: acked or not
                if put_key(a, issuers["default"], guid, key) != 200:
                    failures.append(guid)

        t = threading.Thread(target=writer)
        t.start()
        try:
            path = tmp_path / "replica.khb"
            backup_of(b, path)
        finally:
            stop.set()
            t.join()
        assert not failures and during, failures
    finally:
        b.stop()
        a.stop()
    target_store, r = pg_target(pg, pki, issuers, tmp_path, a)
    p = run_cli(*restore_cmd(path, r))
    assert p.returncode == 0, p
    r.start()
    try:
        serves_all(r, issuers, before)
        for guid, key in during.items():
            assert get_key(r, issuers["default"], guid) in (None, key), guid
    finally:
        r.stop()
