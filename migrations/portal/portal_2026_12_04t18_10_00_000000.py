"""PostgreSQL: new series and new decisions summarised once per statement, not once per row (issue 12:
bulk loads and imports).

Two row triggers ran for every inserted series: lb_series_summary recounted its study (and wrote the study
row) and bumped three tallies; lb_series_search rewrote the study row again for its search text. A COPY of
300k series therefore wrote 600k study-row versions (each through the study's indexes, the trigram GIN
among them) and 900k tally upserts: about 12 minutes. One statement trigger with the inserted rows as a
transition table does the same once per statement: each touched study locked (in id order), recounted and
given its search text in one write, and each tally bumped once per (project, key). A single-series ingest
costs what it did. New decisions likewise: the per-reviewer and per-day tallies bumped once per key, and each
decided series' reader count and latest decision recomputed once. Updates and deletes keep their row triggers (a cascade deletes a study's series at once,
which the row triggers already handle); SQLite keeps its row triggers (it has no statement triggers).
"""

import importlib.util
from pathlib import Path

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-04T18:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "lb_series and lb_decision inserts summarised per statement (PostgreSQL)"


def _earlier(name: str):
    """An earlier migration of this folder, for the statements it defined (one definition of each)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_summary = _earlier("portal_2026_12_03t11_31_00_000000")
_search = _earlier("portal_2026_12_03t16_40_00_000000")

TALLIES = [f"""INSERT INTO lb_tally (project, name, key, n)
        SELECT a.project, '{name}', a.{col}, COUNT(*) FROM added a
        WHERE a.{col} IS NOT NULL AND EXISTS (SELECT 1 FROM lb_project WHERE id = a.project)
        GROUP BY a.project, a.{col}
        ON CONFLICT (project, name, key) DO UPDATE SET n = lb_tally.n + excluded.n"""
           for name, col in (("status", "review_status"), ("decision", "decision_code"),
                             ("label", "decision_label"))]

# The recount of the 2026-12-03T11:31 migration and the search text of 2026-12-03T16:40, in one write.
STUDIES = (f"{_summary.RECOUNT}, search_text = {_search.text_of('postgres', 'lb_study', 'lb_study.patient')} "
           f"WHERE id IN (SELECT DISTINCT study FROM added)")

FUNCTION = f"""CREATE OR REPLACE FUNCTION lb_series_added() RETURNS trigger AS $$
    BEGIN
        -- Locked first, in one order: the recount's own snapshot then sees a concurrent writer's series.
        PERFORM 1 FROM lb_study WHERE id IN (SELECT DISTINCT study FROM added) ORDER BY id FOR UPDATE;
        {STUDIES};
        {'; '.join(TALLIES)};
        RETURN NULL;
    END $$ LANGUAGE plpgsql"""


def _bump(name: str, key: str) -> str:
    return f"""INSERT INTO lb_tally (project, name, key, n)
        SELECT a.project, '{name}', {key}, COUNT(*) FROM added a
        WHERE EXISTS (SELECT 1 FROM lb_project WHERE id = a.project)
        GROUP BY a.project, {key}
        ON CONFLICT (project, name, key) DO UPDATE SET n = lb_tally.n + excluded.n"""


DECISIONS = f"""CREATE OR REPLACE FUNCTION lb_decision_added() RETURNS trigger AS $$
    BEGIN
        {_bump('reviewer', _summary.REVIEWER.format(r='a'))};
        {_bump('day', _summary.POSTGRES_DAY.format(r='a') + " || '|' || a.code")};
        {_summary.READERS} WHERE id IN (SELECT DISTINCT series FROM added);
        RETURN NULL;
    END $$ LANGUAGE plpgsql"""

FORWARDS = [
    FUNCTION,
    DECISIONS,
    "DROP TRIGGER IF EXISTS lb_decision_summary_write ON lb_decision",
    "CREATE TRIGGER lb_decision_summary_write AFTER DELETE ON lb_decision FOR EACH ROW "
    "EXECUTE FUNCTION lb_decision_summary()",
    "DROP TRIGGER IF EXISTS lb_decision_added ON lb_decision",
    "CREATE TRIGGER lb_decision_added AFTER INSERT ON lb_decision REFERENCING NEW TABLE AS added "
    "FOR EACH STATEMENT EXECUTE FUNCTION lb_decision_added()",
    "DROP TRIGGER IF EXISTS lb_series_summary_write ON lb_series",
    "CREATE TRIGGER lb_series_summary_write AFTER DELETE ON lb_series FOR EACH ROW EXECUTE FUNCTION lb_series_summary()",
    "DROP TRIGGER IF EXISTS lb_series_search_write ON lb_series",
    "DROP TRIGGER IF EXISTS lb_series_added ON lb_series",
    "CREATE TRIGGER lb_series_added AFTER INSERT ON lb_series REFERENCING NEW TABLE AS added "
    "FOR EACH STATEMENT EXECUTE FUNCTION lb_series_added()",
]

# The row triggers as the earlier migrations made them (their functions were never dropped).
BACKWARDS = [
    "DROP TRIGGER IF EXISTS lb_series_added ON lb_series",
    "DROP FUNCTION IF EXISTS lb_series_added()",
    "DROP TRIGGER IF EXISTS lb_decision_added ON lb_decision",
    "DROP FUNCTION IF EXISTS lb_decision_added()",
    "DROP TRIGGER IF EXISTS lb_decision_summary_write ON lb_decision",
    "CREATE TRIGGER lb_decision_summary_write AFTER INSERT OR DELETE ON lb_decision "
    "FOR EACH ROW EXECUTE FUNCTION lb_decision_summary()",
    "DROP TRIGGER IF EXISTS lb_series_summary_write ON lb_series",
    "CREATE TRIGGER lb_series_summary_write AFTER INSERT OR DELETE ON lb_series "
    "FOR EACH ROW EXECUTE FUNCTION lb_series_summary()",
    "CREATE TRIGGER lb_series_search_write AFTER INSERT ON lb_series FOR EACH ROW "
    "WHEN (NEW.description <> '') EXECUTE FUNCTION lb_series_search()",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    def run(statements):
        async def go():
            from portal.tables import Series

            if Series._meta.db.engine_type == "postgres":
                for sql in statements:
                    await Series.raw(sql)
        return go

    manager.add_raw(run(FORWARDS))
    manager.add_raw_backwards(run(BACKWARDS))
    return manager
