"""Settings of the auth service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.settings import (
    REPO_ROOT,
    ServerSettings,
    VerifierSettings,
    read_service_settings,
    setting,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    server: ServerSettings
    verifier: VerifierSettings
    keys_dir: Path = setting("KEYS_DIR", REPO_ROOT / "keys")
    access_token_seconds: int = setting("ACCESS_TOKEN_SECONDS", 300, minimum=1)
    refresh_token_seconds: int = setting("REFRESH_TOKEN_SECONDS", 86_400, minimum=1)
    # The hybrid's internal tokens live at most a minute.
    internal_token_seconds: int = setting("INTERNAL_TOKEN_SECONDS", 60, minimum=1, maximum=60)
    login_max_failures: int = setting("LOGIN_MAX_FAILURES", 5, minimum=1)
    login_window_seconds: int = setting("LOGIN_WINDOW_SECONDS", 300, minimum=1)
    # How long a login may wait for a password-hashing slot before it is shed with a 503.
    login_queue_seconds: float = setting("LOGIN_QUEUE_SECONDS", 1.0, minimum=0.01)
    argon2_time_cost: int = setting("ARGON2_TIME_COST", 2, minimum=1)
    argon2_memory_kib: int = setting("ARGON2_MEMORY_KIB", 19_456, minimum=8)
    argon2_parallelism: int = setting("ARGON2_PARALLELISM", 1, minimum=1)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        # Auth verifies its own tokens with its own key ring, never a JWKS fetch from itself.
        return read_service_settings(cls, env, port=8081, own_keys=True)
