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
