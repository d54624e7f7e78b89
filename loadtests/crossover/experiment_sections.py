"""The report's sections on the experiments beside the load windows (experiments.py and
references.py): revocation lag per hop, signing-key rotation under load, the nginx reference
and one session-store shard's capacity; each a list of document blocks."""

from __future__ import annotations

from collections.abc import Mapping

from loadtests.crossover.document import (
    Block,
    Bullets,
    Heading,
    Image,
    Para,
    Table,
    ms,
    num,
    section,
)
from loadtests.crossover.references import FLOOR
from loadtests.crossover.results import CrossoverResults, NginxReference, RevocationLag


def _never_refused(lag: RevocationLag, hop: str) -> bool:
    found = lag["hops"].get(hop)
    return bool(found and found["never_refused"])


def _lag_cells(lag: RevocationLag, hop_names: list[str]) -> list[str]:
    """p50 / p99 / max per hop; "until exp" at a hop that never refused where revocation is
    off (the credential works until it expires)."""
    if lag["until_exp"]:
        lifetime = lag["token_lifetime_s"]
        until = f"until exp ({lifetime:.0f} s)" if lifetime else "until exp"
        return [until if _never_refused(lag, h) else "refused" for h in hop_names]
    cells = []
    for h in hop_names:
        hop = lag["hops"].get(h)
        cells.append(
            f"{ms(hop['p50_ms'])} / {ms(hop['p99_ms'])} / {ms(hop['max_ms'])}" if hop else "-"
        )
    return cells


def revocation_blocks(results: CrossoverResults) -> list[Block]:
    lags = results["revocation"]
    blocks = section(
        "4. Revocation lag per hop",
        "Log in, use the credential at every hop, log out through the gateway, then poll "
        "every hop at once on its own address (the hybrid's services with its internal "
        "token) until each refuses the old credential: the time from the logout's answer "
        "until the refusal was answered, p50 / p99 / max over the logouts (measured with "
        "the services otherwise idle).",
    )
    if not lags:
        return [*blocks, Para("Not measured.")]
    hop_names = sorted(
        {h for lag in lags.values() for h in lag["hops"]}, key=lambda h: (h != "gateway", h)
    )
    rows = ([name, str(lag["samples"]), *_lag_cells(lag, hop_names)] for name, lag in lags.items())
    blocks += [Table.with_header(["design", "logouts", *hop_names], rows), Image("revocation")]
    options = results["options"]
    if not options.get("long"):
        blocks.append(
            Para(
                f"Default run: {options.get('revocation_samples')} logouts per design "
                "(--long takes 50); a design still accepting after "
                f"{options.get('revocation_limit_s')} s is sampled once."
            )
        )
    errors = [f"{n}: {e}" for n, lag in lags.items() for e in lag["errors"]]
    if errors:
        blocks.append(Bullets(tuple(errors)))
    return blocks


def rotation_blocks(results: CrossoverResults) -> list[Block]:
    blocks = section(
        "5. Signing-key rotation under load",
        "The verifiers take their keys from auth's JWKS (JWT_JWKS_URL). Under load (each "
        "design's own task mix), auth restarts with a new signing key, the old public key "
        "kept published (public-<kid>.pem beside the new key); then every Locust user logs "
        "in again, so tokens with the new kid reach every verifier, which refetches the "
        "JWKS once. A token signed before the rotation must still work at every hop "
        "(until its exp), and no request may fail. The refetches are the JWKS requests "
        "auth's own /metrics counted after its restart (http_requests_total on the JWKS "
        "route; the verifiers export no counter of their own for it), against the number "
        "of verifying processes.",
    )
    rotations = results["rotation"]
    if not rotations:
        return [*blocks, Para("Not measured (see the notes).")]
    header = ["designs", "requests", "failed", "auth restart ms", "old-key token"]
    header += ["new-key token", "JWKS refetches (verifiers)", "result"]
    rows = (
        [
            ", ".join(r["designs"]),
            str(r["requests"]),
            str(r["failures"]),
            num(r["auth_restart_ms"]),
            f"{sum(v == 200 for v in r['old_token'].values())}/{len(r['old_token'])} hops accept",
            f"{sum(v == 200 for v in r['new_token'].values())}/{len(r['new_token'])} hops accept",
            f"{r['jwks_fetches']} ({r['verifiers']})",
            "ok" if r["ok"] else "FAILED",
        ]
        for r in rotations
    )
    return [*blocks, Table.with_header(header, rows)]


def _floor_text(cpu: Mapping[str, float]) -> str:
    """What the bare forward on aiohttp's server says about the gateway (runs that measured it)."""
    floor, nginx, gateway = cpu.get(FLOOR), cpu.get("nginx"), cpu.get("gateway-edgeoff")
    if not floor or not nginx or not gateway:
        return ""
    return (
        f" A bare forward on aiohttp's server with the gateway's upstream client and none of "
        f"the gateway's work (loadtests/crossover/floor.py) costs {floor:,.1f} us "
        f"({floor / nginx:.2f}x nginx): what a proxy on aiohttp's server pays at least. The "
        f"gateway answers plain proxied requests on its own fast path (services/gateway/edge.py:"
        f" httptools in front of aiohttp's server, which keeps everything else), and with edge "
        f"auth off spends {gateway:,.1f} us, {gateway / floor:.2f}x that forward, its own work "
        "included (path policing, header hygiene, request ids, metrics, the access log line "
        "nginx does not write here, failover)."
    )


def _split_text(ref: NginxReference) -> str:
    """Where the CPU went: the kernel's part (sockets, system calls) against user space's."""
    cpu, system = ref["cpu_us_per_request"], ref.get("cpu_us_system", {})
    if not all(name in system for name in ("nginx", "gateway")):
        return ""
    user = {name: cpu[name] - system[name] for name in ("nginx", "gateway")}
    kernel = system["gateway"] / system["nginx"] if system["nginx"] > 0 else None
    alike = kernel is not None and 0.75 <= kernel <= 1.33
    return (
        f" In the kernel nginx spent {system['nginx']:,.1f} us per request and the gateway "
        f"{system['gateway']:,.1f}"
        + (" (alike: the same sockets and system calls)" if alike else "")
        + f"; in user space {user['nginx']:,.1f} against {user['gateway']:,.1f}"
        + (f" ({user['gateway'] / user['nginx']:.1f}x)" if user["nginx"] > 0 else "")
        + (": the gap is the Python the gateway runs per request, not its I/O." if alike else ".")
    )


def _rounds_text(ref: NginxReference) -> str:
    rounds = ref.get("cpu_us_rounds")
    if not rounds or ref.get("rounds", 1) < 2:
        return ""
    spread = "; ".join(
        f"{name} {', '.join(f'{v:,.1f}' for v in values)}" for name, values in rounds.items()
    )
    return f" CPU us per request in each round: {spread}."


def reference_blocks(results: CrossoverResults) -> list[Block]:
    blocks: list[Block] = [Heading(2, "7. nginx reference and store shards")]
    ref = results["nginx"]
    if ref is None or not ref["available"]:
        blocks.append(Para(f"nginx reference: {ref['note'] if ref else 'not measured'}."))
    else:
        cpu = ref["cpu_us_per_request"]
        system = ref.get("cpu_us_system", {})
        rows = (
            [
                name,
                num(ref["requests"].get(name)),
                num(ref["rps"].get(name)),
                num(cpu[name], 1),
                num(cpu[name] - system[name] if name in system else None, 1),
                num(system.get(name), 1),
                num(cpu[name] / cpu["nginx"] if cpu.get("nginx") else None, 2, "x"),
            ]
            for name in ("nginx", FLOOR, "gateway", "gateway-edgeoff")
            if name in cpu
        )
        header = [
            "proxy",
            "requests",
            "req/s",
            "CPU us per proxied request",
            "of which user space",
            "of which kernel",
            "vs nginx",
        ]
        blocks += [
            Para(
                f"The same GET /orders (one logged-in credential) through nginx and the gateway, "
                f"{ref['tool']} with {ref['connections']} connections for {ref['seconds']:g} s "
                f"each, in this run: {ref['note']}.{_rounds_text(ref)} The issue's goal is the "
                f"gateway within 3x of nginx.{_floor_text(cpu)}{_split_text(ref)}"
            ),
            Table.with_header(header, rows),
        ]
    shards = results["shards"]
    if shards:
        blocks.append(
            Para(
                f"One session-store shard: {shards['tool']} with {shards['clients']} clients, "
                f"{shards['requests']:,} requests each: GET {shards['get_rps']:,.0f} ops/s, SET "
                f"{shards['set_rps']:,.0f} ops/s; the model uses {shards['per_shard_ops']:,.0f} "
                "(the client shares the machine's cores with the server)."
            )
        )
    return blocks
