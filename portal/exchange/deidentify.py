"""De-identification for sharing outside the team: the DICOM PS3.15 basic application level confidentiality
profile (Annex E), with consistent replacements and UIDs kept or remapped by option.

Replacements are keyed (HMAC) by the install's secret and the project, so the same patient gets the same
pseudonym in every export of the project, and a remapped UID is the same in every export too.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID

from portal.dicom import open_dataset

METHOD = "PS3.15 E.1 Basic Application Level Confidentiality Profile"

# Basic profile actions on the attributes Lightbox images commonly carry (PS3.15 Table E.1-1).
# Z: replace with an empty value; X: remove; D: replace with a dummy (below); U: UID (kept or remapped).
_Z = ("AccessionNumber", "ContentCreatorName", "PatientBirthDate", "PatientSex", "ReferringPhysicianName",
      "StudyID", "StudyDate", "StudyTime", "FillerOrderNumberImagingServiceRequest",
      "PlacerOrderNumberImagingServiceRequest", "RequestingPhysician")
_X = ("AcquisitionDateTime", "AdditionalPatientHistory", "AdmittingDiagnosesDescription", "Allergies",
      "BranchOfService", "CountryOfResidence", "CurrentPatientLocation",
      "DerivationDescription", "DeviceSerialNumber", "EthnicGroup", "ImageComments", "InstitutionAddress",
      "InstitutionName", "InstitutionalDepartmentName", "IssuerOfPatientID", "MedicalAlerts",
      "MedicalRecordLocator", "MilitaryRank", "NameOfPhysiciansReadingStudy", "Occupation",
      "OperatorsName", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress",
      "PatientAge", "PatientBirthName", "PatientBirthTime", "PatientComments", "PatientInsurancePlanCodeSequence",
      "PatientMotherBirthName", "PatientReligiousPreference", "PatientSize", "PatientState",
      "PatientTelephoneNumbers", "PatientWeight", "PerformedProcedureStepDescription",
      "PerformedProcedureStepID", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
      "PerformingPhysicianName", "PhysiciansOfRecord", "PregnancyStatus", "RequestAttributesSequence",
      "RequestedProcedureDescription", "RequestedProcedureID", "ScheduledProcedureStepDescription",
      "SeriesDescription", "SmokingStatus", "StationName", "StudyComments", "StudyDescription",
      "AcquisitionDate", "AcquisitionTime", "ContentDate", "ContentTime", "SeriesDate", "SeriesTime",
      "OverlayDate", "OverlayTime", "CurveDate", "CurveTime", "InstanceCreationDate", "InstanceCreationTime",
      "ProtocolName", "ReferencedPatientSequence", "ReferencedStudySequence", "ResponsibleOrganization",
      "ResponsiblePerson", "DeviceUID", "TimezoneOffsetFromUTC", "OriginalAttributesSequence",
      "ModifiedAttributesSequence", "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime",
      "PerformedProcedureStepEndDateTime", "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianAddress",
      "ReferringPhysicianIdentificationSequence", "ScheduledPerformingPhysicianName",
      "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime", "ScheduledProcedureStepEndDate",
      "ScheduledProcedureStepEndTime", "PerformingPhysicianIdentificationSequence",
      "PhysiciansOfRecordIdentificationSequence", "PhysiciansReadingStudyIdentificationSequence",
      "OperatorIdentificationSequence", "InstitutionCodeSequence", "PatientBirthDateInAlternativeCalendar",
      "PatientDeathDateInAlternativeCalendar", "PersonAddress", "PersonTelephoneNumbers", "VerifyingObserverName",
      "VerifyingObserverSequence", "ContentCreatorIdentificationCodeSequence")
# UIDs never remapped: they name a kind of thing (a SOP class, a transfer syntax), not an instance.
# Registered DICOM UIDs (1.2.840.10008.…) are kept too, whatever attribute holds them.
_KEEP_UIDS = ("SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID",
              "ReferencedTransferSyntaxUIDInFile", "ReferencedSOPClassUIDInFile", "ImplementationClassUID",
              "CodingSchemeUID", "ContextGroupExtensionCreatorUID", "MappingResourceUID",
              "PrivateInformationCreatorUID", "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID",
              "SOPClassesInStudy")
_TEMPORAL = ("DA", "DT", "TM")


class Deidentifier:
    """Consistent replacements for one project's export."""

    def __init__(self, secret: str, project: str, *, remap_uids: bool = False):
        self._key = hashlib.sha256(f"{secret}:deidentify:{project}".encode()).digest()
        self.remap_uids = remap_uids
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

    def user(self, username: str) -> str:
        """Reviewers appear as reviewer-1, reviewer-2 … in the order met."""
        if not username:
            return ""
        return self._users.setdefault(username, f"reviewer-{len(self._users) + 1}")

    def dataset(self, ds: Dataset) -> Dataset:
        """Apply the basic profile to `ds` in place and return it."""
        original_id = str(ds.get("PatientID", "") or "")
        ds.remove_private_tags()  # recursive: private tags inside sequences go too
        self._clean(ds)
        ds.PatientID = self.patient_id(original_id)
        ds.PatientName = self.patient_name(original_id)
        if getattr(ds, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in ds.file_meta:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = (
            "113100", "DCM", "Basic Application Confidentiality Profile")
        ds.DeidentificationMethodCodeSequence = [code]
        if not self.remap_uids:
            retained = Dataset()
            retained.CodeValue, retained.CodingSchemeDesignator, retained.CodeMeaning = (
                "113110", "DCM", "Retain UIDs Option")
            ds.DeidentificationMethodCodeSequence.append(retained)
        return ds

    def _clean(self, ds: Dataset) -> None:
        """The profile on `ds` and every dataset nested in its sequences, by name and by VR: identifiers hide
        in sequences (a source image's PatientName), and any person name or date may identify someone."""
        for element in list(ds):
            keyword = element.keyword
            if keyword in _X:
                del ds[element.tag]
            elif element.VR == "SQ":
                for item in element.value:
                    self._clean(item)
            elif keyword == "PatientID":
                element.value = self.patient_id(str(element.value or ""))
            elif keyword in _Z or element.VR == "PN" or element.VR in _TEMPORAL:
                element.value = ""
            elif element.VR == "UI" and self.remap_uids and element.value and keyword not in _KEEP_UIDS:
                element.value = self._remapped(element.value)

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
