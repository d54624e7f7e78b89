"""The environment the suite runs in holds exactly the versions uv.lock pins."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_venv_holds_exactly_the_locked_versions() -> None:
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip(f"not run from the project's .venv (sys.prefix is {sys.prefix})")
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    # A package may be locked at several versions, one per Python or platform range.
    locked: dict[str, set[str]] = {}
    for package in lock["package"]:
        locked.setdefault(_canonical(package["name"]), set()).add(package["version"])
    installed = {
        _canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
    }
    not_locked = {n: v for n, v in installed.items() if n not in locked}
    other_version = {n: (v, locked[n]) for n, v in installed.items() if v not in locked.get(n, {v})}
    assert not_locked == {}, "installed but not in uv.lock: run `make venv` (uv sync --locked)"
    assert other_version == {}, "installed (left) differs from uv.lock (right): run `make venv`"
    # Every locked package this platform needs is installed (markers decide the rest).
    assert {"aiohttp", "redis", "hiredis", "pyjwt", "cryptography", "httptools"} <= set(installed)
