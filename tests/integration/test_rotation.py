"""Issuer signing-key rotation: a token with a new kid waits for one load of the issuer's
JWKS (coalesced across requests) and is accepted, so a rotation logs nobody out; a kid the
issuer does not have costs at most one fetch per 30 s (KH_JWKS_REFRESH_MIN_INTERVAL_S)
however many tokens name it; a key the issuer withdraws stops being trusted at the next
periodic load ([tenant.*] jwks_refresh), cached tokens signed with it included. Uses its own
issuer and a single-threaded keyholdd so the issuer's fetch counter counts exactly this
server's fetches."""
import time

import pytest

import harness
import tokens
from harness import assert_error, new_key

POLL_BOUND_S = 45


def test_rotation_logs_nobody_out_and_unknown_kids_are_rate_limited(make_issuer, make_keyholdd):
    iss = make_issuer("rot")
    k = make_keyholdd(tenants={"default": {"issuer": iss}}, threads=1)
    u = tokens.new_guid()
    key = new_key()
    r = k.client.post("/user-keys", token=iss.token(u), json_body={"key": key})
    assert r.status == 200, r  # JWKS (with key-1) is loaded now
    fetched = iss.stats()["jwks"]
    assert fetched >= 1

    # The issuer rotates; the first token signed with the new key waits for one load and
    # is accepted at once, as are the next ones.
    iss.rotate("key-2")
    new_tok = iss.token(u, kid="key-2")
    t_first = time.monotonic()
    r = k.client.get("/user-keys", token=new_tok)
    assert r.status == 200 and r.json() == {"key": key}, r
    assert iss.stats()["jwks"] == fetched + 1
    r = k.client.get("/user-keys", token=iss.token(u, kid="key-2"))
    assert r.status == 200, r
    # ... while tokens with the old kid keep working.
    r = k.client.get("/user-keys", token=iss.token(u))
    assert r.status == 200 and r.json() == {"key": key}, r

    # A kid the issuer does not have: refused, and a burst of such requests does not make
    # keyholdd fetch the JWKS once per request.
    forged = tokens.mint(tokens.claims(u, iss.iss), iss.private_key("key-1"), "no-such-kid")
    for _ in range(20):
        assert_error(k.client.get("/user-keys", token=forged), 401, "invalid_token")
    elapsed = time.monotonic() - t_first
    refetches = iss.stats()["jwks"] - fetched
    assert 1 <= refetches <= 1 + 1 + int(elapsed // 30), (refetches, elapsed)


def test_requests_waiting_for_one_load_share_it(make_issuer, make_keyholdd):
    """Several connections send tokens of a new kid at once: they wait for the same load."""
    iss = make_issuer("rot2")
    k = make_keyholdd(tenants={"default": {"issuer": iss}}, threads=1)
    u = tokens.new_guid()
    key = new_key()
    assert k.client.post("/user-keys", token=iss.token(u), json_body={"key": key}).status == 200
    fetched = iss.stats()["jwks"]
    iss.rotate("key-2")
    conns = [k.client.connect() for _ in range(8)]
    toks = [iss.token(u, kid="key-2") for _ in conns]
    for c, t in zip(conns, toks):
        c.putrequest("GET", "/user-keys", skip_accept_encoding=True)
        c.putheader("Authorization", f"Bearer {t}")
        c.endheaders()
    for c in conns:
        r = c.getresponse()
        assert r.status == 200, r.read()
        r.read()
        c.close()
    assert iss.stats()["jwks"] == fetched + 1


@pytest.mark.slow
def test_a_withdrawn_key_is_dropped_at_the_next_periodic_load(make_issuer, make_keyholdd):
    iss = make_issuer("rot3")
    k = make_keyholdd(tenants={"default": {"issuer": iss, "jwks_refresh": 1}}, threads=1)
    u = tokens.new_guid()
    key = new_key()
    iss.rotate("key-2")
    tok2 = iss.token(u, kid="key-2")
    assert k.client.post("/user-keys", token=tok2, json_body={"key": key}).status == 200
    r = k.client.get("/user-keys", token=tok2)      # now in the worker's token cache
    assert r.status == 200, r
    iss.withdraw("key-2")
    deadline = time.monotonic() + POLL_BOUND_S
    while time.monotonic() < deadline:
        r = k.client.get("/user-keys", token=tok2)
        if r.status != 200:
            break
        time.sleep(0.25)
    assert_error(r, 401, "invalid_token")           # the same token, cached or not
    assert k.client.get("/user-keys", token=iss.token(u)).status == 200
