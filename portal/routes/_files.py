"""Stored files as HTTP responses: streamed from the store in chunks, one byte range when asked (206)."""

from __future__ import annotations

import asyncio
import re

from litestar import Request, Response
from litestar.response import Stream

from portal.dicom.store import sanitize_filename
from portal.errors import NotFound

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
CHUNK = 1 << 20


async def stored_file(request: Request | None, store, key: str, *, media_type: str, filename: str,
                      inline: bool = False, headers: dict | None = None) -> Response:
    """The file of `key` in `store` (portal/storage): whole, or the single `Range: bytes=…` asked for."""
    try:
        size = await asyncio.to_thread(store.size, key)
    except FileNotFoundError as exc:
        raise NotFound("The stored file is missing; ask an administrator to restore it.", "file_not_found") from exc
    out = {"Accept-Ranges": "bytes", **(headers or {}),
           "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{sanitize_filename(filename)}"'}
    wanted = request.headers.get("range", "") if request is not None else ""
    m = _RANGE.fullmatch(wanted.strip()) if wanted else None
    if m and (m.group(1) or m.group(2)):
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1, size) if m.group(2) else size
        else:  # the last N bytes
            start, end = max(size - int(m.group(2)), 0), size
        if start >= size or end <= start:
            return Response(b"", status_code=416, headers={**out, "Content-Range": f"bytes */{size}"})
        data = await asyncio.to_thread(store.read_range, key, start, end)
        return Response(data, status_code=206, media_type=media_type,
                        headers={**out, "Content-Range": f"bytes {start}-{end - 1}/{size}"})
    return Stream(_chunks(store, key), media_type=media_type, headers={**out, "Content-Length": str(size)})


async def _chunks(store, key: str):
    it = await asyncio.to_thread(store.iter_bytes, key, CHUNK)
    while (chunk := await asyncio.to_thread(next, it, None)) is not None:
        yield chunk
