"""CPU that traces and metrics add to runs (target To: at most 5 % more). The same consensus
team runs with both off, metrics only (a Prometheus registry hearing every event), traces
only (exported over OTLP/HTTP to a receiver on loopback) and both; the provider simulator
and the receiver are processes of their own, so only the runs' CPU is measured.

    .venv/bin/python bench/bench_observability.py [--agents 3] [--runs 40] [--reps 5]
        [--whole 12] [--blocks 40] [--instructions 20 [--instruction-reps 3]]
    .venv/bin/python bench/bench_observability.py --parts 20 [--instruction-reps 3]

``--parts N`` only counts instructions (below) of N few-words runs with each part on: metrics
alone, traces alone, both, and both with the tracer keeping each run's events but never
making spans of them: what traces and metrics cost besides making, encoding and sending spans.

``--instructions N`` also counts the machine instructions of N runs, off and both on, under
valgrind (callgrind; medians of ``--instruction-reps``), and of one whole ``massgen run``
process each: figures that do not move with the machine's load (within about 1 %), where
CPU times on a shared machine move by several points between identical runs. Then
``--whole`` pairs of whole ``massgen run`` processes (start-up included, as a user runs
one), alternating: both off, and both on (the team's ``observability.otlp`` and
``--metrics-port 0``). The receivers stay up to the end: every
export reaches a collector, as in use.

Each repetition runs every mode once, in turn (the modes alternate), in a child process of
its own: it builds the orchestrator, runs a warm-up task (imports, connections, the first
span), then times ``--runs`` tasks and the close that sends the last spans with the
process's CPU clock (the exporter's thread counts). Every mode of a workload has the same
subscriber doing nothing, so events are built in all of them, as under the CLI's views: one
that wants no token deltas (a quiet view) for ``few words``, one that wants them (the live
view: the team streams) for ``realistic``. Figures are medians of ``--reps``. Nothing here
passes or fails.

Three workloads, each with its own simulator and receiver, the repetitions alternating between
them: ``few words``, the simulator's default replies (an answer of a few words, review replies
that are not votes and are asked again: 15 five-token requests a run, the most spans for the
least work, the stress case); ``realistic``, the same team answering with replies the size
real providers send, streamed as they stream them (the live view); and ``realistic, not
streamed``, the same replies asked for whole (as ``--quiet``, ``massgen batch`` and a
``serve`` request without ``stream`` ask). In both, each agent's answer is the text of an
answer recorded from a real provider (:data:`RECORDED`, 1,021-2,849 characters, ≈ 250-700
tokens) and each review a ``vote`` tool call; streamed, the answer comes a word a server-sent
event (the recordings: 4-5 characters an event) and the vote's arguments ≈ a token (4
characters) a fragment (``--token-arguments``; the recordings: 1.7-6.4 characters a fragment).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECEIVER = """
import http.server, sys
from tests.otlp import Receiver
http.server.BaseHTTPRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive, as collectors
with Receiver() as r:
    print(r.url, flush=True)
    for _ in sys.stdin:  # a line: how many spans so far (it stays up for the runs after)
        print(len(r.spans), flush=True)
"""


RECORDED = (  # answers real providers streamed, in tests/recorded (see its ORIGINS.toml files)
    "openai/pydantic_ai-test_openai_responses_thinking_part_iter.yaml",  # o3-mini: 1,251 chars
    "openai_compat/vercel_ai-xai-text-with-reasoning-streaming.1.chunks.txt",  # grok: 2,849
    "anthropic/pydantic-ai__test_anthropic_model_thinking_part_stream.yaml",  # sonnet 4: 1,021
)
VOTE = {"label": "A", "reason": "It is the most complete answer and explains each step."}


def recorded_answer(path: str) -> str:
    """The answer text a recorded stream (Responses API or Anthropic events) carried."""
    from tests.recorded.harness import HERE, load

    text = []
    for line in load(HERE / path)[-1].body.decode().splitlines():
        if not line.startswith("data:") or "delta" not in line:
            continue
        data = json.loads(line[5:])
        if data.get("type") == "response.output_text.delta":
            text.append(data["delta"])
        elif data.get("type") == "content_block_delta" and "text" in data["delta"]:
            text.append(data["delta"]["text"])
    return "".join(text)


def realistic_script(agents: int) -> str:
    """Simulator rules: agent i answers with recorded answer i, every review votes."""
    answers = [recorded_answer(path) for path in RECORDED]
    vote = {"type": "tool_calls", "calls": [{"name": "vote", "arguments": VOTE}]}
    rules = [{"match": "Vote for the best answer", "reply": vote}]
    rules += [
        {"match": f"You are agent {i}.", "reply": answers[i % len(answers)]} for i in range(agents)
    ]
    return json.dumps({"rules": rules})


class Null:
    """A subscriber that hears every event and shows no deltas (like a quiet view)."""

    wants_deltas = False

    def __call__(self, event: object) -> None:
        pass


class Live(Null):
    """One that shows deltas (like the live view): the backends stream."""

    wants_deltas = True


def team(sim_url: str, agents: int) -> str:
    rows = "\n".join(
        f"  - {{name: a{i}, role: You are agent {i}., backend: {{type: openai, "
        f"model: gpt-4o-mini, base_url: '{sim_url}/v1', api_key: x}}}}"
        for i in range(agents)
    )
    return f"agents:\n{rows}\norchestrator: {{strategy: consensus, max_retries: 0}}\n"


async def cpu_of(
    text: str, runs: int, metrics: bool, deltas: bool = False, spans: bool = True
) -> float:
    """CPU of ``runs`` runs (after a warm-up) of the team ``text``, with metrics or not;
    ``spans=False``: its tracer keeps each run's events and never turns them into spans (nor
    encodes nor sends any), to measure what the rest of traces and metrics cost."""
    from massgen.config import loads
    from massgen.orchestrator import Orchestrator

    if not spans:
        from massgen.observability.tracing import RunTracer

        RunTracer._spans = lambda self: self.held.clear()  # type: ignore[method-assign]

    heard: list[object] = [Live() if deltas else Null()]
    if metrics:
        from massgen.observability.metrics import Metrics

        heard.append(Metrics())
    orchestrator = Orchestrator.from_config(loads(text), subscribers=heard)
    await orchestrator.arun("warm up")  # clients, imports, the tracer's first span
    gc.freeze()  # what start-up made, out of the collector's way: as the CLI does
    started = time.process_time()
    for i in range(runs):
        await orchestrator.arun(f"task {i}")
    await orchestrator.aclose()
    return time.process_time() - started


SPLIT = "\n# -- the team with both on --\n"
BATCH = 512  # spans an export sends at once (OTEL_BSP_MAX_EXPORT_BATCH_SIZE's default)
STREAMED = {"realistic"}  # the workloads whose view shows token deltas (the team streams)


async def paired_of(off_text: str, on_text: str, blocks: int, runs: int, deltas: bool) -> str:
    """Both off and both on in one process, blocks of ``runs`` runs alternating (which goes
    first alternates too), each block's CPU taken with the spans it made sent: the pairwise
    ratio, free of the few-percent spread between processes of identical code. ``runs`` is
    what makes a batch of spans (at least 10), so that a block sends as often as runs do
    (blocks of 10 sent the realistic workload's spans three times as often: a point more)."""
    from massgen.config import loads
    from massgen.observability.metrics import Metrics
    from massgen.orchestrator import Orchestrator

    view = Live() if deltas else Null()
    off = Orchestrator.from_config(loads(off_text), subscribers=[view])
    on = Orchestrator.from_config(loads(on_text), subscribers=[view, Metrics()])
    pair = {"off": off, "both": on}
    for orchestrator in pair.values():
        await orchestrator.arun("warm up")
    gc.freeze()  # as in :func:`cpu_of`
    cpu: dict[str, list[float]] = {"off": [], "both": []}
    for block in range(blocks):
        for mode in ("off", "both") if block % 2 == 0 else ("both", "off"):
            orchestrator = pair[mode]
            started = time.process_time()
            for i in range(runs):
                await orchestrator.arun(f"task {block}.{i}")
            if orchestrator.tracing is not None:
                await orchestrator.tracing.flush()
            cpu[mode].append((time.process_time() - started) / runs)
    for orchestrator in pair.values():
        await orchestrator.aclose()
    ratios = [b / o - 1 for b, o in zip(cpu["both"], cpu["off"], strict=True)]
    return json.dumps({**cpu, "ratios": ratios})


def paired(off_text: str, on_text: str, blocks: int, runs: int, deltas: bool) -> dict[str, list]:
    code = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]); "
        "from bench.bench_observability import paired_of, SPLIT; a = sys.argv; "
        "off, on = sys.stdin.read().split(SPLIT); "
        "print(asyncio.run(paired_of(off, on, int(a[2]), int(a[3]), a[4] == '1')))"
    )
    argv = [sys.executable, "-c", code, str(ROOT), str(blocks), str(runs)]
    argv.append("1" if deltas else "0")
    text = off_text + SPLIT + on_text
    done = subprocess.run(argv, input=text, capture_output=True, text=True, check=True)
    data: dict[str, list] = json.loads(done.stdout.splitlines()[-1])
    return data


def child(text: str, runs: int, metrics: bool, deltas: bool) -> float:
    """One mode's CPU for ``runs`` runs, measured in a fresh process."""
    code = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]); "
        "from bench.bench_observability import cpu_of; a = sys.argv; "
        "print(asyncio.run(cpu_of(sys.stdin.read(), int(a[2]), a[3] == '1', a[4] == '1')))"
    )
    flags = ["1" if metrics else "0", "1" if deltas else "0"]
    argv = [sys.executable, "-c", code, str(ROOT), str(runs), *flags]
    done = subprocess.run(argv, input=text, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def instructions(text: str, runs: int, metrics: bool, deltas: bool, spans: bool = True) -> float:
    """Machine instructions per run (``valgrind --tool=callgrind``): the same child as
    :func:`child` run twice, with ``2 * runs`` runs and with ``runs``, the difference divided
    (so what a process pays once, the first export's connection included, is left out). A
    count of work done, not a time: the same whatever else the machine is doing. Valgrind
    runs the code some 50 times slower, so an export's ``delay`` (5 s) would send a batch
    every few runs where at full speed batches leave full (512 spans, every 15 runs here):
    the children wait 10 minutes, as many runs' spans leave as at full speed."""
    import os
    import re

    code = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]); "
        "from bench.bench_observability import cpu_of; a = sys.argv; "
        "asyncio.run(cpu_of(sys.stdin.read(), int(a[2]), a[3] == '1', a[4] == '1', a[5] == '1'))"
    )
    flags = ["1" if metrics else "0", "1" if deltas else "0", "1" if spans else "0"]
    counted = []
    for n in (2 * runs, runs):
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        argv += [sys.executable, "-c", code, str(ROOT), str(n), *flags]
        env = {**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "600000"}
        done = subprocess.run(argv, input=text, env=env, capture_output=True, text=True, check=True)
        found = re.search(r"Collected : (\d+)", done.stderr)
        assert found is not None, done.stderr[-500:]
        counted.append(int(found.group(1)))
    return (counted[0] - counted[1]) / runs


def instruction_medians(
    modes: dict[str, tuple[str, bool]], runs: int, reps: int, deltas: bool
) -> dict[str, float]:
    """:func:`instructions` of off and both on, ``reps`` times each (a pair at a time, side
    by side: two cores), and their medians: a run's count moves by about 1 % between
    identical children (the order of hashed sets and dicts, where the collector runs)."""
    from concurrent.futures import ThreadPoolExecutor

    got: dict[str, list[float]] = {"off": [], "both": []}
    with ThreadPoolExecutor(2) as pool:
        for _ in range(reps):
            pair = {
                mode: pool.submit(instructions, modes[mode][0], runs, mode == "both", deltas)
                for mode in got
            }
            for mode, future in pair.items():
                got[mode].append(future.result())
    return {mode: statistics.median(counts) for mode, counts in got.items()}


def parts(off: str, on: str, runs: int, reps: int) -> dict[str, float]:
    """Instructions per run (medians of ``reps``, two children at a time) of few words with
    each part on alone, and with both on but no spans made (the tracer keeps the events and
    drops them): where the added instructions go, and what is left for making the spans."""
    from concurrent.futures import ThreadPoolExecutor

    modes = {
        "off": (off, False, True),
        "metrics only": (off, True, True),
        "traces only": (on, False, True),
        "both, no spans made": (on, True, False),
        "both": (on, True, True),
    }
    with ThreadPoolExecutor(2) as pool:
        futures = {
            mode: [pool.submit(instructions, t, runs, m, False, s) for _ in range(reps)]
            for mode, (t, m, s) in modes.items()
        }
        return {mode: statistics.median(f.result() for f in fs) for mode, fs in futures.items()}


def whole_instructions(off: str, on: str) -> dict[str, int]:
    """Machine instructions of one whole ``massgen run`` process each, off and both on
    (valgrind): start-up included, as a user runs one; the same whatever the machine's load.
    Run after :func:`whole_runs`, which wrote the modules' bytecode."""
    import os
    import re
    import tempfile

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    count: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        for mode, text in (("off", off), ("both", on)):
            Path(folder, f"{mode}.yaml").write_text(text)
            argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
            argv += [sys.executable, "-m", "massgen", "run", f"{mode}.yaml", "What is 2+2?"]
            argv += ["--no-cache", "--quiet"]
            argv += ["--metrics-port", "0"] if mode == "both" else []
            done = subprocess.run(
                argv, cwd=folder, env=env, capture_output=True, text=True, check=True
            )
            found = re.search(r"Collected : (\d+)", done.stderr)
            assert found is not None, done.stderr[-500:]
            count[mode] = int(found.group(1))
    return count


def whole_runs(off: str, on: str, pairs: int) -> dict[str, list[float]]:
    """CPU (user + sys) of whole ``massgen run`` processes, without and with both on."""
    import os
    import resource
    import tempfile

    cpu: dict[str, list[float]] = {"off": [], "both": []}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as folder:
        for mode, text in (("off", off), ("both", on)):
            Path(folder, f"{mode}.yaml").write_text(text)
        for _ in range(pairs):
            for mode, times in cpu.items():
                argv = [sys.executable, "-m", "massgen", "run", f"{mode}.yaml", "What is 2+2?"]
                argv += ["--no-cache", "--quiet"]
                argv += ["--metrics-port", "0"] if mode == "both" else []
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(argv, cwd=folder, env=env, capture_output=True, check=True)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                times.append(used)
    return cpu


def start(argv: list[str]) -> subprocess.Popen[str]:
    """A helper process whose first stdout line is its URL."""
    pipe = subprocess.PIPE
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdin=pipe, stdout=pipe, text=True)


def report(name: str, cpu: dict[str, list[float]], spans: float, reps: int) -> None:
    median = {mode: statistics.median(times) for mode, times in cpu.items()}
    base = median["off"]
    print(f"{name}: CPU per run (median of {reps}):")
    for mode, value in median.items():
        print(f"  {mode:8} {value * 1e3:6.2f} ms  ({value / base - 1:+.1%})")
    added = median["traces"] - base
    print(f"  {spans:.0f} spans per run, {added / spans * 1e6:.0f} us CPU per span")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--whole", type=int, default=12, help="pairs of whole `massgen run`s")
    parser.add_argument("--blocks", type=int, default=40, help="paired blocks in one process")
    parser.add_argument(
        "--instructions", type=int, default=0, help="runs counted under valgrind (0: none)"
    )
    parser.add_argument("--instruction-reps", type=int, default=3, help="medians of these")
    parser.add_argument(
        "--parts",
        type=int,
        default=0,
        help="only count instructions of N few-words runs by part (metrics, traces, spans)",
    )
    args = parser.parse_args()
    sim = "tests.sim.simulator"
    procs = {
        "few words": (start(["-m", sim, "--port", "0"]), start(["-c", RECEIVER])),
        **{
            name: (
                start(["-m", sim, "--port", "0", "--token-arguments"]),
                start(["-c", RECEIVER]),
            )
            for name in ("realistic", "realistic, not streamed")
        },
    }
    try:
        teams: dict[str, dict[str, tuple[str, bool]]] = {}
        for name, (simulator, receiver) in procs.items():
            assert simulator.stdout is not None and receiver.stdout is not None
            url = simulator.stdout.readline().strip()
            if name != "few words":
                body = realistic_script(args.agents).encode()
                urllib.request.urlopen(f"{url}/_sim/script", body).close()
            off = team(url, args.agents)
            on = off + f"observability: {{otlp: '{receiver.stdout.readline().strip()}'}}\n"
            teams[name] = {"off": (off, False), "metrics": (off, True), "traces": (on, False)}
            teams[name]["both"] = (on, True)
        if args.parts:
            few = teams["few words"]
            counts = parts(few["off"][0], few["both"][0], args.parts, args.instruction_reps)
            for mode, figure in counts.items():
                added = figure - counts["off"]
                print(
                    f"few words, {mode:20} {figure / 1e6:7.3f} M instructions a run "
                    f"({added / 1e6:+.3f} M, {added / counts['off']:+.1%})"
                )
            return
        cpu: dict[str, dict[str, list[float]]] = {
            name: {mode: [] for mode in modes} for name, modes in teams.items()
        }
        for _ in range(args.reps):
            for name, modes in teams.items():
                for mode, (text, metrics) in modes.items():
                    used = child(text, args.runs, metrics, name in STREAMED)
                    cpu[name][mode].append(used / args.runs)
        first = teams["few words"]
        whole = whole_runs(first["off"][0], first["both"][0], args.whole)
        block: dict[str, int] = {}  # runs a paired block, so that it sends what a batch holds
        for name, (_, receiver) in procs.items():
            assert receiver.stdin is not None and receiver.stdout is not None
            receiver.stdin.write("spans?\n")
            receiver.stdin.flush()
            received = int(receiver.stdout.readline())
            runs = 2 * args.reps * (args.runs + 1) + (args.whole if name == "few words" else 0)
            report(
                f"{args.agents} agents, consensus, {name}", cpu[name], received / runs, args.reps
            )
            block[name] = max(10, math.ceil(BATCH / (received / runs)))
        for name, modes in teams.items():
            n = block[name]
            got = paired(modes["off"][0], modes["both"][0], args.blocks, n, name in STREAMED)
            off_ms, both_ms = (statistics.median(got[m]) * 1e3 for m in ("off", "both"))
            ratios = sorted(got["ratios"])
            quartiles = statistics.quantiles(ratios, n=4)
            print(
                f"{name}, both on against off in one process ({args.blocks} paired blocks of {n} "
                f"runs, alternating): off {off_ms:.2f} ms, both {both_ms:.2f} ms a run; added: "
                f"median {statistics.median(ratios):+.1%} (quartiles {quartiles[0]:+.1%}, "
                f"{quartiles[2]:+.1%})"
            )
        if args.instructions:
            for name, modes in teams.items():
                reps = args.instruction_reps
                count = instruction_medians(modes, args.instructions, reps, name in STREAMED)
                print(
                    f"{name}, instructions per run (valgrind, {args.instructions} runs, "
                    f"median of {reps}): "
                    f"off {count['off']:,.0f}, both {count['both']:,.0f} "
                    f"({count['both'] / count['off'] - 1:+.1%})"
                )
            whole_count = whole_instructions(first["off"][0], first["both"][0])
            print(
                "whole `massgen run` process, few words, instructions (valgrind): "
                f"off {whole_count['off']:,}, both on (and --metrics-port 0) "
                f"{whole_count['both']:,} ({whole_count['both'] / whole_count['off'] - 1:+.1%})"
            )
        cold, warm = (statistics.median(whole[mode]) for mode in ("off", "both"))
        print(
            f"whole `massgen run` processes, few words (median of {args.whole}, alternating): "
            f"off {cold:.3f} s CPU, both on (and --metrics-port 0) {warm:.3f} s "
            f"({warm / cold - 1:+.1%})"
        )
    finally:
        for pair in procs.values():
            for proc in pair:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
