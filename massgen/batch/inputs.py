"""Read batch tasks from .txt, .jsonl or .csv, with stable ids.

An id is the one given, or a hash of the task text: the same task keeps the same id on
every run, which is what lets a re-run skip what is already done.
"""

from __future__ import annotations

import csv
import hashlib
import json
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


def from_strings(tasks: Iterable[str | BatchTask]) -> list[BatchTask]:
    out = [t if isinstance(t, BatchTask) else BatchTask(task_id(t), t) for t in tasks]
    return dedupe(out, "tasks")


def dedupe(tasks: list[BatchTask], source: str) -> list[BatchTask]:
    """Drop exact repeats; refuse one id used for two different tasks."""
    seen: dict[str, BatchTask] = {}
    for t in tasks:
        prior = seen.get(t.id)
        if prior is None:
            seen[t.id] = t
        elif prior.task != t.task:
            raise ConfigError(f"task id {t.id!r} is used for two different tasks", file=source)
    return list(seen.values())


def read_tasks(path: str | Path) -> list[BatchTask]:
    """Tasks from a file; the format is chosen by its extension."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "no such file", file=str(p), hint="check the path of the task file"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read it: {e}", file=str(p)) from None
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        tasks = _jsonl(text, str(p))
    elif suffix == ".csv":
        tasks = _csv(text, str(p))
    elif suffix in (".txt", ""):
        tasks = [
            BatchTask(task_id(line.strip()), line.strip())
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    else:
        raise ConfigError(
            f"unknown task file type {suffix!r}", file=str(p), hint="use .txt, .jsonl or .csv"
        )
    return dedupe(tasks, str(p))


def _jsonl(text: str, source: str) -> list[BatchTask]:
    tasks = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
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


def _csv(text: str, source: str) -> list[BatchTask]:
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "task" not in reader.fieldnames:
        raise ConfigError(
            "the CSV needs a `task` column (and optionally `id`)", file=source, line=1
        )
    tasks = []
    for row in reader:
        body = (row.get("task") or "").strip()
        if not body:
            continue
        given = (row.get("id") or "").strip()
        extra = {k: v for k, v in row.items() if k not in ("id", "task") and k is not None}
        tasks.append(BatchTask(given or task_id(body), body, extra))
    return tasks
