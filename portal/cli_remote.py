"""The `lightbox` command against a remote server (`--url`/`--token`, or LIGHTBOX_URL/LIGHTBOX_TOKEN):
`ingest`, `export` and `import` through the Python client (clients/python), so one CLI serves both sides."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click


def wanted(ctx: click.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("url"))


@contextmanager
def client(ctx: click.Context):
    """A client for --url; its errors become `error: …` and exit status 1."""
    opts = ctx.find_root().obj or {}
    if not opts.get("token"):
        click.echo("error: --url needs an API token: --token TOKEN or LIGHTBOX_TOKEN (get one from "
                   "POST /api-token-auth/).", err=True)
        sys.exit(1)
    try:
        import httpx
        import lightbox_client
    except ImportError:
        click.echo("error: the remote mode needs the Python client: pip install ./clients/python", err=True)
        sys.exit(1)
    try:
        with lightbox_client.Client(opts["url"], token=opts["token"]) as c:
            yield c
    except lightbox_client.RunFailed as exc:
        for problem in getattr(exc.run, "problems", None) or []:
            where = f"row {problem['row']}" if str(problem.get("row", "")).isdigit() else problem.get("row", "")
            click.echo(f"{where}{' (' + problem['field'] + ')' if problem.get('field') else ''}: "
                       f"{problem.get('problem', '')}", err=True)
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except lightbox_client.LightboxError as exc:
        click.echo(f"error: {getattr(exc, 'detail', '') or exc}", err=True)
        sys.exit(1)
    except httpx.HTTPError as exc:  # the server cannot be reached, or stopped answering
        click.echo(f"error: {opts['url']}: {exc}", err=True)
        sys.exit(1)


def ingest(ctx: click.Context, path: Path, project: str, archive: str | None) -> None:
    with client(ctx) as c:
        result = c.upload([path], project, archive)
    for f in result.failed:
        click.echo(f"{f.get('filename')}: {f.get('status')}: {f.get('reason')}", err=True)
    click.echo(", ".join(f"{result.counts.get(s, 0)} {s.replace('_', ' ')}" for s in
                         ("stored", "already_stored", "conflict", "rejected")))
    if result.rejected or result.conflict:
        sys.exit(2)


def export(ctx: click.Context, project: str, fmt: str | None, to: Path | None, deidentify: bool,
           remap_uids: bool) -> None:
    """Without --to the file lands in the current folder under the server's name for it."""
    if fmt is None and to is not None and to.suffix.lower() in (".json", ".csv"):
        fmt = to.suffix.lower().lstrip(".")
    with client(ctx) as c:
        run = c.finished(c.wait(c.start_export(project, fmt, deidentify=deidentify, remap_uids=remap_uids)))
        written = c.run_file(run, to or Path.cwd())
    click.echo(run.message)
    click.echo(str(written))


def import_(ctx: click.Context, project: str, source: Path, create_project: bool) -> None:
    if create_project:
        click.echo("error: --create works on the server itself only; create the project there first "
                   "(lightbox project create, or POST /api/v1/projects).", err=True)
        sys.exit(1)
    with client(ctx) as c:
        run = c.import_(project, source)
    click.echo(run.message)
