"""Agreement on the progress dashboard: Cohen's kappa between reviewers on the series both decided, the model's
call against the reviewers' final decision (per model version), and the decisions made per day."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from itertools import combinations

from portal import clock
from portal.review import progress
from portal.tables import Decision, InferenceJob, Project, Result


def cohen_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Kappa of two raters' codes on the same items; None without items."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    left, right = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(left[k] * right[k] for k in left) / (n * n)
    if expected >= 1:
        return 1.0 if observed == 1 else 0.0
    return (observed - expected) / (1 - expected)


async def reviewer_agreement(project: Project) -> list[dict]:
    """Each pair of reviewers with series decided by both: their latest codes' kappa, most shared first.

    Only series decided by more than one person can agree or not (lb_series.n_readers, kept by triggers), so
    only their decisions are read."""
    rows = await Decision.raw(
        """SELECT d.series, d.username, d.code FROM lb_series se JOIN lb_decision d ON d.series = se.id
           WHERE se.project = {} AND se.n_readers > 1 ORDER BY d.id""", project.id)
    latest: dict[str, dict[int, str]] = defaultdict(dict)
    for r in rows:
        latest[r["username"]][r["series"]] = r["code"]
    out = []
    for a, b in combinations(sorted(latest), 2):
        shared = sorted(set(latest[a]) & set(latest[b]))
        if shared:
            pairs = [(latest[a][s], latest[b][s]) for s in shared]
            out.append({"a": a, "b": b, "n": len(pairs), "agree": sum(x == y for x, y in pairs),
                        "kappa": cohen_kappa(pairs)})
    return sorted(out, key=lambda p: (-p["n"], p["a"], p["b"]))


async def per_day(project: Project, days: int = 30) -> list[dict]:
    """Decisions per UTC day over the last `days` days: [{day, total, codes: {code: n}}], oldest first (from
    the project's per-day tallies)."""
    today = clock.now().date()
    start = today - dt.timedelta(days=days - 1)
    counts: dict[str, Counter] = defaultdict(Counter)
    for key, n in (await progress.tallies(project, "day", start.isoformat())).items():
        day, code = key.split("|", 1)
        counts[day][code] += n
    out = []
    for i in range(days):
        day = (start + dt.timedelta(days=i)).isoformat()
        out.append({"day": day, "total": sum(counts[day].values()), "codes": dict(counts[day])})
    return out


CRITICAL, CLEAR = "critical", "not critical"


async def ai_agreement(project: Project, conf: dict) -> list[dict]:
    """Per model version: how its call (critical or not, by the project's threshold) meets the final decision
    (the latest code) on the series both a finished job and a reviewer have spoken on. The latest finished job
    of each series and version counts. [{model, version, meaning, n, codes, rows: [{call, counts, total}]}]."""
    from portal.inference import alerting, models

    final: dict[int, str] = {}
    for r in await Decision.select(Decision.series, Decision.code).where(
            Decision.project == project.id).order_by(Decision.created_at).order_by(Decision.id):
        final[r["series"]] = r["code"]
    if not final:
        return []
    rows = await Result.select(Result.job, Result.series, Result.name, Result.value, Result.model_name,
                               Result.model_version).where(
        (Result.job.project == project.id) & (Result.job.state == "done"))
    latest_job: dict[tuple, int] = {}
    scores: dict[int, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["series"] not in final:
            continue
        key = (r["model_name"], r["model_version"], r["series"])
        latest_job[key] = max(latest_job.get(key, 0), r["job"])
        if r["value"] is not None:
            scores[r["job"]][r["name"]] = float(r["value"])
    tables: dict[tuple, Counter] = defaultdict(Counter)
    for (name, version, series), job in latest_job.items():
        tables[(name, version)][job, series] = 1
    out = []
    for (name, version), jobs_of in sorted(tables.items()):
        manifest = models.manifest_for(name, project.name, version) or {"name": name}
        rule = alerting.critical_rule(manifest, conf)
        if rule is None:
            continue  # a model without a critical rule makes no call to compare
        counts = {CRITICAL: Counter(), CLEAR: Counter()}
        for job, series in jobs_of:
            call = CRITICAL if alerting.is_critical(manifest, scores[job], conf) else CLEAR
            counts[call][final[series]] += 1
        codes = [v["code"] for v in conf["decisions"]]
        codes += sorted({c for k in counts.values() for c in k} - set(codes))
        out.append({"model": name, "version": version, "meaning": rule["meaning"], "n": len(jobs_of), "codes": codes,
                    "rows": [{"call": call, "counts": dict(counts[call]), "total": sum(counts[call].values())}
                             for call in (CRITICAL, CLEAR)]})
    return out
