"""The studies table's search, indexed (issue 12): a search that matches a few studies of a 100k-study project
read every study and its series (LIKE '%…%' on five columns cannot use a b-tree), 0.3-1.5 s a page.

Each study's searchable text (patient ID and name, accession, description, its series' descriptions:
lowercased, joined by the unit separator, chr(31), so a match never spans two fields) is kept by triggers,
whichever code writes the rows (ingest, import, edits, deletes), and indexed by trigrams, which answer
LIKE '%text%' for any text of three characters or more:

- SQLite: an FTS5 table with the trigram tokenizer, lb_study_text (rowid = the study's id).
- PostgreSQL: a column lb_study.search_text with a pg_trgm GIN index. pg_trgm is a trusted extension (a
  database owner may create it); where it cannot be created the column is still kept and searched, by scan.

Shorter texts are matched by the same expression, by scan (one or two characters match many studies, and
the page stops at its first 25 in order).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-03T16:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "lb_study search text kept by triggers, indexed by trigrams"

SEP = {"sqlite": "char(31)", "postgres": "chr(31)"}


def series_part(engine: str, study: str) -> str:
    """The study's series descriptions, each after a separator ('' when it has none)."""
    agg = (f"group_concat(lower(sd.description), {SEP[engine]})" if engine == "sqlite"
           else f"string_agg(lower(sd.description), {SEP[engine]})")
    return (f"COALESCE((SELECT {SEP[engine]} || {agg} FROM lb_series sd WHERE sd.study = {study} "
            f"AND sd.description <> ''), '')")


def text_of(engine: str, s: str, patient: str) -> str:
    """The search text of study row `s` (its columns as `s.col`), `patient` the expression of its patient id."""
    sep = SEP[engine]
    return (f"COALESCE((SELECT lower(p.patient_id) || {sep} || lower(p.patient_name) FROM lb_patient p "
            f"WHERE p.id = {patient}), '') || {sep} || lower({s}.accession_number) || {sep} || "
            f"lower({s}.description) || {series_part(engine, s + '.id')}")


# SQLite: (re)write the text rows of the studies a WHERE clause on lb_study s selects.
FILL = f"INSERT INTO lb_study_text (rowid, search_text) SELECT s.id, {text_of('sqlite', 's', 's.patient')} FROM lb_study s"


def _refresh(where: str) -> str:
    """Drop and rewrite the text rows of the studies `where` (on lb_study s) selects."""
    return (f"DELETE FROM lb_study_text WHERE rowid IN (SELECT s.id FROM lb_study s WHERE {where}); "
            f"{FILL} WHERE {where};")


def sqlite_ddl() -> list[str]:
    return [
        "CREATE VIRTUAL TABLE IF NOT EXISTS lb_study_text USING fts5(search_text, tokenize='trigram')",
        f"CREATE TRIGGER IF NOT EXISTS lb_study_search_insert AFTER INSERT ON lb_study BEGIN "
        f"{FILL} WHERE s.id = NEW.id; END",
        f"CREATE TRIGGER IF NOT EXISTS lb_study_search_update AFTER UPDATE OF patient, accession_number, description "
        f"ON lb_study WHEN OLD.patient IS NOT NEW.patient OR OLD.accession_number IS NOT NEW.accession_number "
        f"OR OLD.description IS NOT NEW.description BEGIN {_refresh('s.id = NEW.id')} END",
        "CREATE TRIGGER IF NOT EXISTS lb_study_search_delete AFTER DELETE ON lb_study BEGIN "
        "DELETE FROM lb_study_text WHERE rowid = OLD.id; END",
        f"CREATE TRIGGER IF NOT EXISTS lb_patient_search_update AFTER UPDATE OF patient_id, patient_name "
        f"ON lb_patient WHEN OLD.patient_id IS NOT NEW.patient_id OR OLD.patient_name IS NOT NEW.patient_name "
        f"BEGIN {_refresh('s.patient = NEW.id')} END",
        f"CREATE TRIGGER IF NOT EXISTS lb_series_search_insert AFTER INSERT ON lb_series "
        f"WHEN NEW.description <> '' BEGIN {_refresh('s.id = NEW.study')} END",
        f"CREATE TRIGGER IF NOT EXISTS lb_series_search_update AFTER UPDATE OF description, study ON lb_series "
        f"WHEN OLD.description IS NOT NEW.description OR OLD.study IS NOT NEW.study "
        f"BEGIN {_refresh('s.id IN (OLD.study, NEW.study)')} END",
        f"CREATE TRIGGER IF NOT EXISTS lb_series_search_delete AFTER DELETE ON lb_series "
        f"WHEN OLD.description <> '' BEGIN {_refresh('s.id = OLD.study')} END",
        # back-fill
        "DELETE FROM lb_study_text",
        FILL,
    ]


SQLITE_TRIGGERS = ("lb_study_search_insert", "lb_study_search_update", "lb_study_search_delete",
                   "lb_patient_search_update", "lb_series_search_insert", "lb_series_search_update",
                   "lb_series_search_delete")

# PostgreSQL: the study's own trigger computes its text; the patient's and the series' triggers touch the
# study (SET description = description fires it), which also locks the study row, so two transactions
# adding series to one study each see the other's committed series.
TOUCH = "UPDATE lb_study SET description = description WHERE {where}"


def postgres_ddl() -> list[str]:
    return [
        "ALTER TABLE lb_study ADD COLUMN IF NOT EXISTS search_text TEXT NOT NULL DEFAULT ''",
        f"""CREATE OR REPLACE FUNCTION lb_study_search() RETURNS trigger AS $$
            BEGIN
                NEW.search_text := {text_of('postgres', 'NEW', 'NEW.patient')};
                RETURN NEW;
            END $$ LANGUAGE plpgsql""",
        "DROP TRIGGER IF EXISTS lb_study_search ON lb_study",
        "CREATE TRIGGER lb_study_search BEFORE INSERT OR UPDATE OF patient, accession_number, description "
        "ON lb_study FOR EACH ROW EXECUTE FUNCTION lb_study_search()",
        f"""CREATE OR REPLACE FUNCTION lb_patient_search() RETURNS trigger AS $$
            BEGIN
                {TOUCH.format(where='patient = NEW.id')};
                RETURN NULL;
            END $$ LANGUAGE plpgsql""",
        "DROP TRIGGER IF EXISTS lb_patient_search ON lb_patient",
        "CREATE TRIGGER lb_patient_search AFTER UPDATE OF patient_id, patient_name ON lb_patient FOR EACH ROW "
        "WHEN (OLD.patient_id IS DISTINCT FROM NEW.patient_id OR OLD.patient_name IS DISTINCT FROM NEW.patient_name) "
        "EXECUTE FUNCTION lb_patient_search()",
        f"""CREATE OR REPLACE FUNCTION lb_series_search() RETURNS trigger AS $$
            BEGIN
                IF TG_OP <> 'INSERT' THEN {TOUCH.format(where='id = OLD.study')}; END IF;
                IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.study IS DISTINCT FROM OLD.study) THEN
                    {TOUCH.format(where='id = NEW.study')};
                END IF;
                RETURN NULL;
            END $$ LANGUAGE plpgsql""",
        "DROP TRIGGER IF EXISTS lb_series_search_write ON lb_series",
        "CREATE TRIGGER lb_series_search_write AFTER INSERT ON lb_series FOR EACH ROW "
        "WHEN (NEW.description <> '') EXECUTE FUNCTION lb_series_search()",
        "DROP TRIGGER IF EXISTS lb_series_search_delete ON lb_series",
        "CREATE TRIGGER lb_series_search_delete AFTER DELETE ON lb_series FOR EACH ROW "
        "WHEN (OLD.description <> '') EXECUTE FUNCTION lb_series_search()",
        "DROP TRIGGER IF EXISTS lb_series_search_update ON lb_series",
        "CREATE TRIGGER lb_series_search_update AFTER UPDATE OF description, study ON lb_series FOR EACH ROW "
        "WHEN (OLD.description IS DISTINCT FROM NEW.description OR OLD.study IS DISTINCT FROM NEW.study) "
        "EXECUTE FUNCTION lb_series_search()",
        # back-fill (the study's trigger computes each text)
        TOUCH.format(where="TRUE"),
        # The trigram index, where the extension can be had; a failure here must not abort the migration.
        """DO $$ BEGIN
               CREATE EXTENSION IF NOT EXISTS pg_trgm;
           EXCEPTION WHEN OTHERS THEN
               RAISE NOTICE 'pg_trgm is not available: the studies search scans';
           END $$""",
        """DO $$ BEGIN
               IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
                   CREATE INDEX IF NOT EXISTS lb_study_search_trgm ON lb_study USING gin (search_text gin_trgm_ops);
               END IF;
           END $$""",
    ]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def create():
        from portal.tables import Study

        postgres = Study._meta.db.engine_type == "postgres"
        for sql in postgres_ddl() if postgres else sqlite_ddl():
            await Study.raw(sql)

    async def drop():
        from portal.tables import Study

        if Study._meta.db.engine_type == "postgres":
            for sql in ("DROP TRIGGER IF EXISTS lb_study_search ON lb_study",
                        "DROP TRIGGER IF EXISTS lb_patient_search ON lb_patient",
                        "DROP TRIGGER IF EXISTS lb_series_search_write ON lb_series",
                        "DROP TRIGGER IF EXISTS lb_series_search_delete ON lb_series",
                        "DROP TRIGGER IF EXISTS lb_series_search_update ON lb_series",
                        "DROP FUNCTION IF EXISTS lb_study_search()", "DROP FUNCTION IF EXISTS lb_patient_search()",
                        "DROP FUNCTION IF EXISTS lb_series_search()",
                        "DROP INDEX IF EXISTS lb_study_search_trgm",
                        "ALTER TABLE lb_study DROP COLUMN IF EXISTS search_text"):
                await Study.raw(sql)
        else:
            for name in SQLITE_TRIGGERS:
                await Study.raw(f"DROP TRIGGER IF EXISTS {name}")
            await Study.raw("DROP TABLE IF EXISTS lb_study_text")

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
