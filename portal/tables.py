"""Piccolo tables: the persistent shape of the domain (see DESIGN.md, "Domain model")."""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    Boolean,
    ForeignKey,
    OnDelete,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class User(Table, tablename="lb_user"):
    id: Serial
    username = Varchar(length=150, unique=True, index=True)
    email = Varchar(length=254, default="")
    password_hash = Text(default="")
    is_admin = Boolean(default=False)
    is_active = Boolean(default=True)
    created_at = Timestamptz()
    last_login = Timestamptz(null=True, default=None)


class ApiToken(Table, tablename="lb_api_token"):
    """An API token; only its SHA-256 is stored, the key is shown once when issued."""

    id: Serial
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    key_hash = Varchar(length=64, unique=True, index=True)
    prefix = Varchar(length=8)
    name = Varchar(length=100, default="")
    created_at = Timestamptz()
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class Project(Table, tablename="lb_project"):
    id: Serial
    name = Varchar(length=64, unique=True, index=True)
    description = Text(default="")
    settings = JSON(default="{}")
    created_at = Timestamptz()


class Archive(Table, tablename="lb_archive"):
    id: Serial
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    name = Varchar(length=64)
    created_at = Timestamptz()


class Membership(Table, tablename="lb_membership"):
    id: Serial
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    role = Varchar(length=32)
    created_at = Timestamptz()


class AuditEvent(Table, tablename="lb_audit_event"):
    id: Serial
    user = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    username = Varchar(length=150, default="", index=True)
    action = Varchar(length=64, index=True)
    object = Text(default="")
    detail = JSON(default="{}")
    client = Varchar(length=64, default="")
    created_at = Timestamptz(index=True)


TABLES: list[type[Table]] = [User, ApiToken, Project, Archive, Membership, AuditEvent]
