"""The group-commit writer: instances ingested together are answered exactly as if sent one by one."""

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time

import pydicom

from portal import projects
from portal.archive import ingest, storage, writer
from portal.dicom import samples
from portal.tables import AuditEvent, Instance, InstanceMetadata, Series
from tests.helpers import make_project, stored_keys


async def _project(name="chest", **settings):
    p = await make_project(name, {"rev": "reviewer"})
    await projects.update_settings(p, {"ai_routing": [], **settings})
    return await projects.get(name)


def _other_bytes(src, dest):
    """Same UIDs, other content: a conflict when the UID is already stored."""
    ds = pydicom.dcmread(src)
    ds.StudyDescription = "changed"
    ds.save_as(dest)
    return dest


async def test_one_batch_answers_like_separate_requests(app, tmp_path):
    p = await _project()
    series = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "s", 6)
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom at all" * 10)
    other = _other_bytes(series[1], tmp_path / "other.dcm")
    files = [(f, f.name) for f in series[:3]] + [(bad, "bad.dcm"), (series[0], "again.dcm"), (other, "other.dcm")]
    files += [(f, f.name) for f in series[3:]]
    # Everything submitted at once: one writer batch.
    results = await ingest.ingest_files(files, p)
    assert [r.status for r in results] == ["stored"] * 3 + ["rejected", "already_stored", "conflict"] + ["stored"] * 3
    assert results[3].suberror == "not_dicom"
    rows = await Instance.select(Instance.sop_instance_uid, Instance.md5).order_by(Instance.id)
    # Order kept within the series: rows in the order sent, the conflicting copy not stored.
    assert [r["sop_instance_uid"] for r in rows] == [pydicom.dcmread(f).SOPInstanceUID for f in series]
    assert rows[1]["md5"] == hashlib.md5(series[1].read_bytes()).hexdigest()
    for r in await Instance.select(Instance.file_key, Instance.md5):
        assert hashlib.md5(storage().read_bytes(r["file_key"])).hexdigest() == r["md5"]
    assert await Series.count() == 1


async def test_duplicates_inside_one_batch_and_overwrite(app, tmp_path):
    p = await _project(allow_overwrite=True)
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "s", 1)
    other = _other_bytes(f, tmp_path / "other.dcm")
    results = await ingest.ingest_files([(f, "a"), (f, "b"), (other, "c")], p)
    assert [r.status for r in results] == ["stored", "already_stored", "stored"]
    assert results[2].reason.startswith("replaced")
    (row,) = await Instance.select(Instance.md5, Instance.file_key)
    assert row["md5"] == hashlib.md5(other.read_bytes()).hexdigest()
    assert storage().read_bytes(row["file_key"]) == other.read_bytes()
    assert len(stored_keys(".dcm")) == 1  # the replaced file is gone


async def test_concurrent_callers_share_batches_and_audit_rows(app, tmp_path):
    p = await _project()
    series = [samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / f"s{k}", 5) for k in range(4)]
    batches = []
    real = writer.commit_batch

    async def counting(batch, w, **kw):
        batches.append(len(batch))
        return await real(batch, w, **kw)

    writer.commit_batch = counting
    try:
        async def client(k):
            out = []
            for f in series[k]:  # each client one instance per request, with its audit row
                out += await ingest.ingest_files([(f, f.name)], p, audit=ingest.upload_audit(None, f"c{k}", {}))
            return out

        results = await asyncio.gather(*(client(k) for k in range(4)))
    finally:
        writer.commit_batch = real
    assert all(r.status == "stored" for rs in results for r in rs)
    assert sum(batches) == 20 and max(batches) > 1  # instances of different clients committed together
    assert await Instance.count() == 20 and await Series.count() == 4
    assert await AuditEvent.count().where(AuditEvent.action == "upload") == 20


async def test_a_failing_row_fails_alone(app, tmp_path, monkeypatch):
    p = await _project()
    series = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "s", 3)
    real = writer._write_rows
    bad_uid = pydicom.dcmread(series[1]).SOPInstanceUID

    def failing(jobs):  # the writer's statements are a generator the driver runs
        if any(j.read.parsed.sop_instance_uid == bad_uid for j in jobs):
            raise RuntimeError("database said no")
        return (yield from real(jobs))

    monkeypatch.setattr(writer, "_write_rows", failing)
    results = await ingest.ingest_files([(f, f.name) for f in series], p, return_exceptions=True)
    assert [getattr(r, "status", None) for r in results] == ["stored", None, "stored"]
    assert isinstance(results[1], RuntimeError)
    assert await Instance.count() == 2
    assert len(stored_keys(".dcm")) == 2  # the failed instance's file was removed


async def test_new_series_hook_once_per_series(app, tmp_path, monkeypatch):
    p = await _project()
    seen = []
    monkeypatch.setattr(ingest, "new_series_hooks", [lambda project, series: seen.append(series)])
    a = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "a", 3)
    b = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "b", 2)
    await ingest.ingest_files([(f, f.name) for f in a + b], p)
    ids = [r["id"] for r in await Series.select(Series.id).order_by(Series.id)]
    assert seen == ids
    await Series.update({Series.ai_status: "done"}).where(Series.id == ids[0])
    c = samples.restamp(a[0], tmp_path / "c.dcm", study_uid=pydicom.dcmread(a[0]).StudyInstanceUID,
                        series_uid=pydicom.dcmread(a[0]).SeriesInstanceUID)
    await ingest.ingest_file(c, p)
    assert seen == ids + [ids[0]]  # a scored series gets a new instance: queued again, its state cleared
    assert (await Series.select(Series.ai_status).where(Series.id == ids[0]).first())["ai_status"] == ""


async def test_new_series_hooks_run_off_the_loop_and_a_failing_one_fails_no_upload(app, tmp_path, monkeypatch,
                                                                                caplog):
    """The queue's hook writes and fsyncs its database: it runs in a thread, never on the event loop; one that
    raises (the queue is down) is logged, and the stored instances are still answered as stored."""
    import threading

    p = await _project()
    threads = []

    def failing(project, series):
        threads.append(threading.current_thread())
        raise RuntimeError("queue unreachable")

    monkeypatch.setattr(ingest, "new_series_hooks", [failing])
    a = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "a", 2)
    b = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "b", 1)
    results = await ingest.ingest_files([(f, f.name) for f in a + b], p)
    assert [r.status for r in results] == ["stored"] * 3
    assert await Instance.count() == 3
    assert len(threads) == 2 and threading.main_thread() not in threads
    assert len([r for r in caplog.records if "new-series hook" in r.getMessage()]) == 2


async def test_metadata_is_kept_and_answered_from_the_kept_text(app, tmp_path):
    from portal.dicomweb import wado
    from portal.dicomweb.links import Links

    p = await _project()
    series = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "s", 2)
    await ingest.ingest_files([(f, f.name) for f in series], p)
    ds = pydicom.dcmread(series[0])
    items = await wado.stored_instances(p, ds.StudyInstanceUID, ds.SeriesInstanceUID)
    import json

    first = json.loads(await wado.metadata(items, Links("http://x/dicomweb/chest")))
    assert await InstanceMetadata.count() == 2
    for item in items:
        storage().delete(item.key)  # from now on only the kept text can answer
    again = json.loads(await wado.metadata(items, Links("http://y/dicomweb/chest")))
    assert first[0]["7FE00010"]["BulkDataURI"].startswith("http://x/dicomweb/chest/studies/")
    assert again[0]["7FE00010"]["BulkDataURI"] == first[0]["7FE00010"]["BulkDataURI"].replace("http://x", "http://y")
    assert again[0]["00100020"] == first[0]["00100020"] == {"vr": "LO", "Value": [str(ds.PatientID)]}


_KILLED = """
import asyncio, json, sys
from pathlib import Path
from portal import cli, projects
from portal.archive import ingest
cli._setup()

async def go():
    p = await projects.get("chest")
    files = sorted(Path(sys.argv[1]).iterdir())
    async def client(k):
        for f in files[k::4]:
            (r,) = await ingest.ingest_files([(f, f.name)], p)
            print(json.dumps([r.sop_instance_uid, r.status]), flush=True)  # acknowledged
    await asyncio.gather(*(client(k) for k in range(4)))

cli._run(go())
"""


async def test_kill_9_loses_nothing_acknowledged(app, tmp_path, lb_env):
    await _project()
    src = tmp_path / "src"
    for k in range(8):
        samples.make_series(samples.sample_path("CT_small.dcm"), src / f"s{k}", 25)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted(src.rglob("*.dcm"))):
        f.rename(flat / f"{i:04d}.dcm")
    md5 = {pydicom.dcmread(f).SOPInstanceUID: hashlib.md5(f.read_bytes()).hexdigest() for f in flat.iterdir()}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(flat)], env={**os.environ, **lb_env},
                            stdout=subprocess.PIPE, text=True)
    acked = []
    deadline = time.monotonic() + 120
    while len(acked) < 40 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    import json

    acked_uids = [json.loads(line)[0] for line in acked]
    assert len(acked_uids) >= 10, "the ingest process did not get far enough to test anything"
    rows = {r["sop_instance_uid"]: r for r in await Instance.select(
        Instance.sop_instance_uid, Instance.md5, Instance.file_key)}
    assert set(acked_uids) <= set(rows)  # everything acknowledged is committed ...
    for uid in acked_uids:  # ... and its file is there with the right bytes
        assert rows[uid]["md5"] == md5[uid]
        assert hashlib.md5(storage().read_bytes(rows[uid]["file_key"])).hexdigest() == md5[uid]


async def test_raced_rows_and_a_second_series_of_a_study(app, tmp_path):
    """The batch SQL's upserts: a row another process inserted between the writer's look and its insert is
    answered from that row, and a new series of a known study joins it (its modalities grow)."""
    from portal import db
    from portal.tables import Study

    p = await _project()
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "s", 1)
    (r,) = await ingest.ingest_files([(f, "a")], p)
    assert r.status == "stored"
    stored = await Instance.select(Instance.id, Instance.md5, Instance.file_key).first()
    archive = await projects.archive(p, None)
    read = ingest.prepare(f)
    job = writer.Job(p, archive, read, read.parsed.patient_id, file_key="elsewhere")  # as if the look missed it
    async with db.write_transaction():
        out = await writer._transact(writer._write_rows([job]))
    assert out[id(job)] == ("raced", stored)
    assert await Instance.count() == 1
    study_uid = pydicom.dcmread(f).StudyInstanceUID
    (mr,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "mr", 1, study_uid=study_uid)
    ds = pydicom.dcmread(mr)
    ds.Modality = "MR"
    ds.save_as(mr)
    (r,) = await ingest.ingest_files([(mr, "mr")], p)
    assert r.status == "stored"
    (study,) = await Study.select(Study.id, Study.modalities)
    assert study["modalities"] == "CT\\MR"
    assert await Series.count().where(Series.study == study["id"]) == 2


async def test_a_spooled_resend_differing_only_in_file_meta_is_already_stored(app, tmp_path):
    """A spooled upload is renamed into place and its bytes let go once hashed: the comparison with the stored
    copy reads the file back from where it was placed (the spooled path is gone by then)."""
    p = await _project()
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "s", 1)
    (first,) = await ingest.ingest_files([(f, "first.dcm")], p)
    ds = pydicom.dcmread(f)
    ds.file_meta.ImplementationVersionName = "OTHER_SCU_1"
    spooled = tmp_path / "spool" / "part-1.bin"
    spooled.parent.mkdir()
    ds.save_as(spooled)
    assert hashlib.md5(spooled.read_bytes()).hexdigest() != hashlib.md5(f.read_bytes()).hexdigest()
    (again,) = await ingest.ingest_files([(spooled, "again.dcm")], p, move=True)
    assert (first.status, again.status) == ("stored", "already_stored")
    assert not spooled.exists()  # moved into place, then removed as the stored copy was kept
    assert await Instance.count() == 1
    assert set(stored_keys()) == {r["file_key"] for r in await Instance.select(Instance.file_key)}
