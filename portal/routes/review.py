"""Review routes: the decision panel (portal), my queue, the progress dashboard, vocabulary settings, and the
scan-decisions API."""

from __future__ import annotations

import json
from typing import Literal, TypedDict

from litestar import Request, Response, delete, get, post
from litestar.di import Provide
from litestar.response import Redirect, Template

from portal import archive as arch, db, projects
from portal.auth import permissions
from portal.errors import Conflict, Invalid, LightboxError, NotFound, PermissionDenied
from portal.inference import suggestions
from portal.review import agreement, claims, decisions, progress, queue, vocabulary
from portal.routes._auth import api_user, client_of, portal_user
from portal.routes import _openapi as doc
from portal.routes._body import json_object, row_count
from portal.routes._render import flash, page, partial, redirect
from portal.tables import Decision, Project, Series, User

_portal = {"me": Provide(portal_user)}
UNDO_IN_PAGE = 6  # seconds the panel offers "Undo" (the server allows decisions.UNDO_SECONDS)
_api = {"me": Provide(api_user)}


async def panel_context(me: User, project: Project, series: Series) -> dict:
    """What the decision panel shows: the vocabulary (with the caller's codes), artifacts, history."""
    conf = projects.settings_of(project)
    role = await decisions.role_for_decision(me, project)
    may_review = await permissions.may(me, "review_series", project)
    history, suggested = await db.together(decisions.history(series), suggestions.for_series(project, series))
    return {"vocabulary": conf["decisions"], "artifacts": conf["artifacts"], "undo_seconds": UNDO_IN_PAGE,
            "allowed": vocabulary.allowed_codes(conf["decisions"], role, me.is_admin) if may_review else [],
            "history": history, "review_role": role, "suggested": suggested}


async def claim_context(me: User, project: Project, series: Series, *, claim_now: bool = False,
                        take_over: bool = False, client: str = "") -> dict:
    """What the claim bar shows; with `claim_now` (opened from My queue, or the page renewing) the caller claims the
    series first unless someone else holds it."""
    error = None
    may_review = await permissions.may(me, "review_series", project)
    if may_review and (claim_now or take_over):
        try:
            await claims.claim(project, series, me, take_over=take_over, client=client)
        except (Conflict, PermissionDenied) as exc:
            error = exc.detail if take_over else None
    return {"claim": await claims.holder(series, me), "may_claim": may_review, "claim_error": error,
            "may_take_over": may_review and await claims.may_take_over(me, project),
            "renew_seconds": claims.RENEW_SECONDS}


def _artifacts_from_form(form) -> dict[str, int]:
    out = {}
    for key, value in form.items():
        if key.startswith("artifact."):
            try:
                out[key[len("artifact."):]] = int(value)
            except ValueError:
                raise Invalid(f"Artifact value '{value}' is not -1, 0 or 1.", "invalid_value")
    return out


def _location_from_form(form) -> dict | None:
    raw = form.get("location") or ""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise Invalid("The location is not valid JSON.", "invalid_location")


@post("/projects/{project:str}/series/{series_uid:str}/decisions", dependencies=_portal, include_in_schema=False)
async def decide(request: Request, me: User, project: str, series_uid: str) -> Template:
    p = await permissions.project_for(me, project, "review_series")
    series = await arch.find_series(p, series_uid)
    form = await request.form()
    made = await decisions.record(p, series, me, form.get("code", ""), note=form.get("note", ""),
                                  artifacts=_artifacts_from_form(form), location=_location_from_form(form),
                                  client=client_of(request))
    series = await arch.find_series(p, series_uid)
    await claims.release(series, me)  # decided: the series is free for the next tier
    return partial("review/_panel.html", project=p, series=series, notice=f"Recorded {made['decision']}.", undo=made,
                   headers={"HX-Trigger": json.dumps({"lightbox:decided": {"decision": made["decision"],
                                                                           "status": series.review_status}})},
                   **await panel_context(me, p, series))


@post("/projects/{project:str}/series/{series_uid:str}/decisions/{decision_id:int}/undo", dependencies=_portal,
      include_in_schema=False)
async def undo(request: Request, me: User, project: str, series_uid: str, decision_id: int) -> Template:
    p = await permissions.project_for(me, project, "review_series")
    series = await arch.find_series(p, series_uid)
    try:
        taken = await decisions.undo(p, series, me, decision_id, client=client_of(request))
        notice, error = f"Undid {taken['decision']}.", None
    except LightboxError as exc:
        notice, error = None, exc.detail
    series = await arch.find_series(p, series_uid)
    return partial("review/_panel.html", project=p, series=series, notice=notice, error=error,
                   headers={"HX-Trigger": json.dumps({"lightbox:undone": {"status": series.review_status}})},
                   **await panel_context(me, p, series))


@get("/projects/{project:str}/series/{series_uid:str}/claim", dependencies=_portal, include_in_schema=False)
async def claim_bar(me: User, project: str, series_uid: str) -> Template:
    """Who is reviewing the series now (the bar polls this while someone else holds it)."""
    p = await permissions.project_for(me, project)
    series = await arch.find_series(p, series_uid)
    return partial("review/_claim.html", project=p, series=series, **await claim_context(me, p, series))


@post("/projects/{project:str}/series/{series_uid:str}/claim", dependencies=_portal, include_in_schema=False)
async def claim_post(request: Request, me: User, project: str, series_uid: str) -> Template:
    """Claim or renew (the open page, every RENEW_SECONDS), or take over (`take_over=1`, seniors)."""
    p = await permissions.project_for(me, project, "review_series")
    series = await arch.find_series(p, series_uid)
    form = await request.form()
    take_over = form.get("take_over") == "1"
    return partial("review/_claim.html", project=p, series=series,
                   **await claim_context(me, p, series, claim_now=not take_over, take_over=take_over,
                                         client=client_of(request)))


@post("/projects/{project:str}/series/{series_uid:str}/claim/release", dependencies=_portal, status_code=204,
      include_in_schema=False)
async def claim_release(me: User, project: str, series_uid: str) -> None:
    """The page is being left: let the series go (a lapsed claim would free it anyway)."""
    p = await permissions.project_for(me, project)
    await claims.release(await arch.find_series(p, series_uid), me)


@get("/projects/{project:str}/queue", dependencies=_portal, include_in_schema=False)
async def my_queue(request: Request, me: User, project: str, after: str | None = None) -> Redirect:
    """Open the next series that needs my tier (after `after`), or say the queue is empty."""
    p = await permissions.project_for(me, project, "review_series")
    role = await decisions.role_for_decision(me, p)
    skip = await claims.claimed_by_others(p, me)
    for _ in range(20):  # another reviewer may claim the same series a moment earlier: take the next one
        uid = await queue.next_in_queue(p, role, after, skip)
        if uid is None:
            break
        try:
            await claims.claim(p, await arch.find_series(p, uid), me, client=client_of(request))
            break
        except Conflict:
            skip.add(uid)
    else:
        uid = None
    if uid is None:
        held = f" ({len(skip)} being reviewed by others now)" if skip else ""
        flash(request, f"Your review queue is empty: nothing in this project needs your tier{held}.", "success")
        return Redirect(f"/projects/{p.name}", status_code=303)
    return Redirect(f"/projects/{p.name}/series/{uid}?queue=1", status_code=303)


@get("/projects/{project:str}/dashboard", dependencies=_portal, include_in_schema=False)
async def dashboard(request: Request, me: User, project: str) -> Template:
    p = await permissions.project_for(me, project)
    return await page(request, me, "review/dashboard.html", project=p, summary=await progress.summary(p),
                      vocabulary=projects.settings_of(p)["decisions"], statuses=decisions_statuses(),
                      agreement=await agreement.reviewer_agreement(p), days=await agreement.per_day(p),
                      ai_agreement=await agreement.ai_agreement(p, projects.settings_of(p)))


def decisions_statuses() -> list[str]:
    return [decisions.UNREVIEWED, decisions.NEEDS_SENIOR, decisions.COMPLETE]


@post("/projects/{project:str}/settings/review", dependencies=_portal, include_in_schema=False)
async def vocabulary_save(request: Request, me: User, project: str) -> Template | Response:
    """Save the decision vocabulary (rows code/label/colour/key/roles) and the artifact list."""
    p = await permissions.project_for(me, project, "manage_project")
    form = await request.form()
    rows = []
    for i in range(row_count(form) + 1):
        code = (form.get(f"code.{i}") or "").strip()
        if code and form.get(f"delete.{i}") != "on":
            rows.append({"code": code, "label": form.get(f"label.{i}", ""), "colour": form.get(f"colour.{i}", ""),
                         "key": form.get(f"key.{i}", ""),
                         "roles": [r for r in vocabulary.ROLES if form.get(f"role.{i}.{r}") == "on"]})
    try:
        changes = {"decisions": vocabulary.check_decisions(rows),
                   "artifacts": vocabulary.check_artifacts((form.get("artifacts") or "").splitlines())}
        await projects.update_settings(p, changes, by=me, client=client_of(request))
    except LightboxError as exc:
        from portal.routes.projects import settings_page_context

        return await page(request, me, "projects/settings.html", status_code=exc.status, review_error=exc.detail,
                          **await settings_page_context(me, project))
    flash(request, "Review vocabulary saved.", "success")
    return redirect(request, f"/projects/{p.name}/settings#review")


# --- API --------------------------------------------------------------------------------------------


class Artifacts(TypedDict):
    present: list[str]
    absent: list[str]


class Location(TypedDict):
    x: float
    y: float
    z: float


class DecisionOut(TypedDict):
    """decisions.as_dict: one decision of the history (the code is one of the project's vocabulary)."""
    id: int
    series: str
    decision: str
    note: str
    creator: str
    role: str
    created: str
    artifacts: Artifacts
    location: Location | None


class Undone(TypedDict):
    undone: DecisionOut
    review_status: Literal["unreviewed", "needs_senior_review", "complete"]  # decisions.REVIEW_STATUSES


class Claim(TypedDict):
    """claims.as_dict, as the API shows it: who holds the series and until when."""
    username: str
    claimed: str
    expires: str
    mine: bool


class ClaimOut(TypedDict):
    series: str
    claim: Claim | None


_DECISION_KEYS = {"series", "decision", "note", "artifacts", "location"}


@post("/api/v1/scan-decisions", dependencies=_api, tags=["review"], status_code=201,
      summary="Record a QC decision on a series (append-only)",
      operation_class=doc.documented(body={doc.JSON: doc.obj(
          ("series", "decision"), closed=True, series=doc.STR, decision=doc.STR, note=doc.STR,
          artifacts=doc.obj(closed=True, present=doc.array(doc.STR), absent=doc.array(doc.STR)),
          location={"oneOf": [doc.NULL, doc.obj(("x", "y", "z"), closed=True, x=doc.NUMBER, y=doc.NUMBER,
                                                z=doc.NUMBER)]})}))
async def api_decide(request: Request, me: User, Project: str | None = None) -> DecisionOut:  # noqa: N803
    body = await json_object(request, '{"series": "1.2.3", "decision": "U"}')
    extra = set(body) - _DECISION_KEYS
    if extra:
        raise Invalid(f"Unknown field(s): {', '.join(sorted(extra))}. Allowed: {', '.join(sorted(_DECISION_KEYS))}.",
                      "unknown_field")
    if not isinstance(body.get("series"), str) or not isinstance(body.get("decision"), str):
        raise Invalid("'series' (a SeriesInstanceUID) and 'decision' (a code) are required.", "no_data_submitted")
    if not isinstance(body.get("note", ""), str):
        raise Invalid("'note' must be text.", "invalid_value")
    artifacts = body.get("artifacts") or {}
    if not isinstance(artifacts, dict) or set(artifacts) - {"present", "absent"} or not all(
            isinstance(v, list) and all(isinstance(n, str) for n in v) for v in artifacts.values()):
        raise Invalid("'artifacts' must be {\"present\": [names], \"absent\": [names]}.", "invalid_artifacts")
    marks = {**{n: vocabulary.ABSENT for n in artifacts.get("absent", [])},
             **{n: vocabulary.PRESENT for n in artifacts.get("present", [])}}
    project, series = await decisions.visible_series(me, body["series"], Project)
    made = await decisions.record(project, series, me, body["decision"], note=body.get("note", ""),
                                  artifacts=marks, location=body.get("location"), client=client_of(request))
    await claims.release(series, me)
    return made


@get("/api/v1/claims", dependencies=_api, tags=["review"], summary="Who is reviewing a series now")
async def api_claim_get(me: User, series: str, Project: str | None = None) -> ClaimOut:  # noqa: N803
    _, found = await decisions.visible_series(me, series, Project)
    held = await claims.holder(found, me)
    return {"series": series, "claim": _claim_out(held)}


@post("/api/v1/claims", dependencies=_api, tags=["review"], status_code=201,
      summary="Claim a series for review (or renew your claim; seniors may take_over)",
      operation_class=doc.documented(body={doc.JSON: doc.obj(("series",), series=doc.STR, take_over=doc.BOOL)}))
async def api_claim_post(request: Request, me: User, Project: str | None = None) -> ClaimOut:  # noqa: N803
    body = await json_object(request, '{"series": "1.2.3", "take_over": false}')
    if not isinstance(body.get("series"), str) or not isinstance(body.get("take_over", False), bool):
        raise Invalid("'series' (a SeriesInstanceUID) is required; 'take_over' is true or false.", "no_data_submitted")
    project, series = await decisions.visible_series(me, body["series"], Project)
    if not await permissions.may(me, "review_series", project):
        raise PermissionDenied("Your role in this project does not review series.", "permission_denied")
    held = await claims.claim(project, series, me, take_over=body.get("take_over", False), client=client_of(request))
    return {"series": body["series"], "claim": _claim_out(held)}


@delete("/api/v1/claims", dependencies=_api, tags=["review"], status_code=204, summary="Release your claim")
async def api_claim_delete(me: User, series: str, Project: str | None = None) -> None:  # noqa: N803
    _, found = await decisions.visible_series(me, series, Project)
    await claims.release(found, me)


def _claim_out(held: dict | None) -> Claim | None:
    return None if held is None else {k: held[k] for k in ("username", "claimed", "expires", "mine")}


@get("/api/v1/scan-decisions", dependencies=_api, tags=["review"],
     summary="The decision history of a series, newest first")
async def api_history(me: User, series: str, Project: str | None = None) -> list[DecisionOut]:  # noqa: N803
    _, found = await decisions.visible_series(me, series, Project)
    return await decisions.history(found)


@post("/api/v1/scan-decisions/{decision_id:int}/undo", dependencies=_api, tags=["review"], status_code=200,
      summary="Take back your own latest decision on a series within 20 seconds (an accidental key press)")
async def api_undo(request: Request, me: User, decision_id: int) -> Undone:
    row = await Decision.select(Decision.series.series_instance_uid, Decision.project.name).where(
        Decision.id == decision_id).first()
    if row is None:
        raise NotFound(f"No decision {decision_id}.", "decision_not_found")
    project, series = await decisions.visible_series(me, row["series.series_instance_uid"], row["project.name"])
    if not await permissions.may(me, "review_series", project):
        raise PermissionDenied("Your role in this project does not review series.", "permission_denied")
    taken = await decisions.undo(project, series, me, decision_id, client=client_of(request))
    series = await arch.find_series(project, series.series_instance_uid)
    return {"undone": taken, "review_status": series.review_status}


ROUTES = [decide, undo, api_undo, claim_bar, claim_post, claim_release, api_claim_get, api_claim_post, api_claim_delete, my_queue, dashboard, vocabulary_save, api_decide, api_history]
