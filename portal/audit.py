"""Audit trail: who did what to which object, when, and from where."""

from __future__ import annotations

import datetime as dt

from portal import clock
from portal.tables import AuditEvent, User


async def record(action: str, *, user: User | None = None, username: str = "", object: str = "",
                 detail: dict | None = None, client: str = "") -> None:
    await AuditEvent.insert(
        AuditEvent(
            user=user.id if user else None,
            username=(user.username if user else username)[:150],
            action=action,
            object=object,
            detail=detail or {},
            client=(client or "")[:64],
            created_at=clock.now(),
        )
    )


async def count_since(action: str, since: dt.datetime, *, username: str | None = None,
                      client: str | None = None) -> int:
    query = AuditEvent.count().where(AuditEvent.action == action, AuditEvent.created_at >= since)
    if username is not None:
        query = query.where(AuditEvent.username == username)
    if client is not None:
        query = query.where(AuditEvent.client == client)
    return await query


async def recent(limit: int = 100, *, action: str | None = None, username: str | None = None) -> list[dict]:
    query = AuditEvent.select().order_by(AuditEvent.created_at, ascending=False).limit(limit)
    if action:
        query = query.where(AuditEvent.action == action)
    if username:
        query = query.where(AuditEvent.username == username)
    return await query
