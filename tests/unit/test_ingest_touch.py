"""The writer writes a series' last_instance_at (a study's updated_at) at most once a second per row."""

import datetime as dt

from portal.archive import writer


def test_a_row_time_is_written_at_most_once_a_second_and_after_any_gap():
    t = dt.datetime(2026, 12, 6, 12, 0, 0, tzinfo=dt.timezone.utc)
    series_id = 987_654_321  # not a row any other test touches
    assert writer._due("series", series_id, t)  # first time: written
    assert not writer._due("series", series_id, t + dt.timedelta(milliseconds=400))  # same burst: skipped
    assert writer._due("study", series_id, t + dt.timedelta(milliseconds=400))  # another table: its own
    assert writer._due("series", series_id, t + dt.timedelta(seconds=1))  # a second on: written
    assert writer._due("series", series_id, t + dt.timedelta(seconds=90))  # after a quiet period: always
    assert writer._due("series", series_id, t)  # a clock set back (tests, NTP): written, never skipped
