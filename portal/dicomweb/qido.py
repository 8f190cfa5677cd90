"""QIDO-RS search: query parameters → SQL filters on the archive tables → DICOM JSON results.

Matching follows PS3.4 C.2.2.2 for the attributes the archive keeps: single values, lists of UIDs,
`*`/`?` wildcards, date and time ranges, and universal matching (an empty value only asks for the
attribute to be returned). Person names match case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import reduce

from piccolo.columns import Column
from piccolo.columns.combination import Where
from piccolo.columns.operators.comparison import ComparisonOperator
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from portal.archive import count_instances
from portal.dicomweb._json import element
from portal.dicomweb.links import Links
from portal.errors import Invalid
from portal.tables import Instance, Project, Series, Study

STUDY, SERIES, INSTANCE = "study", "series", "instance"

# The most results one request returns; past it the client pages with `offset` (a Warning says so).
MAX_RESULTS = 1000

CONTROL_PARAMS = {"limit", "offset", "includefield", "fuzzymatching"}

# Returned for every match at each level (PS3.18 Tables 6.7.1-2, -2a, -2b), as far as the archive keeps them.
STUDY_RETURN = ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
                "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID")
SERIES_RETURN = ("Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID")
INSTANCE_RETURN = ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "NumberOfFrames")

_ZERO_IS_EMPTY = {"Rows", "Columns", "NumberOfFrames"}
_COUNTS = {STUDY: ("NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
           SERIES: ("NumberOfSeriesRelatedInstances",), INSTANCE: ()}


def _study_columns(s) -> dict[str, Column]:
    """Study and patient attributes; `s` is Study itself or the foreign key chain that leads to it."""
    p = s.patient
    return {
        "StudyInstanceUID": s.study_instance_uid, "StudyDate": s.study_date, "StudyTime": s.study_time,
        "AccessionNumber": s.accession_number, "ModalitiesInStudy": s.modalities,
        "ReferringPhysicianName": s.referring_physician, "StudyID": s.study_id, "StudyDescription": s.description,
        "InstitutionName": s.institution, "PatientName": p.patient_name, "PatientID": p.patient_id,
        "PatientBirthDate": p.birth_date, "PatientSex": p.sex,
    }


def _series_columns(s) -> dict[str, Column]:
    return {
        "SeriesInstanceUID": s.series_instance_uid, "Modality": s.modality, "SeriesNumber": s.series_number,
        "SeriesDescription": s.description, "SeriesDate": s.series_date, "SeriesTime": s.series_time,
        "BodyPartExamined": s.body_part, "Manufacturer": s.manufacturer, "ManufacturerModelName": s.model_name,
    }


def _instance_columns(i) -> dict[str, Column]:
    return {
        "SOPInstanceUID": i.sop_instance_uid, "SOPClassUID": i.sop_class_uid, "InstanceNumber": i.instance_number,
        "Rows": i.rows, "Columns": i.columns, "NumberOfFrames": i.frames,
        "AvailableTransferSyntaxUID": i.transfer_syntax_uid,
    }


def _level(level: str):
    """(table, every attribute a row of this level can answer) — upper levels reached through joins."""
    if level == STUDY:
        return Study, _study_columns(Study)
    if level == SERIES:
        return Series, {**_study_columns(Series.study), **_series_columns(Series)}
    return Instance, {**_study_columns(Instance.series.study), **_series_columns(Instance.series),
                      **_instance_columns(Instance)}


@dataclass
class Query:
    filters: list[tuple[str, str]] = field(default_factory=list)  # (keyword, value) as sent
    include: set[str] = field(default_factory=set)
    include_all: bool = False
    limit: int = MAX_RESULTS
    offset: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class SearchResult:
    matches: list[dict]
    warnings: list[str]


def keyword_of(key: str) -> str:
    """A DICOM keyword from a keyword or an 8-digit hex tag; "" when it is neither."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        return keyword_for_tag(int(key, 16)) or ""
    return key if tag_for_keyword(key) is not None else ""


def parse(params: Iterable[tuple[str, str]], columns: dict[str, Column]) -> Query:
    q = Query()
    for key, value in params:
        if key == "limit":
            q.limit = _count(key, value)
            if q.limit > MAX_RESULTS:
                q.warnings.append(f"limit is capped at {MAX_RESULTS}")
                q.limit = MAX_RESULTS
        elif key == "offset":
            q.offset = _count(key, value)
        elif key == "includefield":
            for name in filter(None, (v.strip() for v in value.split(","))):
                if name.lower() == "all":
                    q.include_all = True
                elif keyword_of(name) in columns:
                    q.include.add(keyword_of(name))
        elif key == "fuzzymatching":
            if value.lower() == "true":
                q.warnings.append("fuzzymatching is not supported; literal matching was performed")
        elif keyword_of(key) in columns:
            q.filters.append((keyword_of(key), value.strip()))
        else:
            q.warnings.append(f"{key} is not a supported search key here and was ignored")
    return q


def _count(key: str, value: str) -> int:
    if not value.strip().isdigit():
        raise Invalid(f"'{key}' must be a whole number of 0 or more, not {value!r}.", "invalid_query")
    return int(value)


# LIKE with an explicit escape character, so that '%' and '_' in a value match literally on both
# databases. Case: PostgreSQL's ILIKE ignores it; SQLite's LIKE ignores it for ASCII letters.
class _Like(ComparisonOperator):
    template = "{name} LIKE {value} ESCAPE '!'"


class _ILike(ComparisonOperator):
    template = "{name} ILIKE {value} ESCAPE '!'"


def _escape(value: str) -> str:
    return re.sub(r"([!%_])", r"!\1", value)


def _like(column: Column, pattern: str, *, ignore_case: bool = False) -> Where:
    postgres = column._meta.engine_type in ("postgres", "cockroach")
    return Where(column=column, value=pattern, operator=_ILike if ignore_case and postgres else _Like)


def _split(value: str) -> list[str]:
    """A list of values: comma-separated (QIDO) or backslash-separated (DICOM multi-value)."""
    return [v.strip() for v in re.split(r"[,\\]", value) if v.strip()]


def _any(conditions: list) -> Where:
    return reduce(lambda a, b: a | b, conditions)


_DA = re.compile(r"\d{8}")
_TM = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")


def _range(keyword: str, column: Column, value: str, vr: str) -> Where:
    """A single date/time, or a range `a-b`, `-b`, `a-` (both ends included)."""
    form = _DA if vr == "DA" else _TM
    lo, dash, hi = value.partition("-")
    for end in (lo, hi):
        if end and not form.fullmatch(end):
            raise Invalid(f"{keyword} must be {'YYYYMMDD' if vr == 'DA' else 'HHMMSS'} or a range of those "
                          f"(a-b, -b, a-), not {value!r}.", "invalid_query")
    if not dash:
        return column == lo
    conditions = [column != ""]  # an open-ended range does not match an absent value
    if lo:
        conditions.append(column >= lo)
    if hi:
        conditions.append(column <= hi)
    return reduce(lambda a, b: a & b, conditions)


def _modality_in(column: Column, modality: str) -> Where:
    """`modality` is one of the backslash-separated values of `column` ("CT\\SR")."""
    m = _escape(modality)
    return (column == modality) | _like(column, m + "\\%") | _like(column, "%\\" + m) | _like(column, "%\\" + m + "\\%")


def condition(keyword: str, column: Column, value: str) -> Where | None:
    """The SQL filter for one search key; None for universal matching (an empty value)."""
    if value == "":
        return None
    if not _split(value) and (keyword == "ModalitiesInStudy" or dictionary_VR(keyword) in ("UI", "CS", "IS", "US", "UL")):
        raise Invalid(f"{keyword}={value!r} holds no value between its separators; leave {keyword} out to match "
                      "everything.", "invalid_query")
    if keyword == "ModalitiesInStudy":
        return _any([_modality_in(column, m) for m in _split(value)])
    vr = dictionary_VR(keyword)
    if vr == "UI":
        return column.is_in(_split(value))
    if vr in ("DA", "TM"):
        return _range(keyword, column, value, vr)
    if vr in ("IS", "US", "UL"):
        numbers = _split(value)
        if not all(re.fullmatch(r"[+-]?\d{1,18}", n) for n in numbers):
            raise Invalid(f"{keyword} must be a whole number, not {value!r}.", "invalid_query")
        return column.is_in([int(n) for n in numbers])
    values = _split(value) if vr == "CS" else [value]
    conditions = []
    for v in values:
        if vr == "PN" or "*" in v or "?" in v:
            conditions.append(_like(column, _escape(v).replace("*", "%").replace("?", "_"), ignore_case=vr == "PN"))
        else:
            conditions.append(column == v)
    return _any(conditions)


def return_keys(level: str, query: Query, columns: dict[str, Column], *, study_uid: str | None,
                series_uid: str | None) -> list[str]:
    """The attributes each match carries: the level's defaults, upper levels not fixed by the path,
    what `includefield` names, and every key that was matched on."""
    keys = {STUDY: STUDY_RETURN, SERIES: SERIES_RETURN, INSTANCE: INSTANCE_RETURN}[level]
    keys = set(keys) | {"StudyInstanceUID"} | ({"SeriesInstanceUID"} if level == INSTANCE else set())
    if level != STUDY and not study_uid:
        keys |= set(STUDY_RETURN)
    if level == INSTANCE and not series_uid:
        keys |= set(SERIES_RETURN)
    keys |= set(columns) if query.include_all else query.include
    keys |= {k for k, _ in query.filters}
    return sorted(keys & set(columns), key=tag_for_keyword)


async def search(project: Project, level: str, params: Iterable[tuple[str, str]], links: Links, *,
                 study_uid: str | None = None, series_uid: str | None = None) -> SearchResult:
    """Studies, series or instances of `project` that match `params`, as DICOM JSON objects."""
    table, columns = _level(level)
    query = parse(params, columns)
    where = [table.project == project.id]
    if study_uid:
        where.append(columns["StudyInstanceUID"] == study_uid)
    if series_uid:
        where.append(columns["SeriesInstanceUID"] == series_uid)
    for keyword, value in query.filters:
        if (c := condition(keyword, columns[keyword], value)) is not None:
            where.append(c)
    keys = return_keys(level, query, columns, study_uid=study_uid, series_uid=series_uid)
    needed = set(keys) | {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}
    selected = [table.id.as_alias("_id")] + [c.as_alias(k) for k, c in columns.items() if k in needed]
    # One row more than asked tells whether there are more to page through.
    rows = await table.select(*selected).where(*where).order_by(table.id).limit(query.limit + 1).offset(query.offset)
    warnings = list(query.warnings)
    if len(rows) > query.limit:
        rows = rows[:query.limit]
        warnings.append(f"more results match; ask again with offset={query.offset + query.limit}")
    counts = await _counts(level, [r["_id"] for r in rows])
    return SearchResult([_match(level, row, keys, counts.get(row["_id"], {}), links) for row in rows], warnings)


async def _counts(level: str, ids: list[int]) -> dict[int, dict[str, int]]:
    """The Number...Related... attributes of each study or series, in one grouped query."""
    out: dict[int, dict[str, int]] = {i: {} for i in ids}
    if not ids or level == INSTANCE:
        return out
    if level == SERIES:
        for series_id, n in (await count_instances(ids)).items():
            out[series_id]["NumberOfSeriesRelatedInstances"] = n
        return out
    # One pass from the page's studies to their series (lb_series_study), each series' instances counted by
    # its own index probe: a join let the planner merge along every series of the database instead.
    rows = await Instance.raw(
        "SELECT se.study AS k, COUNT(*) AS n_series, "
        "SUM((SELECT COUNT(*) FROM lb_instance i WHERE i.series = se.id)) AS n_instances FROM lb_series se "
        f"WHERE se.study IN ({', '.join(str(int(i)) for i in ids)}) GROUP BY se.study")
    for r in rows:
        out[r["k"]].update(NumberOfStudyRelatedSeries=int(r["n_series"]),
                           NumberOfStudyRelatedInstances=int(r["n_instances"] or 0))
    return out


def _match(level: str, row: dict, keys: list[str], counts: dict[str, int], links: Links) -> dict:
    # The archive keeps 0 for "no pixel data"; in the answer that is an empty attribute.
    out = dict(element(k, None if k in _ZERO_IS_EMPTY and not row[k] else row[k]) for k in keys)
    out.update(element(k, counts.get(k, 0)) for k in _COUNTS[level])
    study, series = row["StudyInstanceUID"], row.get("SeriesInstanceUID")
    url = (links.study(study) if level == STUDY else links.series(study, series) if level == SERIES
           else links.instance(study, series, row["SOPInstanceUID"]))
    out.update([element("RetrieveURL", url)])
    return dict(sorted(out.items()))
