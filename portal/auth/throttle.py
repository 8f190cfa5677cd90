"""Sign-in throttling that slows guessing without locking anyone out, kept in memory (no query per attempt).

- Per account: the first few failures are free; after that each further attempt must wait a delay that doubles
  (1 s, 2 s, 4 s … at most a minute). The delay is not applied from an address this account has signed in from
  before (unless that address itself keeps failing), so an attacker elsewhere cannot keep the owner out.
- Per address: past many failures, each attempt from it waits a growing pause *before* its password is checked,
  but is then answered on its merits: another account's correct credentials are slowed, never refused.

Counters are per process and forgotten on restart; the audit log keeps every failure for the record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from portal.auth.recent import Recent

ACCOUNT_FREE = 3  # failures for one account before delays start
ADDRESS_FREE = 20  # failures from one address before its attempts are paused
MAX_DELAY = 60.0  # seconds: the longest an account's next attempt must wait
MAX_PAUSE = 5.0  # seconds: the longest pause for an attempt from a noisy address
FORGET_AFTER = 15 * 60.0  # a counter with no failure for this long starts again from zero
KNOWN_FOR = 30 * 24 * 3600.0  # how long a successful (account, address) pair stays "known"


@dataclass(frozen=True)
class _Count:
    failures: int = 0
    last: float = 0.0


def _bump(now: float):
    return lambda row: _Count((row.failures if row else 0) + 1, now)


_accounts: Recent[_Count] = Recent(FORGET_AFTER)
_pairs: Recent[_Count] = Recent(FORGET_AFTER)
_addresses: Recent[_Count] = Recent(FORGET_AFTER)
_known: Recent[bool] = Recent(KNOWN_FOR)  # (account, address) pairs that signed in


def _delay(row: _Count | None) -> float:
    if row is None or row.failures < ACCOUNT_FREE:
        return 0.0
    return min(2.0 ** (row.failures - ACCOUNT_FREE), MAX_DELAY)


def _pause(row: _Count | None) -> float:
    if row is None or row.failures < ADDRESS_FREE:
        return 0.0
    return min(0.25 * (row.failures - ADDRESS_FREE + 1), MAX_PAUSE)


def check(username: str, client: str) -> tuple[float, float]:
    """(seconds this attempt must still wait, seconds to pause before checking it).

    A wait > 0 means "answer 429 with Retry-After"; a pause is slept before the password is checked.
    """
    now = time.monotonic()
    key = username.lower()
    known = _known.get((key, client), now) is not None
    waits = []
    pair = _pairs.get((key, client), now)
    waits.append(pair.last + _delay(pair) - now if pair else 0.0)
    if not known:
        account = _accounts.get(key, now)
        waits.append(account.last + _delay(account) - now if account else 0.0)
    pause = 0.0 if known else _pause(_addresses.get(client, now))
    return max(0.0, *waits), pause


def failed(username: str, client: str) -> None:
    now = time.monotonic()
    key = username.lower()
    _accounts.update(key, _bump(now), now)
    _pairs.update((key, client), _bump(now), now)
    _addresses.update(client, _bump(now), now)


def succeeded(username: str, client: str) -> None:
    """The owner got in from here: this address starts again from zero and becomes known for the account.
    The account's own count is left to decay: the owner signing in must not give an attacker fresh guesses."""
    key = username.lower()
    _pairs.pop((key, client))
    _known.put((key, client), True)


def snapshot() -> dict:
    """What administrators see: accounts and addresses with recent failures, and the delays they are under."""
    now = time.monotonic()
    accounts = [{"username": k, "failures": r.failures, "seconds_ago": int(now - r.last),
                 "next_attempt_in": max(0, int(r.last + _delay(r) - now + 0.999))} for k, r in _accounts.items(now)]
    addresses = [{"client": k, "failures": r.failures, "seconds_ago": int(now - r.last), "pause": _pause(r)}
                 for k, r in _addresses.items(now)]
    accounts.sort(key=lambda a: -a["failures"])
    addresses.sort(key=lambda a: -a["failures"])
    return {"accounts": accounts[:100], "addresses": addresses[:100]}


def reset() -> None:
    """Forget everything (tests; an administrator after an incident)."""
    for table in (_accounts, _pairs, _addresses, _known):
        table.clear()
