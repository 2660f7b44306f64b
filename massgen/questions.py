"""Questions with known answers, from local JSONL, JSON or CSV files.

A row has a ``question`` and an ``answer``; optionally ``choices``, ``id`` and ``grader``.
The common published layouts are read as they are stored (no download at run time):

- GSM8K: ``answer`` is the worked solution ending ``#### 42`` (the gold is 42);
- MMLU / ARC / GPQA multiple choice: ``choices`` (a list; or ARC's ``question.stem`` and
  ``question.choices[].text`` with ``answerKey``; or GPQA's ``Question``, ``Correct Answer``
  and ``Incorrect Answer 1..3``, put in an order fixed by the question) and the gold as a
  letter, a 0-based index or the text of a choice;
- MATH: ``problem`` and ``solution`` (the gold is its last ``\\boxed{...}``).

Without ``grader`` one is inferred: ``choice`` with choices, ``number`` for a numeric gold
or a ``####`` solution, ``boxed`` for a boxed gold, else ``text``. A bad row is a
:class:`~massgen.errors.ConfigError` naming the file, the line and the key.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from massgen.answers import GRADERS, KINDS, LETTERS, extract_boxed, grade, load_grader, parse_number
from massgen.errors import ConfigError

JUDGE = "judge"
MAX_DATA_BYTES = 256 * 1024 * 1024

INSTRUCTIONS = {
    "number": "Give your final answer as a number on a last line `Answer: <number>`.",
    "choice": "Give your final answer as a last line `Answer: <letter>`.",
    "boxed": "Put your final answer in \\boxed{}.",
}
"""What the prompt asks for, by grader, so the answer can be read; others ask for a last
line ``Answer: ...``."""
DEFAULT_INSTRUCTION = "Give your final answer on a last line `Answer: <answer>`."


@dataclass(frozen=True, slots=True)
class EvalItem:
    """One question: ``prompt`` is what the agents are asked (the question, its lettered
    choices, and how to state the answer); ``gold`` the expected answer as the grader reads it."""

    id: str
    question: str
    gold: Any
    grader: str
    choices: tuple[str, ...] | None = None
    line: int = 0
    row: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        body = self.question.strip()
        if self.choices:
            body += "\n\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(self.choices))
        return body + "\n\n" + INSTRUCTIONS.get(self.grader, DEFAULT_INSTRUCTION)

    @property
    def kind(self) -> str:
        """The kind of answer two replies are compared by (majorities): the grader's if it
        is one, else ``text``."""
        return self.grader if self.grader in KINDS else "text"


def load_items(path: str | Path, *, limit: int | None = None) -> list[EvalItem]:
    """The questions of ``path`` (``.jsonl``, ``.json`` or ``.csv``), the first ``limit``."""
    p = Path(path)
    file, suffix = str(p), p.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise ConfigError(
            f"unknown data file type {suffix!r}", file=file, hint="use .jsonl or .csv"
        )
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_DATA_BYTES + 1)
        if len(raw) > MAX_DATA_BYTES:
            raise ConfigError("is larger than 256 MiB; not a data file", file=file)
        text = raw.decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("no such file", file=file, hint="check the data file's path") from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a data file", file=file) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"is not UTF-8 text ({e.reason} at byte {e.start})", file=file) from None
    except OSError as e:
        raise ConfigError(f"cannot read it: {e.strerror or e}", file=file) from None
    rows = _csv(text, file) if suffix == ".csv" else _json(text, file, suffix)
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if limit is not None and len(items) >= limit:
            break
        item = parse_row(row, file=file, line=line)
        if item.id in seen:
            message = f"id {item.id!r} is used twice (first on line {seen[item.id]})"
            raise ConfigError(
                message, file=file, line=line, key="id", hint="give each row its own id"
            )
        seen[item.id] = line
        items.append(item)
    if not items:
        raise ConfigError(
            "holds no questions",
            file=file,
            hint='one row per question: {"question": ..., "answer": ...}',
        )
    return items


def _json(text: str, file: str, suffix: str) -> list[tuple[int, Any]]:
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"not valid JSON: {e.msg}", file=file, line=e.lineno) from None
        if not isinstance(data, list):
            raise ConfigError("a .json data file is a list of rows", file=file, line=1)
        return [(i, row) for i, row in enumerate(data, start=1)]
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise ConfigError(f"not valid JSON: {e.msg}", file=file, line=n) from None
    return rows


def _csv(text: str, file: str) -> list[tuple[int, Any]]:
    reader = csv.DictReader(text.splitlines(keepends=True))
    if not reader.fieldnames:
        raise ConfigError("the CSV has no header row", file=file, line=1)
    rows = []
    for row in reader:
        clean = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        if clean:
            rows.append((reader.line_num, clean))
    return rows


def parse_row(raw: Any, *, file: str = "<data>", line: int = 0) -> EvalItem:
    """One row as a question, its gold read and checked now (a wrong gold is the data's
    mistake, found before anything is spent)."""

    def bad(message: str, key: str | None = None, hint: str | None = None) -> ConfigError:
        return ConfigError(message, file=file, line=line or None, key=key, hint=hint)

    if not isinstance(raw, Mapping):
        raise bad("a row is an object", hint='e.g. {"question": "2+2?", "answer": 4}')
    row = _published(dict(raw))
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise bad(
            "each row needs a non-empty string `question`",
            "question",
            'e.g. {"question": "2+2?", "answer": 4}',
        )
    if "answer" not in row or row["answer"] in (None, ""):
        raise bad(
            "each row needs an `answer`", "answer", "the expected answer: a number, a letter, text"
        )
    choices = _choices(row.get("choices"), bad)
    gold = row["answer"]
    grader = row.get("grader") or _infer(gold, choices)
    if not isinstance(grader, str):
        raise bad("`grader` is text", "grader")
    if isinstance(gold, str) and "####" in gold and grader == "number":
        gold = gold.rsplit("####", 1)[1].strip()
    if grader == "number" and isinstance(gold, str):
        gold = gold.replace(",", "") if parse_number(gold) is not None else gold
    _check_gold(grader, gold, choices, bad)
    for key in ("rel_tol", "abs_tol"):
        if key in row and not _non_negative(row[key]):
            raise bad(f"`{key}` is a number >= 0, not {row[key]!r}", key, "e.g. 0.01")
    given = row.get("id")
    qid = str(given) if given not in (None, "") else _hash_id(question, choices)
    return EvalItem(qid, question, gold, grader, choices, line, raw)


def _published(row: dict[str, Any]) -> dict[str, Any]:
    """The published layouts (MATH, ARC, GPQA) as question/answer/choices."""
    if "question" not in row and "problem" in row:  # MATH
        row["question"] = row["problem"]
        if "answer" not in row and isinstance(row.get("solution"), str):
            row["answer"] = extract_boxed(row["solution"]) or row["solution"]
            row.setdefault("grader", "boxed")
    q = row.get("question")
    if isinstance(q, Mapping) and "stem" in q:  # ARC
        row["question"] = q["stem"]
        options = q.get("choices") or []
        row["choices"] = [c.get("text") if isinstance(c, Mapping) else c for c in options]
        labels = [c.get("label") for c in options if isinstance(c, Mapping)]
        key = row.get("answerKey", row.get("answer"))
        if key in labels:
            key = LETTERS[labels.index(key)]
        row["answer"] = key
    if "question" not in row and "Question" in row and "Correct Answer" in row:  # GPQA
        wrong = [row[k] for k in sorted(row) if k.startswith("Incorrect Answer") and row[k]]
        options = [row["Correct Answer"], *wrong]
        seed = int(hashlib.sha256(str(row["Question"]).encode()).hexdigest()[:8], 16)
        random.Random(seed).shuffle(options)  # a fixed order per question, not the file's
        row.update(question=row["Question"], choices=options, answer=row["Correct Answer"])
    return row


def _choices(raw: Any, bad: Any) -> tuple[str, ...] | None:
    if raw in (None, "", []):
        return None
    if isinstance(raw, str):  # a CSV cell: a JSON list, or options separated by |
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raw = raw.split("|")
    if (
        not isinstance(raw, Sequence)
        or isinstance(raw, str)
        or not all(isinstance(c, str | int | float) for c in raw)
    ):
        raise bad("`choices` is a list of texts", "choices", 'e.g. ["Paris", "Lyon", "Nice"]')
    if not 2 <= len(raw) <= len(LETTERS):
        raise bad(f"`choices` has {len(raw)} options; 2 to {len(LETTERS)} are read", "choices")
    return tuple(str(c).strip() for c in raw)


def _infer(gold: Any, choices: Sequence[str] | None) -> str:
    if choices:
        return "choice"
    if isinstance(gold, int | float) and not isinstance(gold, bool):
        return "number"
    if isinstance(gold, str):
        if "####" in gold:
            return "number"
        if extract_boxed(gold) is not None:
            return "boxed"
        if parse_number(gold) is not None and _only_number(gold):
            return "number"
    return "text"


def _only_number(text: str) -> bool:
    """A gold that is just a numeral (units and currency allowed), not "Apollo 11"."""
    stripped = text.strip().lstrip("$€£¥-−+").replace(",", "")
    return bool(stripped) and (stripped[0].isdigit() or stripped[0] == ".")


def _check_gold(grader: str, gold: Any, choices: tuple[str, ...] | None, bad: Any) -> None:
    if grader == JUDGE:
        return
    if ":" in grader and not grader.startswith("regex:"):
        try:
            load_grader(grader)
        except ConfigError as e:
            raise bad(e.message, "grader", e.hint) from None
        return
    if grader == "regex" or grader.startswith("regex:"):
        pattern = grader[6:] if grader.startswith("regex:") else gold
        try:
            re.compile(str(pattern))
        except re.error as e:
            raise bad(
                f"{pattern!r} is not a regular expression: {e}",
                "grader" if grader != "regex" else "answer",
            ) from None
        return
    if grader not in GRADERS:
        known = ", ".join((*GRADERS, "regex:<pattern>", JUDGE))
        raise bad(f"unknown grader {grader!r}", "grader", f"one of {known}, or module:function")
    try:
        grade(grader, "", gold, choices=choices)
    except ConfigError as e:
        raise bad(e.message, e.key, e.hint) from None


def _non_negative(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and float(value) >= 0
    except (TypeError, ValueError):
        return False


def _hash_id(question: str, choices: Sequence[str] | None) -> str:
    text = question + ("\x00" + "\x00".join(choices) if choices else "")
    return "q-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
