"""The one-line reports a run prints as each of its tasks finishes (through plan.Progress)."""

from __future__ import annotations

from loadtests.crossover.results import (
    DistancePoint,
    HopPoint,
    KneeStep,
    NginxReference,
    RevocationLag,
    Rotation,
)


def hop_line(name: str, hops: int, point: HopPoint) -> str:
    return (
        f"hops: {name} at {hops} hop(s): {point['checks_per_request']:.2f} checks/req, "
        f"{point['cpu_us_total']:,.0f} us CPU/req, p50 {point['p50_ms']} ms, "
        f"{point['failures']} failures"
    )


def knee_line(round_: int, step: KneeStep) -> str:
    flag = "  ** the load generator was the limit **" if step["generator_limited"] else ""
    again = f" (measured {step['attempt']} times)" if step["attempt"] > 1 else ""
    return (
        f"knee (round {round_}): {step['design']} at {step['offered_rps']:g} req/s "
        f"offered: {step['achieved_rps']:g} served, p99 {step['p99_ms']} ms, "
        f"{step['failures']} failures, generator CPU max {max(step['locust_cpu'], default=0):.0%}"
        f": {'held' if step['held'] else 'past the knee'}{again}{flag}"
    )


def distance_line(method: str, name: str, point: DistancePoint) -> str:
    return (
        f"distance ({method}): {name} with the store {point['measured_rtt_ms']} ms away: "
        f"p50 {point['p50_ms']} ms, p99 {point['p99_ms']} ms"
    )


def rotation_line(rotation: Rotation) -> str:
    old_ok = all(v == 200 for v in rotation["old_token"].values())
    return (
        f"key rotation ({', '.join(rotation['designs'])}): {rotation['requests']} requests, "
        f"{rotation['failures']} failed, {rotation['jwks_fetches']} JWKS refetches, "
        f"old tokens {'accepted' if old_ok else 'REFUSED'}: "
        f"{'ok' if rotation['ok'] else 'NOT ok'}"
    )


def revocation_line(name: str, lag: RevocationLag | None) -> str:
    if lag is None:
        return f"revocation: {name} not measured"
    if lag["until_exp"]:
        return f"revocation: {name} still accepted after {lag['limit_s']:g} s: until exp"
    worst = max((h["p99_ms"] or 0.0 for h in lag["hops"].values()), default=0.0)
    return f"revocation: {name} over {lag['samples']} logouts, worst hop p99 {worst} ms"


def nginx_line(nginx: NginxReference | None) -> str:
    if nginx is None or not nginx["available"]:
        return f"nginx reference: {nginx['note'] if nginx else 'failed'}"
    cpu = nginx["cpu_us_per_request"]
    return (
        f"nginx reference: nginx {cpu.get('nginx')} us/request, gateway {cpu.get('gateway')} "
        f"(x{nginx['ratio']}), edge auth off {cpu.get('gateway-edgeoff')} "
        f"(x{nginx['ratio_edge_off']})"
    )
