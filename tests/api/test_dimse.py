"""The C-STORE receiver, with pynetdicom and dcmtk's storescu as real senders."""

import asyncio
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pydicom.filereader import read_file_meta_info
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification

from portal import dimse, projects
from portal.archive import ingest
from portal.dicom import samples
from portal.tables import AuditEvent, Instance, Series
from tests.helpers import make_project

@pytest.fixture
async def receiver(app):
    r = dimse.Receiver("127.0.0.1", 0)  # port 0: any free port
    r.start()
    yield r
    await r.stop()


@pytest.fixture(autouse=True)
def raw_sending(monkeypatch):
    # pynetdicom then sends each file's dataset bytes as they are, so "byte-faithful" means something.
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


@dataclass
class Sent:
    established: bool
    rejected: bool = False
    diagnostic: int | None = None
    echo: int | None = None
    statuses: list[int] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def scu(port: int, called: str, paths=(), *, echo: bool = False, calling: str = "TESTSCU") -> Sent:
    """Associate with the receiver as pynetdicom does, C-ECHO and/or C-STORE each file (blocking)."""
    ae = AE(calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for sop_class, syntax in sorted({(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID))
                                     for m in map(read_file_meta_info, paths)}):
        ae.add_requested_context(sop_class, syntax)
    if echo or not paths:
        ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        rj = assoc.acceptor.primitive
        return Sent(False, rejected=assoc.is_rejected, diagnostic=getattr(rj, "diagnostic", None))
    sent = Sent(True)
    if echo:
        sent.echo = assoc.send_c_echo().Status
    for path in paths:
        rsp = assoc.send_c_store(Path(path))
        sent.statuses.append(rsp.Status)
        sent.comments.append(str(rsp.get("ErrorComment", "")))
    assoc.release()
    return sent


async def send(receiver, called, paths=(), **kw) -> Sent:
    # pynetdicom blocks: run it off the loop, which the receiver needs for ingest.
    return await asyncio.to_thread(scu, receiver.port, called, list(paths), **kw)


def dataset_bytes(path) -> bytes:
    """A Part-10 file's dataset as encoded, after the preamble and the file meta."""
    meta = read_file_meta_info(path)
    return Path(path).read_bytes()[132 + 12 + meta.FileMetaInformationGroupLength:]


async def stored_path(sop_instance_uid: str) -> Path:
    row = await Instance.select().where(Instance.sop_instance_uid == sop_instance_uid).first()
    assert row is not None, f"{sop_instance_uid} was not stored"
    return ingest.storage().path(row["file_key"])


async def assert_stored_as_sent(path: Path, *, same_bytes: bool = True) -> None:
    """The stored instance has the file's elements and pixel data; with `same_bytes` (a sender that sends
    the file's dataset as it is encoded), the very same dataset bytes."""
    sent = pydicom.dcmread(path)
    stored_file = await stored_path(sent.SOPInstanceUID)
    stored = pydicom.dcmread(stored_file)
    assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    assert stored.file_meta.MediaStorageSOPInstanceUID == sent.SOPInstanceUID
    assert stored.PixelData == sent.PixelData
    if same_bytes:
        assert dataset_bytes(stored_file) == dataset_bytes(path)  # nothing decoded or re-encoded
    else:
        # A sender that re-encodes may drop trailing padding and write encapsulated Pixel Data as OB.
        for ds in (stored, sent):
            ds.pop(0xFFFCFFFC, None)
            ds.pop(0x7FE00010)
    assert stored == sent  # every element equal


async def audit_events(n: int) -> list[dict]:
    # The receiver records the event when the connection closes, just after the sender returns.
    for _ in range(100):
        rows = await AuditEvent.select().where(AuditEvent.action == "dicom_received").order_by(AuditEvent.id)
        if len(rows) >= n:
            # JSON columns come back as text on SQLite.
            return [{**r, "detail": json.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"]}
                    for r in rows]
        await asyncio.sleep(0.05)
    return rows


async def test_c_echo(receiver):
    await make_project("chest")
    sent = await send(receiver, "CHEST", echo=True)
    assert sent.established and sent.echo == 0x0000
    await asyncio.sleep(0.3)
    assert await audit_events(0) == []  # an echo alone is not worth an audit event


async def test_series_is_stored_as_sent_and_a_resend_is_already_stored(receiver, tmp_path):
    await make_project("chest")
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 5, patient_id="PAT-7")
    sent = await send(receiver, "CHEST", files, calling="MODALITY1")
    assert sent.statuses == [0x0000] * 5
    assert await Instance.count() == 5 and await Series.count() == 1
    for f in files:
        await assert_stored_as_sent(f)

    again = await send(receiver, "chest", files, calling="MODALITY1")
    assert again.statuses == [0x0000] * 5
    assert await Instance.count() == 5

    first, second = await audit_events(2)
    assert first["object"] == "project:chest/archive:default"
    assert first["detail"]["calling_ae"] == "MODALITY1" and first["detail"]["stored"] == 5
    assert second["detail"]["already_stored"] == 5 and second["detail"]["stored"] == 0
    assert first["client"] == "127.0.0.1"


async def test_an_image_uploaded_first_and_then_sent_by_c_store_is_already_stored(receiver, tmp_path):
    # The receiver writes its own file meta, so the files differ while the datasets are the same.
    chest = await make_project("chest")
    f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "one.dcm")
    ds = pydicom.dcmread(f)
    ds.file_meta.ImplementationClassUID = "1.2.3.4.5.6.7"
    ds.file_meta.ImplementationVersionName = "OTHER_SENDER"
    ds.save_as(f, enforce_file_format=True)
    assert (await ingest.ingest_file(f, chest)).status == "stored"
    sent = await send(receiver, "CHEST", [f])
    assert sent.statuses == [0x0000]
    (event,) = await audit_events(1)
    assert event["detail"]["already_stored"] == 1 and event["detail"].get("conflict", 0) == 0
    assert await Instance.count() == 1


@pytest.mark.parametrize("syntax", sorted(samples.SAMPLES_BY_SYNTAX))
async def test_every_transfer_syntax_is_stored_as_sent(receiver, syntax):
    await make_project("chest")
    path = samples.sample_path(samples.SAMPLES_BY_SYNTAX[syntax])
    sent = await send(receiver, "CHEST", [path])
    assert sent.statuses == [0x0000], sent.comments
    await assert_stored_as_sent(path)
    row = await Instance.select().first()
    assert row["transfer_syntax_uid"] == read_file_meta_info(path).TransferSyntaxUID


async def test_unknown_called_ae_title_is_rejected_unless_there_is_a_default(receiver, tmp_path):
    await make_project("chest")
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 1)
    sent = await send(receiver, "NOBODY", [f])
    assert not sent.established and sent.rejected and sent.diagnostic == 0x07  # called AE title not recognised
    assert await Instance.count() == 0

    receiver.default_project = "chest"
    assert (await send(receiver, "NOBODY", [f])).statuses == [0x0000]
    assert await Instance.count() == 1


async def test_called_ae_title_chooses_the_project(receiver, tmp_path):
    chest = await make_project("chest")
    await projects.update_settings(chest, {"ae_titles": ["ct_room_1"]})
    await make_project("other")
    receiver.default_project = "other"
    for called in ("CT_ROOM_1", "CHEST", "OTHER", "ANYTHING"):
        (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / called, 1)
        assert (await send(receiver, called, [f])).statuses == [0x0000]
    rows = await Instance.select(Instance.project.name).order_by(Instance.id)
    assert [r["project.name"] for r in rows] == ["chest", "chest", "other", "other"]


async def test_only_allowed_calling_ae_titles_store_when_a_project_lists_them(receiver, tmp_path, client):
    from tests.helpers import form_post, login

    await make_project("chest", {"boss": "manager"})
    await login(client, "boss")
    r = await form_post(client, "/projects/chest/settings/dicom", {"ae_titles": "ct_room_1, CT_ROOM_1",
                                                                   "ae_callers": "ct-scanner-1\nPACS"})
    assert r.status_code == 303
    bad = await form_post(client, "/projects/chest/settings/dicom", {"ae_titles": "WAY_TOO_LONG_AE_TITLE_X"})
    assert bad.status_code == 400 and "is not an AE title" in bad.text
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 1)
    refused = await send(receiver, "CT_ROOM_1", [f], calling="INTRUDER")
    assert not refused.established and refused.rejected and refused.diagnostic == 0x03
    assert await Instance.count() == 0
    rejected = await AuditEvent.select().where(AuditEvent.action == "dicom_association_rejected").first()
    assert rejected["username"] == "INTRUDER" and rejected["object"] == "project:chest"
    allowed = await send(receiver, "CT_ROOM_1", [f], calling="CT-SCANNER-1")
    assert allowed.statuses == [0x0000] and await Instance.count() == 1


async def test_failures_have_their_status_and_a_reason(receiver, settings, tmp_path):
    await make_project("chest")
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 1)
    ds = pydicom.dcmread(f)

    ds.PatientName = "Someone^Else"  # same SOP Instance UID, other content
    ds.save_as(tmp_path / "changed.dcm")
    no_study = pydicom.dcmread(f)
    no_study.SOPInstanceUID = no_study.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    del no_study.StudyInstanceUID
    no_study.save_as(tmp_path / "no_study.dcm")
    mismatch = pydicom.dcmread(f)
    mismatch.file_meta.MediaStorageSOPInstanceUID = generate_uid()  # pynetdicom announces this one
    mismatch.SOPInstanceUID = generate_uid()
    mismatch.save_as(tmp_path / "mismatch.dcm")

    sent = await send(receiver, "CHEST", [f, tmp_path / "changed.dcm", tmp_path / "no_study.dcm",
                                          tmp_path / "mismatch.dcm"])
    assert sent.statuses == [0x0000, dimse.DUPLICATE_SOP_INSTANCE, dimse.CANNOT_UNDERSTAND, dimse.DOES_NOT_MATCH]
    assert "other content" in sent.comments[1]
    assert "Study Instance UID" in sent.comments[2]
    assert "SOP Instance UID" in sent.comments[3]
    assert await Instance.count() == 1
    assert pydicom.dcmread(await stored_path(ds.SOPInstanceUID)).PatientName != "Someone^Else"
    (event,) = await audit_events(1)
    assert {k: event["detail"][k] for k in ("stored", "conflict", "rejected")} == \
        {"stored": 1, "conflict": 1, "rejected": 2}
    tmp = settings.data_dir / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []  # no temporary files (received bytes go straight to their place)


async def test_private_sop_class_is_accepted(receiver, tmp_path):
    await make_project("chest")
    ds = pydicom.dcmread(samples.sample_path("CT_small.dcm"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.3.12.2.1107.5.9.1"  # Siemens CSA non-image
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    del ds.PixelData
    ds.save_as(tmp_path / "private.dcm")
    assert (await send(receiver, "CHEST", [tmp_path / "private.dcm"])).statuses == [0x0000]
    assert (await Instance.select().first())["sop_class_uid"] == "1.3.12.2.1107.5.9.1"


async def test_four_senders_at_once_leave_no_duplicates(receiver, tmp_path):
    await make_project("chest")
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 5)
    results = await asyncio.gather(*(send(receiver, "CHEST", files, calling=f"SCU{i}") for i in range(4)))
    assert [r.statuses for r in results] == [[0x0000] * 5] * 4
    assert await Instance.count() == 5 and await Series.count() == 1


async def test_associations_work_when_the_process_holds_many_descriptors(receiver, tmp_path):
    # A busy server (or a long test run) gives new sockets numbers past 1024, which select() cannot watch:
    # pynetdicom took such a connection for closed and the peer gave up after 30 s, "peer aborted".
    import os
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        pytest.skip(f"needs 1300 open files (the limit here is {soft})")
    await make_project("chest")
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 1)
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        sent = await send(receiver, "CHEST", [f], echo=True)  # both ends in this process: SCU and receiver
    finally:
        for fd in held:
            os.close(fd)
    assert sent.established and sent.echo == 0x0000 and sent.statuses == [0x0000]


requires_dcmtk = pytest.mark.skipif(not shutil.which("storescu"),
                                    reason="dcmtk's storescu/echoscu are not installed (apt-get install dcmtk)")


async def run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


@requires_dcmtk
async def test_dcmtk_echoscu_and_storescu(receiver, tmp_path):
    await make_project("chest")
    await run("echoscu", "-aet", "DCMTK", "-aec", "CHEST", "127.0.0.1", str(receiver.port))
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 5)
    await run("storescu", "-aet", "DCMTK", "-aec", "CHEST", "127.0.0.1", str(receiver.port), *map(str, files))
    # storescu proposes a compressed syntax only when told which one (else it would have to decompress).
    compressed = []
    for syntax, option in {"jpeg2000": "-xv", "rle": "-xr", "jpeg_ls": "-xt", "jpeg_baseline": "-xy"}.items():
        # Fresh UIDs: several of these samples are the same MR instance in other syntaxes.
        compressed.append(samples.restamp(samples.sample_path(samples.SAMPLES_BY_SYNTAX[syntax]),
                                          tmp_path / f"{syntax}.dcm"))
        await run("storescu", option, "-aet", "DCMTK", "-aec", "CHEST", "127.0.0.1", str(receiver.port),
                  str(compressed[-1]))
    assert await Instance.count() == 9
    for f in files + compressed:
        # storescu re-encodes what it reads (lengths, padding), so the bytes it sends are its own.
        await assert_stored_as_sent(f, same_bytes=False)
    events = await audit_events(5)
    assert [e["detail"]["stored"] for e in events] == [5, 1, 1, 1, 1]
    assert {e["detail"]["calling_ae"] for e in events} == {"DCMTK"}
    # An unknown called AE title: storescu reports the rejection and exits non-zero.
    proc = await asyncio.create_subprocess_exec("storescu", "-aec", "NOBODY", "127.0.0.1", str(receiver.port),
                                                str(files[0]), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode != 0 and b"Called AE Title Not Recognized" in out, out
