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
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

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
    window_epoch: NotRequired[list[float]]  # the window's start and end, Unix time (older: absent)
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
    # Measured in alternating blocks with the baseline: the median of the rounds' ratios.
    ratio_wall: NotRequired[float]
    ratio_cpu: NotRequired[float]
    instructions: NotRequired[float]  # per call, user space (callgrind), where counted


class HopTrace(TypedDict):
    """One hop over the requests it verified in a traced phase (loadtests.bench.spans)."""

    requests: int  # server spans of this hop with a verification under them
    verify_p50_us: float  # per request: the time in `authscale.verify` spans
    verify_mean_us: float  # per verification: comparable with the /metrics mean
    store_p50_us: PerName  # by store: per request, the time in store calls (zero included)
    store_calls_per_request: PerName  # by store
    metrics_check_mean_us: float | None  # the hop's /metrics auth check mean, same phase


class TracedPhase(TypedDict):
    """A short phase with tracing on: where each hop's time went, from the spans."""

    mode: str
    spans: int
    traces: int
    gateway_requests: float
    p50_ms: float
    hops: dict[str, HopTrace]  # gateway, orders, auth


class ShardSpread(TypedDict):
    """Store commands by primary over a session phase on the cluster."""

    ops_per_request: PerName  # by primary (shard-1, ...)
    share: PerName  # by primary: fraction of the cluster's commands


class StoreThroughput(TypedDict):
    """redis-benchmark (GET and SET, 50 connections, not pipelined) on one primary and on the
    cluster, same run; the lower of the two commands' ops/s."""

    command: str
    single_rps: float
    cluster_rps: float
    ratio: float


class Failover(TypedDict):
    """A primary killed while session and JWT requests run through the gateway."""

    recovered_s: float | None  # kill -> first 200 for a session on the dead primary's slots
    session_statuses: dict[str, int]  # status -> count while polling
    jwt_statuses: dict[str, int]
    revoked_refused: dict[str, bool]  # by hop: a JWT revoked during the failover is refused
    sessions_back: int  # sessions on the dead primary's slots that work after it, no new login
    sessions_on_victim: int


class ClusterResults(TypedDict):
    """The session store as a Redis Cluster (3 primaries, 3 replicas) beside one Redis."""

    primaries: int
    replicas: int
    single: Phase  # the session design on one Redis, in this phase's conditions
    cluster: Phase  # the same load on the cluster
    spread: ShardSpread
    throughput: StoreThroughput | None  # None where redis-benchmark is missing
    failover: Failover


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
    traced: NotRequired[list[TracedPhase]]  # per-hop attribution from spans (older runs: absent)
    cluster: NotRequired[ClusterResults | None]  # None: not run (older runs: absent)
    notes: NotRequired[list[str]]  # a late phase that was skipped or failed, and why
    finished: NotRequired[str]


def dump(results: BenchResults, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2))


def read_json_object(path: Path, required: Iterable[str], what: str) -> dict[str, Any]:
    """A results file's JSON object; refuse a file that is not one, naming what it lacks."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a {what} object")
    missing = sorted(set(required) - data.keys())
    if missing:
        raise ValueError(f"{path}: not a {what} file, it lacks {', '.join(missing)}")
    return data


def load(path: Path) -> BenchResults:
    """Read a results.json (see read_json_object)."""
    return cast(
        BenchResults, read_json_object(path, BenchResults.__required_keys__, "bench results")
    )
