"""The dashboard's Board over a real aiohttp server on loopback: events in, the state JSON and
server-sent events out; and `massgen dashboard --redis` as a process beside a real worker.
(The page itself, in a real browser: tests/test_dashboard_browser.py.)"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from massgen import Orchestrator
from massgen import events as ev
from massgen.result import RunResult, Vote
from massgen.serve.board import Board
from massgen.types import Usage
from tests.boardkit import ANSWERS, FIRST, WINNER, events, gated_team, served
from tests.mas.helpers import SHARED_REDIS, free_port
from tests.procs import read_line, run_massgen, start_ready
from tests.teamkit import failing, scripted, team
from tests.test_cli_distributed import TEAM


async def test_a_consensus_streams_to_the_board_and_ends_among_recent_runs() -> None:
    board, gate = Board(interval=0), asyncio.Event()
    async with served(board) as url, aiohttp.ClientSession() as http, events(http, url) as sse:
        assert await sse.until("state") == {
            "live": [],
            "recent": [],
            "keep": 50,
            "runs": True,
            "registry": None,
        }
        team = gated_team(gate)
        run = asyncio.ensure_future(
            team.arun("Capital of France?", subscribers=[board.subscriber("geo", "massgen/geo")])
        )

        def streaming(data: dict) -> bool:  # every agent's first piece shown, none further
            texts = {a["name"]: a["text"] for a in data["agents"] if a["streaming"]}
            return texts == FIRST

        live = await sse.until("run", streaming)
        assert (live["team"], live["model"], live["live"], live["status"]) == (
            "geo",
            "massgen/geo",
            True,
            "running",
        )
        assert live["task"] == "Capital of France?" and live["strategy"] == "consensus"
        assert live["winner"] is None and live["final"] == ""
        gate.set()
        done = await sse.until("run", lambda d: not d["live"])
        result = await run
        await team.aclose()
        async with http.get(url + "dashboard/state") as response:
            state = await response.json()
    assert done["status"] == "done" and done["winner"] == WINNER == result.winner
    assert done["final"] == result.final_answer == ANSWERS[WINNER]
    assert done["votes"] == dict.fromkeys(ANSWERS, WINNER)
    assert done["agreement"] == 1.0 and done["rounds"] == result.rounds
    assert done["duration"] == result.duration and done["cost"] == result.cost
    assert {a["name"]: a["text"] for a in done["agents"]} == ANSWERS
    assert state["live"] == [] and state["recent"] == [done]


async def test_a_run_nobody_watches_is_not_streamed_for_the_board() -> None:
    """Its agents answer without streaming (the gate that holds their streams back is never
    opened), and the page still gets the answers once a browser comes."""
    board = Board(interval=0)
    async with served(board) as url, aiohttp.ClientSession() as http:
        team = gated_team(asyncio.Event())
        result = await asyncio.wait_for(
            team.arun("Capital of France?", subscribers=[board.subscriber("geo", "m")]), 10
        )
        await team.aclose()
        async with events(http, url) as sse:
            [done] = (await sse.until("state"))["recent"]
            assert board.subscriber("geo", "m").wants_deltas  # read as a run starts
    assert result.winner == done["winner"] == WINNER
    assert {a["name"]: a["text"] for a in done["agents"]} == ANSWERS


async def test_a_failed_agent_and_a_degraded_run_are_shown_with_the_error() -> None:
    agents, _ = team(ada=scripted("Paris."), bob=scripted("Paris."), cy=failing(401))
    board = Board()
    orchestrator = Orchestrator(agents, strategy="parallel", max_retries=0)
    result = await orchestrator.arun("Capital?", subscribers=[board.subscriber("t", "m")])
    await orchestrator.aclose()
    [run] = (await board.state())["recent"]
    assert run["status"] == result.status == "degraded"
    cy = next(a for a in run["agents"] if a["name"] == "cy")
    assert cy["status"] == "failed" and "boom" in cy["note"]


async def test_the_page_is_self_contained_and_only_its_own_script_may_run() -> None:
    board = Board()
    async with served(board) as url, aiohttp.ClientSession() as http, http.get(url) as response:
        page = await response.text()
        policy = response.headers["Content-Security-Policy"]
        assert response.content_type == "text/html" and response.charset == "utf-8"
    assert not re.search(r"(src|href)=\"(?!data:)|@import|url\(|//[a-z]", page), "no fetch"
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/]+=*';", policy)
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy


def _ended(run_id: str, agents: tuple[str, ...] = ("a", "b")) -> list[ev.Event]:
    result = RunResult(run_id=run_id, task="t", strategy="consensus", winner="a", duration=1.5)
    result.votes = [Vote("a", 1, "a"), Vote("b", 1, "b")]
    return [
        ev.RunStarted(run_id=run_id, task="t", strategy="consensus", agents=agents),
        ev.FinalAnswer(text="A", winner="a"),
        ev.RunEnded(result=result),
    ]


async def test_only_the_latest_runs_are_kept_and_the_page_is_told_of_one_dropped() -> None:
    board = Board(keep=2, interval=0)
    async with served(board) as url, aiohttp.ClientSession() as http, events(http, url) as sse:
        await sse.until("state")
        for run_id in ("r1", "r2", "r3"):
            tell = board.subscriber("t", "m")
            for event in _ended(run_id):
                tell(event)
        dropped = await sse.until("drop")
        async with http.get(url + "dashboard/state") as response:
            state = await response.json()
    assert dropped == {"key": "1"}
    assert [r["run_id"] for r in state["recent"]] == ["r3", "r2"]  # newest first
    assert state["recent"][0]["agreement"] == 0.5  # a's one vote of two agents


async def test_a_burst_of_deltas_reaches_a_browser_as_one_frame_of_the_latest_text() -> None:
    """No queue per browser: 10,000 deltas that came while it was being written to are one
    frame, with the end of the text (what the row keeps), and nothing else is pending."""
    board = Board(interval=0)
    async with served(board) as url, aiohttp.ClientSession() as http, events(http, url) as sse:
        await sse.until("state")
        tell = board.subscriber("t", "m")
        tell(ev.RunStarted(run_id="r", task="t", strategy="parallel", agents=("a", "b")))
        tell(ev.AgentStarted(agent="a", phase="answer", round=0, prompt="p"))
        for i in range(10_000):
            tell(ev.TokenDelta(agent="a", text=f"{i} "))
        first = await sse.until("run")
        tell(ev.AgentStarted(agent="b", phase="answer", round=0, prompt="p"))
        kind, second = await sse.next()
    assert first["agents"][0]["text"].endswith("9998 9999 ")
    assert len(first["agents"][0]["text"]) <= 400
    assert kind == "run" and second["agents"][1]["status"] == "answering"
    assert second["agents"][0]["text"] == first["agents"][0]["text"]  # no stale frame between


async def test_a_browser_that_stops_reading_gets_the_latest_state_when_it_reads_again() -> None:
    """A browser that stops reading (a tiny receive window, nothing read) holds up neither the
    run nor a browser that reads; when it reads again it gets what had fitted in the socket's
    buffers and then the latest state: far fewer frames than changes, none queued for it."""
    board, changes = Board(interval=0), 150
    answers = [f"a{i}" for i in range(60)]
    async with served(board) as url, aiohttp.ClientSession() as http, events(http, url) as fast:
        await fast.until("state")
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))))
        slow.sendall(b"GET /dashboard/events HTTP/1.0\r\n\r\n")  # 1.0: not chunked
        head = await asyncio.to_thread(_read_until, slow, b"event: state")  # it is a client
        tell = board.subscriber("t", "m")
        tell(ev.RunStarted(run_id="r", task="t", strategy="parallel", agents=tuple(answers)))
        usage = Usage(1, 1)
        for name in answers:  # every frame of the run is some 250 kB
            text = name * 2000
            tell(
                ev.AgentAnswered(
                    agent=name, phase="answer", round=0, text=text, usage=usage, cost=0, latency=0
                )
            )
        await fast.until("run", lambda d: d["agents"][-1]["text"].startswith("a59"))
        for i in range(changes):
            tell(ev.TokenDelta(agent="a0", text=f" change-{i}"))
            await fast.until("run", lambda d, i=i: d["agents"][0]["text"].endswith(f"change-{i}"))
        received = await asyncio.to_thread(_read_until, slow, f"change-{changes - 1}".encode())
        slow.close()
    assert b" 200 OK" in head
    frames = received.count(b"event: run\n")
    assert 1 <= frames < changes / 2, frames
    last = received.rsplit(b"event: run\ndata: ", 1)[1].split(b"\n\n")[0]
    assert json.loads(last)["agents"][0]["text"].endswith(f"change-{changes - 1}")


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    """What ``sock`` sends, up to the end of the frame holding ``marker``."""
    sock.settimeout(10)
    got = bytearray()
    while (at := got.find(marker)) < 0 or got.find(b"\n\n", at) < 0:
        chunk = sock.recv(1 << 16)
        assert chunk, "the stream ended"
        got += chunk
    return bytes(got)


async def test_a_quiet_stream_gets_heartbeat_comments() -> None:
    board = Board(heartbeat=0.05)
    async with served(board) as url, aiohttp.ClientSession() as http, events(http, url) as sse:
        await sse.until("state")
        assert await sse.next() == ("comment", "ping")


async def test_closing_the_board_ends_open_streams() -> None:
    board = Board()
    async with served(board) as url, aiohttp.ClientSession() as http, events(http, url) as sse:
        await sse.until("state")
        await board.aclose()
        with pytest.raises(EOFError):
            await sse.next()


async def test_a_redis_that_does_not_answer_is_shown_not_raised() -> None:
    board = Board(redis_url=f"redis://127.0.0.1:{free_port()}/0", prefix="test:none:")
    async with (
        served(board) as url,
        aiohttp.ClientSession() as http,
        http.get(url + "dashboard/state") as response,
    ):
        assert response.status == 200
        registry = (await response.json())["registry"]
    assert registry["agents"] == [] and registry["prefix"] == "test:none:"
    assert registry["error"] and registry["redis"].startswith("redis://127.0.0.1:")


# -- `massgen dashboard` as a process ------------------------------------------------------


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_massgen_dashboard_lists_the_agents_a_worker_hosts(tmp_path: Path, prefix: str) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(TEAM + f"redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}'}}\n")
    board = subprocess.Popen(  # starting while the worker starts
        [sys.executable, "-m", "massgen", "dashboard", "--redis", SHARED_REDIS]
        + ["--prefix", prefix, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        argv = [sys.executable, "-m", "massgen", "worker", str(team)]
        worker = start_ready(argv, ready="hosting ", count=3)
        try:
            line = read_line(board, time.monotonic() + 30) or ""
            url = re.search(r"serving on (http://127\.0\.0\.1:\d+/) ", line)
            assert url is not None, line
            state = _get_json(url[1] + "dashboard/state")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=20)
    finally:
        board.send_signal(signal.SIGTERM)
        _, err = board.communicate(timeout=20)
    assert board.returncode == 0, err
    assert "massgen dashboard: stopped (SIGTERM)" in err
    registry = state["registry"]
    assert state["runs"] is False  # it runs nothing: the page shows only the workers
    assert registry["prefix"] == prefix and registry["error"] is None
    rows = {row["name"]: row for row in registry["agents"]}
    assert set(rows) == {"ada", "bob", "cy"}
    for row in rows.values():
        assert row["in_flight"] == 0 and row["dead_letters"] == 0 and row["replicas"] == 1
        assert row["heartbeat_age"] < 15 and row["hosts"] == [
            f"{socket.gethostname()}/{worker.pid}"
        ]


def test_massgen_dashboard_without_redis_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASSGEN_REDIS_URL", raising=False)
    done = run_massgen("dashboard", "--port", "0")
    assert done.returncode == 2 and "--redis" in done.stderr


def test_massgen_dashboard_on_a_taken_port_is_a_usage_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = run_massgen("dashboard", "--redis", SHARED_REDIS, "--port", port)
    assert done.returncode == 2 and port in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
