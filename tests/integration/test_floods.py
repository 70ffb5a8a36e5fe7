"""Connection floods: a worker stops accepting at its connection cap ([server]
max_connections) and resumes when a connection closes; out of file descriptors it backs
off instead of spinning on a listener it cannot accept from, and serves again once
descriptors are free. Plain HTTP on loopback, one worker, so that the counts are exact."""
import os
import socket
import time

import pytest

import harness
from conftest import _tenants

REQUEST = b"GET /alive HTTP/1.1\r\nHost: x\r\n\r\n"
ANSWER_TIMEOUT_S = 10    # bound on waiting for an answer (not a performance assertion)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S)


def answered(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    try:
        s.sendall(REQUEST)
        return s.recv(4096)
    except (socket.timeout, TimeoutError):
        return b""


def start(pki, issuers, tmp_path, extra="", prefix=()) -> harness.Keyholdd:
    k = harness.Keyholdd(tmp_path / "k", pki, _tenants(issuers), tls=False, threads=1,
                         extra=extra, prefix=prefix)
    k.config_text = lambda: harness.Keyholdd.config_text(k).replace(
        "[server]\n", "[server]\n" + extra, 1)
    k.extra = ""
    k.write_config()
    return k.start()


@pytest.fixture
def capped(pki, issuers, tmp_path):
    k = start(pki, issuers, tmp_path, extra="max_connections = 8\n")
    yield k
    assert k.stop() == 0, k.log()


def test_stops_accepting_at_the_cap_and_resumes(capped):
    idle = [connect(capped.port) for _ in range(8)]
    for s in idle[:2]:
        assert answered(s, ANSWER_TIMEOUT_S).startswith(b"HTTP/1.1 200"), "below the cap"
    waiting = connect(capped.port)          # the kernel completes the handshake ...
    assert answered(waiting, 1.0) == b""    # ... but keyholdd does not take it while full
    idle.pop().close()
    reply = waiting.recv(4096) if waiting.settimeout(ANSWER_TIMEOUT_S) is None else b""
    assert reply.startswith(b"HTTP/1.1 200"), "accepted once a connection closed"
    for s in idle + [waiting]:
        s.close()
    assert capped.client.get("/alive").status == 200


def test_out_of_descriptors_backs_off_and_recovers(pki, issuers, tmp_path):
    k = start(pki, issuers, tmp_path, prefix=["prlimit", "--nofile=64:64", "--"])
    try:
        flood = []
        for _ in range(60):
            try:
                flood.append(connect(k.port))
            except OSError:
                break
        time.sleep(0.5)                      # let keyholdd run into EMFILE
        before = cpu_seconds(k.proc.pid)
        time.sleep(2.0)
        used = cpu_seconds(k.proc.pid) - before
        # a loop spinning on the readable listener burns a whole core (about 2 s here)
        assert used < 1.0, f"keyholdd used {used:.2f} s of CPU in 2 s while out of descriptors"
        for s in flood:
            s.close()
        s = connect(k.port)
        assert answered(s, ANSWER_TIMEOUT_S).startswith(b"HTTP/1.1 200"), k.log()
        s.close()
    finally:
        assert k.stop() == 0, k.log()
