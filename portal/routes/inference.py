"""AI routes: run and watch inference on the series page, and the Qure- and CAD4TB-style results APIs."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.di import Provide
from litestar.response import File, Response, Template

from portal.routes._files import stored_file
from portal import archive as arch, clock, projects
from portal.auth import permissions
from portal.errors import Invalid, LightboxError, NotFound
from portal.inference import alerting, jobs, models, results, retrain as retraining, routing, suggestions
from portal.review.decisions import visible_series
from portal.routes import _openapi as doc
from portal.routes._auth import api_user, client_of, portal_user
from portal.routes._body import row_count
from portal.routes._render import flash, page, partial, redirect
from portal.routes.api_v1 import _series as cad4tb_series
from portal.tables import Asset, Instance, Project, Series, User

_portal = {"me": Provide(portal_user)}
_api = {"me": Provide(api_user)}


def _enqueue(job: dict) -> None:
    from portal.tasks.inference import run_job

    run_job(job["id"])


async def panel(request: Request, me: User, p: Project, series: Series) -> Template:
    job = await jobs.latest(series)
    conf = projects.settings_of(p)
    threshold = float(conf["ai_suggest_threshold"])
    # Named in the project's artifact vocabulary (the decision panel marks the same ones as "suggested").
    mapped = suggestions.suggest((job or {}).get("results", []), conf.get("ai_artifact_map") or {},
                                 conf["artifacts"], threshold) if job and job["state"] == jobs.DONE else {}
    suggested = list(mapped)
    # A series whose instances arrived lately and has no (current) job yet is waiting for its quiet period.
    quiet = float(projects.settings_of(p)["ai_quiet_seconds"])
    waiting = series.ai_status == "" and series.last_instance_at is not None and (
        clock.now() - series.last_instance_at).total_seconds() < quiet + 120
    return partial("inference/_panel.html", project=p, series=series, job=job, suggested=suggested, waiting=waiting,
                   representative=results.representative(job) if job and job["state"] == jobs.DONE else None,
                   threshold=threshold, active=waiting or bool(job and job["state"] in jobs.ACTIVE),
                   may_run=await permissions.may(me, "request_inference", p))


@get("/projects/{project:str}/series/{series_uid:str}/ai", dependencies=_portal, include_in_schema=False)
async def ai_panel(request: Request, me: User, project: str, series_uid: str) -> Template:
    p = await permissions.project_for(me, project)
    return await panel(request, me, p, await arch.find_series(p, series_uid))


@post("/projects/{project:str}/series/{series_uid:str}/ai", dependencies=_portal, include_in_schema=False)
async def ai_run(request: Request, me: User, project: str, series_uid: str) -> Template:
    p = await permissions.project_for(me, project, "request_inference")
    series = await arch.find_series(p, series_uid)
    job, created = await jobs.request(p, series, force=True)
    if created:
        _enqueue(job)
    return await panel(request, me, p, await arch.find_series(p, series_uid))


@get("/projects/{project:str}/series/{series_uid:str}/ai/{kind:str}", dependencies=_portal, include_in_schema=False)
async def ai_asset(request: Request, me: User, project: str, series_uid: str, kind: str) -> Response:
    p = await permissions.project_for(me, project)
    job = await jobs.latest(await arch.find_series(p, series_uid))
    asset = (job or {}).get("assets", {}).get(kind)
    if asset is None:
        raise NotFound(f"No {kind} for this series yet.", "result_not_found")
    return await stored_file(request, arch.storage(), asset["file_key"], media_type=asset["media_type"],
                             inline=True, filename=f"{series_uid}-{kind}")


# --- the project's AI page: routing, models, retraining from reviewers ----------------------------


async def _ai_page_context(me: User, p: Project) -> dict:
    conf = projects.settings_of(p)
    runs = await retraining.runs(p)
    visible, in_use = models.for_project(p.name)
    outputs = sorted({o["name"] for m in in_use.values() for o in m.get("outputs", []) if o.get("type") == "probability"})
    return {"project": p, "rules": conf["ai_routing"], "quiet": conf["ai_quiet_seconds"],
            "threshold": conf["ai_suggest_threshold"], "models": visible, "serving": in_use,
            "alert_window": conf["ai_alert_window_hours"],
            "critical_rules": {n: alerting.critical_rule(m, conf) for n, m in in_use.items()},
            "critical_overrides": conf.get("ai_critical_thresholds") or {},
            "artifact_map": conf.get("ai_artifact_map") or {}, "artifacts": conf["artifacts"], "map_outputs": outputs,
            "evaluations": {n: models.evaluation_summary(m) for n, m in in_use.items()},
            "runs": runs, "active": any(r["state"] in retraining.ACTIVE for r in runs),
            "chart": next((r["comparison"] for r in runs if r["state"] == retraining.DONE), None),
            "labels": await retraining.label_counts(p), "min_series": _min_series(),
            "may_manage": await permissions.may(me, "manage_project", p)}


def _min_series() -> int:
    from portal.ai.finetune import MIN_SERIES  # numpy only; torch is imported when a run trains

    return MIN_SERIES


@get("/projects/{project:str}/ai", dependencies=_portal, include_in_schema=False)
async def ai_page(request: Request, me: User, project: str) -> Template:
    p = await permissions.project_for(me, project)
    return await page(request, me, "inference/project.html", **await _ai_page_context(me, p))


@get("/projects/{project:str}/ai/runs", dependencies=_portal, include_in_schema=False)
async def ai_runs(me: User, project: str) -> Template:
    p = await permissions.project_for(me, project)
    return partial("inference/_runs.html", **await _ai_page_context(me, p))


@post("/projects/{project:str}/ai/retrain", dependencies=_portal, include_in_schema=False)
async def ai_retrain(request: Request, me: User, project: str) -> Template:
    p = await permissions.project_for(me, project, "manage_project")
    run = await retraining.request(p, by=me)
    from portal.tasks.inference import retrain

    retrain(run["id"])
    return partial("inference/_runs.html", **await _ai_page_context(me, p))


@post("/projects/{project:str}/ai/settings", dependencies=_portal, include_in_schema=False)
async def ai_settings(request: Request, me: User, project: str) -> Template | Response:
    p = await permissions.project_for(me, project, "manage_project")
    form = await request.form()
    try:
        changes = _routing_form(form, projects.settings_of(p))
        await projects.update_settings(p, changes, by=me, client=client_of(request))
    except LightboxError as exc:
        return await page(request, me, "inference/project.html", status_code=exc.status, settings_error=exc.detail,
                          **await _ai_page_context(me, p))
    flash(request, "AI settings saved.", "success")
    return redirect(request, f"/projects/{p.name}/ai")


def _routing_form(form, conf: dict) -> dict:
    """Rows rule-N-{modality,body_part,sop_class,description,model} (a blank model drops the row); the quiet
    period, suggestion threshold, alert window, critical-{model} thresholds (blank: the model's own) and
    map-{output} artifact names (blank: no suggestion)."""
    rules = []
    for n in range(row_count(form)):
        row = {f: form.get(f"rule-{n}-{f}", "") for f in ("modality", "body_part", "sop_class", "description", "model")}
        if row["model"].strip() and not form.get(f"rule-{n}-remove"):
            rules.append(row)
    rules = routing.check_rules(rules)
    unknown = sorted({r["model"] for r in rules} - {m["name"] for m in models.installed()})
    if unknown:
        raise Invalid(f"No installed model named {', '.join(unknown)} (see `lightbox model list`).", "invalid_routing")
    try:
        quiet = float(form.get("quiet", ""))
        threshold = float(form.get("threshold", ""))
    except ValueError:
        raise Invalid("The quiet period and the suggestion threshold must be numbers.", "invalid_setting") from None
    if not 0 <= quiet <= 3600:
        raise Invalid("The quiet period must be between 0 and 3600 seconds.", "invalid_setting")
    if not 0 < threshold < 1:
        raise Invalid("The suggestion threshold must be between 0 and 1.", "invalid_setting")
    try:
        window = float(form.get("alert_window", conf["ai_alert_window_hours"]))
    except ValueError:
        raise Invalid("The alert window must be a number of hours.", "invalid_setting") from None
    if not 0 <= window <= 24 * 365:
        raise Invalid("The alert window must be between 0 and 8760 hours.", "invalid_setting")
    names = {m["name"] for m in models.installed()}
    critical = alerting.check_thresholds(
        {k[len("critical-"):]: v for k, v in form.items() if k.startswith("critical-") and str(v).strip()}, names)
    changes = {"ai_routing": rules, "ai_quiet_seconds": quiet, "ai_suggest_threshold": threshold,
               "ai_alert_window_hours": window, "ai_critical_thresholds": critical}
    if form.get("map-present"):
        changes["ai_artifact_map"] = suggestions.check_map(
            {k[len("map-"):]: v for k, v in form.items() if k.startswith("map-") and k != "map-present"},
            conf["artifacts"])
    return changes


# --- APIs -------------------------------------------------------------------------------------------


async def _series_by_any_uid(me: User, uid: str, project: str | None) -> tuple[Project, Series]:
    """A SeriesInstanceUID, or the SOPInstanceUID of one of its instances."""
    try:
        return await visible_series(me, uid, project)
    except NotFound:
        for instance in await Instance.objects().where(Instance.sop_instance_uid == uid):
            series = await Series.objects().get(Series.id == instance.series)
            return await visible_series(me, series.series_instance_uid, project)
        raise NotFound(f"{uid} is not yet uploaded (or not in a project you can see).", "series_not_found")


# The Qure-style answers (results.qure): `success` and a message, then the results once there are some.
_QURE = doc.obj(("success", "message"), success=doc.BOOL, message=doc.STR)
_MODEL = doc.obj(("name", "version"), name=doc.STR, version=doc.STR)
_TIME = doc.nullable(doc.STR)  # UTC ISO 8601, or null while it has not happened
_JOB = doc.nullable(doc.obj(  # results.job_dict
    ("id", "state", "model", "attempts", "error", "queued", "started", "finished"), id=doc.INT,
    state=doc.enum((jobs.QUEUED, jobs.RUNNING, jobs.RETRYING, jobs.DONE, jobs.FAILED, jobs.NOT_APPLICABLE)),
    model=_MODEL, attempts=doc.INT, error=doc.STR, queued=doc.STR, started=_TIME, finished=_TIME))
_VALUE = doc.nullable(doc.NUMBER)  # a Result's value (text results have none)
_SCALARS = doc.array(doc.obj(("name", "algorithm", "value"), name=doc.STR, algorithm=doc.STR, value=_VALUE))


@get("/api/v1/compute/{uid:str}", dependencies=_api, tags=["qure"],
     summary="Queue AI computation of a series (SeriesInstanceUID)",
     operation_class=doc.documented(answers={200: {doc.JSON: {**_QURE, "properties": {
         **_QURE["properties"], "job": _JOB}, "required": ["success", "message", "job"]}}}))
async def compute(me: User, uid: str, Project: str | None = None) -> dict:  # noqa: N803
    p, series = await visible_series(me, uid, Project)
    await permissions.project_for(me, p.name, "request_inference")
    job, created = await jobs.request(p, series, force=True)
    if created:
        _enqueue(job)
    return {"success": job["state"] in jobs.ACTIVE or job["state"] == jobs.DONE,
            "message": f"Computation of {uid} is {job['state'].replace('_', ' ')}.", "job": results.job_dict(job)}


@get("/api/v1/results/{uid:str}", dependencies=_api, tags=["qure"],
     summary="AI results of a series (SeriesInstanceUID or SOPInstanceUID)",
     operation_class=doc.documented(answers={
         200: {doc.JSON: {**_QURE, "properties": {
             **_QURE["properties"], "triage_status": {"enum": ["Critical", "Routine"]}, "usecase": doc.STR,
             "model": _MODEL,
             "result": doc.obj(("report", "scores", "files"), report=doc.STR, scores=doc.obj(others=_VALUE),
                               files=doc.obj(others=doc.array(doc.STR)))}}},
         404: {doc.JSON: _QURE}}))
async def qure_results(request: Request, me: User, uid: str, Project: str | None = None) -> Response:  # noqa: N803
    try:
        p, series = await _series_by_any_uid(me, uid, Project)
    except NotFound:
        return Response({"success": False, "message": f"{uid} is not yet uploaded."}, status_code=404)
    await permissions.project_for(me, p.name, "api_series_results")
    job = await jobs.latest(series)
    base = str(request.base_url).rstrip("/")
    critical = bool(job) and job["state"] == jobs.DONE and alerting.is_critical(
        models.manifest_for(job["model_name"], version=job["model_version"]) or {},
        {r["name"]: r["value"] for r in job["results"]}, projects.settings_of(p))
    return Response(results.qure(uid, job, lambda a: f"{base}/api/v1/assets/{a['id']}", critical=critical))


@get("/api/v1/assets/{asset_id:int}", dependencies=_api, tags=["qure"], summary="One AI result file",
     operation_class=doc.documented(answers={200: {"*/*": doc.BINARY}, 206: {"*/*": doc.BINARY}}))
async def asset_file(request: Request, me: User, asset_id: int) -> Response:
    asset = await Asset.objects().get(Asset.id == asset_id)
    series = await Series.objects().get(Series.id == asset.series) if asset else None
    project = await Project.objects().get(Project.id == series.project) if series else None
    if project is None:
        raise NotFound("No such result file.", "result_not_found")
    await permissions.project_for(me, project.name, "api_series_results")
    return await stored_file(request, arch.storage(), asset.file_key, media_type=asset.media_type,
                             filename=f"{series.series_instance_uid}-{asset.kind}")


@get("/api/v1/series/results/", dependencies=_api, tags=["cad4tb-v1"],
     summary="Algorithm results of a series: scalars as JSON, files as a zip with an XML of the scalars",
     operation_class=doc.documented(
         query={**doc.SERIES, "Results": "Comma-separated result names (default: every scalar)"},
         answers={200: {doc.JSON: _SCALARS, "application/zip": doc.BINARY}}))
async def cad4tb_results(request: Request, me: User) -> Response:
    params = dict(request.query_params)
    _, series = await cad4tb_series(me, params, "api_series_results")
    job = await jobs.latest(series)
    if job is None or job["state"] != jobs.DONE:
        raise NotFound("No results for this series yet" + (f" ({job['state'].replace('_', ' ')})" if job else "") + ".",
                       "result_not_found")
    names = [n.strip() for n in params.get("Results", "").split(",") if n.strip()]
    scalar_names = {r["name"] for r in job["results"]}
    unknown = [n for n in names if n not in scalar_names and n not in job["assets"]]
    if unknown:
        raise NotFound(f"No result named {', '.join(unknown)}. Available: "
                       f"{', '.join(sorted(scalar_names | set(job['assets'])))}.", "result_not_found")
    if any(n in job["assets"] for n in names):
        return Response(results.results_zip(job, names), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{series.series_instance_uid}-results.zip"'})
    return Response(results.scalars(job, names))


ROUTES = [ai_panel, ai_run, ai_asset, ai_page, ai_runs, ai_retrain, ai_settings, compute, qure_results, asset_file,
          cad4tb_results]
