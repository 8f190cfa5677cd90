"""Audit trail: who did what to which object, when, and from where."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

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


async def search(*, username: str = "", action: str = "", object: str = "", since: dt.datetime | None = None,
                 until: dt.datetime | None = None, limit: int | None = 500) -> list[dict]:
    """Events matching every given filter, newest first (`object` matches a part of the object)."""
    query = AuditEvent.select().order_by(AuditEvent.created_at, ascending=False).order_by(AuditEvent.id, ascending=False)
    if username:
        query = query.where(AuditEvent.username == username)
    if action:
        query = query.where(AuditEvent.action == action)
    if object:
        pattern = f"%{object}%"  # SQLite's LIKE is already case-insensitive (for ASCII); it has no ILIKE
        column = AuditEvent.object
        query = query.where(column.like(pattern) if AuditEvent._meta.db.engine_type == "sqlite" else column.ilike(pattern))
    if since is not None:
        query = query.where(AuditEvent.created_at >= since)
    if until is not None:
        query = query.where(AuditEvent.created_at < until)
    if limit:
        query = query.limit(limit)
    rows = await query
    for r in rows:
        if isinstance(r["detail"], str):
            r["detail"] = json.loads(r["detail"] or "{}")
    return rows


async def actions() -> list[str]:
    """Every action recorded so far (for the filter's choices)."""
    return sorted(await AuditEvent.select(AuditEvent.action).distinct().output(as_list=True))


def _cell(value: str) -> str:
    # A spreadsheet would run a cell starting with = + - @ as a formula: usernames and objects come from users.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time", "user", "action", "object", "client", "detail"])
    for r in rows:
        writer.writerow([clock.iso(r["created_at"]), _cell(r["username"]), r["action"], _cell(r["object"]),
                         r["client"], _cell(json.dumps(r["detail"], sort_keys=True, default=str))])
    return out.getvalue()
