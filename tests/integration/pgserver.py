"""A throw-away PostgreSQL server for the integration tests and benchmarks.

    with PgServer() as pg:
        pg.create_db("kc")
        pg.execute("kc", 'CREATE TABLE t (a int)')
        pg.conninfo("kc")   # "host=127.0.0.1 port=N dbname=kc user=keyhold_test password=P"

initdb runs in a fresh temporary directory, then `postgres` listens on 127.0.0.1 (a free
port) and on a Unix socket in that directory, with scram-sha-256 password authentication for
every connection, so a conninfo must carry the password. PostgreSQL refuses to run as root:
when we are root, initdb and postgres run as the `postgres` system user through
`runuser -u postgres --` and the directory is handed to that user.

The server is stopped (fast shutdown) and the directory removed on every path: stop(), the
context manager's exit, an atexit hook for an interpreter that ends without either, and
PR_SET_PDEATHSIG on the child (through setpriv) for a test run that is killed. Startup is
bounded: a server that does not accept connections within start_timeout seconds is stopped
and the error carries the tail of its log. Binaries come from
/usr/lib/postgresql/<newest version>/bin, or from $KEYHOLD_PG_BIN. psycopg2 is imported
only when a server is used, so importing this module (conftest.py does) never needs it.
"""
import atexit
import ctypes
import os
import pathlib
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_ROOT = pathlib.Path("/usr/lib/postgresql")
RUN_AS = "postgres"                 # the system user initdb/postgres run as when we are root
SUPERUSER = "keyhold_test"
START_TIMEOUT_S = 60                # bound on initdb + first accepted connection (not a benchmark)
STOP_TIMEOUT_S = 30
LOG_TAIL = 6000                     # characters of the server log shown in an error

_PR_SET_PDEATHSIG = 1


class PgServerError(RuntimeError):
    """The server could not be set up or started; the message carries the relevant log."""


def pg_bin_dir() -> pathlib.Path:
    """The directory of initdb/postgres: $KEYHOLD_PG_BIN, else the newest
    /usr/lib/postgresql/<version>/bin that has both."""
    env = os.environ.get("KEYHOLD_PG_BIN")
    if env:
        return pathlib.Path(env)
    found = []
    for d in PG_ROOT.glob("*/bin"):
        ver = d.parent.name
        if (re.fullmatch(r"\d+(\.\d+)*", ver) and (d / "initdb").exists()
                and (d / "postgres").exists()):
            found.append((tuple(int(x) for x in ver.split(".")), d))
    if not found:
        raise PgServerError(f"no PostgreSQL server binaries under {PG_ROOT}/*/bin "
                            "(install postgresql, or set KEYHOLD_PG_BIN)")
    return max(found)[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # The kernel sends SIGTERM to the child when the thread that started it dies (a test run
    # killed with SIGKILL). As root the child is runuser, which passes SIGTERM on to postgres
    # (a smart shutdown: nothing is connected any more by then). Used through setpriv(1)
    # (util-linux) when it exists, since a preexec_fn is unsafe in a threaded process; this
    # function is the fallback.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:   # noqa: BLE001 - a missing prctl only loses the last-resort cleanup
        pass


def _children(pid: int) -> list[int]:
    """Direct children of pid (scanning /proc: no CONFIG_PROC_CHILDREN needed)."""
    out = []
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(p.name))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not running any more.
    try:
        st = pathlib.Path(f"/proc/{pid}/stat").read_text()
        return st[st.rfind(")") + 2] != "Z"
    except OSError:
        return False


class PgServer:
    """One PostgreSQL server in a temporary directory (see the module docstring).

    Attributes: port, user, password, host ("127.0.0.1"), dir (the temporary directory),
    datadir, socket_dir, bin (the binaries' directory)."""

    def __init__(self, parent: str | os.PathLike | None = None, *, port: int | None = None,
                 user: str = SUPERUSER, password: str | None = None,
                 settings: dict | None = None, start_timeout: float = START_TIMEOUT_S,
                 ssl: tuple | None = None):
        """parent: where the temporary directory goes (default: the system temp dir; when we
        are root, every directory above it must be traversable by `postgres`: missing o+x is
        added to directories we own). settings: extra `-c name=value` server settings.
        ssl: (certificate file, key file) to accept TLS with (ssl=on; plain connections are
        still accepted, so a client chooses with its sslmode); the files are copied into the
        server's directory, owned by the server's user (postgres wants its key 0600)."""
        self.bin = pg_bin_dir()
        self.host = "127.0.0.1"
        self.user = user
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.fixed_port = port
        self.port: int | None = None
        self.settings = dict(settings or {})
        self.start_timeout = start_timeout
        self.ssl = ssl
        self.as_root = os.geteuid() == 0
        self.parent = pathlib.Path(parent) if parent is not None else None
        self.dir: pathlib.Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._atexit = False

    # ------------------------------------------------------------------ paths and commands

    @property
    def datadir(self) -> pathlib.Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> pathlib.Path:
        return self.dir

    @property
    def log_path(self) -> pathlib.Path:
        return self.dir / "postgres.log"

    def _cmd(self, *argv) -> list[str]:
        argv = [str(a) for a in argv]
        return ["runuser", "-u", RUN_AS, "--", *argv] if self.as_root else argv

    def log(self) -> str:
        """The server's log (stderr) so far, "" if none."""
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, TypeError):
            return ""

    def _log_tail(self) -> str:
        text = self.log()
        return text[-LOG_TAIL:] if len(text) > LOG_TAIL else text

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "PgServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "PgServer":
        """initdb, start the server, wait (bounded) until it accepts an authenticated
        connection. On any failure everything is stopped and removed before raising."""
        if self.proc is not None:
            raise PgServerError("PgServer already started")
        atexit.register(self.stop)
        self._atexit = True
        deadline = time.monotonic() + self.start_timeout
        try:
            self._make_dir()
            self._initdb(deadline)
            self._copy_ssl_files()
            # A free port can be taken by someone else before postgres binds it: retry then.
            for attempt in range(5):
                self.port = self.fixed_port or free_port()
                self._spawn()
                if self._wait_ready(deadline):
                    return self
                if self.fixed_port is None and "could not bind" in self.log() and attempt < 4:
                    self._stop_server()
                    self.log_path.unlink(missing_ok=True)
                    continue
                raise PgServerError(f"postgres exited with {self.proc.returncode} during start-up "
                                    f"(port {self.port})\n--- server log ---\n{self._log_tail()}")
            raise AssertionError("unreachable")
        except BaseException:
            self.stop()
            raise

    def _make_dir(self) -> None:
        base = self.parent or pathlib.Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        # Short names: the socket path DIR/.s.PGSQL.NNNNN must stay under 107 bytes.
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="khpg-", dir=base))
        if self.as_root:
            pw = pwd.getpwnam(RUN_AS)
            self._make_traversable(self.dir.parent)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)

    @staticmethod
    def _make_traversable(d: pathlib.Path) -> None:
        for p in [d, *d.parents]:
            st = p.stat()
            if st.st_mode & 0o001:
                continue
            if st.st_uid != os.geteuid():
                raise PgServerError(f"{p} is not traversable by user {RUN_AS}; choose another "
                                    "parent directory for the PostgreSQL test server")
            os.chmod(p, (st.st_mode & 0o7777) | 0o001)

    def _own(self, path: pathlib.Path) -> None:
        if self.as_root:
            pw = pwd.getpwnam(RUN_AS)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _initdb(self, deadline: float) -> None:
        pwfile = self.dir / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        self._own(pwfile)
        cmd = self._cmd(self.bin / "initdb", "-D", self.datadir, "-U", self.user,
                        "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                        "--locale=C", "--no-sync", "--no-instructions")
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, cwd=self.dir, env=self._env(),
                               timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as e:
            raise PgServerError(f"initdb did not finish within {self.start_timeout}s\n"
                                f"{(e.stdout or b'').decode(errors='replace')}") from None
        finally:
            pwfile.unlink(missing_ok=True)
        if r.returncode != 0:
            raise PgServerError(f"initdb failed with {r.returncode}: {' '.join(cmd)}\n"
                                f"{r.stdout.decode(errors='replace')}")

    def _copy_ssl_files(self) -> None:
        if self.ssl is None:
            return
        for src, name in zip(self.ssl, ("server.crt", "server.key")):
            dst = self.dir / name
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pathlib.Path(src).read_bytes())
            self._own(dst)
        self.settings.setdefault("ssl", "on")
        self.settings.setdefault("ssl_cert_file", str(self.dir / "server.crt"))
        self.settings.setdefault("ssl_key_file", str(self.dir / "server.key"))

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _spawn(self) -> None:
        opts = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "logging_collector": "off",
            "ssl": "off",
            # A test server: durability is not wanted, speed is.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_wal_size": "1GB",
            "max_connections": "50",
        }
        opts.update({k: str(v) for k, v in self.settings.items()})
        argv = [self.bin / "postgres", "-D", self.datadir]
        for k, v in opts.items():
            argv += ["-c", f"{k}={v}"]
        setpriv = shutil.which("setpriv")
        launch = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(launch + self._cmd(*argv), stdin=subprocess.DEVNULL,
                                     stdout=self._log_file, stderr=subprocess.STDOUT,
                                     cwd=self.dir, env=self._env(), start_new_session=True,
                                     preexec_fn=None if setpriv else _die_with_parent)

    def _wait_ready(self, deadline: float) -> bool:
        """True once an authenticated connection succeeds; False if the server exited.
        Raises (with the log) at the deadline."""
        import psycopg2
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                psycopg2.connect(self.conninfo("postgres"), connect_timeout=2).close()
                return True
            except psycopg2.OperationalError as e:
                last = e
            time.sleep(0.05)
        raise PgServerError(f"postgres did not accept connections on port {self.port} within "
                            f"{self.start_timeout}s (last error: {str(last).strip()})\n"
                            f"--- server log ---\n{self._log_tail()}")

    def postmaster_pid(self) -> int | None:
        """The pid of the postgres server process (the child of runuser when we are root)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        if not self.as_root:
            return self.proc.pid
        kids = _children(self.proc.pid)
        return kids[0] if kids else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _stop_server(self) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                # Fast shutdown: SIGINT to the postmaster itself. As root, signalling runuser
                # would make it SIGKILL postgres two seconds later.
                pid = self.postmaster_pid()
                if pid is not None:
                    os.kill(pid, signal.SIGINT)
                else:
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    pid = self.postmaster_pid()
                    if pid is not None:
                        os.kill(pid, signal.SIGQUIT)       # immediate shutdown
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        pid = self.postmaster_pid()
                        if pid is not None:
                            os.kill(pid, signal.SIGKILL)
                        proc.kill()
                        proc.wait()
            # The postmaster's own children (checkpointer, walwriter, ...) end with it, but do
            # not return before they are gone: the directory goes next.
            self._wait_postmaster_gone()
        finally:
            self.proc = None
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def _wait_postmaster_gone(self) -> None:
        pidfile = self.datadir / "postmaster.pid" if self.dir else None
        if pidfile is None:
            return
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        end = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.02)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def stop_server(self) -> None:
        """Stops the server (fast shutdown) but keeps its directory, data and port, so that
        start_server() brings the same database back: an outage and its end."""
        self._stop_server()

    def start_server(self) -> None:
        """Starts a server stopped by stop_server() again, on the same port; returns once it
        accepts connections (bounded by start_timeout)."""
        if self.proc is not None or self.dir is None:
            raise PgServerError("start_server() needs a server stopped by stop_server()")
        self._spawn()
        if not self._wait_ready(time.monotonic() + self.start_timeout):
            raise PgServerError(f"postgres exited with {self.proc.returncode} on restart\n"
                                f"--- server log ---\n{self._log_tail()}")

    def stop(self) -> None:
        """Fast shutdown, then remove the directory. Idempotent; safe on a half-started
        server."""
        try:
            self._stop_server()
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None
            if self._atexit:
                atexit.unregister(self.stop)
                self._atexit = False

    # ------------------------------------------------------------------ SQL

    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq conninfo: "host=127.0.0.1 port=N dbname=D user=U password=P"."""
        if self.port is None:
            raise PgServerError("PgServer not started")
        return (f"host={self.host} port={self.port} dbname={dbname} user={self.user} "
                f"password={self.password}")

    def uri(self, dbname: str = "postgres") -> str:
        """The same as a postgresql:// URI (the password is URL-safe)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kw):
        """A psycopg2 connection as the superuser (caller closes it)."""
        import psycopg2
        return psycopg2.connect(self.conninfo(dbname), connect_timeout=10, **kw)

    def execute(self, dbname: str, sql: str, params=None) -> list[tuple]:
        """Runs one statement in autocommit mode; returns its rows ([] if none)."""
        conn = self.connect(dbname)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description is not None else []
        finally:
            conn.close()

    def create_db(self, name: str) -> str:
        """CREATE DATABASE name (it must not exist yet); returns its conninfo."""
        self.execute("postgres", f'CREATE DATABASE "{_ident(name)}"')
        return self.conninfo(name)

    def drop_db(self, name: str) -> None:
        self.execute("postgres", f'DROP DATABASE IF EXISTS "{_ident(name)}" WITH (FORCE)')

    def has_db(self, name: str) -> bool:
        return bool(self.execute("postgres", "SELECT 1 FROM pg_database WHERE datname = %s",
                                 (name,)))


def _ident(name: str) -> str:
    if not name or '"' in name or "\0" in name or len(name) > 63:
        raise ValueError(f"unusable database name {name!r}")
    return name
