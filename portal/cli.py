"""The `lightbox` command: serve, worker, migrate, users and projects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import click

from portal import cli_remote, db, settings as settings_mod
from portal.errors import LightboxError


def _setup() -> settings_mod.Settings:
    """Load settings from the environment and point the tables and queue at them."""
    settings = settings_mod.load()
    settings_mod.use(settings)
    db.configure(settings)
    from portal.tasks import queue

    queue.configure(settings)
    queue.load_tasks()  # so that what the CLI ingests is queued for inference too
    return settings


def _run(coro):
    """Run a domain coroutine; domain errors become a clear message and exit status 1."""

    async def run_and_close():
        try:
            return await coro
        finally:
            from portal.tables import Project

            # Closing pooled SQLite connections checkpoints the WAL into the database file.
            await db.close_pool(Project._meta.db)

    try:
        return asyncio.run(run_and_close())
    except LightboxError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        sys.exit(1)


@click.group()
@click.option("--url", envvar="LIGHTBOX_URL", default=None, metavar="URL",
              help="Run ingest, export and import on this remote server (through the Python client).")
@click.option("--token", envvar="LIGHTBOX_TOKEN", default=None, metavar="TOKEN", help="API token for --url.")
@click.pass_context
def main(ctx: click.Context, url: str | None, token: str | None) -> None:
    """Lightbox: a browser portal for medical images."""
    ctx.obj = {"url": url, "token": token}  # see portal/cli_remote.py
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
def migrate() -> None:
    """Apply pending database migrations."""
    _setup()
    _run(db.migrate())
    click.echo("database is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="Queue consumer threads (0 = none).")
@click.option("--dicom-port", default=None, type=int, help="Also run a DICOM C-STORE receiver on this port.")
@click.option("--dicom-default-project", default=None, metavar="NAME",
              help="Project for C-STORE calls whose called AE title names no project (else they are rejected).")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Web server processes sharing the port (one per CPU core uses them all); the first also runs "
                   "the queue consumer threads and the C-STORE receiver.")
@click.option("--handoff-fd", default=None, type=int, hidden=True)  # set for the other processes of --processes
def serve(host: str, port: int, workers: int, dicom_port: int | None, dicom_default_project: str | None,
          processes: int, handoff_fd: int | None) -> None:
    """Serve the portal and APIs, with queue consumer threads in the same process."""
    import uvicorn

    from portal import bootstrap, heap, web_processes
    from portal.app import create_app
    from portal.tasks import queue

    heap.return_freed_memory()
    settings = _setup()

    @asynccontextmanager
    async def started(_app):
        heap.freeze_startup_objects()  # entered last: everything start-up made is there
        yield

    if handoff_fd is not None:  # one of the other web processes of --processes: requests only
        web_processes.Server(uvicorn.Config(create_app(settings, lifespans=[started]), log_level="info",
                                            timeout_graceful_shutdown=30),
                             inbox=socket.socket(fileno=handoff_fd)).run()
        return
    _run(db.migrate())
    click.echo(_run(bootstrap.ensure_admin(settings)))
    receiver = None
    if dicom_port:
        from portal import dimse, projects

        if dicom_default_project and _run(projects.get(dicom_default_project)) is None:
            click.echo(f"error: --dicom-default-project: no project named '{dicom_default_project}'", err=True)
            sys.exit(1)
        receiver = dimse.Receiver(host, dicom_port, default_project=dicom_default_project)
    # The receiver and the queue consumer live inside the app's lifespan: they start after the database is
    # configured and stop, letting transfers and tasks finish, before the pool closes. The consumer's threads
    # run tasks on loops (and database pools) of their own, never on the server's loop.
    @asynccontextmanager
    async def consuming(_app):
        consumer = queue.start_embedded(workers)
        try:
            yield
        finally:
            # In a thread: stopping waits for running tasks, whose queries need this loop to stay free.
            await asyncio.to_thread(queue.stop_embedded, consumer)

    app = create_app(settings, lifespans=[*([receiver.serving] if receiver else []), consuming, started])
    config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=30)
    server, others = uvicorn.Server(config), []
    if processes > 1:
        # One listening socket; this process deals its connections to the web processes in turn
        # (portal/web_processes.py). Bound here, so a port in use fails at once.
        listener, peers = _listening(host, port), []
        for _ in range(processes - 1):
            mine, theirs = web_processes.pair()
            others.append(_web_process(host, port, theirs))
            theirs.close()
            peers.append(mine)
        server = web_processes.Server(config, listener=listener, peers=peers)
    click.echo(f"Lightbox is serving on http://{host}:{port} ({settings.database_kind} database, "
               f"{settings.queue_kind} queue, {workers} worker thread(s), {processes} web process(es))")
    # uvicorn owns SIGTERM/SIGINT: it stops accepting, lets in-flight requests finish, runs the lifespan's
    # shutdown (consumer, receiver, pool), then returns; the other web processes are then stopped alike.
    try:
        server.run()
    finally:
        for proc in others:
            proc.terminate()
        for proc in others:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()


def _listening(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def _die_with_parent() -> None:
    """In a child before exec (Linux): SIGTERM when the parent dies, even by kill -9, so none is orphaned."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _web_process(host: str, port: int, handoff: socket.socket) -> subprocess.Popen:
    """Another web process of `serve --processes`, serving the connections handed to it over `handoff` (no
    consumer, no receiver)."""
    fd = handoff.fileno()
    return subprocess.Popen([sys.executable, "-m", "portal.cli", "serve", "--host", host, "--port", str(port),
                             "--workers", "0", "--handoff-fd", str(fd)], pass_fds=[fd], preexec_fn=_die_with_parent)


@main.command()
@click.option("--threads", default=2, show_default=True, type=int)
@click.option("--periodic/--no-periodic", default=True, show_default=True,
              help="Run periodic (scheduled) tasks; enable on exactly one worker.")
def worker(threads: int, periodic: bool) -> None:
    """Run queue consumers only (scale out: as many machines as needed, periodic on one)."""
    from portal import heap
    from portal.tasks import maintenance, queue

    heap.return_freed_memory()
    _setup()
    queue.load_tasks()
    maintenance.recover_in_background()  # what a crash of this machine's previous worker left
    queue.huey.create_consumer(workers=threads, worker_type="thread", periodic=periodic).run()


@main.group()
def user() -> None:
    """Manage accounts."""


@user.command("create")
@click.argument("username")
@click.option("--password", required=True)
@click.option("--email", default="")
@click.option("--admin", is_flag=True, default=False)
def user_create(username: str, password: str, email: str, admin: bool) -> None:
    from portal.auth import accounts

    _setup()
    u = _run(accounts.create(username, password, email=email, is_admin=admin))
    click.echo(f"created user {u.username}{' (admin)' if admin else ''}")


@main.group()
def project() -> None:
    """Manage projects and their members."""


@project.command("create")
@click.argument("name")
@click.option("--description", default="")
def project_create(name: str, description: str) -> None:
    from portal import projects

    _setup()
    p = _run(projects.create(name, description=description))
    click.echo(f"created project {p.name} with archive '{projects.DEFAULT_ARCHIVE}'")


@project.command("add-member")
@click.argument("name")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["viewer", "reviewer", "senior_reviewer", "manager"]))
def project_add_member(name: str, username: str, role: str) -> None:
    from portal import projects
    from portal.errors import NotFound

    _setup()

    async def go():
        p = await projects.get(name)
        if p is None:
            raise NotFound(f"No project named '{name}'.")
        await projects.set_member(p, username, role)

    _run(go())
    click.echo(f"{username} is {role} in {name}")


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--project", "project_name", required=True)
@click.option("--archive", "archive_name", default=None)
@click.pass_context
def ingest(ctx: click.Context, path: Path, project_name: str, archive_name: str | None) -> None:
    """Ingest DICOM files, folders and zips into a project, with a progress bar and a summary."""
    if cli_remote.wanted(ctx):
        return cli_remote.ingest(ctx, path, project_name, archive_name)
    from collections import Counter

    from portal import projects
    from portal.archive import ingest_path
    from portal.errors import NotFound

    _setup()
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    # Files are named as inside the folder given (as ingest_path names them): a volume's experiment is its
    # folder there, never the server's absolute path.
    name_of = (lambda f: str(f.relative_to(path))) if path.is_dir() else (lambda f: f.name)
    counts: Counter = Counter()
    problems: list[str] = []

    async def go():
        p = await projects.get(project_name)
        if p is None:
            raise NotFound(f"No project named '{project_name}'.")
        archive = await projects.archive(p, archive_name)
        from portal.archive.ingest import ingest_files, is_zip

        def count(results) -> None:
            for r in results:
                counts[r.status] += 1
                if not r.ok:
                    problems.append(f"{r.filename}: {r.status}: {r.reason}")

        with click.progressbar(length=len(files), label=f"Ingesting into {p.name}/{archive.name}",
                               show_pos=True, file=sys.stderr) as bar:
            plain = []
            for f in files:
                if is_zip(f):
                    count(await ingest_path(f, p, archive, filename=name_of(f)))
                    bar.update(1)
                else:
                    plain.append(f)
            # Plain files in chunks: parsing overlaps writing, and each chunk shares the writer's batches.
            for start in range(0, len(plain), 256):
                chunk = plain[start:start + 256]
                count(await ingest_files([(f, name_of(f)) for f in chunk], p, archive))
                bar.update(len(chunk))

    _run(go())
    for line in problems:
        click.echo(line, err=True)
    click.echo(", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in
                         ("stored", "already_stored", "conflict", "rejected")))
    if counts["rejected"] or counts["conflict"]:
        sys.exit(2)


@main.command()
@click.option("--force", is_flag=True, help="Load even when projects already exist.")
def demo(force: bool) -> None:
    """Load demo data (a `demo` project with sample images) into an empty install."""
    from portal import demo as demo_mod

    settings = _setup()
    click.echo(_run(demo_mod.load(settings.data_dir, only_if_empty=not force)))


@main.group()
def model() -> None:
    """AI models: list the installed ones, add one, train the built-in quality model."""


@model.command("list")
def model_list() -> None:
    from portal.inference import models

    _setup()
    found = models.installed()
    if not found:
        click.echo("no models installed")
    for m in found:
        critical = m.get("critical", {})
        outputs = ", ".join(o["name"] for o in m.get("outputs", []))
        click.echo(f"{m['name']} {m['version']}  outputs: {outputs}  critical: {critical.get('output', '-')} "
                   f"< {critical.get('below', '-')}  ({m['dir']})")


@model.command("add")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
def model_add(path: Path) -> None:
    """Install a model directory (manifest.json + model file) into the data dir."""
    import shutil

    from portal.ai import registry

    settings = _setup()
    try:
        manifest = registry.load_manifest(path / "manifest.json")
        registry.load_model(path)  # refuse a model that would fail every job
    except Exception as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    dest = settings.data_dir / "models" / manifest.name / manifest.version
    if dest.exists():
        click.echo(f"error: {manifest.name} {manifest.version} is already installed at {dest}", err=True)
        sys.exit(1)
    shutil.copytree(path, dest)
    click.echo(f"installed {manifest.name} {manifest.version} into {dest}")


@model.command("train")
@click.option("--version", "version", default=None, help="Version of the trained model (default: next patch).")
@click.option("--project", "project_name", default=None, metavar="NAME",
              help="Instead: fine-tune the model on this project's reviewer labels; kept only if it is better.")
def model_train(version: str | None, project_name: str | None) -> None:
    """Train the built-in quality model reproducibly into the data dir (it is then used for new jobs),
    or, with --project, retrain it from that project's reviewers."""
    import subprocess

    from portal.inference import models

    settings = _setup()
    if project_name:
        _retrain(project_name)
        return
    current = models.manifest_for("lightbox-quality")
    if version is None:
        parts = (current or {"version": "1.0.0"})["version"].split(".")
        version = ".".join(parts[:-1] + [str(int(parts[-1]) + 1)]) if current else "1.0.0"
    out = settings.data_dir / "models" / "lightbox-quality" / version
    if out.exists():
        click.echo(f"error: {out} already exists; choose another --version", err=True)
        sys.exit(1)
    # Train outside the model folders and move the finished folder in: an interrupted run leaves nothing the
    # registry could pick up as the version in use.
    work = settings.data_dir / "tmp" / f"train-lightbox-quality-{version}"
    status = subprocess.call([sys.executable, "-m", "portal.ai.train_quality", "--out", str(work)])
    if status == 0:
        import json

        manifest_file = work / "manifest.json"
        manifest = json.loads(manifest_file.read_text())
        manifest["version"] = version  # new jobs use the newest version installed
        manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        work.rename(out)
        click.echo(f"trained lightbox-quality {version} into {out}")
    sys.exit(status)


def _retrain(project_name: str) -> None:
    """A retraining run in this process (as a worker would run it), its progress and outcome printed."""
    from portal.errors import NotFound
    from portal.inference import retrain as retraining
    from portal.tables import Project
    from portal.tasks import runner
    from portal.tasks.inference import run_retrain

    async def begin():
        p = await Project.objects().get(Project.name == project_name)
        if p is None:
            raise NotFound(f"No project named '{project_name}'.", "project_not_found")
        return await retraining.request(p)

    try:
        run = runner.run(begin())
        run_retrain(run["id"], echo=click.echo)
        run = runner.run(retraining.get(run["id"]))
    except LightboxError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        sys.exit(1)
    finally:
        runner.run(db.close_pool(Project._meta.db))
    if run["state"] == retraining.FAILED:
        click.echo(f"error: {run['error']}", err=True)
        sys.exit(1)
    c = run["comparison"]
    for name in c["outputs"]:
        click.echo(f"  {name:<12} AUC {c['base']['auc'].get(name, float('nan')):.3f} → {c['new']['auc'].get(name, float('nan')):.3f}")
    if run["registered"]:
        click.echo(f"{run['model_name']} {run['new_version']} is better on {c['held_out_series']} held-out series "
                   f"(mean AUC {c['base']['macro']:.3f} → {c['new']['macro']:.3f}) and now serves {project_name}")
    else:
        click.echo(f"not better on {c['held_out_series']} held-out series (mean AUC {c['base']['macro']:.3f} → "
                   f"{c['new']['macro']:.3f}): {run['model_name']} {run['base_version']} stays in use")


# --- import/export (portal/exchange) ---------------------------------------------------------------


def _exchange_run(project_name: str, kind: str, create_project: bool = False, **create) -> dict:
    """Create a run of `kind` (so it shows in the project's sync history) and execute it here, with a bar."""
    from portal import projects
    from portal.errors import NotFound
    from portal.exchange import runs

    state = {"bar": None, "phase": None}

    def show(phase: str, done: int, total: int) -> None:
        if phase != state["phase"]:
            if state["bar"] is not None:
                state["bar"].render_finish()
            state["phase"] = phase
            state["bar"] = click.progressbar(length=max(total, 1), label=phase.capitalize(), show_pos=True,
                                             file=sys.stderr) if total else None
            if state["bar"] is None:
                click.echo(phase.capitalize() + "…", err=True)
        bar = state["bar"]
        if bar is not None and total:
            bar.length = total
            bar.update(done - bar.pos)

    async def go():
        p = await projects.get(project_name)
        created = False
        if p is None and kind == "import" and create_project:
            from portal.exchange import importer

            p, created = await importer.create_project_for(create["path"], project_name), True
        if p is None:
            raise NotFound(f"No project named '{project_name}'" + (" (add --create to create it)." if kind == "import"
                                                                   else "."))
        run = await runs.create(p, kind, trigger="cli", **create)
        from portal.tasks import runner

        run = await runs.execute(run["id"], also=show, worker=runner.worker_id())
        if created and run["state"] != "done":
            from portal.exchange import importer

            await importer.delete_project(p)  # refused: leave the install as it was
        return run

    run = _run(go())
    if state["bar"] is not None:
        state["bar"].render_finish()
    for problem in run["problems"]:
        where = f"row {problem['row']}" if str(problem["row"]).isdigit() else problem["row"]
        click.echo(f"{where}{' (' + problem['field'] + ')' if problem['field'] else ''}: {problem['problem']}",
                   err=True)
    if run["state"] != "done":
        click.echo(f"error: {run['message']}", err=True)
        sys.exit(1)
    click.echo(run["message"])
    return run


@main.command("export")
@click.argument("project_name", metavar="PROJECT")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default=None,
              help="Default: from --to's suffix, else the project's export format.")
@click.option("--to", "to", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: the project's export path).")
@click.option("--deidentify", is_flag=True, help="De-identify (DICOM PS3.15 basic profile) for sharing outside the team.")
@click.option("--remap-uids", is_flag=True, help="With --deidentify: replace UIDs consistently instead of keeping them.")
@click.option("--shift-dates", is_flag=True,
              help="With --deidentify: keep the time line, every date of a patient moved by the same days.")
@click.option("--clean-descriptors", is_flag=True,
              help="With --deidentify: keep descriptions and comments, with the patient's name and IDs cut out.")
@click.pass_context
def export_cmd(ctx: click.Context, project_name: str, fmt: str | None, to: Path | None, deidentify: bool,
               remap_uids: bool, shift_dates: bool, clean_descriptors: bool) -> None:
    """Export a project's state (frames, every decision, form submissions, AI results) atomically, with a backup.
    With --url, the file is downloaded to --to (default: the current folder)."""
    if cli_remote.wanted(ctx):
        return cli_remote.export(ctx, project_name, fmt, to, deidentify, remap_uids)
    _setup()
    run = _exchange_run(project_name, "export", fmt=fmt or "", path=str(to.resolve()) if to else "",
                        options={"deidentify": deidentify, "remap_uids": remap_uids, "shift_dates": shift_dates,
                                 "clean_descriptors": clean_descriptors})
    click.echo(run["path"])


@main.command("import")
@click.argument("project_name", metavar="PROJECT")
@click.option("--from", "source", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A CSV (MIQA columns) or JSON file; relative file_locations resolve against its folder.")
@click.option("--create", "create_project", is_flag=True,
              help="Create the project first if it does not exist (with the review vocabulary of a Lightbox export).")
@click.pass_context
def import_cmd(ctx: click.Context, project_name: str, source: Path, create_project: bool) -> None:
    """Validate a CSV or JSON file (every problem reported, nothing changed), then merge it into the project.
    With --url, the file is uploaded to the remote server."""
    if cli_remote.wanted(ctx):
        return cli_remote.import_(ctx, project_name, source, create_project)
    _setup()
    _exchange_run(project_name, "import", create_project=create_project, path=str(source.resolve()))



@main.group()
def storage() -> None:
    """Where image files, AI assets and export copies are stored (LIGHTBOX_STORAGE_URL)."""


@storage.command("migrate")
@click.option("--to", "to", required=True, metavar="URL",
              help="The new store: s3://BUCKET[/PREFIX]?endpoint=URL, or a folder.")
def storage_migrate(to: str) -> None:
    """Copy every stored file into the store at URL, verifying each MD5; run it again to resume."""
    from portal import storage as storage_mod
    from portal.storage import migrate as migrate_mod
    from portal.tables import Instance

    settings = _setup()
    src = storage_mod.current()
    dest = storage_mod.open_store(to)
    expected = {r["file_key"]: r["md5"] for r in _run(Instance.select(Instance.file_key, Instance.md5))}
    journal = migrate_mod.journal_path(settings.data_dir, dest.url)
    with click.progressbar(length=sum(1 for _ in src.keys()), label=f"Copying to {to}", show_pos=True,
                           file=sys.stderr) as bar:
        try:
            result = migrate_mod.migrate(src, dest, journal, expected, on_progress=bar.update)
        except LightboxError as exc:
            click.echo(f"error: {exc.detail}", err=True)
            sys.exit(1)
    for line in result.failed:
        click.echo(line, err=True)
    click.echo(f"{result.copied} copied and verified ({result.bytes} bytes), {result.already} verified before, "
               f"{len(result.failed)} failed, of {result.total}")
    if result.failed:
        click.echo("run the same command again to retry the failed files", err=True)
        sys.exit(2)
    click.echo(f"all files are in {to}: set LIGHTBOX_STORAGE_URL to it and restart every lightbox process")


@main.group()
def node() -> None:
    """Remote DICOM nodes: where series are sent, and C-MOVE destinations."""


@node.command("add")
@click.argument("name")
@click.option("--aet", required=True, help="The node's AE title.")
@click.option("--host", required=True)
@click.option("--port", required=True, type=int)
@click.option("--dicomweb-url", default="", help="Send over STOW-RS to this DICOMweb root instead of C-STORE.")
def node_add(name: str, aet: str, host: str, port: int, dicomweb_url: str) -> None:
    from portal.network import nodes

    _setup()
    n = _run(nodes.create(name, ae_title=aet, host=host, port=port, dicomweb_url=dicomweb_url))
    click.echo(f"added node {n.name}: {n.ae_title} at {n.host}:{n.port}"
               + (f", DICOMweb {n.dicomweb_url}" if n.dicomweb_url else ""))


@node.command("list")
def node_list() -> None:
    from portal.network import nodes

    _setup()
    rows = _run(nodes.list_nodes())
    if not rows:
        click.echo("no nodes (add one with: lightbox node add NAME --aet AET --host H --port P)")
    for n in rows:
        click.echo(f"{n.name}\t{n.ae_title}\t{n.host}:{n.port}" + (f"\t{n.dicomweb_url}" if n.dicomweb_url else ""))


@node.command("echo")
@click.argument("name")
def node_echo(name: str) -> None:
    """C-ECHO the node; exit status 1 when it does not answer."""
    from portal.network import nodes

    _setup()
    result = nodes.echo(_run(nodes.get(name)))
    click.echo(result.detail, err=not result.ok)
    sys.exit(0 if result.ok else 1)


@node.command("remove")
@click.argument("name")
def node_remove(name: str) -> None:
    from portal.network import nodes

    _setup()
    _run(nodes.delete(name))
    click.echo(f"removed node {name}")


@main.group()
def archive() -> None:
    """A project's archives (each project has 'default')."""


@archive.command("create")
@click.argument("project_name", metavar="PROJECT")
@click.argument("name")
def archive_create(project_name: str, name: str) -> None:
    from portal import projects
    from portal.errors import NotFound

    _setup()

    async def go():
        p = await projects.get(project_name)
        if p is None:
            raise NotFound(f"No project named '{project_name}'.")
        return await projects.create_archive(p, name)

    click.echo(f"created archive {_run(go()).name} in {project_name}")


@archive.command("list")
@click.argument("project_name", metavar="PROJECT")
def archive_list(project_name: str) -> None:
    from portal import projects
    from portal.errors import NotFound

    _setup()

    async def go():
        p = await projects.get(project_name)
        if p is None:
            raise NotFound(f"No project named '{project_name}'.")
        return await projects.archives(p)

    for a in _run(go()):
        click.echo(a.name)


if __name__ == '__main__':
    main()
