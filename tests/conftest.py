"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.faultserver import FaultServer, json_reply

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
