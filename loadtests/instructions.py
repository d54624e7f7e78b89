"""A session check and a bare redis-py GET counted in instructions (valgrind's callgrind).

Timing the pair on this shared 2-core machine read anywhere from 1.05x to 1.6x in one hour,
paired rounds or not: both wait for redis-server on the same cores, and the VM's steal time
lands on either side. The instructions this process runs per call do not move with the
machine's load (the same count, within 1 %, run after run), so their ratio says what the
session check adds to the GET it makes. It counts user-space work only: the system calls,
the same two for both, are left out, so the ratio is an upper bound of the CPU ratio.

`count(url, calls)` runs this module under callgrind (instrumentation off until the calls,
`callgrind_control` zeroing and dumping around each block); it gives None without valgrind.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.common.settings import REPO_ROOT

# The blocks measured, in order: each twice, and an empty one whose count (the loop and the
# callgrind_control calls around a block) is taken off the others.
BLOCKS = ("empty", "get", "lookup", "get", "lookup")
TIMEOUT_SECONDS = 240.0


def _control(*args: str) -> None:
    """callgrind_control on this process (it must find the same HOST as valgrind saw)."""
    subprocess.run(
        ["callgrind_control", *args, str(os.getpid())],
        capture_output=True,
        check=True,
        timeout=60,
    )


async def _worker(url: str, calls: int) -> None:
    from services.common.observability import Metrics
    from services.common.settings import VerifierSettings
    from services.common.store import make_redis
    from services.common.verify import Verifier

    redis = make_redis(url, 5.0)
    settings = VerifierSettings(
        issuer="bench", audience="bench", revocation="off", session_store_url=url
    )
    verifier = Verifier(settings, Metrics("instructions"), redis, static_keys={})
    assert verifier.sessions is not None
    sid, _ = await verifier.sessions.create("u1", "bench", None)
    await redis.set("plain", b"x" * 120)

    async def nothing() -> None:
        return None

    measured: dict[str, Callable[[], Awaitable[object]]] = {
        "empty": nothing,
        "get": lambda: redis.get("plain"),
        "lookup": lambda: verifier.authenticate_session(sid),
    }
    for _ in range(20):  # warm: connections made, caches filled
        for call in measured.values():
            await call()
    _control("-i", "on")
    for name in BLOCKS:
        _control("-z")
        for _ in range(calls):
            await measured[name]()
        _control("-d", name)
    _control("-i", "off")
    await verifier.close()
    await redis.aclose()


def count(url: str, calls: int) -> tuple[dict[str, list[float]] | None, str]:
    """Instructions per call of each block (two rounds each, the empty block's count taken
    off), and a note; None without valgrind or if the run failed (the note says why: a
    failed count never fails the bench)."""
    missing = [t for t in ("valgrind", "callgrind_control") if shutil.which(t) is None]
    if missing:
        return None, f"{' and '.join(missing)} not on PATH: instructions not counted"
    with tempfile.TemporaryDirectory(prefix="authscale-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "loadtests.instructions",
            url,
            str(calls),
        ]
        try:
            done = subprocess.run(
                argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_SECONDS
            )
            if done.returncode != 0:
                tail = " ".join(done.stderr.strip().splitlines()[-2:])[-300:]
                return None, f"callgrind run failed (exit {done.returncode}): {tail}"
            figures = _read_dumps(out, calls)
        except (subprocess.SubprocessError, OSError, ValueError) as error:
            return None, f"callgrind run failed: {type(error).__name__}: {error}"
    return figures, (
        f"callgrind, {calls} calls per block, each block twice (user-space instructions; "
        "the system calls, alike for both, are not counted)"
    )


def _read_dumps(out: Path, calls: int) -> dict[str, list[float]]:
    """Each block's instructions per call from its dump, the empty block's taken off."""
    dumps = sorted(out.parent.glob(f"{out.name}.*"), key=lambda f: int(f.suffix[1:]))
    if len(dumps) != len(BLOCKS):
        raise ValueError(f"callgrind wrote {len(dumps)} dumps, not {len(BLOCKS)}")
    counts: dict[str, list[float]] = {}
    for name, dump in zip(BLOCKS, dumps, strict=True):
        found = re.search(r"^summary:\s+(\d+)", dump.read_text(errors="replace"), re.M)
        if found is None:
            raise ValueError(f"no summary in {dump.name}")
        counts.setdefault(name, []).append(int(found.group(1)) / calls)
    (empty,) = counts.pop("empty")
    return {name: [each - empty for each in figures] for name, figures in counts.items()}


def main(argv: list[str]) -> None:
    asyncio.run(_worker(argv[0], int(argv[1])))


if __name__ == "__main__":
    main(sys.argv[1:])
