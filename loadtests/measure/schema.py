"""The shape of `make bench`'s results.json (schema_version 1): what the runner writes and the
statistics, the model, the report, the README and the tests read. docs/results.md explains it.

TypedDicts, because the JSON file is the contract: a recorded run (reports/reference/) must
still load. Design names come from loadtests/modes.py plus CONTROL, the chain with no
credential check. Times: latency in ms, from each request's *intended* send time (open-model
load); CPU in microseconds per request the system answered, every process and both stores
summed, the idle baseline of the same run taken out.
"""

# No `from __future__ import annotations`: TypedDict must see NotRequired to leave keys optional.
import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

SCHEMA_VERSION = 1
CONTROL = "control"  # the chain on its public route: forwarding, no credential checked anywhere
HOPS = (1, 2, 3, 4, 5)  # verifying services in the chain behind the gateway


class Environment(TypedDict):
    cpus: int
    load_cpus: list[int]  # where the load generator ran
    system_cpus: list[int]  # where every service and store ran
    python: str
    packages: dict[str, str]  # locked distributions that shape a figure, name -> version
    load_average: list[float]  # 1, 5, 15 min, at the start
    started: str  # ISO 8601, UTC
    finished: str
    cpu_model: NotRequired[str]
    kernel: NotRequired[str]
    isolated: NotRequired[bool]  # False: one CPU, load and system shared it
    kept_awake: NotRequired[bool]  # a spinner at idle priority kept each system CPU from halting
    quick: NotRequired[bool]
    wall_s: NotRequired[float]


class Interval(TypedDict):
    """A repeated figure: the median of the runs and the 95 % interval of their mean
    (Student's t), as loadtests/measure/stats.py computes it."""

    median: float
    ci95: list[float]  # [lo, hi]
    runs: list[float]
    # capacity: per run, whether the load generator (not the system) ended the search
    generator_bound: NotRequired[list[bool]]
    # capacity: per run, the lowest rate that did not hold (None: none failed); the interval
    # reaches at least to their median (a knee is known to the search's last step)
    not_held: NotRequired[list[float | None]]


class RateFigure(Interval):
    offered_rps: float  # the rate it was measured at


class Latency(TypedDict):
    p50: float
    p99: float
    offered_rps: float


class Marginal(TypedDict):
    """CPU seconds per second against the served rate over a few rates: its slope is the CPU
    one more request costs (us), its intercept what the system burns at no load."""

    slope_us: float
    ci95: list[float]
    intercept_ms_per_s: float
    points: list[list[float]]  # [served_rps, cpu_ms_per_s]


class HopPoint(TypedDict):
    cpu_us_per_request: float
    p50_ms: float
    p99_ms: NotRequired[float]
    store_ops_per_request: float  # session store commands per request
    offered_rps: NotRequired[float]
    cpu_by_process: NotRequired[dict[str, float]]


class PerHop(TypedDict):
    median: float  # the slope difference design - control, us per hop
    ci95: list[float]


class Revocation(TypedDict):
    p50: float
    p99: float
    max: float
    samples: NotRequired[int]
    by_hop: NotRequired[dict[str, dict[str, float]]]  # hop -> {p50, p99, max}


class ModelError(TypedDict):
    cpu: float  # the largest |error| in %, over every chain and distance point
    p50: float


class Window(TypedDict):
    """One measured window, as the runner recorded it (every figure derives from these)."""

    phase: str  # capacity, cpu, post, login, chain, distance, idle
    design: str
    repeat: int  # 1, 2, 3 ...
    offered_rps: float
    served_rps: float  # 2xx answers per second, client-side (late answers included)
    achieved_rps: NotRequired[float]  # 2xx answers per second that arrived inside the window
    config: NotRequired[int]  # which start of the services (0, 1, ...) the window ran on
    p50_ms: float | None
    p99_ms: float | None
    failures: int
    cpu_us_per_request: float  # every process and store, idle taken out
    cpu_ms_per_s: float  # the same CPU per second of window (for the marginal slope)
    cpu_by_process: dict[str, float]  # us per request: gateway, auth, orders, relay, stores
    store_ops_per_request: float  # session store commands per request
    generator_limited: bool  # the load generator was the limit: the window is not used
    # The load generator's CPU per request scheduled, us (its whole schedule, settle included)
    load_cpu_us_per_request: NotRequired[float]
    # The latency histogram (HdrHistogram's encoding; CPU windows only): latency_ms merges them.
    histogram: NotRequired[str]
    rest_s: NotRequired[float]  # seconds waited before the window for the services to be at rest
    steal_pct: NotRequired[float]  # CPU time the hypervisor took from the system's CPUs
    # The idle-priority spinners' CPU time per lap of the same empty loop during the window, us
    # (their CPU over their laps on the system's CPUs; absent under meter.MIN_LAPS laps): how
    # fast the CPUs ran while the window was measured (loadtests/measure/gauge.py reads it).
    spin_us_per_lap: NotRequired[float]
    # capacity: served within 2 % of offered, p99 within the SLO; None: the generator's limit
    held: NotRequired[bool | None]
    # The window's lap over its run's usual by more than method.slow_pct (gauge.Pace); recorded
    # on every window from the run's MIN_SEEN-th with a lap on.
    machine_slow: NotRequired[bool]
    # capacity: a window that failed while the machine ran slow, measured again (no figure uses
    # it: capacity.retried)
    replaced: NotRequired[bool]
    hops: NotRequired[int]  # chain: verifying services behind the gateway
    added_rtt_ms: NotRequired[float]  # distance
    measured_rtt_ms: NotRequired[float]


class Comparison(TypedDict):
    figure: str  # capacity_rps, cpu_us_per_request, auth_cpu_us_per_hop
    a: str
    b: str
    ratio: float  # a / b
    ci95: list[float]
    distinguishable: bool  # False: the intervals overlap
    sentence: str


class Check(TypedDict):
    name: str
    ok: bool
    detail: str
    # False: the run has no intervals to judge it by (one run per figure, as --quick takes);
    # then `ok` is false too, and the report lists it as not judged, not as failed.
    judged: NotRequired[bool]


class ModelPoint(TypedDict):
    design: str
    kind: str  # chain, distance
    x: float  # hops, or the added store RTT in ms
    cpu_measured: float
    cpu_model: float
    cpu_error_pct: float
    p50_measured: float
    p50_model: float
    p50_error_pct: float


class RequestType(TypedDict):
    """A request type of its own (the write, the login), repeated at one offered rate: CPU per
    request (every process and both stores, idle taken out) as the median of the repeats with
    the 95 % interval of their mean; p50 and p99 of every request of the repeats together."""

    cpu_us_per_request: RateFigure
    p50_ms: float | None
    p99_ms: float | None
    failures: int
    cpu_by_process: dict[str, float]  # medians over the repeats
    offered_rps: float


class Design(TypedDict):
    capacity_rps: Interval | None
    cpu_us_per_request: RateFigure | None
    latency_ms: Latency | None
    hops: dict[str, HopPoint]  # "1".."5"
    auth_cpu_us_per_hop: PerHop | None
    store_ops_per_request: float
    revocation_lag_ms: Revocation | None
    model_error_pct: ModelError
    # Beside the required figures:
    kind: NotRequired[str]  # session, jwt, none (control)
    carrier: NotRequired[str]
    settings: NotRequired[dict[str, str]]
    cpu_by_process_us: NotRequired[dict[str, float]]  # at the common rate, medians
    marginal: NotRequired[Marginal | None]
    # One point per distance, the medians of its windows: {added_rtt_ms, measured_rtt_ms, p50_ms,
    # p99_ms, cpu_us_per_request, store_ops_per_request, windows}
    distance: NotRequired[list[dict[str, float]]]
    outage: NotRequired[dict[str, Any]]
    post: NotRequired[RequestType | None]  # POST /orders (a write with fsync)
    check_us: NotRequired[float | None]  # the per-check micro-benchmark, in-process
    login: NotRequired[RequestType | None]  # the design's login (cheap argon2: method.argon2)
    # Bytes of the headers carrying the credential on each GET /orders, median over the users
    credential_bytes: NotRequired[int | None]
    # Measured: after the logout some hop kept accepting the credential, which then works until
    # it expires (revocation_lag_ms is null). Absent where the lag was not measured.
    revoked_until_exp: NotRequired[bool]


# -- --long: the experiments beside the measured curves (loadtests/measure/long.py) ----------


class Shards(TypedDict):
    """redis-benchmark GET and SET on one fresh redis-server, then on the cluster."""

    command: str
    single_rps: float  # one shard: the slower of GET and SET, ops/s
    cluster_rps: float
    ratio: float


class Failover(TypedDict):
    """The session store as a Redis Cluster (a second stack), the session design's load on it,
    and one primary killed while that load runs."""

    primaries: int
    replicas: int
    design: str  # whose load ran
    offered_rps: float
    # A window before the failure: the cluster at that rate, and each primary's share of the
    # session-store commands (the sessions spread over the shards).
    steady: dict[str, Any]  # {served_rps, p50_ms, p99_ms, failures, requests}
    share: dict[str, float]  # primary port -> share of the commands
    seconds: float  # the failover window
    requests: int  # its requests answered or failed (open-model: sent on schedule)
    failures: int  # of those, not 2xx or no answer
    p99_ms: float | None
    victim: int  # the primary's port
    sessions_on_victim: int  # of the probe's sessions, on the victim's slots
    sessions_back: int  # of those, answering 200 once the replica took over
    recovered_s: (
        float | None
    )  # kill -> a session on the victim's slots answered 200 (None: not within the limit)
    session_statuses: dict[str, int]  # the probe's answers until then, by status ("0": none)
    jwt_statuses: dict[str, int]  # a bearer JWT polled beside it (no store on its path)
    throughput: Shards | None  # None where redis-benchmark is missing


class HopTrace(TypedDict):
    """One hop over the requests it verified in a traced window (loadtests/measure/traced.py)."""

    requests: int
    verify_p50_us: float
    verify_mean_us: float
    store_p50_us: dict[str, float]  # by store: time inside store calls per request
    store_calls_per_request: dict[str, float]
    metrics_check_mean_us: float | None  # the hop's own /metrics over the same window


class TracedDesign(TypedDict):
    design: str
    offered_rps: float
    requests: int
    failures: int
    p50_ms: float | None
    spans: int
    traces: int
    hops: dict[str, HopTrace]  # gateway, orders (every replica one hop)


class RotationWindow(TypedDict):
    design: str
    token: str  # "old": signed before the rotation, sent across it; "new": the new kid
    offered_rps: float
    requests: int
    failures: int
    p99_ms: float | None


class Rotation(TypedDict):
    """Auth restarted with a new signing key while load runs; then the new key's tokens."""

    designs: list[str]
    old_kid: str
    new_kid: str
    auth_restart_ms: list[float]  # each rotation: new key written, auth restarted and ready
    windows: list[RotationWindow]
    old_token: dict[str, int]  # "design hop" -> status of the old token after the rotation
    new_token: dict[str, int]
    jwks_fetches: int  # JWKS requests auth answered since its restart
    cooldown_s: float


class ProxyFigure(TypedDict):
    requests: int
    failures: int
    served_rps: float
    p50_ms: float | None
    p99_ms: float | None
    cpu_us_per_request: float  # the proxy process alone, idle taken out


class NginxReference(TypedDict):
    """nginx and the gateway proxying the same GET to orders at the same offered rate."""

    offered_rps: float
    seconds: float
    proxies: dict[str, ProxyFigure]  # nginx, gateway
    ratio: float | None  # gateway / nginx CPU per request
    note: str


class Long(TypedDict):
    """What `--long` adds; an experiment that was skipped or failed is null, its reason in
    `skipped` (experiment -> reason)."""

    failover: Failover | None
    traced: list[TracedDesign] | None
    rotation: Rotation | None
    nginx: NginxReference | None
    skipped: dict[str, str]
    wall_s: float


class Results(TypedDict):
    schema_version: int
    environment: Environment
    designs: dict[str, Design]
    method: dict[str, Any]  # the settings of the run (rates, windows, repeats, SLO)
    windows: list[Window]  # every measured window, raw
    # Filled by loadtests/measure/analysis.py from the above:
    comparisons: NotRequired[list[Comparison]]
    checks: NotRequired[list[Check]]  # the self-checks, shown at the top of the report
    advice: NotRequired[list[str]]  # "Which design when", plain sentences
    model: NotRequired[dict[str, Any]]  # {"parts": {...}, "points": [ModelPoint, ...]}
    # The machine's movement over the CPU-per-request windows (gauge.py: Machine), or None.
    machine: NotRequired[dict[str, Any] | None]
    notes: NotRequired[list[str]]
    long: NotRequired[Long | None]  # --long only


def dump(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")


def load(path: Path) -> Results:
    """A results.json of this schema; a clear error for anything else."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"{path}: not a results file ({error})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise SystemExit(f"{path}: schema_version {SCHEMA_VERSION} expected")
    return cast(Results, data)
