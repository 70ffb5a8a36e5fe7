"""Anonymous routes (/alive, /now, /health), /metrics, --check-config, plain HTTP, keep-alive."""
import datetime
import json
import os
import re
import socket
import stat
import subprocess

import pytest

import harness
from harness import assert_error, new_key, poll_until

TIME_RE = re.compile(r'^"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,7})?Z"$')


def check_time_body(r) -> None:
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").split(";")[0].strip() == "application/json", r
    m = TIME_RE.match(r.body.decode())
    assert m, r
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    now = datetime.datetime.now(datetime.timezone.utc)
    # Correctness, not speed: the server's clock reading must be "now" in UTC (a wrong
    # time zone would be off by hours).
    assert abs((now - t).total_seconds()) < 180, (r, now)
    assert isinstance(json.loads(r.body), str)


@pytest.mark.parametrize("path", ["/alive", "/now", "/t/acme/alive", "/t/acme/now",
                                  "/t/default/alive"])
def test_alive_and_now(client, path):
    check_time_body(client.get(path))


def test_alive_with_client_headers(client):
    # getKeyConnectorAlive sends Content-Type on a GET without body (spec 2.3).
    r = client.get("/alive", headers={"Accept": "application/json",
                                      "Content-Type": "application/json; charset=utf-8"})
    check_time_body(r)


def test_alive_ignores_bad_token(client):
    check_time_body(client.get("/alive", token="garbage"))


def test_health_ready(client):
    r = client.get("/health")
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").split(";")[0].strip() == "application/json", r
    assert r.json()["status"] == "ready", r


def test_metrics_families_present(keyholdd, client, default_issuer, user):
    client.get("/user-keys", token=default_issuer.token(user))  # at least one of each kind
    m = keyholdd.metrics()
    r = keyholdd.operator.get("/metrics")
    assert (r.header("Content-Type") or "").startswith("text/plain"), r
    for name in ("keyhold_requests_total", "keyhold_request_duration_seconds_bucket",
                 "keyhold_request_duration_seconds_sum", "keyhold_request_duration_seconds_count",
                 "keyhold_token_cache_hits_total", "keyhold_token_cache_misses_total",
                 "keyhold_integrity_failures_total"):
        assert m.has(name), f"{name} missing from /metrics:\n{m.text[:3000]}"
    assert m.types.get("keyhold_requests_total") == "counter", m.types
    assert m.types.get("keyhold_request_duration_seconds") == "histogram", m.types
    for _, labels, _ in [s for s in m.samples if s[0] == "keyhold_requests_total"]:
        assert set(labels) >= {"route", "status"}, labels
    # The main server never saw a corrupt record.
    assert m.sum("keyhold_integrity_failures_total") == 0, m.text


def _user_keys_404(m) -> float:
    return m.sum("keyhold_requests_total", pred=lambda lb: "user-keys" in lb.get("route", "")
                 and lb.get("status") == "404")


def test_request_counter_rises_exactly(keyholdd, client, default_issuer, user):
    tok = default_issuer.token(user)
    before = _user_keys_404(keyholdd.metrics())
    for _ in range(3):
        assert_error(client.get("/user-keys", token=tok), 404, "key_not_found")
    after = poll_until(lambda: (v := _user_keys_404(keyholdd.metrics())) >= before + 3 and v)
    assert after == before + 3, (before, after)


def test_duration_histogram_consistent_and_rising(keyholdd, client):
    def totals(m):
        inf = m.sum("keyhold_request_duration_seconds_bucket", pred=lambda lb: lb.get("le") == "+Inf")
        return inf, m.sum("keyhold_request_duration_seconds_count")
    m0 = keyholdd.metrics()
    inf0, count0 = totals(m0)
    assert inf0 == count0, m0.text
    # buckets are cumulative: non-decreasing in le within each label set
    series: dict = {}
    for lb, v in m0.select("keyhold_request_duration_seconds_bucket"):
        key = tuple(sorted((k, x) for k, x in lb.items() if k != "le"))
        le = float("inf") if lb["le"] == "+Inf" else float(lb["le"])
        series.setdefault(key, []).append((le, v))
    assert series, m0.text
    for pts in series.values():
        vals = [v for _, v in sorted(pts)]
        assert vals == sorted(vals), pts
    for _ in range(4):
        assert client.get("/alive").status == 200
    m1 = poll_until(lambda: (m := keyholdd.metrics()) and totals(m)[1] >= count0 + 4 and m)
    assert m1, "histogram count did not rise"
    inf1, count1 = totals(m1)
    assert inf1 == count1 and count1 >= count0 + 4  # /metrics requests also count


def test_token_cache_miss_then_hit(keyholdd, default_issuer, user):
    """Same token twice on one keep-alive connection (same worker): one miss, then one hit."""
    c = keyholdd.client
    tok = default_issuer.token(user)  # fresh jti: never seen by the server
    conn = c.connect()
    try:
        m0 = keyholdd.metrics()
        h0, mi0 = m0.sum("keyhold_token_cache_hits_total"), m0.sum("keyhold_token_cache_misses_total")
        k = new_key()
        r = c.post("/user-keys", token=tok, json_body={"key": k}, conn=conn)
        assert r.status == 200, r
        m1 = keyholdd.metrics()
        assert m1.sum("keyhold_token_cache_misses_total") == mi0 + 1, (mi0, m1.text)
        assert m1.sum("keyhold_token_cache_hits_total") == h0, (h0, m1.text)
        r = c.get("/user-keys", token=tok, conn=conn)
        assert r.status == 200 and r.json() == {"key": k}, r
        m2 = keyholdd.metrics()
        assert m2.sum("keyhold_token_cache_hits_total") == h0 + 1, (h0, m2.text)
        assert m2.sum("keyhold_token_cache_misses_total") == mi0 + 1, (mi0, m2.text)
    finally:
        conn.close()


def test_key_version_uses_rise_on_get(keyholdd, client, acme_issuer, user):
    tok = acme_issuer.token(user)
    k = new_key()
    assert client.post("/t/acme/user-keys", token=tok, json_body={"key": k}).status == 200
    assert client.get("/t/acme/user-keys", token=tok).json() == {"key": k}

    def uses(m):
        return m.sum("keyhold_key_version_uses_total", tenant="acme", version="1")
    before = poll_until(lambda: uses(keyholdd.metrics()))
    assert before >= 1, keyholdd.metrics().text  # at least the GET above used version 1
    assert client.get("/t/acme/user-keys", token=tok).json() == {"key": k}
    after = poll_until(lambda: (v := uses(keyholdd.metrics())) > before and v)
    assert after == before + 1, (before, after)  # one GET = one use of the version


def test_keep_alive_serves_many_requests(keyholdd, default_issuer, user):
    c = keyholdd.client
    conn = c.connect()
    try:
        tok = default_issuer.token(user)
        k = new_key()
        assert c.post("/user-keys", token=tok, json_body={"key": k}, conn=conn).status == 200
        for _ in range(20):
            r = c.get("/user-keys", token=tok, conn=conn)
            assert r.status == 200 and r.json() == {"key": k}, r
        check_time_body(c.get("/alive", conn=conn))
    finally:
        conn.close()


def test_tls_rejects_client_not_trusting_ca(keyholdd, tmp_path):
    # Control for the TLS setup: a client trusting a different CA fails the handshake,
    # proving the suite really verifies keyholdd's certificate.
    import ssl
    from pki import TestPKI
    other = TestPKI(tmp_path)
    c = harness.Client(keyholdd.port, harness.client_tls_context(other.ca_pem))
    with pytest.raises(ssl.SSLCertVerificationError):
        c.get("/alive")


def test_plain_http_on_loopback(make_keyholdd, default_issuer, user):
    k = make_keyholdd(tls=False)
    assert k.client.ctx is None
    check_time_body(k.client.get("/alive"))
    tok = default_issuer.token(user)
    key = new_key()
    r = k.client.post("/user-keys", token=tok, json_body={"key": key})
    assert r.status == 200 and r.body == b"", r
    assert k.client.get("/user-keys", token=tok).json() == {"key": key}


# ------------------------------------------------------------------ --check-config


def run_check(config_text: str, tmp_path, env=None) -> subprocess.CompletedProcess:
    cfg = tmp_path / "check.conf"
    cfg.write_text(config_text)
    e = {k: v for k, v in os.environ.items() if not k.startswith("KEYHOLD_")}
    e.update(env or {})
    return subprocess.run([str(harness.keyholdd_binary()), "--check-config", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30, env=e)


@pytest.fixture
def base_config(keyholdd) -> str:
    return keyholdd.config_text()


def test_check_config_valid(base_config, tmp_path):
    p = run_check(base_config, tmp_path)
    assert p.returncode == 0, (p.stdout, p.stderr)


@pytest.mark.parametrize("mutate,key", [
    (lambda s: s.replace("[storage]\n", "[storage]\nbogus_key = 1\n"), "storage.bogus_key"),
    (lambda s: s.replace("threads = 2", "threads = many"), "server.threads"),
    (lambda s: s.replace("listen = 127.0.0.1:0", "listen = 127.0.0.1:99999"), "server.listen"),
    (lambda s: re.sub(r"driver = (sqlite|postgresql)\n", "driver = oracle\n", s, count=1),
     "storage.driver"),
    (lambda s: s.replace("rsa_bits = 2048", "rsa_bits = 512"), "keystore.rsa_bits"),
    (lambda s: s + "\n[nonsense]\nx = 1\n", "nonsense"),
    (lambda s: s.replace("[tenant.acme]", "[tenant.ACME!]"), "tenant.ACME!"),
    (lambda s: re.sub(r"(\[tenant\.acme\]\n)issuer = \S+\n", r"\1", s), "tenant.acme.issuer"),
])
def test_check_config_names_bad_key(base_config, tmp_path, mutate, key):
    text = mutate(base_config)
    assert text != base_config
    p = run_check(text, tmp_path)
    assert p.returncode == 1, (p.stdout, p.stderr)
    out = p.stdout + p.stderr
    assert key in out, out


def test_check_config_plain_http_refused_off_loopback(base_config, tmp_path):
    text = re.sub(r"tls_(cert|key) = \S+\n", "", base_config).replace(
        "listen = 127.0.0.1:0", "listen = 0.0.0.0:0")
    p = run_check(text, tmp_path)
    assert p.returncode == 1, (p.stdout, p.stderr)
    out = p.stdout + p.stderr
    assert "server.tls_cert" in out or "server.listen" in out, out


@pytest.mark.sqlite_only
def test_check_config_env_override_fixes_and_breaks(base_config, tmp_path):
    # Missing storage path in the file, supplied by the environment: valid.
    text = re.sub(r"(\[storage\]\ndriver = sqlite\n)path = \S+\n", r"\1", base_config)
    assert text != base_config
    p = run_check(text, tmp_path)
    assert p.returncode == 1 and "storage.path" in p.stdout + p.stderr, (p.stdout, p.stderr)
    p = run_check(text, tmp_path, {"KEYHOLD_STORAGE_PATH": str(tmp_path / "env.db")})
    assert p.returncode == 0, (p.stdout, p.stderr)
    # A bad value from the environment is named by its variable.
    p = run_check(base_config, tmp_path, {"KEYHOLD_SERVER_THREADS": "lots"})
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "KEYHOLD_SERVER_THREADS" in p.stdout + p.stderr or "server.threads" in p.stdout + p.stderr


def test_check_config_missing_file(tmp_path):
    p = subprocess.run([str(harness.keyholdd_binary()), "--check-config", "--config",
                        str(tmp_path / "absent.conf")], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, (p.stdout, p.stderr)


def test_health_not_ready_while_issuer_unreachable(make_keyholdd, issuers, tmp_path):
    """A tenant whose issuer is down: keyholdd still starts and serves /alive, but /health
    reports 503 not_ready (DESIGN: ready = database + key store + issuer)."""
    class Down:  # an issuer URL nothing listens on
        url = "https://127.0.0.1:9/identity"
    k = make_keyholdd(tenants={"default": {"issuer": Down}})
    check_time_body(k.client.get("/alive"))
    r = k.client.get("/health")
    body = assert_error(r, 503, "not_ready")
    assert "reason" not in body and "issuer" not in r.body.decode(), r   # not to outsiders
    r = k.operator.get("/health")
    body = assert_error(r, 503, "not_ready")
    assert body["reason"] == "issuer signing keys not loaded yet", r


# ------------------------------------------------------------------ listeners


def test_metrics_not_on_the_public_listener(client, keyholdd):
    """Tenant ids and per-version uses are operator data: /metrics is no route on the public
    listener (bare or under a tenant), and is on the admin socket."""
    assert_error(client.get("/metrics"), 404, "not_found")
    assert_error(client.get("/t/acme/metrics"), 404, "not_found")
    r = keyholdd.operator.get("/metrics")
    assert r.status == 200 and b"keyhold_requests_total" in r.body, r


def test_admin_socket_is_private(keyholdd):
    st = os.stat(keyholdd.admin_socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert st.st_uid == os.geteuid()


def test_metrics_listen_serves_metrics_only(make_keyholdd, tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    k = make_keyholdd(start=False)
    k.config_text = lambda: harness.Keyholdd.config_text(k).replace(
        "[server]\n", f"[server]\nmetrics_listen = 127.0.0.1:{port}\n", 1)
    k.write_config()
    k.start()
    plain = harness.Client(port, None)
    r = plain.get("/metrics")
    assert r.status == 200 and r.header("Content-Type").startswith("text/plain"), r
    for path in ("/health", "/alive", "/user-keys", "/t/acme/metrics"):
        assert_error(plain.get(path), 404, "not_found")
    assert_error(k.client.get("/metrics"), 404, "not_found")


def test_admin_socket_answers_health_with_reason_and_removes_itself(make_keyholdd):
    k = make_keyholdd()
    r = k.operator.get("/health")
    assert r.status == 200 and r.json() == {"status": "ready"}, r
    assert k.admin_socket.exists()
    assert k.stop() == 0
    assert not k.admin_socket.exists()


def test_a_stale_admin_socket_is_replaced_and_a_live_one_refused(make_keyholdd):
    a = make_keyholdd()
    a.kill()                                  # leaves the socket file behind
    assert a.admin_socket.exists()
    a.start()                                 # a stale socket does not stop a restart
    assert a.operator.get("/health").status == 200
    b = make_keyholdd(start=False)
    b.admin_socket = a.admin_socket           # another keyholdd on a live socket: refused
    b.write_config()
    b.port_file.unlink(missing_ok=True)
    proc = subprocess.run(harness.keyholdd_cmd(b.config_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, proc
    assert "admin socket" in proc.stderr + proc.stdout, proc
    assert a.operator.get("/health").status == 200


def test_admin_socket_path_on_another_file_is_refused_and_the_file_kept(make_keyholdd):
    """connect() to a file that is no socket says ECONNREFUSED as a stale socket does: a
    mistyped admin_socket (here the configuration itself) must not be removed."""
    b = make_keyholdd(start=False)
    b.admin_socket = b.config_path
    b.write_config()
    before = b.config_path.read_bytes()
    proc = subprocess.run(harness.keyholdd_cmd(b.config_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, proc
    assert "admin socket" in proc.stderr + proc.stdout, proc
    assert b.config_path.read_bytes() == before
