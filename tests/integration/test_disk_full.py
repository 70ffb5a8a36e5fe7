"""A full disk under the database: writes are answered 507 insufficient_storage (JSON, never a
bare 500) and write nothing, reads keep working, /health is not ready (the reason on the
operator socket) until a write succeeds again, and every acknowledged write survives a
restart. The data folder is a small tmpfs, really filled."""
import errno
import os
import shutil
import subprocess
import uuid

import pytest

from harness import Keyholdd, assert_empty_200, assert_error, assert_key, new_key

pytestmark = [pytest.mark.sqlite_only,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"),
                                 reason="needs root to mount a small tmpfs")]

WRITES_MAX = 5000   # bound on writes made while looking for the first refused one


@pytest.fixture
def small_disk(tmp_path):
    work = tmp_path / "k"
    data = work / "data"
    data.mkdir(parents=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "keyhold-test", str(data)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield work
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def _fill(path) -> None:
    """Writes path until the file system says ENOSPC."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n = f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
            if n < len(chunk):
                chunk = chunk[:max(1, len(chunk) - n)]
        os.fsync(f.fileno())


def test_disk_full_answers_507_and_recovers(small_disk, pki, issuers):
    iss = issuers["default"]
    k = Keyholdd(small_disk, pki, {"default": {"issuer": iss}}, threads=1).start()
    try:
        acked = {}
        for _ in range(3):
            u, key = str(uuid.uuid4()), new_key()
            assert_empty_200(k.client.post("/user-keys", token=iss.token(u), json_body={"key": key}))
            acked[u] = key
        assert k.operator.get("/health").status == 200

        filler = small_disk / "data" / "filler"
        _fill(filler)
        refused, r = [], None
        for _ in range(WRITES_MAX):
            u, key = str(uuid.uuid4()), new_key()
            r = k.client.put("/user-keys", token=iss.token(u), json_body={"key": key})
            if r.status == 200:
                acked[u] = key      # the WAL still had room
                continue
            refused.append(u)
            break
        assert refused, f"no write refused after {WRITES_MAX} on a full disk"
        assert_error(r, 507, "insufficient_storage")

        # reads still work; /health is not ready, and says why only to the operator
        for u, key in list(acked.items())[:3]:
            assert_key(k.client.get("/user-keys", token=iss.token(u)), key)
        body = assert_error(k.client.get("/health"), 503, "not_ready")
        assert "reason" not in body, body
        body = assert_error(k.operator.get("/health"), 503, "not_ready")
        assert "no space" in body["reason"], body
        # a POST is refused the same way
        u = str(uuid.uuid4())
        assert_error(k.client.post("/user-keys", token=iss.token(u), json_body={"key": new_key()}),
                     507, "insufficient_storage")
        refused.append(u)

        # space again: the next write succeeds and /health is ready again
        filler.unlink()
        u, key = str(uuid.uuid4()), new_key()
        assert_empty_200(k.client.put("/user-keys", token=iss.token(u), json_body={"key": key}))
        acked[u] = key
        assert k.operator.get("/health").status == 200
        assert k.alive()
    finally:
        rc = k.stop()
    assert rc == 0, k.log()

    # after a restart: every acknowledged write is there, no refused one is
    k2 = Keyholdd(small_disk, pki, {"default": {"issuer": iss}}, threads=1).start()
    try:
        for u, key in acked.items():
            assert_key(k2.client.get("/user-keys", token=iss.token(u)), key)
        for u in refused:
            assert_error(k2.client.get("/user-keys", token=iss.token(u)), 404, "key_not_found")
    finally:
        rc = k2.stop()
    assert rc == 0, k2.log()
