"""Content storage on local disk: atomic writes under keys derived from UIDs, with MD5.

The local half of the storage seam (portal/storage picks this or the S3 store from LIGHTBOX_STORAGE_URL): code
outside the seam reads a stored file through `open`, `read_bytes`, `read_range`, `iter_bytes` or `local_copy`,
never through `path`."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import mmap
import itertools
import threading
import datetime as dt
import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import BinaryIO

from portal.errors import Invalid

CHUNK = 1 << 20
_TEMP_PREFIX = ".tmp-"  # an atomic write's temp file beside its destination, until the rename
_temp_count = itertools.count()
_KEY_PART = re.compile(r"^[A-Za-z0-9._-]+$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    md5: str


@dataclass(frozen=True)
class Entry:
    """A stored file as a listing names it: key, size, and when it was last written (UTC)."""

    key: str
    size: int
    modified: dt.datetime


def check_key(key: str) -> str:
    """`key` itself when it is a safe relative key (parts of [A-Za-z0-9._-], no `.`/`..`); else Invalid."""
    parts = key.split("/")
    if not key or any(not _KEY_PART.match(p) or p in (".", "..") for p in parts):
        raise Invalid(f"Storage key {key!r} is not a safe relative path.", "bad_key")
    return key


class FileStore:
    """Files under `root`, addressed by relative keys such as `ab/cd/<sha1>.dcm`."""

    kind = "local"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.url = str(self.root)
        self.direct = hasattr(os, "O_DIRECT")  # until its file system refuses O_DIRECT (see _write_direct)
        self._group: _GroupSync | None | bool = None  # see group_sync: None until first asked

    @staticmethod
    def key_for(sop_instance_uid: str, suffix: str = ".dcm") -> str:
        """The key of an instance: from a hash of its UID, never from a caller's file name."""
        digest = hashlib.sha1(sop_instance_uid.encode("ascii", "replace")).hexdigest()
        return f"{digest[:2]}/{digest[2:4]}/{digest}{suffix}"

    def path(self, key: str) -> Path:
        """The file of `key`; a key that could leave the root is refused."""
        return self.root.joinpath(*check_key(key).split("/"))

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def open(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file."""
        with self.path(key).open("rb") as f:
            f.seek(start)
            return f.read(max(end - start, 0))

    def iter_bytes(self, key: str, chunk: int = CHUNK) -> Iterator[bytes]:
        with self.path(key).open("rb") as f:
            while data := f.read(chunk):
                yield data

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """A local file with the content of `key`, for readers that need one (here: the stored file itself;
        read it, never write it)."""
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(path)
        yield path

    def entries(self, prefix: str = "") -> Iterator[Entry]:
        """Every stored file under `prefix` (temp files of unfinished writes left out), in key order."""
        base = self.root / prefix if prefix else self.root
        for dirpath, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                if name.startswith(_TEMP_PREFIX):
                    continue
                full = Path(dirpath, name)
                try:
                    st = full.stat()
                except FileNotFoundError:
                    continue
                yield Entry(full.relative_to(self.root).as_posix(), st.st_size,
                            dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc))

    def keys(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(key, size) of every stored file under `prefix`."""
        return ((e.key, e.size) for e in self.entries(prefix))

    def remove_partials(self, older_than: dt.timedelta) -> int:
        """Remove the temp files of writes that never got their rename (a process killed mid-write), unchanged
        for `older_than` (a younger one may be another process's write in progress); returns how many."""
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(_TEMP_PREFIX) and name.endswith(".part"):
                    full = Path(dirpath, name)
                    try:
                        if full.stat().st_mtime < cutoff:
                            full.unlink()
                            removed += 1
                    except FileNotFoundError:
                        pass
        return removed

    def uri(self, key: str) -> str:
        """How another system on the shared file system names the file: its absolute path."""
        return str(self.path(key).resolve())

    def key_of_uri(self, uri: str) -> str | None:
        """The key of a path inside this store, else None."""
        try:
            rel = Path(uri).expanduser().resolve().relative_to(self.root.resolve()).as_posix()
        except (ValueError, OSError, RuntimeError):
            return None
        return rel if rel != "." else None

    def presigned_url(self, key: str, expires: int = 3600) -> str | None:
        """Local files have no direct URL: they are served through the portal."""
        return None

    def put_bytes(self, key: str, data: bytes) -> StoredFile:
        self.place(key, data=data)
        return StoredFile(key=key, size=len(data), md5=hashlib.md5(data).hexdigest())

    def put(self, src_path: str | Path, key: str) -> StoredFile:
        """Copy `src_path` to `key` atomically; the MD5 is computed while copying."""
        with open(src_path, "rb") as src:
            return self.put_fileobj(src, key)

    def put_fileobj(self, src: BinaryIO, key: str) -> StoredFile:
        """Copy a readable binary stream to `key` atomically: temp file, fsync, rename, fsync dir."""
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # The temp file sits in the destination directory so that os.replace is a same-filesystem rename.
        fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".part", dir=dest.parent)
        try:
            md5 = hashlib.md5()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    md5.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            _unlink(Path(tmp))
            raise
        _fsync_dir(dest.parent)
        return StoredFile(key=key, size=size, md5=md5.hexdigest())

    def _create_temp(self, folder: Path) -> tuple[int, str, bool]:
        """A new, empty temp file in `folder` for an atomic write: (fd, path, whether it is O_DIRECT)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        while True:
            # Unique by process and count (O_EXCL settles a leftover of a process that had this pid): random
            # names cost a getrandom call each.
            tmp = os.path.join(folder, f"{_TEMP_PREFIX}{os.getpid()}-{next(_temp_count)}.part")
            try:
                if self.direct:
                    try:
                        return os.open(tmp, flags | os.O_DIRECT, 0o600), tmp, True
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise
                        self.direct = False
                return os.open(tmp, flags, 0o600), tmp, False
            except FileExistsError:
                continue

    def _write(self, fd: int, data: bytes, direct: bool) -> None:
        if direct:
            try:
                return _write_direct(fd, data)
            except OSError as exc:  # opened, yet refused at the write (some FUSE and network file systems)
                if exc.errno != errno.EINVAL:
                    raise
                self.direct = False
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
        _write_all(fd, data)

    def _write_temp(self, folder: Path, data: bytes, *, sync: bool) -> str:
        """A new temp file in `folder` holding `data` (fsynced with `sync`): its path; nothing left on error."""
        fd, tmp, direct = self._create_temp(folder)
        try:
            try:
                self._write(fd, data, direct)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            _unlink(Path(tmp))
            raise
        return tmp

    def place(self, key: str, *, data: bytes | None = None, src: str | Path | None = None,
              move: bool = False, sync_dir: bool = True) -> set[Path]:
        """Put `data` (or the file `src`: renamed into place when `move`, else copied) at `key`, file fsynced.

        Returns the directories whose entries changed: the caller fsyncs them (`sync_dirs`), once for a
        whole batch, unless `sync_dir` does it here."""
        dest = self.path(key)
        dirs = {dest.parent}
        if not dest.parent.is_dir():
            # New directories must be made durable in their parents too.
            missing = [d for d in (dest.parent, dest.parent.parent) if not d.is_dir()]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dirs.update(d.parent for d in missing)
        if move and src is not None:
            fd = os.open(src, os.O_RDONLY)
            try:
                os.fsync(fd)  # the spooled upload was written without fsync
            finally:
                os.close(fd)
            try:
                os.replace(src, dest)
            except OSError:  # another filesystem: copy instead
                with open(src, "rb") as f:
                    self.put_fileobj(f, key)
        elif data is not None:
            tmp = self._write_temp(dest.parent, data, sync=True)
            try:
                os.replace(tmp, dest)
            except BaseException:
                _unlink(Path(tmp))
                raise
        else:
            with open(src, "rb") as f:
                self.put_fileobj(f, key)
        if sync_dir:
            sync_dirs(dirs)
            return set()
        return dirs

    @property
    def group_sync(self) -> bool:
        """Whether files may be placed unsynced and made durable together (`place_new`, then `flush`): only on a
        local file system known to make syncfs(2) cover every file (FUSE and network mounts may not)."""
        if self._group is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._group = _GroupSync.for_root(self.root) or False
        return bool(self._group)

    def place_new(self, key: str, *, data: bytes | None = None, src: str | Path | None = None) -> bool:
        """Put `data` (or move the file `src`) at `key` when nothing is there yet, without any fsync: True when
        done so, the file then durable only once a later `flush()` returns. False, with nothing changed, when a
        file is at `key` already or this store cannot defer (`group_sync`): use `place` instead.

        It never replaces a file (a hard link, not a rename): an unsynced rename over a file already
        acknowledged could, after a crash, leave neither. Whatever a crash leaves at `key` before the flush has
        no row (start-up removes it) and a re-send meets it here and goes the durable way."""
        if not self.group_sync:
            return False
        dest = self.path(key)
        if data is not None:
            try:
                tmp = self._write_temp(dest.parent, data, sync=False)
            except FileNotFoundError:  # a new folder (asked only then: a mkdir per file cost 4% of ingest)
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = self._write_temp(dest.parent, data, sync=False)
        else:
            tmp = str(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(tmp, dest)
        except OSError:  # there already; or no hard links here, or `src` on another file system
            if data is not None:
                _unlink(Path(tmp))
            return False
        _unlink(Path(tmp))
        return True

    def flush(self) -> None:
        """Make every file placed by `place_new` before this call durable (one syncfs shared by all callers
        waiting meanwhile); OSError when the file system reports a failed write."""
        if self.group_sync:
            self._group.sync()

    def delete(self, key: str) -> None:
        """Remove `key` (missing is fine) and the directories it leaves empty."""
        path = self.path(key)
        _unlink(path)
        parent = path.parent
        root = self.root.resolve()
        while parent.resolve() != root and root in parent.resolve().parents:
            try:
                parent.rmdir()
            except OSError:  # not empty, or already gone
                break
            parent = parent.parent


def sync_dirs(dirs) -> None:
    """fsync each directory once (the renames of a whole batch of placed files)."""
    for d in dirs:
        _fsync_dir(d)


def md5_of(path: str | Path) -> str:
    """MD5 hex digest of a file, read in chunks."""
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            md5.update(chunk)
    return md5.hexdigest()


def dataset_md5(path: str | Path | bytes) -> str:
    """MD5 of the bytes after the Part-10 file meta information: the same dataset written by another
    sender (a C-STORE receiver writes its own file meta) hashes the same."""
    import struct

    import io

    md5 = hashlib.md5()
    with io.BytesIO(path) if isinstance(path, bytes | bytearray) else open(path, "rb") as f:
        f.seek(128)
        if f.read(4) == b"DICM":
            start = f.tell()
            head = f.read(12)  # (0002,0000) UL, explicit VR little endian: the meta group's length
            if len(head) == 12 and head[:6] == b"\x02\x00\x00\x00UL":
                f.seek(start + 12 + struct.unpack("<I", head[8:12])[0])
            else:  # no group length: let pydicom walk the meta group
                from pydicom.filereader import _read_file_meta_info

                f.seek(start)
                _read_file_meta_info(f)
        else:
            f.seek(0)
        while chunk := f.read(CHUNK):
            md5.update(chunk)
    return md5.hexdigest()


def sanitize_filename(name: str, max_length: int = 128) -> str:
    """A file name fit for display and downloads: no directories, only [A-Za-z0-9._-], never empty."""
    base = re.split(r"[/\\]", name or "")[-1]
    # No leading dot: nothing hidden, and never "." or "..".
    base = _UNSAFE_CHARS.sub("_", base).lstrip(".")
    if not base.strip("._"):
        base = "file"
    if len(base) > max_length:
        stem, dot, ext = base.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            base = stem[: max_length - len(ext) - 1] + "." + ext
        else:
            base = base[:max_length]
    return base


# A file placed from memory is written with O_DIRECT: the device reads the bytes straight from an aligned
# buffer, where a buffered write copies each page into a fresh page-cache page first (on this VM class that copy
# and its first-touch faults cost ~1.5 ms of CPU per 512 kB image, a third of the server's ingest CPU), and the
# fsync then has only metadata to flush. The archive writes once and reads later, so skipping the cache costs
# nothing. A store on a file system that refuses O_DIRECT (tmpfs) writes buffered from its first refusal on.
_BLOCK = 4096  # O_DIRECT wants buffer, offset and length aligned to the logical block; 4096 covers all usual ones
_buffers = threading.local()  # one aligned buffer (an anonymous mmap) of CHUNK bytes per writing thread


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_direct(fd: int, data: bytes) -> None:
    """Write `data` to the O_DIRECT file `fd`: its whole blocks through this thread's aligned buffer, a chunk at a
    time, and the last part block through the page cache (the store's flush or fsync writes it). Padding that
    block and cutting the file back instead cost a truncate that waited for the device (5% of ingest's time)."""
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = mmap.mmap(-1, CHUNK)
    src = memoryview(data)
    n = len(src)
    whole = n - n % _BLOCK
    with memoryview(buf) as out:
        for off in range(0, whole, CHUNK):
            k = min(CHUNK, whole - off)
            out[:k] = src[off:off + k]
            if os.write(fd, out[:k]) != k:
                raise OSError(errno.EIO, "short write to the store")
    if whole < n:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        _write_all(fd, src[whole:])


# Group durability. Per file, an atomic durable write costs two journal commits (the file's fsync, then its
# directory's after the rename), each a device cache flush; with a few clients sending an image per request
# those flushes were a third of each request's time. syncfs(2) commits everything written on the file system
# so far in one: the threads placing files meanwhile share it (one in flight, the next one started for all
# that arrived during it), as a database's group commit shares a log flush.
_SYNCFS_TYPES = {"ext4", "ext3", "xfs", "btrfs", "f2fs", "zfs"}  # local file systems whose syncfs covers all
_libc_syncfs = None


def _syncfs_function():
    global _libc_syncfs
    if _libc_syncfs is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).syncfs
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        except (OSError, AttributeError):  # not Linux
            fn = False
        _libc_syncfs = fn
    return _libc_syncfs


def _fs_type(path: Path) -> str:
    """The type of the file system holding `path` (/proc/self/mounts: its longest mount point above it)."""
    real, best, kind = os.path.realpath(path), "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return ""
    return kind


class _GroupSync:
    """One syncfs at a time on one file system, shared by every caller that arrived before it began."""

    def __init__(self, fd: int, syncfs):
        self.fd, self.syncfs = fd, syncfs
        self.cond = threading.Condition()
        self.started = self.finished = 0  # syncs begun and completed
        self.running = False
        self.error: tuple[int, OSError] | None = None  # the last failed sync

    @classmethod
    def for_root(cls, root: Path) -> _GroupSync | None:
        """The group of the file system holding `root`, one per file system (and one open descriptor) for
        every store on it; None where syncfs may not cover its files."""
        syncfs = _syncfs_function()
        if not syncfs or _fs_type(root) not in _SYNCFS_TYPES:
            return None
        device = os.stat(root).st_dev
        with _groups_lock:
            group = _groups.get(device)
            if group is None:
                group = _groups[device] = cls(os.open(root, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)), syncfs)
        return group

    def sync(self) -> None:
        with self.cond:
            need = self.started + 1  # a sync that begins after this call: the one in flight may predate our files
            during = self.started if self.running else None
            while self.finished < need:
                if self.running:
                    self.cond.wait()
                    continue
                self.running = True
                self.started += 1
                mine = self.started
                self.cond.release()
                try:
                    failed = None
                    if self.syncfs(self.fd) != 0:
                        code = ctypes.get_errno()
                        failed = OSError(code, f"syncfs of the store failed: {os.strerror(code)}")
                finally:
                    self.cond.acquire()
                    self.running = False
                    self.finished = mine
                    if failed is not None:
                        self.error = (mine, failed)
                    self.cond.notify_all()
            # A failure also fails those that arrived during the failed sync: syncfs reports a write-back error
            # once, and their files may have been written before it began.
            if self.error is not None and (self.error[0] >= need or self.error[0] == during):
                raise self.error[1]


_groups: dict[int, _GroupSync] = {}  # by st_dev
_groups_lock = threading.Lock()


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable; some platforms cannot open a directory, which is fine."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
