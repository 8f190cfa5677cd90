"""Review progress of a project: series by status, by latest decision, and decisions per reviewer.

Read from the project's tallies (lb_tally, kept current by triggers at every write), so the dashboard costs
a few index rows however many series and decisions the project holds.
"""

from __future__ import annotations

from portal.tables import Project, Tally


async def tallies(project: Project, name: str, from_key: str = "") -> dict[str, int]:
    """The project's counters called `name` ({key: n}, zero counts left out); keys from `from_key` on."""
    rows = await Tally.raw("SELECT key, n FROM lb_tally WHERE project = {} AND name = {} AND key >= {} AND n <> 0",
                           project.id, name, from_key)
    return {r["key"]: r["n"] for r in rows}


async def summary(project: Project) -> dict:
    by_status = await tallies(project, "status")
    decisions, series = await tallies(project, "reviewer"), await tallies(project, "reviewer_series")
    reviewers = []
    for key, n in decisions.items():
        role, username = key.split("|", 1)
        reviewers.append({"username": username, "role": role, "n": n, "series": series.get(key, 0)})
    reviewers.sort(key=lambda r: (-r["n"], r["username"], r["role"]))
    return {"total": sum(by_status.values()), "by_status": by_status,
            "by_decision": await tallies(project, "decision"), "reviewers": reviewers}
