"""T3n of ../shared/targets.md: requests and tokens per question of the consensus strategy
as the team grows (N = 3, 6, 12, 24), for each mode, against the provider simulator.

Scenarios (the simulated agents' answers; each reviewer votes by tool call):

- ``prose``: N different ~50-word answers to "What is the capital of France?" (the three of
  bench/consensus_sim.py, then variants of them); every reviewer votes for the answer that
  starts "Paris is the capital" (the first agent's) if it is shown, else for label A. This is
  the benchmark question of bench_run.py, grown to N agents: the answers disagree as prose.
- ``prose-best-last``: the same, the preferred answer given by the last agent in config order.
- ``agree``: every agent states 42 in its own words ("The answer is 42.", "#### 42", ...).
- ``split``: 40 % state 42, the others each a different wrong number; reviewers vote for 42.

Modes: ``adaptive`` (the default config), ``vote``, ``debate``, and ``before``: the settings
that reproduce the strategy before issue 15 (debate on the whole text, every answer shown).
Tokens are the simulator's count (a token per four characters of the request it receives).

    .venv/bin/python bench/bench_consensus_scale.py [--sizes 3,6,12,24] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the simulator lives in tests/
sys.path.insert(0, str(HERE))

from consensus_sim import ANSWERS  # noqa: E402

from massgen import Orchestrator  # noqa: E402
from tests.sim import ProviderSimulator, SimRequest, Text, ToolCalls, ToolCallSpec  # noqa: E402

PROSE_TASK = "What is the capital of France? Answer briefly."
NUMBER_TASK = "What is 6 x 7?"
BLOCK = re.compile(r'<answer label="([A-Z])"[^>]*>\n(.*?)\n</answer>', re.DOTALL)
AGENT = re.compile(r"You are a(\d+)\.")
OPENINGS = ["", "Briefly: ", "In short: ", "Simply put, ", "Well, ", "So: ", "Surely ", "Yes: "]
FORTY_TWO = ["The answer is 42.", "#### 42", "6 x 7 = 42, so the answer is 42.", "It is 42."]
MODES = {
    "adaptive": {},
    "vote": {"mode": "vote"},
    "debate": {"mode": "debate"},
    "before": {"mode": "debate", "answer": "prose", "topology": "full"},
}


def prose_answers(n: int, best_last: bool = False) -> list[str]:
    """N different ~50-word answers: the three of consensus_sim.py, then each with a few words
    before it (up to 24); the one starting "Paris is the capital" first (or last)."""
    base = list(ANSWERS.values())
    out = [OPENINGS[i // 3] + base[i % 3] for i in range(n)]
    if best_last:
        out[0], out[-1] = out[-1], out[0]
    return out


def number_answers(n: int, agreeing: int) -> list[str]:
    return [FORTY_TWO[i % 4] if i < agreeing else f"The answer is {40 - i}." for i in range(n)]


def scenario(name: str, n: int) -> tuple[str, list[str], str]:
    """(task, each agent's answer, what a reviewer looks for in the blocks)."""
    if name == "prose":
        return PROSE_TASK, prose_answers(n), "Paris is the capital"
    if name == "prose-best-last":
        return PROSE_TASK, prose_answers(n, best_last=True), "Paris is the capital"
    if name == "agree":
        return NUMBER_TASK, number_answers(n, n), "42"
    return NUMBER_TASK, number_answers(n, max(1, round(0.4 * n))), "42"


def responder(answers: list[str], wanted: str):  # type: ignore[no-untyped-def]
    def respond(request: SimRequest) -> Text | ToolCalls:
        prompt = request.messages[-1][1] if request.messages else ""
        if '<answer label="' in prompt:
            blocks = BLOCK.findall(prompt)
            label = next((lbl for lbl, text in blocks if text.startswith(wanted)), None)
            label = label or next((lbl for lbl, text in blocks if wanted in text), "A")
            return ToolCalls([ToolCallSpec("vote", {"label": label, "reason": "best"})])
        m = AGENT.search(request.system)
        return Text(answers[int(m[1]) if m else 0])

    return respond


TEAM = """\
backends:
  sim: {{type: openai, model: gpt-4o-mini, base_url: "{url}/v1", api_key: sim-key}}
agents:
{agents}
orchestrator:
  strategy: consensus
  max_retries: 0
"""


async def measure(sim: ProviderSimulator, team: Path, task: str, consensus: dict) -> dict:
    sim.reset()
    async with Orchestrator.from_config(team, consensus=consensus) as orchestrator:
        result = await orchestrator.arun(task)
    stats = sim.stats
    return {
        "requests": stats.requests,
        "prompt": stats.prompt_tokens,
        "completion": stats.completion_tokens,
        "rounds": result.rounds,
        "agreement": result.support,
    }


def cell(sim: ProviderSimulator, team: Path, task: str, consensus: dict, runs: int) -> str:
    """``requests / prompt / completion (rounds)``, medians of ``runs``."""
    got = [asyncio.run(measure(sim, team, task, consensus)) for _ in range(runs)]
    m = {k: statistics.median(r[k] for r in got) for k in ("requests", "prompt", "completion")}
    rounds = statistics.median(r["rounds"] for r in got)
    return f"{m['requests']:.0f} / {m['prompt']:,.0f} / {m['completion']:,.0f} ({rounds:.0f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="3,6,12,24")
    ap.add_argument("--runs", type=int, default=1, help="runs per cell (the median is shown)")
    ap.add_argument("--scenarios", default="prose,prose-best-last,agree,split")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with ProviderSimulator(latency=0.0) as sim, tempfile.TemporaryDirectory() as tmp:
        for name in args.scenarios.split(","):
            print(f"\n{name}: requests / prompt tokens / completion tokens (rounds) per question")
            print("| N | " + " | ".join(MODES) + " |")
            print("|---|" + "---|" * len(MODES))
            for n in sizes:
                task, answers, wanted = scenario(name, n)
                sim.responder = responder(answers, wanted)
                team = Path(tmp) / f"team{n}.yaml"
                lines = [f"  - {{name: a{i}, backend: sim, role: You are a{i}.}}" for i in range(n)]
                team.write_text(TEAM.format(url=sim.url, agents="\n".join(lines)))
                cells = [
                    cell(sim, team, task, consensus, args.runs) for consensus in MODES.values()
                ]
                print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
