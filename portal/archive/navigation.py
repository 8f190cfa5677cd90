"""Walking a project series by series: the order the series pages, the keyboard and the review queue follow.

The walk: newest study first (study date, then study id, both descending), and within a study by series
number (none counts as 0), then series id. Every step is a keyset query, `WHERE (date, id) < (?, ?) ORDER
BY date DESC, id DESC LIMIT 1` on the index lb_study (project, study_date, id), followed by a look inside
that one study, so a step costs the same in a 20-study project as in a 100k-study one.
"""

from __future__ import annotations

from dataclasses import dataclass

from portal import db
from portal.review.decisions import DERIVED
from portal.tables import Project, Series

_SERIES_ORDER = "COALESCE(se.series_number, 0) {d}, se.id {d}"


@dataclass(frozen=True)
class Place:
    """Where a series stands in the walk."""

    series_id: int
    series_number: int
    study_id: int
    study_date: str
    review_status: str


async def place_of(project: Project, series_uid: str) -> Place | None:
    rows = await Series.raw(
        """SELECT se.id, COALESCE(se.series_number, 0) AS n, se.review_status, st.id AS study, st.study_date
           FROM lb_series se JOIN lb_study st ON st.id = se.study WHERE se.key = {}""",
        f"{project.id}:{series_uid}")
    if not rows:
        return None
    r = rows[0]
    return Place(r["id"], r["n"], r["study"], r["study_date"] or "", r["review_status"])


def _filter(statuses: tuple[str, ...] | None, condition: tuple[str, list] | None) -> tuple[str, list]:
    """Extra SQL on the series row `se`: review statuses wanted, and a caller's condition."""
    sql, args = "", []
    if statuses:
        sql += f" AND se.review_status IN ({', '.join('{}' for _ in statuses)})"
        args += list(statuses)
    if condition:
        sql += f" AND ({condition[0]})"
        args += list(condition[1])
    return sql, args


async def step(project: Project, place: Place | None, *, forward: bool = True,
               statuses: tuple[str, ...] | None = None, condition: tuple[str, list] | None = None) -> str | None:
    """The UID of the next (or previous) series of the walk after `place` (None: from the walk's start, or
    its end going back) whose status is in `statuses` and that meets `condition` (SQL on `se`, with args)."""
    extra, extra_args = _filter(statuses, condition)
    up = "ASC" if forward else "DESC"  # series order inside a study
    if place is not None:  # the rest of this study first
        cmp = ">" if forward else "<"
        rows = await Series.raw(
            f"""SELECT se.series_instance_uid FROM lb_series se WHERE se.study = {{}}
                AND (COALESCE(se.series_number, 0) {cmp} {{}}
                     OR (COALESCE(se.series_number, 0) = {{}} AND se.id {cmp} {{}})){extra}
                ORDER BY {_SERIES_ORDER.format(d=up)} LIMIT 1""",
            place.study_id, place.series_number, place.series_number, place.series_id, *extra_args)
        if rows:
            return rows[0]["series_instance_uid"]
    # Then the nearest study further along the walk that has such a series.
    cmp, down = ("<", "DESC") if forward else (">", "ASC")  # studies run newest first
    keyset, keyset_args = "", []
    if place is not None:
        # The bare bound (date <= ?) is what lets the index seek straight to the place; the OR then
        # settles ties on the same date by id.
        keyset = (f" AND st.study_date {cmp}= {{}}"
                  f" AND (st.study_date {cmp} {{}} OR (st.study_date = {{}} AND st.id {cmp} {{}}))")
        keyset_args = [place.study_date, place.study_date, place.study_date, place.study_id]
    rows = await Series.raw(
        f"""SELECT st.id FROM lb_study st WHERE st.project = {{}}{keyset}
            AND EXISTS (SELECT 1 FROM lb_series se WHERE se.study = st.id{extra})
            ORDER BY st.study_date {down}, st.id {down} LIMIT 1""",
        project.id, *keyset_args, *extra_args)
    if not rows:
        return None
    rows = await Series.raw(
        f"""SELECT se.series_instance_uid FROM lb_series se WHERE se.study = {{}}{extra}
            ORDER BY {_SERIES_ORDER.format(d=up)} LIMIT 1""", rows[0]["id"], *extra_args)
    return rows[0]["series_instance_uid"] if rows else None


async def neighbours(project: Project, series_uid: str) -> tuple[str | None, str | None]:
    """The series before and after this one in the walk (None at either end, or for an unknown series).

    Derived series (the AI's own SR, SC and PDF results) are stepped over: ↑/↓ walk what people acquired
    and review; the results stay one click away on the study page."""
    place = await place_of(project, series_uid)
    if place is None:
        return None, None
    acquired = ("se.review_status <> {}", [DERIVED])
    before, after = await db.together(step(project, place, forward=False, condition=acquired),
                                      step(project, place, forward=True, condition=acquired))
    return before, after
