"""The simulated provider for the consensus benchmark (run as its own process).

Three agents answer "What is the capital of France?" with different ~50-word answers; in the
review round each votes, by tool call, for the label of the answer that starts with
"Paris is the capital". So a run is one answer round and one review round, as in the
figures of the field in ../shared/targets.md.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the simulator lives in tests/
from tests.sim import ProviderSimulator, SimRequest, Text, ToolCalls, ToolCallSpec

ANSWERS = {
    "Ada": (
        "Paris is the capital of France. It has been the seat of government for most of the "
        "country's history, hosts the President at the Élysée Palace and the parliament, and "
        "is by far its largest city, with about two million people in the city proper and "
        "twelve million in its metropolitan area."
    ),
    "Bo": (
        "The capital of France is Paris, on the Seine in the north of the country. Besides "
        "being the political centre, with the national assembly and the ministries, it is "
        "the economic and cultural heart of France, home to the Louvre, major universities "
        "and the headquarters of most large French companies."
    ),
    "Cy": (
        "France's capital is Paris. The city became the capital under the Capetian kings "
        "around the year 987 and, apart from short periods such as Vichy during the Second "
        "World War, has remained so ever since. Today it is also one of the most visited "
        "cities in the world and a global centre of finance."
    ),
}
BLOCK = re.compile(r'<answer label="([A-Z])"[^>]*>\n(.*?)\n</answer>', re.DOTALL)


def respond(request: SimRequest) -> Text | ToolCalls:
    prompt = request.last_user_text
    if '<answer label="' in prompt:
        label = next(
            (lbl for lbl, text in BLOCK.findall(prompt) if text.startswith("Paris is the capital")),
            "A",
        )
        return ToolCalls([ToolCallSpec("vote", {"label": label, "reason": "most complete"})])
    name = next((n for n in ANSWERS if f"You are {n}" in request.system), "Ada")
    return Text(ANSWERS[name])


def main() -> int:
    latency = float(sys.argv[1]) if len(sys.argv) > 1 else 0.2
    sim = ProviderSimulator(latency=latency)
    sim.responder = respond
    sim.start()
    print(sim.url, flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
