"""Agreement on the progress dashboard: Cohen's kappa between reviewers on the series both decided, the model's
call against the reviewers' final decision (per model version), and the decisions made per day."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from itertools import combinations

from portal import clock
from portal.review import progress
from portal.tables import Decision, Project, Result


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
    of each series and version counts. [{model, version, meaning, n, codes, rows: [{call, counts, total}]}].

    The database does the counting in one grouped query: the final decision is the series row's own
    (lb_series.decision_code, kept by triggers, so no decision is read), the call is made in SQL from each
    installed model's critical rule, and the page gets a row per version, call and code, never a row per series."""
    from portal.inference import alerting, models

    manifests: dict[tuple[str, str], dict] = {}
    for m in models.installed():  # one scan of the model folders (the first of a name and version is the one)
        manifests.setdefault((m["name"], m["version"]), m)
    rules = {key: rule for key, m in manifests.items() if (rule := alerting.critical_rule(m, conf)) is not None}
    if not rules:
        return []  # a model without a critical rule makes no call to compare
    critical, args = [], []
    for (name, version), rule in rules.items():
        op = "<" if rule["side"] == "below" else ">"
        critical.append(f"(r.model_name = {{}} AND r.model_version = {{}} AND r.name = {{}} "
                        f"AND CAST(r.value AS DOUBLE PRECISION) {op} CAST({{}} AS DOUBLE PRECISION))")
        args += [name, version, rule["output"], rule[rule["side"]]]
    names = sorted({name for name, _ in rules})
    # One pass over the decided series' results (lb_series by project, lb_result by series, the job by its key),
    # no per-row subquery: each result row scores 2·job, +1 when it is the critical output past the threshold, so
    # the greatest is the latest finished job's (the one that counts), odd exactly when that job called critical.
    rows = await Result.raw(
        f"""SELECT model_name, model_version, code, top % 2 AS critical, COUNT(*) AS n FROM (
              SELECT r.model_name, r.model_version, s.decision_code AS code,
                     MAX(2 * CAST(r.job AS BIGINT) + CASE WHEN {" OR ".join(critical)} THEN 1 ELSE 0 END) AS top
              FROM lb_series s JOIN lb_result r ON r.series = s.id JOIN lb_inference_job j ON j.id = r.job
              WHERE s.project = {{}} AND s.decision_code IS NOT NULL AND j.project = {{}} AND j.state = 'done'
                AND r.model_name IN ({", ".join("{}" for _ in names)})
              GROUP BY r.model_name, r.model_version, r.series, s.decision_code) t
            GROUP BY model_name, model_version, code, top % 2""",
        *args, project.id, project.id, *names)
    tables: dict[tuple, dict[str, Counter]] = defaultdict(lambda: {CRITICAL: Counter(), CLEAR: Counter()})
    for r in rows:
        if (r["model_name"], r["model_version"]) in rules:  # other versions of these models make no call
            tables[(r["model_name"], r["model_version"])][CRITICAL if r["critical"] else CLEAR][r["code"]] += r["n"]
    out = []
    for (name, version), counts in sorted(tables.items()):
        codes = [v["code"] for v in conf["decisions"]]
        codes += sorted({c for k in counts.values() for c in k} - set(codes))
        out.append({"model": name, "version": version, "meaning": rules[(name, version)]["meaning"],
                    "n": sum(sum(c.values()) for c in counts.values()), "codes": codes,
                    "rows": [{"call": call, "counts": dict(counts[call]), "total": sum(counts[call].values())}
                             for call in (CRITICAL, CLEAR)]})
    return out
