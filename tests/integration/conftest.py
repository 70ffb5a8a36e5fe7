"""Integration test fixtures: a test CA, two test OIDC issuers (separate processes), and
keyholdd serving two tenants over real TLS.

  tenant "default" (bare routes): issuer served at https://127.0.0.1:P1/identity whose
      discovery says "issuer": "http://identity" (Bitwarden style: iss != authority URL)
  tenant "acme" (/t/acme/...):   issuer served at https://127.0.0.1:P2/identity whose
      discovery "issuer" is that same URL; extra CORS origin https://vault.acme.test

Both issuers use the same kid ("key-1") with different keys, so a token from one tenant's
issuer can only be rejected on the other tenant by checking its signature and issuer.

Run: KEYHOLD_BUILD=/path/to/meson/build /usr/bin/python3 -m pytest -q tests/integration
"""
import uuid

import pytest

import harness
import storage
from harness import Issuer, Keyholdd
from pgserver import PgServer
from pki import TestPKI
from softhsm import SoftHsm

SERVER_ORIGIN = "https://vault.example.test"
ACME_ORIGIN = "https://vault.acme.test"


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def issuers(pki, tmp_path_factory):
    d = Issuer(tmp_path_factory.mktemp("issuer-default"), pki, "default", "http://identity")
    a = Issuer(tmp_path_factory.mktemp("issuer-acme"), pki, "acme", "auto")
    started = []
    try:
        for i in (d, a):
            i.start()
            started.append(i)
        for i in (d, a):
            i.wait()
        yield {"default": d, "acme": a}
    finally:
        for i in started:
            i.stop()


def _tenants(issuers) -> dict:
    # The acme origin carries a trailing '/', which keyhold must strip before comparing.
    return {"default": {"issuer": issuers["default"]},
            "acme": {"issuer": issuers["acme"], "cors_origins": ACME_ORIGIN + "/",
                     "accept_scope_string": "true"}}


@pytest.fixture(scope="session")
def keyholdd(pki, issuers, tmp_path_factory):
    binary = harness.keyholdd_binary()
    if not binary.exists():
        pytest.fail(f"keyholdd not built: {binary} (set KEYHOLD_BUILD to a meson build dir)",
                    pytrace=False)
    k = Keyholdd(tmp_path_factory.mktemp("keyholdd-main"), pki, _tenants(issuers))
    yield from harness.serve(k)


@pytest.fixture
def client(keyholdd) -> harness.Client:
    # Function scope on purpose: it follows whichever `keyholdd` a module sees (a module
    # may override that fixture with its own daemon).
    return keyholdd.client


@pytest.fixture(scope="module", autouse=True)
def keyholdd_survives_module(request, keyholdd):
    """After every test module the main keyholdd must still be running and serving."""
    yield
    assert keyholdd.alive(), f"keyholdd died during {request.module.__name__}\n{keyholdd.log()}"
    r = keyholdd.client.get("/alive")
    assert r.status == 200, r


@pytest.fixture
def user() -> str:
    """A fresh user GUID (lowercase, hyphenated, as Bitwarden emits it)."""
    return str(uuid.uuid4())


@pytest.fixture
def default_issuer(issuers) -> Issuer:
    return issuers["default"]


@pytest.fixture
def acme_issuer(issuers) -> Issuer:
    return issuers["acme"]


@pytest.fixture
def make_keyholdd(pki, issuers, tmp_path):
    """Factory for extra keyholdd processes, each with its own data directory (for
    restarts, corrupted databases, other configurations). All are stopped at teardown."""
    made: list[Keyholdd] = []
    counter = [0]

    def make(tenants: dict | None = None, start: bool = True, **kw) -> Keyholdd:
        counter[0] += 1
        k = Keyholdd(tmp_path / f"keyholdd-{counter[0]}", pki,
                     tenants if tenants is not None else _tenants(issuers), **kw)
        made.append(k)
        if start:
            k.start()
        return k

    yield make
    for k in made:
        k.stop()


@pytest.fixture
def make_issuer(pki, tmp_path):
    """Factory for extra issuer processes (e.g. for key rotation); stopped at teardown."""
    made: list[Issuer] = []

    def make(name: str, iss: str = "auto") -> Issuer:
        i = Issuer(tmp_path / f"issuer-{name}", pki, name, iss).start()
        made.append(i)
        return i.wait()

    yield make
    for i in made:
        i.stop()


@pytest.fixture(scope="session")
def pg() -> PgServer:
    """One PostgreSQL server for the session (pgserver.PgServer: password auth on 127.0.0.1;
    pg.create_db(name) then pg.conninfo(name)); stopped and removed at the end."""
    with PgServer() as server:
        yield server


@pytest.fixture
def softhsm() -> SoftHsm:
    """A fresh SoftHSM2 token store (softhsm.SoftHsm) for one test, removed afterwards."""
    with SoftHsm() as hsm:
        yield hsm


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: needs a bounded wait (JWKS refresh interval)")
    config.addinivalue_line("markers", "sqlite_only: needs the SQLite database file (its "
                            "bytes, backups, disk-full); deselected when KEYHOLD_TEST_STORAGE="
                            "postgresql (storage.py)")


def pytest_collection_modifyitems(config, items):
    if storage.KIND == "sqlite":
        return
    drop = [i for i in items if i.get_closest_marker("sqlite_only")]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if not i.get_closest_marker("sqlite_only")]

