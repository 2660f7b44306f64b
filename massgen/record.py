"""The run record: one JSON file per run (prompts, answers, votes, usage, timings), written
however the run ends, so Ctrl-C leaves a partial one. The config is kept by digest: no keys."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from massgen import events as ev
from massgen.errors import ConfigError

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
    """Subscribe to a run; writes ``path`` (or ``.massgen/runs/<run id>.json``) at its end."""

    wants_deltas = False

    def __init__(
        self, *, path: str | Path | None = None, config_path: str | Path | None = None
    ) -> None:
        self.path = Path(path) if path else None
        self.config = {
            "path": str(config_path) if config_path else None,
            "digest": config_digest(config_path),
        }
        self.prompts: list[dict[str, Any]] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.written: Path | None = None
        self.failed: str | None = None
        """Why the record could not be written (a full disk...), if it could not."""

    def check(self) -> None:
        """Refuse (ConfigError) a ``path`` that cannot be written, before the run starts:
        a folder, a file where a folder should be, a folder that refuses new files. Leaves
        nothing behind."""
        if self.path is None:
            return
        where = str(self.path)
        if self.path.is_dir():
            raise ConfigError("is a folder; give a file name", file=where, key="--record")
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            message = f"cannot write it: {folder} is not a folder"
            raise ConfigError(message, file=where, key="--record")
        if folder != self.path.parent:
            return  # the folders are made when the record is written
        probe = self.path.with_name(f".{self.path.name}.{os.getpid()}.probe")
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            probe.unlink()
        except OSError as e:
            message = f"cannot write it: {e.strerror or e}"
            raise ConfigError(message, file=where, key="--record") from None

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.AgentStarted):
            self.prompts.append(_fields(e, "agent", "phase", "round", "prompt", "at"))
        elif isinstance(e, ev.ToolCalled):
            self.tool_calls.append(_fields(e, "agent", "tool", "call_id", "args", "at"))
        elif isinstance(e, ev.ToolResult):
            for entry in reversed(self.tool_calls):
                if (entry["call_id"], entry["agent"]) == (e.call_id, e.agent) and "ok" not in entry:
                    entry.update(ok=e.ok, duration=e.duration, output=e.output[:TOOL_OUTPUT_KEPT])
                    break
        elif isinstance(e, ev.RunEnded):
            try:
                self.write(e)
            except OSError as error:
                self.failed = f"{error.strerror or error} ({error.filename or self.path})"

    def write(self, e: ev.RunEnded) -> Path:
        path = self.path or Path(".massgen/runs", f"{e.result.run_id}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "version": 1,
            "config": self.config,
            **e.result.to_dict(),
            "requests_sent": self.prompts,
            "tool_calls": self.tool_calls,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as f:
                json.dump(record, f, ensure_ascii=False, indent=1, default=str)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # never a half-written record left behind
            raise
        self.written = path
        return path


def _fields(e: ev.Event, *names: str) -> dict[str, Any]:
    return {name: getattr(e, name) for name in names}
