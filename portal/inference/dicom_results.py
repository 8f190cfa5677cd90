"""AI results as DICOM, for the PACS: a Comprehensive SR with every score, the model's name and version and the
findings; a secondary capture of the heatmap over the image it was computed on; the report as encapsulated PDF.

Made with highdicom (SR, SC) and pydicom (encapsulated PDF); `build()` is plain CPU work (run in a thread),
`publish()` puts each into the scored study as a new series through the one ingest path.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from portal.dicom.render import frame_array, to_image

MANUFACTURER = "Lightbox"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
# Series numbers of the outputs: high, so that they sort after the acquired series.
SERIES_NUMBERS = {"sr": 9901, "sc": 9902, "pdf": 9903}
# Codes of our own for what no standard code names (scheme designator 99LIGHTBOX).
_SCHEME = "99LIGHTBOX"


def _code(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=value[:16], scheme_designator=_SCHEME, meaning=meaning[:64])


@dataclass
class Outputs:
    sr: bytes
    sc: bytes | None
    pdf: bytes  # the PDF document itself
    pdf_dicom: bytes  # the same, encapsulated


def _encoded(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def build(source_path: str, frame: int, scores: dict[str, float], model: dict, report: str,
          heatmap_png: bytes | None, flagged: list[str] | None = None, critical: bool = False) -> Outputs:
    """The three objects for one scored series; `source_path`/`frame` (0-based) is the representative image."""
    source = dcmread(source_path, stop_before_pixels=False)
    return Outputs(sr=_encoded(_sr(source, scores, model, report, flagged or [], critical)),
                   sc=_encoded(_sc(source, frame, heatmap_png)) if heatmap_png else None,
                   pdf=(pdf := _pdf_document(source, scores, model, report)),
                   pdf_dicom=_encoded(_encapsulated_pdf(source, pdf, model)))


def _sr(source: Dataset, scores: dict, model: dict, report: str, flagged: list[str], critical: bool) -> Dataset:
    name = f"{model.get('name', '')} {model.get('version', '')}".strip()
    items = [
        hd.sr.TextContentItem(name=codes.DCM.AlgorithmName, value=str(model.get("name", ""))[:1024],
                              relationship_type="HAS OBS CONTEXT"),
        hd.sr.TextContentItem(name=codes.DCM.AlgorithmVersion, value=str(model.get("version", ""))[:1024],
                              relationship_type="HAS OBS CONTEXT"),
    ]
    for output, value in scores.items():
        items.append(hd.sr.NumContentItem(name=_code(output, output), value=float(value),
                                          unit=hd.sr.CodedConcept("1", "UCUM", "no units"),
                                          relationship_type="CONTAINS"))
    findings = [f"{output} flagged" for output in flagged] + (["critical result"] if critical else [])
    for finding in findings or ["no finding"]:
        items.append(hd.sr.TextContentItem(name=codes.DCM.Finding, value=finding, relationship_type="CONTAINS"))
    if report:
        items.append(hd.sr.TextContentItem(name=_code("report", "AI report"), value=report[:10000],
                                           relationship_type="CONTAINS"))
    root = hd.sr.ContainerContentItem(name=_code("ai-result", "AI result"), template_id=None)
    root.ContentSequence = items
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=root, series_instance_uid=generate_uid(), series_number=SERIES_NUMBERS["sr"],
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description=f"AI result: {name}"[:64])
    return sr


def _overlay(source: Dataset, frame: int, heatmap_png: bytes) -> np.ndarray:
    """The representative frame as 8-bit RGB with the RGBA heatmap blended over it."""
    base = to_image(frame_array(source.filename, frame, ds=source), source, frame).convert("RGB")
    heat = Image.open(io.BytesIO(heatmap_png)).convert("RGBA").resize(base.size)
    return np.asarray(Image.alpha_composite(base.convert("RGBA"), heat).convert("RGB"))


def _sc(source: Dataset, frame: int, heatmap_png: bytes) -> Dataset:
    pixels = _overlay(source, frame, heatmap_png)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=generate_uid(), series_number=SERIES_NUMBERS["sc"],
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        patient_orientation=("L", "P"), transfer_syntax_uid=ExplicitVRLittleEndian)
    sc.SeriesDescription = "AI heatmap"
    sc.Modality = "OT"
    return sc


def _pdf_document(source: Dataset, scores: dict, model: dict, report: str) -> bytes:
    """A one-page A4 PDF of the report (drawn with Pillow: no other PDF library needed)."""
    page = Image.new("RGB", (1240, 1754), "white")  # A4 at 150 dpi
    draw = ImageDraw.Draw(page)
    try:
        font = ImageFont.load_default(size=22)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    lines = [f"AI result: {model.get('name', '')} {model.get('version', '')}",
             f"Patient {source.get('PatientID', '')}  Study {source.get('StudyDate', '')}  "
             f"Series {source.get('SeriesDescription', '') or source.get('Modality', '')}", ""]
    lines += [f"{k}: {v:.4f}" for k, v in scores.items()] + [""]
    for paragraph in (report or "").splitlines():
        lines += textwrap.wrap(paragraph, 90) or [""]
    y = 80
    for line in lines[:60]:
        draw.text((80, y), line, fill="black", font=font)
        y += 30
    out = io.BytesIO()
    page.save(out, "PDF", resolution=150.0, title=f"AI result {model.get('name', '')}")
    return out.getvalue()


def _encapsulated_pdf(source: Dataset, pdf: bytes, model: dict) -> Dataset:
    ds = Dataset()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        if keyword in source:
            setattr(ds, keyword, source.data_element(keyword).value)
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DOC"
    ds.SeriesNumber = SERIES_NUMBERS["pdf"]
    ds.InstanceNumber = 1
    ds.SeriesDescription = "AI report"
    ds.Manufacturer = MANUFACTURER
    ds.ContentDate = ds.get("StudyDate", "")
    ds.ContentTime = ds.get("StudyTime", "")
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = f"AI report {model.get('name', '')} {model.get('version', '')}"[:64]
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "18748-4", "LN", "Diagnostic imaging report"
    ds.ConceptNameCodeSequence = [concept]
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


# --- into the archive (and to the project's node) ---------------------------------------------------------


async def publish(job, outcome: dict) -> dict[str, str]:
    """Build the outputs of a finished job, ingest them into the scored study (the series' archive), keep them as
    the job's `sr`, `sc` and `pdf` assets, and send them to the project's `results_node` when it names one.
    Returns {kind: SeriesInstanceUID}."""
    import asyncio
    import uuid

    from portal import archive as arch, clock, projects, settings as settings_mod
    from portal.review.decisions import DERIVED
    from portal.tables import Archive, Asset, Patient, Project, Series, Study
    rep = outcome.get("representative") or {}
    if not rep.get("path") or await Asset.exists().where((Asset.job == job.id) & (Asset.kind == "sr")):
        return {}  # nothing to show, or made already (a job finished twice)
    built = await asyncio.to_thread(build, str(rep["path"]), int(rep.get("frame") or 0), outcome.get("scores") or {},
                                    outcome.get("model") or {"name": job.model_name, "version": job.model_version},
                                    outcome.get("report") or "", outcome.get("heatmap_png"),
                                    list(outcome.get("flagged") or []), bool(outcome.get("critical")))
    project = await Project.objects().get(Project.id == job.project)
    series = await Series.objects().get(Series.id == job.series)
    study = await Study.objects().get(Study.id == series.study)
    patient = await Patient.objects().get(Patient.id == study.patient)
    archive = await Archive.objects().get(Archive.id == patient.archive)
    tmp = settings_mod.current().data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    store = arch.storage()
    for kind, data, asset_media, asset_data in (("sr", built.sr, "application/dicom", built.sr),
                                                ("sc", built.sc, "application/dicom", built.sc),
                                                ("pdf", built.pdf_dicom, "application/pdf", built.pdf)):
        if not data:
            continue
        path = tmp / f"ai-{job.id}-{kind}-{uuid.uuid4().hex}.dcm"
        path.write_bytes(data)
        try:
            result = await arch.ingest_file(path, project, archive, filename=f"ai-{kind}.dcm")
        finally:
            path.unlink(missing_ok=True)
        if result.ok:
            made[kind] = result.series_instance_uid
            await Series.update({Series.review_status: DERIVED}).where(
                (Series.project == project.id) & (Series.series_instance_uid == result.series_instance_uid))
        key = f"ai/{job.id}/{kind}"
        await asyncio.to_thread(store.put_fileobj, io.BytesIO(asset_data), key)
        await Asset.insert(Asset(job=job.id, series=job.series, kind=kind, media_type=asset_media, file_key=key,
                                 created_at=clock.now()))
    node = projects.settings_of(project).get("results_node") or ""
    if node and made:
        from portal.network import send
        from portal.tasks.network import enqueue

        queued = await send.request(project, node, series=list(made.values()))
        enqueue(queued)
    return made
