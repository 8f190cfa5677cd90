"""A finished job's DICOM results into the archive: the SR, SC and encapsulated PDF that
portal/inference/dicom_results.py draws (where the model runs) go into the scored study as new series through
the one ingest path, are kept as the job's assets, and go to the project's `results_node` when it names one."""

from __future__ import annotations

import asyncio
import io
import uuid

from portal import archive as arch, clock, projects, settings as settings_mod
from portal.review.decisions import DERIVED
from portal.tables import Archive, Asset, Patient, Project, Series, Study
from portal.tasks import offload


async def publish(job, outcome: dict) -> dict[str, str]:
    """Build the outputs of a finished job, ingest them into the scored study (the series' archive), keep them as
    the job's `sr`, `sc` and `pdf` assets, and send them to the project's `results_node` when it names one.
    Returns {kind: SeriesInstanceUID}."""
    rep = outcome.get("representative") or {}
    if not rep.get("path") or await Asset.exists().where((Asset.job == job.id) & (Asset.kind == "sr")):
        return {}  # nothing to show, or made already (a job finished twice)
    # Drawn where the model runs (highdicom and the drawing add ~100 MB to the process that draws them).
    built = await offload.run("portal.inference.dicom_results:build", str(rep["path"]), int(rep.get("frame") or 0),
                              outcome.get("scores") or {},
                              outcome.get("model") or {"name": job.model_name, "version": job.model_version},
                              outcome.get("report") or "", outcome.get("heatmap_png"),
                              list(outcome.get("flagged") or []), bool(outcome.get("critical")), lane="model")
    project = await Project.objects().get(Project.id == job.project)
    series = await Series.objects().get(Series.id == job.series)
    study = await Study.objects().get(Study.id == series.study)
    patient = await Patient.objects().get(Patient.id == study.patient)
    archive = await Archive.objects().get(Archive.id == patient.archive)
    tmp = settings_mod.current().data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    store = arch.storage()
    for kind, data, asset_media, asset_data in (("sr", built["sr"], "application/dicom", built["sr"]),
                                                ("sc", built["sc"], "application/dicom", built["sc"]),
                                                ("pdf", built["pdf_dicom"], "application/pdf", built["pdf"])):
        if not data:
            continue
        path = tmp / f"ai-{job.id}-{kind}-{uuid.uuid4().hex}.dcm"
        path.write_bytes(data)
        try:
            result = await arch.ingest_file(path, project, archive, filename=f"ai-{kind}.dcm")
        finally:
            path.unlink(missing_ok=True)
        if result.ok:
            made[kind] = result.series_instance_uid
            await Series.update({Series.review_status: DERIVED}).where(
                (Series.project == project.id) & (Series.series_instance_uid == result.series_instance_uid))
        key = f"ai/{job.id}/{kind}"
        await asyncio.to_thread(store.put_fileobj, io.BytesIO(asset_data), key)
        await Asset.insert(Asset(job=job.id, series=job.series, kind=kind, media_type=asset_media, file_key=key,
                                 created_at=clock.now()))
    node = projects.settings_of(project).get("results_node") or ""
    if node and made:
        from portal.network import send
        from portal.tasks.network import enqueue

        queued = await send.request(project, node, series=list(made.values()))
        enqueue(queued)
    return made
