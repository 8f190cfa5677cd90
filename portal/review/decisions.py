"""Quality decisions: append-only history per series, tiers enforced, review status kept up to date."""

from __future__ import annotations

import datetime as dt
import json
import math

from portal import audit, clock, projects
from portal.auth import permissions
from portal.errors import Conflict, Invalid, NotFound, PermissionDenied
from portal.review.vocabulary import ABSENT, PRESENT, SENIOR_ROLES, UNDECIDED, allowed_codes
from portal.tables import Decision, Project, Series, User

MAX_NOTE = 5000
# How long the maker may take a decision back (the page offers it for less, so a slow network still gets there).
UNDO_SECONDS = 20
UNREVIEWED, NEEDS_SENIOR, COMPLETE = "unreviewed", "needs_senior_review", "complete"
REVIEW_STATUSES = (UNREVIEWED, NEEDS_SENIOR, COMPLETE)  # a series' way through review, in order
# Series Lightbox made itself (AI results as DICOM: SR, secondary capture, PDF): nobody's queue, no review.
DERIVED = "derived"


def status_after(code: str, role: str) -> str:
    """Complete when the latest decision is U or was made by a senior reviewer."""
    return COMPLETE if code == "U" or role in SENIOR_ROLES else NEEDS_SENIOR


async def role_for_decision(user: User, project: Project) -> str:
    return "admin" if user.is_admin else (await permissions.role_of(user, project) or "")


def clean_artifacts(artifacts: dict[str, int] | None, known: list[str]) -> dict[str, int]:
    """{name: 1 present | 0 absent | -1 undecided}, every name from the project's list."""
    cleaned = {}
    for name, value in (artifacts or {}).items():
        if name not in known:
            raise Invalid(f"Unknown artifact '{name}'. This project's artifacts: {', '.join(known)}.",
                          "unknown_artifact")
        if value not in (PRESENT, ABSENT, UNDECIDED):
            raise Invalid(f"Artifact '{name}' must be 1 (present), 0 (absent) or -1 (undecided).", "invalid_value")
        if value != UNDECIDED:
            cleaned[name] = value
    return cleaned


def clean_location(location) -> dict | None:
    if location in (None, "", {}):
        return None
    if not isinstance(location, dict) or set(location) - {"x", "y", "z"}:
        raise Invalid("location must be an object with numbers x, y and z.", "invalid_location")
    out = {}
    for axis in ("x", "y", "z"):
        value = location.get(axis)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Invalid(f"location.{axis} must be a number.", "invalid_location")
        out[axis] = float(value)
    return out


async def record(project: Project, series: Series, user: User, code: str, *, note: str = "",
                 artifacts: dict[str, int] | None = None, location: dict | None = None,
                 client: str = "") -> dict:
    """Append a decision (after checking the code, the caller's tier and the artifacts)."""
    conf = projects.settings_of(project)
    vocabulary = conf["decisions"]
    if code not in [d["code"] for d in vocabulary]:
        raise Invalid(f"Unknown decision '{code}'. Choose one of: {', '.join(d['code'] for d in vocabulary)}.",
                      "unknown_decision")
    if not await permissions.may(user, "review_series", project):
        raise PermissionDenied("Your role in this project does not allow decisions.", "permission_denied")
    role = await role_for_decision(user, project)
    if code not in allowed_codes(vocabulary, role, user.is_admin):
        raise PermissionDenied(f"As {role or 'a non-member'} you may not give '{code}'; ask a senior reviewer.",
                               "decision_not_allowed")
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise Invalid(f"The note is longer than {MAX_NOTE} characters.", "note_too_long")
    row = Decision(project=project.id, series=series.id, user=user.id, username=user.username, role=role,
                   code=code, note=note, artifacts=clean_artifacts(artifacts, conf["artifacts"]),
                   location=clean_location(location) or {}, created_at=clock.now())
    await row.save()
    await Series.update({Series.review_status: status_after(code, role)}).where(Series.id == series.id)
    await audit.record("decision", user=user, object=f"project:{project.name}/series:{series.series_instance_uid}",
                       detail={"code": code}, client=client)
    return as_dict(row, series.series_instance_uid)


async def undo(project: Project, series: Series, user: User, decision_id: int, *, client: str = "") -> dict:
    """Take back the caller's own latest decision on `series` within UNDO_SECONDS (an accidental key press).

    The history stays append-only after that: later changes of mind are new decisions. The undo is audited."""
    latest = await Decision.objects().where(Decision.series == series.id).order_by(
        Decision.created_at, ascending=False).order_by(Decision.id, ascending=False).first()
    if latest is None or latest.id != decision_id:
        raise Conflict("Only the latest decision on a series can be undone; record a new decision instead.",
                       "not_latest_decision")
    if latest.user != user.id:
        raise PermissionDenied("Only the reviewer who made a decision may undo it.", "not_your_decision")
    created = latest.created_at if latest.created_at.tzinfo else latest.created_at.replace(tzinfo=dt.timezone.utc)
    if (clock.now() - created).total_seconds() > UNDO_SECONDS:
        raise Conflict(f"A decision can be undone only within {UNDO_SECONDS} seconds; record a new decision instead.",
                       "undo_too_late")
    await Decision.delete().where(Decision.id == latest.id)
    before = await Decision.objects().where(Decision.series == series.id).order_by(
        Decision.created_at, ascending=False).order_by(Decision.id, ascending=False).first()
    status = status_after(before.code, before.role) if before else UNREVIEWED
    await Series.update({Series.review_status: status}).where(Series.id == series.id)
    await audit.record("decision_undone", user=user,
                       object=f"project:{project.name}/series:{series.series_instance_uid}",
                       detail={"code": latest.code, "decision": latest.id}, client=client)
    return as_dict(latest, series.series_instance_uid)


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def as_dict(row, series_uid: str) -> dict:
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    artifacts = _json(get("artifacts")) or {}
    return {
        "id": get("id"), "series": series_uid, "decision": get("code"), "note": get("note"),
        "creator": get("username"), "role": get("role"), "created": clock.iso(get("created_at")),
        "artifacts": {"present": sorted(k for k, v in artifacts.items() if v == PRESENT),
                      "absent": sorted(k for k, v in artifacts.items() if v == ABSENT)},
        "location": _json(get("location")) or None,
    }


async def history(series: Series) -> list[dict]:
    """Every decision on `series`, newest first."""
    rows = await Decision.select().where(Decision.series == series.id).order_by(
        Decision.created_at, ascending=False).order_by(Decision.id, ascending=False)
    return [as_dict(r, series.series_instance_uid) for r in rows]


async def visible_series(user: User, series_uid: str, project_name: str | None = None) -> tuple[Project, Series]:
    """The series with this UID in a project the user can see (`project_name` picks one when several hold it)."""
    rows = await Series.objects().where(Series.series_instance_uid == series_uid)
    found = []
    for series in rows:
        project = await Project.objects().get(Project.id == series.project)
        if project_name and project.name != project_name:
            continue
        if "view_project" in await permissions.permissions(user, project):
            found.append((project, series))
    if not found:
        raise NotFound(f"No series {series_uid} that you can see.", "series_not_found")
    if len(found) > 1:
        raise Invalid("This series is in several of your projects; add ?Project=NAME.", "multiple_objects_found")
    return found[0]
