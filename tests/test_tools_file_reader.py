"""R12: the file reader stays inside its root; files inside stay readable."""

from __future__ import annotations

import os
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
