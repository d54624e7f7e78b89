"""The whole local stack on free ports (the same launcher as `make up`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.stack import Stack
from tests.stackutil import Api, launch

__all__ = ["Api", "launch"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    running = launch(tmp_path_factory.mktemp("stack"))
    yield running
    running.stop()
    running.log.close()
