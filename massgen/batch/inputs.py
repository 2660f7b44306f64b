"""Read batch tasks from .txt, .jsonl or .csv. An id is the one given or a hash of the
task, so the same task keeps its id on every run and a re-run skips what is done."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from massgen.errors import ConfigError


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


def read_capped(path: Path, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of ``path``, or a ConfigError."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError(
            "no such file", file=str(path), hint=f"check the path of the {what}"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"is a folder, not a {what}", file=str(path)) from None
    except OSError as e:
        raise ConfigError(f"cannot read it: {e.strerror or e}", file=str(path)) from None
    if len(data) > limit:
        raise ConfigError(
            f"is larger than {limit // (1024 * 1024)} MiB (or endless); not a {what}",
            file=str(path),
        )
    return data


def read_tasks(path: str | Path) -> list[BatchTask]:
    return read_task_file(path).tasks


def read_task_file(path: str | Path) -> TaskList:
    """Tasks from a file (the format is chosen by its extension), with what was dropped."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".jsonl", ".csv", ".txt", ""):
        raise ConfigError(
            f"unknown task file type {suffix!r}", file=str(p), hint="use .txt, .jsonl or .csv"
        )
    raw = read_capped(p, MAX_TASK_FILE_BYTES, "task file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"is not UTF-8 text ({e.reason} at byte {e.start})", file=str(p)
        ) from None
    dropped: Counter[str] = Counter()
    parse = {".jsonl": _jsonl, ".csv": _csv}.get(suffix, _txt)
    return TaskList(dedupe(parse(text, str(p), dropped), str(p), dropped), dropped)


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
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("task"), str)
            or not row["task"].strip()
        ):
            raise ConfigError(
                "each line needs a non-empty string `task`",
                file=source,
                line=n,
                key="task",
                hint='e.g. {"id": "q1", "task": "What is 2+2?"}',
            )
        given = row.get("id")
        tid = str(given) if given not in (None, "") else task_id(row["task"])
        extra = {k: v for k, v in row.items() if k not in ("id", "task")}
        tasks.append(BatchTask(tid, row["task"].strip(), extra))
    return tasks


def _csv(text: str, source: str, dropped: Counter[str]) -> list[BatchTask]:
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "task" not in reader.fieldnames:
        raise ConfigError(
            "the CSV needs a `task` column (and optionally `id`)", file=source, line=1
        )
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
