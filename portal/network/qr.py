"""Query/retrieve SCP: C-FIND, C-MOVE and C-GET over one project's archive (PS3.4 Annex C).

The handlers run in pynetdicom's threads; `run(coro, timeout)` runs a database coroutine on the app's
event loop and waits for it. C-FIND matching is QIDO's (wildcards, ranges, lists of UIDs, universal
matching): a query identifier becomes QIDO search parameters, each match a response identifier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from portal.archive import storage
from portal.dicomweb import qido
from portal.dicomweb.links import Links
from portal.network import nodes, send
from portal.tables import Instance, Patient, Project, Study

log = logging.getLogger("lightbox.dimse")

FIND_MODELS = (PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind)
MOVE_MODELS = (PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove)
GET_MODELS = (PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet)
PATIENT_ROOT = {PatientRootQueryRetrieveInformationModelFind, PatientRootQueryRetrieveInformationModelMove,
                PatientRootQueryRetrieveInformationModelGet}

# Statuses (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4; PS3.7 C.5).
PENDING = 0xFF00
SUCCESS = 0x0000
CANCEL = 0xFE00
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000

QUERY_TIMEOUT_S = 60
LEVELS = {"STUDY": qido.STUDY, "SERIES": qido.SERIES, "IMAGE": qido.INSTANCE}
# What every response carries at each level, whether asked or not (the unique keys, PS3.4 C.2.2.1.1).
UNIQUE_KEYS = {"PATIENT": ("PatientID",), "STUDY": ("StudyInstanceUID",),
               "SERIES": ("StudyInstanceUID", "SeriesInstanceUID"),
               "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
_NOT_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet", "TimezoneOffsetFromUTC"}

Run = Callable  # run(coroutine, timeout) -> result


def _failure(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return ds


def _value(elem) -> str:
    """A query element's value as QIDO text ('' for universal matching; backslash-separated lists)."""
    if elem.VR == "SQ" or elem.value is None:
        return ""
    if elem.VM > 1:
        return "\\".join(str(v) for v in elem.value)
    return str(elem.value).strip()


def _level(identifier: Dataset, sop_class: str) -> str:
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level not in ("PATIENT", *LEVELS):
        raise _Refused(IDENTIFIER_DOES_NOT_MATCH, f"QueryRetrieveLevel {level or '(none)'} is not supported")
    if level == "PATIENT" and sop_class not in PATIENT_ROOT:
        raise _Refused(IDENTIFIER_DOES_NOT_MATCH, "Study Root has no PATIENT level")
    return level


class _Refused(Exception):
    def __init__(self, status: int, comment: str):
        super().__init__(comment)
        self.status, self.comment = status, comment


# -- C-FIND ------------------------------------------------------------------------------------------


async def find(project: Project, identifier: Dataset, level: str) -> list[Dataset]:
    """Every match of the query identifier at `level`, with the keys it asked for."""
    params = [(e.keyword, _value(e)) for e in identifier if e.keyword and e.keyword not in _NOT_KEYS]
    asked = [k for k, _ in params]
    if level == "PATIENT":
        matches = await _find_patients(project, params)
    else:
        matches, offset = [], 0
        while True:  # QIDO pages at MAX_RESULTS; a C-FIND answers every match
            page = await qido.search(project, LEVELS[level], [*params, ("offset", str(offset))], Links(""))
            matches += page.matches
            offset += len(page.matches)
            if not page.matches or not any(w.startswith("more results") for w in page.warnings):
                break
        matches = [Dataset.from_json(m) for m in matches]
    out = []
    for match in matches:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"  # the archive keeps text as Unicode
        ds.QueryRetrieveLevel = level
        for keyword in dict.fromkeys([*UNIQUE_KEYS[level], *asked]):
            if keyword in match:
                ds[keyword] = match[keyword]
            elif keyword in identifier:  # asked for, not kept by the archive: returned empty
                ds[keyword] = identifier[keyword]
                ds[keyword].value = None if ds[keyword].VR != "SQ" else []
        out.append(ds)
    return out


async def _find_patients(project: Project, params: list[tuple[str, str]]) -> list[Dataset]:
    columns = {"PatientID": Patient.patient_id, "PatientName": Patient.patient_name,
               "PatientBirthDate": Patient.birth_date, "PatientSex": Patient.sex}
    where = [Patient.project == project.id]
    for keyword, value in params:
        if keyword in columns and (c := qido.condition(keyword, columns[keyword], value)) is not None:
            where.append(c)
    rows = await Patient.select(Patient.id, *columns.values()).where(*where).order_by(Patient.patient_id)
    out, seen = [], {}
    for r in rows:  # one PatientID may be in several archives of the project: one answer
        seen.setdefault(r["patient_id"], []).append(r["id"])
        if len(seen[r["patient_id"]]) == 1:
            out.append(r)
    counts = {}
    for pid, ids in seen.items():
        counts[pid] = await Study.count().where(Study.patient.is_in(ids))
    result = []
    for r in out:
        ds = Dataset()
        ds.PatientID, ds.PatientName = r["patient_id"], r["patient_name"]
        ds.PatientBirthDate, ds.PatientSex = r["birth_date"], r["sex"]
        ds.NumberOfPatientRelatedStudies = counts[r["patient_id"]]
        result.append(ds)
    return result


def handle_find(event, project: Project, run: Run) -> Iterator:
    sop_class = str(event.request.AffectedSOPClassUID)
    if sop_class not in FIND_MODELS:
        name = UID(sop_class).name
        log.warning("C-FIND for %s from %s refused: only Patient Root and Study Root queries are answered",
                    name, event.assoc.requestor.ae_title)
        yield _failure(SOP_CLASS_NOT_SUPPORTED, f"{name} is not supported"[:64]), None
        return
    try:
        identifier = event.identifier
        level = _level(identifier, sop_class)
        matches = run(find(project, identifier, level), QUERY_TIMEOUT_S)
    except _Refused as exc:
        yield _failure(exc.status, exc.comment), None
        return
    except Exception as exc:
        status = IDENTIFIER_DOES_NOT_MATCH if getattr(exc, "status", 0) == 400 else UNABLE_TO_PROCESS
        log.warning("C-FIND in %s could not be answered: %s", project.name, getattr(exc, "detail", exc))
        yield _failure(status, str(getattr(exc, "detail", "The query could not be processed."))), None
        return
    log.info("C-FIND %s level in project %s from %s: %d match(es)", level, project.name,
             event.assoc.requestor.ae_title, len(matches))
    yield from _pending(event, matches)


def _pending(event, datasets: Iterable[Dataset | None]) -> Iterator:
    """Each dataset as a pending answer (made only when it is sent), until the requestor cancels."""
    for ds in datasets:
        if event.is_cancelled:
            yield CANCEL, None
            return
        yield PENDING, ds


# -- C-MOVE and C-GET --------------------------------------------------------------------------------


def _uids(identifier: Dataset, keyword: str) -> list[str]:
    value = _value(identifier[keyword]) if keyword in identifier else ""
    return [v for v in (s.strip() for s in value.split("\\")) if v]


async def matching_files(project: Project, identifier: Dataset, level: str) -> list[str]:
    """The stored files a retrieve identifier names (by the unique keys down to its level)."""
    where = [Instance.project == project.id]
    keys = {"PATIENT": [("PatientID", Instance.series.study.patient.patient_id)],
            "STUDY": [("StudyInstanceUID", Instance.series.study.study_instance_uid)],
            "SERIES": [("SeriesInstanceUID", Instance.series.series_instance_uid)],
            "IMAGE": [("SOPInstanceUID", Instance.sop_instance_uid)]}
    order = ["PATIENT", "STUDY", "SERIES", "IMAGE"]
    named = False
    for lvl in order[:order.index(level) + 1]:
        for keyword, column in keys[lvl]:
            uids = _uids(identifier, keyword)
            if uids:
                where.append(column.is_in(uids))
                named = True
            elif lvl == level:
                raise _Refused(IDENTIFIER_DOES_NOT_MATCH, f"{keyword} is required at the {level} level")
    if not named:
        return []
    rows = await Instance.select(Instance.file_key).where(*where).order_by(
        Instance.series, Instance.instance_number, Instance.id)
    return [r["file_key"] for r in rows]


def _read(key: str) -> Dataset | None:
    try:
        with storage().open(key) as f:
            return dcmread(f)
    except Exception:
        log.exception("retrieve: could not read %s", path)
        return None


def _requested(event, project: Project, run: Run) -> list[str]:
    """The files a C-MOVE or C-GET names; _Refused when its identifier does not say enough."""
    level = _level(event.identifier, str(event.request.AffectedSOPClassUID))
    return run(matching_files(project, event.identifier, level), QUERY_TIMEOUT_S)


def handle_move(event, project: Project, run: Run) -> Iterator:
    destination = event.move_destination
    destination = (destination.decode("ascii", "replace") if isinstance(destination, bytes)
                   else str(destination)).strip()
    node = run(nodes.by_ae_title(destination), QUERY_TIMEOUT_S)
    if node is None:
        log.warning("C-MOVE in %s to %r refused: no registered node has this AE title (lightbox node add)",
                    project.name, destination)
        yield None, None
        return
    try:
        files = _requested(event, project, run)
    except _Refused as exc:
        # pynetdicom takes no status before the destination and the count: nothing matches, nothing is sent.
        log.warning("C-MOVE in %s: %s", project.name, exc.comment)
        yield node.host, node.port
        yield 0
        return
    contexts, _, _ = send.contexts_for(files)
    yield node.host, node.port, {"contexts": [build_context(c, s) for c, s in contexts[:128]],
                                 "ae_title": node.ae_title}
    log.info("C-MOVE in %s to %s (%s:%d): %d instance(s)", project.name, node.ae_title, node.host, node.port,
             len(files))
    yield len(files)
    yield from _pending(event, (_read(path) for path in files))


def handle_get(event, project: Project, run: Run) -> Iterator:
    try:
        files = _requested(event, project, run)
    except _Refused as exc:
        log.warning("C-GET in %s: %s", project.name, exc.comment)
        yield 0
        return
    log.info("C-GET in %s from %s: %d instance(s)", project.name, event.assoc.requestor.ae_title, len(files))
    yield len(files)
    yield from _pending(event, (_read(path) for path in files))
