"""db.rows_of reads whole rows by plain SQL: the objects must be the ORM's own, value for value and type for type."""

from portal import audit, db
from portal.archive import ingest_file
from portal.auth import sessions
from portal.dicom import samples
from portal.tables import TABLES, Series
from tests.helpers import make_project, make_user


async def test_rows_of_gives_what_objects_gives_for_every_table(app, tmp_path):
    project = await make_project("rows")
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        await ingest_file(samples.sample_path(name), project)
    user = await make_user("reader")
    await sessions.start(user, client="127.0.0.1", user_agent="test")
    await audit.record("series_viewed", user=user, object="x", detail={"why": ["a", 1]})
    compared = 0
    for table in TABLES:
        want = await table.objects().order_by(table.id)
        got = await db.rows_of(table, "1 = 1", order="id")
        assert len(got) == len(want), table._meta.tablename
        for a, b in zip(want, got):
            da, dbb = a.to_dict(), b.to_dict()
            assert da == dbb, table._meta.tablename
            assert {k: type(v) for k, v in da.items()} == {k: type(v) for k, v in dbb.items()}, table._meta.tablename
            assert b._exists_in_db
            compared += 1
    assert compared > 10
    series = (await Series.objects().limit(1))[0]
    assert (await db.row_of(Series, "key = {}", series.key)).to_dict() == series.to_dict()
    assert await db.row_of(Series, "key = {}", "no such key") is None


async def test_together_answers_in_order_and_overlaps_on_postgresql(app, settings):
    project = await make_project("together")
    first, second, third = await db.together(db.row_of(Series, "id = {}", -1), Series.raw("SELECT 2 AS n"),
                                             db.rows_of(type(project), "id = {}", project.id))
    assert first is None and second == [{"n": 2}] and [p.name for p in third] == ["together"]
    if settings.database_kind == "postgres":
        # At once: each read holds its own pooled connection (the second is opened while the first is busy).
        pids = await db.together(*[Series.raw("SELECT pg_backend_pid() AS pid, pg_sleep(0.2)") for _ in range(2)])
        assert pids[0][0]["pid"] != pids[1][0]["pid"]
