"""The shape of one bench run's results: what the runner writes to results.json, the report reads.

TypedDicts rather than classes, because the JSON file is the contract: a run recorded months ago
must still render, so the types describe the file as it is and loading it is `json.loads`; what
later runs added is NotRequired (runs before the six designs had three modes: session, jwt-off,
jwt-push, one revocation sample each, and the outage measured once per kind of credential).
Mode names are those of loadtests.modes; services are gateway, auth, orders; stores are
session_store, data_store; credentials (login, credential_size) are loadtests.modes.Credential
names.
"""

# No `from __future__ import annotations`: TypedDict must see NotRequired to leave keys optional.
import json
from pathlib import Path
from typing import NotRequired, TypedDict, cast

PerName = dict[str, float]  # service or store name -> figure


class Machine(TypedDict):
    cpus: int | None
    python: str
    platform: str
    # The 1-minute load average when the run started and finished: other processes on the
    # machine inflate CPU per request and latency (older runs: absent).
    loadavg: NotRequired[list[float]]


class LoadSettings(TypedDict):
    """The offered load of every phase."""

    users: int
    user_rps: float
    duration_s: float
    warmup_s: float
    rounds: int


class NameStats(TypedDict):
    """Locust's figures for one request name (`/orders/[id]`, ...)."""

    requests: int
    p50_ms: float
    p99_ms: float


class LocustStats(TypedDict):
    """What Locust saw over its whole run (its CSV's Aggregated row)."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    by_name: dict[str, NameStats]
    errors: NotRequired[dict[str, int]]  # failures by "METHOD name: error" (older runs: absent)


class ServerCosts(TypedDict):
    """What the servers paid over the measurement window, per request the gateway answered.

    CPU figures have the idle baseline taken out.
    """

    window_s: float
    gateway_requests: float
    gateway_rps: float
    cpu_us_per_request: PerName  # by service
    auth_checks_per_request: PerName  # by service
    auth_check_us: PerName  # by service, mean duration of one check
    store_ops_per_request: PerName  # by store
    store_usec_per_call: PerName  # by store, time inside Redis per command
    store_cpu_us_per_request: PerName  # by store
    locust_cpu_fraction: float  # Locust's CPU seconds per wall second
    # Summed over the services: look-ups answered from a verifier's session cache ("hit") or
    # the store ("miss"); the gateway's internal tokens served from its cache ("hit") or
    # fetched from auth ("miss": one token exchange). Absent in runs before the six designs.
    session_cache_per_request: NotRequired[PerName]
    token_exchanges_per_request: NotRequired[PerName]


class Phase(LocustStats, ServerCosts):
    """One Locust run in one mode."""

    mode: str
    label: str
    locust_saturated: bool  # Locust, not the system, was the limit


class DistancePhase(Phase):
    """A phase with the session store moved further away by a delaying proxy."""

    added_rtt_ms: float
    measured_store_rtt_ms: float


class Revocation(TypedDict):
    """How long an old credential was accepted after logout, over one or more samples.

    Each sample logs in, uses the credential at every hop, logs out through the gateway and
    polls every hop at once with the old credential until each refuses it (401) or the limit
    passes. A refusal's time is when its answer arrived, so it includes one request's latency.
    """

    mode: str
    # The slowest refusal over the samples and hops; None: some hop still accepted it when
    # polling stopped (then still_accepted_after_s says when that was).
    refused_after_ms: float | None
    polls: int  # requests made while polling, over every sample
    still_accepted_after_s: NotRequired[float]  # only when never refused
    jwt_revocation: str  # the services' JWT_REVOCATION during the poll
    samples: NotRequired[int]  # older runs: one
    p50_ms: NotRequired[float | None]  # median over samples of each sample's slowest hop
    hops: NotRequired[dict[str, float | None]]  # by hop (gateway, auth, orders-1, ...), slowest
    # By hop, over every sample: requests still answered 200 after the logout had been answered.
    accepted_after_logout: NotRequired[dict[str, int]]
    settings: NotRequired[dict[str, str]]  # the services' design settings during the poll


class Probe(TypedDict):
    """Answers to a few identical requests."""

    statuses: dict[str, int]  # HTTP status ("0": no answer in time) -> count
    max_ms: float


class Outage(TypedDict):
    """Probes by mode, each under its own settings (and "<credential> login"), while the session
    store is stalled, then down. Older runs probed session and jwt-push only (and "jwt login")."""

    stalled: dict[str, Probe]
    down: dict[str, Probe]


class LoginCost(TypedDict):
    """One login (or, under "token-exchange", one hybrid exchange at auth's own address)."""

    p50_ms: float
    auth_cpu_ms_per_login: float | None  # None when auth's /metrics is out of reach (--host)


class CredentialSize(TypedDict):
    """Bytes of the credential's header lines on a safe (GET) and an unsafe (POST) request."""

    safe_request_bytes: int
    unsafe_request_bytes: int


class MicrobenchRow(TypedDict):
    """One row of loadtests.microbench."""

    name: str
    wall_us: float
    cpu_us: float
    baseline: str | None  # the primitive this row is compared with


class BenchResults(TypedDict):
    """Everything one run measured (results.json)."""

    started: str  # ISO 8601, UTC
    machine: Machine
    load: LoadSettings
    target: NotRequired[str | None]  # --host, None for the bench's own stack (older runs: absent)
    phases: list[Phase]
    distance: list[DistancePhase]
    revocation: list[Revocation]
    outage: Outage | None  # the store experiments need the bench's own stack
    # By credential ("session", "jwt", "jwt-cookie") and "token-exchange" (the hybrid's).
    login: dict[str, LoginCost] | None
    # By credential, and "internal": the hybrid's internal token on the hops behind the gateway.
    credential_size: dict[str, CredentialSize] | None
    microbench: list[MicrobenchRow]
    idle_cpu_ms_per_s: NotRequired[PerName]  # by service and store
    finished: NotRequired[str]


def dump(results: BenchResults, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2))


def load(path: Path) -> BenchResults:
    """Read a results.json; refuse a file that is not one, naming what it lacks."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a bench results object")
    missing = sorted(BenchResults.__required_keys__ - data.keys())
    if missing:
        raise ValueError(f"{path}: not a bench results file, it lacks {', '.join(missing)}")
    return cast(BenchResults, data)
