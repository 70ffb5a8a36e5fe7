#!/usr/bin/python3
"""Runs a test program against a throw-away PostgreSQL server (tests/integration/pgserver.py):

    with-postgresql.py PROGRAM [ARGS...]

The program gets KEYHOLD_TEST_PG_CONNINFO (host, port, user; no dbname, no password),
KEYHOLD_TEST_PG_PASSWORD, and KEYHOLD_TEST_PG_CONTROL, a Unix socket on which a line "stop" or
"start" stops or starts the server (same data, same port), answered "ok" once done. The exit
status is the program's. A server that cannot start is a failure (exit 1), never a skip:
CI installs PostgreSQL (scripts/install-deps --test)."""
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1].parent / "integration"))
from pgserver import PgServer, PgServerError  # noqa: E402


def serve_control(sock: socket.socket, pg: PgServer) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn:
            command = conn.recv(64).decode(errors="replace").strip()
            try:
                if command == "stop":
                    pg.stop_server()
                elif command == "start":
                    pg.start_server()
                else:
                    raise ValueError(f"unknown command {command!r}")
                conn.sendall(b"ok\n")
            except Exception as e:  # noqa: BLE001 - reported to the test, which fails
                conn.sendall(f"error {e}\n".encode()[:60])


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        pg = PgServer().start()
    except (PgServerError, OSError, ImportError) as e:
        print(f"with-postgresql.py: cannot start PostgreSQL: {e}", file=sys.stderr)
        return 1
    try:
        with tempfile.TemporaryDirectory(prefix="khpgctl-") as d:
            path = os.path.join(d, "control")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            sock.listen(4)
            threading.Thread(target=serve_control, args=(sock, pg), daemon=True).start()
            env = dict(os.environ)
            env["KEYHOLD_TEST_PG_CONNINFO"] = f"host={pg.host} port={pg.port} user={pg.user}"
            env["KEYHOLD_TEST_PG_PASSWORD"] = pg.password
            env["KEYHOLD_TEST_PG_CONTROL"] = path
            rc = subprocess.run(sys.argv[1:], env=env).returncode
            sock.close()
            return rc
    finally:
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
