"""Settings: every variable declared once with its default, parsed and bounded."""

from __future__ import annotations

import pytest

from services.common.settings import ConfigError, ServerSettings, VerifierSettings


def test_verifier_settings_from_env() -> None:
    settings = VerifierSettings.from_env(
        {"JWT_REVOCATION": "off", "JWT_JWKS_URL": "http://auth/jwks", "COOKIE_SECURE": "1"}
    )
    assert settings.revocation == "off"
    assert settings.jwks_url == "http://auth/jwks" and settings.public_key_files == ()
    assert settings.cookie_name == "__Host-sid"
    assert VerifierSettings.from_env({}).cookie_name == "sid"


def test_server_settings_from_env() -> None:
    from services.common.settings import ServerSettings

    server = ServerSettings.from_env(
        {"PORT": "9000", "KEEPALIVE_TIMEOUT_SECONDS": "2.5", "BODY_TIMEOUT_SECONDS": "3"}, 8080
    )
    assert (server.port, server.keepalive_timeout_seconds, server.body_timeout_seconds) == (
        9000,
        2.5,
        3.0,
    )
    assert ServerSettings.from_env({}, 8080).port == 8080
    with pytest.raises(ConfigError, match="PORT"):
        ServerSettings.from_env({"PORT": "70000"}, 8080)


@pytest.mark.parametrize(
    "env, name",
    [
        ({"JWT_REVOCATION": "sometimes"}, "JWT_REVOCATION"),
        ({"JWT_LEEWAY_SECONDS": "60"}, "JWT_LEEWAY_SECONDS"),
        ({"SESSION_IDLE_SECONDS": "abc"}, "SESSION_IDLE_SECONDS"),
        ({"COOKIE_SECURE": "maybe"}, "COOKIE_SECURE"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        VerifierSettings.from_env(env)


def test_every_setting_is_declared_once_with_its_default() -> None:
    """An empty environment gives each dataclass's own defaults: no second default to drift."""
    from dataclasses import fields

    from services.auth.settings import Settings as AuthSettings
    from services.gateway.settings import Settings as GatewaySettings
    from services.orders.settings import Settings as OrdersSettings

    for cls in (AuthSettings, OrdersSettings, GatewaySettings):
        read = cls.from_env({})
        for f in fields(cls):
            if "env" in f.metadata:
                assert getattr(read, f.name) == f.default, (cls.__module__, f.name)
    verifier = VerifierSettings.from_env({})
    for f in fields(VerifierSettings):
        if "env" in f.metadata:
            assert getattr(verifier, f.name) == f.default, f.name
    names = [
        f.metadata["env"]
        for cls in (ServerSettings, VerifierSettings)
        for f in fields(cls)
        if "env" in f.metadata
    ]
    assert len(names) == len(set(names)) and "PORT" in names
