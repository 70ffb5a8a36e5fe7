"""keyholdd on a SoftHSM2 token serves recovery approvals in parallel: admin requests of
several members approved at once, each decryption in the token on a job thread of its own
(the pkcs11 store's session pool, keyholdd's reload_lock taken shared), while the auditor
signs checkpoints in the token too. Every approval opens to its member's user key, and the
audit chain with its signed checkpoints verifies."""
import concurrent.futures
import json

import harness
from harness import poll_until
from test_auth_requests import Member, Requester, admin_token, auth, open4
from test_keystore_pkcs11 import PIN, TOKEN, Pkcs11Keyholdd, _cli

MEMBERS = 8


def test_recovery_approvals_in_parallel(pki, issuers, softhsm, tmp_path):
    iss = issuers["default"]
    softhsm.init_token(TOKEN, so_pin="1234", pin=PIN)
    tenants = {"default": {"issuer": iss, "admins": "role:keyhold-admin",
                           "approvers": "role:keyhold-approver"}}
    env = {"SOFTHSM2_CONF": str(softhsm.conf), "KEYHOLD_KEYSTORE_PIN": PIN}
    d = Pkcs11Keyholdd(tmp_path / "k", pki, tenants, softhsm, env=env,
                       extra="\n[audit]\ncheckpoint_records = 2\n")
    d.start()
    try:
        members = [Member(d, iss) for _ in range(MEMBERS)]
        for m in members:
            m.enrol()
        pending = []
        for m in members:
            req = Requester()
            doc = m.create_ok(req, path="/auth-requests/admin-request", type_=2)
            pending.append((m, req, doc["id"]))
        adm = admin_token(iss)

        def approve(rid):
            return d.client.post(f"/organizations/default/auth-requests/{rid}",
                                 json_body={"requestApproved": True, "encryptedUserKey": None},
                                 headers=auth(adm))
        with concurrent.futures.ThreadPoolExecutor(MEMBERS) as pool:
            answers = list(pool.map(approve, [rid for _, _, rid in pending]))
        for r in answers:
            assert r.status == 200 and r.json()["status"] == "approved", r
        for m, req, rid in pending:
            r = d.client.get(f"/auth-requests/{rid}/response?code={req.code}")
            assert r.status == 200 and open4(req.priv, r.json()["key"]) == m.user_key, r

        # the checkpoints signed meanwhile verify
        r = d.operator.get("/admin/audit/public-key")
        assert r.status == 200, r
        pem = tmp_path / "audit.pem"
        pem.write_text(r.json()["pem"])
        out = tmp_path / "chain.jsonl"

        def exported_signed():
            p = _cli("--socket", str(d.admin_socket), "--json", "audit", "export", str(out),
                     "--force")
            assert p.returncode == 0, p
            lines = [json.loads(x) for x in out.read_bytes().splitlines()]
            return lines if sum("signature" in x for x in lines) >= 2 else None
        assert poll_until(exported_signed, timeout=30), "no signed checkpoints in the chain"
        p = _cli("--json", "audit", "verify", str(out), "--public-key", str(pem))
        verdict = json.loads(p.stdout)
        assert p.returncode == 0 and verdict["ok"] is True, (p, verdict)
    finally:
        assert d.stop() == 0, d.log()
    assert PIN not in d.log()
