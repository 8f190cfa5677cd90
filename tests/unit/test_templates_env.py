"""Pages write every moment one way: 'YYYY-MM-DD HH:MM:SS UTC'."""

import datetime as dt

from portal.templates_env import utc


def test_utc_writes_every_moment_one_way():
    assert utc(dt.datetime(2026, 12, 3, 13, 5, 7, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == "2026-12-03 11:05:07 UTC"
    assert utc(dt.datetime(2026, 12, 3, 11, 5, 7, 999)) == "2026-12-03 11:05:07 UTC"  # naive: stored as UTC
    assert utc("2026-12-03T11:05:07Z") == "2026-12-03 11:05:07 UTC"
    assert utc("2026-12-03T12:05:07+01:00") == "2026-12-03 11:05:07 UTC"
    assert utc(None) == "" and utc("") == ""
    assert utc("not a time") == "not a time"
