"""Writing multipart/related bodies part by part, so stored files stream instead of sitting in memory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One body part: bytes in memory, or a file read in chunks as the body is sent."""

    content_type: str
    data: bytes = b""
    path: Path | None = None
    location: str = ""


def new_boundary() -> str:
    return uuid.uuid4().hex


def content_type(media_type: str, boundary: str) -> str:
    return f'multipart/related; type="{media_type}"; boundary={boundary}'


def _head(part: Part, boundary: str) -> bytes:
    """The boundary line and the part's headers, up to the blank line before its content."""
    head = f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
    if part.location:
        head += f"Content-Location: {part.location}\r\n"
    return (head + "\r\n").encode("ascii")


def _end(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("ascii")


def body(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """The body, chunk by chunk. `parts` may be a generator: each part is made only when it is sent."""
    for part in parts:
        yield _head(part, boundary)
        if part.path is not None:
            with open(part.path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        else:
            yield part.data
        yield b"\r\n"
    yield _end(boundary)


async def abody(parts: list[Part], boundary: str) -> AsyncIterator[bytes]:
    """`body` for the event loop: each file read in one thread hop (chunked only when large)."""
    for part in parts:
        yield _head(part, boundary)
        if part.path is not None:
            f = await asyncio.to_thread(open, part.path, "rb")
            try:
                while chunk := await asyncio.to_thread(f.read, 8 * CHUNK):
                    yield chunk
            finally:
                f.close()
        else:
            yield part.data
        yield b"\r\n"
    yield _end(boundary)
