"""Flag a series for discussion: mail chosen colleagues (members and configured addresses only) with the link,
identifiers, decision history, the note and a screenshot; keep the flag for the badge and the history."""

from __future__ import annotations

import base64
import binascii
import json

from portal import audit, clock, notifications
from portal.auth import permissions
from portal.errors import Invalid, PermissionDenied
from portal.mail import compose, outbox, recipients
from portal.review import decisions
from portal.tables import Flag, Project, Series, Study, User

MAX_NOTE = 5000
MAX_SCREENSHOT = 10 * 1024 * 1024
_PNG = b"\x89PNG\r\n\x1a\n"


def screenshot_from(value) -> bytes | None:
    """PNG bytes from a data URL or base64 text (what the viewer's screenshot() gives); None when empty."""
    if not value:
        return None
    if not isinstance(value, str):
        raise Invalid("screenshot must be a PNG data URL or base64 text.", "invalid_screenshot")
    _, _, b64 = value.partition(",") if value.startswith("data:") else ("", "", value)
    try:
        data = base64.b64decode(b64, validate=False)
    except (binascii.Error, ValueError):
        raise Invalid("screenshot is not valid base64.", "invalid_screenshot")
    if not data.startswith(_PNG):
        raise Invalid("screenshot must be a PNG image.", "invalid_screenshot")
    if len(data) > MAX_SCREENSHOT:
        raise Invalid("screenshot is larger than 10 MB.", "invalid_screenshot")
    return data


async def flag(project: Project, series: Series, sender: User, *, to=None, cc=None, note: str = "",
               subject: str = "", screenshot: bytes | None = None, use_defaults: bool = True,
               client: str = "") -> dict:
    """Flag `series` and queue the mail. Recipients are checked before anything is written; with none given, the
    project's default recipients are used (`use_defaults`; the portal's form shows them prefilled instead)."""
    if not await permissions.may(sender, "flag_series", project):
        raise PermissionDenied("Your role in this project does not allow flagging a case.", "permission_denied")
    if not isinstance(note, str) or not isinstance(subject, str):
        raise Invalid("note (body) and subject must be text.", "invalid_value")
    note, subject = note.strip(), " ".join(subject.split())
    if len(note) > MAX_NOTE:
        raise Invalid(f"The note is longer than {MAX_NOTE} characters.", "note_too_long")
    wanted_to, wanted_cc = recipients.entries(to), recipients.entries(cc)
    if not wanted_to and not wanted_cc and use_defaults:
        wanted_to = recipients.defaults(project)
    to_list = await recipients.resolve(project, wanted_to)
    cc_list = [r for r in await recipients.resolve(project, wanted_cc) if r not in to_list]
    if not to_list and not cc_list:
        raise Invalid("Choose at least one recipient.", "no_recipients",
                      fields={"to": "required"})
    study = await Study.objects().get(Study.id == series.study)
    subject = compose.one_line(subject) or compose.flag_subject(project, study, series)
    history = await decisions.history(series)
    cid = "screenshot@lightbox" if screenshot else ""
    text, html = compose.flag(project, study, series, sender=sender, note=note, history=history, screenshot_cid=cid)
    link = f"/projects/{project.name}/series/{series.series_instance_uid}"
    # The flag first: mail must never go out for a flag that was not recorded (no badge, no audit).
    row = Flag(project=project.id, series=series.id, user=sender.id, username=sender.username,
               recipients=[r["address"] for r in to_list], cc=[r["address"] for r in cc_list], subject=subject,
               note=note, outbox=None, created_at=clock.now())
    await row.save()
    members = [r["username"] for r in (*to_list, *cc_list) if r["username"]]
    immediate = await notifications.notify(members, "flag", project_id=project.id, series_id=series.id,
                                           title=f"{sender.username}: {subject}", text=note, link=link)
    # Members who chose the daily digest get it there instead of a message now.
    keep = lambda r: r["username"] is None or r["username"] in immediate  # noqa: E731
    mail_to, mail_cc = [r["address"] for r in to_list if keep(r)], [r["address"] for r in cc_list if keep(r)]
    obj = f"project:{project.name}/series:{series.series_instance_uid}"
    message = None
    if mail_to or mail_cc:
        attachments = [{"filename": "screenshot.png", "media_type": "image/png", "data": screenshot, "cid": cid}] \
            if screenshot else []
        message = await outbox.enqueue("flag", mail_to or mail_cc, subject, text, cc=mail_cc if mail_to else [],
                                       html=html, attachments=attachments,
                                       reply_to=outbox.address(sender), sender=sender, object=obj)
    if message:
        row.outbox = message.id
        await row.save([Flag.outbox])
    await audit.record("series_flagged", user=sender, object=obj, client=client,
                       detail={"to": row.recipients, "cc": row.cc, "outbox": message.id if message else None})
    return as_dict(row.to_dict(), series.series_instance_uid)


def _list(value) -> list:
    return json.loads(value) if isinstance(value, str) else list(value or [])


def as_dict(row: dict, series_uid: str) -> dict:
    return {"id": row["id"], "series": series_uid, "sender": row["username"], "to": _list(row["recipients"]),
            "cc": _list(row["cc"]), "subject": row["subject"], "note": row["note"],
            "outbox": row["outbox"], "created": clock.iso(row["created_at"])}


async def history(series: Series) -> list[dict]:
    """Flags of a series, newest first."""
    rows = await Flag.select().where(Flag.series == series.id).order_by(Flag.id, ascending=False)
    return [as_dict(r, series.series_instance_uid) for r in rows]


async def flagged_ids(series_ids: list[int]) -> set[int]:
    if not series_ids:
        return set()
    return set(await Flag.select(Flag.series).where(Flag.series.is_in(series_ids)).distinct().output(as_list=True))
