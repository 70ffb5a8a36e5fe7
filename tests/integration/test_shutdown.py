"""SIGTERM with clients still connected: keyholdd closes keep-alive and half-sent requests
and exits 0 (it used to abort in h2o_timeout_dispose with connections still open)."""
import socket
import ssl

import pytest


def _tls_socket(k, pki):
    # Trust exactly the test CA, never the environment's bundles.
    ctx = ssl.create_default_context(cafile=str(pki.ca_pem))
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", k.port), timeout=5),
                           server_hostname="127.0.0.1")


@pytest.mark.parametrize("threads", [1, 2])
def test_sigterm_with_open_connections_exits_zero(make_keyholdd, pki, threads):
    k = make_keyholdd(threads=threads)
    keepalive = []
    for _ in range(4):
        s = _tls_socket(k, pki)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        keepalive.append(s)
    half = _tls_socket(k, pki)
    half.sendall(b"GET /health HTTP/1.1\r\n")     # a request that never finishes

    assert k.stop() == 0, k.log()
    for s in keepalive + [half]:
        s.close()
