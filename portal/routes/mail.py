"""Flag for discussion (the series page's panel) and `POST /api/v1/email`, both through review.flags."""

from __future__ import annotations

from typing import Literal, TypedDict

from litestar import Request, get, post
from litestar.di import Provide
from litestar.response import Template

from portal import archive as arch, projects
from portal.auth import permissions
from portal.errors import Invalid, LightboxError
from portal.mail import compose, recipients
from portal.review import decisions, flags
from portal.routes._auth import api_user, client_of, portal_user
from portal.routes import _openapi as doc
from portal.routes._body import json_or_form
from portal.routes._render import partial
from portal.tables import Project, Series, Study, User

_portal = {"me": Provide(portal_user)}
_api = {"me": Provide(api_user)}


async def panel_context(me: User, project: Project, series: Series) -> dict:
    """The flag panel: who may be chosen (configured addresses prefilled, then members), the flag history."""
    may_flag = await permissions.may(me, "flag_series", project)
    choices = []
    if may_flag:
        for address in recipients.defaults(project):
            choices.append({"value": address, "label": address, "default": True, "role": "default recipient"})
        directory = await recipients.directory(project)
        seen = {c["value"].lower() for c in choices}
        for key, r in sorted(directory.items()):
            if r["username"] and key == r["username"].lower() and r["username"] != me.username \
                    and r["address"].lower() not in seen:
                choices.append({"value": r["username"], "label": r["username"], "default": False,
                                "role": r.get("role", "").replace("_", " ")})
    study = await Study.objects().get(Study.id == series.study)
    return {"project": project, "series": series, "may_flag": may_flag, "choices": choices,
            "default_subject": compose.flag_subject(project, study, series), "flags": await flags.history(series)}


@get("/projects/{project:str}/series/{series_uid:str}/flags", dependencies=_portal, include_in_schema=False)
async def flag_panel(me: User, project: str, series_uid: str) -> Template:
    p = await permissions.project_for(me, project)
    series = await arch.find_series(p, series_uid)
    return partial("review/_flags.html", **await panel_context(me, p, series))


# A screenshot travels base64-encoded in the form or JSON: room for one of flags.MAX_SCREENSHOT bytes.
_FLAG_BODY = 2 * flags.MAX_SCREENSHOT


@post("/projects/{project:str}/series/{series_uid:str}/flags", dependencies=_portal, include_in_schema=False,
      request_max_body_size=_FLAG_BODY)
async def flag_send(request: Request, me: User, project: str, series_uid: str) -> Template:
    p = await permissions.project_for(me, project, "flag_series")
    series = await arch.find_series(p, series_uid)
    form = await request.form()
    try:
        made = await flags.flag(p, series, me, to=form.getall("to", []), cc=form.getall("cc", []),
                                note=form.get("note", ""), subject=form.get("subject", ""),
                                screenshot=flags.screenshot_from(form.get("screenshot", "")), use_defaults=False,
                                client=client_of(request))
    except LightboxError as exc:
        return partial("review/_flags.html", status_code=exc.status, error=exc.detail,
                       form={"note": form.get("note", ""), "subject": form.get("subject", ""),
                             "to": form.getall("to", [])}, **await panel_context(me, p, series))
    shown = ", ".join(made["to"] + made["cc"])
    return partial("review/_flags.html", notice=f"Flagged; mail to {shown} is on its way.",
                   headers={"HX-Trigger": "lightbox:flagged"}, **await panel_context(me, p, series))


def _mail_settings(project: Project, **extra) -> Template:
    conf = projects.settings_of(project)
    return partial("projects/_mail_settings.html", project=project,
                   email_recipients=recipients.entries(conf.get("email_recipients")),
                   alert_recipients=recipients.entries(conf.get("alert_recipients")), **extra)


@get("/projects/{project:str}/settings/mail", dependencies=_portal, include_in_schema=False)
async def mail_settings(me: User, project: str) -> Template:
    return _mail_settings(await permissions.project_for(me, project, "manage_project"))


@post("/projects/{project:str}/settings/mail", dependencies=_portal, include_in_schema=False)
async def mail_settings_save(request: Request, me: User, project: str) -> Template:
    p = await permissions.project_for(me, project, "manage_project")
    form = await request.form()
    try:
        changes = await recipients.check_settings(p, recipients.entries(form.get("email_recipients", "")),
                                                  recipients.entries(form.get("alert_recipients", "")))
        await projects.update_settings(p, changes, by=me, client=client_of(request))
    except LightboxError as exc:
        return partial("projects/_mail_settings.html", status_code=exc.status, error=exc.detail, project=p,
                       email_recipients=recipients.entries(form.get("email_recipients", "")),
                       alert_recipients=recipients.entries(form.get("alert_recipients", "")))
    return _mail_settings(p, notice="Mail settings saved.")


class Flagged(TypedDict):
    """flags.as_dict, queued: the mail goes out through the outbox (`outbox`: its message, when one was needed)."""
    status: Literal["queued"]
    id: int
    series: str
    sender: str
    to: list[str]
    cc: list[str]
    subject: str
    note: str
    outbox: int | None
    created: str


# Recipients as recipients.entries reads them: a list, or one text separated by commas, semicolons or lines.
_RECIPIENTS = {"oneOf": [doc.STR, doc.array(doc.STR)]}
_EMAIL_KEYS = {"series", "Project", "to", "cc", "subject", "body", "screenshot", "_csrf_token"}


@post("/api/v1/email", dependencies=_api, tags=["mail"], status_code=201, request_max_body_size=_FLAG_BODY,
      summary="Flag a series for discussion by email (recipients: project members and configured addresses only)",
      operation_class=doc.documented(body=doc.json_or_form(doc.obj(
          ("series",), closed=True, series=doc.STR, Project=doc.STR, to=_RECIPIENTS, cc=_RECIPIENTS, subject=doc.STR,
          body=doc.STR, screenshot={**doc.STR, "description": "a PNG as a data: URL (or its base64 text)"},
          _csrf_token=doc.STR))))
async def api_email(request: Request, me: User, Project: str | None = None) -> Flagged:  # noqa: N803
    body = await json_or_form(request)
    extra = set(body) - _EMAIL_KEYS
    if extra:
        raise Invalid(f"Unknown field(s): {', '.join(sorted(extra))}. Allowed: series, to, cc, subject, body, "
                      "screenshot (and Project).", "unknown_field")
    if not isinstance(body.get("series"), str) or not body["series"].strip():
        raise Invalid("'series' (a SeriesInstanceUID) is required.", "no_data_submitted")
    project, series = await decisions.visible_series(me, body["series"].strip(), body.get("Project") or Project)
    made = await flags.flag(project, series, me, to=body.get("to"), cc=body.get("cc"),
                            note=body.get("body") or "", subject=body.get("subject") or "",
                            screenshot=flags.screenshot_from(body.get("screenshot")), client=client_of(request))
    return {"status": "queued", **made}


ROUTES = [flag_panel, flag_send, mail_settings, mail_settings_save, api_email]
