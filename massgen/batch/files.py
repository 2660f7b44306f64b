"""The batch's files. Tasks in, from .txt, .jsonl or .csv: an id is the one given or a hash
of the task, so the same task keeps its id on every run and a re-run skips what is done.
Results out: one fsynced JSON line per finished task, the last line per id wins; damaged lines
are moved aside (never dropped), a failed write is cut back off, an ``flock`` keeps a second
writer out and the lock file's fingerprint refuses a resume under another run."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import fcntl
import hashlib
import itertools
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from massgen.errors import ConfigError, ResultsFileError, ResultsLocked
from massgen.grouped import Grouped


@dataclass(frozen=True, slots=True)
class BatchTask:
    id: str
    task: str
    fields: Mapping[str, Any] = field(default_factory=dict)


def task_id(text: str) -> str:
    return "t-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


MAX_TASK_FILE_BYTES = 64 * 1024 * 1024  # larger (or endless, /dev/zero) is refused


@dataclass(slots=True)
class TaskList:
    """The tasks of a file, and how many lines or rows were not tasks, by reason."""

    tasks: list[BatchTask]
    dropped: dict[str, int] = field(default_factory=dict)

    def describe_dropped(self) -> str:
        """e.g. ``2 blank lines, 1 duplicate``; empty when nothing was dropped."""
        names = {
            "comments": ("comment line", "comment lines"),
            "blank": ("blank line", "blank lines"),
            "duplicates": ("duplicate", "duplicates"),
            "empty": ("row with an empty task", "rows with an empty task"),
        }
        return ", ".join(
            f"{n} {names[k][n != 1]}" for k, n in self.dropped.items() if n and k in names
        )


def from_strings(tasks: Iterable[str | BatchTask]) -> list[BatchTask]:
    out = [t if isinstance(t, BatchTask) else BatchTask(task_id(t), t) for t in tasks]
    return dedupe(out, "tasks", Counter())


def dedupe(tasks: list[BatchTask], source: str, dropped: Counter[str]) -> list[BatchTask]:
    """Drop exact repeats; refuse one id used for two different tasks."""
    seen: dict[str, BatchTask] = {}
    for t in tasks:
        prior = seen.get(t.id)
        if prior is None:
            seen[t.id] = t
        elif prior.task != t.task:
            raise ConfigError(f"task id {t.id!r} is used for two different tasks", file=source)
        else:
            dropped["duplicates"] += 1
    return list(seen.values())


def read_tasks(path: str | Path) -> list[BatchTask]:
    return read_task_file(path).tasks


def read_task_file(path: str | Path) -> TaskList:
    """Tasks from a file (the format is chosen by its extension), with what was dropped."""
    p = Path(path)
    file, suffix = str(p), p.suffix.lower()
    if suffix not in (".jsonl", ".csv", ".txt", ""):
        hint = "use .txt, .jsonl or .csv"
        raise ConfigError(f"unknown task file type {suffix!r}", file=file, hint=hint)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_TASK_FILE_BYTES + 1)
        if len(raw) > MAX_TASK_FILE_BYTES:
            size = MAX_TASK_FILE_BYTES // (1024 * 1024)
            raise ConfigError(f"is larger than {size} MiB (or endless); not a task file", file=file)
        text = raw.decode("utf-8-sig")
    except FileNotFoundError:
        hint = "check the path of the task file"
        raise ConfigError("no such file", file=file, hint=hint) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a task file", file=file) from None
    except UnicodeDecodeError as e:
        message = f"is not UTF-8 text ({e.reason} at byte {e.start})"
        raise ConfigError(message, file=file) from None
    except OSError as e:
        raise ConfigError(f"cannot read it: {e.strerror or e}", file=file) from None
    dropped: Counter[str] = Counter()
    parse = {".jsonl": _jsonl, ".csv": _csv}.get(suffix, _txt)
    return TaskList(dedupe(parse(text, file, dropped), file, dropped), dropped)


def _txt(text: str, source: str, dropped: Counter[str]) -> list[BatchTask]:
    tasks = []
    for line in text.splitlines():
        body = line.strip()
        if not body or body.startswith("#"):
            dropped["comments" if body else "blank"] += 1
        else:
            tasks.append(BatchTask(task_id(body), body))
    return tasks


def _jsonl(text: str, source: str, dropped: Counter[str]) -> list[BatchTask]:
    tasks = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            dropped["blank"] += 1
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"not valid JSON: {e.msg}", file=source, line=n) from None
        task = row.get("task") if isinstance(row, dict) else None
        if not isinstance(task, str) or not task.strip():
            message = "each line needs a non-empty string `task`"
            hint = 'e.g. {"id": "q1", "task": "What is 2+2?"}'
            raise ConfigError(message, file=source, line=n, key="task", hint=hint)
        given = row.get("id")
        tid = str(given) if given not in (None, "") else task_id(task)
        extra = {k: v for k, v in row.items() if k not in ("id", "task")}
        tasks.append(BatchTask(tid, task.strip(), extra))
    return tasks


def _csv(text: str, source: str, dropped: Counter[str]) -> list[BatchTask]:
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "task" not in reader.fieldnames:
        message = "the CSV needs a `task` column (and optionally `id`)"
        raise ConfigError(message, file=source, line=1)
    tasks = []
    for row in reader:
        body = (row.get("task") or "").strip()
        if not body:
            dropped["empty"] += 1
            continue
        given = (row.get("id") or "").strip()
        extra = {k: v for k, v in row.items() if k not in ("id", "task") and k is not None}
        tasks.append(BatchTask(given or task_id(body), body, extra))
    return tasks


# -- results ----------------------------------------------------------------------------------
_log = logging.getLogger(__name__)

#: Errors that mean the disk, not the path, is the problem (exit 1, not a usage error).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def encode_row(row: Mapping[str, Any]) -> bytes:
    """One result line, newline included."""
    return (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def parse_row(line: bytes) -> dict[str, Any] | None:
    """The row a line holds (a JSON object with an ``id``), or ``None`` for a damaged line."""
    try:
        row = json.loads(line)
    except ValueError:  # bad JSON, bad UTF-8
        return None
    if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not row["id"]:
        return None
    return row


def _free(path: Path, name: Callable[[int], str]) -> Path:
    """The first free ``name(1)``, ``name(2)``... beside ``path``."""
    return next(p for n in itertools.count(1) if not (p := path.with_name(name(n))).exists())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _write_new(path: Path, data: bytes) -> None:
    """Write ``path`` whole (it must not exist) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def _file_error(path: Path, action: str, e: OSError) -> Exception:
    """The disk's fault (exit 1) or the path's (a usage error, exit 2)."""
    reason = e.strerror or str(e)
    if e.errno in DISK_ERRNOS:
        return ResultsFileError(f"cannot {action} {path}: {reason}")
    return ConfigError(f"cannot {action} it: {reason}", file=str(path), key="--out")


class ResultLog(contextlib.AbstractContextManager["ResultLog"]):
    """Append-only JSONL of finished tasks (the last line per id wins). ``resume=False``
    moves an existing file aside (:attr:`moved_aside`); ``fingerprint`` is recorded, and a
    file recorded under another one is refused."""

    def __init__(
        self, path: str | Path, *, resume: bool = True, fingerprint: Mapping[str, Any] | None = None
    ) -> None:
        self.path = Path(path)
        self.done: dict[str, dict[str, Any]] = {}
        self.set_aside = 0  # damaged lines a resume moved into bad_file
        self.bad_file: Path | None = None
        self.moved_aside: Path | None = None
        self.fsyncs = 0  # fewer than lines when commits were grouped
        self._superseded = 0  # lines in the file that a later line for the same id replaces
        self._broken: ResultsFileError | None = None
        self._fd = -1
        self._lock_fd = -1
        self._lines: Grouped[bytes, None] = Grouped(self._write_group)
        self._worker: ThreadPoolExecutor | None = None
        if self.path.is_dir():
            raise ConfigError("is a folder; give a file name", file=str(self.path), key="--out")
        try:
            self._open(resume, fingerprint)
        except BaseException:
            self._release()
            raise

    def _open(self, resume: bool, fingerprint: Mapping[str, Any] | None) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _file_error(self.path, "write", e) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = "another massgen batch is writing this results file"
            hint = "wait for it to finish, or give this one its own --out"
            raise ResultsLocked(message, file=str(self.path), key="--out", hint=hint) from None
        recorded = self._recorded()
        try:
            if resume and self.path.exists():
                data = self.path.read_bytes()
                if fingerprint is not None and recorded and data.strip():
                    _check_same_run(self.path, recorded, fingerprint)
                self._load(data)
            elif self.path.exists():
                self.moved_aside = _free(self.path, lambda n: f"{self.path.name}.{n}")
                self.path.rename(self.moved_aside)
            if fingerprint is not None:
                self._record(fingerprint)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise _file_error(self.path, "write", e) from None

    def _recorded(self) -> dict[str, Any] | None:
        try:
            data = os.pread(self._lock_fd, 1 << 16, 0)
            found = json.loads(data) if data.strip() else None
        except (OSError, ValueError):
            return None
        fp = found.get("fingerprint") if isinstance(found, dict) else None
        return fp if isinstance(fp, dict) else None

    def _record(self, fingerprint: Mapping[str, Any]) -> None:
        data = json.dumps({"fingerprint": dict(fingerprint)}, sort_keys=True).encode() + b"\n"
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, data, 0)
        os.fsync(self._lock_fd)

    def _load(self, data: bytes) -> None:
        """Read every row; move damaged lines to a side file and superseded lines out."""
        bad: list[bytes] = []
        lines: dict[str, bytes] = {}
        for line in data.splitlines(keepends=True):
            whole = line if line.endswith(b"\n") else line + b"\n"
            row = parse_row(line)
            if row is None:  # blank, garbage, NUL bytes, torn: set aside, never dropped
                bad.append(whole)
                continue
            self._count(row)
            lines[row["id"]] = whole
        if bad or self._superseded or (data and not data.endswith(b"\n")):
            if bad:
                name = f"{self.path.name}.bad-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
                self.bad_file = _free(self.path, lambda n: name + (f"-{n}" if n > 1 else ""))
                _write_new(self.bad_file, b"".join(bad))
                self.set_aside = len(bad)
                _log.warning("%s: %d damaged lines moved to %s", self.path, len(bad), self.bad_file)
            self._rewrite(b"".join(lines.values()))
            self._superseded = 0

    def _rewrite(self, data: bytes) -> None:
        """Replace the file with ``data`` atomically (a crash leaves the old or the new)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.unlink(missing_ok=True)  # a left-over of a crash mid-rewrite (we hold the lock)
        try:
            _write_new(tmp, data)
            tmp.replace(self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fd = os.open(self.path.parent, os.O_RDONLY)  # the rename is durable once it is synced
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _append(self, data: bytes) -> None:
        """Write ``data`` at the end and fsync; a failed write is cut back off."""
        if self._broken is not None:
            raise self._broken
        start = os.fstat(self._fd).st_size
        try:
            _write_all(self._fd, data)
        except OSError as e:
            with contextlib.suppress(OSError):  # else a later resume sets the torn line aside
                os.ftruncate(self._fd, start)
            error = _file_error(self.path, "write", e)
            if isinstance(error, ResultsFileError):
                self._broken = error
            raise error from None
        self.fsyncs += 1

    def _count(self, row: Mapping[str, Any]) -> None:
        rid = str(row["id"])
        if rid in self.done:
            self._superseded += 1
        self.done[rid] = dict(row)

    def write(self, row: dict[str, Any]) -> None:
        """Write one line and fsync it now, blocking (outside an event loop)."""
        self._append(encode_row(row))
        self._count(row)

    async def commit(self, row: dict[str, Any]) -> None:
        """Write one line; returns once it is on disk (ResultsFileError if it cannot be). A
        cancelled commit still waits for its write, so the task counts as finished either way."""
        if self._broken is not None:
            raise self._broken
        waiter = self._lines.submit(encode_row(row))
        try:
            await asyncio.shield(waiter)
        except asyncio.CancelledError:
            if not waiter.done():
                with contextlib.suppress(asyncio.CancelledError):  # stopped: close() writes it
                    await waiter
            self._count(row)
            raise
        self._count(row)

    async def _write_group(self, lines: list[bytes]) -> list[None]:
        """One write and one fsync for every line committed since the last."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="massgen-log")
        data = b"".join(lines)
        await asyncio.get_running_loop().run_in_executor(self._worker, self._append, data)
        return [None] * len(lines)

    def close(self) -> None:
        """Finish pending writes, compact to one line per id, release the lock."""
        try:
            if self._worker is not None:
                self._worker.shutdown(wait=True)  # a write handed over finishes
                self._worker = None
            pending = self._lines.take_pending()
            if self._fd >= 0:
                if pending and self._broken is None:
                    self._append(b"".join(pending))
                if self._superseded and self._broken is None:
                    try:
                        self._rewrite(b"".join(encode_row(r) for r in self.done.values()))
                    except OSError as e:
                        raise _file_error(self.path, "compact", e) from None
                    self._superseded = 0
        finally:
            self._release()

    def _release(self) -> None:
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)  # closing the lock file's descriptor releases the flock
                setattr(self, name, -1)

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_same_run(path: Path, recorded: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    changed = [k for k in sorted(set(recorded) | set(now)) if recorded.get(k) != now.get(k)]
    if not changed:
        return
    was = ", ".join(f"{k} {_short(recorded.get(k))}" for k in changed)
    is_ = ", ".join(f"{k} {_short(now.get(k))}" for k in changed)
    message = f"holds results of a different run ({was}; this run: {is_})"
    hint = "use --no-resume to start over (the old file is moved aside), or another --out"
    raise ConfigError(message, file=str(path), key="--out", hint=hint)


def _short(value: Any) -> str:
    text = str(value)
    return text[:19] + "…" if text.startswith("sha256:") and len(text) > 20 else text
