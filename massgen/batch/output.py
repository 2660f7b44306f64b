"""The batch result file: one JSON line per finished task, fsynced as it is written.

A crash can leave at most one torn line at the end; opening the file for a resume reads
every complete line and cuts the torn tail off before appending, so the file stays valid
JSONL and nothing finished is lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO


class ResultLog:
    """Append-only JSONL of finished tasks, keyed by task id."""

    def __init__(self, path: str | Path, *, resume: bool = True) -> None:
        self.path = Path(path)
        self.done: dict[str, dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            self._load()
        elif self.path.exists():
            self.path.unlink()
        self._file: TextIO = self.path.open("a", encoding="utf-8")

    def _load(self) -> None:
        data = self.path.read_bytes()
        good = 0  # byte offset after the last complete, parseable line
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                row = json.loads(line)
            except ValueError:
                break
            if isinstance(row, dict) and "id" in row:
                self.done[str(row["id"])] = row
            good += len(line)
        if good < len(data):
            with self.path.open("r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())

    def finished(self, task_id: str) -> bool:
        return task_id in self.done

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done[str(row["id"])] = row

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
