"""Report forms: the series' forms panel, the form builder for managers, and the forms API (JSON and CAD4TB-style)."""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypedDict
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.di import Provide
from litestar.params import QueryParameter
from litestar.response import Template

from portal import archive as arch, forms
from portal.auth import permissions
from portal.errors import Invalid, LightboxError, NotFound
from portal.forms import applicability, draft as drafts
from portal.forms.schema import FIELD_TYPES, FORM_NAME
from portal.forms.webform import entry_from_post, post_from_entry
from portal.routes import _openapi as doc
from portal.routes._body import json_or_form
from portal.routes._auth import api_user, client_of, portal_user
from portal.routes._render import flash, is_htmx, page, partial, redirect
from portal.routes.api_v1 import _series as api_series, default_project
from portal.tables import Project, Series, User

_portal = {"me": Provide(portal_user)}
_api = {"me": Provide(api_user)}


async def _post(request: Request) -> dict[str, list[str]]:
    form = await request.form()
    return {key: form.getall(key) for key in form.keys() if key != "_csrf_token"}


# --- the forms panel of a series ---------------------------------------------------------------


def _card(form: dict, history: list[dict], *, values: dict | None = None, errors: dict | None = None,
          notice: str = "", prefilled_from: dict | None = None) -> dict:
    """What one form's partial shows: the form with its values and errors, and its submissions."""
    values = values or {}
    shown, _ = forms.entry_errors(form, entry_from_post(form, values))
    return {"form": form, "values": values, "errors": errors or {}, "history": history, "notice": notice,
            "visible": {f["name"] for f in form["fields"] if forms.is_visible(f, shown)},
            "prefilled_from": prefilled_from}


async def _cards(me: User, project: Project, series: Series) -> tuple[list[dict], list[dict]]:
    """A card per assigned form (prefilled with the user's own latest report), and submissions of other forms."""
    submissions = await forms.submissions_of(series)
    cards = []
    # Only the forms that apply to this series (forms/applicability.py): no required questions where they do not.
    for form in await applicability.forms_for_series(project, series, await forms.forms_of(project)):
        history = [s for s in submissions if s["form"] == form["name"]]
        mine = next((s for s in history if s["username"] == me.username), None)
        cards.append(_card(form, history, values=post_from_entry(form, mine["entry"]) if mine else {},
                           prefilled_from=mine))
    assigned = {c["form"]["name"] for c in cards}
    return cards, [s for s in submissions if s["form"] not in assigned]


async def _series_of(me: User, project: str, series_uid: str) -> tuple[Project, Series, frozenset[str]]:
    p = await permissions.project_for(me, project)
    return p, await arch.find_series(p, series_uid), await permissions.permissions(me, p)


@get("/projects/{project:str}/series/{series_uid:str}/forms", dependencies=_portal, include_in_schema=False)
async def series_forms(request: Request, me: User, project: str, series_uid: str) -> Template:
    """The panel the series page loads; a direct visit gets it as a page of its own."""
    p, series, perms = await _series_of(me, project, series_uid)
    cards, others = await _cards(me, p, series)
    ctx = {"project": p, "series": series, "cards": cards, "others": others, "can_submit": "submit_form" in perms,
           "can_manage": "manage_forms" in perms}
    if is_htmx(request):
        return partial("forms/_panel.html", **ctx)
    return await page(request, me, "forms/panel.html", **ctx)


@post("/projects/{project:str}/series/{series_uid:str}/forms/{form_name:str}", dependencies=_portal,
      include_in_schema=False)
async def series_form_submit(request: Request, me: User, project: str, series_uid: str,
                             form_name: str) -> Template | Response:
    """Submit one form: 400 with the same form, inline errors and the values kept; else the form refreshed."""
    p, series, _ = await _series_of(me, project, series_uid)
    await permissions.project_for(me, project, "submit_form")
    form = await forms.find_form(p, form_name)
    values = await _post(request)
    try:
        saved = await forms.submit(series, p, me, form["name"], entry_from_post(form, values),
                                   client=client_of(request))
    except Invalid as exc:
        card = _card(form, await forms.submissions_of(series, form["name"]), values=values, errors=exc.fields)
        if is_htmx(request):
            return partial("forms/_form.html", status_code=400, project=p, series=series, card=card,
                           can_submit=True)
        cards, others = await _cards(me, p, series)
        cards = [card if c["form"]["name"] == form["name"] else c for c in cards]
        return await page(request, me, "forms/panel.html", status_code=400, project=p, series=series, cards=cards,
                          others=others, can_submit=True)
    notice = f"Saved at {saved['created']} (form version {saved['form_version']})."
    if not is_htmx(request):
        flash(request, notice, "success")
        return redirect(request, f"/projects/{p.name}/series/{series.series_instance_uid}/forms")
    history = await forms.submissions_of(series, form["name"])
    card = _card(form, history, values=post_from_entry(form, saved["entry"]), notice=notice, prefilled_from=saved)
    return partial("forms/_form.html", project=p, series=series, card=card, can_submit=True)


# --- the builder: a project's forms ------------------------------------------------------------


async def _manage_context(me: User, project: str) -> dict:
    p = await permissions.project_for(me, project, "manage_forms")
    assigned = await forms.forms_of(p)
    taken = {f["name"] for f in assigned}
    return {"project": p, "assigned": assigned, "can_share": me.is_admin,
            "available": [f for f in await forms.library(p, me) if f["name"] not in taken]}


async def _assigned_response(request: Request, me: User, project: str, **extra) -> Template | Response:
    if is_htmx(request):
        return partial("forms/_assigned.html", **await _manage_context(me, project), **extra)
    return redirect(request, f"/projects/{project}/forms")


@get("/projects/{project:str}/forms", dependencies=_portal, include_in_schema=False)
async def manage_forms(request: Request, me: User, project: str) -> Template:
    await forms.ensure_builtin_forms()  # so that a manager can always pick them
    return await page(request, me, "forms/manage.html", **await _manage_context(me, project))


@post("/projects/{project:str}/forms", dependencies=_portal, include_in_schema=False)
async def new_form(request: Request, me: User, project: str) -> Template | Response:
    """Start a new form: check the name, then open an empty editor (nothing is stored until it is saved)."""
    p = await permissions.project_for(me, project, "manage_forms")
    form = await request.form()
    name, title = (form.get("name") or "").strip().lower(), (form.get("title") or "").strip()
    error = ""
    if not FORM_NAME.match(name):
        error = "Use lowercase letters, digits and '-', starting with a letter or digit (at most 80)."
    elif await forms.latest(name) is not None:
        # Names are site-wide; the message is the same whether or not this project could see the other form.
        error = f"A form named '{name}' exists already; choose another name (or add it from the list above)."
    if error:
        return await page(request, me, "forms/manage.html", status_code=400, new_error=error,
                          new_values={"name": name, "title": title}, **await _manage_context(me, project))
    return redirect(request, f"/projects/{p.name}/forms/{name}?{urlencode({'title': title})}")


@post("/projects/{project:str}/forms/{form_name:str}/assign", dependencies=_portal, include_in_schema=False)
async def form_assign(request: Request, me: User, project: str, form_name: str) -> Template | Response:
    p = await permissions.project_for(me, project, "manage_forms")
    await forms.assign(p, form_name, by=me, client=client_of(request))
    return await _assigned_response(request, me, project)


@post("/projects/{project:str}/forms/{form_name:str}/unassign", dependencies=_portal, include_in_schema=False)
async def form_unassign(request: Request, me: User, project: str, form_name: str) -> Template | Response:
    p = await permissions.project_for(me, project, "manage_forms")
    await forms.unassign(p, form_name, by=me, client=client_of(request))
    return await _assigned_response(request, me, project)


@post("/projects/{project:str}/forms/{form_name:str}/share", dependencies=_portal, include_in_schema=False)
async def form_share(request: Request, me: User, project: str, form_name: str) -> Template | Response:
    """Administrators: make a form available to every project (shared=1) or only to its own (shared=0)."""
    p = await permissions.project_for(me, project, "manage_forms")
    if form_name not in {f["name"] for f in await forms.forms_of(p)}:
        raise forms.not_found(p, form_name)
    await forms.share(form_name, (await request.form()).get("shared") != "0", by=me, client=client_of(request))
    return await _assigned_response(request, me, project)


@post("/projects/{project:str}/forms/{form_name:str}/move", dependencies=_portal, include_in_schema=False)
async def form_move(request: Request, me: User, project: str, form_name: str) -> Template | Response:
    p = await permissions.project_for(me, project, "manage_forms")
    direction = (await request.form()).get("direction")
    await forms.move(p, form_name, -1 if direction == "up" else 1)
    return await _assigned_response(request, me, project)


# --- the builder: one form's editor ------------------------------------------------------------


async def _editor_context(me: User, project: str, form_name: str) -> dict:
    """The project, the form's saved versions (none for a new form) and whether it is the project's."""
    p = await permissions.project_for(me, project, "manage_forms")
    saved = await forms.versions(form_name)
    if saved and form_name not in {f["name"] for f in await forms.forms_of(p)}:
        # Another project's form opens exactly like a name nobody uses (an empty editor): nothing of it shows.
        saved = []
    if not saved and not FORM_NAME.match(form_name):
        raise forms.not_found(p, form_name)
    return {"project": p, "name": form_name, "versions": saved, "field_types": FIELD_TYPES}


def _builder(ctx: dict, draft: dict, *, errors: dict | None = None, notice: str = "", save_as: str = "",
             base_version: int | None = None) -> dict:
    """The builder's context: the draft, its problems, and a preview of what it would look like."""
    preview, problems = drafts.preview(ctx["name"], draft)
    errors = {**problems, **(errors or {})}
    if base_version is None:
        base_version = ctx["versions"][0]["version"] if ctx["versions"] else 0
    return {**ctx, "draft": draft, "errors": errors, "notice": notice, "save_as": save_as,
            "base_version": base_version, "preview": _card(preview, []), "unfolded": drafts.unfolded(draft, errors)}


@get("/projects/{project:str}/forms/{form_name:str}", dependencies=_portal, include_in_schema=False)
async def form_editor(request: Request, me: User, project: str, form_name: str, title: str = "",
                      version: int | None = None) -> Template:
    ctx = await _editor_context(me, project, form_name)
    start = next((v for v in ctx["versions"] if v["version"] == version), None) or \
        (ctx["versions"][0] if ctx["versions"] else None)
    draft = drafts.from_definition(start) if start else {"title": title, "description": "",
                                                          "fields": [drafts.blank_field("text")]}
    notice = f"Loaded version {version} into the editor; saving makes it the newest version." \
        if start and version and start is not ctx["versions"][0] else ""
    return await page(request, me, "forms/edit.html", **_builder(ctx, draft, notice=notice))


@post("/projects/{project:str}/forms/{form_name:str}/draft", dependencies=_portal, include_in_schema=False)
async def form_draft(request: Request, me: User, project: str, form_name: str) -> Template:
    """Apply one builder operation to the posted draft and render the builder again (nothing is saved)."""
    ctx = await _editor_context(me, project, form_name)
    post_ = await _post(request)
    one = lambda key: (post_.get(key) or [""])[-1]  # noqa: E731
    draft = drafts.apply(drafts.from_post(post_), one("op"), one("new_type"))
    builder = _builder(ctx, draft, save_as=one("save_as"), base_version=_int(one("base_version")))
    return partial("forms/_builder.html", **builder) if is_htmx(request) else \
        await page(request, me, "forms/edit.html", **builder)


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() else None


@post("/projects/{project:str}/forms/{form_name:str}", dependencies=_portal, include_in_schema=False)
async def form_save(request: Request, me: User, project: str, form_name: str) -> Template | Response:
    """Save the draft as the next version (or, with "save as", as a new form replacing this one here)."""
    ctx = await _editor_context(me, project, form_name)
    post_ = await _post(request)
    one = lambda key: (post_.get(key) or [""])[-1].strip()  # noqa: E731
    draft, save_as, base = drafts.from_post(post_), one("save_as").lower(), _int(one("base_version"))
    target = save_as if save_as and save_as != form_name else form_name
    try:
        saved, created = await forms.save_definition(
            ctx["project"], drafts.to_definition(target, draft), by=me, client=client_of(request),
            base_version=base or None, replaces=form_name if target != form_name else None)
    except LightboxError as exc:
        errors = dict(exc.fields)
        if target != form_name and "name" in errors:
            errors["save_as"] = errors.pop("name")
        errors["_form"] = exc.detail
        builder = _builder(ctx, draft, errors=errors, save_as=save_as, base_version=base)
        return partial("forms/_builder.html", status_code=exc.status, **builder) if is_htmx(request) else \
            await page(request, me, "forms/edit.html", status_code=exc.status, **builder)
    if not created:
        builder = _builder(ctx, draft, notice=f"Nothing changed: version {saved['version']} is current.")
        return partial("forms/_builder.html", **builder) if is_htmx(request) else \
            await page(request, me, "forms/edit.html", **builder)
    flash(request, f"Saved '{saved['title']}' as version {saved['version']}.", "success")
    return redirect(request, f"/projects/{ctx['project'].name}/forms/{saved['name']}")


# --- API: JSON ------------------------------------------------------------------------------------


# What the forms API answers (forms.public and the submissions); field types follow forms.schema.FIELD_TYPES.
FieldType = Literal[tuple(FIELD_TYPES)]  # type: ignore[valid-type]
Value = str | float | bool  # what a visible_if compares with: text, a number or yes/no
Answer = str | float | bool | list[str]  # an answer, as forms.validation cleans it (a list: multiple choice)


class VisibleEquals(TypedDict):
    field: str
    equals: Value


VisibleIn = TypedDict("VisibleIn", {"field": str, "in": list[Value]})


class FormField(TypedDict):
    """One field of a definition, every key present (forms.schema.FIELD_KEYS)."""
    name: str
    type: FieldType
    label: str
    required: bool
    help: str
    options: list[str] | None
    min: float | None
    max: float | None
    step: float | None
    unit: str | None
    visible_if: VisibleEquals | VisibleIn | None


class FormSummary(TypedDict):
    name: str
    version: int
    title: str
    description: str


class FormDefinition(FormSummary):
    fields: list[FormField]


class Submission(TypedDict):
    id: int
    entry: dict[str, Answer]
    entry_formatted: str
    user: str
    series: str
    form: str
    form_version: int
    created: str


ProjectParam = Annotated[str | None, QueryParameter(name="Project",
                                                   description="The project; the caller's only project when absent")]


@get("/api/v1/forms", dependencies=_api, tags=["forms"], summary="The report forms of a project")
async def api_forms(me: User, project: ProjectParam = None) -> list[FormSummary]:
    p = await default_project(me, project, "api_list_forms")
    return [{"name": f["name"], "version": f["version"], "title": f["title"], "description": f["description"]}
            for f in await forms.forms_of(p)]


@get("/api/v1/forms/{form_name:str}", dependencies=_api, tags=["forms"],
     summary="One report form's definition: its fields, with what a valid FormSubmission must hold")
async def api_form(me: User, form_name: str, project: ProjectParam = None,
                   version: Annotated[int | None, QueryParameter(
                       name="Version", description="An earlier version (default: the newest)")] = None) -> FormDefinition:
    p = await default_project(me, project, "api_list_forms")
    form = await forms.find_form(p, form_name)
    if version is not None:
        form = await forms.version(form["name"], version)
        if form is None:
            raise NotFound(f"Form '{form_name}' has no version {version}.", "form_not_found")
    return forms.public(form)


# --- API: the CAD4TB-style reporting commands -----------------------------------------------------


def _submission_out(s: dict) -> Submission:
    return {"id": s["id"], "entry": s["entry"], "entry_formatted": s["entry_formatted"], "user": s["user"],
            "series": s["series"], "form": s["form"], "form_version": s["form_version"], "created": s["created"]}


@get("/api/v1/patient/study/series/forms/list/", dependencies=_api, tags=["cad4tb-v1"],
     summary="A series' report form submissions, newest first", operation_class=doc.documented(query=doc.SERIES))
async def api_submissions_list(request: Request, me: User) -> list[Submission]:
    _, series = await api_series(me, dict(request.query_params), "api_list_forms")
    return [_submission_out(s) for s in await forms.submissions_of(series)]


async def _params(request: Request) -> dict:
    """Query parameters, then the body's form fields or JSON object on top."""
    return {**dict(request.query_params), **await json_or_form(request)}


_ANSWER = {"oneOf": [doc.STR, doc.NUMBER, doc.BOOL, doc.array(doc.STR)]}  # Answer, for the request body


@post("/api/v1/patient/study/series/forms/add/", dependencies=_api, tags=["cad4tb-v1"], status_code=200,
      summary="Add a report form submission (FormName, FormSubmission as JSON) to a series",
      operation_class=doc.documented(
          # Each name may come as a query parameter or in the body; the body's win.
          body=doc.json_or_form(doc.obj(**{name: doc.STR for name in doc.SERIES}, FormName=doc.STR, FormSubmission={
              "oneOf": [doc.obj(others=_ANSWER), doc.STR],
              "description": "The answers {field name: value}: a JSON object, or (in a form) its JSON text"})),
          body_required=False, query={**doc.SERIES, "FormName": "The report form's name",
                                      "FormSubmission": "The answers as JSON text, when not in the body"}))
async def api_submission_add(request: Request, me: User) -> Submission:
    params = await _params(request)
    project, series = await api_series(me, params, "api_add_form_submission")
    form = await forms.find_form(project, str(params.get("FormName") or ""))
    entry = params.get("FormSubmission")
    if isinstance(entry, str):
        try:
            entry = json.loads(entry)
        except ValueError as exc:
            raise Invalid(f"FormSubmission is not valid JSON ({exc}).", "invalid_json",
                          fields={"FormSubmission": "not valid JSON"}) from None
    if entry is None:
        raise Invalid("Pass FormSubmission: the answers as a JSON object {field name: value}.", "missing_value",
                      fields={"FormSubmission": "required"})
    saved = await forms.submit(series, project, me, form["name"], entry, client=client_of(request))
    return _submission_out(saved)


ROUTES = [series_forms, series_form_submit, manage_forms, new_form, form_assign, form_unassign, form_share, form_move,
          form_editor, form_draft, form_save, api_forms, api_form, api_submissions_list, api_submission_add]
