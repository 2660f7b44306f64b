"""Images in tool results (issue 13: an MCP server's, or any tool's): a tool returns a
:class:`ToolOutput`; :func:`attach` keeps the images the model may be sent and leaves a note
in the text where each one was. The adapters put them in their providers' wire formats."""

from __future__ import annotations

from dataclasses import dataclass

from massgen.types import Image

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")  # every provider takes
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # Anthropic's cap per image; larger ones become a note


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """A result with images: text and images in their order. The toolbox attaches the images
    where the model takes them and leaves a note in their place (docs/tools.md)."""

    parts: tuple[str | Image, ...]


def attach(out: str | ToolOutput, images: bool) -> tuple[str, tuple[Image, ...]]:
    """A result's text, each image noted in its place, and the images to send: those of a
    type and size every provider takes, when the model takes images (``images``)."""
    if isinstance(out, str):
        return out, ()
    texts: list[str] = []
    kept: list[Image] = []
    for part in out.parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        why = "not shown to the model"
        if images and part.mime_type not in IMAGE_TYPES:
            why = "not shown: a type the model does not take"
        elif images and part.size > MAX_IMAGE_BYTES:
            why = f"not shown: over {MAX_IMAGE_BYTES // 2**20} MB"
        elif images:
            why, kept = f"attached as image {len(kept) + 1}", [*kept, part]
        texts.append(f"[image {part.mime_type}, {part.size} bytes: {why}]")
    return "\n".join(texts), tuple(kept)
