"""The storage seam: image files, AI assets and export copies, on local disk or in an S3-compatible store.

`current()` is the store LIGHTBOX_STORAGE_URL names (default: the data dir's `files` folder). Every store
has the same methods (portal/dicom/store.py's FileStore is the local one, portal/storage/s3.py the S3 one):
put/put_fileobj/put_bytes/place (durable when they return), exists/size, open (a seekable binary file),
read_bytes, read_range, iter_bytes, local_copy (a file for readers that need one), entries (key, size, time
last written) and keys (key, size), delete, remove_partials (what a killed write left), uri (how another
system names a stored file), key_of_uri, presigned_url (S3 only; None on local disk)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from portal.dicom.store import Entry, FileStore, StoredFile, check_key

LocalStore = FileStore


def open_store(url: str, default_root: str | Path | None = None):
    """The store of `url`: `s3://…` for S3, a path (or `file://` path) for local disk, empty for `default_root`."""
    if url.startswith("s3://"):
        from portal.storage.s3 import S3Store

        return S3Store(url)
    if url.startswith("file://"):
        url = url[len("file://"):]
    root = Path(url).expanduser() if url else Path(default_root)
    return FileStore(root.resolve())


_stores: dict = {}


def current():
    """The store of the running process's settings (one client per URL, kept: it pools its connections)."""
    from portal import settings as settings_mod

    s = settings_mod.current()
    ident = (s.storage_url, str(s.storage_dir))
    store = _stores.get(ident)
    if store is None:
        store = _stores[ident] = open_store(s.storage_url, s.storage_dir)
    return store


def local_key_finder() -> Callable[[Path], str | None]:
    """A function giving the key of a resolved path (symlinks followed) when it is a file of an image store on
    this machine's disk, else None: of the configured store when it is local, and either way of the data dir's
    `files` folder (with S3 configured it may still hold the files `storage migrate` copied from: every
    project's images, so still guarded). Built once per import: it is asked once per frame."""
    from portal import settings as settings_mod

    store = current()
    roots = [store.root.resolve()] if store.kind == "local" else []
    roots.append(Path(settings_mod.current().storage_dir).resolve())

    def key_of(real: Path) -> str | None:
        for root in roots:
            if root in real.parents:
                return real.relative_to(root).as_posix()
        return None

    return key_of


@contextlib.contextmanager
def local_copies(keys: list[str], store=None):
    """Local files with the content of `keys` (in order) while the block runs, for readers that need files
    (the model process, fine-tuning): the stored files themselves on local disk, temporary copies from S3."""
    store = store or current()
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(store.local_copy(k)) for k in keys]


__all__ = ["Entry", "FileStore", "LocalStore", "StoredFile", "check_key", "current", "local_copies", "local_key_finder",
           "open_store"]
