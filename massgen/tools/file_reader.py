"""``file_reader``: read a text file, or list a folder, under one root folder.

Threat model: the path is chosen by a model that may have read hostile text, so it may try
``../``, an absolute path, a symlink pointing out of the root, a sibling whose name starts
like the root (``root_evil``), or a NUL byte. The path is joined to the root, then fully
resolved (symlinks and ``..``, strictly: it must exist), and only then checked to be the
root or inside it, by path components, not by string prefix. Absolute paths are refused
outright. Files larger than ``max_bytes`` are read only up to it; the encoding is
detected (``charset-normalizer``); binary files are refused.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Annotated

from pydantic import Field

from massgen.errors import ConfigError, ToolError
from massgen.tools._builtin import BuiltinTool, ToolSettings


class FileReaderSettings(ToolSettings):
    root: str = "."
    """Folder the tool may read; relative to the config file's folder."""
    max_bytes: int = Field(default=200_000, gt=0)
    """Bytes read from one file at most; the rest is cut with a note."""
    max_entries: int = Field(default=500, gt=0)
    """Entries shown when listing a folder."""


class FileReader(BuiltinTool):
    """Read a text file under the configured root folder (optionally a range of lines), or
    list a folder when the path is one. Paths are relative to the root."""

    name = "file_reader"
    Settings = FileReaderSettings
    settings: FileReaderSettings

    def setup(self) -> None:
        root = Path(self.settings.root).expanduser()
        if not root.is_absolute() and self.base_dir is not None:
            root = Path(self.base_dir) / root
        try:
            self.root = root.resolve(strict=True)
        except (OSError, RuntimeError):
            raise ConfigError("the folder does not exist", key="root") from None
        if not self.root.is_dir():
            raise ConfigError("not a folder", key="root")

    def execute(
        self,
        path: Annotated[str, Field(description="relative to the root; '.' lists the root")] = ".",
        start_line: Annotated[int | None, Field(ge=1, description="first line (1-based)")] = None,
        end_line: Annotated[int | None, Field(ge=1, description="last line, inclusive")] = None,
    ) -> str:
        target = self.resolve(path)
        if target.is_dir():
            return self._list(target)
        if not target.is_file():
            raise ToolError("not a regular file")
        text = self._read(target)
        if start_line is None and end_line is None:
            return text
        lines = text.splitlines()
        first = (start_line or 1) - 1
        last = end_line or len(lines)
        if first >= len(lines):
            raise ToolError(f"the file has {len(lines)} lines")
        return "\n".join(f"{n}: {line}" for n, line in enumerate(lines[first:last], first + 1))

    def resolve(self, path: str) -> Path:
        """``path`` resolved inside the root; :class:`ToolError` if it leaves it."""
        if "\x00" in path:
            raise ToolError("access denied: NUL byte in path")
        raw = Path(path)
        if raw.is_absolute() or raw.anchor or path.startswith(("~", "\\")):
            raise ToolError("access denied: absolute paths are not allowed; use a relative path")
        try:
            resolved = (self.root / raw).resolve(strict=True)
        except FileNotFoundError:
            raise ToolError(f"no such file or folder: {path}") from None
        except (OSError, RuntimeError, ValueError):
            raise ToolError("access denied: the path cannot be resolved") from None
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise ToolError("access denied: the path leads outside the allowed folder")
        return resolved

    def _list(self, folder: Path) -> str:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
        lines = []
        for entry in entries[: self.settings.max_entries]:
            if entry.is_symlink():
                kind = "link"
            elif entry.is_dir():
                kind = "dir"
            else:
                kind = f"{entry.stat().st_size} bytes"
            lines.append(f"{entry.name}{'/' if kind == 'dir' else ''}\t{kind}")
        if len(entries) > self.settings.max_entries:
            lines.append(f"[... {len(entries) - self.settings.max_entries} more entries]")
        return "\n".join(lines) or "(empty folder)"

    def _read(self, file: Path) -> str:
        limit = self.settings.max_bytes
        with file.open("rb") as f:
            data = f.read(limit + 1)
        cut = len(data) > limit
        data = data[:limit]
        text = decode(data)
        if cut:
            text += f"\n[... cut at {limit} bytes]"
        return text


_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode(data: bytes) -> str:
    """Bytes as text: by BOM, else UTF-8 when valid, else the detected encoding (a guess
    for short texts); binary is refused."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    if b"\x00" in data[:8192]:
        raise ToolError("binary file (not text)")
    for trim in range(4):  # a cut may split the last UTF-8 character
        try:
            return data[: len(data) - trim].decode("utf-8")
        except UnicodeDecodeError:
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ToolError("binary file or unknown encoding")
    return str(best)
