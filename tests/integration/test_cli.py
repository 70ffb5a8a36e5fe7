"""The `keyhold` command line through the real binary: usage errors (exit 2), help for every
command, connection failures (exit 1, a message naming the socket and what to check, and
{"code", "message"} with --json), a server's error passed on from the real keyholdd, and
dev-token. The commands' behaviour against the admin routes is in test_cli_fake.py (a fake
server that answers as docs/admin-api.md says)."""
import base64
import json
import os
import pathlib
import re
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import harness

RUN_TIMEOUT_S = 120  # a hang guard only: every command here answers at once or fails


def cli_binary() -> pathlib.Path:
    return harness.build_dir() / "src" / "cli" / "keyhold"


def cli_env(extra: dict | None = None) -> dict:
    """The environment without any KEYHOLD_* of the caller's, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHOLD_")}
    env.update(extra or {})
    return env


def run_cli(*args, env: dict | None = None, cwd=None, stdin=None) -> subprocess.CompletedProcess:
    binary = cli_binary()
    if not binary.exists():
        pytest.fail(f"keyhold not built: {binary} (set KEYHOLD_BUILD to a meson build dir)",
                    pytrace=False)
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                          env=cli_env(env), cwd=cwd, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                          timeout=RUN_TIMEOUT_S)


def json_error(p: subprocess.CompletedProcess, code: str) -> dict:
    """A --json failure: exit 1 and exactly one JSON object {"code", "message", ...} on stdout."""
    assert p.returncode == 1, p
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p
    obj = json.loads(lines[0])
    assert obj["code"] == code, obj
    assert isinstance(obj["message"], str) and obj["message"], obj
    return obj


def commands() -> list[str]:
    """The command paths `keyhold --help` lists."""
    p = run_cli("--help")
    assert p.returncode == 0, p
    section = p.stdout.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    out = []
    for line in section.splitlines():
        words = line.split("  ")[1].strip().split()  # "  audit export FILE   summary"
        out.append(" ".join(w for w in words if not w.isupper()))
    return out


# ----------------------------------------------------------------------------- usage and help

def test_every_command_of_the_issue_is_listed():
    assert set(commands()) >= {"key list", "key status", "audit tail", "audit export",
                               "audit public-key", "audit verify", "dev-token"}


@pytest.mark.parametrize("how", ["flag-after", "flag-before", "help-word", "short"])
def test_each_command_has_help_with_an_example(how):
    for path in commands():
        words = path.split()
        args = {"flag-after": [*words, "--help"], "flag-before": ["--help", *words],
                "help-word": ["help", *words], "short": [*words, "-h"]}[how]
        p = run_cli(*args)
        assert p.returncode == 0, p
        assert p.stderr == "", p
        assert p.stdout.startswith(f"Usage: keyhold {path}"), p.stdout
        example = p.stdout.split("\nExample:\n", 1)[1].splitlines()[0].strip()
        assert example.startswith(f"keyhold {path}"), (path, example)
        assert "Global options (before or after the command):" in p.stdout


@pytest.mark.parametrize("group,members", [("key", ["key list", "key status"]),
                                           ("audit", ["audit tail", "audit export",
                                                      "audit public-key", "audit verify"])])
def test_group_help_lists_its_commands(group, members):
    p = run_cli(group, "--help")
    assert p.returncode == 0, p
    assert p.stdout.startswith(f"Usage: keyhold {group} COMMAND"), p.stdout
    for m in members:
        assert re.search(rf"^  {m}\b", p.stdout, re.M), (m, p.stdout)
    assert "key list" not in p.stdout if group == "audit" else "audit tail" not in p.stdout
    assert "\nExample:\n  keyhold " + group in p.stdout


def test_program_help_names_global_options_and_exit_codes():
    p = run_cli("--help")
    assert p.returncode == 0
    for opt, env in [("--socket PATH", "KEYHOLD_SOCKET"), ("--url URL", "KEYHOLD_URL"),
                     ("--token TOKEN", "KEYHOLD_TOKEN"), ("--token-file FILE", None),
                     ("--cacert PEM", "KEYHOLD_CACERT"), ("--tenant T", "KEYHOLD_TENANT"),
                     ("--json", None), ("--help", None)]:
        line = next((l for l in p.stdout.splitlines() if opt in l), None)
        assert line is not None, opt
        if env:
            assert f"[{env}]" in line, line
    assert "2 usage error" in p.stdout
    assert "/run/keyhold/admin.sock" in p.stdout and "./keyhold-dev/admin.sock" in p.stdout


def test_no_command_is_a_usage_error_with_the_help():
    p = run_cli()
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.startswith("Usage: keyhold COMMAND")


def test_group_without_command_is_a_usage_error():
    p = run_cli("key")
    assert p.returncode == 2
    assert p.stderr.startswith("Usage: keyhold key COMMAND")


@pytest.mark.parametrize("args,message,hint", [
    (["frobnicate"], "unknown command 'frobnicate'", "keyhold"),
    (["key", "lsit"], "unknown command 'key lsit'", "keyhold key"),
    (["key", "list", "--frob"], "unknown option '--frob'", "keyhold key list"),
    (["--frob", "key", "list"], "unknown option '--frob'", "keyhold"),
    (["key", "list", "extra"], "unexpected argument 'extra'", "keyhold key list"),
    (["audit", "export"], "missing FILE", "keyhold audit export"),
    (["audit", "verify", "f.jsonl"], "--public-key PEM is required", "keyhold audit verify"),
    (["audit", "tail", "-n", "0"], "--lines must be a number from 1 to 10000",
     "keyhold audit tail"),
    (["audit", "tail", "-n", "5x"], "--lines must be a number from 1 to 10000",
     "keyhold audit tail"),
    (["audit", "export", "f", "--since", "0"], "--since must be a number", "keyhold audit export"),
    (["key", "list", "--socket"], "option --socket needs a value (PATH)", "keyhold key list"),
    (["key", "list", "--url", "https://k.example", "--socket", "/s"],
     "--url and --socket name two different servers", "keyhold key list"),
    (["key", "list", "--url", "https://k.example"], "--url needs an admin token",
     "keyhold key list"),
    (["key", "list", "--url", "http://k.example", "--token", "t"],
     "is not an https:// URL", "keyhold key list"),
    (["key", "list", "--tenant", "Not_A_Tenant"], "is no tenant id", "keyhold key list"),
    (["dev-token"], "--user must be a GUID", "keyhold dev-token"),
    (["dev-token", "--user", "3fa85f64-5717-4562-b3fc-2c963f66afa6", "--ttl", "0"],
     "--ttl must be a number from 1 to 86400", "keyhold dev-token"),
])
def test_usage_errors_exit_2_with_a_hint(args, message, hint):
    p = run_cli(*args)
    assert p.returncode == 2, p
    assert p.stdout == ""
    first, second = p.stderr.splitlines()[:2]
    assert message in first, p.stderr
    assert second == f"Run '{hint} --help' for usage.", p.stderr


def test_usage_error_with_json_is_an_object_too():
    p = run_cli("--json", "key", "list", "--frob")
    assert p.returncode == 2
    assert json.loads(p.stdout) == {"code": "usage", "message": "unknown option '--frob'"}


def test_version():
    p = run_cli("--version")
    assert p.returncode == 0 and re.fullmatch(r"keyhold \d+\.\d+\.\d+\n", p.stdout), p


# ----------------------------------------------------------------------------- connection failures

@pytest.mark.parametrize("cmd", [["key", "list"], ["key", "status"], ["audit", "tail"],
                                 ["audit", "public-key"]])
def test_missing_socket_names_it_and_what_to_check(tmp_path, cmd):
    sock = tmp_path / "nowhere" / "admin.sock"
    p = run_cli(*cmd, "--socket", sock)
    assert p.returncode == 1, p
    assert p.stdout == ""
    assert str(sock) in p.stderr
    assert "No such file or directory" in p.stderr
    assert "is keyholdd running" in p.stderr
    assert p.stderr.rstrip().endswith("(unreachable)"), p.stderr

    p = run_cli("--json", *cmd, "--socket", sock)
    obj = json_error(p, "unreachable")
    assert str(sock) in obj["message"] and "is keyholdd running" in obj["message"]
    assert set(obj) == {"code", "message"}


def test_socket_from_the_environment(tmp_path):
    sock = tmp_path / "env.sock"
    obj = json_error(run_cli("--json", "key", "list", env={"KEYHOLD_SOCKET": str(sock)}),
                     "unreachable")
    assert str(sock) in obj["message"]


def test_stale_socket_says_nothing_listens(tmp_path):
    import socket
    sock = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    s.close()  # the file stays, nobody listens
    obj = json_error(run_cli("--json", "key", "list", "--socket", sock), "unreachable")
    assert "Connection refused" in obj["message"] and "nothing listens" in obj["message"]


def test_default_socket_is_named_when_nothing_is_there(tmp_path):
    if os.path.exists("/run/keyhold/admin.sock"):
        pytest.skip("this host runs a keyholdd on the default socket")
    obj = json_error(run_cli("--json", "key", "list", cwd=tmp_path), "unreachable")
    assert "/run/keyhold/admin.sock" in obj["message"]


def test_unreachable_url_names_it(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a port nobody listens on
    url = f"https://127.0.0.1:{port}"
    p = run_cli("key", "list", "--url", url, "--token", "abc")
    assert p.returncode == 1, p
    assert url in p.stderr and "(unreachable)" in p.stderr


def test_token_file_open_to_others_is_refused(tmp_path):
    f = tmp_path / "token"
    f.write_text("abc\n")
    f.chmod(0o644)
    obj = json_error(run_cli("--json", "key", "list", "--url", "https://127.0.0.1:1",
                             "--token-file", f), "file_error")
    assert "chmod 600" in obj["message"] and "0644" in obj["message"]


# ----------------------------------------------------------------------------- the real keyholdd

def test_server_error_is_passed_on(keyholdd):
    """The router's 404 unknown_tenant, before any admin route: the server's own message."""
    sock = keyholdd.admin_socket
    p = run_cli("key", "list", "--socket", sock, "--tenant", "nosuch")
    assert p.returncode == 1, p
    assert p.stdout == ""
    assert p.stderr == "keyhold key list: No such tenant. (unknown_tenant)\n"

    p = run_cli("--json", "key", "list", "--socket", sock, "--tenant", "nosuch")
    assert p.returncode == 1
    assert json.loads(p.stdout) == {"message": "No such tenant.", "code": "unknown_tenant"}


# ----------------------------------------------------------------------------- dev-token

def _dev_folder(tmp_path) -> tuple[pathlib.Path, ec.EllipticCurvePublicKey]:
    data = tmp_path / "keyhold-dev"
    data.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    (data / "dev-issuer.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return data, key.public_key()


def _b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _check_dev_token(token: str, pub, user: str, ttl: int) -> dict:
    head, body, sig = token.split(".")
    header = json.loads(_b64url(head))
    assert header["alg"] == "ES256" and header["kid"] == "keyhold-dev-1", header
    raw = _b64url(sig)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if bad
    claims = json.loads(_b64url(body))
    assert claims["sub"] == user
    assert claims["iss"] == "https://keyhold.dev.invalid/dev-issuer"
    assert claims["scope"] == ["api", "offline_access"] and claims["amr"] == ["external"]
    assert claims["exp"] - claims["iat"] == ttl
    return claims


def test_dev_token_signs_with_the_dev_issuer_key(tmp_path):
    data, pub = _dev_folder(tmp_path)
    user = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    p = run_cli("dev-token", "--user", user, "--data", data)
    assert p.returncode == 0, p
    _check_dev_token(p.stdout.strip(), pub, user, 3600)

    p = run_cli("dev-token", "--json", "--user", user.upper(), "--ttl", "60", cwd=tmp_path)
    assert p.returncode == 0, p  # the default folder ./keyhold-dev; the GUID lower-cased
    out = json.loads(p.stdout)
    assert set(out) == {"token", "expires"}
    claims = _check_dev_token(out["token"], pub, user, 60)
    assert out["expires"] == claims["exp"]


def test_dev_token_without_a_dev_folder(tmp_path):
    p = run_cli("dev-token", "--user", "3fa85f64-5717-4562-b3fc-2c963f66afa6", cwd=tmp_path)
    assert p.returncode == 1, p
    assert "keyhold-dev/dev-issuer.key" in p.stderr and "keyholdd --dev" in p.stderr
