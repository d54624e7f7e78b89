"""Settings of the auth service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.settings import (
    REPO_ROOT,
    ServerSettings,
    VerifierSettings,
    env_float,
    env_int,
    env_str,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    server: ServerSettings
    verifier: VerifierSettings
    keys_dir: Path
    access_token_seconds: int = 300
    refresh_token_seconds: int = 86_400
    login_max_failures: int = 5
    login_window_seconds: int = 300
    login_queue_seconds: float = 1.0
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19_456
    argon2_parallelism: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        keys_dir = Path(env_str(env, "KEYS_DIR", str(REPO_ROOT / "keys")))
        # Auth verifies its own tokens with its own key ring, never a JWKS fetch from itself.
        verifier = VerifierSettings.from_env(env, own_keys=True)
        return cls(
            server=ServerSettings.from_env(env, 8081),
            verifier=verifier,
            keys_dir=keys_dir,
            access_token_seconds=env_int(env, "ACCESS_TOKEN_SECONDS", 300, minimum=1),
            refresh_token_seconds=env_int(env, "REFRESH_TOKEN_SECONDS", 86_400, minimum=1),
            login_max_failures=env_int(env, "LOGIN_MAX_FAILURES", 5, minimum=1),
            login_window_seconds=env_int(env, "LOGIN_WINDOW_SECONDS", 300, minimum=1),
            login_queue_seconds=env_float(env, "LOGIN_QUEUE_SECONDS", 1.0, minimum=0.01),
            argon2_time_cost=env_int(env, "ARGON2_TIME_COST", 2, minimum=1),
            argon2_memory_kib=env_int(env, "ARGON2_MEMORY_KIB", 19_456, minimum=8),
            argon2_parallelism=env_int(env, "ARGON2_PARALLELISM", 1, minimum=1),
        )
