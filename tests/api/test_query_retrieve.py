"""Query/retrieve SCP on the DICOM port: dcmtk's findscu, movescu and getscu, storescp as the C-MOVE destination."""

import shutil

import pydicom
import pytest

from portal import dimse
from portal.archive import ingest
from portal.dicom import samples
from portal.network import nodes
from tests.helpers import make_project
from tests.network import dcmtk, storescp  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not shutil.which("findscu"),
                                reason="dcmtk (findscu, movescu, getscu, storescp) is not installed")


@pytest.fixture
async def receiver(app):
    r = dimse.Receiver("127.0.0.1", 0)
    r.start()
    yield r
    await r.stop()


@pytest.fixture
async def archive(tmp_path):
    """Two patients: SMITH^JOHN with a 3-image CT series (2021-05-04), DOE^JANE with a 2-image series (2023)."""
    chest = await make_project("chest")
    made = {}
    for pid, name, date, n in (("PAT-1", "SMITH^JOHN", "20210504", 3), ("PAT-2", "DOE^JANE", "20230101", 2)):
        files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "in" / pid, n, patient_id=pid)
        for f in files:
            ds = pydicom.dcmread(f)
            ds.PatientName, ds.StudyDate = name, date
            ds.save_as(f, enforce_file_format=True)
            assert (await ingest.ingest_file(f, chest)).status == "stored"
        made[pid] = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    return made


async def find(receiver, tmp_path, *keys: str, model: str = "-S") -> list[pydicom.Dataset]:
    out = tmp_path / f"find{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    args = [a for k in keys for a in ("-k", k)]
    await dcmtk("findscu", model, "-aec", "CHEST", "-X", "-od", out, *args, "127.0.0.1", receiver.port)
    return [pydicom.dcmread(p) for p in sorted(out.glob("*.dcm"))]


async def test_c_find_study_root_with_wildcards_and_ranges(receiver, archive, tmp_path):
    found = await find(receiver, tmp_path, "QueryRetrieveLevel=STUDY", "PatientName=SMI*", "StudyDate",
                       "StudyInstanceUID", "PatientID", "ModalitiesInStudy", "NumberOfStudyRelatedInstances")
    assert len(found) == 1
    (study,) = found
    assert study.PatientID == "PAT-1" and study.StudyDate == "20210504"
    assert study.StudyInstanceUID == archive["PAT-1"][0].StudyInstanceUID
    assert study.NumberOfStudyRelatedInstances == 3 and study.ModalitiesInStudy == "CT"

    dated = await find(receiver, tmp_path, "QueryRetrieveLevel=STUDY", "StudyDate=20220101-", "PatientName")
    assert [str(d.PatientName) for d in dated] == ["DOE^JANE"]
    both = await find(receiver, tmp_path, "QueryRetrieveLevel=STUDY", "StudyDate=20200101-20231231", "PatientID")
    assert sorted(d.PatientID for d in both) == ["PAT-1", "PAT-2"]
    assert await find(receiver, tmp_path, "QueryRetrieveLevel=STUDY", "PatientID=NOBODY") == []


async def test_c_find_patient_root_every_level(receiver, archive, tmp_path):
    patients = await find(receiver, tmp_path, "QueryRetrieveLevel=PATIENT", "PatientID=PAT-?", "PatientName",
                          "NumberOfPatientRelatedStudies", model="-P")
    assert sorted((p.PatientID, str(p.PatientName)) for p in patients) == [("PAT-1", "SMITH^JOHN"),
                                                                        ("PAT-2", "DOE^JANE")]
    assert all(p.NumberOfPatientRelatedStudies == 1 for p in patients)
    first = archive["PAT-1"][0]
    series = await find(receiver, tmp_path, "QueryRetrieveLevel=SERIES", "PatientID=PAT-1",
                        f"StudyInstanceUID={first.StudyInstanceUID}", "SeriesInstanceUID", "Modality",
                        "NumberOfSeriesRelatedInstances", model="-P")
    assert [(s.SeriesInstanceUID, s.Modality, s.NumberOfSeriesRelatedInstances) for s in series] == [
        (first.SeriesInstanceUID, "CT", 3)]
    images = await find(receiver, tmp_path, "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={first.StudyInstanceUID}",
                        f"SeriesInstanceUID={first.SeriesInstanceUID}", "SOPInstanceUID", "InstanceNumber",
                        "SOPClassUID", model="-P")
    assert sorted(i.SOPInstanceUID for i in images) == sorted(d.SOPInstanceUID for d in archive["PAT-1"])
    assert all(i.SOPClassUID == first.SOPClassUID for i in images)
    # Study Root has no PATIENT level: refused with a status, not a traceback.
    out = await dcmtk("findscu", "-v", "-S", "-aec", "CHEST", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID",
                      "127.0.0.1", receiver.port, ok=False)
    assert "DataSetDoesNotMatchSOPClass" in out, out


async def test_worklist_query_is_refused_cleanly(receiver, archive, caplog):
    out = await dcmtk("findscu", "-v", "-W", "-aec", "CHEST", "-k", "ScheduledProcedureStepSequence[0].Modality=CT",
                      "127.0.0.1", receiver.port, ok=False)
    assert "Refused: SOPClassNotSupported" in out, out
    assert "Traceback" not in caplog.text and "Exception" not in caplog.text


async def test_c_move_to_a_registered_node(receiver, archive, storescp, tmp_path):
    port, out = storescp
    await nodes.create("dest", ae_title="DEST", host="127.0.0.1", port=port)
    first = archive["PAT-1"][0]
    await dcmtk("movescu", "-S", "-aec", "CHEST", "-aem", "DEST", "-k", "QueryRetrieveLevel=SERIES",
                "-k", f"StudyInstanceUID={first.StudyInstanceUID}", "-k", f"SeriesInstanceUID={first.SeriesInstanceUID}",
                "127.0.0.1", receiver.port)
    got = sorted(pydicom.dcmread(p).SOPInstanceUID for p in out.iterdir())
    assert got == sorted(d.SOPInstanceUID for d in archive["PAT-1"])

    # A whole patient (Patient Root), then a destination nobody registered.
    await dcmtk("movescu", "-P", "-aec", "CHEST", "-aem", "DEST", "-k", "QueryRetrieveLevel=PATIENT",
                "-k", "PatientID=PAT-2", "127.0.0.1", receiver.port)
    assert len(list(out.iterdir())) == 5
    text = await dcmtk("movescu", "-v", "-S", "-aec", "CHEST", "-aem", "NOWHERE", "-k", "QueryRetrieveLevel=STUDY",
                       "-k", f"StudyInstanceUID={first.StudyInstanceUID}", "127.0.0.1", receiver.port, ok=False)
    assert "Refused: MoveDestinationUnknown" in text, text


async def test_c_get_series(receiver, archive, tmp_path):
    out = tmp_path / "got"
    out.mkdir()
    second = archive["PAT-2"][0]
    await dcmtk("getscu", "-S", "-aec", "CHEST", "-od", out, "-k", "QueryRetrieveLevel=SERIES",
                "-k", f"StudyInstanceUID={second.StudyInstanceUID}", "-k", f"SeriesInstanceUID={second.SeriesInstanceUID}",
                "127.0.0.1", receiver.port)
    got = [pydicom.dcmread(p) for p in out.iterdir()]
    assert sorted(g.SOPInstanceUID for g in got) == sorted(d.SOPInstanceUID for d in archive["PAT-2"])
    assert all(g.PatientID == "PAT-2" and len(g.PixelData) > 0 for g in got)
