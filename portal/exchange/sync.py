"""Scheduled sync: the Lightbox side of the seed's cycle, for projects that set "every N minutes".

A cycle: if the import file changed since Lightbox last wrote it (the other repository wrote new frames or
decisions into it), back it up and import it first, so nothing the other side wrote is overwritten; then
export → backup → import of the same file (a merge that adds nothing, and proves the file reads back).
"""

from __future__ import annotations

import datetime as dt

from portal import clock, projects
from portal.dicom import md5_of
from portal.exchange import exporter as export_mod, importer
from portal.tables import Project, SyncRun


async def cycle(project: Project, *, username: str = "", on_progress=None) -> dict:
    from portal.exchange import runs

    conf_path = export_mod.import_file_path(project)
    export_path, fmt = export_mod.export_file(project)
    summary: dict = {"path": str(export_path), "format": fmt, "incoming": None}
    taken_in = ""  # the other side's version, backed up and imported here: the export need not keep it again
    if conf_path.is_file():
        known = await runs.last_export_md5(project, str(conf_path))
        current = md5_of(conf_path)
        if current != known:
            saved = export_mod.backup(conf_path, projects.settings_of(project)["export_backups"],
                                      label="incoming")
            try:
                # Confined: the file is the project's own, but what it names is written by the other side.
                summary["incoming"] = await importer.import_file(conf_path, project, username=username,
                                                                 on_progress=on_progress, confined=True)
            except importer.ImportRefused as exc:
                exc.summary = {"incoming_backup": str(saved)}
                exc.detail = ("The repository's file was not imported, and so not overwritten: " + exc.detail)
                raise
            summary["incoming_backup"] = str(saved)
            taken_in = current
    result = await export_mod.export(project, fmt=fmt, username=username, on_progress=on_progress,
                                     accepted_md5=taken_in)
    summary["export"] = result.as_dict()
    summary["import"] = await importer.import_file(export_path, project, username=username, on_progress=on_progress,
                                                   confined=True)
    return summary


async def due(now: dt.datetime | None = None) -> list[Project]:
    """Projects whose schedule says a sync is due, with no run of theirs under way."""
    from portal.exchange import runs

    now = now or clock.now()
    out = []
    for project in await Project.objects().order_by(Project.id):
        every = runs.schedule_of(project)
        if every <= 0 or await runs.has_active(project):
            continue
        last = await SyncRun.select(SyncRun.queued_at).where(
            (SyncRun.project == project.id) & (SyncRun.kind == "sync") & (SyncRun.trigger == "schedule")).order_by(
            SyncRun.id, ascending=False).first()
        if last is None or now - last["queued_at"] >= dt.timedelta(minutes=every) - dt.timedelta(seconds=5):
            out.append(project)
    return out


async def start_due() -> list[int]:
    """Create a queued run for each due project; the periodic task executes them."""
    from portal.exchange import runs

    await runs.fail_stale()
    return [(await runs.create(p, "sync", trigger="schedule"))["id"] for p in await due()]
