"""Receiving uploaded files: a streaming multipart parser (form-data and related) that writes each
file part straight to disk, so a large upload never sits in memory."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

from portal.dicom import sanitize_filename
from portal.errors import Invalid, TooLarge, UnsupportedMediaType

MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024


class Spool:
    """Where the file parts of one request are written: files in a shared folder, each removed by `discard()`
    unless it was moved into the store meanwhile (no folder made and removed per request)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.paths: list[Path] = []
        self.memory_bytes = 0  # of file parts kept in memory instead (see parse_multipart's `memory`)

    def create(self, prefix: str, suffix: str):
        """A new empty file: (open binary writer, its path)."""
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=self.folder)
        path = Path(tmp)
        self.paths.append(path)
        return os.fdopen(fd, "wb"), path

    def discard(self) -> None:
        for path in self.paths:
            try:
                os.unlink(path)
            except FileNotFoundError:  # moved into the store
                pass
        self.paths.clear()


def _spool(where: "Path | Spool") -> "Spool":
    return where if isinstance(where, Spool) else Spool(Path(where))


@dataclass
class Part:
    headers: dict[str, str]
    name: str = ""
    filename: str = ""
    content_type: str = ""
    path: Path | None = None
    data: bytes | None = None  # a file part kept in memory (see `memory` of `receive`)
    value: bytes = b""
    size: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        return self.path is not None or self.data is not None

    @property
    def source(self) -> "Path | bytes":
        """What ingest takes: the bytes when in memory, else the spooled file."""
        return self.data if self.data is not None else self.path


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """'multipart/related; type="application/dicom"; boundary=x' → ('multipart/related', {...})."""
    main, _, rest = (content_type or "").partition(";")
    params = {}
    for m in re.finditer(r';?\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', ";" + rest):
        value = m.group(2).strip()
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1].replace('\\"', '"')
        params[m.group(1).lower()] = value
    return main.strip().lower(), params


def _parse_headers(raw: bytes) -> dict[str, str]:
    headers = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return headers


def _disposition(value: str) -> dict[str, str]:
    _, params = media_type(value)
    return params


ZIP_MAGIC = b"PK\x03\x04"


async def parse_multipart(chunks: AsyncIterator[bytes], boundary: str, tmpdir: "Path | Spool", *,
                          max_total: int, max_parts: int = 20000, memory: int = 0) -> list[Part]:
    """Split a multipart body into parts: file parts land in `tmpdir` (a folder or a Spool), small fields stay
    in memory. With `memory`, file parts are kept in memory (`Part.data`) while the request's total stays
    within that many bytes: they are parsed, hashed and written to the store from there, never spooled and
    read back. Zips always go to disk (they are expanded from a file).

    The body is read by offset from one buffer: gathered whole and joined once when it is small enough (see
    GATHER_BYTES), else grown as it arrives; a part kept in memory is copied out of it once, whatever the sizes
    of the chunks the server hands over."""
    if not boundary or len(boundary) > 200:
        raise Invalid("The multipart body has no usable boundary parameter.", "no_boundary")
    it = chunks.__aiter__()
    try:
        head, ended = await _gather(it, min(memory, GATHER_BYTES), max_total) if memory > 0 else ([], False)
        return await _split(it, boundary, tmpdir, max_total=max_total, max_parts=max_parts, memory=memory,
                            head=head, ended=ended)
    finally:
        # Closed here: an async generator left unfinished (the body's stream, once the closing delimiter is
        # read) is closed for the garbage collector through call_soon_threadsafe, a wake-up of the loop (two
        # system calls, each a hand-over of the GIL to a thread parsing another upload) on every request.
        if (aclose := getattr(it, "aclose", None)) is not None:
            await aclose()


# A body up to this size (within the memory allowed) is gathered whole before it is split: one copy of it, where
# growing the buffer chunk by chunk re-copied it at each step (a fifth of an upload's time on the event loop).
GATHER_BYTES = 8 * 1024**2


async def _gather(it: AsyncIterator[bytes], limit: int, max_total: int) -> tuple[list[bytes], bool]:
    """The body's first chunks, up to about `limit` bytes: (chunks, whether that was the whole body)."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        try:
            chunk = await it.__anext__()
        except StopAsyncIteration:
            return chunks, True
        chunks.append(chunk)
        total += len(chunk)
        if total > max_total:
            raise TooLarge(f"The upload is larger than the limit of {max_total // 2**20} MB.", "too_large")
    return chunks, False


async def _split(it: AsyncIterator[bytes], boundary: str, tmpdir: "Path | Spool", *, max_total: int,
                 max_parts: int, memory: int, head: list[bytes] | tuple = (), ended: bool = False) -> list[Part]:
    """Split the body: `head` its chunks already received (`ended`: all of it), the rest still in `it`."""
    spool = _spool(tmpdir)
    room = memory
    delim = b"\r\n--" + boundary.encode("latin-1")
    tail = len(delim) - 1  # bytes at the buffer's end that may be the start of a delimiter
    # The leading CRLF lets the first boundary match the same delimiter as the others. A whole body stays the
    # one bytes object joined here (never grown, so never copied again).
    buf: bytes | bytearray = b"".join([b"\r\n", *head])
    if not ended:
        buf = bytearray(buf)
    pos = 0  # where the unread data starts in buf; offsets held across more() are kept relative to it
    total = len(buf) - 2

    async def more() -> bool:
        nonlocal total, pos
        if ended:
            return False
        try:
            chunk = await it.__anext__()
        except StopAsyncIteration:
            return False
        total += len(chunk)
        if total > max_total:
            raise TooLarge(f"The upload is larger than the limit of {max_total // 2**20} MB.", "too_large")
        if pos > 65536 and 2 * pos >= len(buf):  # drop what was read (rarely: a part in memory holds pos)
            del buf[:pos]
            pos = 0
        buf.extend(chunk)
        return True

    def take(start: int, end: int) -> bytes:
        with memoryview(buf) as view:
            return bytes(view[start:end])

    def write(out, start: int, end: int) -> None:
        with memoryview(buf) as view:
            out.write(view[start:end])

    while (i := buf.find(delim, pos)) < 0:
        pos = max(pos, len(buf) - tail)  # the preamble is ignored
        if not await more():
            raise Invalid("The body is not multipart: its boundary never appears.", "no_data_submitted")
    pos = i + len(delim)

    parts: list[Part] = []
    while True:
        while len(buf) - pos < 2:
            if not await more():
                raise Invalid("The multipart body ends early (truncated).", "truncated")
        if buf[pos:pos + 2] == b"--":
            return parts
        while (eol := buf.find(b"\r\n", pos)) < 0:  # the rest of the boundary line (transport padding)
            if len(buf) - pos > MAX_HEADER_BYTES or not await more():
                raise Invalid("The multipart body is malformed.", "malformed_multipart")
        pos = eol + 2
        while len(buf) - pos < 2:
            if not await more():
                raise Invalid("The multipart body ends early (truncated).", "truncated")
        if buf[pos:pos + 2] == b"\r\n":
            headers, pos = {}, pos + 2
        else:
            while (end := buf.find(b"\r\n\r\n", pos)) < 0:
                if len(buf) - pos > MAX_HEADER_BYTES or not await more():
                    raise Invalid("A part's headers are malformed or too long.", "malformed_multipart")
            headers, pos = _parse_headers(bytes(buf[pos:end])), end + 4
        if len(parts) >= max_parts:
            raise TooLarge(f"More than {max_parts} parts in one request.", "too_many_parts")
        disp = _disposition(headers.get("content-disposition", ""))
        part = Part(headers=headers, name=disp.get("name", ""), filename=disp.get("filename", ""),
                    content_type=media_type(headers.get("content-type", ""))[0])
        is_file = bool(part.filename) or "content-disposition" not in headers or (
            part.content_type not in ("", "text/plain"))
        out = None
        if is_file:
            if room <= 0:
                out, part.path = spool.create("part-", ".bin")
            part.filename = sanitize_filename(part.filename or f"part-{len(parts) + 1}")

        def settle(upto: int) -> None:
            """What is known to be this part's, up to `upto`: to disk when it goes there, else checked."""
            nonlocal out, pos
            if upto <= pos:
                return
            if out is None and is_file and (upto - pos > room or buf[pos:pos + 4] == ZIP_MAGIC):
                out, part.path = spool.create("part-", ".bin")  # past the memory allowed, or a zip: to disk
            if out is not None:
                write(out, pos, upto)
                part.size += upto - pos
                pos = upto
            elif not is_file and upto - pos > MAX_FIELD_BYTES:
                raise TooLarge(f"Form field '{part.name}' is too long.", "field_too_long")

        try:
            scan = pos
            while (i := buf.find(delim, scan)) < 0:
                settle(len(buf) - tail)
                ahead = max(len(buf) - tail, pos) - pos  # searched already, relative to pos
                if not await more():
                    raise Invalid("The multipart body ends early (truncated).", "truncated")
                scan = pos + ahead
            settle(i)
            if out is None:
                value = take(pos, i)
                part.size = len(value)
                if is_file:
                    part.data = value
                    room -= len(value)
                    spool.memory_bytes += len(value)
                else:
                    part.value = value
            pos = i + len(delim)
        finally:
            if out is not None:
                out.close()
        parts.append(part)


async def receive(request_stream: AsyncIterator[bytes], content_type: str, tmpdir: "Path | Spool", *,
                  max_total: int, allowed: tuple[str, ...] = ("multipart/form-data", "multipart/related",
                                                               "application/dicom"), memory: int = 0) -> list[Part]:
    """Parts of an upload body: multipart (form-data or related) or a single application/dicom body.
    `memory`: see parse_multipart."""
    media, params = media_type(content_type)
    if media not in allowed:
        raise UnsupportedMediaType(
            f"Unsupported content type '{media or '(none)'}': send {', '.join(allowed)}.", "unsupported_media_type")
    if media.startswith("multipart/"):
        return await parse_multipart(request_stream, params.get("boundary", ""), tmpdir, max_total=max_total,
                                     memory=memory)
    out, tmp = _spool(tmpdir).create("body-", ".dcm")
    size = 0
    with out:
        async for chunk in request_stream:
            size += len(chunk)
            if size > max_total:
                raise TooLarge(f"The upload is larger than the limit of {max_total // 2**20} MB.", "too_large")
            out.write(chunk)
    return [Part(headers={"content-type": media}, filename="body.dcm", content_type=media, path=tmp, size=size)]
