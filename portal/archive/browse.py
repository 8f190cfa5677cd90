"""The studies table of a project page: search, filters, sorting and pagination in SQL."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from portal.review.decisions import REVIEW_STATUSES  # the one list of statuses
from portal.tables import Project, Study

PER_PAGE = 25
COUNT_CAP = 10_000  # beyond this many matches the page says "10,000+": an exact count would read them all
SORTS = {  # URL value → SQL ORDER BY expression (never user text in SQL)
    "date": "s.study_date", "patient": "p.patient_id", "name": "p.patient_name",
    "description": "s.description", "series": "s.n_series", "updated": "s.updated_at",
    "ai": "COALESCE(s.ai_min, 2)",  # worst AI score of the study's series; unscored sort last (an indexed expression)
}
# The search: patient ID and name, accession, description and the series' descriptions (a MIQA scan type,
# T1, FMRI…, is its series' description), in one text per study kept by triggers and indexed by trigrams
# (migration 2026-12-03T16:40), so a search reads the studies that match, not every study.
SEARCH = {"sqlite": "s.id IN (SELECT rowid FROM lb_study_text WHERE search_text LIKE {})",
          "postgres": "s.search_text LIKE {}"}
# SQLite cannot weigh the trigram index against the project's own rows (PostgreSQL's planner does, from its
# statistics), so the search picks its form:
# - a small project (up to SMALL_PROJECT studies) walks its own studies and reads each one's text by rowid
#   (a word common elsewhere in the database costs nothing here);
# - in a big one, the count runs from the trigram index (and stops at COUNT_CAP); when that many match, the
#   page walks the sort's index, reading each study's text by rowid until the page is full (a common word
#   fills it at once), else it takes the index's matches (a rare one: few to sort).
SMALL_PROJECT = 5000
SQLITE_WALK_FROM = COUNT_CAP  # matches past which a big project's page walks the sort's index
SQLITE_TEXT_OF_STUDY = "(SELECT t.search_text FROM lb_study_text t WHERE t.rowid = s.id) LIKE {}"
SQLITE_TEXT_FIRST = "FROM lb_study_text t CROSS JOIN lb_study s ON s.id = t.rowid WHERE t.search_text LIKE {} AND "
# AI filter → condition on the study's worst series score (the built-in model's quality, 0-1).
# critical/low are written as the sort's expression so they use its index.
AI_FILTERS = {"critical": "COALESCE(s.ai_min, 2) < 0.3", "low": "COALESCE(s.ai_min, 2) < 0.5",
              "scored": "s.ai_min IS NOT NULL", "unscored": "s.ai_min IS NULL"}


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
    total: int  # exact up to COUNT_CAP; `capped` when more match
    query: StudyQuery
    modalities: list[str] = field(default_factory=list)
    capped: bool = False

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PER_PAGE))

    @property
    def has_next(self) -> bool:
        return self.query.page < self.pages or (self.capped and len(self.rows) == PER_PAGE)


async def search_studies(project: Project, query: StudyQuery) -> StudyPage:
    """One page of the studies table.

    Every filter and sort is on lb_study's own columns (its series summary is kept current by triggers,
    see Study in portal/tables.py), each matched by a composite index, so the work is the page's. The
    count stops at COUNT_CAP matches.
    """
    where, args = ["s.project = {}"], [project.id]
    if query.modality:
        where.append("s.modalities LIKE {}")
        args.append(f"%{query.modality.upper()}%")
    if query.date_from:
        where.append("s.study_date >= {}")
        args.append(query.date_from)
    if query.date_to:
        where.append("s.study_date <= {}")
        args.append(query.date_to)
    if query.status:
        where.append("s.review_status = {}")
        args.append(query.status)
    if query.ai:
        where.append(AI_FILTERS[query.ai])
    pattern = f"%{query.q.lower()}%"
    text_first = False
    if query.q:
        if Study._meta.db.engine_type != "sqlite":
            where, args = where + [SEARCH["postgres"]], args + [pattern]
        elif await _studies_at_most(project, SMALL_PROJECT):
            where, args = where + [SQLITE_TEXT_OF_STUDY], args + [pattern]
        else:
            text_first = True
    if text_first:
        counted, counted_args = SQLITE_TEXT_FIRST + " AND ".join(where), [pattern, *args]
    else:
        counted, counted_args = _matching(project, where, args, patient=False)
    total = (await Study.raw(f"SELECT COUNT(*) AS n FROM (SELECT 1 {counted} LIMIT {COUNT_CAP + 1}) m",
                             *counted_args))[0]["n"]
    if text_first:
        walk = total > SQLITE_WALK_FROM
        where, args = where + [SQLITE_TEXT_OF_STUDY if walk else SEARCH["sqlite"]], args + [pattern]
    base, args = _matching(project, where, args, patient=query.sort in ("patient", "name"))
    direction = "DESC" if query.desc else "ASC"
    ids = [r["id"] for r in await Study.raw(
        f"SELECT s.id {base} ORDER BY {SORTS[query.sort]} {direction}, s.id {direction} "
        f"LIMIT {PER_PAGE} OFFSET {(query.page - 1) * PER_PAGE}", *args)]
    rows = await _page_rows(ids)
    modalities = await _modalities(project)
    return StudyPage(rows=rows, total=min(total, COUNT_CAP), query=query, modalities=modalities,
                     capped=total > COUNT_CAP)


async def _studies_at_most(project: Project, n: int) -> bool:
    """Whether the project holds at most `n` studies (reads at most n + 1 index entries)."""
    rows = await Study.raw("SELECT COUNT(*) AS n FROM (SELECT 1 FROM lb_study WHERE project = {} LIMIT {}) m",
                           project.id, n + 1)
    return rows[0]["n"] <= n


def _matching(project: Project, where: list[str], args: list, *, patient: bool) -> tuple[str, list]:
    """FROM ... WHERE ... of the matching studies, joining the patient only when the sort needs it (the
    search has its own text; the count does without a patient sort's join)."""
    base, head = "FROM lb_study s", []
    if patient:
        # p.project repeats what s.project says; stated, it lets a patient sort walk lb_patient's index.
        base += " JOIN lb_patient p ON p.id = s.patient AND p.project = {}"
        head.append(project.id)
    return base + f" WHERE {' AND '.join(where)}", head + args


async def _page_rows(ids: list[int]) -> list[dict]:
    """The page's studies in the order of `ids`, with their patient and series summary."""
    if not ids:
        return []
    marks = ", ".join("{}" for _ in ids)
    rows = await Study.raw(
        f"""SELECT s.id, s.study_instance_uid, s.study_date, s.study_time, s.description, s.accession_number,
                   s.modalities, p.patient_id, p.patient_name, s.n_series, s.n_unreviewed, s.n_senior,
                   s.review_status, s.ai_min
            FROM lb_study s JOIN lb_patient p ON p.id = s.patient
            WHERE s.id IN ({marks})""", *ids)
    by_id = {r["id"]: r for r in rows}
    out = [by_id[i] for i in ids if i in by_id]
    for r in out:
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
