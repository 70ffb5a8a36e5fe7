"""Which database the integration tests' keyholdd runs on: KEYHOLD_TEST_STORAGE=sqlite (the
default) or postgresql.

With postgresql, one throw-away PostgreSQL server (pgserver.PgServer) is started per test
process (per pytest-xdist worker) on first use and stopped when the process ends, and each
keyholdd data directory gets a fresh database of its own (the same one again when a test
starts a keyholdd on the same directory twice), reached with a password file. Tests of what
only SQLite has (the database file, disk-full) carry the marker `sqlite_only` and
are deselected in a PostgreSQL run (conftest.py).

A database is known by its SQLite path (Keyholdd.db_path) on either backend: two Keyholdds
given the same db_path (harness share_store(), or a test that sets db_path) use the same
PostgreSQL database too. query(), wipe() and users_lock() work on either."""
import contextlib
import fcntl
import os
import pathlib
import sqlite3
import uuid

KIND = os.environ.get("KEYHOLD_TEST_STORAGE", "sqlite")
if KIND not in ("sqlite", "postgresql"):
    raise RuntimeError(f"KEYHOLD_TEST_STORAGE must be sqlite or postgresql, not {KIND!r}")

_server = None
_databases: dict[str, str] = {}     # SQLite path (db_path) -> its PostgreSQL database

# The advisory lock key every keyholdd connection holds shared (PG_USERS_LOCK in
# src/store/postgresql/pg-conn.h: "khserve!" as a big-endian integer); the lock file beside
# an SQLite database plays its part there (src/store/lock.h).
PG_USERS_LOCK = int.from_bytes(b"khserve!", "big")


def server():
    """The process's PostgreSQL server, started on first use."""
    global _server
    if _server is None:
        from pgserver import PgServer   # stopped by its own atexit hook
        _server = PgServer().start()
    return _server


def config_lines(data: pathlib.Path, db_path: pathlib.Path) -> list[str]:
    """The [storage] keys of a keyholdd whose data directory is data (db_path: its SQLite
    file)."""
    if KIND == "sqlite":
        return ["driver = sqlite", f"path = {db_path}"]
    pg = server()
    db = _database(db_path)
    pwfile = data.parent / "db.password"
    if not pwfile.exists():
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pg.password + "\n")
    return ["driver = postgresql", f"url = postgresql://{pg.user}@{pg.host}:{pg.port}/{db}",
            f"password_file = {pwfile}"]


def _database(db_path) -> str:
    """The PostgreSQL database that stands for db_path (made on first use)."""
    db = _databases.get(str(db_path))
    if db is None:
        db = "kh_" + uuid.uuid4().hex[:16]
        server().create_db(db)
        _databases[str(db_path)] = db
    return db


def query(db_path, sql: str) -> list[tuple]:
    """The rows of sql (a read; SQL both databases take, without parameters) on the database
    of db_path; blobs come back as bytes on both."""
    if KIND == "sqlite":
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
        try:
            return [tuple(r) for r in con.execute(sql)]
        finally:
            con.close()
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
            for r in server().execute(_database(db_path), sql)]


def wipe(db_path) -> None:
    """Removes everything keyholdd stored for db_path, as if it had never started there (the
    SQLite file and its companions; on PostgreSQL the database, made again empty)."""
    if KIND == "sqlite":
        p = pathlib.Path(db_path)
        for f in p.parent.glob(p.name + "*"):
            if not f.name.endswith("-lock"):
                f.unlink()
        return
    db = _database(db_path)
    server().drop_db(db)
    server().create_db(db)


@contextlib.contextmanager
def users_lock(db_path, exclusive: bool):
    """Holds, for the with block, the lock a keyholdd serving db_path holds shared
    (exclusive=False) or that `keyhold keystore migrate` holds exclusively: the flock of the
    lock file beside an SQLite database, the advisory lock on PostgreSQL."""
    if KIND == "sqlite":
        with open(f"{db_path}-lock", "ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        return
    conn = server().connect(_database(db_path))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)" if exclusive
                        else "SELECT pg_advisory_lock_shared(%s)", (PG_USERS_LOCK,))
        yield
    finally:
        conn.close()


class _Cursor:
    """A cursor whose blobs read back as bytes on both databases."""

    def __init__(self, cur):
        self._cur = cur
        self.rowcount = cur.rowcount

    def fetchall(self) -> list[tuple]:
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                for r in self._cur.fetchall()]


class _Db:
    """execute(sql, params) with SQLite's `?` placeholders on either database."""

    def __init__(self, con, pg: bool):
        self._con, self._pg = con, pg

    def execute(self, sql: str, params=()) -> _Cursor:
        if not self._pg:
            return _Cursor(self._con.execute(sql, params))
        cur = self._con.cursor()
        cur.execute(sql.replace("?", "%s"),
                    tuple(memoryview(p) if isinstance(p, bytes) else p for p in params))
        return _Cursor(cur)


@contextlib.contextmanager
def edit(db_path):
    """A connection to the database of db_path for a test that changes its rows behind
    keyholdd's back (stop keyholdd first): committed at the end of the with block."""
    if KIND == "sqlite":
        con = sqlite3.connect(db_path)
    else:
        con = server().connect(_database(db_path))
    try:
        yield _Db(con, KIND != "sqlite")
        con.commit()
    finally:
        con.close()
