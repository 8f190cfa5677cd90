"""QIDO-RS for the listings: keyword filters → query parameters, DICOM JSON answers → dataclasses.

Only the attributes Lightbox answers with are named here, so the client needs no DICOM library."""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List, Tuple

from lightbox_client.models import Series, Study, parse_date

TAGS = {
    "StudyDate": "00080020", "StudyTime": "00080030", "AccessionNumber": "00080050",
    "ModalitiesInStudy": "00080061", "Modality": "00080060", "Manufacturer": "00080070",
    "InstitutionName": "00080080", "StudyDescription": "00081030", "SeriesDescription": "0008103E",
    "SeriesDate": "00080021", "PatientName": "00100010", "PatientID": "00100020", "BodyPartExamined": "00180015",
    "StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E", "SeriesNumber": "00200011",
    "NumberOfStudyRelatedSeries": "00201206", "NumberOfStudyRelatedInstances": "00201208",
    "NumberOfSeriesRelatedInstances": "00201209",
}
STUDY_INCLUDE = ("StudyDescription", "InstitutionName")
SERIES_INCLUDE = ("PatientID", "BodyPartExamined", "Manufacturer", "SeriesDate")

# Python-style names for the usual filters; DICOM keywords (PatientID=…) and tags ("00100020") pass as they are.
ALIASES = {
    "patient_id": "PatientID", "patient_name": "PatientName", "study_date": "StudyDate", "study_time": "StudyTime",
    "accession_number": "AccessionNumber", "study_uid": "StudyInstanceUID", "study": "StudyInstanceUID",
    "study_instance_uid": "StudyInstanceUID", "series_uid": "SeriesInstanceUID",
    "series_instance_uid": "SeriesInstanceUID", "modality": "Modality", "modalities": "ModalitiesInStudy",
    "series_description": "SeriesDescription", "study_description": "StudyDescription",
    "series_number": "SeriesNumber", "body_part": "BodyPartExamined", "manufacturer": "Manufacturer",
    "series_date": "SeriesDate", "institution": "InstitutionName",
}
STUDY_ALIASES = {**ALIASES, "modality": "ModalitiesInStudy", "description": "StudyDescription",
                 "date": "StudyDate"}
SERIES_ALIASES = {**ALIASES, "description": "SeriesDescription", "date": "SeriesDate"}


def _value(v: Any) -> str:
    if isinstance(v, dt.datetime):
        return v.strftime("%Y%m%d%H%M%S")
    if isinstance(v, dt.date):
        return v.strftime("%Y%m%d")
    if isinstance(v, tuple) and len(v) == 2:  # a range; None leaves that end open
        return f"{_value(v[0]) if v[0] is not None else ''}-{_value(v[1]) if v[1] is not None else ''}"
    if isinstance(v, (list, set, frozenset)):
        return ",".join(_value(x) for x in v)
    return str(v)


def params(filters: Dict[str, Any], aliases: Dict[str, str]) -> List[Tuple[str, str]]:
    """Query parameters for QIDO-RS. Values: text (`*`/`?` wildcards), a date, a (start, end) range, a list."""
    out = []
    for key, value in filters.items():
        if value is None:
            continue
        name = aliases.get(key, key)
        if name[:1].islower() and not name.isdigit() and not (len(name) == 8 and _is_hex(name)):
            known = ", ".join(sorted(aliases))
            raise ValueError(f"Unknown filter '{key}'. Use a DICOM keyword (PatientID=…) or one of: {known}.")
        out.append((name, _value(value)))
    return out


def _is_hex(s: str) -> bool:
    try:
        int(s, 16)
        return True
    except ValueError:
        return False


def _first(item: dict, keyword: str):
    values = (item.get(TAGS[keyword]) or {}).get("Value") or []
    if not values:
        return None
    v = values[0]
    return v.get("Alphabetic", "") if isinstance(v, dict) else v


def _all(item: dict, keyword: str) -> list:
    return list((item.get(TAGS[keyword]) or {}).get("Value") or [])


def _text(item: dict, keyword: str) -> str:
    v = _first(item, keyword)
    return "" if v is None else str(v)


def _int(item: dict, keyword: str):
    v = _first(item, keyword)
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def study(item: dict) -> Study:
    return Study(study_instance_uid=_text(item, "StudyInstanceUID"), patient_id=_text(item, "PatientID"),
                 patient_name=_text(item, "PatientName"), study_date=parse_date(_text(item, "StudyDate")),
                 study_time=_text(item, "StudyTime"), accession_number=_text(item, "AccessionNumber"),
                 description=_text(item, "StudyDescription"), modalities=[str(m) for m in _all(item, "ModalitiesInStudy")],
                 series_count=_int(item, "NumberOfStudyRelatedSeries"),
                 instance_count=_int(item, "NumberOfStudyRelatedInstances"), raw=item)


def series(item: dict) -> Series:
    return Series(series_instance_uid=_text(item, "SeriesInstanceUID"),
                  study_instance_uid=_text(item, "StudyInstanceUID"), modality=_text(item, "Modality"),
                  description=_text(item, "SeriesDescription"), number=_int(item, "SeriesNumber"),
                  instance_count=_int(item, "NumberOfSeriesRelatedInstances"), body_part=_text(item, "BodyPartExamined"),
                  manufacturer=_text(item, "Manufacturer"), series_date=parse_date(_text(item, "SeriesDate")),
                  patient_id=_text(item, "PatientID"), raw=item)
