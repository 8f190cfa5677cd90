"""Summaries kept at write time (issue 12): per study (series count, review tallies and status, worst AI
score), per series (how many people decided it, its latest decision), per project (lb_tally: counters for the dashboard and the
AI page).

Kept current by triggers (the next migration), so pages read indexed columns and a few counters.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import ForeignKey, Integer, Real, Serial, Text, Varchar
from piccolo.table import Table
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-03T11:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "lb_study summary columns, lb_series n_readers and latest decision, lb_tally"


class Project(Table, tablename="lb_project", schema=None):
    id = Serial(null=False, primary_key=True, unique=False, index=False, index_method=IndexMethod.btree,
                choices=None, db_column_name="id", secret=False)


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
    manager.add_column(table_class_name="Series", tablename="lb_series", column_name="n_readers",
                       db_column_name="n_readers", column_class_name="Integer", column_class=Integer,
                       params=_params(default=0), schema=None)
    manager.add_column(table_class_name="Series", tablename="lb_series", column_name="decision_code",
                       db_column_name="decision_code", column_class_name="Varchar", column_class=Varchar,
                       params=_params(default=None, null=True, length=16), schema=None)
    manager.add_column(table_class_name="Series", tablename="lb_series", column_name="decision_label",
                       db_column_name="decision_label", column_class_name="Text", column_class=Text,
                       params=_params(default=None, null=True), schema=None)
    manager.add_table(class_name="Tally", tablename="lb_tally", schema=None, columns=None)
    manager.add_column(table_class_name="Tally", tablename="lb_tally", column_name="project", db_column_name="project",
                       column_class_name="ForeignKey", column_class=ForeignKey,
                       params=_params(references=Project, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade,
                                      target_column=None, null=True),
                       schema=None)
    manager.add_column(table_class_name="Tally", tablename="lb_tally", column_name="name", db_column_name="name",
                       column_class_name="Varchar", column_class=Varchar, params=_params(default="", length=32),
                       schema=None)
    manager.add_column(table_class_name="Tally", tablename="lb_tally", column_name="key", db_column_name="key",
                       column_class_name="Text", column_class=Text, params=_params(default=""), schema=None)
    manager.add_column(table_class_name="Tally", tablename="lb_tally", column_name="n", db_column_name="n",
                       column_class_name="Integer", column_class=Integer, params=_params(default=0), schema=None)
    return manager
