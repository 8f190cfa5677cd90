"""AI results as DICOM, for the PACS: a Comprehensive SR with every score, the model's name and version and the
findings; a secondary capture of the heatmap over the image it was computed on; the report as encapsulated PDF.

Made with highdicom (SR, SC) and pydicom (encapsulated PDF). `build()` is plain CPU work that needs ~100 MB of
libraries: it runs where the model runs (portal/tasks/offload.py), never imported by the web process;
portal/inference/publish.py puts what it made into the scored study.
"""

from __future__ import annotations

import io
import textwrap

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


def _encoded(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def build(source_path: str, frame: int, scores: dict[str, float], model: dict, report: str,
          heatmap_png: bytes | None, flagged: list[str] | None = None, critical: bool = False) -> dict[str, bytes | None]:
    """The three objects for one scored series; `source_path`/`frame` (0-based) is the representative image.
    A plain dict ({"sr", "sc" (None without a heatmap), "pdf" (the document itself), "pdf_dicom" (the same,
    encapsulated)}): it crosses a process boundary without importing this module on the other side."""
    source = dcmread(source_path, stop_before_pixels=False)
    pdf = _pdf_document(source, scores, model, report)
    return {"sr": _encoded(_sr(source, scores, model, report, flagged or [], critical)),
            "sc": _encoded(_sc(source, frame, heatmap_png)) if heatmap_png else None,
            "pdf": pdf, "pdf_dicom": _encoded(_encapsulated_pdf(source, pdf, model))}


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
