"""YAML to plain Python values, remembering the line of every key.

We compose YAML into nodes (with libyaml when available) and build values ourselves, so we
can record ``path -> line`` for error messages and refuse what ``yaml.safe_load`` lets
through silently: duplicate keys, recursive aliases, alias bombs."""

from __future__ import annotations

import re
from typing import Any

import yaml

from massgen.errors import ConfigError

Path_ = tuple[str | int, ...]
Lines = dict[Path_, int]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_VALUES = 100_000
"""More values than this in one file is an alias bomb, not a team."""
MAX_DEPTH = 64
"""Deeper nesting than this is never a real config and would exhaust the stack."""

_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
_PLAIN = re.compile(r"[\w-]+")
_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def parse(text: str, file: str) -> tuple[Any, Lines]:
    """One YAML document as values (``None`` if empty) and a map from key path to 1-based
    line; syntax errors, duplicate keys and unsupported tags raise :class:`ConfigError`."""
    try:
        _check_depth(text, file)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(e, text, file) from None
    except yaml.YAMLError as e:
        raise _reader_error(e, text, file) from None
    if node is None:
        return None, {}
    builder = _Builder(file)
    return builder.build(node, ()), builder.lines


def _check_depth(text: str, file: str) -> None:
    """Refuse deep nesting from the event stream, before libyaml's recursive composer crashes
    the process on a few thousand levels (flow brackets deeper than libyaml's own limit stop
    its scanner first: :func:`_syntax_error` reports that the same way)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        depth += isinstance(event, yaml.CollectionStartEvent)
        depth -= isinstance(event, yaml.CollectionEndEvent)
        if depth > MAX_DEPTH:
            mark = event.start_mark
            raise ConfigError(_TOO_DEEP, file=file, line=mark.line + 1 if mark else None)


def _syntax_error(e: yaml.MarkedYAMLError, text: str, file: str) -> ConfigError:
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = (e.problem or "cannot parse").strip()
    if "maximum nesting depth" in problem:
        return ConfigError(_TOO_DEEP, file=file, line=line)
    detail = f"invalid YAML: {problem}"
    if mark is not None:
        detail += f" (column {mark.column + 1})"
    if e.context and e.context_mark is not None and e.context_mark is not mark:
        detail += f", {e.context.strip()} at line {e.context_mark.line + 1}"
    hint = "check indentation, colons and quotes around this line"
    rows = text.splitlines()
    row = rows[mark.line] if mark is not None and mark.line < len(rows) else ""
    if "\t" in row[: len(row) - len(row.lstrip())]:
        hint = "this line is indented with a tab: YAML indents with spaces only"
    return ConfigError(detail, file=file, line=line, hint=hint)


def _reader_error(e: yaml.YAMLError, text: str, file: str) -> ConfigError:
    position = getattr(e, "position", None)
    line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
    reason = getattr(e, "reason", None) or "cannot read the file"
    return ConfigError(f"invalid YAML: {reason}", file=file, line=line)


class _Builder:
    """Turns composed nodes into dicts, lists and scalars, recording lines."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: Lines = {}
        self.count = 0
        self.active: set[int] = set()
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, message: str, node: yaml.Node, hint: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, line=node.start_mark.line + 1, hint=hint)

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise self.fail(f"more than {MAX_VALUES} values (an alias bomb?)", node)
        if len(path) > MAX_DEPTH:
            raise self.fail(_TOO_DEEP, node)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if id(node) in self.active:
            raise self.fail("an alias refers to the collection that contains it", node)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag in (_STR, _TIMESTAMP):
            return node.value  # dates stay text: `name: 2024-01-01` is a name, not a date
        try:
            return self.constructor.construct_object(node)
        except yaml.constructor.ConstructorError:
            raise self.fail(f"unsupported YAML tag `{node.tag}`", node) from None
        except (ValueError, TypeError, OverflowError):
            kind = node.tag.rsplit(":", 1)[-1]
            raise self.fail(f"cannot read this value as {kind}", node) from None

    def mapping(self, node: yaml.Node, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail("a key must be a plain name, not a list or mapping", key_node)
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                message = f"duplicate key (first given at line {first_line[key]})"
                hint = "a key may appear only once in a mapping; remove one"
                at = dotted((*path, key))
                raise ConfigError(message, file=self.file, line=line, key=at, hint=hint)
            first_line[key] = line
            self.lines.setdefault((*path, key), line)
            out[key] = self.build(value_node, (*path, key))
        merged: dict[str, Any] = {}
        for merge_node in merges:
            many = isinstance(merge_node, yaml.SequenceNode)
            for source in merge_node.value if many else [merge_node]:
                value = self.build(source, path)
                if not isinstance(value, dict):
                    raise self.fail("`<<` must merge a mapping or a list of mappings", source)
                for key, item in value.items():
                    merged.setdefault(key, item)
        return {**merged, **out}


def dotted(path: Path_) -> str:
    """``("agents", 1, "backend")`` -> ``agents[1].backend``; odd names get brackets."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def line_of(path: Path_, lines: Lines) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None
