"""Zip archives: stream one out without holding it in memory; unpack an uploaded one safely."""

from __future__ import annotations

import contextlib
import stat
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from portal.dicom.store import sanitize_filename
from portal.errors import Invalid

COPY_CHUNK = 1 << 20
DEFAULT_MAX_TOTAL_BYTES = 8 << 30  # 8 GiB uncompressed
_SKIPPED_PREFIXES = ("__MACOSX/",)  # Finder's resource forks: never DICOM


class _Sink:
    """A write-only, non-seekable file object: zipfile then streams with data descriptors."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        return data


def stream_zip(entries: Iterable[tuple[str, Path | str]], chunk_size: int = 1 << 16, *,
               store=None) -> Iterator[bytes]:
    """Yield a ZIP_STORED archive of (name in archive, file on disk) pairs, chunk by chunk; with `store`
    (portal/storage), the pairs are (name in archive, stored file key)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, path in entries:
            if store is not None:
                size, mtime = store.size(path), time.time()
                blocks = store.iter_bytes(path, max(chunk_size, 1 << 20))
            else:
                path = Path(path)
                st = path.stat()
                size, mtime = st.st_size, st.st_mtime
                blocks = _blocks(path, chunk_size)
            info = zipfile.ZipInfo(_archive_name(name), date_time=_zip_time(mtime))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            # Known up front, so zipfile writes zip64 headers for big members even without seeking back.
            info.file_size = size
            with zf.open(info, "w") as dst:
                for block in blocks:
                    dst.write(block)
                    if sink.size >= chunk_size:
                        yield sink.take()
            if sink.size >= chunk_size:
                yield sink.take()
    if sink.size:
        yield sink.take()


def _blocks(path: Path, chunk_size: int) -> Iterator[bytes]:
    with path.open("rb") as src:
        while block := src.read(chunk_size):
            yield block


def safe_extract(zip_path: str | Path, dest_dir: str | Path, *, max_members: int = 20000,
                 max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> list[Path]:
    """Extract regular members into `dest_dir` under sanitized, numbered names; reject unsafe zips.

    Member names are checked and then used only for display: each file lands at
    `dest_dir/<n>-<sanitized base name>`. Nested zips stay zipped.
    """
    dest = Path(dest_dir)
    created_dest = not dest.exists()
    written: list[Path] = []
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = _checked_members(zf, max_members, max_total_bytes)
            dest.mkdir(parents=True, exist_ok=True)
            total = 0
            for number, info in enumerate(members, start=1):
                target = dest / f"{number:05d}-{sanitize_filename(info.filename)}"
                written.append(target)
                total = _copy_member(zf, info, target, total, max_total_bytes)
        return written
    except zipfile.BadZipFile as exc:
        _cleanup(written, dest, created_dest)
        raise Invalid(f"The zip file is damaged: {exc}.", "bad_zip") from exc
    except (NotImplementedError, RuntimeError) as exc:  # unknown compression, encryption
        _cleanup(written, dest, created_dest)
        raise Invalid(f"The zip file cannot be unpacked: {exc}.", "bad_zip") from exc
    except BaseException:
        _cleanup(written, dest, created_dest)
        raise


def _checked_members(zf: zipfile.ZipFile, max_members: int, max_total_bytes: int) -> list[zipfile.ZipInfo]:
    """The file members to extract, after every check that the central directory allows."""
    infos = zf.infolist()
    if len(infos) > max_members:
        raise Invalid(f"The zip has {len(infos)} entries; at most {max_members} are accepted.", "unsafe_zip")
    members = []
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise Invalid(f"The zip entry {name!r} has an absolute path; zip the files with relative names.",
                          "unsafe_zip")
        if ".." in parts:
            raise Invalid(f"The zip entry {name!r} points outside the archive (..).", "unsafe_zip")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise Invalid(f"The zip entry {name!r} is a symbolic link; links are not accepted.", "unsafe_zip")
        if info.flag_bits & 0x1:
            raise Invalid(f"The zip entry {name!r} is encrypted; upload an unencrypted zip.", "unsafe_zip")
        if info.is_dir() or name.startswith(_SKIPPED_PREFIXES):
            continue
        members.append(info)
    declared = sum(info.file_size for info in members)
    if declared > max_total_bytes:
        raise Invalid(
            f"The zip unpacks to {declared} bytes, over the limit of {max_total_bytes}; split it into smaller zips.",
            "zip_too_large",
        )
    return members


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, total: int, limit: int) -> int:
    """Copy one member, counting real bytes so that a header that lies about sizes cannot push past `limit`."""
    with zf.open(info) as src, open(target, "xb") as dst:
        while block := src.read(COPY_CHUNK):
            total += len(block)
            if total > limit:
                raise Invalid(
                    f"The zip unpacks to more than {limit} bytes (its headers understate the sizes).",
                    "zip_too_large",
                )
            dst.write(block)
    return total


def _cleanup(written: list[Path], dest: Path, created_dest: bool) -> None:
    for path in written:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if created_dest:
        with contextlib.suppress(OSError):  # not empty: something else wrote there
            dest.rmdir()


def _archive_name(name: str) -> str:
    """A relative archive path: no leading slash, no empty, '.' or '..' parts."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not parts:
        raise Invalid(f"{name!r} is not a usable name inside a zip.", "bad_zip_name")
    return "/".join(parts)


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    # Zip dates start in 1980.
    return max(time.localtime(mtime)[:6], (1980, 1, 1, 0, 0, 0))
