"""Issue 14's serving figures: ``massgen serve`` as its own process against the provider
simulator (in another process), driven by aiohttp from this one.

0. Floor: the load of part 2 sent by this process to the simulator itself (each ask three
   requests at once, as the team sends them), no serve between: what the bench's own
   client and the simulator add. On 2 cores they share the CPU with serve, so part 2 can
   not do much better than this.
1. Overhead: a 3-agent consensus through ``serve`` against the same run in this process
   (an Orchestrator of the same team, warm), alternately, ``--runs`` times each; prints the
   medians and the median of the pairwise differences (the target: <= 20 ms more).
2. Load: ``--clients`` concurrent clients (200), each asking a 3-agent parallel team
   ``--asks`` times in a row, at ``--latency`` (1 s) per simulated request. The ideal: every
   run takes one latency, so clients / latency runs per second (200/s). Prints runs/s
   against it (target >= 0.8x), P50/P99 of the latency each client saw beyond the
   simulated one (target P99 <= 50 ms), the same by ask (all clients start at once: ask 1
   also opens every connection, later asks are spread out by the earlier ones), the part
   of it outside the run (the HTTP side: client time minus the run's own duration, from
   the ``massgen`` field), the serve process's peak RSS (target <= 200 MB), and the CPU
   each process used meanwhile (serve's per run is what its one event loop spends on each).
   2b. The same clients arriving spread evenly over the first latency instead of all at
   once: a steady stream of 200 arrivals/s with 200 runs in flight, as independent users
   make, where part 2's synchronized bursts make the last of each burst wait for the
   other 199 runs' CPU on serve's one event loop.
3. With ``--bare``: part 2's load on a bare aiohttp proxy (:func:`bare_proxy`, no massgen):
   what any server on aiohttp pays for the same exchange.

Figures only; nothing here passes or fails.

    .venv/bin/python bench/bench_serve.py [--runs 20] [--clients 200] [--asks 3]
        [--latency 1.0] [--overhead-latency 0.05] [--load-only] [--no-floor] [--bare]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the simulator lives in tests/
from tests.sim.sim_process import SimulatorProcess

TASK = "What is the capital of France? Answer briefly."
TEAM = """\
name: {name}
backends:
  sim: {{type: openai, model: gpt-4o-mini, base_url: "{url}/v1", api_key: sim-key}}
agents:
  - {{name: ada, backend: sim, role: "You are Ada, a geographer."}}
  - {{name: bo, backend: sim, role: "You are Bo, a historian."}}
  - {{name: cy, backend: sim, role: "You are Cy, a travel writer."}}
orchestrator:
  strategy: {strategy}
"""


def start_serve(
    team: Path, concurrency: int, bare: str | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``massgen serve`` of ``team``, or with ``bare`` (the simulator's URL) the bare proxy."""
    cmd = [sys.executable, "-m", "massgen", "serve", str(team), "--port", "0", "--no-cache"]
    cmd += ["--no-access-log", "--concurrency", str(concurrency)]
    if bare is not None:
        cmd = [sys.executable, __file__, "--bare-proxy", bare]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if " on http://" not in line:
        proc.kill()
        raise SystemExit(f"{cmd[1:4]} did not start: {line}{proc.stderr.read()}")
    return proc, line.rsplit(" on ", 1)[1].strip()


def bare_proxy(sim_url: str) -> None:
    """What any server on aiohttp pays for the same exchange, with no massgen in it: each
    request's body read as JSON, three requests to the simulator at once on one shared
    session, a JSON answer. Listens on a free port (told on stderr) until SIGTERM."""
    import signal

    import aiohttp
    from aiohttp import web

    async def main() -> None:
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def one(body: dict[str, object]) -> dict[str, object]:
            async with http.post(sim_url + "/v1/chat/completions", json=body) as r:
                return await r.json()

        async def chat(request: web.Request) -> web.Response:
            asked = await request.json()
            body = {"model": "gpt-4o-mini", "messages": asked["messages"]}
            started = time.perf_counter()
            answers = await asyncio.gather(one(body), one(body), one(body))
            duration = time.perf_counter() - started
            return web.json_response({**answers[0], "massgen": {"duration": duration}})

        app = web.Application()
        app.add_routes([web.post("/v1/chat/completions", chat)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"bare proxy on {site.name}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()
        await http.close()

    asyncio.run(main())


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """The user + system CPU seconds process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.communicate(timeout=60)


async def ask(http: object, url: str, model: str) -> tuple[float, float]:
    """One completion: the seconds the client waited and the run's own duration."""
    import aiohttp

    assert isinstance(http, aiohttp.ClientSession)
    body = {"model": model, "messages": [{"role": "user", "content": TASK}]}
    started = time.perf_counter()
    async with http.post(url + "/v1/chat/completions", json=body) as r:
        data = await r.json()
    waited = time.perf_counter() - started
    if r.status != 200:
        raise SystemExit(f"serve answered {r.status}: {data}")
    return waited, data["massgen"]["duration"]


async def overhead(sim_url: str, runs: int, folder: Path) -> None:
    import aiohttp

    from massgen import Orchestrator

    team = folder / "consensus.yaml"
    team.write_text(TEAM.format(name="c", url=sim_url, strategy="consensus"))
    proc, url = start_serve(team, 8)
    try:
        async with (
            Orchestrator.from_config(team, cache_enabled=False) as orch,
            aiohttp.ClientSession() as http,
        ):
            await orch.arun(TASK)  # both warm: clients loaded, connections open
            await ask(http, url, "massgen/c")
            local: list[float] = []
            served: list[float] = []
            for _ in range(runs):
                started = time.perf_counter()
                await orch.arun(TASK)
                local.append(time.perf_counter() - started)
                served.append((await ask(http, url, "massgen/c"))[0])
    finally:
        stop(proc)
    diffs = [s - here for s, here in zip(served, local, strict=True)]
    ms = 1000
    print(f"1. 3-agent consensus, {runs} runs each, alternately (medians):")
    print(f"   in-process {statistics.median(local) * ms:8.1f} ms")
    print(f"   via serve  {statistics.median(served) * ms:8.1f} ms")
    print(f"   added      {statistics.median(diffs) * ms:8.1f} ms (median of pairwise differences)")


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile of ``values`` (sorted), in ms."""
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


async def swarm(
    clients: int, asks: int, one: Callable[[], Awaitable[float]], spread: float = 0.0
) -> list[list[float]]:
    """``clients`` clients, each calling ``one`` ``asks`` times in a row; the seconds each
    call took, by ask (the first asks of all clients, then the second...). With ``spread``,
    client k starts k * spread / clients seconds in (a steady stream of arrivals, as
    independent users make), else all start at once (synchronized bursts)."""
    seen: list[list[float]] = [[] for _ in range(asks)]

    async def client(k: int) -> None:
        if spread:
            await asyncio.sleep(k * spread / clients)  # the arrival schedule
        for i in range(asks):
            seen[i].append(await one())

    await asyncio.gather(*(client(k) for k in range(clients)))
    return seen


def by_ask(seen: list[list[float]], latency: float) -> str:
    """P50/P99 of the added latency of each ask in turn (ms)."""
    parts = []
    for i, waits in enumerate(seen):
        added = sorted(w - latency for w in waits)
        parts.append(f"ask {i + 1} P50 {pct(added, 50):.0f} P99 {pct(added, 99):.0f}")
    return "; ".join(parts)


async def floor(sim: SimulatorProcess, clients: int, asks: int, latency: float) -> None:
    """The same clients asking the simulator themselves, each ask three requests at once as
    the team sends them: what this process and the simulator add with no serve between."""
    import aiohttp

    assert sim.pid is not None
    sim_url = sim.url
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": TASK}]}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one() -> float:
            async def request() -> None:
                async with http.post(sim_url + "/v1/chat/completions", json=body) as r:
                    await r.read()

            started = time.perf_counter()
            await asyncio.gather(request(), request(), request())
            return time.perf_counter() - started

        await one()  # warm
        before = cpu_seconds(sim.pid), time.process_time()
        seen = await swarm(clients, asks, one)
        cpu = cpu_seconds(sim.pid) - before[0], time.process_time() - before[1]
    added = sorted(w - latency for waits in seen for w in waits)
    print(
        f"0. floor: the {clients} clients x {asks} asks sent to the simulator directly, 3 "
        f"requests at once per ask (no serve):"
    )
    print(f"   added P50 {pct(added, 50):.1f} ms, P99 {pct(added, 99):.1f} ms")
    print(f"   by ask (ms): {by_ask(seen, latency)}")
    print(f"   CPU: simulator {cpu[0]:.2f} s, bench client {cpu[1]:.2f} s")


async def load(
    sim: SimulatorProcess,
    clients: int,
    asks: int,
    latency: float,
    folder: Path,
    *,
    bare: bool,
    spread: bool = False,
) -> None:
    import aiohttp

    team = folder / "parallel.yaml"
    team.write_text(TEAM.format(name="p", url=sim.url, strategy="parallel"))
    assert sim.pid is not None
    proc, url = start_serve(team, clients + 16, sim.url if bare else None)
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            await ask(http, url, "massgen/p")  # warm
            runs: list[tuple[float, float]] = []

            async def one() -> float:
                runs.append(await ask(http, url, "massgen/p"))
                return runs[-1][0]

            pids = {"server": proc.pid, "simulator": sim.pid}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            before["bench client"] = time.process_time()
            started = time.perf_counter()
            seen = await swarm(clients, asks, one, latency if spread else 0.0)
            wall = time.perf_counter() - started - (latency if spread else 0.0)
            cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            cpu["bench client"] = time.process_time() - before["bench client"]
        rss = peak_rss_mb(proc.pid)
    finally:
        stop(proc)
    count = clients * asks
    ideal = clients / latency
    added = sorted(w - latency for w, _ in runs)
    outside = sorted(w - d for w, d in runs)
    if bare:
        print("3. the same load on the bare aiohttp proxy (no massgen; bench_serve.bare_proxy):")
    elif spread:
        print(
            f"2b. the same {clients} clients arriving spread over the first {latency:g} s "
            f"(a steady {ideal:.0f} arrivals/s, {clients} runs in flight), {asks} asks each:"
        )
    else:
        print(
            f"2. {clients} concurrent clients x {asks} asks, 3-agent parallel, "
            f"{latency:g} s latency:"
        )
    print(
        f"   {count} runs in {wall:.2f} s: {count / wall:.1f} runs/s (ideal {ideal:.0f}/s, "
        f"{count / wall / ideal:.2f}x)"
    )
    print(
        f"   added latency over the simulated {latency:g} s: P50 {pct(added, 50):.1f} ms, "
        f"P99 {pct(added, 99):.1f} ms"
    )
    print(f"   by ask (ms; ask 1 opens every connection): {by_ask(seen, latency)}")
    print(
        f"   of it outside the run (HTTP side): P50 {pct(outside, 50):.1f} ms, "
        f"P99 {pct(outside, 99):.1f} ms"
    )
    print(f"   server process peak RSS {rss:.0f} MB")
    shares = ", ".join(
        f"{name} {seconds:.2f} s ({seconds / count * 1000:.2f} ms/run)"
        for name, seconds in cpu.items()
    )
    print(f"   CPU during the load, of {wall * (os.cpu_count() or 1):.1f} s: {shares}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--asks", type=int, default=3)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--overhead-latency", type=float, default=0.05)
    parser.add_argument("--load-only", action="store_true", help="skip part 1")
    parser.add_argument("--no-floor", action="store_true", help="skip part 0")
    parser.add_argument("--bare", action="store_true", help="also part 3, the bare proxy")
    parser.add_argument("--bare-proxy", metavar="SIM_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_proxy:
        return bare_proxy(args.bare_proxy)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.chdir(folder)  # run records and caches of the in-process runs land here
        if not args.load_only:
            with SimulatorProcess(args.overhead_latency) as sim:
                asyncio.run(overhead(sim.url, args.runs, folder))
        if not args.no_floor:
            with SimulatorProcess(args.latency) as sim:
                asyncio.run(floor(sim, args.clients, args.asks, args.latency))
        with SimulatorProcess(args.latency) as sim:
            asyncio.run(load(sim, args.clients, args.asks, args.latency, folder, bare=False))
        with SimulatorProcess(args.latency) as sim:
            asyncio.run(
                load(sim, args.clients, args.asks, args.latency, folder, bare=False, spread=True)
            )
        if args.bare:
            with SimulatorProcess(args.latency) as sim:
                asyncio.run(load(sim, args.clients, args.asks, args.latency, folder, bare=True))


if __name__ == "__main__":
    main()
