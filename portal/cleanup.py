"""Clean restarts: what a crash leaves behind is removed when a server or worker starts.

- partial temp files of an atomic write that never got its rename: the image store's own (the store removes
  them: `remove_partials`) and those under the exports folder;
- scratch folders and files in the data dir (spooled uploads, expanded zips, demo scratch), local to each
  machine;
- instance files in the store (local disk or S3, through the storage seam) that no instance row names
  (placed by an ingest or import that died before its commit).

Only what has not changed for `older_than` (a few minutes) goes: a second process starting beside a running
one must not take the file another one is writing. The store is left alone while an import runs anywhere,
since an import places its images first and commits their rows at the end (exchange/importer.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import shutil
import time
from pathlib import Path

from portal import clock

log = logging.getLogger("lightbox.cleanup")

ORPHAN_AGE = dt.timedelta(minutes=5)
_INSTANCE_KEY = re.compile(r"([0-9a-f]{2})/([0-9a-f]{2})/(\1\2[0-9a-f]{36})\.dcm")  # key_for's: ab/cd/<sha1>.dcm
_PARTIAL = re.compile(r"\.tmp-.*\.(part|dcm)|\..+\.[A-Za-z0-9_]{8}\.part")  # exporter / de-identifier
_SCRATCH = re.compile(r"lightbox-zip-.+|tmp[A-Za-z0-9_]{8}")  # zip expansion, demo (tempfile's default names)


def _changed(path: Path) -> float:
    """When `path` was last written."""
    return path.stat().st_mtime


def _newest(path: Path) -> float:
    """The last change anywhere under a folder (a folder whose upload is still arriving is in use)."""
    newest = _changed(path)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                newest = max(newest, _changed(Path(root) / name))
            except OSError:
                pass
    return newest


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
        return False


def sweep_scratch(data_dir: Path, store, older_than: dt.timedelta | None = None) -> int:
    """Remove partial temp files (the store's, and the exports folder's) and the data dir's scratch folders
    unchanged for `older_than` (default ORPHAN_AGE); returns how many."""
    older_than = ORPHAN_AGE if older_than is None else older_than
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    tmp = data_dir / "tmp"  # spooled uploads (routes/_uploads.py), C-STORE scratch (dimse.py)
    for entry in (sorted(tmp.iterdir()) if tmp.is_dir() else []):
        try:
            if _newest(entry) < cutoff:
                removed += _remove(entry)
        except OSError:
            pass
    for entry in (sorted(data_dir.iterdir()) if data_dir.is_dir() else []):
        try:
            if entry.is_dir() and _SCRATCH.fullmatch(entry.name) and _newest(entry) < cutoff:
                removed += _remove(entry)
        except OSError:
            pass
    removed += store.remove_partials(older_than)
    for root, _dirs, files in os.walk(data_dir / "exports"):
        for name in files:
            if name.startswith(".") and _PARTIAL.fullmatch(name):
                path = Path(root) / name
                try:
                    if _changed(path) < cutoff:
                        removed += _remove(path)
                except OSError:
                    pass
    return removed


async def _instance_keys() -> set[str]:
    from portal.tables import Instance

    keys: set[str] = set()
    last = 0
    while True:  # in pages, by id: one query per 50,000 rows, whatever the database's size
        rows = await Instance.select(Instance.id, Instance.file_key).where(Instance.id > last).order_by(
            Instance.id).limit(50_000)
        if not rows:
            return keys
        keys.update(r["file_key"] for r in rows)
        last = rows[-1]["id"]


async def sweep_store(store, older_than: dt.timedelta | None = None) -> int:
    """Remove instance files of `store` that no instance row names, unchanged for `older_than` (default
    ORPHAN_AGE); returns how many. Skipped (0) while an import or sync is running, since it has placed files
    whose rows are not committed."""
    from portal.exchange import runs
    from portal.tables import SyncRun

    if await SyncRun.exists().where(SyncRun.kind.is_in(list(runs.MERGING)) & (SyncRun.state == runs.RUNNING)):
        log.info("an import is running: stored files are checked at the next start")
        return 0
    older_than = ORPHAN_AGE if older_than is None else older_than
    cutoff = clock.now() - older_than
    keys = await _instance_keys()

    def sweep() -> int:
        removed = 0
        # The whole listing (one request per 1,000 objects on S3); only instance files are candidates: the
        # AI assets, mail attachments and export copies have rows of their own and other names.
        for entry in store.entries():
            if entry.modified < cutoff and _INSTANCE_KEY.fullmatch(entry.key) and entry.key not in keys:
                try:
                    store.delete(entry.key)
                    removed += 1
                except Exception as exc:  # one object's failure (S3 answering 5xx) leaves the others to go
                    log.warning("could not remove stored file %s: %s", entry.key, exc)
        return removed

    return await asyncio.to_thread(sweep)
