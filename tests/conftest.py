"""Test fixtures: a fresh data dir and database per test, on SQLite + SqliteHuey or PostgreSQL + RedisHuey.

The backend follows LIGHTBOX_TEST_DATABASE_URL / LIGHTBOX_TEST_QUEUE_URL (set by `make test-postgres`):
a fresh database per run is created from that server and dropped at the end. LIGHTBOX_TEST_STORAGE=s3 (set by
`make test-s3`) stores files in a real S3-protocol server: moto's server mode, started here on a free port
(or the one LIGHTBOX_TEST_S3_ENDPOINT names), with a bucket per run and a prefix per test. Migrations run once
into a template (a SQLite file, or a PostgreSQL template database); each test gets a copy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

# Settings are read at import time by piccolo_conf and the queue module: give them a scratch dir
# before anything from `portal` is imported.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="lightbox-tests-"))
os.environ["LIGHTBOX_DATA_DIR"] = str(_SESSION_DIR / "bootstrap")
os.environ.pop("LIGHTBOX_DATABASE_URL", None)
os.environ.pop("LIGHTBOX_QUEUE_URL", None)

PG_SERVER = os.environ.get("LIGHTBOX_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("LIGHTBOX_TEST_QUEUE_URL", "")
RUN_ID = uuid.uuid4().hex[:8]
S3 = os.environ.get("LIGHTBOX_TEST_STORAGE", "") == "s3"
S3_BUCKET = f"lightbox-test-{RUN_ID}"
# Credentials of the test S3 server (moto takes any); the servers the tests start inherit them.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "lightbox-test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "lightbox-test-secret")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
_s3_endpoint = ""


def s3_endpoint() -> str:
    """The S3 server of this run (moto_server started on first use, stopped when the run ends)."""
    global _s3_endpoint
    if _s3_endpoint:
        return _s3_endpoint
    import atexit
    import socket
    import time

    endpoint = os.environ.get("LIGHTBOX_TEST_S3_ENDPOINT", "")
    if not endpoint:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        moto = Path(sys.executable).with_name("moto_server")
        proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        atexit.register(proc.terminate)
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
    _s3_endpoint = endpoint
    return endpoint


def s3_url(prefix: str) -> str:
    return f"s3://{S3_BUCKET}/{prefix}?endpoint={s3_endpoint()}"
SECRET = "test-secret-key-not-for-production"
ADMIN_PASSWORD = "admin-password-123"


def _db_url(name: str) -> str:
    u = urlparse(PG_SERVER)
    return urlunparse(u._replace(path=f"/{name}"))


def _psql(sql: str) -> None:
    """Run SQL on the server's maintenance database (CREATE/DROP DATABASE cannot run in a transaction)."""
    import asyncpg

    async def go():
        u = urlparse(PG_SERVER)
        con = await asyncpg.connect(host=u.hostname, port=u.port or 5432, user=u.username or "postgres",
                                    password=u.password, database=(u.path or "/postgres").lstrip("/") or "postgres")
        try:
            await con.execute(sql)
        finally:
            await con.close()

    # In a thread: Playwright's sync API may be running an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()


def _env_for(data_dir: Path, db_name: str | None) -> dict:
    env = {"LIGHTBOX_DATA_DIR": str(data_dir), "LIGHTBOX_SECRET_KEY": SECRET,
           "LIGHTBOX_ADMIN_PASSWORD": ADMIN_PASSWORD, "LIGHTBOX_BASE_URL": "http://lightbox.test"}
    if db_name:
        env["LIGHTBOX_DATABASE_URL"] = _db_url(db_name)
    if S3:
        env["LIGHTBOX_STORAGE_URL"] = s3_url(f"t-{uuid.uuid4().hex[:12]}")
    if REDIS_URL:
        # One Redis server, many installs: each test's queue has its own name.
        env["LIGHTBOX_QUEUE_URL"] = REDIS_URL
        env["LIGHTBOX_QUEUE_NAME"] = f"lightbox-test-{uuid.uuid4().hex[:12]}"
    return env


_created_databases: list[str] = []


@pytest.fixture(scope="session")
def template() -> dict:
    """Migrate once into a template the tests copy: {'sqlite': path} or {'postgres': dbname}."""
    tmpl_dir = _SESSION_DIR / "template"
    tmpl_dir.mkdir()
    db_name = None
    if PG_SERVER:
        db_name = f"lightbox_tmpl_{RUN_ID}"
        _psql(f'CREATE DATABASE "{db_name}"')
        _created_databases.append(db_name)
    env = {**os.environ, **_env_for(tmpl_dir, db_name)}
    out = subprocess.run([sys.executable, "-m", "portal.cli", "migrate"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    yield {"postgres": db_name} if db_name else {"sqlite": tmpl_dir / "lightbox.sqlite3"}
    for name in reversed(_created_databases):
        try:
            _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:  # leave the server usable even if one drop fails
            print(f"could not drop {name}: {exc}", file=sys.stderr)


def fresh_env(template: dict, data_dir: Path) -> dict:
    """A new data dir with a copy of the migrated database; returns the LIGHTBOX_* environment for it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db_name = None
    if "postgres" in template:
        db_name = f"lightbox_t_{RUN_ID}_{uuid.uuid4().hex[:8]}"
        _psql(f'CREATE DATABASE "{db_name}" TEMPLATE "{template["postgres"]}"')
        _created_databases.append(db_name)
    else:
        # The backup API copies what is still in the WAL file too.
        with sqlite3.connect(template["sqlite"]) as src, sqlite3.connect(data_dir / "lightbox.sqlite3") as dst:
            src.backup(dst)
    return _env_for(data_dir, db_name)


@pytest.fixture
def lb_env(template, tmp_path) -> dict:
    return fresh_env(template, tmp_path / "data")


@pytest.fixture
def settings(lb_env):
    from portal import settings as settings_mod

    return settings_mod.load(lb_env)


@pytest.fixture
async def app(settings):
    from portal.app import create_app
    from portal.tasks.queue import huey

    from portal.auth import throttle

    application = create_app(settings)
    throttle.reset()  # sign-in counters live in memory: each test starts with none
    huey.flush()
    yield application
    huey.flush()  # leave nothing behind in a shared Redis
    if settings.database_kind == "postgres":
        # Each test's database is dropped at the end; close what this test opened.
        from portal.tables import User

        engine = User._meta.db
        if getattr(engine, "pool", None):
            await engine.close_connection_pool()


@pytest.fixture
async def client(app):
    import httpx

    # Same event loop as the test, no lifespan: queries open their own connections.
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def consumer(app):
    """A real queue consumer (two threads) in this process, as `lightbox serve` runs one; no periodic tasks."""
    from portal.tasks.queue import EmbeddedConsumer, huey, load_tasks

    load_tasks()
    c = EmbeddedConsumer(huey, workers=2, worker_type="thread", periodic=False, check_worker_health=False)
    c.start()
    yield c
    c.stop(graceful=True)


def pytest_collection_modifyitems(items):
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread once
    its session browser has started, and async tests cannot run after that."""
    items.sort(key=lambda item: "/tests/e2e/" in str(item.fspath))
