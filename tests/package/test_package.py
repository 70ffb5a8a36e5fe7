"""The Debian package, installed on this machine: what it holds, the modes and owners it
sets, the shipped example configuration, the systemd unit (verify, security score), the
man pages, lintian, and what remove and purge leave behind (docs/packaging.md).

Installs the .deb with apt-get, so it needs root on a throwaway machine (CI). At the end the
package is purged and what the test made (the keyhold user, the directories) is removed
when it was not there before, so the machine is left as found. A keyhold package already
installed here is never touched: the tests are skipped.

Run: KEYHOLD_DEB=$(scripts/package | tail -1) /usr/bin/python3 -m pytest -q tests/package
"""
import base64
import grp
import json
import os
import pathlib
import pwd
import re
import shutil
import socket
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONF = pathlib.Path("/etc/keyhold/keyhold.conf")
UNIT = pathlib.Path("/lib/systemd/system/keyhold.service")
MAN_PAGES = {"keyholdd": "/usr/share/man/man8/keyholdd.8.gz",
             "keyhold": "/usr/share/man/man1/keyhold.1.gz",
             "keyhold.conf": "/usr/share/man/man5/keyhold.conf.5.gz"}
# DESIGN.md / the issue: every file of a system install.
INSTALLED = ["/usr/sbin/keyholdd", "/usr/bin/keyhold", str(CONF), str(UNIT),
             "/usr/lib/sysusers.d/keyhold.conf", "/usr/lib/tmpfiles.d/keyhold.conf",
             *MAN_PAGES.values()]
MAX_EXPOSURE = 2.0
ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")


def run(*cmd, check=True, env=None, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, **kw)
    if check and r.returncode != 0:
        pytest.fail(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def installed_version():
    r = run("dpkg-query", "-W", "-f=${Status} ${Version}", "keyhold", check=False)
    return r.stdout if r.returncode == 0 and "install ok installed" in r.stdout else None


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def owner(path):
    st = os.stat(path)
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode))


@pytest.fixture(scope="module")
def deb():
    path = os.environ.get("KEYHOLD_DEB")
    if not path:
        pytest.skip("KEYHOLD_DEB is not set (scripts/package prints the .deb's path last)")
    if os.geteuid() != 0:
        pytest.skip("installing the package needs root (a throwaway CI machine)")
    if not pathlib.Path(path).is_file():
        pytest.fail(f"KEYHOLD_DEB={path}: no such file")
    if installed_version():
        pytest.skip("a keyhold package is installed on this machine; the test leaves it alone")
    return pathlib.Path(path).resolve()


@pytest.fixture(scope="module")
def installed(deb):
    """Installs the .deb once for the module; purges it and removes what it made after."""
    before = {"user": user_exists("keyhold"), "group": group_exists("keyhold"),
              "/etc/keyhold": os.path.exists("/etc/keyhold"),
              "/var/lib/keyhold": os.path.exists("/var/lib/keyhold"),
              "/run/keyhold": os.path.exists("/run/keyhold")}
    try:
        run("apt-get", "install", "-y", "-q", "--no-install-recommends", str(deb))
        yield deb
    finally:
        run("apt-get", "purge", "-y", "-q", "keyhold", check=False)
        for d in ("/etc/keyhold", "/var/lib/keyhold", "/run/keyhold"):
            if not before[d]:
                shutil.rmtree(d, ignore_errors=True)
        if not before["user"] and user_exists("keyhold"):
            run("userdel", "keyhold", check=False)
        if not before["group"] and group_exists("keyhold"):
            run("groupdel", "keyhold", check=False)


def test_package_holds_every_installed_path(installed):
    listed = set(run("dpkg-query", "-L", "keyhold").stdout.split())
    for path in INSTALLED:
        assert path in listed, f"{path} is not in the package"
        assert os.path.isfile(path), f"{path} is not installed"
    for exe in ("/usr/sbin/keyholdd", "/usr/bin/keyhold"):
        assert os.access(exe, os.X_OK)
    # the client library and its headers are not part of this package
    assert not [p for p in listed if p.startswith(("/usr/include", "/usr/lib/x86_64", "/usr/lib/lib"))
                or re.search(r"libkeyhold\.(so|a|pc)", p)]


def test_configuration_is_a_conffile_root_keyhold_0640(installed):
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "keyhold").stdout
    assert str(CONF) in conffiles.split()
    assert owner(CONF) == ("root", "keyhold", 0o640)
    assert owner("/etc/keyhold") == ("root", "keyhold", 0o750)


def test_keyhold_system_user_and_data_directory(installed):
    u = pwd.getpwnam("keyhold")
    assert u.pw_uid < 1000, "not a system user"
    assert u.pw_dir == "/var/lib/keyhold"
    assert u.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin")
    assert grp.getgrgid(u.pw_gid).gr_name == "keyhold"
    shadow = run("getent", "shadow", "keyhold").stdout.split(":")
    assert shadow[1] in ("!", "!*", "*", "!!"), "the keyhold user has a password"
    assert owner("/var/lib/keyhold") == ("keyhold", "keyhold", 0o700)


def test_installing_creates_no_secret_and_starts_nothing(installed):
    assert sorted(os.listdir("/etc/keyhold")) == ["keyhold.conf"]
    assert os.listdir("/var/lib/keyhold") == []
    # installed, not enabled (docs/packaging.md): nothing to start before `keyhold init`
    assert not os.path.exists("/etc/systemd/system/multi-user.target.wants/keyhold.service")
    assert run("pgrep", "-u", "keyhold", check=False).returncode == 1


def test_shipped_example_passes_check_config_as_the_keyhold_user(installed):
    # as root, and as the user the unit runs it as (who reads it through the group)
    for cmd in (["keyholdd"], ["runuser", "-u", "keyhold", "--", "keyholdd"]):
        r = run(*cmd, "--check-config", "--config", str(CONF), check=False)
        assert r.returncode == 0, r.stderr
        assert "configuration OK" in r.stdout + r.stderr


def test_unit_is_the_contract(installed):
    text = UNIT.read_text()
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            settings.setdefault(k.strip(), []).append(v.strip())
    assert settings["Type"] == ["notify"]
    assert settings["ExecStart"] == ["/usr/sbin/keyholdd --config /etc/keyhold/keyhold.conf"]
    assert settings["User"] == ["keyhold"]
    assert settings["RuntimeDirectory"] == ["keyhold"]
    assert settings["StateDirectory"] == ["keyhold"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert settings["LimitCORE"] == ["0"]
    assert settings["UMask"] == ["0077"]


def test_unit_passes_systemd_analyze_verify(installed):
    r = run("systemd-analyze", "verify", str(UNIT), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout + r.stderr == "", "systemd-analyze verify warns:\n" + r.stdout + r.stderr


def test_unit_security_exposure_at_most_2(installed):
    r = run("systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT), check=False)
    m = re.search(r"Overall exposure level for keyhold\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    score = float(m.group(1))
    print(f"systemd-analyze security: {score}")
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}:\n{r.stdout}"


def render(page):
    """The man page as plain text, and groff's warnings."""
    r = run("man", "-l", "-P", "cat", MAN_PAGES[page], env=dict(ENV, MANWIDTH="100"))
    text = re.sub(r".\x08", "", r.stdout)
    src = subprocess.run(["zcat", MAN_PAGES[page]], capture_output=True, check=True).stdout
    g = subprocess.run(["groff", "-man", "-ww", "-z"], input=src, capture_output=True)
    return text, g.stderr.decode()


@pytest.mark.parametrize("page", sorted(MAN_PAGES))
def test_man_page_renders(installed, page):
    text, warnings = render(page)
    assert warnings == ""
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
        assert re.search(rf"^{section}$", text, re.M), f"{page}: no {section} section"
    assert re.search(rf"^NAME\n\s+{re.escape(page)} - ", text, re.M)


def config_keys():
    """(section, key) of every KH_CFG_KEY in src/config/keys.def."""
    keys = re.findall(r"^KH_CFG_KEY\(\s*(\w+)\s*,\s*(\w+)\s*,",
                      (ROOT / "src/config/keys.def").read_text(), re.M)
    assert len(keys) > 30
    return keys


def test_keyhold_conf_man_page_lists_every_key(installed):
    text, _ = render("keyhold.conf")
    # the page's sections are [server], [storage], ..., [tenant.ID]
    parts = re.split(r"^\[(\w+)(?:\.ID)?\]$", text, flags=re.M)
    sections = {parts[i].upper(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    missing = [f"[{s.lower()}] {k}" for s, k in config_keys()
               if not re.search(rf"(^|\s|,){k}(\s|$)", sections.get(s, ""), re.M)]
    assert not missing, f"keyhold.conf(5) lacks {missing}"


def test_lintian_reports_no_error(installed):
    r = run("lintian", "--fail-on", "error", str(installed), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not re.search(r"^E: ", r.stdout, re.M), r.stdout


def proc_status(pid):
    return {k: v.split() for k, v in (line.split(":", 1) for line in
            pathlib.Path(f"/proc/{pid}/status").read_text().splitlines())}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_operator_flow_init_then_keyholdd_as_root_drops_to_keyhold(installed, tmp_path):
    """The README's steps on the installed package: keyhold init --self-signed with its
    defaults, then the packaged keyholdd on the shipped configuration, started as root with
    user = keyhold (as without systemd): it runs as keyhold with no capability and serves."""
    made = []
    try:
        r = run("keyhold", "init", "--self-signed", "--json")
        out = json.loads(r.stdout)
        made = [pathlib.Path(p) for p in out["created"]
                if p not in ("/etc/keyhold", "/var/lib/keyhold")]
        assert out["master_key_file"] == "/etc/keyhold/master.key"
        assert out["data"] == "/var/lib/keyhold"
        assert owner("/etc/keyhold/master.key") == ("keyhold", "keyhold", 0o600)
        assert owner("/etc/keyhold/tls.key")[0::2] == ("keyhold", 0o600)
        assert owner("/var/lib/keyhold") == ("keyhold", "keyhold", 0o700)
        # init again never overwrites
        key = pathlib.Path("/etc/keyhold/master.key").read_bytes()
        run("keyhold", "init")
        assert pathlib.Path("/etc/keyhold/master.key").read_bytes() == key

        # The placeholder issuer is unreachable: a local JWKS stands in for it.
        from cryptography.hazmat.primitives.asymmetric import rsa
        n = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key() \
            .public_numbers().n
        b64 = lambda i: base64.urlsafe_b64encode(  # noqa: E731
            i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
        jwks = pathlib.Path("/etc/keyhold/test-jwks.json")
        jwks.write_text(json.dumps({"keys": [{"kty": "RSA", "kid": "k", "alg": "RS256",
                                              "use": "sig", "n": b64(n), "e": "AQAB"}]}))
        jwks.chmod(0o644)
        made.append(jwks)
        port = free_port()
        env = dict(ENV, KEYHOLD_SERVER_USER="keyhold",
                   KEYHOLD_SERVER_LISTEN=f"127.0.0.1:{port}",
                   KEYHOLD_TENANT_DEFAULT_JWKS_FILE=str(jwks))
        log = tmp_path / "keyholdd.log"
        with open(log, "w") as f:
            proc = subprocess.Popen(["/usr/sbin/keyholdd", "--config", str(CONF)],
                                    stdout=f, stderr=subprocess.STDOUT, env=env)
        try:
            ctx = ssl.create_default_context(cafile="/etc/keyhold/tls.crt")
            ctx.check_hostname = False
            status = None
            for _ in range(100):
                try:
                    with urllib.request.urlopen(f"https://127.0.0.1:{port}/health",
                                                context=ctx, timeout=2) as resp:
                        status = resp.status
                    break
                except (OSError, urllib.error.URLError):
                    if proc.poll() is not None:
                        break
                    time.sleep(0.2)
            assert status == 200, log.read_text()

            ks = pwd.getpwnam("keyhold")
            st = proc_status(proc.pid)
            assert st["Uid"] == [str(ks.pw_uid)] * 4 and st["Gid"] == [str(ks.pw_gid)] * 4
            for caps in ("CapPrm", "CapEff", "CapAmb"):
                assert int(st[caps][0], 16) == 0, (caps, st[caps])
            assert st["NoNewPrivs"] == ["1"]
            # the operator, as root, over the packaged admin socket path
            assert owner("/run/keyhold/admin.sock") == ("keyhold", "keyhold", 0o600)
            versions = json.loads(run("keyhold", "--json", "key", "list").stdout)
            assert [v["state"] for v in versions] == ["active"]
            assert owner("/var/lib/keyhold/keyhold.db")[0::2] == ("keyhold", 0o600)
        finally:
            proc.terminate()
            rc = proc.wait(timeout=30)
        assert rc == 0, log.read_text()
    finally:
        # leave /etc/keyhold and /var/lib/keyhold as the package made them
        for p in made:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        for p in pathlib.Path("/var/lib/keyhold").iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        for p in ("master.key", "tls.key", "tls.crt"):
            pathlib.Path("/etc/keyhold", p).unlink(missing_ok=True)


def test_remove_keeps_data_and_configuration_purge_keeps_only_key_material(installed):
    # what an operator's install has: a master key and data (made here as keyhold init would)
    key = pathlib.Path("/etc/keyhold/master.key")
    data = pathlib.Path("/var/lib/keyhold/keyhold.db")
    key.write_bytes(os.urandom(32))
    data.write_bytes(b"not really a database")
    ks = pwd.getpwnam("keyhold")
    for p in (key, data):
        os.chown(p, ks.pw_uid, ks.pw_gid)
        p.chmod(0o600)

    run("apt-get", "remove", "-y", "-q", "keyhold")
    assert not os.path.exists("/usr/sbin/keyholdd")
    assert CONF.is_file() and key.is_file() and data.is_file()

    run("apt-get", "purge", "-y", "-q", "keyhold")
    assert not CONF.exists(), "purge left the configuration"
    assert key.is_file() and data.is_file(), "purge deleted key material or data"
    assert user_exists("keyhold"), "the keyhold user is kept (Debian's practice)"

    # with no key material left, purge leaves no directory behind
    key.unlink()
    data.unlink()
    run("apt-get", "install", "-y", "-q", "--no-install-recommends", str(installed))
    run("apt-get", "purge", "-y", "-q", "keyhold")
    for d in ("/etc/keyhold", "/var/lib/keyhold"):
        assert not os.path.exists(d), f"purge left the empty {d}"
