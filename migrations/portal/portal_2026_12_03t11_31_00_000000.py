"""Keep lb_study's summary current at write time (issue 12): triggers on lb_series, a back-fill, indexes.

Every write path changes series rows (ingest, a decision's review status, an AI result's score, delete,
import), so triggers on lb_series are the one place that keeps the summary true, whichever code writes.
Each trigger recomputes the touched study's summary from its own series (a handful of index rows). On
PostgreSQL the study row is locked first, so the recount's snapshot sees a concurrent writer's series.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-03T11:31:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "lb_study summary triggers, back-fill and indexes"

# The summary of the study row being updated, from its series (valid on SQLite and PostgreSQL).
RECOUNT = """UPDATE lb_study SET (n_series, n_unreviewed, n_senior, ai_min, review_status) = (
    SELECT COUNT(*),
           COALESCE(SUM(CASE WHEN review_status = 'unreviewed' THEN 1 ELSE 0 END), 0),
           COALESCE(SUM(CASE WHEN review_status = 'needs_senior_review' THEN 1 ELSE 0 END), 0),
           MIN(ai_score),
           CASE WHEN SUM(CASE WHEN review_status = 'unreviewed' THEN 1 ELSE 0 END) > 0 THEN 'unreviewed'
                WHEN SUM(CASE WHEN review_status = 'needs_senior_review' THEN 1 ELSE 0 END) > 0
                THEN 'needs_senior_review' ELSE 'complete' END
    FROM lb_series WHERE lb_series.study = lb_study.id)"""

CHANGED = ("review_status IS NOT NEW.review_status OR OLD.ai_score IS NOT NEW.ai_score "
           "OR OLD.study IS NOT NEW.study")

SQLITE = [
    f"CREATE TRIGGER IF NOT EXISTS lb_series_summary_insert AFTER INSERT ON lb_series BEGIN "
    f"{RECOUNT} WHERE id = NEW.study; END",
    f"CREATE TRIGGER IF NOT EXISTS lb_series_summary_update AFTER UPDATE OF review_status, ai_score, study "
    f"ON lb_series WHEN OLD.{CHANGED} BEGIN {RECOUNT} WHERE id IN (OLD.study, NEW.study); END",
    f"CREATE TRIGGER IF NOT EXISTS lb_series_summary_delete AFTER DELETE ON lb_series BEGIN "
    f"{RECOUNT} WHERE id = OLD.study; END",
]

POSTGRES = [
    f"""CREATE OR REPLACE FUNCTION lb_study_recount(target INTEGER) RETURNS void AS $$
        BEGIN
            PERFORM 1 FROM lb_study WHERE id = target FOR UPDATE;
            {RECOUNT} WHERE id = target;
        END $$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE FUNCTION lb_series_summary() RETURNS trigger AS $$
        BEGIN
            IF TG_OP <> 'INSERT' THEN PERFORM lb_study_recount(OLD.study); END IF;
            IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.study IS DISTINCT FROM OLD.study) THEN
                PERFORM lb_study_recount(NEW.study);
            END IF;
            RETURN NULL;
        END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS lb_series_summary_write ON lb_series",
    "CREATE TRIGGER lb_series_summary_write AFTER INSERT OR DELETE ON lb_series "
    "FOR EACH ROW EXECUTE FUNCTION lb_series_summary()",
    "DROP TRIGGER IF EXISTS lb_series_summary_update ON lb_series",
    "CREATE TRIGGER lb_series_summary_update AFTER UPDATE OF review_status, ai_score, study ON lb_series "
    "FOR EACH ROW WHEN (OLD." + CHANGED.replace("IS NOT", "IS DISTINCT FROM") + ") "
    "EXECUTE FUNCTION lb_series_summary()",
]

INDEXES = {
    # the studies table filtered by review status, in its default order (date) and its keyset
    "lb_study_project_status_date_id": "lb_study (project, review_status, study_date, id)",
    # sorted by series count; sorted and filtered by the worst AI score (unscored last, as the page shows)
    "lb_study_project_series_id": "lb_study (project, n_series, id)",
    "lb_study_project_ai_id": "lb_study (project, (COALESCE(ai_min, 2)), id)",
    "lb_study_project_ai_min": "lb_study (project, ai_min)",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def create():
        from portal.tables import Series

        postgres = Series._meta.db.engine_type == "postgres"
        for sql in POSTGRES if postgres else SQLITE:
            await Series.raw(sql)
        await Series.raw(RECOUNT)  # back-fill every existing study
        for name, target in INDEXES.items():
            await Series.raw(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")

    async def drop():
        from portal.tables import Series

        postgres = Series._meta.db.engine_type == "postgres"
        for name in INDEXES:
            await Series.raw(f"DROP INDEX IF EXISTS {name}")
        if postgres:
            for sql in ("DROP TRIGGER IF EXISTS lb_series_summary_write ON lb_series",
                        "DROP TRIGGER IF EXISTS lb_series_summary_update ON lb_series",
                        "DROP FUNCTION IF EXISTS lb_series_summary()", "DROP FUNCTION IF EXISTS lb_study_recount(INTEGER)"):
                await Series.raw(sql)
        else:
            for name in ("insert", "update", "delete"):
                await Series.raw(f"DROP TRIGGER IF EXISTS lb_series_summary_{name}")

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
