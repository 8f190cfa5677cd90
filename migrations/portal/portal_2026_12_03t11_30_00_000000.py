"""Per-study summary columns (issue 12): series count, review tallies and status, worst AI score.

Kept current by triggers (the next migration), so the studies table filters and sorts by indexed columns.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Integer, Real, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-03T11:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "lb_study summary columns: n_series, n_unreviewed, n_senior, review_status, ai_min"


def _params(**kw) -> dict:
    return {"null": False, "primary_key": False, "unique": False, "index": False,
            "index_method": IndexMethod.btree, "choices": None, "db_column_name": None, "secret": False, **kw}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    for name in ("n_series", "n_unreviewed", "n_senior"):
        manager.add_column(table_class_name="Study", tablename="lb_study", column_name=name, db_column_name=name,
                           column_class_name="Integer", column_class=Integer, params=_params(default=0), schema=None)
    manager.add_column(table_class_name="Study", tablename="lb_study", column_name="review_status",
                       db_column_name="review_status", column_class_name="Varchar", column_class=Varchar,
                       params=_params(default="complete", length=32), schema=None)
    manager.add_column(table_class_name="Study", tablename="lb_study", column_name="ai_min", db_column_name="ai_min",
                       column_class_name="Real", column_class=Real, params=_params(default=None, null=True),
                       schema=None)
    return manager
