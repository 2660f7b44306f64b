"""R10: a canary API key, DEBUG logging on, provider errors that quote the key: the key
appears nowhere — not on stdout or stderr, not in the run record, not in Redis (cache,
session, long-term memory), not in the files under .massgen."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import redis

from tests.procs import run_massgen
from tests.sim.sim_types import Fault, Text
from tests.sim.simulator import ProviderSimulator

KEY = "sk-canary-r10-5d2f9a7c1e3b4d6f"
REDIS_URL = os.environ.get("MASSGEN_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _team(tmp_path: Path, sim: ProviderSimulator, prefix: str) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            backends:
              http: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}",
                      api_key: "${{R10_KEY}}"}}
              sdk: {{type: openai, client: sdk, model: gpt-4o-mini,
                     base_url: "{sim.openai_base_url}", api_key: "${{R10_KEY}}"}}
            agents:
              - {{name: ada, backend: http, memory: {{long_term: true}}}}
              - {{name: bob, backend: sdk}}
            orchestrator: {{strategy: parallel, max_retries: 2, retry_delay: 0.01,
                            cache: {{enabled: true}}}}
            redis: {{url: "{REDIS_URL}", prefix: "{prefix}"}}
            """
        )
    )
    return path


def _massgen(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"R10_KEY": KEY, "MASSGEN_LOG": "debug"}
    return run_massgen(*args, cwd=cwd, env=env, unset=("OPENAI_API_KEY",))


def _redis_contents(prefix: str) -> list[bytes]:
    """Every key and value under ``prefix``, whatever its type."""
    client = redis.Redis.from_url(REDIS_URL)
    out: list[bytes] = []
    try:
        for key in client.scan_iter(match=f"{prefix}*"):
            out.append(key)
            kind = client.type(key).decode()
            if kind == "string":
                out.append(client.get(key) or b"")
            elif kind == "hash":
                out.extend(b"%s=%s" % kv for kv in client.hgetall(key).items())
            elif kind == "list":
                out.extend(client.lrange(key, 0, -1))
            elif kind == "set":
                out.extend(client.smembers(key))
            elif kind == "zset":
                out.extend(client.zrange(key, 0, -1))
            elif kind == "stream":
                for _, fields in client.xrange(key):
                    out.extend(b"%s=%s" % kv for kv in fields.items())
    finally:
        client.close()
    return out


def test_a_canary_key_appears_nowhere(tmp_path: Path, sim: ProviderSimulator, prefix: str) -> None:
    team = _team(tmp_path, sim, prefix)
    quoting = f"upstream trouble with key {KEY}, retry later"
    sim.script(
        [
            Fault(500, message=quoting),  # forced errors that quote the key, then answers
            Fault(503, message=quoting),
            Text("Paris."),
            Text("Paris."),
        ]
    )
    done = _massgen(tmp_path, "run", str(team), "Capital of France?", "--record", "run.json")
    assert done.returncode == 0, done.stderr
    assert "DEBUG" in done.stderr and "retry" in done.stderr.lower()  # logging was on
    assert len(sim.requests) >= 4  # the faults were served, then retried

    sim.clear_rules()
    sim.script([Fault(401, message=f"Incorrect API key provided: {KEY}.")])
    refused = _massgen(tmp_path, "run", str(team), "Capital of Spain?", "--no-cache")
    assert refused.returncode == 2 and "Incorrect API key provided: ***" in refused.stderr

    seen = {
        "stdout/stderr": done.stdout + done.stderr + refused.stdout + refused.stderr,
        "run record": (tmp_path / "run.json").read_text(),
    }
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and path.name != "team.yaml":
            seen[str(path.relative_to(tmp_path))] = path.read_bytes().decode("latin-1")
    stored = _redis_contents(prefix)
    assert any(b"cache" in k for k in stored) and any(b"memory" in k for k in stored), stored[:20]
    seen["redis"] = b"\n".join(stored).decode("latin-1")
    for where, text in seen.items():
        for piece in (KEY, KEY[:16], KEY[-16:]):
            assert piece not in text, f"the canary key leaked into {where}"
