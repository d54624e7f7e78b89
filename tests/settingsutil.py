"""Which variables a service reads, and what a deployment file sets: shared by the compose and
Kubernetes checks, so both judge their files against the services' settings the same way."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from services.auth.settings import Settings as AuthSettings
from services.gateway.settings import Settings as GatewaySettings
from services.orders.settings import Settings as OrdersSettings

SETTINGS: dict[str, Any] = {
    "auth": AuthSettings,
    "orders": OrdersSettings,
    "gateway": GatewaySettings,
}
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


class Recorder(dict[str, str]):
    """An environment that remembers which variables were asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)


def resolve(value: Any) -> str:
    """A compose value with every `${NAME:-default}` at its default."""
    return _DEFAULTED.sub(lambda m: m.group(2), str(value))


def read_by(service: str, env: Mapping[str, str]) -> tuple[Any, set[str]]:
    """The service's settings from this environment, and the variables it read."""
    recorder = Recorder(env)
    settings = SETTINGS[service].from_env(recorder)
    return settings, recorder.read


def strings(value: Any) -> list[str]:
    """Every value of a settings dataclass, nested ones included, as text."""
    if dataclasses.is_dataclass(value):
        return [s for f in dataclasses.fields(value) for s in strings(getattr(value, f.name))]
    if isinstance(value, tuple):
        return [s for v in value for s in strings(v)]
    return [str(value)]
