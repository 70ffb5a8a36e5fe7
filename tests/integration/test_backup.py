"""keyhold backup create | verify | restore through the real keyholdd and CLI: a backup taken
while keys are being written restores into a fresh folder on which a fresh keyholdd serves
every key acknowledged before the backup began (and, for those written during it, the old or
the new value, never anything else); verify checks integrity and that the key store's secret
opens it; any change, truncation or other secret fails clearly; restore refuses a folder that
is not empty; the file holds no plaintext of the database or its manifest."""
import json
import os
import pathlib
import shutil
import subprocess
import threading
import uuid

import pytest

import harness
import storage
from harness import Keyholdd
from test_cli import json_error, run_cli

N_BEFORE = 60        # keys acknowledged before the backup starts



def put_key(k: Keyholdd, issuer, guid: str, key: str, tenant: str = "default") -> int:
    prefix = "" if tenant == "default" else f"/t/{tenant}"
    r = k.client.put(f"{prefix}/user-keys", token=issuer.token(guid), json_body={"key": key})
    return r.status


def get_key(k: Keyholdd, issuer, guid: str, tenant: str = "default"):
    prefix = "" if tenant == "default" else f"/t/{tenant}"
    r = k.client.get(f"{prefix}/user-keys", token=issuer.token(guid))
    if r.status == 404:
        return None
    assert r.status == 200, r
    return r.json()["key"]


def fill(k: Keyholdd, issuers, n: int) -> dict:
    """n members' keys, alternately in tenants default and acme: {guid: (tenant, key)}."""
    keys = {}
    for i in range(n):
        tenant = "default" if i % 2 == 0 else "acme"
        guid, key = str(uuid.uuid4()), harness.new_key()
        assert put_key(k, issuers[tenant], guid, key, tenant) == 200
        keys[guid] = (tenant, key)
    return keys


def tenants_of(issuers) -> dict:
    return {"default": {"issuer": issuers["default"]}, "acme": {"issuer": issuers["acme"]}}


def backup_create(k: Keyholdd, path, *extra):
    return run_cli("backup", "create", path, "--socket", k.admin_socket, "--json", *extra)


def verify(path, *secret, env=None):
    return run_cli("backup", "verify", path, "--json", *secret, env=env)


def verify_as(k: Keyholdd, path):
    """backup verify with what opens k's backups (its master key, or its token)."""
    return verify(path, *k.backup_args(), env=k.store_env())


@pytest.fixture(scope="module")
def source(pki, issuers, tmp_path_factory):
    """A keyholdd with N_BEFORE keys in two tenants, and one backup of it taken while a thread
    kept writing: yields (daemon, backup path, create's JSON, {guid: key before},
    {guid: (old or None, new)} written during the backup)."""
    k = Keyholdd(tmp_path_factory.mktemp("backup-src"), pki, tenants_of(issuers))
    gen = harness.serve(k)
    next(gen)
    try:
        before = fill(k, issuers, N_BEFORE)
        during, stop = {}, threading.Event()
        failures = []

        def writer():
            olds = list(before.items())
            i = 0
            while not stop.is_set():
                if i % 2 == 0:   # a new member
                    guid, tenant, old = str(uuid.uuid4()), "default", None
                else:            # a member of before replaces their key
                    guid, (tenant, old) = olds[i % len(olds)]
                    if guid in during:
                        i += 1
                        continue
                key = harness.new_key()
                during[guid] = (tenant, old, key)   # noted before the write: acked or not
                status = put_key(k, issuers[tenant], guid, key, tenant)
                if status != 200:
                    failures.append(status)
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        path = k.workdir / "server.khb"
        try:
            p = backup_create(k, path)
        finally:
            stop.set()
            t.join()
        assert p.returncode == 0, p
        assert not failures, failures
        yield k, path, json.loads(p.stdout), before, during
    finally:
        try:
            next(gen)
        except StopIteration:
            pass


def restore_config(k_src: Keyholdd, workdir: pathlib.Path) -> pathlib.Path:
    """A configuration for `backup restore --into-storage`: k_src's, with the [storage] of the
    database a Keyholdd of workdir uses (on PostgreSQL a fresh, empty database)."""
    data = workdir / "data"
    text = k_src.config_text().replace(
        "\n".join(storage.config_lines(k_src.data, k_src.db_path)),
        "\n".join(storage.config_lines(data, data / "keyhold.db")))
    conf = workdir / "restore.conf"
    conf.write_text(text)
    return conf


def restore_args(k_src: Keyholdd, workdir: pathlib.Path, *secret) -> list:
    """The restore options that put backup where a Keyholdd of workdir finds it: --data
    workdir/data, and on PostgreSQL --into-storage with a configuration naming that server's
    database (the key store's secret: secret, else k_src's)."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = ["--data", workdir / "data"]
    if storage.KIND == "sqlite":
        return args + list(secret or k_src.backup_args())
    # a pkcs11 store's --config (its token and PIN) is restore_config()'s own
    secret = secret or (k_src.unseal_args() if k_src.keystore == "file" else ())
    return args + ["--into-storage", "--config", restore_config(k_src, workdir), *secret]


def restore_into(k_src: Keyholdd, backup, workdir: pathlib.Path, *secret):
    """Restores backup where a Keyholdd of workdir finds it (restore_args())."""
    return run_cli("backup", "restore", backup, "--json", *restore_args(k_src, workdir, *secret),
                   env=k_src.store_env())


def copy_master_key(k_src: Keyholdd, workdir: pathlib.Path) -> None:
    """The restored server's key store secret: k_src's master key (a pkcs11 store's keys
    stay in the token, which the restored server shares: same_keystore())."""
    if k_src.keystore == "pkcs11":
        return
    shutil.copyfile(k_src.master_key, workdir / "master.key")
    os.chmod(workdir / "master.key", 0o600)


def test_create_reports_what_it_holds(source):
    k, path, out, before, _ = source
    assert set(out) >= {"file", "tenants", "records", "sha256"}
    assert out["file"] == str(path)
    assert out["tenants"] == 2
    assert out["records"] >= N_BEFORE
    import hashlib
    assert out["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (path.stat().st_mode & 0o777) == 0o600


def test_restore_of_a_backup_taken_while_writing_serves_every_acknowledged_key(
        source, issuers, tmp_path):
    k, path, out, before, during = source
    work = tmp_path / "restored"
    p = restore_into(k, path, work)
    assert p.returncode == 0, p
    assert json.loads(p.stdout)["records"] == out["records"]
    data = work / "data"
    # on PostgreSQL the database went into the server's, and DIR holds the key store only
    assert (data / "keyhold.db").is_file() == (storage.KIND == "sqlite")
    if k.keystore == "file":
        assert (data / "keystore" / "keystore.meta").is_file()
    assert not (data / "master.key").exists()
    for f in data.rglob("*"):
        assert (f.stat().st_mode & 0o777) == (0o700 if f.is_dir() else 0o600), f
    copy_master_key(k, work)
    r = Keyholdd(work, k.pki, tenants_of(issuers), **k.same_keystore())
    gen = harness.serve(r)
    next(gen)
    try:
        served = 0
        for guid, (tenant, key) in before.items():
            got = get_key(r, issuers[tenant], guid, tenant)
            if guid in during:
                assert got in (key, during[guid][2]), guid
            else:
                assert got == key, guid
            served += 1
        for guid, (tenant, old, new) in during.items():
            assert get_key(r, issuers[tenant], guid, tenant) in (old, new), guid
        assert served == N_BEFORE
        # the restored server counts what the backup said it holds
        assert r.metrics  # started and serving
    finally:
        try:
            next(gen)
        except StopIteration:
            pass


def test_verify_accepts_the_backup_and_reports_its_counts(source):
    k, path, out, _, _ = source
    p = verify_as(k, path)
    assert p.returncode == 0, p
    got = json.loads(p.stdout)
    assert got["ok"] is True
    assert (got["tenants"], got["records"]) == (out["tenants"], out["records"])


@pytest.mark.file_keystore
def test_verify_and_restore_refuse_another_master_key(source, tmp_path):
    k, path, _, _, _ = source
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    obj = json_error(verify(path, "--master-key-file", other), "wrong_secret")
    assert "does not open" in obj["message"]
    p = run_cli("backup", "restore", path, "--data", tmp_path / "d", "--json",
                "--master-key-file", other)
    json_error(p, "wrong_secret")
    assert not (tmp_path / "d").exists()
    assert [x.name for x in tmp_path.iterdir()] == ["other.key"]   # no temporary folder left


@pytest.mark.parametrize("where", ["magic", "header", "first-chunk", "middle", "last-byte"])
def test_one_changed_byte_fails_verify(source, tmp_path, where):
    k, path, _, _, _ = source
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[12:16], "big")   # docs/backup.md: the whole header's
    at = {"magic": 0, "header": 20, "first-chunk": header_len + 100, "middle": len(data) // 2,
          "last-byte": len(data) - 1}[where]
    data[at] ^= 0x01
    bad = tmp_path / "bad.khb"
    bad.write_bytes(bytes(data))
    p = verify_as(k, bad)
    assert p.returncode == 1, p
    obj = json.loads(p.stdout)
    assert obj["code"] in ("damaged", "not_a_backup"), obj
    if where in ("first-chunk", "middle", "last-byte"):
        assert obj["code"] == "damaged" and "does not authenticate" in obj["message"], obj


@pytest.mark.parametrize("keep", ["header-only", "half", "all-but-one"])
def test_truncated_backup_fails_verify(source, tmp_path, keep):
    k, path, _, _, _ = source
    data = path.read_bytes()
    n = {"header-only": 100, "half": len(data) // 2, "all-but-one": len(data) - 1}[keep]
    bad = tmp_path / "cut.khb"
    bad.write_bytes(data[:n])
    p = verify_as(k, bad)
    obj = json_error(p, "truncated" if keep != "all-but-one" else json.loads(p.stdout)["code"])
    assert obj["code"] in ("truncated", "damaged"), obj


def test_appended_bytes_fail_verify(source, tmp_path):
    k, path, _, _, _ = source
    bad = tmp_path / "long.khb"
    bad.write_bytes(path.read_bytes() + b"\0")
    obj = json_error(verify_as(k, bad), "damaged")
    assert "after the last chunk" in obj["message"]


def test_backup_holds_no_plaintext(source):
    k, path, _, _, _ = source
    data = path.read_bytes()
    assert b"SQLite format 3" not in data
    assert b"keyhold_version" not in data and b"key_versions" not in data
    assert b"KHKS" not in data                      # a key file's header
    assert b"BEGIN PUBLIC KEY" not in data
    assert b"CREATE TABLE" not in data              # the snapshot's schema page


def test_restore_refuses_a_folder_that_is_not_empty(source, tmp_path):
    k, path, _, _, _ = source
    d = tmp_path / "busy"
    d.mkdir()
    (d / "keep.txt").write_text("mine")
    p = run_cli("backup", "restore", path, "--data", d, "--json", *k.backup_args(),
                env=k.store_env())
    json_error(p, "not_empty")
    assert [x.name for x in d.iterdir()] == ["keep.txt"]
    assert (d / "keep.txt").read_text() == "mine"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["busy"]


def test_restore_into_an_existing_empty_folder_works(source, tmp_path):
    k, path, out, _, _ = source
    d = tmp_path / "empty"
    d.mkdir()
    p = run_cli("backup", "restore", path, "--data", d, "--json", *k.backup_args(),
                env=k.store_env())
    assert p.returncode == 0, p
    assert (d / "keyhold.db").is_file()


def test_restore_without_data_is_a_usage_error(source):
    k, path, _, _, _ = source
    p = run_cli("backup", "restore", path, *k.backup_args(), env=k.store_env())
    assert p.returncode == 2, p
    assert "--data" in p.stderr


def test_create_over_url_is_refused(source, tmp_path):
    k, _, _, _, _ = source
    target = tmp_path / "x.khb"
    p = run_cli("backup", "create", target, "--url", f"https://127.0.0.1:{k.port}",
                "--cacert", k.pki.ca_pem, "--token", "t")
    assert p.returncode == 2, p
    assert "admin socket" in p.stderr
    assert not target.exists()
    # nor does the public listener serve the route at all
    r = k.client.post("/server/backup", body=b"")
    assert r.status == 404, r


def test_create_refuses_an_existing_file_unless_force(source, tmp_path):
    k, _, _, _, _ = source
    target = tmp_path / "x.khb"
    target.write_text("old")
    json_error(backup_create(k, target), "file_exists")
    assert target.read_text() == "old"
    p = backup_create(k, target, "--force")
    assert p.returncode == 0, p
    assert target.read_bytes()[:8] == b"KHBACKUP"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["x.khb"]   # no temporary file left


def test_create_is_audited_in_the_server_chain(source):
    k, _, _, _, _ = source
    r = k.operator.get("/server/audit?last=50")
    assert r.status == 200, r
    actions = [(x["action"], x["outcome"]) for x in r.json()["records"]]
    assert ("backup.create", "ok") in actions, actions


@pytest.mark.sqlite_only   # on PostgreSQL: test_backup_storage.py, in $TMPDIR
def test_no_temporary_file_stays_beside_the_database(source):
    k, _, _, _, _ = source
    assert [p.name for p in k.data.iterdir() if p.name.startswith(".keyhold-backup")] == []


@pytest.mark.file_keystore
def test_passphrase_store_round_trip(pki, issuers, tmp_path):
    work = tmp_path / "pass"
    k = Keyholdd(work, pki, {"default": {"issuer": issuers["default"]}},
                 env={"KEYHOLD_KEYSTORE_PASSPHRASE": "correct horse battery"})
    k.config_text = lambda base=k.config_text: "\n".join(
        line for line in base().splitlines() if not line.startswith("master_key_file")) + "\n"
    k.write_config()
    gen = harness.serve(k)
    next(gen)
    try:
        guid, key = str(uuid.uuid4()), harness.new_key()
        assert put_key(k, issuers["default"], guid, key) == 200
        path = tmp_path / "p.khb"
        p = backup_create(k, path)
        assert p.returncode == 0, p
    finally:
        try:
            next(gen)
        except StopIteration:
            pass
    good, wrong = tmp_path / "good.pass", tmp_path / "wrong.pass"
    good.write_text("correct horse battery\n")
    wrong.write_text("incorrect horse battery\n")
    p = verify(path, "--passphrase-file", good)
    assert p.returncode == 0, p
    assert json.loads(p.stdout)["records"] == 1
    json_error(verify(path, "--passphrase-file", wrong), "wrong_secret")
    json_error(verify_as(k, path), "wrong_secret")
    # --config finds the passphrase where keyholdd does: KEYHOLD_KEYSTORE_PASSPHRASE
    p = run_cli("backup", "verify", path, "--json", "--config", k.config_path,
                env={"KEYHOLD_KEYSTORE_PASSPHRASE": "correct horse battery"})
    assert p.returncode == 0, p
    # and a fresh keyholdd with that passphrase serves the restored key
    work2 = tmp_path / "pass2"
    work2.mkdir()
    p = run_cli("backup", "restore", path, *restore_args(k, work2, "--passphrase-file", good),
                env={"KEYHOLD_KEYSTORE_PASSPHRASE": "correct horse battery"})
    assert p.returncode == 0, p
    r = Keyholdd(work2, pki, {"default": {"issuer": issuers["default"]}},
                 env={"KEYHOLD_KEYSTORE_PASSPHRASE": "correct horse battery"})
    r.config_text = lambda base=r.config_text: "\n".join(
        line for line in base().splitlines() if not line.startswith("master_key_file")) + "\n"
    r.write_config()
    gen = harness.serve(r)
    next(gen)
    try:
        assert get_key(r, issuers["default"], guid) == key
    finally:
        try:
            next(gen)
        except StopIteration:
            pass


def test_verify_without_any_secret_is_a_usage_error(source):
    _, path, _, _, _ = source
    p = run_cli("backup", "verify", path)
    assert p.returncode == 2, p


def test_kill9_during_backup_leaves_nothing_and_the_next_backup_works(pki, issuers, tmp_path):
    """A backup is rolled back by a crash at any point: keyholdd killed with SIGKILL while
    building one (several times, at different moments) leaves no backup file for the CLI and,
    after the next start, nothing beside the database (the snapshot of a killed backup is
    removed at start-up); a backup made then verifies. On PostgreSQL the scratch files go to
    $TMPDIR (here the data folder), named with the process id: a start removes those of
    processes that are gone, never another live replica's."""
    k = Keyholdd(tmp_path / "src", pki, tenants_of(issuers),
                 env={"TMPDIR": str(tmp_path / "src" / "data")})
    k.start()
    try:
        for i in range(200):
            assert put_key(k, issuers["default"], str(uuid.uuid4()), harness.new_key()) == 200
        for delay in (0.0, 0.005, 0.02, 0.05):
            out = tmp_path / f"killed-{delay}.khb"
            cli = subprocess.Popen([str(harness.build_dir() / "src" / "cli" / "keyhold"), "backup",
                                    "create", str(out), "--socket", str(k.admin_socket), "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            threading.Event().wait(delay)
            k.kill()
            cli.communicate(timeout=60)
            # what the CLI wrote is either a whole backup (it finished first) or nothing
            if out.exists():
                assert verify_as(k, out).returncode == 0
            assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".killed-{delay}")]
            k.start()
            assert [p.name for p in k.data.iterdir() if p.name.startswith(".keyhold-backup")] == []
        # a leftover as a killed backup leaves it: removed at the next start
        k.stop()
        gone = subprocess.Popen(["true"])
        gone.wait()
        dead = gone.pid
        (k.data / f".keyhold-backup-{dead}-Zx81Qa.db").write_bytes(
            b"SQLite format 3\0" + b"\0" * 4080)
        live = k.data / f".keyhold-backup-{os.getpid()}-Live01.db"   # another live replica's
        live.write_bytes(b"")
        k.start()
        left = [p.name for p in k.data.iterdir() if p.name.startswith(".keyhold-backup")]
        assert left == ([] if storage.KIND == "sqlite" else [live.name])
        live.unlink(missing_ok=True)
        good = tmp_path / "after.khb"
        p = backup_create(k, good)
        assert p.returncode == 0, p
        assert verify_as(k, good).returncode == 0
    finally:
        k.stop()
