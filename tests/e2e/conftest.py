"""End-to-end fixtures: a real `lightbox serve` process per module and Debian's chromium."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import itertools
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD, fresh_env

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # Playwright cannot download its browsers here: drive Debian's chromium.
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, url: str, env: dict, proc: subprocess.Popen, data_dir: str, log_path: str):
        self.url, self.env, self.proc, self.data_dir, self.log_path = url, env, proc, data_dir, log_path

    def log_size(self) -> int:
        return os.path.getsize(self.log_path)

    def log_since(self, offset: int, limit: int = 20000) -> str:
        """What the server logged from `offset` on (its requests, with their statuses), at most `limit` bytes
        from the end."""
        with open(self.log_path, "rb") as f:
            f.seek(max(offset, os.path.getsize(self.log_path) - limit))
            return f.read().decode(errors="replace")

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        """Call the server's API as the admin (CAD4TB-style headers)."""
        headers = {"X-USERNAME": "admin", "X-PASSWORD": ADMIN_PASSWORD, **kw.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kw)

    def sql(self, query: str, *params) -> list[tuple]:
        """Run one statement (`?` placeholders) on the server's own database and return its rows: for rows no
        page or API call makes on demand, such as a model's results without running the model."""
        from portal import settings as settings_mod

        settings = settings_mod.load(self.env)
        if settings.database_kind != "postgres":
            # As Piccolo stores them on SQLite: UTC, str() form.
            params = tuple(str(p.astimezone(dt.timezone.utc)) if isinstance(p, dt.datetime) else p for p in params)
            con = sqlite3.connect(settings.sqlite_path, timeout=30)
            try:
                with con:
                    return con.execute(query, params).fetchall()
            finally:
                con.close()
        import asyncpg

        numbers = itertools.count(1)
        query = re.sub(r"\?", lambda _: f"${next(numbers)}", query)

        async def go():
            con = await asyncpg.connect(**settings.postgres_params())
            try:
                return [tuple(r) for r in await con.fetch(query, *params)]
            finally:
                await con.close()

        # In a thread: Playwright's sync API keeps an event loop running in this one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "portal.cli", *args], env={**os.environ, **self.env},
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout


@pytest.fixture(scope="module")
def live_server_env() -> dict:
    """Extra environment for the module's server (a test module overrides it, e.g. with LIGHTBOX_SMTP_URL)."""
    return {}


@pytest.fixture(scope="module")
def live_server(template, tmp_path_factory, live_server_env):
    data_dir = tmp_path_factory.mktemp("live") / "data"
    env = {**fresh_env(template, data_dir), **live_server_env}
    port = _free_port()
    log = open(data_dir.parent / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "portal.cli", "serve", "--port", str(port), "--workers", "1"],
                            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            raise RuntimeError("server did not start:\n" + (data_dir.parent / "server.log").read_text())
        time.sleep(0.2)
    yield LiveServer(url, env, proc, str(data_dir), str(data_dir.parent / "server.log"))
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test reports what the server did meanwhile and where the page stood: a CI run that fails
    once in many can then be read afterwards instead of guessed at."""
    outcome = yield
    report = outcome.get_result()
    server = item.funcargs.get("live_server") if hasattr(item, "funcargs") else None
    if report.when != "call" or not report.failed or not isinstance(server, LiveServer):
        return
    offset = getattr(item, "_server_log_offset", 0)
    report.sections.append(("live server log during the test", server.log_since(offset)))
    page = item.funcargs.get("page")
    if page is not None:
        try:
            text = page.evaluate("() => document.querySelector('main')?.innerText || document.body.innerText")
            report.sections.append(("page at failure", f"{page.url}\n{text[:4000]}"))
        except Exception as exc:  # the page may be gone with the failure
            report.sections.append(("page at failure", f"{page.url} (not readable: {exc})"))


@pytest.fixture(autouse=True)
def _mark_server_log(request):
    """Where the module server's log stood when the test began (for the failure report above)."""
    if "live_server" in request.fixturenames:
        request.node._server_log_offset = request.getfixturevalue("live_server").log_size()
    yield


def sign_out(page) -> None:
    """Drop the browser's cookies, after leaving the page: a request of the page still in flight (a viewer
    loading its images) would otherwise set a fresh CSRF cookie over the one the next sign-in form was made
    with, and that sign-in would be refused (403)."""
    page.goto("about:blank")
    page.context.clear_cookies()


def sign_in(page, server: LiveServer, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/projects")
