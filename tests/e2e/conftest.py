"""The whole local stack on free ports (the same launcher as `make up`), and the compose image."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.stack import Stack
from tests.e2e.composeutil import built_image, require_compose
from tests.stackutil import Api, launch, running

__all__ = ["Api", "launch"]  # the names other test modules import from here


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    # INFO: access logs on, so a request id can be followed through every service's log.
    yield from running(tmp_path_factory.mktemp("stack"), LOG_LEVEL="INFO")


@pytest.fixture(scope="session")
def compose_image() -> Iterator[str]:
    """The project's one image, built once per test session for every compose project (each
    runs it under this tag; see tests/e2e/composeutil.py). Skipped where no engine answers."""
    yield from built_image(require_compose())
