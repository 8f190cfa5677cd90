"""The allocator policy of the long-running processes: freed image buffers are given back after a burst."""

import asyncio

from portal import heap


async def test_a_burst_of_big_requests_gives_the_heap_back_once_after_it(monkeypatch):
    trims = []
    monkeypatch.setattr(heap, "_TRIM_DELAY_S", 0.02)
    real = heap._trim
    monkeypatch.setattr(heap, "_trim", lambda: (trims.append(1), real()))
    for _ in range(5):  # five requests of one burst
        heap.trim_soon()
    assert trims == []  # not while the burst's buffers may still be held
    await asyncio.sleep(0.1)
    assert trims == [1] and heap._trim_pending is None
    heap.trim_soon()  # a later burst gets its own
    await asyncio.sleep(0.1)
    assert trims == [1, 1]


def test_trim_soon_outside_an_event_loop_does_nothing():
    heap.trim_soon()
    assert heap._trim_pending is None


def test_a_trim_left_on_a_closed_loop_does_not_stop_later_ones(monkeypatch):
    import asyncio

    monkeypatch.setattr(heap, "_TRIM_DELAY_S", 60)
    gone = asyncio.new_event_loop()
    gone.run_until_complete(asyncio.sleep(0))
    gone.call_soon(heap.trim_soon)
    gone.run_until_complete(asyncio.sleep(0))
    gone.close()  # its trim never runs
    monkeypatch.setattr(heap, "_TRIM_DELAY_S", 0.01)
    trims = []
    monkeypatch.setattr(heap, "_trim", lambda: (trims.append(1), setattr(heap, "_trim_pending", None)))

    async def later():
        heap.trim_soon()
        await asyncio.sleep(0.05)

    asyncio.run(later())
    assert trims == [1]


def test_the_policy_is_taken_by_glibc():
    assert heap.return_freed_memory()
