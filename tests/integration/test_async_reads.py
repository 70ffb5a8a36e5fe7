"""GET /user-keys without a database round trip per request stalling the worker: one worker
keeps many reads in flight on PostgreSQL (libpq pipeline mode, docs/storage.md); each is
answered with its own key, a database that stops or freezes gives 503 storage_unavailable
and the server serves again once it is back, and clients that go away while their read is
in flight leave the server unharmed. The concurrency and disconnect tests run on the suite's
storage (SQLite or PostgreSQL); the outage tests always run, on a PostgreSQL server of this
module's own, so that stopping it disturbs no other test's keyholdd."""
import concurrent.futures
import os
import uuid
import signal
import socket
import ssl

import pytest

import storage
from harness import assert_empty_200, assert_error, assert_key, new_key, poll_until
from pgserver import PgServer, _children


@pytest.fixture(scope="module")
def own_pg():
    with PgServer() as server:
        yield server


@pytest.fixture
def pg_keyholdd(own_pg, make_keyholdd, monkeypatch):
    """A one-worker keyholdd on a fresh database of own_pg."""
    def lines(data, db_path):
        db = "kh_" + uuid.uuid4().hex[:16]
        own_pg.create_db(db)
        pwfile = data.parent / "own-pg.password"
        pwfile.write_text(own_pg.password + "\n")
        pwfile.chmod(0o600)
        return ["driver = postgresql",
                f"url = postgresql://{own_pg.user}@{own_pg.host}:{own_pg.port}/{db}",
                f"password_file = {pwfile}"]

    monkeypatch.setattr(storage, "config_lines", lines)
    return make_keyholdd(threads=1)


@pytest.fixture(params=["suite-storage", "postgresql"])
def one_worker(request, make_keyholdd):
    """A one-worker keyholdd on the suite's storage, then on PostgreSQL (own_pg)."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_keyholdd")
    return make_keyholdd(threads=1)


def _seed(k, issuer, n):
    users = [f"00000000-0000-4000-8000-{i:012d}" for i in range(n)]
    tokens = {u: issuer.token(u) for u in users}
    keys = {u: new_key() for u in users}
    for u in users:
        assert_empty_200(k.client.put("/user-keys", token=tokens[u], json_body={"key": keys[u]}))
    return users, tokens, keys


def test_many_concurrent_gets_through_one_worker_each_get_their_own_key(one_worker,
                                                                        default_issuer):
    k = one_worker
    users, tokens, keys = _seed(k, default_issuer, 50)

    def one_connection(i):
        # 4 requests on each keep-alive connection, 50 connections at once: 200 GETs
        conn = k.client.connect()
        try:
            out = []
            for j in range(4):
                u = users[(i + j * 13) % len(users)]
                out.append((u, k.client.get("/user-keys", token=tokens[u], conn=conn)))
            return out
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = [r for rs in pool.map(one_connection, range(50)) for r in rs]
    assert len(results) == 200
    for u, r in results:
        assert_key(r, keys[u])
    assert k.alive()


def _storage_unavailable_or_key(r, key):
    if r.status == 200:
        assert_key(r, key)
        return False
    assert_error(r, 503, "storage_unavailable")
    return True


def test_database_stopped_with_reads_in_flight_gives_503_then_serves_again(pg_keyholdd, own_pg,
                                                                          default_issuer):
    k = pg_keyholdd
    users, tokens, keys = _seed(k, default_issuer, 20)
    pg = own_pg
    assert_key(k.client.get("/user-keys", token=tokens[users[0]]), keys[users[0]])

    def get(u):
        return u, k.client.get("/user-keys", token=tokens[u])

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            futures = [pool.submit(get, users[i % 20]) for i in range(100)]
            pg.stop_server()
            results = [f.result() for f in futures]
        # every read was answered: with its key before the stop, 503 after it
        for u, r in results:
            _storage_unavailable_or_key(r, keys[u])
        assert_error(k.client.get("/user-keys", token=tokens[users[1]]), 503,
                     "storage_unavailable")
    finally:
        pg.start_server()
    # the reconnect waits out KH_STORE_RECONNECT_MS after a failed attempt
    poll_until(lambda: k.client.get("/user-keys", token=tokens[users[2]]).status == 200,
               timeout=30)
    for u in users:
        assert_key(k.client.get("/user-keys", token=tokens[u]), keys[u])
    assert k.alive()


def test_frozen_database_answers_503_within_the_wait_bound(pg_keyholdd, own_pg, default_issuer):
    k = pg_keyholdd
    users, tokens, keys = _seed(k, default_issuer, 2)
    assert_key(k.client.get("/user-keys", token=tokens[users[0]]), keys[users[0]])
    pg = own_pg
    # The server's processes stop answering (the connection stays open): only keyholdd's
    # own timer can end the read.
    frozen, todo = [], [pg.proc.pid]       # runuser, postgres and its backends
    while todo:
        pid = todo.pop()
        frozen.append(pid)
        todo += _children(pid)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        assert_error(k.client.get("/user-keys", token=tokens[users[0]]), 503,
                     "storage_unavailable")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    poll_until(lambda: k.client.get("/user-keys", token=tokens[users[1]]).status == 200,
               timeout=30)
    assert_key(k.client.get("/user-keys", token=tokens[users[1]]), keys[users[1]])
    assert k.alive()


def _send_and_close(k, token, n):
    """n GETs each on its own connection, closed as soon as the request is sent."""
    req = (f"GET /user-keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
           .encode())
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", k.port), timeout=10)
        if k.tls:
            ctx = ssl.create_default_context(cafile=str(k.pki.ca_pem))
            s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        s.sendall(req)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()    # a reset, with the read still in flight


def test_clients_closing_while_their_read_is_in_flight(one_worker, default_issuer):
    k = one_worker
    users, tokens, keys = _seed(k, default_issuer, 4)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda u: _send_and_close(k, tokens[u], 25), users))
    for u in users:
        assert_key(k.client.get("/user-keys", token=tokens[u]), keys[u])
    assert k.alive()
