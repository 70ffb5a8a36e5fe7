"""Resource bounds under floods (issue "Harden keyholdd", part A): the verified-token cache
never holds more than workers x KH_TOKEN_CACHE_MAX entries however many distinct valid tokens
arrive, refused tokens are never cached, keyholdd's memory stays bounded, and unknown kids
make keyhold fetch the issuer's JWKS at most once per KH_JWKS_REFRESH_MIN_INTERVAL_S."""
import os
import time

import tokens
from harness import assert_error, new_key, poll_until
from rawhttp import RawConn, request_bytes, vm_rss_kib

KH_TOKEN_CACHE_MAX = 16384          # src/common/limits.h, per worker
KH_JWKS_REFRESH_MIN_INTERVAL_S = 30
FLOOD_TOKENS = 20000                # > KH_TOKEN_CACHE_MAX: the bound must bite
BATCH = 200                         # requests pipelined per write
RSS_GROWTH_MAX_KIB = 64 * 1024


def small_asan_quarantine() -> dict:
    """For sanitizer builds: ASan keeps freed memory in a 256 MiB quarantine, which would
    read as growth; shrink it so that RSS measures keyhold, not the sanitizer. (No effect
    on normal builds.)"""
    opts = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (opts + ":" if opts else "") + "quarantine_size_mb=4"}


def cache_metrics(k) -> dict:
    m = k.metrics()
    return {"entries": m.sum("keyhold_token_cache_entries"),
            "misses": m.sum("keyhold_token_cache_misses_total"),
            "hits": m.sum("keyhold_token_cache_hits_total"),
            "rejections": m.sum("keyhold_token_rejections_total")}


def pipelined_gets(conn: RawConn, toks: list[str], path: str = "/user-keys") -> list:
    data = b"".join(request_bytes("GET", path, [("Authorization", "Bearer " + t)]) for t in toks)
    assert conn.send(data), "server closed the connection"
    out = conn.read_responses(len(toks), timeout=30)
    assert len(out) == len(toks), f"{len(out)} of {len(toks)} answers"
    return out


def test_token_cache_is_bounded_under_a_flood_of_distinct_valid_tokens(make_keyholdd, default_issuer):
    """20,000 distinct valid ES256 tokens (one worker, so the bound is exactly
    KH_TOKEN_CACHE_MAX): every one is verified (a cache miss, no rejection), the cache never
    exceeds the bound yet is really used (it fills to most of it), and RSS stays bounded."""
    k = make_keyholdd(tls=False, threads=1, env=small_asan_quarantine())
    bound = 1 * KH_TOKEN_CACHE_MAX
    ec_key = default_issuer.private_key("ec-1")
    u = tokens.new_guid()
    m0 = cache_metrics(k)
    assert m0["entries"] == 0, m0
    rss0 = vm_rss_kib(k.proc.pid)
    rss_max = rss0
    last = None

    conns = [RawConn(k.port, timeout=30) for _ in range(4)]
    try:
        sent = 0
        while sent < FLOOD_TOKENS:
            toks = [tokens.mint(tokens.claims(u, default_issuer.iss), ec_key, "ec-1", "ES256")
                    for _ in range(BATCH)]
            for r in pipelined_gets(conns[(sent // BATCH) % len(conns)], toks):
                assert r.status == 404 and r.json().get("code") == "key_not_found", r
            sent += BATCH
            last = toks[-1]
            if sent % 4000 == 0:
                m = cache_metrics(k)
                assert m["entries"] <= bound, (sent, m)
                rss_max = max(rss_max, vm_rss_kib(k.proc.pid))
    finally:
        for c in conns:
            c.close()

    m1 = cache_metrics(k)
    assert m1["misses"] - m0["misses"] == FLOOD_TOKENS, (m0, m1)
    assert m1["rejections"] == m0["rejections"], (m0, m1)
    assert m1["entries"] <= bound, m1
    # a set-associative cache of 2048 x 8 after 20,000 uniform inserts is ~96% full; an
    # unused or per-set-broken cache would be far below this
    assert m1["entries"] >= 0.8 * bound, m1
    # the most recent token is still cached: a hit, not a miss
    assert k.client.get("/user-keys", token=last).status == 404
    m2 = cache_metrics(k)
    assert (m2["hits"] - m1["hits"], m2["misses"] - m1["misses"]) == (1, 0), (m1, m2)
    rss_max = max(rss_max, vm_rss_kib(k.proc.pid))
    assert rss_max - rss0 < RSS_GROWTH_MAX_KIB, (rss0, rss_max)

    # Refused tokens are never cached: a flood of forged ones leaves the count as it is.
    forged = [tokens.bad_signature(tokens.mint(tokens.claims(u, default_issuer.iss), ec_key, "ec-1",
                                               "ES256")) for _ in range(1000)]
    with RawConn(k.port, timeout=30) as c:
        for i in range(0, len(forged), BATCH):
            for r in pipelined_gets(c, forged[i:i + BATCH]):
                assert r.status == 401 and r.json().get("code") == "invalid_token", r
    m3 = cache_metrics(k)
    assert m3["entries"] == m2["entries"], (m2, m3)
    assert m3["rejections"] - m2["rejections"] == len(forged), (m2, m3)
    assert k.alive(), k.log()
    assert k.stop() == 0, k.log()  # a clean exit (with ASan: no leak report)


def test_cache_entries_per_worker_bound_with_two_workers(make_keyholdd, default_issuer):
    """With two workers the gauge sums both caches: never above 2 x KH_TOKEN_CACHE_MAX and,
    for a small number of tokens spread over connections, exactly the tokens seen by each
    worker (at most the number of distinct tokens)."""
    k = make_keyholdd(tls=False, threads=2)
    ec_key = default_issuer.private_key("ec-1")
    u = tokens.new_guid()
    toks = [tokens.mint(tokens.claims(u, default_issuer.iss), ec_key, "ec-1", "ES256") for _ in range(300)]
    conns = [RawConn(k.port, timeout=30) for _ in range(6)]
    try:
        for i, c in enumerate(conns):
            for r in pipelined_gets(c, toks[i * 50:(i + 1) * 50]):
                assert r.status == 404, r
        # the same tokens again on other connections: each is verified at most once per worker
        for i, c in enumerate(conns):
            for r in pipelined_gets(c, toks[((i + 1) % 6) * 50:((i + 1) % 6 + 1) * 50]):
                assert r.status == 404, r
    finally:
        for c in conns:
            c.close()
    m = cache_metrics(k)
    assert 300 <= m["entries"] <= min(2 * 300, 2 * KH_TOKEN_CACHE_MAX), m
    assert m["misses"] == m["entries"], m  # one verification per (worker, token)
    assert m["hits"] == 600 - m["misses"], m
    assert k.stop() == 0, k.log()


def test_unknown_kids_fetch_the_jwks_at_most_once_per_interval(make_issuer, make_keyholdd):
    """Hundreds of tokens naming unknown kids (the issuer's own key signs them, so only the
    kid is wrong) make keyhold ask its issuer for the JWKS once, not once per token."""
    iss = make_issuer("jwks-rate")
    k = make_keyholdd(tenants={"default": {"issuer": iss}}, tls=False, threads=2)
    assert poll_until(lambda: k.client.get("/health").status == 200, timeout=10)
    j0 = iss.stats()["jwks"]
    assert j0 >= 1  # the start-up fetch
    r0 = cache_metrics(k)["rejections"]
    u = tokens.new_guid()
    start = time.monotonic()

    def flood(n, tag):
        with RawConn(k.port, timeout=30) as c:
            toks = [iss.token(u, headers={"kid": f"forged-{tag}-{i}"}) for i in range(n)]
            for r in pipelined_gets(c, toks):
                assert r.status == 401 and r.json().get("code") == "invalid_token", r

    flood(150, "a")
    # the refresh runs in the background: wait (bounded) for the one fetch it makes
    assert poll_until(lambda: iss.stats()["jwks"] >= j0 + 1, timeout=5), iss.stats()
    flood(150, "b")
    time.sleep(1.0)  # room for any further (wrong) fetches to show up
    assert time.monotonic() - start < KH_JWKS_REFRESH_MIN_INTERVAL_S, "too slow to judge the interval"
    assert iss.stats()["jwks"] == j0 + 1, (j0, iss.stats())
    assert cache_metrics(k)["rejections"] - r0 == 300
    # the issuer's real key still works
    assert_error(k.client.get("/user-keys", token=iss.token(u)), 404, "key_not_found")
    assert k.stop() == 0, k.log()


def test_zz_still_serves_after_floods(keyholdd, client, default_issuer):
    assert keyholdd.alive(), keyholdd.log()
    tok = default_issuer.token(tokens.new_guid())
    assert_error(client.get("/user-keys", token=tok), 404, "key_not_found")
    k = new_key()
    assert client.post("/user-keys", token=tok, json_body={"key": k}).status == 200
    r = client.get("/user-keys", token=tok)
    assert r.status == 200 and r.json() == {"key": k}, r
