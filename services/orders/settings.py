"""Settings of the orders service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.settings import (
    ServerSettings,
    VerifierSettings,
    read_service_settings,
    setting,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    server: ServerSettings
    verifier: VerifierSettings
    auth_url: str = setting("AUTH_URL", "http://127.0.0.1:8081", parse=lambda v: v.rstrip("/"))
    account_check: bool = setting("ORDERS_ACCOUNT_CHECK", True)
    account_check_timeout_seconds: float = setting(
        "ACCOUNT_CHECK_TIMEOUT_SECONDS", 1.0, minimum=0.01
    )
    idempotency_seconds: int = setting("IDEMPOTENCY_SECONDS", 86_400, minimum=1)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return read_service_settings(cls, env, port=8082)
