"""Shared pytest fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """aiosqlite is asyncio-only, so every async test runs on anyio's asyncio backend."""
    return "asyncio"
