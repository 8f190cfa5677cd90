"""STOW-RS: store the instances of a request through the one ingest path and build the PS3.18 answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from portal.archive import IngestResult
from portal.archive.ingest import ingest_files
from portal.dicomweb._json import element, sequence
from portal.dicomweb.links import Links
from portal.errors import Invalid, UnsupportedMediaType
from portal.tables import Project
from portal.uploads import media_type

log = logging.getLogger("lightbox.dicomweb")

# Failure Reason (0008,1197) values: PS3.4 B.2.3 storage statuses, PS3.7 C general statuses.
PROCESSING_FAILURE = 0x0110  # something went wrong on our side
DUPLICATE_SOP_INSTANCE = 0x0111  # the SOP Instance UID is stored with other content (kept)
OUT_OF_RESOURCES = 0xA700  # the disk is full or unwritable
CANNOT_UNDERSTAND = 0xC000  # not DICOM, truncated, required UIDs missing, ...
# Not in the standard's list: dcm4chee's code in the "cannot understand" range for an instance
# sent to /studies/{study} that belongs to another study.
STUDY_UID_MISMATCH = 0xC409


@dataclass
class _Item:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    failure: int | None = None
    reason: str = ""
    url: str = ""


@dataclass
class StoreResponse:
    stored: list[_Item] = field(default_factory=list)
    failed: list[_Item] = field(default_factory=list)
    study_url: str = ""

    @property
    def status(self) -> int:
        """200 all stored (already stored counts), 202 some failed, 409 none stored (PS3.18 10.5.3)."""
        return 409 if not self.stored else 202 if self.failed else 200

    def as_dicom_json(self) -> dict:
        out = {}
        if self.study_url:
            out.update([element("RetrieveURL", self.study_url)])
        if self.failed:
            out.update([sequence("FailedSOPSequence", [
                dict([element("ReferencedSOPClassUID", i.sop_class_uid),
                      element("ReferencedSOPInstanceUID", i.sop_instance_uid),
                      element("FailureReason", i.failure)]) for i in self.failed])])
        if self.stored:
            out.update([sequence("ReferencedSOPSequence", [
                dict([element("ReferencedSOPClassUID", i.sop_class_uid),
                      element("ReferencedSOPInstanceUID", i.sop_instance_uid),
                      element("RetrieveURL", i.url)]) for i in self.stored])])
        return dict(sorted(out.items()))


async def store(files: list[tuple[Path, str]], project: Project, links: Links,
                study_uid: str | None = None, audit: dict | None = None) -> StoreResponse:
    """Ingest each (path, filename) together (one batch where they fit); with `study_uid`, instances of any
    other study are refused unstored. `audit` is committed with the instances."""
    if not files:
        raise Invalid("The request carried no DICOM parts; send multipart/related; type=\"application/dicom\" "
                      "with one Part-10 file per part.", "no_data_submitted")

    def accept(p) -> str:
        if study_uid and p.study_instance_uid != study_uid:
            return f"belongs to study {p.study_instance_uid}, not {study_uid}"
        return ""

    # DICOMweb carries DICOM only: a part named .nii is refused as not DICOM, never converted.
    results = await ingest_files(files, project, move=True, audit=audit, accept=accept, return_exceptions=True,
                                 volumes=False)
    response = StoreResponse()
    for (_, filename), result in zip(files, results):
        item = _outcome(result, filename)
        if item.failure is None:
            item.url = links.instance(item.study_instance_uid, item.series_instance_uid, item.sop_instance_uid)
            response.stored.append(item)
        else:
            log.info("STOW-RS %s: %s failed (%04X): %s", project.name, filename, item.failure, item.reason)
            response.failed.append(item)
    studies = {i.study_instance_uid for i in response.stored}
    if study_uid or len(studies) == 1:
        response.study_url = links.study(study_uid or studies.pop())
    return response


def _outcome(result, filename: str) -> _Item:
    if isinstance(result, OSError):
        log.error("STOW-RS could not write %s: %s", filename, result)
        return _Item("", "", failure=OUT_OF_RESOURCES, reason=str(result))
    if isinstance(result, BaseException):  # one bad instance must not lose the answer for the others
        log.error("STOW-RS failed on %s: %r", filename, result)
        return _Item("", "", failure=PROCESSING_FAILURE, reason=str(result))
    if result.status == "rejected" and result.suberror == "refused":
        return _Item(result.sop_class_uid, result.sop_instance_uid, failure=STUDY_UID_MISMATCH, reason=result.reason)
    return _item(result)


def _item(r: IngestResult) -> _Item:
    failure = None if r.ok else DUPLICATE_SOP_INSTANCE if r.status == "conflict" else CANNOT_UNDERSTAND
    return _Item(r.sop_class_uid, r.sop_instance_uid, r.study_instance_uid, r.series_instance_uid,
                 failure=failure, reason=r.reason)


def check_content_type(content_type: str) -> None:
    """STOW-RS takes multipart/related; type="application/dicom" (415 otherwise)."""
    main, params = media_type(content_type)
    if main != "multipart/related" or params.get("type", "").strip().lower() != "application/dicom":
        raise UnsupportedMediaType(
            f"STOW-RS takes multipart/related; type=\"application/dicom\", not {content_type or '(none)'!r}.",
            "unsupported_media_type")
