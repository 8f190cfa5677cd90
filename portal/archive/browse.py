"""The studies table of a project page: search, filters, sorting and pagination in SQL."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from portal.tables import Project, Study

PER_PAGE = 25
SORTS = {  # URL value → SQL ORDER BY expression (never user text in SQL)
    "date": "s.study_date", "patient": "p.patient_id", "name": "p.patient_name",
    "description": "s.description", "series": "COALESCE(c.n_series, 0)", "updated": "s.updated_at",
    "ai": "COALESCE(c.ai_min, 2)",  # worst AI score of the study's series; unscored sort last
}
# AI filter → condition on the study's worst series score (the built-in model's quality, 0-1).
AI_FILTERS = {"critical": "c.ai_min < 0.3", "low": "c.ai_min < 0.5", "scored": "c.ai_min IS NOT NULL",
              "unscored": "c.ai_min IS NULL"}
REVIEW_STATUSES = ("unreviewed", "needs_senior_review", "complete")


@dataclass
class StudyQuery:
    q: str = ""
    modality: str = ""
    date_from: str = ""
    date_to: str = ""
    status: str = ""
    ai: str = ""
    sort: str = "date"
    desc: bool = True
    page: int = 1

    @classmethod
    def from_params(cls, params) -> "StudyQuery":
        def date(v: str) -> str:
            digits = re.sub(r"\D", "", v or "")
            return digits if len(digits) == 8 else ""

        try:
            page = max(1, int(params.get("page") or 1))
        except ValueError:
            page = 1
        sort = params.get("sort") or "date"
        return cls(q=(params.get("q") or "").strip()[:100], modality=(params.get("modality") or "").strip()[:16],
                   date_from=date(params.get("from", "")), date_to=date(params.get("to", "")),
                   status=params.get("status") if params.get("status") in REVIEW_STATUSES else "",
                   ai=params.get("ai") if params.get("ai") in AI_FILTERS else "",
                   sort=sort if sort in SORTS else "date", desc=params.get("dir", "desc") != "asc", page=page)

    def params(self, **changes) -> dict:
        """URL parameters for this query with `changes` (empty values dropped)."""
        d = {"q": self.q, "modality": self.modality, "from": self.date_from, "to": self.date_to,
             "status": self.status, "ai": self.ai, "sort": self.sort, "dir": "desc" if self.desc else "asc", "page": self.page}
        d.update(changes)
        return {k: v for k, v in d.items() if v not in ("", None) and not (k == "page" and v == 1)}


@dataclass
class StudyPage:
    rows: list[dict]
    total: int
    query: StudyQuery
    modalities: list[str] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PER_PAGE))


def _review_status(unreviewed: int, needs_senior: int) -> str:
    if unreviewed:
        return "unreviewed"
    return "needs_senior_review" if needs_senior else "complete"


# Sorts and filters that need each study's series aggregate before the page is known.
_NEEDS_COUNTS_SORT = {"series", "ai"}


def _series_counts(restrict: str) -> str:
    """Per-study series counts, review tallies and worst AI score, over the series `restrict` selects."""
    return f"""SELECT study, COUNT(*) AS n_series,
                      SUM(CASE WHEN review_status = 'unreviewed' THEN 1 ELSE 0 END) AS n_unreviewed,
                      SUM(CASE WHEN review_status = 'needs_senior_review' THEN 1 ELSE 0 END) AS n_senior,
                      MIN(ai_score) AS ai_min
               FROM lb_series WHERE {restrict} GROUP BY study"""


async def search_studies(project: Project, query: StudyQuery) -> StudyPage:
    """One page of the studies table.

    The work is the page's: the series aggregates are computed for the page's study ids only. A status or
    AI filter, or a sort by series count or AI score, needs them for every study of the project first, so
    those aggregate the project's series (on the covering index lb_series (project, study, ...)), never the
    database's.
    """
    where, args = ["s.project = {}"], [project.id]
    if query.q:
        like = f"%{query.q.lower()}%"
        # A series description matches too: a MIQA scan type (T1, FMRI…) is its series' description.
        where.append("(LOWER(p.patient_id) LIKE {} OR LOWER(p.patient_name) LIKE {} "
                     "OR LOWER(s.accession_number) LIKE {} OR LOWER(s.description) LIKE {} "
                     "OR EXISTS (SELECT 1 FROM lb_series sd WHERE sd.study = s.id AND LOWER(sd.description) LIKE {}))")
        args += [like] * 5
    if query.modality:
        where.append("s.modalities LIKE {}")
        args.append(f"%{query.modality.upper()}%")
    if query.date_from:
        where.append("s.study_date >= {}")
        args.append(query.date_from)
    if query.date_to:
        where.append("s.study_date <= {}")
        args.append(query.date_to)
    needs_counts = bool(query.status or query.ai) or query.sort in _NEEDS_COUNTS_SORT
    counted, counted_args = _matching(project, where, args, query, patient=bool(query.q), counts=needs_counts)
    total = (await Study.raw(f"SELECT COUNT(*) AS n {counted}", *counted_args))[0]["n"]
    base, args = _matching(project, where, args, query, patient=bool(query.q) or query.sort in ("patient", "name"),
                           counts=needs_counts)
    direction = "DESC" if query.desc else "ASC"
    ids = [r["id"] for r in await Study.raw(
        f"SELECT s.id {base} ORDER BY {SORTS[query.sort]} {direction}, s.id {direction} "
        f"LIMIT {PER_PAGE} OFFSET {(query.page - 1) * PER_PAGE}", *args)]
    rows = await _page_rows(ids)
    modalities = await _modalities(project)
    return StudyPage(rows=rows, total=total, query=query, modalities=modalities)


def _matching(project: Project, where: list[str], args: list, query: StudyQuery, *, patient: bool,
              counts: bool) -> tuple[str, list]:
    """FROM ... WHERE ... of the matching studies, joining the patient and the series aggregates only when
    the filters or the sort need them (the count does without a patient sort's join)."""
    base, head = "FROM lb_study s", []
    if patient:
        # p.project repeats what s.project says; stated, it lets a patient sort walk lb_patient's index.
        base += " JOIN lb_patient p ON p.id = s.patient AND p.project = {}"
        head.append(project.id)
    if counts:
        base += f" LEFT JOIN ({_series_counts('project = {}')}) c ON c.study = s.id"
        head.append(project.id)
    base += f" WHERE {' AND '.join(where)}"
    if query.status == "unreviewed":
        base += " AND COALESCE(c.n_unreviewed, 0) > 0"
    elif query.status == "needs_senior_review":
        base += " AND COALESCE(c.n_unreviewed, 0) = 0 AND COALESCE(c.n_senior, 0) > 0"
    elif query.status == "complete":
        base += " AND COALESCE(c.n_unreviewed, 0) = 0 AND COALESCE(c.n_senior, 0) = 0"
    if query.ai:
        base += f" AND {AI_FILTERS[query.ai]}"
    return base, head + args


async def _page_rows(ids: list[int]) -> list[dict]:
    """The page's studies in the order of `ids`, with their patient and series aggregates."""
    if not ids:
        return []
    marks = ", ".join("{}" for _ in ids)
    rows = await Study.raw(
        f"""SELECT s.id, s.study_instance_uid, s.study_date, s.study_time, s.description, s.accession_number,
                   s.modalities, p.patient_id, p.patient_name, COALESCE(c.n_series, 0) AS n_series,
                   COALESCE(c.n_unreviewed, 0) AS n_unreviewed, COALESCE(c.n_senior, 0) AS n_senior, c.ai_min
            FROM lb_study s JOIN lb_patient p ON p.id = s.patient
            LEFT JOIN ({_series_counts(f"study IN ({marks})")}) c ON c.study = s.id
            WHERE s.id IN ({marks})""", *ids, *ids)
    by_id = {r["id"]: r for r in rows}
    out = [by_id[i] for i in ids if i in by_id]
    for r in out:
        r["review_status"] = _review_status(r["n_unreviewed"], r["n_senior"])
        r["modalities"] = r["modalities"].replace("\\", ", ")
    return out


async def _modalities(project: Project) -> list[str]:
    """The project's distinct series modalities, by hopping along the index lb_series (project, modality):
    one probe per modality instead of a scan of every series (a loose index scan, on both databases)."""
    rows = await Study.raw(
        """WITH RECURSIVE m(modality) AS (
               SELECT MIN(modality) FROM lb_series WHERE project = {} AND modality > ''
               UNION ALL
               SELECT (SELECT MIN(modality) FROM lb_series WHERE project = {} AND modality > m.modality)
               FROM m WHERE m.modality IS NOT NULL)
           SELECT modality FROM m WHERE modality IS NOT NULL""", project.id, project.id)
    return [r["modality"] for r in rows]
