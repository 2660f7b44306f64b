"""``file_reader``: read a text file, or list a folder, under one root folder; walked from a
descriptor of the root, never checked by name then opened by name (docs/tools.md)."""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Annotated

from pydantic import Field

from massgen.errors import ConfigError, ToolError
from massgen.tools.base import BuiltinTool, ToolSettings

_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_FLAGS |= getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_LINK_ERRORS = (errno.ELOOP, errno.EMLINK)  # O_NOFOLLOW on a link: ELOOP (BSD: EMLINK)
MAX_LINKS = 40  # symlinks followed in one path at most (as the kernel's own limit)

OUTSIDE = "access denied: the path leads outside the allowed folder"


class FileReaderSettings(ToolSettings):
    root: str = "."  # relative to the config file's folder
    max_bytes: int = Field(default=200_000, gt=0)  # read from one file; the rest is cut
    max_entries: int = Field(default=500, gt=0)  # shown when listing a folder
    allow_hard_links: bool = False  # off: a link to a file outside the root looks like it


class FileReader(BuiltinTool[FileReaderSettings]):
    """Read a text file under the configured root folder (optionally a range of lines), or
    list a folder when the path is one. Paths are relative to the root."""

    def setup(self) -> None:
        if not (os.open in os.supports_dir_fd and os.readlink in os.supports_dir_fd):
            raise ConfigError("file_reader needs a system that opens files by folder (POSIX)")
        root = (self.base_dir or Path()) / Path(self.settings.root).expanduser()
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
        fd = self.open(path)
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                return self._list(fd)
            text = self._read(fd)
        finally:
            os.close(fd)
        if start_line is None and end_line is None:
            return text
        lines = text.splitlines()
        first = (start_line or 1) - 1
        if first >= len(lines):
            raise ToolError(f"the file has {len(lines)} lines")
        return "\n".join(f"{n}: {line}" for n, line in enumerate(lines[first:end_line], first + 1))

    def open(self, path: str) -> int:
        """A descriptor (the caller closes it) of the folder or regular file ``path`` inside
        the root, checked on the descriptor; :class:`ToolError` for anything else."""
        if "\x00" in path:
            raise ToolError("access denied: NUL byte in path")
        if PurePosixPath(path).is_absolute() or path.startswith(("~", "\\")) or Path(path).anchor:
            raise ToolError("access denied: absolute paths are not allowed; use a relative path")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        try:  # from the root down to where we are; a file can only be last
            folders = [os.open(self.root, _DIRECTORY)]
        except OSError as e:
            reason = os.strerror(e.errno or 0)
            raise ToolError(f"the allowed folder cannot be opened: {reason}") from None
        links = 0
        try:
            while parts:
                name = parts.pop(0)
                if name == "..":
                    if len(folders) == 1:
                        raise ToolError(OUTSIDE)
                    os.close(folders.pop())
                    continue
                try:
                    fd = os.open(name, _FLAGS, dir_fd=folders[-1])
                except OSError as e:
                    if e.errno not in _LINK_ERRORS:
                        raise _open_error(e, path) from None
                    links += 1
                    if links > MAX_LINKS:
                        raise ToolError("access denied: too many symbolic links") from None
                    parts[:0] = self._link(name, folders)
                    continue
                folders.append(fd)
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    if parts:
                        raise ToolError(f"no such file or folder: {path}")
                    break
            info = os.fstat(folders[-1])
            if not stat.S_ISDIR(info.st_mode):
                if not stat.S_ISREG(info.st_mode):
                    raise ToolError("not a regular file")
                if info.st_nlink > 1 and not self.settings.allow_hard_links:
                    raise ToolError(
                        "access denied: the file has other names (hard links), which may lead "
                        "outside the allowed folder"
                    )
            try:  # a folder moved out of the root during the walk, where /proc tells
                where = os.readlink(f"/proc/self/fd/{folders[-1]}").removesuffix(" (deleted)")
            except OSError:
                where = str(self.root)  # no /proc: the walk itself is the guard
            if not Path(where).is_relative_to(self.root):
                raise ToolError(OUTSIDE)
            return folders.pop()
        finally:
            for folder in folders:
                os.close(folder)

    def _link(self, name: str, folders: list[int]) -> list[str]:
        """The components a link named ``name`` in ``folders[-1]`` stands for; for an
        absolute target, ``folders`` is cut back to the root (which it must be under)."""
        try:
            target = os.readlink(name, dir_fd=folders[-1])
        except OSError as e:
            if e.errno == errno.EINVAL:  # no longer a link (swapped back): look again
                return [name]
            raise _open_error(e, name) from None
        if not target:
            raise ToolError("access denied: empty symbolic link")
        pure = PurePosixPath(target)
        if pure.is_absolute():
            if not pure.is_relative_to(self.root):
                raise ToolError(OUTSIDE)
            while len(folders) > 1:
                os.close(folders.pop())
            pure = pure.relative_to(self.root)
        return [p for p in pure.parts if p not in ("", ".")]

    def _list(self, folder: int) -> str:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        lines = []
        for entry in entries[: self.settings.max_entries]:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile
            kind = {stat.S_IFLNK: "link", stat.S_IFDIR: "dir"}.get(stat.S_IFMT(info.st_mode))
            if kind is None:
                kind = f"{info.st_size} bytes" if stat.S_ISREG(info.st_mode) else "special"
            lines.append(f"{entry.name}{'/' if kind == 'dir' else ''}\t{kind}")
        if len(entries) > self.settings.max_entries:
            lines.append(f"[... {len(entries) - self.settings.max_entries} more entries]")
        return "\n".join(lines) or "(empty folder)"

    def _read(self, fd: int) -> str:
        limit = self.settings.max_bytes
        data = bytearray()
        while len(data) <= limit and (chunk := os.read(fd, min(1 << 16, limit + 1 - len(data)))):
            data += chunk
        text = decode(bytes(data[:limit]))
        return text + (f"\n[... cut at {limit} bytes]" if len(data) > limit else "")


def _open_error(error: OSError, path: str) -> ToolError:
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return ToolError(f"no such file or folder: {path}")
    if error.errno in (errno.EACCES, errno.EPERM):
        return ToolError("access denied: no permission")
    if error.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket
        return ToolError("not a regular file")
    return ToolError(f"cannot open: {os.strerror(error.errno or 0)}")


def decode(data: bytes) -> str:
    """Bytes as text: by BOM, else UTF-8 when valid, else the detected encoding (a guess
    for short texts); binary is refused."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16's: FF FE
        return data.decode("utf-32", errors="replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    if data.startswith(codecs.BOM_UTF8):
        return data.decode("utf-8-sig", errors="replace")
    if b"\x00" in data[:8192]:
        raise ToolError("binary file (not text)")
    for trim in range(4):  # a cut may split the last UTF-8 character
        try:
            return data[: len(data) - trim].decode("utf-8")
        except UnicodeDecodeError:
            continue
    from charset_normalizer import from_bytes

    if (best := from_bytes(data).best()) is None:
        raise ToolError("binary file or unknown encoding")
    return str(best)
