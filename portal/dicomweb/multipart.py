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
        if part.chunks is not None:
            yield from part.chunks()
        else:
            yield part.data
        yield b"\r\n"
    yield _end(boundary)


READ_AHEAD = 4 * CHUNK  # bytes made ready per thread hop by `abody`


class _Reader:
    """The parts of a body, made (a generator may transcode) and read in steps of about READ_AHEAD bytes: a
    small file in one read, a large one in chunks."""

    def __init__(self, parts: Iterable[Part], boundary: str):
        self.parts, self.boundary = iter(parts), boundary
        self.file = None  # the iterator of the current stored part's chunks
        self.done = False

    def step(self) -> list[bytes]:
        out: list[bytes] = []
        size = 0
        while size < READ_AHEAD and not self.done:
            if self.file is not None:
                chunk = next(self.file, None)
                if chunk is not None:
                    out.append(chunk)
                    size += len(chunk)
                    continue
                self.close()
                out.append(b"\r\n")
                continue
            part = next(self.parts, None)
            if part is None:
                out.append(_end(self.boundary))
                self.done = True
                break
            out.append(_head(part, self.boundary))
            if part.chunks is not None:
                self.file = iter(part.chunks())
            else:
                out += [part.data, b"\r\n"]
                size += len(part.data)
        return out

    def close(self) -> None:
        if self.file is not None:
            close = getattr(self.file, "close", None)  # a generator: its `finally` closes the stored file
            if close is not None:
                close()
            self.file = None


async def abody(parts: Iterable[Part], boundary: str) -> AsyncIterator[bytes]:
    """`body` for the event loop: parts made and files read in thread hops of a few MB each (three hops per
    file were more than the reads), never on the loop."""
    reader = _Reader(parts, boundary)
    try:
        while chunks := await asyncio.to_thread(reader.step):
            for chunk in chunks:
                yield chunk
    finally:
        reader.close()
