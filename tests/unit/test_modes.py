"""The designs' table (loadtests/modes.py): every design states every setting, the groups that
share one start of the services, what a running gateway reveals of its settings."""

from __future__ import annotations

from loadtests.modes import (
    BY_NAME,
    HYBRID,
    JWT_COOKIE,
    JWT_OFF,
    JWT_PUSH,
    MODES,
    SESSION,
    SESSION_CACHED,
    SETTING_NAMES,
    revealed_settings,
    settings_groups,
)


def test_every_mode_states_every_design_setting() -> None:
    assert [m.name for m in MODES] == [
        "session",
        "session-cached",
        "hybrid",
        "jwt-push",
        "jwt-off",
        "jwt-cookie",
    ]
    for mode in MODES:
        assert set(mode.settings) == set(SETTING_NAMES), mode.name
    assert BY_NAME["hybrid"].settings == {
        "JWT_REVOCATION": "push",
        "SESSION_CACHE": "push",
        "GATEWAY_TOKEN_EXCHANGE": "on",
    }
    assert JWT_COOKIE.credential.login_body("u", "p") == {
        "username": "u",
        "password": "p",
        "carrier": "cookie",
    }


def test_designs_that_share_settings_share_a_start_of_the_services() -> None:
    groups = settings_groups(MODES)
    assert [[m.name for m in g] for g in groups] == [
        ["session", "jwt-push", "jwt-cookie"],
        ["session-cached"],
        ["hybrid"],
        ["jwt-off"],
    ]


def test_what_a_gateway_reveals_of_its_settings() -> None:
    checked = 'auth_checks_total{service="gateway",mode="session",result="ok"} 3.0\n'
    hybrid = (
        'authscale_info{service="gateway",jwt_revocation="push"} 1.0\n'
        + checked
        + 'token_exchanges_total{service="gateway",result="hit"} 12.0\n'
        'token_exchanges_total{service="gateway",result="miss"} 1.0\n'
        'session_cache_total{service="gateway",result="miss"} 1.0\n'
    )
    seen = revealed_settings(hybrid)
    assert seen == {
        "JWT_REVOCATION": "push",
        "SESSION_CACHE": "push",
        "GATEWAY_TOKEN_EXCHANGE": "on",
    }
    assert not HYBRID.mismatches(seen)
    assert SESSION.mismatches(seen) == {
        "SESSION_CACHE": ("push", "off"),
        "GATEWAY_TOKEN_EXCHANGE": ("on", "off"),
    }
    assert not JWT_PUSH.mismatches(seen)  # JWTs are judged by JWT_REVOCATION alone
    plain = (
        'authscale_info{service="gateway",jwt_revocation="off"} 1.0\n'
        'token_exchanges_total{service="gateway",result="miss"} 0.0\n'
    )
    # A gateway that has verified no session (yet, or another replica did) shows only
    # JWT_REVOCATION: no class is stopped for what it cannot tell.
    assert revealed_settings(plain) == {"JWT_REVOCATION": "off"}
    assert not SESSION_CACHED.mismatches(revealed_settings(plain))
    seen = revealed_settings(plain + checked)
    assert seen["SESSION_CACHE"] == "off" and seen["GATEWAY_TOKEN_EXCHANGE"] == "off"
    assert JWT_PUSH.mismatches(seen) == {"JWT_REVOCATION": ("off", "push")}
    assert not SESSION.mismatches(seen) and not JWT_OFF.mismatches(seen)
