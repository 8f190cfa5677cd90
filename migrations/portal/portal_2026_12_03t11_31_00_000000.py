"""Keep the summaries current at write time (issue 12): triggers on lb_series and lb_decision, a back-fill of
existing rows, and the indexes the pages sort and filter by.

Every write path changes series and decision rows (ingest, a decision and its undo, an AI result's score,
delete, import), so triggers are the one place that keeps the summaries true, whichever code writes:

- lb_study (n_series, n_unreviewed, n_senior, review_status, ai_min): recounted from the touched study's own
  series (a handful of index rows). On PostgreSQL the study row is locked first, so the recount's snapshot
  sees a concurrent writer's series.
- lb_series.n_readers: how many people decided the series, recounted from its decisions.
- lb_tally (project, name, key, n): series by review status; series by their latest decision's code
  ("decision") and by its code and artifacts ("label", the AI page's training labels); decisions and
  distinct series per reviewer; decisions per UTC day and code. Latest means by (created_at, id), as the
  review history orders them. A tally row is only written while its project exists (a project's delete
  cascades to its series and decisions, whose triggers must not write rows for it again).

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

READERS = """UPDATE lb_series SET n_readers = (
    SELECT COUNT(DISTINCT d.username) FROM lb_decision d WHERE d.series = lb_series.id)"""


def bump(name: str, key: str, delta: str, row: str, where: str = "") -> str:
    """Add `delta` to the tally (row.project, name, key), creating it; `where`: only when that holds."""
    return (f"INSERT INTO lb_tally (project, name, key, n) SELECT {row}.project, '{name}', {key}, {delta} "
            f"WHERE EXISTS (SELECT 1 FROM lb_project WHERE id = {row}.project){' AND ' + where if where else ''} "
            f"ON CONFLICT (project, name, key) DO UPDATE SET n = lb_tally.n + excluded.n")


def latest(row: str, *, other_than: str = "") -> str:
    """The latest decision of `row`'s series (by created_at, id), optionally leaving one decision out."""
    skip = f" AND d.id <> {other_than}.id" if other_than else ""
    return (f"(SELECT d.id FROM lb_decision d WHERE d.project = {row}.project AND d.series = {row}.series{skip} "
            f"ORDER BY d.created_at DESC, d.id DESC LIMIT 1)")


def decision_statements(day: str) -> dict[str, list[str]]:
    """The statements of the decision triggers; `day` turns a row's created_at into its UTC date."""
    label = "d.code || '|' || CAST(d.artifacts AS TEXT)"
    reviewer = "{r}.role || '|' || {r}.username"

    def latest_tallies(row: str, delta: str, which: str) -> list[str]:
        # The decision tallies of the series' decision `which` (an id expression), counted `delta`.
        return [f"INSERT INTO lb_tally (project, name, key, n) SELECT d.project, '{name}', {key}, {delta} "
                f"FROM lb_decision d WHERE d.id = {which} "
                f"AND EXISTS (SELECT 1 FROM lb_project WHERE id = d.project) "
                f"ON CONFLICT (project, name, key) DO UPDATE SET n = lb_tally.n + excluded.n"
                for name, key in (("decision", "d.code"), ("label", label))]

    first_of_reviewer = ("NOT EXISTS (SELECT 1 FROM lb_decision o WHERE o.project = {r}.project AND "
                         "o.username = {r}.username AND o.role = {r}.role AND o.series = {r}.series AND o.id <> {r}.id)")
    return {
        "insert": [
            # NEW is the series' latest (it almost always is): the one before it stops counting, NEW counts.
            *latest_tallies("NEW", "-1", f"CASE WHEN {latest('NEW')} = NEW.id THEN {latest('NEW', other_than='NEW')} END"),
            *latest_tallies("NEW", "1", f"CASE WHEN {latest('NEW')} = NEW.id THEN NEW.id END"),
            bump("reviewer", reviewer.format(r="NEW"), "1", "NEW"),
            bump("reviewer_series", reviewer.format(r="NEW"), "1", "NEW", first_of_reviewer.format(r="NEW")),
            bump("day", f"{day.format(r='NEW')} || '|' || NEW.code", "1", "NEW"),
            f"{READERS} WHERE id = NEW.series",
        ],
        "delete": [
            # OLD was the latest when no remaining decision comes after it: it stops counting, the new latest counts.
            bump("decision", "OLD.code", "-1", "OLD", f"NOT EXISTS {_after('OLD')}"),
            bump("label", "OLD.code || '|' || CAST(OLD.artifacts AS TEXT)", "-1", "OLD", f"NOT EXISTS {_after('OLD')}"),
            *latest_tallies("OLD", "1", f"CASE WHEN NOT EXISTS {_after('OLD')} THEN {latest('OLD')} END"),
            bump("reviewer", reviewer.format(r="OLD"), "-1", "OLD"),
            bump("reviewer_series", reviewer.format(r="OLD"), "-1", "OLD", first_of_reviewer.format(r="OLD")),
            bump("day", f"{day.format(r='OLD')} || '|' || OLD.code", "-1", "OLD"),
            f"{READERS} WHERE id = OLD.series",
        ],
    }


def _after(row: str) -> str:
    return (f"(SELECT 1 FROM lb_decision a WHERE a.project = {row}.project AND a.series = {row}.series "
            f"AND (a.created_at > {row}.created_at OR (a.created_at = {row}.created_at AND a.id > {row}.id)))")


SERIES_STATUS = {
    "insert": [bump("status", "NEW.review_status", "1", "NEW")],
    "delete": [bump("status", "OLD.review_status", "-1", "OLD")],
    "update": [bump("status", "OLD.review_status", "-1", "OLD", "OLD.review_status <> NEW.review_status"),
               bump("status", "NEW.review_status", "1", "NEW", "OLD.review_status <> NEW.review_status")],
}

CHANGED = ("review_status IS NOT NEW.review_status OR OLD.ai_score IS NOT NEW.ai_score "
           "OR OLD.study IS NOT NEW.study")
SQLITE_DAY = "substr({r}.created_at, 1, 10)"  # stored as UTC ISO text
POSTGRES_DAY = "to_char({r}.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def _body(statements: list[str]) -> str:
    return " ".join(f"{s};" for s in statements)


def sqlite_ddl() -> list[str]:
    d = decision_statements(SQLITE_DAY)
    return [
        f"CREATE TRIGGER IF NOT EXISTS lb_series_summary_insert AFTER INSERT ON lb_series BEGIN "
        f"{RECOUNT} WHERE id = NEW.study; {_body(SERIES_STATUS['insert'])} END",
        f"CREATE TRIGGER IF NOT EXISTS lb_series_summary_update AFTER UPDATE OF review_status, ai_score, study "
        f"ON lb_series WHEN OLD.{CHANGED} BEGIN {RECOUNT} WHERE id IN (OLD.study, NEW.study); "
        f"{_body(SERIES_STATUS['update'])} END",
        f"CREATE TRIGGER IF NOT EXISTS lb_series_summary_delete AFTER DELETE ON lb_series BEGIN "
        f"{RECOUNT} WHERE id = OLD.study; {_body(SERIES_STATUS['delete'])} END",
        f"CREATE TRIGGER IF NOT EXISTS lb_decision_summary_insert AFTER INSERT ON lb_decision BEGIN "
        f"{_body(d['insert'])} END",
        f"CREATE TRIGGER IF NOT EXISTS lb_decision_summary_delete AFTER DELETE ON lb_decision BEGIN "
        f"{_body(d['delete'])} END",
    ]


def postgres_ddl() -> list[str]:
    d = decision_statements(POSTGRES_DAY)
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
                IF TG_OP = 'INSERT' THEN {_body(SERIES_STATUS['insert'])}
                ELSIF TG_OP = 'UPDATE' THEN {_body(SERIES_STATUS['update'])}
                ELSE {_body(SERIES_STATUS['delete'])}
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
        "DROP TRIGGER IF EXISTS lb_series_summary_write ON lb_series",
        "CREATE TRIGGER lb_series_summary_write AFTER INSERT OR DELETE ON lb_series "
        "FOR EACH ROW EXECUTE FUNCTION lb_series_summary()",
        "DROP TRIGGER IF EXISTS lb_series_summary_update ON lb_series",
        "CREATE TRIGGER lb_series_summary_update AFTER UPDATE OF review_status, ai_score, study ON lb_series "
        "FOR EACH ROW WHEN (OLD." + CHANGED.replace("IS NOT", "IS DISTINCT FROM") + ") "
        "EXECUTE FUNCTION lb_series_summary()",
        "DROP TRIGGER IF EXISTS lb_decision_summary_write ON lb_decision",
        "CREATE TRIGGER lb_decision_summary_write AFTER INSERT OR DELETE ON lb_decision "
        "FOR EACH ROW EXECUTE FUNCTION lb_decision_summary()",
    ]


def back_fill(day: str) -> list[str]:
    """Every summary recomputed from the rows as they stand (also repairs one that drifted)."""
    latest_of_series = """SELECT d.* FROM lb_decision d WHERE d.id = (
        SELECT e.id FROM lb_decision e WHERE e.project = d.project AND e.series = d.series
        ORDER BY e.created_at DESC, e.id DESC LIMIT 1)"""
    return [
        RECOUNT,
        READERS,
        "DELETE FROM lb_tally",
        "INSERT INTO lb_tally (project, name, key, n) SELECT project, 'status', review_status, COUNT(*) "
        "FROM lb_series GROUP BY project, review_status",
        f"INSERT INTO lb_tally (project, name, key, n) SELECT project, 'decision', code, COUNT(*) "
        f"FROM ({latest_of_series}) l GROUP BY project, code",
        f"INSERT INTO lb_tally (project, name, key, n) SELECT project, 'label', "
        f"code || '|' || CAST(artifacts AS TEXT), COUNT(*) FROM ({latest_of_series}) l "
        f"GROUP BY project, code || '|' || CAST(artifacts AS TEXT)",
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
    # sorted by series count; sorted and filtered by the worst AI score (unscored last, as the page shows)
    "lb_study_project_series_id": "lb_study (project, n_series, id)",
    "lb_study_project_ai_id": "lb_study (project, (COALESCE(ai_min, 2)), id)",
    "lb_study_project_ai_min": "lb_study (project, ai_min)",
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
