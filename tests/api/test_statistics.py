"""db.refresh_statistics(), run after a bulk load: the planner's statistics are really gathered (and on
PostgreSQL the tables vacuumed, so index-only scans skip the rows' pages), on both databases."""

from __future__ import annotations

from portal import db
from portal.tables import Study
from tests.helpers import make_project


async def test_refresh_statistics_gathers_the_planner_statistics(app):
    await make_project("stats", {})
    postgres = Study._meta.db.engine_type == "postgres"
    if not postgres:  # a new database has no statistics table until the first ANALYZE
        assert not await Study.raw("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'")
    await db.refresh_statistics()
    if postgres:  # last_vacuum: a manual VACUUM only (autovacuum has its own column)
        rows = await Study.raw("SELECT last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname = 'lb_project'")
        assert rows and rows[0]["last_vacuum"] is not None and rows[0]["last_analyze"] is not None
    else:
        rows = await Study.raw("SELECT tbl FROM sqlite_stat1")
        assert rows, "PRAGMA optimize analysed no table"
