"""keyhold init: the first run of a production install. Offline; tests run it on temporary
folders with the current user as --user (as the contract allows)."""
import json
import os
import pathlib
import pwd
import shutil
import socket
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

import harness

ME = pwd.getpwuid(os.geteuid()).pw_name

# about the file key store itself (keyhold init makes the file store's master key and data folder)
pytestmark = pytest.mark.file_keystore


def init(tmp_path, *args, json_out=True):
    cmd = [str(harness.build_dir() / "src" / "cli" / "keyhold"), "init",
           "--data", str(tmp_path / "data"), "--config", str(tmp_path / "etc" / "keyhold.conf"),
           "--user", ME, *args]
    if json_out:
        cmd.append("--json")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def mode(p: pathlib.Path) -> int:
    return p.stat().st_mode & 0o777


def test_init_creates_the_master_key_and_the_data_folder(tmp_path):
    p = init(tmp_path)
    assert p.returncode == 0, p
    out = json.loads(p.stdout)
    etc, data = tmp_path / "etc", tmp_path / "data"
    key = etc / "master.key"
    assert out == {"master_key_file": str(key), "data": str(data), "tls_cert": None,
                   "created": [str(etc), str(key), str(data), str(data / "keystore")]}
    assert len(key.read_bytes()) == 32 and mode(key) == 0o600
    assert key.stat().st_uid == os.geteuid()
    assert mode(data) == 0o700 and mode(data / "keystore") == 0o700
    assert not (etc / "tls.key").exists() and not (etc / "keyhold.conf").exists()


def test_init_never_overwrites_a_master_key(tmp_path):
    assert init(tmp_path).returncode == 0
    key = tmp_path / "etc" / "master.key"
    before = key.read_bytes()
    p = init(tmp_path, json_out=False)
    assert p.returncode == 0, p
    assert f"kept      {key} (exists; a master key is never overwritten)" in p.stdout, p
    assert key.read_bytes() == before
    p = init(tmp_path)
    assert p.returncode == 0 and json.loads(p.stdout)["created"] == [], p


def test_init_refuses_a_file_that_is_no_master_key_and_keeps_it(tmp_path):
    (tmp_path / "etc").mkdir()
    key = tmp_path / "etc" / "master.key"
    key.write_bytes(b"x" * 31)
    p = init(tmp_path)
    assert p.returncode == 1, p
    err = json.loads(p.stdout)
    assert err["code"] == "invalid_master_key" and "not a 32-byte master key" in err["message"]
    assert key.read_bytes() == b"x" * 31
    assert not (tmp_path / "data").exists()      # it stopped there


def test_init_self_signed_makes_a_key_and_certificate_for_this_host(tmp_path):
    p = init(tmp_path, "--self-signed")
    assert p.returncode == 0, p
    out = json.loads(p.stdout)
    etc = tmp_path / "etc"
    assert out["tls_cert"] == str(etc / "tls.crt")
    assert out["created"][-2:] == [str(etc / "tls.key"), str(etc / "tls.crt")]
    assert mode(etc / "tls.key") == 0o600 and mode(etc / "tls.crt") == 0o644
    cert = x509.load_pem_x509_certificate((etc / "tls.crt").read_bytes())
    key = serialization.load_pem_private_key((etc / "tls.key").read_bytes(), password=None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    host = socket.gethostname()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == host
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [host]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # a second run keeps both
    before = (etc / "tls.key").read_bytes()
    p = init(tmp_path, "--self-signed")
    assert p.returncode == 0 and json.loads(p.stdout)["created"] == [], p
    assert (etc / "tls.key").read_bytes() == before


def test_init_prints_the_remaining_steps(tmp_path):
    p = init(tmp_path, "--self-signed", json_out=False)
    assert p.returncode == 0, p
    conf = tmp_path / "etc" / "keyhold.conf"
    for needle in (f"In {conf}:", "[tenant.default] issuer = ", "cors_origins = ",
                   f"keyholdd --check-config --config {conf}", "systemctl enable --now keyhold",
                   "/health", f"tls_cert = {tmp_path / 'etc' / 'tls.crt'}"):
        assert needle in p.stdout, (needle, p.stdout)


def test_init_for_a_user_that_does_not_exist(tmp_path):
    p = subprocess.run([str(harness.build_dir() / "src" / "cli" / "keyhold"), "init", "--json",
                        "--data", str(tmp_path / "d"), "--config", str(tmp_path / "c.conf"),
                        "--user", "no-such-user-kh18"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p
    assert json.loads(p.stdout)["code"] == "no_such_user"
    assert not (tmp_path / "master.key").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user")
def test_init_as_another_user_cannot_give_files_away(tmp_path):
    nobody = pwd.getpwnam("nobody")
    work = tmp_path / "w"
    work.mkdir()
    os.chown(work, nobody.pw_uid, nobody.pw_gid)
    tmp_path.chmod(0o755)

    def as_nobody():
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
    bin_dir = harness.public_copy(harness.build_dir() / "src" / "cli" / "keyhold")
    try:
        p = subprocess.run([str(bin_dir / "keyhold"), "init", "--json",
                            "--data", str(work / "d"), "--config", str(work / "c.conf"),
                            "--user", "root"], capture_output=True, text=True, timeout=60,
                           preexec_fn=as_nobody)
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)
    assert p.returncode == 1, p
    assert json.loads(p.stdout)["code"] == "not_permitted"
    assert not (work / "master.key").exists()


@pytest.mark.sqlite_only
def test_a_server_starts_on_what_init_made(make_keyholdd, tmp_path):
    """The master key and data folder init makes are what keyholdd needs."""
    assert init(tmp_path).returncode == 0
    k = make_keyholdd(start=False)
    text = k.config_text().replace(f"master_key_file = {k.master_key}",
                                   f"master_key_file = {tmp_path / 'etc' / 'master.key'}")
    text = text.replace(f"path = {k.data / 'keystore'}", f"path = {tmp_path / 'data' / 'keystore'}")
    text = text.replace(f"path = {k.db_path}", f"path = {tmp_path / 'data' / 'keyhold.db'}")
    k.config_path.write_text(text)
    k.start()
    assert harness.poll_until(lambda: k.client.get("/health").status == 200, timeout=20), k.log()
    assert (tmp_path / "data" / "keyhold.db").exists()
    assert any((tmp_path / "data" / "keystore").iterdir())
