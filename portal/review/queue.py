""""My queue": the series that need the user's tier, in the order the project is walked."""

from __future__ import annotations

from portal.archive import navigation
from portal.review.decisions import NEEDS_SENIOR, UNREVIEWED
from portal.review.vocabulary import SENIOR_ROLES
from portal.tables import Project, Series


def statuses_for(role: str) -> tuple[str, ...]:
    """Seniors resolve what juniors could not, then help with the rest; reviewers take fresh series."""
    return (NEEDS_SENIOR, UNREVIEWED) if role in SENIOR_ROLES else (UNREVIEWED,)


async def queue(project: Project, role: str) -> list[str]:
    wanted = statuses_for(role)
    rows = await Series.select(Series.series_instance_uid, Series.review_status).where(
        (Series.project == project.id) & Series.review_status.is_in(list(wanted)))
    status = {r["series_instance_uid"]: r["review_status"] for r in rows}
    order = [uid for uid in await navigation.ordered_series_uids(project) if uid in status]
    # Within the walk order, the first wanted status comes first.
    return sorted(order, key=lambda uid: wanted.index(status[uid]))


async def next_in_queue(project: Project, role: str, after: str | None = None,
                        skip: frozenset[str] | set[str] = frozenset()) -> str | None:
    uids = await queue(project, role)
    # Claims (review/claims.py): `skip` holds the series other reviewers are on now.
    uids = [uid for uid in uids if uid not in skip or uid == after]
    if after in uids:
        i = uids.index(after)
        uids = uids[i + 1:] + uids[:i]
    return uids[0] if uids else None
