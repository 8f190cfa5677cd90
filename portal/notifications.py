"""Notifications in the portal: the bell's flags and alerts addressed to a user, and the daily digest
for those who chose it over immediate mail."""

from __future__ import annotations

from portal import audit, clock, db
from portal.errors import Invalid
from portal.tables import Notification, User

IMMEDIATE, DIGEST = "immediate", "digest"
PREFERENCES = (IMMEDIATE, DIGEST)


async def notify(usernames: list[str], kind: str, *, project_id: int | None, series_id: int | None, title: str,
                 text: str = "", link: str = "", digest: bool = False) -> set[str]:
    """Add a notification for each user; returns the usernames who want it mailed now (the rest get the digest).
    With `digest`, everyone gets it in the digest (nothing to mail now: an AI alert about an old acquisition)."""
    if not usernames:
        return set()
    users = await User.objects().where(User.username.is_in(list(usernames)))
    now, immediate = clock.now(), set()
    for u in users:
        later = digest or u.notify == DIGEST
        if not later:
            immediate.add(u.username)
        await Notification.insert(Notification(user=u.id, kind=kind, project=project_id, series=series_id,
                                               title=title[:300], text=text, link=link[:500], created_at=now,
                                               digest_due=later))
    return immediate


async def unread_count(user: User) -> int:
    return await Notification.count().where((Notification.user == user.id) & Notification.read_at.is_null())


async def for_user(user: User, limit: int = 50) -> list[dict]:
    return await Notification.select().where(Notification.user == user.id).order_by(
        Notification.id, ascending=False).limit(limit)


async def mark_read(user: User, notification_id: int | None = None) -> None:
    where = (Notification.user == user.id) & Notification.read_at.is_null()
    if notification_id is not None:
        where &= Notification.id == notification_id
    await Notification.update({Notification.read_at: clock.now()}).where(where)


async def set_preference(user: User, preference: str, *, client: str = "") -> None:
    if preference not in PREFERENCES:
        raise Invalid(f"Choose one of: {', '.join(PREFERENCES)}.", "invalid_value")
    user.notify = preference
    await user.save([User.notify])
    await audit.record("notification_preference", user=user, object=f"user:{user.username}",
                       detail={"notify": preference}, client=client)


async def send_digests() -> int:
    """Mail each user their notifications waiting for the digest, in one message; returns how many were sent."""
    from portal.mail import compose, outbox

    user_ids = await Notification.select(Notification.user).where(Notification.digest_due == True).distinct(  # noqa: E712
    ).output(as_list=True)
    sent = 0
    for user_id in user_ids:
        user = await User.objects().get(User.id == user_id)
        rows = await Notification.select().where((Notification.user == user_id) & (Notification.digest_due == True)  # noqa: E712
                                                 ).order_by(Notification.id)
        # The digest's outbox row and the "no longer due" mark commit together: a failure leaves both for tomorrow.
        async with db.write_transaction():
            await Notification.update({Notification.digest_due: False}).where(
                Notification.id.is_in([r["id"] for r in rows]))
            if user is None or not user.is_active or not user.email:
                continue
            subject, body = compose.digest(user, rows)
            message = await outbox.enqueue("digest", [outbox.address(user)], subject, body, schedule=False,
                                           object=f"user:{user.username}")
        outbox.schedule_delivery(message.id)
        sent += 1
    return sent
