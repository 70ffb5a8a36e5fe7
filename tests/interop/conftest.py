"""Fixtures of the Bitwarden interop suite: the test CA, two Bitwarden server stand-ins (two
installations, so two keyhold tenants with their own issuers), one keyholdd serving both
tenants over TLS, and fresh Bitwarden CLI instances of every tested version.

  tenant "default" (bare routes): stand-in "default", Key Connector URL https://127.0.0.1:K
  tenant "acme"    (/t/acme/...):  stand-in "acme",    Key Connector URL https://127.0.0.1:K/t/acme

When a test fails, its report carries every CLI call it made (command, exit status, stdout,
stderr), the stand-ins' request logs and the tail of keyholdd's log, so a break points at
its place.

Run: KEYHOLD_BUILD=/path/to/meson/build /usr/bin/python3 -m pytest -q tests/interop
"""
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import harness  # noqa: E402
from bitwarden import BitwardenServer  # noqa: E402
import bwcli  # noqa: E402
from bwcli import VERSIONS, BitwardenCli  # noqa: E402
from pki import TestPKI  # noqa: E402

_reports: dict[str, list] = {}


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session", autouse=True)
def js_tools():
    """Installs the pinned Node.js and CLIs before the first test (once)."""
    harness.pinned_node()


@pytest.fixture(scope="session")
def bitwarden(pki):
    servers = {"default": BitwardenServer(pki, "default"),
               "acme": BitwardenServer(pki, "acme", iss="http://identity.acme")}
    for s in servers.values():
        s.start()
    yield servers
    for s in servers.values():
        s.stop()


def tenants_of(servers: dict) -> dict:
    return {tid: {"issuer": s} for tid, s in servers.items()}


def key_connector_url(k: harness.Keyholdd, tenant: str) -> str:
    base = f"https://127.0.0.1:{k.port}"
    return base if tenant == "default" else f"{base}/t/{tenant}"


def point_at(servers: dict, k: harness.Keyholdd) -> None:
    for tid, s in servers.items():
        s.key_connector_url = key_connector_url(k, tid)


@pytest.fixture(scope="session")
def keyholdd(pki, bitwarden, tmp_path_factory):
    binary = harness.keyholdd_binary()
    if not binary.exists():
        pytest.fail(f"keyholdd not built: {binary} (set KEYHOLD_BUILD to a meson build dir)",
                    pytrace=False)
    k = harness.Keyholdd(tmp_path_factory.mktemp("keyholdd"), pki, tenants_of(bitwarden))
    for served in harness.serve(k):
        point_at(bitwarden, served)
        yield served


@pytest.fixture
def make_keyholdd(pki, bitwarden, tmp_path):
    """A keyholdd of the test's own (for kill -9), on a port that stays the same across
    restarts so that a CLI's configured Key Connector URL stays valid."""
    made: list[harness.Keyholdd] = []

    def make() -> harness.Keyholdd:
        k = harness.Keyholdd(tmp_path / f"keyholdd-{len(made)}", pki, tenants_of(bitwarden))
        made.append(k)
        k.start()
        k.listen_port = k.port
        k.write_config()
        return k

    yield make
    for k in made:
        k.stop()


@pytest.fixture
def cli(request, pki, tmp_path):
    """Factory of fresh CLI instances: cli(version) -> BitwardenCli with its own data."""
    made: list[BitwardenCli] = []

    def make(version: str) -> BitwardenCli:
        c = BitwardenCli(version, tmp_path / f"cli-{version}-{len(made)}", pki.ca_pem)
        made.append(c)
        return c

    _reports[request.node.nodeid] = made
    yield make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        sections = [c.transcript() for c in _reports.get(item.nodeid, [])]
        servers = item.funcargs.get("bitwarden") or {}
        for name, s in servers.items():
            sections.append(f"== Bitwarden stand-in {name}: request log\n{s.log_tail()}")
        for fixture in ("keyholdd", "own_keyholdd"):
            k = item.funcargs.get(fixture)
            if isinstance(k, harness.Keyholdd):
                sections.append(f"== keyholdd ({fixture}) log tail\n{k.log()}")
        report.sections.append(("interop details", "\n\n".join(sections)))


def pytest_generate_tests(metafunc):
    """Every test with a `version` argument runs once per pinned CLI release; one that also
    takes `variant` runs once per Key Connector code path that release has."""
    names = metafunc.fixturenames
    if "variant" in names:
        metafunc.parametrize("version,variant", [(v, x) for v in VERSIONS for x in
                                                 (["legacy", "sdk"] if VERSIONS[v]["sdk_unlock"]
                                                  else ["legacy"])])
    elif "version" in names:
        metafunc.parametrize("version", list(VERSIONS))


def pytest_configure(config):
    # Runs in the controller before pytest-xdist starts its workers, which inherit it.
    if "KEYHOLD_INTEROP_SHARED" not in os.environ:
        os.environ["KEYHOLD_INTEROP_SHARED"] = tempfile.mkdtemp(prefix="keyhold-interop-")


def pytest_terminal_summary(terminalreporter):
    if hasattr(terminalreporter.config, "workerinput"):
        return
    tr = terminalreporter
    tr.write_line(f"Bitwarden CLI releases tested: {', '.join(VERSIONS)}")
    log = bwcli.shared_dir() / "races.log"
    races = log.read_text().splitlines() if log.exists() else []
    if races:
        tr.write_line(f"logins repeated after one of the CLI's state races (bwcli.TOKEN_RACE): "
                      f"{len(races)}")
        for r in races:
            tr.write_line(f"  {r}")


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ.pop("KEYHOLD_INTEROP_SHARED", ""), ignore_errors=True)
