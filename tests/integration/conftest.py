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
    config.addinivalue_line(
        "markers", "file_keystore: about the file key store itself (key files, master key, "
        "passphrase); deselected when KEYHOLD_TEST_KEYSTORE=pkcs11")
    config.addinivalue_line("markers", "sqlite_only: needs the SQLite database file (its "
                            "bytes, backups, disk-full); deselected when KEYHOLD_TEST_STORAGE="
                            "postgresql (storage.py)")
    config.addinivalue_line("markers", "default_backends: starts servers of its own or "
                            "does not depend on the suite's backends (the web console in "
                            "the browser, replicas and cluster on a PostgreSQL of their own): "
                            "runs in the default pass only, deselected in the pkcs11 and "
                            "postgresql passes")


# markers of the tests that do not run on a given key store (KEYHOLD_TEST_KEYSTORE)
NOT_ON = {"pkcs11": ("file_keystore", "default_backends")}


def pytest_collection_modifyitems(config, items):
    """Deselects the tests that cannot run here: about the file store itself with
    KEYHOLD_TEST_KEYSTORE=pkcs11, needing the SQLite file with KEYHOLD_TEST_STORAGE=postgresql.
    pytest reports them as deselected (never passed)."""
    markers = _not_here()
    drop = [i for i in items if any(i.get_closest_marker(m) for m in markers)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i not in drop]
    if hasattr(config, "workeroutput"):  # an xdist worker: tell the controller
        config.workeroutput["kh_deselected"] = len(drop)
    else:
        _record_deselected(config, len(drop))


def _record_deselected(config, n: int) -> None:
    """The JUnit XML (which lists no deselected test) carries the key store and the number
    deselected as suite properties, which scripts/summarize-tests prints."""
    if getattr(config, "_kh_deselected", None) is not None:
        return
    config._kh_deselected = n
    try:
        from _pytest.junitxml import xml_key
        xml = config.stash.get(xml_key, None)
    except ImportError:
        xml = None
    if xml is not None:
        xml.add_global_property("keystore", harness.test_keystore())
        xml.add_global_property("deselected", str(n))


class _XdistDeselected:
    """On the xdist controller: the workers' count (each collects the whole suite)."""

    def __init__(self, config):
        self.config = config

    def pytest_testnodedown(self, node, error):
        n = getattr(node, "workeroutput", {}).get("kh_deselected")
        if n is not None:
            _record_deselected(self.config, n)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    config = session.config
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workeroutput"):
        config.pluginmanager.register(_XdistDeselected(config), "kh-xdist-deselected")


def pytest_terminal_summary(terminalreporter, config):
    n = getattr(config, "_kh_deselected", None)
    if n:
        terminalreporter.write_line(
            f"key store {harness.test_keystore()}, storage {storage.KIND}: {n} tests "
            f"deselected ({', '.join(_not_here())}); not counted as passed")


def _not_here() -> tuple:
    """The markers whose tests this run deselects (key store and storage backend)."""
    return NOT_ON.get(harness.test_keystore(), ()) + \
        (("sqlite_only", "default_backends") if storage.KIND != "sqlite" else ())
