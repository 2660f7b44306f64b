"""The run record: one JSON file per run, enough to audit or replay it.

It holds a digest of the config, every prompt sent and every answer received, the votes,
usage, cost and timings. It is written when the run ends, whatever the ending (done,
failed, interrupted), so a Ctrl-C still leaves the partial record. It never holds keys:
the config is recorded by digest, not by content.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from massgen import events as ev

TOOL_OUTPUT_KEPT = 300
"""Characters of each tool result kept in the record."""


def config_digest(path: str | Path | None) -> str | None:
    if path is None:
        return None
    try:
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


class RunRecorder:
    """Subscribe to a run; writes ``path`` (or ``folder/<run id>.json``) at its end."""

    wants_deltas = False

    def __init__(
        self,
        *,
        path: str | Path | None = None,
        folder: str | Path = ".massgen/runs",
        config_path: str | Path | None = None,
    ) -> None:
        self.path = Path(path) if path else None
        self.folder = Path(folder)
        self.config = {
            "path": str(config_path) if config_path else None,
            "digest": config_digest(config_path),
        }
        self.prompts: list[dict[str, Any]] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.written: Path | None = None

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.AgentStarted):
            self.prompts.append(
                {
                    "agent": e.agent,
                    "phase": e.phase,
                    "round": e.round,
                    "prompt": e.prompt,
                    "at": e.at,
                }
            )
        elif isinstance(e, ev.ToolCalled):
            self.tool_calls.append(
                {
                    "agent": e.agent,
                    "tool": e.tool,
                    "call_id": e.call_id,
                    "args": e.args,
                    "at": e.at,
                }
            )
        elif isinstance(e, ev.ToolResult):
            for entry in reversed(self.tool_calls):
                if (
                    entry["call_id"] == e.call_id
                    and entry["agent"] == e.agent
                    and "ok" not in entry
                ):
                    entry.update(ok=e.ok, duration=e.duration, output=e.output[:TOOL_OUTPUT_KEPT])
                    break
        elif isinstance(e, ev.RunEnded):
            self.write(e)

    def write(self, e: ev.RunEnded) -> Path:
        path = self.path or self.folder / f"{e.result.run_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "version": 1,
            "config": self.config,
            **e.result.to_dict(),
            "requests_sent": self.prompts,
            "tool_calls": self.tool_calls,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        self.written = path
        return path
