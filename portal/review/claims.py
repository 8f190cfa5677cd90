"""Review claims: who is reviewing a series right now, so that two reviewers never get the same case.

Like MIQA's lock, but per series: opening a series from My queue claims it for CLAIM_SECONDS; the open page renews
the claim; deciding or leaving releases it; an abandoned claim simply expires. The queue skips series claimed by
others. A senior reviewer (or manager, or admin) may take a claim over. One row per series (unique), so two
reviewers racing for the same series cannot both win.
"""

from __future__ import annotations

import datetime as dt

from portal import audit, clock
from portal.auth import permissions
from portal.errors import Conflict, PermissionDenied
from portal.review.vocabulary import SENIOR_ROLES
from portal.tables import Project, ReviewClaim, Series, User

CLAIM_SECONDS = 120  # without a renewal the claim lapses this long after the page was last seen
RENEW_SECONDS = 30  # how often an open series page renews its claim


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def as_dict(row, user: User | None = None) -> dict:
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    return {"series_id": get("series"), "username": get("username"),
            "claimed": clock.iso(_aware(get("claimed_at"))), "expires": clock.iso(_aware(get("expires_at"))),
            "mine": bool(user and get("user") == user.id)}


async def holder(series: Series, user: User | None = None) -> dict | None:
    """The live claim on `series` (with "mine" for `user`), or None when nobody is reviewing it."""
    row = await ReviewClaim.select().where(
        (ReviewClaim.series == series.id) & (ReviewClaim.expires_at > clock.now())).first()
    return as_dict(row, user) if row else None


async def may_take_over(user: User, project: Project) -> bool:
    return user.is_admin or (await permissions.role_of(user, project)) in SENIOR_ROLES


async def claim(project: Project, series: Series, user: User, *, take_over: bool = False, client: str = "") -> dict:
    """Claim `series` for `user` (or renew the user's claim). Conflict when someone else holds a live claim, unless
    `take_over` by a senior; PermissionDenied when a non-senior asks to take over."""
    now = clock.now()
    until = now + dt.timedelta(seconds=CLAIM_SECONDS)
    mine = await ReviewClaim.update({ReviewClaim.expires_at: until}).where(
        (ReviewClaim.series == series.id) & (ReviewClaim.user == user.id)).returning(ReviewClaim.id)
    if mine:
        return await holder(series, user)
    fresh = {ReviewClaim.user: user.id, ReviewClaim.username: user.username, ReviewClaim.claimed_at: now,
             ReviewClaim.expires_at: until}
    # A lapsed claim is anyone's; a live one only a senior's who asks for it.
    stale = ReviewClaim.series == series.id
    if take_over:
        if not await may_take_over(user, project):
            raise PermissionDenied("Only a senior reviewer or a manager may take over a series someone is reviewing.",
                                   "take_over_not_allowed")
        before = await holder(series)
    else:
        stale &= ReviewClaim.expires_at <= now
        before = None
    taken = await ReviewClaim.update(fresh).where(stale).returning(ReviewClaim.id)
    if not taken:
        inserted = await ReviewClaim.insert(ReviewClaim(project=project.id, series=series.id, user=user.id,
                                                        username=user.username, claimed_at=now, expires_at=until)
                                            ).on_conflict(target=ReviewClaim.series, action="DO NOTHING"
                                                          ).returning(ReviewClaim.id)
        if not inserted:
            other = await holder(series, user)
            raise Conflict(f"{other['username'] if other else 'Someone'} is reviewing this series.",
                           "claimed_by_other")
    if before and not before["mine"]:
        await audit.record("claim_taken_over", user=user,
                           object=f"project:{project.name}/series:{series.series_instance_uid}",
                           detail={"from": before["username"]}, client=client)
    return await holder(series, user)


async def release(series: Series, user: User) -> bool:
    """Drop the user's claim on `series` (after a decision, or when the page is left). Others' claims stay."""
    gone = await ReviewClaim.delete().where(
        (ReviewClaim.series == series.id) & (ReviewClaim.user == user.id)).returning(ReviewClaim.id)
    return bool(gone)


async def claimed_by_others(project: Project, user: User) -> set[str]:
    """SeriesInstanceUIDs in `project` that someone else is reviewing now (the queue skips them)."""
    rows = await ReviewClaim.select(ReviewClaim.series.series_instance_uid.as_alias("uid")).where(
        (ReviewClaim.project == project.id) & (ReviewClaim.user != user.id) & (ReviewClaim.expires_at > clock.now()))
    return {r["uid"] for r in rows}
