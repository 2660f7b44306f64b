"""R24: the only worker of an agent is killed (SIGKILL) while it holds a turn.

The run must not wait out the turn timeout (635 s with the defaults) in silence: the registry
drops the dead worker within its heartbeat TTL, the run says it is waiting, then runs the
turn in its own process (it has the config and keys), or, when it cannot, fails the turn at
once naming the worker that went away. Real processes: a worker process, ``massgen run``
as a process, the provider simulator holding the worker's request.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mas.helpers import SHARED_REDIS, clean_prefix
from tests.procs import start_ready
from tests.sim.sim_types import Hang, Text
from tests.sim.simulator import ProviderSimulator

TTL = 1.0  # the worker's heartbeat TTL: the registry drops it this long after it dies
BOUND = 20.0  # seconds from the kill to the end of the run: far below the 635 s of before
TASK = "What is the capital of France?"
PROC = Path(__file__).with_name("worker_proc.py")


@pytest.fixture
async def prefix() -> object:
    p = f"test:lost:{uuid.uuid4().hex[:10]}:"
    yield p
    await clean_prefix(SHARED_REDIS, p)


@pytest.fixture
def team(tmp_path: Path, sim: ProviderSimulator, prefix: str) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(
        f"""\
redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}'}}
agents:
  - name: bob
    role: You are Bob.
    backend: {{type: openai, model: gpt-4o-mini, base_url: '{sim.openai_base_url}',
               api_key: x, timeout: 60}}
orchestrator: {{strategy: parallel, cache: {{enabled: false}}}}
"""
    )
    return path


@pytest.fixture
def worker(team: Path) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("MASSGEN_REDIS_URL", "MASSGEN_SECRET")}
    proc = start_ready(
        [sys.executable, str(PROC), str(team), "bob", str(TTL)], ready="hosting bob", env=env
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


def test_a_killed_worker_s_turn_runs_here_within_the_heartbeat_ttl(
    sim: ProviderSimulator, team: Path, worker: subprocess.Popen[str]
) -> None:
    sim.script([Hang(), Text("Paris.")], match="You are Bob.")
    env = {k: v for k, v in os.environ.items() if k not in ("MASSGEN_REDIS_URL", "MASSGEN_SECRET")}
    run = subprocess.Popen(
        [sys.executable, "-m", "massgen", "run", str(team), TASK, "--no-record"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        sim.wait_for_requests(1, timeout=30)  # the worker's request, held there
        worker.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        out, err = run.communicate(timeout=BOUND)
        took = time.monotonic() - killed
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=10)
    assert run.returncode == 0, err
    assert out == "Paris.\n"
    assert took < BOUND
    assert "bob on workers at" in err  # the turn went to the worker first
    lines = err.splitlines()
    waiting = [line for line in lines if "bob waiting for a worker" in line]
    here = [line for line in lines if "no live worker" in line and "running the turn here" in line]
    assert waiting and here, err
    assert f"pid {worker.pid}" in here[0]  # the dead worker is named
    assert lines.index(waiting[0]) < lines.index(here[0])
    assert len(sim.requests) == 2  # the held one, then the turn run here


async def test_a_turn_that_cannot_run_here_fails_at_once_naming_the_worker(
    sim: ProviderSimulator, team: Path, worker: subprocess.Popen[str]
) -> None:
    import asyncio

    from massgen.config import load
    from massgen.distributed import RemoteHandle, WorkerLost, distributed
    from massgen.errors import RunError
    from massgen.orchestrator import Orchestrator

    sim.script([Hang()], match="You are Bob.")
    cfg = load(team)
    assert cfg.redis is not None
    orchestrator = Orchestrator.from_config(cfg)
    async with orchestrator, distributed(orchestrator, cfg.redis.url, prefix=cfg.redis.prefix):
        handle = orchestrator.handles["bob"]
        assert isinstance(handle, RemoteHandle)
        handle.local = None  # as for a run that lacks what the agent needs
        running = asyncio.create_task(orchestrator.arun(TASK))
        await sim.wait_for_requests_async(1, timeout=30)
        worker.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        with pytest.raises(RunError) as info:
            await asyncio.wait_for(running, BOUND)
        took = time.monotonic() - killed
    lost = info.value.__cause__
    assert isinstance(lost, WorkerLost)
    assert f"pid {worker.pid}" in str(lost)
    assert took < TTL + 5
    assert len(sim.requests) == 1
