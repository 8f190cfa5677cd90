"""The ingest writers' turn across processes (portal/archive/writer.py): a lock file beside the database."""

from __future__ import annotations

import fcntl
import os
import sqlite3

from portal import db
from portal.archive import writer


def test_the_lock_file_lies_beside_the_database(tmp_path):
    for factory in (None, db._dict_factory):  # plain rows, and the pooled connections' dict rows
        path = tmp_path / f"x-{bool(factory)}.sqlite3"
        conn = sqlite3.connect(path)
        conn.row_factory = factory
        fd = writer._turn(conn)
        try:
            assert (tmp_path / f"{path.name}-ingest.lock").exists()
            other = os.open(tmp_path / f"{path.name}-ingest.lock", os.O_RDWR)
            try:  # held: another process's writer waits for it
                try:
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    raise AssertionError("the turn was not held")
                except BlockingIOError:
                    pass
                fcntl.flock(fd, fcntl.LOCK_UN)
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: taken at once
            finally:
                os.close(other)
        finally:
            conn.close()
    assert writer._turn(sqlite3.connect(":memory:")) is None
    assert not list(tmp_path.glob("file*"))
