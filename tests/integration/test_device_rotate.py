"""Issue #17: `keyhold device rotate` re-wraps a member's trusted devices for a new user key
through POST /devices/update-trust, from one trusted device, against the real keyholdd (the
fixtures and the Member helper of the trusted-device story).

Every user key a device unlocks afterwards is compared with the one the test made."""
import base64
import json
import os
import pathlib

import pytest

import harness
from test_cli import commands, json_error, run_cli
from test_trusted_devices_story import ADMINS, Member


@pytest.fixture(scope="module")
def k(pki, issuers, tmp_path_factory):
    d = harness.Keyholdd(tmp_path_factory.mktemp("keyholdd-rotate"), pki,
                         {"default": {"issuer": issuers["default"], "admins": ADMINS},
                          "acme": {"issuer": issuers["acme"], "admins": ADMINS}})
    yield from harness.serve(d)


@pytest.fixture
def alice(k, default_issuer, pki, tmp_path) -> Member:
    return Member(k, default_issuer, pki, tmp_path)


def new_key(tmp: pathlib.Path, name: str) -> tuple[str, pathlib.Path]:
    key = base64.b64encode(os.urandom(64)).decode()
    f = tmp / f"{name}.key"
    f.write_text(key + "\n")
    f.chmod(0o600)
    return key, f


def unlocks(m: Member, device: str) -> str:
    return m.on_json(device, "device", "unlock")["user_key"]


def trusted(m: Member) -> dict[str, bool]:
    p = m.admin("device", "list", "--user", m.id, "--json")
    assert p.returncode == 0, p
    return {d["name"]: d["trusted"] for d in json.loads(p.stdout)}


def test_the_command_is_listed_with_help():
    assert "device rotate" in commands()
    p = run_cli("device", "rotate", "--help")
    assert p.returncode == 0, p
    assert "--new-user-key-file" in p.stdout and "--untrust-unlisted" in p.stdout
    assert "Example:\n  keyhold device rotate" in p.stdout


@pytest.mark.parametrize("tenant", [None, "acme"])
def test_three_devices_open_the_new_key(k, issuers, pki, tmp_path, tenant):
    m = Member(k, issuers[tenant or "default"], pki, tmp_path, tenant)
    for device in ("laptop", "desktop", "phone", "old"):
        m.trust(device)
    m.on_json("laptop", "device", "untrust", m.identifier("old"))
    json_error(m.on("old", "device", "unlock", "--json"), "not_trusted")
    key, key_file = new_key(tmp_path, "new")

    got = m.on_json("desktop", "device", "rotate", "--new-user-key-file", key_file)
    assert got == {"rotated": 3, "skipped": [], "untrusted_unlisted": False}

    for device in ("laptop", "desktop", "phone"):
        assert unlocks(m, device) == key, device
    # the device untrusted before stays untrusted
    err = json_error(m.on("old", "device", "unlock", "--json"), "not_trusted")
    assert "untrusted" in err["message"]
    if not tenant:
        assert trusted(m) == {"laptop": True, "desktop": True, "phone": True, "old": False}
    # the device key files did not change: a second rotation from another device works
    key2, key2_file = new_key(tmp_path, "newer")
    p = m.on("phone", "device", "rotate", "--new-user-key-file", key2_file)
    assert p.returncode == 0, p
    assert p.stdout == "Rotated: 3 devices now open the new user key (this device and 2 " \
                       "others).\n", p
    assert [unlocks(m, d) for d in ("laptop", "desktop", "phone")] == [key2] * 3
    json_error(m.on("old", "device", "unlock", "--json"), "not_trusted")


def test_new_key_from_stdin_and_a_single_device(alice, tmp_path):
    alice.trust("laptop")
    key, key_file = new_key(tmp_path, "new")
    p = run_cli("--url", f"https://127.0.0.1:{alice.k.port}", "--cacert", alice.ca,
                "--token-file", alice.token_file, "--state", alice.state("laptop"),
                "device", "rotate", "--new-user-key-file", "-", stdin=open(key_file))
    assert p.returncode == 0, p
    assert p.stdout == "Rotated: 1 device now opens the new user key (this device and 0 " \
                       "others).\n", p
    assert unlocks(alice, "laptop") == key


def test_a_device_of_another_key_is_left_out_then_untrusted(alice, tmp_path):
    """A trusted device whose public key was wrapped under another user key cannot be
    re-wrapped: it is named and keeps its values; with --untrust-unlisted it is untrusted."""
    alice.trust("laptop")
    alice.trust("desktop")
    other, other_file = new_key(tmp_path, "other")
    rogue = alice.on_json("rogue", "device", "trust", "--user-key-file", other_file,
                          "--name", "rogue")
    assert unlocks(alice, "rogue") == other

    key, key_file = new_key(tmp_path, "new")
    p = alice.on("laptop", "device", "rotate", "--new-user-key-file", key_file)
    assert p.returncode == 0, p
    lines = p.stdout.splitlines()
    assert lines[0] == "Rotated: 2 devices now open the new user key (this device and 1 other)."
    assert lines[1] == (f"Left out: device {rogue['id']} (rogue): its public key was wrapped "
                        "under another user key; it keeps its trust under the old user key "
                        "(untrust it, or rotate with --untrust-unlisted).")
    assert len(lines) == 2, p
    assert unlocks(alice, "laptop") == key and unlocks(alice, "desktop") == key
    assert unlocks(alice, "rogue") == other  # untouched without the flag

    key2, key2_file = new_key(tmp_path, "newer")
    got = alice.on_json("desktop", "device", "rotate", "--new-user-key-file", key2_file,
                        "--untrust-unlisted")
    assert got == {"rotated": 2, "skipped": [rogue["id"]], "untrusted_unlisted": True}
    assert unlocks(alice, "laptop") == key2 and unlocks(alice, "desktop") == key2
    json_error(alice.on("rogue", "device", "unlock", "--json"), "not_trusted")
    assert trusted(alice) == {"laptop": True, "desktop": True, "rogue": False}


def test_untrust_unlisted_with_every_device_rewrapped_untrusts_nothing(alice, tmp_path):
    for device in ("laptop", "desktop", "phone", "old"):
        alice.trust(device)
    alice.on_json("laptop", "device", "untrust", alice.identifier("old"))
    key, key_file = new_key(tmp_path, "new")
    got = alice.on_json("phone", "device", "rotate", "--new-user-key-file", key_file,
                        "--untrust-unlisted")
    assert got == {"rotated": 3, "skipped": [], "untrusted_unlisted": True}
    assert [unlocks(alice, d) for d in ("laptop", "desktop", "phone")] == [key] * 3
    json_error(alice.on("old", "device", "unlock", "--json"), "not_trusted")
    assert trusted(alice) == {"laptop": True, "desktop": True, "phone": True, "old": False}


def test_a_bad_new_key_changes_nothing(alice, tmp_path):
    alice.trust("laptop")
    alice.trust("desktop")
    alice.trust("phone")

    def unchanged():
        for device in ("laptop", "desktop", "phone"):
            assert unlocks(alice, device) == alice.user_key, device

    # no option: a usage error
    p = alice.on("laptop", "device", "rotate")
    assert p.returncode == 2 and p.stdout == "", p
    assert "--new-user-key-file" in p.stderr, p
    # a missing file
    err = json_error(alice.on("laptop", "device", "rotate", "--new-user-key-file",
                              tmp_path / "absent.key", "--json"), "file_error")
    assert "absent.key" in err["message"]
    p = alice.on("laptop", "device", "rotate", "--new-user-key-file", tmp_path / "absent.key")
    assert p.returncode == 1 and p.stdout == "" and "(file_error)" in p.stderr, p
    # not 64 bytes, not base64, empty
    short = tmp_path / "short.key"
    short.write_text(base64.b64encode(os.urandom(32)).decode())
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not base64 at all!\n")
    empty = tmp_path / "empty.key"
    empty.write_text("")
    for f in (short, garbage, empty):
        err = json_error(alice.on("laptop", "device", "rotate", "--new-user-key-file", f,
                                  "--json"), "invalid_key")
        assert "base64 of 64 bytes" in err["message"], err
    p = run_cli("--url", f"https://127.0.0.1:{alice.k.port}", "--cacert", alice.ca,
                "--token-file", alice.token_file, "--state", alice.state("laptop"),
                "device", "rotate", "--new-user-key-file", "-", "--json",
                stdin=open(short))
    json_error(p, "invalid_key")
    # the current key again
    err = json_error(alice.on("laptop", "device", "rotate", "--new-user-key-file",
                              alice.key_file, "--json"), "same_key")
    assert "current user key" in err["message"]
    unchanged()


def test_rotate_from_a_device_that_is_not_trusted(alice, tmp_path):
    alice.trust("laptop")
    alice.trust("desktop")
    alice.on_json("laptop", "device", "untrust", alice.identifier("desktop"))
    key, key_file = new_key(tmp_path, "new")
    json_error(alice.on("desktop", "device", "rotate", "--new-user-key-file", key_file,
                        "--json"), "not_trusted")
    json_error(alice.on("fresh", "device", "rotate", "--new-user-key-file", key_file,
                        "--json"), "not_trusted")
    assert unlocks(alice, "laptop") == alice.user_key
