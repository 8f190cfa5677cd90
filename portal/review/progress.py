"""Review progress of a project: series by status, by latest decision, and decisions per reviewer."""

from __future__ import annotations

from portal.tables import Decision, Project, Series


async def summary(project: Project) -> dict:
    by_status = {r["review_status"]: r["n"] for r in await Series.raw(
        "SELECT review_status, COUNT(*) AS n FROM lb_series WHERE project = {} GROUP BY review_status", project.id)}
    latest = await Decision.raw(
        """SELECT d.code, COUNT(*) AS n FROM lb_decision d
           JOIN (SELECT series, MAX(id) AS id FROM lb_decision WHERE project = {} GROUP BY series) last
             ON last.id = d.id
           GROUP BY d.code""", project.id)
    reviewers = await Decision.raw(
        """SELECT username, role, COUNT(*) AS n, COUNT(DISTINCT series) AS series FROM lb_decision
           WHERE project = {} GROUP BY username, role ORDER BY n DESC""", project.id)
    total = sum(by_status.values())
    return {"total": total, "by_status": by_status, "by_decision": {r["code"]: r["n"] for r in latest},
            "reviewers": reviewers}
