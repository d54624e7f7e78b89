"""Settings of the orders service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.settings import (
    ServerSettings,
    VerifierSettings,
    env_bool,
    env_float,
    env_int,
    env_str,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    server: ServerSettings
    verifier: VerifierSettings
    auth_url: str = "http://127.0.0.1:8081"
    account_check: bool = True
    account_check_timeout_seconds: float = 1.0
    idempotency_seconds: int = 86_400

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            server=ServerSettings.from_env(env, 8082),
            verifier=VerifierSettings.from_env(env),
            auth_url=env_str(env, "AUTH_URL", "http://127.0.0.1:8081").rstrip("/"),
            account_check=env_bool(env, "ORDERS_ACCOUNT_CHECK", True),
            account_check_timeout_seconds=env_float(
                env, "ACCOUNT_CHECK_TIMEOUT_SECONDS", 1.0, minimum=0.01
            ),
            idempotency_seconds=env_int(env, "IDEMPOTENCY_SECONDS", 86_400, minimum=1),
        )
