"""The batch result file: one JSON line per finished task, on disk before the task counts.

A task's line is written and fsynced before :meth:`ResultLog.commit` returns, but the disk
is not asked once per line: lines that arrive while an fsync runs wait for the next one,
which then covers all of them (group commit). The writes and fsyncs run on a worker thread
of the log's own, so the event loop never waits on the disk.

A crash can leave at most one torn line at the end; opening the file for a resume reads
every complete line and cuts the torn tail off before appending, so the file stays valid
JSONL and nothing finished is lost.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from massgen.grouped import Grouped


def encode_row(row: dict[str, Any]) -> bytes:
    """One result line, newline included."""
    return (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf-8")


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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lines: Grouped[bytes, None] = Grouped(self._write_group)
        self._worker: ThreadPoolExecutor | None = None
        self.fsyncs = 0
        """How many fsyncs the log made (fewer than lines when commits were grouped)."""

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

    # -- writing -----------------------------------------------------------------------------
    def _append(self, data: bytes) -> None:
        """Write ``data`` at the end and fsync (on the worker thread, or inline)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        self.fsyncs += 1

    def write(self, row: dict[str, Any]) -> None:
        """Write one line and fsync it now, blocking (outside an event loop)."""
        self._append(encode_row(row))
        self.done[str(row["id"])] = row

    async def commit(self, row: dict[str, Any]) -> None:
        """Write one line; returns once it is on disk. Lines committed while an fsync runs
        share the next one.

        Cancelling the caller does not take the line back: commit still waits for its
        write (one fsync at most) and then raises :class:`asyncio.CancelledError`. So a
        committed line is on disk when commit exits either way (or, if the log's own writer
        was stopped, written by :meth:`close`), and the caller can count it as finished.
        """
        waiter = self._lines.submit(encode_row(row))
        try:
            await asyncio.shield(waiter)
        except asyncio.CancelledError:
            if not waiter.done():
                try:
                    await waiter
                except asyncio.CancelledError:
                    pass  # the writer was stopped; close() writes the line
            self.done[str(row["id"])] = row
            raise
        self.done[str(row["id"])] = row

    async def _write_group(self, lines: list[bytes]) -> list[None]:
        """One write and one fsync for every line committed since the last, on the log's
        own thread."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="massgen-log")
        data = b"".join(lines)
        await asyncio.get_running_loop().run_in_executor(self._worker, self._append, data)
        return [None] * len(lines)

    def close(self) -> None:
        """Finish any write in progress, write what is still pending, and close the file."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)  # a write handed over finishes
            self._worker = None
        pending = self._lines.take_pending()
        if pending:
            self._append(b"".join(pending))
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ResultLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
