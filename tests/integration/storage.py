"""Which database the integration tests' keyholdd runs on: KEYHOLD_TEST_STORAGE=sqlite (the
default) or postgresql.

With postgresql, one throw-away PostgreSQL server (pgserver.PgServer) is started per test
process (per pytest-xdist worker) on first use and stopped when the process ends, and each
keyholdd data directory gets a fresh database of its own (the same one again when a test
starts a keyholdd on the same directory twice), reached with a password file. Tests of what
only SQLite has (the database file, backups, disk-full) carry the marker `sqlite_only` and
are deselected in a PostgreSQL run (conftest.py)."""
import os
import pathlib
import uuid

KIND = os.environ.get("KEYHOLD_TEST_STORAGE", "sqlite")
if KIND not in ("sqlite", "postgresql"):
    raise RuntimeError(f"KEYHOLD_TEST_STORAGE must be sqlite or postgresql, not {KIND!r}")

_server = None
_databases: dict[str, str] = {}     # data directory -> its database


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
    db = _databases.get(str(data))
    if db is None:
        db = "kh_" + uuid.uuid4().hex[:16]
        pg.create_db(db)
        _databases[str(data)] = db
    pwfile = data.parent / "db.password"
    if not pwfile.exists():
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pg.password + "\n")
    return ["driver = postgresql", f"url = postgresql://{pg.user}@{pg.host}:{pg.port}/{db}",
            f"password_file = {pwfile}"]
