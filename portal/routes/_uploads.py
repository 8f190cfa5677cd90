"""Upload plumbing shared by the upload routes: receive the body to a temp dir, ingest every file."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Request

from portal import heap, settings as settings_mod, uploads
from portal.archive import IngestResult, ingest_path
from portal.archive.ingest import is_zip, ingest_files, record_audit
from portal.tables import Archive, Project

# The largest request body an upload route accepts; bigger ones get 413 before anything is stored.
MAX_UPLOAD_BYTES = 8 * 1024**3
# File parts of one request kept in memory up to this total (parsed, hashed and stored from memory, never
# spooled to disk and read back); the rest of a bigger upload is spooled.
UPLOAD_MEMORY_BYTES = 32 * 1024**2
# A request that held this much of it in memory has the heap's freed pages given back after it (heap.trim_soon).
TRIM_AFTER_BYTES = 8 * 1024**2


_made: set[Path] = set()


@asynccontextmanager
async def upload_dir():
    """Where a request's files are spooled: the data dir's scratch folder (same disk as storage, so a part is
    renamed into the store, never copied; large files never hit /tmp). What was not moved into the store is
    removed at the end; a crash's leftovers go at the next start (portal/cleanup.py)."""
    root = settings_mod.current().data_dir / "tmp"
    if root not in _made:
        root.mkdir(parents=True, exist_ok=True)
        _made.add(root)
    spool = uploads.Spool(root)
    try:
        yield spool
    finally:
        spool.discard()
        if spool.memory_bytes >= TRIM_AFTER_BYTES:
            heap.trim_soon()


async def receive_parts(request: Request, tmp: uploads.Spool, allowed: tuple[str, ...] | None = None) -> list[uploads.Part]:
    kw = {"allowed": allowed} if allowed else {}
    return await uploads.receive(request.stream(), request.headers.get("content-type", ""), tmp,
                                 max_total=MAX_UPLOAD_BYTES, memory=UPLOAD_MEMORY_BYTES, **kw)


def fields_of(parts: list[uploads.Part]) -> dict[str, str]:
    return {p.name: p.value.decode("utf-8", "replace") for p in parts if not p.is_file and p.name}


async def ingest_parts(parts: list[uploads.Part], project: Project, archive: Archive | None,
                       audit: Callable[[int], dict] | None = None) -> list[IngestResult]:
    """Ingest every file part (spooled files are moved into place); `audit(count)` gives the request's audit
    row, committed with its instances."""
    files = [p for p in parts if p.is_file]
    if any(p.data is None and is_zip(p.path) for p in files):  # zips expand to an unknown count: one by one
        results: list[IngestResult] = []
        for part in files:
            if part.data is not None:
                results.extend(await ingest_files([(part.data, part.filename)], project, archive))
            else:
                results.extend(await ingest_path(part.path, project, archive, filename=part.filename, move=True))
        if audit is not None:
            await record_audit(project, audit(len(results)))
        return results
    return await ingest_files([(p.source, p.filename) for p in files], project, archive, move=True,
                              audit=audit(len(files)) if audit is not None else None)
