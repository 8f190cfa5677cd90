"""The storage seam against a real S3-protocol server (moto's server mode): objects, multipart uploads,
ranges, presigned URLs, listings, deletes; `lightbox storage migrate` from local files into S3, verified and
resumable; a restart's sweep of files without a row, in the configured store (local disk or S3)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import os
import subprocess
import sys
import uuid
import zipfile

import httpx
import pytest

from portal import storage
from portal.archive import ingest_file
from portal.dicom import samples
from portal.errors import Invalid
from portal.storage import s3 as s3_mod
from portal.tables import Instance, Series, Study
from tests.conftest import s3_url
from tests.helpers import creds, make_project


def _s3():
    return storage.open_store(s3_url(f"unit-{uuid.uuid4().hex[:8]}"))


def test_objects_ranges_presigned_urls_and_deletes():
    store = _s3()
    stored = store.put_bytes("ab/cd/x.dcm", b"0123456789")
    assert stored.md5 == hashlib.md5(b"0123456789").hexdigest() and stored.size == 10
    assert store.exists("ab/cd/x.dcm") and store.size("ab/cd/x.dcm") == 10
    assert store.read_range("ab/cd/x.dcm", 2, 5) == b"234"
    assert b"".join(store.iter_bytes("ab/cd/x.dcm", 4)) == b"0123456789"
    with store.open("ab/cd/x.dcm") as f:
        f.seek(7)
        assert f.read() == b"789"
    with store.local_copy("ab/cd/x.dcm") as path:
        assert path.read_bytes() == b"0123456789"
    assert not path.exists()  # the copy goes when the block ends
    # Presigned: fetched straight from the store, without credentials.
    assert httpx.get(store.presigned_url("ab/cd/x.dcm")).content == b"0123456789"
    assert store.uri("ab/cd/x.dcm").startswith(f"s3://{store.bucket}/{store.prefix}/")
    assert store.key_of_uri(store.uri("ab/cd/x.dcm")) == "ab/cd/x.dcm"
    assert [k for k, _ in store.keys()] == ["ab/cd/x.dcm"]
    (entry,) = store.entries("ab/")
    assert (entry.key, entry.size) == ("ab/cd/x.dcm", 10)
    assert abs((dt.datetime.now(dt.timezone.utc) - entry.modified).total_seconds()) < 60  # when it was PUT
    assert list(store.entries("cd/")) == []
    store.delete("ab/cd/x.dcm")
    assert not store.exists("ab/cd/x.dcm") and list(store.keys()) == []
    store.delete("ab/cd/x.dcm")  # deleting what is gone is fine
    with pytest.raises(Invalid):
        store.put_bytes("../escape", b"x")


def test_big_files_go_up_in_parts_and_read_back_by_ranges(tmp_path, monkeypatch):
    store = _s3()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(s3_mod.MULTIPART_THRESHOLD + 3 * s3_mod.PART_SIZE // 2))
    stored = store.put(big, "big/file.bin")
    assert stored.md5 == hashlib.md5(big.read_bytes()).hexdigest() and stored.size == big.stat().st_size
    assert store.etag_md5("big/file.bin") is None  # a multipart upload's ETag is no MD5: it was read back
    monkeypatch.setattr(s3_mod, "IN_MEMORY", 1 << 20)  # read through the ranged reader
    with store.open("big/file.bin") as f:
        f.seek(s3_mod.MULTIPART_THRESHOLD - 5)
        assert f.read(10) == big.read_bytes()[s3_mod.MULTIPART_THRESHOLD - 5:s3_mod.MULTIPART_THRESHOLD + 5]
    store.delete("big/file.bin")


def test_bad_storage_urls_are_refused():
    for url in ("s3://", "s3://bucket?endpoint=http://x&colour=red"):
        with pytest.raises(Invalid):
            storage.open_store(url)


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


async def test_migrate_copies_verifies_and_resumes(app, client, lb_env, settings, tmp_path):
    p = await make_project("chest", {"rev": "reviewer"})
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "s", 4)
    for f in files:
        assert (await ingest_file(f, p)).ok
    src = storage.current()
    keys = sorted(k for k, _ in src.keys())
    assert len(keys) == 4
    target = s3_url(f"migrated-{uuid.uuid4().hex[:8]}") if src.kind == "local" else str(tmp_path / "moved")
    dest = storage.open_store(target)

    # A run stopped half-way: two files verified (journaled), the others not there yet.
    from portal.storage import migrate as migrate_mod

    journal = migrate_mod.journal_path(settings.data_dir, dest.url)
    for k in keys[:2]:
        dest.put_bytes(k, src.read_bytes(k))
    journal.write_text("".join(k + "\n" for k in keys[:2]))
    out = _cli(lb_env, "storage", "migrate", "--to", target)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 copied and verified" in out.stdout and "2 verified before" in out.stdout and "0 failed" in out.stdout
    assert sorted(k for k, _ in dest.keys()) == keys
    for k in keys:
        assert dest.read_bytes(k) == src.read_bytes(k)
    again = _cli(lb_env, "storage", "migrate", "--to", target)
    assert again.returncode == 0 and "0 copied" in again.stdout and "4 verified before" in again.stdout

    # A damaged source file is found by its recorded MD5 and not journaled.
    journal.unlink()
    row = await Instance.objects().first()
    src.put_bytes(row.file_key, b"damaged")
    bad = _cli(lb_env, "storage", "migrate", "--to", target)
    assert bad.returncode == 2 and "damaged at the source" in bad.stderr and "3 copied" in bad.stdout

    assert dest.read_bytes(row.file_key) != b"damaged"  # the good copy made before stays

    # The migrated store serves the portal once LIGHTBOX_STORAGE_URL names it.
    from portal import settings as settings_mod

    settings_mod.use(settings_mod.load({**lb_env, "LIGHTBOX_STORAGE_URL": target}))
    series = await row.get_related(Instance.series)
    study = await series.get_related(Series.study)
    patient = await study.get_related(Study.patient)
    r = await client.get("/api/v1/dicom/get/", headers=creds("rev"), params={
        "Project": "chest", "Archive": "default", "PatientID": patient.patient_id,
        "StudyInstanceUID": study.study_instance_uid, "SeriesInstanceUID": series.series_instance_uid})
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        got = sorted(hashlib.md5(z.read(n)).hexdigest() for n in z.namelist())
    assert got == sorted(hashlib.md5(f.read_bytes()).hexdigest() for f in files)


async def test_a_restart_removes_stored_files_without_a_row_through_the_store(app, tmp_path, monkeypatch):
    """An ingest or import killed between placing a file and committing its row leaves an orphan; the next
    start deletes it from the configured store (local disk, or S3 with LIGHTBOX_TEST_STORAGE=s3), once it is
    old enough that no running process can be about to commit it, and never while an import is placing files."""
    from portal import cleanup, clock
    from portal.tables import SyncRun
    from portal.tasks import maintenance, runner

    p = await make_project("chest")
    f = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "s", 1)[0]
    assert (await ingest_file(f, p)).ok
    store = storage.current()
    kept = (await Instance.select(Instance.file_key).first())["file_key"]
    orphan = store.key_for(f"{p.id}/1.2.3.4.5/deadbeef")  # placed, its row never committed
    store.put_bytes(orphan, b"orphaned instance")
    asset = "ai/999/json"  # not an instance file: never taken for an orphan
    store.put_bytes(asset, b"{}")
    present = lambda: {k for k, _ in store.keys()}  # noqa: E731

    importing = SyncRun(project=p.id, kind="import", trigger="portal", state="running", queued_at=clock.now(),
                        worker=runner.worker_id())
    await importing.save()
    monkeypatch.setattr(cleanup, "ORPHAN_AGE", dt.timedelta(0))
    summary = await asyncio.to_thread(maintenance.recover_at_start)
    assert summary["orphans"] == 0 and orphan in present()  # an import is placing files: the store waits
    await SyncRun.update({SyncRun.state: "done"}).where(SyncRun.id == importing.id)

    monkeypatch.setattr(cleanup, "ORPHAN_AGE", dt.timedelta(minutes=5))
    summary = await asyncio.to_thread(maintenance.recover_at_start)
    assert summary["orphans"] == 0 and orphan in present()  # just written: maybe about to be committed

    monkeypatch.setattr(cleanup, "ORPHAN_AGE", dt.timedelta(0))
    summary = await asyncio.to_thread(maintenance.recover_at_start)
    assert summary["orphans"] == 1 and present() == {kept, asset}
    assert store.read_bytes(kept) == f.read_bytes()
