"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import httpx
import pytest

from tests.faultserver import FaultServer, json_reply
from tests.pgharness import PgServer, Unavailable
from tests.storeharness import BACKENDS, Backend

if TYPE_CHECKING:
    from xdist.remote import Producer
    from xdist.scheduler.protocol import Scheduling

#: What the API tests' fault server answers unless a test queues something else.
PLAIN_JOB = {"id": "ft-abc", "status": "running"}


@pytest.fixture(scope="session", autouse=True)
def config_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The read commands' config cache (XDG_CACHE_HOME) in a folder of this session, for
    this process and the commands it starts: never the user's own ~/.cache."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture
def anyio_backend() -> str:
    """aiosqlite is asyncio-only, so every async test runs on anyio's asyncio backend."""
    return "asyncio"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain, caller-owned httpx client."""
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    """A fault server on loopback answering every request with a plain job unless told otherwise."""
    async with FaultServer.running(json_reply(PLAIN_JOB)) as running:
        yield running


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throw-away PostgreSQL server for the session; skips where none can start."""
    running = PgServer.running()
    try:
        server = running.__enter__()
    except Unavailable as exc:
        pytest.skip(f"PostgreSQL tests need a server: {exc}")
    try:
        yield server
    finally:
        running.__exit__(None, None, None)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The URL of a fresh, empty schema on the session's server (its own search_path)."""
    return pg_server.fresh_schema()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each store test runs on SQLite and on PostgreSQL (skipped where no server starts)."""
    if request.param == "sqlite":
        return Backend("sqlite")
    return Backend("postgresql", request.getfixturevalue("pg_server"))


@pytest.fixture
def store_target(backend: Backend) -> Iterator[str | Path]:
    """An empty store: a SQLite file path or a PostgreSQL URL."""
    with backend.fresh() as target:
        yield target


#: Battery figures as the run's reports carried them (from xdist workers too), in order.
FIGURES: list[tuple[str, dict[str, object]]] = []
FIGURES_KEY = "battery figures"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    """`--dist loadfile` (as `make test` runs it) with the plan in tests/xdistplan.py."""
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.xdistplan import PlannedFileScheduling

    return PlannedFileScheduling(config, log)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Battery figures ride on the test's report, so that an xdist worker's reach the end."""
    from tests.battery.sizes import REPORTS

    report: pytest.TestReport = yield
    report.user_properties += [
        (FIGURES_KEY, [test, {key: f"{value}" for key, value in figures.items()}])
        for test, figures in REPORTS  # as printed: an xdist worker sends only plain types
    ]
    REPORTS.clear()
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep the figures a report carries (in the controller under xdist)."""
    for key, value in report.user_properties:
        if key == FIGURES_KEY:
            test, figures = cast(tuple[str, dict[str, object]], value)
            FIGURES.append((test, figures))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The reliability battery's figures as one table at the end of the run."""
    if not FIGURES:
        return
    terminalreporter.section("reliability battery figures")
    for test, figures in FIGURES:
        terminalreporter.write_line(f"{test}")
        for key, value in figures.items():
            terminalreporter.write_line(f"    {key:<28} {value}")
