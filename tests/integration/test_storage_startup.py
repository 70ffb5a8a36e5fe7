"""keyholdd on a PostgreSQL server that it cannot use: each bad [storage] configuration of
docs/storage.md ("Start-up errors") ends keyholdd at start with exit status 1 and a message
naming the key at fault and the cause, never the password; TLS to the server
(sslmode=verify-full with the CA in sslrootcert) serves, and a CA that did not sign the
server's certificate is refused with libpq's reason.

These run on a PostgreSQL server of their own (with TLS), in every run of the suite: they are
about the PostgreSQL driver whatever database the rest of the run uses."""
import socket
import subprocess
import uuid

import pytest

from harness import keyholdd_cmd
from pgserver import PgServer
from pki import TestPKI

EXIT_TIMEOUT_S = 60     # keyholdd's connect_timeout at start-up is 30 s; a bound, not a limit


@pytest.fixture(scope="module")
def pg_tls(tmp_path_factory):
    """A PostgreSQL server that accepts TLS with a certificate of its own CA, which the
    fixture carries as .ca (a TestPKI)."""
    ca = TestPKI(tmp_path_factory.mktemp("pg-ca"), name="keyhold test PostgreSQL CA")
    srv = PgServer(ssl=ca.leaf("pg-server")).start()
    srv.ca = ca
    yield srv
    srv.stop()


def password_file(tmp_path, secret: str):
    path = tmp_path / f"pw-{uuid.uuid4().hex[:8]}"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


def storage_lines(pg, db: str, pwfile, query: str = "") -> list[str]:
    return ["driver = postgresql", f"url = postgresql://{pg.user}@{pg.host}:{pg.port}/{db}{query}",
            f"password_file = {pwfile}"]


def verify_full(ca_pem) -> str:
    return f"?sslmode=verify-full&sslrootcert={ca_pem}"


def start_fails(k) -> str:
    """Runs k's keyholdd, which must exit 1 at start; returns what it printed."""
    k.write_config()
    p = subprocess.run(keyholdd_cmd(k.config_path), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=k.child_env(),
                       timeout=EXIT_TIMEOUT_S)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 1, out
    assert "Sanitizer" not in out, out
    return out


def new_db(pg) -> str:
    name = "kh_" + uuid.uuid4().hex[:16]
    pg.create_db(name)
    return name


def test_unreachable_server_is_named(make_keyholdd, pg_tls, tmp_path):
    # a bound port that does not listen refuses every connection
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        k = make_keyholdd(start=False, storage_lines=[
            "driver = postgresql", f"url = postgresql://keyhold@127.0.0.1:{port}/keyhold",
            f"password_file = {password_file(tmp_path, pg_tls.password)}"])
        out = start_fails(k)
    assert "[storage] url: cannot reach the PostgreSQL server" in out, out
    assert pg_tls.password not in out


def test_wrong_password_names_the_password_file(make_keyholdd, pg_tls, tmp_path):
    wrong = "not-the-password-" + uuid.uuid4().hex[:8]
    k = make_keyholdd(start=False, storage_lines=storage_lines(
        pg_tls, new_db(pg_tls), password_file(tmp_path, wrong)))
    out = start_fails(k)
    assert ("[storage] password_file (or KEYHOLD_STORAGE_PASSWORD): the PostgreSQL server "
            "refused the login") in out, out
    assert wrong not in out and pg_tls.password not in out


def test_missing_database_is_named(make_keyholdd, pg_tls, tmp_path):
    k = make_keyholdd(start=False, storage_lines=storage_lines(
        pg_tls, "kh_no_such_database", password_file(tmp_path, pg_tls.password)))
    out = start_fails(k)
    assert "[storage] url: no such database" in out, out
    assert not pg_tls.has_db("kh_no_such_database")     # keyholdd creates tables, not databases


def test_tls_verify_full_serves_and_a_newer_schema_is_refused(make_keyholdd, pg_tls, tmp_path,
                                                              default_issuer):
    db = new_db(pg_tls)
    k = make_keyholdd(start=False, storage_lines=storage_lines(
        pg_tls, db, password_file(tmp_path, pg_tls.password), verify_full(pg_tls.ca.ca_pem)))
    k.start()
    assert k.client.get("/health").status == 200
    # every connection keyholdd holds is encrypted (the server also takes plain ones)
    rows = pg_tls.execute("postgres", "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a "
                          "ON a.pid = s.pid WHERE a.datname = %s AND a.application_name = "
                          "'keyholdd'", (db,))
    assert rows and all(r[0] for r in rows), rows
    k.stop()

    # a newer keyholdd has upgraded this database: this one refuses to touch it
    newest = pg_tls.execute(db, "SELECT max(version) FROM schema_migrations")[0][0]
    pg_tls.execute(db, "INSERT INTO schema_migrations VALUES (%s, 0)", (newest + 50,))
    out = start_fails(k)
    assert f"the database's schema (version {newest + 50}) is newer than this build" in out, out
    assert "[storage] url" in out, out
    assert pg_tls.execute(db, "SELECT max(version) FROM schema_migrations")[0][0] == newest + 50


def test_tls_with_the_wrong_ca_is_refused_with_the_reason(make_keyholdd, pg_tls, tmp_path,
                                                         tmp_path_factory):
    other = TestPKI(tmp_path_factory.mktemp("other-ca"), name="not the server's CA")
    k = make_keyholdd(start=False, storage_lines=storage_lines(
        pg_tls, new_db(pg_tls), password_file(tmp_path, pg_tls.password),
        verify_full(other.ca_pem)))
    out = start_fails(k)
    assert "[storage] url: cannot reach the PostgreSQL server" in out, out
    assert "certificate verify failed" in out, out
