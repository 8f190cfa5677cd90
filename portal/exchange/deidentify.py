"""De-identification for sharing outside the team: the DICOM PS3.15 Annex E basic application level
confidentiality profile, taken from the standard's own table, with its options.

The profile's table (E.1-1: an action for each of ~650 attributes) comes from `dicom-anonymizer` (Kitware), which
regenerates it from each DICOM release (we use its 2026c table); Lightbox applies it itself, to the top-level
dataset and every dataset nested in a sequence, so that the options below and the keyed replacements fit in:

- Retain UIDs (default) or remap them to stable 2.25 UIDs (`remap_uids`);
- Retain Longitudinal Temporal Information with Modified Dates (`shift_dates`): every date moves by the same
  number of days for one patient (keyed, so every export of the project agrees), times are kept;
- Clean Descriptors (`clean_descriptors`): descriptions and comments are kept with the patient's name and IDs
  cut out of them, instead of being removed.

Replacements are keyed (HMAC) by the install's secret and the project, so the same patient gets the same
pseudonym in every export of the project, and a remapped UID is the same in every export too. Instances that are
marked (BurnedInAnnotation YES) or likely (screen captures, documents, video) to carry burned-in text are not
de-identifiable by editing attributes: `BurnedInAnnotation` is raised and the export lists them instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from pathlib import Path

from dicomanonymizer import simpledicomanonymizer as kitware
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID

from portal.dicom import open_dataset

METHOD = "PS3.15 E.1 Basic Application Level Confidentiality Profile"
TABLE_VERSION = "dicomfields_2026c"  # the DICOM release dicom-anonymizer's table was taken from

_TABLE = dicom_anonymization_database_selector(TABLE_VERSION)
# The profile's action per attribute: D dummy, Z empty, X remove, U UID, and its combinations. Where the table
# allows removal (X/Z, X/D, X/Z/D, X/Z/U*) we remove: which is required depends on each IOD, and removal leaks
# least (dicom-anonymizer itself keeps a dummy there). Z/D becomes Z.
_ACTION_OF = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z", "X_Z_TAGS": "X",
              "X_D_TAGS": "X", "X_Z_D_TAGS": "X", "X_Z_U_STAR_TAGS": "X"}
PROFILE: dict[int, str] = {}
_RANGES: list[tuple[tuple[int, int, int, int], str]] = []  # (group, element, group mask, element mask), action
for _category, _action in _ACTION_OF.items():
    for _tag in _TABLE[_category]:
        if len(_tag) > 2:
            _RANGES.append((_tag, _action))
        else:
            PROFILE[int(Tag(_tag))] = _action

# Clean Descriptors Option (PS3.15 Table E.1-1, "Clean Desc. Opt." column): kept, but cleaned of identifiers.
CLEAN_DESCRIPTORS = frozenset(int(Tag(k)) for k in (
    "AcquisitionComments", "AcquisitionDeviceProcessingDescription", "AcquisitionProtocolDescription",
    "AdditionalPatientHistory", "AdmittingDiagnosesDescription", "CommentsOnThePerformedProcedureStep",
    "ContrastBolusAgent", "DerivationDescription", "DischargeDiagnosisDescription", "IdentifyingComments",
    "ImageComments", "ImagingServiceRequestComments", "InterpretationText", "Occupation",
    "PatientComments", "PerformedProcedureStepDescription", "ProtocolName",
    "ReasonForStudy", "RequestedContrastAgent", "RequestedProcedureComments", "RequestedProcedureDescription",
    "ResultsComments", "ScheduledProcedureStepDescription", "SeriesDescription", "ServiceEpisodeDescription",
    "StudyComments", "StudyDescription", "VisitComments"))

# UIDs never remapped: they name a kind of thing (a SOP class, a transfer syntax), not an instance.
# Registered DICOM UIDs (1.2.840.10008.…) are kept too, whatever attribute holds them.
_KEEP_UIDS = ("SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID",
              "ReferencedTransferSyntaxUIDInFile", "ReferencedSOPClassUIDInFile", "ImplementationClassUID",
              "CodingSchemeUID", "ContextGroupExtensionCreatorUID", "MappingResourceUID",
              "PrivateInformationCreatorUID", "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID",
              "SOPClassesInStudy")
_TEMPORAL = ("DA", "DT")
# SOP classes whose pixels are screens, scanned paper, documents or video: text burned into them is likely.
_LIKELY_BURNED_IN = ("1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture (and its multi-frame kinds, .7.x)
                     "1.2.840.10008.5.1.4.1.1.104",  # encapsulated documents (PDF, CDA, …)
                     "1.2.840.10008.5.1.4.1.1.77.1.1.1", "1.2.840.10008.5.1.4.1.1.77.1.2.1",  # video
                     "1.2.840.10008.5.1.4.1.1.77.1.4.1")


class BurnedInAnnotation(Exception):
    """The instance is marked, or likely, to carry identifying text in its pixels: left out of the export."""


def action_for(tag: int) -> str | None:
    """The basic profile's action for attribute `tag` (None: not in the table, kept)."""
    if tag in PROFILE:
        return PROFILE[tag]
    group, element = tag >> 16, tag & 0xFFFF
    for (g, e, gmask, emask), action in _RANGES:
        if group & gmask == g & gmask and element & emask == e & emask:
            return action
    return None


def burned_in_reason(ds: Dataset) -> str | None:
    """Why `ds` may carry burned-in identifying text, or None."""
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        return "marked BurnedInAnnotation YES"
    if str(ds.get("BurnedInAnnotation", "")).upper() == "NO":
        return None
    sop_class = str(ds.get("SOPClassUID", ""))
    if any(sop_class == c or sop_class.startswith(c + ".") for c in _LIKELY_BURNED_IN):
        return f"a screen capture, document or video ({UID(sop_class).name or sop_class}) not marked free of it"
    return None


class Deidentifier:
    """Consistent replacements for one project's export."""

    def __init__(self, secret: str, project: str, *, remap_uids: bool = False, shift_dates: bool = False,
                 clean_descriptors: bool = False):
        self._key = hashlib.sha256(f"{secret}:deidentify:{project}".encode()).digest()
        self.remap_uids = remap_uids
        self.shift_dates = shift_dates
        self.clean_descriptors = clean_descriptors
        self._users: dict[str, str] = {}

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).digest()

    def patient_id(self, value: str) -> str:
        return "ANON-" + self._digest("patient", value or "").hex()[:12].upper()

    def patient_name(self, patient_id: str) -> str:
        return "ANONYMOUS^" + self.patient_id(patient_id)[5:]

    def uid(self, value: str) -> str:
        """The UID in the export: itself, or a stable 2.25 UID derived from it."""
        if not self.remap_uids or not value:
            return value
        return "2.25." + str(int.from_bytes(self._digest("uid", value)[:16], "big"))

    def date_shift(self, patient_id: str) -> dt.timedelta:
        """How far this patient's dates move: between 1 and 10 years back, the same in every export."""
        return -dt.timedelta(days=365 + int.from_bytes(self._digest("dates", patient_id or "")[:4], "big") % 3285)

    def user(self, username: str) -> str:
        """Reviewers appear as reviewer-1, reviewer-2 … in the order met."""
        if not username:
            return ""
        return self._users.setdefault(username, f"reviewer-{len(self._users) + 1}")

    def dataset(self, ds: Dataset) -> Dataset:
        """Apply the basic profile (and the chosen options) to `ds` in place and return it."""
        original_id = str(ds.get("PatientID", "") or "")
        ctx = {"shift": self.date_shift(original_id),
               "identifiers": [v for v in (original_id, *str(ds.get("PatientName", "") or "").split("^"),
                                           str(ds.get("AccessionNumber", "") or "")) if len(v.strip()) >= 3]}
        ds.remove_private_tags()  # recursive: private tags inside sequences go too
        self._clean(ds, ctx)
        ds.PatientID = self.patient_id(original_id)
        ds.PatientName = self.patient_name(original_id)
        if getattr(ds, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in ds.file_meta:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientIdentityRemoved = "YES"
        methods = [METHOD] + [name for on, name in (
            (self.shift_dates, "Retain Longitudinal Temporal Information Modified Dates Option"),
            (self.clean_descriptors, "Clean Descriptors Option"),
            (not self.remap_uids, "Retain UIDs Option")) if on]
        ds.DeidentificationMethod = methods if len(methods) > 1 else methods[0]
        ds.DeidentificationMethodCodeSequence = [self._code("113100", "Basic Application Confidentiality Profile")]
        for on, value, meaning in ((self.shift_dates, "113107", "Retain Longitudinal Temporal Information Modified "
                                    "Dates Option"), (self.clean_descriptors, "113105", "Clean Descriptors Option"),
                                   (not self.remap_uids, "113110", "Retain UIDs Option")):
            if on:
                ds.DeidentificationMethodCodeSequence.append(self._code(value, meaning))
        if self.shift_dates:
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        return ds

    @staticmethod
    def _code(value: str, meaning: str) -> Dataset:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
        return code

    def _clean(self, ds: Dataset, ctx: dict) -> None:
        """The profile on `ds` and every dataset nested in its sequences: identifiers hide in sequences (a source
        image's PatientName). Attributes outside the table are kept, but any person name or date is emptied."""
        for element in list(ds):
            tag, keyword = int(element.tag), element.keyword
            action = action_for(tag)
            if keyword == "PatientID":
                element.value = self.patient_id(str(element.value or ""))
            elif self.clean_descriptors and tag in CLEAN_DESCRIPTORS and element.VR != "SQ":
                element.value = self._scrub(str(element.value or ""), ctx["identifiers"])
            elif self.shift_dates and element.VR in _TEMPORAL and keyword != "PatientBirthDate" and action != "U":
                element.value = self._shifted(element, ctx["shift"])
            elif element.VR == "UI" and action in ("U", None) or keyword in _KEEP_UIDS:
                if self.remap_uids and element.value and keyword not in _KEEP_UIDS:
                    element.value = self._remapped(element.value)
            elif self.shift_dates and element.VR == "TM":
                continue  # times are kept with the option: the day moved, the hour did not
            elif action == "X":
                del ds[element.tag]
            elif action in ("Z", "D") and element.VR != "SQ":
                if action == "Z" or element.VR in ("DA", "DT", "TM"):
                    element.value = "" if element.VR in ("DA", "DT", "TM") else element.value
                    if element.VR not in ("DA", "DT", "TM"):
                        kitware.empty_element(element)
                    continue
                try:
                    kitware.replace_element(element)  # a dummy value of the element's VR
                except NotImplementedError:
                    del ds[element.tag]
            elif element.VR == "SQ":
                if action == "Z":
                    element.value = []
                    continue
                for item in element.value:  # D on a sequence: its items are cleaned, the structure kept
                    self._clean(item, ctx)
            elif action is None and (element.VR == "PN" or element.VR in ("DA", "DT", "TM")):
                element.value = ""  # beyond the table, and stricter: any person name or date may identify

    @staticmethod
    def _scrub(text: str, identifiers: list[str]) -> str:
        for ident in identifiers:
            text = re.sub(re.escape(ident.strip()), "", text, flags=re.IGNORECASE)
        return text.strip()

    @staticmethod
    def _shifted(element, shift: dt.timedelta):
        def one(value: str) -> str:
            value = str(value or "")
            if len(value) < 8 or not value[:8].isdigit():
                return ""
            try:
                day = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8])) + shift
            except ValueError:
                return ""
            return day.strftime("%Y%m%d") + value[8:]
        if element.VM > 1:
            return [one(v) for v in element.value]
        return one(element.value)

    def _remapped(self, value):
        if not isinstance(value, str):  # several UIDs in one element
            return [self._remapped(v) for v in value]
        return value if not UID(str(value)).is_private else self.uid(str(value))

    def write_file(self, src: Path, dest: Path) -> None:
        """A de-identified copy of DICOM file `src` at `dest` (atomically)."""
        import os
        import tempfile

        from pydicom.dataset import FileMetaDataset

        from portal.dicom.parse import transfer_syntax_of

        ds = open_dataset(src, defer_size=None)
        reason = burned_in_reason(ds)
        if reason:
            raise BurnedInAnnotation(reason)
        tsyntax = transfer_syntax_of(ds)
        ds = self.dataset(ds)
        meta = getattr(ds, "file_meta", None) or FileMetaDataset()
        meta.TransferSyntaxUID = tsyntax
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if "SOPClassUID" in ds:
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta = meta
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".dcm", dir=dest.parent)
        os.close(fd)
        try:
            ds.save_as(tmp, enforce_file_format=True)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
