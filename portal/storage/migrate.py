"""`lightbox storage migrate --to URL`: copy every stored file into another store, each MD5 verified there.

Resumable: each verified key is appended to a journal in the data dir (one per destination), so a run that
stopped (or was stopped) carries on where it was. The source is left as it was: once the run reports all
files verified, point LIGHTBOX_STORAGE_URL at the destination and restart the processes."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from portal.dicom.store import CHUNK
from portal.errors import Invalid

PARALLEL = 8


@dataclass
class MigrateResult:
    total: int = 0
    copied: int = 0
    already: int = 0  # verified by an earlier run (the journal)
    bytes: int = 0
    failed: list[str] = field(default_factory=list)  # "key: why"


def md5_in(store, key: str) -> str:
    """The MD5 of what `store` holds at `key`: from S3's ETag when it is one (a single-part PUT), else read."""
    etag = getattr(store, "etag_md5", None)
    if etag is not None:
        known = etag(key)
        if known:
            return known
    md5 = hashlib.md5()
    for block in store.iter_bytes(key, 8 * CHUNK):
        md5.update(block)
    return md5.hexdigest()


def journal_path(data_dir: Path, dest_url: str) -> Path:
    return data_dir / f"storage-migrate-{hashlib.sha1(dest_url.encode()).hexdigest()[:12]}.done"


def migrate(src, dest, journal: Path, expected_md5: dict[str, str], on_progress=None) -> MigrateResult:
    """Copy every key of `src` to `dest` (blocking; parallel copies), verify each copy's MD5 against the
    source's (and the database's, for instance files), and journal the verified keys."""
    if src.url == dest.url:
        raise Invalid("The destination is the store in use; name another one.", "same_store")
    done = set(journal.read_text().split()) if journal.exists() else set()
    keys = [(k, size) for k, size in src.keys()]
    result = MigrateResult(total=len(keys))
    todo = [(k, size) for k, size in keys if k not in done]
    result.already = len(keys) - len(todo)
    if on_progress:
        on_progress(result.already)

    def copy(item: tuple[str, int]) -> tuple[str, int, str]:
        key, size = item
        try:
            want = expected_md5.get(key)
            if want:  # checked before anything is written: a damaged file never replaces a good copy
                have = md5_in(src, key)
                if have != want:
                    return key, 0, f"the source file's MD5 {have} is not the recorded {want} (damaged at the source)"
            with src.open(key) as f:
                stored = dest.put_fileobj(f, key)
            there = md5_in(dest, key)
            if there != stored.md5:
                return key, 0, f"the copy's MD5 {there} differs from the source's {stored.md5}"
            return key, stored.size, ""
        except Exception as exc:  # one file's failure is reported; the others go on
            return key, 0, f"{type(exc).__name__}: {exc}"

    journal.parent.mkdir(parents=True, exist_ok=True)
    with open(journal, "a", encoding="ascii") as log, ThreadPoolExecutor(PARALLEL) as pool:
        for key, size, why in pool.map(copy, todo):
            if why:
                result.failed.append(f"{key}: {why}")
            else:
                log.write(key + "\n")
                log.flush()
                os.fsync(log.fileno())
                result.copied += 1
                result.bytes += size
            if on_progress:
                on_progress(1)
    return result
