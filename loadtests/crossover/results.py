"""The shape of one crossover run's results.json: what the runner writes, the model and the
report read.

TypedDicts, because the JSON file is the contract (a recorded run must still load: that is how
tests/unit/test_model.py and the report tests work). Design names are those of
loadtests/modes.py at the time of the run; services are gateway, auth, orders (replicas summed),
stores session_store and data_store. Latencies are client-side (Locust), in ms; CPU figures are
microseconds per request the gateway answered, from the servers' own counters (/metrics
process_cpu_seconds_total, INFO cpu), the idle baseline taken out.
"""

# No `from __future__ import annotations`: TypedDict must see NotRequired to leave keys optional.
import json
from pathlib import Path
from typing import Literal, NotRequired, TypedDict, cast

from loadtests.bench.results import read_json_object

PerName = dict[str, float]
VERSION = 1


class Costs(TypedDict):
    """What the servers paid over one window, per request the gateway answered."""

    window_s: float
    gateway_requests: float
    achieved_rps: float
    cpu_us_per_request: PerName  # by service and store
    cpu_us_services: float  # gateway + auth + orders
    cpu_us_total: float  # the services and the stores
    checks_per_request: float  # ok verifications, summed over the services: verifying hops
    store_ops_per_request: PerName  # by store, commands served (INFO commandstats)


class Segment(Costs):
    """One measured window of one design's users, as Locust saw it and the servers paid it."""

    design: str
    task: str  # mix (the locustfile's task mix), get, post
    offered_rps: float
    requests: int  # completed in the window, client-side
    failures: int
    errors: dict[str, int]  # failure message -> count
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    locust_cpu: list[float]  # CPU seconds per second of each load process (Locust's or the
    # open-model generator's)
    generator_limited: bool  # the load generator could not keep its pace (Locust: a process
    # above 90 % of a core, or it fell short; open: loadtests/load's send lag or CPU limit)
    # Open-model windows (the knee's, loadtests/crossover/openload.py) add these; their
    # latencies count from each request's intended start.
    generator: NotRequired[Literal["locust", "open"]]
    p999_ms: NotRequired[float | None]
    served_rps: NotRequired[float]  # 2xx answers per second, client-side
    send_lag_p99_ms: NotRequired[float | None]  # the generator's own lateness
    limited_because: NotRequired[list[str]]
    generator_cpus: NotRequired[list[int]]  # where the load ran ...
    system_cpus: NotRequired[list[int]]  # ... and where the stack was pinned
    isolated: NotRequired[bool]  # False: they shared CPUs (one CPU, or no affinity)


class KneeStep(Segment):
    round: int
    attempt: int  # 2, 3: the same step measured again after windows past the SLO
    held: bool  # p99 within the SLO, no failures, and the generator was not the limit


class KneeDesign(TypedDict):
    steps: list[KneeStep]
    # The highest offered step that held (the lower median over rounds; None: not even the first).
    knee_rps: float | None
    knee_achieved_rps: float | None
    knee_p99_ms: float | None
    cpu_us_per_request: float | None  # services and stores, at the knee step
    cpu_us_services: float | None
    limit: str  # what ended the ladder: slo, errors, load generator, ladder end
    by_round: list[float | None]  # the knee of each round


class Knee(TypedDict):
    slo_ms: float
    ladder: list[float]
    rounds: int
    designs: dict[str, KneeDesign]
    ratios: dict[str, dict[str, float]]  # knee of row / knee of column


class HopPoint(Segment):
    hops: int  # nominal: 1 edge auth off, GET; 2 GET; 3 POST (orders asks auth)
    gateway: str  # edge, edge-off


class FitPoint(TypedDict):
    x: float
    measured: float
    predicted: float
    error_pct: float | None  # (predicted - measured) / measured


class Fit(TypedDict):
    """y = intercept + slope * x by least squares, and how far it is from every point."""

    intercept: float
    slope: float
    points: list[FitPoint]
    max_abs_error_pct: float | None


class HopFits(TypedDict):
    x: str  # what x is: "checks" (measured verifications per request)
    cpu_us: Fit
    store_ops: Fit  # session-store commands per request
    p50_ms: Fit


class Hops(TypedDict):
    rate_rps: float
    designs: dict[str, list[HopPoint]]
    fits: dict[str, HopFits]


class DistancePoint(Segment):
    added_rtt_ms: float
    measured_rtt_ms: float  # median PING to the store, on the path the services use


class Distance(TypedDict):
    method: Literal["netem", "proxy"]
    method_note: str  # why (the netem error when it was not allowed)
    namespace: bool  # the store ran in a network namespace behind a veth pair
    rate_rps: float
    rtts_ms: list[float]
    designs: dict[str, list[DistancePoint]]
    fits: dict[str, Fit]  # p50 latency against measured RTT


class HopLag(TypedDict):
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    refused: int  # samples refused before the limit
    never_refused: int  # samples still accepted when polling stopped


class RevocationLag(TypedDict):
    samples: int
    limit_s: float
    jwt_revocation: str
    until_exp: bool  # some hop kept accepting: the credential lives until it expires
    token_lifetime_s: float | None  # the access token's expires_in (JWT credentials)
    hops: dict[str, HopLag]  # gateway, auth, orders-1, orders-2, ...
    errors: list[str]


class Rotation(TypedDict):
    designs: list[str]
    rate_rps: float
    old_kid: str
    new_kid: str
    auth_restart_ms: float
    requests: int
    failures: int
    errors: dict[str, int]
    relogins: bool  # every user logged in again after the rotation (new tokens, new kid)
    old_token: dict[str, int]  # hop -> status for a token signed before the rotation
    new_token: dict[str, int]  # hop -> status for a token signed after it
    jwks_fetches: int  # JWKS requests auth answered after its restart: the unknown-kid refetches
    verifiers: int  # processes that verify JWTs with keys from the JWKS (expected refetches)
    cooldown_s: float
    ok: bool
    segment: Segment


class Shards(TypedDict):
    tool: str
    get_rps: float
    set_rps: float
    per_shard_ops: float  # the lower of the two
    clients: int
    requests: int


class NginxReference(TypedDict):
    available: bool
    note: str
    tool: str
    seconds: float
    connections: int
    rounds: NotRequired[int]  # interleaved rounds of wrk windows (older runs: one)
    requests: PerName  # nginx, aiohttp-floor, gateway, gateway-edgeoff (all rounds)
    rps: PerName
    cpu_us_per_request: PerName  # the proxy process's own CPU, its least disturbed round
    cpu_us_rounds: NotRequired[dict[str, list[float]]]  # every round's figure
    # Of that least disturbed round: the CPU in the kernel (system), the rest in user space.
    cpu_us_system: NotRequired[PerName]
    ratio: float | None  # gateway (edge auth on) / nginx
    ratio_edge_off: float | None  # gateway with edge auth off (a pure proxy) / nginx
    # The bare forward (loadtests/crossover/floor.py) / nginx (older runs: absent).
    ratio_floor: NotRequired[float | None]


class DesignInfo(TypedDict):
    name: str
    user_class: str
    credential: str
    kind: str
    carrier: str
    settings: dict[str, str]


class Progress(TypedDict):
    estimated_s: float
    wall_s: float


class CrossoverResults(TypedDict):
    version: int
    started: str
    finished: str
    machine: dict[str, object]
    options: dict[str, object]
    designs: list[DesignInfo]
    setup: dict[str, object]
    idle_cpu_ms_per_s: PerName
    knee: Knee
    hops: Hops
    distance: Distance
    revocation: dict[str, RevocationLag]
    rotation: list[Rotation]
    shards: Shards | None
    nginx: NginxReference | None
    progress: Progress
    notes: NotRequired[list[str]]


SECTIONS = ("knee", "hops", "distance", "revocation", "rotation", "shards", "nginx")


def dump(results: CrossoverResults, path: Path) -> None:
    path.write_text(json.dumps(results, indent=1) + "\n")


def load(path: Path) -> CrossoverResults:
    """Read a crossover results.json (see loadtests.bench.results.read_json_object)."""
    required = CrossoverResults.__required_keys__
    return cast(CrossoverResults, read_json_object(path, required, "crossover results"))
