"""Piccolo app registration: the portal's tables and where their migrations live."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from portal.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="portal",
    # Migrations sit at the repository root (migrations/portal/), one folder per app.
    migrations_folder_path=str(Path(__file__).resolve().parent.parent / "migrations" / "portal"),
    table_classes=TABLES,
    migration_dependencies=[],
    commands=[],
)
