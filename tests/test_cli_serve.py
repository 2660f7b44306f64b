"""`massgen serve` as a real process, driven by the official `openai` SDK and raw aiohttp:
completions plain and streamed, usage, the `massgen` field, models, keys from the
environment, the access log, SIGTERM letting a run in flight finish, and refusing to listen
beyond loopback without keys, and the cycle collector set for a server. The team answers with
the offline `replay` backend."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import openai
import pytest

from tests.mas.helpers import SHARED_REDIS
from tests.procs import run_massgen, start_ready
from tests.teamkit import CAPITALS

KEYS = "first-secret-key,second-secret-key"


def _line(proc: subprocess.Popen[str], deadline: float) -> str:
    """The next stderr line of ``proc``, read byte by byte from its descriptor (so no later
    line waits unseen in a buffer); "" at EOF. TimeoutError when none came by ``deadline``."""
    import select

    assert proc.stderr is not None
    fd, out = proc.stderr.fileno(), bytearray()
    while not out.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("no line in time")
        if not (byte := os.read(fd, 1)):
            break
        out += byte
    return out.decode()


@contextmanager
def serving(
    tmp_path: Path, *args: str, latency: float = 0.0, more: str = ""
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``massgen serve team.yaml --port 0 ARGS`` until the block ends; yields it and its URL.
    ``more``: YAML added to the team."""
    team = tmp_path / "team.yaml"
    team.write_text(CAPITALS.format(latency=latency) + more)
    env = {k: v for k, v in os.environ.items() if k not in ("MASSGEN_REDIS_URL", "MASSGEN_SECRET")}
    env |= {"PYTHONUNBUFFERED": "1", "MASSGEN_SERVE_KEYS": KEYS}
    proc = subprocess.Popen(
        [sys.executable, "-m", "massgen", "serve", str(team), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline, said = time.monotonic() + 30, ""
        while " on http://127.0.0.1:" not in (line := _line(proc, deadline)) or line.startswith(
            "metrics on "
        ):
            assert line, said + (proc.stderr.read() if proc.stderr else "")
            said += line
        proc.said = said  # type: ignore[attr-defined]  # what it told before it listened
        yield proc, line.rsplit(" on ", 1)[1].strip()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_the_openai_sdk_gets_answers_usage_and_the_team_s_decision(tmp_path: Path) -> None:
    with serving(tmp_path) as (proc, url):
        api = openai.OpenAI(base_url=url + "/v1", api_key="second-secret-key", max_retries=0)
        with api:
            ids = [m.id for m in api.models.list().data]
            assert ids == [
                "massgen/capitals",
                "massgen/capitals:parallel",
                "massgen/capitals:sequential",
                "massgen/capitals:consensus",
            ]
            reply = api.chat.completions.create(
                model="massgen/capitals",
                messages=[{"role": "user", "content": "Capital of France?"}],
            )
            assert reply.object == "chat.completion" and reply.model == "massgen/capitals"
            assert reply.choices[0].message.content == "Paris is the capital of France."
            assert reply.choices[0].finish_reason == "stop"
            extra = (reply.model_extra or {})["massgen"]
            assert extra["winner"] == "bob" and extra["votes"] == {
                "ada": "bob",
                "bob": "bob",
                "cy": "bob",
            }
            assert (
                extra["agreement"] == 1.0
                and extra["rounds"] == 1
                and extra["strategy"] == "consensus"
            )
            assert extra["answers"]["cy"] == "Lyon, I think."
            assert reply.usage is not None and reply.usage.total_tokens == extra["tokens"] > 0
            assert (
                reply.usage.prompt_tokens + reply.usage.completion_tokens
                == reply.usage.total_tokens
            )

            stream = api.chat.completions.create(
                model="massgen/capitals:parallel",
                messages=[{"role": "user", "content": "Capital of France?"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert "Paris." in text and "Lyon, I think." in text  # parallel: every answer
            assert all(c.object == "chat.completion.chunk" for c in chunks)
            finished = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
            assert len(finished) == 1
            assert (finished[0].model_extra or {})["massgen"]["strategy"] == "parallel"
            last = chunks[-1]
            assert last.choices == [] and last.usage is not None and last.usage.total_tokens > 0
            assert all(c.usage is None for c in chunks[:-1])

            answer = api.responses.create(model="massgen/capitals", input="Capital of France?")
            assert answer.output_text == "Paris is the capital of France."

            with pytest.raises(openai.NotFoundError) as caught:
                api.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "x"}]
                )
            assert caught.value.code == "model_not_found"
            with pytest.raises(openai.NotFoundError):
                api.chat.completions.create(
                    model="massgen/capitals:chaos", messages=[{"role": "user", "content": "x"}]
                )
        wrong = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        with wrong, pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped (SIGTERM)" in err
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in err  # the access log
    assert '"GET /v1/models HTTP/1.1" 401' in err
    assert "secret-key" not in err and "Traceback" not in err


async def test_sigterm_lets_the_run_in_flight_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    body = {
        "model": "massgen/capitals",
        "stream": True,
        "messages": [{"role": "user", "content": "Capital of France?"}],
    }
    auth = {"Authorization": "Bearer first-secret-key"}
    with serving(tmp_path, "--grace", "30", latency=0.4) as (proc, url):
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.post(url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200
                assert (await r.content.readline()).startswith(b": ")  # the run is in flight
                proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + 20
                while "stopping" not in (line := await asyncio.to_thread(_line, proc, deadline)):
                    assert line, "the server ended before it said it was stopping"
                assert "1 runs in flight" in line
                with pytest.raises(aiohttp.ClientConnectionError):
                    async with aiohttp.ClientSession(headers=auth) as other:
                        await other.get(url + "/healthz")
                rest = (await r.content.read()).decode()
            assert "Paris is the capital of France." in rest and rest.endswith("data: [DONE]\n\n")
            assert ": bob answered (answer, round 0)\n\n" in rest  # progress, as SSE comments
            assert ": round 1 done; leader bob; votes: " in rest
        _, err = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 0, err


def test_listening_beyond_loopback_needs_keys(tmp_path: Path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(CAPITALS.format(latency=0))
    done = run_massgen(
        "serve", str(team), "--host", "0.0.0.0", unset=("MASSGEN_SERVE_KEYS",), timeout=30
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: `--host`: ") and "MASSGEN_SERVE_KEYS" in done.stderr
    for wrong, key in (("--port=70000", "--port"), ("--concurrency=0", "--concurrency")):
        done = run_massgen("serve", str(team), wrong, timeout=30)
        assert done.returncode == 2 and done.stderr.startswith(f"error: `{key}`: "), done.stderr


def test_massgen_help_does_not_import_the_web_server() -> None:
    code = "import sys; from massgen.cli import app; print('aiohttp.web' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_server_freezes_its_start_up_heap_and_collects_young_objects_less_often() -> None:
    # In a process of its own: the collector's settings are the whole process's.
    code = (
        "import gc; from massgen.cli.serve import settle_heap; before = gc.get_freeze_count(); "
        "settle_heap(); print(before, gc.get_threshold()[0], gc.get_freeze_count() > 1000)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", "10000", "True"]


def test_with_redis_the_turns_go_to_a_worker(tmp_path: Path, prefix: str) -> None:
    bus = f"redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}'}}\n"
    (tmp_path / "team.yaml").write_text(CAPITALS.format(latency=0) + bus)
    env = {k: v for k, v in os.environ.items() if k not in ("MASSGEN_REDIS_URL", "MASSGEN_SECRET")}
    worker_cmd = [sys.executable, "-m", "massgen", "worker", str(tmp_path / "team.yaml")]
    worker = start_ready(worker_cmd, ready="hosting ", count=3, env=env)
    try:
        with serving(tmp_path, more=bus) as (proc, url):
            assert "capitals: ada, bob, cy on workers at" in proc.said  # type: ignore[attr-defined]
            api = openai.OpenAI(base_url=url + "/v1", api_key="first-secret-key", max_retries=0)
            with api:
                reply = api.chat.completions.create(
                    model="massgen/capitals",
                    messages=[{"role": "user", "content": "Capital of France?"}],
                )
            assert reply.choices[0].message.content == "Paris is the capital of France."
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
    finally:
        worker.send_signal(signal.SIGTERM)
        _, worked = worker.communicate(timeout=30)
    handled = [line for line in worked.splitlines() if " done in " in line]
    assert len(handled) == 6  # three answers, three reviews: every turn ran on the worker


def test_each_team_file_is_a_model_and_names_must_differ(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(CAPITALS.format(latency=0).replace("name: capitals", "name: towns"))
    with serving(tmp_path, str(other)) as (proc, url):
        wanted = openai.OpenAI(base_url=url + "/v1", api_key="first-secret-key", max_retries=0)
        with wanted as api:
            ids = {m.id for m in api.models.list().data}
            assert {"massgen/capitals", "massgen/towns:consensus"} <= ids and len(ids) == 8
            reply = api.chat.completions.create(
                model="massgen/towns", messages=[{"role": "user", "content": "Capital of France?"}]
            )
            assert (reply.model_extra or {})["massgen"]["team"] == "towns"
    twice = run_massgen("serve", str(other), str(other), "--port", "0", timeout=30)
    assert twice.returncode == 2 and "two teams are named 'towns'" in twice.stderr


def test_metrics_of_each_team_are_labelled_with_its_name(tmp_path: Path) -> None:
    """``--metrics-port``: one registry for every team served, each series labelled with its
    team (two teams' agents share names here), each family once, as Prometheus requires."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    other = tmp_path / "other.yaml"
    other.write_text(CAPITALS.format(latency=0).replace("name: capitals", "name: towns"))
    with serving(tmp_path, str(other), "--metrics-port", "0") as (proc, url):
        [said] = [ln for ln in proc.said.splitlines() if ln.startswith("metrics on ")]  # type: ignore[attr-defined]
        metrics = said.removeprefix("metrics on ")
        api = openai.OpenAI(base_url=url + "/v1", api_key="first-secret-key", max_retries=0)
        with api:
            for model in ("massgen/capitals", "massgen/towns", "massgen/towns:parallel"):
                api.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "Capital of France?"}]
                )
        with urllib.request.urlopen(metrics, timeout=10) as response:
            text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    runs = {
        (s.labels["team"], s.labels["strategy"]): s.value
        for s in families["massgen_runs"].samples
        if s.name == "massgen_runs_total"
    }
    assert runs == {
        ("capitals", "consensus"): 1,
        ("towns", "consensus"): 1,
        ("towns", "parallel"): 1,
    }
    asked = {
        (s.labels["team"], s.labels["agent"])
        for s in families["massgen_requests"].samples
        if s.name == "massgen_requests_total"
    }
    assert {("capitals", "ada"), ("towns", "ada")} <= asked
    assert text.count("# TYPE massgen_requests_total counter") == 1  # one family, both teams
    assert "process_cpu_seconds_total" in families or "process_cpu_seconds" in families
