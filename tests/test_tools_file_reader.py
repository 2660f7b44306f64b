"""R12: the file reader stays inside its root; files inside stay readable."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from massgen.errors import ConfigError, ToolError
from massgen.tools import FileReader


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("one\ntwo\nthree\nfour\n")
    (root / "sub" / "deep.md").write_text("# deep\n")
    evil = tmp_path / "root_evil"
    evil.mkdir()
    (evil / "secret.txt").write_text("SECRET-SIBLING")
    (tmp_path / "outside.txt").write_text("SECRET-OUTSIDE")
    (root / "link_out").symlink_to(tmp_path / "outside.txt")
    (root / "dir_out").symlink_to(evil, target_is_directory=True)
    (root / "link_in").symlink_to(root / "notes.txt")
    return root


@pytest.fixture
def reader(tree: Path) -> FileReader:
    return FileReader(root=str(tree))


ESCAPES = [
    "../outside.txt",
    "sub/../../outside.txt",
    "../root_evil/secret.txt",
    "../root/../root_evil/secret.txt",
    "link_out",
    "dir_out/secret.txt",
    "dir_out",
    "notes.txt\x00.png",
    "~/.ssh/id_rsa",
    "..",
]


@pytest.mark.parametrize("path", ESCAPES)
async def test_escapes_are_denied(reader: FileReader, path: str) -> None:
    with pytest.raises(ToolError, match="access denied|no such file"):
        await reader.run({"path": path})


async def test_absolute_paths_are_denied_even_inside_the_root(
    reader: FileReader, tree: Path
) -> None:
    for path in (str(tree.parent / "outside.txt"), str(tree / "notes.txt"), "/etc/passwd"):
        with pytest.raises(ToolError, match="access denied: absolute"):
            await reader.run({"path": path})


async def test_nothing_secret_comes_back_through_the_tool_box(reader: FileReader) -> None:
    from massgen.tools import ToolBox
    from massgen.types import ToolCall

    box = ToolBox([reader])
    for i, path in enumerate([*ESCAPES, "/etc/passwd"]):
        outcome = await box.call(ToolCall(str(i), "file_reader", {"path": path}))
        assert not outcome.ok
        assert "SECRET" not in outcome.content


async def test_files_inside_are_readable(reader: FileReader) -> None:
    assert await reader.run({"path": "notes.txt"}) == "one\ntwo\nthree\nfour\n"
    assert await reader.run({"path": "./sub/deep.md"}) == "# deep\n"
    assert await reader.run({"path": "sub/../notes.txt"}) == "one\ntwo\nthree\nfour\n"
    assert await reader.run({"path": "link_in"}) == "one\ntwo\nthree\nfour\n"
    assert await reader.run({"path": "notes.txt", "start_line": 2, "end_line": 3}) == (
        "2: two\n3: three"
    )


async def test_folders_are_listed(reader: FileReader) -> None:
    listing = await reader.run({})
    assert "notes.txt\t19 bytes" in listing and "sub/\tdir" in listing
    assert "link_out\tlink" in listing
    assert await reader.run({"path": "sub"}) == "deep.md\t7 bytes"


async def test_size_limit_encoding_and_binary(tree: Path) -> None:
    (tree / "big.txt").write_text("é" * 100)
    french = "Le café était très chaud; nous avons mangé une crème brûlée à côté. " * 20
    (tree / "latin.txt").write_bytes(french.encode("cp1252"))
    (tree / "blob.bin").write_bytes(b"\x89PNG\x00\x00\x01")
    small = FileReader(root=str(tree), max_bytes=11)
    assert await small.run({"path": "big.txt"}) == "é" * 5 + "\n[... cut at 11 bytes]"
    reader = FileReader(root=str(tree))
    latin = await reader.run({"path": "latin.txt"})  # detected: a best guess, never refused
    assert latin.startswith("Le caf") and len(latin) == len(french)
    (tree / "wide.txt").write_bytes("\ufeffhéllo wörld".encode("utf-16-le"))
    assert await reader.run({"path": "wide.txt"}) == "héllo wörld"
    with pytest.raises(ToolError, match="binary"):
        await reader.run({"path": "blob.bin"})
    with pytest.raises(ToolError, match="no such file"):
        await reader.run({"path": "missing.txt"})


def test_root_is_relative_to_the_config_folder(tmp_path: Path, tree: Path) -> None:
    reader = FileReader(root="root", base_dir=tmp_path)
    assert reader.root == tree.resolve()
    with pytest.raises(ConfigError) as err:
        FileReader(root="nope", base_dir=tmp_path)
    assert err.value.key == "root"


async def test_a_symlinked_root_is_resolved_once(tmp_path: Path, tree: Path) -> None:
    alias = tmp_path / "alias"
    os.symlink(tree, alias, target_is_directory=True)
    reader = FileReader(root=str(alias))
    assert await reader.run({"path": "notes.txt"}) == "one\ntwo\nthree\nfour\n"
    with pytest.raises(ToolError, match="access denied"):
        await reader.run({"path": "../root_evil/secret.txt"})


# -- R18: a tree that changes under the reader ----------------------------------------------------
class Swapper:
    """A thread that runs ``steps`` in turn, again and again, until stopped; each step
    changes the tree (``replacing`` makes steps that rename a fresh entry over a name)."""

    def __init__(self, steps: list[Callable[[], None]]) -> None:
        self.steps = steps
        self.stop = threading.Event()
        self.swaps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for step in self.steps:
                step()
                self.swaps += 1

    def __enter__(self) -> Swapper:
        # Threads take turns every few microseconds instead of every 5 ms, so swaps land
        # between any two steps of a read.
        self.interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        sys.setswitchinterval(self.interval)
        assert not self.thread.is_alive()


def replacing(target: Path, makers: list[Callable[[Path], None]]) -> list[Callable[[], None]]:
    """Steps that build each replacement under a temporary name and rename it over
    ``target`` (atomic: ``target`` always exists)."""

    def step(make: Callable[[Path], None], tmp: Path) -> Callable[[], None]:
        def run() -> None:
            make(tmp)
            os.replace(tmp, target)

        return run

    return [step(m, target.parent / f".swap{i}") for i, m in enumerate(makers)]


def regular(text: str) -> Callable[[Path], None]:
    return lambda p: p.write_text(text)


def link_to(target: str) -> Callable[[Path], None]:
    return lambda p: p.symlink_to(target)


READS = 2000
"""Reads at least, and swaps at least, interleaved; more reads are made (up to MAX_READS or
a 30 s deadline) until both counts and a good read are reached, whatever the scheduler."""
SWAPS = 300
MAX_READS = 200_000


def read_many(reader: FileReader, path: str, swapper: Swapper, reads: int = READS) -> Counter[str]:
    """Read ``path`` while ``swapper`` runs; the outcomes, counted (errors as ``error``)."""
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + 30
    for n in range(MAX_READS):
        try:
            seen[reader.execute(path)] += 1
        except ToolError:
            seen["error"] += 1
        if n >= reads and swapper.swaps >= SWAPS and seen["INSIDE"]:
            break
        if time.monotonic() > deadline:
            break
    assert swapper.swaps >= SWAPS and seen["INSIDE"], (swapper.swaps, seen)
    return seen


def test_a_file_swapped_for_a_symlink_out_never_leaks(tree: Path) -> None:
    reader = FileReader(root=str(tree))
    swaps = replacing(tree / "race.txt", [regular("INSIDE"), link_to("../outside.txt")])
    with Swapper(swaps) as swapper:
        seen = read_many(reader, "race.txt", swapper)
    assert "SECRET-OUTSIDE" not in seen
    assert set(seen) <= {"INSIDE", "error"}


def test_a_folder_swapped_for_a_symlink_out_never_leaks(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "f.txt").write_text("SECRET-ELSEWHERE")
    mid, aside = tree / "mid", tree / ".aside"
    mid.mkdir()
    (mid / "f.txt").write_text("INSIDE")

    def to_link(target: str) -> Callable[[], None]:
        def run() -> None:
            mid.rename(aside)
            mid.symlink_to(target, target_is_directory=True)

        return run

    def to_folder() -> None:
        mid.unlink()
        aside.rename(mid)

    # `mid`, in the middle of the path: a real folder, then a link out of the root
    steps = [to_link("../elsewhere"), to_folder, to_link(str(outside)), to_folder]
    reader = FileReader(root=str(tree))
    with Swapper(steps) as swapper:
        # a folder swap takes two steps, so the window is rarer: more reads
        seen = read_many(reader, "mid/f.txt", swapper, reads=10 * READS)
    assert set(seen) <= {"INSIDE", "error"}


def test_symlinked_folders_in_the_middle_of_the_path(tree: Path, tmp_path: Path) -> None:
    (tree / "sub_rel").symlink_to("sub", target_is_directory=True)
    (tree / "sub_abs").symlink_to(tree / "sub", target_is_directory=True)
    (tree / "sub" / "up").symlink_to("..", target_is_directory=True)
    (tree / "chain").symlink_to("sub_rel", target_is_directory=True)
    (tree / "loop_a").symlink_to("loop_b")
    (tree / "loop_b").symlink_to("loop_a")
    (tree / "sub" / "escape").symlink_to("../../root_evil", target_is_directory=True)
    reader = FileReader(root=str(tree))
    for path in ("sub_rel/deep.md", "sub_abs/deep.md", "chain/deep.md", "sub/up/sub/deep.md"):
        assert reader.execute(path) == "# deep\n", path
    # `..` after a link is the parent of where the link leads, as the kernel has it
    assert reader.execute("sub_rel/../notes.txt") == "one\ntwo\nthree\nfour\n"
    for path in ("dir_out/secret.txt", "sub/escape/secret.txt", "sub_rel/../../outside.txt"):
        with pytest.raises(ToolError, match="access denied"):
            reader.execute(path)
    with pytest.raises(ToolError, match="too many symbolic links"):
        reader.execute("loop_a")
    with pytest.raises(ToolError, match="no such file"):
        reader.execute("notes.txt/x")


def test_a_hard_link_to_an_outside_file_is_refused(tree: Path) -> None:
    os.link(tree.parent / "outside.txt", tree / "hard.txt")
    with pytest.raises(ToolError, match="hard links"):
        FileReader(root=str(tree)).execute("hard.txt")
    assert "hard.txt\t14 bytes" in FileReader(root=str(tree)).execute(".")
    trusting = FileReader(root=str(tree), allow_hard_links=True)
    assert trusting.execute("hard.txt") == "SECRET-OUTSIDE"  # the documented opt-in


_FIFO_PROBE = """
import os, sys, threading
from massgen.errors import ToolError
from massgen.tools import FileReader

root = sys.argv[1]
reader = FileReader(root=root)
try:
    reader.execute("pipe")
    print("read")
except ToolError as e:
    print("refused:", e)

# a file and a FIFO swapped under the reader
stop = threading.Event()
def swap():
    while not stop.is_set():
        with open(os.path.join(root, ".f"), "w") as f:
            f.write("INSIDE")
        os.replace(os.path.join(root, ".f"), os.path.join(root, "flip"))
        os.mkfifo(os.path.join(root, ".p"))
        os.replace(os.path.join(root, ".p"), os.path.join(root, "flip"))
thread = threading.Thread(target=swap, daemon=True)
thread.start()
outcomes = set()
for _ in range(2000):
    try:
        outcomes.add(reader.execute("flip"))
    except ToolError:
        outcomes.add("error")
stop.set()
thread.join()
print(sorted(outcomes))
"""


def test_a_fifo_is_refused_at_once_and_the_process_exits(tree: Path) -> None:
    """In a process of its own: a reader stuck in open() would keep it from ever exiting."""
    os.mkfifo(tree / "pipe")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _FIFO_PROBE, str(tree)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert time.monotonic() - started < 20
    first, swapped = done.stdout.splitlines()
    assert first == "refused: not a regular file"
    assert swapped in ("['INSIDE', 'error']", "['error']")  # never blocked, never else
    assert "pipe\tspecial" in FileReader(root=str(tree)).execute(".")


async def test_a_root_removed_after_setup_is_an_error_not_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "gone"
    root.mkdir()
    reader = FileReader(root=str(root))
    root.rmdir()
    with pytest.raises(ToolError, match="cannot be opened"):
        await reader.run({"path": "."})
