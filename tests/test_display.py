"""The progress views: state folded from events, plain lines, and the Rich live view."""

from __future__ import annotations

import io

from rich.console import Console

from massgen.display.live import LiveView
from massgen.display.plain import PlainView
from massgen.display.state import ViewState
from massgen.orchestrator import Orchestrator
from tests.teamkit import failing, scripted, team, vote


def run_with(*subscribers):
    agents, _ = team(
        a=scripted("Paris is the capital."),
        b=scripted("It is Paris.", lambda r: vote(r, "Paris is the capital")),
        c=failing(),
    )
    return Orchestrator(agents, max_retries=0, subscribers=list(subscribers)).run("Capital?")


def test_view_state_follows_a_consensus_run():
    state = ViewState()
    run_with(state.apply)
    assert state.strategy == "consensus" and state.round == 1
    assert state.votes == {"a": "a", "b": "a"} and state.leader == "a"
    assert state.rows["c"].status == "failed"
    assert state.rows["a"].tokens > 0
    assert state.final is not None and state.final.text == "Paris is the capital."


def test_plain_view_writes_one_line_per_step():
    out = io.StringIO()
    result = run_with(PlainView(out))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"run {result.run_id}: consensus with a, b, c")
    assert any("c failed (dropped)" in line for line in lines)
    assert any(line.strip() == "b votes for a" for line in lines)
    assert lines[-1].startswith("degraded, winner a: 1 round(s)")


def test_live_view_renders_rows_votes_and_the_final_panel():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    view = LiveView(console)
    run_with(view)
    screen = buffer.getvalue()
    assert not view.live.is_started
    assert "final answer · a" in screen and "Paris is the capital." in screen
    assert "voted a" in screen and "failed" in screen
    assert "consensus · round 1" in screen
