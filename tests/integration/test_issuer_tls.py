"""[tenant.*] issuer_ca pins the issuer's TLS: with it set, the issuer's certificate must chain
to that CA and to no other, the system's CAs included; without it, the system's CAs are
used. A tenant whose issuer cannot be trusted never accepts a token (503 not_ready), and the
log says what to check."""
import os
import shutil
import subprocess

import pytest

import harness
from harness import assert_error, new_key
from pki import TestPKI

LOAD_BOUND_S = 30


def _other_ca(tmp_path) -> str:
    d = tmp_path / "other-ca"
    d.mkdir()
    # another name too: a CA of the same name would be found first and fail the chain alone
    return str(TestPKI(d, "keyhold integration test other CA").ca_pem)


def _ready(k) -> bool:
    return k.operator.get("/health").status == 200


def _refused_for_tls(k, issuer, user) -> None:
    assert harness.poll_until(lambda: "TLS certificate not trusted" in k.log(),
                              timeout=LOAD_BOUND_S), k.log()
    assert_error(k.client.post("/user-keys", token=issuer.token(user),
                               json_body={"key": new_key()}), 503, "not_ready")
    body = assert_error(k.operator.get("/health"), 503, "not_ready")
    assert body["reason"] == "issuer signing keys not loaded yet", body


def test_issuer_ca_of_another_ca_is_refused(make_keyholdd, default_issuer, tmp_path, user):
    k = make_keyholdd(tenants={"default": {"issuer": default_issuer,
                                           "issuer_ca": _other_ca(tmp_path)}})
    _refused_for_tls(k, default_issuer, user)
    assert k.alive()


def _system_store_trusting(pki, tmp_path):
    """A copy of /etc/ssl/certs (bundle and hashed directory, both the places Debian's
    libcurl looks) that trusts only the test CA, mounted over the real one in a private
    mount namespace for keyholdd alone."""
    certs = tmp_path / "system-certs"
    certs.mkdir()
    shutil.copy(pki.ca_pem, certs / "ca-certificates.crt")
    h = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(pki.ca_pem)],
                       capture_output=True, text=True, check=True).stdout.strip()
    os.symlink("ca-certificates.crt", certs / f"{h}.0")
    # SSL_CERT_* would only name the same (mounted) places; unset so nothing else is read
    return ["unshare", "-m", "--propagation", "private", "--", "sh", "-c",
            'mount --bind "$0" /etc/ssl/certs && unset SSL_CERT_FILE SSL_CERT_DIR '
            'CURL_CA_BUNDLE && exec "$@"', str(certs)]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare for a private mount namespace")
def test_issuer_ca_excludes_the_system_cas(make_keyholdd, pki, default_issuer, tmp_path, user):
    prefix = _system_store_trusting(pki, tmp_path)
    # Control: without issuer_ca, the issuer is trusted through the (substituted) system CAs.
    k = make_keyholdd(tenants={"default": {"issuer": default_issuer, "issuer_ca": None}},
                      prefix=prefix)
    assert harness.poll_until(lambda: _ready(k), timeout=LOAD_BOUND_S), k.log()
    r = k.client.post("/user-keys", token=default_issuer.token(user), json_body={"key": new_key()})
    assert r.status == 200, r
    k.stop()
    # Pinned to another CA, the same system CAs no longer count.
    k = make_keyholdd(tenants={"default": {"issuer": default_issuer,
                                           "issuer_ca": _other_ca(tmp_path)}}, prefix=prefix)
    _refused_for_tls(k, default_issuer, user)
