"""PostgreSQL: the distinct-series-per-reviewer tally of a statement that inserts many decisions at once (an
import, a bulk load) in O(rows), not O(rows²).

The statement trigger of 2026-12-03T11:31 asked, for each (reviewer, series) it inserted, whether any other
decision existed outside the statement's rows with `o.id NOT IN (SELECT … FROM changed …)`: a correlated scan
of the transition table per decision, so 120k decisions in one COPY ran for tens of minutes. The same
question by counting: the reviewer's decisions on that series in the table equal the ones this statement
inserted exactly when it had none before (one probe of lb_decision_project_reviewer per pair).
SQLite counts per row (its own triggers) and is unchanged.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-03T17:45:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "reviewer-series tally of bulk decision inserts by counting (PostgreSQL)"

INSERTED = """INSERT INTO lb_tally (project, name, key, n)
    SELECT k.project, 'reviewer_series', k.role || '|' || k.username, COUNT(*) FROM (
        SELECT project, role, username, series, COUNT(*) AS n FROM changed
        GROUP BY project, role, username, series) k
    WHERE EXISTS (SELECT 1 FROM lb_project WHERE id = k.project)
      AND (SELECT COUNT(*) FROM lb_decision o WHERE o.project = k.project AND o.username = k.username
           AND o.role = k.role AND o.series = k.series) = k.n
    GROUP BY k.project, k.role, k.username
    ON CONFLICT (project, name, key) DO UPDATE SET n = lb_tally.n + excluded.n"""

# Unchanged: after a delete the statement's rows are gone, so NOT EXISTS probes the index.
DELETED = """INSERT INTO lb_tally (project, name, key, n)
        SELECT k.project, 'reviewer_series', k.role || '|' || k.username, -COUNT(*) FROM (
            SELECT DISTINCT project, role, username, series FROM changed) k
        WHERE EXISTS (SELECT 1 FROM lb_project WHERE id = k.project) AND NOT EXISTS (
            SELECT 1 FROM lb_decision o WHERE o.project = k.project AND o.username = k.username AND o.role = k.role
            AND o.series = k.series)
        GROUP BY k.project, k.role, k.username
        ON CONFLICT (project, name, key) DO UPDATE SET n = lb_tally.n + excluded.n"""

# 2026-12-03T11:31's, for going back.
EARLIER_INSERTED = """INSERT INTO lb_tally (project, name, key, n)
        SELECT k.project, 'reviewer_series', k.role || '|' || k.username, COUNT(*) FROM (
            SELECT DISTINCT project, role, username, series FROM changed) k
        WHERE EXISTS (SELECT 1 FROM lb_project WHERE id = k.project) AND NOT EXISTS (
            SELECT 1 FROM lb_decision o WHERE o.project = k.project AND o.username = k.username AND o.role = k.role
            AND o.series = k.series AND o.id NOT IN (SELECT c.id FROM changed c WHERE c.series = k.series))
        GROUP BY k.project, k.role, k.username
        ON CONFLICT (project, name, key) DO UPDATE SET n = lb_tally.n + excluded.n"""


def _function(inserted: str, deleted: str) -> str:
    return f"""CREATE OR REPLACE FUNCTION lb_decision_reviewer_series() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN {inserted};
            ELSE {deleted};
            END IF;
            RETURN NULL;
        END $$ LANGUAGE plpgsql"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def create():
        from portal.tables import Decision

        if Decision._meta.db.engine_type == "postgres":
            await Decision.raw(_function(INSERTED, DELETED))

    async def drop():
        from portal.tables import Decision

        if Decision._meta.db.engine_type == "postgres":
            await Decision.raw(_function(EARLIER_INSERTED, DELETED))

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
