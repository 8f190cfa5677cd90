"""The sign-in paths' memory: entries expire a while after their last write, and the oldest go first when full."""

from portal.auth.recent import Recent


def test_entries_expire_after_their_last_write():
    r: Recent[int] = Recent(ttl=10)
    r.put("a", 1, now=0)
    assert r.get("a", now=10) == 1
    assert r.update("a", lambda v: (v or 0) + 1, now=10) == 2  # a write starts its time again
    assert r.get("a", now=19) == 2 and r.items(now=19) == [("a", 2)]
    assert r.get("a", now=21) is None and r.items(now=21) == []
    assert r.update("a", lambda v: (v or 0) + 1, now=40) == 1  # an expired value is not counted on


def test_the_oldest_entries_go_first_when_it_is_full():
    r: Recent[str] = Recent(ttl=100, max_keys=2)
    r.put("a", "1", now=0)
    r.put("b", "2", now=1)
    r.put("a", "3", now=2)  # rewritten: now the newest
    r.put("c", "4", now=3)
    assert [k for k, _ in r.items(now=3)] == ["a", "c"]
    r.pop("a")
    r.clear()
    assert r.items(now=3) == []
