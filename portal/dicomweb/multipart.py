"""Writing multipart/related bodies part by part, so stored files stream instead of sitting in memory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass

CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One body part: bytes in memory, or a stored file read in chunks as the body is sent (`chunks` makes
    the iterator of its bytes: the store's `iter_bytes`)."""

    content_type: str
    data: bytes = b""
    chunks: Callable[[], Iterator[bytes]] | None = None
    location: str = ""


def new_boundary() -> str:
    return uuid.uuid4().hex


def content_type(media_type: str, boundary: str) -> str:
    return f'multipart/related; type="{media_type}"; boundary={boundary}'


def body(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """The body, chunk by chunk. `parts` may be a generator: each part is made only when it is sent."""
    for part in parts:
        head = f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
        if part.location:
            head += f"Content-Location: {part.location}\r\n"
        yield (head + "\r\n").encode("ascii")
        if part.chunks is not None:
            yield from part.chunks()
        else:
            yield part.data
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


async def abody(parts: list[Part], boundary: str) -> AsyncIterator[bytes]:
    """`body` for the event loop: each file read in one thread hop (chunked only when large)."""
    for part in parts:
        head = f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
        if part.location:
            head += f"Content-Location: {part.location}\r\n"
        yield (head + "\r\n").encode("ascii")
        if part.chunks is not None:
            it = await asyncio.to_thread(part.chunks)
            while (chunk := await asyncio.to_thread(next, it, None)) is not None:
                yield chunk
        else:
            yield part.data
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")
