"""Composite indexes that match the portal pages' filters and orders (issue 12), listed in portal/tables.py.

Hand-written: Piccolo columns declare single-column indexes only. Plain SQL, valid on SQLite and PostgreSQL.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-03T07:12:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "composite indexes for the studies table, navigation, queue, dashboard and AI page"

INDEXES = {
    # studies table default order and the walk's keyset steps: WHERE project = ? ORDER BY study_date, id
    "lb_study_project_date_id": "lb_study (project, study_date, id)",
    # the studies table sorted by last update, by description, by patient ID or name
    "lb_study_project_updated_id": "lb_study (project, updated_at, id)",
    "lb_study_project_description_id": "lb_study (project, description, id)",
    "lb_patient_project_patient_id": "lb_patient (project, patient_id)",
    "lb_patient_project_name": "lb_patient (project, patient_name)",
    # the walk inside a study and the queue's EXISTS probe: WHERE study = ? AND review_status = ?
    "lb_series_study_status": "lb_series (study, review_status, series_number)",
    # per-study aggregates over a project (status/AI filters and sorts), read from the index alone
    "lb_series_project_study_agg": "lb_series (project, study, review_status, ai_score)",
    # the dashboard's series by status
    "lb_series_project_status": "lb_series (project, review_status)",
    # the studies table's modality list (a loose index scan)
    "lb_series_project_modality": "lb_series (project, modality)",
    # the latest decision of each series of a project (dashboard, AI page), and decisions per reviewer
    "lb_decision_project_series_latest": "lb_decision (project, series, created_at, id)",
    "lb_decision_project_reviewer": "lb_decision (project, username, role, series)",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def create():
        from portal.tables import Series

        for name, target in INDEXES.items():
            await Series.raw(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")

    async def drop():
        from portal.tables import Series

        for name in INDEXES:
            await Series.raw(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
