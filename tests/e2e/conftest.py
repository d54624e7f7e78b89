"""The whole local stack on free ports (the same launcher as `make up`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.stack import Stack
from tests.stackutil import Api, launch, running

__all__ = ["Api", "launch"]  # the names other test modules import from here


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    # INFO: access logs on, so a request id can be followed through every service's log.
    yield from running(tmp_path_factory.mktemp("stack"), LOG_LEVEL="INFO")
