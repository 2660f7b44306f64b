"""R7: a rate limit shared over Redis holds across processes, measured at the provider.

Two processes each build the same rate-limited backend from a team file (``redis:`` plus the
backend's ``rate_limit: {rpm: N}``) and fire their requests at once at the provider
simulator, running in this process. The simulator's arrival times must never put more than
``N`` requests from the two together in any window; a limit counted per process would let
``2N`` through.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.sim.simulator import ProviderSimulator

REDIS_URL = os.environ.get("MASSGEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
PROC = Path(__file__).with_name("ratelimit_proc.py")


def team_file(tmp_path: Path, sim: ProviderSimulator, prefix: str, rpm: int) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(
        f"""\
redis: {{url: '{REDIS_URL}', prefix: '{prefix}'}}
backends:
  limited:
    type: openai
    model: gpt-4o-mini
    base_url: '{sim.openai_base_url}'
    api_key: x
    timeout: 10
    rate_limit: {{rpm: {rpm}}}
agents:
  - name: ada
    backend: limited
"""
    )
    return path


async def test_two_processes_sharing_a_limit_never_exceed_it_at_the_provider(
    sim: ProviderSimulator, tmp_path: Path, prefix: str
) -> None:
    rpm, window, calls = 3, 0.5, 5  # 10 requests, 3 per window: about 3 windows
    path = team_file(tmp_path, sim, prefix, rpm)
    tags = ["proc-a", "proc-b"]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(PROC),
            str(path),
            str(window),
            str(calls),
            tag,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        for tag in tags
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), timeout=15)
            assert line.strip() == b"ready"
        outs = await asyncio.wait_for(
            asyncio.gather(*(p.communicate(b"go\n") for p in procs)), timeout=20
        )
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()

    assert [p.returncode for p in procs] == [0, 0]
    reports = [json.loads(out.splitlines()[-1]) for out, _ in outs]
    assert [r["errors"] for r in reports] == [[], []]
    assert [len(r["answers"]) for r in reports] == [calls, calls]

    # Every request reached the provider once, from both processes.
    seen = sim.requests
    assert sorted(r.last_user_text for r in seen) == sorted(
        f"{tag} call {i}" for tag in tags for i in range(calls)
    )
    # No window holds more than rpm of them: any rpm + 1 consecutive arrivals span at least
    # a window. The tolerance covers the time from a grant (Redis's clock) to the arrival.
    arrived = sorted(r.arrived for r in seen)
    tolerance = 0.1
    spans = [arrived[i + rpm] - arrived[i] for i in range(len(arrived) - rpm)]
    assert min(spans) >= window - tolerance, spans
    # Both processes shared the one limit: a per-process limit would have let 2 * rpm of
    # them through in the first window.
    assert sum(1 for t in arrived if t < arrived[0] + window - tolerance) <= rpm
