"""The audit log through the real keyholdd: what each request records, refusals aggregated,
the admin routes and who may call them, a member's own history, checkpoints that verify
with the chain's public key (auditref.py, an independent reading of docs/audit.md), use
counters that survive restarts, and a chain that survives kill -9 under load."""
import base64
import json
import os
import pathlib
import random
import socket
import sqlite3
import stat
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

import auditref
import harness
from harness import assert_error, new_key, poll_until

ADMINS = "role:keyhold-admin"
ADMIN_ROUTES = ("/admin/keys", "/admin/audit", "/admin/audit/public-key")


def tenants(issuers, **extra):
    return {"default": {"issuer": issuers["default"], "admins": ADMINS, **extra},
            "acme": {"issuer": issuers["acme"], "admins": ADMINS, **extra}}


AUDIT_EXTRA = "\n[audit]\ncheckpoint_records = 5\n"


@pytest.fixture(scope="module")
def k(pki, issuers, tmp_path_factory):
    d = harness.Keyholdd(tmp_path_factory.mktemp("keyholdd-audit"), pki, tenants(issuers),
                         extra=AUDIT_EXTRA)
    yield from harness.serve(d)


def admin_token(issuer, sub="admin@example.test", **claims):
    """A token whose claims match the admins matcher; its sub is no GUID, so it is no
    member token."""
    return issuer.token(sub, role="keyhold-admin", **claims)


def chain(d, prefix="", server=False):
    """Every record of a chain, read through the operator socket page by page."""
    path = "/server/audit" if server else prefix + "/admin/audit"
    out, since = [], 1
    while True:
        r = d.operator.get(f"{path}?since={since}&limit=10000")
        assert r.status == 200, r
        page = r.json()
        out += page["records"]
        if not page["records"]:
            return out
        since = page["next"]


def wait_record(d, pred, prefix="", server=False):
    """The first record matching pred once it is in the chain (reads trail their answer by
    a batch)."""
    found = poll_until(lambda: [x for x in chain(d, prefix, server) if pred(x)], timeout=10)
    assert found, f"no such record in {chain(d, prefix, server)[-10:]}"
    return found


def public_pem(d, prefix="", server=False) -> str:
    """The chain's public key (made in the background at a chain's first start: awaited)."""
    path = "/server/audit/public-key" if server else prefix + "/admin/audit/public-key"
    r = poll_until(lambda: (lambda x: x if x.status == 200 else None)(d.operator.get(path)))
    assert r and r.status == 200, r
    doc = r.json()
    # new chains sign with ECDSA P-256 (docs/audit.md "Checkpoints")
    assert doc["algorithm"] == "ecdsa-p256-sha256"
    assert "BEGIN PUBLIC KEY" in doc["pem"]
    return doc["pem"]


def public_key(d, prefix="", server=False):
    return auditref.load_public_key(public_pem(d, prefix, server).encode())


def lines_of(records):
    """Records as export lines (any JSON spelling: the hash covers values, not text)."""
    return [json.dumps(x, separators=(",", ":"), ensure_ascii=False).encode() for x in records]


def verify(d, prefix="", server=False):
    lines = lines_of(chain(d, prefix, server))
    return auditref.verify_lines(lines, public_key(d, prefix, server))


# ------------------------------------------------------------------------ key operations


def test_key_operations_are_records_with_the_answers_request_id(k, default_issuer, user):
    tok = default_issuer.token(user)
    answers = {
        "create": k.client.post("/user-keys", token=tok, json_body={"key": new_key()}),
        "read": k.client.get("/user-keys", token=tok),
        "replace": k.client.put("/user-keys", token=tok, json_body={"key": new_key()}),
    }
    for action, r in answers.items():
        assert r.status == 200, r
        rid = r.header("X-Request-Id")
        assert rid and len(rid) == 16 and int(rid, 16) >= 0, r
        rec = wait_record(k, lambda x, rid=rid: x["request_id"] == rid)[0]
        assert (rec["tenant"], rec["actor"], rec["action"], rec["target"], rec["outcome"],
                rec["key_version"], rec["client"], rec["count"]) == \
            ("default", user, action, user, "ok", 1, "127.0.0.1", 1), rec
    assert len({r.header("X-Request-Id") for r in answers.values()}) == 3


def test_refusal_of_a_verified_token_names_the_member(k, default_issuer, user):
    r = k.client.get("/user-keys", token=default_issuer.token(user, scope=["other"]))
    assert_error(r, 403, "insufficient_scope")
    rid = r.header("X-Request-Id")
    rec = wait_record(k, lambda x: x["request_id"] == rid)[0]
    assert (rec["action"], rec["outcome"], rec["target"], rec["actor"]) == \
        ("refused", "insufficient_scope", user, user), rec


def test_a_refused_write_is_a_record_and_changes_nothing(k, default_issuer, user):
    tok = default_issuer.token(user)
    assert k.client.post("/user-keys", token=tok, json_body={"key": new_key()}).status == 200
    r = k.client.post("/user-keys", token=tok, json_body={"key": new_key()})
    assert_error(r, 400, "key_exists")
    rec = wait_record(k, lambda x: x["request_id"] == r.header("X-Request-Id"))[0]
    assert (rec["action"], rec["outcome"], rec["target"]) == ("refused", "key_exists", user)


def test_unknown_tenant_is_a_record_of_the_servers_chain(k, default_issuer, user):
    r = k.client.get("/t/nosuchtenant/user-keys", token=default_issuer.token(user))
    assert_error(r, 404, "unknown_tenant")
    rid = r.header("X-Request-Id")
    assert rid
    rec = wait_record(k, lambda x: x["request_id"] == rid, server=True)[0]
    assert (rec["tenant"], rec["action"], rec["outcome"]) == ("", "refused", "unknown_tenant")


def test_floods_of_bad_tokens_are_aggregated_with_counts(make_keyholdd, issuers):
    d = make_keyholdd(tenants(issuers))
    n = 60
    for _ in range(n):
        assert_error(d.client.get("/t/acme/user-keys", token="not.a.token"), 401, "invalid_token")
    refused = lambda: [x for x in chain(d, "/t/acme") if x["outcome"] == "invalid_token"]
    recs = poll_until(lambda: (lambda v: v if sum(x["count"] for x in v) >= n else None)(refused()),
                      timeout=10)
    assert recs, refused()
    assert sum(x["count"] for x in recs) == n
    # one record per worker, route, outcome and second: far fewer than requests
    assert len(recs) < n / 5, recs
    assert all(x["actor"] == "-" and x["target"] == "user-keys" and x["action"] == "refused"
               for x in recs), recs


def test_log_reads_false_keeps_reads_out_but_not_writes(make_keyholdd, issuers, default_issuer, user):
    d = make_keyholdd(tenants(issuers), extra="\n[audit]\nlog_reads = false\n")
    tok = default_issuer.token(user)
    w = d.client.post("/user-keys", token=tok, json_body={"key": new_key()})
    g = d.client.get("/user-keys", token=tok)
    bad = d.client.get("/user-keys", token=default_issuer.token(user, scope=["x"]))
    assert w.status == 200 and g.status == 200 and bad.status == 403
    wait_record(d, lambda x: x["request_id"] == bad.header("X-Request-Id"))
    ids = {x["request_id"] for x in chain(d)}
    assert w.header("X-Request-Id") in ids
    assert g.header("X-Request-Id") not in ids


# ------------------------------------------------------------------------ admin routes


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_admin_routes_take_admin_tokens_only(k, default_issuer, acme_issuer, user, route):
    assert_error(k.client.get(route), 401, "missing_token")
    assert_error(k.client.get(route, token=default_issuer.token(user)), 403, "not_admin")
    assert_error(k.client.get(route, token=admin_token(acme_issuer)), 401, "invalid_token")
    assert_error(k.client.get(route, token="x.y.z"), 401, "invalid_token")
    r = k.client.get(route, token=admin_token(default_issuer))
    if route.endswith("public-key"):
        r = poll_until(lambda: (lambda x: x if x.status == 200 else None)(
            k.client.get(route, token=admin_token(default_issuer))))
    assert r.status == 200, r
    r = k.client.get("/t/acme" + route, token=admin_token(acme_issuer))
    assert r.status in (200, 503) and (r.status == 200 or r.json()["code"] == "not_ready"), r
    # the operator socket: the same route without a token
    assert k.operator.get(route).status in (200, 503)


def test_admin_token_is_no_member_token(k, default_issuer):
    r = k.client.get("/user-keys", token=admin_token(default_issuer))
    assert r.status == 403, r


def test_admin_actions_and_their_refusals_are_records(k, default_issuer, user):
    ok = k.client.get("/admin/keys", token=admin_token(default_issuer, sub="alice-admin"))
    no = k.client.get("/admin/keys", token=default_issuer.token(user))
    assert ok.status == 200 and no.status == 403
    a = wait_record(k, lambda x: x["request_id"] == ok.header("X-Request-Id"))[0]
    assert (a["actor"], a["action"], a["outcome"], a["target"]) == \
        ("alice-admin", "key.status", "ok", "admin/keys"), a
    b = wait_record(k, lambda x: x["outcome"] == "not_admin" and x["actor"] == user)[0]
    assert (b["action"], b["target"]) == ("refused", "admin/keys"), b


def test_operator_is_local_uid(k):
    r = k.operator.get("/admin/keys")
    assert r.status == 200, r
    rec = wait_record(k, lambda x: x["request_id"] == r.header("X-Request-Id"))[0]
    assert (rec["actor"], rec["client"]) == (f"local:uid={os.getuid()}", "local"), rec


def test_server_routes_are_on_the_socket_only(k):
    assert_error(k.client.get("/server/audit"), 404, "not_found")
    assert_error(k.client.get("/server/audit/public-key"), 404, "not_found")
    assert k.operator.get("/server/audit").status == 200


@pytest.mark.parametrize("query", ["since=abc", "limit=0", "limit=10001", "since=1&last=2",
                                   "foo=1", "since=1&since=2", "since=", "since", "last=0",
                                   "since=1&", "since=-1", "since=99999999999999999999"])
def test_bad_audit_parameters_are_invalid_parameter(k, query):
    assert_error(k.operator.get("/admin/audit?" + query), 400, "invalid_parameter")


def test_audit_pages_and_last(k, default_issuer):
    # writes: each is a record of its own commit, so the chain holds at least these
    for _ in range(5):
        assert k.client.post("/user-keys", token=default_issuer.token(str(uuid.uuid4())),
                             json_body={"key": new_key()}).status == 200
    full = chain(k)
    head = full[-1]["seq"]
    assert head >= 5
    page = k.operator.get("/admin/audit?since=2&limit=3").json()
    assert [x["seq"] for x in page["records"]] == [2, 3, 4]
    assert page["next"] == 5 and page["head"] >= head
    last = k.operator.get("/admin/audit?last=2").json()
    assert len(last["records"]) == 2 and last["records"][-1]["seq"] >= head
    beyond = k.operator.get(f"/admin/audit?since={last['head'] + 100}").json()
    assert beyond["records"] == [] and beyond["next"] == last["head"] + 100


def test_keys_status(k, default_issuer, user):
    tok = default_issuer.token(user)
    assert k.client.post("/user-keys", token=tok, json_body={"key": new_key()}).status == 200
    doc = k.operator.get("/admin/keys").json()
    assert doc["active"] == 1
    (v,) = doc["versions"]
    assert (v["version"], v["state"], v["algorithm"]) == (1, "active", "rsa-2048")
    assert v["records"] >= 1 and v["encrypts"] >= 1
    assert len(v["created"]) == 20 and v["created"].endswith("Z")
    assert doc["job"]["state"] == "none"


def test_use_counters_are_durable_across_restarts(make_keyholdd, issuers, default_issuer, user):
    d = make_keyholdd(tenants(issuers))
    tok = default_issuer.token(user)
    assert d.client.post("/user-keys", token=tok, json_body={"key": new_key()}).status == 200
    for _ in range(3):
        assert d.client.get("/user-keys", token=tok).status == 200

    def uses():
        (v,) = d.operator.get("/admin/keys").json()["versions"]
        return (v["encrypts"], v["decrypts"], v["records"])
    assert poll_until(lambda: uses() == (1, 3, 1)), uses()
    assert d.stop() == 0
    d.start()
    assert uses() == (1, 3, 1)
    d.kill()                     # a kill -9 right after a write: that write's count is in its commit
    d.start()
    assert d.client.put("/user-keys", token=tok, json_body={"key": new_key()}).status == 200
    d.kill()
    d.start()
    assert uses()[0] == 2


# ------------------------------------------------------------------------ history


def test_history_shows_a_members_own_events_newest_first(k, default_issuer):
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    ta, tb = default_issuer.token(alice), default_issuer.token(bob)
    assert k.client.post("/user-keys", token=ta, json_body={"key": new_key()}).status == 200
    assert k.client.post("/user-keys", token=tb, json_body={"key": new_key()}).status == 200
    assert k.client.get("/user-keys", token=ta).status == 200
    assert k.client.get("/user-keys", token=tb).status == 200
    assert k.client.get("/user-keys", token=default_issuer.token(alice, scope=["x"])).status == 403
    last = k.client.put("/user-keys", token=ta, json_body={"key": new_key()})

    def history(tok, q=""):
        r = k.client.get("/user-keys/history" + q, token=tok)
        assert r.status == 200, r
        return r.json()
    h = poll_until(lambda: (lambda x: x if len(x["events"]) >= 4 else None)(history(ta)))
    # in chain order; a refusal is written once its second is over (refusals of a second
    # are one record), so it may come after the events that followed it
    actions = [e["action"] for e in h["events"]]
    assert [a for a in actions if a != "refused"] == ["replace", "read", "create"], h
    assert actions.count("refused") == 1, h
    assert [e for e in h["events"] if e["action"] == "replace"][0]["request_id"] == \
        last.header("X-Request-Id")
    assert [e for e in h["events"] if e["action"] == "refused"][0]["outcome"] == \
        "insufficient_scope"
    assert all(e["client"] == "127.0.0.1" and e["key_version"] in (0, 1) and e["count"] == 1
               for e in h["events"])
    assert h["next_before"] is None
    seqs = [e["seq"] for e in h["events"]]
    assert seqs == sorted(seqs, reverse=True)
    # bob's events are never alice's
    own = {x["request_id"] for x in chain(k) if x["target"] == alice}
    assert {e["request_id"] for e in h["events"]} <= own
    hb = history(tb)
    assert [e["action"] for e in hb["events"]] == ["read", "create"]

    # paging: two at a time, each page below the last
    p1 = history(ta, "?limit=2")
    assert [e["seq"] for e in p1["events"]] == seqs[:2] and p1["next_before"] == seqs[1]
    p2 = history(ta, f"?limit=2&before={p1['next_before']}")
    assert [e["seq"] for e in p2["events"]] == seqs[2:4]
    assert_error(k.client.get("/user-keys/history?limit=501", token=ta), 400, "invalid_parameter")
    assert_error(k.client.get("/user-keys/history?who=bob", token=ta), 400, "invalid_parameter")
    assert_error(k.client.get("/user-keys/history"), 401, "missing_token")


def history_order(e):
    """The order of GET /user-keys/history, newest first: time, replica, seq (descending)."""
    return (e["time"], e.get("replica", ""), e["seq"])


def history_pages(d, tok, limit, first=None):
    """Every event by pages of limit, following next_before; and the cursors seen."""
    events, cursors, q = [], [], f"?limit={limit}"
    while True:
        r = d.client.get("/user-keys/history" + q, token=tok)
        assert r.status == 200, r
        page = r.json()
        assert len(page["events"]) <= limit
        events += page["events"]
        if first is not None and len(cursors) == 0:
            first()
        if page["next_before"] is None:
            return events, cursors
        cursors.append(page["next_before"])
        q = f"?limit={limit}&before={page['next_before']}"


def test_history_merges_the_chains_of_every_replica(pki, issuers, tmp_path):
    """A member's history reads the chain of every replica that wrote to the tenant, merged
    newest first, and pages through them all with one cursor (docs/admin-api.md)."""
    d = harness.Keyholdd(tmp_path / "k", pki, tenants(issuers), extra=AUDIT_EXTRA)
    iss = issuers["default"]
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    ta, tb = iss.token(alice), iss.token(bob)
    ids = {}                            # alice's request ids by replica ("" the unnamed)
    for stage, name in enumerate((None, "node-a", "node-b")):
        d.server_replica = name
        d.write_config()
        d.start()
        try:
            if stage == 0:
                r = d.client.post("/user-keys", token=ta, json_body={"key": new_key()})
                assert d.client.post("/user-keys", token=tb, json_body={"key": new_key()}).status == 200
            else:
                r = d.client.put("/user-keys", token=ta, json_body={"key": new_key()})
            assert r.status == 200, r
            got = [r.header("X-Request-Id")]
            for _ in range(3):
                r = d.client.get("/user-keys", token=ta)
                assert r.status == 200
                got.append(r.header("X-Request-Id"))
            assert d.client.get("/user-keys", token=tb).status == 200
            ids[name or ""] = got
            if stage < 2:
                # the chain's events are in before the next replica starts writing
                assert poll_until(lambda: len(d.client.get("/user-keys/history?limit=500",
                                                           token=ta).json()["events"])
                                  >= 4 * (stage + 1), timeout=10)
        finally:
            if stage < 2:
                assert d.stop() == 0
    try:
        full = poll_until(lambda: (lambda x: x if len(x["events"]) >= 12 else None)(
            d.client.get("/user-keys/history?limit=500", token=ta).json()), timeout=10)
        events = full["events"]
        assert full["next_before"] is None
        assert sorted((e["request_id"] for e in events)) == sorted(sum(ids.values(), [])), events
        for name, got in ids.items():
            mine = [e for e in events if e["request_id"] in got]
            assert all(e.get("replica", "") == name for e in mine), mine
            assert [e["action"] for e in mine][-1] in ("create", "replace")
        assert all("replica" not in e for e in events if e["request_id"] in ids[""])
        assert events == sorted(events, key=history_order, reverse=True)
        # the newest first: node-b's events, then node-a's, then the unnamed replica's
        assert [e.get("replica", "") for e in events] == ["node-b"] * 4 + ["node-a"] * 4 + [""] * 4
        assert poll_until(lambda: [e["action"] for e in d.client.get(
            "/user-keys/history", token=tb).json()["events"]] == ["read", "read", "read", "create"],
            timeout=10)

        # pages of any size give the same events once each, across the chains
        for limit in (1, 2, 3, 5, 12):
            paged, cursors = history_pages(d, ta, limit)
            assert paged == events, limit
            # a string while a named replica's chain has more; then the unnamed one's seq
            kinds = [isinstance(c, int) for c in cursors]
            assert kinds == sorted(kinds), cursors
            assert all("_" in c for c in cursors if isinstance(c, str)), cursors
        # once only the unnamed replica's chain is left the cursor is its seq, as on a
        # single server
        paged, cursors = history_pages(d, ta, 9)
        assert cursors == [events[8]["seq"]] and paged == events

        # an event after the first page comes first on a new request, never inside the pages
        late = []
        paged, _ = history_pages(d, ta, 5, first=lambda: late.append(
            d.client.get("/user-keys", token=ta).header("X-Request-Id")))
        assert paged == events
        assert poll_until(lambda: d.client.get("/user-keys/history?limit=1", token=ta)
                          .json()["events"][0]["request_id"] == late[0], timeout=10)

        # a cursor is checked: a chain the tenant has not, a seq of 0 or beyond 2^63-1, a
        # chain twice, stray bytes are refused; a well-formed one shows only one's own events
        # (chains are numbered: 0 the unnamed replica's, then node-a, node-b)
        for bad in ("3_5", "1_0", "1_9223372036854775808", "1_1.1_2", "_", "1_", "_5", "01_5",
                    ".", "1_5.", "1_5..2_3", "node-a_5", "%5F5", "0", "-1", "1_1_2", "1.5",
                    "9223372036854775808", "1_" + "9" * 900):
            assert_error(d.client.get(f"/user-keys/history?before={bad}", token=ta),
                         400, "invalid_parameter")
        assert_error(d.client.get("/user-keys/history?before=", token=ta), 400,
                     "invalid_parameter")
        r = d.client.get("/user-keys/history?before=1_9223372036854775807.0_1000", token=tb)
        assert r.status == 200 and {e.get("replica", "") for e in r.json()["events"]} == {"node-a", ""}
        assert all(e["request_id"] not in sum(ids.values(), []) for e in r.json()["events"])
    finally:
        assert d.stop() == 0


def test_history_pages_a_burst_once_each(pki, issuers, tmp_path):
    """Reads answered at once are committed in blocks of dozens, and their times are not in
    the order of their seqs: paged through two chains by any page size, every event still
    comes exactly once, each chain's in its order."""
    d = harness.Keyholdd(tmp_path / "k", pki, tenants(issuers), extra=AUDIT_EXTRA)
    tok = issuers["default"].token(str(uuid.uuid4()))
    n = 0
    for name in (None, "node-a"):
        d.server_replica = name
        d.write_config()
        d.start()
        try:
            if name is None:
                assert d.client.post("/user-keys", token=tok, json_body={"key": new_key()}).status == 200
                n += 1

            def burst():
                c = harness.Client(d.port, harness.client_tls_context(pki.ca_pem))
                for _ in range(10):
                    assert c.get("/user-keys", token=tok).status == 200
            threads = [threading.Thread(target=burst) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            n += 160
            # every page followed: a page may end short of its limit (a stored block holding
            # more of this member's events than one scan reads), its cursor going on
            full = poll_until(lambda: (lambda ev: ev if len(ev) >= n else None)(
                history_pages(d, tok, 500)[0]), timeout=30)
            assert full is not None and len(full) == n, (n, full and len(full))
        finally:
            if name is None:
                assert d.stop() == 0
    try:
        events, _ = history_pages(d, tok, 500)
        # each chain in its own order (a read's time may be a millisecond before that of the
        # read committed ahead of it); node-a's, all later, first
        for name in ("", "node-a"):
            seqs = [e["seq"] for e in events if e.get("replica", "") == name]
            assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
        assert [e.get("replica", "") for e in events] == ["node-a"] * 160 + [""] * 161
        for limit in (7, 50, 100):
            paged, _ = history_pages(d, tok, limit)
            assert paged == events, limit
    finally:
        assert d.stop() == 0


# ------------------------------------------------------------------------ integrity


def test_nothing_dropped_is_a_metric(k):
    m = k.metrics()
    assert m.has("keyhold_audit_dropped_total")
    assert m.sum("keyhold_audit_dropped_total") == 0


def test_chain_verifies_with_its_public_key(k, default_issuer, user):
    tok = default_issuer.token(user)
    for _ in range(12):          # checkpoint_records = 5: at least two checkpoints
        k.client.get("/user-keys", token=tok)
    result = poll_until(lambda: (lambda v: v if v["checkpoints"] >= 2 else None)(verify(k)))
    assert result and result["ok"], result
    assert verify(k, server=True)["ok"]


def test_a_checkpoint_does_not_verify_under_another_chains_key(k):
    lines = lines_of(chain(k))
    assert any(b'"checkpoint"' in x for x in lines)
    other = auditref.verify_lines(lines, public_key(k, "/t/acme"))
    assert not other["ok"] and other["reason"] == "bad signature", other


def test_restart_continues_the_chain(make_keyholdd, issuers, default_issuer, user):
    d = make_keyholdd(tenants(issuers), extra=AUDIT_EXTRA)
    tok = default_issuer.token(user)
    assert d.client.post("/user-keys", token=tok, json_body={"key": new_key()}).status == 200
    assert d.stop() == 0
    d.start()
    assert d.client.get("/user-keys", token=tok).status == 200
    wait_record(d, lambda x: x["action"] == "read")
    actions = [x["action"] for x in chain(d, server=True)]
    assert actions[:4] == ["start", "stop", "checkpoint", "start"], actions
    assert verify(d)["ok"] and verify(d, server=True)["ok"]


def test_chain_survives_kill9_under_load(make_keyholdd, issuers, default_issuer):
    """Writers and readers run while keyholdd is killed with SIGKILL, three times. After
    each restart the chain goes on from its head: no gap, no fork, it verifies, and every
    write that was acknowledged has its record."""
    d = make_keyholdd(tenants(issuers), extra=AUDIT_EXTRA)
    acknowledged = set()
    users = [str(uuid.uuid4()) for _ in range(8)]
    toks = {u: default_issuer.token(u) for u in users}
    for round_ in range(3):
        stop = threading.Event()

        def load(seed):
            rnd = random.Random(seed)
            c = harness.Client(d.port, harness.client_tls_context(d.pki.ca_pem))
            while not stop.is_set():
                u = rnd.choice(users)
                try:
                    if rnd.random() < 0.5:
                        r = c.put("/user-keys", token=toks[u], json_body={"key": new_key()})
                        if r.status == 200:
                            acknowledged.add(r.header("X-Request-Id"))
                    else:
                        c.get("/user-keys", token=toks[u])
                except OSError:
                    return
        threads = [threading.Thread(target=load, args=(round_ * 10 + i,)) for i in range(3)]
        for t in threads:
            t.start()
        poll_until(lambda: len(acknowledged) >= 20 * (round_ + 1), timeout=20)
        d.kill()
        stop.set()
        for t in threads:
            t.join()
        d.start()
    records = chain(d)
    assert [x["seq"] for x in records] == list(range(1, len(records) + 1))
    assert verify(d)["ok"]
    ids = {x["request_id"] for x in records if x["action"] == "replace"}
    assert acknowledged and acknowledged <= ids, acknowledged - ids


@pytest.mark.sqlite_only
def test_no_secret_reaches_the_log(make_keyholdd, issuers, default_issuer, user):
    d = make_keyholdd(tenants(issuers))
    tok = default_issuer.token(user)
    key = new_key()
    assert d.client.post("/user-keys", token=tok, json_body={"key": key}).status == 200
    assert d.client.get("/user-keys", token=tok).status == 200
    wait_record(d, lambda x: x["action"] == "read")
    assert d.stop() == 0
    wal = d.db_path.with_name(d.db_path.name + "-wal")
    raw = d.db_path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    for secret in (tok, tok.split(".")[2], key):
        assert secret.encode() not in raw


# ------------------------------------------------------------------------ the socket


def test_admin_socket_refuses_another_uid(make_keyholdd, issuers):
    """As root, another uid's connect() to the 0600 socket fails; made world-writable for a
    moment, the same connect works, which shows the check can fail."""
    if os.getuid() != 0:
        pytest.skip("needs root to run a check as another uid")
    where = tempfile.mkdtemp(prefix="kh-sock-")
    os.chmod(where, 0o755)
    d = make_keyholdd(tenants(issuers), start=False)
    d.admin_socket = pathlib_path = pathlib.Path(where) / "admin.sock"
    d.write_config()
    d.start()
    assert stat.S_IMODE(os.stat(pathlib_path).st_mode) == 0o600

    def connect_as_nobody():
        code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
                "try:\n s.connect(sys.argv[1]); print('connected')\n"
                "except PermissionError: print('denied')\n")
        return subprocess.run(["/usr/bin/python3", "-c", code, str(pathlib_path)],
                              preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)),
                              capture_output=True, text=True, timeout=30).stdout.strip()
    assert connect_as_nobody() == "denied"
    os.chmod(pathlib_path, 0o666)
    try:
        assert connect_as_nobody() == "connected"
    finally:
        os.chmod(pathlib_path, 0o600)
    socket.socket(socket.AF_UNIX).connect(str(pathlib_path))


# ------------------------------------------------------------------------ admin issuer


def test_admin_issuer_tokens_administer_and_are_no_member_tokens(make_keyholdd, make_issuer,
                                                                  issuers, default_issuer, user):
    """[tenant.*] admin_issuer: a company IdP whose tokens may administer the tenant, never
    act as a member; the tenant's own issuer still serves members and admins."""
    corp = make_issuer("corp")
    t = tenants(issuers)
    t["default"].update(admin_issuer=corp.url, admin_issuer_ca=corp.ca_pem)
    d = make_keyholdd(t)
    corp_admin = admin_token(corp, sub="carol@corp.example")
    r = poll_until(lambda: (lambda x: x if x.status == 200 else None)(
        d.client.get("/admin/keys", token=corp_admin)))
    assert r and r.status == 200, r
    rec = wait_record(d, lambda x: x["request_id"] == r.header("X-Request-Id"))[0]
    assert rec["actor"] == "carol@corp.example"
    # a member-shaped token of the admin IdP (GUID sub, api scope) is still no member: member
    # routes take the tenant's issuer only
    assert_error(d.client.get("/user-keys", token=corp.token(user)), 401, "invalid_token")
    assert_error(d.client.get("/admin/keys", token=corp.token(user)), 403, "not_admin")
    # the tenant's issuer keeps working for both
    assert d.client.post("/user-keys", token=default_issuer.token(user),
                         json_body={"key": new_key()}).status == 200
    assert d.client.get("/admin/keys", token=admin_token(default_issuer)).status == 200
    # another tenant does not take the admin IdP's tokens
    assert_error(d.client.get("/t/acme/admin/keys", token=corp_admin), 401, "invalid_token")


# ------------------------------------------------------------------------ tampering


def _export(d, out, *args, check=True):
    """`keyhold audit export` of the default chain (or, with args, --tenant T or --server):
    a copy of what the server holds, gaps and all (it warns), for `audit verify` to judge."""
    p = subprocess.run([str(harness.build_dir() / "src" / "cli" / "keyhold"), "--socket",
                        str(d.admin_socket), "--json", "audit", "export", str(out), "--force",
                        *args], capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, p
        return out
    return p


def _verify(out, pem):
    p = subprocess.run([str(harness.build_dir() / "src" / "cli" / "keyhold"), "--json", "audit",
                        "verify", str(out), "--public-key", str(pem)],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, json.loads(p.stdout)


def _read_blocks(db_path, chain_id="default"):
    """A chain's stored blocks, (first_seq, last_seq, head_hash, data) in chain order."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [(a, b, bytes(h), bytes(x)) for a, b, h, x in db.execute(
            "SELECT first_seq, last_seq, head_hash, data FROM audit_blocks WHERE chain = ? "
            "ORDER BY first_seq", (chain_id,))]
    finally:
        db.close()


def _rewrite_blocks(db_path, edit):
    """Applies edit(list of (first_seq, last_seq, head_hash, data)) -> same to the default
    chain's stored blocks, with the database's own client (keyholdd stopped)."""
    rows = _read_blocks(db_path)
    db = sqlite3.connect(db_path)
    try:
        db.execute("DELETE FROM audit_blocks WHERE chain = 'default'")
        db.executemany("INSERT INTO audit_blocks (chain, first_seq, last_seq, head_hash, data) "
                       "VALUES ('default', ?, ?, ?, ?)", edit(rows))
        db.commit()
    finally:
        db.close()


def _records(rows, tenant="default"):
    """The records of stored blocks as the export dicts (auditref: docs/audit.md alone)."""
    return [x for r in rows for x in auditref.decode_block(r[3], r[0], tenant)]


def _legacy_block(records) -> bytes:
    """Records as a block of the form keyhold stored before the binary one: export lines."""
    return b"".join(line + b"\n" for line in lines_of(records))


def _as_one_block(records, rows, form):
    """The records as one block (the store does not look inside blocks): binary, whose
    records take their seq from the row and their position, or legacy JSON Lines, whose
    records carry their own."""
    if form == "binary":
        first = rows[0][0]
        return [(first, first + len(records) - 1, rows[-1][2], auditref.encode_block(records))]
    first, last = records[0]["seq"], records[-1]["seq"]
    return [(first, last, rows[-1][2], _legacy_block(records))]


def _flip(rows, seq, pick):
    """rows with bits flipped in one byte inside the stored binary block that holds record
    seq: pick(spans, data) -> (offset, mask), from the record's field spans
    (auditref.block_layout)."""
    out = []
    for first, last, head, data in rows:
        if first <= seq <= last:
            assert data[0] == auditref.BLOCK_V1, "the server wrote a legacy block"
            layout = auditref.block_layout(data, first, "default")
            rec, spans = layout[seq - first]
            assert rec["seq"] == seq
            data = bytearray(data)
            at, mask = pick(spans, data)
            data[at] ^= mask
            data = bytes(data)
        out.append((first, last, head, data))
    return out


def _flip_string(spans, data):
    """The last byte of the first string record 3 stores (an ASCII byte stays UTF-8)."""
    name = next(f for f in ("client", "actor", "target", "action", "outcome") if f in spans)
    return spans[name][1] - 1, 0x01


KINDS = [("changed", "binary"), ("removed", "binary"), ("inserted", "binary"),
         ("swapped", "binary"), ("forged", "binary"), ("changed", "json"), ("removed", "json"),
         ("inserted", "json"), ("swapped", "json"), ("forged", "json"),
         ("flipped-string", "binary"), ("flipped-hash", "binary"),
         ("flipped-flags", "binary")]


@pytest.mark.parametrize("kind,form", KINDS, ids=[f"{k}-{f}" for k, f in KINDS])
@pytest.mark.sqlite_only
def test_verify_names_tampering_of_the_database(make_keyholdd, issuers, default_issuer,
                                                 tmp_path, kind, form):
    """Whoever can write the database edits the stored chain, written back in the binary
    form or as a legacy JSON block, or flips a byte inside a stored binary block; the export
    of the server that then opens it fails verification at the record that was touched (or,
    when the block no longer decodes, the export itself fails)."""
    d = make_keyholdd(tenants(issuers), extra=AUDIT_EXTRA)
    users = [str(uuid.uuid4()) for _ in range(4)]
    for u in users:
        assert d.client.post("/user-keys", token=default_issuer.token(u),
                             json_body={"key": new_key()}).status == 200
        assert d.client.get("/user-keys", token=default_issuer.token(u)).status == 200
    pem = tmp_path / "default.pem"
    pem.write_text(public_pem(d))
    assert d.stop() == 0
    d.start()
    intact = _export(d, tmp_path / "intact.jsonl")
    assert _verify(intact, pem)[0] == 0
    assert d.stop() == 0
    stored = _records(_read_blocks(d.db_path))
    assert [x["seq"] for x in stored] == list(range(1, len(stored) + 1))

    victim = 3                           # seq of the record tampered with
    forged = {}

    def edit(rows):
        if kind == "flipped-string":
            return _flip(rows, victim, _flip_string)
        if kind == "flipped-hash":
            return _flip(rows, victim, lambda spans, data: (spans["hash"][0] + 7, 0x80))
        if kind == "flipped-flags":      # both target flags: no longer a block
            both = auditref.F_TARGET_IS_ACTOR | auditref.F_TARGET
            return _flip(rows, victim, lambda spans, data: (
                spans["flags"][0], both & ~data[spans["flags"][0]]))
        records = _records(rows)
        i = victim - 1
        if kind == "changed":
            assert records[i]["client"] == "127.0.0.1", records[i]
            records[i]["client"] = "127.0.0.2"
        elif kind == "removed":
            del records[i]
        elif kind == "inserted":
            records.insert(i, dict(records[i]))
        elif kind == "swapped":
            records[i], records[i + 1] = records[i + 1], records[i]
        elif kind == "forged":
            rec = next(x for x in records if x["action"] == "checkpoint")
            sig = bytearray(base64.b64decode(rec["signature"]))
            sig[10] ^= 1
            rec["signature"] = base64.b64encode(bytes(sig)).decode()
            forged["seq"] = rec["seq"]
        return _as_one_block(records, rows, form)

    _rewrite_blocks(d.db_path, edit)
    d.start()
    if kind == "flipped-flags":
        # the block holding record 3 no longer decodes: the export stops with the server's
        # answer for a stored record that fails its integrity check, and writes no chain
        p = _export(d, tmp_path / "tampered.jsonl", check=False)
        assert p.returncode == 1 and json.loads(p.stdout) == {
            "message": "A stored record failed its integrity check.",
            "code": "record_integrity"}, p
        assert not (tmp_path / "tampered.jsonl").exists()
        assert d.alive() and d.operator.get("/admin/keys").status == 200
        return
    rc, verdict = _verify(_export(d, tmp_path / "tampered.jsonl"), pem)
    assert rc == 1 and verdict["ok"] is False, verdict
    # the copy inserted after record 3 is the bad one: it should have been 4
    expected = {"forged": forged.get("seq"), "inserted": victim + 1}.get(kind, victim)
    assert verdict["first_bad_seq"] == expected, verdict
    if kind.startswith("flipped"):
        assert verdict["reason"] == "hash mismatch", verdict


@pytest.mark.sqlite_only
def test_stored_blocks_decode_to_what_the_export_prints(make_keyholdd, issuers, default_issuer,
                                                        acme_issuer, tmp_path):
    """The blocks keyholdd writes, read with auditref.decode_block (docs/audit.md alone),
    hold exactly the records `keyhold audit export` prints, in every chain: the C writer and
    an independent reader of the format agree. Then the same chains rewritten as legacy JSON
    blocks (what older servers stored) export the same, and new records follow them."""
    d = make_keyholdd(tenants(issuers), extra=AUDIT_EXTRA)
    users = [str(uuid.uuid4()) for _ in range(3)]
    for prefix, issuer in (("", default_issuer), ("/t/acme", acme_issuer)):
        for u in users:
            tok = issuer.token(u)
            assert d.client.post(prefix + "/user-keys", token=tok,
                                 json_body={"key": new_key()}).status == 200
            assert d.client.get(prefix + "/user-keys", token=tok).status == 200
            assert d.client.put(prefix + "/user-keys", token=tok,
                                json_body={"key": new_key()}).status == 200
            # refused: a verified member token (target is the actor), then no token at all
            assert_error(d.client.get(prefix + "/user-keys", token=issuer.token(u, scope=["x"])),
                         403, "insufficient_scope")
            assert_error(d.client.get(prefix + "/user-keys", token="x.y.z"), 401,
                         "invalid_token")
        assert d.client.get(prefix + "/admin/keys", token=admin_token(issuer)).status == 200
        assert d.operator.get(prefix + "/admin/keys").status == 200
    assert d.client.get("/t/nobody/user-keys").status == 404
    assert d.stop() == 0                   # a checkpoint in every chain

    chains = {"default": [], "acme": ["--tenant", "acme"], "": ["--server"]}
    stored = {}
    for c in chains:
        rows = _read_blocks(d.db_path, c)
        assert rows and all(r[3][0] == auditref.BLOCK_V1 for r in rows), c
        for first, last, head, data in rows:
            recs = auditref.decode_block(data, first, c)
            assert (recs[0]["seq"], recs[-1]["seq"], recs[-1]["hash"]) == \
                (first, last, head.hex()), (c, first, last)
        stored[c] = _records(rows, c)
        assert [x["seq"] for x in stored[c]] == list(range(1, len(stored[c]) + 1)), c
        assert any("signature" in x for x in stored[c]), c
    assert any(x["target"] == x["actor"] and x["action"] == "refused"
               for x in stored["default"])

    d.start()
    for c, args in chains.items():
        out = _export(d, tmp_path / f"{c or 'server'}.jsonl", *args)
        exported = [json.loads(x) for x in out.read_bytes().splitlines()]
        assert exported[:len(stored[c])] == stored[c], c
    assert d.stop() == 0

    # the default chain as legacy blocks, one per stored block: read as before, and the
    # server goes on after them in the binary form
    rows = _read_blocks(d.db_path)
    _rewrite_blocks(d.db_path, lambda rows: [
        (a, b, h, _legacy_block(auditref.decode_block(x, a, "default"))) for a, b, h, x in rows])
    legacy = _records(_read_blocks(d.db_path))
    assert legacy == _records(rows)
    d.start()
    assert d.client.get("/user-keys", token=default_issuer.token(users[0])).status == 200
    wait_record(d, lambda x: x["seq"] > len(legacy) and x["action"] == "read")
    out = _export(d, tmp_path / "after-legacy.jsonl")
    exported = [json.loads(x) for x in out.read_bytes().splitlines()]
    assert exported[:len(legacy)] == legacy
    pem = tmp_path / "default.pem"
    pem.write_text(public_pem(d))
    assert d.stop() == 0               # signs what follows the legacy blocks
    after = _read_blocks(d.db_path)
    assert after[0][3][:1] == b"{" and after[-1][3][0] == auditref.BLOCK_V1
    out = _export(d.start(), tmp_path / "signed.jsonl")
    rc, verdict = _verify(out, pem)
    assert rc == 0 and verdict["records"] > len(legacy), verdict


# ------------------------------------------------------------------------ retention

FAKETIME_LIB = pathlib.Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def test_retention_prunes_old_records_and_the_rest_verifies(make_keyholdd, issuers):
    """[audit] keep_days = 1: a chain written ten days ago (keyholdd run under libfaketime)
    loses its old blocks at the next start, but keeps a checkpoint that signs what is left,
    so the pruned chain still verifies from its first record on."""
    assert FAKETIME_LIB.exists(), "faketime is a test dependency (scripts/install-deps)"
    d = make_keyholdd(tenants(issuers), extra=AUDIT_EXTRA, start=False)
    d.env = {"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": "-10d"}
    if harness.sanitized_build():
        # libfaketime and the sanitizer runtime can deadlock while both start (seen in CI:
        # "unexpected recursive calls to clock_gettime()"). The old records only need to be
        # written, by any keyholdd: the release build writes them, and the build under test
        # prunes and serves them below.
        d.binary = harness.REPO / "build-release" / "src" / "daemon" / "keyholdd"
        assert d.binary.exists(), f"{d.binary}: build-release is needed (scripts/test builds it)"
    d.start()
    for _ in range(12):                      # operator reads: no token, no clock checks
        assert d.operator.get("/admin/keys").status == 200
    wait_record(d, lambda x: x["seq"] >= 12)
    old_records = chain(d)
    assert d.stop() == 0

    d.env = {}
    d.binary = None
    d.extra = "\n[audit]\ncheckpoint_records = 5\nkeep_days = 1\n"
    d.write_config()
    d.start()
    pruned = poll_until(lambda: (lambda c: c if c and c[0]["seq"] > 1 else None)(chain(d)),
                        timeout=15)
    assert pruned, chain(d)[:3]
    last_old = max(x["seq"] for x in old_records)
    cutoff = auditref.fmt_time(int((time.time() - 86400) * 1000))
    # what is kept starts at the old run's last checkpoint (its shut-down), the only old
    # record left; everything after it is from this run
    assert pruned[0]["action"] == "checkpoint" and pruned[0]["time"] < cutoff, pruned[0]
    assert pruned[0]["seq"] > last_old
    assert all(x["time"] >= cutoff for x in pruned[1:]), pruned[:3]
    assert d.operator.get("/admin/keys").status == 200
    wait_record(d, lambda x: x["seq"] > last_old)
    result = verify(d)
    assert result["ok"] and result["first_seq"] == pruned[0]["seq"], result
