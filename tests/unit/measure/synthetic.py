"""Synthetic pre-analysis results.json files, built from a stated truth, for the analysis tests.

`build(Truth())` is what the runner would record on this machine (one system CPU, six designs
and the control, three repeats, the chain at k = 1..5 twice, distance points for the session
designs, marginal points), with seeded noise; `build(Truth(noise=0))` is the same run without
noise, for tests that need the answer exactly. tests/data/measure_results.json is the noisy
default, written by

    .venv/bin/python -m tests.unit.measure.synthetic
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests import modes
from loadtests.measure.schema import CONTROL, HOPS, SCHEMA_VERSION

RECORDED = Path(__file__).resolve().parents[2] / "data" / "measure_results.json"
SESSION_DESIGNS = tuple(m.name for m in modes.MODES if m.credential.kind == "session")


def _by_design(**values: Any) -> dict[str, Any]:
    return {name.replace("_", "-"): value for name, value in values.items()}


@dataclass(frozen=True)
class Truth:
    """What the synthetic run measures, before noise."""

    forward_base_us: float = 500.0  # the control chain: CPU = base + per_hop * k
    forward_per_hop_us: float = 300.0
    p50_base_ms: float = 1.0
    p50_per_hop_ms: float = 0.5
    store_us_per_op: float = 30.0  # the session store's CPU per command
    store_rtt_ms: float = 0.1  # loopback, nothing added
    # What the checks cost in the chain (edge, relay), us: the session's is its client side
    # (the store's CPU comes on top, per operation); the JWTs' is above the micro-benchmark.
    chain_check_us: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: _by_design(
            session=(120.0, 120.0),
            session_cached=(15.0, 15.0),
            hybrid=(15.0, 30.0),
            jwt_push=(30.0, 30.0),
            jwt_off=(30.0, 30.0),
            jwt_cookie=(30.0, 30.0),
        )
    )
    ops_per_check: Mapping[str, float] = field(default_factory=lambda: {"session": 1.0})
    # The per-check micro-benchmark (in-process), us.
    check_us: Mapping[str, float | None] = field(
        default_factory=lambda: _by_design(
            session=120.0,
            session_cached=8.0,
            hybrid=20.0,
            jwt_push=20.0,
            jwt_off=20.0,
            jwt_cookie=20.0,
        )
    )
    capacity_rps: Mapping[str, float] = field(
        default_factory=lambda: _by_design(
            session=670.0,
            session_cached=1300.0,
            hybrid=1400.0,
            jwt_push=1550.0,
            jwt_off=1580.0,
            jwt_cookie=1530.0,
        )
    )
    cpu_us: Mapping[str, float] = field(  # at the common rate
        default_factory=lambda: _by_design(
            session=1480.0,
            session_cached=860.0,
            hybrid=820.0,
            jwt_push=700.0,
            jwt_off=690.0,
            jwt_cookie=705.0,
        )
    )
    revocation_ms: Mapping[str, tuple[float, float, float] | None] = field(
        default_factory=lambda: _by_design(
            session=(1.5, 4.0, 9.0),
            session_cached=(20.0, 45.0, 80.0),
            hybrid=(22.0, 50.0, 90.0),
            jwt_push=(25.0, 55.0, 95.0),
            jwt_off=None,  # measured accepting the token after the logout: until exp
            jwt_cookie=(25.0, 56.0, 97.0),
        )
    )
    # The headers carrying the credential on each request, bytes: a session cookie and its
    # CSRF token; a bearer JWT; the same JWT (plus its csrf claim) as a cookie, with its token.
    credential_bytes: Mapping[str, int] = field(
        default_factory=lambda: _by_design(
            session=116,
            session_cached=116,
            hybrid=116,
            jwt_push=641,
            jwt_off=641,
            jwt_cookie=735,
        )
    )
    # One login (cheap argon2 in every design), us: the JWTs' signs and writes a refresh token.
    login_cpu_us: Mapping[str, float] = field(
        default_factory=lambda: _by_design(
            session=2400.0,
            session_cached=2420.0,
            hybrid=2410.0,
            jwt_push=3150.0,
            jwt_off=3140.0,
            jwt_cookie=3190.0,
        )
    )
    login_rps: float = 50.0
    knee_busy: float = 0.93  # the system CPU's busy share at the knee
    added_rtt_ms: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0)
    common_rps: float = 300.0  # well inside (<= 60 %) every capacity below
    chain_rps: float = 200.0
    repeats: int = 3
    chain_repeats: int = 2
    noise: float = 0.012  # relative standard deviation of every measured figure
    # The machine in the CPU-per-request windows: the spinners' lap, us, times 1 + lap_step in
    # even repeats and 1 - lap_step in odd ones; CPU per request moves lap_elasticity times
    # as much (0: not at all).
    lap_us: float = 1200.0
    lap_step: float = 0.01
    lap_elasticity: float = 0.0
    # ... and the load generator's CPU per request (0: not recorded), us, times 1 + load_step,
    # 1 and 1 - load_step in repeats 1, 2 and 3 (and so on); CPU per request moves
    # load_elasticity times as much.
    load_us: float = 0.0
    load_step: float = 0.0
    load_elasticity: float = 0.0
    seed: int = 20261205

    def checks_us(self, design: str, hops: float) -> float:
        if design == CONTROL:
            return 0.0
        edge, relay = self.chain_check_us[design]
        return edge + hops * relay

    def store_ops(self, design: str, hops: float) -> float:
        return 0.0 if design == CONTROL else self.ops_per_check.get(design, 0.0) * (hops + 1)

    def chain_cpu(self, design: str, hops: float) -> float:
        return (
            self.forward_base_us
            + self.forward_per_hop_us * hops
            + self.checks_us(design, hops)
            + self.store_ops(design, hops) * self.store_us_per_op
        )

    def chain_p50(self, design: str, hops: float, rtt_ms: float | None = None) -> float:
        rtt = self.store_rtt_ms if rtt_ms is None else rtt_ms
        return (
            self.p50_base_ms
            + self.p50_per_hop_ms * hops
            + self.checks_us(design, hops) / 1000
            + self.store_ops(design, hops) * rtt
        )


class _Noise:
    def __init__(self, truth: Truth) -> None:
        self.rng = random.Random(truth.seed)
        self.sd = truth.noise

    def __call__(self, value: float, digits: int = 1) -> float:
        return round(value * (1 + self.rng.gauss(0, self.sd)) if self.sd else value, digits)


def _window(phase: str, design: str, repeat: int, **figures: Any) -> dict[str, Any]:
    cpu, ops = figures.pop("cpu_us_per_request"), figures.pop("store_ops_per_request", 0.0)
    served = figures.pop("served_rps", figures["offered_rps"])
    store = figures.pop("store_us", 0.0)
    window = {
        "phase": phase,
        "design": design,
        "repeat": repeat,
        "offered_rps": figures.pop("offered_rps"),
        "served_rps": served,
        "p50_ms": figures.pop("p50_ms", None),
        "p99_ms": figures.pop("p99_ms", None),
        "failures": 0,
        "cpu_us_per_request": cpu,
        "cpu_ms_per_s": round(cpu * served / 1000, 2),
        "cpu_by_process": {
            "gateway": round((cpu - store) * 0.45, 1),
            "relay": round((cpu - store) * 0.55, 1),
            "session_store": round(store, 1),
        },
        "store_ops_per_request": ops,
        "generator_limited": False,
    }
    return window | figures


def build(truth: Truth | None = None) -> dict[str, Any]:
    """A pre-analysis results.json (as a dict) that measured `truth`."""
    truth = truth or Truth()
    noise = _Noise(truth)
    windows: list[dict[str, Any]] = []
    designs: dict[str, dict[str, Any]] = {}
    names = [mode.name for mode in modes.MODES] + [CONTROL]
    for name in names:
        chain = []
        for repeat in range(1, truth.chain_repeats + 1):
            for k in HOPS:
                ops = truth.store_ops(name, k)
                chain.append(
                    _window(
                        "chain",
                        name,
                        repeat,
                        hops=k,
                        offered_rps=truth.chain_rps,
                        cpu_us_per_request=noise(truth.chain_cpu(name, k)),
                        p50_ms=noise(truth.chain_p50(name, k), 3),
                        p99_ms=noise(truth.chain_p50(name, k) * 3, 3),
                        store_ops_per_request=ops,
                        store_us=ops * truth.store_us_per_op,
                    )
                )
        windows += chain
        hops = {}
        for k in HOPS:
            mine = [w for w in chain if w["hops"] == k]
            hops[str(k)] = {
                "cpu_us_per_request": round(
                    sum(w["cpu_us_per_request"] for w in mine) / len(mine), 1
                ),
                "p50_ms": round(sum(w["p50_ms"] for w in mine) / len(mine), 3),
                "store_ops_per_request": truth.store_ops(name, k),
                "offered_rps": truth.chain_rps,
            }
        if name == CONTROL:
            designs[name] = {
                "capacity_rps": None,
                "cpu_us_per_request": None,
                "latency_ms": None,
                "hops": hops,
                "auth_cpu_us_per_hop": None,
                "store_ops_per_request": 0.0,
                "revocation_lag_ms": None,
                "kind": "none",
                "check_us": None,
            }
            continue
        mode = modes.BY_NAME[name]
        knees, cpus = [], []
        common_ops = truth.store_ops(name, 1)
        for repeat in range(1, truth.repeats + 1):
            knee = noise(truth.capacity_rps[name], 0)
            knees.append(knee)
            at_knee = truth.knee_busy * 1e6 / knee
            for share in (0.5, 0.8, 0.95, 1.0, 1.05):
                offered = round(knee * share, 1)
                held = share <= 1.0
                windows.append(
                    _window(
                        "capacity",
                        name,
                        repeat,
                        offered_rps=offered,
                        served_rps=offered if held else round(offered * 0.96, 1),
                        cpu_us_per_request=round(at_knee * (1 + 0.2 * max(1 - share, 0)), 1),
                        p50_ms=round(2 + 20 * share**8, 3),
                        p99_ms=round(8 + 80 * share**8, 3),
                        held=held,
                        store_ops_per_request=common_ops,
                        store_us=common_ops * truth.store_us_per_op,
                    )
                )
            step = truth.lap_step * (1 if repeat % 2 == 0 else -1)
            load_step = truth.load_step * (1, 0, -1)[(repeat - 1) % 3]
            cpu = noise(
                truth.cpu_us[name]
                * (1 + truth.lap_elasticity * step)
                * (1 + truth.load_elasticity * load_step)
            )
            load = {}
            if truth.load_us:
                load["load_cpu_us_per_request"] = round(truth.load_us * (1 + load_step), 2)
            cpus.append(cpu)
            windows.append(
                _window(
                    "cpu",
                    name,
                    repeat,
                    offered_rps=truth.common_rps,
                    cpu_us_per_request=cpu,
                    p50_ms=noise(2.0 + truth.checks_us(name, 1) / 1000, 3),
                    p99_ms=noise(6.0, 3),
                    store_ops_per_request=common_ops,
                    store_us=noise(common_ops * truth.store_us_per_op),
                    spin_us_per_lap=round(truth.lap_us * (1 + step), 2),
                    **load,
                )
            )
        distance = []
        if name in SESSION_DESIGNS:
            for added in truth.added_rtt_ms:
                rtt = round(added + truth.store_rtt_ms, 3)
                distance.append(
                    {
                        "added_rtt_ms": added,
                        "measured_rtt_ms": rtt,
                        "p50_ms": noise(truth.chain_p50(name, 1, rtt), 3),
                        "cpu_us_per_request": noise(truth.chain_cpu(name, 1)),
                        "store_ops_per_request": truth.store_ops(name, 1),
                    }
                )
        slope_us = truth.knee_busy * 1e6 / truth.capacity_rps[name]
        marginal = [
            [rate, noise(15.0 + slope_us * rate / 1000, 2)] for rate in (200.0, 400.0, 600.0)
        ]
        lag = truth.revocation_ms[name]
        designs[name] = {
            "capacity_rps": {"runs": knees},
            "cpu_us_per_request": {"runs": cpus, "offered_rps": truth.common_rps},
            "latency_ms": {
                "p50": round(2.0 + truth.checks_us(name, 1) / 1000, 3),
                "p99": 6.0,
                "offered_rps": truth.common_rps,
            },
            "hops": hops,
            "auth_cpu_us_per_hop": None,
            "store_ops_per_request": common_ops,
            "revocation_lag_ms": None
            if lag is None
            else {"p50": lag[0], "p99": lag[1], "max": lag[2], "samples": 200},
            "revoked_until_exp": lag is None,
            "distance": distance,
            "check_us": truth.check_us[name],
            "credential_bytes": truth.credential_bytes[name],
            "login": {
                "offered_rps": truth.login_rps,
                "cpu_us_per_request": {
                    # Three windows 2 % apart (drawn from no generator: the other figures'
                    # noise stays what it was).
                    "runs": [round(truth.login_cpu_us[name] * f, 1) for f in (0.98, 1.0, 1.02)],
                    "offered_rps": truth.login_rps,
                },
                "p50_ms": round(truth.login_cpu_us[name] / 1000 + 1.0, 3),
                "p99_ms": round(truth.login_cpu_us[name] / 1000 * 2 + 1.0, 3),
                "failures": 0,
                "cpu_by_process": {"gateway": 300.0, "auth": truth.login_cpu_us[name] - 300.0},
            },
            "marginal": {"points": marginal},
            "kind": mode.credential.kind,
            "carrier": mode.credential.carrier,
            "settings": dict(mode.settings),
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "environment": {
            "cpus": 2,
            "load_cpus": [0],
            "system_cpus": [1],
            "python": "3.11.2",
            "packages": {"aiohttp": "3.12.15", "redis": "6.4.0", "pyjwt": "2.10.1"},
            "load_average": [0.31, 0.22, 0.12],
            "started": "2026-12-05T10:00:00Z",
            "finished": "2026-12-05T10:11:40Z",
            "isolated": True,
        },
        "designs": designs,
        "method": {
            "slo_ms": 100.0,
            "repeats": truth.repeats,
            "chain_repeats": truth.chain_repeats,
            "common_rps": truth.common_rps,
            "chain_rps": truth.chain_rps,
            "login_rps": truth.login_rps,
            "type_repeats": 3,
            "distance_hops": 1,
        },
        "windows": windows,
    }


def main() -> None:
    RECORDED.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {RECORDED}")


if __name__ == "__main__":
    main()
