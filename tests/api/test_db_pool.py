"""Connections are pooled: a worker thread's loop and the CLI reuse theirs instead of connecting per query."""

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

from portal import db
from portal.dicom import samples
from portal.tables import Project
from tests.helpers import make_project


def _in_worker_thread(fn):
    """Run fn() in a new thread, as a queue consumer thread runs its tasks (its own loop via runner.run)."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("v", fn()))
    t.start()
    t.join()
    return out["v"]


async def test_worker_thread_reuses_its_connections(app, settings):
    from portal.tasks import runner

    engine = Project._meta.db
    if settings.database_kind == "postgres":
        probe = "SELECT pg_backend_pid() AS c"
    else:
        # SQLite: a connection-local temp table tells one connection from another.
        probe = "SELECT COUNT(*) AS c FROM sqlite_temp_master"

    def work():
        seen = []
        for i in range(30):
            if settings.database_kind == "sqlite" and i == 0:
                runner.run(Project.raw("CREATE TEMP TABLE IF NOT EXISTS mark (x INTEGER)"))
            seen.append(runner.run(Project.raw(probe))[0]["c"])
        runner.run(db.close_pool(engine))
        return seen

    seen = _in_worker_thread(work)
    if settings.database_kind == "postgres":
        assert len(set(seen)) <= 2, f"30 queries used {len(set(seen))} server connections"
    else:
        assert set(seen) == {1}, "a query ran on a connection other than the first one"


async def _sessions(settings) -> int:
    """Sessions ever opened to the test's database (PostgreSQL counts them per database)."""
    import asyncpg

    params = settings.postgres_params()
    con = await asyncpg.connect(**{**params, "database": "postgres"})
    try:
        return await con.fetchval("SELECT sessions FROM pg_stat_database WHERE datname = $1", params["database"])
    finally:
        await con.close()


async def test_cli_ingest_uses_a_pool(app, settings, lb_env, tmp_path):
    if settings.database_kind != "postgres":
        pytest.skip("counts server sessions: PostgreSQL only (SQLite's pool is checked above)")
    await make_project("cli")
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(12):
        samples.restamp(samples.sample_path("CT_small.dcm"), folder / f"{i}.dcm")
    await db.close_pool()
    before = await _sessions(settings)
    out = subprocess.run([sys.executable, "-m", "portal.cli", "ingest", str(folder), "--project", "cli"],
                         env={**os.environ, **lb_env}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "12 stored" in out.stdout
    for _ in range(50):  # a backend reports its session to the statistics when it ends
        opened = await _sessions(settings) - before - 1  # minus our own counting connection
        if opened > 0:
            break
        await asyncio.sleep(0.1)
    # One pool of at most POOL_MAX connections, not one connection per query (44 for 20 files before).
    assert 0 < opened <= db.PooledPostgresEngine.POOL_MAX, opened
