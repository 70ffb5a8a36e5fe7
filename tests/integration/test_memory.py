"""Secrets the process no longer needs are gone from its memory, read as root through
/proc/PID/mem while keyholdd runs: the key store passphrase once the key store is open (its
environment variable included, which /proc/PID/environ would show), and request bodies that
were refused before or after parsing (401, 403, 404, 405, 413, 415), over TLS.

Each secret is searched for as raw bytes and in base64. A search that finds a planted value
is part of the test, so that an empty result means something."""
import base64
import os
import re

import pytest

import harness
from conftest import _tenants

PASSPHRASE = "correct horse battery staple " + os.urandom(8).hex()

# about the file key store itself (the daemon is a passphrase (file) store: the passphrase's wipe from memory)
pytestmark = pytest.mark.file_keystore


def readable_memory(pid: int) -> bytes:
    """Every readable, private or anonymous mapping of pid that holds pages, concatenated.
    Mappings larger than the machine's memory are reservations that only a sanitizer makes
    (ASan's shadow: terabytes, NORESERVE, holding poison bytes, never data): skipped, since
    reading them would fault in terabytes of zero pages."""
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    out = []
    with open(f"/proc/{pid}/smaps") as smaps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        maps, cur = [], None
        for line in smaps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$", line)
            if m:
                cur = [int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4), 0]
                maps.append(cur)
            elif line.startswith("Rss:"):
                cur[4] = int(line.split()[1]) * 1024
        for start, end, perms, path, rss in maps:
            if not perms.startswith("r") or path in ("[vvar]", "[vsyscall]", "[vdso]"):
                continue
            if path.startswith("/") and "w" not in perms:
                continue          # read-only file mappings: code and constants
            if rss == 0 or end - start > ram:
                continue
            try:
                mem.seek(start)
                out.append(mem.read(end - start))
            except OSError:
                continue
    return b"".join(out)


def forms(raw: bytes) -> dict[str, bytes]:
    return {"raw": raw, "base64": base64.b64encode(raw)}


@pytest.fixture(scope="module")
def daemon(pki, issuers, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("reading another process's memory needs root (the suite runs as root)",
                    pytrace=False)
    k = harness.Keyholdd(tmp_path_factory.mktemp("keyholdd-memory"), pki, _tenants(issuers),
                         env={"KEYHOLD_KEYSTORE_PASSPHRASE": PASSPHRASE})
    k.master_key.unlink()
    k.extra = ""
    k.config_text = lambda: harness.Keyholdd.config_text(k).replace(
        f"master_key_file = {k.master_key}\n", "")
    k.write_config()
    yield from harness.serve(k)


def test_search_finds_what_is_there(daemon):
    """The scan reads the memory requests go through: a header value nothing wipes (not a
    secret) is found after a request carried it, a value never sent is not."""
    marker, never = os.urandom(16).hex().encode(), os.urandom(16).hex().encode()
    assert daemon.client.get("/alive", headers={"X-Search-Check": marker.decode()}).status == 200
    mem = readable_memory(daemon.proc.pid)
    assert marker in mem
    assert never not in mem


def test_passphrase_gone_once_the_key_store_is_open(daemon):
    with open(f"/proc/{daemon.proc.pid}/environ", "rb") as f:
        environ = f.read()
    assert PASSPHRASE.encode() not in environ
    mem = readable_memory(daemon.proc.pid)
    if harness.sanitized_build():
        # The sanitizer runtime keeps its own copy of /proc/self/environ as it was at exec
        # (sanitizer_common's GetEnv), which keyholdd cannot reach. It is the whole block,
        # byte for byte; keyholdd never builds one. Only that exact copy is left out.
        block = b"".join(f"{k}={v}\0".encode() for k, v in daemon.started_env.items())
        assert mem.count(block) == 1, "the sanitizer's copy of the environment is not where expected"
        mem = mem.replace(block, b"")
    for name, needle in forms(PASSPHRASE.encode()).items():
        assert needle not in mem, f"the passphrase ({name}) is still in keyholdd's memory"


def test_refused_bodies_are_wiped(daemon, default_issuer, user):
    c = daemon.client
    tok = default_issuer.token(user)
    sent = {}

    def body(name: str, pad: int = 0) -> str:
        raw = os.urandom(32)
        sent[name] = raw
        doc = '{"key":"%s"%s}' % (base64.b64encode(raw).decode(), ',"pad":"' + "x" * pad + '"' if pad else "")
        return doc

    refused = [
        ("no token", "PUT", "/user-keys", {}, None, 401),
        ("no api scope", "PUT", "/user-keys", {}, default_issuer.token(user, scope=["x"]), 403),
        ("unknown tenant", "PUT", "/t/nosuch/user-keys", {}, tok, 404),
        ("method", "DELETE", "/user-keys", {}, tok, 405),
        ("too large", "PUT", "/user-keys", {}, tok, 413),
        ("text/plain", "PUT", "/user-keys", {"Content-Type": "text/plain"}, tok, 415),
    ]
    for name, method, path, headers, token, status in refused:
        h = {"Content-Type": "application/json", **headers}
        r = c.request(method, path, body=body(name, 6000 if status == 413 else 0), headers=h,
                      token=token)
        assert r.status == status, (name, r)
    # a healthy request afterwards, so that buffers have been through another use
    assert c.get("/alive").status == 200
    mem = readable_memory(daemon.proc.pid)
    for name, raw in sent.items():
        for form, needle in forms(raw).items():
            assert needle not in mem, f"the body of the {name!r} request ({form}) is in memory"
