"""The studies table of a project page: search, filters, sorting and pagination in SQL."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from portal.tables import Project, Study

PER_PAGE = 25
SORTS = {  # URL value → SQL ORDER BY expression (never user text in SQL)
    "date": "s.study_date", "patient": "p.patient_id", "name": "p.patient_name",
    "description": "s.description", "series": "n_series", "updated": "s.updated_at",
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


async def search_studies(project: Project, query: StudyQuery) -> StudyPage:
    where, args = ["s.project = {}"], [project.id]
    if query.q:
        like = f"%{query.q.lower()}%"
        where.append("(LOWER(p.patient_id) LIKE {} OR LOWER(p.patient_name) LIKE {} "
                     "OR LOWER(s.accession_number) LIKE {} OR LOWER(s.description) LIKE {})")
        args += [like] * 4
    if query.modality:
        where.append("s.modalities LIKE {}")
        args.append(f"%{query.modality.upper()}%")
    if query.date_from:
        where.append("s.study_date >= {}")
        args.append(query.date_from)
    if query.date_to:
        where.append("s.study_date <= {}")
        args.append(query.date_to)
    base = f"""
        FROM lb_study s JOIN lb_patient p ON p.id = s.patient
        LEFT JOIN (SELECT study, COUNT(*) AS n_series,
                          SUM(CASE WHEN review_status = 'unreviewed' THEN 1 ELSE 0 END) AS n_unreviewed,
                          SUM(CASE WHEN review_status = 'needs_senior_review' THEN 1 ELSE 0 END) AS n_senior,
                          MIN(ai_score) AS ai_min
                   FROM lb_series GROUP BY study) c ON c.study = s.id
        WHERE {' AND '.join(where)}"""
    if query.status == "unreviewed":
        base += " AND COALESCE(c.n_unreviewed, 0) > 0"
    elif query.status == "needs_senior_review":
        base += " AND COALESCE(c.n_unreviewed, 0) = 0 AND COALESCE(c.n_senior, 0) > 0"
    elif query.status == "complete":
        base += " AND COALESCE(c.n_unreviewed, 0) = 0 AND COALESCE(c.n_senior, 0) = 0"
    if query.ai:
        base += f" AND {AI_FILTERS[query.ai]}"
    total = (await Study.raw(f"SELECT COUNT(*) AS n {base}", *args))[0]["n"]
    order = f"{SORTS[query.sort]} {'DESC' if query.desc else 'ASC'}, s.id {'DESC' if query.desc else 'ASC'}"
    rows = await Study.raw(
        f"""SELECT s.id, s.study_instance_uid, s.study_date, s.study_time, s.description, s.accession_number,
                   s.modalities, p.patient_id, p.patient_name, COALESCE(c.n_series, 0) AS n_series,
                   COALESCE(c.n_unreviewed, 0) AS n_unreviewed, COALESCE(c.n_senior, 0) AS n_senior,
                   c.ai_min
            {base} ORDER BY {order} LIMIT {PER_PAGE} OFFSET {(query.page - 1) * PER_PAGE}""", *args)
    for r in rows:
        r["review_status"] = _review_status(r["n_unreviewed"], r["n_senior"])
        r["modalities"] = r["modalities"].replace("\\", ", ")
    modalities = await Study.raw("SELECT DISTINCT modality FROM lb_series WHERE project = {} AND modality != '' "
                                 "ORDER BY modality", project.id)
    return StudyPage(rows=rows, total=total, query=query, modalities=[m["modality"] for m in modalities])
