"""SQLite: the studies' search text rewritten with Unicode case folding (issue 12, noticed at scale).

SQLite's own lower() folds ASCII only, so a patient "MÜLLER" was kept as "mÜller" and a search for "müller"
(or "Müller") never found it. Lightbox's connections now give SQLite a lower() that folds as Python does
(portal/db.py, `fold`); the triggers of 2026-12-03T16:40 call lower() by name, so new writes fold at once and
this back-fill rewrites the text already kept. PostgreSQL's lower() already folds Unicode in a UTF-8 locale.
"""

import importlib.util
from pathlib import Path

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-05T08:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "SQLite search text with Unicode case folding"

_spec = importlib.util.spec_from_file_location("_search", Path(__file__).with_name("portal_2026_12_03t16_40_00_000000.py"))
_search = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_search)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def refill():
        from portal.tables import Study

        if Study._meta.db.engine_type == "sqlite":
            await Study.raw("DELETE FROM lb_study_text")
            await Study.raw(_search.FILL)

    async def nothing():  # the ASCII-folded text would only be worse; keep what is there
        return None

    manager.add_raw(refill)
    manager.add_raw_backwards(nothing)
    return manager
