"""Keep the summaries current at write time (issue 12): triggers on lb_series and lb_decision, a back-fill of
existing rows, and the indexes the pages sort and filter by.

Every write path changes series and decision rows (ingest, a decision and its undo, an AI result's score,
delete, import), so triggers are the one place that keeps the summaries true, whichever code writes:

- lb_study (n_series, n_unreviewed, n_senior, review_status, ai_min): recounted from the touched study's own
  series (a handful of index rows). On PostgreSQL the study row is locked first, so the recount's snapshot
  sees a concurrent writer's series.
- lb_series (n_readers, decision_code, decision_label): how many people decided the series and its latest
  decision (by created_at, id, as the review history orders them), recomputed from its decisions.
- lb_tally (project, name, key, n): series by review status, by their latest decision's code ("decision")
  and by its code and artifacts ("label", the AI page's training labels), counted from the series rows'
  changes; decisions and distinct series per reviewer; decisions per UTC day and code. A tally row is only
  written while its project exists (a project's delete cascades to its series and decisions, whose
  triggers must not write rows for it again).

Everything is either recomputed from the rows (idempotent) or counted one per row, so it holds however the
database fires row triggers: SQLite after each row, PostgreSQL at the end of a statement that may change
many (a cascade deletes all of a series' decisions at once). The one count that is neither, distinct
series per reviewer, uses statement triggers with transition tables on PostgreSQL.

The statements are shared; each database wraps them in its own trigger syntax.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-03T11:31:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "summary triggers, back-fill and indexes (lb_study, lb_series.n_readers, lb_tally)"

# The summary of the study row being updated, from its series (valid on SQLite and PostgreSQL).
RECOUNT = """UPDATE lb_study SET (n_series, n_unreviewed, n_senior, ai_min, review_status) = (
    SELECT COUNT(*),
           COALESCE(SUM(CASE WHEN se.review_status = 'unreviewed' THEN 1 ELSE 0 END), 0),
           COALESCE(SUM(CASE WHEN se.review_status = 'needs_senior_review' THEN 1 ELSE 0 END), 0),
           MIN(se.ai_score),
           CASE WHEN SUM(CASE WHEN se.review_status = 'unreviewed' THEN 1 ELSE 0 END) > 0 THEN 'unreviewed'
                WHEN SUM(CASE WHEN se.review_status = 'needs_senior_review' THEN 1 ELSE 0 END) > 0
                THEN 'needs_senior_review' ELSE 'complete' END
    FROM lb_series se WHERE se.study = lb_study.id)"""

# A series' decision summary from its own decisions (the latest by created_at, id).
_LATEST = ("(SELECT d.{col} FROM lb_decision d WHERE d.project = lb_series.project AND d.series = lb_series.id "
           "ORDER BY d.created_at DESC, d.id DESC LIMIT 1)")
_LABEL = "code || '|' || CAST(d.artifacts AS TEXT)"
READERS = ("UPDATE lb_series SET (n_readers, decision_code, decision_label) = ("
           "(SELECT COUNT(DISTINCT d.username) FROM lb_decision d WHERE d.series = lb_series.id), "
           + _LATEST.format(col="code") + ", " + _LATEST.format(col=_LABEL) + ")")


def bump(name: str, key: str, delta: str, row: str, where: str = "") -> str:
    """Add `delta` to the tally (row.project, name, key), creating it; `where`: only when that holds."""
    return (f"INSERT INTO lb_tally (project, name, key, n) SELECT {row}.project, '{name}', {key}, {delta} "
            f"WHERE EXISTS (SELECT 1 FROM lb_project WHERE id = {row}.project){' AND ' + where if where else ''} "
            f"ON CONFLICT (project, name, key) DO UPDATE SET n = lb_tally.n + excluded.n")


REVIEWER = "{r}.role || '|' || {r}.username"
# No other decision of this reviewer on this series (row triggers, where each row is seen alone: SQLite).
ONLY_ONE = ("NOT EXISTS (SELECT 1 FROM lb_decision o WHERE o.project = {r}.project AND o.username = {r}.username "
            "AND o.role = {r}.role AND o.series = {r}.series AND o.id <> {r}.id)")


def decision_statements(day: str, *, per_series: bool) -> dict[str, list[str]]:
    """The row statements of the decision triggers; `day` turns a row's created_at into its UTC date;
    `per_series`: also count distinct series per reviewer here (SQLite's row-at-a-time triggers)."""
    out = {}
    for op, row, delta in (("insert", "NEW", "1"), ("delete", "OLD", "-1")):
        out[op] = [bump("reviewer", REVIEWER.format(r=row), delta, row),
                   bump("day", f"{day.format(r=row)} || '|' || {row}.code", delta, row),
                   *([bump("reviewer_series", REVIEWER.format(r=row), delta, row, ONLY_ONE.format(r=row))]
                     if per_series else []),
                   f"{READERS} WHERE id = {row}.series"]
    return out


# PostgreSQL: distinct series per reviewer, from the statement's inserted or deleted rows at once.
PG_REVIEWER_SERIES = {
    "insert": """INSERT INTO lb_tally (project, name, key, n)
        SELECT k.project, 'reviewer_series', k.role || '|' || k.username, COUNT(*) FROM (
            SELECT DISTINCT project, role, username, series FROM changed) k
        WHERE EXISTS (SELECT 1 FROM lb_project WHERE id = k.project) AND NOT EXISTS (
            SELECT 1 FROM lb_decision o WHERE o.project = k.project AND o.username = k.username AND o.role = k.role
            AND o.series = k.series AND o.id NOT IN (SELECT c.id FROM changed c WHERE c.series = k.series))
        GROUP BY k.project, k.role, k.username
        ON CONFLICT (project, name, key) DO UPDATE SET n = lb_tally.n + excluded.n""",
    "delete": """INSERT INTO lb_tally (project, name, key, n)
        SELECT k.project, 'reviewer_series', k.role || '|' || k.username, -COUNT(*) FROM (
            SELECT DISTINCT project, role, username, series FROM changed) k
        WHERE EXISTS (SELECT 1 FROM lb_project WHERE id = k.project) AND NOT EXISTS (
            SELECT 1 FROM lb_decision o WHERE o.project = k.project AND o.username = k.username AND o.role = k.role
            AND o.series = k.series)
        GROUP BY k.project, k.role, k.username
        ON CONFLICT (project, name, key) DO UPDATE SET n = lb_tally.n + excluded.n""",
}


def _series_tallies(op: str) -> list[str]:
    """Series by status, by latest decision code and by label: one per series row, moved when it changes."""
    out = []
    for name, col in (("status", "review_status"), ("decision", "decision_code"), ("label", "decision_label")):
        if op in ("delete", "update"):
            changed = f" AND OLD.{col} IS DISTINCT FROM NEW.{col}" if op == "update" else ""
            out.append(bump(name, f"OLD.{col}", "-1", "OLD", f"OLD.{col} IS NOT NULL{changed}"))
        if op in ("insert", "update"):
            changed = f" AND OLD.{col} IS DISTINCT FROM NEW.{col}" if op == "update" else ""
            out.append(bump(name, f"NEW.{col}", "1", "NEW", f"NEW.{col} IS NOT NULL{changed}"))
    return out


WATCHED = ("review_status", "ai_score", "study", "decision_code", "decision_label")
CHANGED = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in WATCHED)
SQLITE_DAY = "substr({r}.created_at, 1, 10)"  # stored as UTC ISO text
POSTGRES_DAY = "to_char({r}.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def _body(statements: list[str]) -> str:
    return " ".join(f"{s};" for s in statements)


def sqlite_ddl() -> list[str]:
    d = decision_statements(SQLITE_DAY, per_series=True)
    ddl = [
        f"CREATE TRIGGER IF NOT EXISTS lb_series_summary_insert AFTER INSERT ON lb_series BEGIN "
        f"{RECOUNT} WHERE id = NEW.study; {_body(_series_tallies('insert'))} END",
        f"CREATE TRIGGER IF NOT EXISTS lb_series_summary_update AFTER UPDATE OF {', '.join(WATCHED)} "
        f"ON lb_series WHEN {CHANGED} BEGIN {RECOUNT} WHERE id IN (OLD.study, NEW.study); "
        f"{_body(_series_tallies('update'))} END",
        f"CREATE TRIGGER IF NOT EXISTS lb_series_summary_delete AFTER DELETE ON lb_series BEGIN "
        f"{RECOUNT} WHERE id = OLD.study; {_body(_series_tallies('delete'))} END",
        f"CREATE TRIGGER IF NOT EXISTS lb_decision_summary_insert AFTER INSERT ON lb_decision BEGIN "
        f"{_body(d['insert'])} END",
        f"CREATE TRIGGER IF NOT EXISTS lb_decision_summary_delete AFTER DELETE ON lb_decision BEGIN "
        f"{_body(d['delete'])} END",
    ]
    return [sql.replace("IS DISTINCT FROM", "IS NOT") for sql in ddl]  # SQLite's IS NOT is null-safe


def postgres_ddl() -> list[str]:
    d = decision_statements(POSTGRES_DAY, per_series=False)
    return [
        f"""CREATE OR REPLACE FUNCTION lb_study_recount(target INTEGER) RETURNS void AS $$
            BEGIN
                PERFORM 1 FROM lb_study WHERE id = target FOR UPDATE;
                {RECOUNT} WHERE id = target;
            END $$ LANGUAGE plpgsql""",
        f"""CREATE OR REPLACE FUNCTION lb_series_summary() RETURNS trigger AS $$
            BEGIN
                IF TG_OP <> 'INSERT' THEN PERFORM lb_study_recount(OLD.study); END IF;
                IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.study IS DISTINCT FROM OLD.study) THEN
                    PERFORM lb_study_recount(NEW.study);
                END IF;
                IF TG_OP = 'INSERT' THEN {_body(_series_tallies('insert'))}
                ELSIF TG_OP = 'UPDATE' THEN {_body(_series_tallies('update'))}
                ELSE {_body(_series_tallies('delete'))}
                END IF;
                RETURN NULL;
            END $$ LANGUAGE plpgsql""",
        f"""CREATE OR REPLACE FUNCTION lb_decision_summary() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN {_body(d['insert'])}
                ELSE {_body(d['delete'])}
                END IF;
                RETURN NULL;
            END $$ LANGUAGE plpgsql""",
        f"""CREATE OR REPLACE FUNCTION lb_decision_reviewer_series() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN {PG_REVIEWER_SERIES['insert']};
                ELSE {PG_REVIEWER_SERIES['delete']};
                END IF;
                RETURN NULL;
            END $$ LANGUAGE plpgsql""",
        "DROP TRIGGER IF EXISTS lb_series_summary_write ON lb_series",
        "CREATE TRIGGER lb_series_summary_write AFTER INSERT OR DELETE ON lb_series "
        "FOR EACH ROW EXECUTE FUNCTION lb_series_summary()",
        "DROP TRIGGER IF EXISTS lb_series_summary_update ON lb_series",
        f"CREATE TRIGGER lb_series_summary_update AFTER UPDATE OF {', '.join(WATCHED)} ON lb_series "
        f"FOR EACH ROW WHEN ({CHANGED}) EXECUTE FUNCTION lb_series_summary()",
        "DROP TRIGGER IF EXISTS lb_decision_summary_write ON lb_decision",
        "CREATE TRIGGER lb_decision_summary_write AFTER INSERT OR DELETE ON lb_decision "
        "FOR EACH ROW EXECUTE FUNCTION lb_decision_summary()",
        "DROP TRIGGER IF EXISTS lb_decision_reviewer_series_insert ON lb_decision",
        "CREATE TRIGGER lb_decision_reviewer_series_insert AFTER INSERT ON lb_decision "
        "REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION lb_decision_reviewer_series()",
        "DROP TRIGGER IF EXISTS lb_decision_reviewer_series_delete ON lb_decision",
        "CREATE TRIGGER lb_decision_reviewer_series_delete AFTER DELETE ON lb_decision "
        "REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION lb_decision_reviewer_series()",
    ]


def back_fill(day: str) -> list[str]:
    """Every summary recomputed from the rows as they stand (also repairs one that drifted)."""
    return [
        RECOUNT,
        READERS,
        "DELETE FROM lb_tally",
        *[f"INSERT INTO lb_tally (project, name, key, n) SELECT project, '{name}', {col}, COUNT(*) "
          f"FROM lb_series WHERE {col} IS NOT NULL GROUP BY project, {col}"
          for name, col in (("status", "review_status"), ("decision", "decision_code"), ("label", "decision_label"))],
        "INSERT INTO lb_tally (project, name, key, n) SELECT project, 'reviewer', role || '|' || username, COUNT(*) "
        "FROM lb_decision GROUP BY project, role || '|' || username",
        "INSERT INTO lb_tally (project, name, key, n) SELECT project, 'reviewer_series', role || '|' || username, "
        "COUNT(DISTINCT series) FROM lb_decision GROUP BY project, role || '|' || username",
        f"INSERT INTO lb_tally (project, name, key, n) SELECT project, 'day', {day.format(r='lb_decision')} || '|' "
        f"|| code, COUNT(*) FROM lb_decision GROUP BY project, {day.format(r='lb_decision')} || '|' || code",
    ]


INDEXES = {
    # one counter per project, name and key (the triggers' upserts conflict on it)
    "lb_tally_project_name_key": "lb_tally (project, name, key)",
    # the studies table filtered by review status, in its default order (date) and its keyset
    "lb_study_project_status_date_id": "lb_study (project, review_status, study_date, id)",
    # sorted by series count; sorted and filtered (critical, low) by the worst AI score (unscored last: 2)
    "lb_study_project_series_id": "lb_study (project, n_series, id)",
    "lb_study_project_ai_id": "lb_study (project, (COALESCE(ai_min, 2)), id)",
    # agreement reads the decisions of the series decided by more than one person
    "lb_series_project_readers": "lb_series (project, n_readers)",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def create():
        from portal.tables import Series

        postgres = Series._meta.db.engine_type == "postgres"
        for name, target in INDEXES.items():
            unique = "UNIQUE " if name == "lb_tally_project_name_key" else ""
            await Series.raw(f"CREATE {unique}INDEX IF NOT EXISTS {name} ON {target}")
        for sql in postgres_ddl() if postgres else sqlite_ddl():
            await Series.raw(sql)
        for sql in back_fill(POSTGRES_DAY if postgres else SQLITE_DAY):
            await Series.raw(sql)

    async def drop():
        from portal.tables import Series

        if Series._meta.db.engine_type == "postgres":
            for sql in ("DROP TRIGGER IF EXISTS lb_series_summary_write ON lb_series",
                        "DROP TRIGGER IF EXISTS lb_series_summary_update ON lb_series",
                        "DROP TRIGGER IF EXISTS lb_decision_summary_write ON lb_decision",
                        "DROP TRIGGER IF EXISTS lb_decision_reviewer_series_insert ON lb_decision",
                        "DROP TRIGGER IF EXISTS lb_decision_reviewer_series_delete ON lb_decision",
                        "DROP FUNCTION IF EXISTS lb_decision_reviewer_series()",
                        "DROP FUNCTION IF EXISTS lb_series_summary()", "DROP FUNCTION IF EXISTS lb_decision_summary()",
                        "DROP FUNCTION IF EXISTS lb_study_recount(INTEGER)"):
                await Series.raw(sql)
        else:
            for name in ("series_summary_insert", "series_summary_update", "series_summary_delete",
                         "decision_summary_insert", "decision_summary_delete"):
                await Series.raw(f"DROP TRIGGER IF EXISTS lb_{name}")
        for name in INDEXES:
            await Series.raw(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
