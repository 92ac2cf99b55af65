"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.faultserver import FaultServer, json_reply
from tests.pgharness import PgServer, Unavailable
from tests.storeharness import BACKENDS, Backend

#: What the API tests' fault server answers unless a test queues something else.
PLAIN_JOB = {"id": "ft-abc", "status": "running"}


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The reliability battery's figures as one table at the end of the run."""
    from tests.battery.sizes import REPORTS

    if not REPORTS:
        return
    terminalreporter.section("reliability battery figures")
    for test, figures in REPORTS:
        terminalreporter.write_line(f"{test}")
        for key, value in figures.items():
            terminalreporter.write_line(f"    {key:<28} {value}")
