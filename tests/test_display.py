"""The progress views: state folded from events, plain lines, and the Rich live view.

The live view is checked as a user sees it: rendered after every event of a real run (what
the screen would show at that moment), and as a real ``massgen run`` in a terminal."""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from massgen import events as ev
from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.backends.replay import ReplayBackend
from massgen.display.live import STATUS_WIDTH, LiveView
from massgen.display.plain import PlainView, ViewState, review_note
from massgen.errors import RateLimited
from massgen.orchestrator import Orchestrator
from tests.teamkit import failing, scripted, team, vote
from tests.terminal import Terminal, borders

ROOT = Path(__file__).resolve().parent.parent
TASK = "What is the capital of France?"


def run_with(*subscribers):
    agents, _ = team(
        a=scripted("Paris is the capital."),
        b=scripted("It is Paris.", lambda r: vote(r, "Paris is the capital")),
        c=failing(),
    )
    # debate on the whole text: the answers agree on Paris, these tests show a review
    orchestrator = Orchestrator(
        agents, max_retries=0, subscribers=list(subscribers), mode="debate", answer="prose"
    )
    return orchestrator.run("Capital?")


class Screens:
    """A live view subscribed to a run, and what it shows after each event: a list of
    (event, screen text) at a fixed terminal width."""

    def __init__(self, width: int = 100) -> None:
        self.width = width
        self.view = LiveView(Console(file=io.StringIO(), force_terminal=True, width=width))
        self.frames: list[tuple[ev.Event, str]] = []

    def __call__(self, e: ev.Event) -> None:
        self.view(e)
        out = Console(file=io.StringIO(), width=self.width, record=True, color_system=None)
        out.print(self.view.render())
        self.frames.append((e, out.export_text()))

    def row(self, screen: str, agent: str) -> str:
        return next(line for line in screen.splitlines() if line.startswith(f"│ {agent} "))

    def rows_of(self, agent: str) -> list[str]:
        return [self.row(screen, agent) for _, screen in self.frames]


def offline_team(chunk: int = 5) -> list[Agent]:
    """configs/offline.yaml's team, streaming in ``chunk``-character deltas, no latency."""
    rules = [
        {
            "match": "<answer label=",
            "reply": '{"vote": "{label_containing:Paris is the capital}", '
            '"reason": "correct and complete"}',
        },
        {"match": "You are Ada", "reply": "Paris."},
        {"match": "You are Bob", "reply": "Paris is the capital of France, its largest city."},
        {"match": "You are Cy", "reply": "Lyon, I believe, though I am not certain."},
    ]
    sim = ReplayBackend(rules=rules, stream_chunk=chunk)
    return [Agent(n.lower(), sim, role=f"You are {n}.") for n in ("Ada", "Bob", "Cy")]


def test_view_state_follows_a_consensus_run():
    state = ViewState()
    run_with(state.apply)
    assert state.strategy == "consensus" and state.round == 1
    assert state.votes == {"a": "a", "b": "a"} and state.leader == "a"
    assert state.rows["c"].status == "failed" and "boom" in state.rows["c"].note
    assert state.rows["a"].tokens > 0 and state.rows["a"].pending == 0
    assert state.final is not None and state.final.text == "Paris is the capital."


def test_plain_view_writes_one_line_per_step():
    out = io.StringIO()
    result = run_with(PlainView(out))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"run {result.run_id}: consensus with a, b, c")
    assert any("c failed (dropped)" in line for line in lines)
    assert any(line.strip() == "b votes for a" for line in lines)
    assert lines[-1].startswith("degraded, winner a: 1 round(s)")
    # a and b both back a's answer; c failed and is not counted
    assert lines[-1].endswith(
        "; agreement 100%; answers given: paris is the capital (1), it is paris (1)"
    )
    assert any(line.startswith("round 1: leader a, agreement 100%") for line in lines)


def test_live_view_renders_rows_votes_and_the_final_panel():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    view = LiveView(console)
    run_with(view)
    screen = buffer.getvalue()
    assert not view.live.is_started and view.ended
    assert "final answer · a" in screen and "Paris is the capital." in screen
    assert "voted" in screen and "→ a: best" in screen and "failed" in screen
    assert "consensus · round 1" in screen
    assert "leading a (100%)" in screen  # the leader's agreement score


def test_a_review_shows_the_agent_its_vote_backs_never_the_reply_json():
    screens = Screens()
    Orchestrator(offline_team(), subscribers=[screens], mode="debate", answer="prose").run(TASK)
    ballots = {e.agent: e.labels for e, _ in screens.frames if isinstance(e, ev.Ballot)}
    replies = {
        e.agent: json.loads(e.text)["vote"]
        for e, _ in screens.frames
        if isinstance(e, ev.AgentAnswered) and e.phase == "review"
    }
    # each reviewer saw the answers shuffled its own way: one label means different agents
    assert {ballots[a][label] for a, label in replies.items()} == {"bob"}
    assert len(set(replies.values())) > 1
    for agent in ("ada", "bob", "cy"):
        rows = screens.rows_of(agent)
        assert not any('"vote"' in r or '{"' in r or '"reason"' in r for r in rows), rows
        assert any(" voting… " in r for r in rows)
        # the vote shows as it streams: the agent first, then the reason growing
        partial = [r for r in rows if re.search(r"→ bob: c[a-z ]*\s+~\d+", r)]
        assert partial and not all("correct and complete" in r for r in partial)
        assert re.search(r"voted\s+→ bob: correct and complete", rows[-1])
    assert "votes ada→bob, bob→bob, cy→bob" in screens.frames[-1][1]


def test_on_80_columns_the_header_drops_the_votes_rather_than_cut_the_leader():
    screens = Screens(width=80)
    Orchestrator(offline_team(), subscribers=[screens], mode="debate", answer="prose").run(TASK)
    header = screens.frames[-1][1].splitlines()[0]
    assert header.startswith("╭─ consensus · round 1 · ") and len(header) == 80
    assert header.rstrip("─╮").endswith("· leading bob (100%) "), header  # not "leading bob ("
    assert "votes" not in header  # each row shows its vote: → bob


def test_on_50_columns_the_text_takes_the_room_of_tokens_and_cost():
    screens = Screens(width=50)
    Orchestrator(offline_team(), subscribers=[screens], mode="debate", answer="prose").run(TASK)
    rows = screens.rows_of("bob")
    assert any(re.search(r"answered\s+Paris is the capit", r) for r in rows), rows
    assert re.search(r"voted\s+→ bob: correct and", rows[-1]), rows
    assert all("$" not in r and len(r) == 50 for r in rows), rows
    header = screens.frames[-1][1].splitlines()[0]  # what fits: no strategy, no votes
    assert re.fullmatch(r"╭─ round 1 · \d+\.\ds · leading bob \(100%\) ─+╮", header), header
    wide = Screens(width=80)
    Orchestrator(offline_team(), subscribers=[wide], mode="debate", answer="prose").run(TASK)
    assert re.search(
        r"voted\s+→ bob: correct and complete\s+\d+\s+\$0\.0000", wide.rows_of("bob")[-1]
    )


def test_a_revision_streams_as_its_text():
    revise = json.dumps({"revise": 'Paris, "the City of Light".'})
    sim = ReplayBackend(
        rules=[
            {"match": "You are Cy.*<answer label=", "reply": revise},
            {"match": "<answer label=", "reply": '{"vote": "{label_containing:Paris}"}'},
            {"match": "You are Ada", "reply": "Paris."},
            {"match": "You are Cy", "reply": "Lyon."},
        ],
        stream_chunk=4,
    )
    agents = [Agent(n.lower(), sim, role=f"You are {n}.") for n in ("Ada", "Cy")]
    screens = Screens()
    Orchestrator(agents, subscribers=[screens]).run(TASK)
    rows = screens.rows_of("cy")
    assert any(re.search(r"revising: Paris, \"the", r) for r in rows)
    assert not any('"revise"' in r or '{"' in r for r in rows), rows
    assert re.search(r'revised\s+Paris, "the City of Light"\.', rows[-1])


def test_review_note_reads_a_reply_as_far_as_it_has_streamed():
    labels = {"A": "bob", "B": "ada"}
    assert review_note('{"vo', labels) == ""
    assert review_note('{"vote": "A", "reas', labels) == "→ bob"
    assert review_note('{"vote": "[b]", "reason": "say \\"hi\\', labels) == '→ ada: say "hi'
    assert review_note('{"vote": "Z"}', labels) == "→ answer Z"
    assert review_note('{"revise": "line one\\nline \\u00', labels) == "revising: line one\nline "


def test_tokens_count_up_while_a_turn_streams_then_become_the_providers_figure():
    screens = Screens()
    result = Orchestrator(
        offline_team(chunk=3), subscribers=[screens], mode="debate", answer="prose"
    ).run(TASK)
    shown: list[str] = []
    for e, screen in screens.frames:
        row = screens.row(screen, "bob")
        tokens = row.split()[-3]
        if isinstance(e, ev.TokenDelta) and e.agent == "bob":
            shown.append(tokens)
        if isinstance(e, ev.AgentAnswered) and e.agent == "bob" and e.phase == "answer":
            assert tokens == str(e.usage.total_tokens)  # the provider's figure, no "~"
            break
    counts = [int(t.lstrip("~")) for t in shown]
    assert all(t.startswith("~") for t in shown) and counts[0] > 0
    assert counts == sorted(counts) and counts[-1] > counts[0]
    assert result.usage.total_tokens == sum(
        int(screens.row(screens.frames[-1][1], a).split()[-3]) for a in ("ada", "bob", "cy")
    )


def test_the_text_column_never_moves_and_retries_say_why():
    calls = {"n": 0}

    def flaky(request):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RateLimited("rate limited", provider="fake", status=429)
        return scripted("Paris is the capital.")(request)

    agents = [
        Agent("ada", FunctionBackend(flaky), role="You are ada."),
        Agent("bob", FunctionBackend(scripted("It is Paris.")), role="You are bob."),
        Agent("christopher", FunctionBackend(failing()), role="You are christopher."),
    ]
    screens = Screens(width=110)
    Orchestrator(agents, max_retries=3, retry_delay=0.001, subscribers=[screens]).run(TASK)
    retry_rows = [
        screens.row(s, "ada")
        for e, s in screens.frames
        if isinstance(e, ev.AgentRetrying) and e.agent == "ada"
    ]
    assert re.search(r"retrying ↻1\s+retry 1/3 in 0\.0s: \[fake 429\] rate limited", retry_rows[0])
    assert "retry 2/3 in" in retry_rows[1] and "↻2" in retry_rows[1]
    starts = set()
    for _, screen in screens.frames:
        lines = screen.splitlines()
        header = next(line for line in lines if line.startswith("│ agent "))
        text_at = header.index("text")
        starts.add((text_at, header.index("status"), header.index("tokens")))
        for line in lines[2:-1]:
            assert line[text_at - 2 : text_at] == "  ", (line, header)  # the status fits
    assert len(starts) == 1
    status_at, text_at = next(iter(starts))[1], next(iter(starts))[0]
    assert text_at - status_at == STATUS_WIDTH + 2


def _slow_offline(tmp_path: Path, latency: float) -> Path:
    text = (ROOT / "configs" / "offline.yaml").read_text()
    text = re.sub(r"latency: [0-9.]+", f"latency: {latency}", text)
    text = text.replace("../examples/", f"{ROOT / 'examples'}/")  # the quiz's answers file
    path = tmp_path / "offline.yaml"
    path.write_text(text)
    return path


def test_in_a_terminal_a_consensus_streams_tokens_and_votes_by_name(tmp_path):
    config = _slow_offline(tmp_path, 1.0)
    with Terminal("run", "--no-record", str(config), TASK, cwd=tmp_path) as term:
        term.until(lambda ls: any(re.search(r"│ bob\s+answering\s+Paris.*~\d+", x) for x in ls))
        screen = term.shows("→ bob: corr")
        assert not any('{"vote"' in line for line in screen)
        assert term.wait() == 0
        final = term.text()
    assert len(borders(final.splitlines(), "╭─ consensus")) == 1
    assert re.search(r"│ cy\s+voted\s+→ bob: correct and complete\s+\d+ ", final)
    assert "final answer · bob" in final and "Paris is the capital of France" in final


def test_ctrl_c_prints_the_panel_and_interrupted_once_and_gives_the_terminal_back(tmp_path):
    # Bob's reply streams in 12 pieces over 12 s: his first shows after 1 s, and Ctrl-C
    # then has 11 s to land while he is still answering.
    config = _slow_offline(tmp_path, 12)
    with Terminal("run", "--no-record", str(config), TASK, cwd=tmp_path) as term:
        term.until(lambda ls: any(re.search(r"│ bob\s+answering\s+Paris", x) for x in ls))
        term.type(b"\x03")
        assert term.wait() == 130
        lines = term.lines()
        assert term.echoes()  # typing shows again at the prompt
    text = "\n".join(lines)
    assert len(borders(lines)) == 1, text
    assert len(re.findall(r"interrupted", text)) == 1, text
    assert re.search(r"^interrupted: 0 round\(s\)", text, re.M)
    assert re.search(r"│ bob\s+stopped\s+Paris", text) and "^C" not in text


def test_piped_stderr_says_interrupted_once(tmp_path):
    config = _slow_offline(tmp_path, 30)
    proc = subprocess.Popen(
        [sys.executable, "-m", "massgen", "run", "--no-record", str(config), TASK],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    first, deadline = b"", time.monotonic() + 30
    while not first.endswith(b"\n"):  # "run <id>: consensus with ..." once the run started
        assert select.select([proc.stderr], [], [], max(0, deadline - time.monotonic()))[0]
        first += os.read(proc.stderr.fileno(), 1)
    assert first.startswith(b"run ")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.decode().count("interrupted") == 1, err


def test_a_turn_waiting_for_a_worker_says_so_in_both_views():
    note = "waiting for a worker: gpu-box pid 4242 silent for 9s"
    waiting = ev.AgentWaiting(agent="bob", note=note)
    state = ViewState()
    state.apply(ev.AgentStarted(agent="bob", phase="answer"))
    state.apply(waiting)
    row = state.row("bob")
    assert (row.status, row.note) == ("no worker", note)
    assert PlainView().describe(waiting) == f"  bob {note}"


def test_the_summary_says_how_many_prompt_tokens_came_from_the_cache():
    from massgen.display.plain import summary
    from massgen.result import RunResult
    from massgen.types import Usage

    run = RunResult(run_id="r", task="t", strategy="parallel", usage=Usage(563, 116, 512, 60))
    assert "563+116 tokens (512 cached), $" in summary(run)
    run.usage = Usage(563, 116)
    assert "563+116 tokens, $" in summary(run)


def test_a_failed_tool_line_ends_in_an_ellipsis_only_when_cut():
    def line(output: str) -> str | None:
        failed = ev.ToolResult(
            agent="ada", tool="http", call_id="c1", ok=False, duration=0.5, output=output
        )
        return PlainView().describe(failed)

    assert line("HTTP 404\n  not found") == "  ada http failed: HTTP 404 not found (0.50s)"
    assert line("x" * 119 + "yz") == "  ada http failed: " + "x" * 119 + "… (0.50s)"
    assert line("x" * 120) == "  ada http failed: " + "x" * 120 + " (0.50s)"  # fits: as it is


def _slow_batch(tmp_path: Path) -> tuple[Path, Path]:
    """Two tasks of the offline team, each answer streaming over 12 s: Ctrl-C lands mid-batch."""
    tasks = tmp_path / "tasks.txt"
    tasks.write_text(f"{TASK}\nWhat is the capital of Italy?\n")
    return _slow_offline(tmp_path, 12), tasks


def test_ctrl_c_in_a_batch_leaves_one_progress_bar_and_says_interrupted_once(tmp_path):
    config, tasks = _slow_batch(tmp_path)
    # 80 columns: the bar fills the line, so an echoed "^C" would wrap onto a line of its own.
    with Terminal("batch", str(tasks), "-c", str(config), cwd=tmp_path, columns=80) as term:
        term.shows("0/2", "0:00:01")  # the bar redrawn after a second: the echo would land
        term.type(b"\x03")
        assert term.wait() == 130
        lines = term.lines()
        assert term.echoes()  # typing shows again at the prompt
    text = "\n".join(lines)
    assert len([line for line in lines if re.match(r"batch\s+━", line)]) == 1, text
    assert "^C" not in text, text
    assert re.search(r"^batch interrupted: 0 done", text, re.M)
    assert "interrupted" not in [line.strip() for line in lines], text  # said once, above


def test_piped_batch_says_interrupted_once(tmp_path):
    # One at a time: a question of the quiz (answered at once), then the slow one. Once the
    # first is done the batch is under way, and Ctrl-C lands in the second.
    config, tasks = _slow_batch(tmp_path)
    quiz = json.loads((ROOT / "examples" / "arith.jsonl").read_text().splitlines()[0])
    tasks.write_text(f"{quiz['question']}\n{TASK}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "massgen", "batch", str(tasks), "-c", str(config), "-j", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    said, deadline = b"", time.monotonic() + 30
    while b"batch: 1 done" not in said:
        assert select.select([proc.stderr], [], [], max(0, deadline - time.monotonic()))[0]
        said += os.read(proc.stderr.fileno(), 1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and out == b""
    lines = [line for line in err.decode().splitlines() if "interrupted" in line]
    assert len(lines) == 1 and lines[0].startswith("batch interrupted: 1 done"), err


def test_the_batch_summary_in_a_terminal_shows_dollars_and_seconds(tmp_path):
    tasks = tmp_path / "tasks.txt"
    tasks.write_text(f"{TASK}\n")
    config = _slow_offline(tmp_path, 0)
    with Terminal("batch", str(tasks), "-c", str(config), cwd=tmp_path) as term:
        assert term.wait() == 0
        text = term.text()
    assert re.search(r"^\s*cost\s+\$0\.0000$", text, re.M), text
    assert re.search(r"^\s*duration\s+\d+\.\d+s$", text, re.M), text
    assert "None" not in text, text  # a batch that was not stopped has no `stopped` row


def test_on_50_columns_the_batch_bar_keeps_its_counts_whole(tmp_path):
    tasks = tmp_path / "tasks.txt"
    tasks.write_text(f"{TASK}\nWhat is the capital of Italy?\n")
    config = _slow_offline(tmp_path, 0)
    with Terminal("batch", str(tasks), "-c", str(config), cwd=tmp_path, columns=50) as term:
        assert term.wait() == 0
        lines = term.lines()
    [bar] = [line for line in lines if line.startswith("batch ")]
    assert re.search(r" 2/2 0 failed .*\$0\.0000$", bar) and "…" not in bar, "\n".join(lines)
