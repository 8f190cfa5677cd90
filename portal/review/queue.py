""""My queue": the series that need the user's tier, in the order the project is walked.

The queue's order: the user's tiers in turn (a senior's own tier first), and within a tier the walk order
of `archive.navigation`. "Next" is found with keyset steps along that walk, never by listing the queue.
"""

from __future__ import annotations

from portal.archive import navigation
from portal.review.decisions import NEEDS_SENIOR, UNREVIEWED
from portal.review.vocabulary import SENIOR_ROLES
from portal.tables import Project


def statuses_for(role: str) -> tuple[str, ...]:
    """Seniors resolve what juniors could not, then help with the rest; reviewers take fresh series."""
    return (NEEDS_SENIOR, UNREVIEWED) if role in SENIOR_ROLES else (UNREVIEWED,)


def _condition(project: Project, role: str, skip=frozenset()) -> tuple[str, list] | None:
    """Which series of a tier may be handed out (SQL on the series `se`, with its args); None: all of them.
    `skip` holds a handful of UIDs (the claims of the moment), so a plain list is fine."""
    if not skip:
        return None
    return f"se.series_instance_uid NOT IN ({', '.join('{}' for _ in skip)})", sorted(skip)


async def next_in_queue(project: Project, role: str, after: str | None = None,
                        skip: frozenset[str] | set[str] = frozenset()) -> str | None:
    """The series to open next: the first one of the queue after `after`, wrapping round to the queue's start.

    When `after` is no longer in the queue (it has just been decided), the walk goes on from where it stood,
    within the first tier it could belong to. Series in `skip` (claims: review/claims.py, the series other
    reviewers are on now) are never handed out.
    """
    tiers = statuses_for(role)
    condition = _condition(project, role, skip)
    place = await navigation.place_of(project, after) if after else None
    rank = tiers.index(place.review_status) if place and place.review_status in tiers else 0

    async def first(status: str, start: navigation.Place | None) -> str | None:
        return await navigation.step(project, start, statuses=(status,), condition=condition)

    # From `after` to the end of its tier, then the later tiers, then round to the tiers before and to
    # the start of its own tier (`after` itself is never "next").
    found = await first(tiers[rank], place)
    for status in tiers[rank + 1:] + tiers[:rank]:
        found = found or await first(status, None)
    if found is None and place is not None:
        found = await first(tiers[rank], None)
    return None if found == after else found
