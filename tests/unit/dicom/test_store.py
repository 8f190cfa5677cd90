"""FileStore: atomic puts with MD5, keys from UIDs, deletes; sanitize_filename."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from portal.dicom import FileStore, StoredFile, md5_of, sanitize_filename
from portal.dicom import store as store_module
from portal.errors import Invalid


def _leftovers(root):
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


def test_put_copies_and_reports_size_and_md5(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 10_000)  # spans several copy chunks
    store = FileStore(tmp_path / "store")
    key = store.key_for("1.2.3.4")
    stored = store.put(src, key)
    assert stored == StoredFile(key, src.stat().st_size, hashlib.md5(src.read_bytes()).hexdigest())
    assert store.path(key).read_bytes() == src.read_bytes()
    assert store.exists(key)
    assert md5_of(store.path(key)) == stored.md5
    assert _leftovers(store.root) == []


def test_put_twice_is_idempotent(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"same bytes")
    store = FileStore(tmp_path / "store")
    key = store.key_for("1.2.3.4")
    assert store.put(src, key) == store.put(src, key)
    assert [p for p in store.root.rglob("*") if p.is_file()] == [store.path(key)]


def test_failed_put_leaves_old_file_and_no_temp_files(tmp_path):
    store = FileStore(tmp_path / "store")
    key = store.key_for("1.2.3.4")
    store.put_fileobj(io.BytesIO(b"original"), key)

    class Breaks(io.RawIOBase):
        calls = 0

        def readable(self):
            return True

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 1:
                raise OSError("disk went away")
            return b"x" * 1000

    with pytest.raises(OSError):
        store.put_fileobj(Breaks(), key)
    assert store.path(key).read_bytes() == b"original"
    assert _leftovers(store.root) == []


def test_key_for_is_a_hash_path(tmp_path):
    key = FileStore.key_for("1.2.840.113619.2.55.3")
    assert re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{40}\.dcm", key)
    assert key == FileStore.key_for("1.2.840.113619.2.55.3")
    assert key != FileStore.key_for("1.2.840.113619.2.55.4")
    assert FileStore.key_for("../../etc/passwd").count("/") == 2


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a//b", "", "a/./b", "a\\b"])
def test_path_refuses_unsafe_keys(tmp_path, key):
    with pytest.raises(Invalid) as exc:
        FileStore(tmp_path).path(key)
    assert exc.value.suberror == "bad_key"


def test_delete_removes_file_and_empty_dirs(tmp_path):
    store = FileStore(tmp_path / "store")
    src = tmp_path / "src.bin"
    src.write_bytes(b"data")
    a, b = store.key_for("1.1"), store.key_for("1.2")
    store.put(src, a)
    store.put(src, b)
    store.delete(a)
    assert not store.exists(a) and store.exists(b)
    assert not store.path(a).parent.exists() or store.path(a).parent == store.path(b).parent
    store.delete(b)
    store.delete(b)  # missing is fine
    assert store.root.exists() and list(store.root.iterdir()) == []


@pytest.mark.parametrize(
    "name, expected",
    [
        ("chest.dcm", "chest.dcm"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\scan 01.dcm", "scan_01.dcm"),
        ("..", "file"),
        ("", "file"),
        (".hidden", "hidden"),
        ("naïve résumé.dcm", "na_ve_r_sum_.dcm"),
        ("a" * 300 + ".dcm", "a" * 124 + ".dcm"),
    ],
)
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected
    assert len(sanitize_filename(name)) <= 128


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, (1 << 20) - 1, 1 << 20, (1 << 20) + 4097, 3 * (1 << 20)])
def test_place_from_memory_writes_exact_bytes_whatever_the_alignment(tmp_path, size):
    """Bytes placed from memory go through O_DIRECT in whole blocks, the last part block through the page cache;
    the file is exactly the bytes, placed durably or deferred to the store's flush."""
    store = FileStore(tmp_path / "store")
    data = bytes((i * 7 + size) % 251 for i in range(size))
    key = store.key_for(f"1.2.{size}")
    store.place(key, data=data)
    assert store.path(key).read_bytes() == data
    deferred = store.key_for(f"1.3.{size}")
    assert store.place_new(deferred, data=data)
    store.flush()
    assert store.path(deferred).read_bytes() == data
    assert _leftovers(store.root) == []
    assert store.direct  # this file system takes O_DIRECT (ext4 here); the fallback is tested below


def test_place_falls_back_to_buffered_writes_where_o_direct_is_refused(tmp_path, monkeypatch):
    import errno
    import os

    real_open = os.open

    def refusing(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing)
    store = FileStore(tmp_path / "store")
    for i in range(2):
        key = store.key_for(f"1.2.{i}")
        store.place(key, data=b"abc" * 5000)
        assert store.path(key).read_bytes() == b"abc" * 5000
    assert not store.direct and _leftovers(store.root) == []


def test_place_falls_back_when_the_o_direct_write_itself_is_refused(tmp_path, monkeypatch):
    import errno

    from portal.dicom import store as store_mod

    def refusing(fd, data):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(store_mod, "_write_direct", refusing)
    store = FileStore(tmp_path / "store")
    key = store.key_for("1.2.3")
    store.place(key, data=b"xyz" * 3000)
    assert store.path(key).read_bytes() == b"xyz" * 3000
    assert not store.direct and _leftovers(store.root) == []


# Group durability: place_new (no fsync, never replaces) and one shared flush.

def test_place_new_writes_once_and_never_replaces(tmp_path):
    store = FileStore(tmp_path)
    assert store.group_sync  # the suite's temp folder is on a local file system
    first = bytes(range(256)) * 2049
    assert store.place_new("a/b/one.dcm", data=first) is True
    assert store.place_new("a/b/one.dcm", data=b"other bytes") is False  # there already: the caller goes durable
    store.flush()
    assert store.read_bytes("a/b/one.dcm") == first
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["one.dcm"]  # no temp files left


def test_place_new_moves_a_spooled_file_into_place(tmp_path):
    store = FileStore(tmp_path / "store")
    spool = tmp_path / "spool.part"
    spool.write_bytes(b"spooled")
    assert store.place_new("x/y.dcm", src=spool) is True
    assert not spool.exists() and store.read_bytes("x/y.dcm") == b"spooled"
    other = tmp_path / "other.part"
    other.write_bytes(b"second")
    assert store.place_new("x/y.dcm", src=other) is False and other.exists()  # left for the durable path
    assert store.read_bytes("x/y.dcm") == b"spooled"


def test_a_store_whose_file_system_may_not_cover_its_files_never_defers(tmp_path):
    shm = Path("/dev/shm")
    if store_module._fs_type(shm) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    root = shm / f"lightbox-test-{tmp_path.name}"
    try:
        store = FileStore(root)
        assert not store.group_sync
        assert store.place_new("k.dcm", data=b"x") is False and not store.exists("k.dcm")
        store.flush()  # nothing to do, no error
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_concurrent_flushes_share_syncs_and_each_waits_for_one_begun_after_it():
    calls, lock = [], threading.Lock()
    gate = threading.Event()

    def slow_syncfs(fd):
        with lock:
            calls.append(time.monotonic())
        gate.wait(5) if len(calls) == 1 else time.sleep(0.01)
        return 0

    group = store_module._GroupSync(-1, slow_syncfs)
    done = []
    first = threading.Thread(target=lambda: (group.sync(), done.append("first")))
    first.start()
    while not calls:
        time.sleep(0.001)
    # Eight callers arrive while the first sync is in flight: none may return on it (their files may be
    # newer); one more sync covers all eight.
    others = [threading.Thread(target=lambda: (group.sync(), done.append("later"))) for _ in range(8)]
    for t in others:
        t.start()
    time.sleep(0.05)
    assert done == []
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert sorted(done) == ["first"] + ["later"] * 8
    assert len(calls) == 2


def test_a_failed_sync_fails_its_callers_and_not_later_ones():
    results = iter([-1, 0])
    group = store_module._GroupSync(-1, lambda fd: next(results))
    with pytest.raises(OSError, match="syncfs of the store failed"):
        group.sync()
    group.sync()  # the next sync succeeded: its callers are fine


def test_a_failed_sync_also_fails_those_that_arrived_during_it():
    gate, calls = threading.Event(), []

    def syncfs(fd):
        calls.append(1)
        if len(calls) == 1:
            gate.wait(5)
            return -1
        return 0

    group = store_module._GroupSync(-1, syncfs)
    errors = []

    def sync():
        try:
            group.sync()
        except OSError as exc:
            errors.append(exc)

    first = threading.Thread(target=sync)
    first.start()
    while not calls:
        time.sleep(0.001)
    during = threading.Thread(target=sync)  # its file may have met the write-back error the first sync reports
    during.start()
    time.sleep(0.02)
    gate.set()
    first.join(5), during.join(5)
    assert len(errors) == 2


def test_stores_on_one_file_system_share_one_group(tmp_path):
    one, two = FileStore(tmp_path / "one"), FileStore(tmp_path / "two")
    assert one.group_sync and two.group_sync
    assert one._group is two._group  # one descriptor, one sync in flight, for the whole file system
