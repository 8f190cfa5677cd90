"""Stored files as objects in an S3-compatible store (AWS S3, MinIO, Ceph), through obstore.

obstore (Rust's object_store) was chosen over boto3/aiobotocore and s3fs: one small wheel with no botocore,
a sync API that releases the GIL (the store is called from worker threads, as the local store is) and an
async one, multipart uploads with parallel parts, ranged reads, seekable readers and presigned URLs."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, urlparse

import obstore
from obstore.store import S3Store as _ObS3

from portal.dicom.store import CHUNK, Entry, FileStore, StoredFile, check_key
from portal.errors import Invalid

MULTIPART_THRESHOLD = 16 << 20
"""Files above this go up as a multipart upload (parts of PART_SIZE sent in parallel); below, one PUT."""
PART_SIZE = 8 << 20
IN_MEMORY = 32 << 20
"""`open` reads an object this small into memory at once; a bigger one through a seekable ranged reader."""


def parse_url(url: str) -> dict:
    """`s3://BUCKET[/PREFIX]?endpoint=URL[&region=R]` → its parts; Invalid when it is not such a URL."""
    u = urlparse(url)
    if u.scheme != "s3" or not u.netloc:
        raise Invalid(f"LIGHTBOX_STORAGE_URL {url!r} is not s3://BUCKET[/PREFIX]?endpoint=URL.", "bad_storage_url")
    query = {k: v[-1] for k, v in parse_qs(u.query).items()}
    unknown = set(query) - {"endpoint", "region"}
    if unknown:
        raise Invalid(f"LIGHTBOX_STORAGE_URL has unknown parameters {sorted(unknown)}; use endpoint and region.",
                      "bad_storage_url")
    return {"bucket": u.netloc, "prefix": u.path.strip("/"), "endpoint": query.get("endpoint", ""),
            "region": query.get("region", "")}


class S3Store:
    """Objects `PREFIX/<key>` in `BUCKET`. Credentials and region come from the standard AWS_* variables
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION or AWS_DEFAULT_REGION)."""

    kind = "s3"
    key_for = staticmethod(FileStore.key_for)

    def __init__(self, url: str):
        self.url = url
        parts = parse_url(url)
        self.bucket, self.prefix, self.endpoint = parts["bucket"], parts["prefix"], parts["endpoint"]
        options = {}
        if self.endpoint.startswith("http://"):
            options["allow_http"] = True
        config = {}
        region = parts["region"] or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            config["region"] = region
        if self.endpoint:
            config["endpoint"] = self.endpoint
        self._store = _ObS3(self.bucket, prefix=self.prefix or None, config=config, client_options=options)

    # -- reading ---------------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            obstore.head(self._store, check_key(key))
        except FileNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        return obstore.head(self._store, check_key(key))["size"]

    def read_bytes(self, key: str) -> bytes:
        return bytes(obstore.get(self._store, check_key(key)).bytes())

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object."""
        if end <= start:
            return b""
        return bytes(obstore.get_range(self._store, check_key(key), start=start, end=end))

    def iter_bytes(self, key: str, chunk: int = CHUNK) -> Iterator[bytes]:
        result = obstore.get(self._store, check_key(key))
        for part in result.stream(min_chunk_size=chunk):
            yield bytes(part)

    def open(self, key: str) -> BinaryIO:
        """A seekable binary file of the object: in memory when small, else read by ranges as it is read."""
        key = check_key(key)
        size = obstore.head(self._store, key)["size"]
        if size <= IN_MEMORY:
            return io.BytesIO(bytes(obstore.get(self._store, key).bytes()))
        return _Reader(obstore.open_reader(self._store, key, buffer_size=PART_SIZE))

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """A temporary local copy of the object, for readers that need a file (decoders, DIMSE senders)."""
        fd, tmp = tempfile.mkstemp(prefix="lightbox-s3-", suffix=Path(key).suffix)
        try:
            with os.fdopen(fd, "wb") as out:
                for part in self.iter_bytes(key, 8 * CHUNK):
                    out.write(part)
            yield Path(tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def etag_md5(self, key: str) -> str | None:
        """The object's MD5 when its ETag is one (a single-part PUT); None for a multipart upload's."""
        etag = (obstore.head(self._store, check_key(key)).get("e_tag") or "").strip('"')
        return etag if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) else None

    def entries(self, prefix: str = "") -> Iterator[Entry]:
        """Every object under `prefix`, with its size and last-modified time (one LIST request per 1,000)."""
        for batch in obstore.list(self._store, prefix=prefix or None, chunk_size=1000):
            for meta in batch:
                yield Entry(meta["path"], meta["size"], meta["last_modified"])

    def keys(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(key, size) of every object under `prefix`."""
        return ((e.key, e.size) for e in self.entries(prefix))

    def remove_partials(self, older_than: dt.timedelta) -> int:
        """Nothing to do: an object appears whole when its PUT returns. (A multipart upload of a process
        killed mid-way is not an object; a bucket lifecycle rule, AbortIncompleteMultipartUpload, clears its
        parts.)"""
        return 0

    def uri(self, key: str) -> str:
        """How another system names the object: `s3://BUCKET/PREFIX/key`."""
        return f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}{check_key(key)}"

    def key_of_uri(self, uri: str) -> str | None:
        """The key of an `uri` this store gave out, else None."""
        head = self.uri("x")[:-1]
        return uri[len(head):] if uri.startswith(head) and len(uri) > len(head) else None

    def presigned_url(self, key: str, expires: int = 3600) -> str | None:
        """A URL that fetches the object directly from the store for `expires` seconds, without credentials."""
        return obstore.sign(self._store, "GET", check_key(key), dt.timedelta(seconds=expires))

    # -- writing: an object exists, whole, once its PUT (or the multipart completion) has returned -----------
    def put(self, src_path: str | Path, key: str) -> StoredFile:
        with open(src_path, "rb") as src:
            return self.put_fileobj(src, key)

    def put_fileobj(self, src: BinaryIO, key: str) -> StoredFile:
        key = check_key(key)
        head = src.read(MULTIPART_THRESHOLD + 1)
        if len(head) <= MULTIPART_THRESHOLD:
            return self.put_bytes(key, head)
        md5 = hashlib.md5(head)
        size = len(head)

        def parts() -> Iterator[bytes]:
            nonlocal size
            yield head
            while chunk := src.read(PART_SIZE):
                md5.update(chunk)
                size += len(chunk)
                yield chunk

        obstore.put(self._store, key, parts(), use_multipart=True, chunk_size=PART_SIZE, max_concurrency=8)
        return StoredFile(key=key, size=size, md5=md5.hexdigest())

    def put_bytes(self, key: str, data: bytes) -> StoredFile:
        key = check_key(key)
        obstore.put(self._store, key, data, use_multipart=False)
        return StoredFile(key=key, size=len(data), md5=hashlib.md5(data).hexdigest())

    def place(self, key: str, *, data: bytes | None = None, src: str | Path | None = None,
              move: bool = False, sync_dir: bool = True) -> set[Path]:
        """FileStore.place for objects: the PUT is durable when it returns, so no directories to fsync."""
        if data is not None and not (move and src is not None):
            self.put_bytes(key, data)
        else:
            self.put(src, key)
            if move:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(src)
        return set()

    group_sync = False  # each PUT is durable on its own: nothing to defer

    def place_new(self, key: str, *, data: bytes | None = None, src: str | Path | None = None) -> bool:
        """FileStore.place_new: never deferred here (`place` it)."""
        return False

    def flush(self) -> None:
        """FileStore.flush: nothing is ever left to flush."""

    def delete(self, key: str) -> None:
        obstore.delete(self._store, check_key(key))  # missing is fine (S3 answers 204 either way)


class _Reader(io.RawIOBase):
    """obstore's ReadableFile as a standard binary file (pydicom wants `bytes`, not obstore's Bytes)."""

    def __init__(self, f):
        self._f = f

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return bytes(self._f.read() if n is None or n < 0 else self._f.read(n))

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()
        super().close()
