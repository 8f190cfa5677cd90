"""The outbox: every message is written here first, then delivered by a queue task with retries and back-off.

States: pending (waiting or between attempts) → sent | failed (gave up after MAX_ATTEMPTS; an admin
may resend). A delivery first *claims* the row (moves its next attempt past a lease), so the task and
the periodic sweep never send one message twice at once, and a worker that dies mid-send only delays it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formataddr

from portal import audit, clock, settings as settings_mod
from portal.errors import Conflict, Invalid, NotFound
from portal.mail import smtp
from portal.tables import EmailOutbox, User

log = logging.getLogger("lightbox.mail")

PENDING, SENT, FAILED = "pending", "sent", "failed"
STATES = (PENDING, SENT, FAILED)
MAX_ATTEMPTS = 30  # with the back-off below: about a day of retrying before a message is marked failed
BACKOFF_S = 30.0  # first retry after this, doubling up to MAX_BACKOFF_S
MAX_BACKOFF_S = 3600.0
LEASE = dt.timedelta(minutes=5)  # a claimed message is tried again after this if its worker died

# Called with the outbox id after a message is written (portal.tasks.mail schedules its delivery).
enqueued_hooks: list[Callable[[int], None]] = []


def _list(value) -> list:
    value = json.loads(value) if isinstance(value, str) else value
    return list(value or [])


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones."""
    return min(BACKOFF_S * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)


async def enqueue(kind: str, to: list[str], subject: str, body: str, *, cc: list[str] | None = None,
                  html: str = "", attachments: list[dict] | None = None, reply_to: str = "",
                  sender: User | None = None, object: str = "", schedule: bool = True) -> EmailOutbox:
    """Write a message to the outbox, then schedule its delivery (`schedule=False`: the caller does, with
    `schedule_delivery`, once its transaction has committed, so that the worker finds the row).

    `attachments`: [{"filename", "media_type", "data": bytes, "cid": optional content id for inline use}].
    """
    to = [a for a in to if a]
    cc = [a for a in (cc or []) if a and a not in to]
    if not to and not cc:
        raise Invalid("A message needs at least one recipient.", "no_recipients")
    from portal.archive import storage

    stored = []
    for a in attachments or []:
        key = f"mail/{uuid.uuid4().hex}"
        storage().put_fileobj(io.BytesIO(a["data"]), key)
        stored.append({"filename": a["filename"], "media_type": a["media_type"], "file_key": key,
                       "cid": a.get("cid", "")})
    now = clock.now()
    row = EmailOutbox(kind=kind, sender=sender.id if sender else None, sender_name=sender.username if sender else "",
                      reply_to=reply_to, recipients=to, cc=cc, subject=subject[:300], body=body, html=html,
                      attachments=stored, object=object, state=PENDING, attempts=0, next_attempt_at=now,
                      created_at=now)
    await row.save()
    if schedule:
        schedule_delivery(row.id)
    return row


def schedule_delivery(outbox_id: int) -> None:
    for hook in enqueued_hooks:
        try:
            hook(outbox_id)
        except Exception:  # the periodic sweep delivers it even if the queue is unreachable now
            log.exception("could not schedule delivery of message %s", outbox_id)


async def claim(outbox_id: int) -> dict | None:
    """The message if it is pending and due, leased to this caller; None when someone else has it or it is done."""
    now = clock.now()
    rows = await EmailOutbox.update({EmailOutbox.next_attempt_at: now + LEASE}).where(
        (EmailOutbox.id == outbox_id) & (EmailOutbox.state == PENDING) & (EmailOutbox.next_attempt_at <= now)
    ).returning(EmailOutbox.id)
    if not rows:
        return None
    return await EmailOutbox.select().where(EmailOutbox.id == outbox_id).first()


def message_of(row: dict) -> EmailMessage:
    """The MIME message of an outbox row: text, HTML with inline images (multipart/related), attachments."""
    from portal.archive import storage

    msg = EmailMessage()
    msg["From"] = settings_mod.current().sender
    if _list(row["recipients"]):
        msg["To"] = ", ".join(_list(row["recipients"]))
    if _list(row["cc"]):
        msg["Cc"] = ", ".join(_list(row["cc"]))
    if row["reply_to"]:
        msg["Reply-To"] = row["reply_to"]
    msg["Subject"] = row["subject"]
    msg["Message-ID"] = f"<lightbox-{row['id']}-{uuid.uuid4().hex[:12]}@lightbox>"
    msg.set_content(row["body"] or "")
    attachments = _list(row["attachments"])
    html_part = None
    if row["html"]:
        msg.add_alternative(row["html"], subtype="html")
        html_part = msg.get_payload()[-1]
    for a in attachments:
        data = storage().read_bytes(a["file_key"])
        maintype, _, subtype = a["media_type"].partition("/")
        if a.get("cid") and html_part is not None:
            html_part.add_related(data, maintype, subtype, cid=f"<{a['cid']}>", filename=a["filename"],
                                  disposition="inline")
        else:
            msg.add_attachment(data, maintype, subtype, filename=a["filename"])
    return msg


def send(row: dict) -> tuple[str, dict]:
    """Deliver one claimed row (blocking): the transport used ("smtp", or "log" when none is set) and the
    addresses the SMTP server refused while taking the message for the others."""
    url = settings_mod.current().smtp_url
    message = message_of(row)
    if not url:
        log.info("mail (no LIGHTBOX_SMTP_URL; kept in the outbox) #%s to %s cc %s: %s\n%s", row["id"],
                 message["To"], message["Cc"] or "", row["subject"], row["body"])
        return "log", {}
    return "smtp", smtp.send(smtp.parse(url), message)


async def mark_sent(outbox_id: int, transport: str, refused: dict | None = None) -> None:
    now = clock.now()
    note = ("Refused by the SMTP server: " + "; ".join(f"{a} ({c} {r})" for a, (c, r) in refused.items())
            if refused else "")
    await EmailOutbox.update({EmailOutbox.state: SENT, EmailOutbox.sent_at: now, EmailOutbox.transport: transport,
                              EmailOutbox.attempts: EmailOutbox.attempts + 1, EmailOutbox.last_error: note[:2000]}).where(
        EmailOutbox.id == outbox_id)
    row = await EmailOutbox.select().where(EmailOutbox.id == outbox_id).first()
    await audit.record("mail_sent", username=row["sender_name"], object=row["object"] or f"mail:{outbox_id}",
                       detail={"outbox": outbox_id, "kind": row["kind"], "to": _list(row["recipients"]),
                               "cc": _list(row["cc"]), "subject": row["subject"], "transport": transport,
                               **({"refused": sorted(refused)} if refused else {})})


async def mark_failed(outbox_id: int, error: str) -> float | None:
    """Record a failed attempt; the delay before the next one, or None when the message has failed for good."""
    row = await EmailOutbox.objects().get(EmailOutbox.id == outbox_id)
    if row is None:
        return None
    attempts = row.attempts + 1
    give_up = attempts >= MAX_ATTEMPTS
    delay = backoff(attempts)
    await EmailOutbox.update({
        EmailOutbox.attempts: attempts, EmailOutbox.last_error: error[:2000],
        EmailOutbox.state: FAILED if give_up else PENDING,
        EmailOutbox.next_attempt_at: clock.now() + dt.timedelta(seconds=delay),
    }).where(EmailOutbox.id == outbox_id)
    log.warning("mail #%s attempt %s failed%s: %s", outbox_id, attempts, " (giving up)" if give_up else "", error)
    if give_up:
        await audit.record("mail_failed", username=row.sender_name, object=row.object or f"mail:{outbox_id}",
                           detail={"outbox": outbox_id, "error": error[:500]})
    return None if give_up else delay


async def due(limit: int = 200) -> list[int]:
    """Pending messages whose next attempt is due (the periodic sweep re-schedules them)."""
    return await EmailOutbox.select(EmailOutbox.id).where(
        (EmailOutbox.state == PENDING) & (EmailOutbox.next_attempt_at <= clock.now())
    ).order_by(EmailOutbox.id).limit(limit).output(as_list=True)


async def resend(outbox_id: int, *, by: User | None = None, client: str = "") -> None:
    """Put a message (sent or failed) back in the queue for a fresh round of attempts. A pending one is
    already queued (a worker may be sending it right now): resending it could send it twice."""
    row = await EmailOutbox.objects().get(EmailOutbox.id == outbox_id)
    if row is None:
        raise NotFound(f"No message #{outbox_id} in the outbox.", "message_not_found")
    changed = await EmailOutbox.update({EmailOutbox.state: PENDING, EmailOutbox.attempts: 0,
                                        EmailOutbox.last_error: "", EmailOutbox.next_attempt_at: clock.now()}).where(
        (EmailOutbox.id == outbox_id) & (EmailOutbox.state != PENDING)).returning(EmailOutbox.id)
    if not changed:
        raise Conflict(f"Message #{outbox_id} is still pending: it will be sent (or retried) without a resend.",
                       "message_pending")
    await audit.record("mail_resent", user=by, object=row.object or f"mail:{outbox_id}",
                       detail={"outbox": outbox_id}, client=client)
    schedule_delivery(outbox_id)


async def listing(state: str | None = None, limit: int = 200) -> list[dict]:
    query = EmailOutbox.select().order_by(EmailOutbox.id, ascending=False).limit(limit)
    if state in STATES:
        query = query.where(EmailOutbox.state == state)
    rows = await query
    for r in rows:
        r["recipients"], r["cc"], r["attachments"] = _list(r["recipients"]), _list(r["cc"]), _list(r["attachments"])
    return rows


async def counts() -> dict[str, int]:
    return {s: await EmailOutbox.count().where(EmailOutbox.state == s) for s in STATES}


def address(user: User | dict) -> str:
    """`Name <email>` of a user (or "" when they have no email)."""
    get = user.get if isinstance(user, dict) else lambda k: getattr(user, k)
    return formataddr((get("username"), get("email"))) if get("email") else ""
