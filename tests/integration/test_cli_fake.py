"""The `keyhold` admin commands against a fake admin server that answers as
docs/admin-api.md says (on a Unix socket like keyholdd's admin socket, and over TLS with a
bearer token like its HTTPS listener). It checks what the command line does with the answers:
the routes and queries it asks for, tables, --json output, paging, the export file, errors.
The same commands against the real keyholdd are in test_cli_routes_pending.py until its
admin routes land."""
import http.server
import json
import os
import pathlib
import signal
import socket
import socketserver
import ssl
import stat
import subprocess
import sys
import threading
import urllib.parse

import pytest

from test_cli import cli_binary, cli_env, json_error, run_cli

KEYS = {
    "active": 2,
    "versions": [
        {"version": 1, "state": "archived", "algorithm": "rsa-3072",
         "created": "2026-11-01T09:00:00Z", "records": 10, "encrypts": 1250, "decrypts": 98765},
        {"version": 2, "state": "active", "algorithm": "rsa-3072",
         "created": "2026-12-06T14:00:00Z", "records": 1224, "encrypts": 1224, "decrypts": 5},
    ],
    "job": {"state": "running", "moved": 5, "skipped": 1, "total": 10, "rate": 2.5, "eta_s": 2},
}
PEM = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----\n"
FIELDS = ["seq", "time", "tenant", "actor", "action", "target", "outcome", "key_version",
          "request_id", "client", "count", "prev_hash", "hash"]


def record(seq: int, tenant: str = "acme") -> dict:
    """A well-formed record (docs/audit.md fields, in order); hashes are not a real chain."""
    target = 'Z\u00fcrich "q" \\ tab\t' if seq == 3 else f"user-{seq}"
    return {"seq": seq, "time": f"2026-12-06T14:{seq // 60 % 60:02d}:{seq % 60:02d}.000Z",
            "tenant": tenant, "actor": "local:uid=0", "action": "read", "target": target,
            "outcome": "ok", "key_version": 2, "request_id": f"req-{seq}", "client": "local",
            "count": 1, "prev_hash": f"{seq - 1:064x}", "hash": f"{seq:064x}"}


def canonical(rec: dict) -> str:
    """The export line docs/audit.md fixes: compact, members in the documented order."""
    return json.dumps({k: rec[k] for k in FIELDS}, separators=(",", ":"), ensure_ascii=False)


class FakeAdmin:
    """State of the fake server; tests change it between commands."""

    def __init__(self):
        self.keys = KEYS
        self.chains = {"acme": [record(i) for i in range(1, 11)],
                       "": [record(i, "") for i in range(1, 4)]}
        self.page_max = 10000  # the server may answer fewer records than asked
        self.hide_from = 2**63  # records from this seq are counted in the head, never sent
        self.error: tuple[int, dict] | None = None
        self.token: str | None = None  # required as bearer token when set
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.stall_after_first = False  # later audit pages wait for `release`
        self.stalled = threading.Event()
        self.release = threading.Event()

    def answer(self, path: str, headers) -> tuple[int, object]:
        with self.lock:
            self.requests.append(path)
        if self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"message": "The token is not valid.", "code": "invalid_token"}
        if self.error:
            return self.error
        url = urllib.parse.urlsplit(path)
        q = dict(urllib.parse.parse_qsl(url.query))
        route = url.path
        chain = "acme"
        if route.startswith("/t/acme/"):
            route = route[len("/t/acme"):]
        elif route.startswith("/t/"):
            return 404, {"message": "No such tenant.", "code": "unknown_tenant"}
        if route.startswith("/server/"):
            route, chain = "/admin/" + route[len("/server/"):], ""
        if route == "/admin/keys":
            return 200, self.keys
        if route == "/admin/audit/public-key":
            return 200, {"pem": PEM, "algorithm": "rsa-pss-sha256"}
        if route == "/admin/audit":
            recs = self.chains[chain]
            head = recs[-1]["seq"] if recs else 0
            if "last" in q:
                page = recs[-int(q["last"]):]
            else:
                since, limit = int(q.get("since", 1)), int(q.get("limit", 1000))
                if self.stall_after_first and since > 1:
                    self.stalled.set()
                    self.release.wait()
                page = [r for r in recs if since <= r["seq"] < self.hide_from]
                page = page[:min(limit, self.page_max)]
            nxt = page[-1]["seq"] + 1 if page else head + 1
            # members reversed and spaced: the export must write canonical lines anyway
            return 200, {"records": [dict(reversed(list(r.items()))) for r in page],
                         "next": nxt, "head": head}
        return 404, {"message": "No such route.", "code": "not_found"}


def _handler(fake: FakeAdmin):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            status, body = fake.answer(self.path, self.headers)
            data = body if isinstance(body, bytes) else json.dumps(body, indent=1).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def address_string(self):
            return "local"

        def log_message(self, *args):
            pass
    return Handler


class QuietOnHangUp:
    """A client that hangs up mid-answer (an interrupted export) is expected: no traceback."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class UnixServer(QuietOnHangUp, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class TLSServer(QuietOnHangUp, socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@pytest.fixture
def fake(tmp_path):
    f = FakeAdmin()
    f.socket = tmp_path / "admin.sock"
    srv = UnixServer(str(f.socket), _handler(f))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f
    srv.shutdown()
    srv.server_close()


def cli(fake, *args, **kw):
    return run_cli(*args, "--socket", fake.socket, **kw)


# ----------------------------------------------------------------------------- key

def test_key_list_table(fake):
    p = cli(fake, "key", "list")
    assert p.returncode == 0, p
    assert p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "STATE", "ALGORITHM", "CREATED", "RECORDS",
                                "ENCRYPTS", "DECRYPTS"]
    assert lines[1].split() == ["1", "archived", "rsa-3072", "2026-11-01T09:00:00Z", "10",
                                "1250", "98765"]
    assert lines[2].split() == ["2", "active", "rsa-3072", "2026-12-06T14:00:00Z", "1224",
                                "1224", "5"]
    assert len(lines) == 3
    # numbers right-aligned under their titles: every line as long, no trailing blanks
    assert len({len(l) for l in lines}) == 1 and not any(l.endswith(" ") for l in lines)
    assert fake.requests == ["/admin/keys"]


def test_key_list_json_is_the_versions(fake):
    p = cli(fake, "key", "list", "--json")
    assert p.returncode == 0, p
    assert json.loads(p.stdout) == KEYS["versions"]
    assert len(p.stdout.splitlines()) == 1


def test_key_status(fake):
    p = cli(fake, "--json", "key", "status")
    assert p.returncode == 0, p
    assert json.loads(p.stdout) == KEYS

    p = cli(fake, "key", "status")
    assert p.returncode == 0, p
    lines = p.stdout.splitlines()
    assert lines[0] == "Active version: 2"
    assert lines[2].split()[0] == "VERSION"
    assert lines[-1] == ("Re-encryption: running: 5 of 10 records moved, 1 skipped (revoked), "
                         "2.5 records/s, about 2 s left")


def test_key_status_without_job(fake):
    fake.keys = dict(KEYS, job={"state": "none", "moved": 0, "skipped": 0, "total": 0,
                                "rate": 0, "eta_s": None})
    p = cli(fake, "key", "status")
    assert p.returncode == 0, p
    assert p.stdout.splitlines()[-1] == "Re-encryption: none"


@pytest.mark.parametrize("how", ["option", "env", "option-after-env"])
def test_tenant_prefixes_the_routes(fake, how):
    if how == "option":
        p = cli(fake, "--tenant", "acme", "key", "list")
    elif how == "env":
        p = cli(fake, "key", "list", env={"KEYHOLD_TENANT": "acme"})
    else:
        p = cli(fake, "key", "list", "--tenant", "other", env={"KEYHOLD_TENANT": "acme"})
    if how == "option-after-env":
        assert p.returncode == 1 and "No such tenant." in p.stderr, p
        assert fake.requests == ["/t/other/admin/keys"]
    else:
        assert p.returncode == 0, p
        assert fake.requests == ["/t/acme/admin/keys"]


def test_server_errors_exit_1_with_its_message(fake):
    fake.error = (403, {"message": "Only admins may do this.", "code": "not_admin"})
    p = cli(fake, "key", "list")
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr == "keyhold key list: Only admins may do this. (not_admin)\n"
    assert json_error(cli(fake, "key", "list", "--json"), "not_admin") == \
        {"message": "Only admins may do this.", "code": "not_admin"}


def test_server_text_is_not_a_terminal_command(fake):
    fake.error = (400, {"message": "bad \x1b[2J thing", "code": "invalid_parameter"})
    p = cli(fake, "key", "list")
    assert p.returncode == 1
    assert "\x1b" not in p.stderr and "bad \\x1b[2J thing" in p.stderr


@pytest.mark.parametrize("status,body", [(200, b"not json"), (200, b"[1,2]"),
                                         (502, b"<html>bad gateway</html>")])
def test_answers_that_are_not_keyholds(fake, status, body):
    fake.error = (status, body)
    obj = json_error(cli(fake, "--json", "key", "list"), "bad_response")
    assert str(fake.socket) in obj["message"]


def test_versions_that_are_not_a_list(fake):
    fake.keys = {"active": 1, "versions": {"1": {}}}
    json_error(cli(fake, "--json", "key", "list"), "bad_response")


# ----------------------------------------------------------------------------- audit tail

def test_audit_tail_default_20_lines(fake):
    fake.chains["acme"] = [record(i) for i in range(1, 31)]
    p = cli(fake, "audit", "tail")
    assert p.returncode == 0, p
    assert fake.requests == ["/admin/audit?last=20"]
    lines = p.stdout.splitlines()
    assert len(lines) == 20
    assert lines[0] == ("11  2026-12-06T14:00:11.000Z  local:uid=0  read  user-11  ok  "
                        "key_version=2  client=local  request_id=req-11")


def test_audit_tail_json_lines(fake):
    p = cli(fake, "audit", "tail", "-n", "3", "--json")
    assert p.returncode == 0, p
    assert fake.requests == ["/admin/audit?last=3"]
    lines = p.stdout.splitlines()
    assert [json.loads(l) for l in lines] == fake.chains["acme"][-3:]
    # as the server sent them: its member order (reversed by this server), compact
    assert lines[0] == json.dumps(dict(reversed(list(record(8).items()))),
                                  separators=(",", ":"), ensure_ascii=False)


def test_audit_tail_escapes_for_the_terminal(fake):
    p = cli(fake, "audit", "tail", "-n", "8")
    line = p.stdout.splitlines()[0]
    assert line.split("  ")[4] == 'Z\u00fcrich "q" \\\\ tab\\x09'


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_audit_tail_follow_until_a_signal(fake, sig):
    fake.chains["acme"] = [record(i) for i in range(1, 4)]
    proc = subprocess.Popen([str(cli_binary()), "audit", "tail", "-f", "-n", "2", "--json",
                             "--socket", str(fake.socket)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert json.loads(proc.stdout.readline())["seq"] == 2
        assert json.loads(proc.stdout.readline())["seq"] == 3
        with fake.lock:
            fake.chains["acme"] += [record(4), record(5)]
        assert json.loads(proc.stdout.readline())["seq"] == 4  # blocks until it polled
        assert json.loads(proc.stdout.readline())["seq"] == 5
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == "" and err == ""
    # it asked for what follows the last record it had, never again for what it printed
    follow = [r for r in fake.requests[1:]]
    assert follow and follow[0] == "/admin/audit?since=4&limit=10000", fake.requests
    assert all(r in ("/admin/audit?since=4&limit=10000", "/admin/audit?since=6&limit=10000")
               for r in follow), fake.requests


# ----------------------------------------------------------------------------- audit export

def test_audit_export_pages_and_writes_canonical_lines(fake, tmp_path):
    fake.page_max = 4  # 10 records: pages 1-4, 5-8, 9-10
    out = tmp_path / "acme.jsonl"
    p = cli(fake, "audit", "export", out, "--json")
    assert p.returncode == 0, p
    assert json.loads(p.stdout) == {"file": str(out), "records": 10, "first_seq": 1,
                                    "last_seq": 10}
    assert fake.requests == ["/admin/audit?since=1&limit=10000", "/admin/audit?since=5&limit=10000",
                             "/admin/audit?since=9&limit=10000"]
    text = out.read_text(encoding="utf-8")
    assert text == "".join(canonical(r) + "\n" for r in fake.chains["acme"])
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["acme.jsonl", "admin.sock"]  # no temporary left


def test_audit_export_human_summary_and_since(fake, tmp_path):
    out = tmp_path / "since.jsonl"
    p = cli(fake, "audit", "export", "--since", "7", out)
    assert p.returncode == 0, p
    assert p.stdout == ("Exported 4 records (seq 7 to 10, the chain's head).\n"
                        f"Check it: keyhold audit verify {out} --public-key PEM --first-seq 7 "
                        "--through-seq 10\n")
    assert p.stderr == ""  # no progress bar: stderr is no terminal
    assert fake.requests == ["/admin/audit?since=7&limit=10000"]
    assert [json.loads(l)["seq"] for l in out.read_text().splitlines()] == [7, 8, 9, 10]


def test_audit_export_hint_quotes_a_file_name_for_the_shell(fake, tmp_path):
    out = tmp_path / "it's a chain.jsonl"
    p = cli(fake, "audit", "export", out)
    assert p.returncode == 0, p
    quoted = "'" + str(out).replace("'", "'\\''") + "'"
    assert p.stdout.splitlines()[1] == (f"Check it: keyhold audit verify {quoted} --public-key "
                                        "PEM --first-seq 1 --through-seq 10")


def test_audit_export_refuses_an_empty_page_below_the_head(fake, tmp_path):
    """A page with no records while the head says more exist would end the export short of
    the head it reports: refused, and nothing written."""
    fake.page_max, fake.hide_from = 4, 5  # records 1-4, then an empty page; the head stays 10
    out = tmp_path / "short.jsonl"
    obj = json_error(cli(fake, "--json", "audit", "export", out), "bad_response")
    assert "reaches seq 10 but the records it sent end at seq 4" in obj["message"], obj
    assert not out.exists()

    fake.page_max, fake.hide_from = 10000, 1  # no record at all, the head 10
    obj = json_error(cli(fake, "--json", "audit", "export", out), "bad_response")
    assert "reaches seq 10 but it sent no record from seq 1" in obj["message"], obj
    assert not out.exists()

    fake.hide_from = 2**63  # --since past the head: nothing to export, and that is right
    p = cli(fake, "--json", "audit", "export", out, "--since", "11")
    assert p.returncode == 0, p
    assert json.loads(p.stdout)["records"] == 0


def test_audit_export_refuses_to_overwrite(fake, tmp_path):
    out = tmp_path / "x.jsonl"
    out.write_text("precious\n")
    obj = json_error(cli(fake, "--json", "audit", "export", out), "file_exists")
    assert "--force" in obj["message"]
    assert out.read_text() == "precious\n"
    assert fake.requests == []  # refused before asking the server

    p = cli(fake, "audit", "export", out, "--force")
    assert p.returncode == 0, p
    assert len(out.read_text().splitlines()) == 10


def test_audit_export_to_stdout(fake):
    p = cli(fake, "audit", "export", "-")
    assert p.returncode == 0, p
    assert p.stdout == "".join(canonical(r) + "\n" for r in fake.chains["acme"])
    assert p.stderr == ("Exported 10 records (seq 1 to 10, the chain's head).\n"
                        "Check it: keyhold audit verify FILE --public-key PEM --first-seq 1 "
                        "--through-seq 10\n")
    p = cli(fake, "audit", "export", "-", "--json")
    assert p.returncode == 2


def test_audit_export_of_an_empty_chain(fake, tmp_path):
    fake.chains["acme"] = []
    out = tmp_path / "empty.jsonl"
    p = cli(fake, "--json", "audit", "export", out)
    assert p.returncode == 0, p
    assert json.loads(p.stdout) == {"file": str(out), "records": 0, "first_seq": None,
                                    "last_seq": None}
    assert out.read_bytes() == b""


@pytest.mark.parametrize("damage", ["upper-hex", "missing-field", "extra-field"])
def test_audit_export_refuses_what_is_no_chain(fake, tmp_path, damage):
    recs = fake.chains["acme"]
    if damage == "upper-hex":
        recs[4]["hash"] = recs[4]["hash"].upper().replace("0", "A")
    elif damage == "missing-field":
        del recs[4]["client"]
    else:
        recs[4]["extra"] = 1
    out = tmp_path / "bad.jsonl"
    obj = json_error(cli(fake, "--json", "audit", "export", out), "bad_response")
    assert "seq" in obj["message"]
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["admin.sock"]


def test_audit_export_copies_a_chain_with_a_gap_for_verify_to_judge(fake, tmp_path):
    """Records that are records but do not follow on (one removed from the stored chain)
    are what the server holds: the export copies them, warns, and verify names the gap."""
    del fake.chains["acme"][4]
    out = tmp_path / "gap.jsonl"
    p = cli(fake, "--json", "audit", "export", out)
    assert p.returncode == 0, p
    assert "goes from seq 4 to 6" in p.stderr
    assert [json.loads(l)["seq"] for l in out.read_text().splitlines()] == [1, 2, 3, 4, 6, 7, 8, 9, 10]


def test_audit_export_server_chain(fake, tmp_path):
    out = tmp_path / "server.jsonl"
    p = cli(fake, "audit", "export", out, "--server")
    assert p.returncode == 0, p
    assert fake.requests == ["/server/audit?since=1&limit=10000"]
    assert [json.loads(l)["tenant"] for l in out.read_text().splitlines()] == ["", "", ""]
    p = cli(fake, "audit", "export", tmp_path / "y", "--server", "--tenant", "acme")
    assert p.returncode == 2 and "two different chains" in p.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_export_leaves_nothing(fake, tmp_path, sig):
    fake.page_max, fake.stall_after_first = 4, True
    out = tmp_path / "x.jsonl"
    proc = subprocess.Popen([str(cli_binary()), "--json", "audit", "export", str(out),
                             "--socket", str(fake.socket)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert fake.stalled.wait(60)  # the first page is written, the second on its way
        proc.send_signal(sig)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        fake.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert json.loads(stdout) == {"code": "interrupted", "message": "interrupted; nothing written"}
    assert sorted(os.listdir(tmp_path)) == ["admin.sock"]


def test_audit_export_to_a_missing_folder(fake, tmp_path):
    obj = json_error(cli(fake, "--json", "audit", "export", tmp_path / "no" / "f"), "file_error")
    assert "No such file or directory" in obj["message"]


# ----------------------------------------------------------------------------- audit public-key

def test_audit_public_key(fake):
    p = cli(fake, "audit", "public-key")
    assert p.returncode == 0, p
    assert p.stdout == PEM
    assert fake.requests == ["/admin/audit/public-key"]
    p = cli(fake, "audit", "public-key", "--server", "--json")
    assert json.loads(p.stdout) == {"pem": PEM, "algorithm": "rsa-pss-sha256"}
    assert fake.requests[-1] == "/server/audit/public-key"


# ----------------------------------------------------------------------------- over HTTPS

@pytest.fixture
def fake_tls(pki, tmp_path):
    f = FakeAdmin()
    f.token = "admin-token-1"
    cert, key = pki.leaf("fake-admin")
    srv = TLSServer(("127.0.0.1", 0), _handler(f))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    f.url = f"https://127.0.0.1:{srv.server_address[1]}"
    f.ca = pki.ca_pem
    yield f
    srv.shutdown()
    srv.server_close()


def test_url_with_token_and_cacert(fake_tls, tmp_path):
    f = fake_tls
    p = run_cli("key", "list", "--json", "--url", f.url, "--cacert", f.ca, "--token", f.token,
                "--tenant", "acme")
    assert p.returncode == 0, p
    assert json.loads(p.stdout) == KEYS["versions"]
    assert f.requests == ["/t/acme/admin/keys"]

    tok = tmp_path / "token"
    tok.write_text(f.token + "\n")
    tok.chmod(0o600)
    p = run_cli("key", "list", "--url", f.url + "/", "--token-file", tok,
                env={"KEYHOLD_CACERT": str(f.ca)})
    assert p.returncode == 0, p

    p = run_cli("key", "list", env={"KEYHOLD_URL": f.url, "KEYHOLD_TOKEN": f.token,
                                    "KEYHOLD_CACERT": str(f.ca)})
    assert p.returncode == 0, p


def test_url_with_a_wrong_token(fake_tls):
    f = fake_tls
    obj = json_error(run_cli("--json", "key", "list", "--url", f.url, "--cacert", f.ca,
                             "--token", "wrong"), "invalid_token")
    assert obj["message"] == "The token is not valid."


def test_url_not_trusted_without_its_ca(fake_tls, tmp_path):
    f = fake_tls
    other = tmp_path / "other-ca.pem"
    other.write_bytes(pathlib.Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
                      if pathlib.Path("/etc/ssl/certs/ca-certificates.crt").exists() else b"")
    for extra in ([], ["--cacert", other]):
        obj = json_error(run_cli("--json", "key", "list", "--url", f.url, "--token", f.token,
                                 *extra), "tls_error")
        assert f.url in obj["message"] and "--cacert" in obj["message"]
    assert f.requests == []  # the token never left


def test_server_chain_needs_the_socket(fake_tls):
    f = fake_tls
    p = run_cli("audit", "tail", "--server", "--url", f.url, "--cacert", f.ca, "--token", f.token)
    assert p.returncode == 2 and "only on the admin socket" in p.stderr


# ----------------------------------------------------------------------------- default socket

def test_dev_folder_socket_is_found(tmp_path):
    if os.path.exists("/run/keyhold/admin.sock"):
        pytest.skip("this host runs a keyholdd on the default socket, which comes first")
    f = FakeAdmin()
    (tmp_path / "keyhold-dev").mkdir()
    srv = UnixServer(str(tmp_path / "keyhold-dev" / "admin.sock"), _handler(f))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        p = run_cli("key", "list", "--json", cwd=tmp_path)
    finally:
        srv.shutdown()
        srv.server_close()
    assert p.returncode == 0, p
    assert json.loads(p.stdout) == KEYS["versions"]
