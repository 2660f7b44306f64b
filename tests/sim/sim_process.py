"""The provider simulator in a child process, driven over its ``/_sim/*`` HTTP endpoints.

CLI tests and benchmarks use this: the code under test runs in its own process (or the
benchmark must not share a GIL with the simulator), yet the test still scripts replies and
reads what arrived. Only the standard library is used to talk to it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.sim.sim_rules import Rule
from tests.sim.sim_types import Reply, SimRequest, SimStats


class SimulatorProcess:
    """``python -m tests.sim.simulator`` as a context manager with a small client."""

    def __init__(self, latency: float = 0.0, *, seed: int = 0, python: str = sys.executable):
        self._args = [python, "-m", "tests.sim.simulator", "--port", "0"]
        self._args += ["--latency", str(latency), "--seed", str(seed)]
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> SimulatorProcess:
        """Start the process and wait for the URL it prints."""
        root = str(Path(__file__).resolve().parents[2])
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True, cwd=root)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self._proc.kill()
            self._proc.wait()
            raise RuntimeError(f"simulator process did not start (printed {line!r})")
        self.url = line
        return self

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the process and return its exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        return code

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    @property
    def gemini_base_url(self) -> str:
        return self.url

    def script(
        self,
        replies: Reply | Sequence[Reply],
        *,
        model: str | None = None,
        match: str | re.Pattern[str] | None = None,
        latency: float | None = None,
    ) -> None:
        """Same as :meth:`ProviderSimulator.script`, sent over HTTP."""
        seq = list(replies) if isinstance(replies, Sequence) else [replies]
        self.load_script(Rule(seq, model=model, match=match, latency=latency).to_json())

    def load_script(self, data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Rules in JSON form, as ``ProviderSimulator.load_script`` takes them."""
        self._call("POST", "/_sim/script", data)

    def stats(self) -> SimStats:
        return SimStats.from_json(self._call("GET", "/_sim/stats"))

    def requests(self, since: int = 0) -> list[SimRequest]:
        data = self._call("GET", f"/_sim/requests?since={since}")
        return [SimRequest.from_json(r) for r in data["requests"]]

    def reset(self, *, rules: bool = False) -> None:
        self._call("POST", "/_sim/reset", {"rules": rules})

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + path, data=body, method=method)
        request.add_header("content-type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
