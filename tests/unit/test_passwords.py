"""Argon2 checks run off the event loop (tens of ms each would hold up every other request); a recent
success is answered from memory without a thread hop."""

import asyncio
import threading

from portal.auth import passwords


async def test_argon2_runs_in_a_thread_and_a_recent_success_needs_none(monkeypatch):
    loop_thread = threading.get_ident()
    hashed = await passwords.new_hash("correct horse battery")
    assert hashed.startswith("$argon2")
    seen: list[int] = []
    real = passwords._hasher

    class Spy:
        def verify(self, h, p):
            seen.append(threading.get_ident())
            return real.verify(h, p)

    monkeypatch.setattr(passwords, "_hasher", Spy())
    assert not await passwords.check_password(hashed, "wrong horse battery")
    assert await passwords.check_password(hashed, "correct horse battery")
    assert len(seen) == 2 and loop_thread not in seen
    assert await passwords.check_password(hashed, "correct horse battery")  # remembered
    assert len(seen) == 2
    assert not await passwords.check_password(hashed, "x" * (passwords.MAX_LENGTH + 1))
    assert not await passwords.check_password("", "correct horse battery")


async def test_a_slow_check_does_not_hold_up_the_loop(monkeypatch):
    hashed = passwords.hash_password("another good password")
    gate = threading.Event()

    class Slow:
        def verify(self, h, p):
            gate.wait(5)
            return True

    monkeypatch.setattr(passwords, "_hasher", Slow())
    check = asyncio.create_task(passwords.check_password(hashed, "another good password"))
    await asyncio.sleep(0.05)
    assert not check.done()  # still verifying, and this coroutine ran meanwhile
    gate.set()
    assert await check


async def test_checks_run_one_at_a_time_and_the_same_pair_in_flight_is_checked_once(monkeypatch):
    """argon2 takes 64 MiB per run: a burst of sign-ins must not run many at once (memory), and the same
    credentials sent by several parallel requests are checked once."""
    hashed = passwords.hash_password("a third good password")
    gate = threading.Event()
    lock = threading.Lock()
    running, most, calls = [0], [0], []

    class Counting:
        def verify(self, h, p):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
                calls.append(p)
            gate.wait(5)
            with lock:
                running[0] -= 1
            if p != "a third good password":
                raise passwords.VerificationError()
            return True

    monkeypatch.setattr(passwords, "_hasher", Counting())
    same = [asyncio.create_task(passwords.check_password(hashed, "a third good password")) for _ in range(4)]
    wrong = [asyncio.create_task(passwords.check_password(hashed, f"wrong password {i}")) for i in range(3)]
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.gather(*same) == [True] * 4
    assert await asyncio.gather(*wrong) == [False] * 3
    assert most[0] == 1
    assert calls.count("a third good password") == 1 and len(calls) == 4
    assert passwords._checking == {}
