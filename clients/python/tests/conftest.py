import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # servers.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, when not installed

from servers import REPO, TestServers  # noqa: E402


@pytest.fixture(scope="session")
def servers():
    """One relay + mosquitto + MariaDB for the session; --replay-max=100 so long histories are truncated."""
    s = TestServers(["--replay-max=100", "--immediate=sensors/#"])
    yield s
    s.stop()


@pytest.fixture(scope="session")
def testdata():
    return lambda name: json.loads((REPO / "clients/testdata" / name).read_text())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used the servers shows their logs, as the C++ fixtures do."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "servers" in item.fixturenames:
        report.sections.append(("server logs", item.funcargs["servers"].logs()))
    if report.failed and "dynsec_broker" in item.fixturenames and "dynsec_broker" in item.funcargs:
        report.sections.append(("broker log", item.funcargs["dynsec_broker"].logs()))
