"""AI results as DICOM: SR with every score and the model, a secondary capture of the heatmap over the image, an
encapsulated PDF; stored as series of the scored study, listed with the results, zipped, sent to the project's node."""

import asyncio
import io
import zipfile

import pydicom
from PIL import Image

from portal import projects
from portal.archive import ingest, storage
from portal.dicom import samples
from portal.inference import jobs
from portal.network import nodes
from portal.tables import InferenceJob, Instance, Series
from tests.helpers import creds, make_project
from tests.network import storescp  # noqa: F401 (fixture)


def heatmap(rows, columns) -> bytes:
    img = Image.new("RGBA", (columns, rows), (0, 0, 0, 0))
    img.paste((255, 0, 0, 160), (0, 0, columns // 2, rows))  # the left half glows red
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


async def scored(tmp_path, **settings):
    """A project, a 2-image CT series, and its job finished with a made-up outcome (no model needed)."""
    p = await make_project("ai", {"view": "viewer"})
    await projects.update_settings(p, {"ai_quiet_seconds": 3600, **settings})
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 2, patient_id="AI-2")
    for f in files:
        assert (await ingest.ingest_file(f, p)).status == "stored"
    src = pydicom.dcmread(files[1])
    series = await Series.objects().get(Series.series_instance_uid == src.SeriesInstanceUID)
    job, _ = await jobs.request(p, series)
    await jobs.start(job["id"])
    stored = await Instance.select().where(Instance.sop_instance_uid == src.SOPInstanceUID).first()
    outcome = {"model": {"name": "lightbox-quality", "version": "9.9.9"},
               "scores": {"quality": 0.25, "noise": 0.875}, "flagged": ["noise"], "critical": True,
               "report": "Noise is high.\nRepeat the scan.", "heatmap_png": heatmap(src.Rows, src.Columns),
               "representative": {"sop_instance_uid": src.SOPInstanceUID, "frame": 0,
                                  "path": str(files[1])}}  # the model's local copy of the stored file
    await jobs.finish(job["id"], outcome)
    return p, src, job


async def test_sr_sc_and_pdf_are_series_of_the_scored_study(client, app, tmp_path):
    _, src, job = await scored(tmp_path)
    found = (await client.get(f"/dicomweb/ai/studies/{src.StudyInstanceUID}/series", headers=creds("view"))).json()
    modalities = sorted(s["00080060"]["Value"][0] for s in found)
    assert modalities == ["CT", "DOC", "OT", "SR"]

    r = (await client.get(f"/api/v1/results/{src.SeriesInstanceUID}", headers=creds("view"))).json()
    files = r["result"]["files"]
    assert {"heatmap", "json", "report", "sr", "sc", "pdf"} <= set(files)
    sr = pydicom.dcmread(io.BytesIO((await client.get(files["sr"][0], headers=creds("view"))).content))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and sr.StudyInstanceUID == src.StudyInstanceUID
    items = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in sr.ContentSequence}
    assert float(items["quality"].MeasuredValueSequence[0].NumericValue) == 0.25
    assert float(items["noise"].MeasuredValueSequence[0].NumericValue) == 0.875
    assert items["Algorithm Name"].TextValue == "lightbox-quality" and items["Algorithm Version"].TextValue == "9.9.9"
    findings = [i.TextValue for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeMeaning == "Finding"]
    assert findings == ["noise flagged", "critical result"]
    assert sr.CurrentRequestedProcedureEvidenceSequence[0].StudyInstanceUID == src.StudyInstanceUID

    sc = pydicom.dcmread(io.BytesIO((await client.get(files["sc"][0], headers=creds("view"))).content))
    px = sc.pixel_array.astype(int)
    assert sc.PhotometricInterpretation == "RGB" and px.shape == (src.Rows, src.Columns, 3)
    left, right = px[:, : src.Columns // 2], px[:, src.Columns // 2:]
    assert (left[..., 0] - left[..., 1]).mean() > 50 > abs((right[..., 0] - right[..., 1]).mean())  # red only left
    pdf = (await client.get(files["pdf"][0], headers=creds("view"))).content
    assert pdf.startswith(b"%PDF-")
    doc = await Instance.select().where(Instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.104.1").first()
    encapsulated = pydicom.dcmread(io.BytesIO(storage().read_bytes(doc["file_key"])))
    assert encapsulated.EncapsulatedDocument.rstrip(b"\0") == pdf.rstrip(b"\0")

    params = {"Project": "ai", "PatientID": "AI-2", "StudyInstanceUID": src.StudyInstanceUID,
              "SeriesInstanceUID": src.SeriesInstanceUID, "Results": "sr,sc,pdf"}
    z = await client.get("/api/v1/series/results/", params=params, headers=creds("view"))
    with zipfile.ZipFile(io.BytesIO(z.content)) as archive:
        assert {"sr.dcm", "sc.dcm", "pdf.pdf"} <= set(archive.namelist())
    # The outputs are never scored themselves.
    out_series = await Series.select(Series.id).where(Series.modality.is_in(["SR", "OT", "DOC"]))
    queued = await InferenceJob.select().where(InferenceJob.series.is_in([s["id"] for s in out_series]))
    assert all(j["state"] == "not_applicable" for j in queued)


async def test_results_go_to_the_projects_node(client, app, tmp_path, storescp, consumer):
    port, received = storescp
    await nodes.create("pacs", ae_title="DEST", host="127.0.0.1", port=port)
    await scored(tmp_path, results_node="pacs")
    for _ in range(300):
        if len(list(received.iterdir())) >= 3:
            break
        await asyncio.sleep(0.1)
    classes = sorted(pydicom.dcmread(f).SOPClassUID.name for f in received.iterdir())
    assert classes == ["Comprehensive SR Storage", "Encapsulated PDF Storage", "Secondary Capture Image Storage"]
