"""Walking a project series by series: the order the series pages and the keyboard follow."""

from __future__ import annotations

from portal.tables import Project, Series


async def ordered_series_uids(project: Project) -> list[str]:
    """Every series of the project: newest study first, then series number."""
    rows = await Series.raw(
        """SELECT se.series_instance_uid FROM lb_series se JOIN lb_study st ON st.id = se.study
           WHERE se.project = {} ORDER BY st.study_date DESC, st.id DESC,
           COALESCE(se.series_number, 0), se.id""", project.id)
    return [r["series_instance_uid"] for r in rows]


async def neighbours(project: Project, series_uid: str) -> tuple[str | None, str | None]:
    uids = await ordered_series_uids(project)
    try:
        i = uids.index(series_uid)
    except ValueError:
        return None, None
    return (uids[i - 1] if i > 0 else None), (uids[i + 1] if i + 1 < len(uids) else None)
